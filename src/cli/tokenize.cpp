// stepq tokenize: show how text becomes token ids (one "id<TAB>piece" per line, or ids only).
#include <cstdio>

#include "base/error.h"
#include "cli/commands.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace stepq::cli {

namespace {
struct TokArgs {
  std::string model, prompt;
  std::string system;
  bool ids_only = false, no_special = false, parse_special = false, chat = false;
};

void do_tokenize(const TokArgs& a) {
  auto f = GgufFile::open(a.model);
  auto tok = Tokenizer::from_gguf(*f);
  const std::string text = a.chat ? chat_prompt(*f, *tok, a.prompt, a.system) : a.prompt;
  std::vector<int32_t> ids = tok->encode(text, !a.no_special, a.parse_special || a.chat);
  if (a.ids_only) {
    for (size_t i = 0; i < ids.size(); i++) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    return;
  }
  for (int32_t id : ids) std::printf("%6d\t'%s'\n", id, tok->token_to_piece(id, true).c_str());
}
}  // namespace

void add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokArgs>();
  CLI::App* c = app.add_subcommand("tokenize", "Show the token ids of a text");
  c->add_option("-m,--model", a->model, "Model file (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_option("-p,--prompt", a->prompt, "Text")->required();
  c->add_flag("--ids", a->ids_only, "Print ids only, space separated");
  c->add_flag("--no-bos", a->no_special, "Do not add BOS/EOS");
  c->add_flag("--special", a->parse_special, "Parse special-token text like <|im_start|>");
  c->add_flag("--chat", a->chat, "Wrap the text in the model's chat template first (as stepq run --chat does)");
  c->add_option("--system", a->system, "System prompt (with --chat)");
  c->callback([a] { do_tokenize(*a); });
}

}  // namespace stepq::cli
