#include "runtime/generate.h"

#include <algorithm>

#include "base/clock.h"
#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace stepq {

std::span<const float> prefill(Forward& fwd, KvCache& kv, Sampler& sampler, std::span<const int32_t> prompt,
                               int chunk) {
  if (prompt.empty()) fail("the prompt is empty: give at least one token of text");
  if (kv.length() + (int)prompt.size() > kv.capacity()) {
    const int model_ctx = fwd.model().config().n_ctx_train;
    if (model_ctx > 0 && kv.capacity() >= model_ctx)
      fail("the prompt has {} tokens, more than the model's context of {} tokens; shorten it", prompt.size(),
           model_ctx);
    fail("the prompt has {} tokens but the context holds {}; raise --ctx{}", prompt.size(),
         kv.capacity() - kv.length(), model_ctx > 0 ? fmt::format(" (the model allows up to {})", model_ctx) : "");
  }
  for (int32_t t : prompt) sampler.accept(t);
  std::span<const float> logits;
  for (size_t i = 0; i < prompt.size(); i += (size_t)chunk) {
    const size_t n = std::min(prompt.size() - i, (size_t)chunk);
    SequenceInput in{&kv, prompt.subspan(i, n), false};
    logits = fwd.run({&in, 1});
  }
  return logits;
}

CacheSync sync_cache(Forward& fwd, KvCache& kv, std::vector<int32_t>& seen, std::span<const int32_t> h) {
  if (h.empty()) fail("sync_cache: an empty history has no logits");
  size_t common = 0;
  while (common < seen.size() && common < h.size() && seen[common] == h[common]) common++;
  common = std::min(common, h.size() - 1);
  kv.truncate((int)common);
  seen.resize(common);
  CacheSync r;
  constexpr size_t kChunk = 512;
  for (size_t i = common; i < h.size(); i += kChunk) {
    const size_t n = std::min(kChunk, h.size() - i);
    SequenceInput in{&kv, h.subspan(i, n), false};
    r.logits = fwd.run({&in, 1});
    r.forwards++;
  }
  seen.insert(seen.end(), h.begin() + (ptrdiff_t)common, h.end());
  r.fed = (int)(h.size() - common);
  return r;
}

bool emit_token(int32_t t, std::vector<int32_t>& history, const Tokenizer& tok, const GenerateOptions& opt,
                int capacity, GenerateStats& st, FunctionRef<bool(int32_t)> on_token) {
  st.n_generated++;
  history.push_back(t);
  if (!on_token(t)) return false;
  if (tok.is_eog(t) && !opt.ignore_eos) {
    st.stopped_by_eog = true;
    return false;
  }
  if (opt.n_predict >= 0 && st.n_generated >= opt.n_predict) return false;
  if ((int64_t)history.size() - 1 >= capacity) {  // as generate(): full, the last token still to feed
    st.stopped_by_context = true;
    return false;
  }
  return true;
}

GenerateStats generate(Forward& fwd, KvCache& kv, Sampler& sampler, const Tokenizer& tok,
                       std::span<const int32_t> prompt, const GenerateOptions& opt,
                       FunctionRef<bool(int32_t)> on_token) {
  GenerateStats st;
  double t0 = now_s();
  std::span<const float> logits = prefill(fwd, kv, sampler, prompt, opt.prefill_chunk);
  st.n_prompt = (int)prompt.size();
  st.prompt_seconds = now_s() - t0;

  t0 = now_s();
  int32_t next = 0;
  for (int i = 0; opt.n_predict < 0 || i < opt.n_predict; i++) {
    next = sampler.sample(logits.data());
    sampler.accept(next);
    st.n_generated++;
    const bool eog = tok.is_eog(next);
    if (!on_token(next)) break;
    if (eog && !opt.ignore_eos) {
      st.stopped_by_eog = true;
      break;
    }
    if (opt.n_predict >= 0 && i + 1 >= opt.n_predict) break;
    if (kv.length() >= kv.capacity()) {
      st.stopped_by_context = true;
      break;
    }
    SequenceInput in{&kv, {&next, 1}, false};
    logits = fwd.run({&in, 1});
  }
  st.generate_seconds = now_s() - t0;
  return st;
}

}  // namespace stepq
