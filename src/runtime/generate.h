// Autoregressive generation: prefill the prompt, then sample one token per forward.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

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

// A cache kept in step with a token history (a draft model's, a judge's): rolls `kv`, which
// holds the tokens `seen`, back to the longest common prefix with `h` (keeping at least h's last
// token to feed, for its logits) and feeds the rest in chunks of 512; `seen` becomes h.
struct CacheSync {
  std::span<const float> logits;  // after h (valid until the next forward)
  int fed = 0;                    // tokens fed
  int forwards = 0;               // forwards run
};
CacheSync sync_cache(Forward& fwd, KvCache& kv, std::vector<int32_t>& seen, std::span<const int32_t> h);

// Emits one generated token under generate()'s stopping rules, for the speculative loops that
// emit several per forward: counts it, appends it to `history` (every token so far), calls
// on_token, and returns false when generation ends with it: on_token said so, end of generation,
// n_predict reached, or a cache of `capacity` tokens full with this token still to be fed.
bool emit_token(int32_t t, std::vector<int32_t>& history, const Tokenizer& tok, const GenerateOptions& opt,
                int capacity, GenerateStats& st, FunctionRef<bool(int32_t)> on_token);

// Appends prompt then generated tokens to `kv`. on_token(id) is called for each generated token
// (also the final end-of-generation token); return false from it to stop early.
GenerateStats generate(Forward& fwd, KvCache& kv, Sampler& sampler, const Tokenizer& tok,
                       std::span<const int32_t> prompt, const GenerateOptions& opt,
                       FunctionRef<bool(int32_t)> on_token);

}  // namespace stepq
