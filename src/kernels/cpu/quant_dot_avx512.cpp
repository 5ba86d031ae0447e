// AVX-512 dot products (F, BW, VL, DQ, VNNI). Compiled with the flags in CMakeLists.txt.
// Registered over the AVX2 table: the activation quantizers stay the AVX2 ones.
//
// - Legacy 32-element blocks: two blocks per 512-bit vector. VNNI's _mm512_dpbusd_epi32
//   (unsigned byte × signed byte, 4 products summed into an int32) replaces AVX2's
//   maddubs + madd. It needs an unsigned left operand, so signed codes are offset to unsigned
//   and the offset is taken back with a second dpbusd of the constant against the activations:
//   Σ (u − c)·a = dpbusd(u, a) − dpbusd(c, a). Q8_0 weights use |w| and a with w's sign.
// - K-quants: 64 codes per maddubs (int16 pair sums), then _mm512_dpwssd_epi32 multiplies by
//   the sub-block scale and accumulates in one instruction.
// - Float types: 16 lanes, masked loads for the tail.
//
// Integer ranges as in quant_dot_avx2.cpp (activation codes −127..127). Everything except the
// registration function is in an anonymous namespace; nothing allocates.
// GCC 12's AVX-512 intrinsics seed unused lanes with a self-initialised "undefined" vector and
// then warn about it (GCC bug 105593, fixed in GCC 13): silence only that, only here.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dispatch.h"

namespace stepq {
namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

inline __m512i loadu512(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i loadu256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }
inline __m128i loadu128(const void* p) { return _mm_loadu_si128((const __m128i*)p); }

inline __m512i join256(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline int hsum_epi32(__m128i v) {
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(v);
}
inline int hsum_epi32(__m256i v) {
  return hsum_epi32(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

// ---------------------------------------------------------------------------------------------
// Float weights

inline __mmask16 tail_mask(int64_t left) { return (__mmask16)((1u << left) - 1); }

// 16 weight floats as two 256-bit loads: on the AMD Zen core this was measured on, an F32 row
// streamed from DRAM arrives ~1.5x faster than with 512-bit loads (45 vs 29 GB/s, one core,
// 64 MiB of weights); from cache it makes no difference.
inline __m512 load_weights_f32(const float* p) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(p)), _mm256_loadu_ps(p + 8), 1);
}

float dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = (const float*)w;
  const float* y = (const float*)a;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(load_weights_f32(x + i), _mm512_loadu_ps(y + i), acc0);
    acc1 = _mm512_fmadd_ps(load_weights_f32(x + i + 16), _mm512_loadu_ps(y + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(load_weights_f32(x + i + 32), _mm512_loadu_ps(y + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(load_weights_f32(x + i + 48), _mm512_loadu_ps(y + i + 48), acc3);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load_weights_f32(x + i), _mm512_loadu_ps(y + i), acc0);
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

// 16 halves (fp16 or bf16) to floats; `m` selects how many are read.
inline __m512 load_f16x16(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load_bf16x16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

template <__m512 (*Load)(const uint16_t*, __mmask16)>
float dot_half(int64_t n, const void* w, const void* a) {
  const uint16_t* x = (const uint16_t*)w;
  const uint16_t* y = (const uint16_t*)a;
  const __mmask16 all = 0xFFFF;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(Load(x + i, all), Load(y + i, all), acc0);
    acc1 = _mm512_fmadd_ps(Load(x + i + 16, all), Load(y + i + 16, all), acc1);
    acc2 = _mm512_fmadd_ps(Load(x + i + 32, all), Load(y + i + 32, all), acc2);
    acc3 = _mm512_fmadd_ps(Load(x + i + 48, all), Load(y + i + 48, all), acc3);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(Load(x + i, all), Load(y + i, all), acc0);
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    acc1 = _mm512_fmadd_ps(Load(x + i, m), Load(y + i, m), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

// ---------------------------------------------------------------------------------------------
// Legacy 32-element blocks, two per vector: lanes 0..7 hold block i's int32 partial sums,
// lanes 8..15 block i+1's.

// Packed nibbles of two blocks to 64 bytes: elements 0..31 of the first block, then of the
// second ([low | high] nibbles of each).
inline __m512i unpack_nibbles2(const uint8_t* qs0, const uint8_t* qs1) {
  const __m512i v = join256(_mm256_broadcastsi128_si256(loadu128(qs0)), _mm256_broadcastsi128_si256(loadu128(qs1)));
  return _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFF00FF00u, v, 4), _mm512_set1_epi8(0x0F));
}

inline __m512i join_codes(const int8_t* q0, const int8_t* q1) { return join256(loadu256(q0), loadu256(q1)); }

// The 5th bits of two Q5 blocks as one byte mask (bit e: element e of the 64).
inline __mmask64 q5_bits2(const uint8_t* qh0, const uint8_t* qh1) {
  uint32_t b0, b1;
  std::memcpy(&b0, qh0, 4);
  std::memcpy(&b1, qh1, 4);
  return (__mmask64)b0 | ((__mmask64)b1 << 32);
}

inline __m512i dpbusd(__m512i u, __m512i s) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s); }

// Σ (u − c)·a per 4-byte group, for unsigned codes u with offset c.
inline __m512i dot_offset(__m512i u, __m512i a, __m512i c) { return _mm512_sub_epi32(dpbusd(u, a), dpbusd(c, a)); }

struct Q4_0Pair {
  using W = BlockQ4_0;
  using A = BlockQ8_0;
  static __m512i isum(const W& x0, const W& x1, const A& y0, const A& y1) {
    return dot_offset(unpack_nibbles2(x0.qs, x1.qs), join_codes(y0.qs, y1.qs), _mm512_set1_epi8(8));
  }
};
struct Q4_1Pair {
  using W = BlockQ4_1;
  using A = BlockQ8_1;
  static __m512i isum(const W& x0, const W& x1, const A& y0, const A& y1) {
    return dpbusd(unpack_nibbles2(x0.qs, x1.qs), join_codes(y0.qs, y1.qs));
  }
};
struct Q5_0Pair {
  using W = BlockQ5_0;
  using A = BlockQ8_0;
  static __m512i isum(const W& x0, const W& x1, const A& y0, const A& y1) {
    const __m512i nib = unpack_nibbles2(x0.qs, x1.qs);
    const __m512i u = _mm512_mask_add_epi8(nib, q5_bits2(x0.qh, x1.qh), nib, _mm512_set1_epi8(16));
    return dot_offset(u, join_codes(y0.qs, y1.qs), _mm512_set1_epi8(16));
  }
};
struct Q5_1Pair {
  using W = BlockQ5_1;
  using A = BlockQ8_1;
  static __m512i isum(const W& x0, const W& x1, const A& y0, const A& y1) {
    const __m512i nib = unpack_nibbles2(x0.qs, x1.qs);
    const __m512i u = _mm512_mask_add_epi8(nib, q5_bits2(x0.qh, x1.qh), nib, _mm512_set1_epi8(16));
    return dpbusd(u, join_codes(y0.qs, y1.qs));
  }
};
struct Q8_0Pair {
  using W = BlockQ8_0;
  using A = BlockQ8_0;
  static __m512i isum(const W& x0, const W& x1, const A& y0, const A& y1) {
    const __m512i w = join_codes(x0.qs, x1.qs), a = join_codes(y0.qs, y1.qs);
    const __m512i a_signed = _mm512_mask_sub_epi8(a, _mm512_movepi8_mask(w), _mm512_setzero_si512(), a);
    return dpbusd(_mm512_abs_epi8(w), a_signed);
  }
};
struct IQ4_NLPair {
  using W = BlockIQ4_NL;
  using A = BlockQ8_0;
  static __m512i isum(const W& x0, const W& x1, const A& y0, const A& y1) {
    // Code book shifted by +128 to unsigned bytes (1..241); the shift comes back via dot_offset.
    const __m512i table = _mm512_broadcast_i32x4(
        _mm_add_epi8(loadu128(kIQ4NLValues), _mm_set1_epi8((char)0x80)));
    const __m512i u = _mm512_shuffle_epi8(table, unpack_nibbles2(x0.qs, x1.qs));
    return dot_offset(u, join_codes(y0.qs, y1.qs), _mm512_set1_epi8((char)0x80));
  }
};

template <typename W, typename A>
inline float block_scale(const W& x, const A& y) { return h2f(x.d) * h2f(y.d); }

// [d0 ×8 | d1 ×8]
inline __m512 scales2(float d0, float d1) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0)), _mm256_set1_ps(d1), 1);
}

// The first two fp16 fields (4 bytes) of 8 consecutive blocks as 16 halves.
template <typename B>
inline __m128i fp16_pairs4(const B* b) {
  const __m128i b01 = _mm_unpacklo_epi32(_mm_loadu_si32(&b[0]), _mm_loadu_si32(&b[1]));
  const __m128i b23 = _mm_unpacklo_epi32(_mm_loadu_si32(&b[2]), _mm_loadu_si32(&b[3]));
  return _mm_unpacklo_epi64(b01, b23);
}
template <typename B>
inline __m256i fp16_pairs8(const B* b) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(fp16_pairs4(b)), fp16_pairs4(b + 4), 1);
}

// Q4_1/Q5_1 against Q8_1 carry a min term m_w·s_a per block.
template <typename A>
constexpr bool kHasMin = sizeof(A) == sizeof(BlockQ8_1);

template <typename W, typename A>
inline float min_term(const W& x, const A& y) {
  if constexpr (kHasMin<A>) return h2f(x.m) * h2f(y.s);
  else return 0.0f;
}

template <typename Pair>
float dot_legacy(int64_t n, const void* w, const void* a) {
  using W = typename Pair::W;
  using A = typename Pair::A;
  const W* x = (const W*)w;
  const A* y = (const A*)a;
  const int64_t nb = n / kQK;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc_min = _mm512_setzero_ps();  // odd lanes: Σ m_w·s_a
  // Eight blocks per step. Every block starts with d, then m / s (Q4_1, Q5_1, Q8_1) or code
  // bytes: one 32-bit load per block and one product give d_w·d_a in the even lanes and m_w·s_a
  // (or a meaningless value, never used) in the odd ones. Lanes 4k and 4k+2 are then spread to
  // [×8 | ×8] for block pair k.
  __m512i spread[4];
  for (int k = 0; k < 4; k++)
    spread[k] = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(4 * k), _mm512_set1_epi32(4 * k + 2));
  int64_t i = 0;
  for (; i + 8 <= nb; i += 8) {
    const __m512 prod = _mm512_mul_ps(_mm512_cvtph_ps(fp16_pairs8(x + i)), _mm512_cvtph_ps(fp16_pairs8(y + i)));
    for (int k = 0; k < 4; k += 2) {
      const int64_t j = i + 2 * k;
      acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(spread[k], prod),
                             _mm512_cvtepi32_ps(Pair::isum(x[j], x[j + 1], y[j], y[j + 1])), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(spread[k + 1], prod),
                             _mm512_cvtepi32_ps(Pair::isum(x[j + 2], x[j + 3], y[j + 2], y[j + 3])), acc1);
    }
    if constexpr (kHasMin<A>) acc_min = _mm512_mask_add_ps(acc_min, 0xAAAA, acc_min, prod);
  }
  float mins = 0;
  for (; i + 2 <= nb; i += 2) {
    acc0 = _mm512_fmadd_ps(scales2(block_scale(x[i], y[i]), block_scale(x[i + 1], y[i + 1])),
                           _mm512_cvtepi32_ps(Pair::isum(x[i], x[i + 1], y[i], y[i + 1])), acc0);
    mins += min_term(x[i], y[i]) + min_term(x[i + 1], y[i + 1]);
  }
  if (i < nb) {  // odd block count: pair the last block with itself, weighted 0 the second time
    acc1 = _mm512_fmadd_ps(scales2(block_scale(x[i], y[i]), 0.0f),
                           _mm512_cvtepi32_ps(Pair::isum(x[i], x[i], y[i], y[i])), acc1);
    mins += min_term(x[i], y[i]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + (_mm512_reduce_add_ps(acc_min) + mins);
}

// ---------------------------------------------------------------------------------------------
// K-quants against Q8_K.

// Byte-shuffle control giving word j0 in 128-bit lanes 0,1 and word j1 in lanes 2,3 (from a
// vector holding the same 8 words in every lane).
inline __m512i word_pair_ctrl(int j0, int j1) {
  return _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi16((short)(0x0100 * (2 * j0 + 1) + 2 * j0)),
                                 _mm512_set1_epi16((short)(0x0100 * (2 * j1 + 1) + 2 * j1)));
}

// Word-permute index giving, in 128-bit lane i, word 4v+i of a 16-word vector: the scales of
// sub-blocks 4v..4v+3 (16 elements each) for a 64-code vector.
inline __m512i quad_index(int v) {
  const __m512i lane = _mm512_set_epi64(0x0003000300030003ll, 0x0003000300030003ll, 0x0002000200020002ll,
                                        0x0002000200020002ll, 0x0001000100010001ll, 0x0001000100010001ll, 0, 0);
  return _mm512_add_epi16(lane, _mm512_set1_epi16((short)(4 * v)));
}

inline void unpack_k4_scales(const uint8_t* s, uint64_t& scales, uint64_t& mins) {
  uint32_t u[3];
  std::memcpy(u, s, 12);
  const uint32_t sc_lo = u[0] & 0x3f3f3f3f, mn_lo = u[1] & 0x3f3f3f3f;
  const uint32_t sc_hi = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
  const uint32_t mn_hi = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
  scales = sc_lo | ((uint64_t)sc_hi << 32);
  mins = mn_lo | ((uint64_t)mn_hi << 32);
}

inline __m128i unpack_q3k_scales(const uint8_t* s) {
  uint32_t a[3];
  std::memcpy(a, s, 12);
  const uint32_t w0 = (a[0] & 0x0f0f0f0f) | ((a[2] & 0x03030303) << 4);
  const uint32_t w1 = (a[1] & 0x0f0f0f0f) | (((a[2] >> 2) & 0x03030303) << 4);
  const uint32_t w2 = ((a[0] >> 4) & 0x0f0f0f0f) | (((a[2] >> 4) & 0x03030303) << 4);
  const uint32_t w3 = ((a[1] >> 4) & 0x0f0f0f0f) | (((a[2] >> 6) & 0x03030303) << 4);
  return _mm_sub_epi8(_mm_setr_epi32((int)w0, (int)w1, (int)w2, (int)w3), _mm_set1_epi8(32));
}

// Σ_j mins_j·(bsums_2j + bsums_2j+1) over the 8 sub-blocks of 32, as 4 int32 partials.
inline __m128i mins_dot_bsums32(uint64_t mins, const int16_t* bsums) {
  const __m128i pairs = _mm_hadd_epi16(loadu128(bsums), loadu128(bsums + 8));
  return _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mins)), pairs);
}

inline float hsum_ps(__m128 v) {
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_movehdup_ps(v));
  return _mm_cvtss_f32(v);
}

// Q4_K, and Q5_K when kHighBit: sub-blocks of 32, 6-bit scales and mins.
template <typename Block, bool kHighBit>
float dot_k4(int64_t n, const void* w, const void* a) {
  const Block* x = (const Block*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  const __m512i m4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  const __m512i ctrl[4] = {word_pair_ctrl(0, 1), word_pair_ctrl(2, 3), word_pair_ctrl(4, 5), word_pair_ctrl(6, 7)};
  __m512 acc = _mm512_setzero_ps();
  __m128 acc_min = _mm_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; i++) {
    uint64_t scales, mins;
    unpack_k4_scales(x[i].scales, scales, mins);
    const __m512i sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scales)));
    __m512i hbits = _mm512_setzero_si512();
    if constexpr (kHighBit) {  // [qh | qh>>1]: bit 0 of each half tracks sub-blocks 4p and 4p+1
      const __m256i qh = loadu256(x[i].qh);
      hbits = join256(qh, _mm256_srli_epi16(qh, 1));
    }
    __m512i sumi = _mm512_setzero_si512();
    for (int p = 0; p < 2; p++) {  // 64 code bytes = 128 elements = sub-blocks 4p..4p+3
      const __m512i q = loadu512(x[i].qs + 64 * p);
      const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      __m512i A = _mm512_shuffle_i64x2(lo, hi, 0x44);  // sub-blocks 4p (low nibbles), 4p+1 (high)
      __m512i B = _mm512_shuffle_i64x2(lo, hi, 0xEE);  // sub-blocks 4p+2, 4p+3
      if constexpr (kHighBit) {
        A = _mm512_or_si512(A, _mm512_and_si512(_mm512_slli_epi16(hbits, 4), bit4));
        B = _mm512_or_si512(B, _mm512_and_si512(_mm512_slli_epi16(hbits, 2), bit4));
        hbits = _mm512_srli_epi16(hbits, 4);
      }
      const __m512i pA = _mm512_maddubs_epi16(A, loadu512(y[i].qs + 128 * p));
      const __m512i pB = _mm512_maddubs_epi16(B, loadu512(y[i].qs + 128 * p + 64));
      sumi = _mm512_dpwssd_epi32(sumi, pA, _mm512_shuffle_epi8(sc, ctrl[2 * p]));
      sumi = _mm512_dpwssd_epi32(sumi, pB, _mm512_shuffle_epi8(sc, ctrl[2 * p + 1]));
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x[i].d) * y[i].d), _mm512_cvtepi32_ps(sumi), acc);
    acc_min = _mm_fmadd_ps(_mm_set1_ps(h2f(x[i].dmin) * y[i].d), _mm_cvtepi32_ps(mins_dot_bsums32(mins, y[i].bsums)),
                           acc_min);
  }
  return _mm512_reduce_add_ps(acc) - hsum_ps(acc_min);
}

// Σ_j v_j·bsums_j (16 int16 scales against the 16 bsums) as 16 int32 lanes, upper 8 zero.
inline __m512i scales_dot_bsums16(__m256i v16, const int16_t* bsums) {
  return _mm512_zextsi256_si512(_mm256_madd_epi16(v16, loadu256(bsums)));
}

float dot_q6_K(int64_t n, const void* w, const void* a) {
  const BlockQ6_K* x = (const BlockQ6_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  const __m512i idx[4] = {quad_index(0), quad_index(1), quad_index(2), quad_index(3)};
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; i++) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(x[i].scales));
    const __m512i sc = _mm512_castsi256_si512(sc16);  // only words 0..15 are indexed
    __m512i sumi = _mm512_setzero_si512();
    for (int g = 0; g < 2; g++) {  // 128-element halves
      const __m512i ql = loadu512(x[i].ql + 64 * g);
      const __m256i qh = loadu256(x[i].qh + 32 * g);
      // Elements 0..63 of the half: low nibbles of ql, qh bits 0-1 (first 32) and 2-3 (next 32);
      // elements 64..127: high nibbles, qh bits 4-5 and 6-7. Codes 0..63 (offset 32).
      const __m512i q01 = _mm512_or_si512(
          _mm512_and_si512(ql, m4), _mm512_and_si512(join256(_mm256_slli_epi16(qh, 4), _mm256_slli_epi16(qh, 2)), m30));
      const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                          _mm512_and_si512(join256(qh, _mm256_srli_epi16(qh, 2)), m30));
      const __m512i p01 = _mm512_maddubs_epi16(q01, loadu512(y[i].qs + 128 * g));
      const __m512i p23 = _mm512_maddubs_epi16(q23, loadu512(y[i].qs + 128 * g + 64));
      sumi = _mm512_dpwssd_epi32(sumi, p01, _mm512_permutexvar_epi16(idx[2 * g], sc));
      sumi = _mm512_dpwssd_epi32(sumi, p23, _mm512_permutexvar_epi16(idx[2 * g + 1], sc));
    }
    sumi = _mm512_sub_epi32(sumi, _mm512_slli_epi32(scales_dot_bsums16(sc16, y[i].bsums), 5));
    acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x[i].d) * y[i].d), _mm512_cvtepi32_ps(sumi), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

float dot_q3_K(int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = (const BlockQ3_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  const __m512i m2 = _mm512_set1_epi8(3), bit2 = _mm512_set1_epi8(4);
  const __m512i idx[4] = {quad_index(0), quad_index(1), quad_index(2), quad_index(3)};
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; i++) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(unpack_q3k_scales(x[i].scales));
    const __m512i sc = _mm512_castsi256_si512(sc16);
    const __m256i hm = loadu256(x[i].hmask);  // bit e/32 of byte e%32
    __m512i h = join256(hm, _mm256_srli_epi16(hm, 1));
    __m512i sumi = _mm512_setzero_si512();
    for (int g = 0; g < 2; g++) {
      const __m256i qs = loadu256(x[i].qs + 32 * g);
      const __m512i q = join256(qs, _mm256_srli_epi16(qs, 2));  // bit pairs 0 and 4: k = 0,1 | 2,3
      const __m512i q01 = _mm512_or_si512(_mm512_and_si512(q, m2), _mm512_and_si512(_mm512_slli_epi16(h, 2), bit2));
      const __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q, 4), m2), _mm512_and_si512(h, bit2));
      h = _mm512_srli_epi16(h, 4);
      const __m512i p01 = _mm512_maddubs_epi16(q01, loadu512(y[i].qs + 128 * g));
      const __m512i p23 = _mm512_maddubs_epi16(q23, loadu512(y[i].qs + 128 * g + 64));
      sumi = _mm512_dpwssd_epi32(sumi, p01, _mm512_permutexvar_epi16(idx[2 * g], sc));
      sumi = _mm512_dpwssd_epi32(sumi, p23, _mm512_permutexvar_epi16(idx[2 * g + 1], sc));
    }
    sumi = _mm512_sub_epi32(sumi, _mm512_slli_epi32(scales_dot_bsums16(sc16, y[i].bsums), 2));
    acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x[i].d) * y[i].d), _mm512_cvtepi32_ps(sumi), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

float dot_q2_K(int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = (const BlockQ2_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  const __m512i m2 = _mm512_set1_epi8(3);
  const __m512i idx[4] = {quad_index(0), quad_index(1), quad_index(2), quad_index(3)};
  __m512 acc = _mm512_setzero_ps();
  float acc_min = 0;
  for (int64_t i = 0; i < n / kQK_K; i++) {
    const __m128i packed = loadu128(x[i].scales);
    const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F))));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F)));
    __m512i sumi = _mm512_setzero_si512();
    for (int g = 0; g < 2; g++) {
      const __m256i qs = loadu256(x[i].qs + 32 * g);
      const __m512i q = join256(qs, _mm256_srli_epi16(qs, 2));
      const __m512i p01 = _mm512_maddubs_epi16(_mm512_and_si512(q, m2), loadu512(y[i].qs + 128 * g));
      const __m512i p23 =
          _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(q, 4), m2), loadu512(y[i].qs + 128 * g + 64));
      sumi = _mm512_dpwssd_epi32(sumi, p01, _mm512_permutexvar_epi16(idx[2 * g], sc));
      sumi = _mm512_dpwssd_epi32(sumi, p23, _mm512_permutexvar_epi16(idx[2 * g + 1], sc));
    }
    acc = _mm512_fmadd_ps(_mm512_set1_ps(h2f(x[i].d) * y[i].d), _mm512_cvtepi32_ps(sumi), acc);
    acc_min += h2f(x[i].dmin) * y[i].d * (float)hsum_epi32(_mm256_madd_epi16(mn16, loadu256(y[i].bsums)));
  }
  return _mm512_reduce_add_ps(acc) - acc_min;
}

}  // namespace

void register_quant_kernels_avx512(DotTable& t) {
  auto dot = [&](QType q, VecDotFn f) { t.vec_dot[(uint32_t)q] = f; };
  dot(QType::F32, dot_f32);
  dot(QType::F16, dot_half<load_f16x16>);
  dot(QType::BF16, dot_half<load_bf16x16>);
  dot(QType::Q4_0, dot_legacy<Q4_0Pair>);
  dot(QType::Q4_1, dot_legacy<Q4_1Pair>);
  dot(QType::Q5_0, dot_legacy<Q5_0Pair>);
  dot(QType::Q5_1, dot_legacy<Q5_1Pair>);
  dot(QType::Q8_0, dot_legacy<Q8_0Pair>);
  dot(QType::IQ4_NL, dot_legacy<IQ4_NLPair>);
  dot(QType::Q2_K, dot_q2_K);
  dot(QType::Q3_K, dot_q3_K);
  dot(QType::Q4_K, dot_k4<BlockQ4_K, false>);
  dot(QType::Q5_K, dot_k4<BlockQ5_K, true>);
  dot(QType::Q6_K, dot_q6_K);
}

}  // namespace stepq
