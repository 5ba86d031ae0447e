#include "eval/answers.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <numeric>
#include <vector>

namespace stepq {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

// Removes every "\name" not followed by a letter (so "\left" goes but "\leftarrow" stays).
void remove_command(std::string& s, std::string_view name) {
  const std::string cmd = "\\" + std::string(name);
  for (size_t p = s.find(cmd); p != std::string::npos; p = s.find(cmd, p)) {
    if (p + cmd.size() < s.size() && is_alpha(s[p + cmd.size()])) {
      p += cmd.size();
      continue;
    }
    s.erase(p, cmd.size());
  }
}

// Index of the '}' closing the '{' at `open`, or npos when the text ends first.
size_t matching_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); i++) {
    if (s[i] == '\\' && i + 1 < s.size()) {  // "\{" and "\}" are literal braces
      i++;
      continue;
    }
    if (s[i] == '{')
      depth++;
    else if (s[i] == '}' && --depth == 0)
      return i;
  }
  return std::string_view::npos;
}

// One LaTeX macro argument at s[i]: a braced group (returned without its braces), a command
// ("\pi") or a single character. *end receives the index after it; nullopt at the end or on an
// unbalanced group.
std::optional<std::string> macro_argument(std::string_view s, size_t i, size_t* end) {
  while (i < s.size() && is_space(s[i])) i++;
  if (i >= s.size()) return std::nullopt;
  if (s[i] == '{') {
    const size_t close = matching_brace(s, i);
    if (close == std::string_view::npos) return std::nullopt;
    *end = close + 1;
    return std::string(s.substr(i + 1, close - i - 1));
  }
  if (s[i] == '}') return std::nullopt;
  size_t j = i + 1;
  if (s[i] == '\\') {
    while (j < s.size() && is_alpha(s[j])) j++;
    if (j == i + 1 && j < s.size()) j++;  // "\{", "\!": a one-character command
  }
  *end = j;
  return std::string(s.substr(i, j - i));
}

// "\frac12" -> "\frac{1}{2}", "\frac\pi2" -> "\frac{\pi}{2}", "\sqrt2" -> "\sqrt{2}": every
// argument braced, so that spellings of the same expression become one text.
std::string brace_arguments(std::string_view s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const bool frac = s.substr(i, 5) == "\\frac" && (i + 5 >= s.size() || !is_alpha(s[i + 5]));
    const bool sqrt = s.substr(i, 5) == "\\sqrt" && (i + 5 >= s.size() || !is_alpha(s[i + 5]));
    if (!frac && !sqrt) {
      out += s[i++];
      continue;
    }
    size_t j = i + 5;
    out += s.substr(i, 5);
    if (sqrt && j < s.size() && s[j] == '[') {  // \sqrt[n]{x}: keep the index as written
      const size_t close = s.find(']', j);
      if (close == std::string_view::npos) {
        i = j;
        continue;
      }
      out += s.substr(j, close + 1 - j);
      j = close + 1;
    }
    for (int arg = 0; arg < (frac ? 2 : 1); arg++) {
      size_t end = j;
      std::optional<std::string> a = macro_argument(s, j, &end);
      if (!a) break;
      out += "{" + brace_arguments(*a) + "}";
      j = end;
    }
    i = j;
  }
  return out;
}

// Drops \text{...}-like groups: they are units ("5.4 \text{ cents}") when something comes before
// them, and then everything from the first one on goes ("864 \mbox{ inches}^2" -> "864"); a
// string that is only such groups is a text answer ("\text{Evelyn}") and keeps their content.
std::string strip_text_groups(std::string_view s) {
  static constexpr std::string_view kText[] = {"\\text", "\\textbf", "\\textrm", "\\mbox", "\\mathrm", "\\mathbf"};
  auto find_group = [&](size_t from, size_t* name_len) {
    size_t best = std::string_view::npos;
    for (std::string_view t : kText) {
      for (size_t p = s.find(t, from); p != std::string_view::npos; p = s.find(t, p + 1)) {
        size_t q = p + t.size();
        while (q < s.size() && is_space(s[q])) q++;
        if (q < s.size() && s[q] == '{') {
          if (p < best) {
            best = p;
            *name_len = t.size();
          }
          break;
        }
      }
    }
    return best;
  };
  size_t name_len = 0;
  const size_t first = find_group(0, &name_len);
  if (first == std::string_view::npos) return std::string(s);
  if (!trim(s.substr(0, first)).empty()) return std::string(trim(s.substr(0, first)));
  std::string out;
  size_t i = 0;
  for (size_t p = first; p != std::string_view::npos; p = find_group(i, &name_len)) {
    out += s.substr(i, p - i);
    const size_t open = s.find('{', p + name_len);
    const size_t close = matching_brace(s, open);
    if (close == std::string_view::npos) return out + std::string(s.substr(p));
    out += s.substr(open + 1, close - open - 1);
    i = close + 1;
  }
  return out + std::string(s.substr(i));
}

// Splits at commas outside any brackets or braces.
std::vector<std::string_view> split_top_level(std::string_view s) {
  std::vector<std::string_view> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); i++) {
    const char c = s[i];
    if (c == '(' || c == '[' || c == '{')
      depth++;
    else if (c == ')' || c == ']' || c == '}')
      depth--;
    else if (c == ',' && depth == 0) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

bool mul_fits(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

std::optional<Rational> make_rational(int64_t num, int64_t den) {
  if (den == 0 || num == INT64_MIN || den == INT64_MIN) return std::nullopt;
  if (den < 0) {
    num = -num;
    den = -den;
  }
  const int64_t g = std::gcd(num, den);
  return Rational{num / g, den / g};
}

// Digits with an optional point: "12", "12.50", ".5", "5.".
std::optional<Rational> parse_decimal(std::string_view s) {
  const size_t dot = s.find('.');
  std::string_view ip = s.substr(0, dot), fp = dot == std::string_view::npos ? "" : s.substr(dot + 1);
  if (ip.empty() && fp.empty()) return std::nullopt;
  for (char c : ip)
    if (!is_digit(c)) return std::nullopt;
  for (char c : fp)
    if (!is_digit(c)) return std::nullopt;
  while (!fp.empty() && fp.back() == '0') fp.remove_suffix(1);
  while (!ip.empty() && ip.front() == '0') ip.remove_prefix(1);
  if (ip.size() + fp.size() > 18) return std::nullopt;  // beyond int64: not compared as a number
  int64_t num = 0, den = 1;
  for (char c : ip) num = num * 10 + (c - '0');
  for (char c : fp) {
    num = num * 10 + (c - '0');
    den *= 10;
  }
  return make_rational(num, den);
}

std::optional<Rational> divide(Rational a, Rational b) {
  int64_t n, d;
  if (!mul_fits(a.num, b.den, &n) || !mul_fits(a.den, b.num, &d)) return std::nullopt;
  return make_rational(n, d);
}

// The canonical text of a number: "18", "-2.5", "1/3".
std::string format_rational(Rational r) {
  if (r.den == 1) return std::to_string(r.num);
  int64_t d = r.den;
  int twos = 0, fives = 0;
  while (d % 2 == 0) d /= 2, twos++;
  while (d % 5 == 0) d /= 5, fives++;
  if (d != 1) return std::to_string(r.num) + "/" + std::to_string(r.den);
  // A terminating decimal: num * (10^digits / den) is an integer; |num| < 2^63 and the factor
  // is at most 10^18 / 2, so __int128 holds it.
  const int digits = std::max(twos, fives);
  if (digits > 18) return std::to_string(r.num) + "/" + std::to_string(r.den);
  __int128 p10 = 1;
  for (int i = 0; i < digits; i++) p10 *= 10;
  __int128 v = (r.num < 0 ? -(__int128)r.num : (__int128)r.num) * (p10 / r.den);
  std::string frac;
  for (int i = 0; i < digits; i++) {
    frac.insert(frac.begin(), char('0' + (int)(v % 10)));
    v /= 10;
  }
  return std::string(r.num < 0 ? "-" : "") + std::to_string((int64_t)v) + "." + frac;
}

// Number tokens in running text: "1,234.5", "-3", "0.75" (commas only in groups of three, a
// minus only when it does not follow a word or a number: "3-4" is 3 and 4).
struct NumberSpan {
  size_t begin, end;
};

std::vector<NumberSpan> find_numbers(std::string_view s) {
  std::vector<NumberSpan> out;
  size_t i = 0;
  while (i < s.size()) {
    if (!is_digit(s[i]) || (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.'))) {
      i++;
      continue;
    }
    size_t b = i;
    if (b > 0 && s[b - 1] == '-' && (b < 2 || !(is_digit(s[b - 2]) || is_alpha(s[b - 2]) || s[b - 2] == ')'))) b--;
    size_t j = i;
    while (j < s.size() && is_digit(s[j])) j++;
    // Thousands groups: only after 1-3 leading digits, and only exactly three digits per group.
    if (j - i <= 3) {
      while (j + 3 < s.size() && s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) && is_digit(s[j + 3]) &&
             (j + 4 >= s.size() || !is_digit(s[j + 4])))
        j += 4;
    }
    if (j + 1 < s.size() && s[j] == '.' && is_digit(s[j + 1])) {
      j++;
      while (j < s.size() && is_digit(s[j])) j++;
    }
    out.push_back({b, j});
    i = j;
  }
  return out;
}

std::string number_text(std::string_view s, NumberSpan n) {
  return normalize_number(s.substr(n.begin, n.end - n.begin));
}

// The first number after the last occurrence of `marker` (ASCII case-insensitive), or "".
std::string number_after(std::string_view text, std::string_view marker) {
  std::string lower(text);
  for (char& c : lower) c = (char)std::tolower((unsigned char)c);
  const size_t p = lower.rfind(marker);
  if (p == std::string::npos) return "";
  const std::string_view rest = text.substr(p + marker.size());
  const std::vector<NumberSpan> nums = find_numbers(rest);
  return nums.empty() ? "" : number_text(rest, nums.front());
}

std::string last_number(std::string_view text) {
  const std::vector<NumberSpan> nums = find_numbers(text);
  return nums.empty() ? "" : number_text(text, nums.back());
}

bool is_thousands_number(std::string_view s) {
  if (!s.empty() && s[0] == '-') s.remove_prefix(1);
  const std::vector<NumberSpan> nums = find_numbers(s);
  return nums.size() == 1 && nums[0].begin == 0 && nums[0].end == s.size() && s.find(',') != std::string_view::npos;
}

// AIME: an integer 0..999 as its plain decimal text, else nullopt.
std::optional<std::string> aime_integer(std::string_view s) {
  std::optional<Rational> r = parse_rational(s);
  if (!r || r->den != 1 || r->num < 0 || r->num > 999) return std::nullopt;
  return std::to_string(r->num);
}

}  // namespace

std::optional<std::string> last_boxed(std::string_view text) {
  std::optional<std::string> best;
  size_t best_at = 0;
  for (std::string_view name : {std::string_view("\\boxed"), std::string_view("\\fbox")}) {
    for (size_t p = text.find(name); p != std::string_view::npos; p = text.find(name, p + 1)) {
      size_t i = p + name.size();
      if (i < text.size() && is_alpha(text[i])) continue;
      std::optional<std::string> content;
      size_t j = i;
      while (j < text.size() && is_space(text[j])) j++;
      if (j < text.size() && text[j] == '{') {
        const size_t close = matching_brace(text, j);
        if (close != std::string_view::npos) content = std::string(text.substr(j + 1, close - j - 1));
      } else if (j > i && j < text.size()) {  // "\boxed 5": up to the next space or '$'
        size_t e = j;
        while (e < text.size() && !is_space(text[e]) && text[e] != '$') e++;
        content = std::string(text.substr(j, e - j));
      }
      if (content && (!best || p >= best_at)) {
        best = std::move(content);
        best_at = p;
      }
    }
  }
  return best;
}

std::optional<Rational> parse_rational(std::string_view s) {
  s = trim(s);
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s = trim(s.substr(1));
  }
  std::optional<Rational> r;
  if (s.substr(0, 5) == "\\frac") {
    size_t e1 = 0, e2 = 0;
    std::optional<std::string> a = macro_argument(s, 5, &e1);
    std::optional<std::string> b = a ? macro_argument(s, e1, &e2) : std::nullopt;
    if (!b || e2 != s.size()) return std::nullopt;
    std::optional<Rational> ra = parse_rational(*a), rb = parse_rational(*b);
    if (!ra || !rb) return std::nullopt;
    r = divide(*ra, *rb);
  } else if (const size_t slash = s.find('/'); slash != std::string_view::npos) {
    std::optional<Rational> ra = parse_rational(s.substr(0, slash));
    std::string_view den = trim(s.substr(slash + 1));
    if (den.empty() || den[0] == '-' || den[0] == '+') return std::nullopt;
    std::optional<Rational> rb = parse_decimal(den);
    if (!ra || !rb || s.substr(0, slash).find("\\frac") != std::string_view::npos) return std::nullopt;
    r = divide(*ra, *rb);
  } else {
    r = parse_decimal(s);
  }
  if (r && negative) r->num = -r->num;
  return r;
}

std::string normalize_number(std::string_view s) {
  std::string t = strip_text_groups(trim(s));
  for (std::string_view junk : {"\\$", "$", "\\%", "%", "\\!", "\\,"}) replace_all(t, junk, "");
  std::string_view v = trim(t);
  while (!v.empty() && v.back() == '.') v.remove_suffix(1);
  v = trim(v);
  std::string compact;
  for (char c : v)
    if (!is_space(c)) compact += c;
  // Commas only as thousands separators: "1,234" is a number, "3,4" is not one.
  if (is_thousands_number(compact)) replace_all(compact, ",", "");
  if (std::optional<Rational> r = parse_rational(compact)) return format_rational(*r);
  return std::string(v);
}

std::string normalize_math(std::string_view s) {
  std::string t(trim(s));
  replace_all(t, "\n", "");
  replace_all(t, "\\!", "");
  replace_all(t, "\\,", "");
  replace_all(t, "\\;", "");
  replace_all(t, "\\\\", "\\");
  replace_all(t, "\\dfrac", "\\frac");
  replace_all(t, "\\tfrac", "\\frac");
  remove_command(t, "left");
  remove_command(t, "right");
  remove_command(t, "displaystyle");
  replace_all(t, "^{\\circ}", "");
  replace_all(t, "^\\circ", "");
  replace_all(t, "\\$", "");
  replace_all(t, "$", "");
  t = strip_text_groups(t);
  replace_all(t, "\\%", "");
  replace_all(t, "%", "");
  std::string compact;
  for (char c : t)
    if (!is_space(c)) compact += c;
  while (!compact.empty() && compact.back() == '.') compact.pop_back();
  // "x=5", "k = 2": a short name on the left is the question's variable, not part of the answer.
  if (const size_t eq = compact.find('=');
      eq != std::string::npos && eq <= 2 && compact.find('=', eq + 1) == std::string::npos)
    compact = compact.substr(eq + 1);
  compact = brace_arguments(compact);
  if (is_thousands_number(compact)) replace_all(compact, ",", "");
  return compact;
}

bool math_equal(std::string_view a, std::string_view b) {
  const std::string na = normalize_math(a), nb = normalize_math(b);
  if (na.empty() || nb.empty()) return false;
  if (na == nb) return true;
  std::optional<Rational> ra = parse_rational(na), rb = parse_rational(nb);
  if (ra && rb) return *ra == *rb;
  // Tuples and intervals: the same brackets, the same number of elements, each element equal.
  auto bracketed = [](const std::string& s) {
    return s.size() >= 2 && (s.front() == '(' || s.front() == '[') && (s.back() == ')' || s.back() == ']');
  };
  std::string_view ia = na, ib = nb;
  if (bracketed(na) || bracketed(nb)) {
    if (!bracketed(na) || !bracketed(nb) || na.front() != nb.front() || na.back() != nb.back()) return false;
    ia = ia.substr(1, ia.size() - 2);
    ib = ib.substr(1, ib.size() - 2);
  }
  const std::vector<std::string_view> ea = split_top_level(ia), eb = split_top_level(ib);
  if (ea.size() < 2 || ea.size() != eb.size()) return false;
  for (size_t i = 0; i < ea.size(); i++)
    if (!math_equal(ea[i], eb[i])) return false;
  return true;
}

std::string extract_answer(AnswerFormat f, std::string_view output) {
  const std::optional<std::string> boxed = last_boxed(output);
  switch (f) {
    case AnswerFormat::kNumber: {
      if (boxed) {
        std::string n = normalize_number(*boxed);
        if (parse_rational(n)) return n;
        std::string last = last_number(*boxed);  // "18 \text{dollars}"-like leftovers
        return last.empty() ? n : last;
      }
      for (std::string_view marker : {std::string_view("####"), std::string_view("the answer is")})
        if (std::string n = number_after(output, marker); !n.empty()) return n;
      return last_number(output);
    }
    case AnswerFormat::kMath:
      return boxed ? normalize_math(*boxed) : "";
    case AnswerFormat::kInteger: {
      if (boxed) {
        const std::string m = normalize_math(*boxed);
        if (std::optional<std::string> n = aime_integer(m)) return *n;
        if (parse_rational(m)) return m;  // a number, not an AIME answer: wrong, and shown as it is
        // Text around the number ("\textbf{(113)}", "m+n=113"): the last number inside the box.
        return aime_integer(last_number(m)).value_or(m);
      }
      const std::string n = last_number(output);
      return aime_integer(n).value_or(n);
    }
  }
  return "";
}

std::string gold_answer(AnswerFormat f, std::string_view answer_field) {
  switch (f) {
    case AnswerFormat::kNumber: {
      const size_t p = answer_field.rfind("####");
      return normalize_number(p == std::string_view::npos ? answer_field : answer_field.substr(p + 4));
    }
    case AnswerFormat::kMath:
      return normalize_math(answer_field);
    case AnswerFormat::kInteger: {
      const std::string m = normalize_math(answer_field);
      return aime_integer(m).value_or(m);
    }
  }
  return "";
}

bool answer_correct(AnswerFormat f, std::string_view answer, std::string_view gold) {
  if (trim(answer).empty() || trim(gold).empty()) return false;
  if (f == AnswerFormat::kMath) return math_equal(answer, gold);
  std::optional<Rational> ra = parse_rational(answer), rb = parse_rational(gold);
  if (ra && rb) return *ra == *rb;
  return normalize_number(answer) == normalize_number(gold);
}

}  // namespace stepq
