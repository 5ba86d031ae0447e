// Token-level speculative decoding: a drafter proposes k tokens, the target scores all k+1
// positions in one batched forward, and the longest prefix it agrees with is kept plus one token
// of its own. The target's KV cache rolls back past the first rejection (KvCache::truncate).
//
// Lossless: greedy output is token for token the target's plain greedy output (the forward is
// batch invariant, so the target's logits for a position do not depend on how many drafted tokens
// were scored with it). With sampling, drafted token d is accepted with probability
// min(1, p(d) / q(d)); on rejection the token is drawn from norm(max(0, p − q)); when every
// drafted token is accepted a bonus token is drawn from p. The output distribution is then
// exactly the target's (Leviathan et al. 2023; Chen et al. 2023). A proposer that does not sample
// (n-gram lookup, a greedy draft, text re-encoded across vocabularies) is a point mass q = δ(d).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/function_ref.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"

namespace stepq {

class Forward;
class KvCache;
class Model;
class Tokenizer;

// Proposes the tokens that may follow a history of target token ids.
class Drafter {
 public:
  virtual ~Drafter() = default;
  // Up to k tokens that may follow `history` (every token so far, the last one included) into
  // `out` (cleared first; fewer or none is fine). When `q` is non-null and the proposer samples
  // from a distribution, q receives one row of the target's vocabulary size per proposed token,
  // the distribution it was drawn from; otherwise q is left empty and each token is a point mass.
  virtual void propose(std::span<const int32_t> history, int k, std::vector<int32_t>& out, std::vector<float>* q) = 0;
  virtual std::string name() const = 0;
  // Called once with the prompt while the target prefills it, so that a draft model's own prefill
  // counts as prompt processing rather than as the first round's drafting.
  virtual void prefill(std::span<const int32_t> prompt) { (void)prompt; }
  // Seconds spent in propose() so far (model drafters: draft forwards and sampling).
  double seconds() const { return seconds_; }
  // Tokens the last propose() fed to catch up with the history before drafting (a draft model
  // behind by more than a token or two after plain steps); 0 for proposers without state.
  int last_catch_up() const { return last_catch_up_; }
  // Of seconds(), the time spent outside draft forwards translating between vocabularies.
  double text_seconds() const { return text_seconds_; }

 protected:
  double text_seconds_ = 0;
  double seconds_ = 0;
  int last_catch_up_ = 0;
};

// Prompt lookup: the tokens that followed the most recent earlier occurrence of the history's
// last n tokens, for n = max_n down to 1 (the longest match wins). No model, no cost.
class NgramDrafter : public Drafter {
 public:
  explicit NgramDrafter(int max_n = 2) : max_n_(max_n < 1 ? 1 : max_n) {}
  void propose(std::span<const int32_t> history, int k, std::vector<int32_t>& out, std::vector<float>* q) override;
  std::string name() const override { return "n-gram (up to " + std::to_string(max_n_) + ")"; }

 private:
  int max_n_;
};

// A draft model with the target's vocabulary (its own Forward, not the target's: the target's logits
// must survive a draft step). Keeps its own KV cache in step with the history:
// on each call it rolls back to the longest common prefix with what it has seen, feeds the rest,
// then drafts k tokens one forward each. Greedy when the sampling temperature is <= 0 (point
// masses), else it samples with the target's filters (no repetition penalty) and reports q.
class ModelDrafter : public Drafter {
 public:
  ModelDrafter(Forward& fwd, int ctx, const SamplerParams& sampling);
  ~ModelDrafter() override;
  void propose(std::span<const int32_t> history, int k, std::vector<int32_t>& out, std::vector<float>* q) override;
  void prefill(std::span<const int32_t> prompt) override;
  std::string name() const override;

  // The cache, for callers that draft by their own rules (Lookahead Reasoning's steps):
  // sync() rolls it back to the longest common prefix with h (keeping at least one token of h to
  // feed) and feeds the rest, returning the logits after h; feed() appends one token and returns
  // the logits after it. Both stay valid until the next forward.
  std::span<const float> sync(std::span<const int32_t> h);
  std::span<const float> feed(int32_t t);
  int64_t capacity() const;
  int64_t forwards() const { return forwards_; }  // draft forwards run so far

 private:
  Forward& fwd_;
  std::unique_ptr<KvCache> kv_;
  Sampler sampler_;
  std::vector<int32_t> seen_;  // the tokens in kv_, in order
  std::vector<float> probs_;
  int64_t forwards_ = 0;
};

// A draft model with a different vocabulary: the history goes through text into the draft's
// tokens (re-encoded each round: O(history) tokenizer work per round), the draft proposes
// greedily, and its text is encoded back into target tokens. Greedy verification stays exact;
// the proposals are point masses, so sampling stays exact too.
class TextDrafter : public Drafter {
 public:
  TextDrafter(Forward& draft, const Tokenizer& target_tok, int ctx);
  ~TextDrafter() override;
  void propose(std::span<const int32_t> history, int k, std::vector<int32_t>& out, std::vector<float>* q) override;
  void prefill(std::span<const int32_t> prompt) override;
  std::string name() const override;

 private:
  void encode_history(std::span<const int32_t> h);
  const Tokenizer& target_tok_;
  const Tokenizer& draft_tok_;
  std::unique_ptr<ModelDrafter> inner_;
  std::vector<int32_t> draft_history_, draft_out_;
};

// True when two tokenizers map every id to the same text (same vocabulary, ids interchangeable).
bool same_vocabulary(const Tokenizer& a, const Tokenizer& b);

// The acceptance rule. kRejectionSampling is the exact one; kBrokenForTesting makes the classic
// mistake of drawing a rejected position's token from p instead of the residual max(0, p − q),
// which counts the draft's share twice. It exists only so that the distribution tests can show
// they catch a wrong rule.
enum class AcceptRule { kRejectionSampling, kBrokenForTesting };

struct VerifyResult {
  int n_accepted = 0;  // drafted tokens kept
  int32_t next = -1;   // the target's own token after them (correction or bonus)
};

// Verifies `drafts` against the target's logits `rows` ((k+1) × n_vocab: row i is the target's
// prediction after the i-th drafted token), drawing with and updating `sampler` (every kept token
// and `next` are accept()ed, as plain generation does). q: k rows of the draft's distributions, or
// empty for point masses. `probs` is scratch of n_vocab floats (two rows when q is given).
VerifyResult verify_drafts(Sampler& sampler, const float* rows, std::span<const int32_t> drafts,
                           std::span<const float> q, std::vector<float>& probs,
                           AcceptRule rule = AcceptRule::kRejectionSampling);

struct SpeculativeOptions {
  int k_max = 8;          // drafted tokens per round at most (--spec-k)
  int k_start = 4;        // first round's k (clamped to k_max)
  // Choose k (0 .. k_max) each round for the most expected tokens per second, from the measured
  // acceptance rate, draft cost and target forward cost by size; k = 0 is a plain step. Off: k_max.
  bool adaptive = true;
  AcceptRule rule = AcceptRule::kRejectionSampling;
};

struct SpeculativeStats {
  int rounds = 0;           // target forwards after the prompt (one per round)
  int drafted = 0, accepted = 0;
  double draft_seconds = 0, verify_seconds = 0;
  std::vector<int> accepted_hist;  // rounds by number of drafted tokens kept (0 .. k_max)
  double acceptance_rate() const { return drafted ? (double)accepted / drafted : 0.0; }
};

// generate() with speculation: same arguments, same stopping rules, same output (greedy) or
// output distribution (sampling); on_token is called for every emitted token in order.
GenerateStats speculative_generate(Forward& target, KvCache& kv, Sampler& sampler, const Tokenizer& tok,
                                   std::span<const int32_t> prompt, const GenerateOptions& opt, Drafter& drafter,
                                   const SpeculativeOptions& so, SpeculativeStats& stats,
                                   FunctionRef<bool(int32_t)> on_token);

}  // namespace stepq
