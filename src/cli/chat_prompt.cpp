#include "cli/commands.h"
#include "formats/gguf.h"
#include "tokenizer/chat_defaults.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace stepq::cli {

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

}  // namespace stepq::cli
