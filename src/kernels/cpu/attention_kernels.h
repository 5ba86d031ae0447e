// The inner loops of attention over an f16 KV cache: q·k dot products and the p·v accumulation.
// Scalar reference + AVX2 (F16C) + AVX-512 versions, picked at run time.
#pragma once
#include <cstddef>
#include <cstdint>

namespace stepq {

struct AttentionKernels {
  // sum_i q[i] * f32(k[i]); q holds values already rounded to f16 (as llama.cpp rounds q).
  float (*dot_f16)(const uint16_t* k, const float* q, int n);
  // out[i] += p * f32(v[i])
  void (*axpy_f16)(float p, const uint16_t* v, float* out, int n);
  // Scores of G queries (rows of q, hd apart) against n keys (rows of k, hd apart):
  // s[g*ld + j] = dot_f16(k_j, q_g, hd) * scale, bit-identical to calling dot_f16. Each key is
  // read once for the G query heads that share it (GQA).
  void (*scores_f16)(const uint16_t* k, int n, const float* q, int G, int hd, float scale, float* s, int ld);
  // out_g += p[g*ld + j] * v_j for j = 0..n-1 in order (out_g: rows of out, hd apart),
  // bit-identical to axpy_f16 called for each j.
  void (*accum_f16)(const uint16_t* v, int n, const float* p, int ld, int G, int hd, float* out);
};

const AttentionKernels& attention_kernels();           // for active_isa()
const AttentionKernels& attention_kernels_scalar();    // the reference
const AttentionKernels* attention_kernels_avx2();      // nullptr if the CPU lacks it
const AttentionKernels* attention_kernels_avx512();

}  // namespace stepq
