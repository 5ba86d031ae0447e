// stepq tokenize: show how text becomes token ids (one "id<TAB>piece" per line, or ids only).
// -m takes a GGUF file or a Hugging Face folder (its tokenizer.json: WordPiece).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "cli/commands.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/wordpiece.h"

namespace stepq::cli {

namespace {
struct TokArgs {
  std::string model, prompt, file;
  std::string system;
  bool ids_only = false, no_special = false, parse_special = false, chat = false;
};

void print_ids(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t i = 0; i < ids.size(); i++) line += fmt::format("{}{}", i ? " " : "", ids[i]);
  line += "\n";
  std::fputs(line.c_str(), stdout);
}

// -f: every line of the file separately, one line of ids each ("" lines included).
std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read the input file", path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void do_tokenize_wordpiece(const TokArgs& a) {
  if (a.chat || a.parse_special) fail("--chat and --special need a GGUF model; {} is a folder", a.model);
  auto tok = WordPieceTokenizer::from_file((std::filesystem::path(a.model) / "tokenizer.json").string());
  if (!a.file.empty()) {
    for (const std::string& line : read_lines(a.file)) print_ids(tok->encode(line, !a.no_special));
    return;
  }
  std::vector<int32_t> ids = tok->encode(a.prompt, !a.no_special);
  if (a.ids_only) return print_ids(ids);
  for (int32_t id : ids) std::printf("%6d\t'%s'\n", id, tok->token_text(id).c_str());
}

void do_tokenize(const TokArgs& a) {
  if (std::filesystem::is_directory(a.model)) return do_tokenize_wordpiece(a);
  auto f = GgufFile::open(a.model);
  auto tok = Tokenizer::from_gguf(*f);
  if (!a.file.empty()) {
    for (const std::string& line : read_lines(a.file)) print_ids(tok->encode(line, !a.no_special, a.parse_special));
    return;
  }
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
  c->add_option("-m,--model", a->model, "Model file (GGUF) or Hugging Face folder (tokenizer.json, WordPiece)")
      ->required()
      ->check(CLI::ExistingPath);
  auto* p = c->add_option("-p,--prompt", a->prompt, "Text");
  auto* f = c->add_option("-f,--file", a->file, "Tokenize every line of FILE separately: one line of ids each");
  p->excludes(f);
  f->excludes(p);
  c->add_flag("--ids", a->ids_only, "Print ids only, space separated");
  c->add_flag("--no-bos", a->no_special, "Do not add BOS/EOS");
  c->add_flag("--special", a->parse_special, "Parse special-token text like <|im_start|>");
  c->add_flag("--chat", a->chat, "Wrap the text in the model's chat template first (as stepq run --chat does)");
  c->add_option("--system", a->system, "System prompt (with --chat)");
  c->callback([a, p, f] {
    if (p->count() == 0 && f->count() == 0) fail("give the text with -p TEXT, or -f FILE");
    do_tokenize(*a);
  });
}

}  // namespace stepq::cli
