// SIMD attention inner loops against the scalar reference on awkward lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/fp16.h"
#include "kernels/cpu/attention_kernels.h"

namespace stepq {
namespace {

TEST(AttentionKernels, SimdMatchesScalar) {
  const AttentionKernels& ref = attention_kernels_scalar();
  std::vector<const AttentionKernels*> impls = {attention_kernels_avx2(), attention_kernels_avx512()};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (int n : {1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 128, 256, 257}) {
    std::vector<uint16_t> k(n), v(n);
    std::vector<float> q(n);
    for (int i = 0; i < n; i++) {
      k[i] = fp32_to_fp16(nd(rng));
      v[i] = fp32_to_fp16(nd(rng));
      q[i] = fp16_to_fp32(fp32_to_fp16(nd(rng)));
    }
    const float want = ref.dot_f16(k.data(), q.data(), n);
    double mag = 0;
    for (int i = 0; i < n; i++) mag += std::fabs(q[i] * fp16_to_fp32(k[i]));
    std::vector<float> out_ref(n, 0.5f);
    ref.axpy_f16(0.3f, v.data(), out_ref.data(), n);
    for (const AttentionKernels* impl : impls) {
      if (!impl) continue;
      EXPECT_NEAR(impl->dot_f16(k.data(), q.data(), n), want, 1e-6 * mag + 1e-7) << "n=" << n;
      std::vector<float> out(n, 0.5f);
      impl->axpy_f16(0.3f, v.data(), out.data(), n);
      for (int i = 0; i < n; i++) EXPECT_NEAR(out[i], out_ref[i], 1e-6) << "n=" << n << " i=" << i;
    }
  }
}

}  // namespace
}  // namespace stepq
