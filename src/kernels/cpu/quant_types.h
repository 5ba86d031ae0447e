// ggml weight formats: ids as stored in GGUF, block geometry, and the row-level operations
// every matmul builds on (dequantize, quantize activations, dot products).
// Layouts and formulas: ../shared/reference/gguf-and-quants.md §1.7, §2, §3.
#pragma once
#include <cstddef>
#include <cstdint>

namespace stepq {

// Values below 48 are ggml_type ids (the uint32 in a GGUF tensor info). 48 and up are
// stepq-internal formats (the "HQ" family, MiLo/HQQ weights; layouts in quant_blocks.h) that
// are never written as ggml type ids.
enum class QType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, IQ4_NL = 20, BF16 = 30,
  HQ2_64 = 48, HQ3_64 = 49, HQ3_128 = 50, HQ4_64 = 51, S3_32 = 52, HQ3_32 = 53, S3_16 = 54,
};
constexpr uint32_t kQTypeIdLimit = 64;  // ids >= this are never valid

struct QTypeInfo {
  const char* name;      // "Q4_K"
  int block_size;        // elements per block
  int type_size;         // bytes per block
  bool storage;          // supported as a weight format in a model file
  QType vec_dot_type;    // activation format llama.cpp pairs with it (F32 for F32)
};

// nullptr for ids stepq does not know (removed ids, IQ2/IQ3, ...).
const QTypeInfo* qtype_info(uint32_t id);
inline const QTypeInfo& qtype_info(QType t) { return *qtype_info((uint32_t)t); }
const char* qtype_name(uint32_t id);  // "type 17" for unknown ids

// Bytes of a row of n elements; n must be a multiple of the block size.
inline size_t row_bytes(QType t, int64_t n) {
  const QTypeInfo& i = qtype_info(t);
  return (size_t)(n / i.block_size) * (size_t)i.type_size;
}

// Scalar reference: row of n elements (multiple of the block size) to f32.
void dequantize_row(QType t, const void* src, float* dst, int64_t n);

// Activation quantizer for vec_dot_type formats (F32 copy, F16, BF16, Q8_0, Q8_1, Q8_K),
// bit-exact with llama.cpp's x86 path. n is a multiple of the block size.
void quantize_row(QType vec_dot_type, const float* src, void* dst, int64_t n);

// dot(weight row of type t, activation row already in qtype_info(t).vec_dot_type), n elements.
// Dispatches to the best SIMD kernel for active_isa().
float vec_dot(QType t, int64_t n, const void* w, const void* a);

// Many dot products at once: out[t·out_stride + r] = vec_dot(t, n, row r of w, row t of a) for
// r < rows, t < cols (weight rows w_stride bytes apart, activation rows a_stride bytes apart),
// each bit-identical to vec_dot on that pair. Unpacks each weight block once for all tokens.
void vec_dot_tile(QType t, int64_t n, const void* w, size_t w_stride, int64_t rows, const void* a,
                  size_t a_stride, int64_t cols, float* out, int64_t out_stride);

// The scalar reference dot product (what SIMD kernels are tested against).
float vec_dot_ref(QType t, int64_t n, const void* w, const void* a);

// Packs an HQ row (HQ2_64, HQ3_64, HQ3_128, HQ4_64) of n elements (a multiple of the block
// size): codes[i] is element i's code (< 2^bits, else Error), d[g] and z[g] the scale and zero
// of block g, stored as fp16 (round to nearest even). Dequantizes to (codes[i] − z)·d.
void hq_pack_row(QType t, const uint8_t* codes, const float* d, const float* z, int64_t n, void* dst);

// HQ3_32's group scale factors: table[c] = exp2f(−c/32), computed once, so that the quantizer,
// the reference and the kernels all multiply D by the same floats. ISA files call this, not the
// inline hq3_32_scale (quant_dispatch.h).
const float* hq3_32_scale_table();  // [256]
inline float hq3_32_scale(uint8_t c) { return hq3_32_scale_table()[c]; }

// Packs one HQ3_32 row of n weights (n % 128 == 0): codes (n, each < 8, else Error), sc and zc
// (n/32 each, the group scale and zero codes), D (n/128 fp16 bits). Group g dequantizes to
// (codes[i] − (zc[g]/16 − 4))·(fp16(D[g/4])·hq3_32_scale(sc[g])).
void hq3_32_pack_row(const uint8_t* codes, const uint8_t* sc, const uint8_t* zc, const uint16_t* D, int64_t n,
                     void* dst);

// Packs one S3_16 row of n weights (n % 256 == 0): codes (n, each < 8, else Error), sc (n/16
// group scale codes, each < 32, else Error), D (n/256 fp16 bits). Group g dequantizes to
// (codes[i] − 4)·(fp16(D[g/16])·(sc[g] − 16)).
void s3_16_pack_row(const uint8_t* codes, const uint8_t* sc, const uint16_t* D, int64_t n, void* dst);

// Weight quantizer (round to nearest on a per-block absmax grid, llama.cpp's reference rules)
// for F16, Q4_0, Q8_0 and S3_32; Error for other types. n is a multiple of the block size.
void quantize_weight_row(QType t, const float* src, void* dst, int64_t n);

}  // namespace stepq

// Type lookup by name (used by the GGUF reader for stepq-private types stored as I8 tensors).
#include <optional>
#include <string_view>

namespace stepq {

// The type whose QTypeInfo::name is `name` (exact, e.g. "Q4_K", "HQ3_64"); nullopt if none.
std::optional<QType> qtype_from_name(std::string_view name);

}  // namespace stepq
