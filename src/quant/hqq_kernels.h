// The per-group arithmetic of HQQ (hqq.h), float32 in the reference's operation order.
#pragma once
#include <cmath>
#include <cstdint>

namespace stepq {

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
    const float q = std::min(std::max(std::nearbyint(w[i] * s + z0), 0.0f), max_v);
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
    codes[i] = (uint8_t)std::min(std::max(std::nearbyint(w[i] * s + z), 0.0f), max_v);
}

}  // namespace stepq
