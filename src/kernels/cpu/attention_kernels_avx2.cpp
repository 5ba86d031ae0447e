#include <immintrin.h>

#include "kernels/cpu/attention_kernels.h"

namespace stepq {
namespace {

inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float f16_to_f32_1(uint16_t h) { return _cvtsh_ss(h); }

float dot_f16(const uint16_t* k, const float* q, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k + i))), _mm256_loadu_ps(q + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k + i + 8))), _mm256_loadu_ps(q + i + 8),
                           acc1);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(k + i))), _mm256_loadu_ps(q + i), acc0);
  float s = hsum256(_mm256_add_ps(acc0, acc1));
  for (; i < n; i++) s += q[i] * f16_to_f32_1(k[i]);
  return s;
}

void axpy_f16(float p, const uint16_t* v, float* out, int n) {
  const __m256 pv = _mm256_set1_ps(p);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(pv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v + i))),
                                              _mm256_loadu_ps(out + i)));
  for (; i < n; i++) out[i] += p * f16_to_f32_1(v[i]);
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

const AttentionKernels kAvx2 = {dot_f16, axpy_f16, scores_f16, accum_f16};

}  // namespace

const AttentionKernels& attention_kernels_avx2_impl() { return kAvx2; }

}  // namespace stepq
