// The sampler (src/runtime/sampler.h).
//
// - The generator's stream is pinned by golden values from an independent Python
//   implementation of splitmix64 + xoshiro256**; same seed → same tokens, other seed → others.
// - Hand-computed distributions for each transform alone and combined, the chain's order
//   (top-p sees top-k's renormalized mass, min-p works at temperature 1), edge cases.
// - probabilities() against a plain full-sort reference of the chain on random logits with ties,
//   awkward vocab sizes and random parameters, up to a 262144-token vocab.
// - Empirical frequencies of sample() and sample_from() against their distributions with a
//   chi-square test whose threshold is the 1e-6 tail (fixed seeds: it cannot flake), and proof
//   that the same check rejects a slightly wrong distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "base/error.h"
#include "runtime/sampler.h"

namespace stepq {
namespace {

SamplerParams plain(float temperature = 1.0f) {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  return p;
}

std::vector<float> probs_of(const Sampler& s, const std::vector<float>& logits) {
  std::vector<float> pr(logits.size(), -1.0f);
  s.probabilities(logits.data(), pr.data());
  return pr;
}

// softmax(l / t) over the tokens in `keep`, zero elsewhere, in double.
std::vector<double> softmax_over(const std::vector<float>& l, const std::vector<int>& keep, double t = 1.0) {
  std::vector<double> out(l.size(), 0.0);
  double mx = -INFINITY, sum = 0;
  for (int i : keep) mx = std::max(mx, (double)l[(size_t)i]);
  for (int i : keep) sum += out[(size_t)i] = std::exp(((double)l[(size_t)i] - mx) / t);
  for (int i : keep) out[(size_t)i] /= sum;
  return out;
}

void expect_probs(const std::vector<float>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double sum = 0;
  for (size_t i = 0; i < got.size(); i++) {
    sum += got[i];
    if (want[i] == 0)
      EXPECT_EQ(got[i], 0.0f) << what << ": token " << i << " should be filtered out";
    else
      EXPECT_NEAR(got[i], want[i], 1e-6 + 1e-5 * want[i]) << what << ": token " << i;
  }
  EXPECT_NEAR(sum, 1.0, 1e-5) << what;
}

std::vector<int> support(const std::vector<float>& pr) {
  std::vector<int> s;
  for (size_t i = 0; i < pr.size(); i++)
    if (pr[i] > 0) s.push_back((int)i);
  return s;
}

// The chain written the obvious way: penalize a copy, sort every token (logit desc, id asc),
// cut prefixes, softmax in double. Shares no code with the sampler.
std::vector<double> reference_probs(std::vector<float> l, const SamplerParams& p,
                                    const std::vector<int32_t>& history) {
  const int n = (int)l.size();
  if (p.repeat_penalty != 1.0f && p.repeat_last_n > 0) {
    const size_t from = history.size() > (size_t)p.repeat_last_n ? history.size() - (size_t)p.repeat_last_n : 0;
    std::set<int32_t> recent(history.begin() + (ptrdiff_t)from, history.end());
    for (int32_t t : recent) l[(size_t)t] = l[(size_t)t] > 0 ? l[(size_t)t] / p.repeat_penalty : l[(size_t)t] * p.repeat_penalty;
  }
  std::vector<int> order((size_t)n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[(size_t)a] > l[(size_t)b]; });
  std::vector<double> out((size_t)n, 0.0);
  if (p.temperature <= 0) {
    out[(size_t)order[0]] = 1.0;
    return out;
  }
  int m = (p.top_k > 0 && p.top_k < n) ? p.top_k : n;
  const float l_max = l[(size_t)order[0]];
  if (p.top_p < 1.0f) {
    double total = 0, cum = 0;
    for (int i = 0; i < m; i++) total += std::exp(l[(size_t)order[(size_t)i]] - l_max);
    int keep = m;
    for (int i = 0; i < m; i++) {
      cum += std::exp(l[(size_t)order[(size_t)i]] - l_max);
      if (cum >= (double)p.top_p * total) {
        keep = i + 1;
        break;
      }
    }
    m = keep;
  }
  if (p.min_p > 0.0f) {
    const float l_min = l_max + std::log(p.min_p);
    int i = 1;
    while (i < m && l[(size_t)order[(size_t)i]] >= l_min) i++;
    m = i;
  }
  return softmax_over(l, std::vector<int>(order.begin(), order.begin() + m), p.temperature);
}

// ---- statistics -------------------------------------------------------------------------------

// Upper 1e-6 quantile of chi-square with df degrees of freedom (Wilson–Hilferty; a little
// conservative for df = 1, where it gives 27.5 against the exact 23.9).
double chi2_critical_1e6(int df) {
  const double z = 4.753;  // standard normal upper 1e-6 point
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

struct Fit {
  double chi2 = 0, critical = 0, max_sigma = 0;
  int df = 0;
  int64_t impossible = 0;  // draws of tokens whose probability is 0
  bool ok() const { return impossible == 0 && chi2 < critical && max_sigma < 6.0; }
};

// Pearson's chi-square of `counts` (n_draws in all) against `probs`. Bins expecting fewer than
// 5 draws are pooled into one so the chi-square approximation holds. max_sigma: the largest
// |count - N p| / sqrt(N p (1 - p)) over tokens, a per-token check (6 sigma: tail 2e-9).
// With the 1e-6 threshold a correct sampler fails one random seed in a million; the tests use
// fixed seeds, so a pass is a pass forever, and the wrong-distribution tests show that the same
// threshold still rejects a 1% error at this sample size.
Fit fit(const std::vector<int64_t>& counts, const std::vector<double>& probs, int64_t n_draws) {
  Fit f;
  double pooled_obs = 0, pooled_exp = 0;
  int bins = 0;
  for (size_t i = 0; i < probs.size(); i++) {
    const double e = probs[i] * (double)n_draws;
    if (probs[i] == 0) {
      f.impossible += counts[i];
      continue;
    }
    if (probs[i] < 1.0)
      f.max_sigma = std::max(f.max_sigma, std::fabs((double)counts[i] - e) / std::sqrt(e * (1.0 - probs[i])));
    if (e < 5) {
      pooled_obs += (double)counts[i];
      pooled_exp += e;
      continue;
    }
    f.chi2 += ((double)counts[i] - e) * ((double)counts[i] - e) / e;
    bins++;
  }
  if (pooled_exp > 0) {
    f.chi2 += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
    bins++;
  }
  f.df = std::max(1, bins - 1);
  f.critical = chi2_critical_1e6(f.df);
  return f;
}

std::string describe(const Fit& f) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "chi2 %.1f (df %d, 1e-6 critical %.1f), max sigma %.2f, impossible draws %lld",
                f.chi2, f.df, f.critical, f.max_sigma, (long long)f.impossible);
  return buf;
}

std::vector<float> random_logits(std::mt19937& rng, int n, float scale, bool ties) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> l((size_t)n);
  for (float& x : l) x = ties ? std::round(d(rng) * 2.0f) / 2.0f : d(rng);
  return l;
}

// ---- generator ----------------------------------------------------------------------------------

TEST(Rng, GoldenStream) {
  // First outputs of xoshiro256** seeded by splitmix64, from an independent Python implementation.
  const struct {
    uint64_t seed, want[4];
  } cases[] = {
      {0, {0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull, 0x6aa594f1262d2d2cull}},
      {12345, {0xbe6a36374160d49bull, 0x214aaa0637a688c6ull, 0xf69d16de9954d388ull, 0x0c60048c4e96e033ull}},
      {~0ull, {0x8f5520d52a7ead08ull, 0xc476a018caa1802dull, 0x81de31c0d260469eull, 0xbf658d7e065f3c2full}},
  };
  for (const auto& c : cases) {
    Rng r(c.seed);
    for (uint64_t w : c.want) EXPECT_EQ(r.next(), w) << "seed " << c.seed;
  }
}

TEST(Rng, UniformIsInUnitIntervalAndUnbiased) {
  Rng r(7);
  double sum = 0;
  const int n = 200000;
  for (int i = 0; i < n; i++) {
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  // mean of n uniforms: sd = sqrt(1/12 / n) ≈ 6.5e-4
  EXPECT_NEAR(sum / n, 0.5, 6 * 6.5e-4);

  Sampler s(plain(), 4);
  for (int i = 0; i < 10000; i++) {
    const float u = s.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
  }
}

// ---- greedy and determinism ---------------------------------------------------------------------

TEST(Sampler, GreedyIsArgmaxWithTiesToLowestId) {
  Sampler s(plain(0.0f), 6);
  const std::vector<float> l = {1.0f, 5.0f, -2.0f, 5.0f, 4.9f, -INFINITY};
  EXPECT_EQ(s.sample(l.data()), 1);
  expect_probs(probs_of(s, l), {0, 1, 0, 0, 0, 0}, "greedy one-hot");

  Sampler neg(plain(-1.0f), 3);  // any temperature <= 0 is greedy
  const std::vector<float> all_neg = {-7.0f, -3.0f, -3.0f};
  EXPECT_EQ(neg.sample(all_neg.data()), 1);

  std::mt19937 rng(1);
  SamplerParams p = SamplerParams{};  // defaults, greedy: the filters never change the argmax
  p.temperature = 0.0f;
  Sampler d(p, 1000);
  for (int rep = 0; rep < 50; rep++) {
    const auto r = random_logits(rng, 1000, 3.0f, true);
    EXPECT_EQ(d.sample(r.data()), (int)(std::max_element(r.begin(), r.end()) - r.begin()));
  }
}

TEST(Sampler, TopK1IsGreedy) {
  std::mt19937 rng(2);
  SamplerParams p;  // defaults with top-k 1
  p.top_k = 1;
  p.seed = 99;
  Sampler s(p, 777);
  for (int rep = 0; rep < 200; rep++) {
    const auto l = random_logits(rng, 777, 2.0f, true);  // many ties at the top
    const int want = (int)(std::max_element(l.begin(), l.end()) - l.begin());
    ASSERT_EQ(s.sample(l.data()), want);
    std::vector<double> one_hot(777, 0.0);
    one_hot[(size_t)want] = 1.0;
    expect_probs(probs_of(s, l), one_hot, "top-k 1");
  }
}

TEST(Sampler, SameSeedSameSequenceOtherSeedOther) {
  std::mt19937 rng(3);
  const auto l = random_logits(rng, 500, 1.0f, false);
  auto run = [&](uint64_t seed) {
    SamplerParams p;  // llama.cpp defaults
    p.seed = seed;
    p.repeat_penalty = 1.1f;
    Sampler s(p, 500);
    std::vector<int32_t> out;
    for (int i = 0; i < 300; i++) {
      out.push_back(s.sample(l.data()));
      s.accept(out.back());
    }
    return out;
  };
  const auto a = run(42), b = run(42), c = run(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);

  // reset() clears the history and re-seeds: the same sequence again.
  SamplerParams p;
  p.seed = 42;
  p.repeat_penalty = 1.1f;
  Sampler s(p, 500);
  for (int i = 0; i < 50; i++) s.accept(s.sample(l.data()));
  s.reset();
  for (int i = 0; i < 300; i++) {
    const int32_t t = s.sample(l.data());
    ASSERT_EQ(t, a[(size_t)i]) << "draw " << i;
    s.accept(t);
  }
}

// ---- each transform, by hand ------------------------------------------------------------------

// softmax([2, 1, 0, -1]) = [0.6439, 0.2369, 0.0871, 0.0321]
const std::vector<float> kFour = {2.0f, 1.0f, 0.0f, -1.0f};

TEST(Sampler, TemperatureAlone) {
  for (float t : {1.0f, 0.5f, 2.0f, 0.01f}) {
    Sampler s(plain(t), 4);
    expect_probs(probs_of(s, kFour), softmax_over(kFour, {0, 1, 2, 3}, t), "temperature");
  }
  const std::vector<double> at1 = {0.643914, 0.236883, 0.087144, 0.032059};  // numpy
  Sampler s(plain(1.0f), 4);
  expect_probs(probs_of(s, kFour), at1, "softmax by hand");
}

TEST(Sampler, TopKAlone) {
  SamplerParams p = plain();
  p.top_k = 2;
  expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, {0, 1}), "top-k 2");
  p.top_k = 4;  // = n_vocab: off
  expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, {0, 1, 2, 3}), "top-k n");
  p.top_k = 100;
  expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, {0, 1, 2, 3}), "top-k > n");
  // A tie at the k-th place goes to the lower id.
  const std::vector<float> tie = {0.0f, 3.0f, 1.0f, 3.0f, 1.0f};
  p.top_k = 3;
  expect_probs(probs_of(Sampler(p, 5), tie), softmax_over(tie, {1, 2, 3}), "top-k tie");
}

TEST(Sampler, TopPAlone) {
  SamplerParams p = plain();
  // cumulative: 0.644, 0.881, 0.968, 1.0
  const struct {
    float top_p;
    std::vector<int> keep;
  } cases[] = {{0.6f, {0}},       {0.7f, {0, 1}},       {0.88f, {0, 1}},
               {0.9f, {0, 1, 2}}, {0.95f, {0, 1, 2}},   {0.99f, {0, 1, 2, 3}},
               {1.0f, {0, 1, 2, 3}} /* off */,          {0.0f, {0}} /* at least one */};
  for (const auto& c : cases) {
    p.top_p = c.top_p;
    expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, c.keep), "top-p");
  }
  // All equal: a top-p just below 1 still keeps every token (the prefix must reach p).
  const std::vector<float> flat(10, 0.5f);
  p.top_p = 0.999f;
  EXPECT_EQ(support(probs_of(Sampler(p, 10), flat)).size(), 10u);
  p.top_p = 0.25f;  // 0.1 per token → three tokens reach 0.3 >= 0.25; ties → lowest ids
  expect_probs(probs_of(Sampler(p, 10), flat), softmax_over(flat, {0, 1, 2}), "top-p flat");
}

TEST(Sampler, MinPAlone) {
  SamplerParams p = plain();
  // p_i / p_max = e^(l_i - 2): 1, 0.368, 0.135, 0.0498
  const struct {
    float min_p;
    std::vector<int> keep;
  } cases[] = {{0.3f, {0, 1}},       {0.1f, {0, 1, 2}}, {0.04f, {0, 1, 2, 3}},
               {0.0f, {0, 1, 2, 3}} /* off */,          {0.9f, {0}}, {1.0f, {0}}, {7.0f, {0}}};
  for (const auto& c : cases) {
    p.min_p = c.min_p;
    expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, c.keep), "min-p");
  }
  // min_p = 1 keeps every token tied with the max; min_p > 1 keeps the max alone (lowest id).
  const std::vector<float> tie = {1.0f, 4.0f, 4.0f, 0.0f};
  p.min_p = 1.0f;
  expect_probs(probs_of(Sampler(p, 4), tie), softmax_over(tie, {1, 2}), "min-p 1, ties");
  p.min_p = 3.0f;
  expect_probs(probs_of(Sampler(p, 4), tie), softmax_over(tie, {1}), "min-p > 1");
}

TEST(Sampler, ChainOrder) {
  // top-p sees the mass renormalized over top-k's survivors: over {2, 1} token 0 has 0.731 >= 0.7,
  // so one token stays, where top-p 0.7 alone keeps two.
  SamplerParams p = plain();
  p.top_k = 2;
  p.top_p = 0.7f;
  expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, {0}), "top-k then top-p");

  // min-p compares at temperature 1: at T = 2, token 1 has ratio e^-1 = 0.368 >= 0.3 and token 2
  // e^-2 = 0.135 < 0.3 (after temperature it would be e^-1 and pass). Then temperature 2.
  p = plain(2.0f);
  p.min_p = 0.3f;
  expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, {0, 1}, 2.0), "min-p at T=1");

  // Likewise top-p is measured at temperature 1 (at T = 3 the top token has only 0.43).
  p = plain(3.0f);
  p.top_p = 0.6f;
  expect_probs(probs_of(Sampler(p, 4), kFour), softmax_over(kFour, {0}, 3.0), "top-p at T=1");
}

TEST(Sampler, AllTransformsCombined) {
  // top-k 3 → {2, 1, 0}; softmax over them 0.665, 0.245, 0.090; top-p 0.9 → {0, 1} (0.910);
  // min-p 0.1: ratio 0.368 → both stay; T = 0.7: exp(-1/0.7) = 0.2397 → 0.8067, 0.1933.
  SamplerParams p;
  p.temperature = 0.7f;
  p.top_k = 3;
  p.top_p = 0.9f;
  p.min_p = 0.1f;
  expect_probs(probs_of(Sampler(p, 4), kFour), {0.806679, 0.193321, 0, 0}, "combined by hand");

  // With a penalty: history {0}, penalty 2: logit 2 → 1, so the order is 1, 0, 2 (logits 1, 1, 0:
  // tie between 0 and 1 → id 0 first). top-k 3 keeps {0, 1, 2}; softmax 0.4223, 0.4223, 0.1554;
  // top-p 0.9 → all three (0.845 < 0.9); min-p 0.3: ratio of token 2 e^-1 = 0.368 stays.
  p.repeat_penalty = 2.0f;
  const std::vector<float> pen = {1.0f, 1.0f, 0.0f, -1.0f};
  p.min_p = 0.3f;
  Sampler s2(p, 4);
  s2.accept(0);
  expect_probs(probs_of(s2, kFour), softmax_over(pen, {0, 1, 2}, 0.7), "combined with penalty");
}

TEST(Sampler, RepeatPenalty) {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 1.1f;
  {
    // positive logit divided: 3 / 1.1 = 2.727 < 2.9
    Sampler s(p, 2);
    const std::vector<float> l = {3.0f, 2.9f};
    EXPECT_EQ(s.sample(l.data()), 0);
    s.accept(0);
    EXPECT_EQ(s.sample(l.data()), 1);
  }
  {
    // negative logit multiplied: -1 * 1.1 = -1.1 < -1.05
    Sampler s(p, 2);
    const std::vector<float> l = {-1.0f, -1.05f};
    EXPECT_EQ(s.sample(l.data()), 0);
    s.accept(0);
    EXPECT_EQ(s.sample(l.data()), 1);
  }
  // Distribution: history {0, 1, 1, 4}; each distinct token once: 2 → 1, -1 → -2 (not -4),
  // 0 stays 0, unseen tokens unchanged. Logits are not modified.
  p = plain(1.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p, 5);
  for (int32_t t : {0, 1, 1, 4}) s.accept(t);
  const std::vector<float> l = {2.0f, -1.0f, 0.5f, 1.5f, 0.0f};
  const std::vector<float> l_copy = l;
  expect_probs(probs_of(s, l), softmax_over({1.0f, -2.0f, 0.5f, 1.5f, 0.0f}, {0, 1, 2, 3, 4}), "penalty");
  EXPECT_EQ(l, l_copy);

  // Window: with repeat_last_n 2 only the last two accepted tokens count.
  p.repeat_last_n = 2;
  Sampler w(p, 5);
  for (int32_t t : {0, 1, 1, 4}) w.accept(t);  // window {1, 4}
  expect_probs(probs_of(w, l), softmax_over({2.0f, -2.0f, 0.5f, 1.5f, 0.0f}, {0, 1, 2, 3, 4}), "window");
  // repeat_last_n 0 and penalty 1 are off.
  p.repeat_last_n = 0;
  Sampler off(p, 5);
  off.accept(0);
  expect_probs(probs_of(off, l), softmax_over(l, {0, 1, 2, 3, 4}), "last_n 0");
  // reset() forgets the history.
  s.reset();
  expect_probs(probs_of(s, l), softmax_over(l, {0, 1, 2, 3, 4}), "after reset");
}

// ---- against the reference on random cases ----------------------------------------------------

TEST(Sampler, MatchesReferenceOnRandomCases) {
  std::mt19937 rng(2024);
  const int sizes[] = {1, 2, 3, 17, 63, 64, 65, 1000, 5003, 40001};
  int n_cases = 0;
  for (int n : sizes) {
    for (int rep = 0; rep < 12; rep++) {
      SamplerParams p;
      p.temperature = std::uniform_real_distribution<float>(0.05f, 2.0f)(rng);
      const int kk = (int)(rng() % 6);
      p.top_k = kk == 0 ? 0 : kk == 1 ? 1 : kk == 2 ? n : (int)(rng() % (uint32_t)n) + 1;
      p.top_p = rng() % 3 == 0 ? 1.0f : std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
      p.min_p = rng() % 3 == 0 ? 0.0f : std::uniform_real_distribution<float>(0.0f, 0.5f)(rng);
      p.repeat_penalty = rng() % 2 ? 1.0f : std::uniform_real_distribution<float>(0.5f, 2.0f)(rng);
      p.repeat_last_n = (int)(rng() % 20);
      if (rep == 0) p.temperature = 0.0f;
      const bool ties = rng() % 2;
      const float scale = std::uniform_real_distribution<float>(0.1f, 6.0f)(rng);
      const auto l = random_logits(rng, n, scale, ties);
      std::vector<int32_t> history;
      for (int i = 0, h = (int)(rng() % 30); i < h; i++) history.push_back((int32_t)(rng() % (uint32_t)n));

      Sampler s(p, n);
      for (int32_t t : history) s.accept(t);
      const auto got = probs_of(s, l);
      const auto want = reference_probs(l, p, history);
      SCOPED_TRACE(testing::Message() << "n " << n << " temp " << p.temperature << " top_k " << p.top_k
                                      << " top_p " << p.top_p << " min_p " << p.min_p << " penalty "
                                      << p.repeat_penalty << " last_n " << p.repeat_last_n);
      expect_probs(got, want, "vs reference");
      // sample() only returns tokens of the support
      for (int i = 0; i < 20; i++) {
        const int32_t t = s.sample(l.data());
        ASSERT_GT(want[(size_t)t], 0.0) << "sampled a filtered token " << t;
      }
      n_cases++;
    }
  }
  EXPECT_EQ(n_cases, 120);
}

TEST(Sampler, LargeVocabTopPWithoutTopK) {
  // 262144 tokens (gemma 3's vocab), top-k off, flat logits: top-p must look past the first 256
  // and 2048 candidates it tries before a full selection.
  const int n = 262144;
  std::mt19937 rng(5);
  for (float scale : {0.05f, 0.5f, 3.0f}) {
    const auto l = random_logits(rng, n, scale, scale > 1.0f);
    for (float top_p : {0.2f, 0.95f}) {
      SamplerParams p = plain(0.8f);
      p.top_p = top_p;
      p.min_p = scale < 0.1f ? 0.0f : 0.05f;
      const auto got = probs_of(Sampler(p, n), l);
      SCOPED_TRACE(testing::Message() << "scale " << scale << " top_p " << top_p);
      expect_probs(got, reference_probs(l, p, {}), "large vocab");
    }
  }
  // All equal (one histogram slice holds everything), and a vocab half masked with -inf.
  SamplerParams p = plain(1.0f);
  p.top_p = 0.5f;
  const std::vector<float> flat((size_t)n, 1.25f);
  expect_probs(probs_of(Sampler(p, n), flat), reference_probs(flat, p, {}), "flat");
  auto masked = random_logits(rng, n, 2.0f, false);
  for (size_t i = 0; i < masked.size(); i += 2) masked[i] = -INFINITY;
  for (float top_p : {0.0f, 0.5f, 0.999f}) {
    p.top_p = top_p;
    expect_probs(probs_of(Sampler(p, n), masked), reference_probs(masked, p, {}), "masked");
  }
}

// ---- empirical frequencies ----------------------------------------------------------------------

constexpr int64_t kDraws = 200000;

TEST(Sampler, EmpiricalFrequenciesMatchProbabilities) {
  std::mt19937 rng(11);
  const int n = 50;
  const auto l = random_logits(rng, n, 1.5f, false);
  struct Case {
    const char* name;
    SamplerParams p;
  };
  std::vector<Case> cases;
  cases.push_back({"temperature only", plain(0.9f)});
  SamplerParams d;  // llama.cpp defaults: T 0.8, top-k 40, top-p 0.95, min-p 0.05
  d.seed = 1234;
  cases.push_back({"defaults", d});
  SamplerParams c = d;
  c.top_k = 12;
  c.top_p = 0.9f;
  c.min_p = 0.02f;
  c.temperature = 1.3f;
  c.repeat_penalty = 1.3f;
  cases.push_back({"combined with penalty", c});
  for (const Case& k : cases) {
    Sampler s(k.p, n);
    if (k.p.repeat_penalty != 1.0f)
      for (int32_t t : {3, 7, 7, 20}) s.accept(t);
    const auto pr = probs_of(s, l);
    std::vector<int64_t> counts((size_t)n, 0);
    for (int64_t i = 0; i < kDraws; i++) counts[(size_t)s.sample(l.data())]++;
    const Fit f = fit(counts, std::vector<double>(pr.begin(), pr.end()), kDraws);
    EXPECT_TRUE(f.ok()) << k.name << ": " << describe(f);
    std::printf("  %-22s %zu tokens in support: %s\n", k.name, support(pr).size(), describe(f).c_str());
  }
}

TEST(Sampler, SampleFromMatchesItsInput) {
  // Unnormalized with zeros, as a speculative residual max(0, p - q) is.
  const std::vector<float> w = {0.0f, 1.5f, 0.25f, 0.0f, 0.05f, 1.0f, 0.9f, 0.0f, 0.002f};
  const double total = std::accumulate(w.begin(), w.end(), 0.0);
  std::vector<double> pr;
  for (float x : w) pr.push_back(x / total);
  Sampler s(plain(), 4);  // the sampler's vocab does not limit sample_from
  std::vector<int64_t> counts(w.size(), 0);
  for (int64_t i = 0; i < kDraws; i++) counts[(size_t)s.sample_from(w.data(), (int)w.size())]++;
  const Fit f = fit(counts, pr, kDraws);
  EXPECT_TRUE(f.ok()) << describe(f);
  EXPECT_EQ(counts[0] + counts[3] + counts[7], 0);
  std::printf("  sample_from: %s\n", describe(f).c_str());
}

TEST(Sampler, StatisticalCheckRejectsAWrongDistribution) {
  // The check above must be able to fail: draw from slightly wrong distributions and test them
  // against the right one with the same sample size.
  std::mt19937 rng(11);
  const int n = 50;
  const auto l = random_logits(rng, n, 1.5f, false);
  SamplerParams p;
  p.seed = 77;
  Sampler right(p, n);
  const auto pr = probs_of(right, l);
  const std::vector<double> claimed(pr.begin(), pr.end());

  // (a) 1% of the mass moved from the top token to the second.
  std::vector<float> moved = pr;
  const int top = (int)(std::max_element(moved.begin(), moved.end()) - moved.begin());
  std::vector<float> rest = moved;
  rest[(size_t)top] = -1;
  const int second = (int)(std::max_element(rest.begin(), rest.end()) - rest.begin());
  moved[(size_t)top] -= 0.01f;
  moved[(size_t)second] += 0.01f;
  std::vector<int64_t> counts((size_t)n, 0);
  for (int64_t i = 0; i < kDraws; i++) counts[(size_t)right.sample_from(moved.data(), n)]++;
  const Fit a = fit(counts, claimed, kDraws);
  EXPECT_FALSE(a.ok()) << "1% of mass moved went unnoticed: " << describe(a);

  // (b) temperature 0.84 sampled, 0.8 claimed.
  SamplerParams q = p;
  q.temperature = 0.84f;
  Sampler wrong(q, n);
  std::fill(counts.begin(), counts.end(), 0);
  for (int64_t i = 0; i < kDraws; i++) counts[(size_t)wrong.sample(l.data())]++;
  const Fit b = fit(counts, claimed, kDraws);
  EXPECT_FALSE(b.ok()) << "temperature 0.84 instead of 0.8 went unnoticed: " << describe(b);

  // (c) a draw that can pick a filtered token is caught even if it is rare.
  std::vector<float> leaky = pr;
  for (size_t i = 0; i < leaky.size(); i++)
    if (leaky[i] == 0) leaky[i] = 1e-4f;
  std::fill(counts.begin(), counts.end(), 0);
  for (int64_t i = 0; i < kDraws; i++) counts[(size_t)right.sample_from(leaky.data(), n)]++;
  const Fit c = fit(counts, claimed, kDraws);
  EXPECT_FALSE(c.ok()) << "draws of filtered tokens went unnoticed: " << describe(c);
  std::printf("  rejected: moved mass: %s\n  rejected: temperature: %s\n  rejected: leak: %s\n",
              describe(a).c_str(), describe(b).c_str(), describe(c).c_str());
}

// ---- errors -------------------------------------------------------------------------------------

TEST(Sampler, RejectsBadInput) {
  SamplerParams p;
  EXPECT_THROW(Sampler(p, 0), Error);
  p.repeat_penalty = 0.0f;
  EXPECT_THROW(Sampler(p, 10), Error);
  p = SamplerParams{};
  p.repeat_last_n = -1;
  EXPECT_THROW(Sampler(p, 10), Error);
  p = SamplerParams{};
  p.temperature = NAN;
  EXPECT_THROW(Sampler(p, 10), Error);

  Sampler s(SamplerParams{}, 10);
  EXPECT_THROW(s.accept(10), Error);
  EXPECT_THROW(s.accept(-1), Error);
  const std::vector<float> zeros(5, 0.0f), neg = {0.5f, -0.1f};
  EXPECT_THROW(s.sample_from(zeros.data(), 5), Error);
  EXPECT_THROW(s.sample_from(neg.data(), 2), Error);
  const std::vector<float> dead(10, -INFINITY);
  EXPECT_THROW(s.sample(dead.data()), Error);
  // One live token among -inf: always that one.
  std::vector<float> one(10, -INFINITY);
  one[6] = -50.0f;
  for (int i = 0; i < 20; i++) EXPECT_EQ(s.sample(one.data()), 6);
}

// ---- speed ----------------------------------------------------------------------------------------

TEST(Sampler, Speed) {
  // Printed, and bounded loosely (sanitizer builds are slow): a regression to a full sort of the
  // vocab costs ~10 ms and would show in the printout long before the bound.
  std::mt19937 rng(9);
  struct Case {
    const char* name;
    int n;
    SamplerParams p;
  };
  SamplerParams d;  // defaults: top-k 40
  d.repeat_penalty = 1.1f;
  SamplerParams no_k = d;
  no_k.top_k = 0;
  const Case cases[] = {{"qwen2 vocab, defaults + penalty", 151936, d},
                        {"gemma3 vocab, defaults", 262144, d},
                        {"gemma3 vocab, top-k off", 262144, no_k}};
  for (const Case& c : cases) {
    const auto l = random_logits(rng, c.n, 3.0f, false);
    Sampler s(c.p, c.n);
    for (int i = 0; i < 64; i++) s.accept((int32_t)(rng() % (uint32_t)c.n));
    const int reps = 100;
    std::vector<double> us;
    for (int i = 0; i < reps; i++) {
      const auto t0 = std::chrono::steady_clock::now();
      const int32_t t = s.sample(l.data());
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      s.accept(t);
    }
    std::sort(us.begin(), us.end());
    std::printf("  %-34s median %.0f us per token (%.2f GB/s of logits)\n", c.name, us[reps / 2],
                c.n * 4.0 / (us[reps / 2] * 1e3));
    EXPECT_LT(us[reps / 2], c.p.top_k > 0 ? 5000.0 : 50000.0) << c.name;
  }
}

}  // namespace
}  // namespace stepq
