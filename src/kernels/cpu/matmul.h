// y = W x for a weight in any storage format, over a batch of activation rows.
// The forward never branches on formats; this dispatch does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/quant_types.h"

namespace stepq {

class ThreadPool;

// A linear layer: `out` rows of `in` elements in format `type`, used in place (mmap).
struct Linear {
  QType type = QType::F32;
  int64_t in = 0, out = 0;
  const uint8_t* data = nullptr;   // out rows, row_stride bytes apart
  size_t row_stride = 0;           // bytes
  const float* bias = nullptr;     // (out) or nullptr
  bool valid() const { return data != nullptr; }
  size_t bytes() const { return row_stride * (size_t)out; }
};

// Scratch for quantized activations, grown on demand and then reused (no allocation in steady state).
struct MatmulScratch {
  std::vector<uint8_t> act;       // (n_rows, row_bytes(vec_dot_type, in))
};

// y(n, W.out) = x(n, W.in) · Wᵀ (+ bias). Rows of x and y are contiguous with the given strides
// (in floats). The activations are first converted to the weight's vec_dot type, as llama.cpp does.
void matmul(const Linear& W, const float* x, int64_t n, int64_t x_stride, float* y, int64_t y_stride,
            ThreadPool& pool, MatmulScratch& scratch);

// Row r of W as f32 (embedding lookup).
void linear_row_f32(const Linear& W, int64_t r, float* dst);

}  // namespace stepq
