// The HQ weight formats and S3_32 (quant_types.h, quant_blocks.h) beyond what the generic
// format tests (quant_test.cpp, gemm_test.cpp, matmul_test.cpp) cover:
//
// - hq_pack_row → dequantize_row gives (code − fp16(z))·fp16(d) exactly, and the bytes follow
//   the documented layout; codes that do not fit are refused.
// - quantize_weight_row (F16, Q4_0, Q8_0, S3_32): within half a step of the input (a step at
//   the clamped end), Q4_0 / S3_32 bytes equal a straightforward re-implementation of ggml's
//   reference rule; other types are refused.
// - HQ3_32 (per-32 byte-coded scales and zeros): hq3_32_pack_row → dequantize_row gives the
//   documented formula for every sc and zc code, the bytes follow the layout, every ISA's
//   vec_dot matches the scalar reference, which matches a double-precision dot.
// - matmul over HQ Linears against the dequantized weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dispatch.h"
#include "kernels/cpu/quant_types.h"
#include "quant_test_util.h"

namespace stepq {
namespace {

const QType kHQTypes[] = {QType::HQ2_64, QType::HQ3_64, QType::HQ3_128, QType::HQ4_64};

float f16v(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

struct Packed {
  std::vector<uint8_t> codes, bytes;
  std::vector<float> d, z;
};

Packed random_packed(QType t, int64_t n, std::mt19937& rng) {
  const int bits = test::hq_bits(t), bs = qtype_info(t).block_size;
  Packed p;
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  std::uniform_real_distribution<float> zero(-0.5f, (float)(1 << bits) - 0.5f), scale(-0.05f, 0.05f);
  for (int64_t i = 0; i < n; i++) p.codes.push_back((uint8_t)code(rng));
  for (int64_t g = 0; g < n / bs; g++) p.d.push_back(scale(rng)), p.z.push_back(zero(rng));
  p.bytes.assign(row_bytes(t, n), 0xA5);  // packing must not depend on what was there
  hq_pack_row(t, p.codes.data(), p.d.data(), p.z.data(), n, p.bytes.data());
  return p;
}

TEST(HqTypes, PackThenDequantizeIsExact) {
  std::mt19937 rng(11);
  for (QType t : kHQTypes) {
    const int bs = qtype_info(t).block_size;
    for (int64_t n : {64, 128, 640, 896, 1024, 4864}) {
      if (n % bs) continue;
      const Packed p = random_packed(t, n, rng);
      std::vector<float> y(n);
      dequantize_row(t, p.bytes.data(), y.data(), n);
      for (int64_t i = 0; i < n; i++) {
        const float want = ((float)p.codes[i] - f16v(p.z[i / bs])) * f16v(p.d[i / bs]);
        ASSERT_EQ(y[i], want) << qtype_name((uint32_t)t) << " n=" << n << " i=" << i;
      }
    }
  }
}

// The bytes themselves, read by the index formulas of quant_blocks.h.
TEST(HqTypes, PackedBytesFollowLayout) {
  std::mt19937 rng(12);
  for (QType t : kHQTypes) {
    const int bs = qtype_info(t).block_size, ts = qtype_info(t).type_size;
    const int64_t n = 3 * bs;
    const Packed p = random_packed(t, n, rng);
    for (int64_t g = 0; g < n / bs; g++) {
      const uint8_t* b = p.bytes.data() + g * ts;
      uint16_t d16, z16;
      std::memcpy(&d16, b, 2);
      std::memcpy(&z16, b + 2, 2);
      EXPECT_EQ(d16, fp32_to_fp16(p.d[g]));
      EXPECT_EQ(z16, fp32_to_fp16(p.z[g]));
      for (int i = 0; i < bs; i++) {
        int q;
        if (t == QType::HQ2_64) {
          q = (b[4 + i % 16] >> (2 * (i / 16))) & 3;
        } else if (t == QType::HQ4_64) {
          q = (b[4 + i % 32] >> (4 * (i / 32))) & 15;
        } else {  // 24-byte chunks: ql[16], qh[8] (a little-endian uint64, bit e = third bit of e)
          const uint8_t* c = b + 4 + 24 * (i / 64);
          const int e = i % 64;
          uint64_t qh;
          std::memcpy(&qh, c + 16, 8);
          q = ((c[e % 16] >> (2 * (e / 16))) & 3) | (int)((qh >> e) & 1) << 2;
        }
        ASSERT_EQ(q, p.codes[g * bs + i]) << qtype_name((uint32_t)t) << " block " << g << " element " << i;
      }
    }
  }
}

TEST(HqTypes, PackRefusesBadCodesAndTypes) {
  std::vector<uint8_t> codes(128, 1), out(256);
  std::vector<float> d(2, 0.01f), z(2, 1.0f);
  for (QType t : kHQTypes) {
    const int bits = test::hq_bits(t);
    std::vector<uint8_t> bad = codes;
    bad[77] = (uint8_t)(1 << bits);
    EXPECT_THROW(hq_pack_row(t, bad.data(), d.data(), z.data(), 128, out.data()), Error) << qtype_name((uint32_t)t);
    bad[77] = 255;
    EXPECT_THROW(hq_pack_row(t, bad.data(), d.data(), z.data(), 128, out.data()), Error) << qtype_name((uint32_t)t);
    EXPECT_NO_THROW(hq_pack_row(t, codes.data(), d.data(), z.data(), 128, out.data()));
  }
  EXPECT_THROW(hq_pack_row(QType::HQ3_64, codes.data(), d.data(), z.data(), 96, out.data()), Error);  // not whole blocks
  EXPECT_THROW(hq_pack_row(QType::Q4_0, codes.data(), d.data(), z.data(), 64, out.data()), Error);
  EXPECT_THROW(hq_pack_row(QType::S3_32, codes.data(), d.data(), z.data(), 64, out.data()), Error);
}

// ---------------------------------------------------------------------------------------------
// HQ3_32

struct PackedHQ3_32 {
  std::vector<uint8_t> codes, sc, zc, bytes;
  std::vector<uint16_t> D;
};

// Random codes; sc and zc the codes 0..255 in a random order, repeated (so that any 256 groups,
// n = 8192, hold every value of each); D of either sign, magnitudes like real models'.
PackedHQ3_32 random_hq3_32(int64_t n, std::mt19937& rng) {
  PackedHQ3_32 p;
  std::uniform_int_distribution<int> code(0, 7), byte(0, 255);
  std::uniform_real_distribution<float> mag(1e-3f, 3e-2f);
  for (int64_t i = 0; i < n; i++) p.codes.push_back((uint8_t)code(rng));
  std::vector<uint8_t> perm_s(256), perm_z(256);
  for (int c = 0; c < 256; c++) perm_s[c] = perm_z[c] = (uint8_t)c;
  std::shuffle(perm_s.begin(), perm_s.end(), rng);
  std::shuffle(perm_z.begin(), perm_z.end(), rng);
  for (int64_t g = 0; g < n / 32; g++) p.sc.push_back(perm_s[g % 256]), p.zc.push_back(perm_z[g % 256]);
  for (int64_t b = 0; b < n / 128; b++) p.D.push_back(fp32_to_fp16((byte(rng) & 1 ? -1 : 1) * mag(rng)));
  p.bytes.assign(row_bytes(QType::HQ3_32, n), 0xA5);  // packing must not depend on what was there
  hq3_32_pack_row(p.codes.data(), p.sc.data(), p.zc.data(), p.D.data(), n, p.bytes.data());
  return p;
}

TEST(HqTypes, Hq3_32ScaleTableIsExp2) {
  for (int c = 0; c < 256; c++) ASSERT_EQ(hq3_32_scale((uint8_t)c), std::exp2f(-c / 32.0f)) << c;
  EXPECT_EQ(hq3_32_scale(0), 1.0f);
  EXPECT_EQ(hq3_32_scale(32), 0.5f);
}

TEST(HqTypes, Hq3_32TypeInfo) {
  EXPECT_EQ(qtype_from_name("HQ3_32"), QType::HQ3_32);
  EXPECT_EQ((uint32_t)QType::HQ3_32, 53u);
  EXPECT_EQ(qtype_info(QType::HQ3_32).block_size, 128);
  EXPECT_EQ(qtype_info(QType::HQ3_32).vec_dot_type, QType::Q8_0);
  EXPECT_EQ(row_bytes(QType::HQ3_32, 896), 7u * 58u);
  EXPECT_EQ(sizeof(BlockHQ3_32), 58u);
}

// (q − (zc/16 − 4))·(D·2^(−sc/32)), in float as written, for every sc and zc code.
TEST(HqTypes, Hq3_32DequantizeIsTheFormula) {
  std::mt19937 rng(13);
  for (int64_t n : {128, 896, 8192}) {
    const PackedHQ3_32 p = random_hq3_32(n, rng);
    std::vector<float> y(n);
    dequantize_row(QType::HQ3_32, p.bytes.data(), y.data(), n);
    for (int64_t i = 0; i < n; i++) {
      const int64_t g = i / 32;
      const float d = fp16_to_fp32(p.D[i / 128]) * std::exp2f(-(int)p.sc[g] / 32.0f);
      const float z = (float)p.zc[g] / 16.0f - 4.0f;
      ASSERT_EQ(y[i], ((float)p.codes[i] - z) * d) << "n=" << n << " i=" << i;
    }
  }
}

TEST(HqTypes, Hq3_32PackedBytesFollowLayout) {
  std::mt19937 rng(14);
  const int64_t n = 3 * 128;
  const PackedHQ3_32 p = random_hq3_32(n, rng);
  for (int64_t b = 0; b < n / 128; b++) {
    const uint8_t* blk = p.bytes.data() + b * 58;
    uint16_t D;
    std::memcpy(&D, blk, 2);
    EXPECT_EQ(D, p.D[b]);
    for (int g = 0; g < 4; g++) {
      EXPECT_EQ(blk[2 + g], p.sc[4 * b + g]);
      EXPECT_EQ(blk[6 + g], p.zc[4 * b + g]);
    }
    for (int i = 0; i < 128; i++) {  // chunk i / 64 at byte 10: ql[16], qh[8] as in HQ3_64
      const uint8_t* c = blk + 10 + 24 * (i / 64);
      const int e = i % 64;
      uint64_t qh;
      std::memcpy(&qh, c + 16, 8);
      const int q = ((c[e % 16] >> (2 * (e / 16))) & 3) | (int)((qh >> e) & 1) << 2;
      ASSERT_EQ(q, p.codes[b * 128 + i]) << "block " << b << " element " << i;
    }
  }
}

TEST(HqTypes, Hq3_32PackRefusesBadInput) {
  std::vector<uint8_t> codes(256, 5), sc(8, 0), zc(8, 64), out(2 * 58);
  std::vector<uint16_t> D(2, fp32_to_fp16(0.01f));
  EXPECT_NO_THROW(hq3_32_pack_row(codes.data(), sc.data(), zc.data(), D.data(), 256, out.data()));
  codes[200] = 8;
  EXPECT_THROW(hq3_32_pack_row(codes.data(), sc.data(), zc.data(), D.data(), 256, out.data()), Error);
  codes[200] = 0;
  EXPECT_THROW(hq3_32_pack_row(codes.data(), sc.data(), zc.data(), D.data(), 192, out.data()), Error);
  std::vector<float> d(4, 0.01f), z(4, 1.0f);
  EXPECT_THROW(hq_pack_row(QType::HQ3_32, codes.data(), d.data(), z.data(), 256, out.data()), Error);
}

// Every ISA's vec_dot (indexed through dot_table, whatever STEPQ_ISA says) against the scalar
// reference, and the reference against a double-precision dot of the dequantized rows, with
// the tolerance of the generic dot tests (quant_test.cpp).
TEST(HqTypes, Hq3_32VecDotMatchesReference) {
  std::mt19937 rng(15);
  std::vector<Isa> isas = {Isa::Scalar};
  for (Isa isa : {Isa::Avx2, Isa::Avx512})
    if ((int)isa <= (int)detected_isa()) isas.push_back(isa);
  for (int64_t n : {128, 384, 896, 1536, 4864, 8960}) {
    for (int rep = 0; rep < 3; rep++) {
      const PackedHQ3_32 p = random_hq3_32(n, rng);
      const std::vector<float> x = test::random_activations(n, rng);
      std::vector<uint8_t> a(row_bytes(QType::Q8_0, n));
      quantize_row(QType::Q8_0, x.data(), a.data(), n);
      std::vector<float> wf(n), af(n);
      dequantize_row(QType::HQ3_32, p.bytes.data(), wf.data(), n);
      dequantize_row(QType::Q8_0, a.data(), af.data(), n);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; i++) exact += (double)wf[i] * af[i], mag += std::fabs((double)wf[i] * af[i]);
      const float ref = vec_dot_ref(QType::HQ3_32, n, p.bytes.data(), a.data());
      ASSERT_NEAR(ref, exact, 1e-5 * mag + 1e-30) << "n=" << n;
      for (Isa isa : isas) {
        const VecDotFn f = dot_table(isa).vec_dot[(uint32_t)QType::HQ3_32];
        ASSERT_NE(f, nullptr) << isa_name(isa);
        EXPECT_NEAR(f(n, p.bytes.data(), a.data()), ref, 1e-5 * mag + 1e-30) << isa_name(isa) << " n=" << n;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// S3_16

struct PackedS3_16 {
  std::vector<uint8_t> codes, sc, bytes;
  std::vector<uint16_t> D;
};

// Random codes; scale codes 0..31 in a random order, repeated (any 32 groups, n = 512, hold every
// value); D of either sign, magnitudes like real models'.
PackedS3_16 random_s3_16(int64_t n, std::mt19937& rng) {
  PackedS3_16 p;
  std::uniform_int_distribution<int> code(0, 7), byte(0, 255);
  std::uniform_real_distribution<float> mag(1e-4f, 3e-3f);
  for (int64_t i = 0; i < n; i++) p.codes.push_back((uint8_t)code(rng));
  std::vector<uint8_t> perm(32);
  for (int c = 0; c < 32; c++) perm[c] = (uint8_t)c;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int64_t g = 0; g < n / 16; g++) p.sc.push_back(perm[g % 32]);
  for (int64_t b = 0; b < n / 256; b++) p.D.push_back(fp32_to_fp16((byte(rng) & 1 ? -1 : 1) * mag(rng)));
  p.bytes.assign(row_bytes(QType::S3_16, n), 0xA5);  // packing must not depend on what was there
  s3_16_pack_row(p.codes.data(), p.sc.data(), p.D.data(), n, p.bytes.data());
  return p;
}

TEST(HqTypes, S3_16TypeInfo) {
  EXPECT_EQ(qtype_from_name("S3_16"), QType::S3_16);
  EXPECT_EQ((uint32_t)QType::S3_16, 54u);
  EXPECT_EQ(qtype_info(QType::S3_16).block_size, 256);
  EXPECT_EQ(qtype_info(QType::S3_16).vec_dot_type, QType::Q8_0);
  EXPECT_EQ(row_bytes(QType::S3_16, 1536), 6u * 108u);
  EXPECT_EQ(sizeof(BlockS3_16), 108u);
  EXPECT_EQ(8.0 * 108 / 256, 3.375);
}

// (q − 4)·(D·(sc − 16)), in float as written, for every scale code.
TEST(HqTypes, S3_16DequantizeIsTheFormula) {
  std::mt19937 rng(23);
  for (int64_t n : {256, 1536, 8960}) {
    const PackedS3_16 p = random_s3_16(n, rng);
    std::vector<float> y(n);
    dequantize_row(QType::S3_16, p.bytes.data(), y.data(), n);
    for (int64_t i = 0; i < n; i++) {
      const float d = fp16_to_fp32(p.D[i / 256]) * (float)((int)p.sc[i / 16] - 16);
      ASSERT_EQ(y[i], ((float)p.codes[i] - 4.0f) * d) << "n=" << n << " i=" << i;
    }
  }
}

TEST(HqTypes, S3_16PackedBytesFollowLayout) {
  std::mt19937 rng(24);
  const int64_t n = 3 * 256;
  const PackedS3_16 p = random_s3_16(n, rng);
  for (int64_t b = 0; b < n / 256; b++) {
    const uint8_t* blk = p.bytes.data() + b * 108;
    uint16_t D, sh;
    std::memcpy(&D, blk, 2);
    std::memcpy(&sh, blk + 10, 2);
    EXPECT_EQ(D, p.D[b]);
    for (int g = 0; g < 16; g++) {  // low nibble of sl[g % 8] for g < 8, high for g >= 8; bit g of sh
      const int c = ((blk[2 + g % 8] >> (4 * (g / 8))) & 15) | (((sh >> g) & 1) << 4);
      EXPECT_EQ(c, p.sc[16 * b + g]) << "block " << b << " group " << g;
    }
    for (int i = 0; i < 256; i++) {  // chunk i / 64 at byte 12: ql[16], qh[8] as in HQ3_64
      const uint8_t* c = blk + 12 + 24 * (i / 64);
      const int e = i % 64;
      uint64_t qh;
      std::memcpy(&qh, c + 16, 8);
      const int q = ((c[e % 16] >> (2 * (e / 16))) & 3) | (int)((qh >> e) & 1) << 2;
      ASSERT_EQ(q, p.codes[b * 256 + i]) << "block " << b << " element " << i;
    }
  }
}

TEST(HqTypes, S3_16PackRefusesBadInput) {
  std::vector<uint8_t> codes(512, 5), sc(32, 16), out(2 * 108);
  std::vector<uint16_t> D(2, fp32_to_fp16(0.001f));
  EXPECT_NO_THROW(s3_16_pack_row(codes.data(), sc.data(), D.data(), 512, out.data()));
  codes[300] = 8;
  EXPECT_THROW(s3_16_pack_row(codes.data(), sc.data(), D.data(), 512, out.data()), Error);
  codes[300] = 0;
  sc[17] = 32;
  EXPECT_THROW(s3_16_pack_row(codes.data(), sc.data(), D.data(), 512, out.data()), Error);
  sc[17] = 31;
  EXPECT_THROW(s3_16_pack_row(codes.data(), sc.data(), D.data(), 384, out.data()), Error);
  std::vector<float> d(8, 0.01f), z(8, 4.0f);
  EXPECT_THROW(hq_pack_row(QType::S3_16, codes.data(), d.data(), z.data(), 512, out.data()), Error);
}

TEST(HqTypes, S3_16VecDotMatchesReference) {
  std::mt19937 rng(25);
  std::vector<Isa> isas = {Isa::Scalar};
  for (Isa isa : {Isa::Avx2, Isa::Avx512})
    if ((int)isa <= (int)detected_isa()) isas.push_back(isa);
  for (int64_t n : {256, 768, 1536, 4864, 8960}) {
    for (int rep = 0; rep < 3; rep++) {
      const PackedS3_16 p = random_s3_16(n, rng);
      const std::vector<float> x = test::random_activations(n, rng);
      std::vector<uint8_t> a(row_bytes(QType::Q8_0, n));
      quantize_row(QType::Q8_0, x.data(), a.data(), n);
      std::vector<float> wf(n), af(n);
      dequantize_row(QType::S3_16, p.bytes.data(), wf.data(), n);
      dequantize_row(QType::Q8_0, a.data(), af.data(), n);
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < n; i++) exact += (double)wf[i] * af[i], mag += std::fabs((double)wf[i] * af[i]);
      const float ref = vec_dot_ref(QType::S3_16, n, p.bytes.data(), a.data());
      ASSERT_NEAR(ref, exact, 1e-5 * mag + 1e-30) << "n=" << n;
      for (Isa isa : isas) {
        const VecDotFn f = dot_table(isa).vec_dot[(uint32_t)QType::S3_16];
        ASSERT_NE(f, nullptr) << isa_name(isa);
        EXPECT_NEAR(f(n, p.bytes.data(), a.data()), ref, 1e-5 * mag + 1e-30) << isa_name(isa) << " n=" << n;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// quantize_weight_row

// ggml's quantize_row_q4_0_ref, written out again: max = the (first) element of largest |x|,
// d = max / −8, q = min(15, (int8)(x/d + 8.5)), byte j = q_j | q_{j+16} << 4.
std::vector<uint8_t> q4_0_bytes(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; b++) {
    const float* v = &x[32 * b];
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
      if (amax < std::fabs(v[j])) amax = std::fabs(v[j]), max = v[j];
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    const uint16_t d16 = fp32_to_fp16(d);
    out.push_back((uint8_t)(d16 & 0xFF));
    out.push_back((uint8_t)(d16 >> 8));
    for (int j = 0; j < 16; j++) {
      const int8_t lo = (int8_t)(v[j] * id + 8.5f), hi = (int8_t)(v[j + 16] * id + 8.5f);
      out.push_back((uint8_t)((lo < 15 ? lo : 15) | (hi < 15 ? hi : 15) << 4));
    }
  }
  return out;
}

// The same rule with 3 bits (d = max / −4, q = min(7, (int)(x/d + 4.5))) in S3_32's layout.
std::vector<uint8_t> s3_32_bytes(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; b++) {
    const float* v = &x[32 * b];
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
      if (amax < std::fabs(v[j])) amax = std::fabs(v[j]), max = v[j];
    const float d = max / -4;
    const float id = d ? 1.0f / d : 0.0f;
    uint8_t blk[14] = {};
    const uint16_t d16 = fp32_to_fp16(d);
    std::memcpy(blk, &d16, 2);
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) {
      int q = (int)(v[j] * id + 4.5f);
      q = q < 7 ? q : 7;
      blk[2 + j % 8] |= (uint8_t)((q & 3) << (2 * (j / 8)));
      qh |= (uint32_t)(q >> 2) << j;
    }
    std::memcpy(blk + 10, &qh, 4);
    out.insert(out.end(), blk, blk + 14);
  }
  return out;
}

std::vector<float> weight_like(int64_t n, std::mt19937& rng, int variant) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  if (variant == 1)  // an all-zero block and a block whose extremes tie in magnitude
    for (int j = 0; j < 32; j++) x[j] = 0.0f, x[32 + j] = j % 2 ? 0.05f : -0.05f;
  if (variant == 2)  // outliers
    for (int64_t i = 0; i < n; i += 37) x[i] *= 30.0f;
  return x;
}

TEST(HqTypes, QuantizeWeightRowWithinHalfAStep) {
  std::mt19937 rng(21);
  for (QType t : {QType::Q4_0, QType::Q8_0, QType::S3_32, QType::F16}) {
    for (int64_t n : {32, 96, 640, 896}) {
      for (int variant = 0; variant < 3; variant++) {
        if (variant == 1 && n < 64) continue;
        const std::vector<float> x = weight_like(n, rng, variant);
        std::vector<uint8_t> q(row_bytes(t, n));
        quantize_weight_row(t, x.data(), q.data(), n);
        std::vector<float> y(n);
        dequantize_row(t, q.data(), y.data(), n);
        const std::string what = std::string(qtype_name((uint32_t)t)) + " n=" + std::to_string(n) + " variant " +
                                 std::to_string(variant);
        if (t == QType::F16) {
          for (int64_t i = 0; i < n; i++) ASSERT_EQ(y[i], f16v(x[i])) << what;
          continue;
        }
        const int top = t == QType::Q4_0 ? 15 : t == QType::S3_32 ? 7 : 127;
        for (int64_t b = 0; b < n / 32; b++) {
          uint16_t d16;
          std::memcpy(&d16, &q[(size_t)b * qtype_info(t).type_size], 2);
          const double step = std::fabs((double)fp16_to_fp32(d16));
          float amax = 0;
          for (int j = 0; j < 32; j++) amax = std::fmax(amax, std::fabs(x[32 * b + j]));
          for (int j = 0; j < 32; j++) {
            const int64_t i = 32 * b + j;
            // Half a step, plus what rounding d to fp16 moves the grid (at most top codes × the
            // fp16 rounding of d), plus float slack. The symmetric 3/4-bit rules clamp the
            // far end (an element of the opposite sign to max, up to |max|) to the top code:
            // up to a whole step there.
            const double code = std::round((double)y[i] / (step ? step : 1.0));
            const bool clamped = t != QType::Q8_0 && step > 0 && std::fabs(code) == top - (top + 1) / 2;
            const double tol = (clamped ? 1.0 : 0.5) * step + (top + 1) * step * 0x1p-11 + 1e-6 * amax;
            ASSERT_NEAR(y[i], x[i], tol) << what << " i=" << i;
          }
        }
        if (t == QType::Q4_0) {
          EXPECT_EQ(q, q4_0_bytes(x)) << what;
        } else if (t == QType::S3_32) {
          EXPECT_EQ(q, s3_32_bytes(x)) << what;
        }
      }
    }
  }
}

TEST(HqTypes, QuantizeWeightRowRefusesOtherTypes) {
  std::vector<float> x(256, 0.5f);
  std::vector<uint8_t> q(4096);
  for (QType t : {QType::F32, QType::Q4_K, QType::Q8_K, QType::HQ3_64, QType::IQ4_NL}) {
    try {
      quantize_weight_row(t, x.data(), q.data(), 256);
      ADD_FAILURE() << "no error for " << qtype_name((uint32_t)t);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(qtype_name((uint32_t)t)), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(quantize_weight_row(QType::Q4_0, x.data(), q.data(), 48), Error);
}

// ---------------------------------------------------------------------------------------------
// matmul over HQ weights (through the active ISA's tile kernels): against a double-precision
// product of the dequantized weights with the Q8_0-quantized activations, and loosely against
// the f32 activations themselves.

TEST(HqTypes, MatmulMatchesDequantizedReference) {
  std::mt19937 rng(31);
  ThreadPool pool(2);
  MatmulScratch scratch;
  for (QType t : {QType::HQ3_64, QType::HQ3_128, QType::S3_32, QType::HQ2_64, QType::HQ4_64, QType::HQ3_32,
                  QType::S3_16}) {
    const int64_t in = t == QType::S3_16 ? 1536 : 896, out = 67, n_tok = 11;
    std::vector<uint8_t> w;
    std::vector<float> wf;  // dequantized
    for (int64_t r = 0; r < out; r++) {
      std::vector<uint8_t> row(row_bytes(t, in));
      if (t == QType::S3_32) {
        const std::vector<float> x = weight_like(in, rng, 0);
        quantize_weight_row(t, x.data(), row.data(), in);
      } else if (t == QType::HQ3_32) {
        row = random_hq3_32(in, rng).bytes;
      } else if (t == QType::S3_16) {
        row = random_s3_16(in, rng).bytes;
      } else {
        row = random_packed(t, in, rng).bytes;
      }
      w.insert(w.end(), row.begin(), row.end());
      std::vector<float> f(in);
      dequantize_row(t, row.data(), f.data(), in);
      wf.insert(wf.end(), f.begin(), f.end());
    }
    std::vector<float> x;
    for (int64_t k = 0; k < n_tok; k++) {
      const auto v = test::random_activations(in, rng);
      x.insert(x.end(), v.begin(), v.end());
    }
    const Linear L{t, in, out, w.data(), row_bytes(t, in), nullptr};
    std::vector<float> y((size_t)n_tok * out);
    matmul(L, x.data(), n_tok, in, y.data(), out, pool, scratch);
    std::vector<uint8_t> aq(row_bytes(QType::Q8_0, in));
    std::vector<float> af(in);
    for (int64_t k = 0; k < n_tok; k++) {
      quantize_row(QType::Q8_0, &x[k * in], aq.data(), in);
      dequantize_row(QType::Q8_0, aq.data(), af.data(), in);
      for (int64_t r = 0; r < out; r++) {
        double ref = 0, mag = 0, ref_f32 = 0, mag_f32 = 0;
        for (int64_t i = 0; i < in; i++) {
          ref += (double)wf[r * in + i] * af[i];
          mag += std::fabs((double)wf[r * in + i] * af[i]);
          ref_f32 += (double)wf[r * in + i] * x[k * in + i];
          mag_f32 += std::fabs((double)wf[r * in + i] * x[k * in + i]);
        }
        const float got = y[k * out + r];
        ASSERT_NEAR(got, ref, 1e-5 * mag + 1e-30) << qtype_name((uint32_t)t) << " token " << k << " row " << r;
        // Q8_0 activations: each within half of amax/127 of the f32 value.
        ASSERT_NEAR(got, ref_f32, 2e-2 * mag_f32) << qtype_name((uint32_t)t) << " token " << k << " row " << r;
      }
    }
  }
}

}  // namespace
}  // namespace stepq
