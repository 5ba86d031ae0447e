// Tokens and syntax tree of the Jinja interpreter behind ChatTemplate (chat_template.h).
//
// The lexer applies jinja2's whitespace rules as HF transformers configures them
// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False), so the Data tokens hold
// exactly the text that reaches the output. The parser follows jinja2's grammar and operator
// precedence (jinja2/parser.py), including its oddities: `-2 ** 2` is 4, `**` is left-associative,
// and `is` tests and filters bind tighter than any binary operator.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace stepq::jinja {

struct Token {
  enum class Kind { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Integer, Float,
                    Operator, Eof };
  Kind kind = Kind::Eof;
  std::string text;   // Data: the output text; String: the decoded value; others: the source text
  int64_t int_value = 0;
  double float_value = 0.0;
  int line = 1, col = 1;  // 1-based position of the token's first character in the source
};

// Splits a template into tokens. Throws Error "line L:C: ..." for an unterminated tag, comment or
// string and for characters that start no token.
std::vector<Token> tokenize(std::string_view source);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // literal
    Name,     // name
    List,     // children: elements
    Tuple,    // children: elements
    Dict,     // children: key0, value0, key1, value1, ...
    Attr,     // children[0].name
    Item,     // children[0][children[1]]; children[1] may be a Slice
    Slice,    // children: start, stop, step (each may be null)
    Call,     // children[0](children[1..], kwargs)
    Filter,   // children[0] | name(children[1..], kwargs); children[0] null in filter blocks
    Test,     // children[0] is [not] name(children[1..], kwargs)
    Not, Neg, Pos,  // children[0]
    Binary,   // children[0] name children[1], name one of + - * / // % ** ~
    Compare,  // children[0] ops[0] children[1] ops[1] children[2] ... (chained, as Python)
    And, Or,  // children[0], children[1]
    Cond,     // children: then, condition, else (else may be null)
  };
  Kind kind;
  int line = 0, col = 0;
  Value literal;
  std::string name;
  std::vector<ExprPtr> children;
  std::vector<std::string> ops;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  bool negated = false;

  Expr(Kind k, int l, int c) : kind(k), line(l), col(c) {}
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind {
    Text,         // text
    Print,        // {{ expr }}
    If,           // branches (condition, body) in order; else_body
    For,          // for target in expr [if cond] [recursive]: body [else: else_body]
    Set,          // set target = expr
    SetBlock,     // set target [| filter]: body (filter: a Filter chain on a null subject)
    Macro,        // macro name(params): body
    CallBlock,    // call(params) expr: body, the body is `caller`
    FilterBlock,  // filter filter: body
    With,         // with assigns: body
    Break, Continue,
    Generation,   // {% generation %} (transformers' AssistantTracker): renders its body
  };
  Kind kind;
  int line = 0, col = 0;
  std::string text;
  ExprPtr expr, target, cond, filter;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // default may be null
  std::vector<std::pair<ExprPtr, ExprPtr>> assigns;     // With: (target, value)
  bool recursive = false;
  // Names local to the frame this statement opens (for body, macro body, ...) that jinja2 starts
  // as undefined: they are assigned in that frame, but not read there before the assignment, so a
  // nested loop or macro that reads them earlier sees undefined, not an outer value. For: the
  // body's; else_locals: the else block's.
  std::vector<std::string> locals, else_locals;

  Stmt(Kind k, int l, int c) : kind(k), line(l), col(c) {}
};

// Whether jinja2 3.1 has a builtin filter / test of this name (plus transformers' tojson). Like
// jinja2, the parser rejects other names; the few builtins this interpreter lacks (groupby,
// truncate, ...) fail when used.
bool is_jinja2_filter(std::string_view name);
bool is_jinja2_test(std::string_view name);

struct Template {
  Body body;
  std::vector<std::string> locals;  // of the top-level frame, as Stmt::locals
};

// Parses a whole template. Throws Error "line L:C: ..." on syntax errors.
Template parse_template(std::string_view source);

}  // namespace stepq::jinja

namespace stepq::jinja {

// Renders a parsed template with `context` (a dict) as its variables (jinja_eval.cpp). Throws
// Error "line L:C: ..." naming the expression or statement that failed.
std::string render(const Template& tpl, const Value& context);

}  // namespace stepq::jinja
