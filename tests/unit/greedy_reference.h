// The target's plain greedy output: what every speculative path (token-level, step-level) must
// reproduce token for token at temperature 0.
#pragma once
#include <cstdint>
#include <vector>

#include "model/forward.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace stepq::test {

inline std::vector<int32_t> plain_greedy(Forward& fwd, const Tokenizer& tok, const std::vector<int32_t>& prompt, int n,
                                         int ctx = 2048) {
  KvCache kv(fwd.model().config(), ctx);
  Sampler s(SamplerParams{.temperature = 0}, fwd.model().config().n_vocab);
  GenerateOptions opt;
  opt.n_predict = n;
  std::vector<int32_t> out;
  generate(fwd, kv, s, tok, prompt, opt, [&](int32_t t) {
    out.push_back(t);
    return true;
  });
  return out;
}

}  // namespace stepq::test
