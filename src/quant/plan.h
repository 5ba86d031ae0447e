// What `stepq quantize` does to each tensor of a model: which weights are quantized, and the rank
// of each weight's compensator under MiLo's rank policies (DESIGN.md §4).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cpu/quant_types.h"

namespace stepq {

enum class RankPolicy { Uniform, DenseSparse, Kurtosis, Frequency };
RankPolicy rank_policy_from_name(const std::string& s);  // "uniform", "dense-sparse", "kurtosis", "frequency"
const char* rank_policy_name(RankPolicy p);

// One matrix to quantize: a whole 2-D weight, or expert `expert` of a stacked [in, out, X] tensor.
struct QuantItem {
  std::string tensor;      // GGUF tensor name ("blk.3.ffn_up_exps.weight")
  int expert = -1;         // −1: not an expert slice
  int layer = -1;
  int64_t rows = 0, cols = 0;  // out × in
  bool sparse = false;     // a routed expert (gets the sparse rank); attention, dense FFN and shared experts are dense
  bool ffn = false;        // a dense FFN weight (not an expert): gets RankParams::ffn_rank under dense-sparse and frequency
  double kurtosis = 0;     // excess kurtosis of the weights (kurtosis policy)
  double freq_share = 0;   // this expert's share of its layer's routing (frequency policy)
  int rank = 0;            // chosen compensator rank
  // Base name of its compensator tensors: "<base>.milo_u" / "<base>.milo_v" (+ ".<e>" for experts).
  std::string lowrank_name(char which) const;
};

// Whether a tensor is a linear weight that quantize handles (attention, FFN, experts, shared
// experts); router, embeddings, norms and the output head are not.
bool is_quantizable_weight(const std::string& name);
int layer_of(const std::string& name);  // −1 if not "blk.N."

struct RankParams {
  RankPolicy policy = RankPolicy::DenseSparse;
  int dense_rank = 1024;   // at width 4096 (the paper's Mixtral default), scaled by min(rows, cols)/4096
  int sparse_rank = 32;    // same
  // Dense FFN weights (dense models' FFNs), same scale. 0 by default: on a dense model the budget
  // then goes to attention, which measured best (Qwen2.5-Coder-1.5B at 3.75 bits/weight:
  // perplexity 18.80 against 19.28 with FFNs at the dense rank; docs/milo.md). The paper's split
  // leaves dense FFNs out of its MoE setting; ffn_rank = dense_rank treats them as attention.
  int ffn_rank = 0;
  int kurtosis_shift = 2;  // s in 2^(round(kurtosis) + s)
  int multiple = 32;       // ranks are rounded to a multiple of this (the compensator's block size)
  // The width ranks are scaled by (rank × width / 4096). 0: each weight's own, min(rows, cols).
  // > 0: one width for every weight (the model's hidden size), so narrow weights (grouped-query
  // K and V: 256 × 1536 in Qwen2.5-1.5B) get the rank wide ones get, up to what they can use.
  int64_t width = 0;
};

// The rank the policy gives an item, width-scaled, times `scale` (the budget's factor), rounded to
// p.multiple and capped at min(rows, cols).
int policy_rank(const QuantItem& it, const RankParams& p, double scale = 1.0);

// Bits a compensator of rank r costs for a rows × cols weight when stored as `type`.
double lowrank_bits(int64_t rows, int64_t cols, int r, QType type);

// Assigns it.rank for every item: the policy's ranks, or with budget_bits_per_weight > 0, ranks
// in proportion to the policy's that fill the budget (compensator bits per quantized weight, on
// average over all items) without exceeding it. Returns the bits per weight spent.
double assign_ranks(std::vector<QuantItem>& items, const RankParams& p, QType lowrank_type,
                    double budget_bits_per_weight);

// Excess (Fisher) kurtosis E[(x − μ)⁴]/σ⁴ − 3 of n values (0 for a gaussian, and for constant
// input), as scipy.stats.kurtosis gives by default. With it the policy's thresholds mean
// something: near-gaussian weights (excess < 1) get no compensator, heavy-tailed ones (> 9) the
// dense rank.
double kurtosis(const float* x, int64_t n);

}  // namespace stepq
