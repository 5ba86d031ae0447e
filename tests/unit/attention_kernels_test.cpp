// SIMD attention inner loops against the scalar reference on awkward lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/fp16.h"
#include "kernels/cpu/attention_kernels.h"

namespace stepq {
namespace {

TEST(AttentionKernels, AxpyMatchesScalar) {
  const AttentionKernels& ref = attention_kernels_scalar();
  std::vector<const AttentionKernels*> impls = {attention_kernels_avx2(), attention_kernels_avx512()};
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (int n : {1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 128, 256, 257}) {
    std::vector<uint16_t> v(n);
    for (int i = 0; i < n; i++) v[i] = fp32_to_fp16(nd(rng));
    std::vector<float> out_ref(n, 0.5f);
    ref.axpy_f16(0.3f, v.data(), out_ref.data(), n);
    for (const AttentionKernels* impl : impls) {
      if (!impl) continue;
      std::vector<float> out(n, 0.5f);
      impl->axpy_f16(0.3f, v.data(), out.data(), n);
      for (int i = 0; i < n; i++) EXPECT_NEAR(out[i], out_ref[i], 1e-6) << "n=" << n << " i=" << i;
    }
  }
}

TEST(AttentionKernels, RoundF16EqualsSoftwareConversion) {
  std::mt19937 rng(9);
  std::vector<float> x;
  for (float v : {0.0f, -0.0f, 1e-8f, -3e-6f, 6.1e-5f, 65504.0f, 65519.0f, 65520.0f, -1e6f, 0.33333334f}) x.push_back(v);
  for (int i = 0; i < 1000; i++) x.push_back(std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng), (int)(rng() % 40) - 28));
  for (const AttentionKernels* impl : {&attention_kernels_scalar(), attention_kernels_avx2(), attention_kernels_avx512()}) {
    if (!impl) continue;
    for (int n : {1, 7, 16, 33, (int)x.size()}) {
      std::vector<float> y(x.begin(), x.begin() + n);
      impl->round_f16(y.data(), n);
      for (int i = 0; i < n; i++) {
        const float want = fp16_to_fp32(fp32_to_fp16(x[i]));
        ASSERT_EQ(std::memcmp(&y[i], &want, 4), 0) << x[i];
      }
    }
  }
}

// Scores against transposed keys and the grouped p·v accumulation: SIMD against the scalar
// reference; a head's scores do not depend on how many heads are computed together; the grouped
// accumulation equals axpy_f16 per key bit for bit. Odd head sizes, group sizes, key counts
// and page strides.
TEST(AttentionKernels, GroupedKernels) {
  std::vector<const AttentionKernels*> impls = {&attention_kernels_scalar(), attention_kernels_avx2(),
                                                attention_kernels_avx512()};
  std::mt19937 rng(8);
  std::normal_distribution<float> nd;
  for (int hd : {1, 17, 64, 80, 128, 256})
    for (int G : {1, 3, 7, 11})
      for (int n : {1, 5, 16, 33}) {
        const int ld = n + 3, stride = n + (hd % 5);
        std::vector<uint16_t> kt((size_t)hd * stride), v((size_t)n * hd);
        for (auto& x : kt) x = fp32_to_fp16(nd(rng));
        for (auto& x : v) x = fp32_to_fp16(nd(rng));
        std::vector<float> q((size_t)G * hd), p((size_t)G * ld);
        for (auto& x : q) x = fp16_to_fp32(fp32_to_fp16(nd(rng)));
        for (auto& x : p) x = std::uniform_real_distribution<float>(0, 1)(rng);
        std::vector<float> s_ref((size_t)G * ld, 0.0f), out_ref((size_t)G * hd, 0.25f);
        attention_kernels_scalar().scores_f16(kt.data(), stride, n, q.data(), G, hd, 0.125f, s_ref.data(), ld);
        attention_kernels_scalar().accum_f16(v.data(), n, p.data(), ld, G, hd, out_ref.data());
        for (const AttentionKernels* impl : impls) {
          if (!impl) continue;
          std::vector<float> s((size_t)G * ld, 0.0f), out((size_t)G * hd, 0.25f), out1 = out;
          impl->scores_f16(kt.data(), stride, n, q.data(), G, hd, 0.125f, s.data(), ld);
          impl->accum_f16(v.data(), n, p.data(), ld, G, hd, out.data());
          for (int g = 0; g < G; g++) {
            std::vector<float> one(n);
            impl->scores_f16(kt.data(), stride, n, &q[(size_t)g * hd], 1, hd, 0.125f, one.data(), n);
            ASSERT_EQ(std::memcmp(&s[(size_t)g * ld], one.data(), n * 4), 0) << "hd=" << hd << " G=" << G;
            for (int j = 0; j < n; j++) {
              double mag = 0;
              for (int d = 0; d < hd; d++) mag += std::fabs(q[(size_t)g * hd + d] * fp16_to_fp32(kt[(size_t)d * stride + j]));
              EXPECT_NEAR(s[(size_t)g * ld + j], s_ref[(size_t)g * ld + j], 1e-6 * mag + 1e-7);
              impl->axpy_f16(p[(size_t)g * ld + j], &v[(size_t)j * hd], &out1[(size_t)g * hd], hd);
            }
          }
          ASSERT_EQ(std::memcmp(out.data(), out1.data(), out.size() * 4), 0) << "hd=" << hd << " G=" << G;
          for (size_t i = 0; i < out.size(); i++) EXPECT_NEAR(out[i], out_ref[i], 1e-4 * n);
        }
      }
}

}  // namespace
}  // namespace stepq
