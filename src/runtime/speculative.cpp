#include "runtime/speculative.h"

#include <algorithm>
#include <cmath>

#include "base/clock.h"
#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace stepq {

namespace {

// Drops what is not well-formed UTF-8 (unicode::append_well_formed).
std::string well_formed(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  unicode::append_well_formed(out, s);
  return out;
}

}  // namespace

// --- n-gram --------------------------------------------------------------------------------------

void NgramDrafter::propose(std::span<const int32_t> h, int k, std::vector<int32_t>& out, std::vector<float>* q) {
  out.clear();
  if (q) q->clear();
  const int64_t N = (int64_t)h.size();
  if (k <= 0) return;
  for (int n = std::min<int64_t>(max_n_, N - 1); n >= 1; n--) {
    const int32_t* pat = h.data() + N - n;
    // The most recent earlier occurrence: scan backwards from the one just before the suffix.
    for (int64_t i = N - n - 1; i >= 0; i--) {
      if (h[i] != pat[0] || !std::equal(pat, pat + n, h.data() + i)) continue;
      const int64_t from = i + n, to = std::min<int64_t>(N, from + k);
      out.assign(h.begin() + from, h.begin() + to);
      return;
    }
  }
}

// --- draft model ---------------------------------------------------------------------------------

namespace {
SamplerParams draft_sampling(SamplerParams p) {
  p.repeat_penalty = 1.0f;  // any q is exact as long as the draft token is drawn from it
  p.repeat_last_n = 0;
  p.seed ^= 0x5eed5eed5eed5eedull;
  return p;
}
}  // namespace

ModelDrafter::ModelDrafter(Forward& fwd, int ctx, const SamplerParams& sampling)
    : fwd_(fwd),
      kv_(std::make_unique<KvCache>(fwd.model().config(), ctx)),
      sampler_(draft_sampling(sampling), fwd.model().config().n_vocab) {}

ModelDrafter::~ModelDrafter() = default;

std::string ModelDrafter::name() const { return "draft model"; }

std::span<const float> ModelDrafter::sync(std::span<const int32_t> h) {
  const CacheSync r = sync_cache(fwd_, *kv_, seen_, h);
  last_catch_up_ = r.fed;
  forwards_ += r.forwards;
  return r.logits;
}

std::span<const float> ModelDrafter::feed(int32_t t) {
  SequenceInput in{kv_.get(), {&t, 1}, false};
  std::span<const float> logits = fwd_.run({&in, 1});
  seen_.push_back(t);
  forwards_++;
  return logits;
}

int64_t ModelDrafter::capacity() const { return kv_->capacity(); }

void ModelDrafter::prefill(std::span<const int32_t> prompt) {
  if (!prompt.empty() && (int64_t)prompt.size() <= kv_->capacity()) sync(prompt);
}

void ModelDrafter::propose(std::span<const int32_t> h, int k, std::vector<int32_t>& out, std::vector<float>* q) {
  const double t0 = now_s();
  out.clear();
  if (q) q->clear();
  last_catch_up_ = 0;
  const int n_vocab = fwd_.model().config().n_vocab;
  // After drafting, the cache holds the history and the first k-1 drafted tokens.
  k = std::min<int64_t>(k, (int64_t)kv_->capacity() - (int64_t)h.size() + 1);
  if (k <= 0 || h.empty()) {
    seconds_ += now_s() - t0;
    return;
  }
  std::span<const float> logits = sync(h);
  const bool greedy = sampler_.params().temperature <= 0 || !q;
  if (!greedy) probs_.resize(n_vocab);
  for (int i = 0; i < k; i++) {
    int32_t d;
    if (greedy) {
      d = sampler_.sample(logits.data());
    } else {
      sampler_.probabilities(logits.data(), probs_.data());
      d = sampler_.sample_from(probs_.data(), n_vocab);
      q->insert(q->end(), probs_.begin(), probs_.end());
    }
    out.push_back(d);
    if (i + 1 == k) break;
    logits = feed(d);
  }
  if (greedy && q) q->clear();
  seconds_ += now_s() - t0;
}

// --- draft model with another vocabulary -------------------------------------------------------

TextDrafter::TextDrafter(Forward& draft, const Tokenizer& target_tok, int ctx)
    : target_tok_(target_tok), draft_tok_(draft.model().tokenizer()) {
  SamplerParams greedy;
  greedy.temperature = 0;
  inner_ = std::make_unique<ModelDrafter>(draft, ctx, greedy);
}

TextDrafter::~TextDrafter() = default;

std::string TextDrafter::name() const { return "draft model (other vocabulary, through text)"; }

void TextDrafter::propose(std::span<const int32_t> h, int k, std::vector<int32_t>& out, std::vector<float>* q) {
  const double t0 = now_s();
  out.clear();
  if (q) q->clear();
  last_catch_up_ = 0;
  encode_history(h);
  if (!draft_history_.empty()) {
    const double t1 = now_s();
    inner_->propose(draft_history_, k, draft_out_, nullptr);
    const double t2 = now_s();
    last_catch_up_ = inner_->last_catch_up();
    const std::string cont = well_formed(draft_tok_.decode(draft_out_, false));
    if (!cont.empty()) {
      out = target_tok_.encode(cont, false, false);
      if ((int)out.size() > k) out.resize(k);
    }
    text_seconds_ += (t1 - t0) + (now_s() - t2);
  } else {
    text_seconds_ += now_s() - t0;
  }
  seconds_ += now_s() - t0;
}

void TextDrafter::encode_history(std::span<const int32_t> h) {
  draft_history_ = draft_tok_.encode(well_formed(target_tok_.decode(h, true)), true, true);
}

void TextDrafter::prefill(std::span<const int32_t> prompt) {
  encode_history(prompt);
  if (!draft_history_.empty()) inner_->prefill(draft_history_);
}

bool same_vocabulary(const Tokenizer& a, const Tokenizer& b) {
  if (a.n_vocab() != b.n_vocab()) return false;
  for (int32_t i = 0; i < a.n_vocab(); i++)
    if (a.token_text(i) != b.token_text(i)) return false;
  return true;
}

// --- verification --------------------------------------------------------------------------------

VerifyResult verify_drafts(Sampler& sampler, const float* rows, std::span<const int32_t> drafts,
                           std::span<const float> q, std::vector<float>& probs, AcceptRule rule) {
  const int V = sampler.n_vocab();
  const int k = (int)drafts.size();
  if (!q.empty() && q.size() != (size_t)k * V)
    fail("verify_drafts: {} draft distributions of {} entries for {} drafted tokens", q.size() / V, V, k);
  VerifyResult r;
  if (sampler.params().temperature <= 0) {
    // Greedy: keep drafted tokens while they are the target's argmax.
    for (int i = 0;; i++) {
      const int32_t t = sampler.sample(rows + (size_t)i * V);
      sampler.accept(t);
      if (i < k && t == drafts[i]) {
        r.n_accepted++;
        continue;
      }
      r.next = t;
      return r;
    }
  }
  if (probs.size() < (size_t)V) probs.resize(V);
  float* p = probs.data();
  for (int i = 0; i < k; i++) {
    sampler.probabilities(rows + (size_t)i * V, p);
    const int32_t d = drafts[i];
    if (d < 0 || d >= V) fail("verify_drafts: drafted token {} is outside the vocabulary [0, {})", d, V);
    const float qd = q.empty() ? 1.0f : q[(size_t)i * V + d];
    const bool keep = qd > 0 && sampler.uniform() * qd < p[d];  // u < min(1, p/q)
    if (keep) {
      sampler.accept(d);
      r.n_accepted++;
      continue;
    }
    if (rule == AcceptRule::kBrokenForTesting) {
      r.next = sampler.sample(rows + (size_t)i * V);  // p itself: the draft's mass counted twice
    } else {
      // The residual norm(max(0, p − q)); for a point mass, p without d.
      double mass = 0;
      if (q.empty()) {
        p[d] = 0;
        for (int j = 0; j < V; j++) mass += p[j];
      } else {
        const float* qi = q.data() + (size_t)i * V;
        for (int j = 0; j < V; j++) {
          p[j] = std::max(0.0f, p[j] - qi[j]);
          mass += p[j];
        }
      }
      // Zero mass needs p ≤ q everywhere with p(d) < q(d): impossible for two distributions
      // except by rounding; p itself is then the right distribution to draw from.
      r.next = mass > 0 ? sampler.sample_from(p, V) : sampler.sample(rows + (size_t)i * V);
    }
    sampler.accept(r.next);
    return r;
  }
  r.next = sampler.sample(rows + (size_t)k * V);  // every drafted token kept: the bonus token
  sampler.accept(r.next);
  return r;
}

// --- the loop ------------------------------------------------------------------------------------

namespace {

// Chooses each round's k to maximize expected tokens per second: with a per-token acceptance
// rate a, drafting k tokens yields 1 + a + … + a^k tokens at the cost of k draft steps and one
// target forward over k+1 tokens. The rate and both costs are measured as the run goes
// (exponential moving averages, so they follow the text and the context length); forward times
// for sizes not yet seen are interpolated from the sizes seen. k = 0 is a plain decoding step, so
// when speculation does not pay the loop decodes plainly, probing k = 1 now and then.
class KChooser {
 public:
  KChooser(int k_max, int k_start) : k_max_(k_max), k_start_(k_start), t_fwd_(k_max + 2, -1.0) {}

  int next(int round) {
    if (round == 0) return k_start_;
    if (round == 1) return 0;  // one plain step: the cost of a single-token forward
    // Probe now and then: the acceptance rate can only be learned by drafting. Probes that do
    // not bring speculation back come less often (8, 16, .. 128 plain steps apart).
    if (zeros_ >= probe_every_) {
      probe_every_ = std::min(128, probe_every_ * 2);
      return 1;
    }
    const double a = (acc_ + 1.0) / (trials_ + 2.0);
    // Until a draft step has been timed, assume it is cheap (a quarter of a target step), so
    // that speculation gets tried.
    const double t_draft = t_draft_ >= 0 ? t_draft_ : 0.25 * fwd_cost(1);
    int best = 0;
    double best_rate = 0;
    for (int k = 0; k <= k_max_; k++) {
      const double tokens = a >= 1.0 ? k + 1 : (1.0 - std::pow(a, k + 1)) / (1.0 - a);
      const double rate = tokens / (k * t_draft + fwd_cost(k + 1));
      if (rate > best_rate * 1.02) {  // prefer the smaller k unless a larger one clearly pays
        best_rate = rate;
        best = k;
      }
    }
    if (best > 0) probe_every_ = 8;
    return best;
  }

  void observe(int drafted, int accepted, double verify_s, double draft_s, int catch_up) {
    const int n = drafted + 1;
    t_fwd_[n] = t_fwd_[n] < 0 ? verify_s : 0.7 * t_fwd_[n] + 0.3 * verify_s;
    zeros_ = drafted == 0 ? zeros_ + 1 : 0;
    if (drafted == 0) return;
    // Tokens tested: the kept ones and, on a rejection, the rejected one.
    const int tested = std::min(accepted + 1, drafted);
    acc_ = 0.9 * acc_ + accepted;
    trials_ = 0.9 * trials_ + tested;
    // Not the prompt's prefill: a catch-up of a few tokens costs about one forward like the
    // drafting ones, so the time per drafted token stays the time per draft forward.
    if (catch_up <= 16) {
      const double per = draft_s / drafted;
      t_draft_ = t_draft_ < 0 ? per : 0.7 * t_draft_ + 0.3 * per;
    }
  }

 private:
  // Seconds of a target forward over n tokens: measured, or interpolated between the nearest
  // measured sizes (extrapolated past the largest with the last slope, or 30% of a one-token
  // forward per token when only one size is known).
  double fwd_cost(int n) const {
    if (t_fwd_[n] >= 0) return t_fwd_[n];
    int lo = n - 1, hi = n + 1;
    while (lo >= 1 && t_fwd_[lo] < 0) lo--;
    while (hi <= k_max_ + 1 && t_fwd_[hi] < 0) hi++;
    if (lo >= 1 && hi <= k_max_ + 1) return t_fwd_[lo] + (t_fwd_[hi] - t_fwd_[lo]) * (n - lo) / (hi - lo);
    const int a = lo >= 1 ? lo : hi;
    if (a < 1 || a > k_max_ + 1) return 1.0 + 0.3 * (n - 1);
    int b = a + (lo >= 1 ? -1 : 1);  // a second measured size on the same side, for the slope
    while (b >= 1 && b <= k_max_ + 1 && t_fwd_[b] < 0) b += lo >= 1 ? -1 : 1;
    double slope;
    if (b >= 1 && b <= k_max_ + 1) slope = std::max(0.0, (t_fwd_[a] - t_fwd_[b]) / (a - b));
    else slope = 0.3 * t_fwd_[a] / (1.0 + 0.3 * (a - 1));
    return std::max(1e-9, t_fwd_[a] + slope * (n - a));
  }

  int k_max_, k_start_;
  std::vector<double> t_fwd_;  // by tokens in the forward (1 .. k_max+1); < 0: not measured yet
  double t_draft_ = -1;        // seconds per drafted token
  double acc_ = 0, trials_ = 0;
  int zeros_ = 0, probe_every_ = 8;
};

}  // namespace


GenerateStats speculative_generate(Forward& target, KvCache& kv, Sampler& sampler, const Tokenizer& tok,
                                   std::span<const int32_t> prompt, const GenerateOptions& opt, Drafter& drafter,
                                   const SpeculativeOptions& so, SpeculativeStats& stats,
                                   FunctionRef<bool(int32_t)> on_token) {
  GenerateStats st;
  const int k_max = std::max(0, so.k_max);
  stats = SpeculativeStats{};
  stats.accepted_hist.assign(k_max + 1, 0);
  const int V = target.model().config().n_vocab;
  const double draft_before = drafter.seconds();

  double t0 = now_s();
  std::span<const float> logits = prefill(target, kv, sampler, prompt, opt.prefill_chunk);
  // The draft's prefill counts as prompt processing (it does not move the target's logits).
  drafter.prefill(prompt);
  st.n_prompt = (int)prompt.size();
  st.prompt_seconds = now_s() - t0;

  t0 = now_s();
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  std::vector<int32_t> drafts, batch;
  std::vector<float> q, probs;
  history.reserve(history.size() + std::max(0, opt.n_predict) + k_max + 1);
  // The first token comes from the prompt's logits, as in generate().
  VerifyResult vr = verify_drafts(sampler, logits.data(), {}, {}, probs, so.rule);
  std::vector<int32_t> emit{vr.next};
  KChooser chooser(k_max, std::clamp(so.k_start, std::min(1, k_max), k_max));
  for (;;) {
    bool stop = false;
    for (int32_t t : emit) {
      if (!emit_token(t, history, tok, opt, kv.capacity(), st, on_token)) {
        stop = true;
        break;
      }
    }
    if (stop) break;

    // One round: the pending token (history.back(), not yet in the cache) and up to k drafts.
    int kr = so.adaptive ? chooser.next(stats.rounds) : k_max;
    if (opt.n_predict >= 0) kr = std::min(kr, opt.n_predict - st.n_generated - 1);
    kr = std::max(0, std::min(kr, kv.capacity() - kv.length() - 1));
    drafts.clear();
    q.clear();
    const double draft_s0 = drafter.seconds();
    if (kr > 0) {
      drafter.propose(history, kr, drafts, sampler.params().temperature > 0 ? &q : nullptr);
      if ((int)drafts.size() > kr) drafts.resize(kr);
      if (!q.empty()) q.resize(drafts.size() * (size_t)V);
    }
    const double tv = now_s();
    batch.assign(1, history.back());
    batch.insert(batch.end(), drafts.begin(), drafts.end());
    const int base = kv.length();
    SequenceInput in{&kv, batch, true};
    logits = target.run({&in, 1});
    vr = verify_drafts(sampler, logits.data(), drafts, q, probs, so.rule);
    kv.truncate(base + 1 + vr.n_accepted);
    const double verify_s = now_s() - tv;
    stats.verify_seconds += verify_s;
    chooser.observe((int)drafts.size(), vr.n_accepted, verify_s, drafter.seconds() - draft_s0,
                    kr > 0 ? drafter.last_catch_up() : 0);
    stats.rounds++;
    stats.drafted += (int)drafts.size();
    stats.accepted += vr.n_accepted;
    stats.accepted_hist[std::min(vr.n_accepted, k_max)]++;
    emit.assign(drafts.begin(), drafts.begin() + vr.n_accepted);
    emit.push_back(vr.next);
  }
  st.generate_seconds = now_s() - t0;
  stats.draft_seconds = drafter.seconds() - draft_before;
  return st;
}

}  // namespace stepq
