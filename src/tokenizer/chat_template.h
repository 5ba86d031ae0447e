// Chat templates: the Jinja program a GGUF carries in `tokenizer.chat_template`, rendered to the
// prompt text exactly as HF transformers' apply_chat_template renders it with Python jinja2
// (../shared/reference/tokenizers.md §7).
//
// The environment is transformers': trim_blocks and lstrip_blocks on, one trailing newline of the
// template dropped, loop controls (break/continue) and {% generation %} available, globals
// `raise_exception(msg)`, `strftime_now(fmt)`, `range`, `namespace`, `dict`, and a `tojson` that is
// json.dumps(x, ensure_ascii=False) with the indent/separators/sort_keys options. Undefined values
// act like jinja2's default Undefined: they print as "", are falsy and iterate as empty, but using
// one as an object (attribute, item, arithmetic, call) is an error.
//
// Supported: text, {{ }}, {% %}, {# #}, whitespace control (-, +), raw, if/elif/else,
// for (loop.*, else, inline if filter, recursive, break/continue), set (also block set with
// filters), macro and call blocks, filter blocks, with; expressions with jinja2's precedence,
// literals, lists, dicts, tuples, slices, str % args, method calls on str/dict/list, jinja2's
// filters and tests except groupby, truncate, wordwrap, urlize, urlencode, striptags, xmlattr,
// pprint, random, filesizeformat (those fail when used). jinja2's static scoping is reproduced
// (a `set` inside a loop does not leak; a name a frame assigns later reads as undefined in
// nested loops before that), and so are generators: map/select/unique/... results are always
// true, have no length, and their errors appear when consumed.
//
// Known differences from Python, none in what chat templates do: ints are 64-bit (overflow is an
// error); str.upper()/lower()/title() use the C library's simple Unicode case mapping (Python maps
// "ß".upper() to "SS"); a generator prints as "<generator object>" without Python's address;
// jinja2's constant folding quirks (`{{ 1[:2] }}` renders "" there, an error here; `-1 ** x` is
// -(1 ** x) there); negative ** fractional is an error, not a complex number; include, import
// and extends are not supported.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace stepq {

struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  // Parses the template; throws Error "chat template line L:C: ..." on syntax errors.
  explicit ChatTemplate(std::string source);
  ~ChatTemplate();
  ChatTemplate(const ChatTemplate&);
  ChatTemplate& operator=(const ChatTemplate&);

  // Renders with the top-level keys of `context` (an object) as variables. Throws Error
  // "chat template line L:C: ..." when rendering fails: raise_exception (its message verbatim),
  // use of an undefined value, a type error.
  //
  // nlohmann::json keeps object keys sorted; templates that print dicts (`tool | tojson`) then
  // show keys in sorted order, while Python would keep the caller's order. Pass an
  // nlohmann::ordered_json to keep it.
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context) const;

  // transformers' apply_chat_template context: messages, add_generation_prompt, bos_token,
  // eos_token, and tools/documents set to None (transformers always passes them).
  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                    const std::string& bos_token, const std::string& eos_token) const;

  const std::string& source() const { return source_; }

 private:
  struct Program;
  std::string source_;
  std::shared_ptr<const Program> program_;  // immutable after parsing: shared by copies
};

}  // namespace stepq
