// AVX2 dot products for every weight format, and AVX2 activation quantizers (bit-exact with the
// scalar ones in quant_types.cpp). Compiled with -mavx2 -mfma -mf16c -mbmi2.
//
// Integer core: _mm256_maddubs_epi16 multiplies unsigned bytes by signed bytes and adds pairs
// into int16; _mm256_madd_epi16 then widens (optionally times a sub-block scale) to int32. It
// cannot overflow here: weight codes are at most 63 (Q6_K unsigned) or |127| (Q8_0, IQ4_NL via
// the sign trick), activation codes are in −127..127 as ggml's quantizers produce them. A
// code of −128 in an activation is not supported (the sign trick cannot negate it), as in ggml.
//
// The quantized formats' kernels are tile kernels (gemm_tiling.h): R weight rows × C tokens per
// call, vec_dot being the 1×1 instance. Per (row, token) pair a tile runs exactly the float
// operations this file's vec_dot ran before tiles existed, so results are bit-identical to it
// and between tile shapes; weight unpacking is shared across a tile's tokens, activation loads
// across its rows. (Packing whole rows ahead, as the AVX-512 file does, measured no faster
// here: with 16 registers the per-pair maddubs/madd/add work dominates.)
//
// Rules for this file (see CMakeLists.txt): everything but the registration function is in an
// anonymous namespace, nothing allocates, no std:: templates.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/gemm_tiling.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dispatch.h"

namespace stepq {
namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f2h(float f) { return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_epi32(__m128i v) {
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(v);
}
inline int hsum_epi32(__m256i v) {
  return hsum_epi32(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

inline __m256i loadu256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }
inline __m128i loadu128(const void* p) { return _mm_loadu_si128((const __m128i*)p); }

// 16 bytes of packed nibbles to 32 bytes [low nibbles | high nibbles]: elements 0..31 of a
// legacy block in order.
inline __m256i unpack_nibbles(const uint8_t* qs) {
  const __m128i b = loadu128(qs);
  const __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
  return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

// Bit e of the 4 qh bytes to byte e: 0xFF where set, 0 where clear.
inline __m256i bits_to_bytes(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32((int)bits),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                       2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

// Σ u·s over 32 byte pairs (u unsigned, s signed) as 8 int32 lanes.
inline __m256i dot_us(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
// Σ x·y for signed x, y: |x| · (y with x's sign).
inline __m256i dot_ss(__m256i x, __m256i y) {
  return dot_us(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// ---------------------------------------------------------------------------------------------
// Float weights

float dot_f32(int64_t n, const void* w, const void* a) {
  const float* x = (const float*)w;
  const float* y = (const float*)a;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
  float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; i++) s += x[i] * y[i];
  return s;
}

inline __m256 load_f16x8(const uint16_t* p) { return _mm256_cvtph_ps(loadu128(p)); }
inline __m256 load_bf16x8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(p)), 16));
}

template <__m256 (*Load)(const uint16_t*), float (*Scalar)(uint16_t)>
float dot_half(int64_t n, const void* w, const void* a) {
  const uint16_t* x = (const uint16_t*)w;
  const uint16_t* y = (const uint16_t*)a;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(Load(x + i), Load(y + i), acc0);
    acc1 = _mm256_fmadd_ps(Load(x + i + 8), Load(y + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(Load(x + i + 16), Load(y + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(Load(x + i + 24), Load(y + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(Load(x + i), Load(y + i), acc0);
  float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; i++) s += Scalar(x[i]) * Scalar(y[i]);
  return s;
}

inline float bf2f(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Legacy 32-element blocks: one int32x8 partial sum per block, scaled by d_w·d_a in float.
//
// Per (row, token) pair, in this order: blocks alternate between two accumulators (even
// blocks into acc0, odd into acc1), an odd last block goes into acc0; Q4_1/Q5_1's m_w·s_a is
// summed in a float, a block pair at a time. The code unpacking is done once per row and
// block for all the tokens of a tile.

inline __m256 scale_block(__m256 acc, float d, __m256i isum) {
  return _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
}

// A format: codes(x) prepares a weight block once per row; isum(codes, a) gives the 8 int32
// partial sums against a token's activation codes.
struct SignedCodes { __m256i abs, sign; };  // Σ x·y = maddubs(|x|, y with x's sign)
inline SignedCodes signed_codes(__m256i q) { return {_mm256_sign_epi8(q, q), q}; }
inline __m256i isum_signed(const SignedCodes& w, __m256i y) { return dot_us(w.abs, _mm256_sign_epi8(y, w.sign)); }

// Q5_0 codes as signed bytes: nib | 0xF0 where the 5th bit is clear (that is nib − 16).
inline __m256i q5_0_codes(const BlockQ5_0& b) {
  const __m256i hi = _mm256_andnot_si256(bits_to_bytes(b.qh), _mm256_set1_epi8((char)0xF0));
  return _mm256_or_si256(unpack_nibbles(b.qs), hi);
}
// Q5_1 codes as unsigned bytes 0..31.
inline __m256i q5_1_codes(const BlockQ5_1& b) {
  const __m256i hi = _mm256_and_si256(bits_to_bytes(b.qh), _mm256_set1_epi8(0x10));
  return _mm256_or_si256(unpack_nibbles(b.qs), hi);
}

struct Q4_0Fmt {
  using W = BlockQ4_0;
  using A = BlockQ8_0;
  static SignedCodes codes(const W& x) { return signed_codes(_mm256_sub_epi8(unpack_nibbles(x.qs), _mm256_set1_epi8(8))); }
  static __m256i isum(const SignedCodes& w, __m256i y) { return isum_signed(w, y); }
};
struct Q4_1Fmt {
  using W = BlockQ4_1;
  using A = BlockQ8_1;
  static __m256i codes(const W& x) { return unpack_nibbles(x.qs); }
  static __m256i isum(__m256i u, __m256i y) { return dot_us(u, y); }
};
struct Q5_0Fmt {
  using W = BlockQ5_0;
  using A = BlockQ8_0;
  static SignedCodes codes(const W& x) { return signed_codes(q5_0_codes(x)); }
  static __m256i isum(const SignedCodes& w, __m256i y) { return isum_signed(w, y); }
};
struct Q5_1Fmt {
  using W = BlockQ5_1;
  using A = BlockQ8_1;
  static __m256i codes(const W& x) { return q5_1_codes(x); }
  static __m256i isum(__m256i u, __m256i y) { return dot_us(u, y); }
};
struct Q8_0Fmt {
  using W = BlockQ8_0;
  using A = BlockQ8_0;
  static SignedCodes codes(const W& x) { return signed_codes(loadu256(x.qs)); }
  static __m256i isum(const SignedCodes& w, __m256i y) { return isum_signed(w, y); }
};
struct IQ4_NLFmt {
  using W = BlockIQ4_NL;
  using A = BlockQ8_0;
  static SignedCodes codes(const W& x) {
    const __m256i table = _mm256_broadcastsi128_si256(loadu128(kIQ4NLValues));
    return signed_codes(_mm256_shuffle_epi8(table, unpack_nibbles(x.qs)));
  }
  static __m256i isum(const SignedCodes& w, __m256i y) { return isum_signed(w, y); }
};

template <typename A>
constexpr bool kHasMin = sizeof(A) == sizeof(BlockQ8_1);

template <class Fmt>
struct LegacyTile {
  using W = typename Fmt::W;
  using A = typename Fmt::A;

  // acc[r][c] += d_w·d_a · isum of block i, for every pair of the tile.
  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void block(const W* const (&x)[R], const A* const (&y)[C], int64_t i, __m256 (&acc)[R][C]) {
    decltype(Fmt::codes(x[0][i])) wc[R];
    float dw[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) wc[r] = Fmt::codes(x[r][i]), dw[r] = h2f(x[r][i].d);
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) {
      const __m256i ya = loadu256(y[c][i].qs);
      const float da = h2f(y[c][i].d);
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) acc[r][c] = scale_block(acc[r][c], dw[r] * da, Fmt::isum(wc[r], ya));
    }
  }

  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void add_mins(const W* const (&x)[R], const A* const (&y)[C], int64_t i, int64_t count,
                                           float (&mins)[R][C]) {
    if constexpr (kHasMin<A>) {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) {
          if (count == 2) mins[r][c] += h2f(x[r][i].m) * h2f(y[c][i].s) + h2f(x[r][i + 1].m) * h2f(y[c][i + 1].s);
          else mins[r][c] += h2f(x[r][i].m) * h2f(y[c][i].s);
        }
    }
  }

  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    const int64_t nb = n / kQK;
    const W* x[R];
    const A* y[C];
    for (int r = 0; r < R; r++) x[r] = (const W*)(w + r * ws);
    for (int c = 0; c < C; c++) y[c] = (const A*)(a + c * as);
    __m256 acc0[R][C], acc1[R][C];
    float mins[R][C] = {};
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc0[r][c] = _mm256_setzero_ps(), acc1[r][c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
      block<R, C>(x, y, i, acc0);
      block<R, C>(x, y, i + 1, acc1);
      add_mins<R, C>(x, y, i, 2, mins);
    }
    for (; i < nb; i++) {
      block<R, C>(x, y, i, acc0);
      add_mins<R, C>(x, y, i, 1, mins);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
        const float s = hsum_ps(_mm256_add_ps(acc0[r][c], acc1[r][c]));
        if constexpr (kHasMin<A>) out[c * os + r] = s + mins[r][c];
        else out[c * os + r] = s;
      }
  }
};

// ---------------------------------------------------------------------------------------------
// K-quants against Q8_K. Per super-block the integer sum Σ_j scale_j · Σ_{e∈j} q_e·a_e is
// accumulated in int32 lanes (maddubs, then madd with the scale), then scaled once in float.

// Scales of 16-element sub-blocks: `half` holds the 8 int16 scales of one 128-element half in
// both 128-bit lanes; pair_scales gives [s_2k ×8 | s_2k+1 ×8] for its quarter k.
inline __m256i scales_half(__m256i sc16, int g) {
  return g == 0 ? _mm256_permute2x128_si256(sc16, sc16, 0x00) : _mm256_permute2x128_si256(sc16, sc16, 0x11);
}
inline __m256i pair_scales(__m256i half, int k) {
  const int w0 = 0x0100 * (4 * k + 1) + 4 * k, w1 = 0x0100 * (4 * k + 3) + 4 * k + 2;
  return _mm256_shuffle_epi8(half, _mm256_set_m128i(_mm_set1_epi16((short)w1), _mm_set1_epi16((short)w0)));
}

// Q4_K/Q5_K: unpack the 12 scale bytes into 8 scales and 8 mins (6-bit each), as two uint64.
inline void unpack_k4_scales(const uint8_t* s, uint64_t& scales, uint64_t& mins) {
  uint32_t u[3];
  std::memcpy(u, s, 12);
  const uint32_t sc_lo = u[0] & 0x3f3f3f3f, mn_lo = u[1] & 0x3f3f3f3f;
  const uint32_t sc_hi = (u[2] & 0x0f0f0f0f) | (((u[0] >> 6) & 0x03030303) << 4);
  const uint32_t mn_hi = ((u[2] >> 4) & 0x0f0f0f0f) | (((u[1] >> 6) & 0x03030303) << 4);
  scales = sc_lo | ((uint64_t)sc_hi << 32);
  mins = mn_lo | ((uint64_t)mn_hi << 32);
}

// Q3_K: the 16 signed 6-bit scales (−32..31) as int8.
inline __m128i unpack_q3k_scales(const uint8_t* s) {
  uint32_t a[3];
  std::memcpy(a, s, 12);
  const uint32_t w0 = (a[0] & 0x0f0f0f0f) | ((a[2] & 0x03030303) << 4);
  const uint32_t w1 = (a[1] & 0x0f0f0f0f) | (((a[2] >> 2) & 0x03030303) << 4);
  const uint32_t w2 = ((a[0] >> 4) & 0x0f0f0f0f) | (((a[2] >> 4) & 0x03030303) << 4);
  const uint32_t w3 = ((a[1] >> 4) & 0x0f0f0f0f) | (((a[2] >> 6) & 0x03030303) << 4);
  return _mm_sub_epi8(_mm_setr_epi32((int)w0, (int)w1, (int)w2, (int)w3), _mm_set1_epi8(32));
}

// Σ_j mins_j · (bsums_2j + bsums_2j+1) for the 8 sub-blocks of 32 (Q4_K, Q5_K).
inline int mins_dot_bsums32(uint64_t mins, const int16_t* bsums) {
  const __m128i pairs = _mm_hadd_epi16(loadu128(bsums), loadu128(bsums + 8));
  const __m128i m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mins));
  return hsum_epi32(_mm_madd_epi16(m16, pairs));
}

// Broadcast int16 word k of a 128-bit vector to all 16 words of a 256-bit one.
inline __m256i broadcast_word(__m128i v, int k) {
  const __m128i ctrl = _mm_set1_epi16((short)(0x0100 * (2 * k + 1) + 2 * k));
  return _mm256_broadcastsi128_si256(_mm_shuffle_epi8(v, ctrl));
}

// Q4_K, and Q5_K when kHighBit: per super-block and pair, 8 maddubs + 8 madd (with the
// sub-block scale) into 8 int32 lanes, scaled once in float; the mins term in a float.
template <typename Block, bool kHighBit>
struct K4Tile {
  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    __m256 acc[R][C];
    float acc_min[R][C] = {};
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; i++) {
      const Block* x[R];
      const BlockQ8_K* y[C];
      __m128i sc16[R];
      uint64_t mins[R];
      __m256i hbits[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        x[r] = (const Block*)(w + r * ws) + i;
        uint64_t scales;
        unpack_k4_scales(x[r]->scales, scales, mins[r]);
        sc16[r] = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scales));
        if constexpr (kHighBit) hbits[r] = loadu256(x[r]->qh);  // bit j of byte l: 5th bit of element l of sub-block j
      }
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) y[c] = (const BlockQ8_K*)(a + c * as) + i;
      __m256i sumi[R][C];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) sumi[r][c] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {  // 32 bytes: sub-blocks 2k (low nibbles), 2k+1 (high)
        __m256i lo[R], hi[R], slo[R], shi[R];
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
          const __m256i q = loadu256(x[r]->qs + 32 * k);
          lo[r] = _mm256_and_si256(q, m4);
          hi[r] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
          if constexpr (kHighBit) {
            lo[r] = _mm256_or_si256(lo[r], _mm256_and_si256(_mm256_slli_epi16(hbits[r], 4), bit4));
            hi[r] = _mm256_or_si256(hi[r], _mm256_and_si256(_mm256_slli_epi16(hbits[r], 3), bit4));
            hbits[r] = _mm256_srli_epi16(hbits[r], 2);
          }
          slo[r] = broadcast_word(sc16[r], 2 * k);
          shi[r] = broadcast_word(sc16[r], 2 * k + 1);
        }
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) {
          const __m256i ylo = loadu256(y[c]->qs + 64 * k), yhi = loadu256(y[c]->qs + 64 * k + 32);
#pragma GCC unroll 16
          for (int r = 0; r < R; r++) {
            sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(lo[r], ylo), slo[r]));
            sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(hi[r], yhi), shi[r]));
          }
        }
      }
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
          acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[r]->d) * y[c]->d), _mm256_cvtepi32_ps(sumi[r][c]), acc[r][c]);
          acc_min[r][c] += h2f(x[r]->dmin) * y[c]->d * (float)mins_dot_bsums32(mins[r], y[c]->bsums);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) out[c * os + r] = hsum_ps(acc[r][c]) - acc_min[r][c];
  }
};

// Q6_K: unsigned 6-bit codes (0..63); the −32 offset is applied once per super-block through
// bsums: Σ sc·(q−32)·a = Σ sc·q·a − 32·Σ_j sc_j·bsums_j.
struct Q6KTile {
  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    __m256 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; i++) {
      const BlockQ6_K* x[R];
      const BlockQ8_K* y[C];
      __m256i sc16[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        x[r] = (const BlockQ6_K*)(w + r * ws) + i;
        sc16[r] = _mm256_cvtepi8_epi16(loadu128(x[r]->scales));
      }
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) y[c] = (const BlockQ8_K*)(a + c * as) + i;
      __m256i sumi[R][C];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) sumi[r][c] = _mm256_setzero_si256();
#pragma GCC unroll 2
      for (int g = 0; g < 2; g++) {  // 128-element halves
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
          __m256i q[R], ps[R];
#pragma GCC unroll 16
          for (int r = 0; r < R; r++) {
            const __m256i ql = loadu256(x[r]->ql + 64 * g + 32 * (k & 1));
            const __m256i qh = loadu256(x[r]->qh + 32 * g);
            const __m256i lo4 = k < 2 ? _mm256_and_si256(ql, m4) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m4);
            const __m256i hi2 = k == 0 ? _mm256_slli_epi16(qh, 4) : k == 1 ? _mm256_slli_epi16(qh, 2)
                              : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
            q[r] = _mm256_or_si256(lo4, _mm256_and_si256(hi2, m2));
            ps[r] = pair_scales(scales_half(sc16[r], g), k);
          }
#pragma GCC unroll 16
          for (int c = 0; c < C; c++) {
            const __m256i yk = loadu256(y[c]->qs + 128 * g + 32 * k);
#pragma GCC unroll 16
            for (int r = 0; r < R; r++)
              sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], yk), ps[r]));
          }
        }
      }
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
          const __m256i s =
              _mm256_sub_epi32(sumi[r][c], _mm256_slli_epi32(_mm256_madd_epi16(sc16[r], loadu256(y[c]->bsums)), 5));
          acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[r]->d) * y[c]->d), _mm256_cvtepi32_ps(s), acc[r][c]);
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) out[c * os + r] = hsum_ps(acc[r][c]);
  }
};

// Q3_K: unsigned 3-bit codes (low2 | hb<<2, 0..7); offset −4 through bsums.
float dot_q3_K(int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = (const BlockQ3_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  const __m256i m2 = _mm256_set1_epi8(3), bit2 = _mm256_set1_epi8(4);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; i++) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(unpack_q3k_scales(x[i].scales));
    __m256i hm = loadu256(x[i].hmask);  // bit (e/32) of byte e%32
    __m256i sumi = _mm256_setzero_si256();
    for (int g = 0; g < 2; g++) {
      const __m256i half = scales_half(sc16, g);
      const __m256i qs = loadu256(x[i].qs + 32 * g);
      for (int k = 0; k < 4; k++) {
        const __m256i low2 = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * k), m2);
        const __m256i q = _mm256_or_si256(low2, _mm256_and_si256(_mm256_slli_epi16(hm, 2), bit2));
        hm = _mm256_srli_epi16(hm, 1);
        const __m256i p = _mm256_maddubs_epi16(q, loadu256(y[i].qs + 128 * g + 32 * k));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair_scales(half, k)));
      }
    }
    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(_mm256_madd_epi16(sc16, loadu256(y[i].bsums)), 2));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum_ps(acc);
}

float dot_q2_K(int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = (const BlockQ2_K*)w;
  const BlockQ8_K* y = (const BlockQ8_K*)a;
  const __m256i m2 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0;
  for (int64_t i = 0; i < n / kQK_K; i++) {
    const __m128i packed = loadu128(x[i].scales);
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, _mm_set1_epi8(0x0F)));
    const __m128i mn8 = _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0x0F));
    __m256i sumi = _mm256_setzero_si256();
    for (int g = 0; g < 2; g++) {
      const __m256i half = scales_half(sc16, g);
      const __m256i qs = loadu256(x[i].qs + 32 * g);
      for (int k = 0; k < 4; k++) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * k), m2);
        const __m256i p = _mm256_maddubs_epi16(q, loadu256(y[i].qs + 128 * g + 32 * k));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, pair_scales(half, k)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sumi), acc);
    acc_min += h2f(x[i].dmin) * y[i].d *
               (float)hsum_epi32(_mm256_madd_epi16(_mm256_cvtepu8_epi16(mn8), loadu256(y[i].bsums)));
  }
  return hsum_ps(acc) - acc_min;
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers, bit-exact with the scalar ones.

inline float hmax_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline __m256i round_to_i32(__m256 v) {
  return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// Four int32x8 (elements 0..31 in order) to 32 int8 in order.
inline __m256i pack_i32_to_i8(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One 32-element Q8_0/Q8_1 block; returns d in fp32 and Σq.
inline float quantize_q8_block(const float* x, uint16_t& d16, int8_t* qs, int& sum) {
  __m256 v[4];
  for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
  const float amax =
      hmax_ps(_mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3]))));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  d16 = f2h(d);
  const __m256 mul = _mm256_set1_ps(id);
  __m256i q[4];
  for (int k = 0; k < 4; k++) q[k] = round_to_i32(_mm256_mul_ps(v[k], mul));
  _mm256_storeu_si256((__m256i*)qs, pack_i32_to_i8(q[0], q[1], q[2], q[3]));
  sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
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
    b[i].s = f2h(d * (float)sum);
  }
}

void quantize_q8_K(const float* x, void* y, int64_t n) {
  BlockQ8_K* b = (BlockQ8_K*)y;
  for (int64_t i = 0; i < n / kQK_K; i++, x += kQK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 32; k++) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + 8 * k)));
    const float amax = hmax_ps(m);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The first element of largest magnitude supplies the signed max.
    int first = 0;
    const __m256 vmax = _mm256_set1_ps(amax);
    for (int k = 0; k < 32; k++) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), vmax, _CMP_EQ_OQ));
      if (hit) {
        first = 8 * k + __builtin_ctz((unsigned)hit);
        break;
      }
    }
    const float iscale = -127.0f / x[first];
    const __m256 mul = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    for (int c = 0; c < 8; c++) {  // 32 elements = bsums groups 2c, 2c+1
      __m256i q[4];
      for (int k = 0; k < 4; k++)
        q[k] = _mm256_min_epi32(round_to_i32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * c + 8 * k), mul)), cap);
      _mm256_storeu_si256((__m256i*)(b[i].qs + 32 * c), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
      b[i].bsums[2 * c] = (int16_t)hsum_epi32(_mm256_add_epi32(q[0], q[1]));
      b[i].bsums[2 * c + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q[2], q[3]));
    }
    b[i].d = 1.0f / iscale;
  }
}

void quantize_f16(const float* x, void* y, int64_t n) {
  uint16_t* h = (uint16_t*)y;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i*)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) h[i] = f2h(x[i]);
}

}  // namespace

void register_quant_kernels_avx2(DotTable& t) {
  auto dot = [&](QType q, VecDotFn f) {
    t.vec_dot[(uint32_t)q] = f;
    t.vec_dot_tile[(uint32_t)q] = nullptr;
  };
  auto tiled = [&](QType q, VecDotFn f, VecDotTileFn g) {
    t.vec_dot[(uint32_t)q] = f;
    t.vec_dot_tile[(uint32_t)q] = g;
  };
  dot(QType::F32, dot_f32);
  dot(QType::F16, dot_half<load_f16x8, h2f>);
  dot(QType::BF16, dot_half<load_bf16x8, bf2f>);
  // Tile shapes (rows × tokens, and rows for a single token): see bench/README.md.
  tiled(QType::Q4_0, gemm_dot<LegacyTile<Q4_0Fmt>>, gemm_tile<LegacyTile<Q4_0Fmt>, 4, 4, 1>);
  tiled(QType::Q4_1, gemm_dot<LegacyTile<Q4_1Fmt>>, gemm_tile<LegacyTile<Q4_1Fmt>, 4, 4, 1>);
  tiled(QType::Q5_0, gemm_dot<LegacyTile<Q5_0Fmt>>, gemm_tile<LegacyTile<Q5_0Fmt>, 4, 4, 1>);
  tiled(QType::Q5_1, gemm_dot<LegacyTile<Q5_1Fmt>>, gemm_tile<LegacyTile<Q5_1Fmt>, 4, 4, 1>);
  tiled(QType::Q8_0, gemm_dot<LegacyTile<Q8_0Fmt>>, gemm_tile<LegacyTile<Q8_0Fmt>, 4, 4, 1>);
  tiled(QType::IQ4_NL, gemm_dot<LegacyTile<IQ4_NLFmt>>, gemm_tile<LegacyTile<IQ4_NLFmt>, 4, 4, 1>);
  dot(QType::Q2_K, dot_q2_K);
  dot(QType::Q3_K, dot_q3_K);
  tiled(QType::Q4_K, gemm_dot<K4Tile<BlockQ4_K, false>>, gemm_tile<K4Tile<BlockQ4_K, false>, 4, 4, 1>);
  tiled(QType::Q5_K, gemm_dot<K4Tile<BlockQ5_K, true>>, gemm_tile<K4Tile<BlockQ5_K, true>, 4, 4, 1>);
  tiled(QType::Q6_K, gemm_dot<Q6KTile>, gemm_tile<Q6KTile, 1, 4, 1>);
  auto quant = [&](QType q, QuantizeRowFn f) { t.quantize_row[(uint32_t)q] = f; };
  quant(QType::Q8_0, quantize_q8_0);
  quant(QType::Q8_1, quantize_q8_1);
  quant(QType::Q8_K, quantize_q8_K);
  quant(QType::F16, quantize_f16);
}

}  // namespace stepq
