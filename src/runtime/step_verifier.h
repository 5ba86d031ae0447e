// Step verifiers for Lookahead Reasoning (../shared/DESIGN.md §5): does a drafted reasoning step
// say the same as the step the target generated after the same text? Three, chosen by name:
//   - exact: the two texts are equal once whitespace is removed and ASCII is lower-cased;
//   - embed: cosine similarity of their sentence embeddings (all-MiniLM-L6-v2) >= a threshold;
//   - judge: an LLM (the target by default) asked whether the steps mean the same and compute the
//     same results, reading its answer [aligned] / [unaligned] from one forward.
// embed and judge try the exact match first and run no model when it holds.
//
// Eligibility is the caller's: the reference judges a drafted step only when the text before it
// ended at a step boundary (StepSplitter::after_boundary()); a verifier is asked only then.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace stepq {

class BertModel;
class Forward;
class KvCache;
class Model;
class ThreadPool;

struct StepVerifierStats {
  int64_t calls = 0;          // accept() calls
  int64_t accepted = 0;       // of them, answered true
  int64_t exact_matches = 0;  // answered true by the normalized exact match (no model run)
  int64_t model_calls = 0;    // forwards run: one embedding forward per pair, or one judge forward
  double seconds = 0;         // wall time inside accept()
};

// One accept() call, as a log sees it (`stepq run|eval --step-log`): the texts are the call's
// arguments, valid only during the callback.
struct StepDecision {
  std::string_view context, target_step, draft_step;
  bool exact = false;     // decided by the normalized exact match, no model run
  bool accepted = false;
  // The verifier's measure when a model ran: embed, the cosine similarity; judge, the logit of
  // "aligned" minus that of "unaligned". NaN otherwise.
  double score = 0;
  // Whether both steps hold the same numbers (step_numbers()); -1 when the exact match decided.
  int same_numbers = -1;
};
using StepDecisionLog = std::function<void(const StepDecision&)>;

// The embedding verifier's threshold, tuned on drafted GSM8K steps with the numbers check on
// (bench/embed_threshold.py, docs/lookahead.md).
inline constexpr float kDefaultEmbedThreshold = 0.93f;

class StepVerifier {
 public:
  virtual ~StepVerifier() = default;
  // True when the drafted step may stand in for the target's step. `context` is the text before
  // both steps. The steps are compared by the normalized exact match first (no model run), then
  // by same_meaning(); calls, matches and time are counted here.
  // With the numbers check on, steps whose step_numbers() differ are rejected before any model
  // runs.
  virtual bool accept(std::string_view context, std::string_view target_step, std::string_view draft_step);
  // False when no completion of the target's step that starts with `target_prefix` can be
  // accepted against `draft_step`: Lookahead Reasoning then decides the rejection at once and
  // stops the branches behind it. Must never be false where accept() could later say true.
  virtual bool may_accept(std::string_view target_prefix, std::string_view draft_step) const {
    (void)target_prefix;
    (void)draft_step;
    return true;
  }
  virtual std::string name() const = 0;
  const StepVerifierStats& stats() const { return stats_; }
  // Called after every accept() with what was compared and decided (none by default).
  void set_log(StepDecisionLog log) { log_ = std::move(log); }
  // A drafted step is kept only when it holds the same numbers as the target's step (on by
  // default for embed and judge: a step that computes another result holds another number, and
  // neither MiniLM's cosine nor a small judge sees that reliably; docs/lookahead.md).
  void set_numbers_check(bool on) { numbers_check_ = on; }
  bool checks_numbers() const { return numbers_check_; }

 protected:
  // The measure behind the last same_meaning() (StepDecision::score); NaN when none.
  virtual double last_score() const;
  // The semantic comparison after the exact match failed (a model call); none by default.
  virtual bool same_meaning(std::string_view context, std::string_view target_step, std::string_view draft_step) {
    (void)context;
    (void)target_step;
    (void)draft_step;
    return false;
  }
  StepVerifierStats stats_;

 private:
  StepDecisionLog log_;
  bool numbers_check_ = false;
};

// The exact verifier's normalization: every ASCII whitespace byte (space, \t, \n, \v, \f, \r)
// removed and ASCII letters lower-cased. Bytes >= 0x80 are left alone: non-ASCII letters keep
// their case and non-ASCII spaces (U+00A0, U+3000) stay, so a step is never mangled into
// invalid UTF-8. (The reference removes only ' ' and '\n' and uses Python's Unicode lower().)
std::string normalize_step(std::string_view s);
// normalize_step(a) == normalize_step(b), without building either.
bool normalized_equal(std::string_view a, std::string_view b);
// normalize_step(prefix) is a prefix of normalize_step(s).
bool normalized_prefix(std::string_view prefix, std::string_view s);

// The distinct numbers a step writes, sorted (a result restated is the same result), each in one
// canonical text: a run of ASCII digits with
// thousands separators ("1,234": a comma followed by exactly three digits) and at most one
// decimal part ("2.50"); commas dropped, leading zeros of the integer part and trailing zeros of
// the decimal part dropped ("007" -> "7", "18.00" -> "18", "0.50" -> "0.5"). Signs are not read
// ("-5" is "5"): a minus sign is as often an operator. Used by the numbers check
// (StepVerifier::set_numbers_check): a step that computes another result holds another number.
std::vector<std::string> step_numbers(std::string_view s);

class ExactVerifier : public StepVerifier {
 public:
  // The normalization works byte by byte, so a target step can only match when every prefix of it does.
  bool may_accept(std::string_view target_prefix, std::string_view draft_step) const override {
    return normalized_prefix(target_prefix, draft_step);
  }
  std::string name() const override { return "exact"; }
};

// Sentence-embedding similarity. Both steps are embedded in one forward; the context is not used
// (the embedding compares the steps themselves). Bytes that are not well-formed UTF-8 (a
// character cut by the step's token cap) are dropped before tokenizing.
class EmbedVerifier : public StepVerifier {
 public:
  // MiniLM's cosine does not see arithmetic (a step with one result changed scores near 0.98
  // against the original): make_step_verifier() turns the numbers check on by default.
  EmbedVerifier(std::unique_ptr<BertModel> model, std::shared_ptr<ThreadPool> pool,
                float threshold = kDefaultEmbedThreshold);
  ~EmbedVerifier() override;
  std::string name() const override { return "embed"; }

  // Cosine similarity of the two texts' embeddings (one forward; counted as a model call).
  float similarity(std::string_view a, std::string_view b);
  float threshold() const { return threshold_; }
  // The similarity the last model call computed (NaN before any).
  float last_similarity() const { return last_similarity_; }

 protected:
  bool same_meaning(std::string_view context, std::string_view target_step, std::string_view draft_step) override;
  double last_score() const override { return last_similarity_; }

 private:
  std::unique_ptr<BertModel> model_;
  std::shared_ptr<ThreadPool> pool_;
  float threshold_;
  float last_similarity_;
  std::vector<std::string> texts_;  // (2) scratch for the batch
};

// An LLM judge. The prompt, through the model's chat template (its default system message, then
// one user message, as the reference does with Qwen):
//   <instruction, ending in a blank line>[context block]Reasoning step 1 (s1):\n<start_s1>\n
//   {target}\n<end_s1>\n\nReasoning step 2 (s2):\n<start_s2>\n{draft}\n<end_s2>
// then the assistant turn opened and "[" (s1 is the target's step, s2 the draft's, as in the
// reference), both steps stripped of surrounding ASCII whitespace (as the reference's str.strip()) and
// ill-formed UTF-8 dropped. With context_chars > 0 the context block
//   Text before both reasoning steps (its end only):\n<context>\n{end of context}\n</context>\n\n
// comes before the first step ("(none)" when empty). One forward over it: the step is accepted
// when the logit of the first token of "aligned" (as the tokenizer encodes "[aligned]" after
// "["; where "[" merges into the word's first token, the word's first token on its own) exceeds
// that of "unaligned". The words differ in their first byte, so these tokens differ; a vocabulary
// that gave both the same first token (a lone space-prefix piece) would have the common tokens
// appended to the prompt and the first differing ones compared. (The reference instead generates
// one greedy token and accepts when it contains "ali" and not "un"; here a third token winning
// the argmax is ignored.)
//
// The prompt is encoded in three parts: the fixed part before the steps (template head,
// instruction, the first label; special tokens parsed), the variable text (never parsed for
// special tokens, so a step cannot inject "<|im_end|>"), and the fixed tail. For the byte-level
// BPE vocabularies the joins fall where the pre-tokenizer splits anyway (after "\n", before a
// non-space), so the ids equal a one-pass encoding of the whole text as long as the steps are not
// empty. The fixed part is fed once at construction and stays in the judge's own KV cache; each
// call rolls the cache back to the longest common prefix with the previous prompt (never shorter
// than the fixed part) and feeds the rest.
//
// The judge has its own Forward (on the caller's thread pool, so their threads take turns) and
// its own KV cache: the caller's caches and the logits of the caller's Forward are untouched.
// Not thread-safe, like Forward.
class JudgeVerifier : public StepVerifier {
 public:
  // context_chars: how much of the text before the steps the judge sees (its last bytes, cut
  // forward to a character start); 0 = none, as the reference judges the two steps alone.
  JudgeVerifier(const Model& model, std::shared_ptr<ThreadPool> pool, int context_chars = 0);
  ~JudgeVerifier() override;
  std::string name() const override { return "judge"; }

  // The fixed instruction that opens the user message.
  static std::string_view instruction();
  // The whole prompt text for these steps, as the judge reads it (special tokens written out).
  std::string prompt(std::string_view context, std::string_view target_step, std::string_view draft_step) const;

  int32_t aligned_token() const { return aligned_; }
  int32_t unaligned_token() const { return unaligned_; }
  struct Scores {
    float aligned = 0, unaligned = 0;  // the two logits of the last model call
  };
  Scores last_scores() const { return last_; }
  int prefix_tokens() const { return (int)head_ids_.size(); }  // the fixed part kept in the cache
  const KvCache& cache() const { return *kv_; }

 protected:
  bool same_meaning(std::string_view context, std::string_view target_step, std::string_view draft_step) override;
  double last_score() const override { return (double)last_.aligned - last_.unaligned; }

 private:
  std::string variable_text(std::string_view context, std::string_view target_step, std::string_view draft_step) const;

  const Model& model_;
  std::unique_ptr<Forward> fwd_;
  std::unique_ptr<KvCache> kv_;
  int context_chars_;
  std::string head_, tail_;                   // fixed text before and after the variable part
  std::vector<int32_t> head_ids_, tail_ids_;  // their tokens
  std::vector<int32_t> ids_, seen_;           // this call's prompt; the tokens in kv_
  int32_t aligned_ = -1, unaligned_ = -1;
  Scores last_;
};

struct StepVerifierOptions {
  std::string embed_model;                  // embed: folder of a BERT sentence encoder (all-MiniLM-L6-v2)
  float embed_threshold = kDefaultEmbedThreshold;  // embed: accept at cosine similarity >= this
  bool numbers_check = true;                       // embed, judge: StepVerifier::set_numbers_check()
  const Model* judge_model = nullptr;       // judge: the LLM (the caller passes the target by default)
  int judge_context_chars = 0;              // judge: bytes of context shown; 0 = none
  std::shared_ptr<ThreadPool> pool;         // threads for the verifier's model; null: its own pool
  int n_threads = 1;                        // size of that own pool
};

// "exact", "embed" or "judge". Throws Error on another name, or when the model the verifier
// needs is not given (or does not load).
std::unique_ptr<StepVerifier> make_step_verifier(const std::string& name, const StepVerifierOptions& opt);

}  // namespace stepq
