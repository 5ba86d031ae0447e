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

// The grouped (GQA) kernels equal their one-head counterparts bit for bit on every ISA, and
// agree with the scalar reference, for odd head sizes, group sizes and key counts.
TEST(AttentionKernels, GroupedKernelsEqualPerHeadCalls) {
  std::vector<const AttentionKernels*> impls = {&attention_kernels_scalar(), attention_kernels_avx2(),
                                                attention_kernels_avx512()};
  std::mt19937 rng(8);
  std::normal_distribution<float> nd;
  for (int hd : {1, 17, 64, 80, 128, 256})
    for (int G : {1, 3, 7})
      for (int n : {1, 5, 16, 33}) {
        const int ld = n + 3;
        std::vector<uint16_t> k((size_t)n * hd), v((size_t)n * hd);
        for (auto& x : k) x = fp32_to_fp16(nd(rng));
        for (auto& x : v) x = fp32_to_fp16(nd(rng));
        std::vector<float> q((size_t)G * hd), p((size_t)G * ld);
        for (auto& x : q) x = fp16_to_fp32(fp32_to_fp16(nd(rng)));
        for (auto& x : p) x = std::uniform_real_distribution<float>(0, 1)(rng);
        std::vector<float> s_ref((size_t)G * ld, 0.0f), out_ref((size_t)G * hd, 0.25f);
        attention_kernels_scalar().scores_f16(k.data(), n, q.data(), G, hd, 0.125f, s_ref.data(), ld);
        attention_kernels_scalar().accum_f16(v.data(), n, p.data(), ld, G, hd, out_ref.data());
        for (const AttentionKernels* impl : impls) {
          if (!impl) continue;
          std::vector<float> s((size_t)G * ld, 0.0f), out((size_t)G * hd, 0.25f), out1 = out;
          impl->scores_f16(k.data(), n, q.data(), G, hd, 0.125f, s.data(), ld);
          impl->accum_f16(v.data(), n, p.data(), ld, G, hd, out.data());
          for (int g = 0; g < G; g++) {
            for (int j = 0; j < n; j++) {
              const float one = impl->dot_f16(&k[(size_t)j * hd], &q[(size_t)g * hd], hd) * 0.125f;
              ASSERT_EQ(std::memcmp(&s[(size_t)g * ld + j], &one, 4), 0) << "hd=" << hd << " G=" << G << " j=" << j;
              EXPECT_NEAR(s[(size_t)g * ld + j], s_ref[(size_t)g * ld + j], 1e-4 * std::sqrt((double)hd));
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
