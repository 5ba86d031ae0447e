// One file per subcommand. Each registers its CLI11 subcommand and the function that runs it.
#pragma once
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "base/error.h"
#include "model/config.h"
#include "runtime/sampler.h"
#include "tokenizer/chat_defaults.h"

namespace stepq {
class GgufFile;
class Tokenizer;
}  // namespace stepq

namespace stepq::cli {

void add_run(CLI::App& app);
void add_chat(CLI::App& app);
void add_inspect(CLI::App& app);
void add_dump_tensor(CLI::App& app);
void add_dump_logits(CLI::App& app);
void add_perplexity(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_bench(CLI::App& app);
void add_embed(CLI::App& app);
void add_moe_stats(CLI::App& app);
void add_quantize(CLI::App& app);
void add_eval(CLI::App& app);
void add_verify_steps(CLI::App& app);

// chat_prompt(): tokenizer/chat_defaults.h.

// The context size of a sequence: --ctx (0 = 4096, or the model's context if that is shorter),
// never longer than the context the model was trained for.
inline int resolve_ctx(int ctx, const ModelConfig& c) {
  const int model_ctx = c.n_ctx_train > 0 ? c.n_ctx_train : 1 << 20;
  if (ctx == 0) return std::min(4096, model_ctx);
  if (ctx > model_ctx)
    fail("--ctx {} is longer than the model's context of {} tokens; use --ctx {} or less", ctx, model_ctx, model_ctx);
  return ctx;
}

// all-MiniLM-L6-v2 where scripts/fetch-models.py puts it ($STEPQ_MODELS or ~/.cache/stepq/models):
// the embedding verifier's default model.
inline std::string default_embed_model() {
  const char* m = std::getenv("STEPQ_MODELS");
  const char* home = std::getenv("HOME");
  const std::string dir = m ? m : std::string(home ? home : ".") + "/.cache/stepq/models";
  return dir + "/all-MiniLM-L6-v2";
}

inline int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : (int)n;
}

// Sampling flags shared by run and chat.
inline void add_sampling_flags(CLI::App* c, SamplerParams& p) {
  c->add_option("--temp", p.temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  c->add_option("--top-k", p.top_k, "Keep the k most likely tokens; 0 = off")->capture_default_str();
  c->add_option("--top-p", p.top_p, "Nucleus sampling mass; 1 = off")->capture_default_str();
  c->add_option("--min-p", p.min_p, "Drop tokens below min-p times the top probability; 0 = off")
      ->capture_default_str();
  c->add_option("--repeat-penalty", p.repeat_penalty, "Penalty for recent tokens; 1 = off")->capture_default_str();
  c->add_option("--repeat-last-n", p.repeat_last_n, "How many recent tokens the penalty looks at")
      ->capture_default_str();
  c->add_option("--seed", p.seed, "Random seed (same seed, same output)")->capture_default_str();
}

}  // namespace stepq::cli
