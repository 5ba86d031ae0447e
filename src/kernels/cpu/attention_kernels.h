// The inner loops of attention over an f16 KV cache: q·k scores and the p·v accumulation.
// Scalar reference + AVX2 (F16C) + AVX-512 versions, picked at run time.
#pragma once
#include <cstddef>
#include <cstdint>

namespace stepq {

struct AttentionKernels {
  // Scores of G queries (rows of q, hd apart) against n keys stored transposed: key j's
  // element d is kt[d*stride + j] (the cache keeps a page's keys as (head_dim, page_tokens), so
  // 16 keys load as one vector and no horizontal sums are needed).
  // s[g*ld + j] = scale * (sum over even d of q_g[d]·k_j[d] + sum over odd d), each sum in d
  // order. The result for a head does not depend on G (batch invariance relies on it).
  void (*scores_f16)(const uint16_t* kt, int stride, int n, const float* q, int G, int hd, float scale, float* s,
                     int ld);
  // out[i] += p * f32(v[i])
  void (*axpy_f16)(float p, const uint16_t* v, float* out, int n);
  // out_g += p[g*ld + j] * v_j for j = 0..n-1 in order (v_j: rows of v, hd apart; out_g: rows
  // of out, hd apart), bit-identical to axpy_f16 called for each j.
  void (*accum_f16)(const uint16_t* v, int n, const float* p, int ld, int G, int hd, float* out);
  // x[i] = f32(f16(x[i])), round to nearest even (what llama.cpp does to q and to the weights).
  void (*round_f16)(float* x, int n);
};

const AttentionKernels& attention_kernels();           // for active_isa()
const AttentionKernels& attention_kernels_scalar();    // the reference
const AttentionKernels* attention_kernels_avx2();      // nullptr if the CPU lacks it
const AttentionKernels* attention_kernels_avx512();

}  // namespace stepq
