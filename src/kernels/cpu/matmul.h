// y = W x for a weight in any storage format, over a batch of activation rows.
// The forward never branches on formats; this dispatch does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cpu/quant_types.h"

namespace stepq {

class ThreadPool;
struct LowRankLinear;

// A linear layer: `out` rows of `in` elements in format `type`, used in place (mmap), plus an
// optional low-rank compensator (MiLo): y = W x + U (V x) + bias.
struct Linear {
  QType type = QType::F32;
  int64_t in = 0, out = 0;
  const uint8_t* data = nullptr;   // out rows, row_stride bytes apart
  size_t row_stride = 0;           // bytes
  const float* bias = nullptr;     // (out) or nullptr
  const LowRankLinear* lowrank = nullptr;  // or nullptr
  bool valid() const { return data != nullptr; }
  size_t bytes() const;            // the weight's bytes, its compensator's included
};

// U (in = rank, out = W.out) and V (in = W.in, out = rank), each in its stored format (F16, Q8_0,
// Q4_0, S3_32): the low-rank term is two small matmuls on the quantized factors, never an f32 copy.
struct LowRankLinear {
  Linear U, V;
  int64_t rank() const { return V.out; }
};

// Scratch for quantized activations, grown on demand and then reused (no allocation in steady state).
struct MatmulScratch {
  static constexpr int kMaxActTypes = 4;
  std::vector<uint8_t> act[kMaxActTypes];  // (n_rows, row_bytes(vec_dot_type, in)) per activation type
  struct Task {
    int target;
    int64_t r0, r1;
  };
  std::vector<Task> tasks;
  std::vector<float> lowrank_t, lowrank_y;  // V x and U (V x) of compensated weights
};

// One weight of a fused matmul and where its output goes.
struct MatmulTarget {
  const Linear* W;
  float* y;
  int64_t y_stride;
};

// Gated activation applied by matmul_glu.
enum class Glu { SiLU, GeLU };

// y(n, W.out) = x(n, W.in) · Wᵀ (+ bias). Rows of x and y are contiguous with the given strides
// (in floats). The activations are first converted to the weight's vec_dot type, as llama.cpp does.
void matmul(const Linear& W, const float* x, int64_t n, int64_t x_stride, float* y, int64_t y_stride,
            ThreadPool& pool, MatmulScratch& scratch);

// Several weights that read the same input (Q, K and V), in one pool dispatch: the activations
// are converted once per vec_dot type and the rows of all weights form one task list. Each output
// is bit-identical to matmul() of its weight alone.
void matmul_multi(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t x_stride,
                  ThreadPool& pool, MatmulScratch& scratch);

// gate(n, F) = act(x · W_gateᵀ) * (x · W_upᵀ), in one dispatch: a task computes the same rows of
// both weights and applies the activation to them while they are in cache; `up` is scratch.
// Bit-identical to two matmul() calls followed by swiglu()/geglu().
void matmul_glu(const Linear& W_gate, const Linear& W_up, Glu glu, const float* x, int64_t n, int64_t x_stride,
                float* gate, float* up, int64_t y_stride, ThreadPool& pool, MatmulScratch& scratch);

// One group of a grouped matmul: rows [row0, row0 + n) of the input go through W (and, for
// matmul_glu_grouped, W_up), and their outputs go to the same rows of the output. A mixture of
// experts runs every active expert over its tokens this way, in one pool dispatch, so each
// expert's weights are read once per step whatever the number of tokens routed to it.
struct MatmulGroup {
  const Linear* W = nullptr;
  const Linear* W_up = nullptr;
  int64_t row0 = 0, n = 0;
};

// Every group's W must have the same input width and activation format (the experts of one
// stacked tensor do); each group's output rows are bit-identical to matmul() on its rows alone.
void matmul_grouped(std::span<const MatmulGroup> groups, const float* x, int64_t x_stride, float* y,
                    int64_t y_stride, ThreadPool& pool, MatmulScratch& scratch);
void matmul_glu_grouped(std::span<const MatmulGroup> groups, Glu glu, const float* x, int64_t x_stride, float* gate,
                        float* up, int64_t y_stride, ThreadPool& pool, MatmulScratch& scratch);

// Row r of W as f32 (embedding lookup).
void linear_row_f32(const Linear& W, int64_t r, float* dst);

}  // namespace stepq
