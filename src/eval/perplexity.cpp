#include "eval/perplexity.h"

#include <cmath>
#include <memory>

#include "base/error.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"

namespace stepq {

namespace {
// -log softmax(logits)[target], in double (as llama.cpp's log_softmax).
double nll_of(const float* logits, int n_vocab, int32_t target) {
  float mx = logits[0];
  for (int i = 1; i < n_vocab; i++) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < n_vocab; i++) sum += std::exp((double)(logits[i] - mx));
  return -((double)(logits[target] - mx) - std::log(sum));
}

// log-softmax of n logits into out (double).
void log_softmax(const float* logits, int n, std::vector<double>& out) {
  out.resize((size_t)n);
  float mx = logits[0];
  for (int i = 1; i < n; i++) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < n; i++) sum += std::exp((double)(logits[i] - mx));
  const double lse = std::log(sum) + (double)mx;
  for (int i = 0; i < n; i++) out[(size_t)i] = (double)logits[i] - lse;
}

int argmax(const float* x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}
}  // namespace

PerplexityResult perplexity(Forward& fwd, std::span<const int32_t> tokens, int32_t bos, bool add_bos,
                            const PerplexityOptions& opt, FunctionRef<void(int, double)> on_chunk) {
  const ModelConfig& c = fwd.model().config();
  if (opt.n_ctx < 4) fail("perplexity: --ctx must be at least 4 (got {})", opt.n_ctx);
  const int max_chunks = (int)(tokens.size() / (size_t)opt.n_ctx);
  if (max_chunks == 0)
    fail("perplexity: the text has {} tokens, fewer than one window of --ctx {}; give more text or a smaller --ctx",
         tokens.size(), opt.n_ctx);
  const int n_chunks = opt.n_chunks < 0 ? max_chunks : std::min(opt.n_chunks, max_chunks);
  const int first = opt.n_ctx / 2;

  PerplexityResult r;
  KvCache kv(c, opt.n_ctx);
  std::unique_ptr<KvCache> ref_kv;
  if (opt.reference) {
    const ModelConfig& rc = opt.reference->model().config();
    if (rc.n_vocab != c.n_vocab)
      fail("perplexity: the reference model has {} tokens in its vocabulary, the model {}", rc.n_vocab, c.n_vocab);
    ref_kv = std::make_unique<KvCache>(rc, opt.n_ctx);
  }
  double ref_nll = 0, kl_sum = 0;
  int64_t agree = 0;
  std::vector<double> lp, lq;
  std::vector<int32_t> window(opt.n_ctx);
  double nll = 0, nll2 = 0;
  for (int i = 0; i < n_chunks; i++) {
    const size_t start = (size_t)i * opt.n_ctx;
    window.assign(tokens.begin() + start, tokens.begin() + start + opt.n_ctx);
    if (add_bos && bos >= 0) window[0] = bos;
    kv.truncate(0);
    SequenceInput in{&kv, window, true};
    std::span<const float> logits = fwd.run({&in, 1});
    for (int j = first; j < opt.n_ctx - 1; j++) {
      const double v = nll_of(logits.data() + (size_t)j * c.n_vocab, c.n_vocab, tokens[start + j + 1]);
      nll += v;
      nll2 += v * v;
    }
    if (opt.reference) {
      ref_kv->truncate(0);
      SequenceInput rin{ref_kv.get(), window, true};
      std::span<const float> ref = opt.reference->run({&rin, 1});
      for (int j = first; j < opt.n_ctx - 1; j++) {
        const float* p = ref.data() + (size_t)j * c.n_vocab;
        const float* q = logits.data() + (size_t)j * c.n_vocab;
        log_softmax(p, c.n_vocab, lp);
        log_softmax(q, c.n_vocab, lq);
        double kl = 0;
        for (int k = 0; k < c.n_vocab; k++) kl += std::exp(lp[(size_t)k]) * (lp[(size_t)k] - lq[(size_t)k]);
        kl_sum += kl;
        ref_nll -= lp[(size_t)tokens[start + j + 1]];
        agree += argmax(p, c.n_vocab) == argmax(q, c.n_vocab);
      }
    }
    r.n_scored += opt.n_ctx - 1 - first;
    r.n_chunks = i + 1;
    on_chunk(i, std::exp(nll / (double)r.n_scored));
  }
  const double count = (double)r.n_scored;
  const double mean = nll / count;
  r.ppl = std::exp(mean);
  const double var = nll2 / count - mean * mean;
  r.ppl_error = var > 0 && count > 1 ? std::sqrt(var / (count - 1)) * r.ppl : 0.0;
  if (opt.reference) {
    r.ref_ppl = std::exp(ref_nll / count);
    r.kl = kl_sum / count;
    r.top1 = (double)agree / count;
  }
  return r;
}

}  // namespace stepq
