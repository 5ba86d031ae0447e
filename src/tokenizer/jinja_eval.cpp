// Jinja interpreter: walks the syntax tree of jinja_ast.h with Python jinja2's runtime semantics
// (jinja2/runtime.py, filters.py, tests.py, sandbox.py as ImmutableSandboxedEnvironment).
//
// Scopes: each frame jinja2 makes (for-loop iteration, for-else, macro call, call/with/set/filter
// block) gets a fresh scope whose parent is the enclosing one, so `set` inside a loop is gone
// after the loop (and at the next iteration); if/elif/else bodies share their enclosing scope,
// and a namespace() object is the way out, as in Python. Names the parser's frame analysis found
// to start undefined (Stmt::locals) are bound to undefined on entry.
#include <algorithm>
#include <clocale>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <locale.h>
#include <optional>
#include <unordered_map>
#include <wctype.h>

#include "base/error.h"
#include "tokenizer/jinja_ast.h"

namespace stepq::jinja {
namespace {

// An error without a position yet; the innermost expression that sees it adds its line:col.
struct EvalError {
  std::string msg;
};
[[noreturn]] void raise(std::string msg) { throw EvalError{std::move(msg)}; }

// Using an Undefined where jinja2 refuses it raises its own message ("'x' is undefined").
[[noreturn]] void raise_undefined(const Value& v) {
  raise(v.s.empty() ? std::string("undefined value") : v.s);
}

std::string obj_desc(const Value& v) { return fmt::format("'{} object'", type_name(v)); }

// ---- Unicode case mapping -----------------------------------------------------------------------

// The C library's Unicode tables (simple case mapping) through the C.UTF-8 locale, whatever the
// process locale is; ASCII only if that locale is missing.
locale_t utf8_locale() {
  static locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
  return loc;
}
char32_t upper_cp(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  locale_t l = utf8_locale();
  return l ? (char32_t)towupper_l((wint_t)c, l) : c;
}
char32_t lower_cp(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  locale_t l = utf8_locale();
  return l ? (char32_t)towlower_l((wint_t)c, l) : c;
}
bool is_upper_cp(char32_t c) {
  if (c < 0x80) return c >= 'A' && c <= 'Z';
  locale_t l = utf8_locale();
  return l && iswupper_l((wint_t)c, l);
}
bool is_lower_cp(char32_t c) {
  if (c < 0x80) return c >= 'a' && c <= 'z';
  locale_t l = utf8_locale();
  return l && iswlower_l((wint_t)c, l);
}
bool is_alpha_cp(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  locale_t l = utf8_locale();
  return l && iswalpha_l((wint_t)c, l);
}
bool is_digit_cp(char32_t c) { return c >= '0' && c <= '9'; }
bool is_cased_cp(char32_t c) { return is_upper_cp(c) || is_lower_cp(c); }

template <typename F>
std::string map_cp(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : utf8_decode(s)) utf8_append(&out, f(c));
  return out;
}
std::string str_upper(std::string_view s) { return map_cp(s, upper_cp); }
std::string str_lower(std::string_view s) { return map_cp(s, lower_cp); }

// Python str.title(): a cased letter after a cased letter is lowered, any other is uppered.
std::string str_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t c : utf8_decode(s)) {
    utf8_append(&out, prev_cased ? lower_cp(c) : upper_cp(c));
    prev_cased = is_cased_cp(c);
  }
  return out;
}

std::string str_capitalize(std::string_view s) {
  std::u32string u = utf8_decode(s);
  for (size_t k = 0; k < u.size(); k++) u[k] = k == 0 ? upper_cp(u[k]) : lower_cp(u[k]);
  return utf8_encode(u);
}

// jinja2's `title` filter: capitalize each piece between runs of [-\s({\[<].
std::string filter_title(std::string_view s) {
  std::u32string u = utf8_decode(s);
  auto is_sep = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || is_py_space(c);
  };
  bool at_start = true;
  for (char32_t& c : u) {
    if (is_sep(c)) {
      at_start = true;
      continue;
    }
    c = at_start ? upper_cp(c) : lower_cp(c);
    at_start = false;
  }
  return utf8_encode(u);
}

// ---- strings ------------------------------------------------------------------------------------

std::vector<std::string> split_ws(std::string_view s, int64_t maxsplit) {
  std::u32string u = utf8_decode(s);
  std::vector<std::string> parts;
  size_t k = 0, n = u.size();
  while (k < n) {
    while (k < n && is_py_space(u[k])) k++;
    if (k >= n) break;
    if (maxsplit >= 0 && (int64_t)parts.size() == maxsplit) {
      parts.push_back(utf8_encode(std::u32string_view(u).substr(k)));  // the rest keeps its tail
      break;
    }
    size_t e = k;
    while (e < n && !is_py_space(u[e])) e++;
    parts.push_back(utf8_encode(std::u32string_view(u).substr(k, e - k)));
    k = e;
  }
  return parts;
}

std::vector<std::string> split_sep(std::string_view s, std::string_view sep, int64_t maxsplit) {
  if (sep.empty()) raise("empty separator");
  std::vector<std::string> parts;
  size_t k = 0;
  for (;;) {
    size_t e = (maxsplit >= 0 && (int64_t)parts.size() == maxsplit) ? std::string::npos : s.find(sep, k);
    if (e == std::string::npos) {
      parts.emplace_back(s.substr(k));
      return parts;
    }
    parts.emplace_back(s.substr(k, e - k));
    k = e + sep.size();
  }
}

std::vector<std::string> rsplit_sep(std::string_view s, std::string_view sep, int64_t maxsplit) {
  if (sep.empty()) raise("empty separator");
  std::vector<std::string> parts;
  size_t end = s.size();
  for (;;) {
    size_t e = std::string::npos;
    if (!(maxsplit >= 0 && (int64_t)parts.size() == maxsplit) && end >= sep.size())
      e = s.rfind(sep, end - sep.size());
    if (e == std::string::npos) {
      parts.emplace_back(s.substr(0, end));
      break;
    }
    parts.emplace_back(s.substr(e + sep.size(), end - e - sep.size()));
    end = e;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

// Python str.splitlines().
std::vector<std::string> split_lines(std::string_view s, bool keepends) {
  std::u32string u = utf8_decode(s);
  std::vector<std::string> lines;
  size_t start = 0, k = 0;
  while (k < u.size()) {
    char32_t c = u[k];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
               c == 0x2028 || c == 0x2029;
    if (!brk) {
      k++;
      continue;
    }
    size_t eol = k + 1;
    if (c == '\r' && eol < u.size() && u[eol] == '\n') eol++;
    lines.push_back(utf8_encode(std::u32string_view(u).substr(start, (keepends ? eol : k) - start)));
    start = k = eol;
  }
  if (start < u.size()) lines.push_back(utf8_encode(std::u32string_view(u).substr(start)));
  return lines;
}

std::string str_replace(const std::string& s, const std::string& old, const std::string& with, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `with` around every code point
    std::u32string u = utf8_decode(s);
    int64_t done = 0;
    for (size_t k = 0; k <= u.size(); k++) {
      if (count < 0 || done < count) {
        out += with;
        done++;
      }
      if (k < u.size()) utf8_append(&out, u[k]);
    }
    return out;
  }
  size_t k = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t e = s.find(old, k);
    if (e == std::string::npos) break;
    out.append(s, k, e - k);
    out += with;
    k = e + old.size();
    done++;
  }
  out.append(s, k, std::string::npos);
  return out;
}

std::string str_pad(const std::string& s, int64_t width, const std::string& fill, int where /* -1 left,0 center,1 right */) {
  int64_t len = (int64_t)utf8_length(s);
  if (utf8_length(fill) != 1) raise("The fill character must be exactly one character long");
  if (width <= len) return s;
  int64_t marg = width - len;
  int64_t left = where == 0 ? marg / 2 + (marg & width & 1) : where < 0 ? 0 : marg;
  int64_t right = marg - left;
  std::string out;
  for (int64_t k = 0; k < left; k++) out += fill;
  out += s;
  for (int64_t k = 0; k < right; k++) out += fill;
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// Code point index of byte offset `b` in s.
int64_t cp_index(const std::string& s, size_t b) { return (int64_t)utf8_length(std::string_view(s).substr(0, b)); }

// The list a lazily evaluating jinja2 filter would have produced as a generator.
Value iterator_of(std::vector<Value> items) {
  Value v = Value::new_list(std::move(items));
  v.list->is_iterator = true;
  return v;
}

// ---- numbers ------------------------------------------------------------------------------------

int64_t checked(long double exact, int64_t value) {
  if (exact > 9.2233720368547758e18L || exact < -9.2233720368547758e18L)
    raise("integer result out of the 64-bit range");
  return value;
}
int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) raise("integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) raise("integer result out of the 64-bit range");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  if (b == 0) raise("integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}
double float_mod(double a, double b) {
  if (b == 0.0) raise("float modulo");
  double r = std::fmod(a, b);
  if (r != 0.0 && ((r < 0) != (b < 0))) r += b;
  else if (r == 0.0) r = std::copysign(0.0, b);
  return r;
}

// Python int(str, base): optional sign, underscores between digits, surrounding whitespace.
bool parse_int(const std::string& text, int base, int64_t* out) {
  std::string s = py_strip(text, nullptr, true, true);
  size_t k = 0;
  bool neg = false;
  if (k < s.size() && (s[k] == '+' || s[k] == '-')) neg = s[k++] == '-';
  if (base == 16 && s.compare(k, 2, "0x") == 0) k += 2;
  if (k >= s.size()) return false;
  unsigned long long v = 0;
  bool prev_digit = false;
  for (; k < s.size(); k++) {
    char c = s[k];
    if (c == '_' && prev_digit && k + 1 < s.size()) {
      prev_digit = false;
      continue;
    }
    int d = (c >= '0' && c <= '9') ? c - '0' : ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ? (c | 0x20) - 'a' + 10 : 99;
    if (d >= base) return false;
    if (v > (9223372036854775807ull - d) / base) raise("integer result out of the 64-bit range");
    v = v * base + d;
    prev_digit = true;
  }
  if (!prev_digit) return false;
  *out = neg ? -(int64_t)v : (int64_t)v;
  return true;
}

// Python float(str).
bool parse_float(const std::string& text, double* out) {
  std::string s = py_strip(text, nullptr, true, true);
  std::string clean;
  for (size_t k = 0; k < s.size(); k++) {
    if (s[k] == '_' && k > 0 && k + 1 < s.size() && std::isdigit((unsigned char)s[k - 1]) &&
        std::isdigit((unsigned char)s[k + 1]))
      continue;
    clean.push_back(s[k]);
  }
  if (clean.empty()) return false;
  std::string low = str_lower(clean);
  size_t sk = (low[0] == '+' || low[0] == '-') ? 1 : 0;
  std::string word = low.substr(sk);
  if (word == "inf" || word == "infinity" || word == "nan") {
    double v = word == "nan" ? NAN : INFINITY;
    *out = low[0] == '-' ? -v : v;
    return true;
  }
  for (char c : word)
    if (!(std::isdigit((unsigned char)c) || c == '.' || c == 'e' || c == '+' || c == '-')) return false;
  char* end = nullptr;
  *out = std::strtod(clean.c_str(), &end);
  return end && *end == '\0';
}

// Python's printf-style `str % args`: args a tuple (positional), a dict (for %(name)s), or one value.
std::string percent_format(const std::string& f, const Value& args) {
  std::vector<Value> positional;
  const DictObject* mapping = nullptr;
  bool single = false, mapping_like = false;
  if (args.is_list() && args.list->is_tuple) {
    positional = args.list->items;
  } else {
    // Python takes any non-tuple, non-str object with __getitem__ as the mapping for %(key)s, and
    // then does not complain about an unused argument.
    if (args.is_dict() && !args.dict->is_namespace) mapping = args.dict.get();
    mapping_like = mapping || (args.is_list() && !args.list->is_iterator) || args.is_undefined();
    positional.push_back(args);
    single = true;
  }
  size_t next_arg = 0;
  bool used_mapping = false;
  std::string out;
  for (size_t k = 0; k < f.size(); k++) {
    if (f[k] != '%') {
      out.push_back(f[k]);
      continue;
    }
    if (++k >= f.size()) raise("incomplete format");
    const Value* arg = nullptr;
    if (f[k] == '(') {
      size_t e = f.find(')', k);
      if (e == std::string::npos) raise("incomplete format key");
      if (!mapping) raise("format requires a mapping");
      arg = mapping->find(std::string_view(f).substr(k + 1, e - k - 1));
      if (!arg) raise(fmt::format("KeyError: '{}'", f.substr(k + 1, e - k - 1)));
      used_mapping = true;
      k = e + 1;
    }
    std::string flags;
    while (k < f.size() && std::strchr("#0- +", f[k])) flags.push_back(f[k++]);
    std::string width, precision;
    while (k < f.size() && std::isdigit((unsigned char)f[k])) width.push_back(f[k++]);
    bool has_precision = false;
    if (k < f.size() && f[k] == '.') {
      has_precision = true;
      k++;
      while (k < f.size() && std::isdigit((unsigned char)f[k])) precision.push_back(f[k++]);
    }
    while (k < f.size() && (f[k] == 'h' || f[k] == 'l' || f[k] == 'L')) k++;
    if (k >= f.size()) raise("incomplete format");
    char conv = f[k];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    if (!arg) {
      if (next_arg >= positional.size()) raise("not enough arguments for format string");
      arg = &positional[next_arg++];
    }
    std::string spec = "%" + flags + width + (has_precision ? "." + (precision.empty() ? "0" : precision) : "");
    char buf[512];
    if (conv == 's' || conv == 'r' || conv == 'a') {
      std::u32string text = utf8_decode(conv == 's' ? to_str(*arg) : to_repr(*arg));
      if (has_precision) text = text.substr(0, std::stoul(precision.empty() ? "0" : precision));
      std::string t = utf8_encode(text);
      size_t w = width.empty() ? 0 : std::stoul(width);
      size_t len = utf8_length(t);
      if (len < w) {
        if (flags.find('-') != std::string::npos) t += std::string(w - len, ' ');
        else t = std::string(w - len, ' ') + t;
      }
      out += t;
    } else if (std::strchr("diuxXo", conv)) {
      if (!arg->is_number()) raise(fmt::format("%{} format: a real number is required, not {}", conv, type_name(*arg)));
      if (!arg->is_integral() && std::strchr("xXo", conv))
        raise(fmt::format("%{} format: an integer is required, not {}", conv, type_name(*arg)));
      long long x = arg->is_integral() ? (long long)arg->as_int() : (long long)std::trunc(arg->f);
      char c = conv == 'i' || conv == 'u' ? 'd' : conv;
      std::snprintf(buf, sizeof buf, (spec + "ll" + c).c_str(), x);
      std::string t = buf;
      if (conv == 'o' && flags.find('#') != std::string::npos) {  // Python writes 0o17, C 017
        size_t z = t.find_first_of("0123456789");
        if (z != std::string::npos && t[z] == '0') t.insert(z + 1, "o");
      }
      out += t;
    } else if (std::strchr("eEfFgG", conv)) {
      if (!arg->is_number()) raise(fmt::format("must be real number, not {}", type_name(*arg)));
      std::snprintf(buf, sizeof buf, (spec + conv).c_str(), arg->as_double());
      out += buf;
    } else if (conv == 'c') {
      if (arg->is_integral()) utf8_append(&out, (char32_t)arg->as_int());
      else if (arg->is_string() && utf8_length(arg->s) == 1) out += arg->s;
      else raise("%c requires int or char");
    } else {
      raise(fmt::format("unsupported format character '{}'", conv));
    }
  }
  if (single && !mapping_like && next_arg == 0) raise("not all arguments converted during string formatting");
  if (!single && next_arg < positional.size()) raise("not all arguments converted during string formatting");
  (void)used_mapping;
  return out;
}

// ---- scopes -------------------------------------------------------------------------------------

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;

  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

ScopePtr child_scope(const ScopePtr& parent) {
  auto s = std::make_shared<Scope>();
  s->parent = parent;
  return s;
}

// ---- arguments ----------------------------------------------------------------------------------

// Binds positional and keyword arguments to parameter names as Python does; absent ones are null.
std::vector<const Value*> bind(const CallArgs& args, const char* fname, std::initializer_list<const char*> names) {
  std::vector<const char*> params(names);
  if (args.positional.size() > params.size())
    raise(fmt::format("{}() takes at most {} arguments ({} given)", fname, params.size(), args.positional.size()));
  std::vector<const Value*> bound(params.size(), nullptr);
  for (size_t k = 0; k < args.positional.size(); k++) bound[k] = &args.positional[k];
  for (const auto& kv : args.keyword) {
    size_t k = 0;
    while (k < params.size() && kv.first != params[k]) k++;
    if (k == params.size()) raise(fmt::format("{}() got an unexpected keyword argument '{}'", fname, kv.first));
    if (bound[k]) raise(fmt::format("{}() got multiple values for argument '{}'", fname, kv.first));
    bound[k] = &kv.second;
  }
  return bound;
}

const std::string& need_string(const Value* v, const char* what) {
  if (!v || !v->is_string()) raise(fmt::format("{} must be a string, not {}", what, v ? type_name(*v) : "nothing"));
  return v->s;
}
int64_t need_int(const Value* v, const char* what) {
  if (!v || !v->is_integral())
    raise(fmt::format("{} must be an integer, not {}", what, v ? type_name(*v) : "nothing"));
  return v->as_int();
}
bool given(const Value* v) { return v && !v->is_none(); }

// ---- object protocol ----------------------------------------------------------------------------

// iter(v) as a list of items: a list's items, a dict's keys, a string's characters, nothing for
// Undefined.
std::vector<Value> iterate(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return {};
    case Value::Type::List:
      if (!v.list->deferred_error.empty()) raise(v.list->deferred_error);
      return v.list->items;
    case Value::Type::Dict: {
      if (v.dict->is_namespace) break;
      std::vector<Value> keys;
      for (const auto& kv : v.dict->items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Type::String: {
      std::vector<Value> chars;
      std::string one;
      for (char32_t c : utf8_decode(v.s)) {
        one.clear();
        utf8_append(&one, c);
        chars.push_back(Value::string(one));
      }
      return chars;
    }
    default: break;
  }
  raise(fmt::format("'{}' object is not iterable", type_name(v)));
}

int64_t length_of(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return 0;
    case Value::Type::String: return (int64_t)utf8_length(v.s);
    case Value::Type::List:
      if (!v.list->deferred_error.empty()) raise(v.list->deferred_error);
      if (v.list->is_iterator) raise("object of type 'generator' has no len()");
      return (int64_t)v.list->items.size();
    case Value::Type::Dict:
      if (!v.dict->is_namespace) return (int64_t)v.dict->items.size();
      break;
    default: break;
  }
  raise(fmt::format("object of type '{}' has no len()", type_name(v)));
}

bool contains(const Value& container, const Value& item) {
  switch (container.type) {
    case Value::Type::Undefined: return false;
    case Value::Type::String:
      if (!item.is_string())
        raise(fmt::format("'in <string>' requires string as left operand, not {}", type_name(item)));
      return container.s.find(item.s) != std::string::npos;
    case Value::Type::List:
      if (!container.list->deferred_error.empty()) raise(container.list->deferred_error);
      for (const auto& x : container.list->items)
        if (equals(x, item)) return true;
      return false;
    case Value::Type::Dict:
      if (container.dict->is_namespace) break;
      if (item.is_dict() || (item.is_list() && !item.list->is_tuple && !item.list->is_iterator))
        raise(fmt::format("unhashable type: '{}'", type_name(item)));
      return container.dict->find(item) != nullptr;
    default: break;
  }
  raise(fmt::format("argument of type '{}' is not iterable", type_name(container)));
}

std::optional<Value> method_of(const Value& obj, const std::string& name);

// Python slice semantics on a length.
std::vector<int64_t> slice_indices(int64_t len, const Value& start_v, const Value& stop_v, const Value& step_v) {
  auto as_index = [](const Value& v) -> std::optional<int64_t> {
    if (v.is_none()) return std::nullopt;
    if (!v.is_integral()) raise("slice indices must be integers or None");
    return v.as_int();
  };
  std::optional<int64_t> start = as_index(start_v), stop = as_index(stop_v), step_o = as_index(step_v);
  int64_t step = step_o.value_or(1);
  if (step == 0) raise("slice step cannot be zero");
  auto adjust = [&](std::optional<int64_t> v, bool is_start) -> int64_t {
    if (!v) return step < 0 ? (is_start ? len - 1 : -1) : (is_start ? 0 : len);
    int64_t x = *v;
    if (x < 0) {
      x += len;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= len) {
      x = step < 0 ? len - 1 : len;
    }
    return x;
  };
  int64_t a = adjust(start, true), b = adjust(stop, false);
  std::vector<int64_t> idx;
  if (step > 0)
    for (int64_t k = a; k < b; k += step) idx.push_back(k);
  else
    for (int64_t k = a; k > b; k += step) idx.push_back(k);
  return idx;
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_string()) {
    std::u32string u = utf8_decode(obj.s);
    std::u32string r;
    for (int64_t k : slice_indices((int64_t)u.size(), start, stop, step)) r.push_back(u[k]);
    return Value::string(utf8_encode(r));
  }
  if (obj.is_list() && !obj.list->is_iterator && !obj.list->view) {
    std::vector<Value> r;
    for (int64_t k : slice_indices((int64_t)obj.list->items.size(), start, stop, step))
      r.push_back(obj.list->items[k]);
    return Value::new_list(std::move(r), obj.list->is_tuple);
  }
  // jinja2 compiles x[a:b] to a plain Python subscript (no environment.getitem), so this is an error.
  if (obj.is_undefined()) raise_undefined(obj);
  if (obj.is_dict()) raise("unhashable type: 'slice'");
  if (obj.is_list()) raise(fmt::format("'{}' object is not subscriptable", obj.list->view ? obj.list->view : "generator"));
  raise(fmt::format("'{}' object is not subscriptable", type_name(obj)));
}

// obj[key] as jinja2's sandboxed getitem: the item, else an attribute (method) of that name, else
// Undefined.
Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) raise_undefined(obj);
  if (obj.is_dict() && !obj.dict->is_namespace) {
    if (const Value* v = obj.dict->find(key)) return *v;
  } else if (obj.is_list() && !obj.list->is_iterator && !obj.list->view && key.is_integral()) {
    int64_t n = (int64_t)obj.list->items.size(), k = key.as_int();
    if (k < 0) k += n;
    if (k >= 0 && k < n) return obj.list->items[k];
  } else if (obj.is_string() && key.is_integral()) {
    std::u32string u = utf8_decode(obj.s);
    int64_t n = (int64_t)u.size(), k = key.as_int();
    if (k < 0) k += n;
    if (k >= 0 && k < n) return Value::string(utf8_encode(std::u32string_view(u).substr(k, 1)));
  }
  if (key.is_string()) {
    if (auto m = method_of(obj, key.s)) return *m;
    if (obj.is_dict() && obj.dict->is_namespace)
      if (const Value* v = obj.dict->find(key)) return *v;
    return Value::undefined(fmt::format("{} has no attribute '{}'", obj_desc(obj), key.s));
  }
  return Value::undefined(fmt::format("{} has no element {}", obj_desc(obj), to_repr(key)));
}

// obj.name as jinja2's sandboxed getattr: a method of that name first, then the item.
Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) raise_undefined(obj);
  if (auto m = method_of(obj, name)) return *m;
  if (obj.is_dict())
    if (const Value* v = obj.dict->find(std::string_view(name))) return *v;
  return Value::undefined(fmt::format("{} has no attribute '{}'", obj_desc(obj), name));
}

Value call_value(const Value& callee, CallArgs& args) {
  if (callee.is_function()) return callee.fn->call(args);
  if (callee.is_dict() && callee.dict->call) return callee.dict->call->call(args);
  if (callee.is_undefined()) raise_undefined(callee);
  raise(fmt::format("'{}' object is not callable", type_name(callee)));
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
Value get_path(const Value& obj, const std::string& path, const Value* default_value) {
  Value cur = obj;
  for (const std::string& part : split_sep(path, ".", -1)) {
    int64_t idx;
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric && parse_int(part, 10, &idx)) cur = get_item(cur, Value::integer(idx));
    else cur = get_item(cur, Value::string(part));
    if (cur.is_undefined() && default_value) return *default_value;
  }
  return cur;
}

// ---- methods of str, dict, list -----------------------------------------------------------------

Value str_list(const std::vector<std::string>& parts) {
  std::vector<Value> items;
  for (const auto& p : parts) items.push_back(Value::string(p));
  return Value::new_list(std::move(items));
}

Value string_method(const std::string& s, const std::string& name, CallArgs& a) {
  auto strip_chars = [&](int left, int right) {
    auto b = bind(a, name.c_str(), {"chars"});
    if (given(b[0])) {
      std::u32string chars = utf8_decode(need_string(b[0], "chars"));
      return Value::string(py_strip(s, &chars, left, right));
    }
    return Value::string(py_strip(s, nullptr, left, right));
  };
  if (name == "strip") return strip_chars(1, 1);
  if (name == "lstrip") return strip_chars(1, 0);
  if (name == "rstrip") return strip_chars(0, 1);
  if (name == "upper") return bind(a, "upper", {}), Value::string(str_upper(s));
  if (name == "lower") return bind(a, "lower", {}), Value::string(str_lower(s));
  if (name == "title") return bind(a, "title", {}), Value::string(str_title(s));
  if (name == "capitalize") return bind(a, "capitalize", {}), Value::string(str_capitalize(s));
  if (name == "swapcase") {
    bind(a, "swapcase", {});
    return Value::string(map_cp(s, [](char32_t c) { return is_upper_cp(c) ? lower_cp(c) : upper_cp(c); }));
  }
  if (name == "startswith" || name == "endswith") {
    auto b = bind(a, name.c_str(), {"prefix"});
    if (!b[0]) raise(name + "() takes at least 1 argument");
    std::vector<std::string> options;
    if (b[0]->is_list() && b[0]->list->is_tuple) {
      for (const auto& x : b[0]->list->items) options.push_back(need_string(&x, "tuple item"));
    } else {
      options.push_back(need_string(b[0], "prefix"));
    }
    for (const auto& p : options) {
      if (name == "startswith" ? s.compare(0, p.size(), p) == 0
                               : (s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0))
        return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (name == "split" || name == "rsplit") {
    auto b = bind(a, name.c_str(), {"sep", "maxsplit"});
    int64_t maxsplit = b[1] ? need_int(b[1], "maxsplit") : -1;
    if (!given(b[0])) {
      if (name == "rsplit" && maxsplit >= 0) {
        // rsplit(None, n): split from the right on whitespace runs.
        std::vector<std::string> all = split_ws(s, -1);
        if ((int64_t)all.size() <= maxsplit + 1) return str_list(all);
        std::u32string u = utf8_decode(s);
        size_t e = u.size();
        std::vector<std::string> parts;
        while ((int64_t)parts.size() < maxsplit) {
          while (e > 0 && is_py_space(u[e - 1])) e--;
          size_t b2 = e;
          while (b2 > 0 && !is_py_space(u[b2 - 1])) b2--;
          parts.push_back(utf8_encode(std::u32string_view(u).substr(b2, e - b2)));
          e = b2;
        }
        while (e > 0 && is_py_space(u[e - 1])) e--;
        parts.push_back(utf8_encode(std::u32string_view(u).substr(0, e)));
        std::reverse(parts.begin(), parts.end());
        return str_list(parts);
      }
      return str_list(split_ws(s, maxsplit));
    }
    const std::string& sep = need_string(b[0], "sep");
    return str_list(name == "split" ? split_sep(s, sep, maxsplit) : rsplit_sep(s, sep, maxsplit));
  }
  if (name == "splitlines") {
    auto b = bind(a, name.c_str(), {"keepends"});
    return str_list(split_lines(s, b[0] && truthy(*b[0])));
  }
  if (name == "replace") {
    auto b = bind(a, "replace", {"old", "new", "count"});
    int64_t count = b[2] ? need_int(b[2], "count") : -1;
    return Value::string(str_replace(s, need_string(b[0], "old"), need_string(b[1], "new"), count));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    auto b = bind(a, name.c_str(), {"sub"});
    const std::string& sub = need_string(b[0], "sub");
    if (name == "count") {
      if (sub.empty()) return Value::integer((int64_t)utf8_length(s) + 1);
      int64_t n = 0;
      for (size_t k = s.find(sub); k != std::string::npos; k = s.find(sub, k + sub.size())) n++;
      return Value::integer(n);
    }
    size_t k = (name == "find" || name == "index") ? s.find(sub) : s.rfind(sub);
    if (k == std::string::npos) {
      if (name == "index" || name == "rindex") raise("substring not found");
      return Value::integer(-1);
    }
    return Value::integer(cp_index(s, k));
  }
  if (name == "join") {
    auto b = bind(a, "join", {"iterable"});
    if (!b[0]) raise("join() takes exactly one argument");
    std::string out;
    std::vector<Value> items = iterate(*b[0]);
    for (size_t k = 0; k < items.size(); k++) {
      if (!items[k].is_string())
        raise(fmt::format("sequence item {}: expected str instance, {} found", k, type_name(items[k])));
      if (k) out += s;
      out += items[k].s;
    }
    return Value::string(std::move(out));
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    auto b = bind(a, name.c_str(), {"width", "fillchar"});
    std::string fill = b[1] ? need_string(b[1], "fillchar") : " ";
    int where = name == "center" ? 0 : name == "ljust" ? -1 : 1;
    return Value::string(str_pad(s, need_int(b[0], "width"), fill, where));
  }
  if (name == "zfill") {
    auto b = bind(a, "zfill", {"width"});
    int64_t width = need_int(b[0], "width"), len = (int64_t)utf8_length(s);
    if (width <= len) return Value::string(s);
    size_t sign = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    return Value::string(s.substr(0, sign) + std::string(width - len, '0') + s.substr(sign));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    auto b = bind(a, name.c_str(), {"fix"});
    const std::string& p = need_string(b[0], "argument");
    if (name == "removeprefix") return Value::string(s.compare(0, p.size(), p) == 0 ? s.substr(p.size()) : s);
    bool ends = s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
    return Value::string(ends && !p.empty() ? s.substr(0, s.size() - p.size()) : s);
  }
  auto all_of_cp = [&](auto pred) {
    std::u32string u = utf8_decode(s);
    if (u.empty()) return Value::boolean(false);
    for (char32_t c : u)
      if (!pred(c)) return Value::boolean(false);
    return Value::boolean(true);
  };
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric") return bind(a, name.c_str(), {}), all_of_cp(is_digit_cp);
  if (name == "isalpha") return bind(a, name.c_str(), {}), all_of_cp(is_alpha_cp);
  if (name == "isalnum") return bind(a, name.c_str(), {}), all_of_cp([](char32_t c) { return is_alpha_cp(c) || is_digit_cp(c); });
  if (name == "isspace") return bind(a, name.c_str(), {}), all_of_cp(is_py_space);
  if (name == "isupper" || name == "islower") {
    bind(a, name.c_str(), {});
    bool any_cased = false, ok = true;
    for (char32_t c : utf8_decode(s)) {
      if (is_upper_cp(c) || is_lower_cp(c)) any_cased = true;
      if (name == "isupper" ? is_lower_cp(c) : is_upper_cp(c)) ok = false;
    }
    return Value::boolean(any_cased && ok);
  }
  if (name == "format") {
    // "{}", "{0}", "{name}" without format specs; {{ and }} are literal braces.
    std::string out;
    size_t auto_idx = 0;
    for (size_t k = 0; k < s.size(); k++) {
      char c = s[k];
      if (c == '{' && k + 1 < s.size() && s[k + 1] == '{') { out += '{'; k++; continue; }
      if (c == '}' && k + 1 < s.size() && s[k + 1] == '}') { out += '}'; k++; continue; }
      if (c == '}') raise("Single '}' encountered in format string");
      if (c != '{') { out += c; continue; }
      size_t e = s.find('}', k);
      if (e == std::string::npos) raise("Single '{' encountered in format string");
      std::string field = s.substr(k + 1, e - k - 1);
      if (field.find_first_of(":!") != std::string::npos) raise("format specs are not supported in str.format()");
      const Value* v = nullptr;
      int64_t idx;
      if (field.empty()) {
        if (auto_idx >= a.positional.size()) raise("Replacement index out of range for positional args tuple");
        v = &a.positional[auto_idx++];
      } else if (parse_int(field, 10, &idx)) {
        if (idx < 0 || (size_t)idx >= a.positional.size()) raise("Replacement index out of range for positional args tuple");
        v = &a.positional[idx];
      } else {
        for (const auto& kv : a.keyword)
          if (kv.first == field) v = &kv.second;
        if (!v) raise(fmt::format("KeyError: '{}'", field));
      }
      out += to_str(*v);
      k = e;
    }
    return Value::string(std::move(out));
  }
  raise(fmt::format("'str object' has no attribute '{}'", name));
}

const char* const kStringMethods[] = {
    "strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "swapcase", "startswith",
    "endswith", "split", "rsplit", "splitlines", "replace", "find", "rfind", "index", "rindex", "count",
    "join", "center", "ljust", "rjust", "zfill", "removeprefix", "removesuffix", "isdigit", "isdecimal",
    "isnumeric", "isalpha", "isalnum", "isspace", "isupper", "islower", "format"};

Value dict_items(const Value& d) {
  std::vector<Value> items;
  for (const auto& kv : d.dict->items) items.push_back(Value::new_list({kv.first, kv.second}, true));
  return Value::new_list(std::move(items));
}

std::optional<Value> method_of(const Value& obj, const std::string& name) {
  if (obj.is_string()) {
    for (const char* m : kStringMethods)
      if (name == m) {
        std::string s = obj.s;
        return Value::function(name, [s, name](CallArgs& a) { return string_method(s, name, a); });
      }
    return std::nullopt;
  }
  if (obj.is_dict() && !obj.dict->is_namespace) {
    auto d = obj;
    if (name == "items")
      return Value::function(name, [d](CallArgs& a) {
        bind(a, "items", {});
        Value v = dict_items(d);
        v.list->view = "dict_items";
        return v;
      });
    if (name == "keys")
      return Value::function(name, [d](CallArgs& a) {
        bind(a, "keys", {});
        Value v = Value::new_list(iterate(d));
        v.list->view = "dict_keys";
        return v;
      });
    if (name == "values")
      return Value::function(name, [d](CallArgs& a) {
        bind(a, "values", {});
        std::vector<Value> vals;
        for (const auto& kv : d.dict->items) vals.push_back(kv.second);
        Value v = Value::new_list(std::move(vals));
        v.list->view = "dict_values";
        return v;
      });
    if (name == "get")
      return Value::function(name, [d](CallArgs& a) {
        auto b = bind(a, "get", {"key", "default"});
        if (!b[0]) raise("get() takes at least 1 argument");
        if (const Value* v = d.dict->find(*b[0])) return *v;
        return b[1] ? *b[1] : Value::none();
      });
    return std::nullopt;
  }
  if (obj.is_list()) {
    auto l = obj;
    if (name == "count")
      return Value::function(name, [l](CallArgs& a) {
        auto b = bind(a, "count", {"value"});
        if (!b[0]) raise("count() takes exactly one argument");
        int64_t n = 0;
        for (const auto& x : l.list->items) n += equals(x, *b[0]);
        return Value::integer(n);
      });
    if (name == "index")
      return Value::function(name, [l](CallArgs& a) {
        auto b = bind(a, "index", {"value"});
        if (!b[0]) raise("index() takes exactly one argument");
        for (size_t k = 0; k < l.list->items.size(); k++)
          if (equals(l.list->items[k], *b[0])) return Value::integer((int64_t)k);
        raise(fmt::format("{} is not in list", to_repr(*b[0])));
      });
  }
  return std::nullopt;
}

// ---- operators ----------------------------------------------------------------------------------

Value repeat(const Value& seq, int64_t n) {
  if (seq.is_string()) {
    std::string out;
    if (n > 0 && seq.s.size() * (size_t)n > (1u << 30)) raise("repeated string too large");
    for (int64_t k = 0; k < n; k++) out += seq.s;
    return Value::string(std::move(out));
  }
  std::vector<Value> items;
  if (n > 0 && seq.list->items.size() * (size_t)n > (1u << 24)) raise("repeated list too large");
  for (int64_t k = 0; k < n; k++) items.insert(items.end(), seq.list->items.begin(), seq.list->items.end());
  return Value::new_list(std::move(items), seq.list->is_tuple);
}

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(to_str(a) + to_str(b));
  if (op == "%" && a.is_string()) return Value::string(percent_format(a.s, b));  // str % Undefined is fine
  if (a.is_undefined()) raise_undefined(a);
  if (b.is_undefined()) raise_undefined(b);
  auto unsupported = [&]() -> Value {
    raise(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, type_name(a), type_name(b)));
  };
  bool ints = a.is_integral() && b.is_integral();
  bool nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) return Value::integer(checked((long double)a.as_int() + b.as_int(), a.as_int() + b.as_int()));
    if (nums) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.is_list() && b.is_list() && a.list->is_tuple == b.list->is_tuple && !a.list->is_iterator &&
        !b.list->is_iterator) {
      std::vector<Value> items = a.list->items;
      items.insert(items.end(), b.list->items.begin(), b.list->items.end());
      return Value::new_list(std::move(items), a.list->is_tuple);
    }
    if (a.is_string()) raise(fmt::format("can only concatenate str (not \"{}\") to str", type_name(b)));
    return unsupported();
  }
  if (op == "-") {
    if (ints) return Value::integer(checked((long double)a.as_int() - b.as_int(), a.as_int() - b.as_int()));
    if (nums) return Value::number(a.as_double() - b.as_double());
    return unsupported();
  }
  if (op == "*") {
    if (ints) return Value::integer(checked((long double)a.as_int() * b.as_int(), (int64_t)((uint64_t)a.as_int() * (uint64_t)b.as_int())));
    if (nums) return Value::number(a.as_double() * b.as_double());
    auto seq = [](const Value& v) { return v.is_string() || (v.is_list() && !v.list->is_iterator); };
    if (seq(a) && b.is_integral()) return repeat(a, b.as_int());
    if (seq(b) && a.is_integral()) return repeat(b, a.as_int());
    return unsupported();
  }
  if (op == "/") {
    if (!nums) return unsupported();
    if (b.as_double() == 0.0) raise("division by zero");
    return Value::number(a.as_double() / b.as_double());
  }
  if (op == "//") {
    if (ints) return Value::integer(floor_div(a.as_int(), b.as_int()));
    if (!nums) return unsupported();
    if (b.as_double() == 0.0) raise("float floor division by zero");
    // CPython's float_floor_div.
    double x = a.as_double(), y = b.as_double();
    double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0.0 && ((y < 0) != (mod < 0))) div -= 1.0;
    double floordiv;
    if (div != 0.0) {
      floordiv = std::floor(div);
      if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
      floordiv = std::copysign(0.0, x / y);
    }
    return Value::number(floordiv);
  }
  if (op == "%") {
    if (ints) return Value::integer(floor_mod(a.as_int(), b.as_int()));
    if (nums) return Value::number(float_mod(a.as_double(), b.as_double()));
    if (a.is_string()) return Value::string(percent_format(a.s, b));
    return unsupported();
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), r = 1;
      long double exact = std::pow((long double)base, (long double)e);
      checked(exact, 0);
      for (int64_t k = 0; k < e; k++) r *= base;
      return Value::integer(r);
    }
    if (nums) {
      double x = a.as_double(), y = b.as_double();
      if (x == 0.0 && y < 0) raise("0.0 cannot be raised to a negative power");
      double r = std::pow(x, y);
      if (std::isinf(r) && std::isfinite(x) && std::isfinite(y)) raise("(34, 'Numerical result out of range')");
      if (std::isnan(r) && !std::isnan(x) && !std::isnan(y)) raise("negative number cannot be raised to a fractional power");
      return Value::number(r);
    }
    return unsupported();
  }
  raise("unknown operator " + op);
}

bool compare_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  if (op == "in") return contains(b, a);
  if (op == "not in") return !contains(b, a);
  if (a.is_undefined()) raise_undefined(a);
  if (b.is_undefined()) raise_undefined(b);
  bool ok = true;
  bool r;
  if (op == "<") r = less_than(a, b, &ok);
  else if (op == ">") r = less_than(b, a, &ok);
  else if (op == "<=") r = !less_than(b, a, &ok);
  else r = !less_than(a, b, &ok);  // >=
  if (!ok)
    raise(fmt::format("'{}' not supported between instances of '{}' and '{}'", op, type_name(a), type_name(b)));
  return r;
}

// ---- the interpreter ----------------------------------------------------------------------------

class Renderer;

// Sorting key: strings lower-cased unless case sensitive (jinja2's ignore_case).
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::string(str_lower(v.s));
  return v;
}

bool sort_less(const Value& a, const Value& b) {
  bool ok = true;
  bool r = less_than(a, b, &ok);
  if (!ok) raise(fmt::format("'<' not supported between instances of '{}' and '{}'", type_name(a), type_name(b)));
  return r;
}

class Renderer {
 public:
  enum class Flow { Normal, Break, Continue };

  std::string run(const Template& tpl, const Value& context) {
    auto globals = std::make_shared<Scope>();
    install_globals(globals.get());
    auto top = child_scope(globals);
    if (context.is_dict())
      for (const auto& kv : context.dict->items)
        if (kv.first.is_string()) top->vars[kv.first.s] = kv.second;
    enter_frame(top.get(), tpl.locals);
    std::string out;
    exec_body(tpl.body, top, &out);
    return out;
  }

 private:
  int call_depth_ = 0;  // macro/caller/recursive-loop nesting

  struct DepthGuard {
    int* d;
    explicit DepthGuard(int* depth) : d(depth) {
      if (++*d > 200) raise("maximum recursion depth exceeded in the template");
    }
    ~DepthGuard() { --*d; }
  };

  // The names a frame starts as undefined (Stmt::locals).
  static void enter_frame(Scope* scope, const std::vector<std::string>& locals) {
    for (const auto& name : locals) scope->vars[name] = Value::undefined(fmt::format("'{}' is undefined", name));
  }

  // Runs `body` in a new frame under `scope`, into a string.
  std::string render_frame(const Stmt& s, const ScopePtr& scope) {
    auto inner = child_scope(scope);
    enter_frame(inner.get(), s.locals);
    std::string text;
    exec_body(s.body, inner, &text);
    return text;
  }

  [[noreturn]] static void fail_stmt(const Stmt& s, const std::string& msg) {
    fail("line {}:{}: {}", s.line, s.col, msg);
  }

  // ---- statements ----

  Flow exec_body(const Body& body, const ScopePtr& scope, std::string* out) {
    for (const auto& s : body) {
      Flow f = exec(*s, scope, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Stmt& s, const ScopePtr& scope, std::string* out) {
    switch (s.kind) {
      case Stmt::Kind::Text: *out += s.text; return Flow::Normal;
      case Stmt::Kind::Print: *out += to_str(eval(*s.expr, scope)); return Flow::Normal;
      case Stmt::Kind::If:
        for (const auto& br : s.branches)
          if (truthy(eval(*br.first, scope))) return exec_body(br.second, scope, out);
        return exec_body(s.else_body, scope, out);
      case Stmt::Kind::For: {
        Value iterable = eval(*s.expr, scope);
        std::vector<Value> items;
        try {
          items = iterate(iterable);
        } catch (EvalError& e) {
          fail_stmt(s, e.msg);
        }
        run_for(s, std::move(items), 0, scope, out);
        return Flow::Normal;
      }
      case Stmt::Kind::Set: assign(s, *s.target, eval(*s.expr, scope), scope); return Flow::Normal;
      case Stmt::Kind::SetBlock: {
        auto inner = child_scope(scope);
        enter_frame(inner.get(), s.locals);
        std::string text;
        exec_body(s.body, inner, &text);
        Value v = Value::string(std::move(text));
        if (s.filter) v = eval_filter(*s.filter, inner, &v);
        assign(s, *s.target, std::move(v), scope);
        return Flow::Normal;
      }
      case Stmt::Kind::FilterBlock: {
        Value v = Value::string(render_frame(s, scope));
        *out += to_str(eval_filter(*s.filter, scope, &v));
        return Flow::Normal;
      }
      case Stmt::Kind::Macro: scope->vars[s.name] = make_macro(s, scope); return Flow::Normal;
      case Stmt::Kind::CallBlock: {
        const Expr& call = *s.expr;
        Value caller = make_macro(s, scope);
        caller.fn->name = "caller";
        Value callee = eval(*call.children[0], scope);
        CallArgs args = eval_args(call, scope);
        args.keyword.emplace_back("caller", caller);
        try {
          *out += to_str(call_value(callee, args));
        } catch (EvalError& e) {
          fail_stmt(s, e.msg);
        }
        return Flow::Normal;
      }
      case Stmt::Kind::With: {
        auto inner = child_scope(scope);
        enter_frame(inner.get(), s.locals);
        for (const auto& a : s.assigns) assign(s, *a.first, eval(*a.second, scope), inner);
        return exec_body(s.body, inner, out);
      }
      case Stmt::Kind::Break: return Flow::Break;
      case Stmt::Kind::Continue: return Flow::Continue;
      case Stmt::Kind::Generation: *out += render_frame(s, scope); return Flow::Normal;
    }
    return Flow::Normal;
  }

  void assign(const Stmt& s, const Expr& target, Value v, const ScopePtr& scope) {
    if (target.kind == Expr::Kind::Name) {
      scope->vars[target.name] = std::move(v);
    } else if (target.kind == Expr::Kind::Tuple) {
      std::vector<Value> items;
      try {
        items = iterate(v);
      } catch (EvalError& e) {
        fail_stmt(s, "cannot unpack: " + e.msg);
      }
      size_t n = target.children.size();
      if (items.size() < n) fail_stmt(s, fmt::format("not enough values to unpack (expected {}, got {})", n, items.size()));
      if (items.size() > n) fail_stmt(s, fmt::format("too many values to unpack (expected {})", n));
      for (size_t k = 0; k < n; k++) scope->vars[target.children[k]->name] = items[k];
    } else if (target.kind == Expr::Kind::Attr) {
      const std::string& ns_name = target.children[0]->name;
      const Value* ns = scope->find(ns_name);
      if (!ns || !ns->is_dict() || !ns->dict->is_namespace)
        fail_stmt(s, fmt::format("cannot assign attribute on non-namespace object '{}'", ns_name));
      ns->dict->set(Value::string(target.name), std::move(v));
    }
  }

  // A for loop over `items` (already materialized), at recursion depth `depth` (0 for the loop
  // itself, 1+ for loop(...) calls of a recursive loop).
  void run_for(const Stmt& s, std::vector<Value> items, int depth, const ScopePtr& scope, std::string* out) {
    if (s.cond) {
      std::vector<Value> kept;
      for (auto& item : items) {
        auto probe = child_scope(scope);
        assign(s, *s.target, item, probe);
        if (truthy(eval(*s.cond, probe))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      auto else_scope = child_scope(scope);
      enter_frame(else_scope.get(), s.else_locals);
      exec_body(s.else_body, else_scope, out);
      return;
    }
    const int64_t n = (int64_t)items.size();
    auto last_changed = std::make_shared<std::optional<Value>>();
    std::weak_ptr<Scope> weak_scope = scope;
    for (int64_t k = 0; k < n; k++) {
      auto iter_scope = child_scope(scope);
      enter_frame(iter_scope.get(), s.locals);
      assign(s, *s.target, items[k], iter_scope);
      Value loop = Value::new_dict();
      auto& d = *loop.dict;
      d.set(Value::string("index"), Value::integer(k + 1));
      d.set(Value::string("index0"), Value::integer(k));
      d.set(Value::string("revindex"), Value::integer(n - k));
      d.set(Value::string("revindex0"), Value::integer(n - k - 1));
      d.set(Value::string("first"), Value::boolean(k == 0));
      d.set(Value::string("last"), Value::boolean(k == n - 1));
      d.set(Value::string("length"), Value::integer(n));
      d.set(Value::string("depth"), Value::integer(depth + 1));
      d.set(Value::string("depth0"), Value::integer(depth));
      d.set(Value::string("previtem"), k > 0 ? items[k - 1] : Value::undefined("there is no previous item"));
      d.set(Value::string("nextitem"), k + 1 < n ? items[k + 1] : Value::undefined("there is no next item"));
      d.set(Value::string("cycle"), Value::function("cycle", [k](CallArgs& a) {
              if (a.positional.empty()) raise("no items for cycling given");
              return a.positional[k % a.positional.size()];
            }));
      d.set(Value::string("changed"), Value::function("changed", [last_changed](CallArgs& a) {
              Value now = Value::new_list(a.positional);
              if (*last_changed && equals(**last_changed, now)) return Value::boolean(false);
              *last_changed = now;
              return Value::boolean(true);
            }));
      if (s.recursive) {
        const Stmt* stmt = &s;
        d.call = std::make_shared<FunctionObject>();
        d.call->name = "loop";
        d.call->call = [this, stmt, depth, weak_scope](CallArgs& a) {
          auto b = bind(a, "loop", {"iterable"});
          if (!b[0]) raise("loop() takes exactly one argument");
          auto sc = weak_scope.lock();
          if (!sc) raise("the loop's scope is gone");
          DepthGuard guard(&call_depth_);
          std::string text;
          run_for(*stmt, iterate(*b[0]), depth + 1, sc, &text);
          return Value::string(std::move(text));
        };
      }
      iter_scope->vars["loop"] = std::move(loop);
      Flow f = exec_body(s.body, iter_scope, out);
      if (f == Flow::Break) break;
    }
  }

  // A macro (or the body of a call block, as `caller`) as a function value. The function holds its
  // defining scope weakly: the scope holds the function, and a strong link would be a cycle.
  Value make_macro(const Stmt& s, const ScopePtr& scope) {
    const Stmt* stmt = &s;
    std::weak_ptr<Scope> weak_scope = scope;
    return Value::function(s.name, [this, stmt, weak_scope](CallArgs& a) {
      auto defining = weak_scope.lock();
      if (!defining) raise(fmt::format("macro '{}' called after its scope ended", stmt->name));
      DepthGuard guard(&call_depth_);
      auto sc = child_scope(defining);
      enter_frame(sc.get(), stmt->locals);
      const auto& params = stmt->params;
      std::vector<bool> set(params.size(), false);
      std::vector<Value> varargs;
      for (size_t k = 0; k < a.positional.size(); k++) {
        if (k < params.size()) {
          sc->vars[params[k].first] = a.positional[k];
          set[k] = true;
        } else {
          varargs.push_back(a.positional[k]);
        }
      }
      Value kwargs = Value::new_dict();
      for (auto& kv : a.keyword) {
        size_t k = 0;
        while (k < params.size() && params[k].first != kv.first) k++;
        if (k < params.size()) {
          if (set[k]) raise(fmt::format("macro '{}' got multiple values for argument '{}'", stmt->name, kv.first));
          sc->vars[kv.first] = kv.second;
          set[k] = true;
        } else if (kv.first == "caller") {
          sc->vars["caller"] = kv.second;
        } else {
          kwargs.dict->set(Value::string(kv.first), kv.second);
        }
      }
      for (size_t k = 0; k < params.size(); k++) {
        if (set[k]) continue;
        sc->vars[params[k].first] = params[k].second
                                        ? eval(*params[k].second, sc)
                                        : Value::undefined(fmt::format("parameter '{}' was not provided", params[k].first));
      }
      sc->vars["varargs"] = Value::new_list(std::move(varargs), true);
      sc->vars["kwargs"] = std::move(kwargs);
      std::string text;
      exec_body(stmt->body, sc, &text);
      return Value::string(std::move(text));
    });
  }

  // ---- expressions ----

  Value eval(const Expr& e, const ScopePtr& scope) {
    try {
      return eval_inner(e, scope);
    } catch (EvalError& err) {
      fail("line {}:{}: {}", e.line, e.col, err.msg);
    }
  }

  CallArgs eval_args(const Expr& e, const ScopePtr& scope) {
    CallArgs args;
    for (size_t k = 1; k < e.children.size(); k++) args.positional.push_back(eval(*e.children[k], scope));
    for (const auto& kv : e.kwargs) args.keyword.emplace_back(kv.first, eval(*kv.second, scope));
    return args;
  }

  Value eval_inner(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case Expr::Kind::Literal: return e.literal;
      case Expr::Kind::Name: {
        if (const Value* v = scope->find(e.name)) return *v;
        return Value::undefined(fmt::format("'{}' is undefined", e.name));
      }
      case Expr::Kind::List:
      case Expr::Kind::Tuple: {
        std::vector<Value> items;
        for (const auto& c : e.children) items.push_back(eval(*c, scope));
        return Value::new_list(std::move(items), e.kind == Expr::Kind::Tuple);
      }
      case Expr::Kind::Dict: {
        Value d = Value::new_dict();
        for (size_t k = 0; k + 1 < e.children.size(); k += 2) {
          Value key = eval(*e.children[k], scope);
          if (key.is_list() && !key.list->is_tuple) raise("unhashable type: 'list'");
          if (key.is_dict()) raise("unhashable type: 'dict'");
          d.dict->set(std::move(key), eval(*e.children[k + 1], scope));
        }
        return d;
      }
      case Expr::Kind::Attr: return get_attr(eval(*e.children[0], scope), e.name);
      case Expr::Kind::Item: {
        Value obj = eval(*e.children[0], scope);
        const Expr& key = *e.children[1];
        if (key.kind == Expr::Kind::Slice) {
          auto part = [&](size_t k) { return key.children[k] ? eval(*key.children[k], scope) : Value::none(); };
          return get_slice(obj, part(0), part(1), part(2));
        }
        return get_item(obj, eval(key, scope));
      }
      case Expr::Kind::Slice: raise("a slice is only valid inside []");
      case Expr::Kind::Call: {
        Value callee = eval(*e.children[0], scope);
        CallArgs args = eval_args(e, scope);
        return call_value(callee, args);
      }
      case Expr::Kind::Filter: return eval_filter(e, scope, nullptr);
      case Expr::Kind::Test: {
        Value subject = eval(*e.children[0], scope);
        CallArgs args = eval_args(e, scope);
        bool r = apply_test(e.name, subject, args);
        return Value::boolean(e.negated ? !r : r);
      }
      case Expr::Kind::Not: return Value::boolean(!truthy(eval(*e.children[0], scope)));
      case Expr::Kind::Neg:
      case Expr::Kind::Pos: {
        Value v = eval(*e.children[0], scope);
        if (v.is_undefined()) raise_undefined(v);
        if (!v.is_number())
          raise(fmt::format("bad operand type for unary {}: '{}'", e.kind == Expr::Kind::Neg ? "-" : "+", type_name(v)));
        if (e.kind == Expr::Kind::Pos) return v.is_integral() ? Value::integer(v.as_int()) : v;
        if (v.is_integral()) {
          if (v.as_int() == INT64_MIN) raise("integer result out of the 64-bit range");
          return Value::integer(-v.as_int());
        }
        return Value::number(-v.f);
      }
      case Expr::Kind::Binary:
        return binary_op(e.name, eval(*e.children[0], scope), eval(*e.children[1], scope));
      case Expr::Kind::Compare: {
        Value left = eval(*e.children[0], scope);
        for (size_t k = 0; k < e.ops.size(); k++) {
          Value right = eval(*e.children[k + 1], scope);
          if (!compare_op(e.ops[k], left, right)) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::And: {
        Value a = eval(*e.children[0], scope);
        return truthy(a) ? eval(*e.children[1], scope) : a;
      }
      case Expr::Kind::Or: {
        Value a = eval(*e.children[0], scope);
        return truthy(a) ? a : eval(*e.children[1], scope);
      }
      case Expr::Kind::Cond: {
        if (truthy(eval(*e.children[1], scope))) return eval(*e.children[0], scope);
        if (e.children[2]) return eval(*e.children[2], scope);
        return Value::undefined(fmt::format(
            "the inline if-expression on line {} evaluated to false and no else section was defined", e.line));
      }
    }
    raise("unknown expression");
  }

  // A filter node; `block_input` is the subject of a chain whose innermost subject is null
  // ({% set x | f %}, {% filter f %}).
  Value eval_filter(const Expr& e, const ScopePtr& scope, const Value* block_input) {
    try {
      Value input;
      const Expr* subj = e.children[0].get();
      if (!subj) input = *block_input;
      else if (block_input && subj->kind == Expr::Kind::Filter) input = eval_filter(*subj, scope, block_input);
      else input = eval(*subj, scope);
      CallArgs args = eval_args(e, scope);
      return apply_filter(e.name, input, args);
    } catch (EvalError& err) {
      fail("line {}:{}: {}", e.line, e.col, err.msg);
    }
  }

  // ---- globals ----

  void install_globals(Scope* g) {
    g->vars["range"] = Value::function("range", [](CallArgs& a) {
      if (!a.keyword.empty()) raise("range() takes no keyword arguments");
      std::vector<int64_t> p;
      for (const auto& v : a.positional) p.push_back(need_int(&v, "range() argument"));
      if (p.empty() || p.size() > 3) raise("range expected 1 to 3 arguments");
      int64_t start = p.size() == 1 ? 0 : p[0], stop = p.size() == 1 ? p[0] : p[1], step = p.size() == 3 ? p[2] : 1;
      if (step == 0) raise("range() arg 3 must not be zero");
      std::vector<Value> items;
      for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
        if (items.size() >= 100000) raise("range too big, maximum size for range is 100000");  // jinja2 sandbox
        items.push_back(Value::integer(k));
      }
      return Value::new_list(std::move(items));
    });
    auto make_dict = [](CallArgs& a, bool ns) {
      Value d = Value::new_dict();
      d.dict->is_namespace = ns;
      if (a.positional.size() > 1) raise("expected at most 1 positional argument");
      if (!a.positional.empty()) {
        const Value& init = a.positional[0];
        if (!init.is_dict()) raise("namespace()/dict() positional argument must be a dict");
        for (const auto& kv : init.dict->items) d.dict->set(kv.first, kv.second);
      }
      for (const auto& kv : a.keyword) d.dict->set(Value::string(kv.first), kv.second);
      return d;
    };
    g->vars["namespace"] = Value::function("namespace", [make_dict](CallArgs& a) { return make_dict(a, true); });
    g->vars["dict"] = Value::function("dict", [make_dict](CallArgs& a) { return make_dict(a, false); });
    g->vars["raise_exception"] = Value::function("raise_exception", [](CallArgs& a) -> Value {
      auto b = bind(a, "raise_exception", {"message"});
      raise(b[0] ? to_str(*b[0]) : std::string());
    });
    g->vars["strftime_now"] = Value::function("strftime_now", [](CallArgs& a) {
      auto b = bind(a, "strftime_now", {"format"});
      const std::string& f = need_string(b[0], "format");
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[512];
      size_t n = std::strftime(buf, sizeof buf, f.c_str(), &tm);
      return Value::string(std::string(buf, n));
    });
  }

  // ---- filters ----

  // Filters jinja2 implements as generators: their errors surface when the result is consumed.
  static bool is_lazy_filter(const std::string& name) {
    return name == "map" || name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr" ||
           name == "unique" || name == "items" || name == "batch" || name == "slice";
  }

  Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
    if (!is_lazy_filter(name)) return apply_filter_now(name, v, a);
    try {
      return apply_filter_now(name, v, a);
    } catch (EvalError& e) {
      Value failed = iterator_of({});
      failed.list->deferred_error = e.msg;
      return failed;
    }
  }

  Value apply_filter_now(const std::string& name, const Value& v, CallArgs& a) {
    auto str_in = [&]() { return to_str(v); };  // soft_str: Undefined -> ""
    if (name == "trim" || name == "strip") {
      auto b = bind(a, "trim", {"chars"});
      if (given(b[0])) {
        std::u32string chars = utf8_decode(need_string(b[0], "chars"));
        return Value::string(py_strip(str_in(), &chars, true, true));
      }
      return Value::string(py_strip(str_in(), nullptr, true, true));
    }
    if (name == "upper") return bind(a, "upper", {}), Value::string(str_upper(str_in()));
    if (name == "lower") return bind(a, "lower", {}), Value::string(str_lower(str_in()));
    if (name == "capitalize") return bind(a, "capitalize", {}), Value::string(str_capitalize(str_in()));
    if (name == "title") return bind(a, "title", {}), Value::string(filter_title(str_in()));
    if (name == "string") return bind(a, "string", {}), v.is_string() ? v : Value::string(str_in());
    if (name == "safe") return bind(a, "safe", {}), v;
    if (name == "e" || name == "escape" || name == "forceescape")
      return bind(a, name.c_str(), {}), Value::string(html_escape(str_in()));
    if (name == "length" || name == "count") return bind(a, name.c_str(), {}), Value::integer(length_of(v));
    if (name == "tojson") return filter_tojson(v, a);
    if (name == "default" || name == "d") {
      auto b = bind(a, "default", {"default_value", "boolean"});
      bool boolean = b[1] && truthy(*b[1]);
      if (v.is_undefined() || (boolean && !truthy(v))) return b[0] ? *b[0] : Value::string("");
      return v;
    }
    if (name == "replace") {
      auto b = bind(a, "replace", {"old", "new", "count"});
      int64_t count = given(b[2]) ? need_int(b[2], "count") : -1;
      return Value::string(str_replace(str_in(), to_str(b[0] ? *b[0] : Value()), to_str(b[1] ? *b[1] : Value()), count));
    }
    if (name == "join") {
      auto b = bind(a, "join", {"d", "attribute"});
      std::string sep = b[0] ? to_str(*b[0]) : "";
      std::string out;
      std::vector<Value> items = iterate(v);
      for (size_t k = 0; k < items.size(); k++) {
        if (k) out += sep;
        out += to_str(given(b[1]) ? get_path(items[k], to_str(*b[1]), nullptr) : items[k]);
      }
      return Value::string(std::move(out));
    }
    if (name == "first" || name == "last") {
      bind(a, name.c_str(), {});
      if (name == "last" && v.is_list() && v.list->is_iterator) raise("'generator' object is not reversible");
      std::vector<Value> items = iterate(v);
      if (items.empty()) return Value::undefined(fmt::format("No {} item, sequence was empty.", name));
      return name == "first" ? items.front() : items.back();
    }
    if (name == "list") return bind(a, "list", {}), Value::new_list(iterate(v));
    if (name == "items") {
      bind(a, "items", {});
      if (v.is_undefined()) return iterator_of({});
      if (!v.is_dict() || v.dict->is_namespace) raise("Can only get item pairs from a mapping.");
      return iterator_of(dict_items(v).list->items);
    }
    if (name == "reverse") {
      bind(a, "reverse", {});
      if (v.is_string()) {
        std::u32string u = utf8_decode(v.s);
        std::reverse(u.begin(), u.end());
        return Value::string(utf8_encode(u));
      }
      std::vector<Value> items = iterate(v);
      std::reverse(items.begin(), items.end());
      return iterator_of(std::move(items));
    }
    if (name == "int") {
      auto b = bind(a, "int", {"default", "base"});
      Value def = b[0] ? *b[0] : Value::integer(0);
      int64_t base = b[1] ? need_int(b[1], "base") : 10;
      if (v.is_undefined()) raise_undefined(v);
      if (v.is_integral()) return Value::integer(v.as_int());
      if (v.type == Value::Type::Float) {
        if (!std::isfinite(v.f)) raise("cannot convert float infinity or NaN to integer");
        return Value::integer((int64_t)std::trunc(v.f));
      }
      if (v.is_string()) {
        int64_t r;
        if (parse_int(v.s, (int)base, &r)) return Value::integer(r);
        double d;
        if (parse_float(v.s, &d)) {
          if (!std::isfinite(d)) raise("cannot convert float infinity or NaN to integer");
          return Value::integer((int64_t)std::trunc(d));
        }
      }
      return def;
    }
    if (name == "float") {
      auto b = bind(a, "float", {"default"});
      Value def = b[0] ? *b[0] : Value::number(0.0);
      if (v.is_undefined()) raise_undefined(v);
      if (v.is_number()) return Value::number(v.as_double());
      double d;
      if (v.is_string() && parse_float(v.s, &d)) return Value::number(d);
      return def;
    }
    if (name == "abs") {
      bind(a, "abs", {});
      if (v.is_integral()) return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
      if (v.type == Value::Type::Float) return Value::number(std::fabs(v.f));
      raise(fmt::format("bad operand type for abs(): '{}'", type_name(v)));
    }
    if (name == "round") {
      auto b = bind(a, "round", {"precision", "method"});
      int64_t precision = b[0] ? need_int(b[0], "precision") : 0;
      std::string method = b[1] ? need_string(b[1], "method") : "common";
      if (!v.is_number()) raise(fmt::format("type {} doesn't define __round__ method", type_name(v)));
      double x = v.as_double();
      if (method == "common") {
        if (v.is_integral() && precision >= 0) return Value::integer(v.as_int());  // round(int) is an int
        if (precision == 0) return Value::number(std::nearbyint(x));  // ties to even, as Python's round
        char buf[512];
        std::snprintf(buf, sizeof buf, "%.*f", (int)std::clamp<int64_t>(precision, 0, 300), x);
        return Value::number(std::strtod(buf, nullptr));
      }
      if (method != "floor" && method != "ceil") raise("method must be common, ceil or floor");
      double scale = std::pow(10.0, (double)precision);
      double r = method == "floor" ? std::floor(x * scale) : std::ceil(x * scale);
      return Value::number(r / scale);
    }
    if (name == "center") {
      auto b = bind(a, "center", {"width"});
      return Value::string(str_pad(str_in(), b[0] ? need_int(b[0], "width") : 80, " ", 0));
    }
    if (name == "indent") return filter_indent(v, a);
    if (name == "wordcount") {
      bind(a, "wordcount", {});
      int64_t n = 0;
      bool in_word = false;
      for (char32_t c : utf8_decode(str_in())) {
        bool w = c == '_' || is_digit_cp(c) || is_alpha_cp(c) || (c >= 0x80 && !is_py_space(c));
        if (w && !in_word) n++;
        in_word = w;
      }
      return Value::integer(n);
    }
    if (name == "attr") {
      // Python getattr only: a dict's keys are not attributes, a namespace's are.
      auto b = bind(a, "attr", {"name"});
      const std::string& attr = need_string(b[0], "attribute name");
      if (auto m = method_of(v, attr)) return *m;
      if (v.is_dict() && v.dict->is_namespace)
        if (const Value* x = v.dict->find(std::string_view(attr))) return *x;
      return Value::undefined(fmt::format("{} has no attribute '{}'", obj_desc(v), attr));
    }
    if (name == "map") return filter_map(v, a);
    if (name == "select" || name == "reject") return filter_select(v, a, name == "select", false);
    if (name == "selectattr" || name == "rejectattr") return filter_select(v, a, name == "selectattr", true);
    if (name == "sort") {
      auto b = bind(a, "sort", {"reverse", "case_sensitive", "attribute"});
      bool rev = b[0] && truthy(*b[0]), cs = b[1] && truthy(*b[1]);
      std::vector<Value> items = iterate(v);
      std::vector<std::pair<Value, Value>> keyed;
      for (auto& x : items)
        keyed.emplace_back(sort_key(given(b[2]) ? get_path(x, to_str(*b[2]), nullptr) : x, cs), x);
      std::stable_sort(keyed.begin(), keyed.end(), [rev](const auto& p, const auto& q) {
        return rev ? sort_less(q.first, p.first) : sort_less(p.first, q.first);
      });
      std::vector<Value> out;
      for (auto& kv : keyed) out.push_back(std::move(kv.second));
      return Value::new_list(std::move(out));
    }
    if (name == "dictsort") {
      auto b = bind(a, "dictsort", {"case_sensitive", "by", "reverse"});
      if (v.is_undefined()) raise_undefined(v);
      if (!v.is_dict()) raise("dictsort needs a mapping");
      bool cs = b[0] && truthy(*b[0]), rev = b[2] && truthy(*b[2]);
      std::string by = b[1] ? need_string(b[1], "by") : "key";
      if (by != "key" && by != "value") raise("You can only sort by either 'key' or 'value'");
      std::vector<Value> items = dict_items(v).list->items;
      size_t pos = by == "key" ? 0 : 1;
      std::stable_sort(items.begin(), items.end(), [&](const Value& p, const Value& q) {
        Value kp = sort_key(p.list->items[pos], cs), kq = sort_key(q.list->items[pos], cs);
        return rev ? sort_less(kq, kp) : sort_less(kp, kq);
      });
      return Value::new_list(std::move(items));
    }
    if (name == "unique") {
      auto b = bind(a, "unique", {"case_sensitive", "attribute"});
      bool cs = b[0] && truthy(*b[0]);
      std::vector<Value> out, seen;
      for (auto& x : iterate(v)) {
        Value key = sort_key(given(b[1]) ? get_path(x, to_str(*b[1]), nullptr) : x, cs);
        bool dup = false;
        for (const auto& s : seen) dup = dup || equals(s, key);
        if (dup) continue;
        seen.push_back(key);
        out.push_back(x);
      }
      return iterator_of(std::move(out));
    }
    if (name == "min" || name == "max") {
      auto b = bind(a, name.c_str(), {"case_sensitive", "attribute"});
      bool cs = b[0] && truthy(*b[0]);
      std::vector<Value> items = iterate(v);
      if (items.empty()) return Value::undefined(fmt::format("No aggregated item, sequence was empty."));
      size_t best = 0;
      auto key = [&](size_t k) { return sort_key(given(b[1]) ? get_path(items[k], to_str(*b[1]), nullptr) : items[k], cs); };
      for (size_t k = 1; k < items.size(); k++) {
        bool better = name == "min" ? sort_less(key(k), key(best)) : sort_less(key(best), key(k));
        if (better) best = k;
      }
      return items[best];
    }
    if (name == "batch" || name == "slice") {
      // batch: rows of `n` items; slice: `n` columns, the first ones one longer. fill_with pads.
      auto b = bind(a, name.c_str(), {name == "batch" ? "linecount" : "slices", "fill_with"});
      int64_t count = need_int(b[0], name == "batch" ? "linecount" : "slices");
      std::vector<Value> items = iterate(v);
      std::vector<Value> rows;
      if (name == "batch") {
        if (count <= 0) raise("batch() linecount must be positive");
        for (size_t k = 0; k < items.size(); k += (size_t)count) {
          std::vector<Value> row(items.begin() + k, items.begin() + std::min(items.size(), k + (size_t)count));
          if (given(b[1]))
            while ((int64_t)row.size() < count) row.push_back(*b[1]);
          rows.push_back(Value::new_list(std::move(row)));
        }
      } else {
        if (count <= 0) raise("slice() slices must be positive");
        size_t n = items.size(), per = n / (size_t)count, extra = n % (size_t)count, offset = 0;
        for (int64_t k = 0; k < count; k++) {
          size_t start = std::min(n, offset + (size_t)k * per);
          if ((size_t)k < extra) offset++;
          size_t end = std::max(start, std::min(n, offset + (size_t)(k + 1) * per));
          std::vector<Value> col(items.begin() + start, items.begin() + end);
          if (given(b[1]) && (size_t)k >= extra) col.push_back(*b[1]);
          rows.push_back(Value::new_list(std::move(col)));
        }
      }
      return iterator_of(std::move(rows));
    }
    if (name == "format") {
      if (!a.positional.empty() && !a.keyword.empty())
        raise("can't handle positional and keyword arguments at the same time");
      Value args;
      if (!a.keyword.empty()) {
        args = Value::new_dict();
        for (auto& kv : a.keyword) args.dict->set(Value::string(kv.first), kv.second);
      } else {
        args = Value::new_list(a.positional, true);
      }
      return Value::string(percent_format(str_in(), args));
    }
    if (name == "sum") {
      auto b = bind(a, "sum", {"attribute", "start"});
      Value total = b[1] ? *b[1] : Value::integer(0);
      for (auto& x : iterate(v)) total = binary_op("+", total, given(b[0]) ? get_path(x, to_str(*b[0]), nullptr) : x);
      return total;
    }
    if (!is_jinja2_filter(name)) raise(fmt::format("no filter named '{}'", name));
    raise(fmt::format("the '{}' filter is not supported in chat templates", name));
  }

  Value filter_tojson(const Value& v, CallArgs& a) {
    // transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    auto b = bind(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonOptions opt;
    opt.ensure_ascii = b[0] && truthy(*b[0]);
    opt.sort_keys = b[3] && truthy(*b[3]);
    if (given(b[1])) {
      opt.indent_set = true;
      if (b[1]->is_string()) opt.indent = b[1]->s;
      else opt.indent = std::string((size_t)std::max<int64_t>(0, need_int(b[1], "indent")), ' ');
      opt.item_separator = ",";
    }
    if (given(b[2])) {
      if (!b[2]->is_list() || b[2]->list->items.size() != 2) raise("separators must be a (item_separator, key_separator) pair");
      opt.item_separator = need_string(&b[2]->list->items[0], "item separator");
      opt.key_separator = need_string(&b[2]->list->items[1], "key separator");
    }
    std::string out, error;
    if (!to_json(v, opt, &out, &error)) raise(error);
    return Value::string(std::move(out));
  }

  Value filter_indent(const Value& v, CallArgs& a) {
    auto b = bind(a, "indent", {"width", "first", "blank"});
    if (v.is_undefined()) raise_undefined(v);
    if (!v.is_string()) raise(fmt::format("unsupported operand type(s) for +=: '{}' and 'str'", type_name(v)));
    std::string ind = b[0] && b[0]->is_string() ? b[0]->s : std::string((size_t)std::max<int64_t>(0, b[0] ? need_int(b[0], "width") : 4), ' ');
    bool first = b[1] && truthy(*b[1]), blank = b[2] && truthy(*b[2]);
    std::vector<std::string> lines = split_lines(to_str(v) + "\n", false);
    std::string rv;
    if (blank) {
      for (size_t k = 0; k < lines.size(); k++) rv += (k ? "\n" + ind : "") + lines[k];
    } else {
      rv = lines.empty() ? "" : lines[0];
      for (size_t k = 1; k < lines.size(); k++) rv += "\n" + (lines[k].empty() ? "" : ind) + lines[k];
    }
    if (first) rv = ind + rv;
    return Value::string(std::move(rv));
  }

  Value filter_map(const Value& v, CallArgs& a) {
    if (!truthy(v)) return iterator_of({});  // jinja2: `if value:` before iterating
    std::vector<Value> items = iterate(v);
    std::vector<Value> out;
    const Value* attribute = nullptr;
    const Value* def = nullptr;
    for (const auto& kv : a.keyword) {
      if (kv.first == "attribute") attribute = &kv.second;
      else if (kv.first == "default") def = &kv.second;
    }
    if (attribute) {
      for (auto& x : items) out.push_back(get_path(x, to_str(*attribute), def));
      return iterator_of(std::move(out));
    }
    if (a.positional.empty()) raise("map requires a filter argument");
    std::string fname = need_string(&a.positional[0], "filter name");
    CallArgs rest;
    rest.positional.assign(a.positional.begin() + 1, a.positional.end());
    rest.keyword = a.keyword;
    for (auto& x : items) {
      CallArgs copy = rest;
      out.push_back(apply_filter(fname, x, copy));
    }
    return iterator_of(std::move(out));
  }

  Value filter_select(const Value& v, CallArgs& a, bool keep, bool by_attr) {
    if (!truthy(v)) return iterator_of({});  // jinja2: `if value:` before iterating
    if (!a.keyword.empty()) raise("select/reject filters take no keyword arguments");
    size_t k = 0;
    std::string attr;
    if (by_attr) {
      if (a.positional.empty()) raise("selectattr/rejectattr need an attribute name");
      attr = to_str(a.positional[k++]);
    }
    std::string test;
    if (k < a.positional.size()) test = need_string(&a.positional[k++], "test name");
    CallArgs test_args;
    test_args.positional.assign(a.positional.begin() + k, a.positional.end());
    std::vector<Value> out;
    for (auto& x : iterate(v)) {
      Value subject = by_attr ? get_path(x, attr, nullptr) : x;
      bool r;
      if (test.empty()) {
        r = truthy(subject);
      } else {
        CallArgs copy = test_args;
        r = apply_test(test, subject, copy);
      }
      if (r == keep) out.push_back(x);
    }
    return iterator_of(std::move(out));
  }

  // ---- tests ----

  bool apply_test(const std::string& name, const Value& v, CallArgs& a) {
    auto arg = [&](const char* what) -> const Value& {
      auto b = bind(a, name.c_str(), {what});
      if (!b[0]) raise(fmt::format("test '{}' needs an argument", name));
      return *b[0];
    };
    auto no_args = [&]() { bind(a, name.c_str(), {}); };
    if (name == "defined") return no_args(), !v.is_undefined();
    if (name == "undefined") return no_args(), v.is_undefined();
    if (name == "none") return no_args(), v.is_none();
    if (name == "string") return no_args(), v.is_string();
    if (name == "number") return no_args(), v.is_number();
    if (name == "integer") return no_args(), v.type == Value::Type::Int;
    if (name == "float") return no_args(), v.type == Value::Type::Float;
    if (name == "boolean") return no_args(), v.type == Value::Type::Bool;
    if (name == "true") return no_args(), v.type == Value::Type::Bool && v.b;
    if (name == "false") return no_args(), v.type == Value::Type::Bool && !v.b;
    if (name == "mapping") return no_args(), v.is_dict() && !v.dict->is_namespace;
    if (name == "iterable")
      return no_args(), v.is_undefined() || v.is_string() || v.is_list() || (v.is_dict() && !v.dict->is_namespace);
    if (name == "sequence")  // len() and __getitem__: not a generator
      return no_args(), v.is_undefined() || v.is_string() || (v.is_list() && !v.list->is_iterator) ||
                            (v.is_dict() && !v.dict->is_namespace);
    // jinja2's Undefined defines __call__ (to raise), so Python's callable() says True.
    if (name == "callable") return no_args(), v.is_function() || v.is_undefined() || (v.is_dict() && v.dict->call);
    if (name == "escaped") return no_args(), false;
    if (name == "lower" || name == "upper") {
      no_args();
      std::string s = to_str(v);
      CallArgs none;
      return truthy(string_method(s, name == "lower" ? "islower" : "isupper", none));
    }
    // jinja2: value % 2 == 1, value % 2 == 0, value % num == 0 (so a string formats, and fails).
    if (name == "odd") return no_args(), equals(binary_op("%", v, Value::integer(2)), Value::integer(1));
    if (name == "even") return no_args(), equals(binary_op("%", v, Value::integer(2)), Value::integer(0));
    if (name == "divisibleby") return equals(binary_op("%", v, arg("num")), Value::integer(0));
    if (name == "eq" || name == "equalto" || name == "==") return equals(v, arg("other"));
    if (name == "ne" || name == "!=") return !equals(v, arg("other"));
    if (name == "lt" || name == "lessthan" || name == "<") return compare_op("<", v, arg("other"));
    if (name == "le" || name == "<=") return compare_op("<=", v, arg("other"));
    if (name == "gt" || name == "greaterthan" || name == ">") return compare_op(">", v, arg("other"));
    if (name == "ge" || name == ">=") return compare_op(">=", v, arg("other"));
    if (name == "in") return contains(arg("seq"), v);
    if (name == "sameas") {
      const Value& o = arg("other");
      if (v.type != o.type) return false;
      switch (v.type) {
        case Value::Type::List: return v.list == o.list;
        case Value::Type::Dict: return v.dict == o.dict;
        case Value::Type::Function: return v.fn == o.fn;
        default: return equals(v, o);
      }
    }
    if (name == "filter") return no_args(), v.is_string() && is_jinja2_filter(v.s);
    if (name == "test") return no_args(), v.is_string() && is_jinja2_test(v.s);
    if (!is_jinja2_test(name)) raise(fmt::format("no test named '{}'", name));
    raise(fmt::format("the '{}' test is not supported in chat templates", name));
  }
};

}  // namespace

std::string render(const Template& tpl, const Value& context) { return Renderer().run(tpl, context); }

}  // namespace stepq::jinja
