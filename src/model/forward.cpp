#include "model/forward.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/fp16.h"
#include "kernels/cpu/attention_kernels.h"
#include "kernels/cpu/ops.h"
#include "model/model.h"
#include "runtime/kv_cache.h"

namespace stepq {

// The activations of one forward, sized for the largest batch seen so far (grown, never
// shrunk: no allocation in steady-state decoding).
struct Forward::Buffers {
  int cap_tokens = 0, cap_out = 0, cap_ctx = 0;
  std::vector<int> tok_seq, tok_pos;       // (T): sequence index and position of each token
  std::vector<float> x;                    // (T, E) residual stream
  std::vector<float> h;                    // (T, E) normed input of a block / block output
  std::vector<float> q;                    // (T, nh*hd)
  std::vector<float> k, v;                 // (T, nkv*hd)
  std::vector<float> att;                  // (T, nh*hd) attention output, heads concatenated
  std::vector<float> gate, up;             // (T, F)
  std::vector<float> rope_cos, rope_sin;   // (T, n_rot/2) at rope_base
  std::vector<float> rope_cos_swa, rope_sin_swa;  // (T, n_rot/2) at rope_base_swa
  std::vector<float> scores;               // (threads, group, ctx) attention weights
  std::vector<float> q16;                  // (threads, group, hd) queries rounded to f16 (values as f32)
  std::vector<int> out_rows;               // token rows that produce logits
  std::vector<float> xo;                   // (n_out, E)
  std::vector<float> logits;               // (n_out, V)
  // Mixture of experts: the (token, slot) pairs grouped by expert, so rows of one expert are
  // contiguous.
  std::vector<float> router;               // (T, X) router logits
  std::vector<int> sel;                    // (T, k) chosen experts, largest weight first
  std::vector<float> sel_w;                // (T, k) their weights
  std::vector<int> sel_row;                // (T, k) row of the pair in the grouped buffers
  std::vector<int> expert_rows;            // (X + 1) first grouped row of each expert
  std::vector<float> xg;                   // (T*k, E) inputs grouped by expert
  std::vector<float> gg, ug;               // (T*k, Fe)
  std::vector<float> yg;                   // (T*k, E) expert outputs
  std::vector<float> sg, su, ys;           // (T, Fs) x2, (T, E) shared expert
  std::vector<MatmulGroup> groups;         // (X) per expert
};

Forward::Forward(const Model& model, int n_threads) : Forward(model, std::make_shared<ThreadPool>(n_threads)) {}

Forward::Forward(const Model& model, std::shared_ptr<ThreadPool> pool)
    : model_(model), pool_(std::move(pool)), buf_(std::make_unique<Buffers>()) {
  const ModelConfig& c = model.config();
  if (c.is_moe()) expert_counts_.assign((size_t)c.n_layer * c.n_expert, 0);
}

Forward::~Forward() = default;

void Forward::reserve(int T, int n_out, int max_ctx) {
  const ModelConfig& c = model_.config();
  Buffers& b = *buf_;
  const size_t E = c.n_embd, qd = (size_t)c.n_head * c.head_dim, kvd = (size_t)c.n_head_kv * c.head_dim;
  if (T > b.cap_tokens) {
    b.cap_tokens = T;
    b.tok_seq.resize(T);
    b.tok_pos.resize(T);
    b.x.resize(T * E);
    b.h.resize(T * E);
    b.q.resize(T * qd);
    b.k.resize(T * kvd);
    b.v.resize(T * kvd);
    b.att.resize(T * qd);
    b.gate.resize((size_t)T * c.n_ff);
    b.up.resize((size_t)T * c.n_ff);
    b.rope_cos.resize((size_t)T * c.n_rot / 2);
    b.rope_sin.resize((size_t)T * c.n_rot / 2);
    b.rope_cos_swa.resize((size_t)T * c.n_rot / 2);
    b.rope_sin_swa.resize((size_t)T * c.n_rot / 2);
    b.out_rows.reserve(T);
    if (c.is_moe()) {
      const size_t K = c.n_expert_used, X = c.n_expert, Fe = c.n_ff_exp, Fs = c.n_ff_shexp;
      b.router.resize(T * X);
      b.sel.resize(T * K);
      b.sel_w.resize(T * K);
      b.sel_row.resize(T * K);
      b.expert_rows.resize(X + 1);
      b.xg.resize(T * K * E);
      b.gg.resize(T * K * Fe);
      b.ug.resize(T * K * Fe);
      b.yg.resize(T * K * E);
      b.sg.resize(T * Fs);
      b.su.resize(T * Fs);
      b.ys.resize(T * E);
      b.groups.resize(X);
    }
  }
  if (n_out > b.cap_out) {
    b.cap_out = n_out;
    b.xo.resize((size_t)n_out * E);
    b.logits.resize((size_t)n_out * c.n_vocab);
  }
  if (max_ctx > b.cap_ctx) {
    b.cap_ctx = max_ctx;
    b.scores.resize((size_t)pool_->size() * max_ctx * (c.n_head / c.n_head_kv));
  }
  const size_t q16_size = (size_t)pool_->size() * c.n_head / c.n_head_kv * c.head_dim;
  if (b.q16.size() < q16_size) b.q16.resize(q16_size);
}

// Scaled dot-product attention of every new token against its sequence's pages, with
// llama.cpp's non-flash numerics: q rounded to f16 against the f16 keys, softmax in f32 (sum in
// double), probabilities rounded to f16 against the f16 values. A task is one token and one KV
// head with (a slice of) the query heads that share it, so each key and value row is read once
// per group; keys are visited in position order whatever the page size, so the result does not
// depend on the paging.
void Forward::attention(int layer, std::span<const SequenceInput> batch, bool swa) {
  const ModelConfig& c = model_.config();
  Buffers& b = *buf_;
  const int T = (int)b.tok_seq.size();
  const int nkv = c.n_head_kv, hd = c.head_dim, group = c.n_head / c.n_head_kv;
  const int qd = c.n_head * hd;
  const float kq_scale = c.arch == Arch::Gemma3 ? 1.0f : c.attn_scale;  // gemma3 scales q instead
  const AttentionKernels& ak = attention_kernels();
  // Few tokens and few KV heads (decode; Gemma 3 has one KV head): split a group's query heads
  // over tasks too, so every thread has work.
  const int64_t base_tasks = (int64_t)T * nkv;
  const int slices = (int)std::min<int64_t>(group, std::max<int64_t>(1, (2 * pool_->size() + base_tasks - 1) / base_tasks));
  const int per_slice = (group + slices - 1) / slices;
  const int64_t n_tasks = base_tasks * slices;
  std::atomic<int64_t> next{0};
  auto body = [&](int tid, int) {
    float* scores = b.scores.data() + (size_t)tid * group * b.cap_ctx;
    float* q16 = b.q16.data() + (size_t)tid * group * hd;
    for (;;) {
      const int64_t task = next.fetch_add(1, std::memory_order_relaxed);
      if (task >= n_tasks) break;
      const int t = (int)(task / (nkv * slices));
      const int kvh = (int)(task / slices % nkv);
      const int g0 = (int)(task % slices) * per_slice, G = std::min(group, g0 + per_slice) - g0;
      if (G <= 0) continue;
      const KvCache& kv = *batch[b.tok_seq[t]].kv;
      const KvPool& pool = kv.pool();
      const int P = pool.page_tokens();
      const int pos = b.tok_pos[t];
      const int lo = swa && c.n_swa > 0 ? std::max(0, pos - c.n_swa + 1) : 0;
      const int n = pos - lo + 1;
      const int head0 = kvh * group + g0;
      const float* q = b.q.data() + (size_t)t * qd + (size_t)head0 * hd;
      std::copy(q, q + (size_t)G * hd, q16);
      ak.round_f16(q16, G * hd);
      for (int pb = lo / P; pb <= pos / P; pb++) {
        const int j0 = std::max(lo, pb * P), j1 = std::min(pos + 1, (pb + 1) * P);
        ak.scores_f16(pool.k(kv.pages()[pb], layer, kvh) + (j0 - pb * P), P, j1 - j0, q16, G, hd, kq_scale,
                      scores + (j0 - lo), n);
      }
      for (int g = 0; g < G; g++) {
        float* s = scores + (size_t)g * n;
        softmax(s, n);
        ak.round_f16(s, n);
      }
      float* out = b.att.data() + (size_t)t * qd + (size_t)head0 * hd;
      std::fill(out, out + (size_t)G * hd, 0.0f);
      for (int pb = lo / P; pb <= pos / P; pb++) {
        const int j0 = std::max(lo, pb * P), j1 = std::min(pos + 1, (pb + 1) * P);
        ak.accum_f16(pool.v(kv.pages()[pb], layer, kvh) + (size_t)(j0 - pb * P) * hd, j1 - j0, scores + (j0 - lo), n,
                     G, hd, out);
      }
    }
  };
  pool_->run(body);
}

void Forward::ffn(int layer, int T) {
  const ModelConfig& c = model_.config();
  const LayerWeights& L = model_.weights().layers[layer];
  if (L.is_moe()) return moe_ffn(layer, T);
  Buffers& b = *buf_;
  glu_ffn(L.w_gate, L.w_up, L.w_down, c.ffn_gelu ? Glu::GeLU : Glu::SiLU, T, b.gate.data(), b.up.data(), b.h.data());
}

// y(T, E) = down(act(gate·h) * (up·h)) for the normed inputs h; gate and up are (T, F) scratch.
// y may be h: h is read only by the first matmul.
void Forward::glu_ffn(const Linear& W_gate, const Linear& W_up, const Linear& W_down, Glu glu, int T, float* gate,
                      float* up, float* y) {
  const int64_t E = model_.config().n_embd, F = W_gate.out;
  matmul_glu(W_gate, W_up, glu, buf_->h.data(), T, E, gate, up, F, *pool_, scratch_);
  matmul(W_down, gate, T, F, y, E, *pool_, scratch_);
}

// A mixture-of-experts FFN with llama.cpp's routing (build_moe_ffn; architectures.md §3):
// softmax over all experts, the k most probable, optionally renormalised and scaled; each
// expert's output is multiplied by its weight after the down projection and the k outputs are
// summed in order of weight. The batch's (token, expert) pairs are grouped by expert and each
// active expert runs once over all its tokens, all experts in one dispatch per projection.
void Forward::moe_ffn(int layer, int T) {
  const ModelConfig& c = model_.config();
  const LayerWeights& L = model_.weights().layers[layer];
  Buffers& b = *buf_;
  const int E = c.n_embd, X = c.n_expert, K = c.n_expert_used, Fe = c.n_ff_exp;

  // Routing.
  matmul(L.router, b.h.data(), T, E, b.router.data(), X, *pool_, scratch_);
  uint64_t* counts = expert_counts_.data() + (size_t)layer * X;
  std::fill(b.expert_rows.begin(), b.expert_rows.end(), 0);
  for (int t = 0; t < T; t++) {
    float* p = &b.router[(size_t)t * X];
    softmax(p, X);
    int* sel = &b.sel[(size_t)t * K];
    float* w = &b.sel_w[(size_t)t * K];
    // Top k by probability (ties to the lower index), by insertion: k is small.
    int n = 0;
    for (int e = 0; e < X; e++) {
      if (n == K && !(p[e] > p[sel[K - 1]])) continue;
      int i = n < K ? n++ : K - 1;
      while (i > 0 && p[e] > p[sel[i - 1]]) {
        sel[i] = sel[i - 1];
        i--;
      }
      sel[i] = e;
    }
    float wsum = 0.0f;
    for (int j = 0; j < K; j++) {
      w[j] = p[sel[j]];
      wsum += w[j];
    }
    if (c.expert_norm_topk) {
      const float d = std::max(wsum, 6.103515625e-5f);
      for (int j = 0; j < K; j++) w[j] /= d;
    }
    if (c.expert_weights_scale != 1.0f)
      for (int j = 0; j < K; j++) w[j] *= c.expert_weights_scale;
    for (int j = 0; j < K; j++) {
      counts[sel[j]]++;
      b.expert_rows[sel[j] + 1]++;
    }
  }
  for (int e = 0; e < X; e++) b.expert_rows[e + 1] += b.expert_rows[e];
  // Gather: pairs in token order within each expert.
  for (int e = 0; e < X; e++) b.groups[e] = {&L.exp_gate[e], &L.exp_up[e], b.expert_rows[e], 0};
  for (int t = 0; t < T; t++)
    for (int j = 0; j < K; j++) {
      MatmulGroup& g = b.groups[b.sel[(size_t)t * K + j]];
      const int row = (int)(g.row0 + g.n++);
      b.sel_row[(size_t)t * K + j] = row;
      std::memcpy(&b.xg[(size_t)row * E], &b.h[(size_t)t * E], sizeof(float) * E);
    }
  matmul_glu_grouped(b.groups, Glu::SiLU, b.xg.data(), E, b.gg.data(), b.ug.data(), Fe, *pool_, scratch_);
  for (int e = 0; e < X; e++) {
    b.groups[e].W = &L.exp_down[e];
    b.groups[e].W_up = nullptr;
  }
  matmul_grouped(b.groups, b.gg.data(), Fe, b.yg.data(), E, *pool_, scratch_);

  // Shared expert, on every token.
  if (L.sh_gate.valid()) {
    glu_ffn(L.sh_gate, L.sh_up, L.sh_down, Glu::SiLU, T, b.sg.data(), b.su.data(), b.ys.data());
    if (L.sh_gate_inp)
      for (int t = 0; t < T; t++) {
        const float* h = &b.h[(size_t)t * E];
        float z = 0.0f;
        for (int i = 0; i < E; i++) z += L.sh_gate_inp[i] * h[i];
        const float s = 1.0f / (1.0f + std::exp(-z));
        float* y = &b.ys[(size_t)t * E];
        for (int i = 0; i < E; i++) y[i] *= s;
      }
  }

  // Combine into h: the weighted expert outputs in order of weight, then the shared expert.
  for (int t = 0; t < T; t++) {
    float* out = &b.h[(size_t)t * E];
    for (int j = 0; j < K; j++) {
      const float w = b.sel_w[(size_t)t * K + j];
      const float* y = &b.yg[(size_t)b.sel_row[(size_t)t * K + j] * E];
      if (j == 0)
        for (int i = 0; i < E; i++) out[i] = w * y[i];
      else
        for (int i = 0; i < E; i++) out[i] += w * y[i];
    }
    if (L.sh_gate.valid()) {
      const float* y = &b.ys[(size_t)t * E];
      for (int i = 0; i < E; i++) out[i] += y[i];
    }
  }
}

std::span<const float> Forward::run(std::span<const SequenceInput> batch) {
  const ModelConfig& c = model_.config();
  const Weights& W = model_.weights();
  Buffers& b = *buf_;

  // Validate the whole batch before touching any cache.
  int T = 0, n_out = 0, max_ctx = 0;
  out_count_.assign(batch.size(), 0);
  out_offset_.assign(batch.size(), 0);
  for (size_t s = 0; s < batch.size(); s++) {
    const SequenceInput& in = batch[s];
    if (!in.kv) fail("forward: sequence {} has no KV cache", s);
    if (in.tokens.empty()) fail("forward: sequence {} has no new tokens", s);
    for (size_t o = 0; o < s; o++)
      if (batch[o].kv == in.kv) fail("forward: sequences {} and {} share one KV cache", o, s);
    const int end = in.kv->length() + (int)in.tokens.size();
    if (end > in.kv->capacity())
      fail("context full: sequence {} would reach {} tokens but its context holds {} (use a larger --ctx)", s,
           end, in.kv->capacity());
    int64_t pool_need = 0;  // pages the whole batch takes from this sequence's pool
    for (size_t o = 0; o <= s; o++)
      if (&batch[o].kv->pool() == &in.kv->pool())
        pool_need += batch[o].kv->pages_needed(batch[o].kv->length() + (int)batch[o].tokens.size());
    in.kv->pool().require(pool_need);
    for (int32_t tok : in.tokens)
      if (tok < 0 || tok >= c.n_vocab) fail("forward: token id {} is outside the vocabulary [0, {})", tok, c.n_vocab);
    out_offset_[s] = n_out;
    out_count_[s] = in.all_logits ? (int)in.tokens.size() : 1;
    n_out += out_count_[s];
    T += (int)in.tokens.size();
    max_ctx = std::max(max_ctx, end);
  }
  if (T == 0) return {};
  for (const SequenceInput& in : batch) in.kv->prepare(in.kv->length() + (int)in.tokens.size());
  reserve(T, n_out, max_ctx);
  b.tok_seq.resize(T);
  b.tok_pos.resize(T);
  b.out_rows.clear();
  for (size_t s = 0, t = 0; s < batch.size(); s++) {
    const SequenceInput& in = batch[s];
    for (size_t i = 0; i < in.tokens.size(); i++, t++) {
      b.tok_seq[t] = (int)s;
      b.tok_pos[t] = in.kv->length() + (int)i;
      if (in.all_logits || i + 1 == in.tokens.size()) b.out_rows.push_back((int)t);
    }
  }

  const int E = c.n_embd, hd = c.head_dim, nh = c.n_head, nkv = c.n_head_kv;
  const int qd = nh * hd, kvd = nkv * hd, half = c.n_rot / 2;

  // Embeddings (gemma3 scales them by sqrt(E)).
  pool_->parallel_for(T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      const int seq = b.tok_seq[t];
      const int32_t tok = batch[seq].tokens[b.tok_pos[t] - batch[seq].kv->length()];
      float* xt = b.x.data() + t * E;
      linear_row_f32(W.token_embd, tok, xt);
      if (c.embed_scale != 1.0f)
        for (int i = 0; i < E; i++) xt[i] *= c.embed_scale;
    }
  });
  // RoPE angles per token, for both bases (gemma3 sliding-window layers use their own).
  for (int t = 0; t < T; t++) {
    rope_angles(b.tok_pos[t], c.rope_base, c.n_rot, &b.rope_cos[(size_t)t * half], &b.rope_sin[(size_t)t * half]);
    if (c.rope_base_swa != c.rope_base)
      rope_angles(b.tok_pos[t], c.rope_base_swa, c.n_rot, &b.rope_cos_swa[(size_t)t * half],
                  &b.rope_sin_swa[(size_t)t * half]);
  }
  auto rope = c.rope_type == RopeType::Neox ? rope_neox : rope_norm;
  // Token-wise work (norms, rope, cache writes, residuals) is split over the pool when there are
  // many tokens (prefill); a few tokens (decode) run inline on the caller.
  auto per_token = [&](auto&& f) {
    pool_->parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; t++) f((int)t);
    });
  };

  for (int l = 0; l < c.n_layer; l++) {
    const LayerWeights& L = W.layers[l];
    const bool swa = c.layer_is_swa[l];
    const bool use_swa_base = swa && c.rope_base_swa != c.rope_base;
    const float* rc = use_swa_base ? b.rope_cos_swa.data() : b.rope_cos.data();
    const float* rs = use_swa_base ? b.rope_sin_swa.data() : b.rope_sin.data();

    // --- attention block ---
    per_token([&](int t) { rms_norm(&b.x[(size_t)t * E], L.attn_norm, &b.h[(size_t)t * E], E, c.rms_eps); });
    const MatmulTarget qkv[3] = {{&L.wq, b.q.data(), qd}, {&L.wk, b.k.data(), kvd}, {&L.wv, b.v.data(), kvd}};
    matmul_multi(qkv, b.h.data(), T, E, *pool_, scratch_);
    per_token([&](int t) {
      float* q = &b.q[(size_t)t * qd];
      float* k = &b.k[(size_t)t * kvd];
      if (c.qk_norm_full) {
        rms_norm(q, L.q_norm, q, qd, c.rms_eps);
        rms_norm(k, L.k_norm, k, kvd, c.rms_eps);
      }
      for (int hh = 0; hh < nh; hh++) {
        if (L.q_norm && !c.qk_norm_full) rms_norm(q + hh * hd, L.q_norm, q + hh * hd, hd, c.rms_eps);
        rope(q + hh * hd, rc + (size_t)t * half, rs + (size_t)t * half, c.n_rot);
        if (c.arch == Arch::Gemma3)
          for (int d = 0; d < hd; d++) q[hh * hd + d] *= c.attn_scale;
      }
      for (int hh = 0; hh < nkv; hh++) {
        if (L.k_norm && !c.qk_norm_full) rms_norm(k + hh * hd, L.k_norm, k + hh * hd, hd, c.rms_eps);
        rope(k + hh * hd, rc + (size_t)t * half, rs + (size_t)t * half, c.n_rot);
      }
      KvCache& kv = *batch[b.tok_seq[t]].kv;
      const int32_t page = kv.page_of(b.tok_pos[t]);
      const int row = kv.row_of(b.tok_pos[t]), P = kv.pool().page_tokens();
      const float* v = &b.v[(size_t)t * kvd];
      for (int hh = 0; hh < nkv; hh++) {
        uint16_t* kc = kv.pool().k(page, l, hh) + row;  // transposed: column `row`
        uint16_t* vc = kv.pool().v(page, l, hh) + (size_t)row * hd;
        for (int d = 0; d < hd; d++) {
          kc[(size_t)d * P] = fp32_to_fp16(k[hh * hd + d]);
          vc[d] = fp32_to_fp16(v[hh * hd + d]);
        }
      }
    });
    attention(l, batch, swa);
    matmul(L.wo, b.att.data(), T, qd, b.h.data(), E, *pool_, scratch_);
    per_token([&](int t) {
      float* ht = &b.h[(size_t)t * E];
      if (L.post_attn_norm) rms_norm(ht, L.post_attn_norm, ht, E, c.rms_eps);
      float* xt = &b.x[(size_t)t * E];
      for (int i = 0; i < E; i++) xt[i] += ht[i];
    });

    // --- feed-forward block ---
    per_token([&](int t) { rms_norm(&b.x[(size_t)t * E], L.ffn_norm, &b.h[(size_t)t * E], E, c.rms_eps); });
    ffn(l, T);
    per_token([&](int t) {
      float* ht = &b.h[(size_t)t * E];
      if (L.post_ffw_norm) rms_norm(ht, L.post_ffw_norm, ht, E, c.rms_eps);
      float* xt = &b.x[(size_t)t * E];
      for (int i = 0; i < E; i++) xt[i] += ht[i];
    });
  }

  // Output head, only for the rows asked for.
  for (size_t i = 0; i < b.out_rows.size(); i++)
    rms_norm(&b.x[(size_t)b.out_rows[i] * E], W.output_norm, &b.xo[i * E], E, c.rms_eps);
  matmul(W.output, b.xo.data(), n_out, E, b.logits.data(), c.n_vocab, *pool_, scratch_);
  if (c.final_softcap > 0.0f) {
    const float cap = c.final_softcap;
    for (size_t i = 0; i < (size_t)n_out * c.n_vocab; i++) b.logits[i] = cap * std::tanh(b.logits[i] / cap);
  }

  for (size_t s = 0; s < batch.size(); s++)
    batch[s].kv->set_length(batch[s].kv->length() + (int)batch[s].tokens.size());
  return {b.logits.data(), (size_t)n_out * c.n_vocab};
}

}  // namespace stepq
