// The blueprint of a model: every hyperparameter the forward needs, read from GGUF metadata
// (../shared/reference/architectures.md §1-2, §4).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace stepq {

class GgufFile;

// Llama covers Mixtral too (llama with experts).
enum class Arch { Llama, Qwen2, Gemma3, Qwen2Moe, Qwen3Moe, Deepseek, Olmoe };
enum class RopeType { Norm, Neox };  // Norm: pairs (2i, 2i+1); Neox: pairs (i, i + n_rot/2)

const char* arch_name(Arch a);
// "llama, qwen2, gemma3, ...": for error messages.
std::string supported_archs();

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_string;     // general.architecture as written
  std::string name;            // general.name, if any
  int n_embd = 0;              // E: residual stream width
  int n_layer = 0;
  int n_head = 0;              // query heads
  int n_head_kv = 0;           // key/value heads (GQA: n_head % n_head_kv == 0)
  int head_dim = 0;            // per-head width of q and k (= v here)
  int n_ff = 0;                // FFN hidden width
  int n_vocab = 0;             // rows of the embedding / output head
  int n_ctx_train = 0;         // context length the model was trained for
  int n_rot = 0;               // rotary dims (= head_dim for these archs)
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;      // global (or all) layers
  float rope_base_swa = 10000.0f;  // sliding-window layers (gemma3)
  RopeType rope_type = RopeType::Norm;
  int n_swa = 0;                   // sliding window in tokens (0 = none)
  std::vector<bool> layer_is_swa;  // per layer
  float embed_scale = 1.0f;        // gemma3: sqrtf(E)
  float attn_scale = 0.0f;         // q·k scale; 1/sqrt(head_dim) for all three archs
  float final_softcap = 0.0f;      // 0 = off (gemma3 key, when present)
  bool has_qkv_bias = false;       // qwen2
  bool has_qk_norm = false;        // gemma3: per-head RMSNorm on q and k before RoPE
  bool has_post_norms = false;     // gemma3: post-attention and post-FFN norms
  bool ffn_gelu = false;           // gemma3: GeGLU (tanh); else SwiGLU
  bool tied_output = false;        // output head is token_embd
  bool qk_norm_full = false;       // olmoe: q and k RMS-normalised over the whole projection

  // Mixture of experts (../shared/reference/architectures.md §3). n_expert == 0: dense.
  int n_expert = 0;                // X: routed experts per MoE layer
  int n_expert_used = 0;           // k: experts per token
  int n_ff_exp = 0;                // Fe: width of one routed expert
  int n_ff_shexp = 0;              // Fs: width of the shared expert (0 = none)
  int n_layer_dense_lead = 0;      // deepseek: the first layers have a dense FFN of width n_ff
  bool expert_norm_topk = false;   // renormalise the top-k probabilities (mixtral, qwen3moe)
  float expert_weights_scale = 1.0f;  // deepseek: routed weights multiplied by this
  bool shexp_gated = false;        // qwen2moe: shared expert scaled by sigmoid(w·h)

  bool is_moe() const { return n_expert > 0; }
  bool layer_is_moe(int l) const { return n_expert > 0 && l >= n_layer_dense_lead; }

  static ModelConfig from_gguf(const GgufFile& f);  // throws Error naming the bad key
};

}  // namespace stepq
