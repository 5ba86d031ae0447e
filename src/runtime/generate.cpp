#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace stepq {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

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
