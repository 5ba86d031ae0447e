// AVX-512 HQQ proximal step (hqq_kernels.h's hqq_proximal_step, 16 weights at a time). The
// rounding, clamping, division and zero-point sum are those of the scalar step; |x|^(p−1) is
// computed as 2^((p−1)·log2|x|) in double and rounded to float, instead of libm's powf (what
// dominated the quantizer's time). A float-precision power (1e-7 relative) was not enough: HQQ's
// loop amplifies such differences into other end points for a few groups per tensor.
// Accumulation is in double as in the scalar step, in another order.
// GCC 12's AVX-512 intrinsics seed unused lanes with a self-initialised "undefined" vector and
// then warn about it (GCC bug 105593, fixed in GCC 13): silence only that, only here.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "quant/hqq_simd.h"

namespace stepq {

namespace {

// |x|^e for the 16 lanes of ax (> 0, normal) in double precision, rounded once to float: the
// same float libm's powf gives (it is correctly rounded in all but rare cases, and so is this,
// with about 1e-14 relative error before the rounding).
// log2(x): x = m·2^k with m in [0.75, 1.5), ln m = 2·atanh(t), t = (m−1)/(m+1), |t| ≤ 0.2.
inline __m512d log2_pd(__m512d x) {
  __m512d m = _mm512_getmant_pd(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
  __m512d k = _mm512_getexp_pd(x);
  const __mmask8 big = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.5), _CMP_GE_OQ);
  m = _mm512_mask_mul_pd(m, big, m, _mm512_set1_pd(0.5));
  k = _mm512_mask_add_pd(k, big, k, _mm512_set1_pd(1.0));
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d t = _mm512_div_pd(_mm512_sub_pd(m, one), _mm512_add_pd(m, one));
  const __m512d t2 = _mm512_mul_pd(t, t);
  __m512d p = _mm512_set1_pd(1.0 / 19);
  for (int j = 17; j >= 3; j -= 2) p = _mm512_fmadd_pd(p, t2, _mm512_set1_pd(1.0 / j));
  p = _mm512_fmadd_pd(p, t2, one);
  const __m512d ln_m = _mm512_mul_pd(_mm512_mul_pd(p, t), _mm512_set1_pd(2.0));
  return _mm512_fmadd_pd(ln_m, _mm512_set1_pd(1.4426950408889634074), k);
}

// 2^y: y = n + f, f in [−0.5, 0.5], 2^f = e^(f·ln 2) by its Taylor series to degree 13.
inline __m512d exp2_pd(__m512d y) {
  y = _mm512_max_pd(_mm512_min_pd(y, _mm512_set1_pd(1000.0)), _mm512_set1_pd(-1000.0));
  const __m512d n = _mm512_roundscale_pd(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512d g = _mm512_mul_pd(_mm512_sub_pd(y, n), _mm512_set1_pd(0.69314718055994530942));
  double c[14];
  c[0] = 1;
  for (int j = 1; j < 14; j++) c[j] = c[j - 1] / j;
  __m512d p = _mm512_set1_pd(c[13]);
  for (int j = 12; j >= 0; j--) p = _mm512_fmadd_pd(p, g, _mm512_set1_pd(c[j]));
  return _mm512_scalef_pd(p, n);
}

inline __m512 pow_ps(__m512 ax, float e) {
  const __m512d ve = _mm512_set1_pd((double)e);
  const __m512d lo = exp2_pd(_mm512_mul_pd(ve, log2_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(ax)))));
  const __m512d hi = exp2_pd(
      _mm512_mul_pd(ve, log2_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ax), 1))))));
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
}

double proximal_step_avx512(const float* w, int64_t G, float max_v, float s, float* z, float inv_beta, float p) {
  const float z0 = *z;
  const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(z0), vmax = _mm512_set1_ps(max_v);
  const __m512 zero = _mm512_setzero_ps(), vib = _mm512_set1_ps(inv_beta);
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  __m512d zsum = _mm512_setzero_pd(), esum = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + 16 <= G; i += 16) {
    const __m512 wv = _mm512_loadu_ps(w + i);
    // q = clamp(round(w·s + z)), with the product rounded before the sum (no FMA), as the scalar step.
    __m512 q = _mm512_roundscale_ps(_mm512_add_ps(_mm512_mul_ps(wv, vs), vz), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_min_ps(_mm512_max_ps(q, zero), vmax);
    const __m512 r = _mm512_div_ps(_mm512_sub_ps(q, vz), vs);
    const __m512 x = _mm512_sub_ps(wv, r);
    const __m512 ax = _mm512_and_ps(x, abs_mask);
    const __mmask16 nz = _mm512_cmp_ps_mask(ax, zero, _CMP_GT_OQ);
    const __m512 pw = pow_ps(_mm512_mask_blend_ps(nz, _mm512_set1_ps(1.0f), ax), p - 1.0f);
    __m512 m = _mm512_sub_ps(ax, _mm512_mul_ps(vib, pw));
    m = _mm512_maskz_max_ps(nz, m, zero);  // 0 where x == 0 or the shrink crosses zero
    const __m512 we = _mm512_or_ps(m, _mm512_andnot_ps(abs_mask, x));  // copysign(m, x)
    const __m512 zt = _mm512_sub_ps(q, _mm512_mul_ps(_mm512_sub_ps(wv, we), vs));
    zsum = _mm512_add_pd(zsum, _mm512_cvtps_pd(_mm512_castps512_ps256(zt)));
    zsum = _mm512_add_pd(zsum, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(zt), 1))));
    esum = _mm512_add_pd(esum, _mm512_cvtps_pd(_mm512_castps512_ps256(ax)));
    esum = _mm512_add_pd(esum, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ax), 1))));
  }
  double zs = _mm512_reduce_add_pd(zsum), es = _mm512_reduce_add_pd(esum);
  for (; i < G; i++) {  // groups are multiples of 16 in practice; kept for completeness
    float q = w[i] * s + z0;
    q = __builtin_nearbyintf(q);
    q = q < 0 ? 0 : (q > max_v ? max_v : q);
    const float r = (q - z0) / s, x = w[i] - r, ax = __builtin_fabsf(x);
    float we = 0;
    if (ax > 0) {
      const float mm = ax - inv_beta * __builtin_powf(ax, p - 1.0f);
      if (mm > 0) we = __builtin_copysignf(mm, x);
    }
    zs += (double)(q - (w[i] - we) * s);
    es += (double)ax;
  }
  *z = (float)(zs / (double)G);
  return es;
}

}  // namespace

HqqStepFn hqq_step_avx512() { return proximal_step_avx512; }

}  // namespace stepq
