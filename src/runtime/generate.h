// Autoregressive generation: prefill the prompt, then sample one token per forward.
#pragma once
#include <cstdint>
#include <span>

#include "base/function_ref.h"

namespace stepq {

class Forward;
class KvCache;
class Sampler;
class Tokenizer;

struct GenerateOptions {
  int n_predict = 256;       // tokens to generate at most (< 0: until end of generation or context)
  bool ignore_eos = false;   // keep going past end-of-generation tokens
  int prefill_chunk = 512;   // prompt tokens per forward
};

struct GenerateStats {
  int n_prompt = 0, n_generated = 0;
  double prompt_seconds = 0, generate_seconds = 0;
  bool stopped_by_eog = false, stopped_by_context = false;
};

// Checks that the prompt fits in `kv` (errors that say what to change), adds its tokens to the
// sampler's penalty history and feeds it in chunks of `chunk` tokens. Returns the logits of the
// prompt's last position (valid until the next forward).
std::span<const float> prefill(Forward& fwd, KvCache& kv, Sampler& sampler, std::span<const int32_t> prompt,
                               int chunk);

// Appends prompt then generated tokens to `kv`. on_token(id) is called for each generated token
// (also the final end-of-generation token); return false from it to stop early.
GenerateStats generate(Forward& fwd, KvCache& kv, Sampler& sampler, const Tokenizer& tok,
                       std::span<const int32_t> prompt, const GenerateOptions& opt,
                       FunctionRef<bool(int32_t)> on_token);

}  // namespace stepq
