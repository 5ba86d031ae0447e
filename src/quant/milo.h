// MiLo (arXiv 2504.02658; DESIGN.md §4): a 3-bit HQQ base plus a low-rank compensator U·V fitted
// to what quantization lost, refined by alternating the two: quantize W − U·V, refit U, V to
// W − deq(Q) by truncated SVD, until ‖W − deq(Q) − U·V‖_F stops falling.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "quant/hqq.h"
#include "quant/lowrank.h"

namespace stepq {

struct MiloParams {
  HqqParams hqq;
  int rank = 0;             // 0: plain HQQ, no compensator
  int iters = 8;            // alternations at most (iteration 0 is the one-shot fit)
  double min_gain = 1e-3;   // stop when an alternation improves the error by less than this fraction
  SvdParams svd;
  // Storage of U and V (F16, Q8_0, Q4_0 or S3_32), or F32 to keep them as fitted. V is quantized
  // first, then U is refitted by least squares to what V̂ leaves (U = R V̂ᵀ (V̂ V̂ᵀ)⁻¹) and quantized.
  QType lowrank_type = QType::F32;
};

struct MiloResult {
  GroupQuant q;
  LowRank lr;                   // rank 0 when MiloParams::rank is 0
  double hqq_error = 0;         // ‖W − deq(HQQ(W))‖_F, no compensator
  std::vector<double> errors;   // ‖W − deq(Q) − U·V‖_F after each alternation; [0] is one-shot
  int best = 0;                 // which alternation q and lr come from
  // With a quantized lowrank_type: the stored factors (lr then holds their dequantized values)
  // and ‖W − deq(Q) − Û·V̂‖_F.
  struct {
    std::vector<uint8_t> U, V;
  } packed;
  double stored_error = 0;
  double weight_norm = 0;       // ‖W‖_F: errors / weight_norm are relative errors
};

// W is row-major (rows × cols). `log`, if set, is called after each alternation with its index and error.
MiloResult milo_quantize(const float* W, int64_t rows, int64_t cols, const MiloParams& p, ThreadPool& pool,
                         const std::function<void(int, double)>& log = {});

// Row-major rows × cols floats as rows of `type` (cols a multiple of its block size), and back.
std::vector<uint8_t> quantize_rows(const float* x, int64_t rows, int64_t cols, QType type);
void dequantize_rows(const uint8_t* q, int64_t rows, int64_t cols, QType type, float* out);

}  // namespace stepq
