// stepq run: generate text from a prompt. The generated text alone goes to stdout (pipe it,
// compare it); loading messages and statistics go to stderr.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "cli/commands.h"
#include "formats/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "tokenizer/chat_defaults.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace stepq::cli {

namespace {

struct RunArgs {
  std::string model, prompt, prompt_file, system;
  int n_predict = 256;
  int threads = default_threads();
  int ctx = 0;
  bool chat = false, ignore_eos = false, quiet = false;
  SamplerParams sampling;
};

void do_run(const RunArgs& a) {
  std::string prompt = a.prompt;
  if (!a.prompt_file.empty()) {
    std::ifstream f(a.prompt_file, std::ios::binary);
    if (!f) fail("cannot read prompt file '{}'", a.prompt_file);
    std::stringstream ss;
    ss << f.rdbuf();
    prompt = ss.str();
  }
  if (prompt.empty()) fail("no prompt: give -p TEXT or -f FILE");

  auto model = Model::load(a.model);
  const ModelConfig& c = model->config();
  const Tokenizer& tok = model->tokenizer();
  if (!a.quiet)
    std::fprintf(stderr, "stepq: %s (%s, %d layers, %.0f MB), %d threads\n", a.model.c_str(), arch_name(c.arch),
                 c.n_layer, model->weight_bytes_per_token() / 1e6, a.threads);

  std::string text = prompt;
  bool parse_special = false;
  if (a.chat) {
    ResolvedChatTemplate tmpl = resolve_chat_template(model->gguf(), tok);
    if (tmpl.origin != "model" && !a.quiet)
      std::fprintf(stderr, "stepq: the model has no chat template; using the %s template\n", tmpl.origin.c_str());
    std::vector<ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", prompt});
    const std::string bos = tok.bos() >= 0 ? tok.token_to_piece(tok.bos(), true) : "";
    const std::string eos = tok.eos() >= 0 ? tok.token_to_piece(tok.eos(), true) : "";
    text = strip_template_bos(ChatTemplate(tmpl.source).apply(msgs, true, bos, eos), tok);
    parse_special = true;
  }
  std::vector<int32_t> ids = tok.encode(text, true, parse_special);

  Forward fwd(*model, a.threads);
  KvCache kv(c, resolve_ctx(a.ctx, c));
  Sampler sampler(a.sampling, c.n_vocab);
  TextStreamer streamer(tok, false);
  GenerateOptions opt;
  opt.n_predict = a.n_predict;
  opt.ignore_eos = a.ignore_eos;
  GenerateStats st = generate(fwd, kv, sampler, tok, ids, opt, [&](int32_t id) {
    if (tok.is_eog(id) && !a.ignore_eos) return true;
    std::string piece = streamer.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::string rest = streamer.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!a.quiet)
    std::fprintf(stderr, "\nstepq: prompt %d tokens in %.2f s (%.1f tok/s), generated %d tokens in %.2f s (%.1f tok/s)%s\n",
                 st.n_prompt, st.prompt_seconds, st.n_prompt / std::max(st.prompt_seconds, 1e-9), st.n_generated,
                 st.generate_seconds, st.n_generated / std::max(st.generate_seconds, 1e-9),
                 st.stopped_by_context ? " [context full]" : "");
}

}  // namespace

void add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* c = app.add_subcommand("run", "Generate text from a prompt (text to stdout, stats to stderr)");
  c->add_option("-m,--model", a->model, "Model file (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_option("-p,--prompt", a->prompt, "Prompt text");
  c->add_option("-f,--file", a->prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
  c->add_option("-n,--n-predict", a->n_predict, "Tokens to generate (-1 = until end of generation)")
      ->capture_default_str();
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
  c->add_option("--ctx", a->ctx, "Context size in tokens (default: 4096, or the model's context if shorter)")
      ->check(CLI::Range(1, 1 << 20));
  c->add_flag("--chat", a->chat, "Wrap the prompt in the model's chat template");
  c->add_option("--system", a->system, "System prompt (with --chat)");
  c->add_flag("--ignore-eos", a->ignore_eos, "Keep generating past end-of-generation tokens");
  c->add_flag("-q,--quiet", a->quiet, "No statistics on stderr");
  add_sampling_flags(c, a->sampling);
  c->callback([a] { do_run(*a); });
}

}  // namespace stepq::cli
