#include "runtime/step_verifier.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "base/clock.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "model/bert.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "tokenizer/chat_defaults.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace stepq {

namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

// The last n bytes of s, moved forward to the start of a UTF-8 character.
std::string_view last_bytes(std::string_view s, size_t n) {
  if (s.size() <= n) return s;
  size_t i = s.size() - n;
  while (i < s.size() && ((uint8_t)s[i] & 0xC0) == 0x80) i++;
  return s.substr(i);
}

// Appends s without what is not well-formed UTF-8: a step cut by the token cap can end inside a
// character (byte tokens), and the tokenizers refuse ill-formed text.
using unicode::append_well_formed;

std::shared_ptr<ThreadPool> or_own_pool(std::shared_ptr<ThreadPool> pool) {
  return pool ? std::move(pool) : std::make_shared<ThreadPool>(1);
}

// Wording after the reference's judge prompt (hao-ai-lab/LookaheadReasoning).
constexpr std::string_view kInstruction =
    "Evaluate whether the following two reasoning steps (s1 and s2) convey exactly the same meaning. "
    "Focus on semantic similarity rather than exact wording.\n\n"
    "Compare the main ideas, key points, overall message, logical structure, and numerical "
    "calculations/results of both reasoning steps.\n\n"
    "If the reasoning steps convey the same meaning and yield the same calculation results, respond "
    "with [aligned]. If they differ in meaning or in calculation results, respond with [unaligned]. "
    "If it is too hard to determine, respond with [unaligned].\n\n"
    "Please directly provide the final result in [aligned] or [unaligned].\n\n";
constexpr std::string_view kContextLabel = "Text before both reasoning steps (its end only):\n<context>\n";
constexpr std::string_view kStep1Label = "Reasoning step 1 (s1):\n<start_s1>\n";
// Stands for the variable text while the chat template is rendered; the rendering is cut there.
constexpr std::string_view kSlot = "STEPQJUDGESLOT";

}  // namespace

// --- exact -----------------------------------------------------------------------------------

std::string normalize_step(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s)
    if (!is_ascii_space(c)) out.push_back(ascii_lower(c));
  return out;
}

bool normalized_equal(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  for (;;) {
    while (i < a.size() && is_ascii_space(a[i])) i++;
    while (j < b.size() && is_ascii_space(b[j])) j++;
    if (i == a.size() || j == b.size()) return i == a.size() && j == b.size();
    if (ascii_lower(a[i]) != ascii_lower(b[j])) return false;
    i++;
    j++;
  }
}

bool normalized_prefix(std::string_view prefix, std::string_view s) {
  size_t i = 0, j = 0;
  for (;;) {
    while (i < prefix.size() && is_ascii_space(prefix[i])) i++;
    while (j < s.size() && is_ascii_space(s[j])) j++;
    if (i == prefix.size()) return true;
    if (j == s.size() || ascii_lower(prefix[i]) != ascii_lower(s[j])) return false;
    i++;
    j++;
  }
}

std::vector<std::string> step_numbers(std::string_view s) {
  auto digit = [&](size_t i) { return i < s.size() && s[i] >= '0' && s[i] <= '9'; };
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    if (!digit(i)) {
      i++;
      continue;
    }
    std::string num;
    for (;;) {  // the integer part, with thousands separators
      while (digit(i)) num += s[i++];
      if (i < s.size() && s[i] == ',' && digit(i + 1) && digit(i + 2) && digit(i + 3) && !digit(i + 4)) {
        i++;
        continue;
      }
      break;
    }
    size_t lead = 0;
    while (lead + 1 < num.size() && num[lead] == '0') lead++;
    num.erase(0, lead);
    if (i + 1 < s.size() && s[i] == '.' && digit(i + 1)) {
      std::string frac;
      for (i++; digit(i); i++) frac += s[i];
      while (!frac.empty() && frac.back() == '0') frac.pop_back();
      if (!frac.empty()) num += "." + frac;
    }
    out.push_back(std::move(num));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

double StepVerifier::last_score() const { return std::numeric_limits<double>::quiet_NaN(); }

bool StepVerifier::accept(std::string_view context, std::string_view target_step, std::string_view draft_step) {
  const double t0 = now_s();
  stats_.calls++;
  StepDecision d{context, target_step, draft_step};
  d.score = std::numeric_limits<double>::quiet_NaN();
  if (normalized_equal(target_step, draft_step)) {
    stats_.exact_matches++;
    d.exact = d.accepted = true;
  } else {
    // The numbers are compared (and logged) either way; with the check on a mismatch needs no
    // model call.
    d.same_numbers = step_numbers(target_step) == step_numbers(draft_step) ? 1 : 0;
    if (!numbers_check_ || d.same_numbers) {
      d.accepted = same_meaning(context, target_step, draft_step);
      d.score = last_score();
    }
  }
  stats_.accepted += d.accepted;
  stats_.seconds += now_s() - t0;
  if (log_) log_(d);
  return d.accepted;
}

// --- embed -----------------------------------------------------------------------------------

EmbedVerifier::EmbedVerifier(std::unique_ptr<BertModel> model, std::shared_ptr<ThreadPool> pool, float threshold)
    : model_(std::move(model)),
      pool_(or_own_pool(std::move(pool))),
      threshold_(threshold),
      last_similarity_(std::numeric_limits<float>::quiet_NaN()),
      texts_(2) {}

EmbedVerifier::~EmbedVerifier() = default;

float EmbedVerifier::similarity(std::string_view a, std::string_view b) {
  texts_[0].clear();
  texts_[1].clear();
  append_well_formed(texts_[0], a);
  append_well_formed(texts_[1], b);
  const std::vector<std::vector<float>> e = model_->embed(texts_, *pool_, 2);
  // Both rows are L2-normalized: the dot product is the cosine.
  double dot = 0;
  for (size_t i = 0; i < e[0].size(); i++) dot += (double)e[0][i] * e[1][i];
  stats_.model_calls++;
  last_similarity_ = (float)dot;
  return last_similarity_;
}

bool EmbedVerifier::same_meaning(std::string_view, std::string_view target_step, std::string_view draft_step) {
  return similarity(target_step, draft_step) >= threshold_;
}

// --- judge -----------------------------------------------------------------------------------

JudgeVerifier::JudgeVerifier(const Model& model, std::shared_ptr<ThreadPool> pool, int context_chars)
    : model_(model), context_chars_(context_chars) {
  if (context_chars < 0) fail("judge: context_chars is {}; give 0 (no context) or more", context_chars);
  const Tokenizer& tok = model.tokenizer();

  // The chat prompt with a placeholder where the variable text goes; cut there.
  const ResolvedChatTemplate tmpl = resolve_chat_template(model.gguf(), tok);
  const std::string bos = tok.bos() >= 0 ? tok.token_to_piece(tok.bos(), true) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_to_piece(tok.eos(), true) : "";
  std::string content(kInstruction);
  content += context_chars > 0 ? kContextLabel : kStep1Label;
  content += kSlot;
  const std::string rendered =
      strip_template_bos(ChatTemplate(tmpl.source).apply({{"user", content}}, true, bos, eos), tok);
  const size_t at = rendered.find(kSlot);
  if (at == std::string::npos || rendered.find(kSlot, at + 1) != std::string::npos)
    fail("judge: the chat template ({}) does not show the user message once and verbatim; "
         "this model cannot be the judge",
         tmpl.origin);
  head_ = rendered.substr(0, at);
  tail_ = rendered.substr(at + kSlot.size()) + "[";
  head_ids_ = tok.encode(head_, true, true);
  tail_ids_ = tok.encode(tail_, false, true);

  // The answer tokens: what follows the prompt's "[" when "[aligned]" / "[unaligned]" is encoded
  // in place. Where "[" merges with the word (Qwen's pre-tokenizer lets one punctuation mark lead
  // a word), the prompt's "[" stays a token of its own and the word is taken as it starts a text.
  auto continuation = [&](std::string_view word) {
    std::vector<int32_t> ids = tok.encode(tail_ + std::string(word) + "]", false, true);
    if (ids.size() > tail_ids_.size() && std::equal(tail_ids_.begin(), tail_ids_.end(), ids.begin()))
      return std::vector<int32_t>(ids.begin() + (ptrdiff_t)tail_ids_.size(), ids.end());
    return tok.encode(std::string(word) + "]", false, false);
  };
  const std::vector<int32_t> a = continuation("aligned"), u = continuation("unaligned");
  // The words differ in their first byte, so their first tokens differ in byte-level BPE. If a
  // vocabulary gives them a common first token anyway (a lone space-prefix piece), the prompt is
  // extended by the common tokens and the first tokens that differ are compared.
  size_t common = 0;
  while (common < a.size() && common < u.size() && a[common] == u[common]) common++;
  if (common == a.size() || common == u.size())
    fail("judge: the tokenizer encodes \"aligned\" and \"unaligned\" so that one is a prefix of the other");
  tail_ids_.insert(tail_ids_.end(), a.begin(), a.begin() + (ptrdiff_t)common);
  for (size_t i = 0; i < common; i++) tail_ += tok.token_to_piece(a[i], true);
  aligned_ = a[common];
  unaligned_ = u[common];

  // Steps are capped at ~100 target tokens: 4096 tokens for the two steps leaves room for a judge
  // that cuts them more finely. The pages are reserved, not touched, until written.
  const int train = model.config().n_ctx_train;
  int64_t cap = (int64_t)head_ids_.size() + (int64_t)tail_ids_.size() + 4096 + context_chars;
  if (train > 0) cap = std::min<int64_t>(cap, train);
  if ((int64_t)head_ids_.size() + (int64_t)tail_ids_.size() >= cap)
    fail("judge: the fixed part of the judge prompt ({} tokens) does not fit the model's context of {} tokens",
         head_ids_.size() + tail_ids_.size(), train);
  fwd_ = std::make_unique<Forward>(model, or_own_pool(std::move(pool)));
  kv_ = std::make_unique<KvCache>(model.config(), (int)cap);

  // The fixed part, once.
  constexpr size_t kChunk = 512;
  for (size_t i = 0; i < head_ids_.size(); i += kChunk) {
    SequenceInput in{kv_.get(), std::span<const int32_t>(head_ids_).subspan(i, std::min(kChunk, head_ids_.size() - i)),
                     false};
    fwd_->run({&in, 1});
  }
  seen_ = head_ids_;
}

JudgeVerifier::~JudgeVerifier() = default;

std::string_view JudgeVerifier::instruction() { return kInstruction; }

std::string JudgeVerifier::variable_text(std::string_view context, std::string_view target_step,
                                         std::string_view draft_step) const {
  std::string v;
  if (context_chars_ > 0) {
    const std::string_view c = strip(last_bytes(context, (size_t)context_chars_));
    if (c.empty()) v += "(none)";
    append_well_formed(v, c);
    v += "\n</context>\n\n";
    v += kStep1Label;
  }
  append_well_formed(v, strip(target_step));
  v += "\n<end_s1>\n\nReasoning step 2 (s2):\n<start_s2>\n";
  append_well_formed(v, strip(draft_step));
  v += "\n<end_s2>";
  return v;
}

std::string JudgeVerifier::prompt(std::string_view context, std::string_view target_step,
                                  std::string_view draft_step) const {
  return head_ + variable_text(context, target_step, draft_step) + tail_;
}

bool JudgeVerifier::same_meaning(std::string_view context, std::string_view target_step,
                                 std::string_view draft_step) {
  const Tokenizer& tok = model_.tokenizer();
  ids_.assign(head_ids_.begin(), head_ids_.end());
  const std::vector<int32_t> var = tok.encode(variable_text(context, target_step, draft_step), false, false);
  ids_.insert(ids_.end(), var.begin(), var.end());
  ids_.insert(ids_.end(), tail_ids_.begin(), tail_ids_.end());
  if ((int64_t)ids_.size() > kv_->capacity())
    fail("judge: the prompt for these steps has {} tokens, more than the judge's context of {} tokens; "
         "steps this long are not steps (the step token cap keeps them short)",
         ids_.size(), kv_->capacity());
  // Roll back to the longest common prefix with the tokens in the cache (the fixed part at
  // least) and feed the rest.
  const std::span<const float> logits = sync_cache(*fwd_, *kv_, seen_, ids_).logits;
  stats_.model_calls++;
  last_ = {logits[aligned_], logits[unaligned_]};
  return last_.aligned > last_.unaligned;
}

// --- factory ---------------------------------------------------------------------------------

std::unique_ptr<StepVerifier> make_step_verifier(const std::string& name, const StepVerifierOptions& opt) {
  auto pool = [&] { return opt.pool ? opt.pool : std::make_shared<ThreadPool>(std::max(1, opt.n_threads)); };
  std::unique_ptr<StepVerifier> v;
  if (name == "exact") return std::make_unique<ExactVerifier>();  // an exact match holds the same numbers
  if (name == "embed") {
    if (opt.embed_model.empty())
      fail("step verifier 'embed' needs a sentence-embedding model folder (all-MiniLM-L6-v2: "
           "python3 scripts/fetch-models.py all-minilm-l6-v2)");
    if (!(opt.embed_threshold >= -1.0f && opt.embed_threshold <= 1.0f))
      fail("step verifier 'embed': threshold {} is not a cosine similarity in [-1, 1]", opt.embed_threshold);
    v = std::make_unique<EmbedVerifier>(BertModel::load(opt.embed_model), pool(), opt.embed_threshold);
  } else if (name == "judge") {
    if (!opt.judge_model) fail("step verifier 'judge' needs a judge model (the target, or another GGUF model)");
    v = std::make_unique<JudgeVerifier>(*opt.judge_model, pool(), opt.judge_context_chars);
  } else {
    fail("unknown step verifier '{}'; choose exact, embed or judge", name);
  }
  v->set_numbers_check(opt.numbers_check);
  return v;
}

}  // namespace stepq
