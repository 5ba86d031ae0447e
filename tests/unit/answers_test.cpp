// Answer extraction and equivalence for stepq eval (src/eval/answers.h): GSM8K numbers, MATH
// expressions, AIME integers, on the spellings models and the data files actually use.
#include "eval/answers.h"

#include <gtest/gtest.h>

namespace stepq {
namespace {

TEST(Answers, LastBoxedBalancesBraces) {
  EXPECT_EQ(last_boxed("so \\boxed{\\frac{1}{\\sqrt{2}}}."), "\\frac{1}{\\sqrt{2}}");
  EXPECT_EQ(last_boxed("\\boxed{1} then \\boxed{2}"), "2");
  EXPECT_EQ(last_boxed("\\fbox{7} after \\boxed{3}"), "3");
  EXPECT_EQ(last_boxed("\\boxed{3} after that \\fbox{7}"), "7");
  EXPECT_EQ(last_boxed("$\\boxed 5$"), "5");
  // An unfinished \boxed (generation cut off) does not count; the complete one before it does.
  EXPECT_EQ(last_boxed("\\boxed{4} ... \\boxed{\\frac{1}{2"), "4");
  EXPECT_FALSE(last_boxed("no answer here"));
  EXPECT_FALSE(last_boxed("\\boxedx{3}"));
}

TEST(Answers, ParseRational) {
  EXPECT_EQ(parse_rational("18.00"), (Rational{18, 1}));
  EXPECT_EQ(parse_rational("-0.75"), (Rational{-3, 4}));
  EXPECT_EQ(parse_rational(".5"), (Rational{1, 2}));
  EXPECT_EQ(parse_rational("\\frac{3}{4}"), (Rational{3, 4}));
  EXPECT_EQ(parse_rational("-\\frac{6}{8}"), (Rational{-3, 4}));
  EXPECT_EQ(parse_rational("\\frac{-1}{2}"), (Rational{-1, 2}));
  EXPECT_EQ(parse_rational("6/4"), (Rational{3, 2}));
  EXPECT_FALSE(parse_rational("1/0"));
  EXPECT_FALSE(parse_rational("x"));
  EXPECT_FALSE(parse_rational("1.2.3"));
  EXPECT_FALSE(parse_rational("\\frac{\\pi}{2}"));
  EXPECT_FALSE(parse_rational("123456789012345678901234"));  // beyond int64: compared as text
}

TEST(Answers, NormalizeNumber) {
  EXPECT_EQ(normalize_number("$1,234.50"), "1234.5");
  EXPECT_EQ(normalize_number("18.00"), "18");
  EXPECT_EQ(normalize_number("50%"), "50");
  EXPECT_EQ(normalize_number("\\$18"), "18");
  EXPECT_EQ(normalize_number("18."), "18");
  EXPECT_EQ(normalize_number("6/8"), "0.75");
  EXPECT_EQ(normalize_number("2/6"), "1/3");
  EXPECT_EQ(normalize_number("-2.50"), "-2.5");
  EXPECT_EQ(normalize_number("3,4"), "3,4");  // not a thousands separator: not a number
}

TEST(Answers, Gsm8k) {
  const AnswerFormat f = AnswerFormat::kNumber;
  EXPECT_EQ(gold_answer(f, "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"), "18");
  EXPECT_EQ(gold_answer(f, "... #### 1,234"), "1234");
  EXPECT_EQ(extract_answer(f, "So she makes \\boxed{\\$18.00} a day."), "18");
  EXPECT_EQ(extract_answer(f, "\\boxed{18 \\text{ dollars}}"), "18");
  EXPECT_EQ(extract_answer(f, "\\boxed{18 dollars}"), "18");
  EXPECT_EQ(extract_answer(f, "First 3, then \\boxed{5}, wait, \\boxed{7}. Total 99"), "7");
  EXPECT_EQ(extract_answer(f, "9 eggs.\n#### 18\nmore text 4"), "18");
  EXPECT_EQ(extract_answer(f, "16 - 3 - 4 = 9, and 9 * 2 = 18. The answer is $18."), "18");
  EXPECT_EQ(extract_answer(f, "It costs $1,234.50 in total"), "1234.5");
  EXPECT_EQ(extract_answer(f, "The temperature fell to -5 degrees"), "-5");
  EXPECT_EQ(extract_answer(f, "pages 3-4"), "4");  // a range, not minus four
  EXPECT_EQ(extract_answer(f, "I do not know."), "");
  EXPECT_TRUE(answer_correct(f, "18", "18"));
  EXPECT_TRUE(answer_correct(f, extract_answer(f, "\\boxed{18.00}"), gold_answer(f, "#### 18")));
  EXPECT_TRUE(answer_correct(f, extract_answer(f, "$1,234.50"), "1234.5"));
  EXPECT_FALSE(answer_correct(f, "17", "18"));
  EXPECT_FALSE(answer_correct(f, "", "18"));
  EXPECT_FALSE(answer_correct(f, extract_answer(f, "no idea"), "18"));
}

TEST(Answers, NormalizeMath) {
  EXPECT_EQ(normalize_math("\\left( 3, \\frac{\\pi}{2} \\right)"), "(3,\\frac{\\pi}{2})");
  EXPECT_EQ(normalize_math("\\dfrac{3}{4}"), "\\frac{3}{4}");
  EXPECT_EQ(normalize_math("\\tfrac12"), "\\frac{1}{2}");
  EXPECT_EQ(normalize_math("\\frac\\pi2"), "\\frac{\\pi}{2}");
  EXPECT_EQ(normalize_math("11\\sqrt2"), "11\\sqrt{2}");
  EXPECT_EQ(normalize_math("90^\\circ"), "90");
  EXPECT_EQ(normalize_math("\\text{Evelyn}"), "Evelyn");
  EXPECT_EQ(normalize_math("\\text{(C)}"), "(C)");
  EXPECT_EQ(normalize_math("5.4 \\text{ cents}"), "5.4");
  EXPECT_EQ(normalize_math("864 \\mbox{ inches}^2"), "864");
  EXPECT_EQ(normalize_math("\\frac{270}7\\text{ degrees}"), "\\frac{270}{7}");
  EXPECT_EQ(normalize_math("10,\\!080"), "10080");
  EXPECT_EQ(normalize_math("\\$32,\\!348"), "32348");
  EXPECT_EQ(normalize_math("x=5"), "5");
  EXPECT_EQ(normalize_math("5x - 7y + 11z + 4 = 0"), "5x-7y+11z+4=0");
  EXPECT_EQ(normalize_math("$\\frac{1}{2}$."), "\\frac{1}{2}");
  EXPECT_EQ(normalize_math("\\leftarrow"), "\\leftarrow");
}

TEST(Answers, MathEquivalence) {
  EXPECT_TRUE(math_equal("\\dfrac{3}{4}", "0.75"));
  EXPECT_TRUE(math_equal("0.5", "\\frac{1}{2}"));
  EXPECT_TRUE(math_equal("1/2", "\\frac12"));
  EXPECT_TRUE(math_equal("-\\frac{1}{2}", "-0.5"));
  EXPECT_TRUE(math_equal("(3, -2)", "(3,-2)"));
  EXPECT_TRUE(math_equal("\\left( \\frac{3}{2}, -13 \\right)", "(1.5,-13)"));
  EXPECT_TRUE(math_equal("(3,4]", "(3, 4]"));
  EXPECT_FALSE(math_equal("(3,4]", "(3,4)"));  // an interval's brackets matter
  EXPECT_FALSE(math_equal("(3,-2)", "(-2,3)"));
  EXPECT_TRUE(math_equal("3, 5, 7", "3,5,7"));
  EXPECT_TRUE(math_equal("\\sqrt2", "\\sqrt{2}"));
  EXPECT_TRUE(math_equal("\\frac{1}{\\sqrt{2}}", "\\dfrac{1}{\\sqrt2}"));
  EXPECT_TRUE(math_equal("90^\\circ", "90"));
  EXPECT_TRUE(math_equal("\\text{Evelyn}", "Evelyn"));
  EXPECT_TRUE(math_equal("2000", "2,000"));
  EXPECT_TRUE(math_equal("y = 2x + 3", "2x+3"));
  EXPECT_FALSE(math_equal("\\frac{\\pi}{2}", "\\frac{\\pi}{3}"));
  EXPECT_FALSE(math_equal("", ""));
  EXPECT_FALSE(math_equal("0.3333", "\\frac{1}{3}"));  // exact rationals: no tolerance
}

TEST(Answers, Math500) {
  const AnswerFormat f = AnswerFormat::kMath;
  const std::string out =
      "Thus $r = 3$ and $\\theta = \\frac{\\pi}{2}$, so the answer is "
      "$\\boxed{\\left(3, \\dfrac{\\pi}{2}\\right)}$.";
  EXPECT_EQ(extract_answer(f, out), "(3,\\frac{\\pi}{2})");
  EXPECT_TRUE(answer_correct(f, extract_answer(f, out), gold_answer(f, "\\left( 3, \\frac{\\pi}{2} \\right)")));
  EXPECT_TRUE(answer_correct(f, extract_answer(f, "\\boxed{\\frac{1}{\\sqrt{2}}}"), "\\frac{1}{\\sqrt2}"));
  EXPECT_TRUE(answer_correct(f, extract_answer(f, "\\boxed{0.75}"), gold_answer(f, "\\dfrac{3}{4}")));
  EXPECT_EQ(extract_answer(f, "The answer is 5."), "");  // MATH asks for \boxed{}: nothing else counts
  EXPECT_FALSE(answer_correct(f, "", gold_answer(f, "5")));
}

TEST(Answers, Aime) {
  const AnswerFormat f = AnswerFormat::kInteger;
  EXPECT_EQ(gold_answer(f, "025"), "25");
  EXPECT_EQ(gold_answer(f, "204"), "204");
  EXPECT_EQ(extract_answer(f, "so $m+n = \\boxed{025}$"), "25");
  EXPECT_EQ(extract_answer(f, "\\boxed{204} and later \\boxed{113}"), "113");
  EXPECT_EQ(extract_answer(f, "we get 12 and finally 113"), "113");
  EXPECT_EQ(extract_answer(f, "\\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");  // not an integer: kept, wrong
  EXPECT_EQ(extract_answer(f, "nothing numeric"), "");
  EXPECT_TRUE(answer_correct(f, extract_answer(f, "\\boxed{25}"), gold_answer(f, "025")));
  EXPECT_TRUE(answer_correct(f, extract_answer(f, "\\boxed{70.0}"), gold_answer(f, "70")));
  EXPECT_FALSE(answer_correct(f, extract_answer(f, "\\boxed{1025}"), gold_answer(f, "25")));
  EXPECT_FALSE(answer_correct(f, extract_answer(f, "no answer"), gold_answer(f, "25")));
}

}  // namespace
}  // namespace stepq
