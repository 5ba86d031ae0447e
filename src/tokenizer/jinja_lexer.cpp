// Jinja lexer (jinja2/lexer.py semantics with trim_blocks and lstrip_blocks on).
//
// Whitespace rules, in the order jinja2 applies them:
//   - the source's newlines (\r\n, \r) become \n, and one trailing newline is dropped;
//   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag, `-%}`, `-}}`, `-#}` all after it;
//   - lstrip_blocks: spaces/tabs from the start of a line up to `{%` or `{#` are removed, unless
//     the tag is written `{%+`; `{{` is never lstripped;
//   - trim_blocks: one \n right after `%}` or `#}` is removed, unless the tag ends `+%}`.
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "tokenizer/jinja_ast.h"

namespace stepq::jinja {
namespace {

bool is_space_ascii(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Python's str.rstrip() on UTF-8 text.
std::string rstrip_py(std::string_view s) { return py_strip(s, nullptr, false, true); }

// True when s is non-empty and all Python whitespace.
bool all_space(std::string_view s) {
  if (s.empty()) return false;
  for (char32_t c : utf8_decode(s))
    if (!is_py_space(c)) return false;
  return true;
}

class Lexer {
 public:
  explicit Lexer(std::string_view raw) {
    // Normalize newlines; drop one trailing newline (keep_trailing_newline=False).
    src_.reserve(raw.size());
    for (size_t k = 0; k < raw.size(); k++) {
      if (raw[k] == '\r') {
        src_.push_back('\n');
        if (k + 1 < raw.size() && raw[k + 1] == '\n') k++;
      } else {
        src_.push_back(raw[k]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    // Line starts, for line:col of any offset.
    line_starts_.push_back(0);
    for (size_t k = 0; k < src_.size(); k++)
      if (src_[k] == '\n') line_starts_.push_back(k + 1);
  }

  std::vector<Token> run() {
    size_t pos = 0;
    const size_t n = src_.size();
    while (pos < n) {
      size_t k = find_tag(pos);
      if (k == std::string::npos) {
        emit_data(src_.substr(pos), pos);
        break;
      }
      char kind = src_[k + 1];
      char sign = k + 2 < n && (src_[k + 2] == '-' || src_[k + 2] == '+') ? src_[k + 2] : 0;
      std::string text = src_.substr(pos, k - pos);
      size_t raw_end = kind == '%' ? match_raw_begin(k) : 0;
      strip_before_tag(&text, sign, kind != '{');
      emit_data(std::move(text), pos);
      if (raw_end) {
        pos = lex_raw(k, raw_end);
        continue;
      }
      if (kind == '#') {
        pos = skip_comment(k, k + 2 + (sign ? 1 : 0));
        continue;
      }
      pos = lex_tag(k, kind == '{', k + 2 + (sign ? 1 : 0));
    }
    Token eof;
    eof.kind = Token::Kind::Eof;
    set_pos(&eof, n);
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

 private:
  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  bool line_starting_ = true;  // the previous tag's match ended with \n (jinja2's line_starting)

  void set_pos(Token* t, size_t offset) const {
    size_t lo = 0, hi = line_starts_.size();
    while (hi - lo > 1) {
      size_t mid = (lo + hi) / 2;
      if (line_starts_[mid] <= offset) lo = mid;
      else hi = mid;
    }
    t->line = (int)lo + 1;
    t->col = (int)utf8_length(std::string_view(src_).substr(line_starts_[lo], offset - line_starts_[lo])) + 1;
  }

  [[noreturn]] void error_at(size_t offset, const std::string& msg) const {
    Token t;
    set_pos(&t, offset);
    fail("line {}:{}: {}", t.line, t.col, msg);
  }

  size_t find_tag(size_t from) const {
    for (size_t k = from; k + 1 < src_.size(); k++)
      if (src_[k] == '{' && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
    return std::string::npos;
  }

  void emit_data(std::string text, size_t offset) {
    if (text.empty()) return;
    Token t;
    t.kind = Token::Kind::Data;
    t.text = std::move(text);
    set_pos(&t, offset);
    tokens_.push_back(std::move(t));
  }

  // Whitespace control on the text before a tag: `-` strips it, otherwise lstrip_blocks removes
  // the whitespace between the last line start and a block or comment tag.
  void strip_before_tag(std::string* text, char sign, bool lstrip_applies) const {
    if (sign == '-') {
      *text = rstrip_py(*text);
    } else if (sign != '+' && lstrip_applies) {
      size_t l_pos = text->rfind('\n');
      l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
      if ((l_pos > 0 || line_starting_) && all_space(std::string_view(*text).substr(l_pos)))
        text->resize(l_pos);
    }
  }

  size_t skip_ws(size_t p) const {
    while (p < src_.size() && is_space_ascii(src_[p])) p++;
    return p;
  }

  // Matches `{%[-+]?\s*raw\s*(-%}\s*|%})` at k; returns the end offset or 0.
  size_t match_raw_begin(size_t k) const {
    size_t p = k + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) p++;
    p = skip_ws(p);
    if (src_.compare(p, 3, "raw") != 0) return 0;
    p = skip_ws(p + 3);
    if (src_.compare(p, 3, "-%}") == 0) return skip_ws(p + 3);
    if (src_.compare(p, 2, "%}") == 0) return p + 2;
    return 0;
  }

  // The body of {% raw %}...{% endraw %} is data, verbatim.
  size_t lex_raw(size_t begin, size_t body_start) {
    line_starting_ = src_[body_start - 1] == '\n';
    for (size_t k = find_tag(body_start); k != std::string::npos; k = find_tag(k + 1)) {
      if (src_[k + 1] != '%') continue;
      size_t p = k + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = skip_ws(p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p = skip_ws(p + 6);
      size_t end;
      if (src_.compare(p, 3, "+%}") == 0) end = p + 3;
      else if (src_.compare(p, 3, "-%}") == 0) end = skip_ws(p + 3);
      else if (src_.compare(p, 2, "%}") == 0) end = p + 2 + (p + 2 < src_.size() && src_[p + 2] == '\n');
      else continue;
      std::string body = src_.substr(body_start, k - body_start);
      strip_before_tag(&body, sign, true);
      emit_data(std::move(body), body_start);
      line_starting_ = src_[end - 1] == '\n';
      return end;
    }
    error_at(begin, "missing end of raw directive");
  }

  size_t skip_comment(size_t begin, size_t body_start) {
    size_t e = src_.find("#}", body_start);
    if (e == std::string::npos) error_at(begin, "missing end of comment tag");
    size_t end;
    if (e > body_start && src_[e - 1] == '-') end = skip_ws(e + 2);
    else if (e > body_start && src_[e - 1] == '+') end = e + 2;
    else end = e + 2 + (e + 2 < src_.size() && src_[e + 2] == '\n');
    line_starting_ = src_[end - 1] == '\n';
    return end;
  }

  // Tokens inside {{ }} or {% %}, up to and including the closing tag.
  size_t lex_tag(size_t begin, bool is_var, size_t p) {
    Token open;
    open.kind = is_var ? Token::Kind::VarBegin : Token::Kind::BlockBegin;
    open.text = is_var ? "{{" : "{%";
    set_pos(&open, begin);
    tokens_.push_back(std::move(open));
    std::string brackets;  // open ( [ { inside the tag: the closing tag only counts outside them
    const size_t n = src_.size();
    for (;;) {
      p = skip_ws(p);
      if (p >= n)
        error_at(begin, is_var ? "unexpected end of template, expected end of print statement '}}'"
                               : "unexpected end of template, expected end of block statement '%}'");
      if (brackets.empty()) {
        size_t end = 0;
        const char* close = is_var ? "}}" : "%}";
        if (src_[p] == '-' && src_.compare(p + 1, 2, close) == 0) {
          end = skip_ws(p + 3);
        } else if (!is_var && src_.compare(p, 3, "+%}") == 0) {
          end = p + 3;
        } else if (src_.compare(p, 2, close) == 0) {
          end = p + 2;
          if (!is_var && end < n && src_[end] == '\n') end++;  // trim_blocks
        }
        if (end) {
          Token t;
          t.kind = is_var ? Token::Kind::VarEnd : Token::Kind::BlockEnd;
          t.text = close;
          set_pos(&t, p);
          tokens_.push_back(std::move(t));
          line_starting_ = src_[end - 1] == '\n';
          return end;
        }
      }
      p = lex_one(p, &brackets);
    }
  }

  size_t lex_one(size_t p, std::string* brackets) {
    const size_t n = src_.size();
    Token t;
    set_pos(&t, p);
    char c = src_[p];
    if (is_digit(c)) {
      size_t end = match_float(p);
      if (end) {
        std::string digits;
        for (size_t k = p; k < end; k++)
          if (src_[k] != '_') digits.push_back(src_[k]);
        t.kind = Token::Kind::Float;
        t.float_value = std::strtod(digits.c_str(), nullptr);
        t.text = src_.substr(p, end - p);
        tokens_.push_back(std::move(t));
        return end;
      }
      return lex_integer(p, std::move(t));
    }
    if (is_name_start(c)) {
      size_t end = p;
      while (end < n && is_name_char(src_[end])) end++;
      t.kind = Token::Kind::Name;
      t.text = src_.substr(p, end - p);
      tokens_.push_back(std::move(t));
      return end;
    }
    if (c == '\'' || c == '"') return lex_string(p, std::move(t));
    static const char* const kOperators[] = {"**", "//", "==", "!=", ">=", "<=", "+", "-", "*",
                                             "/",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                             ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};
    for (const char* op : kOperators) {
      size_t len = std::strlen(op);
      if (src_.compare(p, len, op) != 0) continue;
      if (len == 1 && std::strchr("([{", op[0])) {
        brackets->push_back(op[0]);
      } else if (len == 1 && std::strchr(")]}", op[0])) {
        char want = op[0] == ')' ? '(' : op[0] == ']' ? '[' : '{';
        if (brackets->empty()) error_at(p, fmt::format("unexpected '{}'", op));
        if (brackets->back() != want)
          error_at(p, fmt::format("unexpected '{}', expected '{}'", op,
                                  brackets->back() == '(' ? ")" : brackets->back() == '[' ? "]" : "}"));
        brackets->pop_back();
      }
      t.kind = Token::Kind::Operator;
      t.text = op;
      tokens_.push_back(std::move(t));
      return p + len;
    }
    error_at(p, fmt::format("unexpected char '{}'", src_.substr(p, 1)));
  }

  // `(\d+_)*\d+` from p; returns the end or 0.
  size_t match_digits(size_t p) const {
    size_t k = p;
    if (k >= src_.size() || !is_digit(src_[k])) return 0;
    while (k < src_.size()) {
      if (is_digit(src_[k])) k++;
      else if (src_[k] == '_' && k + 1 < src_.size() && is_digit(src_[k + 1])) k++;
      else break;
    }
    return k;
  }

  // jinja2's float_re: digits, then either [.digits] e[+-]digits or .digits (no "1." floats).
  size_t match_float(size_t p) const {
    if (p > 0 && src_[p - 1] == '.') return 0;  // (?<!\.)
    size_t k = match_digits(p);
    size_t frac_end = 0;
    if (k < src_.size() && src_[k] == '.') frac_end = match_digits(k + 1);
    size_t m = frac_end ? frac_end : k;
    if (m < src_.size() && (src_[m] == 'e' || src_[m] == 'E')) {
      size_t q = m + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) q++;
      size_t e = match_digits(q);
      if (e) return e;
    }
    return frac_end;
  }

  size_t lex_integer(size_t p, Token t) {
    const size_t n = src_.size();
    int base = 10;
    size_t k = p;
    if (src_[p] == '0' && p + 1 < n && std::strchr("bBoOxX", src_[p + 1]) && src_[p + 1] != 0) {
      char b = (char)(src_[p + 1] | 0x20);
      base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
      k = p + 2;
    }
    auto digit_ok = [&](char c) {
      if (base == 2) return c == '0' || c == '1';
      if (base == 8) return c >= '0' && c <= '7';
      if (base == 16) return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
      return is_digit(c);
    };
    std::string digits;
    size_t start = k;
    while (k < n) {
      if (digit_ok(src_[k])) digits.push_back(src_[k++]);
      else if (src_[k] == '_' && k + 1 < n && digit_ok(src_[k + 1]) && (base != 10 || k > start)) k++;
      else break;
    }
    if (digits.empty()) {  // "0x" with nothing after: just the 0
      digits = "0";
      k = p + 1;
      base = 10;
    } else if (base == 10 && digits[0] == '0') {
      // "0" then more zeros only (jinja2: 0(_?0)*); "012" lexes as 0 then 12.
      size_t z = 0;
      while (z < digits.size() && digits[z] == '0') z++;
      if (z < digits.size()) {
        digits = "0";
        k = p + 1;
      }
    }
    errno = 0;
    t.kind = Token::Kind::Integer;
    t.int_value = (int64_t)std::strtoull(digits.c_str(), nullptr, base);
    if (errno == ERANGE || t.int_value < 0) error_at(p, "integer literal too large");
    t.text = src_.substr(p, k - p);
    tokens_.push_back(std::move(t));
    return k;
  }

  // A quoted string; escapes are decoded as Python's "unicode-escape" codec does.
  size_t lex_string(size_t p, Token t) {
    const size_t n = src_.size();
    char q = src_[p];
    size_t k = p + 1;
    std::string out;
    while (k < n && src_[k] != q) {
      char c = src_[k];
      if (c != '\\') {
        out.push_back(c);
        k++;
        continue;
      }
      if (k + 1 >= n) break;
      char e = src_[k + 1];
      k += 2;
      auto hex = [&](int count) -> long {
        long v = 0;
        for (int j = 0; j < count; j++) {
          if (k >= n || !std::isxdigit((unsigned char)src_[k]))
            error_at(p, fmt::format("invalid \\{} escape in string literal", e));
          char h = src_[k++];
          v = v * 16 + (is_digit(h) ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        return v;
      };
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x': utf8_append(&out, (char32_t)hex(2)); break;
        case 'u': utf8_append(&out, (char32_t)hex(4)); break;
        case 'U': {
          long v = hex(8);
          if (v > 0x10FFFF) error_at(p, "invalid \\U escape in string literal");
          utf8_append(&out, (char32_t)v);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            int v = e - '0';
            for (int j = 0; j < 2 && k < n && src_[k] >= '0' && src_[k] <= '7'; j++) v = v * 8 + (src_[k++] - '0');
            utf8_append(&out, (char32_t)v);
          } else {
            out.push_back('\\');  // unknown escapes stay as written
            out.push_back(e);
          }
      }
    }
    if (k >= n) error_at(p, "unterminated string literal");
    t.kind = Token::Kind::String;
    t.text = std::move(out);
    tokens_.push_back(std::move(t));
    return k + 1;
  }
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) { return Lexer(source).run(); }

}  // namespace stepq::jinja
