// Internal: the SIMD versions of HQQ's proximal step (hqq_kernels.h), picked by hqq.cpp.
#pragma once
#include <cstdint>

namespace stepq {

using HqqStepFn = double (*)(const float* w, int64_t G, float max_v, float s, float* z, float inv_beta, float p);
HqqStepFn hqq_step_avx512();

// mse_fit_group (hqq_kernels.h) compiled for AVX-512.
using MseFitFn = double (*)(const float* w, int64_t G, float max_v, int grid, float step, int ls_iters, float* s,
                           float* z);
MseFitFn mse_fit_avx512();

}  // namespace stepq
