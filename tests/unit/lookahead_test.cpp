// Lookahead Reasoning end to end on real models (runtime/lookahead.h): with a verifier that
// rejects every drafted step the greedy output is the target's plain greedy output; with the
// target as its own draft every drafted step is kept and the output is again plain greedy; after
// rejections (and after keeping steps the target would not have written) the target's cache
// equals a recomputation of the text; generation stops where generate() stops. Each also with
// --width > 1 (a tree of drafted steps), where a verifier that keeps each depth's second
// alternative makes the round follow steps read in chains of their own.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/lookahead.h"
#include "runtime/sampler.h"
#include "runtime/step_verifier.h"
#include "greedy_reference.h"
#include "test_models.h"
#include "tokenizer/chat_defaults.h"
#include "tokenizer/tokenizer.h"

namespace stepq {
namespace {

// Answers every pair the same way, counting the calls. With rule_out_early, may_accept() says
// no as soon as asked (the early rejection path of lookahead_generate).
class FixedVerifier : public StepVerifier {
 public:
  explicit FixedVerifier(bool answer, bool rule_out_early = false) : answer_(answer), early_(rule_out_early) {}
  bool accept(std::string_view, std::string_view, std::string_view) override {
    stats_.calls++;
    if (answer_) stats_.accepted++;
    return answer_;
  }
  bool may_accept(std::string_view, std::string_view) const override { return !early_; }
  std::string name() const override { return answer_ ? "accept-all" : "reject-all"; }

 private:
  bool answer_, early_;
};

// Rejects the first drafted step it is shown against a target step and keeps any other shown
// against the same one: with --width > 1 the round then follows a later alternative.
class SecondChoiceVerifier : public StepVerifier {
 public:
  bool accept(std::string_view context, std::string_view target, std::string_view) override {
    stats_.calls++;
    const bool seen = !seen_.insert(std::string(context) + '\x01' + std::string(target)).second;
    if (seen) stats_.accepted++;
    return seen;
  }
  std::string name() const override { return "second-choice"; }

 private:
  std::set<std::string> seen_;
};

using test::plain_greedy;

struct LrRun {
  std::vector<int32_t> out;
  LookaheadStats stats;
  bool cache_ok = false;  // the cache equals a recomputation of prompt + out (but the last token)
};

LrRun lookahead_greedy(Forward& target, Forward& draft, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                       int n, StepVerifier& verifier, LookaheadOptions lo, int ctx = 2048) {
  const ModelConfig& c = target.model().config();
  auto pool = std::make_shared<KvPool>(c, KvPool::pages_for(lookahead_pool_tokens(ctx, lo)));
  KvCache kv(pool, ctx);
  Sampler s(SamplerParams{.temperature = 0}, c.n_vocab);
  GenerateOptions opt;
  opt.n_predict = n;
  LrRun r;
  lookahead_generate(target, kv, draft, s, tok, prompt, opt, verifier, lo, r.stats, [&](int32_t t) {
    r.out.push_back(t);
    return true;
  });
  // Everything but the last token is in the cache; its logits there equal a fresh prefill's.
  std::vector<int32_t> text = prompt;
  text.insert(text.end(), r.out.begin(), r.out.end());
  EXPECT_EQ(kv.length(), (int)text.size() - 1);
  if (kv.length() != (int)text.size() - 1) return r;
  if (kv.length() == kv.capacity()) {  // a full context: no room to feed the last token
    r.cache_ok = true;
    return r;
  }
  const int32_t last = text.back();
  SequenceInput in{&kv, {&last, 1}, false};
  auto got_span = target.run({&in, 1});
  std::vector<float> got(got_span.begin(), got_span.end());
  KvCache fresh(c, ctx);
  SequenceInput fin{&fresh, text, false};
  auto want = target.run({&fin, 1});
  r.cache_ok = std::equal(got.begin(), got.end(), want.begin(), want.end());
  return r;
}

std::vector<int32_t> chat(const Model& m, const std::string& user) {
  const Tokenizer& tok = m.tokenizer();
  return tok.encode(chat_prompt(m.gguf(), tok, user, "", nullptr), true, true);
}

const std::vector<std::string>& questions() {
  static const std::vector<std::string> q = {
      "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
      "clips did Natalia sell altogether in April and May? Think step by step.",
      "Write a Python function that checks whether a number is prime, then explain it in two short paragraphs.",
  };
  return q;
}

// The real pair (Qwen2.5-Coder-1.5B target, 0.5B draft): they disagree on some steps, so the
// rejection path runs; whatever is rejected, the output is the target's own.
TEST(Lookahead, RejectingEveryStepIsPlainGreedy) {
  auto target = Model::load(test::model_path("qwen1.5b"));
  auto draft = Model::load(test::model_path("qwen0.5b"));
  Forward tf(*target, 2);
  Forward df(*draft, tf.shared_pool());
  const Tokenizer& tok = target->tokenizer();
  int not_identical = 0, early = 0;
  for (size_t i = 0; i < questions().size(); i++) {
    const auto prompt = chat(*target, questions()[i]);
    const int n = 48;
    const auto want = plain_greedy(tf, tok, prompt, n);
    // Rejections decided when the target's step ends, or at once; token speculation inside the
    // steps by n-gram lookup or by the draft model.
    // Width 2: a tree of drafted steps.
    struct Config {
      bool early;
      StepTokenSpec spec;
      int width = 1;
    };
    for (Config cfg : {Config{false, StepTokenSpec::kNone}, Config{true, StepTokenSpec::kNgram},
                       Config{true, StepTokenSpec::kDraft}, Config{false, StepTokenSpec::kNone, 2},
                       Config{true, StepTokenSpec::kDraft, 2}}) {
      FixedVerifier reject(false, cfg.early);
      LookaheadOptions lo;
      lo.width = cfg.width;
      lo.depth = i || cfg.width > 1 ? 2 : 4;
      lo.steps.max_tokens = i ? 12 : 100;  // short caps: steps end without a boundary too
      lo.token_spec = cfg.spec;
      lo.spec_k = 4;
      LrRun r = lookahead_greedy(tf, df, tok, prompt, n, reject, lo);
      const std::string what = "question " + std::to_string(i) + ", early " + std::to_string(cfg.early) +
                               ", spec " + std::to_string((int)cfg.spec) + ", width " + std::to_string(cfg.width);
      EXPECT_EQ(r.out, want) << what;
      EXPECT_TRUE(r.cache_ok) << what;
      EXPECT_EQ(r.stats.kept_steps, r.stats.identical_steps) << "only identical steps bypass the verifier";
      EXPECT_LE(r.stats.identical_steps, r.stats.drafted_steps) << "identical steps are counted among the decided";
      if (!cfg.early) {
        // With a verifier that rules nothing out, only steps that may not be judged end early.
        EXPECT_LE(r.stats.early_rejections, r.stats.ineligible_steps) << what;
        EXPECT_LE(reject.stats().calls, r.stats.drafted_steps - r.stats.identical_steps - r.stats.ineligible_steps);
      } else {
        EXPECT_LE(reject.stats().calls, r.stats.drafted_steps - r.stats.identical_steps - r.stats.early_rejections);
        early += r.stats.early_rejections;
      }
      not_identical += r.stats.drafted_steps - r.stats.identical_steps;
      if (cfg.spec != StepTokenSpec::kNone) {
        EXPECT_GT(r.stats.spec_drafted, 0) << what;
      }
      if (cfg.spec == StepTokenSpec::kDraft) {
        EXPECT_GT(r.stats.spec_accepted, 0) << what;
      }
    }
  }
  EXPECT_GT(not_identical, 0) << "the draft never disagreed: the rejection path was not tested";
  EXPECT_GT(early, 0) << "no rejection was decided early: that path was not tested";
}

// Keeping drafted steps the target would not have written: the output is no longer the
// target's, but the cache must still equal a recomputation of it.
TEST(Lookahead, CacheAfterKeptAndRejectedStepsEqualsRecomputation) {
  auto target = Model::load(test::model_path("qwen1.5b"));
  auto draft = Model::load(test::model_path("qwen0.5b"));
  Forward tf(*target, 2);
  Forward df(*draft, tf.shared_pool());
  const Tokenizer& tok = target->tokenizer();
  const auto prompt = chat(*target, questions()[0]);
  FixedVerifier accept(true);
  LookaheadOptions lo;
  lo.depth = 3;
  lo.steps.max_tokens = 16;
  LrRun r = lookahead_greedy(tf, df, tok, prompt, 64, accept, lo);
  EXPECT_EQ(r.out.size(), 64u);
  EXPECT_TRUE(r.cache_ok);
  EXPECT_GT(r.stats.kept_steps, 0);
  int hist = 0;
  for (int v : r.stats.rounds_by_kept) hist += v;
  EXPECT_EQ(hist, r.stats.rounds);
}

// Draft = target, exact verifier: every drafted step is the target's own and is kept. With width
// 3 only each depth's first alternative is decided, and every one is kept.
TEST(Lookahead, SelfDraftKeepsEveryStep) {
  auto model = Model::load(test::model_path("smollm2"));
  Forward tf(*model, 2);
  Forward df(*model, tf.shared_pool());
  const Tokenizer& tok = model->tokenizer();
  for (int width : {1, 3}) {
    for (size_t i = 0; i < questions().size(); i++) {
      const auto prompt = chat(*model, questions()[i]);
      const int n = width == 1 ? 80 : 60;
      const auto want = plain_greedy(tf, tok, prompt, n);
      ExactVerifier exact;
      LookaheadOptions lo;
      lo.width = width;
      lo.depth = width == 1 ? 3 : 2;
      lo.steps.max_tokens = i ? 10 : 100;
      LrRun r = lookahead_greedy(tf, df, tok, prompt, n, exact, lo);
      const std::string what = "question " + std::to_string(i) + ", width " + std::to_string(width);
      EXPECT_EQ(r.out, want) << what;
      EXPECT_TRUE(r.cache_ok) << what;
      EXPECT_GT(r.stats.drafted_steps, 0);
      EXPECT_EQ(r.stats.kept_steps, r.stats.drafted_steps) << what;
      EXPECT_EQ(r.stats.identical_steps, r.stats.drafted_steps) << what;
      EXPECT_EQ(r.stats.ineligible_steps, 0);
      EXPECT_EQ(r.stats.kept_alternatives, 0) << what;
      EXPECT_EQ(exact.stats().calls, 0) << "identical steps need no verifier";
      EXPECT_GE(r.stats.rounds_by_kept[lo.depth], r.stats.rounds - 1) << "every round but the last keeps every step";
    }
  }
}

// Keeping later alternatives (the verifier rejects each depth's first one and keeps the next):
// the round follows a step read in a chain of its own cache, and steps drafted below it; the
// target's cache still equals a recomputation of the text.
TEST(Lookahead, TreeCacheAfterKeptAlternativesEqualsRecomputation) {
  auto target = Model::load(test::model_path("qwen1.5b"));
  auto draft = Model::load(test::model_path("qwen0.5b"));
  Forward tf(*target, 2);
  Forward df(*draft, tf.shared_pool());
  const Tokenizer& tok = target->tokenizer();
  int alternatives = 0, deep = 0;
  for (size_t i = 0; i < questions().size(); i++) {
    const auto prompt = chat(*target, questions()[i]);
    SecondChoiceVerifier second;
    LookaheadOptions lo;
    lo.width = 2;
    lo.depth = 3;
    lo.adaptive_depth = false;
    lo.steps.max_tokens = 8;
    LrRun r = lookahead_greedy(tf, df, tok, prompt, 56, second, lo);
    EXPECT_EQ(r.out.size(), 56u) << "question " << i;
    EXPECT_TRUE(r.cache_ok) << "question " << i;
    alternatives += r.stats.kept_alternatives;
    for (size_t d = 1; d < r.stats.kept_at_depth.size(); d++) deep += r.stats.kept_at_depth[d];
  }
  EXPECT_GT(alternatives, 0) << "no later alternative was kept: that path was not tested";
  EXPECT_GT(deep, 0) << "no step below depth 1 was kept";
}

TEST(Lookahead, TreeRefusesTooManySteps) {
  LookaheadOptions lo;
  lo.width = 4;
  lo.depth = 3;
  EXPECT_EQ(lookahead_tree_steps(lo), 4 + 16 + 64);
  lo.width = 8;
  lo.depth = 16;
  EXPECT_EQ(lookahead_tree_steps(lo), INT32_MAX);
  lo.width = 1;
  EXPECT_EQ(lookahead_tree_steps(lo), 16);
}

// Budgets and a full context stop lookahead where they stop plain generation.
TEST(Lookahead, StopsWhereGenerateStops) {
  auto model = Model::load(test::model_path("smollm2"));
  auto draft_model = Model::load(test::model_path("smollm2.f32"));
  Forward tf(*model, 2);
  Forward df(*draft_model, tf.shared_pool());
  const Tokenizer& tok = model->tokenizer();
  const auto prompt = chat(*model, questions()[0]);
  for (int width : {1, 2}) {
    for (int n : {1, 2, 7, 33}) {
      FixedVerifier reject(false);
      LookaheadOptions lo;
      lo.depth = 3;
      lo.width = width;
      lo.steps.max_tokens = 5;
      LrRun r = lookahead_greedy(tf, df, tok, prompt, n, reject, lo);
      EXPECT_EQ(r.out, plain_greedy(tf, tok, prompt, n)) << n << " width " << width;
    }
    const int ctx = (int)prompt.size() + 21;
    const auto want = plain_greedy(tf, tok, prompt, 100, ctx);
    EXPECT_EQ(want.size(), 22u);
    ExactVerifier exact;
    LookaheadOptions lo;
    lo.depth = width == 1 ? 4 : 3;
    lo.width = width;
    lo.steps.max_tokens = 6;
    LrRun r = lookahead_greedy(tf, df, tok, prompt, 100, exact, lo, ctx);
    EXPECT_EQ(r.out, want) << "width " << width;
  }
}

}  // namespace
}  // namespace stepq
