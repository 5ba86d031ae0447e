// Final answers of math benchmarks: pulled out of a model's output and compared with the gold
// answer, for GSM8K (numbers), MATH-500 (LaTeX expressions) and AIME (integers 0..999).
// Pure functions on text: no model, no files.
//
// Extraction follows the usual evaluation scripts (Qwen2.5-Math's, Hendrycks' MATH): the model
// is asked to put its final answer in \boxed{}, and the last complete \boxed{...} (or \fbox{...})
// wins; without one, GSM8K and AIME fall back to the number after "####" / "The answer is", or
// the last number in the text. Numbers compare as exact rationals (integers, decimals, a/b and
// \frac{a}{b}), so "18.00" == "18" and "0.75" == "\dfrac{3}{4}"; anything else compares as text
// after normalization.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stepq {

enum class AnswerFormat {
  kNumber,   // GSM8K: a number
  kMath,     // MATH: a LaTeX expression
  kInteger,  // AIME: an integer 0..999
};

// An exact number: num / den, den > 0, reduced.
struct Rational {
  int64_t num = 0, den = 1;
  bool operator==(const Rational&) const = default;
};

// The content of the last complete \boxed{...} or \fbox{...} (braces balanced; also "\boxed 5"
// without braces, up to the next space or '$'); nullopt when there is none.
std::optional<std::string> last_boxed(std::string_view text);

// A number written as an integer, decimal (".5", "18.00"), a/b or \frac{a}{b} (a, b such numbers),
// with an optional sign, after the caller's normalization; nullopt for anything else or when it
// overflows 64-bit integers.
std::optional<Rational> parse_rational(std::string_view s);

// GSM8K-style number: "$1,234.50" -> "1234.5", "18.00" -> "18", "50%" -> "50", "3/4" -> "3/4";
// the text itself (trimmed) when it is not a number.
std::string normalize_number(std::string_view s);

// MATH normalization: \left \right \! spaces, ^\circ, $, \%, a trailing '.', and \text{} units
// removed (a string that is only \text{...} keeps its content); \dfrac/\tfrac -> \frac;
// \frac12 -> \frac{1}{2}, \sqrt2 -> \sqrt{2}; "x=5" -> "5"; "1,000" -> "1000".
std::string normalize_math(std::string_view s);

// MATH equivalence of two normalized or raw answers: equal as rationals when both are numbers,
// element-wise for tuples / intervals / lists with the same brackets ("(3, -2)" == "(3,-2)"),
// else equal text after normalization. An empty answer equals nothing.
bool math_equal(std::string_view a, std::string_view b);

// The model's final answer, normalized for its format ("" when there is none).
std::string extract_answer(AnswerFormat f, std::string_view output);

// The gold answer in the same normalized form: GSM8K's `answer` field is a worked solution whose
// number follows "#### "; MATH's and AIME's are the answer itself (AIME's "025" -> "25").
std::string gold_answer(AnswerFormat f, std::string_view answer_field);

// Whether an extracted answer matches a gold answer (both as returned above).
bool answer_correct(AnswerFormat f, std::string_view answer, std::string_view gold);

}  // namespace stepq
