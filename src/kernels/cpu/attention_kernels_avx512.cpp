// GCC 12 warns inside its own AVX-512 intrinsic headers (GCC bug 105593); silence it in this file only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/attention_kernels.h"

namespace stepq {
namespace {

float dot_f16(const uint16_t* k, const float* q, int n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(k + i))), _mm512_loadu_ps(q + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(k + i + 16))),
                           _mm512_loadu_ps(q + i + 16), acc1);
  }
  if (i < n) {  // masked tail: up to two partial vectors of 16
    for (; i < n; i += 16) {
      const int m = n - i < 16 ? n - i : 16;
      const __mmask16 mask = (__mmask16)((1u << m) - 1u);
      const __m512 kv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, k + i));
      acc0 = _mm512_fmadd_ps(kv, _mm512_maskz_loadu_ps(mask, q + i), acc0);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

void axpy_f16(float p, const uint16_t* v, float* out, int n) {
  const __m512 pv = _mm512_set1_ps(p);
  for (int i = 0; i < n; i += 16) {
    const int m = n - i < 16 ? n - i : 16;
    const __mmask16 mask = (__mmask16)((1u << m) - 1u);
    const __m512 vv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, v + i));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_fmadd_ps(pv, vv, _mm512_maskz_loadu_ps(mask, out + i)));
  }
}

void scores_f16(const uint16_t* k, int n, const float* q, int G, int hd, float scale, float* s, int ld) {
  for (int j = 0; j < n; j++) {
    const uint16_t* kj = k + (size_t)j * hd;
    for (int g = 0; g < G; g++) s[(size_t)g * ld + j] = dot_f16(kj, q + (size_t)g * hd, hd) * scale;
  }
}

void accum_f16(const uint16_t* v, int n, const float* p, int ld, int G, int hd, float* out) {
  for (int j = 0; j < n; j++) {
    const uint16_t* vj = v + (size_t)j * hd;
    for (int g = 0; g < G; g++) axpy_f16(p[(size_t)g * ld + j], vj, out + (size_t)g * hd, hd);
  }
}

const AttentionKernels kAvx512 = {dot_f16, axpy_f16, scores_f16, accum_f16};

}  // namespace

const AttentionKernels& attention_kernels_avx512_impl() { return kAvx512; }

}  // namespace stepq
