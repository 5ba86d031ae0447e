// Jinja parser: a recursive descent over the token stream, one function per jinja2 grammar rule
// (jinja2/parser.py), so precedence and the places where `if`, tuples and filters are allowed match
// Python jinja2.
#include <algorithm>
#include <initializer_list>
#include <map>
#include <set>

#include "base/error.h"
#include "tokenizer/jinja_ast.h"

namespace stepq::jinja {

bool is_jinja2_filter(std::string_view name) {
  static const char* const kFilters[] = {
      "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape",
      "filesizeformat", "first", "float", "forceescape", "format", "groupby", "indent", "int", "join", "last",
      "length", "list", "lower", "items", "map", "min", "max", "pprint", "random", "reject", "rejectattr",
      "replace", "reverse", "round", "safe", "select", "selectattr", "slice", "sort", "string", "striptags",
      "sum", "title", "trim", "truncate", "unique", "upper", "urlencode", "urlize", "wordcount", "wordwrap",
      "xmlattr", "tojson"};
  for (const char* f : kFilters)
    if (name == f) return true;
  return false;
}

bool is_jinja2_test(std::string_view name) {
  static const char* const kTests[] = {
      "odd", "even", "divisibleby", "defined", "undefined", "filter", "test", "none", "boolean", "false", "true",
      "integer", "float", "mapping", "sequence", "iterable", "callable", "sameas", "escaped", "in", "lower",
      "upper", "string", "number", "==", "eq", "equalto", "!=", "ne", ">", "gt", "greaterthan", ">=", "ge",
      "<", "lt", "lessthan", "<=", "le"};
  for (const char* t : kTests)
    if (name == t) return true;
  return false;
}

namespace {

using K = Token::Kind;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_all() {
    Body body = subparse({});
    return body;
  }

 private:
  std::vector<Token> toks_;
  size_t pos_ = 0;
  int loop_depth_ = 0;  // break/continue are only valid inside a for body
  int depth_ = 0;       // nesting of expressions and statements, bounded so the C++ stack is too

  // Counts one level of nesting for the scope of a parse function.
  struct Nest {
    Parser* p;
    Nest(Parser* parser, const Token& at) : p(parser) {
      if (++p->depth_ > kMaxDepth) p->error(at, "template nested too deeply");
    }
    ~Nest() { p->depth_--; }
  };
  static constexpr int kMaxDepth = 400;

  const Token& cur() const { return toks_[pos_]; }
  const Token& look() const { return toks_[pos_ + 1 < toks_.size() ? pos_ + 1 : pos_]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) pos_++;
    return t;
  }
  bool is_op(const char* op) const { return cur().kind == K::Operator && cur().text == op; }
  bool is_name(const char* name) const { return cur().kind == K::Name && cur().text == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case K::Eof: return "end of template";
      case K::Data: return "template data";
      case K::VarBegin: return "begin of print statement";
      case K::VarEnd: return "end of print statement";
      case K::BlockBegin: return "begin of statement block";
      case K::BlockEnd: return "end of statement block";
      case K::String: return "string";
      case K::Integer: return "integer";
      case K::Float: return "float";
      default: return "'" + t.text + "'";
    }
  }

  [[noreturn]] void error(const Token& at, const std::string& msg) const {
    fail("line {}:{}: {}", at.line, at.col, msg);
  }

  void expect_op(const char* op) {
    if (!skip_op(op)) error(cur(), fmt::format("expected '{}', got {}", op, describe(cur())));
  }
  void expect_kind(K kind, const char* what) {
    if (cur().kind != kind) error(cur(), fmt::format("expected {}, got {}", what, describe(cur())));
    next();
  }
  const Token& expect_name(const char* what = "a name") {
    if (cur().kind != K::Name) error(cur(), fmt::format("expected {}, got {}", what, describe(cur())));
    return next();
  }

  ExprPtr make(Expr::Kind k, const Token& at) { return std::make_unique<Expr>(k, at.line, at.col); }

  // ---- statements ------------------------------------------------------------------------------

  // Parses data, prints and statements until a block whose first name is in `end_tags` (that name
  // is left as the current token) or, with no end tags, until the end of the template.
  Body subparse(std::initializer_list<const char*> end_tags) {
    Body body;
    for (;;) {
      const Token& t = cur();
      if (t.kind == K::Eof) {
        if (end_tags.size() == 0) return body;
        std::string want;
        for (const char* e : end_tags) want += (want.empty() ? "'" : " or '") + std::string(e) + "'";
        error(t, "unexpected end of template; looking for the tags " + want);
      }
      if (t.kind == K::Data) {
        auto s = std::make_unique<Stmt>(Stmt::Kind::Text, t.line, t.col);
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.kind == K::VarBegin) {
        next();
        auto s = std::make_unique<Stmt>(Stmt::Kind::Print, t.line, t.col);
        s->expr = parse_tuple(false, true, {}, false);
        expect_kind(K::VarEnd, "end of print statement '}}'");
        body.push_back(std::move(s));
      } else if (t.kind == K::BlockBegin) {
        next();
        if (cur().kind == K::Name)
          for (const char* e : end_tags)
            if (cur().text == e) return body;
        body.push_back(parse_statement());
        expect_kind(K::BlockEnd, "end of statement block '%}'");
      } else {
        error(t, "unexpected " + describe(t));
      }
    }
  }

  // `%}` then the body up to one of end_tags; with drop_needle the end tag name is consumed.
  Body parse_statements(std::initializer_list<const char*> end_tags, bool drop_needle) {
    skip_op(":");
    expect_kind(K::BlockEnd, "end of statement block '%}'");
    Body body = subparse(end_tags);
    if (drop_needle) next();
    return body;
  }

  std::unique_ptr<Stmt> parse_statement() {
    const Token& t = cur();
    Nest nest(this, t);
    if (t.kind != K::Name) error(t, "tag name expected, got " + describe(t));
    std::string tag = t.text;
    if (tag == "for") return parse_for();
    if (tag == "if") return parse_if();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "call") return parse_call_block();
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "generation") {
      auto s = std::make_unique<Stmt>(Stmt::Kind::Generation, t.line, t.col);
      next();
      s->body = parse_statements({"endgeneration"}, true);
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) error(t, fmt::format("'{}' outside of a for loop", tag));
      auto s = std::make_unique<Stmt>(tag == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, t.line, t.col);
      next();
      return s;
    }
    if (tag == "extends" || tag == "include" || tag == "import" || tag == "from" || tag == "block" ||
        tag == "autoescape" || tag == "do")
      error(t, fmt::format("the '{}' tag is not supported in chat templates", tag));
    error(t, fmt::format("unknown tag '{}'", tag));
  }

  std::unique_ptr<Stmt> parse_for() {
    const Token& t = next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::For, t.line, t.col);
    s->target = parse_assign_target(true, false, {"in"}, false);
    if (!skip_name("in")) error(cur(), "expected 'in', got " + describe(cur()));
    s->expr = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if")) s->cond = parse_expression(true);
    s->recursive = skip_name("recursive");
    loop_depth_++;
    s->body = parse_statements({"endfor", "else"}, false);
    loop_depth_--;
    if (next().text != "endfor") s->else_body = parse_statements({"endfor"}, true);
    return s;
  }

  std::unique_ptr<Stmt> parse_if() {
    const Token& t = next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::If, t.line, t.col);
    for (;;) {
      ExprPtr cond = parse_tuple(false, false, {}, false);
      Body body = parse_statements({"elif", "else", "endif"}, false);
      s->branches.emplace_back(std::move(cond), std::move(body));
      std::string tag = next().text;
      if (tag == "elif") continue;
      if (tag == "else") s->else_body = parse_statements({"endif"}, true);
      break;
    }
    return s;
  }

  std::unique_ptr<Stmt> parse_set() {
    const Token& t = next();
    ExprPtr target = parse_assign_target(true, false, {}, true);
    if (skip_op("=")) {
      auto s = std::make_unique<Stmt>(Stmt::Kind::Set, t.line, t.col);
      s->target = std::move(target);
      s->expr = parse_tuple(false, true, {}, false);
      return s;
    }
    auto s = std::make_unique<Stmt>(Stmt::Kind::SetBlock, t.line, t.col);
    s->target = std::move(target);
    if (s->target->kind == Expr::Kind::Tuple) error(t, "a block set needs one target");
    if (is_op("|")) s->filter = parse_filter(nullptr, false);
    s->body = parse_statements({"endset"}, true);
    return s;
  }

  void parse_signature(Stmt* s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;
      std::string name = expect_name("a parameter name").text;
      ExprPtr def;
      if (skip_op("=")) def = parse_expression(true);
      s->params.emplace_back(std::move(name), std::move(def));
    }
    expect_op(")");
  }

  std::unique_ptr<Stmt> parse_macro() {
    const Token& t = next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::Macro, t.line, t.col);
    s->name = expect_name("a macro name").text;
    parse_signature(s.get());
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endmacro"}, true);
    loop_depth_ = saved;
    return s;
  }

  std::unique_ptr<Stmt> parse_call_block() {
    const Token& t = next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::CallBlock, t.line, t.col);
    if (is_op("(")) parse_signature(s.get());
    s->expr = parse_expression(true);
    if (s->expr->kind != Expr::Kind::Call) error(t, "expected a call after {% call %}");
    int saved = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_statements({"endcall"}, true);
    loop_depth_ = saved;
    return s;
  }

  std::unique_ptr<Stmt> parse_filter_block() {
    const Token& t = next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::FilterBlock, t.line, t.col);
    s->filter = parse_filter(nullptr, true);
    s->body = parse_statements({"endfilter"}, true);
    return s;
  }

  std::unique_ptr<Stmt> parse_with() {
    const Token& t = next();
    auto s = std::make_unique<Stmt>(Stmt::Kind::With, t.line, t.col);
    while (cur().kind != K::BlockEnd) {
      if (!s->assigns.empty()) expect_op(",");
      ExprPtr target = parse_assign_target(true, false, {}, false);
      expect_op("=");
      ExprPtr value = parse_expression(true);
      s->assigns.emplace_back(std::move(target), std::move(value));
    }
    s->body = parse_statements({"endwith"}, true);
    return s;
  }

  // A name, a tuple of names, or (with_namespace) name.attr.
  ExprPtr parse_assign_target(bool with_tuple, bool name_only, std::initializer_list<const char*> extra_end,
                              bool with_namespace) {
    const Token& t = cur();
    ExprPtr target;
    if (name_only) {
      target = make(Expr::Kind::Name, t);
      target->name = expect_name().text;
    } else if (with_namespace && t.kind == K::Name && look().kind == K::Operator && look().text == ".") {
      auto obj = make(Expr::Kind::Name, t);
      obj->name = next().text;
      next();  // .
      target = make(Expr::Kind::Attr, t);
      target->name = expect_name("an attribute name").text;
      target->children.push_back(std::move(obj));
      return target;
    } else if (with_tuple) {
      target = parse_tuple(true, true, extra_end, false);
    } else {
      target = parse_primary();
    }
    auto assignable = [](const Expr& e) {
      return e.kind == Expr::Kind::Name && e.name != "true" && e.name != "false" && e.name != "none" &&
             e.name != "True" && e.name != "False" && e.name != "None";
    };
    bool ok = assignable(*target);
    if (target->kind == Expr::Kind::Tuple) {
      ok = true;
      for (const auto& c : target->children) ok = ok && assignable(*c);
    }
    if (!ok) error(t, "can't assign to this expression");
    return target;
  }

  // ---- expressions -----------------------------------------------------------------------------

  bool is_tuple_end(std::initializer_list<const char*> extra_end) const {
    const Token& t = cur();
    if (t.kind == K::VarEnd || t.kind == K::BlockEnd || t.kind == K::Eof) return true;
    if (t.kind == K::Operator && t.text == ")") return true;
    if (t.kind == K::Name)
      for (const char* e : extra_end)
        if (t.text == e) return true;
    return false;
  }

  // Comma-separated expressions; a tuple if there is a comma. `simplified` parses primaries only
  // (assignment targets).
  ExprPtr parse_tuple(bool simplified, bool with_condexpr, std::initializer_list<const char*> extra_end,
                      bool explicit_parens) {
    const Token start = cur();
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    for (;;) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      if (simplified) args.push_back(parse_primary());
      else args.push_back(parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) error(start, "expected an expression, got " + describe(start));
    }
    auto tuple = make(Expr::Kind::Tuple, start);
    tuple->children = std::move(args);
    return tuple;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    const Token start = cur();
    Nest nest(this, start);
    ExprPtr expr1 = parse_or();
    while (skip_name("if")) {
      ExprPtr cond = parse_or();
      ExprPtr otherwise;
      if (skip_name("else")) otherwise = parse_condexpr();
      auto node = make(Expr::Kind::Cond, start);
      node->children.push_back(std::move(expr1));
      node->children.push_back(std::move(cond));
      node->children.push_back(std::move(otherwise));
      expr1 = std::move(node);
    }
    return expr1;
  }

  ExprPtr binary(Expr::Kind kind, const Token& at, ExprPtr left, ExprPtr right, std::string op = {}) {
    auto node = make(kind, at);
    node->name = std::move(op);
    node->children.push_back(std::move(left));
    node->children.push_back(std::move(right));
    return node;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const Token at = next();
      left = binary(Expr::Kind::Or, at, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const Token at = next();
      left = binary(Expr::Kind::And, at, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    Nest nest(this, cur());
    if (is_name("not")) {
      const Token at = next();
      auto node = make(Expr::Kind::Not, at);
      node->children.push_back(parse_not());
      return node;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token start = cur();
    ExprPtr expr = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> operands;
    for (;;) {
      const Token& t = cur();
      if (t.kind == K::Operator &&
          (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">=")) {
        ops.push_back(next().text);
      } else if (is_name("in")) {
        next();
        ops.push_back("in");
      } else if (is_name("not") && look().kind == K::Name && look().text == "in") {
        next();
        next();
        ops.push_back("not in");
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return expr;
    auto node = make(Expr::Kind::Compare, start);
    node->children.push_back(std::move(expr));
    for (auto& o : operands) node->children.push_back(std::move(o));
    node->ops = std::move(ops);
    return node;
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token at = next();
      left = binary(Expr::Kind::Binary, at, std::move(left), parse_concat(), at.text);
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const Token at = next();
      left = binary(Expr::Kind::Binary, at, std::move(left), parse_math2(), "~");
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token at = next();
      left = binary(Expr::Kind::Binary, at, std::move(left), parse_pow(), at.text);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const Token at = next();
      left = binary(Expr::Kind::Binary, at, std::move(left), parse_unary(true), "**");
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nest nest(this, cur());
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token at = next();
      node = make(at.text == "-" ? Expr::Kind::Neg : Expr::Kind::Pos, at);
      node->children.push_back(parse_unary(false));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token t = cur();
    ExprPtr node;
    switch (t.kind) {
      case K::Name: {
        next();
        node = make(Expr::Kind::Literal, t);
        if (t.text == "true" || t.text == "True") node->literal = Value::boolean(true);
        else if (t.text == "false" || t.text == "False") node->literal = Value::boolean(false);
        else if (t.text == "none" || t.text == "None") node->literal = Value::none();
        else {
          node->kind = Expr::Kind::Name;
          node->name = t.text;
        }
        return node;
      }
      case K::String: {
        std::string s;
        while (cur().kind == K::String) s += next().text;  // adjacent literals concatenate
        node = make(Expr::Kind::Literal, t);
        node->literal = Value::string(std::move(s));
        return node;
      }
      case K::Integer:
        next();
        node = make(Expr::Kind::Literal, t);
        node->literal = Value::integer(t.int_value);
        return node;
      case K::Float:
        next();
        node = make(Expr::Kind::Literal, t);
        node->literal = Value::number(t.float_value);
        return node;
      case K::Operator:
        if (t.text == "(") {
          next();
          node = parse_tuple(false, true, {}, true);
          expect_op(")");
          return node;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default: break;
    }
    error(t, "unexpected " + describe(t));
  }

  ExprPtr parse_list() {
    const Token& t = next();  // [
    auto node = make(Expr::Kind::List, t);
    while (!is_op("]")) {
      if (!node->children.empty()) expect_op(",");
      if (is_op("]")) break;
      node->children.push_back(parse_expression(true));
    }
    expect_op("]");
    return node;
  }

  ExprPtr parse_dict() {
    const Token& t = next();  // {
    auto node = make(Expr::Kind::Dict, t);
    while (!is_op("}")) {
      if (!node->children.empty()) expect_op(",");
      if (is_op("}")) break;
      node->children.push_back(parse_expression(true));
      expect_op(":");
      node->children.push_back(parse_expression(true));
    }
    expect_op("}");
    return node;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    for (;;) {
      if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    for (;;) {
      if (is_op("|")) node = parse_filter(std::move(node), false);
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token t = next();
    if (t.text == ".") {
      const Token& a = cur();
      if (a.kind == K::Name) {
        next();
        auto attr = make(Expr::Kind::Attr, t);
        attr->name = a.text;
        attr->children.push_back(std::move(node));
        return attr;
      }
      if (a.kind == K::Integer) {
        next();
        auto item = make(Expr::Kind::Item, t);
        auto key = make(Expr::Kind::Literal, a);
        key->literal = Value::integer(a.int_value);
        item->children.push_back(std::move(node));
        item->children.push_back(std::move(key));
        return item;
      }
      error(a, "expected name or number after '.', got " + describe(a));
    }
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto item = make(Expr::Kind::Item, t);
    item->children.push_back(std::move(node));
    if (args.size() == 1) {
      item->children.push_back(std::move(args[0]));
    } else {
      auto tuple = make(Expr::Kind::Tuple, t);
      tuple->children = std::move(args);
      item->children.push_back(std::move(tuple));
    }
    return item;
  }

  ExprPtr parse_subscribed() {
    const Token start = cur();
    std::vector<ExprPtr> parts;
    if (skip_op(":")) {
      parts.push_back(nullptr);
    } else {
      ExprPtr e = parse_expression(true);
      if (!skip_op(":")) return e;
      parts.push_back(std::move(e));
    }
    if (is_op(":") || is_op("]") || is_op(",")) parts.push_back(nullptr);
    else parts.push_back(parse_expression(true));
    if (skip_op(":")) {
      if (is_op("]") || is_op(",")) parts.push_back(nullptr);
      else parts.push_back(parse_expression(true));
    } else {
      parts.push_back(nullptr);
    }
    auto slice = make(Expr::Kind::Slice, start);
    slice->children = std::move(parts);
    return slice;
  }

  // (args...) into node->children (after the subject) and node->kwargs.
  void parse_call_args(Expr* node) {
    expect_op("(");
    bool any = false;
    while (!is_op(")")) {
      if (any) expect_op(",");
      if (is_op(")")) break;
      any = true;
      if (is_op("*") || is_op("**")) error(cur(), "*args and **kwargs in calls are not supported");
      if (cur().kind == K::Name && look().kind == K::Operator && look().text == "=") {
        std::string key = next().text;
        next();
        node->kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!node->kwargs.empty()) error(cur(), "positional argument after keyword argument");
        node->children.push_back(parse_expression(true));
      }
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    const Token& t = cur();
    auto node = make(Expr::Kind::Call, t);
    node->children.push_back(std::move(callee));
    parse_call_args(node.get());
    return node;
  }

  // One or more `| name[(args)]`; `start_inline` when the first `|` is implied ({% filter %}).
  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      const Token& t = cur();
      std::string name = expect_name("a filter name").text;
      while (is_op(".")) {
        next();
        name += "." + expect_name("a filter name").text;
      }
      auto f = make(Expr::Kind::Filter, t);
      f->name = std::move(name);
      f->children.push_back(std::move(node));
      if (is_op("(")) parse_call_args(f.get());
      node = std::move(f);
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const Token at = next();  // is
    auto test = make(Expr::Kind::Test, at);
    test->negated = skip_name("not");
    const Token name_tok = cur();
    std::string name = expect_name("a test name").text;
    while (is_op(".")) {
      next();
      name += "." + expect_name("a test name").text;
    }
    test->name = std::move(name);
    test->line = name_tok.line;
    test->col = name_tok.col;
    test->children.push_back(std::move(node));
    const Token& t = cur();
    if (is_op("(")) {
      parse_call_args(test.get());
    } else if ((t.kind == K::Name || t.kind == K::String || t.kind == K::Integer || t.kind == K::Float ||
                is_op("[") || is_op("{")) &&
               !(is_name("else") || is_name("or") || is_name("and"))) {
      if (is_name("is")) error(t, "you cannot chain multiple tests with 'is'");
      test->children.push_back(parse_postfix(parse_primary()));
    }
    return test;
  }
};

}  // namespace

// ---- scoping -------------------------------------------------------------------------------------
//
// jinja2 decides statically, per frame (the template, a for body, a for else, a macro or call
// body, a with/set/filter block), how each name assigned in the frame starts (jinja2/idtracking.py):
// read before being assigned in the frame -> the outer value; assigned while an enclosing frame
// also uses the name -> the outer value; first assigned inside an if -> the outer
// value; otherwise -> undefined. The interpreter looks names up through a scope chain at run time,
// which agrees with all but the "undefined" start; those names are listed in Stmt::locals and the
// interpreter binds them to undefined when it enters the frame.

namespace {

class FrameAnalysis {
 public:
  enum class Init { Param, OuterValue, Undefined };

  // `ancestors`: names that enclosing frames use (load or store) directly.
  explicit FrameAnalysis(const std::set<std::string>* ancestors) : ancestors_(ancestors) {}

  void param(const std::string& name) {
    stores_.insert(name);
    refs_[name] = Init::Param;
  }

  void body(const Body& b) {
    for (const auto& s : b) stmt(*s);
  }

  // Also rejects unknown filter and test names, as jinja2 does when compiling, except in an if
  // statement or an inline if of this frame, where jinja2 defers the error to run time.
  void expr(const Expr* e) {
    if (!e) return;
    if (e->kind == Expr::Kind::Name) load(e->name);
    if (!soft_ && e->kind == Expr::Kind::Filter && !is_jinja2_filter(e->name))
      fail("line {}:{}: no filter named '{}'", e->line, e->col, e->name);
    if (!soft_ && e->kind == Expr::Kind::Test && !is_jinja2_test(e->name))
      fail("line {}:{}: no test named '{}'", e->line, e->col, e->name);
    bool saved = soft_;
    if (e->kind == Expr::Kind::Cond) soft_ = true;
    for (const auto& c : e->children) expr(c.get());
    for (const auto& kv : e->kwargs) expr(kv.second.get());
    soft_ = saved;
  }

  // Finishes the frame: the names that start undefined, then the nested frames, each analyzed
  // with this frame's names added to the ancestors.
  std::vector<std::string> finish() {
    std::vector<std::string> undefined;
    for (const auto& [name, init] : refs_)
      if (init == Init::Undefined) undefined.push_back(name);
    std::sort(undefined.begin(), undefined.end());
    std::set<std::string> inner = *ancestors_;
    for (const auto& kv : refs_) inner.insert(kv.first);
    for (Stmt* s : nested_) analyze_nested(s, inner);
    return undefined;
  }

 private:
  const std::set<std::string>* ancestors_;
  bool soft_ = false;  // inside an if of this frame
  std::map<std::string, Init> refs_;
  std::set<std::string> stores_;
  std::vector<Stmt*> nested_;

  bool known(const std::string& name) const { return refs_.count(name) || ancestors_->count(name); }

  void load(const std::string& name) {
    if (!known(name)) refs_[name] = Init::OuterValue;
  }
  void store(const std::string& name) {
    stores_.insert(name);
    if (!refs_.count(name)) refs_[name] = ancestors_->count(name) ? Init::OuterValue : Init::Undefined;
  }
  void store_target(const Expr& t) {
    if (t.kind == Expr::Kind::Name) store(t.name);
    else if (t.kind == Expr::Kind::Tuple) for (const auto& c : t.children) store_target(*c);
    else if (t.kind == Expr::Kind::Attr) load(t.children[0]->name);  // ns.attr reads ns
  }

  // jinja2 3.1's If (Symbols.branch_update): a name first assigned inside a branch starts as the
  // outer value, whichever branches assign it.
  void if_branches(const std::vector<const Body*>& bodies, const std::vector<const Expr*>& elif_tests,
                   const Body* else_body) {
    auto before = stores_;
    for (size_t k = 0; k < bodies.size(); k++) {
      if (k) expr(elif_tests[k - 1]);
      body(*bodies[k]);
    }
    if (else_body) body(*else_body);
    for (const auto& n : stores_)
      if (!before.count(n) && refs_[n] == Init::Undefined) refs_[n] = Init::OuterValue;
  }

  void stmt(Stmt& s) {
    switch (s.kind) {
      case Stmt::Kind::Text:
      case Stmt::Kind::Break:
      case Stmt::Kind::Continue: break;
      case Stmt::Kind::Print: expr(s.expr.get()); break;
      case Stmt::Kind::If: {
        bool saved = soft_;
        soft_ = true;
        expr(s.branches[0].first.get());
        std::vector<const Body*> bodies;
        std::vector<const Expr*> tests;
        for (size_t k = 0; k < s.branches.size(); k++) {
          bodies.push_back(&s.branches[k].second);
          if (k) tests.push_back(s.branches[k].first.get());
        }
        if_branches(bodies, tests, &s.else_body);
        soft_ = saved;
        break;
      }
      case Stmt::Kind::For: expr(s.expr.get()); nested_.push_back(&s); break;
      case Stmt::Kind::Set: expr(s.expr.get()); store_target(*s.target); break;
      case Stmt::Kind::SetBlock: store_target(*s.target); nested_.push_back(&s); break;
      case Stmt::Kind::Macro: store(s.name); nested_.push_back(&s); break;
      case Stmt::Kind::CallBlock: expr(s.expr.get()); nested_.push_back(&s); break;
      case Stmt::Kind::FilterBlock: expr(s.filter.get()); nested_.push_back(&s); break;
      case Stmt::Kind::With:
        for (const auto& a : s.assigns) expr(a.second.get());
        nested_.push_back(&s);
        break;
      case Stmt::Kind::Generation: nested_.push_back(&s); break;
    }
  }

  static void params_of(FrameAnalysis& f, const Expr& target) {
    if (target.kind == Expr::Kind::Name) f.param(target.name);
    else for (const auto& c : target.children) params_of(f, *c);
  }

  static void analyze_nested(Stmt* s, const std::set<std::string>& ancestors) {
    FrameAnalysis f(&ancestors);
    switch (s->kind) {
      case Stmt::Kind::For: {
        params_of(f, *s->target);
        f.param("loop");
        if (s->cond) {  // jinja2 checks the loop filter in a copy of the loop frame
          FrameAnalysis test(&ancestors);
          params_of(test, *s->target);
          test.expr(s->cond.get());
        }
        f.body(s->body);
        s->locals = f.finish();
        FrameAnalysis e(&ancestors);
        e.body(s->else_body);
        s->else_locals = e.finish();
        return;
      }
      case Stmt::Kind::Macro:
      case Stmt::Kind::CallBlock:
        for (const auto& p : s->params) f.param(p.first);
        for (const char* special : {"caller", "varargs", "kwargs"}) f.param(special);
        for (const auto& p : s->params) f.expr(p.second.get());
        break;
      case Stmt::Kind::SetBlock: f.expr(s->filter.get()); break;
      case Stmt::Kind::With:
        for (const auto& a : s->assigns) f.store_target(*a.first);
        break;
      default: break;
    }
    f.body(s->body);
    s->locals = f.finish();
  }
};

}  // namespace

Template parse_template(std::string_view source) {
  Template t;
  t.body = Parser(tokenize(source)).parse_all();
  std::set<std::string> none;
  FrameAnalysis root(&none);
  root.body(t.body);
  t.locals = root.finish();
  return t;
}

}  // namespace stepq::jinja
