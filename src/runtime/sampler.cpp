#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "base/error.h"

namespace stepq {

// ---- Rng --------------------------------------------------------------------------------------

namespace {

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

void Rng::seed_with(uint64_t seed) {
  // splitmix64 never yields four zero words in a row, so the state is never all zero.
  for (uint64_t& w : s_) w = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// ---- chain pieces -----------------------------------------------------------------------------

namespace {

// "a ranks before b": larger logit, then lower id. A strict total order, so "the k best" is one
// set and the candidates' order (hence which token a given uniform picks) is fully determined.
struct RanksBefore {
  const float* l;
  bool operator()(int32_t a, int32_t b) const { return l[a] > l[b] || (l[a] == l[b] && a < b); }
};

// Lowest id among the largest logits.
int32_t argmax(const float* l, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; i++)
    if (l[i] > l[best]) best = i;
  return best;
}

float max_logit(const float* l, int n) {
  float m = l[0];
  for (int i = 1; i < n; i++) m = l[i] > m ? l[i] : m;
  return m;
}

// Writes the k best tokens of l[0, n) (1 <= k <= n), best first, to out (k). One pass keeping a
// heap of the k best so far with the worst on top: almost every token loses to that worst with
// one comparison, and blocks whose maximum loses are skipped whole (that max is a reduction the
// compiler vectorizes), so the cost is about one streaming read of the logits — no sort of n.
void select_top(const float* l, int n, int k, int32_t* out) {
  const RanksBefore before{l};
  std::iota(out, out + k, 0);
  // With `before` as "less", the heap's top is the element ranking last: the worst kept.
  std::make_heap(out, out + k, before);
  constexpr int kBlock = 64;
  int i = k;
  auto consider = [&](int32_t t) {
    if (!before(t, out[0])) return;
    std::pop_heap(out, out + k, before);
    out[k - 1] = t;
    std::push_heap(out, out + k, before);
  };
  for (; i < n && i % kBlock != 0; i++) consider(i);
  for (; i + kBlock <= n; i += kBlock) {
    // A token ties the worst only if its logit equals it and, coming later, it has a higher id,
    // so it loses; a block can only matter if its max is strictly larger.
    if (max_logit(l + i, kBlock) <= l[out[0]]) continue;
    for (int j = i; j < i + kBlock; j++) consider(j);
  }
  for (; i < n; i++) consider(i);
  std::sort_heap(out, out + k, before);  // ascending under "ranks before": best first
}

// Length of the shortest prefix of id[0, m) (best first) whose mass exp(l - l_max), added to
// `cum`, reaches `target`; m if rounding never gets there.
int mass_prefix(const float* l, const int32_t* id, int m, float l_max, double cum, double target) {
  for (int i = 0; i < m; i++) {
    cum += std::exp(l[id[i]] - l_max);
    if (cum >= target) return i + 1;
  }
  return m;
}

// top-p over the whole vocabulary without sorting it. A histogram of the temperature-1 mass over
// kBuckets equal slices of the logit range below l_max (at most 64 logits deep: below that a
// token weighs < e^-64 and the last slice takes it) finds the slice where the cumulative mass
// crosses top_p * total. Every token above that slice is kept; only the slice itself is sorted
// to find the exact cut. Writes the kept tokens to id (those above the slice in id order, then
// the slice's best first) and returns their count. Costs two passes over the logits (one exp
// each, which the total needs anyway) and a sort of one slice, where a full sort of a 262144
// vocab would be ~20 ms.
int top_p_whole_vocab(const float* l, int n, float l_max, float top_p, int32_t* id) {
  constexpr int kBuckets = 1024;
  float l_min = l[0];
  for (int t = 1; t < n; t++) l_min = l[t] < l_min ? l[t] : l_min;
  const float depth = std::min(l_max - l_min, 64.0f);  // -inf logits make it inf → 64
  const float per_logit = depth > 0 ? (float)kBuckets / depth : 0.0f;
  // The same expression in both passes, so a token lands in the same slice twice. NaN and the
  // deep tail (including -inf) go to the last slice.
  auto bucket = [&](float x) {
    const float b = (l_max - x) * per_logit;
    return b < (float)(kBuckets - 1) ? (int)b : kBuckets - 1;
  };
  double mass[kBuckets] = {};
  int count[kBuckets] = {};
  for (int t = 0; t < n; t++) {
    const int b = bucket(l[t]);
    mass[b] += std::exp(l[t] - l_max);
    count[b]++;
  }
  double total = 0;
  for (double x : mass) total += x;
  const double target = (double)top_p * total;
  // The crossing slice: mass above it < target <= mass through it.
  int cross = 0, n_above = 0;
  double above = 0;
  while (cross < kBuckets - 1 && above + mass[cross] < target) {
    above += mass[cross];
    n_above += count[cross];
    cross++;
  }
  int32_t* slice = id + n_above;
  int n_above_written = 0, n_slice = 0;
  for (int t = 0; t < n; t++) {
    const int b = bucket(l[t]);
    if (b < cross)
      id[n_above_written++] = t;
    else if (b == cross)
      slice[n_slice++] = t;
  }
  std::sort(slice, slice + n_slice, RanksBefore{l});
  return n_above + mass_prefix(l, slice, n_slice, l_max, above, target);
}

// Index i < n drawn with probability w[i] / sum, given u in [0, 1). `sum` must be the sum of
// w[0, n) added in index order in double, as every caller computes it, so the running sum ends
// exactly at `sum`. Zero weights are never picked (the running sum must rise above u * sum).
int draw_index(const float* w, int n, double sum, double u) {
  const double target = u * sum;
  double cum = 0;
  int last = 0;
  for (int i = 0; i < n; i++) {
    if (w[i] <= 0) continue;
    cum += w[i];
    last = i;
    if (cum > target) return i;
  }
  return last;  // u * sum rounded up to sum: the last token with weight
}

}  // namespace

// ---- Sampler ----------------------------------------------------------------------------------

Sampler::Sampler(const SamplerParams& p, int n_vocab) : params_(p), n_vocab_(n_vocab), rng_(p.seed) {
  if (n_vocab <= 0) fail("sampler: the vocabulary has {} tokens; it needs at least one", n_vocab);
  if (std::isnan(p.temperature)) fail("sampler: temperature (--temp) is NaN");
  if (std::isnan(p.top_p)) fail("sampler: top_p (--top-p) is NaN");
  if (std::isnan(p.min_p)) fail("sampler: min_p (--min-p) is NaN");
  if (!(p.repeat_penalty > 0) || !std::isfinite(p.repeat_penalty))
    fail("sampler: repeat_penalty (--repeat-penalty) is {}; it must be a positive number (1 = off)",
         p.repeat_penalty);
  if (p.repeat_last_n < 0)
    fail("sampler: repeat_last_n (--repeat-last-n) is {}; it must be >= 0 (0 = off)", p.repeat_last_n);

  if (p.repeat_penalty != 1.0f && p.repeat_last_n > 0) {
    history_.resize((size_t)p.repeat_last_n);
    recent_.resize((size_t)p.repeat_last_n);
    work_.resize((size_t)n_vocab);
  }
  cand_id_.resize((size_t)n_vocab);
  cand_w_.resize((size_t)n_vocab);
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= n_vocab_)
    fail("sampler: token id {} is outside the vocabulary [0, {})", token, n_vocab_);
  if (history_.empty()) return;
  const int cap = (int)history_.size();
  history_[(size_t)history_next_] = token;
  history_next_ = (history_next_ + 1) % cap;
  history_len_ = std::min(history_len_ + 1, cap);
}

void Sampler::reset() {
  history_len_ = history_next_ = 0;
  rng_.seed_with(params_.seed);
}

float Sampler::uniform() { return (float)(rng_.next() >> 40) * 0x1.0p-24f; }

const float* Sampler::penalized(const float* logits) const {
  if (history_len_ == 0) return logits;
  std::memcpy(work_.data(), logits, sizeof(float) * (size_t)n_vocab_);
  // Each distinct recent token is penalized once, however often it occurred.
  int32_t* r = recent_.data();
  std::copy(history_.begin(), history_.begin() + history_len_, r);
  std::sort(r, r + history_len_);
  const int n_distinct = (int)(std::unique(r, r + history_len_) - r);
  const float rp = params_.repeat_penalty;
  for (int i = 0; i < n_distinct; i++) {
    float& x = work_[(size_t)r[i]];
    x = x > 0 ? x / rp : x * rp;
  }
  return work_.data();
}

double Sampler::prepare(const float* logits) const {
  const SamplerParams& p = params_;
  const float* l = penalized(logits);
  const int n = n_vocab_;
  int32_t* id = cand_id_.data();
  float* w = cand_w_.data();

  if (p.temperature <= 0) {
    id[0] = argmax(l, n);
    if (!std::isfinite(l[id[0]]))
      fail("sampler: the largest logit is {}; the logits are broken (all -inf, NaN or +inf)", l[id[0]]);
    w[0] = 1;
    n_cand_ = 1;
    return 1.0;
  }

  // The candidates are id[0, m) once `listed` (best first when also `sorted`); before that,
  // every token.
  int m = n;
  bool listed = false, sorted = false;
  if (p.top_k > 0 && p.top_k < n) {
    select_top(l, n, p.top_k, id);
    m = p.top_k;
    listed = sorted = true;
  }
  // The filters below always keep the best candidate, so this stays the candidates' max.
  const float l_max = sorted ? l[id[0]] : max_logit(l, n);
  if (!std::isfinite(l_max))
    fail("sampler: the largest logit is {}; the logits are broken (all -inf, NaN or +inf)", l_max);

  if (p.top_p < 1.0f) {
    // Softmax at temperature 1 over the candidates; keep the shortest best-first prefix whose
    // mass reaches top_p (everything if rounding never gets there).
    if (sorted) {
      double total = 0;
      for (int i = 0; i < m; i++) total += std::exp(l[id[i]] - l_max);
      m = mass_prefix(l, id, m, l_max, 0.0, (double)p.top_p * total);
    } else {
      m = top_p_whole_vocab(l, n, l_max, p.top_p, id);
      listed = true;
    }
  }

  if (p.min_p > 0.0f) {
    // p_i >= min_p * p_max  <=>  l_i >= l_max + log(min_p), at temperature 1.
    const float l_min = l_max + std::log(p.min_p);
    if (sorted) {
      int i = 1;  // the best always stays
      while (i < m && l[id[i]] >= l_min) i++;
      m = i;
    } else if (listed) {
      int kept = 0;
      for (int i = 0; i < m; i++)
        if (l[id[i]] >= l_min) id[kept++] = id[i];
      m = kept;
    } else {
      m = 0;
      for (int t = 0; t < n; t++)
        if (l[t] >= l_min) id[m++] = t;
      listed = true;
    }
    if (m == 0) {  // min_p > 1: only the best stays (it is among the candidates)
      id[0] = argmax(l, n);
      m = 1;
    }
  }

  if (!listed) std::iota(id, id + n, 0);

  const float temp = p.temperature;
  double sum = 0;
  for (int i = 0; i < m; i++) {
    w[i] = std::exp((l[id[i]] - l_max) / temp);
    sum += w[i];
  }
  n_cand_ = m;
  return sum;
}

[[gnu::hot]] int32_t Sampler::sample(const float* logits) {
  const double sum = prepare(logits);
  if (n_cand_ == 1) return cand_id_[0];  // greedy or one survivor: no draw, the generator stays
  return cand_id_[(size_t)draw_index(cand_w_.data(), n_cand_, sum, rng_.uniform())];
}

void Sampler::probabilities(const float* logits, float* probs) const {
  const double sum = prepare(logits);
  std::fill(probs, probs + n_vocab_, 0.0f);
  for (int i = 0; i < n_cand_; i++) probs[cand_id_[(size_t)i]] = (float)(cand_w_[(size_t)i] / sum);
}

int32_t Sampler::sample_from(const float* probs, int n) {
  if (n <= 0) fail("sampler: sample_from got an empty distribution (n = {})", n);
  double sum = 0;
  for (int i = 0; i < n; i++) {
    if (!(probs[i] >= 0) || !std::isfinite(probs[i]))
      fail("sampler: sample_from got probability {} at index {}; it must be finite and >= 0", probs[i], i);
    if (probs[i] > 0) sum += probs[i];
  }
  if (!(sum > 0)) fail("sampler: sample_from got a distribution of total mass 0 over {} entries", n);
  return draw_index(probs, n, sum, rng_.uniform());
}

}  // namespace stepq
