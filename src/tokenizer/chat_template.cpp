#include "tokenizer/chat_template.h"

#include "base/error.h"
#include "tokenizer/jinja_ast.h"

namespace stepq {

struct ChatTemplate::Program {
  jinja::Template tpl;
};

namespace {

// JSON -> interpreter values, keeping the object key order of the json type used.
template <typename Json>
jinja::Value from_json(const Json& j) {
  using jinja::Value;
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > (uint64_t)INT64_MAX) return Value::number((double)u);
      return Value::integer((int64_t)u);
    }
    case nlohmann::json::value_t::number_float: return Value::number(j.template get<double>());
    case nlohmann::json::value_t::string: return Value::string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json(x));
      return Value::new_list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Value d = Value::new_dict();
      for (auto it = j.begin(); it != j.end(); ++it)
        d.dict->items.emplace_back(Value::string(it.key()), from_json(it.value()));
      return d;
    }
    default: return Value::none();  // binary / discarded: not produced by parsing JSON text
  }
}

template <typename Json>
std::string render_json(const jinja::Template& tpl, const Json& context) {
  if (!context.is_object()) fail("chat template: the context must be a JSON object, got {}", context.type_name());
  try {
    return jinja::render(tpl, from_json(context));
  } catch (const Error& e) {
    throw Error(std::string("chat template ") + e.what());
  }
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source) : source_(std::move(source)) {
  auto program = std::make_shared<Program>();
  try {
    program->tpl = jinja::parse_template(source_);
  } catch (const Error& e) {
    throw Error(std::string("chat template ") + e.what());
  }
  program_ = std::move(program);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(const ChatTemplate&) = default;
ChatTemplate& ChatTemplate::operator=(const ChatTemplate&) = default;

std::string ChatTemplate::render(const nlohmann::json& context) const {
  return render_json(program_->tpl, context);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return render_json(program_->tpl, context);
}

std::string ChatTemplate::apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                const std::string& bos_token, const std::string& eos_token) const {
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (const auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  ctx["messages"] = std::move(msgs);
  ctx["tools"] = nullptr;
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = bos_token;
  ctx["eos_token"] = eos_token;
  return render(ctx);
}

}  // namespace stepq
