// Byte layouts of ggml's blocks (../shared/reference/gguf-and-quants.md §2). Plain structs and
// constants only: this header is included by the SIMD translation units, which must not share
// inline functions with baseline code.
//
// fp16 fields are kept as raw uint16_t bits. A block needs 2-byte alignment (4 for Q8_K);
// rows of a tensor start at even offsets, so that always holds for mmapped GGUF data.
#pragma once
#include <cstdint>

namespace stepq {

constexpr int kQK = 32;    // elements per legacy block (Q4_0 ... Q8_1, IQ4_NL)
constexpr int kQK_K = 256; // elements per K-quant super-block

// Legacy 32-element blocks. qs[j] holds element j in its low nibble and j+16 in its high one;
// qh bit e (little-endian over the 4 bytes) is the 5th bit of element e.
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };                   // d·(nib−8)
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };                // d·nib + m
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };    // d·(q5−16)
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; }; // d·q5 + m
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };                    // d·q
struct BlockQ8_1 { uint16_t d, s; int8_t qs[32]; };                 // d·q; s = fp16(d·Σq)
struct BlockIQ4_NL { uint16_t d; uint8_t qs[16]; };                 // d·kIQ4NLValues[nib]

// K-quants: 256 elements, sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 32 (Q4_K, Q5_K).
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
// Activation super-block: d is float32; bsums[g] = Σ qs[16g .. 16g+15].
struct BlockQ8_K { float d; int8_t qs[256]; int16_t bsums[16]; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_1) == 36 &&
              sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292);

// stepq's "HQ" family (MiLo / HQQ weights; not ggml formats): asymmetric codes q with an fp16
// scale d and an fp16 zero z (in code units) per group, w = (q − z)·d; and S3_32, symmetric
// 3-bit with w = (q − 4)·d. All pair with Q8_0 activations.
//
// 2-bit codes: value i of 64 is (ql[i % 16] >> 2·(i / 16)) & 3.
// 3-bit codes come in 24-byte chunks of 64 values: the low two bits as above, the third bit of
// value i is bit i of qh read as a little-endian uint64 (bit i % 8 of qh[i / 8]).
// 4-bit codes: value i of 64 is (qs[i % 32] >> 4·(i / 32)) & 15.
struct BlockHQ2_64 { uint16_t d, z; uint8_t ql[16]; };
struct HQ3Chunk { uint8_t ql[16]; uint8_t qh[8]; };
struct BlockHQ3_64 { uint16_t d, z; HQ3Chunk c[1]; };
struct BlockHQ3_128 { uint16_t d, z; HQ3Chunk c[2]; };  // chunk k: values 64k .. 64k+63
struct BlockHQ4_64 { uint16_t d, z; uint8_t qs[32]; };
// HQ3_32: 128 values in 4 groups of 32, one fp16 D per block and 8-bit codes per group:
// d_g = D·hq3_32_scale(sc[g]) (quant_types.h; 2^(−sc/32), a log grid below the block's largest
// scale), z_g = zc[g]/16 − 4 (exact in float). Group g is half g % 2 of chunk g / 2, so a
// 64-value chunk pairs with two Q8_0 activation blocks exactly as in HQ3_128.
struct BlockHQ3_32 { uint16_t D; uint8_t sc[4]; uint8_t zc[4]; HQ3Chunk c[2]; };
// S3_16: 256 values in 16 groups of 16, symmetric (llama.cpp's Q3_K parametrisation with 5-bit
// group scales): w = (q − 4)·d_g, d_g = fp16(d)·(c_g − 16), c_g ∈ 0..31 the group's scale code:
// its low 4 bits are nibble g / 8 of sl[g % 8] (low nibble for groups 0..7), its 5th bit is bit g
// of sh read as a little-endian uint16. Codes in four HQ3 chunks (chunk k: values 64k .. 64k+63).
// 108 bytes: 3.375 bits per weight.
struct BlockS3_16 { uint16_t d; uint8_t sl[8]; uint8_t sh[2]; HQ3Chunk c[4]; };
// S3_32: value i of 32 is ((ql[i % 8] >> 2·(i / 8)) & 3) | (bit i of qh as a LE uint32) << 2.
struct BlockS3_32 { uint16_t d; uint8_t ql[8]; uint8_t qh[4]; };

static_assert(sizeof(HQ3Chunk) == 24 && sizeof(BlockHQ2_64) == 20 && sizeof(BlockHQ3_64) == 28 &&
              sizeof(BlockHQ3_128) == 52 && sizeof(BlockHQ4_64) == 36 && sizeof(BlockS3_32) == 14 &&
              sizeof(BlockHQ3_32) == 58 && sizeof(BlockS3_16) == 108);

// IQ4_NL's non-linear code book (kvalues_iq4nl in ggml-common.h).
constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

}  // namespace stepq
