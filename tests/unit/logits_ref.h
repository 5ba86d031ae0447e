// llama.cpp reference logits (tools/make_logits_reference.py, tools/make_moe_reference.py) and
// the checks every architecture's forward goes through: agreement with them, batch invariance,
// chunking invariance.
#pragma once
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <vector>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "test_models.h"

namespace stepq::test {

struct LogitsRef {
  int n_tokens = 0, top_k = 0, n_vocab = 0;
  int window = 0;                    // > 0: tokens are independent sequences of this many tokens
  std::vector<int32_t> tokens;
  std::vector<float> lse;            // (n)
  std::vector<int32_t> ids;          // (n, k)
  std::vector<float> logits;         // (n, k)
  nlohmann::json meta;
};

// dir: a folder under tests/data ("logits", "moe").
inline LogitsRef load_ref(const std::string& name, const std::string& folder = "logits") {
  LogitsRef r;
  const std::string dir = test::source_dir() + "/tests/data/" + folder + "/";
  std::ifstream js(dir + name + ".json");
  if (!js) throw Error("missing reference " + dir + name + ".json (run tools/make_logits_reference.py)");
  js >> r.meta;
  r.n_tokens = r.meta["n_tokens"];
  r.top_k = r.meta["top_k"];
  r.n_vocab = r.meta["n_vocab"];
  r.window = r.meta.value("window", 0);
  std::ifstream bin(dir + name + ".bin", std::ios::binary);
  std::vector<char> blob((std::istreambuf_iterator<char>(bin)), {});
  const size_t need = 4 * r.n_tokens + (size_t)r.n_tokens * (4 + 8 * r.top_k);
  if (blob.size() != need) throw Error("reference " + name + ".bin has the wrong size");
  const char* p = blob.data();
  r.tokens.resize(r.n_tokens);
  std::memcpy(r.tokens.data(), p, 4 * r.n_tokens);
  p += 4 * r.n_tokens;
  r.lse.resize(r.n_tokens);
  r.ids.resize((size_t)r.n_tokens * r.top_k);
  r.logits.resize((size_t)r.n_tokens * r.top_k);
  for (int i = 0; i < r.n_tokens; i++) {
    std::memcpy(&r.lse[i], p, 4);
    p += 4;
    std::memcpy(&r.ids[(size_t)i * r.top_k], p, 4 * r.top_k);
    p += 4 * r.top_k;
    std::memcpy(&r.logits[(size_t)i * r.top_k], p, 4 * r.top_k);
    p += 4 * r.top_k;
  }
  return r;
}

inline float logsumexp(const float* x, int n) {
  float m = *std::max_element(x, x + n);
  double s = 0;
  for (int i = 0; i < n; i++) s += std::exp((double)x[i] - m);
  return m + (float)std::log(s);
}

inline int argmax(const float* x, int n) { return (int)(std::max_element(x, x + n) - x); }

// KL(p_ref || p_ours) over the reference's top-k tokens plus one bucket for the rest of the
// vocabulary (a slight underestimate of the full KL; exact when the top-k hold all the mass).
inline double kl_topk(const LogitsRef& r, int pos, const float* ours, float ours_lse) {
  double kl = 0, ref_mass = 0, our_mass = 0;
  for (int j = 0; j < r.top_k; j++) {
    const int id = r.ids[(size_t)pos * r.top_k + j];
    const double lp = r.logits[(size_t)pos * r.top_k + j] - r.lse[pos];
    const double lq = ours[id] - ours_lse;
    kl += std::exp(lp) * (lp - lq);
    ref_mass += std::exp(lp);
    our_mass += std::exp(lq);
  }
  const double pr = std::max(1.0 - ref_mass, 0.0), qr = std::max(1.0 - our_mass, 1e-12);
  if (pr > 1e-12) kl += pr * std::log(pr / qr);
  return kl;
}

struct Agreement {
  double top1 = 0, mean_kl = 0, max_kl = 0;
  // Top-1 misses where the reference's own logits for its pick and for ours are within kTie: a
  // coin flip for any two float orderings, not an error.
  int tie_misses = 0;
  // Mean KL without the worst n/128 positions (at least one): what is left when a few router
  // near-ties flip a token's experts.
  double trimmed_kl = 0;
  static constexpr float kTie = 0.01f;
};

// stepq's logits for the reference's tokens (fed 128 at a time) against the reference's.
inline Agreement agreement(const LogitsRef& r, const Model& model) {
  Forward fwd(model, 2);
  KvCache kv(model.config(), r.n_tokens);
  const int V = r.n_vocab, chunk = r.window > 0 ? r.window : 128;
  int agree = 0, ties = 0;
  std::vector<double> kls;
  for (int i = 0; i < r.n_tokens; i += chunk) {
    const int n = std::min(chunk, r.n_tokens - i);
    if (r.window > 0) kv.truncate(0);  // each window is its own sequence
    SequenceInput in{&kv, {r.tokens.data() + i, (size_t)n}, true};
    std::span<const float> logits = fwd.run({&in, 1});
    for (int t = 0; t < n; t++) {
      const float* row = logits.data() + (size_t)t * V;
      const int pos = i + t;
      const int ours = argmax(row, V);
      const int32_t* ids = &r.ids[(size_t)pos * r.top_k];
      const float* ref = &r.logits[(size_t)pos * r.top_k];
      if (ours == ids[0]) {
        agree++;
      } else {
        for (int j = 1; j < r.top_k; j++)
          if (ids[j] == ours && ref[0] - ref[j] <= Agreement::kTie) ties++;
      }
      kls.push_back(kl_topk(r, pos, row, logsumexp(row, V)));
    }
  }
  Agreement g;
  g.top1 = (double)agree / r.n_tokens;
  g.tie_misses = ties;
  g.mean_kl = std::accumulate(kls.begin(), kls.end(), 0.0) / r.n_tokens;
  std::sort(kls.begin(), kls.end());
  g.max_kl = kls.back();
  const size_t keep = kls.size() - std::max<size_t>(1, kls.size() / 128);
  g.trimmed_kl = std::accumulate(kls.begin(), kls.begin() + keep, 0.0) / std::max<size_t>(keep, 1);
  return g;
}

// A sequence's logits do not depend on what else is in the batch.
inline void check_batch_invariance(const std::string& path, const std::string& name) {
  auto model = Model::load(path);
  const ModelConfig& c = model->config();
  Forward fwd(*model, 2);
  std::vector<std::vector<int32_t>> seqs = {{1, 2, 3, 4, 5, 6, 7}, {100, 200, 300}, {42}};
  for (auto& s : seqs)
    for (auto& t : s) t %= c.n_vocab;
  std::vector<std::vector<float>> alone;
  for (auto& s : seqs) {
    KvCache kv(c, 32);
    SequenceInput in{&kv, s, true};
    auto l = fwd.run({&in, 1});
    alone.emplace_back(l.begin(), l.end());
  }
  std::vector<std::unique_ptr<KvCache>> kvs;
  std::vector<SequenceInput> batch;
  for (auto& s : seqs) {
    kvs.push_back(std::make_unique<KvCache>(c, 32));
    batch.push_back({kvs.back().get(), s, true});
  }
  auto l = fwd.run(batch);
  for (size_t i = 0; i < seqs.size(); i++) {
    const float* got = l.data() + (size_t)fwd.output_offset((int)i) * c.n_vocab;
    ASSERT_EQ(std::memcmp(got, alone[i].data(), alone[i].size() * 4), 0) << name << " sequence " << i;
  }
}
// A sequence's logits do not depend on how its tokens arrive: one at a time (decode), k at a
// time (speculative verification) or all at once (prefill), bit for bit.
inline void check_chunking_invariance(const std::string& path, const std::string& name) {
  auto model = Model::load(path);
  const ModelConfig& c = model->config();
  Forward fwd(*model, 2);
  std::vector<int32_t> toks(23);
  for (size_t i = 0; i < toks.size(); i++) toks[i] = (int32_t)((i * 7919 + 13) % 20000);
  std::vector<std::vector<float>> runs;
  for (int k : {1, 4, 23}) {
    KvCache kv(c, 32);
    std::vector<float> all;
    for (size_t i = 0; i < toks.size(); i += k) {
      const size_t n = std::min(toks.size() - i, (size_t)k);
      SequenceInput in{&kv, {toks.data() + i, n}, true};
      auto l = fwd.run({&in, 1});
      all.insert(all.end(), l.begin(), l.end());
    }
    runs.push_back(std::move(all));
  }
  ASSERT_EQ(runs[0].size(), runs[2].size());
  ASSERT_EQ(std::memcmp(runs[0].data(), runs[2].data(), runs[0].size() * 4), 0) << name << ": one at a time vs all";
  ASSERT_EQ(std::memcmp(runs[1].data(), runs[2].data(), runs[1].size() * 4), 0) << name << ": 4 at a time vs all";
}
}  // namespace stepq::test
