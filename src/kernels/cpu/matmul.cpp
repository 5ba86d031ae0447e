#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "base/thread_pool.h"

namespace stepq {

void linear_row_f32(const Linear& W, int64_t r, float* dst) {
  dequantize_row(W.type, W.data + (size_t)r * W.row_stride, dst, W.in);
}

void matmul(const Linear& W, const float* x, int64_t n, int64_t x_stride, float* y, int64_t y_stride,
            ThreadPool& pool, MatmulScratch& scratch) {
  const QType act_type = qtype_info(W.type).vec_dot_type;
  const size_t act_row = row_bytes(act_type, W.in);
  if (scratch.act.size() < act_row * (size_t)n) scratch.act.resize(act_row * (size_t)n);
  uint8_t* act = scratch.act.data();

  // 1. Activations to the weight's vec_dot type (Q8_0 / Q8_1 / Q8_K / F16 / BF16 / F32).
  pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) quantize_row(act_type, x + t * x_stride, act + (size_t)t * act_row, W.in);
  });

  // 2. Blocks of weight rows: each block is read from memory once and stays in cache while
  //    every activation row is dotted with it.
  //    A few large tasks per thread: enough to balance, few enough that the shared task counter
  //    (a cache line both cores write) is not touched every few kilobytes of weights.
  const int64_t tasks = (int64_t)pool.size() * 4;
  const int64_t rows_per_task = std::max<int64_t>(8, (W.out + tasks - 1) / tasks);
  pool.parallel_for(W.out, rows_per_task, [&](int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < n; t++) {
      const uint8_t* a = act + (size_t)t * act_row;
      float* yt = y + t * y_stride;
      for (int64_t r = r0; r < r1; r++)
        yt[r] = vec_dot(W.type, W.in, W.data + (size_t)r * W.row_stride, a);
    }
    if (W.bias)
      for (int64_t t = 0; t < n; t++)
        for (int64_t r = r0; r < r1; r++) y[t * y_stride + r] += W.bias[r];
  });
}

}  // namespace stepq
