// Lookahead Reasoning's building blocks: cutting generated tokens into steps (incremental and
// offline, on hand-made pieces and on real tokenizer output), and the step verifiers: the
// normalized exact match, MiniLM embedding similarity, and the LLM judge checked against an
// independent forward of the same prompt on a fresh cache (SmolLM2-135M and Qwen2.5-Coder-0.5B).
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/gguf.h"
#include "model/bert.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/step_verifier.h"
#include "runtime/steps.h"
#include "test_models.h"
#include "tokenizer/chat_defaults.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace stepq {
namespace {

// Feeds pieces (ids 0, 1, ...) and returns what each push() reported.
std::vector<StepEnd> feed(StepSplitter& s, const std::vector<std::string>& pieces, int first_id = 0) {
  std::vector<StepEnd> out;
  for (size_t i = 0; i < pieces.size(); i++) out.push_back(s.push(first_id + (int)i, pieces[i]));
  return out;
}

constexpr StepEnd kNone = StepEnd::kNone, kBoundary = StepEnd::kBoundary, kCap = StepEnd::kTokenCap;

// --- splitter --------------------------------------------------------------------------------

TEST(StepSplitter, BoundaryInsideOneToken) {
  StepSplitter s;
  EXPECT_TRUE(s.after_boundary());
  EXPECT_EQ(feed(s, {"She sells", " 9 eggs", ".\n\nThe"}), (std::vector<StepEnd>{kNone, kNone, kBoundary}));
  // The step ends at the token holding the boundary; what follows the boundary in it stays.
  EXPECT_EQ(s.text(), "She sells 9 eggs.\n\nThe");
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_TRUE(s.ended());
  EXPECT_EQ(s.push(7, " money"), kNone);
  EXPECT_FALSE(s.ended());
  EXPECT_EQ(s.text(), " money");
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), (std::vector<int32_t>{7}));
  EXPECT_TRUE(s.after_boundary());
  EXPECT_EQ(s.previous_end(), kBoundary);
}

TEST(StepSplitter, BoundarySplitAcrossTokens) {
  StepSplitter s;
  EXPECT_EQ(feed(s, {"9 * 2 = 18", ".\n", "\n"}), (std::vector<StepEnd>{kNone, kNone, kBoundary}));
  EXPECT_EQ(s.text(), "9 * 2 = 18.\n\n");
  // Two newlines that are not adjacent are no boundary.
  EXPECT_EQ(feed(s, {"a\n", "b", "\n", "c"}), (std::vector<StepEnd>{kNone, kNone, kNone, kNone}));
  EXPECT_EQ(s.text(), "a\nb\nc");
  // Three newlines in three tokens: the step ends at the second; the third starts the next step
  // (matching starts over with each step, as stop strings do) and pairs only with a newline
  // right after it.
  s.reset();
  EXPECT_EQ(feed(s, {"x", "\n", "\n", "\n", "y", "\n"}), (std::vector<StepEnd>{kNone, kNone, kBoundary, kNone, kNone, kNone}));
  EXPECT_EQ(s.text(), "\ny\n");
  EXPECT_EQ(s.push(9, "\n"), kBoundary);
  EXPECT_EQ(s.text(), "\ny\n\n");
}

TEST(StepSplitter, BoundaryAtTheVeryStart) {
  StepSplitter s;
  EXPECT_EQ(s.push(5, "\n\n"), kBoundary);
  EXPECT_EQ(s.tokens().size(), 1u);
  EXPECT_EQ(s.text(), "\n\n");
  EXPECT_TRUE(s.after_boundary());  // reset()'s default: the prompt counts as a boundary
  EXPECT_EQ(s.push(6, "Next"), kNone);
  EXPECT_TRUE(s.after_boundary());
  // Told that the text before does not end at a boundary.
  s.reset(false);
  EXPECT_FALSE(s.after_boundary());
  EXPECT_EQ(s.previous_end(), kNone);
  EXPECT_EQ(s.push(1, "\n\n"), kBoundary);
  EXPECT_FALSE(s.after_boundary());
  EXPECT_EQ(s.push(2, "a"), kNone);
  EXPECT_TRUE(s.after_boundary());
}

TEST(StepSplitter, TokenCapEndsTheStepExactlyAtMaxTokens) {
  StepSplitter s({"\n\n", 5});
  std::vector<StepEnd> got = feed(s, {"a", "b", "c", "d", "e"});
  EXPECT_EQ(got, (std::vector<StepEnd>{kNone, kNone, kNone, kNone, kCap}));
  EXPECT_EQ(s.text(), "abcde");
  EXPECT_EQ(s.tokens().size(), 5u);
  // The next step starts in the middle of a thought.
  got = feed(s, {"f", "g", "h", "i", "j", "k"}, 10);
  EXPECT_EQ(got, (std::vector<StepEnd>{kNone, kNone, kNone, kNone, kCap, kNone}));
  EXPECT_EQ(s.text(), "k");
  EXPECT_FALSE(s.after_boundary());
  EXPECT_EQ(s.previous_end(), kCap);
  // A boundary in the cap's token wins; a boundary after a capped step ends a short step.
  s.reset();
  EXPECT_EQ(feed(s, {"a", "b", "c", "d", "e\n\n"}), (std::vector<StepEnd>{kNone, kNone, kNone, kNone, kBoundary}));
  EXPECT_EQ(feed(s, {"1", "2", "3", "4", "5", "6", "\n\n"}), (std::vector<StepEnd>{kNone, kNone, kNone, kNone, kCap, kNone, kBoundary}));
  EXPECT_EQ(s.text(), "6\n\n");
  EXPECT_FALSE(s.after_boundary());
  // max_tokens = 1: every token is a step.
  StepSplitter one({"\n\n", 1});
  EXPECT_EQ(feed(one, {"a", "b"}), (std::vector<StepEnd>{kCap, kCap}));
}

TEST(StepSplitter, TokenWithTheBoundaryTwice) {
  StepSplitter s;
  EXPECT_EQ(feed(s, {"Step", " 1.\n\nStep 2.\n\nStep", " 3"}), (std::vector<StepEnd>{kNone, kBoundary, kNone}));
  EXPECT_EQ(s.text(), " 3");  // one step ends; no empty step in between
  EXPECT_EQ(feed(s, {"\n\n\n\n", "x"}), (std::vector<StepEnd>{kBoundary, kNone}));
  EXPECT_EQ(s.text(), "x");
}

TEST(StepSplitter, MultiByteCharactersSplitAcrossTokens) {
  // "€" is E2 82 AC, cut over three byte tokens, the boundary arriving with the last byte.
  StepSplitter s;
  EXPECT_EQ(feed(s, {"cost 5", "\xE2", "\x82", "\xAC.\n", "\n"}), (std::vector<StepEnd>{kNone, kNone, kNone, kNone, kBoundary}));
  EXPECT_EQ(s.text(), "cost 5\xE2\x82\xAC.\n\n");
  // A multi-byte boundary ("。", E3 80 82) split inside its character; "、" (E3 80 81) shares two
  // bytes with it and is no boundary.
  StepSplitter cjk({"\xE3\x80\x82", 100});
  EXPECT_EQ(feed(cjk, {"\xE5\xA5\xBD\xE3\x80", "\x81", "\xE3", "\x80\x82"}), (std::vector<StepEnd>{kNone, kNone, kNone, kBoundary}));
  EXPECT_EQ(cjk.text(), "\xE5\xA5\xBD\xE3\x80\x81\xE3\x80\x82");
  // A boundary whose prefix repeats: "aab" found in "aa" + "ab" (the match starts inside the
  // first piece, one byte before the second).
  StepSplitter rep({"aab", 100});
  EXPECT_EQ(feed(rep, {"aa", "ab"}), (std::vector<StepEnd>{kNone, kBoundary}));
  // Empty pieces (control tokens without text) change nothing.
  StepSplitter e;
  EXPECT_EQ(feed(e, {"\n", "", "\n"}), (std::vector<StepEnd>{kNone, kNone, kBoundary}));
}

TEST(StepSplitter, RefusesBadRules) {
  EXPECT_THROW(StepSplitter({"", 100}), Error);
  EXPECT_THROW(StepSplitter({"\n\n", 0}), Error);
}

// A GSM8K-style solution with steps, one step longer than a small cap, and characters that the
// byte-level BPE cuts into several tokens (CJK, an emoji, "’", "€").
const char* kSolution =
    "Janet’s ducks lay 16 eggs per day.\n\n"
    "She eats 3 for breakfast and bakes muffins with 4, so she uses 3 + 4 = 7 eggs.\n\n"
    "That leaves 16 - 7 = 9 eggs to sell at the farmers' market, every single day of the week, "
    "rain or shine, whether the ducks are happy or not, and whether or not anyone wants to buy "
    "them, which is a long sentence that goes on for well over twenty tokens without a break.\n\n"
    "She sells each egg for $2 (about 1.84 €), so she makes 9 * 2 = $18 every day. 🦆 好的。\n\n\n"
    "**Answer:** \\boxed{18}";

struct Vocab {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
};

Vocab load_vocab(const std::string& name) {
  Vocab v;
  const std::string path = test::model_path(name);
  if (!std::filesystem::exists(path)) return v;
  v.file = GgufFile::open(path);
  v.tok = Tokenizer::from_gguf(*v.file);
  return v;
}

// The first n GSM8K answers, their lines made into steps ("\n" -> "\n\n"), joined by "\n\n".
std::string gsm8k_answers(int n) {
  std::ifstream in(test::shared_dir() + "/data/gsm8k/test.jsonl");
  std::string line, out;
  for (int i = 0; i < n && std::getline(in, line); i++) {
    std::string a = nlohmann::json::parse(line)["answer"].get<std::string>();
    for (char c : a) out += c == '\n' ? std::string("\n\n") : std::string(1, c);
    out += "\n\n";
  }
  return out;
}

void check_offline_matches_incremental(const Tokenizer& tok, const std::string& text, const StepRules& rules,
                                       const std::string& what) {
  const std::vector<int32_t> ids = tok.encode(text, false, false);
  const std::vector<Step> steps = split_steps(tok, ids, rules);
  ASSERT_FALSE(steps.empty()) << what;
  // The steps cover every token once, in order, and their texts are the whole text.
  std::string joined;
  int next = 0;
  for (const Step& st : steps) {
    EXPECT_EQ(st.begin, next) << what;
    EXPECT_GT(st.end, st.begin) << what;
    next = st.end;
    joined += st.text;
  }
  EXPECT_EQ(next, (int)ids.size()) << what;
  EXPECT_EQ(joined, text) << what;  // byte-level BPE pieces concatenate to the text
  // Fed one token at a time, the splitter ends the same steps at the same tokens.
  StepSplitter s(rules);
  size_t k = 0;
  int n_boundary = 0, n_cap = 0;
  bool split_char = false;
  for (size_t i = 0; i < ids.size(); i++) {
    const std::string piece = tok.token_to_piece(ids[i], false);
    if (!piece.empty() && unicode::utf8_sequence_length(piece) == 0) split_char = true;
    const StepEnd e = s.push(ids[i], piece);
    ASSERT_LT(k, steps.size()) << what;
    if (e == StepEnd::kNone) {
      // Inside a step, or the last token of an open last step.
      if (k + 1 == steps.size() && steps[k].ended == StepEnd::kNone && (int)i + 1 == steps[k].end) {
        EXPECT_EQ(s.text(), steps[k].text) << what;
        EXPECT_EQ(s.after_boundary(), steps[k].after_boundary) << what;
      } else {
        EXPECT_LT((int)i + 1, steps[k].end) << what << " token " << i;
      }
      continue;
    }
    EXPECT_EQ((int)i + 1, steps[k].end) << what << " token " << i;
    EXPECT_EQ(e, steps[k].ended) << what << " step " << k;
    EXPECT_EQ(s.text(), steps[k].text) << what << " step " << k;
    EXPECT_EQ(s.after_boundary(), steps[k].after_boundary) << what << " step " << k;
    EXPECT_EQ((int)s.tokens().size(), steps[k].end - steps[k].begin) << what;
    // Boundary: the boundary is in the step and ends inside its last token; cap: exactly
    // max_tokens tokens and no boundary.
    if (e == StepEnd::kBoundary) {
      n_boundary++;
      const std::string last = tok.token_to_piece(ids[i], false);
      const std::string before = steps[k].text.substr(0, steps[k].text.size() - last.size());
      EXPECT_NE(steps[k].text.find(rules.boundary), std::string::npos) << what;
      EXPECT_EQ(before.find(rules.boundary), std::string::npos) << what;
    } else {
      n_cap++;
      EXPECT_EQ(steps[k].end - steps[k].begin, rules.max_tokens) << what;
      EXPECT_EQ(steps[k].text.find(rules.boundary), std::string::npos) << what;
    }
    k++;
  }
  // Every closed step was seen; the last step is open unless the text ended at a step's end.
  EXPECT_EQ(k + (steps.back().ended == StepEnd::kNone ? 1 : 0), steps.size()) << what;
  EXPECT_GT(n_boundary, 0) << what;
  if (what.find("cap") != std::string::npos) {
    EXPECT_GT(n_cap, 0) << what;
  }
  if (what.find("solution") != std::string::npos) {
    EXPECT_TRUE(split_char) << what << ": no character split by a token";
  }
}

TEST(StepSplitter, OfflineSplitAgreesWithIncrementalOnRealTokens) {
  for (const char* name : {"smollm2", "qwen0.5b"}) {
    Vocab v = load_vocab(name);
    if (!v.tok) continue;
    check_offline_matches_incremental(*v.tok, kSolution, {}, std::string(name) + " solution");
    check_offline_matches_incremental(*v.tok, kSolution, {"\n\n", 20}, std::string(name) + " solution, cap 20");
    const std::string gsm = gsm8k_answers(40);
    if (!gsm.empty()) {
      check_offline_matches_incremental(*v.tok, gsm, {}, std::string(name) + " gsm8k");
      check_offline_matches_incremental(*v.tok, gsm, {"\n\n", 12}, std::string(name) + " gsm8k, cap 12");
    }
    // The solution's paragraphs are its steps (no step is long enough for the default cap).
    const std::vector<int32_t> ids = v.tok->encode(kSolution, false, false);
    const std::vector<Step> steps = split_steps(*v.tok, ids);
    ASSERT_EQ(steps.size(), 5u) << name;
    EXPECT_EQ(steps[0].text, "Janet’s ducks lay 16 eggs per day.\n\n") << name;
    EXPECT_EQ(steps.back().ended, StepEnd::kNone) << name;
    for (size_t i = 0; i + 1 < steps.size(); i++) EXPECT_EQ(steps[i].ended, StepEnd::kBoundary) << name << " " << i;
  }
}

// --- exact -------------------------------------------------------------------------------------

TEST(StepVerifier, ExactNormalization) {
  EXPECT_EQ(normalize_step(" The Answer\tis\r\n 42.\n\n"), "theansweris42.");
  EXPECT_EQ(normalize_step("\v\f"), "");
  EXPECT_TRUE(normalized_equal("So she makes 9 * 2 = $18.", "so she makes 9*2=$18.\n\n"));
  EXPECT_TRUE(normalized_equal("A B", "ab"));
  EXPECT_TRUE(normalized_equal("", " \n\t"));
  EXPECT_FALSE(normalized_equal("9 * 2 = 18", "9 * 2 = 16"));
  EXPECT_FALSE(normalized_equal("18", "18."));
  EXPECT_FALSE(normalized_equal("abc", "ab"));
  // Non-ASCII is left alone: no Unicode case folding, no Unicode spaces removed.
  EXPECT_FALSE(normalized_equal("\xC3\x89t\xC3\xA9", "\xC3\xA9t\xC3\xA9"));       // "Été" vs "été"
  EXPECT_FALSE(normalized_equal("a\xC2\xA0" "b", "ab"));                          // NO-BREAK SPACE
  EXPECT_TRUE(normalized_equal("\xC3\xA9 T\xC3\xA9", "\xC3\xA9t\xC3\xA9"));       // ASCII folded around it
  EXPECT_EQ(normalize_step("\xC3\x89 X"), "\xC3\x89x");

  // normalized_equal agrees with comparing normalize_step on random strings.
  std::mt19937 rng(7);
  const char alphabet[] = {'a', 'A', 'b', 'B', ' ', '\n', '\t', '\r', '1', '.', '\xC3', '\x89'};
  for (int t = 0; t < 20000; t++) {
    std::string a, b;
    for (int i = rng() % 7; i > 0; i--) a += alphabet[rng() % sizeof alphabet];
    for (int i = rng() % 7; i > 0; i--) b += alphabet[rng() % sizeof alphabet];
    ASSERT_EQ(normalized_equal(a, b), normalize_step(a) == normalize_step(b)) << "'" << a << "' '" << b << "'";
  }

  // normalized_prefix agrees with the normalized strings, and may_accept never rules out a
  // prefix of a step the verifier would accept: every prefix of a matching target step passes.
  for (int t = 0; t < 20000; t++) {
    std::string a, b;
    for (int i = rng() % 7; i > 0; i--) a += alphabet[rng() % sizeof alphabet];
    for (int i = rng() % 9; i > 0; i--) b += alphabet[rng() % sizeof alphabet];
    const std::string na = normalize_step(a), nb = normalize_step(b);
    ASSERT_EQ(normalized_prefix(a, b), nb.compare(0, na.size(), na) == 0) << "'" << a << "' '" << b << "'";
    if (normalized_equal(a, b)) {
      for (size_t n = 0; n <= a.size(); n++) {
        ASSERT_TRUE(ExactVerifier().may_accept(a.substr(0, n), b)) << a << " " << n;
      }
    }
  }
  EXPECT_TRUE(normalized_prefix("So she", "so she makes 9*2"));
  EXPECT_FALSE(normalized_prefix("So he", "so she makes"));
  EXPECT_FALSE(normalized_prefix("so she makes 9*2=$18. More", "so she makes 9*2=$18."));

  ExactVerifier v;
  EXPECT_EQ(v.name(), "exact");
  EXPECT_TRUE(v.may_accept("X =", "x = 1"));
  EXPECT_FALSE(v.may_accept("x = 2", "x = 1"));
  EXPECT_TRUE(v.accept("ignored", "x = 1\n\n", "X=1"));
  EXPECT_FALSE(v.accept("", "x = 1", "x = 2"));
  EXPECT_EQ(v.stats().calls, 2);
  EXPECT_EQ(v.stats().accepted, 1);
  EXPECT_EQ(v.stats().exact_matches, 1);
  EXPECT_EQ(v.stats().model_calls, 0);
}

TEST(StepVerifier, FactoryNamesAndErrors) {
  StepVerifierOptions o;
  EXPECT_EQ(make_step_verifier("exact", o)->name(), "exact");
  auto message = [&](const std::string& name, const StepVerifierOptions& opt) {
    try {
      make_step_verifier(name, opt);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("cosine", o).find("choose exact, embed or judge"), std::string::npos);
  EXPECT_NE(message("embed", o).find("needs a sentence-embedding model"), std::string::npos);
  EXPECT_NE(message("judge", o).find("needs a judge model"), std::string::npos);
  StepVerifierOptions missing;
  missing.embed_model = "/nonexistent/all-MiniLM-L6-v2";
  EXPECT_NE(message("embed", missing).find("/nonexistent/all-MiniLM-L6-v2"), std::string::npos);
  missing.embed_threshold = 2.0f;
  EXPECT_NE(message("embed", missing).find("threshold"), std::string::npos);
}

// --- embed -------------------------------------------------------------------------------------

// A GSM8K-like step, a paraphrase with the same numbers, and the step with one result changed.
const std::string kStep = "She sells the remaining 9 eggs at $2 each, so she makes 9 * 2 = $18 every day.";
const std::string kParaphrase = "Selling the 9 leftover eggs for $2 apiece earns her 9 * 2 = $18 each day.";
const std::string kWrongResult = "She sells the remaining 9 eggs at $2 each, so she makes 9 * 2 = $16 every day.";

// Options for the embed verifier on MiniLM with 2 threads; false when MiniLM is not fetched.
bool minilm_options(StepVerifierOptions& o) {
  o.embed_model = test::model_path("minilm");
  o.pool = std::make_shared<ThreadPool>(2);
  return std::filesystem::exists(o.embed_model);
}

TEST(LookaheadEmbedVerifier, MiniLMSimilarity) {
  StepVerifierOptions o;
  if (!minilm_options(o)) return;
  const std::string& dir = o.embed_model;
  auto made = make_step_verifier("embed", o);
  auto& v = dynamic_cast<EmbedVerifier&>(*made);
  EXPECT_EQ(v.name(), "embed");
  EXPECT_FLOAT_EQ(v.threshold(), 0.93f);
  EXPECT_TRUE(v.checks_numbers());

  const std::string& step = kStep;
  const std::string& paraphrase = kParaphrase;
  const std::string other_numbers = "She sells the remaining 9 eggs at $3 each, so she makes 9 * 3 = $27 every day.";
  const std::string& wrong_result = kWrongResult;
  const std::string unrelated = "The ducks are kept in a pond behind the barn.";
  const float s_para = v.similarity(step, paraphrase);
  const float s_num = v.similarity(step, other_numbers);
  const float s_wrong = v.similarity(step, wrong_result);
  const float s_unrel = v.similarity(step, unrelated);
  std::printf("  MiniLM cosine to the step: paraphrase %.4f, other numbers %.4f, one wrong result %.4f, unrelated %.4f\n",
              s_para, s_num, s_wrong, s_unrel);
  EXPECT_GT(s_para, s_num);  // same numbers in other words beat the same words with other numbers
  EXPECT_GT(s_para, s_unrel + 0.2f);
  EXPECT_GT(s_num, s_unrel + 0.2f);
  // The embedding's blind spot, pinned so that a change of model or threshold shows here: one
  // wrong result in otherwise identical words scores above the correct paraphrase, and both are
  // above the default threshold; the default numbers check tells them apart.
  EXPECT_GT(s_wrong, s_para);
  EXPECT_GT(s_wrong, v.threshold());
  EXPECT_GT(s_para, v.threshold());
  EXPECT_TRUE(v.accept("", step, paraphrase));
  EXPECT_FALSE(v.accept("", step, wrong_result));
  // Symmetric and reproducible (one batch of two, batch-invariant rows).
  EXPECT_FLOAT_EQ(v.similarity(paraphrase, step), s_para);

  // Identical up to whitespace and case: the exact shortcut, no forward.
  const int64_t calls_before = v.stats().model_calls;
  EXPECT_TRUE(v.accept("", step, "  " + step + "\n\n"));
  EXPECT_EQ(v.stats().model_calls, calls_before);
  EXPECT_EQ(v.stats().exact_matches, 1);

  // The threshold decides, at the computed similarity.
  for (float delta : {-1e-4f, 1e-4f}) {
    EmbedVerifier t(BertModel::load(dir), o.pool, s_para + delta);
    EXPECT_EQ(t.accept("", step, paraphrase), delta < 0) << delta;
    EXPECT_EQ(t.stats().model_calls, 1);
    EXPECT_FLOAT_EQ(t.last_similarity(), s_para);
  }
  // A step cut inside a character by the token cap is embedded without its broken tail.
  EXPECT_NO_THROW(v.accept("", "She makes 5\xE2\x82", "She makes 5"));

  const int n = 20;
  const double t0 = now_s();
  for (int i = 0; i < n; i++) v.similarity(step + std::to_string(i), other_numbers);
  std::printf("  embed call (2 threads, a pair of ~25-token steps): %.2f ms\n", (now_s() - t0) / n * 1e3);
}

TEST(StepVerifier, StepNumbers) {
  using V = std::vector<std::string>;
  EXPECT_EQ(step_numbers(""), V{});
  EXPECT_EQ(step_numbers("no numbers here."), V{});
  // Sorted; separators, leading and trailing zeros dropped.
  EXPECT_EQ(step_numbers("9 * 2 = $18"), (V{"18", "2", "9"}));
  EXPECT_EQ(step_numbers("$1,234.50 and 007 and 18.00"), (V{"1234.5", "18", "7"}));
  EXPECT_EQ(step_numbers("0.50"), V{"0.5"});
  EXPECT_EQ(step_numbers("0"), V{"0"});
  EXPECT_EQ(step_numbers("000"), V{"0"});
  // A comma not followed by exactly three digits separates numbers; a sentence's full stop is no
  // decimal point; signs are not read.
  EXPECT_EQ(step_numbers("1,2,3"), (V{"1", "2", "3"}));
  EXPECT_EQ(step_numbers("12,3456"), (V{"12", "3456"}));
  EXPECT_EQ(step_numbers("It costs 5. Then 6."), (V{"5", "6"}));
  EXPECT_EQ(step_numbers("x = -5, y = 5.5.5"), (V{"5", "5.5"}));
  // Distinct numbers: a result restated is the same result.
  EXPECT_EQ(step_numbers("She makes 9 * 2 = $18"), step_numbers("She earns $18 daily, since 9 * 2 = 18."));
  EXPECT_EQ(step_numbers("\\frac{3}{4}x^2"), (V{"2", "3", "4"}));
  // Order and wording do not matter, a changed result does.
  EXPECT_EQ(step_numbers("5 + 3 = 8"), step_numbers("Adding 3 and 5 gives 8."));
  EXPECT_NE(step_numbers("9 * 2 = 18"), step_numbers("9 * 2 = 16"));
  // Awkward bytes: digits next to multi-byte characters and a cut character.
  EXPECT_EQ(step_numbers("\xE2\x82\xAC" "12\xC3\xA9" "3\xE2"), (V{"12", "3"}));
}

TEST(LookaheadEmbedVerifier, NumbersCheckAndLog) {
  StepVerifierOptions o;
  if (!minilm_options(o)) return;
  o.embed_threshold = 0.5f;
  const std::string& step = kStep;
  const std::string& paraphrase = kParaphrase;
  const std::string& wrong_result = kWrongResult;
  for (bool check : {false, true}) {
    o.numbers_check = check;
    auto v = make_step_verifier("embed", o);
    std::vector<StepDecision> seen;
    std::vector<std::string> texts;
    v->set_log([&](const StepDecision& d) {
      seen.push_back(d);
      texts.push_back(std::string(d.context) + "|" + std::string(d.target_step) + "|" + std::string(d.draft_step));
    });
    EXPECT_TRUE(v->accept("ctx", step, paraphrase));
    EXPECT_EQ(v->accept("ctx", step, wrong_result), !check) << check;  // cosine ~0.98, numbers differ
    EXPECT_TRUE(v->accept("", step, " " + step));
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(texts[0], "ctx|" + step + "|" + paraphrase);
    EXPECT_FALSE(seen[0].exact);
    EXPECT_TRUE(seen[0].accepted);
    EXPECT_GT(seen[0].score, 0.5);
    EXPECT_LT(seen[0].score, 1.0);
    EXPECT_EQ(seen[0].same_numbers, 1);
    EXPECT_EQ(seen[1].same_numbers, 0);
    EXPECT_EQ(seen[1].accepted, !check);
    // With the check on, the mismatch is decided without a model call (no score).
    EXPECT_EQ(std::isnan(seen[1].score), check);
    EXPECT_EQ(v->stats().model_calls, check ? 1 : 2);
    EXPECT_TRUE(seen[2].exact && seen[2].accepted);
    EXPECT_TRUE(std::isnan(seen[2].score));
    EXPECT_EQ(seen[2].same_numbers, -1);
  }
}

// --- judge -------------------------------------------------------------------------------------

// The judge's prompt, built here from the chat template and the documented layout.
std::string judge_prompt(const Model& m, const std::string& context, const std::string& s1, const std::string& s2) {
  const Tokenizer& tok = m.tokenizer();
  std::string user(JudgeVerifier::instruction());
  if (!context.empty()) user += "Text before both reasoning steps (its end only):\n<context>\n" + context + "\n</context>\n\n";
  user += "Reasoning step 1 (s1):\n<start_s1>\n" + s1 + "\n<end_s1>\n\nReasoning step 2 (s2):\n<start_s2>\n" + s2 +
          "\n<end_s2>";
  const std::string bos = tok.bos() >= 0 ? tok.token_to_piece(tok.bos(), true) : "";
  const std::string eos = tok.eos() >= 0 ? tok.token_to_piece(tok.eos(), true) : "";
  return strip_template_bos(ChatTemplate(resolve_chat_template(m.gguf(), tok).source).apply({{"user", user}}, true, bos, eos),
                            tok) +
         "[";
}

// The two logits after a prompt, from a fresh cache in one plain forward.
JudgeVerifier::Scores independent_scores(Forward& fwd, const Tokenizer& tok, const std::string& prompt, int32_t a,
                                         int32_t u) {
  const std::vector<int32_t> ids = tok.encode(prompt, true, true);
  KvCache kv(fwd.model().config(), (int)ids.size() + 1);
  SequenceInput in{&kv, ids, false};
  std::span<const float> logits = fwd.run({&in, 1});
  return {logits[a], logits[u]};
}

struct StepPair {
  std::string context, target, draft;
};

const std::vector<StepPair>& step_pairs() {
  static const std::vector<StepPair> pairs = {
      {"", "She eats 3 and bakes with 4, so she uses 3 + 4 = 7 eggs.\n\n",
       "She uses 3 + 4 = 7 eggs for breakfast and muffins.\n\n"},
      {"", "That leaves 16 - 7 = 9 eggs.\n\n", "So 16 - 7 = 10 eggs are left.\n\n"},
      {"Janet's ducks lay 16 eggs per day.\n\n", "She makes 9 * 2 = $18 every day.\n\n",
       "The capital of France is Paris.\n\n"},
      {"", "  She makes 9 * 2 = $18 every day.", "She earns $18 daily, since 9 * 2 = 18.\n\n"},
      // Repeated: the cache then holds all but the last token already.
      {"", "  She makes 9 * 2 = $18 every day.", "She earns $18 daily, since 9 * 2 = 18.\n\n"},
      // Same target step as the pair before, another draft: a longer common prefix.
      {"", "She makes 9 * 2 = $18 every day.", "She makes 9 * 3 = $27 every day."},
      {"", "The answer is 5\xE2\x82", "The answer is 5."},  // a step cut inside "€"
  };
  return pairs;
}

std::string strip_ascii(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace((unsigned char)s[b])) b++;
  while (e > b && std::isspace((unsigned char)s[e - 1])) e--;
  return s.substr(b, e - b);
}

// Everything a sequence's cache holds: its length and the bytes of its pages.
std::vector<uint8_t> snapshot(const KvCache& kv) {
  std::vector<uint8_t> out;
  const KvPool& pool = kv.pool();
  for (int32_t page : kv.pages()) {
    const auto* p = reinterpret_cast<const uint8_t*>(pool.k(page, 0, 0));
    out.insert(out.end(), p, p + pool.page_bytes());
  }
  const int len = kv.length();
  out.insert(out.end(), reinterpret_cast<const uint8_t*>(&len), reinterpret_cast<const uint8_t*>(&len) + sizeof len);
  return out;
}

void check_judge(const std::string& name, int context_chars) {
  const std::string path = test::model_path(name);
  if (!std::filesystem::exists(path)) return;
  auto model = Model::load(path);
  const Tokenizer& tok = model->tokenizer();
  Forward caller(*model, 2);  // the target's forward, whose pool the judge shares
  StepVerifierOptions o;
  o.judge_model = model.get();
  o.judge_context_chars = context_chars;
  o.pool = caller.shared_pool();
  o.numbers_check = false;  // every pair reaches the judge's forward
  const double t_make = now_s();
  auto made = make_step_verifier("judge", o);
  const double make_s = now_s() - t_make;
  auto& judge = dynamic_cast<JudgeVerifier&>(*made);
  EXPECT_EQ(judge.name(), "judge");
  EXPECT_NE(judge.aligned_token(), judge.unaligned_token());
  std::printf("  %s judge: answer tokens '%s' (%d) vs '%s' (%d); fixed part %d tokens, prefilled in %.0f ms\n",
              name.c_str(), tok.token_to_piece(judge.aligned_token()).c_str(), judge.aligned_token(),
              tok.token_to_piece(judge.unaligned_token()).c_str(), judge.unaligned_token(), judge.prefix_tokens(),
              make_s * 1e3);
  EXPECT_EQ(judge.cache().length(), judge.prefix_tokens());

  // The caller's own cache and logits, which the judge must leave alone.
  KvCache kv(model->config(), 256);
  const std::vector<int32_t> user_ids = tok.encode("Janet's ducks lay 16 eggs per day. How many", true, false);
  SequenceInput in{&kv, user_ids, false};
  std::span<const float> caller_logits = caller.run({&in, 1});
  const std::vector<float> caller_before(caller_logits.begin(), caller_logits.end());
  const std::vector<uint8_t> kv_before = snapshot(kv);
  const int64_t free_before = kv.pool().free_pages();

  const std::vector<StepPair>& pairs = step_pairs();
  Forward plain(*model, caller.shared_pool());
  double judge_s = 0;
  for (size_t i = 0; i < pairs.size(); i++) {
    const StepPair& p = pairs[i];
    const int64_t calls = judge.stats().model_calls;
    const double t0 = now_s();
    const bool ok = judge.accept(p.context, p.target, p.draft);
    judge_s += now_s() - t0;
    EXPECT_EQ(judge.stats().model_calls, calls + 1) << i;
    const JudgeVerifier::Scores got = judge.last_scores();

    // The prompt as documented, encoded in one pass and run on a fresh cache.
    std::string context;
    if (context_chars > 0) {
      const std::string c = p.context.size() > (size_t)context_chars ? p.context.substr(p.context.size() - context_chars) : p.context;
      context = strip_ascii(c).empty() ? "(none)" : strip_ascii(c);
    }
    std::string target = strip_ascii(p.target);
    if (target.size() >= 2 && (uint8_t)target.back() == 0x82) target.resize(target.size() - 2);  // the cut "€"
    const std::string text = judge_prompt(*model, context, target, strip_ascii(p.draft));
    EXPECT_EQ(judge.prompt(p.context, p.target, p.draft), text) << i;
    const JudgeVerifier::Scores want = independent_scores(plain, tok, text, judge.aligned_token(), judge.unaligned_token());
    EXPECT_EQ(got.aligned, want.aligned) << name << " pair " << i;
    EXPECT_EQ(got.unaligned, want.unaligned) << name << " pair " << i;
    EXPECT_EQ(ok, want.aligned > want.unaligned) << name << " pair " << i;
    std::printf("  %s pair %zu: aligned %.3f unaligned %.3f -> %s\n", name.c_str(), i, got.aligned, got.unaligned,
                ok ? "accept" : "reject");

    // A fresh judge gives the same answer (the rollback leaves nothing of earlier calls behind).
    if (i == 1 || i == 4 || i + 1 == pairs.size()) {
      JudgeVerifier fresh(*model, caller.shared_pool(), context_chars);
      EXPECT_EQ(fresh.accept(p.context, p.target, p.draft), ok) << i;
      EXPECT_EQ(fresh.last_scores().aligned, got.aligned) << i;
      EXPECT_EQ(fresh.last_scores().unaligned, got.unaligned) << i;
    }
    EXPECT_GE(judge.cache().length(), judge.prefix_tokens());
  }
  std::printf("  %s judge call (2 threads, non-exact, cached fixed part): %.0f ms on average over %zu\n", name.c_str(),
              judge_s / pairs.size() * 1e3, pairs.size());

  // The exact shortcut runs no forward and leaves the judge's cache as it was.
  const int64_t calls = judge.stats().model_calls;
  const std::vector<uint8_t> judge_kv = snapshot(judge.cache());
  EXPECT_TRUE(judge.accept("", "She makes $18.\n\n", "she makes $18."));
  EXPECT_EQ(judge.stats().model_calls, calls);
  EXPECT_EQ(snapshot(judge.cache()), judge_kv);
  EXPECT_EQ(judge.stats().exact_matches, 1);
  EXPECT_EQ(judge.stats().calls, (int64_t)pairs.size() + 1);

  // With the numbers check (the default), pairs with other numbers are rejected without a
  // forward; the rest get the judge's answer as before.
  o.numbers_check = true;
  auto checked = make_step_verifier("judge", o);
  EXPECT_TRUE(checked->checks_numbers());
  for (size_t i = 0; i < pairs.size(); i++) {
    const StepPair& p = pairs[i];
    const bool same = step_numbers(p.target) == step_numbers(p.draft);
    const int64_t before = checked->stats().model_calls;
    const bool ok = checked->accept(p.context, p.target, p.draft);
    EXPECT_EQ(checked->stats().model_calls, before + (same ? 1 : 0)) << i;
    if (same) {
      EXPECT_EQ(ok, judge.accept(p.context, p.target, p.draft)) << i;
    } else {
      EXPECT_FALSE(ok) << i;
    }
  }

  // Nothing of the caller's changed: cache contents, its pool, the logits its forward returned.
  EXPECT_EQ(snapshot(kv), kv_before);
  EXPECT_EQ(kv.pool().free_pages(), free_before);
  EXPECT_EQ(std::vector<float>(caller_logits.begin(), caller_logits.end()), caller_before);
}

TEST(LookaheadJudgeVerifier, SmolLM2MatchesAnIndependentForward) { check_judge("smollm2", 0); }
TEST(LookaheadJudgeVerifier, SmolLM2WithContext) { check_judge("smollm2", 24); }
TEST(LookaheadJudgeVerifier, QwenMatchesAnIndependentForward) { check_judge("qwen0.5b", 0); }

}  // namespace
}  // namespace stepq
