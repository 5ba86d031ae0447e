// Token sampling: logits → one token id, with llama.cpp's default chain
//
//   repetition penalty → top-k → top-p → min-p → temperature → draw
//
// (common/sampling.cpp's default list also has dry, top-n-sigma, typical and xtc between these;
// they are off by default and not implemented here.) The rules, as in src/llama-sampling.cpp:
// - penalty: each distinct token among the last repeat_last_n accepted ones gets, once,
//   logit > 0 ? logit / repeat_penalty : logit * repeat_penalty.
// - top-k: keep the k largest logits. Ties at the k-th place go to the lower id (llama.cpp leaves
//   them to partial_sort's order; we want one answer).
// - top-p: softmax at temperature 1 over what top-k kept; keep the smallest prefix, by descending
//   probability, whose cumulative probability is >= top_p (at least one token; all of them if
//   rounding never reaches top_p).
// - min-p: over what top-p kept, keep tokens with logit >= max_logit + log(min_p), i.e.
//   p_i >= min_p * p_max on the temperature-1 distribution (the ratio does not depend on
//   renormalization, so it is the same whatever was cut before).
// - temperature: logits / temperature, softmax, draw. temperature <= 0 is greedy: the argmax of
//   the penalized logits (ties → lowest id); the filters above never remove the argmax, so they
//   do not change it.
//
// Reproducible for a seed on every platform: the generator is our own xoshiro256** seeded through
// splitmix64, and uniforms come from its bits, not from std::uniform_*_distribution (whose
// algorithm is implementation-defined). What can still differ across C libraries is the last bit
// of expf, which can move a draw that lands exactly on a boundary.
//
// No allocation per token: all scratch is sized in the constructor. A Sampler is not
// thread-safe (probabilities() is const but writes the same scratch as sample()).
#pragma once
#include <cstdint>
#include <vector>

namespace stepq {

struct SamplerParams {
  float temperature = 0.8f;     // <= 0 → greedy (argmax; ties → lowest id)
  int top_k = 40;               // <= 0 or >= n_vocab → off
  float top_p = 0.95f;          // >= 1 → off
  float min_p = 0.05f;          // <= 0 → off
  float repeat_penalty = 1.0f;  // 1 → off; logit > 0 ? logit / p : logit * p
  int repeat_last_n = 64;       // tokens of history the penalty looks at; 0 → off
  uint64_t seed = 0;
};

// xoshiro256** (Blackman & Vigna), its state filled from the seed by splitmix64 as the authors
// recommend. Small, fast, and the same stream everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next();
  // U[0,1) with 53 random bits: (next() >> 11) * 2^-53.
  double uniform() { return (double)(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  Sampler(const SamplerParams& p, int n_vocab);  // allocates all scratch here, once

  // Hot path, once per generated token. logits: (n_vocab). Does not modify logits.
  int32_t sample(const float* logits);

  // Appends to the penalty history (prompt tokens too, as llama.cpp's common_sampler does).
  void accept(int32_t token);

  // The distribution sample() draws from, after every transform, written over the full vocab:
  // probs (n_vocab), zeros where filtered, sums to 1. Greedy → one-hot on the argmax.
  // Speculative decoding needs it (q and p in rejection sampling).
  void probabilities(const float* logits, float* probs) const;

  // Draws index i with probability probs[i] / sum(probs) using this sampler's generator.
  // probs (n): non-negative, need not be normalized (speculative residuals max(0, p - q) are
  // not). Zero entries are never drawn.
  int32_t sample_from(const float* probs, int n);

  float uniform();  // U[0,1) from the sampler's generator (24 random bits)
  void reset();     // clears history, re-seeds
  const SamplerParams& params() const { return params_; }
  int n_vocab() const { return n_vocab_; }

 private:
  // Runs the chain up to the draw: cand_id_[0, n_cand_) are the surviving tokens, cand_w_ their
  // unnormalized weights exp((l - l_max) / temperature). Returns the weights' sum.
  double prepare(const float* logits) const;
  // The logits with the repetition penalty applied: `logits` itself when no penalty applies,
  // else work_.
  const float* penalized(const float* logits) const;

  SamplerParams params_;
  int n_vocab_;
  Rng rng_;

  // Penalty history: a ring of the last repeat_last_n accepted tokens.
  std::vector<int32_t> history_;
  int history_len_ = 0, history_next_ = 0;

  // Scratch, sized in the constructor.
  mutable std::vector<int32_t> recent_;   // (repeat_last_n) distinct history tokens
  mutable std::vector<float> work_;       // (n_vocab) penalized logits; empty when no penalty
  mutable std::vector<int32_t> cand_id_;  // (n_vocab) candidate token ids
  mutable std::vector<float> cand_w_;     // (n_vocab) their weights
  mutable int n_cand_ = 0;
};

}  // namespace stepq
