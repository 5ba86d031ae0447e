#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "base/thread_pool.h"

namespace stepq {

namespace {

// Cache budgets of one task (a core's L2 is 1 MiB on the Zen 5 this was tuned on, 2 MiB on
// recent Intel cores): the task's weight rows and one block of quantized activation rows
// stay in L2 while the tile kernel sweeps the tokens past each group of rows. Larger token
// blocks amortize the kernels' per-row unpacking over more tokens (measured best at about
// half of L2 for the activations).
constexpr size_t kTaskWeightBytes = 384 << 10;
constexpr size_t kTokenBlockBytes = 512 << 10;
constexpr int64_t kMaxTokenBlock = 128;
constexpr int64_t kRowAlign = 4;  // a multiple of every tile kernel's row count

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

}  // namespace

void linear_row_f32(const Linear& W, int64_t r, float* dst) {
  dequantize_row(W.type, W.data + (size_t)r * W.row_stride, dst, W.in);
}

void matmul(const Linear& W, const float* x, int64_t n, int64_t x_stride, float* y, int64_t y_stride,
            ThreadPool& pool, MatmulScratch& scratch) {
  if (n <= 0) return;
  const QType act_type = qtype_info(W.type).vec_dot_type;
  const size_t act_row = row_bytes(act_type, W.in);
  if (scratch.act.size() < act_row * (size_t)n) scratch.act.resize(act_row * (size_t)n);
  uint8_t* act = scratch.act.data();

  // 1. Activations to the weight's vec_dot type (Q8_0 / Q8_1 / Q8_K / F16 / BF16 / F32).
  pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; t++) quantize_row(act_type, x + t * x_stride, act + (size_t)t * act_row, W.in);
  });

  // 2. Blocks of weight rows, one task each: the block is read from memory once and stays in
  //    cache while every token is dotted with it, a block of tokens at a time.
  //    A few large tasks per thread: enough to balance, few enough that the shared task counter
  //    (a cache line both cores write) is not touched every few kilobytes of weights. With many
  //    tokens a task is also capped to what fits in L2, so each block of activations is
  //    fetched once per task rather than once per row.
  const int64_t tasks = (int64_t)pool.size() * 4;
  int64_t rows_per_task = std::max<int64_t>(8, (W.out + tasks - 1) / tasks);
  if (n > 1) rows_per_task = std::min<int64_t>(rows_per_task, std::max<size_t>(1, kTaskWeightBytes / W.row_stride));
  rows_per_task = round_up(rows_per_task, kRowAlign);
  const int64_t token_block =
      std::clamp<int64_t>((int64_t)(kTokenBlockBytes / act_row) / 4 * 4, 4, kMaxTokenBlock);
  pool.parallel_for(W.out, rows_per_task, [&](int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < n; t0 += token_block) {
      const int64_t nt = std::min(token_block, n - t0);
      vec_dot_tile(W.type, W.in, W.data + (size_t)r0 * W.row_stride, W.row_stride, r1 - r0,
                   act + (size_t)t0 * act_row, act_row, nt, y + t0 * y_stride + r0, y_stride);
    }
    if (W.bias)
      for (int64_t t = 0; t < n; t++)
        for (int64_t r = r0; r < r1; r++) y[t * y_stride + r] += W.bias[r];
  });
}

}  // namespace stepq
