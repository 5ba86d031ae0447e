// Internal, for the ISA files only (quant_dot_avx2.cpp, quant_dot_avx512.cpp): covers a
// rows × cols tile product (VecDotTileFn, quant_dispatch.h) with fixed-size register tiles.
//
// A kernel is a struct K with
//   template <int R, int C> static void run(int64_t n, const uint8_t* w, size_t w_stride,
//                                           const uint8_t* a, size_t a_stride, float* out, int64_t out_stride);
// computing out[c·out_stride + r] for r < R, c < C. R and C are compile-time so the per-pair
// accumulators live in registers; the edges of the rows × cols range use smaller instances of
// the same kernel, and vec_dot is its 1×1 instance. The per-pair operations of a kernel do not
// depend on R and C, which is what makes every instance bit-identical to vec_dot.
//
// A kernel may also unpack weights ahead ("packing"), for when many tokens reuse them:
//   using Packed = ...;                 // one unit of kUnit elements of one row, unpacked
//   static constexpr int kUnit;
//   static void pack(const uint8_t* row, int64_t unit, Packed& p);
//   template <int R, int C> static void run_packed(int64_t n, const uint8_t* w, size_t w_stride,
//                                                  const Packed* p /* [unit·R + r] */, const uint8_t* a,
//                                                  size_t a_stride, float* out, int64_t out_stride);
// pack covers the n / kUnit whole units of a row; run_packed reads those from p and anything
// after them from w. It must do exactly what run does per pair, reading what run would have
// computed.
//
// And it may take a whole matrix-vector product (one token, all rows) itself:
//   template <int R1> static bool matvec(int64_t n, const uint8_t* w, size_t w_stride, int64_t rows,
//                                        const uint8_t* a, float* out /* [rows] */);
// for when part of its per-pair work depends on the token alone and is worth doing once for all
// rows. It returns false where it does not apply (gemm_tile then runs its R1 × 1 tiles), and its
// outputs must equal run<1, 1>'s bit for bit.
//
// Everything is in an anonymous namespace: each ISA file compiles its own copy with its flags.
#pragma once
#include <cstddef>
#include <cstdint>

// For the helpers of tile kernels whose arrays of vectors must stay in registers: they are
// only registers once inlined into the kernel, which GCC does not always choose for large
// bodies.
#define STEPQ_ALWAYS_INLINE inline __attribute__((always_inline))
#define STEPQ_ALWAYS_INLINE_LAMBDA __attribute__((always_inline))

namespace stepq {
namespace {

// Packed rows live on the stack: this many bytes at most (rows longer than that are not packed).
constexpr size_t kMaxPackedBytes = 160 << 10;

template <class K>
concept PackingKernel = requires { typename K::Packed; };
template <class K>
concept MatvecKernel = requires { &K::template matvec<1>; };

// Runs K<R, c> for c = cols exactly (1 <= cols <= C).
template <class K, int R, int C>
inline void gemm_cols_tail(int64_t cols, int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as,
                           float* out, int64_t os) {
  if constexpr (C >= 1) {
    if (cols == C) K::template run<R, C>(n, w, ws, a, as, out, os);
    else gemm_cols_tail<K, R, C - 1>(cols, n, w, ws, a, as, out, os);
  }
}

template <class K, int R, int C>
inline void gemm_cols_tail_packed(int64_t cols, int64_t n, const uint8_t* w, size_t ws, const typename K::Packed* p,
                                  const uint8_t* a, size_t as, float* out, int64_t os) {
  if constexpr (C >= 1) {
    if (cols == C) K::template run_packed<R, C>(n, w, ws, p, a, as, out, os);
    else gemm_cols_tail_packed<K, R, C - 1>(cols, n, w, ws, p, a, as, out, os);
  }
}

// R weight rows against all cols tokens, C at a time: the R rows stay in L1 while the
// activations stream past them. With more than one tile of tokens, a packing kernel unpacks
// the R rows once for all of them.
template <class K, int R, int C>
inline void gemm_row_block(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, int64_t cols,
                           float* out, int64_t os, int64_t rows_after) {
  if constexpr (PackingKernel<K>) {
    using P = typename K::Packed;
    constexpr int64_t kMaxUnits = (int64_t)(kMaxPackedBytes / (sizeof(P) * R));
    const int64_t units = n / K::kUnit;
    if (cols > C && units > 0 && units <= kMaxUnits) {
      // The next rows (up to R of the rows_after that follow), towards L2 while these are
      // packed and used: packing reads rows in bursts the hardware prefetchers do not run far
      // enough ahead of, and with few tokens the multiply work is too short to hide DRAM
      // latency (measured up to 2x slower at 8 tokens without this).
      const int64_t next_rows = rows_after < R ? rows_after : R;
      const size_t unit_bytes = ws / (size_t)units;
      P packed[kMaxUnits * R];
      for (int64_t i = 0; i < units; i++)
        for (int r = 0; r < R; r++) {
          if (r < next_rows)
            for (size_t off = 0; off < unit_bytes + 63; off += 64)
              __builtin_prefetch(w + (R + r) * ws + i * unit_bytes + off, 0, 2);
          K::pack(w + r * ws, i, packed[i * R + r]);
        }
      int64_t c = 0;
      for (; c + C <= cols; c += C) K::template run_packed<R, C>(n, w, ws, packed, a + c * as, as, out + c * os, os);
      if (c < cols) gemm_cols_tail_packed<K, R, C - 1>(cols - c, n, w, ws, packed, a + c * as, as, out + c * os, os);
      return;
    }
  }
  int64_t c = 0;
  for (; c + C <= cols; c += C) K::template run<R, C>(n, w, ws, a + c * as, as, out + c * os, os);
  if (c < cols) gemm_cols_tail<K, R, C - 1>(cols - c, n, w, ws, a + c * as, as, out + c * os, os);
}

template <class K, int R, int C>
inline void gemm_rows_tail(int64_t rows, int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as,
                           int64_t cols, float* out, int64_t os) {
  if constexpr (R >= 1) {
    if (rows == R) gemm_row_block<K, R, C>(n, w, ws, a, as, cols, out, os, 0);
    else gemm_rows_tail<K, R - 1, C>(rows, n, w, ws, a, as, cols, out, os);
  }
}

// The VecDotTileFn of kernel K with R × C tiles for several tokens and R1 × 1 tiles for a
// single one (matrix-vector: the weights stream from memory once whatever the tile, and the
// hardware prefetchers favour some numbers of concurrent row streams over others).
template <class K, int R, int C, int R1>
void gemm_tile(int64_t n, const void* wv, size_t ws, int64_t rows, const void* av, size_t as, int64_t cols,
               float* out, int64_t os) {
  const uint8_t* w = (const uint8_t*)wv;
  const uint8_t* a = (const uint8_t*)av;
  if (cols == 1) {
    if constexpr (MatvecKernel<K>)
      if (K::template matvec<R1>(n, w, ws, rows, a, out)) return;
    int64_t r = 0;
    for (; r + R1 <= rows; r += R1) K::template run<R1, 1>(n, w + r * ws, ws, a, as, out + r, os);
    if (r < rows) gemm_rows_tail<K, R1 - 1, 1>(rows - r, n, w + r * ws, ws, a, as, 1, out + r, os);
    return;
  }
  if (cols <= 2 * C) {
    // A few tokens (speculative verification, small batches): R1 row streams at a time as in the
    // matrix-vector case, each row unpacked once per C tokens while it is in L1. Register-tile
    // packing (below) only pays from about 2C tokens on.
    for (int64_t r = 0; r + R1 <= rows; r += R1)
      for (int64_t c = 0; c < cols; c += C)
        gemm_cols_tail<K, R1, C>(cols - c < C ? cols - c : C, n, w + r * ws, ws, a + c * as, as, out + c * os + r, os);
    if (const int64_t r = rows / R1 * R1; r < rows)
      for (int64_t c = 0; c < cols; c += C)
        gemm_rows_tail<K, R1 - 1, C>(rows - r, n, w + r * ws, ws, a + c * as, as, cols - c < C ? cols - c : C,
                                     out + c * os + r, os);
    return;
  }
  int64_t r = 0;
  for (; r + R <= rows; r += R) gemm_row_block<K, R, C>(n, w + r * ws, ws, a, as, cols, out + r, os, rows - r - R);
  if (r < rows) gemm_rows_tail<K, R - 1, C>(rows - r, n, w + r * ws, ws, a, as, cols, out + r, os);
}

// vec_dot as the 1×1 instance.
template <class K>
float gemm_dot(int64_t n, const void* w, const void* a) {
  float out;
  K::template run<1, 1>(n, (const uint8_t*)w, 0, (const uint8_t*)a, 0, &out, 0);
  return out;
}

}  // namespace
}  // namespace stepq
