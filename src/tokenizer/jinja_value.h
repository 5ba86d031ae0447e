// Values of the Jinja interpreter behind ChatTemplate (chat_template.h), with Python's semantics.
//
// Chat templates are written for Python jinja2, so values behave like the Python objects jinja2
// would see: str (UTF-8 here, indexed and measured in code points), int (64-bit here), float,
// bool, None, list/tuple and dict (insertion-ordered), plus jinja2's Undefined. Lists and dicts
// are shared by reference, as in Python: `{% set a = b %}` aliases, and a namespace() changed
// inside a loop is seen after it.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stepq::jinja {

struct Value;
struct CallArgs;
struct FunctionObject;

struct ListObject {
  std::vector<Value> items;
  bool is_tuple = false;  // prints as (a, b); never equal to a list, as in Python
  // The result of a filter that jinja2 makes lazily (map, select, unique, reverse, ...): a Python
  // generator is true even when it would yield nothing, and prints as "<generator object>".
  bool is_iterator = false;
  // dict.keys()/values()/items() give views: they print as "dict_keys([...])".
  const char* view = nullptr;
  // A generator whose body fails (map over an int, say): jinja2 raises only when it is consumed.
  std::string deferred_error;
};

struct DictObject {
  std::vector<std::pair<Value, Value>> items;  // insertion order, unique keys
  bool is_namespace = false;                   // from namespace(): the only object `set x.y` may change
  std::shared_ptr<FunctionObject> call;        // set on `loop` of a recursive for: loop(items)

  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  void set(Value key, Value value);
};

// A callable: a global function, a macro, a bound method of a str/dict/list, loop.cycle, caller.
struct FunctionObject {
  std::string name;
  std::function<Value(CallArgs&)> call;
};

struct Value {
  enum class Type : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Function };

  Type type = Type::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0.0;
  // String: the text (UTF-8). Undefined: why it is undefined ("'x' is undefined"), the message of
  // the error raised when it is used in a way jinja2 forbids (attribute, arithmetic, call).
  std::string s;
  std::shared_ptr<ListObject> list;
  std::shared_ptr<DictObject> dict;
  std::shared_ptr<FunctionObject> fn;

  Value() = default;
  static Value undefined(std::string why);
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value string(std::string v);
  static Value new_list(std::vector<Value> items = {}, bool is_tuple = false);
  static Value new_dict();
  static Value function(std::string name, std::function<Value(CallArgs&)> call);

  bool is_undefined() const { return type == Type::Undefined; }
  bool is_none() const { return type == Type::None; }
  bool is_string() const { return type == Type::String; }
  bool is_list() const { return type == Type::List; }
  bool is_dict() const { return type == Type::Dict; }
  bool is_function() const { return type == Type::Function; }
  // int, float or bool (Python's bool is an int).
  bool is_number() const { return type == Type::Int || type == Type::Float || type == Type::Bool; }
  bool is_integral() const { return type == Type::Int || type == Type::Bool; }
  int64_t as_int() const { return type == Type::Bool ? (b ? 1 : 0) : i; }
  double as_double() const { return type == Type::Float ? f : (double)as_int(); }
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Python's names for error messages: "str", "int", "dict", "NoneType", "Undefined", ...
const char* type_name(const Value& v);

bool truthy(const Value& v);
// Python ==. Undefined equals only Undefined.
bool equals(const Value& a, const Value& b);
// Python <, for numbers, strings and lists/tuples of them; returns false and sets *ok=false for
// pairs Python refuses to order.
bool less_than(const Value& a, const Value& b, bool* ok);

// str(v) as Python prints it (None -> "None", Undefined -> "", [1, 'a'] -> "[1, 'a']").
std::string to_str(const Value& v);
// repr(v): strings quoted and escaped as Python does.
std::string to_repr(const Value& v);
// Python's repr of a float: shortest round-trip digits, "1.0", "1e-05", "1e+16", "inf", "nan".
std::string float_repr(double v);

struct JsonOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool indent_set = false;  // indent=None keeps everything on one line
  std::string indent;       // one level of indentation (an int n means n spaces)
  std::string item_separator = ", ";
  std::string key_separator = ": ";
};
// json.dumps(v, ...) as Python writes it. Returns false with *error set for values JSON cannot
// hold (Undefined, functions), as json.dumps raises TypeError.
bool to_json(const Value& v, const JsonOptions& opt, std::string* out, std::string* error);

// UTF-8 helpers. Invalid bytes decode as U+FFFD one byte at a time (Python would have refused them
// earlier, when the string was made).
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string* out, char32_t cp);
size_t utf8_length(std::string_view s);  // code points
// str.isspace() for one code point (Unicode White_Space plus \x1c-\x1f, as Python).
bool is_py_space(char32_t c);
// str.strip()/lstrip()/rstrip(); `chars` null means whitespace.
std::string py_strip(std::string_view s, const std::u32string* chars, bool left, bool right);

}  // namespace stepq::jinja
