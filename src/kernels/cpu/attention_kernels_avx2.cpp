#include <immintrin.h>

#include <cmath>

#include "kernels/cpu/attention_kernels.h"

namespace stepq {
namespace {

inline float f16_to_f32_1(uint16_t h) { return _cvtsh_ss(h); }

void axpy_f16(float p, const uint16_t* v, float* out, int n) {
  const __m256 pv = _mm256_set1_ps(p);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(pv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(v + i))),
                                              _mm256_loadu_ps(out + i)));
  for (; i < n; i++) out[i] += p * f16_to_f32_1(v[i]);
}

// Eight keys per vector (see the AVX-512 file); keys past the last multiple of 8 in scalar code
// with the same even/odd fma sequence.
template <int G>
void scores_block(const uint16_t* kt, int stride, int n, const float* q, int hd, float scale, float* s, int ld) {
  const __m256 sc = _mm256_set1_ps(scale);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 even[G], odd[G];
    for (int g = 0; g < G; g++) even[g] = odd[g] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
      const __m256 kv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(kt + (size_t)d * stride + j)));
      for (int g = 0; g < G; g++) {
        const __m256 qv = _mm256_set1_ps(q[(size_t)g * hd + d]);
        if (d % 2 == 0) even[g] = _mm256_fmadd_ps(qv, kv, even[g]);
        else odd[g] = _mm256_fmadd_ps(qv, kv, odd[g]);
      }
    }
    for (int g = 0; g < G; g++) _mm256_storeu_ps(s + (size_t)g * ld + j, _mm256_mul_ps(_mm256_add_ps(even[g], odd[g]), sc));
  }
  for (; j < n; j++)
    for (int g = 0; g < G; g++) {
      float even = 0.0f, odd = 0.0f;
      for (int d = 0; d < hd; d++) {
        const float x = _cvtsh_ss(kt[(size_t)d * stride + j]);
        if (d % 2 == 0) even = std::fma(q[(size_t)g * hd + d], x, even);
        else odd = std::fma(q[(size_t)g * hd + d], x, odd);
      }
      s[(size_t)g * ld + j] = (even + odd) * scale;
    }
}

void scores_f16(const uint16_t* kt, int stride, int n, const float* q, int G, int hd, float scale, float* s, int ld) {
  for (int g = 0; g < G;) {
    const int c = G - g < 4 ? G - g : 4;
    const float* qg = q + (size_t)g * hd;
    float* sg = s + (size_t)g * ld;
    switch (c) {
      case 1: scores_block<1>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 2: scores_block<2>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 3: scores_block<3>(kt, stride, n, qg, hd, scale, sg, ld); break;
      default: scores_block<4>(kt, stride, n, qg, hd, scale, sg, ld); break;
    }
    g += c;
  }
}

void accum_f16(const uint16_t* v, int n, const float* p, int ld, int G, int hd, float* out) {
  for (int j = 0; j < n; j++) {
    const uint16_t* vj = v + (size_t)j * hd;
    for (int g = 0; g < G; g++) axpy_f16(p[(size_t)g * ld + j], vj, out + (size_t)g * hd, hd);
  }
}

void round_f16(float* x, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  for (; i < n; i++) x[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

const AttentionKernels kAvx2 = {scores_f16, axpy_f16, accum_f16, round_f16};

}  // namespace

const AttentionKernels& attention_kernels_avx2_impl() { return kAvx2; }

}  // namespace stepq
