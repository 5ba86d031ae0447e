// Weight formats, activation quantizers and dot products (src/kernels/cpu/quant_types.h).
//
// - Every SIMD dot kernel of every ISA this CPU has (indexed directly through dot_table, so
//   STEPQ_ISA does not hide any) against the scalar vec_dot_ref, on random rows of awkward
//   lengths, unaligned rows and extreme codes.
// - vec_dot_ref against a double-precision dot of the dequantized rows.
// - Activation quantizers: round trips, SIMD bytes identical to scalar, ties to even.
// - Against llama.cpp itself (tests/data/quant, made by tools/make_quant_reference.py from
//   llama-cpp-python's ggml): activation bytes identical, dot products close.
// - Dequantization of hand-packed blocks against the §2 formulas (bit-exactness against PyPI
//   gguf is tests/py/test_dequant_gguf.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <vector>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/fp16.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dispatch.h"
#include "kernels/cpu/quant_types.h"
#include "quant_test_util.h"
#include "test_models.h"

namespace stepq {
namespace {

using test::random_activations;
using test::random_weight_row;
using test::fp16_fields;
using test::put_u16;

const QType kStorageTypes[] = {QType::F32,    QType::F16,    QType::BF16,    QType::Q4_0,   QType::Q4_1,
                               QType::Q5_0,   QType::Q5_1,   QType::Q8_0,    QType::IQ4_NL, QType::Q2_K,
                               QType::Q3_K,   QType::Q4_K,   QType::Q5_K,    QType::Q6_K,   QType::HQ2_64,
                               QType::HQ3_64, QType::HQ3_128, QType::HQ4_64, QType::S3_32, QType::HQ3_32,
                               QType::S3_16};
// The stepq-internal ones among them (not in the ggml reference data).
constexpr size_t kInternalStorageTypes = 7;
const QType kActivationTypes[] = {QType::F32, QType::F16,  QType::BF16,
                                  QType::Q8_0, QType::Q8_1, QType::Q8_K};

// Row lengths: 1, 3, 7, 9 blocks, the real models' widths (576, 640, 896, 1536, 4864, 8960)
// where they fit the block size, and one long row.
std::vector<int64_t> row_lengths(QType t) {
  const int bs = qtype_info(t).block_size;
  if (bs == 1) return {1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 257, 576, 1000, 4864};
  if (bs == 32) return {32, 96, 224, 288, 576, 640, 896, 4128, 4864};
  if (bs == 64) return {64, 192, 448, 576, 640, 896, 4160, 4864};
  if (bs == 128) return {128, 384, 640, 896, 1152, 1536, 4224, 4864, 8960};
  return {256, 768, 1792, 2304, 1536, 4864, 8960};
}

std::vector<Isa> simd_isas() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::Avx2, Isa::Avx512})
    if ((int)isa <= (int)detected_isa()) v.push_back(isa);
  static bool noted = false;
  if (!noted && (int)detected_isa() < (int)Isa::Avx512) {
    std::cout << "[   NOTE   ] this CPU lacks " << (detected_isa() == Isa::Scalar ? "AVX2 and " : "")
              << "AVX-512 (with VNNI, BF16): those kernels are not exercised here\n";
    noted = true;
  }
  return v;
}

std::vector<uint8_t> quantize_ref(QType vdt, const std::vector<float>& x) {
  std::vector<uint8_t> a(row_bytes(vdt, (int64_t)x.size()));
  dot_table(Isa::Scalar).quantize_row[(uint32_t)vdt](x.data(), a.data(), (int64_t)x.size());
  return a;
}

std::vector<float> dequant(QType t, const void* p, int64_t n) {
  std::vector<float> y(n);
  dequantize_row(t, p, y.data(), n);
  return y;
}

// A dot-product case: weight and activation rows, plus what an exact evaluation gives.
struct DotCase {
  QType type;
  int64_t n;
  std::vector<uint8_t> w, a;
  double exact = 0;      // Σ w·a over the dequantized rows, in double (plus Q8_1's min term)
  double magnitude = 0;  // Σ |w·a| (+ Σ |m·s|): the scale the rounding error is judged on
};

DotCase make_case(QType t, std::vector<uint8_t> w, const std::vector<float>& x) {
  DotCase c{t, (int64_t)x.size(), std::move(w), {}, 0, 0};
  const QType vdt = qtype_info(t).vec_dot_type;
  c.a = quantize_ref(vdt, x);
  const std::vector<float> wf = dequant(t, c.w.data(), c.n), af = dequant(vdt, c.a.data(), c.n);
  for (int64_t i = 0; i < c.n; i++) {
    c.exact += (double)wf[i] * af[i];
    c.magnitude += std::fabs((double)wf[i] * af[i]);
  }
  // Q4_1/Q5_1 take the min term from the fp16 s of Q8_1, not from Σ of the dequantized
  // activations: d_w·q + m pairs with d_a·q_a as d_w·d_a·Σq·q_a + m·s.
  if (vdt == QType::Q8_1) {
    const int mfield = 2;  // m follows d in both Q4_1 and Q5_1
    for (int64_t b = 0; b < c.n / 32; b++) {
      uint16_t m16, s16;
      std::memcpy(&m16, &c.w[(size_t)b * qtype_info(t).type_size + mfield], 2);
      std::memcpy(&s16, &c.a[(size_t)b * 36 + 2], 2);
      double blk_sum = 0;
      for (int j = 0; j < 32; j++) blk_sum += af[32 * b + j];
      const double m = fp16_to_fp32(m16), s = fp16_to_fp32(s16);
      c.exact += m * (s - blk_sum);
      c.magnitude += std::fabs(m * s);
    }
  }
  return c;
}

std::string describe(const DotCase& c) {
  return std::string(qtype_name((uint32_t)c.type)) + " n=" + std::to_string(c.n);
}

// Random cases for every storage type and row length, plus extreme codes.
std::vector<DotCase> all_cases() {
  std::mt19937 rng(1234);
  std::vector<DotCase> cases;
  for (QType t : kStorageTypes) {
    for (int64_t n : row_lengths(t)) cases.push_back(make_case(t, random_weight_row(t, n, rng), random_activations(n, rng)));
    if (qtype_info(t).block_size == 1) continue;
    // Extreme codes: all code bits set or clear, activations at ±127 (one block of each sign).
    const int64_t n = 2 * qtype_info(t).block_size * (qtype_info(t).block_size == 32 ? 4 : 1);
    for (uint8_t fill : {(uint8_t)0x00, (uint8_t)0xFF, (uint8_t)0x55}) {
      std::vector<uint8_t> w = random_weight_row(t, n, rng);
      std::vector<uint8_t> scales = w;
      std::memset(w.data(), fill, w.size());
      if (t == QType::Q8_0 && fill == 0xFF) std::memset(w.data(), 0x81, w.size());
      const int ts = qtype_info(t).type_size;
      for (int64_t b = 0; b < (int64_t)w.size() / ts; b++)
        for (int off : fp16_fields(t)) std::memcpy(&w[b * ts + off], &scales[b * ts + off], 2);
      std::vector<float> x(n);
      for (int64_t i = 0; i < n; i++) x[i] = (i / qtype_info(t).block_size) % 2 ? -1.0f : 1.0f;
      cases.push_back(make_case(t, std::move(w), x));
    }
  }
  return cases;
}

const std::vector<DotCase>& cases() {
  static const std::vector<DotCase> c = all_cases();
  return c;
}

TEST(QuantTypes, TableMatchesGgml) {
  struct Row { QType t; const char* name; int bs, ts; bool storage; QType vdt; };
  const Row rows[] = {
      {QType::F32, "F32", 1, 4, true, QType::F32},        {QType::F16, "F16", 1, 2, true, QType::F16},
      {QType::BF16, "BF16", 1, 2, true, QType::BF16},     {QType::Q4_0, "Q4_0", 32, 18, true, QType::Q8_0},
      {QType::Q4_1, "Q4_1", 32, 20, true, QType::Q8_1},   {QType::Q5_0, "Q5_0", 32, 22, true, QType::Q8_0},
      {QType::Q5_1, "Q5_1", 32, 24, true, QType::Q8_1},   {QType::Q8_0, "Q8_0", 32, 34, true, QType::Q8_0},
      {QType::Q8_1, "Q8_1", 32, 36, false, QType::Q8_1},  {QType::Q2_K, "Q2_K", 256, 84, true, QType::Q8_K},
      {QType::Q3_K, "Q3_K", 256, 110, true, QType::Q8_K}, {QType::Q4_K, "Q4_K", 256, 144, true, QType::Q8_K},
      {QType::Q5_K, "Q5_K", 256, 176, true, QType::Q8_K}, {QType::Q6_K, "Q6_K", 256, 210, true, QType::Q8_K},
      {QType::Q8_K, "Q8_K", 256, 292, false, QType::Q8_K}, {QType::IQ4_NL, "IQ4_NL", 32, 18, true, QType::Q8_0},
      // stepq-internal
      {QType::HQ2_64, "HQ2_64", 64, 20, true, QType::Q8_0}, {QType::HQ3_64, "HQ3_64", 64, 28, true, QType::Q8_0},
      {QType::HQ3_128, "HQ3_128", 128, 52, true, QType::Q8_0}, {QType::HQ4_64, "HQ4_64", 64, 36, true, QType::Q8_0},
      {QType::S3_32, "S3_32", 32, 14, true, QType::Q8_0},   {QType::HQ3_32, "HQ3_32", 128, 58, true, QType::Q8_0},
  };
  for (const Row& r : rows) {
    const QTypeInfo* i = qtype_info((uint32_t)r.t);
    ASSERT_NE(i, nullptr) << r.name;
    EXPECT_STREQ(i->name, r.name);
    EXPECT_STREQ(qtype_name((uint32_t)r.t), r.name);
    EXPECT_EQ(i->block_size, r.bs) << r.name;
    EXPECT_EQ(i->type_size, r.ts) << r.name;
    EXPECT_EQ(i->storage, r.storage) << r.name;
    EXPECT_EQ(i->vec_dot_type, r.vdt) << r.name;
  }
  EXPECT_EQ((uint32_t)QType::HQ2_64, 48u);
  EXPECT_EQ((uint32_t)QType::HQ3_64, 49u);
  EXPECT_EQ((uint32_t)QType::HQ3_128, 50u);
  EXPECT_EQ((uint32_t)QType::HQ4_64, 51u);
  EXPECT_EQ((uint32_t)QType::S3_32, 52u);
  EXPECT_EQ((uint32_t)QType::HQ3_32, 53u);
  EXPECT_EQ((uint32_t)QType::S3_16, 54u);
  for (uint32_t id : {4u, 5u, 16u, 17u, 21u, 23u, 31u, 39u, 47u, 55u, 63u, 64u, 1000u})
    EXPECT_EQ(qtype_info(id), nullptr) << id;
  EXPECT_STREQ(qtype_name(17), "type 17");
  EXPECT_EQ(row_bytes(QType::Q4_K, 1536), 6u * 144u);
}

TEST(QuantTypes, BadArgumentsThrow) {
  std::vector<uint8_t> buf(1024);
  std::vector<float> f(256);
  EXPECT_THROW(dequantize_row(QType::Q4_0, buf.data(), f.data(), 33), Error);
  EXPECT_THROW(dequantize_row((QType)17, buf.data(), f.data(), 32), Error);
  EXPECT_THROW(quantize_row(QType::Q4_0, f.data(), buf.data(), 32), Error);  // not an activation type
  EXPECT_THROW(quantize_row(QType::Q8_K, f.data(), buf.data(), 128), Error);
  EXPECT_THROW(vec_dot(QType::Q8_K, 256, buf.data(), buf.data()), Error);   // no weight kernel
  EXPECT_THROW(vec_dot_ref(QType::Q8_1, 32, buf.data(), buf.data()), Error);
}

TEST(QuantDot, RefMatchesDequantizedDouble) {
  for (const DotCase& c : cases()) {
    const double got = vec_dot_ref(c.type, c.n, c.w.data(), c.a.data());
    EXPECT_NEAR(got, c.exact, 1e-5 * c.magnitude + 1e-30) << describe(c);
  }
}

TEST(QuantDot, SimdMatchesRef) {
  for (Isa isa : simd_isas()) {
    const DotTable& table = dot_table(isa);
    for (const DotCase& c : cases()) {
      const VecDotFn f = table.vec_dot[(uint32_t)c.type];
      ASSERT_NE(f, nullptr) << isa_name(isa) << " " << describe(c);
      const float ref = vec_dot_ref(c.type, c.n, c.w.data(), c.a.data());
      EXPECT_NEAR(f(c.n, c.w.data(), c.a.data()), ref, 1e-5 * c.magnitude + 1e-30)
          << isa_name(isa) << " " << describe(c);
      // The same row at an odd-ish address: rows inside a GGUF tensor are only 2-byte aligned
      // (4 for F32).
      const size_t shift = c.type == QType::F32 ? 4 : 2;
      std::vector<uint8_t> wbuf(c.w.size() + 64), abuf(c.a.size() + 64);
      uint8_t* w = wbuf.data() + shift;
      uint8_t* a = abuf.data() + 4;
      std::memcpy(w, c.w.data(), c.w.size());
      std::memcpy(a, c.a.data(), c.a.size());
      EXPECT_EQ(f(c.n, w, a), f(c.n, c.w.data(), c.a.data())) << isa_name(isa) << " unaligned " << describe(c);
    }
  }
}

TEST(QuantDot, PublicEntryUsesActiveIsa) {
  const DotTable& active = dot_table(active_isa());
  for (const DotCase& c : cases()) {
    const float want = active.vec_dot[(uint32_t)c.type](c.n, c.w.data(), c.a.data());
    EXPECT_EQ(vec_dot(c.type, c.n, c.w.data(), c.a.data()), want) << describe(c);
  }
}

TEST(QuantizeRow, RoundTrip) {
  std::mt19937 rng(7);
  for (QType t : kActivationTypes) {
    for (int64_t n : row_lengths(t == QType::Q8_K ? QType::Q4_K : t == QType::Q8_0 || t == QType::Q8_1 ? QType::Q4_0 : t)) {
      const std::vector<float> x = random_activations(n, rng);
      std::vector<uint8_t> q(row_bytes(t, n));
      quantize_row(t, x.data(), q.data(), n);
      const std::vector<float> y = dequant(t, q.data(), n);
      const int bs = qtype_info(t).block_size;
      for (int64_t b = 0; b < n / bs; b++) {
        float amax = 0;
        for (int j = 0; j < bs; j++) amax = std::fmax(amax, std::fabs(x[b * bs + j]));
        for (int j = 0; j < bs; j++) {
          const int64_t e = b * bs + j;
          double tol = 0;
          if (t == QType::F16) tol = std::fabs(x[e]) * 0x1p-11;
          else if (t == QType::BF16) tol = std::fabs(x[e]) * 0x1p-8;
          else if (t == QType::Q8_K) tol = amax / 127.0 * 0.5 * (1 + 1e-5);
          else if (t != QType::F32) tol = amax * (0.5 / 127.0 + 0x1p-11) * (1 + 1e-5);  // + fp16(d) rounding
          ASSERT_NEAR(y[e], x[e], tol) << qtype_name((uint32_t)t) << " n=" << n << " e=" << e;
        }
        if (t == QType::Q8_1) {  // s = fp16(d·Σq) with the fp32 d = amax/127
          const BlockQ8_1& blk = ((const BlockQ8_1*)q.data())[b];
          int sum = 0;
          for (int j = 0; j < 32; j++) sum += blk.qs[j];
          EXPECT_EQ(blk.s, fp32_to_fp16(amax / 127.0f * (float)sum)) << "block " << b;
        }
        if (t == QType::Q8_K && amax > 0) {  // −127/max rule, bsums
          const BlockQ8_K& blk = ((const BlockQ8_K*)q.data())[b];
          int first = 0;
          while (std::fabs(x[b * bs + first]) != amax) first++;
          EXPECT_EQ(blk.qs[first], -127);
          EXPECT_EQ(blk.d, 1.0f / (-127.0f / x[b * bs + first]));
          for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += blk.qs[16 * g + l];
            EXPECT_EQ(blk.bsums[g], s);
          }
        }
      }
    }
  }
}

TEST(QuantizeRow, SimdBytesEqualScalar) {
  std::mt19937 rng(99);
  const DotTable& scalar = dot_table(Isa::Scalar);
  for (Isa isa : simd_isas()) {
    for (QType t : kActivationTypes) {
      const QuantizeRowFn f = dot_table(isa).quantize_row[(uint32_t)t];
      ASSERT_NE(f, nullptr);
      if (f == scalar.quantize_row[(uint32_t)t]) continue;
      for (int64_t n : {256, 512, 768, 2304, 4864}) {
        for (int variant = 0; variant < 3; variant++) {
          std::vector<float> x = random_activations(n, rng);
          if (variant == 1)  // exact halves after scaling: ties everywhere
            for (auto& v : x) v = std::round(v * 8.0f) / 2.0f;
          if (variant == 2)  // repeated maxima of both signs in one block
            for (int64_t i = 0; i < n; i += 5) x[i] = (i % 2 ? -3.0f : 3.0f);
          std::vector<uint8_t> want(row_bytes(t, n)), got(row_bytes(t, n));
          scalar.quantize_row[(uint32_t)t](x.data(), want.data(), n);
          f(x.data(), got.data(), n);
          EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size()), 0)
              << isa_name(isa) << " " << qtype_name((uint32_t)t) << " n=" << n << " variant " << variant;
        }
      }
    }
  }
}

// llama.cpp's x86 Q8_0/Q8_1 quantizer rounds x·(127/amax) half to even (roundf would not).
TEST(QuantizeRow, Q8TiesRoundHalfToEven) {
  std::vector<Isa> isas = simd_isas();
  isas.insert(isas.begin(), Isa::Scalar);
  for (Isa isa : isas) {
    for (QType t : {QType::Q8_0, QType::Q8_1}) {
      // amax 127: multiplier exactly 1; amax 254: multiplier exactly 0.5.
      for (float scale : {1.0f, 2.0f}) {
        std::vector<float> x(32, 0.0f);
        const float ties[] = {0.5f, 1.5f, 2.5f, -0.5f, -2.5f, -1.5f, 3.5f, 126.5f};
        const int want[] = {0, 2, 2, 0, -2, -2, 4, 126};
        for (int j = 0; j < 8; j++) x[j] = ties[j] * scale;
        x[31] = 127.0f * scale;
        std::vector<uint8_t> q(row_bytes(t, 32));
        dot_table(isa).quantize_row[(uint32_t)t](x.data(), q.data(), 32);
        const int8_t* qs = (const int8_t*)q.data() + (t == QType::Q8_0 ? 2 : 4);
        for (int j = 0; j < 8; j++) EXPECT_EQ(qs[j], want[j]) << isa_name(isa) << " x=" << x[j];
        EXPECT_EQ(qs[31], 127);
      }
    }
    // Q8_K: the first largest element is −127 → iscale = 1, so codes are x rounded half-even.
    std::vector<float> x(256, 0.0f);
    x[0] = -127.0f;
    x[1] = 0.5f, x[2] = 1.5f, x[3] = 2.5f, x[4] = -0.5f, x[5] = -2.5f, x[6] = 127.0f;
    std::vector<uint8_t> q(row_bytes(QType::Q8_K, 256));
    dot_table(isa).quantize_row[(uint32_t)QType::Q8_K](x.data(), q.data(), 256);
    const BlockQ8_K& b = *(const BlockQ8_K*)q.data();
    const int want[] = {-127, 0, 2, 2, 0, -2, 127};
    for (int j = 0; j < 7; j++) EXPECT_EQ(b.qs[j], want[j]) << isa_name(isa) << " Q8_K j=" << j;
    EXPECT_EQ(b.d, 1.0f);
    EXPECT_EQ(b.bsums[0], -127 + 0 + 2 + 2 + 0 - 2 + 127);
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-packed blocks: element codes and scales written by the §2 index formulas, read back
// through dequantize_row.

float f16v(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

TEST(QuantDequantize, LegacyBlocksFollowLayout) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> code(0, 31);
  int q[32];
  for (int& v : q) v = code(rng);
  const float d = f16v(0.25f), m = f16v(-1.5f);
  // Q4_0 / Q4_1 / IQ4_NL: qs[j] = element j (low) | element j+16 (high).
  uint8_t qs[16];
  for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
  uint32_t qh = 0;
  for (int e = 0; e < 32; e++) qh |= (uint32_t)(q[e] >> 4) << e;
  uint8_t blk[36] = {};
  float y[32];
  put_u16(blk, fp32_to_fp16(d));
  std::memcpy(blk + 2, qs, 16);
  dequantize_row(QType::Q4_0, blk, y, 32);
  for (int e = 0; e < 32; e++) EXPECT_EQ(y[e], d * (float)((q[e] & 15) - 8)) << "Q4_0 " << e;
  dequantize_row(QType::IQ4_NL, blk, y, 32);
  for (int e = 0; e < 32; e++) EXPECT_EQ(y[e], d * (float)kIQ4NLValues[q[e] & 15]) << "IQ4_NL " << e;
  put_u16(blk + 2, fp32_to_fp16(m));
  std::memcpy(blk + 4, qs, 16);
  dequantize_row(QType::Q4_1, blk, y, 32);
  for (int e = 0; e < 32; e++) EXPECT_EQ(y[e], d * (float)(q[e] & 15) + m) << "Q4_1 " << e;
  // Q5_0: d, qh (LE uint32), qs.   Q5_1: d, m, qh, qs.
  std::memcpy(blk + 2, &qh, 4);
  std::memcpy(blk + 6, qs, 16);
  dequantize_row(QType::Q5_0, blk, y, 32);
  for (int e = 0; e < 32; e++) EXPECT_EQ(y[e], d * (float)(q[e] - 16)) << "Q5_0 " << e;
  put_u16(blk + 2, fp32_to_fp16(m));
  std::memcpy(blk + 4, &qh, 4);
  std::memcpy(blk + 8, qs, 16);
  dequantize_row(QType::Q5_1, blk, y, 32);
  for (int e = 0; e < 32; e++) EXPECT_EQ(y[e], d * (float)q[e] + m) << "Q5_1 " << e;
}

TEST(QuantDequantize, KQuantBlocksFollowLayout) {
  std::mt19937 rng(5);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const float d = f16v(0.0625f), dmin = f16v(0.03125f);
  float y[256];
  int q[256];
  auto geom = [](int e, int& g, int& k, int& l) { g = e / 128, k = (e % 128) / 32, l = e % 32; };
  int g, k, l;

  {  // Q2_K: scales[j] = scale | min << 4; code at qs[32g + l] bits 2k.
    BlockQ2_K b{};
    int sc[16], mn[16];
    for (int j = 0; j < 16; j++) sc[j] = uni(0, 15), mn[j] = uni(0, 15), b.scales[j] = (uint8_t)(sc[j] | mn[j] << 4);
    for (int e = 0; e < 256; e++) q[e] = uni(0, 3), geom(e, g, k, l), b.qs[32 * g + l] |= (uint8_t)(q[e] << 2 * k);
    b.d = fp32_to_fp16(d), b.dmin = fp32_to_fp16(dmin);
    dequantize_row(QType::Q2_K, &b, y, 256);
    for (int e = 0; e < 256; e++)
      EXPECT_EQ(y[e], d * (float)sc[e / 16] * (float)q[e] - dmin * (float)mn[e / 16]) << "Q2_K " << e;
  }
  {  // Q3_K: u = q+4; low2 at qs bits 2k; high bit at hmask[l] bit e/32; 6-bit scales − 32.
    BlockQ3_K b{};
    int sc[16];
    for (int j = 0; j < 16; j++) {
      sc[j] = uni(-32, 31);
      const int u = sc[j] + 32;
      if (j < 8) b.scales[j] |= (uint8_t)(u & 15);
      else b.scales[j - 8] |= (uint8_t)((u & 15) << 4);
      b.scales[8 + j % 4] |= (uint8_t)((u >> 4) << 2 * (j / 4));
    }
    for (int e = 0; e < 256; e++) {
      q[e] = uni(-4, 3);
      const int u = q[e] + 4;
      geom(e, g, k, l);
      b.qs[32 * g + l] |= (uint8_t)((u & 3) << 2 * k);
      b.hmask[l] |= (uint8_t)((u >> 2) << (e / 32));
    }
    b.d = fp32_to_fp16(d);
    dequantize_row(QType::Q3_K, &b, y, 256);
    for (int e = 0; e < 256; e++) EXPECT_EQ(y[e], d * (float)sc[e / 16] * (float)q[e]) << "Q3_K " << e;
  }
  // Q4_K / Q5_K scale packing: bytes 0-3 scales 0-3 (+ top bits of 4-7), 4-7 mins likewise,
  // 8-11 low nibbles of scale/min 4-7.
  auto pack_k4 = [](const int* sc, const int* mn, uint8_t* s) {
    for (int j = 0; j < 4; j++) {
      s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
      s[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
      s[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
  };
  {
    BlockQ4_K b{};
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) sc[j] = uni(0, 63), mn[j] = uni(0, 63);
    pack_k4(sc, mn, b.scales);
    for (int e = 0; e < 256; e++)
      q[e] = uni(0, 15), b.qs[32 * (e / 64) + e % 32] |= (uint8_t)(q[e] << (e % 64 < 32 ? 0 : 4));
    b.d = fp32_to_fp16(d), b.dmin = fp32_to_fp16(dmin);
    dequantize_row(QType::Q4_K, &b, y, 256);
    for (int e = 0; e < 256; e++)
      EXPECT_EQ(y[e], d * (float)sc[e / 32] * (float)q[e] - dmin * (float)mn[e / 32]) << "Q4_K " << e;
  }
  {
    BlockQ5_K b{};
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++) sc[j] = uni(0, 63), mn[j] = uni(0, 63);
    pack_k4(sc, mn, b.scales);
    for (int e = 0; e < 256; e++) {
      q[e] = uni(0, 31);
      b.qs[32 * (e / 64) + e % 32] |= (uint8_t)((q[e] & 15) << (e % 64 < 32 ? 0 : 4));
      b.qh[e % 32] |= (uint8_t)((q[e] >> 4) << (e / 32));
    }
    b.d = fp32_to_fp16(d), b.dmin = fp32_to_fp16(dmin);
    dequantize_row(QType::Q5_K, &b, y, 256);
    for (int e = 0; e < 256; e++)
      EXPECT_EQ(y[e], d * (float)sc[e / 32] * (float)q[e] - dmin * (float)mn[e / 32]) << "Q5_K " << e;
  }
  {  // Q6_K: u = q+32; low 4 bits in ql[64g + 32(k%2) + l] (high nibble for k >= 2),
     // high 2 bits in qh[32g + l] bits 2k; int8 scales per 16.
    BlockQ6_K b{};
    for (int j = 0; j < 16; j++) b.scales[j] = (int8_t)uni(-128, 127);
    for (int e = 0; e < 256; e++) {
      q[e] = uni(-32, 31);
      const int u = q[e] + 32;
      geom(e, g, k, l);
      b.ql[64 * g + 32 * (k % 2) + l] |= (uint8_t)((u & 15) << (k < 2 ? 0 : 4));
      b.qh[32 * g + l] |= (uint8_t)((u >> 4) << 2 * k);
    }
    b.d = fp32_to_fp16(d);
    dequantize_row(QType::Q6_K, &b, y, 256);
    for (int e = 0; e < 256; e++) EXPECT_EQ(y[e], d * (float)b.scales[e / 16] * (float)q[e]) << "Q6_K " << e;
  }
}

TEST(QuantDequantize, FloatTypes) {
  const uint16_t h[] = {0x3C00, 0xC000, 0x0001, 0x7BFF, 0x8000};  // 1, −2, smallest subnormal, max, −0
  float y[5];
  dequantize_row(QType::F16, h, y, 5);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[2], 0x1p-24f);
  EXPECT_EQ(y[3], 65504.0f);
  EXPECT_TRUE(std::signbit(y[4]) && y[4] == 0.0f);
  const uint16_t b[] = {0x3F80, 0xC040};  // 1, −3
  dequantize_row(QType::BF16, b, y, 2);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -3.0f);
}

// ---------------------------------------------------------------------------------------------
// Against llama.cpp's ggml (committed reference data; layout in tools/make_quant_reference.py).

struct GgmlReference {
  std::vector<float> x;
  struct Row { QType type; std::vector<uint8_t> bytes; float dot = 0; };
  std::vector<Row> activations, weights;  // ggml from_float(x) per type; weight rows + ggml dot
};

GgmlReference load_ggml_reference() {
  const std::string path = test::source_dir() + "/tests/data/quant/ggml_reference.bin";
  std::ifstream f(path, std::ios::binary);
  std::vector<uint8_t> d((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  auto take = [&](void* dst, size_t n) {
    if (pos + n > d.size()) throw Error(path + ": truncated");
    std::memcpy(dst, d.data() + pos, n);
    pos += n;
  };
  auto u32 = [&] { uint32_t v; take(&v, 4); return v; };
  char magic[8];
  take(magic, 8);
  if (std::memcmp(magic, "STEPQQR1", 8) != 0) throw Error(path + ": missing or not a quant reference file");
  GgmlReference r;
  r.x.resize(u32());
  take(r.x.data(), r.x.size() * 4);
  for (auto* rows : {&r.activations, &r.weights}) {
    const uint32_t count = u32();
    for (uint32_t i = 0; i < count; i++) {
      GgmlReference::Row row;
      row.type = (QType)u32();
      row.bytes.resize(u32());
      take(row.bytes.data(), row.bytes.size());
      if (rows == &r.weights) take(&row.dot, 4);
      rows->push_back(std::move(row));
    }
  }
  return r;
}

TEST(QuantGgml, ActivationBytesEqualLlamaCpp) {
  const GgmlReference ref = load_ggml_reference();
  const int64_t n = (int64_t)ref.x.size();
  ASSERT_EQ(ref.activations.size(), 6u);
  std::vector<Isa> isas = simd_isas();
  isas.insert(isas.begin(), Isa::Scalar);
  for (const auto& want : ref.activations) {
    for (Isa isa : isas) {
      std::vector<uint8_t> got(row_bytes(want.type, n));
      ASSERT_EQ(got.size(), want.bytes.size());
      dot_table(isa).quantize_row[(uint32_t)want.type](ref.x.data(), got.data(), n);
      EXPECT_EQ(std::memcmp(got.data(), want.bytes.data(), got.size()), 0)
          << isa_name(isa) << " " << qtype_name((uint32_t)want.type);
    }
  }
}

TEST(QuantGgml, DotsMatchLlamaCpp) {
  const GgmlReference ref = load_ggml_reference();
  const int64_t n = (int64_t)ref.x.size();
  ASSERT_EQ(ref.weights.size(), std::size(kStorageTypes) - kInternalStorageTypes);
  std::vector<Isa> isas = simd_isas();
  isas.insert(isas.begin(), Isa::Scalar);
  for (const auto& w : ref.weights) {
    const QType vdt = qtype_info(w.type).vec_dot_type;
    const auto act = std::find_if(ref.activations.begin(), ref.activations.end(),
                                  [&](const GgmlReference::Row& r) { return r.type == vdt; });
    ASSERT_NE(act, ref.activations.end());
    const std::vector<float> wf = dequant(w.type, w.bytes.data(), n), af = dequant(vdt, act->bytes.data(), n);
    double magnitude = 0;
    for (int64_t i = 0; i < n; i++) magnitude += std::fabs((double)wf[i] * af[i]);
    for (Isa isa : isas) {
      const float got = dot_table(isa).vec_dot[(uint32_t)w.type](n, w.bytes.data(), act->bytes.data());
      EXPECT_NEAR(got, w.dot, 1e-6 * magnitude) << isa_name(isa) << " " << qtype_name((uint32_t)w.type);
    }
  }
}

}  // namespace
}  // namespace stepq
