// Locating the real model files for tests (installed by scripts/fetch-models.py).
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace stepq::test {

inline std::string models_dir() {
  if (const char* d = std::getenv("STEPQ_MODELS")) return d;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.cache/stepq/models";
}

// Short names: "smollm2", "gemma3", "qwen0.5b", "qwen1.5b", "minilm" (a Hugging Face folder); with
// ".f32" appended, the exact F32 copy made by scripts/make-f32-models.py. Fails the calling test
// (non-fatal) when the file is missing, with the command that installs it.
inline std::string model_path(std::string short_name) {
  const bool f32 = short_name.size() > 4 && short_name.substr(short_name.size() - 4) == ".f32";
  if (f32) short_name.resize(short_name.size() - 4);
  std::string file;
  if (short_name == "smollm2") file = "SmolLM2-135M-Instruct.Q4_1.gguf";
  else if (short_name == "gemma3") file = "gemma-3-270m-q4_k_m.gguf";
  else if (short_name == "qwen0.5b") file = "qwen2.5-coder-0.5b-instruct.gguf";
  else if (short_name == "qwen1.5b") file = "qwen2.5-coder-1.5b-instruct.gguf";
  else if (short_name == "minilm") file = "all-MiniLM-L6-v2";
  else file = short_name;
  if (f32) file = file.substr(0, file.size() - 5) + ".f32.gguf";
  std::string p = models_dir() + "/" + file;
  if (!std::filesystem::exists(p))
    ADD_FAILURE() << "model file missing: " << p << " (run: python3 scripts/fetch-models.py"
                  << (f32 ? " && python3 scripts/make-f32-models.py)" : ")");
  return p;
}

inline std::string source_dir() {
  if (const char* d = std::getenv("STEPQ_SOURCE_DIR")) return d;
#ifdef STEPQ_SOURCE_DIR
  return STEPQ_SOURCE_DIR;
#else
  return ".";
#endif
}

inline std::string shared_dir() { return source_dir() + "/../shared"; }

}  // namespace stepq::test
