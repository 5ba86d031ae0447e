// A loaded model: its config, its weights bound in place from the mmapped GGUF, its tokenizer.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "model/config.h"

namespace stepq {

class GgufFile;
class Tokenizer;

// The MiLo compensator of weight `name` (in -> out): tensors <name>.milo_u / .milo_v of `file`,
// with ".<e>" for expert e >= 0, bound in place into a new element of `store`; nullptr when the
// file has none. Throws Error naming the file on half a pair or on shapes that do not fit.
const LowRankLinear* bind_lowrank(const GgufFile& file, const std::string& name, int64_t in, int64_t out, int expert,
                                  std::deque<LowRankLinear>& store);

struct LayerWeights {
  const float* attn_norm = nullptr;      // (E)
  Linear wq, wk, wv, wo;                 // (E -> nh*hd), (E -> nkv*hd) x2, (nh*hd -> E)
  const float* q_norm = nullptr;         // (hd) gemma3
  const float* k_norm = nullptr;         // (hd) gemma3
  const float* post_attn_norm = nullptr; // (E)  gemma3
  const float* ffn_norm = nullptr;       // (E)
  Linear w_gate, w_up, w_down;           // (E -> F) x2, (F -> E); dense layers only
  const float* post_ffw_norm = nullptr;  // (E)  gemma3

  // Mixture of experts (empty in dense layers). Expert e of a stacked [in, out, X] tensor is a
  // Linear over row block e, used in place.
  Linear router;                         // ffn_gate_inp (E -> X)
  std::vector<Linear> exp_gate, exp_up, exp_down;  // X each: (E -> Fe) x2, (Fe -> E)
  Linear sh_gate, sh_up, sh_down;        // shared expert (E -> Fs) x2, (Fs -> E); optional
  const float* sh_gate_inp = nullptr;    // (E) qwen2moe: shared expert scaled by sigmoid(w·h)
  bool is_moe() const { return router.valid(); }
};

struct Weights {
  Linear token_embd;                     // (V rows of E): rows are dequantized on lookup
  const float* output_norm = nullptr;    // (E)
  Linear output;                         // (E -> V); token_embd when tied
  std::vector<LayerWeights> layers;
};

class Model {
 public:
  // Opens, validates and binds everything; throws Error naming the file and tensor at fault.
  static std::unique_ptr<Model> load(const std::string& path);
  ~Model();

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }
  const GgufFile& gguf() const { return *gguf_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

  // Bytes of weights read per decoded token (all matrices but the embedding table,
  // which is only gathered, unless it doubles as the output head). For a mixture of experts,
  // the experts a token uses (k of X; their average size) rather than all of them.
  size_t weight_bytes_per_token() const;

  // What a model costs: every matrix, and what one token reads (as weight_bytes_per_token()).
  // The embedding table counts in totals, and in active parameters as one row.
  struct Footprint {
    int64_t params = 0, active_params = 0;
    size_t bytes = 0, active_bytes = 0;
  };
  Footprint footprint() const;

 private:
  Model() = default;
  const float* f32_vector(const std::string& name, int64_t n, bool required);
  Linear linear(const std::string& name, int64_t in, int64_t out, bool required = true);
  std::vector<Linear> experts(const std::string& name, int64_t in, int64_t out, int64_t n_expert);
  // The MiLo compensator of a weight (tensors <name>.milo_u / .milo_v, with ".<e>" for expert e),
  // or nullptr when the file has none.
  const LowRankLinear* lowrank(const std::string& name, int64_t in, int64_t out, int expert = -1);

  ModelConfig config_;
  Weights weights_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::vector<float>> owned_;  // small tensors converted to f32 (norms, biases)
  std::deque<LowRankLinear> lowrank_;      // compensators the Linears point to
};

}  // namespace stepq
