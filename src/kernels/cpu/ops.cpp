#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/fp16.h"

namespace stepq {

void rms_norm(const float* x, const float* w, float* y, int n, float eps) {
  double sum = 0.0;
  for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
  const float mean = (float)(sum / n);
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

void rope_angles(int pos, float base, int n_rot, float* cos, float* sin) {
  const float theta_scale = std::pow(base, -2.0f / (float)n_rot);
  float theta = (float)pos;
  for (int i = 0; i < n_rot / 2; i++) {
    cos[i] = std::cos(theta);
    sin[i] = std::sin(theta);
    theta *= theta_scale;
  }
}

void rope_norm(float* x, const float* cos, const float* sin, int n_rot) {
  for (int i = 0; i < n_rot / 2; i++) {
    const float x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = x0 * cos[i] - x1 * sin[i];
    x[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
  }
}

void rope_neox(float* x, const float* cos, const float* sin, int n_rot) {
  const int h = n_rot / 2;
  for (int i = 0; i < h; i++) {
    const float x0 = x[i], x1 = x[i + h];
    x[i] = x0 * cos[i] - x1 * sin[i];
    x[i + h] = x0 * sin[i] + x1 * cos[i];
  }
}

void softmax(float* x, int n) {
  float mx = -INFINITY;
  for (int j = 0; j < n; j++) mx = std::max(mx, x[j]);
  double sum = 0.0;
  for (int j = 0; j < n; j++) {
    const float e = std::exp(x[j] - mx);
    x[j] = e;
    sum += e;
  }
  const float inv = (float)(1.0 / sum);
  for (int j = 0; j < n; j++) x[j] *= inv;
}

void swiglu(const float* gate, const float* up, float* out, int n) {
  for (int i = 0; i < n; i++) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

namespace {

struct F16Tables {
  std::vector<float> to_f32;      // 65536
  std::vector<uint16_t> gelu;     // 65536: f16(gelu_tanh(f16 value))
  F16Tables() : to_f32(65536), gelu(65536) {
    constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
    constexpr float kCoefA = 0.044715f;
    for (uint32_t i = 0; i < 65536; i++) {
      const float f = fp16_to_fp32((uint16_t)i);
      to_f32[i] = f;
      gelu[i] = fp32_to_fp16(0.5f * f * (1.0f + std::tanh(kSqrt2OverPi * f * (1.0f + kCoefA * f * f))));
    }
  }
};
const F16Tables& tables() {
  static const F16Tables t;
  return t;
}

}  // namespace

float f16_lookup(uint16_t h) { return tables().to_f32[h]; }

void geglu(const float* gate, const float* up, float* out, int n) {
  const F16Tables& t = tables();
  for (int i = 0; i < n; i++) {
    const float g = gate[i];
    float y;
    if (g <= -10.0f) y = 0.0f;
    else if (g >= 10.0f) y = g;
    else y = t.to_f32[t.gelu[fp32_to_fp16(g)]];
    out[i] = y * up[i];
  }
}

}  // namespace stepq
