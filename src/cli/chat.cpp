// stepq chat: interactive conversation using the model's own chat template.
// Each turn re-renders the whole conversation; the KV cache keeps the common token prefix,
// so only the new part is computed.
#include <algorithm>
#include <cstdio>
#include <iostream>

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

struct ChatArgs {
  std::string model, system;
  int n_predict = 1024;
  int threads = default_threads();
  int ctx = 0;
  SamplerParams sampling;
};

void do_chat(const ChatArgs& a) {
  auto model = Model::load(a.model);
  const Tokenizer& tok = model->tokenizer();
  ResolvedChatTemplate resolved = resolve_chat_template(model->gguf(), tok);
  if (resolved.origin != "model")
    std::fprintf(stderr, "stepq: the model has no chat template; using the %s template\n", resolved.origin.c_str());
  ChatTemplate tmpl(resolved.source);
  const std::string bos = tok.bos() >= 0 ? tok.token_to_piece(tok.bos(), true) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_to_piece(tok.eos(), true) : "";

  Forward fwd(*model, a.threads);
  KvCache kv(model->config(), resolve_ctx(a.ctx, model->config()));
  Sampler sampler(a.sampling, model->config().n_vocab);
  std::vector<ChatMessage> msgs;
  if (!a.system.empty()) msgs.push_back({"system", a.system});
  std::vector<int32_t> cached;  // tokens whose keys/values are in kv

  std::fprintf(stderr, "stepq chat: %s. Type a message; an empty line or Ctrl-D ends.\n", a.model.c_str());
  std::string line;
  for (;;) {
    std::fprintf(stderr, "\n> ");
    std::fflush(stderr);
    if (!std::getline(std::cin, line) || line.empty()) break;
    msgs.push_back({"user", line});
    std::string text = strip_template_bos(tmpl.apply(msgs, true, bos, eos), tok);
    std::vector<int32_t> ids = tok.encode(text, true, true);
    // Reuse the cached prefix; at least one token must be fed to get logits.
    size_t common = 0;
    while (common < cached.size() && common < ids.size() && cached[common] == ids[common]) common++;
    if (common == ids.size()) common--;
    kv.truncate((int)common);
    cached.assign(ids.begin(), ids.end());
    TextStreamer streamer(tok, false);
    std::string reply;
    GenerateOptions opt;
    opt.n_predict = a.n_predict;
    std::span<const int32_t> fresh(ids.data() + common, ids.size() - common);
    generate(fwd, kv, sampler, tok, fresh, opt, [&](int32_t id) {
      if (tok.is_eog(id)) return true;
      cached.push_back(id);
      std::string piece = streamer.push(id);
      reply += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    std::string rest = streamer.flush();
    reply += rest;
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    // The cache holds the prompt and the generated tokens except the last one (sampled, not fed).
    cached.resize(std::min(cached.size(), (size_t)kv.length()));
    msgs.push_back({"assistant", reply});
  }
}

}  // namespace

void add_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* c = app.add_subcommand("chat", "Interactive chat with the model's chat template");
  c->add_option("-m,--model", a->model, "Model file (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_option("--system", a->system, "System prompt");
  c->add_option("-n,--n-predict", a->n_predict, "Most tokens per reply")->capture_default_str();
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
  c->add_option("--ctx", a->ctx, "Context size in tokens (default: 4096, or the model's context if shorter)")
      ->check(CLI::Range(1, 1 << 20));
  add_sampling_flags(c, a->sampling);
  c->callback([a] { do_chat(*a); });
}

}  // namespace stepq::cli
