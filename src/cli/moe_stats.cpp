// stepq moe-stats: how a mixture-of-experts model routes a text. The text is evaluated in
// windows of --ctx tokens (each from an empty cache, as perplexity does) and every token's
// choice of experts is counted per layer. MiLo's frequency rank policy reads the --json output.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cli/commands.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "tokenizer/tokenizer.h"

namespace stepq::cli {

namespace {

struct MoeStatsArgs {
  std::string model, file;
  int ctx = 512;
  int64_t max_tokens = 0;
  int threads = default_threads();
  bool json = false;
};

// Normalised entropy of a layer's routing (1 = every expert used equally, 0 = one expert).
double balance(const uint64_t* n, int X) {
  double total = 0, h = 0;
  for (int e = 0; e < X; e++) total += (double)n[e];
  if (total == 0 || X < 2) return 0;
  for (int e = 0; e < X; e++)
    if (n[e]) h -= n[e] / total * std::log(n[e] / total);
  return h / std::log((double)X);
}

void do_moe_stats(const MoeStatsArgs& a) {
  auto model = Model::load(a.model);
  const ModelConfig& c = model->config();
  if (!c.is_moe())
    fail("{} is a dense model ({}, no experts): moe-stats needs a mixture of experts", a.model, c.arch_string);
  std::ifstream f(a.file, std::ios::binary);
  if (!f) fail("cannot read '{}'", a.file);
  std::stringstream ss;
  ss << f.rdbuf();
  const Tokenizer& tok = model->tokenizer();
  std::vector<int32_t> tokens = tok.encode(ss.str(), false, false);
  if (a.max_tokens > 0 && (int64_t)tokens.size() > a.max_tokens) tokens.resize(a.max_tokens);
  if (tokens.empty()) fail("'{}' has no tokens", a.file);
  const int ctx = c.n_ctx_train > 0 ? std::min(a.ctx, c.n_ctx_train) : a.ctx;
  const size_t windows = (tokens.size() + ctx - 1) / ctx;
  std::fprintf(stderr, "stepq moe-stats: %s: %zu tokens in %zu windows of up to %d, %d threads\n", a.file.c_str(),
               tokens.size(), windows, ctx, a.threads);

  Forward fwd(*model, a.threads);
  KvCache kv(c, ctx);
  std::vector<int32_t> window;
  const int bos = tok.bos();
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t w = 0; w < windows; w++) {
    const size_t start = w * ctx, end = std::min(tokens.size(), start + ctx);
    window.assign(tokens.begin() + start, tokens.begin() + end);
    // Each window starts like a prompt: with BOS when the model adds one.
    if (tok.add_bos() && bos >= 0) {
      window.insert(window.begin(), bos);
      if ((int)window.size() > ctx) window.pop_back();
    }
    kv.truncate(0);
    SequenceInput in{&kv, window, false};
    fwd.run({&in, 1});
    if (!a.json) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "\r  window %zu/%zu, %.0f tokens/s", w + 1, windows, end / s);
    }
  }
  if (!a.json) std::fprintf(stderr, "\n");

  const std::vector<uint64_t>& n = fwd.expert_counts();
  const int X = c.n_expert;
  uint64_t routed_tokens = 0;
  if (a.json) {
    nlohmann::json j = {{"model", a.model},          {"arch", c.arch_string},
                        {"text", a.file},            {"tokens", tokens.size()},
                        {"n_layer", c.n_layer},      {"n_expert", X},
                        {"n_expert_used", c.n_expert_used}, {"first_moe_layer", c.n_layer_dense_lead}};
    nlohmann::json counts = nlohmann::json::array();
    for (int l = 0; l < c.n_layer; l++)
      counts.push_back(std::vector<uint64_t>(n.begin() + (size_t)l * X, n.begin() + (size_t)(l + 1) * X));
    j["counts"] = counts;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("%s: %d layers, %d experts, %d per token; share of routed tokens per expert (%%)\n",
              a.model.c_str(), c.n_layer, X, c.n_expert_used);
  std::printf("%5s %8s %8s %8s", "layer", "balance", "min %", "max %");
  const int shown = std::min(X, 16);
  for (int e = 0; e < shown; e++) std::printf(" %5d", e);
  std::printf("%s\n", X > shown ? " ..." : "");
  for (int l = 0; l < c.n_layer; l++) {
    if (!c.layer_is_moe(l)) {
      std::printf("%5d    dense\n", l);
      continue;
    }
    const uint64_t* r = &n[(size_t)l * X];
    uint64_t total = 0, lo = UINT64_MAX, hi = 0;
    for (int e = 0; e < X; e++) {
      total += r[e];
      lo = std::min(lo, r[e]);
      hi = std::max(hi, r[e]);
    }
    routed_tokens = total / c.n_expert_used;
    const double pct = total ? 100.0 / (double)total : 0;
    std::printf("%5d %8.3f %8.2f %8.2f", l, balance(r, X), lo * pct, hi * pct);
    for (int e = 0; e < shown; e++) std::printf(" %5.1f", r[e] * pct);
    std::printf("%s\n", X > shown ? " ..." : "");
  }
  std::printf("tokens routed per layer: %llu (balance: normalised entropy, 1 = uniform)\n",
              (unsigned long long)routed_tokens);
}

}  // namespace

void add_moe_stats(CLI::App& app) {
  auto a = std::make_shared<MoeStatsArgs>();
  CLI::App* c = app.add_subcommand("moe-stats", "Count how a mixture-of-experts model routes a text, per layer and expert");
  c->add_option("-m,--model", a->model, "Model file (GGUF) with experts")->required()->check(CLI::ExistingFile);
  c->add_option("-f,--file", a->file, "Text file to route (e.g. wikitext2 wiki.train.raw)")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--ctx", a->ctx, "Window length in tokens")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  c->add_option("--max-tokens", a->max_tokens, "Route at most this many tokens of the text (0 = all)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
  c->add_flag("--json", a->json,
              "Print one JSON object: counts[layer][expert] (tokens routed), n_expert, n_expert_used, ...");
  c->callback([a] { do_moe_stats(*a); });
}

}  // namespace stepq::cli
