// ggml weight formats: type table, scalar dequantization, the activation quantizers, the scalar
// reference dot products, and the dispatch to the SIMD kernels (quant_dispatch.h).
//
// Formulas: ../shared/reference/gguf-and-quants.md §2 (layouts, dequantization), §3.2 (activation
// quantizers, bit-exact with llama.cpp's x86 build), §3.3 (integer dot products).
//
// Dequantization evaluates in float32 in the same order as PyPI gguf's numpy code (for example
// (d·sc)·q − dmin·m for Q4_K), so results are bit-identical to gguf.quants.dequantize. Every
// product there is exact in float32 (fp16 scale × small integers), so only the final add rounds.
#include "kernels/cpu/quant_types.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/fp16.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dispatch.h"

namespace stepq {

// ---------------------------------------------------------------------------------------------
// Type table (§1.7)

namespace {

struct TypeTable {
  QTypeInfo info[kQTypeIdLimit] = {};
  constexpr void set(QType t, const char* name, int blck, int bytes, bool storage, QType vdt) {
    info[(uint32_t)t] = QTypeInfo{name, blck, bytes, storage, vdt};
  }
};

constexpr TypeTable make_type_table() {
  TypeTable t;
  t.set(QType::F32, "F32", 1, 4, true, QType::F32);
  t.set(QType::F16, "F16", 1, 2, true, QType::F16);
  t.set(QType::BF16, "BF16", 1, 2, true, QType::BF16);
  t.set(QType::Q4_0, "Q4_0", 32, 18, true, QType::Q8_0);
  t.set(QType::Q4_1, "Q4_1", 32, 20, true, QType::Q8_1);
  t.set(QType::Q5_0, "Q5_0", 32, 22, true, QType::Q8_0);
  t.set(QType::Q5_1, "Q5_1", 32, 24, true, QType::Q8_1);
  t.set(QType::Q8_0, "Q8_0", 32, 34, true, QType::Q8_0);
  t.set(QType::Q8_1, "Q8_1", 32, 36, false, QType::Q8_1);  // activation only (ggml's 36 bytes)
  t.set(QType::Q2_K, "Q2_K", 256, 84, true, QType::Q8_K);
  t.set(QType::Q3_K, "Q3_K", 256, 110, true, QType::Q8_K);
  t.set(QType::Q4_K, "Q4_K", 256, 144, true, QType::Q8_K);
  t.set(QType::Q5_K, "Q5_K", 256, 176, true, QType::Q8_K);
  t.set(QType::Q6_K, "Q6_K", 256, 210, true, QType::Q8_K);
  t.set(QType::Q8_K, "Q8_K", 256, 292, false, QType::Q8_K);  // activation only
  t.set(QType::IQ4_NL, "IQ4_NL", 32, 18, true, QType::Q8_0);
  // stepq-internal (quant_blocks.h): not ggml ids.
  t.set(QType::HQ2_64, "HQ2_64", 64, 20, true, QType::Q8_0);
  t.set(QType::HQ3_64, "HQ3_64", 64, 28, true, QType::Q8_0);
  t.set(QType::HQ3_128, "HQ3_128", 128, 52, true, QType::Q8_0);
  t.set(QType::HQ4_64, "HQ4_64", 64, 36, true, QType::Q8_0);
  t.set(QType::S3_32, "S3_32", 32, 14, true, QType::Q8_0);
  t.set(QType::HQ3_32, "HQ3_32", 128, 58, true, QType::Q8_0);
  t.set(QType::S3_16, "S3_16", 256, 108, true, QType::Q8_0);
  return t;
}

constexpr TypeTable kTypes = make_type_table();

const QTypeInfo& checked_info(QType t, const char* what) {
  const QTypeInfo* i = qtype_info((uint32_t)t);
  if (!i) fail("{}: unsupported tensor type {}", what, qtype_name((uint32_t)t));
  return *i;
}

int64_t checked_blocks(QType t, int64_t n, const char* what) {
  const QTypeInfo& i = checked_info(t, what);
  if (n < 0 || n % i.block_size != 0)
    fail("{}: row of {} elements is not a multiple of the {} block size {}", what, n, i.name,
         i.block_size);
  return n / i.block_size;
}

}  // namespace

const float* hq3_32_scale_table() {
  struct Table {
    float v[256];
    Table() {
      for (int c = 0; c < 256; c++) v[c] = std::exp2f(-(float)c / 32.0f);
    }
  };
  static const Table t;  // thread-safe, once
  return t.v;
}

const QTypeInfo* qtype_info(uint32_t id) {
  if (id >= kQTypeIdLimit || kTypes.info[id].name == nullptr) return nullptr;
  return &kTypes.info[id];
}

const char* qtype_name(uint32_t id) {
  if (const QTypeInfo* i = qtype_info(id)) return i->name;
  thread_local char buf[24];
  std::snprintf(buf, sizeof buf, "type %u", id);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Dequantization (§2)

namespace {

inline float h2f(uint16_t h) { return fp16_to_fp32(h); }

// 5th bit of element e of a Q5_0/Q5_1 block.
inline int q5_high_bit(const uint8_t qh[4], int e) { return (qh[e >> 3] >> (e & 7)) & 1; }

// Q4_K/Q5_K: 6-bit scale and min of sub-block j from the 12 packed bytes.
inline void k4_scale_min(const uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q3_K: signed 6-bit scale of sub-block j (−32..31).
inline int q3k_scale(const uint8_t* s, int j) {
  const int low4 = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int high2 = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
  return (low4 | (high2 << 4)) - 32;
}

void dequant_q4_0(const BlockQ4_0* b, float* y) {
  const float d = h2f(b->d);
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)((b->qs[j] & 0xF) - 8);
    y[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const BlockQ4_1* b, float* y) {
  const float d = h2f(b->d), m = h2f(b->m);
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)(b->qs[j] & 0xF) + m;
    y[j + 16] = d * (float)(b->qs[j] >> 4) + m;
  }
}

void dequant_q5_0(const BlockQ5_0* b, float* y) {
  const float d = h2f(b->d);
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)(((b->qs[j] & 0xF) | (q5_high_bit(b->qh, j) << 4)) - 16);
    y[j + 16] = d * (float)(((b->qs[j] >> 4) | (q5_high_bit(b->qh, j + 16) << 4)) - 16);
  }
}

void dequant_q5_1(const BlockQ5_1* b, float* y) {
  const float d = h2f(b->d), m = h2f(b->m);
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)((b->qs[j] & 0xF) | (q5_high_bit(b->qh, j) << 4)) + m;
    y[j + 16] = d * (float)((b->qs[j] >> 4) | (q5_high_bit(b->qh, j + 16) << 4)) + m;
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y) {
  const float d = h2f(b->d);
  for (int j = 0; j < 32; j++) y[j] = (float)b->qs[j] * d;
}

void dequant_q8_1(const BlockQ8_1* b, float* y) {
  const float d = h2f(b->d);
  for (int j = 0; j < 32; j++) y[j] = (float)b->qs[j] * d;
}

void dequant_iq4_nl(const BlockIQ4_NL* b, float* y) {
  const float d = h2f(b->d);
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)kIQ4NLValues[b->qs[j] & 0xF];
    y[j + 16] = d * (float)kIQ4NLValues[b->qs[j] >> 4];
  }
}

// K-quants: element e of the super-block, with g = e/128, k = (e%128)/32, l = e%32.
void dequant_q2_K(const BlockQ2_K* b, float* y) {
  const float d = h2f(b->d), dmin = h2f(b->dmin);
  for (int j = 0; j < 16; j++) {  // sub-blocks of 16
    const float dl = d * (float)(b->scales[j] & 0xF);
    const float ml = dmin * (float)(b->scales[j] >> 4);
    for (int i = 0; i < 16; i++) {
      const int e = 16 * j + i, g = e >> 7, k = (e >> 5) & 3, l = e & 31;
      const int q = (b->qs[32 * g + l] >> (2 * k)) & 3;
      y[e] = dl * (float)q - ml;
    }
  }
}

void dequant_q3_K(const BlockQ3_K* b, float* y) {
  const float d = h2f(b->d);
  for (int j = 0; j < 16; j++) {
    const float dl = d * (float)q3k_scale(b->scales, j);
    for (int i = 0; i < 16; i++) {
      const int e = 16 * j + i, g = e >> 7, k = (e >> 5) & 3, l = e & 31;
      const int low2 = (b->qs[32 * g + l] >> (2 * k)) & 3;
      const int hb = (b->hmask[l] >> (e >> 5)) & 1;
      y[e] = dl * (float)(low2 - (hb ? 0 : 4));
    }
  }
}

void dequant_q4_K(const BlockQ4_K* b, float* y) {
  const float d = h2f(b->d), dmin = h2f(b->dmin);
  for (int j = 0; j < 8; j++) {  // sub-blocks of 32; chunk j/2, low nibbles for even j
    int sc, m;
    k4_scale_min(b->scales, j, sc, m);
    const float dl = d * (float)sc, ml = dmin * (float)m;
    const uint8_t* q = b->qs + 32 * (j >> 1);
    const int shift = (j & 1) * 4;
    for (int l = 0; l < 32; l++) y[32 * j + l] = dl * (float)((q[l] >> shift) & 0xF) - ml;
  }
}

void dequant_q5_K(const BlockQ5_K* b, float* y) {
  const float d = h2f(b->d), dmin = h2f(b->dmin);
  for (int j = 0; j < 8; j++) {
    int sc, m;
    k4_scale_min(b->scales, j, sc, m);
    const float dl = d * (float)sc, ml = dmin * (float)m;
    const uint8_t* q = b->qs + 32 * (j >> 1);
    const int shift = (j & 1) * 4;
    for (int l = 0; l < 32; l++) {
      const int v = ((q[l] >> shift) & 0xF) | (((b->qh[l] >> j) & 1) << 4);
      y[32 * j + l] = dl * (float)v - ml;
    }
  }
}

void dequant_q6_K(const BlockQ6_K* b, float* y) {
  const float d = h2f(b->d);
  for (int j = 0; j < 16; j++) {
    const float dl = d * (float)b->scales[j];
    for (int i = 0; i < 16; i++) {
      const int e = 16 * j + i, g = e >> 7, k = (e >> 5) & 3, l = e & 31;
      const uint8_t qlb = b->ql[64 * g + 32 * (k & 1) + l];
      const int lo = k < 2 ? (qlb & 0xF) : (qlb >> 4);
      const int hi = (b->qh[32 * g + l] >> (2 * k)) & 3;
      y[e] = dl * (float)((lo | (hi << 4)) - 32);
    }
  }
}

void dequant_q8_K(const BlockQ8_K* b, float* y) {
  for (int j = 0; j < 256; j++) y[j] = b->d * (float)b->qs[j];
}

// HQ family and S3_32 (quant_blocks.h): code of element i of a block.
inline int hq2_code(const uint8_t* ql, int i) { return (ql[i & 15] >> (2 * (i >> 4))) & 3; }
inline int hq3_code(const HQ3Chunk& c, int i) { return hq2_code(c.ql, i) | (((c.qh[i >> 3] >> (i & 7)) & 1) << 2); }
inline int hq_code(const BlockHQ2_64& b, int i) { return hq2_code(b.ql, i); }
inline int hq_code(const BlockHQ3_64& b, int i) { return hq3_code(b.c[0], i); }
inline int hq_code(const BlockHQ3_128& b, int i) { return hq3_code(b.c[i >> 6], i & 63); }
inline int hq_code(const BlockHQ4_64& b, int i) { return (b.qs[i & 31] >> (4 * (i >> 5))) & 15; }
inline int hq_code(const BlockHQ3_32& b, int i) { return hq3_code(b.c[i >> 6], i & 63); }
inline int hq_code(const BlockS3_16& b, int i) { return hq3_code(b.c[i >> 6], i & 63); }
inline int s3_code(const BlockS3_32& b, int i) {
  return ((b.ql[i & 7] >> (2 * (i >> 3))) & 3) | (((b.qh[i >> 3] >> (i & 7)) & 1) << 2);
}

template <typename Block>
constexpr int kHQGroup = sizeof(Block) == sizeof(BlockHQ3_128) ? 128 : 64;

// w = (q − z)·d, evaluated as (float(q) − z)·d.
template <typename Block>
void dequant_hq(const Block* b, float* y) {
  const float d = h2f(b->d), z = h2f(b->z);
  for (int i = 0; i < kHQGroup<Block>; i++) y[i] = ((float)hq_code(*b, i) - z) * d;
}

// HQ3_32: the same (float(q) − z)·d per group of 32, with d = D·scale(sc) and z = zc/16 − 4.
inline float hq3_32_d(const BlockHQ3_32& b, int g) { return h2f(b.D) * hq3_32_scale(b.sc[g]); }
inline float hq3_32_z(const BlockHQ3_32& b, int g) { return (float)b.zc[g] / 16.0f - 4.0f; }

void dequant_hq3_32(const BlockHQ3_32* b, float* y) {
  for (int g = 0; g < 4; g++) {
    const float d = hq3_32_d(*b, g), z = hq3_32_z(*b, g);
    for (int l = 0; l < kQK; l++) y[kQK * g + l] = ((float)hq_code(*b, kQK * g + l) - z) * d;
  }
}

// S3_16: (float(q) − 4)·d_g per group of 16, d_g = D·(c_g − 16) (exact: an fp16 times a small
// integer).
inline int s3_16_scale_code(const BlockS3_16& b, int g) {
  return ((b.sl[g & 7] >> (4 * (g >> 3))) & 15) | (((b.sh[g >> 3] >> (g & 7)) & 1) << 4);
}
inline float s3_16_d(const BlockS3_16& b, int g) { return h2f(b.d) * (float)(s3_16_scale_code(b, g) - 16); }

void dequant_s3_16(const BlockS3_16* b, float* y) {
  for (int g = 0; g < 16; g++) {
    const float d = s3_16_d(*b, g);
    for (int l = 0; l < 16; l++) y[16 * g + l] = ((float)hq_code(*b, 16 * g + l) - 4.0f) * d;
  }
}

void dequant_s3_32(const BlockS3_32* b, float* y) {
  const float d = h2f(b->d);
  for (int i = 0; i < 32; i++) y[i] = (float)(s3_code(*b, i) - 4) * d;
}

template <typename Block, void (*F)(const Block*, float*)>
void dequant_blocks(const void* src, float* dst, int64_t nb, int qk) {
  const Block* b = (const Block*)src;
  for (int64_t i = 0; i < nb; i++) F(b + i, dst + i * qk);
}

}  // namespace

void dequantize_row(QType t, const void* src, float* dst, int64_t n) {
  const int64_t nb = checked_blocks(t, n, "dequantize_row");
  switch (t) {
    case QType::F32: std::memcpy(dst, src, (size_t)n * 4); return;
    case QType::F16: {
      const uint16_t* h = (const uint16_t*)src;
      for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_fp32(h[i]);
      return;
    }
    case QType::BF16: {
      const uint16_t* h = (const uint16_t*)src;
      for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(h[i]);
      return;
    }
    case QType::Q4_0: return dequant_blocks<BlockQ4_0, dequant_q4_0>(src, dst, nb, kQK);
    case QType::Q4_1: return dequant_blocks<BlockQ4_1, dequant_q4_1>(src, dst, nb, kQK);
    case QType::Q5_0: return dequant_blocks<BlockQ5_0, dequant_q5_0>(src, dst, nb, kQK);
    case QType::Q5_1: return dequant_blocks<BlockQ5_1, dequant_q5_1>(src, dst, nb, kQK);
    case QType::Q8_0: return dequant_blocks<BlockQ8_0, dequant_q8_0>(src, dst, nb, kQK);
    case QType::Q8_1: return dequant_blocks<BlockQ8_1, dequant_q8_1>(src, dst, nb, kQK);
    case QType::IQ4_NL: return dequant_blocks<BlockIQ4_NL, dequant_iq4_nl>(src, dst, nb, kQK);
    case QType::Q2_K: return dequant_blocks<BlockQ2_K, dequant_q2_K>(src, dst, nb, kQK_K);
    case QType::Q3_K: return dequant_blocks<BlockQ3_K, dequant_q3_K>(src, dst, nb, kQK_K);
    case QType::Q4_K: return dequant_blocks<BlockQ4_K, dequant_q4_K>(src, dst, nb, kQK_K);
    case QType::Q5_K: return dequant_blocks<BlockQ5_K, dequant_q5_K>(src, dst, nb, kQK_K);
    case QType::Q6_K: return dequant_blocks<BlockQ6_K, dequant_q6_K>(src, dst, nb, kQK_K);
    case QType::Q8_K: return dequant_blocks<BlockQ8_K, dequant_q8_K>(src, dst, nb, kQK_K);
    case QType::HQ2_64: return dequant_blocks<BlockHQ2_64, dequant_hq<BlockHQ2_64>>(src, dst, nb, 64);
    case QType::HQ3_64: return dequant_blocks<BlockHQ3_64, dequant_hq<BlockHQ3_64>>(src, dst, nb, 64);
    case QType::HQ3_128: return dequant_blocks<BlockHQ3_128, dequant_hq<BlockHQ3_128>>(src, dst, nb, 128);
    case QType::HQ4_64: return dequant_blocks<BlockHQ4_64, dequant_hq<BlockHQ4_64>>(src, dst, nb, 64);
    case QType::S3_32: return dequant_blocks<BlockS3_32, dequant_s3_32>(src, dst, nb, kQK);
    case QType::HQ3_32: return dequant_blocks<BlockHQ3_32, dequant_hq3_32>(src, dst, nb, 128);
    case QType::S3_16: return dequant_blocks<BlockS3_16, dequant_s3_16>(src, dst, nb, 256);
  }
  fail("dequantize_row: no dequantizer for {}", qtype_name((uint32_t)t));
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers (§3.2), scalar versions. The SIMD ones must produce identical bytes.

namespace {

// Round half to even under the default rounding mode (what _mm256_round_ps and ggml's
// nearest_int do for these magnitudes).
inline int round_even(float x) { return (int)std::nearbyint(x); }

void quantize_f32(const float* x, void* y, int64_t n) { std::memcpy(y, x, (size_t)n * 4); }

void quantize_f16(const float* x, void* y, int64_t n) {
  uint16_t* h = (uint16_t*)y;
  for (int64_t i = 0; i < n; i++) h[i] = fp32_to_fp16(x[i]);
}

void quantize_bf16(const float* x, void* y, int64_t n) {
  uint16_t* h = (uint16_t*)y;
  for (int64_t i = 0; i < n; i++) h[i] = fp32_to_bf16(x[i]);
}

// Shared by Q8_0 and Q8_1: d = amax/127 (stored fp16), q = round_even(x·(127/amax)).
// Returns d in fp32 (Q8_1's s is computed from it) and Σq.
float quantize_q8_block(const float* x, uint16_t& d16, int8_t* qs, int& sum) {
  float amax = 0.0f;
  for (int j = 0; j < 32; j++) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  d16 = fp32_to_fp16(d);
  sum = 0;
  for (int j = 0; j < 32; j++) {
    qs[j] = (int8_t)round_even(x[j] * id);
    sum += qs[j];
  }
  return d;
}

void quantize_q8_0(const float* x, void* y, int64_t n) {
  BlockQ8_0* b = (BlockQ8_0*)y;
  int sum;
  for (int64_t i = 0; i < n / kQK; i++) quantize_q8_block(x + i * kQK, b[i].d, b[i].qs, sum);
}

void quantize_q8_1(const float* x, void* y, int64_t n) {
  BlockQ8_1* b = (BlockQ8_1*)y;
  for (int64_t i = 0; i < n / kQK; i++) {
    int sum;
    const float d = quantize_q8_block(x + i * kQK, b[i].d, b[i].qs, sum);
    b[i].s = fp32_to_fp16(d * (float)sum);
  }
}

// −127/max rule: the first element of largest magnitude gets code −127, d = 1/iscale has the
// opposite sign of that element.
void quantize_q8_K(const float* x, void* y, int64_t n) {
  BlockQ8_K* b = (BlockQ8_K*)y;
  for (int64_t i = 0; i < n / kQK_K; i++, x += kQK_K) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK_K; j++) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; j++) {
      const int v = round_even(iscale * x[j]);
      b[i].qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int g = 0; g < 16; g++) {
      int s = 0;
      for (int l = 0; l < 16; l++) s += b[i].qs[16 * g + l];
      b[i].bsums[g] = (int16_t)s;
    }
    b[i].d = 1.0f / iscale;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Scalar reference dot products (§3.3): exact integer sums per block, float across blocks.

namespace {

float ref_dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = (const float*)w;
  const float* y = (const float*)a;
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)(x[i] * y[i]);
  return (float)s;
}

float ref_dot_f16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = (const uint16_t*)w;
  const uint16_t* y = (const uint16_t*)a;
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
  return (float)s;
}

float ref_dot_bf16(int64_t n, const void* w, const void* a) {
  const uint16_t* x = (const uint16_t*)w;
  const uint16_t* y = (const uint16_t*)a;
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
  return (float)s;
}

float ref_dot_q4_0(int64_t n, const void* w, const void* a) {
  const BlockQ4_0* x = (const BlockQ4_0*)w;
  const BlockQ8_0* y = (const BlockQ8_0*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; i++) {
    int s = 0;
    for (int j = 0; j < 16; j++)
      s += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
    sum += (float)s * h2f(x[i].d) * h2f(y[i].d);
  }
  return sum;
}

float ref_dot_q4_1(int64_t n, const void* w, const void* a) {
  const BlockQ4_1* x = (const BlockQ4_1*)w;
  const BlockQ8_1* y = (const BlockQ8_1*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; i++) {
    int s = 0;
    for (int j = 0; j < 16; j++) s += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
    sum += h2f(x[i].d) * h2f(y[i].d) * (float)s + h2f(x[i].m) * h2f(y[i].s);
  }
  return sum;
}

float ref_dot_q5_0(int64_t n, const void* w, const void* a) {
  const BlockQ5_0* x = (const BlockQ5_0*)w;
  const BlockQ8_0* y = (const BlockQ8_0*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; i++) {
    int s = 0;
    for (int j = 0; j < 16; j++) {
      const int q0 = ((x[i].qs[j] & 0xF) | (q5_high_bit(x[i].qh, j) << 4)) - 16;
      const int q1 = ((x[i].qs[j] >> 4) | (q5_high_bit(x[i].qh, j + 16) << 4)) - 16;
      s += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
    }
    sum += (float)s * h2f(x[i].d) * h2f(y[i].d);
  }
  return sum;
}

float ref_dot_q5_1(int64_t n, const void* w, const void* a) {
  const BlockQ5_1* x = (const BlockQ5_1*)w;
  const BlockQ8_1* y = (const BlockQ8_1*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; i++) {
    int s = 0;
    for (int j = 0; j < 16; j++) {
      const int q0 = (x[i].qs[j] & 0xF) | (q5_high_bit(x[i].qh, j) << 4);
      const int q1 = (x[i].qs[j] >> 4) | (q5_high_bit(x[i].qh, j + 16) << 4);
      s += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
    }
    sum += h2f(x[i].d) * h2f(y[i].d) * (float)s + h2f(x[i].m) * h2f(y[i].s);
  }
  return sum;
}

float ref_dot_q8_0(int64_t n, const void* w, const void* a) {
  const BlockQ8_0* x = (const BlockQ8_0*)w;
  const BlockQ8_0* y = (const BlockQ8_0*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; i++) {
    int s = 0;
    for (int j = 0; j < 32; j++) s += x[i].qs[j] * y[i].qs[j];
    sum += (float)s * h2f(x[i].d) * h2f(y[i].d);
  }
  return sum;
}

float ref_dot_iq4_nl(int64_t n, const void* w, const void* a) {
  const BlockIQ4_NL* x = (const BlockIQ4_NL*)w;
  const BlockQ8_0* y = (const BlockQ8_0*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; i++) {
    int s = 0;
    for (int j = 0; j < 16; j++)
      s += kIQ4NLValues[x[i].qs[j] & 0xF] * y[i].qs[j] + kIQ4NLValues[x[i].qs[j] >> 4] * y[i].qs[j + 16];
    sum += (float)s * h2f(x[i].d) * h2f(y[i].d);
  }
  return sum;
}

float ref_dot_q2_K(int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = (const BlockQ2_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; i++) {
    int isum = 0, msum = 0;
    for (int j = 0; j < 16; j++) {
      int s = 0;
      for (int t = 0; t < 16; t++) {
        const int e = 16 * j + t, g = e >> 7, k = (e >> 5) & 3, l = e & 31;
        s += ((x[i].qs[32 * g + l] >> (2 * k)) & 3) * y[i].qs[e];
      }
      isum += (x[i].scales[j] & 0xF) * s;
      msum += (x[i].scales[j] >> 4) * y[i].bsums[j];
    }
    sum += y[i].d * h2f(x[i].d) * (float)isum - y[i].d * h2f(x[i].dmin) * (float)msum;
  }
  return sum;
}

float ref_dot_q3_K(int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = (const BlockQ3_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; i++) {
    int isum = 0;
    for (int j = 0; j < 16; j++) {
      int s = 0;
      for (int t = 0; t < 16; t++) {
        const int e = 16 * j + t, g = e >> 7, k = (e >> 5) & 3, l = e & 31;
        const int low2 = (x[i].qs[32 * g + l] >> (2 * k)) & 3;
        const int hb = (x[i].hmask[l] >> (e >> 5)) & 1;
        s += (low2 - (hb ? 0 : 4)) * y[i].qs[e];
      }
      isum += q3k_scale(x[i].scales, j) * s;
    }
    sum += y[i].d * h2f(x[i].d) * (float)isum;
  }
  return sum;
}

float ref_dot_q4_K(int64_t n, const void* w, const void* a) {
  const BlockQ4_K* x = (const BlockQ4_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; i++) {
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; j++) {
      int sc, m;
      k4_scale_min(x[i].scales, j, sc, m);
      const uint8_t* q = x[i].qs + 32 * (j >> 1);
      const int shift = (j & 1) * 4;
      int s = 0;
      for (int l = 0; l < 32; l++) s += ((q[l] >> shift) & 0xF) * y[i].qs[32 * j + l];
      isum += sc * s;
      msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    sum += h2f(x[i].d) * y[i].d * (float)isum - h2f(x[i].dmin) * y[i].d * (float)msum;
  }
  return sum;
}

float ref_dot_q5_K(int64_t n, const void* w, const void* a) {
  const BlockQ5_K* x = (const BlockQ5_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; i++) {
    int isum = 0, msum = 0;
    for (int j = 0; j < 8; j++) {
      int sc, m;
      k4_scale_min(x[i].scales, j, sc, m);
      const uint8_t* q = x[i].qs + 32 * (j >> 1);
      const int shift = (j & 1) * 4;
      int s = 0;
      for (int l = 0; l < 32; l++) {
        const int v = ((q[l] >> shift) & 0xF) | (((x[i].qh[l] >> j) & 1) << 4);
        s += v * y[i].qs[32 * j + l];
      }
      isum += sc * s;
      msum += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    sum += h2f(x[i].d) * y[i].d * (float)isum - h2f(x[i].dmin) * y[i].d * (float)msum;
  }
  return sum;
}

float ref_dot_q6_K(int64_t n, const void* w, const void* a) {
  const BlockQ6_K* x = (const BlockQ6_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK_K; i++) {
    int isum = 0;
    for (int j = 0; j < 16; j++) {
      int s = 0;
      for (int t = 0; t < 16; t++) {
        const int e = 16 * j + t, g = e >> 7, k = (e >> 5) & 3, l = e & 31;
        const uint8_t qlb = x[i].ql[64 * g + 32 * (k & 1) + l];
        const int lo = k < 2 ? (qlb & 0xF) : (qlb >> 4);
        const int hi = (x[i].qh[32 * g + l] >> (2 * k)) & 3;
        s += ((lo | (hi << 4)) - 32) * y[i].qs[e];
      }
      isum += x[i].scales[j] * s;
    }
    sum += h2f(x[i].d) * y[i].d * (float)isum;
  }
  return sum;
}

// HQ formats against Q8_0. Per weight block of G = 64·m elements (d, z its fp16 scale and zero
// as floats), over its G/32 activation blocks j in order (dx_j their fp16 scale as a float):
//   sqa_j = Σ q_i·a_i,  sa_j = Σ a_i                   (exact int)
//   bs += dx_j·(float)sqa_j,  bz += dx_j·(float)sa_j    (float, from 0 per block)
//   sum += d·(bs − z·bz)                                (float, blocks in order)
// which is Σ (q_i − z)·d·dx·a_i. The SIMD kernels (hq_dot_*.cpp) sum the same exact integers
// in another order of float operations.
template <typename Block>
float ref_dot_hq(int64_t n, const void* w, const void* a) {
  constexpr int G = kHQGroup<Block>;
  const Block* x = (const Block*)w;
  const BlockQ8_0* y = (const BlockQ8_0*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / G; i++) {
    float bs = 0, bz = 0;
    for (int j = 0; j < G / kQK; j++) {
      const BlockQ8_0& yj = y[i * (G / kQK) + j];
      int sqa = 0, sa = 0;
      for (int l = 0; l < kQK; l++) {
        sqa += hq_code(x[i], kQK * j + l) * yj.qs[l];
        sa += yj.qs[l];
      }
      const float dx = h2f(yj.d);
      bs += dx * (float)sqa;
      bz += dx * (float)sa;
    }
    sum += h2f(x[i].d) * (bs - h2f(x[i].z) * bz);
  }
  return sum;
}

// Formats with a scale d_g and zero z_g per group of kGroup codes (kGroup ≤ 32, so a group lies
// in one Q8_0 block) against Q8_0: ref_dot_hq's formula per group, i.e.
//   sum += d_g·(dx·(float)sqa − z_g·(dx·(float)sa))
template <class Block, int kWeights, int kGroup, class DOf, class ZOf>
float ref_dot_grouped(int64_t n, const void* w, const void* a, DOf d_of, ZOf z_of) {
  static_assert(kQK % kGroup == 0 && kWeights % kQK == 0);
  const Block* x = (const Block*)w;
  const BlockQ8_0* y = (const BlockQ8_0*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kWeights; i++) {
    for (int g = 0; g < kWeights / kGroup; g++) {
      const BlockQ8_0& yg = y[(kWeights * i + kGroup * g) / kQK];
      const int off = kGroup * g % kQK;
      int sqa = 0, sa = 0;
      for (int l = 0; l < kGroup; l++) {
        sqa += hq_code(x[i], kGroup * g + l) * yg.qs[off + l];
        sa += yg.qs[off + l];
      }
      const float dx = h2f(yg.d);
      const float bs = dx * (float)sqa, bz = dx * (float)sa;
      sum += d_of(x[i], g) * (bs - z_of(x[i], g) * bz);
    }
  }
  return sum;
}

float ref_dot_hq3_32(int64_t n, const void* w, const void* a) {
  return ref_dot_grouped<BlockHQ3_32, 128, 32>(n, w, a, hq3_32_d, hq3_32_z);
}

// S3_16: groups of 16 (half an activation block) with z = 4.
float ref_dot_s3_16(int64_t n, const void* w, const void* a) {
  return ref_dot_grouped<BlockS3_16, 256, 16>(n, w, a, s3_16_d, [](const BlockS3_16&, int) { return 4.0f; });
}

// S3_32 against Q8_0, per block: sum += d·dx·(float)Σ (q_i − 4)·a_i.
float ref_dot_s3_32(int64_t n, const void* w, const void* a) {
  const BlockS3_32* x = (const BlockS3_32*)w;
  const BlockQ8_0* y = (const BlockQ8_0*)a;
  float sum = 0;
  for (int64_t i = 0; i < n / kQK; i++) {
    int s = 0;
    for (int l = 0; l < kQK; l++) s += (s3_code(x[i], l) - 4) * y[i].qs[l];
    sum += h2f(x[i].d) * h2f(y[i].d) * (float)s;
  }
  return sum;
}

DotTable make_scalar_table() {
  DotTable t;
  auto dot = [&](QType q, VecDotFn f) { t.vec_dot[(uint32_t)q] = f; };
  dot(QType::F32, ref_dot_f32);
  dot(QType::F16, ref_dot_f16);
  dot(QType::BF16, ref_dot_bf16);
  dot(QType::Q4_0, ref_dot_q4_0);
  dot(QType::Q4_1, ref_dot_q4_1);
  dot(QType::Q5_0, ref_dot_q5_0);
  dot(QType::Q5_1, ref_dot_q5_1);
  dot(QType::Q8_0, ref_dot_q8_0);
  dot(QType::IQ4_NL, ref_dot_iq4_nl);
  dot(QType::Q2_K, ref_dot_q2_K);
  dot(QType::Q3_K, ref_dot_q3_K);
  dot(QType::Q4_K, ref_dot_q4_K);
  dot(QType::Q5_K, ref_dot_q5_K);
  dot(QType::Q6_K, ref_dot_q6_K);
  dot(QType::HQ2_64, ref_dot_hq<BlockHQ2_64>);
  dot(QType::HQ3_64, ref_dot_hq<BlockHQ3_64>);
  dot(QType::HQ3_128, ref_dot_hq<BlockHQ3_128>);
  dot(QType::HQ4_64, ref_dot_hq<BlockHQ4_64>);
  dot(QType::S3_32, ref_dot_s3_32);
  dot(QType::HQ3_32, ref_dot_hq3_32);
  dot(QType::S3_16, ref_dot_s3_16);
  auto quant = [&](QType q, QuantizeRowFn f) { t.quantize_row[(uint32_t)q] = f; };
  quant(QType::F32, quantize_f32);
  quant(QType::F16, quantize_f16);
  quant(QType::BF16, quantize_bf16);
  quant(QType::Q8_0, quantize_q8_0);
  quant(QType::Q8_1, quantize_q8_1);
  quant(QType::Q8_K, quantize_q8_K);
  return t;
}

// The registration functions are compiled with their ISA's flags (the compiler may use its
// instructions even for filling the table), so they only run on a CPU that has that ISA; a
// table asked for beyond detected_isa() is the detected one.
DotTable make_table(Isa isa) {
  if ((int)isa > (int)detected_isa()) isa = detected_isa();
  DotTable t = make_scalar_table();
  if (isa >= Isa::Avx2) {
    register_quant_kernels_avx2(t);
    register_hq_kernels_avx2(t);
  }
  if (isa >= Isa::Avx512) {
    register_quant_kernels_avx512(t);
    register_hq_kernels_avx512(t);
  }
  return t;
}

const DotTable& active_table() {
  static const DotTable& t = dot_table(active_isa());
  return t;
}

}  // namespace

const DotTable& dot_table(Isa isa) {
  static const DotTable tables[3] = {make_table(Isa::Scalar), make_table(Isa::Avx2),
                                     make_table(Isa::Avx512)};
  return tables[(int)isa];
}

// ---------------------------------------------------------------------------------------------
// Public entry points

void quantize_row(QType vec_dot_type, const float* src, void* dst, int64_t n) {
  checked_blocks(vec_dot_type, n, "quantize_row");
  const QuantizeRowFn f = active_table().quantize_row[(uint32_t)vec_dot_type];
  if (!f) fail("quantize_row: {} is not an activation type", qtype_name((uint32_t)vec_dot_type));
  f(src, dst, n);
}

float vec_dot(QType t, int64_t n, const void* w, const void* a) {
  const VecDotFn f = (uint32_t)t < kQTypeIdLimit ? active_table().vec_dot[(uint32_t)t] : nullptr;
  if (!f) fail("vec_dot: no dot product for weight type {}", qtype_name((uint32_t)t));
  return f(n, w, a);
}

void dot_tile(const DotTable& table, QType t, int64_t n, const void* w, size_t w_stride, int64_t rows,
              const void* a, size_t a_stride, int64_t cols, float* out, int64_t out_stride) {
  const uint32_t id = (uint32_t)t;
  if (id < kQTypeIdLimit && table.vec_dot_tile[id]) {
    table.vec_dot_tile[id](n, w, w_stride, rows, a, a_stride, cols, out, out_stride);
    return;
  }
  const VecDotFn f = id < kQTypeIdLimit ? table.vec_dot[id] : nullptr;
  if (!f) fail("vec_dot_tile: no dot product for weight type {}", qtype_name(id));
  const uint8_t* wb = (const uint8_t*)w;
  const uint8_t* ab = (const uint8_t*)a;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) out[c * out_stride + r] = f(n, wb + r * w_stride, ab + c * a_stride);
}

void vec_dot_tile(QType t, int64_t n, const void* w, size_t w_stride, int64_t rows, const void* a,
                  size_t a_stride, int64_t cols, float* out, int64_t out_stride) {
  dot_tile(active_table(), t, n, w, w_stride, rows, a, a_stride, cols, out, out_stride);
}

float vec_dot_ref(QType t, int64_t n, const void* w, const void* a) {
  checked_blocks(t, n, "vec_dot_ref");
  const VecDotFn f = dot_table(Isa::Scalar).vec_dot[(uint32_t)t];
  if (!f) fail("vec_dot_ref: no dot product for weight type {}", qtype_name((uint32_t)t));
  return f(n, w, a);
}

// ---------------------------------------------------------------------------------------------
// Weight packing and quantization (scalar; for converters, not on the inference path)

namespace {

// n 3-bit codes (n % 64 == 0) into n/64 zeroed chunks, the layout of quant_blocks.h.
void pack_hq3_chunks(const uint8_t* codes, int n, HQ3Chunk* chunks) {
  for (int i = 0; i < n; i++) {
    HQ3Chunk& c = chunks[i >> 6];
    const int e = i & 63, q = codes[i];
    c.ql[e & 15] |= (uint8_t)((q & 3) << (2 * (e >> 4)));
    c.qh[e >> 3] |= (uint8_t)((q >> 2) << (e & 7));
  }
}

template <typename Block>
void hq_pack_blocks(const uint8_t* codes, const float* d, const float* z, int64_t nb, void* dst) {
  constexpr int G = kHQGroup<Block>;
  Block* b = (Block*)dst;
  for (int64_t g = 0; g < nb; g++, codes += G) {
    Block& blk = b[g];
    std::memset(&blk, 0, sizeof blk);
    blk.d = fp32_to_fp16(d[g]);
    blk.z = fp32_to_fp16(z[g]);
    if constexpr (sizeof(Block) == sizeof(BlockHQ3_64) || sizeof(Block) == sizeof(BlockHQ3_128)) {
      pack_hq3_chunks(codes, G, blk.c);
    } else {
      for (int i = 0; i < G; i++) {
        const int q = codes[i];
        if constexpr (sizeof(Block) == sizeof(BlockHQ2_64)) blk.ql[i & 15] |= (uint8_t)(q << (2 * (i >> 4)));
        else blk.qs[i & 31] |= (uint8_t)(q << (4 * (i >> 5)));
      }
    }
  }
}

// ggml's reference rule for the symmetric formats with a signed zero-point-free grid: max is the
// element of largest magnitude (the first one), d = max / −half, codes trunc(x/d + half + 0.5)
// clamped to 2·half − 1. Writes fp16(d) and the codes; x/d + half + 0.5 >= 0.5 always.
void quantize_symmetric_block(const float* x, int n, int half, uint16_t& d16, uint8_t* q) {
  float amax = 0, max = 0;
  for (int j = 0; j < n; j++)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / (float)-half;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  d16 = fp32_to_fp16(d);
  for (int j = 0; j < n; j++) {
    const int v = (int)(x[j] * id + ((float)half + 0.5f));
    q[j] = (uint8_t)(v < 2 * half - 1 ? v : 2 * half - 1);
  }
}

}  // namespace

void hq_pack_row(QType t, const uint8_t* codes, const float* d, const float* z, int64_t n, void* dst) {
  int bits = 0;
  switch (t) {
    case QType::HQ2_64: bits = 2; break;
    case QType::HQ3_64: case QType::HQ3_128: bits = 3; break;
    case QType::HQ4_64: bits = 4; break;
    case QType::HQ3_32: fail("hq_pack_row: HQ3_32 codes its group scales and zeros; use hq3_32_pack_row");
    case QType::S3_16: fail("hq_pack_row: S3_16 codes its group scales; use s3_16_pack_row");
    default: fail("hq_pack_row: {} is not an HQ format", qtype_name((uint32_t)t));
  }
  const int64_t nb = checked_blocks(t, n, "hq_pack_row");
  for (int64_t i = 0; i < n; i++)
    if (codes[i] >> bits)
      fail("hq_pack_row: code {} of element {} does not fit {} ({} bits)", codes[i], i, qtype_name((uint32_t)t), bits);
  switch (t) {
    case QType::HQ2_64: return hq_pack_blocks<BlockHQ2_64>(codes, d, z, nb, dst);
    case QType::HQ3_64: return hq_pack_blocks<BlockHQ3_64>(codes, d, z, nb, dst);
    case QType::HQ3_128: return hq_pack_blocks<BlockHQ3_128>(codes, d, z, nb, dst);
    default: return hq_pack_blocks<BlockHQ4_64>(codes, d, z, nb, dst);
  }
}

void hq3_32_pack_row(const uint8_t* codes, const uint8_t* sc, const uint8_t* zc, const uint16_t* D, int64_t n,
                     void* dst) {
  const int64_t nb = checked_blocks(QType::HQ3_32, n, "hq3_32_pack_row");
  for (int64_t i = 0; i < n; i++)
    if (codes[i] >> 3) fail("hq3_32_pack_row: code {} of element {} does not fit HQ3_32 (3 bits)", codes[i], i);
  BlockHQ3_32* b = (BlockHQ3_32*)dst;
  for (int64_t i = 0; i < nb; i++) {
    BlockHQ3_32& blk = b[i];
    std::memset(&blk, 0, sizeof blk);
    blk.D = D[i];
    std::memcpy(blk.sc, sc + 4 * i, 4);
    std::memcpy(blk.zc, zc + 4 * i, 4);
    pack_hq3_chunks(codes + 128 * i, 128, blk.c);
  }
}

void s3_16_pack_row(const uint8_t* codes, const uint8_t* sc, const uint16_t* D, int64_t n, void* dst) {
  const int64_t nb = checked_blocks(QType::S3_16, n, "s3_16_pack_row");
  for (int64_t i = 0; i < n; i++)
    if (codes[i] >> 3) fail("s3_16_pack_row: code {} of element {} does not fit S3_16 (3 bits)", codes[i], i);
  for (int64_t g = 0; g < n / 16; g++)
    if (sc[g] >> 5) fail("s3_16_pack_row: scale code {} of group {} does not fit S3_16 (5 bits)", sc[g], g);
  BlockS3_16* b = (BlockS3_16*)dst;
  for (int64_t i = 0; i < nb; i++) {
    BlockS3_16& blk = b[i];
    std::memset(&blk, 0, sizeof blk);
    blk.d = D[i];
    const uint8_t* s = sc + 16 * i;
    for (int g = 0; g < 16; g++) {
      blk.sl[g & 7] |= (uint8_t)((s[g] & 15) << (4 * (g >> 3)));
      blk.sh[g >> 3] |= (uint8_t)((s[g] >> 4) << (g & 7));
    }
    pack_hq3_chunks(codes + 256 * i, 256, blk.c);
  }
}

void quantize_weight_row(QType t, const float* src, void* dst, int64_t n) {
  if (t != QType::F16 && t != QType::Q4_0 && t != QType::Q8_0 && t != QType::S3_32)
    fail("quantize_weight_row: no weight quantizer for {}", qtype_name((uint32_t)t));
  const int64_t nb = checked_blocks(t, n, "quantize_weight_row");
  uint8_t q[kQK];
  switch (t) {
    case QType::F16: return quantize_f16(src, dst, n);
    case QType::Q4_0: {  // ggml quantize_row_q4_0_ref: d = max / −8, q = min(15, trunc(x/d + 8.5))
      BlockQ4_0* b = (BlockQ4_0*)dst;
      for (int64_t i = 0; i < nb; i++) {
        quantize_symmetric_block(src + i * kQK, kQK, 8, b[i].d, q);
        for (int j = 0; j < 16; j++) b[i].qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
      }
      return;
    }
    case QType::Q8_0: {  // ggml quantize_row_q8_0_ref: d = amax / 127, q = roundf(x·(1/d)), half away from 0
      BlockQ8_0* b = (BlockQ8_0*)dst;
      for (int64_t i = 0; i < nb; i++) {
        const float* x = src + i * kQK;
        float amax = 0;
        for (int j = 0; j < kQK; j++) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK; j++) b[i].qs[j] = (int8_t)std::round(x[j] * id);
      }
      return;
    }
    default: {  // S3_32: as Q4_0 with 3 bits: d = max / −4, q = min(7, trunc(x/d + 4.5))
      BlockS3_32* b = (BlockS3_32*)dst;
      for (int64_t i = 0; i < nb; i++) {
        quantize_symmetric_block(src + i * kQK, kQK, 4, b[i].d, q);
        std::memset(b[i].ql, 0, sizeof b[i].ql);
        std::memset(b[i].qh, 0, sizeof b[i].qh);
        for (int j = 0; j < kQK; j++) {
          b[i].ql[j & 7] |= (uint8_t)((q[j] & 3) << (2 * (j >> 3)));
          b[i].qh[j >> 3] |= (uint8_t)((q[j] >> 2) << (j & 7));
        }
      }
      return;
    }
  }
}

}  // namespace stepq

// ---------------------------------------------------------------------------------------------
// Type lookup by name

namespace stepq {

std::optional<QType> qtype_from_name(std::string_view name) {
  for (uint32_t id = 0; id < kQTypeIdLimit; id++)
    if (const QTypeInfo* i = qtype_info(id); i && name == i->name) return (QType)id;
  return std::nullopt;
}

}  // namespace stepq
