// Element-wise and per-row operations of the forward, with llama.cpp's numerics where they
// matter for logits parity (../shared/reference/architectures.md §5).
#pragma once
#include <cstdint>

namespace stepq {

// y = x / sqrt(mean(x^2) + eps) * w, sum of squares in double (as ggml). y may alias x.
void rms_norm(const float* x, const float* w, float* y, int n, float eps);

// Rotary embedding of one head vector in place. cos/sin hold n_rot/2 angles' values.
void rope_norm(float* x, const float* cos, const float* sin, int n_rot);  // pairs (2i, 2i+1)
void rope_neox(float* x, const float* cos, const float* sin, int n_rot);  // pairs (i, i + n_rot/2)
// cos/sin of pos * base^(-2i/n_rot), i < n_rot/2, built like ggml (repeated f32 multiply).
void rope_angles(int pos, float base, int n_rot, float* cos, float* sin);

// x = softmax(x) in place, as ggml: max subtracted, exp, sum in double, times (float)(1/sum).
void softmax(float* x, int n);

// out = silu(gate) * up  (SwiGLU); out may alias gate.
void swiglu(const float* gate, const float* up, float* out, int n);
// out = gelu_tanh(gate) * up with ggml's f16 table for |x| < 10 (GeGLU); out may alias gate.
void geglu(const float* gate, const float* up, float* out, int n);

// f16 -> f32 through a 64K-entry table (fast on any CPU).
float f16_lookup(uint16_t h);

}  // namespace stepq
