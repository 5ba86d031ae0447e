// stepq bench: prefill, decode and batched-decode speed, like llama-bench, plus the memory
// bandwidth those speeds are bounded by. The table (or JSON lines) goes to stdout, progress to
// stderr, so `stepq bench ... --json > results.jsonl` captures only results.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/commands.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/membw.h"

namespace stepq::cli {

namespace {

// Tokens of context each batched sequence holds before its timed decode steps.
constexpr int kBatchPrompt = 16;

const char* kBytesHelp =
    "GB/s = bytes read in the timed parts / their time, over all repetitions (1 GB = 1e9 bytes).\n"
    "Bytes read = weights (Model::weight_bytes_per_token: every matrix of every layer plus the\n"
    "output head; the embedding table is only gathered and not counted) once per forward call,\n"
    "plus the f16 KV cache rows attention reads: for each token, its context length (itself\n"
    "included; capped at the window on sliding-window layers) x 2 (K and V) x n_head_kv x head_dim\n"
    "x 2 bytes, summed over layers. tg and batch call the forward once per step, so weights count\n"
    "once per step (shared by the B sequences of a batch); pp is one forward, so once in all.";

struct BenchArgs {
  std::string model;
  int threads = default_threads();
  int n_prompt = 512;
  int n_gen = 128;
  int reps = 5;
  std::string batches = "1,4,8,16";
  bool json = false;
  bool bandwidth = false;
  int bw_mib = 1024;
  int bw_passes = 5;
  uint32_t seed = 1234;
};

struct Result {
  std::string test;
  int n_prompt = 0, n_gen = 0, n_batch = 0;
  double tps_mean = 0, tps_sd = 0, gb_per_s = 0;
  double bytes_per_rep = 0, kv_bytes_per_rep = 0;
  std::vector<double> samples;  // tokens/s of each timed repetition
};

std::vector<int> parse_batches(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 1 || v > 4096)
      fail("-b/--batch: '{}' is not a batch size (a comma-separated list of integers in 1..4096, or '' for none)",
           item);
    out.push_back((int)v);
  }
  return out;
}

// KV bytes attention reads for one token at position pos (it sees positions lo..pos).
double kv_bytes_at(const ModelConfig& c, int pos) {
  const double row = 2.0 * c.n_head_kv * c.head_dim * 2.0;  // K and V, f16
  double s = 0;
  for (int l = 0; l < c.n_layer; l++) {
    const bool swa = l < (int)c.layer_is_swa.size() && c.layer_is_swa[l] && c.n_swa > 0;
    s += row * (swa ? std::min(pos + 1, c.n_swa) : pos + 1);
  }
  return s;
}

void mean_sd(const std::vector<double>& x, double& mean, double& sd) {
  mean = 0;
  for (double v : x) mean += v;
  mean /= std::max<size_t>(x.size(), 1);
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  // Sample standard deviation, as llama-bench reports.
  sd = x.size() > 1 ? std::sqrt(ss / (double)(x.size() - 1)) : 0.0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class Bencher {
 public:
  Bencher(const Model& model, const BenchArgs& a) : c_(model.config()), a_(a), fwd_(model, a.threads) {
    weight_bytes_ = (double)model.weight_bytes_per_token();
  }

  double weight_bytes() const { return weight_bytes_; }

  Result pp(int p) {
    const std::vector<int32_t> toks = random_tokens(p, 1);
    KvCache kv(c_, p);
    Result r;
    r.test = "pp" + std::to_string(p);
    r.n_prompt = p;
    r.n_batch = 1;
    for (int pos = 0; pos < p; pos++) r.kv_bytes_per_rep += kv_bytes_at(c_, pos);
    r.bytes_per_rep = weight_bytes_ + r.kv_bytes_per_rep;
    repeat(r, (double)p, [&] {
      kv.truncate(0);
      SequenceInput in{&kv, toks, false};
      const auto t0 = std::chrono::steady_clock::now();
      fwd_.run(std::span<const SequenceInput>(&in, 1));
      return seconds_since(t0);
    });
    return r;
  }

  // From an empty cache, as llama-bench's tg: each step feeds one (random) token.
  Result tg(int n) {
    const std::vector<int32_t> toks = random_tokens(n, 2);
    KvCache kv(c_, n);
    Result r;
    r.test = "tg" + std::to_string(n);
    r.n_gen = n;
    r.n_batch = 1;
    for (int pos = 0; pos < n; pos++) r.kv_bytes_per_rep += kv_bytes_at(c_, pos);
    r.bytes_per_rep = weight_bytes_ * n + r.kv_bytes_per_rep;
    repeat(r, (double)n, [&] {
      kv.truncate(0);
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; i++) {
        SequenceInput in{&kv, std::span<const int32_t>(&toks[i], 1), false};
        fwd_.run(std::span<const SequenceInput>(&in, 1));
      }
      return seconds_since(t0);
    });
    return r;
  }

  // B sequences, each with its own untimed kBatchPrompt-token prompt, then n timed steps in
  // which every sequence gets one new token.
  Result batch(int B, int n) {
    std::vector<std::unique_ptr<KvCache>> kvs;
    std::vector<std::vector<int32_t>> prompts, steps;
    for (int s = 0; s < B; s++) {
      kvs.push_back(std::make_unique<KvCache>(c_, kBatchPrompt + n));
      prompts.push_back(random_tokens(kBatchPrompt, 100 + 2 * (uint32_t)s));
      steps.push_back(random_tokens(n, 101 + 2 * (uint32_t)s));
    }
    Result r;
    r.test = "batch" + std::to_string(B);
    r.n_prompt = kBatchPrompt;
    r.n_gen = n;
    r.n_batch = B;
    for (int pos = kBatchPrompt; pos < kBatchPrompt + n; pos++) r.kv_bytes_per_rep += B * kv_bytes_at(c_, pos);
    r.bytes_per_rep = weight_bytes_ * n + r.kv_bytes_per_rep;
    std::vector<SequenceInput> in((size_t)B);
    repeat(r, (double)B * n, [&] {
      for (int s = 0; s < B; s++) {
        kvs[s]->truncate(0);
        in[s] = SequenceInput{kvs[s].get(), prompts[s], false};
      }
      fwd_.run(in);
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; i++) {
        for (int s = 0; s < B; s++) in[s].tokens = std::span<const int32_t>(&steps[s][i], 1);
        fwd_.run(in);
      }
      return seconds_since(t0);
    });
    return r;
  }

 private:
  // Fixed per (seed, stream), and simple enough that bench/llamacpp_runner.py reproduces it, so
  // both engines see the same token ids: splitmix64 from seed * 1000003 + stream, id = (x >> 11)
  // mod n_vocab.
  std::vector<int32_t> random_tokens(int n, uint32_t stream) const {
    uint64_t state = (uint64_t)a_.seed * 1000003u + stream;
    std::vector<int32_t> t((size_t)n);
    for (auto& x : t) {
      state += 0x9e3779b97f4a7c15ull;
      uint64_t z = state;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      x = (int32_t)((z >> 11) % (uint64_t)c_.n_vocab);
    }
    return t;
  }

  // One untimed warm-up (first-touch of the KV pages, scratch growth, weights into cache/TLB),
  // then the timed repetitions.
  template <typename Fn>
  void repeat(Result& r, double tokens, Fn&& once) {
    std::fprintf(stderr, "stepq bench: %s: warm-up", r.test.c_str());
    std::fflush(stderr);
    once();
    double total_s = 0;
    for (int i = 0; i < a_.reps; i++) {
      const double s = once();
      total_s += s;
      r.samples.push_back(tokens / std::max(s, 1e-9));
      std::fprintf(stderr, ", %d/%d", i + 1, a_.reps);
      std::fflush(stderr);
    }
    std::fprintf(stderr, "\n");
    mean_sd(r.samples, r.tps_mean, r.tps_sd);
    r.gb_per_s = r.bytes_per_rep * a_.reps / std::max(total_s, 1e-9) / 1e9;
  }

  const ModelConfig& c_;
  const BenchArgs& a_;
  Forward fwd_;
  double weight_bytes_ = 0;
};

class Printer {
 public:
  Printer(const BenchArgs& a, std::string model_name) : a_(a), model_(std::move(model_name)) {
    width_ = std::max<int>(5, (int)model_.size());
  }

  void row(const std::string& test, const std::string& tps, double gbs) {
    // fmt pads by display width, so the multi-byte "±" does not shift the columns as printf would.
    if (!header_done_) {
      fmt::print("| {:<{}} | {:>7} | {:>10} | {:>20} | {:>8} |\n", "model", width_, "threads", "test", "t/s", "GB/s");
      fmt::print("| {:-<{}} | ------: | ---------: | -------------------: | -------: |\n", "", width_);
      header_done_ = true;
    }
    fmt::print("| {:<{}} | {:>7} | {:>10} | {:>20} | {:>8.2f} |\n", model_, width_, a_.threads, test, tps, gbs);
    std::fflush(stdout);
  }

  void set_vocab(int n_vocab) { n_vocab_ = n_vocab; }

  void result(const Result& r, double weight_bytes) {
    if (a_.json) {
      nlohmann::ordered_json j = {{"model", model_},
                          {"threads", a_.threads},
                          {"test", r.test},
                          {"tokens_per_s", r.tps_mean},
                          {"tokens_per_s_sd", r.tps_sd},
                          {"gb_per_s", r.gb_per_s},
                          {"n_prompt", r.n_prompt},
                          {"n_gen", r.n_gen},
                          {"n_batch", r.n_batch},
                          {"reps", a_.reps},
                          {"weight_bytes", (uint64_t)weight_bytes},
                          {"n_vocab", n_vocab_},
                          {"seed", a_.seed},
                          {"kv_bytes_per_rep", (uint64_t)r.kv_bytes_per_rep},
                          {"bytes_per_rep", (uint64_t)r.bytes_per_rep},
                          {"samples_tokens_per_s", r.samples},
                          {"isa", isa_name(active_isa())}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
      return;
    }
    row(r.test, fmt::format("{:.2f} ± {:.2f}", r.tps_mean, r.tps_sd), r.gb_per_s);
  }

  void bandwidth(const MemBandwidth& m) {
    if (a_.json) {
      nlohmann::ordered_json j = {{"model", model_},
                          {"threads", a_.threads},
                          {"test", "membw"},
                          {"tokens_per_s", nullptr},
                          {"tokens_per_s_sd", nullptr},
                          {"gb_per_s", m.best_gb_per_s},
                          {"gb_per_s_mean", m.mean_gb_per_s},
                          {"buffer_bytes", (uint64_t)m.bytes},
                          {"passes", m.passes},
                          {"isa", m.isa}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
      return;
    }
    row("membw", "-", m.best_gb_per_s);
  }

 private:
  const BenchArgs& a_;
  std::string model_;
  int width_ = 5;
  int n_vocab_ = 0;
  bool header_done_ = false;
};

void do_bench(const BenchArgs& a) {
  const std::vector<int> batches = parse_batches(a.batches);
  const bool want_model = a.n_prompt > 0 || a.n_gen > 0;
  if (a.model.empty() && !a.bandwidth) fail("no model: give -m MODEL (or --bandwidth alone for the memory probe)");
  if (!a.model.empty() && !want_model && !a.bandwidth)
    fail("nothing to run: -p and -n are both 0 (add --bandwidth for the memory probe)");
  if (!batches.empty() && a.n_gen == 0 && !a.model.empty())
    std::fprintf(stderr, "stepq bench: -n 0: no batch tests (they time -n decode steps)\n");

  const std::string model_name = a.model.empty() ? "" : std::filesystem::path(a.model).filename().string();
  Printer out(a, model_name);

  auto run_probe = [&] {
    if (!a.bandwidth) return;
    std::fprintf(stderr, "stepq bench: membw: reading %d MiB, best of %d passes, %d threads\n", a.bw_mib,
                 a.bw_passes, a.threads);
    ThreadPool pool(a.threads);
    out.bandwidth(measure_read_bandwidth(pool, (size_t)a.bw_mib << 20, a.bw_passes));
  };
  if (a.model.empty() || !want_model) {
    run_probe();
    return;
  }

  // Loaded and checked before the probe, so a bad flag fails at once.
  auto model = Model::load(a.model);
  const ModelConfig& c = model->config();
  // Positions past the trained context are not what the model is for and, with RoPE, not what
  // a user would run; refuse them rather than time something meaningless.
  if (c.n_ctx_train > 0) {
    if (a.n_prompt > c.n_ctx_train)
      fail("-p {} is larger than the model's context ({} tokens)", a.n_prompt, c.n_ctx_train);
    if (a.n_gen > c.n_ctx_train)
      fail("-n {} is larger than the model's context ({} tokens)", a.n_gen, c.n_ctx_train);
    if (!batches.empty() && a.n_gen > 0 && kBatchPrompt + a.n_gen > c.n_ctx_train)
      fail("batch tests need {} + -n {} tokens of context, more than the model's {}", kBatchPrompt, a.n_gen,
           c.n_ctx_train);
  }
  std::fprintf(stderr, "stepq bench: %s (%s, %d layers, %.1f MB of weights read per forward), %d threads, %s\n",
               model_name.c_str(), arch_name(c.arch), c.n_layer, model->weight_bytes_per_token() / 1e6, a.threads,
               isa_name(active_isa()));

  run_probe();
  out.set_vocab(c.n_vocab);
  Bencher b(*model, a);
  if (a.n_prompt > 0) out.result(b.pp(a.n_prompt), b.weight_bytes());
  if (a.n_gen > 0) {
    out.result(b.tg(a.n_gen), b.weight_bytes());
    for (int B : batches) out.result(b.batch(B, a.n_gen), b.weight_bytes());
  }
}

}  // namespace

void add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* c =
      app.add_subcommand("bench", "Prefill / decode / batched-decode speed (like llama-bench) and memory bandwidth");
  // The definitions go in the footer, so `stepq --help` keeps one line per subcommand.
  c->footer(
      "\nTests: pp<p>: one forward over p random tokens from an empty cache. tg<n>: n single-token\n"
      "forwards from an empty cache. batch<B>: B sequences, each first given a 16-token prompt\n"
      "(not timed), then n steps in which all B get one new token in one forward; t/s = B*n/time.\n"
      "Each test runs once untimed (warm-up), then -r timed times; t/s is mean ± sample sd.\n"
      "-p 0, -n 0 or -b '' skip those tests.\n\n" +
          std::string(kBytesHelp) +
          "\n\n--bandwidth adds test 'membw': the best-of-passes read rate of a --bw-mib buffer with -t\n"
          "threads (the ceiling for decode). With --bandwidth and no -m only the probe runs.\n"
          "--json: one JSON object per line, keys model, threads, test, tokens_per_s, tokens_per_s_sd,\n"
          "gb_per_s (+ n_prompt, n_gen, n_batch, reps, weight_bytes, ...); membw has null tokens_per_s.\n");
  c->add_option("-m,--model", a->model, "Model file (GGUF); required unless --bandwidth")->check(CLI::ExistingFile);
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
  c->add_option("-p,--n-prompt", a->n_prompt, "Prompt tokens for the pp test; 0 = skip")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  c->add_option("-n,--n-gen", a->n_gen, "Decode steps for tg and batch tests; 0 = skip both")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  c->add_option("-r,--repetitions", a->reps, "Timed repetitions per test (after one warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  c->add_option("-b,--batch", a->batches, "Batch sizes for batched decode, comma-separated; '' = none")
      ->capture_default_str();
  c->add_flag("--json", a->json, "One JSON object per result line instead of the table");
  c->add_flag("--bandwidth", a->bandwidth, "Also run the memory read bandwidth probe (alone if no -m)");
  c->add_option("--bw-mib", a->bw_mib,
                "Probe buffer in MiB; keep it far above the L3 cache, or it measures the cache")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  c->add_option("--bw-passes", a->bw_passes, "Probe passes (the best is reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  c->add_option("--seed", a->seed, "Seed of the random token ids")->capture_default_str();
  c->callback([a] { do_bench(*a); });
}

}  // namespace stepq::cli
