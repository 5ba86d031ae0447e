#include "model/config.h"

#include <cmath>

#include "base/error.h"
#include "formats/gguf.h"

namespace stepq {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Qwen2: return "qwen2";
    case Arch::Gemma3: return "gemma3";
    case Arch::Qwen2Moe: return "qwen2moe";
    case Arch::Qwen3Moe: return "qwen3moe";
    case Arch::Deepseek: return "deepseek";
    case Arch::Olmoe: return "olmoe";
  }
  return "?";
}

std::string supported_archs() { return "llama (with or without experts), qwen2, gemma3, qwen2moe, qwen3moe, deepseek, olmoe"; }

namespace {

// A hyperparameter that may be a scalar or a per-layer array; stepq needs one value for all layers.
uint32_t uniform_u32(const GgufFile& f, const std::string& key, uint32_t def, bool required) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (required) fail("{}: required metadata key '{}' is missing", f.path(), key);
    return def;
  }
  if (v->type == GgufType::ARRAY) {
    const GgufArray& a = std::get<GgufArray>(v->v);
    if (a.ints.empty()) fail("{}: '{}' is an empty or non-integer array", f.path(), key);
    for (int64_t x : a.ints)
      if (x != a.ints[0])
        fail("{}: '{}' varies per layer; stepq supports only one value for all layers", f.path(), key);
    if (a.ints[0] < 0 || a.ints[0] > (int64_t)UINT32_MAX) fail("{}: '{}' is out of range", f.path(), key);
    return (uint32_t)a.ints[0];
  }
  return f.get_u32(key);
}

// Routing hyperparameters, exactly as llama.cpp reads them for each architecture: which keys it
// reads and which behaviour it hard-codes (architectures.md §3-4).
void read_experts(const GgufFile& f, const std::string& p, ModelConfig& c) {
  const bool moe_arch = c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe || c.arch == Arch::Deepseek ||
                        c.arch == Arch::Olmoe;
  c.n_expert = (int)f.get_u32(p + "expert_count", 0);
  if (c.n_expert == 0) {
    if (moe_arch) fail("{}: {} needs '{}expert_count' > 0", f.path(), c.arch_string, p);
    return;
  }
  if (c.arch == Arch::Qwen2 || c.arch == Arch::Gemma3)
    fail("{}: {} with experts is not a layout llama.cpp defines (use qwen2moe)", f.path(), c.arch_string);
  c.n_expert_used = (int)uniform_u32(f, p + "expert_used_count", 0, true);
  if (c.n_expert > 4096 || c.n_expert_used <= 0 || c.n_expert_used > c.n_expert)
    fail("{}: invalid expert counts: {} experts, {} used per token", f.path(), c.n_expert, c.n_expert_used);
  switch (c.arch) {
    case Arch::Llama:  // Mixtral: the expert width is feed_forward_length
      c.n_ff_exp = c.n_ff;
      c.expert_norm_topk = true;
      c.n_ff_shexp = (int)f.get_u32(p + "expert_shared_feed_forward_length", 0);
      break;
    case Arch::Qwen2Moe:
      c.n_ff_exp = (int)f.get_u32(p + "expert_feed_forward_length", (uint32_t)(c.n_ff / c.n_expert_used));
      c.n_ff_shexp = (int)f.get_u32(p + "expert_shared_feed_forward_length", (uint32_t)c.n_ff);
      c.shexp_gated = true;
      break;
    case Arch::Qwen3Moe:
      c.n_ff_exp = (int)f.get_u32(p + "expert_feed_forward_length", (uint32_t)(c.n_ff / c.n_expert_used));
      c.expert_norm_topk = true;
      break;
    case Arch::Deepseek: {
      c.n_ff_exp = (int)f.get_u32(p + "expert_feed_forward_length");
      c.n_ff_shexp = c.n_ff_exp * (int)f.get_u32(p + "expert_shared_count");
      c.n_layer_dense_lead = (int)f.get_u32(p + "leading_dense_block_count", 0);
      const float s = f.get_f32(p + "expert_weights_scale", 0.0f);
      c.expert_weights_scale = s == 0.0f ? 1.0f : s;
      if (c.n_layer_dense_lead > c.n_layer)
        fail("{}: leading_dense_block_count {} exceeds block_count {}", f.path(), c.n_layer_dense_lead, c.n_layer);
      break;
    }
    case Arch::Olmoe:
      c.n_ff_exp = c.n_ff;
      break;
    default:
      break;
  }
  if (c.n_ff_exp <= 0 || c.n_ff_shexp < 0)
    fail("{}: invalid expert widths: routed {}, shared {}", f.path(), c.n_ff_exp, c.n_ff_shexp);
}

}  // namespace

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  c.arch_string = f.get_string("general.architecture");
  if (c.arch_string == "llama") c.arch = Arch::Llama;
  else if (c.arch_string == "qwen2") c.arch = Arch::Qwen2;
  else if (c.arch_string == "gemma3") c.arch = Arch::Gemma3;
  else if (c.arch_string == "qwen2moe") c.arch = Arch::Qwen2Moe;
  else if (c.arch_string == "qwen3moe") c.arch = Arch::Qwen3Moe;
  else if (c.arch_string == "deepseek") c.arch = Arch::Deepseek;
  else if (c.arch_string == "olmoe") c.arch = Arch::Olmoe;
  else
    fail("{}: unsupported architecture '{}' (stepq supports: {})", f.path(), c.arch_string, supported_archs());
  c.name = f.get_string("general.name", "");
  const std::string p = c.arch_string + ".";

  c.n_embd = (int)f.get_u32(p + "embedding_length");
  c.n_layer = (int)f.get_u32(p + "block_count");
  c.n_ctx_train = (int)f.get_u32(p + "context_length");
  c.n_ff = (int)uniform_u32(f, p + "feed_forward_length", 0, true);
  c.n_head = (int)uniform_u32(f, p + "attention.head_count", 0, true);
  c.n_head_kv = (int)uniform_u32(f, p + "attention.head_count_kv", (uint32_t)c.n_head, false);
  if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.n_ff <= 0)
    fail("{}: invalid hyperparameters (embedding {} layers {} heads {} kv heads {} ffn {})", f.path(), c.n_embd,
         c.n_layer, c.n_head, c.n_head_kv, c.n_ff);
  if (c.n_head % c.n_head_kv != 0)
    fail("{}: head_count {} is not a multiple of head_count_kv {}", f.path(), c.n_head, c.n_head_kv);
  c.head_dim = (int)f.get_u32(p + "attention.key_length", (uint32_t)(c.n_embd / c.n_head));
  int v_dim = (int)f.get_u32(p + "attention.value_length", (uint32_t)c.head_dim);
  if (v_dim != c.head_dim)
    fail("{}: key_length {} != value_length {} is not supported", f.path(), c.head_dim, v_dim);
  c.n_rot = (int)f.get_u32(p + "rope.dimension_count", (uint32_t)c.head_dim);
  if (c.n_rot != c.head_dim)
    fail("{}: rope.dimension_count {} != head dim {} (partial rotary) is not supported", f.path(), c.n_rot,
         c.head_dim);
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 1024)
    fail("{}: invalid head dimension {}", f.path(), c.head_dim);
  c.rms_eps = f.get_f32(p + "attention.layer_norm_rms_epsilon");
  c.rope_base = f.get_f32(p + "rope.freq_base", 10000.0f);
  c.rope_base_swa = c.rope_base;
  std::string scaling = f.get_string(p + "rope.scaling.type", "none");
  float factor = f.get_f32(p + "rope.scaling.factor", 0.0f);
  if (scaling != "none" && factor != 0.0f && factor != 1.0f)
    fail("{}: RoPE scaling '{}' with factor {} is not supported yet", f.path(), scaling, factor);

  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  if (!tokens || tokens->type != GgufType::ARRAY)
    fail("{}: 'tokenizer.ggml.tokens' is missing: the file has no vocabulary", f.path());
  c.n_vocab = (int)std::get<GgufArray>(tokens->v).size();
  c.attn_scale = 1.0f / std::sqrt((float)c.head_dim);
  c.layer_is_swa.assign(c.n_layer, false);
  c.tied_output = f.tensor("output.weight") == nullptr;

  switch (c.arch) {
    case Arch::Llama:
    case Arch::Deepseek:
      c.rope_type = RopeType::Norm;
      break;
    case Arch::Qwen2:
    case Arch::Qwen2Moe:
      c.rope_type = RopeType::Neox;
      c.has_qkv_bias = f.tensor("blk.0.attn_q.bias") != nullptr;
      break;
    case Arch::Qwen3Moe:
      c.rope_type = RopeType::Neox;
      c.has_qk_norm = true;
      break;
    case Arch::Olmoe:
      c.rope_type = RopeType::Neox;
      c.qk_norm_full = true;
      if (c.n_head_kv != c.n_head)
        fail("{}: olmoe needs head_count_kv == head_count (its k norm spans the whole projection), got {} and {}",
             f.path(), c.n_head_kv, c.n_head);
      break;
    case Arch::Gemma3: {
      c.rope_type = RopeType::Neox;
      c.has_qk_norm = true;
      c.has_post_norms = true;
      c.ffn_gelu = true;
      c.embed_scale = std::sqrt((float)c.n_embd);
      c.n_swa = (int)f.get_u32(p + "attention.sliding_window", 0);
      c.rope_base_swa = f.get_f32(p + "rope.freq_base_swa", 10000.0f);
      c.final_softcap = f.get_f32(p + "final_logit_softcapping", 0.0f);
      if (c.n_layer == 62) c.attn_scale = 1.0f / std::sqrt((float)c.n_embd / (float)c.n_head);  // 27B
      if (c.n_swa > 0) {
        const GgufValue* pat = f.find(p + "attention.sliding_window_pattern");
        if (pat && pat->type == GgufType::ARRAY) {
          const GgufArray& a = std::get<GgufArray>(pat->v);
          if ((int)a.ints.size() != c.n_layer)
            fail("{}: sliding_window_pattern has {} entries for {} layers", f.path(), a.ints.size(), c.n_layer);
          for (int l = 0; l < c.n_layer; l++) c.layer_is_swa[l] = a.ints[l] != 0;
        } else {
          int n = pat ? (int)f.get_u32(p + "attention.sliding_window_pattern") : 6;
          if (n <= 0) fail("{}: sliding_window_pattern must be > 0", f.path());
          for (int l = 0; l < c.n_layer; l++) c.layer_is_swa[l] = (l % n) < (n - 1);
        }
      }
      break;
    }
  }
  read_experts(f, p, c);
  return c;
}

}  // namespace stepq
