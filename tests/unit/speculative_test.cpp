// Token-level speculative decoding: the n-gram proposer, the verification rule (greedy and
// rejection sampling, with a chi-square test that also catches a wrong rule), and end to end on
// the real models: greedy speculative output equals plain greedy output token for token, with a
// draft model, with n-gram lookup, and across vocabularies; on two small generated models the
// sampled output distribution equals the target's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"
#include "greedy_reference.h"
#include "test_models.h"
#include "tokenizer/tokenizer.h"

namespace stepq {
namespace {

// --- n-gram ------------------------------------------------------------------------------------

TEST(NgramDrafter, ProposesWhatFollowedTheLongestMostRecentMatch) {
  NgramDrafter ng(2);
  std::vector<int32_t> out, h;
  std::vector<float> q{1.0f};
  // The bigram (1, 2) occurred at 0 and at 5; the most recent earlier one (5) wins.
  h = {1, 2, 3, 4, 9, 1, 2, 7, 8, 1, 2};
  ng.propose(h, 3, out, &q);
  EXPECT_EQ(out, (std::vector<int32_t>{7, 8, 1}));
  EXPECT_TRUE(q.empty());  // a point mass
  // Runs into the end of the history: only what exists.
  ng.propose(h, 10, out, nullptr);
  EXPECT_EQ(out, (std::vector<int32_t>{7, 8, 1, 2}));
  // No bigram match: falls back to the last unigram (5 at index 0).
  h = {5, 6, 7, 8, 5};
  ng.propose(h, 2, out, nullptr);
  EXPECT_EQ(out, (std::vector<int32_t>{6, 7}));
  // A longer match is preferred over a more recent shorter one.
  NgramDrafter ng3(3);
  h = {1, 2, 3, 40, 9, 3, 50, 1, 2, 3};
  ng3.propose(h, 1, out, nullptr);
  EXPECT_EQ(out, (std::vector<int32_t>{40}));
  // Nothing to match, or k = 0.
  h = {1, 2, 3};
  ng.propose(h, 4, out, nullptr);
  EXPECT_TRUE(out.empty());
  h = {1, 1};
  ng.propose(h, 0, out, nullptr);
  EXPECT_TRUE(out.empty());
  ng.propose(std::vector<int32_t>{}, 3, out, nullptr);
  EXPECT_TRUE(out.empty());
}

// --- verification on synthetic distributions ---------------------------------------------------

SamplerParams plain_sampling(uint64_t seed) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

TEST(VerifyDrafts, GreedyKeepsTheAgreeingPrefixThenTheTargetsToken) {
  constexpr int V = 6;
  SamplerParams sp;
  sp.temperature = 0;
  Sampler s(sp, V);
  // argmax per row: 3, 1, 4
  const std::vector<float> rows = {0, 0, 0, 5, 0, 0, /**/ 0, 5, 0, 0, 0, 0, /**/ 0, 0, 0, 0, 5, 0};
  std::vector<float> probs;
  VerifyResult r = verify_drafts(s, rows.data(), std::vector<int32_t>{3, 1}, {}, probs);
  EXPECT_EQ(r.n_accepted, 2);
  EXPECT_EQ(r.next, 4);  // all kept: the bonus token from the last row
  r = verify_drafts(s, rows.data(), std::vector<int32_t>{3, 2}, {}, probs);
  EXPECT_EQ(r.n_accepted, 1);
  EXPECT_EQ(r.next, 1);
  r = verify_drafts(s, rows.data(), std::vector<int32_t>{0, 1}, {}, probs);
  EXPECT_EQ(r.n_accepted, 0);
  EXPECT_EQ(r.next, 3);
  r = verify_drafts(s, rows.data(), {}, {}, probs);
  EXPECT_EQ(r.n_accepted, 0);
  EXPECT_EQ(r.next, 3);
  EXPECT_THROW(verify_drafts(s, rows.data(), std::vector<int32_t>{3}, std::vector<float>(2), probs), Error);
}

// Upper tail of chi-square with df degrees of freedom, as a standard normal z (Wilson–Hilferty).
double chi2_z(double x, int df) {
  const double v = 2.0 / (9.0 * df);
  return (std::cbrt(x / df) - (1.0 - v)) / std::sqrt(v);
}

// Chi-square statistic of `counts` (n samples) against `expected` probabilities, bins with an
// expected count below 5 pooled; returns z (above ~4.5: the counts do not come from expected).
double chi2_z_of(const std::map<std::vector<int32_t>, int>& counts, const std::map<std::vector<int32_t>, double>& expected,
                 int n) {
  double stat = 0, pooled_e = 0, pooled_o = 0;
  int df = -1;
  for (const auto& [key, p] : expected) {
    const double e = p * n;
    const auto it = counts.find(key);
    const double o = it == counts.end() ? 0 : it->second;
    if (e < 5) {
      pooled_e += e;
      pooled_o += o;
      continue;
    }
    stat += (o - e) * (o - e) / e;
    df++;
  }
  // Outcomes the expectation says are impossible (or pooled): one more bin.
  for (const auto& [key, o] : counts)
    if (!expected.count(key)) pooled_o += o;
  if (pooled_e > 0 || pooled_o > 0) {
    if (pooled_e < 1e-9) return pooled_o > 0 ? 1e9 : 0;
    stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
    df++;
  }
  return df > 0 ? chi2_z(stat, df) : 0;
}

// The first token a round emits must be distributed as the target's p whatever the draft's q,
// for a sampled draft and for a point mass; a wrong rule must be caught.
TEST(VerifyDrafts, FirstEmittedTokenIsDistributedAsTheTarget) {
  constexpr int V = 7, kSamples = 40000;
  std::mt19937 rng(3);
  std::vector<float> row(V), p(V), q(V);
  for (int j = 0; j < V; j++) row[j] = std::normal_distribution<float>(0, 1.2f)(rng);
  for (int j = 0; j < V; j++) q[j] = std::exp(std::normal_distribution<float>(0, 1.2f)(rng));
  double qs = 0;
  for (float v : q) qs += v;
  for (float& v : q) v = (float)(v / qs);
  Sampler ref(plain_sampling(1), V);
  ref.probabilities(row.data(), p.data());
  std::map<std::vector<int32_t>, double> expected;
  for (int j = 0; j < V; j++) expected[{j}] = p[j];

  for (bool point_mass : {false, true}) {
    for (AcceptRule rule : {AcceptRule::kRejectionSampling, AcceptRule::kBrokenForTesting}) {
      Sampler s(plain_sampling(7), V);
      std::discrete_distribution<int> draw_q(q.begin(), q.end());
      std::map<std::vector<int32_t>, int> counts;
      std::vector<float> probs;
      for (int i = 0; i < kSamples; i++) {
        const int32_t d = point_mass ? 2 : draw_q(rng);
        std::vector<float> rows2(row);
        rows2.insert(rows2.end(), row.begin(), row.end());
        const VerifyResult r = verify_drafts(s, rows2.data(), std::vector<int32_t>{d},
                                             point_mass ? std::span<const float>() : std::span<const float>(q), probs, rule);
        counts[{r.n_accepted ? d : r.next}]++;
      }
      const double z = chi2_z_of(counts, expected, kSamples);
      if (rule == AcceptRule::kRejectionSampling) EXPECT_LT(z, 4.5) << "point mass " << point_mass;
      else EXPECT_GT(z, 4.5) << "the broken rule went unnoticed, point mass " << point_mass;
    }
  }
}

// --- end to end on real models ------------------------------------------------------------------

using test::plain_greedy;

// Greedy speculative generation of n tokens; the target's cache must end holding all but the last token.
std::vector<int32_t> spec_greedy(Forward& fwd, const Tokenizer& tok, const std::vector<int32_t>& prompt, int n,
                                 Drafter& d, SpeculativeOptions so, SpeculativeStats* stats_out = nullptr,
                                 int ctx = 1024) {
  KvCache kv(fwd.model().config(), ctx);
  Sampler s(SamplerParams{.temperature = 0}, fwd.model().config().n_vocab);
  GenerateOptions opt;
  opt.n_predict = n;
  std::vector<int32_t> out;
  SpeculativeStats stats;
  speculative_generate(fwd, kv, s, tok, prompt, opt, d, so, stats, [&](int32_t t) {
    out.push_back(t);
    return true;
  });
  EXPECT_EQ(kv.length(), (int)(prompt.size() + out.size()) - 1);  // everything but the last token fed
  if (stats_out) *stats_out = stats;
  return out;
}

const std::vector<std::string>& prompts() {
  static const std::vector<std::string> p = {
      "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
      "Question: A baker sells 12 cakes a day for 5 days. How many cakes does she sell?\nAnswer:",
      "The quick brown fox jumps over the lazy dog. The quick brown fox",
      "for i in range(10):\n    print(i)\nfor j in range(10):\n",
      "1, 2, 3, 4, 5, 6, 7, 8,",
      "Once upon a time, in a small village by the sea,",
  };
  return p;
}

// Qwen2.5-Coder-1.5B with its 0.5B draft, and n-gram lookup: token for token the plain output,
// with adaptive and fixed k, and the caches end where they should.
TEST(Speculative, GreedyIsLosslessQwenDraftAndNgram) {
  auto target = Model::load(test::model_path("qwen1.5b"));
  auto draft = Model::load(test::model_path("qwen0.5b"));
  ASSERT_TRUE(same_vocabulary(target->tokenizer(), draft->tokenizer()));
  Forward tf(*target, 2);
  Forward df(*draft, tf.shared_pool());
  const Tokenizer& tok = target->tokenizer();
  int total_accepted = 0, total_drafted = 0;
  for (size_t i = 0; i < prompts().size(); i++) {
    const auto prompt = tok.encode(prompts()[i], true, false);
    const int n = 24;
    const auto want = plain_greedy(tf, tok, prompt, n);
    ModelDrafter md(df, 1024, SamplerParams{.temperature = 0});
    SpeculativeOptions so;
    so.k_max = i % 2 ? 3 : 8;
    so.adaptive = i % 3 != 2;
    SpeculativeStats st;
    EXPECT_EQ(spec_greedy(tf, tok, prompt, n, md, so, &st), want) << "draft, prompt " << i;
    total_accepted += st.accepted;
    total_drafted += st.drafted;
    EXPECT_EQ(std::accumulate(st.accepted_hist.begin(), st.accepted_hist.end(), 0), st.rounds);
    NgramDrafter ng(2);
    so.k_max = 6;
    so.adaptive = false;
    EXPECT_EQ(spec_greedy(tf, tok, prompt, n, ng, so), want) << "n-gram, prompt " << i;
  }
  // The pair is a real one: the draft agrees with the target much of the time.
  EXPECT_GT(total_accepted, total_drafted / 3);
}

// SmolLM2 (BPE) verified against drafts from Gemma 3 (SentencePiece, another vocabulary) through
// text, and a draft model identical to the target (everything accepted).
TEST(Speculative, GreedyIsLosslessAcrossVocabulariesAndWithSelfDraft) {
  auto target = Model::load(test::model_path("smollm2"));
  auto other = Model::load(test::model_path("gemma3"));
  ASSERT_FALSE(same_vocabulary(target->tokenizer(), other->tokenizer()));
  Forward tf(*target, 2);
  Forward of(*other, tf.shared_pool());
  Forward self(*target, tf.shared_pool());
  const Tokenizer& tok = target->tokenizer();
  for (size_t i = 0; i < prompts().size(); i++) {
    const auto prompt = tok.encode(prompts()[i], true, false);
    const int n = 32;
    const auto want = plain_greedy(tf, tok, prompt, n);
    TextDrafter td(of, tok, 1024);
    SpeculativeOptions so;
    EXPECT_EQ(spec_greedy(tf, tok, prompt, n, td, so), want) << "other vocabulary, prompt " << i;
    ModelDrafter md(self, 1024, SamplerParams{.temperature = 0});
    SpeculativeStats st;
    so.k_max = 5;
    so.adaptive = false;
    EXPECT_EQ(spec_greedy(tf, tok, prompt, n, md, so, &st), want) << "self draft, prompt " << i;
    EXPECT_EQ(st.accepted, st.drafted) << "a draft identical to the target is always right";
  }
}

// Stopping rules are generate()'s: n_predict exactly, and a full context at the same token.
TEST(Speculative, StopsWhereGenerateStops) {
  auto model = Model::load(test::model_path("smollm2"));
  Forward fwd(*model, 1);
  const Tokenizer& tok = model->tokenizer();
  const auto prompt = tok.encode("1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2,", true, false);
  for (int n : {1, 2, 7, 19}) {
    NgramDrafter ng(2);
    SpeculativeOptions so;
    so.k_max = 6;
    EXPECT_EQ(spec_greedy(fwd, tok, prompt, n, ng, so).size(), (size_t)n);
  }
  const int ctx = (int)prompt.size() + 10;
  const auto want = plain_greedy(fwd, tok, prompt, 100, ctx);
  NgramDrafter ng(2);
  SpeculativeOptions so;
  so.k_max = 6;
  EXPECT_EQ(spec_greedy(fwd, tok, prompt, 100, ng, so, nullptr, ctx), want);
  EXPECT_EQ(want.size(), 11u);
}

// On two small generated models (tools/make_test_model.py: a target and a draft that is the
// target plus noise), the distribution of the first three sampled tokens with draft speculation
// (sampled drafts, and greedy drafts as point masses) equals the target's, enumerated exactly; the broken rule is caught.
TEST(Speculative, SampledDistributionIsTheTargets) {
  auto target = Model::load(test::model_path("stepq-tiny-target.gguf"));
  auto draft = Model::load(test::model_path("stepq-tiny-draft.gguf"));
  Forward tf(*target, 1);
  Forward df(*draft, tf.shared_pool());
  const Tokenizer& tok = target->tokenizer();
  const int V = target->config().n_vocab;
  SamplerParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 4;  // small supports, so that 64 outcomes of three tokens can be counted
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  const std::vector<int32_t> prompt = {1, 200, 300, 400};

  // Exact distribution of three tokens: p(a) p(b | a) p(c | a, b).
  std::map<std::vector<int32_t>, double> expected;
  {
    Sampler s(sp, V);
    std::vector<float> probs(V);
    auto dist = [&](const std::vector<int32_t>& seq) {
      KvCache kv(target->config(), 64);
      SequenceInput in{&kv, seq, false};
      auto logits = tf.run({&in, 1});
      s.probabilities(logits.data(), probs.data());
      std::vector<std::pair<int32_t, double>> out;
      for (int j = 0; j < V; j++)
        if (probs[j] > 0) out.push_back({j, probs[j]});
      return out;
    };
    for (auto [a, pa] : dist(prompt)) {
      auto pre = prompt;
      pre.push_back(a);
      for (auto [b, pb] : dist(pre)) {
        auto pre2 = pre;
        pre2.push_back(b);
        for (auto [c, pc] : dist(pre2)) expected[{a, b, c}] = pa * pb * pc;
      }
    }
  }
  ASSERT_GE(expected.size(), 20u);

  auto sample_counts = [&](Drafter& d, AcceptRule rule, int n_samples, int* drafted, int* accepted) {
    std::map<std::vector<int32_t>, int> counts;
    for (int i = 0; i < n_samples; i++) {
      SamplerParams spi = sp;
      spi.seed = 1000 + i;
      Sampler s(spi, V);
      KvCache kv(target->config(), 64);
      GenerateOptions opt;
      opt.n_predict = 3;
      opt.ignore_eos = true;
      SpeculativeOptions so;
      so.k_max = 3;
      so.k_start = 3;
      so.rule = rule;
      SpeculativeStats st;
      std::vector<int32_t> out;
      speculative_generate(tf, kv, s, tok, prompt, opt, d, so, st, [&](int32_t t) {
        out.push_back(t);
        return true;
      });
      counts[out]++;
      *drafted += st.drafted;
      *accepted += st.accepted;
    }
    return counts;
  };
  constexpr int kSamples = 6000;
  {
    SamplerParams dsp = sp;
    ModelDrafter md(df, 64, dsp);
    int drafted = 0, accepted = 0;
    const auto counts = sample_counts(md, AcceptRule::kRejectionSampling, kSamples, &drafted, &accepted);
    EXPECT_LT(chi2_z_of(counts, expected, kSamples), 4.5) << "draft model";
    // Both branches of the rule ran many times.
    EXPECT_GT(accepted, drafted / 5);
    EXPECT_LT(accepted, drafted * 9 / 10);
  }
  {
    ModelDrafter md(df, 64, sp);
    int drafted = 0, accepted = 0;
    const auto counts = sample_counts(md, AcceptRule::kBrokenForTesting, kSamples, &drafted, &accepted);
    EXPECT_GT(chi2_z_of(counts, expected, kSamples), 4.5) << "the broken rule went unnoticed";
  }
  {
    // Point masses: the draft proposes its greedy tokens while the target samples.
    SamplerParams greedy = sp;
    greedy.temperature = 0;
    ModelDrafter md(df, 64, greedy);
    int drafted = 0, accepted = 0;
    const auto counts = sample_counts(md, AcceptRule::kRejectionSampling, kSamples, &drafted, &accepted);
    EXPECT_LT(chi2_z_of(counts, expected, kSamples), 4.5) << "greedy draft (point masses)";
    EXPECT_GT(accepted, drafted / 5);
  }
}

}  // namespace
}  // namespace stepq
