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

}  // namespace stepq
