#include "tokenizer/chat_defaults.h"

#include "formats/gguf.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace stepq {

namespace {

// Gemma's published instruction-tuned format (turns <start_of_turn>user / model, a system
// message folded into the first user turn).
constexpr const char* kGemmaTemplate =
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}";

constexpr const char* kChatmlTemplate =
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}";

}  // namespace

ResolvedChatTemplate resolve_chat_template(const GgufFile& f, const Tokenizer& tok) {
  std::string own = f.get_string("tokenizer.chat_template", "");
  if (!own.empty() && own != "chatml") return {own, "model"};
  if (tok.find_token("<start_of_turn>") >= 0 && tok.find_token("<end_of_turn>") >= 0)
    return {kGemmaTemplate, "built-in gemma"};
  return {kChatmlTemplate, "built-in chatml"};
}

std::string strip_template_bos(const std::string& rendered, const Tokenizer& tok) {
  if (!tok.add_bos() || tok.bos() < 0) return rendered;
  const std::string bos = tok.token_to_piece(tok.bos(), true);
  if (!bos.empty() && rendered.rfind(bos, 0) == 0) return rendered.substr(bos.size());
  return rendered;
}

std::string chat_prompt(const GgufFile& f, const Tokenizer& tok, const std::string& user, const std::string& system,
                        std::string* origin) {
  ResolvedChatTemplate tmpl = resolve_chat_template(f, tok);
  if (origin) *origin = tmpl.origin;
  std::vector<ChatMessage> msgs;
  if (!system.empty()) msgs.push_back({"system", system});
  msgs.push_back({"user", user});
  const std::string bos = tok.bos() >= 0 ? tok.token_to_piece(tok.bos(), true) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_to_piece(tok.eos(), true) : "";
  return strip_template_bos(ChatTemplate(tmpl.source).apply(msgs, true, bos, eos), tok);
}

}  // namespace stepq
