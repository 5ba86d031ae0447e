#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace stepq::jinja {

// ---- construction -------------------------------------------------------------------------------

Value Value::undefined(std::string why) {
  Value v;
  v.s = std::move(why);
  return v;
}
Value Value::none() {
  Value v;
  v.type = Type::None;
  return v;
}
Value Value::boolean(bool x) {
  Value v;
  v.type = Type::Bool;
  v.b = x;
  return v;
}
Value Value::integer(int64_t x) {
  Value v;
  v.type = Type::Int;
  v.i = x;
  return v;
}
Value Value::number(double x) {
  Value v;
  v.type = Type::Float;
  v.f = x;
  return v;
}
Value Value::string(std::string x) {
  Value v;
  v.type = Type::String;
  v.s = std::move(x);
  return v;
}
Value Value::new_list(std::vector<Value> items, bool is_tuple) {
  Value v;
  v.type = Type::List;
  v.list = std::make_shared<ListObject>();
  v.list->items = std::move(items);
  v.list->is_tuple = is_tuple;
  return v;
}
Value Value::new_dict() {
  Value v;
  v.type = Type::Dict;
  v.dict = std::make_shared<DictObject>();
  return v;
}
Value Value::function(std::string name, std::function<Value(CallArgs&)> call) {
  Value v;
  v.type = Type::Function;
  v.fn = std::make_shared<FunctionObject>();
  v.fn->name = std::move(name);
  v.fn->call = std::move(call);
  return v;
}

const Value* DictObject::find(const Value& key) const {
  for (const auto& kv : items)
    if (equals(kv.first, key)) return &kv.second;
  return nullptr;
}
const Value* DictObject::find(std::string_view key) const {
  for (const auto& kv : items)
    if (kv.first.type == Value::Type::String && kv.first.s == key) return &kv.second;
  return nullptr;
}
void DictObject::set(Value key, Value value) {
  for (auto& kv : items)
    if (equals(kv.first, key)) {
      kv.second = std::move(value);
      return;
    }
  items.emplace_back(std::move(key), std::move(value));
}

const char* type_name(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return "Undefined";
    case Value::Type::None: return "NoneType";
    case Value::Type::Bool: return "bool";
    case Value::Type::Int: return "int";
    case Value::Type::Float: return "float";
    case Value::Type::String: return "str";
    case Value::Type::List: return v.list->is_tuple ? "tuple" : "list";
    case Value::Type::Dict: return v.dict->is_namespace ? "Namespace" : "dict";
    case Value::Type::Function: return "function";
  }
  return "object";
}

// ---- truth, equality, order ---------------------------------------------------------------------

bool truthy(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined:
    case Value::Type::None: return false;
    case Value::Type::Bool: return v.b;
    case Value::Type::Int: return v.i != 0;
    case Value::Type::Float: return v.f != 0.0;
    case Value::Type::String: return !v.s.empty();
    case Value::Type::List: return v.list->is_iterator || !v.list->items.empty();
    case Value::Type::Dict: return v.dict->is_namespace || !v.dict->items.empty();
    case Value::Type::Function: return true;
  }
  return false;
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  if (a.type != b.type) return false;
  switch (a.type) {
    case Value::Type::Undefined:
    case Value::Type::None: return true;
    case Value::Type::String: return a.s == b.s;
    case Value::Type::List: {
      if (a.list == b.list) return true;
      if (a.list->is_iterator || b.list->is_iterator) return false;  // generators compare by identity
      const auto& x = a.list->items;
      const auto& y = b.list->items;
      if (a.list->is_tuple != b.list->is_tuple || a.list->view != b.list->view || x.size() != y.size()) return false;
      for (size_t k = 0; k < x.size(); k++)
        if (!equals(x[k], y[k])) return false;
      return true;
    }
    case Value::Type::Dict: {
      if (a.dict == b.dict) return true;
      if (a.dict->is_namespace || b.dict->is_namespace) return false;  // identity only
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& kv : a.dict->items) {
        const Value* other = b.dict->find(kv.first);
        if (!other || !equals(kv.second, *other)) return false;
      }
      return true;
    }
    case Value::Type::Function: return a.fn == b.fn;
    default: return false;
  }
}

bool less_than(const Value& a, const Value& b, bool* ok) {
  *ok = true;
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() < b.as_int();
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string()) return a.s < b.s;  // UTF-8 byte order is code point order
  if (a.is_list() && b.is_list() && a.list->is_tuple == b.list->is_tuple && !a.list->is_iterator &&
      !b.list->is_iterator) {
    const auto& x = a.list->items;
    const auto& y = b.list->items;
    for (size_t k = 0; k < x.size() && k < y.size(); k++) {
      if (equals(x[k], y[k])) continue;
      return less_than(x[k], y[k], ok);
    }
    return x.size() < y.size();
  }
  *ok = false;
  return false;
}

// ---- UTF-8 --------------------------------------------------------------------------------------

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t k = 0;
  while (k < s.size()) {
    unsigned char c = s[k];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    bool ok = n > 0 && k + n <= s.size();
    for (int j = 1; ok && j < n; j++) {
      unsigned char cc = s[k + j];
      if ((cc & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      out.push_back(0xFFFD);
      k += 1;
      continue;
    }
    out.push_back(cp);
    k += n;
  }
  return out;
}

void utf8_append(std::string* out, char32_t cp) {
  if (cp < 0x80) {
    out->push_back((char)cp);
  } else if (cp < 0x800) {
    out->push_back((char)(0xC0 | (cp >> 6)));
    out->push_back((char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back((char)(0xE0 | (cp >> 12)));
    out->push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back((char)(0x80 | (cp & 0x3F)));
  } else {
    out->push_back((char)(0xF0 | (cp >> 18)));
    out->push_back((char)(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back((char)(0x80 | (cp & 0x3F)));
  }
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(&out, c);
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::string py_strip(std::string_view s, const std::u32string* chars, bool left, bool right) {
  std::u32string u = utf8_decode(s);
  auto drop = [&](char32_t c) {
    return chars ? chars->find(c) != std::u32string::npos : is_py_space(c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && drop(u[b])) b++;
  if (right)
    while (e > b && drop(u[e - 1])) e--;
  return utf8_encode(std::u32string_view(u).substr(b, e - b));
}

// ---- printing -----------------------------------------------------------------------------------

std::string float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  if (v == 0.0) return std::signbit(v) ? "-0.0" : "0.0";
  // Shortest round-trip digits, as Python's repr, in the form d.ddde+XX.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t epos = sci.find('e');
  std::string digits;
  for (size_t k = 0; k < epos; k++)
    if (sci[k] != '.') digits.push_back(sci[k]);
  int exp = std::atoi(sci.c_str() + epos + 1);
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      if ((int)digits.size() <= exp + 1) {
        out += digits + std::string(exp + 1 - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, exp + 1) + "." + digits.substr(exp + 1);
      }
    } else {
      out += "0." + std::string(-exp - 1, '0') + digits;
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += e;
  }
  return out;
}

namespace {

// Python's str.isprintable() for the code points that matter in practice: controls, the Unicode
// space separators other than ' ', line/paragraph separators and the common format characters.
// (Unassigned code points, which Python also escapes, are kept.)
bool is_printable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F)) return false;
  if ((c >= 0x205F && c <= 0x206F) || c == 0x3000 || c == 0xFEFF) return false;
  if ((c >= 0xD800 && c <= 0xDFFF) || (c >= 0xE000 && c <= 0xF8FF)) return false;
  return true;
}

std::string string_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : utf8_decode(s)) {
    if (c == (char32_t)quote || c == '\\') {
      out.push_back('\\');
      out.push_back((char)c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!is_printable(c)) {
      char buf[16];
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", (unsigned)c);
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", (unsigned)c);
      else std::snprintf(buf, sizeof buf, "\\U%08x", (unsigned)c);
      out += buf;
    } else {
      utf8_append(&out, c);
    }
  }
  out.push_back(quote);
  return out;
}

void repr_into(const Value& v, std::string* out) {
  switch (v.type) {
    case Value::Type::Undefined: *out += "Undefined"; return;
    case Value::Type::String: *out += string_repr(v.s); return;
    case Value::Type::List: {
      if (v.list->is_iterator) {
        *out += "<generator object>";
        return;
      }
      if (v.list->view) {
        *out += v.list->view;
        *out += "(";
        Value plain = Value::new_list(v.list->items);
        repr_into(plain, out);
        *out += ")";
        return;
      }
      const auto& items = v.list->items;
      *out += v.list->is_tuple ? "(" : "[";
      for (size_t k = 0; k < items.size(); k++) {
        if (k) *out += ", ";
        repr_into(items[k], out);
      }
      if (v.list->is_tuple && items.size() == 1) *out += ",";
      *out += v.list->is_tuple ? ")" : "]";
      return;
    }
    case Value::Type::Dict: {
      if (v.dict->is_namespace) *out += "<Namespace ";
      *out += "{";
      bool first = true;
      for (const auto& kv : v.dict->items) {
        if (!first) *out += ", ";
        first = false;
        repr_into(kv.first, out);
        *out += ": ";
        repr_into(kv.second, out);
      }
      *out += "}";
      if (v.dict->is_namespace) *out += ">";
      return;
    }
    default: *out += to_str(v); return;
  }
}

}  // namespace

std::string to_str(const Value& v) {
  switch (v.type) {
    case Value::Type::Undefined: return "";
    case Value::Type::None: return "None";
    case Value::Type::Bool: return v.b ? "True" : "False";
    case Value::Type::Int: return std::to_string(v.i);
    case Value::Type::Float: return float_repr(v.f);
    case Value::Type::String: return v.s;
    case Value::Type::Function: return "<function " + v.fn->name + ">";
    default: {
      std::string out;
      repr_into(v, &out);
      return out;
    }
  }
}

std::string to_repr(const Value& v) {
  std::string out;
  repr_into(v, &out);
  return out;
}

// ---- JSON ---------------------------------------------------------------------------------------

namespace {

void json_string(const std::string& s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  auto hex4 = [&](unsigned c) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "\\u%04x", c & 0xFFFF);
    *out += buf;
  };
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          hex4(c);
        } else if (ensure_ascii && c >= 0x7F) {
          if (c >= 0x10000) {
            char32_t u = c - 0x10000;
            hex4(0xD800 | (u >> 10));
            hex4(0xDC00 | (u & 0x3FF));
          } else {
            hex4(c);
          }
        } else {
          utf8_append(out, c);
        }
    }
  }
  out->push_back('"');
}

std::string json_float(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f < 0 ? "-Infinity" : "Infinity";
  return float_repr(f);
}

bool json_into(const Value& v, const JsonOptions& opt, int level, std::string* out,
               std::string* error) {
  auto newline = [&](int lvl) {
    if (!opt.indent_set) return;
    out->push_back('\n');
    for (int k = 0; k < lvl; k++) *out += opt.indent;
  };
  switch (v.type) {
    case Value::Type::None: *out += "null"; return true;
    case Value::Type::Bool: *out += v.b ? "true" : "false"; return true;
    case Value::Type::Int: *out += std::to_string(v.i); return true;
    case Value::Type::Float: *out += json_float(v.f); return true;
    case Value::Type::String: json_string(v.s, opt.ensure_ascii, out); return true;
    case Value::Type::List: {
      if (v.list->is_iterator) break;  // a generator
      const auto& items = v.list->items;
      if (items.empty()) {
        *out += "[]";
        return true;
      }
      out->push_back('[');
      for (size_t k = 0; k < items.size(); k++) {
        if (k) *out += opt.item_separator;
        newline(level + 1);
        if (!json_into(items[k], opt, level + 1, out, error)) return false;
      }
      newline(level);
      out->push_back(']');
      return true;
    }
    case Value::Type::Dict: {
      if (v.dict->is_namespace) break;
      // Keys become strings as json.dumps converts them.
      std::vector<std::pair<std::string, const Value*>> items;
      for (const auto& kv : v.dict->items) {
        const Value& k = kv.first;
        std::string key;
        if (k.is_string()) key = k.s;
        else if (k.type == Value::Type::Int) key = std::to_string(k.i);
        else if (k.type == Value::Type::Float) key = json_float(k.f);
        else if (k.type == Value::Type::Bool) key = k.b ? "true" : "false";
        else if (k.is_none()) key = "null";
        else {
          *error = std::string("keys must be str, int, float, bool or None, not ") + type_name(k);
          return false;
        }
        items.emplace_back(std::move(key), &kv.second);
      }
      if (opt.sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
      if (items.empty()) {
        *out += "{}";
        return true;
      }
      out->push_back('{');
      for (size_t k = 0; k < items.size(); k++) {
        if (k) *out += opt.item_separator;
        newline(level + 1);
        json_string(items[k].first, opt.ensure_ascii, out);
        *out += opt.key_separator;
        if (!json_into(*items[k].second, opt, level + 1, out, error)) return false;
      }
      newline(level);
      out->push_back('}');
      return true;
    }
    default: break;
  }
  *error = std::string("Object of type ") + (v.is_list() ? "generator" : type_name(v)) + " is not JSON serializable";
  return false;
}

}  // namespace

bool to_json(const Value& v, const JsonOptions& opt, std::string* out, std::string* error) {
  return json_into(v, opt, 0, out, error);
}

}  // namespace stepq::jinja
