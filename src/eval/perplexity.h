// Perplexity exactly as llama.cpp's llama-perplexity computes it, so numbers compare directly:
// the text is tokenized once (with BOS if the model adds one), cut into non-overlapping windows
// of n_ctx tokens; each window is evaluated from an empty cache (its first token replaced by BOS
// when the model adds BOS) and only the second half is scored: the logits at positions
// n_ctx/2 .. n_ctx-2 predict the tokens after them.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "base/function_ref.h"

namespace stepq {

class Forward;

struct PerplexityOptions {
  int n_ctx = 512;     // window length in tokens
  int n_chunks = -1;   // windows to evaluate; < 0: all that fit
  // A reference model with the same vocabulary (the unquantized source of a quantized model):
  // each window also runs through it and the scored positions' next-token distributions are
  // compared (llama.cpp's --kl-divergence statistics).
  Forward* reference = nullptr;
};

struct PerplexityResult {
  int n_chunks = 0;
  int64_t n_scored = 0;  // tokens whose negative log-likelihood was summed
  double ppl = 0, ppl_error = 0;  // llama.cpp's estimate and its +/- (error propagation)
  // With a reference: its perplexity, mean KL(reference ‖ model) in nats, and the share of scored
  // positions where both put the same token first.
  double ref_ppl = 0, kl = 0, top1 = 0;
};

// on_chunk(i, running_ppl) is called after each window.
PerplexityResult perplexity(Forward& fwd, std::span<const int32_t> tokens, int32_t bos, bool add_bos,
                            const PerplexityOptions& opt, FunctionRef<void(int, double)> on_chunk);

}  // namespace stepq
