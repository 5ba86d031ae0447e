// Internal: the per-ISA kernel tables behind vec_dot / quantize_row (quant_types.h).
//
// Each ISA file (quant_dot_avx2.cpp, quant_dot_avx512.cpp, hq_dot_*.cpp) fills the entries it
// speeds up; the rest keep the scalar reference. The AVX-512 table starts from the AVX2 one, so
// it only overrides where 512-bit / VNNI code pays. Tests index a table directly to check every
// ISA the machine has, whatever STEPQ_ISA says.
//
// ISA files include this header but must not call the inline helpers of quant_types.h
// (qtype_info, row_bytes): an ISA-compiled copy of an inline function could be the one the
// linker keeps for baseline code.
#pragma once
#include <cstdint>

#include "base/cpu_features.h"
#include "kernels/cpu/quant_types.h"

namespace stepq {

// dot(weight row, activation row in the weight's vec_dot_type), n elements.
using VecDotFn = float (*)(int64_t n, const void* w, const void* a);
// out[t·out_stride + r] = dot(weight row r, activation row t) for r < rows, t < cols: rows
// w_stride bytes apart, activation rows a_stride bytes apart. Each output must be bit-identical
// to the same table's VecDotFn on that pair (batch invariance), so a tile kernel runs, per
// (row, token) pair, exactly the operations of the vec_dot it sits beside; it only shares the
// weight unpacking across tokens and the activation loads across rows.
using VecDotTileFn = void (*)(int64_t n, const void* w, size_t w_stride, int64_t rows, const void* a,
                              size_t a_stride, int64_t cols, float* out, int64_t out_stride);
// Activation row (n floats) to a vec_dot_type.
using QuantizeRowFn = void (*)(const float* src, void* dst, int64_t n);

struct DotTable {
  VecDotFn vec_dot[kQTypeIdLimit] = {};            // by weight type id; null: no kernel
  // By weight type id; null: dot_tile loops over vec_dot. A registration that replaces a
  // vec_dot entry must replace or clear the tile entry with it (they must agree bit for bit).
  VecDotTileFn vec_dot_tile[kQTypeIdLimit] = {};
  QuantizeRowFn quantize_row[kQTypeIdLimit] = {};  // by activation type id; null: none
};

void register_quant_kernels_avx2(DotTable& t);
void register_quant_kernels_avx512(DotTable& t);  // call after the AVX2 registration
// The HQ family and S3_32 (hq_dot_avx2.cpp, hq_dot_avx512.cpp): each after its ISA's
// register_quant_kernels_*.
void register_hq_kernels_avx2(DotTable& t);
void register_hq_kernels_avx512(DotTable& t);

// The complete table for `isa` (scalar entries, then that ISA's overrides). For an ISA above
// detected_isa() it is the detected ISA's table.
const DotTable& dot_table(Isa isa);

// The tile product of VecDotTileFn through table `t`: its tile kernel for type `type`, or a loop
// over its vec_dot where there is none. n must be a multiple of the block size.
void dot_tile(const DotTable& t, QType type, int64_t n, const void* w, size_t w_stride, int64_t rows,
              const void* a, size_t a_stride, int64_t cols, float* out, int64_t out_stride);

}  // namespace stepq
