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

#include "quant/hqq_kernels.h"
#include "quant/hqq_simd.h"

namespace stepq {

namespace {

// |x|^e for the 16 lanes of ax (> 0, normal) in double precision, rounded once to float: the
// same float libm's powf gives (it is correctly rounded in all but rare cases, and so is this,
// with about 1e-14 relative error before the rounding).
// log2(x): x = m·2^k with m in [0.75, 1.5), ln m = 2·atanh(t), t = (m−1)/(m+1), |t| ≤ 0.2.
// 2^y: y = n + f, f in [−0.5, 0.5], 2^f = e^(f·ln 2) by its Taylor series to degree 13.
// Both polynomials are Horner chains, latency-bound: the two halves of the 16 lanes (8 doubles
// each) run through every operation side by side, fully unrolled, so that the CPU overlaps
// their chains (the same operations per lane as one half at a time).

// 1/j! for j = 0..13, at compile time: computed in a loop at run time (GCC did not fold it),
// its 13 scalar divisions per call were 60% of the quantizer's time.
struct InvFactorials {
  double c[14];
  constexpr InvFactorials() : c{} {
    c[0] = 1;
    for (int j = 1; j < 14; j++) c[j] = c[j - 1] / j;
  }
};
constexpr InvFactorials kInvFact;

struct Pd2 {
  __m512d a, b;
};

inline Pd2 log2_pd(Pd2 x) {
  Pd2 m{_mm512_getmant_pd(x.a, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src), _mm512_getmant_pd(x.b, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src)};
  Pd2 k{_mm512_getexp_pd(x.a), _mm512_getexp_pd(x.b)};
  const __m512d one = _mm512_set1_pd(1.0), half = _mm512_set1_pd(0.5), lim = _mm512_set1_pd(1.5);
  const __mmask8 big_a = _mm512_cmp_pd_mask(m.a, lim, _CMP_GE_OQ), big_b = _mm512_cmp_pd_mask(m.b, lim, _CMP_GE_OQ);
  m.a = _mm512_mask_mul_pd(m.a, big_a, m.a, half);
  m.b = _mm512_mask_mul_pd(m.b, big_b, m.b, half);
  k.a = _mm512_mask_add_pd(k.a, big_a, k.a, one);
  k.b = _mm512_mask_add_pd(k.b, big_b, k.b, one);
  const Pd2 t{_mm512_div_pd(_mm512_sub_pd(m.a, one), _mm512_add_pd(m.a, one)),
              _mm512_div_pd(_mm512_sub_pd(m.b, one), _mm512_add_pd(m.b, one))};
  const Pd2 t2{_mm512_mul_pd(t.a, t.a), _mm512_mul_pd(t.b, t.b)};
  Pd2 p{_mm512_set1_pd(1.0 / 19), _mm512_set1_pd(1.0 / 19)};
#pragma GCC unroll 8
  for (int j = 17; j >= 3; j -= 2) {
    const __m512d cj = _mm512_set1_pd(1.0 / j);
    p.a = _mm512_fmadd_pd(p.a, t2.a, cj);
    p.b = _mm512_fmadd_pd(p.b, t2.b, cj);
  }
  p.a = _mm512_fmadd_pd(p.a, t2.a, one);
  p.b = _mm512_fmadd_pd(p.b, t2.b, one);
  const __m512d two = _mm512_set1_pd(2.0), log2e = _mm512_set1_pd(1.4426950408889634074);
  const Pd2 ln_m{_mm512_mul_pd(_mm512_mul_pd(p.a, t.a), two), _mm512_mul_pd(_mm512_mul_pd(p.b, t.b), two)};
  return {_mm512_fmadd_pd(ln_m.a, log2e, k.a), _mm512_fmadd_pd(ln_m.b, log2e, k.b)};
}

inline Pd2 exp2_pd(Pd2 y) {
  const __m512d hi = _mm512_set1_pd(1000.0), lo = _mm512_set1_pd(-1000.0), ln2 = _mm512_set1_pd(0.69314718055994530942);
  y.a = _mm512_max_pd(_mm512_min_pd(y.a, hi), lo);
  y.b = _mm512_max_pd(_mm512_min_pd(y.b, hi), lo);
  const Pd2 n{_mm512_roundscale_pd(y.a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
              _mm512_roundscale_pd(y.b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  const Pd2 g{_mm512_mul_pd(_mm512_sub_pd(y.a, n.a), ln2), _mm512_mul_pd(_mm512_sub_pd(y.b, n.b), ln2)};
  const double* c = kInvFact.c;
  Pd2 p{_mm512_set1_pd(c[13]), _mm512_set1_pd(c[13])};
#pragma GCC unroll 13
  for (int j = 12; j >= 0; j--) {
    const __m512d cj = _mm512_set1_pd(c[j]);
    p.a = _mm512_fmadd_pd(p.a, g.a, cj);
    p.b = _mm512_fmadd_pd(p.b, g.b, cj);
  }
  return {_mm512_scalef_pd(p.a, n.a), _mm512_scalef_pd(p.b, n.b)};
}

inline __m512 pow_ps(__m512 ax, float e) {
  const __m512d ve = _mm512_set1_pd((double)e);
  const Pd2 x{_mm512_cvtps_pd(_mm512_castps512_ps256(ax)),
              _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ax), 1)))};
  const Pd2 l = log2_pd(x);
  const Pd2 r = exp2_pd({_mm512_mul_pd(ve, l.a), _mm512_mul_pd(ve, l.b)});
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(r.a)), _mm512_cvtpd_ps(r.b), 1);
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

// mse_fit_group's candidate error, 16 weights at a time (groups that are multiples of 16).
float candidate_error_avx512(const float* w, int64_t G, float lo, float a, float inv, float max_v) {
  if (G % 16 != 0) return scalar_candidate_error(w, G, lo, a, inv, max_v);
  const __m512 vlo = _mm512_set1_ps(lo), va = _mm512_set1_ps(a), vinv = _mm512_set1_ps(inv);
  const __m512 vmax = _mm512_set1_ps(max_v), zero = _mm512_setzero_ps();
  __m512 acc = _mm512_setzero_ps();
  for (int64_t k = 0; k < G; k += 16) {
    const __m512 wv = _mm512_loadu_ps(w + k);
    __m512 c = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(wv, vlo), vinv),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    c = _mm512_min_ps(_mm512_max_ps(c, zero), vmax);
    const __m512 r = _mm512_sub_ps(wv, _mm512_fmadd_ps(c, va, vlo));
    acc = _mm512_fmadd_ps(r, r, acc);
  }
  return _mm512_reduce_add_ps(acc);
}

double mse_fit_avx512_impl(const float* w, int64_t G, float max_v, int grid, float step, int ls_iters, float* s,
                           float* z) {
  return mse_fit_group_with(w, G, max_v, grid, step, ls_iters, s, z, candidate_error_avx512);
}

}  // namespace

HqqStepFn hqq_step_avx512() { return proximal_step_avx512; }

MseFitFn mse_fit_avx512() { return mse_fit_avx512_impl; }

}  // namespace stepq
