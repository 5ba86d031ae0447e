// stepq inspect: what a model file is — architecture, hyperparameters, tensors, tokenizer,
// chat template, bits per weight.
#include <cstdio>
#include <map>

#include "base/error.h"
#include "cli/commands.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace stepq::cli {

namespace {

struct InspectArgs {
  std::string model;
  bool all_metadata = false;
};

std::string value_str(const GgufValue& v) {
  switch (v.type) {
    case GgufType::STRING: {
      std::string s = std::get<std::string>(v.v);
      if (s.size() > 80) s = s.substr(0, 77) + "...";
      for (char& ch : s)
        if (ch == '\n') ch = ' ';
      return "\"" + s + "\"";
    }
    case GgufType::ARRAY: {
      const GgufArray& a = std::get<GgufArray>(v.v);
      return fmt::format("[{} x {}]", a.size(), gguf_type_name(a.elem_type));
    }
    case GgufType::F32: case GgufType::F64: return fmt::format("{}", std::get<double>(v.v));
    case GgufType::BOOL: return std::get<bool>(v.v) ? "true" : "false";
    case GgufType::U64: return fmt::format("{}", std::get<uint64_t>(v.v));
    default: return fmt::format("{}", std::get<int64_t>(v.v));
  }
}

void do_inspect(const InspectArgs& a) {
  auto f = GgufFile::open(a.model);
  fmt::print("file: {} ({} bytes, GGUF v{}, alignment {}, data at {})\n", a.model, f->file_size(), f->version(),
             f->alignment(), f->data_offset());

  fmt::print("\n== metadata ({} keys) ==\n", f->metadata().size());
  for (const auto& [k, v] : f->metadata()) {
    if (!a.all_metadata && k.rfind("tokenizer.", 0) == 0 && v.type == GgufType::ARRAY) {
      fmt::print("  {:48s} {}\n", k, value_str(v));
      continue;
    }
    if (!a.all_metadata && k == "tokenizer.chat_template") continue;
    fmt::print("  {:48s} {}\n", k, value_str(v));
  }

  std::string arch_err;
  try {
    ModelConfig c = ModelConfig::from_gguf(*f);
    fmt::print("\n== architecture ==\n");
    fmt::print("  arch {}  layers {}  embd {}  ffn {}  heads {} / kv {}  head_dim {}  vocab {}\n", c.arch_string,
               c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_vocab);
    fmt::print("  context {}  rope {} base {}  rms_eps {}  tied output {}\n", c.n_ctx_train,
               c.rope_type == RopeType::Neox ? "neox" : "norm", c.rope_base, c.rms_eps, c.tied_output);
    if (c.is_moe()) {
      fmt::print("  experts {} per MoE layer, {} used per token (top-k of a softmax{}{}), expert ffn {}\n", c.n_expert,
                 c.n_expert_used, c.expert_norm_topk ? ", renormalised" : "",
                 c.expert_weights_scale != 1.0f ? fmt::format(", weights x {}", c.expert_weights_scale) : "",
                 c.n_ff_exp);
      if (c.n_ff_shexp > 0)
        fmt::print("  shared expert ffn {}{}\n", c.n_ff_shexp, c.shexp_gated ? " (sigmoid-gated)" : "");
      std::string moe_layers = c.n_layer_dense_lead > 0
                                   ? fmt::format("layers {}..{} (0..{} dense, ffn {})", c.n_layer_dense_lead,
                                                 c.n_layer - 1, c.n_layer_dense_lead - 1, c.n_ff)
                                   : fmt::format("all {} layers", c.n_layer);
      fmt::print("  experts per layer: {} in {}\n", c.n_expert, moe_layers);
    }
    try {
      auto m = Model::load(a.model);
      const Model::Footprint fp = m->footprint();
      fmt::print("  parameters {:.2f} M ({} B), active per token {:.2f} M ({} B read per token{})\n", fp.params / 1e6,
                 fp.bytes, fp.active_params / 1e6, fp.active_bytes,
                 c.is_moe() ? fmt::format(", {:.1f}% of the weights", 100.0 * fp.active_bytes / fp.bytes) : "");
    } catch (const Error& e) {
      fmt::print("  cannot load the weights: {}\n", e.what());
    }
    if (c.n_swa > 0) {
      std::string layers;
      for (int l = 0; l < c.n_layer; l++)
        if (!c.layer_is_swa[l]) layers += (layers.empty() ? "" : ",") + std::to_string(l);
      fmt::print("  sliding window {} (rope base {}), global layers {}\n", c.n_swa, c.rope_base_swa, layers);
    }
  } catch (const Error& e) {
    arch_err = e.what();
    fmt::print("\n== architecture ==\n  cannot run this file: {}\n", arch_err);
  }

  fmt::print("\n== tensors ({}) ==\n", f->tensors().size());
  std::map<std::string, std::pair<int64_t, size_t>> by_type;  // type -> (elements, bytes)
  int64_t total_el = 0;
  size_t total_bytes = 0;
  for (const GgufTensorInfo& t : f->tensors()) {
    std::string shape;
    for (int d = 0; d < t.n_dims; d++) shape += (d ? " x " : "") + std::to_string(t.ne[d]);
    const char* tn = qtype_name((uint32_t)t.type);
    fmt::print("  {:40s} {:>20s} {:>7s} {:>12} B\n", t.name, shape, tn, t.n_bytes);
    by_type[tn].first += t.n_elements();
    by_type[tn].second += t.n_bytes;
    total_el += t.n_elements();
    total_bytes += t.n_bytes;
  }
  fmt::print("\n== bits per weight ==\n");
  for (const auto& [tn, eb] : by_type)
    fmt::print("  {:7s} {:>14} weights {:>14} B  {:.4f} bpw\n", tn, eb.first, eb.second, 8.0 * eb.second / eb.first);
  fmt::print("  total   {:>14} weights {:>14} B  {:.4f} bpw\n", total_el, total_bytes, 8.0 * total_bytes / total_el);

  fmt::print("\n== tokenizer ==\n");
  try {
    auto tok = Tokenizer::from_gguf(*f);
    fmt::print("  model {}  pre {}  vocab {}  bos {}  eos {}  add_bos {}\n", tok->model(), tok->pre(), tok->n_vocab(),
               tok->bos(), tok->eos(), tok->add_bos());
  } catch (const Error& e) {
    fmt::print("  cannot load: {}\n", e.what());
  }
  std::string tmpl = f->get_string("tokenizer.chat_template", "");
  fmt::print("\n== chat template ==\n{}\n", tmpl.empty() ? "  (none)" : tmpl);
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto a = std::make_shared<InspectArgs>();
  CLI::App* c = app.add_subcommand("inspect", "Show a model's architecture, metadata, tensors, tokenizer and template");
  c->add_option("model", a->model, "Model file (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_flag("--all", a->all_metadata, "Print every metadata value in full");
  c->callback([a] { do_inspect(*a); });
}

}  // namespace stepq::cli
