// stepq run: generate text from a prompt. The generated text alone goes to stdout (pipe it,
// compare it); loading messages and statistics go to stderr.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/lookahead_flags.h"
#include "formats/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "runtime/lookahead.h"
#include "runtime/speculative.h"
#include "runtime/step_verifier.h"
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
  // Speculative decoding.
  std::string draft;
  bool ngram = false, spec_fixed = false;
  int spec_k = 0;  // 0: 8 for a draft model (adaptive), 6 for n-gram lookup (fixed)
  int ngram_max = 2;
  // Lookahead Reasoning.
  bool lookahead = false;
  LookaheadFlags la;
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
    std::string origin;
    text = chat_prompt(model->gguf(), tok, prompt, a.system, &origin);
    if (origin != "model" && !a.quiet)
      std::fprintf(stderr, "stepq: the model has no chat template; using the %s template\n", origin.c_str());
    parse_special = true;
  }
  std::vector<int32_t> ids = tok.encode(text, true, parse_special);

  if (a.lookahead && a.draft.empty()) fail("--lookahead needs --draft MODEL (the model that drafts the steps)");
  if (!a.lookahead && a.ngram && !a.draft.empty())
    fail("--ngram and --draft are two kinds of token speculation: give one (with --lookahead, --ngram runs inside the target's steps)");
  // With --lookahead, token speculation inside the target's steps: n-gram (--ngram) or the
  // draft model (--spec-k K).
  const StepTokenSpec step_spec = !a.lookahead ? StepTokenSpec::kNone
                                  : a.ngram    ? StepTokenSpec::kNgram
                                  : a.spec_k > 0 ? StepTokenSpec::kDraft
                                                 : StepTokenSpec::kNone;
  const LookaheadOptions lo =
      lookahead_options(a.la, step_spec, a.spec_k > 0 ? a.spec_k : 6, a.ngram_max);

  Forward fwd(*model, a.threads);
  const int ctx = resolve_ctx(a.ctx, c);
  // Lookahead's branches are forks of the sequence: their pages come from the same pool.
  auto kv_pool = std::make_shared<KvPool>(
      c, KvPool::pages_for(a.lookahead ? lookahead_pool_tokens(ctx, lo) : ctx));
  KvCache kv(kv_pool, ctx);
  Sampler sampler(a.sampling, c.n_vocab);
  TextStreamer streamer(tok, false);
  GenerateOptions opt;
  opt.n_predict = a.n_predict;
  opt.ignore_eos = a.ignore_eos;
  auto on_token = [&](int32_t id) {
    if (tok.is_eog(id) && !a.ignore_eos) return true;
    std::string piece = streamer.push(id);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  };

  // Speculation: a draft model (same vocabulary, or through text when it differs) or n-gram lookup.
  std::unique_ptr<Model> draft_model;
  std::unique_ptr<Forward> draft_fwd;
  std::unique_ptr<Drafter> drafter;
  SpeculativeOptions so;
  if (!a.draft.empty()) {
    draft_model = Model::load(a.draft);
    if (a.lookahead && !same_vocabulary(tok, draft_model->tokenizer()))
      fail("--lookahead needs a draft model with the target's vocabulary; {} has another one", a.draft);
    const ModelConfig& dc = draft_model->config();
    draft_fwd = std::make_unique<Forward>(*draft_model, fwd.shared_pool());
    const int draft_ctx = std::min(ctx, dc.n_ctx_train > 0 ? dc.n_ctx_train : ctx);
    const bool same = same_vocabulary(tok, draft_model->tokenizer());
    // Lookahead drafts whole steps itself (runtime/lookahead.h); token speculation drafts tokens.
    if (!a.lookahead) {
      if (same) drafter = std::make_unique<ModelDrafter>(*draft_fwd, draft_ctx, a.sampling);
      else drafter = std::make_unique<TextDrafter>(*draft_fwd, tok, draft_ctx);
    }
    so.k_max = a.spec_k > 0 ? a.spec_k : 8;
    so.adaptive = !a.spec_fixed;
    if (!a.quiet)
      std::fprintf(stderr, "stepq: draft %s (%s, %d layers, %.0f MB)%s\n", a.draft.c_str(), arch_name(dc.arch),
                   dc.n_layer, draft_model->weight_bytes_per_token() / 1e6,
                   same ? "" : ", another vocabulary: drafts go through text");
  } else if (a.ngram && !a.lookahead) {
    drafter = std::make_unique<NgramDrafter>(a.ngram_max);
    so.k_max = a.spec_k > 0 ? a.spec_k : 6;
    so.adaptive = !a.spec_fixed;
  }
  so.k_start = std::min(so.k_max, 4);

  std::unique_ptr<StepVerifier> verifier;
  std::unique_ptr<Model> judge_model;
  if (a.lookahead) {
    verifier = make_verifier(a.la, *model, fwd.shared_pool(), judge_model);
    log_steps(*verifier, open_step_log(a.la.step_log), "lr", nullptr);
  }

  SpeculativeStats ss;
  LookaheadStats ls;
  GenerateStats st =
      a.lookahead ? lookahead_generate(fwd, kv, *draft_fwd, sampler, tok, ids, opt, *verifier, lo, ls, on_token)
      : drafter   ? speculative_generate(fwd, kv, sampler, tok, ids, opt, *drafter, so, ss, on_token)
                  : generate(fwd, kv, sampler, tok, ids, opt, on_token);
  std::string rest = streamer.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!a.quiet)
    std::fprintf(stderr, "\nstepq: prompt %d tokens in %.2f s (%.1f tok/s), generated %d tokens in %.2f s (%.1f tok/s)%s\n",
                 st.n_prompt, st.prompt_seconds, st.n_prompt / std::max(st.prompt_seconds, 1e-9), st.n_generated,
                 st.generate_seconds, st.n_generated / std::max(st.generate_seconds, 1e-9),
                 st.stopped_by_context ? " [context full]" : "");
  if (a.lookahead && !a.quiet) {
    std::fprintf(stderr, "stepq: lookahead: %s\n", lookahead_summary(lo, ls, *verifier, "stepq: ").c_str());
  }
  if (drafter && !a.quiet) {
    std::fprintf(stderr,
                 "stepq: speculative (%s, k %s %d): %d rounds, drafted %d, accepted %d (%.1f%%), "
                 "%.2f tokens per target forward (%.3f forwards per token); draft %.2f s, verify %.2f s\n",
                 drafter->name().c_str(), so.adaptive ? "<=" : "=", so.k_max, ss.rounds, ss.drafted, ss.accepted,
                 100.0 * ss.acceptance_rate(), (double)st.n_generated / std::max(1, ss.rounds + 1),
                 (ss.rounds + 1.0) / std::max(1, st.n_generated), ss.draft_seconds, ss.verify_seconds);
    if (drafter->text_seconds() > 0)
      std::fprintf(stderr, "stepq: of the draft time, %.3f s went to re-encoding between vocabularies (%.2f ms per round)\n",
                   drafter->text_seconds(), 1000.0 * drafter->text_seconds() / std::max(1, ss.rounds));
    std::string hist;
    for (size_t i = 0; i < ss.accepted_hist.size(); i++) hist += fmt::format(" {}:{}", i, ss.accepted_hist[i]);
    std::fprintf(stderr, "stepq: rounds by drafted tokens kept:%s\n", hist.c_str());
  }
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
  auto* g = c->add_option_group("Speculative decoding", "lossless: greedy output and sampled distributions are the target's own");
  CLI::Option* draft = g->add_option("--draft", a->draft, "Draft model (GGUF) proposing tokens for this model to verify")
      ->check(CLI::ExistingFile);
  (void)draft;
  g->add_flag("--ngram", a->ngram, "Propose the tokens that followed the last n-gram earlier in the context (no draft model; "
              "with --lookahead: inside the target's steps)");
  g->add_option("--spec-k", a->spec_k, "Drafted tokens per round at most (default: 8 with --draft, 6 with --ngram)")
      ->check(CLI::Range(1, 64));
  g->add_option("--ngram-max", a->ngram_max, "Longest n-gram matched with --ngram")->capture_default_str()->check(CLI::Range(1, 16));
  g->add_flag("--spec-fixed", a->spec_fixed, "Always draft --spec-k tokens (default: choose k each round from the measured acceptance rate and costs)");
  auto* l = c->add_option_group("Lookahead Reasoning",
                                "step-level speculation: the --draft model writes the next steps, the target checks them");
  l->add_flag("--lookahead", a->lookahead,
              "Draft whole reasoning steps ahead (needs --draft with the same vocabulary); --ngram or --spec-k K add "
              "token speculation inside the target's steps (n-gram lookup, or K tokens of the draft model)");
  add_lookahead_flags(l, a->la);
  c->callback([a] { do_run(*a); });
}

}  // namespace stepq::cli
