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
  l.lowrank = lowrank(name, in, out);
  return l;
}

const LowRankLinear* bind_lowrank(const GgufFile& file, const std::string& name, int64_t in, int64_t out, int expert,
                                  std::deque<LowRankLinear>& store) {
  const std::string suffix = expert >= 0 ? "." + std::to_string(expert) : "";
  const GgufTensorInfo* u = file.tensor(name + ".milo_u" + suffix);
  const GgufTensorInfo* v = file.tensor(name + ".milo_v" + suffix);
  if (!u && !v) return nullptr;
  if (!u || !v)
    fail("{}: '{}' has only one of its compensator tensors {}.milo_u{} and .milo_v{}", file.path(), name, name,
         suffix, suffix);
  const int64_t r = v->ne[1];
  if (v->n_dims != 2 || v->ne[0] != in || u->n_dims != 2 || u->ne[0] != r || u->ne[1] != out || r <= 0)
    fail("{}: compensator of '{}' has shapes {} (U) and {} (V), expected [{}, {}] and [{}, {}]", file.path(), name,
         shape_str(*u), shape_str(*v), r, out, in, r);
  LowRankLinear& lr = store.emplace_back();
  for (auto [t, L] : {std::pair{u, &lr.U}, std::pair{v, &lr.V}}) {
    L->type = t->type;
    L->in = t->ne[0];
    L->out = t->ne[1];
    L->data = t->data;
    L->row_stride = row_bytes(t->type, t->ne[0]);
  }
  return &lr;
}

const LowRankLinear* Model::lowrank(const std::string& name, int64_t in, int64_t out, int expert) {
  return bind_lowrank(*gguf_, name, in, out, expert, lowrank_);
}

std::vector<Linear> Model::experts(const std::string& name, int64_t in, int64_t out, int64_t X) {
  const GgufTensorInfo* t = gguf_->tensor(name + ".weight");
  if (!t) fail("{}: tensor '{}.weight' is missing", gguf_->path(), name);
  if (t->ne[0] != in || t->ne[1] != out || t->ne[2] != X || t->ne[3] != 1)
    fail("{}: tensor '{}.weight' has shape {}, expected [{}, {}, {}]", gguf_->path(), name, shape_str(*t), in, out, X);
  if (gguf_->tensor(name + ".bias")) fail("{}: expert biases ('{}.bias') are not supported", gguf_->path(), name);
  std::vector<Linear> v(X);
  const size_t rs = row_bytes(t->type, in);
  for (int64_t e = 0; e < X; e++) {
    v[e].type = t->type;
    v[e].in = in;
    v[e].out = out;
    v[e].row_stride = rs;
    v[e].data = t->data + (size_t)e * out * rs;
    v[e].lowrank = lowrank(name, in, out, (int)e);
  }
  return v;
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
    if (c.layer_is_moe(l)) {
      const int64_t X = c.n_expert, Fe = c.n_ff_exp;
      L.router = m->linear(b + "ffn_gate_inp", E, X);
      if (L.router.bias) fail("{}: router biases ('{}ffn_gate_inp.bias') are not supported", path, b);
      L.exp_gate = m->experts(b + "ffn_gate_exps", E, Fe, X);
      L.exp_up = m->experts(b + "ffn_up_exps", E, Fe, X);
      L.exp_down = m->experts(b + "ffn_down_exps", Fe, E, X);
      if (c.n_ff_shexp > 0) {
        // qwen2moe always has one; Granite-style llama MoE and deepseek when the key says so.
        L.sh_gate = m->linear(b + "ffn_gate_shexp", E, c.n_ff_shexp);
        L.sh_up = m->linear(b + "ffn_up_shexp", E, c.n_ff_shexp);
        L.sh_down = m->linear(b + "ffn_down_shexp", c.n_ff_shexp, E);
        if (c.shexp_gated) L.sh_gate_inp = m->f32_vector(b + "ffn_gate_inp_shexp.weight", E, true);
      }
    } else {
      L.w_gate = m->linear(b + "ffn_gate", E, c.n_ff);
      L.w_up = m->linear(b + "ffn_up", E, c.n_ff);
      L.w_down = m->linear(b + "ffn_down", c.n_ff, E);
    }
    if (c.has_qk_norm) {
      L.q_norm = m->f32_vector(b + "attn_q_norm.weight", hd, true);
      L.k_norm = m->f32_vector(b + "attn_k_norm.weight", hd, true);
    }
    if (c.qk_norm_full) {
      L.q_norm = m->f32_vector(b + "attn_q_norm.weight", q_dim, true);
      L.k_norm = m->f32_vector(b + "attn_k_norm.weight", kv_dim, true);
    }
    if (c.has_post_norms) {
      L.post_attn_norm = m->f32_vector(b + "post_attention_norm.weight", E, true);
      L.post_ffw_norm = m->f32_vector(b + "post_ffw_norm.weight", E, true);
    }
  }
  return m;
}

size_t Model::weight_bytes_per_token() const { return footprint().active_bytes; }

Model::Footprint Model::footprint() const {
  Footprint f;
  auto add = [&](const Linear& W, double active_share) {
    if (!W.valid()) return;
    f.params += W.in * W.out;
    f.bytes += W.bytes();
    f.active_params += (int64_t)(active_share * (double)(W.in * W.out));
    f.active_bytes += (size_t)(active_share * (double)W.bytes());
  };
  const Weights& w = weights_;
  const bool tied = config_.tied_output;
  if (!tied) {
    add(w.token_embd, 0.0);
    f.active_params += w.token_embd.in;  // one row gathered
  }
  add(w.output, 1.0);
  const double used = config_.n_expert > 0 ? (double)config_.n_expert_used / config_.n_expert : 0.0;
  for (const LayerWeights& L : w.layers) {
    for (const Linear* W : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.router, &L.sh_gate,
                            &L.sh_up, &L.sh_down})
      add(*W, 1.0);
    for (const auto* v : {&L.exp_gate, &L.exp_up, &L.exp_down})
      for (const Linear& W : *v) add(W, used);
  }
  return f;
}

}  // namespace stepq
