// The inner loops of attention over an f16 KV cache: q·k dot products and the p·v accumulation.
// Scalar reference + AVX2 (F16C) + AVX-512 versions, picked at run time.
#pragma once
#include <cstdint>

namespace stepq {

struct AttentionKernels {
  // sum_i q[i] * f32(k[i]); q holds values already rounded to f16 (as llama.cpp rounds q).
  float (*dot_f16)(const uint16_t* k, const float* q, int n);
  // out[i] += p * f32(v[i])
  void (*axpy_f16)(float p, const uint16_t* v, float* out, int n);
};

const AttentionKernels& attention_kernels();           // for active_isa()
const AttentionKernels& attention_kernels_scalar();    // the reference
const AttentionKernels* attention_kernels_avx2();      // nullptr if the CPU lacks it
const AttentionKernels* attention_kernels_avx512();

}  // namespace stepq
