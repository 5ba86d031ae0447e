// The one hot interface: a forward over a batch of sequences. Each sequence brings its new
// tokens and its own KV cache; the new tokens go at positions kv.length() .. +n-1. Plain
// generation is a batch of one; speculative verification, Lookahead Reasoning branches and a
// serving scheduler are all callers of this same function.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <algorithm>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"

namespace stepq {

class Model;
class KvCache;

struct SequenceInput {
  KvCache* kv = nullptr;
  std::span<const int32_t> tokens;  // new tokens (at least one)
  bool all_logits = false;          // logits for every new token; otherwise the last only
};

class Forward {
 public:
  Forward(const Model& model, int n_threads);
  // Shares a pool with other forwards (a target and its draft model take turns on the same
  // threads instead of two pools' workers spinning against each other).
  Forward(const Model& model, std::shared_ptr<ThreadPool> pool);
  ~Forward();

  // Runs the batch, appends to every KV cache, and returns the logits: (n_out, n_vocab) row-major,
  // rows in sequence order, then token order. Valid until the next call. Throws Error when a
  // sequence does not fit in its cache or a token id is out of range; nothing is written then.
  std::span<const float> run(std::span<const SequenceInput> batch);

  // Number of logit rows the last run() produced for sequence i of that batch, and the first row.
  int n_outputs(int i) const { return out_count_[i]; }
  int output_offset(int i) const { return out_offset_[i]; }

  const Model& model() const { return model_; }

  // Mixture of experts: how many tokens each layer routed to each expert since construction or
  // the last reset, (n_layer, n_expert) row-major; empty for a dense model. Every token of a
  // run() counts, whether or not it produced logits.
  const std::vector<uint64_t>& expert_counts() const { return expert_counts_; }
  void reset_expert_counts() { std::fill(expert_counts_.begin(), expert_counts_.end(), 0); }

  ThreadPool& pool() { return *pool_; }
  const std::shared_ptr<ThreadPool>& shared_pool() const { return pool_; }

 private:
  struct Buffers;
  void reserve(int n_tokens, int n_out, int max_ctx);
  void attention(int layer, std::span<const SequenceInput> batch, bool swa);
  void ffn(int layer, int n);
  void moe_ffn(int layer, int n);
  void glu_ffn(const Linear& W_gate, const Linear& W_up, const Linear& W_down, Glu glu, int T, float* gate, float* up,
               float* y);

  const Model& model_;
  std::shared_ptr<ThreadPool> pool_;
  MatmulScratch scratch_;
  std::unique_ptr<Buffers> buf_;
  std::vector<int> out_count_, out_offset_;
  std::vector<uint64_t> expert_counts_;
};

}  // namespace stepq
