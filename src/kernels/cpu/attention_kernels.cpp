#include "kernels/cpu/attention_kernels.h"

#include "base/cpu_features.h"
#include "base/fp16.h"
#include "kernels/cpu/ops.h"

namespace stepq {

// Defined in attention_kernels_avx2.cpp / _avx512.cpp.
const AttentionKernels& attention_kernels_avx2_impl();
const AttentionKernels& attention_kernels_avx512_impl();

namespace {
void scores_f16_scalar(const uint16_t* kt, int stride, int n, const float* q, int G, int hd, float scale, float* s,
                       int ld) {
  for (int g = 0; g < G; g++)
    for (int j = 0; j < n; j++) {
      float even = 0.0f, odd = 0.0f;
      for (int d = 0; d < hd; d++) {
        const float x = q[(size_t)g * hd + d] * f16_lookup(kt[(size_t)d * stride + j]);
        if (d % 2 == 0) even += x;
        else odd += x;
      }
      s[(size_t)g * ld + j] = (even + odd) * scale;
    }
}
void axpy_f16_scalar(float p, const uint16_t* v, float* out, int n) {
  for (int i = 0; i < n; i++) out[i] += p * f16_lookup(v[i]);
}
void accum_f16_scalar(const uint16_t* v, int n, const float* p, int ld, int G, int hd, float* out) {
  for (int j = 0; j < n; j++)
    for (int g = 0; g < G; g++) axpy_f16_scalar(p[(size_t)g * ld + j], v + (size_t)j * hd, out + (size_t)g * hd, hd);
}
void round_f16_scalar(float* x, int n) {
  for (int i = 0; i < n; i++) x[i] = f16_lookup(fp32_to_fp16(x[i]));
}
const AttentionKernels kScalar = {scores_f16_scalar, axpy_f16_scalar, accum_f16_scalar,
                                  round_f16_scalar};
}  // namespace

const AttentionKernels& attention_kernels_scalar() { return kScalar; }

const AttentionKernels* attention_kernels_avx2() {
  return (int)detected_isa() >= (int)Isa::Avx2 ? &attention_kernels_avx2_impl() : nullptr;
}
const AttentionKernels* attention_kernels_avx512() {
  return detected_isa() == Isa::Avx512 ? &attention_kernels_avx512_impl() : nullptr;
}

const AttentionKernels& attention_kernels() {
  static const AttentionKernels& k = active_isa() == Isa::Avx512 ? attention_kernels_avx512_impl()
                                     : active_isa() == Isa::Avx2 ? attention_kernels_avx2_impl()
                                                                 : kScalar;
  return k;
}

}  // namespace stepq
