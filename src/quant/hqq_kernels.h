// The per-group arithmetic of HQQ (hqq.h), float32 in the reference's operation order.
#pragma once
#include <cmath>
#include <cstdint>

namespace stepq {

// A weight's code: round to nearest (ties to even), clamped to [0, max_v].
static inline float code_of(float x, float max_v) { return std::min(std::max(std::nearbyint(x), 0.0f), max_v); }

// s = min((2^bits − 1)/(max − min), 2e4), z = −min·s.
static inline void hqq_init_group(const float* w, int64_t G, float max_v, float* s, float* z) {
  float lo = w[0], hi = w[0];
  for (int64_t i = 1; i < G; i++) {
    lo = std::min(lo, w[i]);
    hi = std::max(hi, w[i]);
  }
  const float range = hi - lo;
  float scale = range > 0 ? max_v / range : INFINITY;
  if (!(scale <= 2e4f)) scale = 2e4f;
  *s = scale;
  *z = -lo * scale;
}

// One proximal step on a group: updates *z, returns Σ|w − w_r| (with the zero before the update).
static inline double hqq_proximal_step(const float* w, int64_t G, float max_v, float s, float* z, float inv_beta,
                                       float p) {
  const float z0 = *z;
  const float e = p - 1.0f;
  double err = 0, zsum = 0;
  for (int64_t i = 0; i < G; i++) {
    const float q = code_of(w[i] * s + z0, max_v);
    const float r = (q - z0) / s;
    const float x = w[i] - r;
    const float ax = std::fabs(x);
    float we = 0;
    if (ax > 0) {
      const float m = ax - inv_beta * std::pow(ax, e);
      if (m > 0) we = std::copysign(m, x);
    }
    zsum += (double)(q - (w[i] - we) * s);
    err += (double)ax;
  }
  *z = (float)(zsum / (double)G);
  return err;
}

static inline void hqq_codes(const float* w, int64_t G, float max_v, float s, float z, uint8_t* codes) {
  for (int64_t i = 0; i < G; i++)
    codes[i] = (uint8_t)code_of(w[i] * s + z, max_v);
}

// stepq's least-squares fit of a group (HqqParams::Fit::Mse): the clipping range [lo, hi] that
// gives the smallest Σ(w − w_r)² among lo = min·(1 − step·i), hi = max·(1 − step·j) for
// i, j < grid (i = j = 0 is RTN's min/max), then up to `ls_iters` alternations of the affine
// least squares fit w ≈ a·q + b to the codes q and re-rounding, kept while they lower the error.
// Writes the scale s = 1/a and zero z = −b/a of the code = round(w·s + z) convention; returns the
// group's Σ(w − w_r)². (Weighting the error by |w| or w², as llama.cpp's K-quants do without an
// importance matrix, measured worse: docs/milo.md.)
//
// `candidate_error(w, G, lo, a, inv, max_v)` is Σ(w − (clamp(round((w − lo)·inv))·a + lo))², the
// hot loop, given by the caller so that a SIMD file can supply its own.
static inline float scalar_candidate_error(const float* w, int64_t G, float lo, float a, float inv, float max_v) {
  float e = 0;
  for (int64_t k = 0; k < G; k++) {
    const float c = code_of((w[k] - lo) * inv, max_v);
    const float r = w[k] - (c * a + lo);
    e += r * r;
  }
  return e;
}

constexpr int64_t kMseMaxGroup = 256;

template <class CandidateError>
static inline double mse_fit_group_with(const float* w, int64_t G, float max_v, int grid, float step, int ls_iters,
                                        float* s, float* z, CandidateError candidate_error) {
  float q[kMseMaxGroup], best_q[kMseMaxGroup];
  float mn = w[0], mx = w[0];
  for (int64_t i = 1; i < G; i++) {
    mn = std::min(mn, w[i]);
    mx = std::max(mx, w[i]);
  }
  if (!(mx > mn) || G > kMseMaxGroup) {  // constant group (or one too long for the buffers): RTN
    hqq_init_group(w, G, max_v, s, z);
    return 0;
  }
  float best_e = INFINITY, best_a = 0, best_b = 0;
  for (int i = 0; i < grid; i++) {
    for (int j = 0; j < grid; j++) {
      const float lo = mn * (1.0f - step * (float)i), hi = mx * (1.0f - step * (float)j);
      if (!(hi > lo)) continue;
      const float a = (hi - lo) / max_v;
      const float e = candidate_error(w, G, lo, a, max_v / (hi - lo), max_v);
      if (e < best_e) {
        best_e = e;
        best_a = a;
        best_b = lo;
      }
    }
  }
  for (int64_t k = 0; k < G; k++)
    best_q[k] = code_of((w[k] - best_b) / best_a, max_v);
  for (int it = 0; it < ls_iters; it++) {
    double qm = 0, wm = 0;
    for (int64_t k = 0; k < G; k++) {
      qm += best_q[k];
      wm += w[k];
    }
    qm /= (double)G;
    wm /= (double)G;
    double cov = 0, var = 0;
    for (int64_t k = 0; k < G; k++) {
      cov += (best_q[k] - qm) * (w[k] - wm);
      var += (best_q[k] - qm) * (best_q[k] - qm);
    }
    if (!(var > 0) || !(cov > 0)) break;
    const float a = (float)(cov / var), b = (float)(wm - cov / var * qm);
    float e = 0;
    for (int64_t k = 0; k < G; k++) {
      q[k] = code_of((w[k] - b) / a, max_v);
      const float r = w[k] - (q[k] * a + b);
      e += r * r;
    }
    if (!(e < best_e)) break;
    best_e = e;
    best_a = a;
    best_b = b;
    for (int64_t k = 0; k < G; k++) best_q[k] = q[k];
  }
  *s = 1.0f / best_a;
  *z = -best_b / best_a;
  return best_e;
}

static inline double mse_fit_group(const float* w, int64_t G, float max_v, int grid, float step, int ls_iters,
                                   float* s, float* z) {
  return mse_fit_group_with(w, G, max_v, grid, step, ls_iters, s, z, scalar_candidate_error);
}

// With the scale s fixed (to its stored value), the zero that minimises Σ(w − (q − z)/s)² for the
// codes it gives: up to `iters` alternations of z = mean(q − w·s) and re-rounding, kept while
// they lower the error.
static inline void mse_refit_zero(const float* w, int64_t G, float max_v, float s, float* z, int iters) {
  auto error = [&](float zz) {
    float e = 0;
    for (int64_t k = 0; k < G; k++) {
      const float c = code_of(w[k] * s + zz, max_v);
      const float r = w[k] * s - (c - zz);
      e += r * r;
    }
    return e;
  };
  float best = error(*z);
  for (int it = 0; it < iters; it++) {
    double sum = 0;
    for (int64_t k = 0; k < G; k++) sum += (double)(code_of(w[k] * s + *z, max_v) - w[k] * s);
    const float zz = (float)(sum / (double)G), e = error(zz);
    if (!(e < best)) break;
    best = e;
    *z = zz;
  }
}

}  // namespace stepq
