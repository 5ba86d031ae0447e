// GCC 12 warns inside its own AVX-512 intrinsic headers (GCC bug 105593); silence it in this file only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/cpu/attention_kernels.h"

namespace stepq {
namespace {

void axpy_f16(float p, const uint16_t* v, float* out, int n) {
  const __m512 pv = _mm512_set1_ps(p);
  for (int i = 0; i < n; i += 16) {
    const int m = n - i < 16 ? n - i : 16;
    const __mmask16 mask = (__mmask16)((1u << m) - 1u);
    const __m512 vv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, v + i));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_fmadd_ps(pv, vv, _mm512_maskz_loadu_ps(mask, out + i)));
  }
}

// Sixteen keys per vector: each dimension d is one load of 16 f16 keys and one fma per query
// head (q broadcast), two accumulators per head (even and odd d) to shorten the dependency
// chain. Up to 8 heads at a time; a head's arithmetic is the same whatever the chunk.
template <int G>
void scores_block(const uint16_t* kt, int stride, int n, const float* q, int hd, float scale, float* s, int ld) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int j = 0; j < n; j += 16) {
    const int m = n - j < 16 ? n - j : 16;
    const __mmask16 mask = (__mmask16)((1u << m) - 1u);
    __m512 even[G], odd[G];
    for (int g = 0; g < G; g++) even[g] = odd[g] = _mm512_setzero_ps();
    const uint16_t* col = kt + j;
    int d = 0;
    for (; d + 2 <= hd; d += 2) {
      const __m512 k0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, col + (size_t)d * stride));
      const __m512 k1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, col + (size_t)(d + 1) * stride));
      for (int g = 0; g < G; g++) {
        even[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)g * hd + d]), k0, even[g]);
        odd[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)g * hd + d + 1]), k1, odd[g]);
      }
    }
    if (d < hd) {
      const __m512 k0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, col + (size_t)d * stride));
      for (int g = 0; g < G; g++) even[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)g * hd + d]), k0, even[g]);
    }
    for (int g = 0; g < G; g++)
      _mm512_mask_storeu_ps(s + (size_t)g * ld + j, mask, _mm512_mul_ps(_mm512_add_ps(even[g], odd[g]), sc));
  }
}

void scores_f16(const uint16_t* kt, int stride, int n, const float* q, int G, int hd, float scale, float* s, int ld) {
  for (int g = 0; g < G;) {
    const int c = G - g < 8 ? G - g : 8;
    const float* qg = q + (size_t)g * hd;
    float* sg = s + (size_t)g * ld;
    switch (c) {
      case 1: scores_block<1>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 2: scores_block<2>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 3: scores_block<3>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 4: scores_block<4>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 5: scores_block<5>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 6: scores_block<6>(kt, stride, n, qg, hd, scale, sg, ld); break;
      case 7: scores_block<7>(kt, stride, n, qg, hd, scale, sg, ld); break;
      default: scores_block<8>(kt, stride, n, qg, hd, scale, sg, ld); break;
    }
    g += c;
  }
}

// GC query heads' outputs stay in registers while the value rows stream past; each element
// gets axpy_f16's fma(p, v, out) in the same key order, so the result is bit-identical to it.
template <int NV, int GC>
void accum_block(const uint16_t* v, int n, const float* p, int ld, float* out) {
  constexpr int hd = NV * 16;
  __m512 acc[GC][NV];
  for (int g = 0; g < GC; g++)
    for (int i = 0; i < NV; i++) acc[g][i] = _mm512_loadu_ps(out + (size_t)g * hd + 16 * i);
  for (int j = 0; j < n; j++) {
    __m512 vv[NV];
    for (int i = 0; i < NV; i++) vv[i] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(v + (size_t)j * hd + 16 * i)));
    for (int g = 0; g < GC; g++) {
      const __m512 pv = _mm512_set1_ps(p[(size_t)g * ld + j]);
      for (int i = 0; i < NV; i++) acc[g][i] = _mm512_fmadd_ps(pv, vv[i], acc[g][i]);
    }
  }
  for (int g = 0; g < GC; g++)
    for (int i = 0; i < NV; i++) _mm512_storeu_ps(out + (size_t)g * hd + 16 * i, acc[g][i]);
}

template <int NV>
void accum_nv(const uint16_t* v, int n, const float* p, int ld, int G, float* out) {
  constexpr int hd = NV * 16;
  constexpr int kMaxHeads = NV >= 24 ? 1 : 24 / NV;  // accumulators that fit in 32 registers
  int g = 0;
  for (; g + kMaxHeads <= G; g += kMaxHeads) accum_block<NV, kMaxHeads>(v, n, p + (size_t)g * ld, ld, out + (size_t)g * hd);
  if constexpr (kMaxHeads > 3) {
    for (; g + 3 <= G; g += 3) accum_block<NV, 3>(v, n, p + (size_t)g * ld, ld, out + (size_t)g * hd);
  }
  for (; g + 2 <= G; g += 2) accum_block<NV, 2>(v, n, p + (size_t)g * ld, ld, out + (size_t)g * hd);
  for (; g < G; g++) accum_block<NV, 1>(v, n, p + (size_t)g * ld, ld, out + (size_t)g * hd);
}

void accum_f16(const uint16_t* v, int n, const float* p, int ld, int G, int hd, float* out) {
  switch (hd) {
    case 64: return accum_nv<4>(v, n, p, ld, G, out);
    case 128: return accum_nv<8>(v, n, p, ld, G, out);
    case 256: return accum_nv<16>(v, n, p, ld, G, out);
    default: break;
  }
  for (int j = 0; j < n; j++) {
    const uint16_t* vj = v + (size_t)j * hd;
    for (int g = 0; g < G; g++) axpy_f16(p[(size_t)g * ld + j], vj, out + (size_t)g * hd, hd);
  }
}

void round_f16(float* x, int n) {
  for (int i = 0; i < n; i += 16) {
    const int m = n - i < 16 ? n - i : 16;
    const __mmask16 mask = (__mmask16)((1u << m) - 1u);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(mask, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm512_mask_storeu_ps(x + i, mask, _mm512_cvtph_ps(h));
  }
}

const AttentionKernels kAvx512 = {scores_f16, axpy_f16, accum_f16, round_f16};

}  // namespace

const AttentionKernels& attention_kernels_avx512_impl() { return kAvx512; }

}  // namespace stepq
