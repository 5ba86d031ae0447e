#include "model/model.h"

#include "base/error.h"
#include "base/fp16.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace stepq {

Model::~Model() = default;

namespace {
std::string shape_str(const GgufTensorInfo& t) {
  std::string s = "[";
  for (int d = 0; d < t.n_dims; d++) s += (d ? ", " : "") + std::to_string(t.ne[d]);
  return s + "]";
}
}  // namespace

const float* Model::f32_vector(const std::string& name, int64_t n, bool required) {
  const GgufTensorInfo* t = gguf_->tensor(name);
  if (!t) {
    if (required) fail("{}: tensor '{}' is missing", gguf_->path(), name);
    return nullptr;
  }
  if (t->n_elements() != n)
    fail("{}: tensor '{}' has shape {}, expected {} elements", gguf_->path(), name, shape_str(*t), n);
  if (t->type == QType::F32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0)
    return reinterpret_cast<const float*>(t->data);
  // Rare: a norm or bias stored in another format. Convert once at load.
  owned_.emplace_back(n);
  dequantize_row(t->type, t->data, owned_.back().data(), n);
  return owned_.back().data();
}

Linear Model::linear(const std::string& name, int64_t in, int64_t out, bool required) {
  Linear l;
  const GgufTensorInfo* t = gguf_->tensor(name + ".weight");
  if (!t) {
    if (required) fail("{}: tensor '{}.weight' is missing", gguf_->path(), name);
    return l;
  }
  if (t->ne[0] != in || t->ne[1] != out || t->ne[2] != 1 || t->ne[3] != 1)
    fail("{}: tensor '{}.weight' has shape {}, expected [{}, {}]", gguf_->path(), name, shape_str(*t), in, out);
  l.type = t->type;
  l.in = in;
  l.out = out;
  l.data = t->data;
  l.row_stride = row_bytes(t->type, in);
  l.bias = f32_vector(name + ".bias", out, false);
  return l;
}

std::unique_ptr<Model> Model::load(const std::string& path) {
  std::unique_ptr<Model> m(new Model());
  m->gguf_ = GgufFile::open(path);
  m->config_ = ModelConfig::from_gguf(*m->gguf_);
  const ModelConfig& c = m->config_;
  m->tokenizer_ = Tokenizer::from_gguf(*m->gguf_);
  if (m->tokenizer_->n_vocab() != c.n_vocab)
    fail("{}: tokenizer has {} tokens but the model {}", path, m->tokenizer_->n_vocab(), c.n_vocab);

  const int64_t E = c.n_embd, hd = c.head_dim;
  const int64_t q_dim = (int64_t)c.n_head * hd, kv_dim = (int64_t)c.n_head_kv * hd;
  Weights& w = m->weights_;
  w.token_embd = m->linear("token_embd", E, c.n_vocab);
  w.output_norm = m->f32_vector("output_norm.weight", E, true);
  w.output = c.tied_output ? w.token_embd : m->linear("output", E, c.n_vocab);
  if (c.tied_output) w.output.bias = nullptr;
  if (!c.tied_output && !w.output.bias) w.output.bias = m->f32_vector("output.bias", c.n_vocab, false);
  w.layers.resize(c.n_layer);
  for (int l = 0; l < c.n_layer; l++) {
    const std::string b = "blk." + std::to_string(l) + ".";
    LayerWeights& L = w.layers[l];
    L.attn_norm = m->f32_vector(b + "attn_norm.weight", E, true);
    L.wq = m->linear(b + "attn_q", E, q_dim);
    L.wk = m->linear(b + "attn_k", E, kv_dim);
    L.wv = m->linear(b + "attn_v", E, kv_dim);
    L.wo = m->linear(b + "attn_output", q_dim, E);
    L.ffn_norm = m->f32_vector(b + "ffn_norm.weight", E, true);
    L.w_gate = m->linear(b + "ffn_gate", E, c.n_ff);
    L.w_up = m->linear(b + "ffn_up", E, c.n_ff);
    L.w_down = m->linear(b + "ffn_down", c.n_ff, E);
    if (c.has_qk_norm) {
      L.q_norm = m->f32_vector(b + "attn_q_norm.weight", hd, true);
      L.k_norm = m->f32_vector(b + "attn_k_norm.weight", hd, true);
    }
    if (c.has_post_norms) {
      L.post_attn_norm = m->f32_vector(b + "post_attention_norm.weight", E, true);
      L.post_ffw_norm = m->f32_vector(b + "post_ffw_norm.weight", E, true);
    }
  }
  return m;
}

size_t Model::weight_bytes_per_token() const {
  size_t s = weights_.output.bytes();
  for (const LayerWeights& L : weights_.layers)
    s += L.wq.bytes() + L.wk.bytes() + L.wv.bytes() + L.wo.bytes() + L.w_gate.bytes() + L.w_up.bytes() +
         L.w_down.bytes();
  return s;
}

}  // namespace stepq
