// Random weight rows and activations for kernel tests (valid, finite scales).
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/fp16.h"
#include "kernels/cpu/quant_types.h"

namespace stepq::test {

// Byte offsets of the fp16 scale fields inside one block.
inline std::vector<int> fp16_fields(QType t) {
  switch (t) {
    case QType::Q4_0: case QType::Q5_0: case QType::Q8_0: case QType::IQ4_NL: return {0};
    case QType::Q4_1: case QType::Q5_1: case QType::Q4_K: case QType::Q5_K: return {0, 2};
    case QType::HQ2_64: case QType::HQ3_64: case QType::HQ3_128: case QType::HQ4_64: return {0, 2};  // d, z
    case QType::S3_32: case QType::HQ3_32: case QType::S3_16: return {0};  // HQ3_32, S3_16: D (codes are bytes)
    case QType::Q2_K: return {80, 82};
    case QType::Q3_K: return {108};
    case QType::Q6_K: return {208};
    default: return {};
  }
}

inline void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Code bits of the HQ formats (asymmetric, fp16 zero in code units at byte 2); 0 for others.
inline int hq_bits(QType t) {
  switch (t) {
    case QType::HQ2_64: return 2;
    case QType::HQ3_64: case QType::HQ3_128: return 3;
    case QType::HQ4_64: return 4;
    default: return 0;
  }
}

// A random weight row: random code bytes, finite fp16 scales of either sign with magnitudes
// like real models' (1e-3 .. 3e-2); the HQ formats' zeros where HQQ puts them, anywhere in
// [−0.5, 2^bits − 0.5] (fractional, in code units).
inline std::vector<uint8_t> random_weight_row(QType t, int64_t n, std::mt19937& rng) {
  const QTypeInfo& info = qtype_info(t);
  std::vector<uint8_t> row(row_bytes(t, n));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  if (t == QType::F32 || t == QType::F16 || t == QType::BF16) {
    for (int64_t i = 0; i < n; i++) {
      const float v = normal(rng);
      if (t == QType::F32) std::memcpy(&row[4 * i], &v, 4);
      else put_u16(&row[2 * i], t == QType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v));
    }
    return row;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : row) b = (uint8_t)byte(rng);
  std::uniform_real_distribution<float> mag(1e-3f, 3e-2f);
  for (int64_t i = 0; i < n / info.block_size; i++) {
    uint8_t* blk = &row[(size_t)i * info.type_size];
    for (int off : fp16_fields(t)) put_u16(blk + off, fp32_to_fp16((byte(rng) & 1 ? -1 : 1) * mag(rng)));
    if (const int bits = hq_bits(t))
      put_u16(blk + 2, fp32_to_fp16(std::uniform_real_distribution<float>(-0.5f, (float)(1 << bits) - 0.5f)(rng)));
    if (t == QType::Q8_0)  // ggml's Q8_0 quantizer never writes −128 (the kernels assume so)
      for (int j = 2; j < 34; j++)
        if (blk[j] == 0x80) blk[j] = 0x81;
  }
  return row;
}

// Activations like a hidden state: mostly N(0,1), a few large outliers, and sometimes an
// all-zero block (amax = 0 paths).
inline std::vector<float> random_activations(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng) * (pick(rng) == 0 ? 20.0f : 1.0f);
  if (n >= 512 && pick(rng) < 50)
    for (int64_t i = 256; i < 512; i++) x[i] = 0.0f;
  return x;
}

}  // namespace stepq::test
