// Which chat template a model is run with: its own `tokenizer.chat_template`, or, for a file
// without one (e.g. the Gemma 3 270M base GGUF), a built-in template chosen from the
// vocabulary: Gemma's turn markers when it has them, else ChatML (llama.cpp's fallback).
#pragma once
#include <string>

namespace stepq {

class GgufFile;
class Tokenizer;

struct ResolvedChatTemplate {
  std::string source;  // Jinja source
  std::string origin;  // "model", "built-in gemma", "built-in chatml"
};

ResolvedChatTemplate resolve_chat_template(const GgufFile& f, const Tokenizer& tok);

// The text to tokenize for a conversation rendered with `tmpl`: the tokenizer adds BOS itself
// when it is configured to, so a leading BOS text from the template is dropped (as llama.cpp does).
std::string strip_template_bos(const std::string& rendered, const Tokenizer& tok);

// `user` (and `system`, if not empty) wrapped in the model's chat template, or the default one
// for its family when the file has none (*origin says which: "model" or the family), with the
// assistant turn opened: ready to be encoded with special-token text parsed.
std::string chat_prompt(const GgufFile& f, const Tokenizer& tok, const std::string& user, const std::string& system,
                        std::string* origin = nullptr);

}  // namespace stepq
