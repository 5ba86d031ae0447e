// Calibration-free weight quantization: round-to-nearest (RTN) and HQQ (Badri & Shaji 2023), the
// base quantizer of MiLo (DESIGN.md §4).
//
// Both are asymmetric with groups of `group` consecutive weights along a row (the input dimension,
// the reference's axis = 1): a group's codes are q = clamp(round(w·s + z), 0, 2^bits − 1) and its
// weights come back as (q − z)/s. The scale starts from the group's min/max, s = (2^bits − 1)/(max − min)
// (at most 2e4), z = −min·s. RTN stops there. HQQ then fits the zero points by the half-quadratic
// proximal loop of the reference (`optimize_weights_proximal_legacy`):
//   q = clamp(round(w·s + z)),  w_r = (q − z)/s,  w_e = shrink_p(w − w_r, β),
//   z = mean over the group of (q − (w − w_e)·s),  β ← κ·β,
// stopping when the mean |w − w_r| of the whole tensor stops falling (the zero point of that last
// step is kept), with shrink_p(x) = sign(x)·max(|x| − |x|^(p−1)/β, 0), p = 0.7, β = 10, κ = 1.01,
// at most 20 iterations. Arithmetic is float32 as the reference runs on a CPU; tools/hqq_reference.py
// is the numpy port the tests compare against. The stored group scale is d = fp16(1/s) and the zero
// fp16(z); codes are computed with the float32 s and z, as the reference does.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "kernels/cpu/quant_types.h"

namespace stepq {

class ThreadPool;

struct HqqParams {
  int bits = 3;
  int group = 64;
  // How each group's scale and zero are chosen. Rtn: from its min/max. Hqq: min/max scale, then
  // HQQ's proximal loop on the zero, as published. Mse (stepq's, not in the papers): the
  // clipping range with the least squared error on a grid (hqq_kernels.h mse_fit_group), then
  // affine least squares alternated with re-rounding; with 8-bit scale codes the zero is refitted
  // to the stored scale.
  enum class Fit { Rtn, Hqq, Mse } fit = Fit::Hqq;
  int mse_grid = 8;         // candidates per end of the range
  float mse_step = 0.06f;   // each shrinks that end by this fraction of min (max)
  int mse_ls_iters = 4;
  float lp_norm = 0.7f, beta = 10.0f, kappa = 1.01f;
  int iters = 20;
  // Precision of the stored scale d and zero z. 16: fp16 each (HQ2_64, HQ3_64, HQ3_128, HQ4_64,
  // as published). 8 (HQ3_32): per block of kMetaBlock weights an fp16 D, the block's largest
  // scale rounded up; per group an 8-bit code for d = D·2^(−c/32) (relative step 2.2%), fixed
  // before the zero loop, and one for z = c/16 − 4 (a 16th of a code), rounded after it; the
  // codes are then those of the stored d and z.
  int meta_bits = 16;
  // Symmetric codes (S3_16: bits 3, group 16; stepq's, not in the papers): no zero point to fit,
  // w = (q − 4)·d. Each group's signed scale is llama.cpp's Q3_K fit (make_q3_quants: the value
  // of largest magnitude at −4, then passes that move single codes while the error weighted by
  // w² falls), then quantized to a 5-bit code against the super-block of kSymBlock weights:
  // d_g = D·(c − 16), D = fp16(max / −16) with max the signed scale of largest magnitude; the
  // codes are recomputed for the stored d_g. RTN (fit = Rtn) skips the passes.
  bool symmetric = false;
};

// A quantized (rows × cols) matrix before packing: one code per weight, d and z per group
// (already rounded to fp16 values, as stored).
constexpr int kMetaBlock = 128;  // weights per fp16 D with 8-bit scale codes (HQ3_32)
constexpr int kSymBlock = 256;   // weights per fp16 D of the symmetric format (S3_16)

struct GroupQuant {
  int64_t rows = 0, cols = 0;
  int bits = 3, group = 64;
  std::vector<uint8_t> codes;  // rows·cols
  std::vector<float> d, z;     // rows·cols/group
  std::vector<uint8_t> sc, zc;  // with 8-bit scales and zeros: their codes (rows·cols/group)
  std::vector<uint16_t> D;      // and the fp16 block maxima (rows·cols/kMetaBlock)
  bool symmetric = false;       // S3_16: z = 4, sc the 5-bit scale codes, D per kSymBlock
  int iterations = 0;          // proximal steps run (0 for RTN)
  double mean_abs_error = 0;   // mean |w − w_r| of the last step (HQQ), for logs
};

// Quantizes row-major W (rows × cols, cols a multiple of p.group), rows in parallel on `pool`.
// p.fit picks RTN, HQQ (above) or stepq's least-squares fit (HqqParams::Fit::Mse).
GroupQuant hqq_quantize(const float* W, int64_t rows, int64_t cols, const HqqParams& p, ThreadPool& pool);

// dst (rows × cols) = the weights the codes stand for: (q − z)·d in float32, as the kernels see them.
void hqq_dequantize(const GroupQuant& q, float* dst);

// The packed weight format for (bits, group): S3_16, HQ3_32, HQ2_64, HQ3_64, HQ3_128 or HQ4_64; fails
// with the supported combinations otherwise.
QType hq_type(int bits, int group);

// The inverse of hq_type: the bits, group and scale/zero precision of an HQ type (HQ3_32 has 8-bit
// scale and zero codes, S3_16 is symmetric with 5-bit scale codes, the others fp16), or nullopt
// for any other type.
std::optional<HqqParams> hq_params(QType t);

// Packs q into rows of hq_type(q.bits, q.group) (rows · row_bytes bytes).
std::vector<uint8_t> hqq_pack(const GroupQuant& q);

}  // namespace stepq
