// stepq perplexity: llama.cpp's perplexity on a text file, so the numbers compare directly.
// Running values go to stdout as "[i]ppl," like llama-perplexity; the last line is
// "Final estimate: PPL = <value> +/- <error>".
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/commands.h"
#include "eval/perplexity.h"
#include "model/forward.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace stepq::cli {

namespace {
struct PplArgs {
  std::string model, file, reference;
  bool json = false;
  int threads = default_threads();
  PerplexityOptions opt;
};

void do_perplexity(const PplArgs& a) {
  std::ifstream f(a.file, std::ios::binary);
  if (!f) fail("cannot read '{}'", a.file);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  auto model = Model::load(a.model);
  const Tokenizer& tok = model->tokenizer();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> tokens = tok.encode(text, true, false);
  const int max_chunks = (int)(tokens.size() / (size_t)std::max(a.opt.n_ctx, 1));
  const int n_chunks = a.opt.n_chunks < 0 ? max_chunks : std::min(a.opt.n_chunks, max_chunks);
  std::fprintf(stderr, "stepq perplexity: %s: %zu tokens, %d windows of %d (scoring the second half), %d threads\n",
               a.file.c_str(), tokens.size(), n_chunks, a.opt.n_ctx, a.threads);
  Forward fwd(*model, a.threads);
  std::unique_ptr<Model> ref_model;
  std::unique_ptr<Forward> ref_fwd;
  PerplexityOptions opt = a.opt;
  if (!a.reference.empty()) {
    ref_model = Model::load(a.reference);
    ref_fwd = std::make_unique<Forward>(*ref_model, a.threads);
    opt.reference = ref_fwd.get();
  }
  PerplexityResult r = perplexity(fwd, tokens, tok.bos(), tok.add_bos(), opt, [&](int i, double ppl) {
    std::printf("[%d]%.4f,", i + 1, ppl);
    std::fflush(stdout);
    if (i == 0) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "stepq perplexity: %.2f s per window, about %.1f minutes in all\n", s,
                   s * n_chunks / 60.0);
    }
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n");
  std::fprintf(stderr, "stepq perplexity: %lld tokens scored in %.1f s (%.1f tokens/s evaluated)\n",
               (long long)r.n_scored, s, r.n_chunks * (double)a.opt.n_ctx / s);
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_error);
  if (opt.reference)
    std::printf("Against %s: reference PPL = %.4f, mean KL = %.6f nats, top-1 agreement = %.2f%%\n",
                a.reference.c_str(), r.ref_ppl, r.kl, 100 * r.top1);
  if (a.json) {
    nlohmann::json j = {{"model", a.model}, {"chunks", r.n_chunks}, {"ctx", a.opt.n_ctx}, {"scored", r.n_scored},
                        {"ppl", r.ppl}, {"ppl_error", r.ppl_error}, {"seconds", s}};
    if (opt.reference) {
      j["reference"] = a.reference;
      j["reference_ppl"] = r.ref_ppl;
      j["kl"] = r.kl;
      j["top1"] = r.top1;
    }
    std::printf("%s\n", j.dump().c_str());
  }
}
}  // namespace

void add_perplexity(CLI::App& app) {
  auto a = std::make_shared<PplArgs>();
  CLI::App* c = app.add_subcommand("perplexity", "Perplexity of a text file, computed as llama.cpp does");
  c->add_option("-m,--model", a->model, "Model file (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_option("-f,--file", a->file, "Text file (e.g. wikitext2 wiki.test.raw)")->required()->check(CLI::ExistingFile);
  c->add_option("--ctx", a->opt.n_ctx, "Window length in tokens")->capture_default_str()->check(CLI::Range(4, 1 << 20));
  c->add_option("--chunks", a->opt.n_chunks, "Windows to evaluate (default: all)")->check(CLI::Range(1, 1 << 30));
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
  c->add_option("--kl-reference", a->reference,
                "Also run this model (e.g. the unquantized source) and report KL divergence and top-1 agreement")
      ->check(CLI::ExistingFile);
  c->add_flag("--json", a->json, "End with one JSON line of the results");
  c->callback([a] { do_perplexity(*a); });
}

}  // namespace stepq::cli
