// AVX-512 dot products (F, BW, VL, DQ, VNNI). Compiled with the flags in CMakeLists.txt.
// Registered over the AVX2 table: the activation quantizers stay the AVX2 ones.
//
// Every kernel is a tile kernel (gemm_tiling.h): R weight rows × C tokens per call, vec_dot
// being the 1×1 instance. Per (row, token) pair a tile runs exactly the float operations this
// file's vec_dot ran before tiles existed (same int32 lane sums, same products, same
// accumulators and reductions), so results are bit-identical to it and between tile shapes;
// only the work that depends on one side is shared: weight unpacking across a tile's tokens
// (and, for K-quants and full 8-block groups of the 32-element formats, across all the tokens
// of a call, through packing), activation loads across its rows.
//
// - Legacy 32-element blocks: two blocks per 512-bit vector. VNNI's _mm512_dpbusd_epi32
//   (unsigned byte × signed byte, 4 products summed into an int32) replaces AVX2's
//   maddubs + madd. It needs an unsigned left operand, so signed codes are offset to unsigned
//   and the offset is taken back through the dpbusd's accumulator input, computed once per
//   token: Σ (u − c)·a = dpbusd(−c·Σa, u, a). Q8_0 weights stay signed and the activations
//   are offset instead (a + 128, once per token; −128·Σw once per row).
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

#include "kernels/cpu/gemm_tiling.h"
#include "kernels/cpu/quant_blocks.h"
#include "kernels/cpu/quant_dispatch.h"

namespace stepq {
namespace {

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// v, hidden from the optimizer: keeps set1(a)·set1(b) a vector product with b broadcast from
// memory (one instruction per pair) instead of a scalar product and a broadcast (two).
inline __m512 opaque(__m512 v) {
  asm("" : "+v"(v));
  return v;
}

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

// 16 halves (fp16 or bf16) to floats; `m` selects how many are read.
inline __m512 load_f16x16(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load_bf16x16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

struct F32Loads {
  using T = float;
  static __m512 weights(const float* p) { return load_weights_f32(p); }
  static __m512 acts(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 tail(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
template <__m512 (*Load)(const uint16_t*, __mmask16)>
struct HalfLoads {
  using T = uint16_t;
  static __m512 weights(const uint16_t* p) { return Load(p, 0xFFFF); }
  static __m512 acts(const uint16_t* p) { return Load(p, 0xFFFF); }
  static __m512 tail(const uint16_t* p, __mmask16 m) { return Load(p, m); }
};

// F32 / F16 / BF16 weights against activations of the same type. Per pair four accumulators
// (elements i mod 64 in 16-lane quarters), then 16-element steps into the first, a masked
// tail into the second. Loads and conversions are shared: weights across the tile's tokens,
// activations across its rows.
template <class L>
struct FloatTile {
  using T = typename L::T;
  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    const T* x[R];
    const T* y[C];
    for (int r = 0; r < R; r++) x[r] = (const T*)(w + r * ws);
    for (int c = 0; c < C; c++) y[c] = (const T*)(a + c * as);
    __m512 acc[4][R][C];
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++)
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) acc[q][r][c] = _mm512_setzero_ps();
    // acc[q] += w·a over the 16 elements at i, for every pair.
    auto step = [&](int64_t i, int q) STEPQ_ALWAYS_INLINE_LAMBDA {
      __m512 xw[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) xw[r] = L::weights(x[r] + i);
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
        const __m512 ya = L::acts(y[c] + i);
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) acc[q][r][c] = _mm512_fmadd_ps(xw[r], ya, acc[q][r][c]);
      }
    };
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
      step(i, 0);
      step(i + 16, 1);
      step(i + 32, 2);
      step(i + 48, 3);
    }
    for (; i + 16 <= n; i += 16) step(i, 0);
    if (i < n) {
      const __mmask16 m = tail_mask(n - i);
      __m512 xw[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) xw[r] = L::tail(x[r] + i, m);
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
        const __m512 ya = L::tail(y[c] + i, m);
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) acc[1][r][c] = _mm512_fmadd_ps(xw[r], ya, acc[1][r][c]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
        out[c * os + r] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[0][r][c], acc[1][r][c]), _mm512_add_ps(acc[2][r][c], acc[3][r][c])));
  }
};

// ---------------------------------------------------------------------------------------------
// Legacy 32-element blocks, two per vector: lanes 0..7 hold block j's int32 partial sums,
// lanes 8..15 block j+1's.
//
// Per (row, token) pair and block pair the work is one dpbusd, one scale product, one
// convert and one FMA; everything that depends on only one side is done once per row (code
// unpacking, weight scales) or once per token (activation loads, offset corrections,
// activation scales). Offsets are folded into the dpbusd's accumulator input:
// Σ (u − c)·a = dpbusd(−c·Σa, u, a), with −c·Σa per 4-byte group computed once per token.

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

inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }

// −c·Σa per 4-byte group of the activation codes a.
inline __m512i neg_offset_sums(__m512i a, char c) {
  return _mm512_sub_epi32(_mm512_setzero_si512(), dpbusd(_mm512_setzero_si512(), _mm512_set1_epi8(c), a));
}

// A format: Codes(x0, x1) unpacks the weight codes of blocks x0, x1 (once per row); Act(a)
// prepares the activation codes of a block pair (once per token); isum gives the 16 int32
// partial sums of the pair.
struct WeightCodes { __m512i u, base; };  // base: per-row part of the dpbusd accumulator
struct ActCodes { __m512i a, base; };     // base: per-token part

template <char kOffset>  // unsigned codes u − kOffset against signed activations
struct UnsignedCodesAct {
  static ActCodes act(__m512i a) {
    if constexpr (kOffset == 0) return {a, _mm512_setzero_si512()};
    else return {a, neg_offset_sums(a, kOffset)};
  }
  static __m512i isum(const WeightCodes& w, const ActCodes& a) { return dpbusd(a.base, w.u, a.a); }
};

struct Q4_0Fmt : UnsignedCodesAct<8> {
  using W = BlockQ4_0;
  using A = BlockQ8_0;
  static WeightCodes codes(const W& x0, const W& x1) { return {unpack_nibbles2(x0.qs, x1.qs), _mm512_setzero_si512()}; }
};
struct Q4_1Fmt : UnsignedCodesAct<0> {
  using W = BlockQ4_1;
  using A = BlockQ8_1;
  static WeightCodes codes(const W& x0, const W& x1) { return {unpack_nibbles2(x0.qs, x1.qs), _mm512_setzero_si512()}; }
};
template <typename Block>
inline __m512i q5_codes2(const Block& x0, const Block& x1) {
  const __m512i nib = unpack_nibbles2(x0.qs, x1.qs);
  return _mm512_mask_add_epi8(nib, q5_bits2(x0.qh, x1.qh), nib, _mm512_set1_epi8(16));
}
struct Q5_0Fmt : UnsignedCodesAct<16> {
  using W = BlockQ5_0;
  using A = BlockQ8_0;
  static WeightCodes codes(const W& x0, const W& x1) { return {q5_codes2(x0, x1), _mm512_setzero_si512()}; }
};
struct Q5_1Fmt : UnsignedCodesAct<0> {
  using W = BlockQ5_1;
  using A = BlockQ8_1;
  static WeightCodes codes(const W& x0, const W& x1) { return {q5_codes2(x0, x1), _mm512_setzero_si512()}; }
};
struct IQ4_NLFmt : UnsignedCodesAct<(char)0x80> {
  using W = BlockIQ4_NL;
  using A = BlockQ8_0;
  static WeightCodes codes(const W& x0, const W& x1) {
    // Code book shifted by +128 to unsigned bytes (1..241); the shift comes back via the offset.
    const __m512i table = _mm512_broadcast_i32x4(_mm_add_epi8(loadu128(kIQ4NLValues), _mm_set1_epi8((char)0x80)));
    return {_mm512_shuffle_epi8(table, unpack_nibbles2(x0.qs, x1.qs)), _mm512_setzero_si512()};
  }
};
// Signed weights: the activations are made unsigned instead (a + 128, once per token) and
// 128·Σw comes off per row: Σ w·a = dpbusd(−128·Σw, a + 128, w).
struct Q8_0Fmt {
  using W = BlockQ8_0;
  using A = BlockQ8_0;
  static WeightCodes codes(const W& x0, const W& x1) {
    const __m512i w = join_codes(x0.qs, x1.qs);
    return {w, neg_offset_sums(w, (char)0x80)};
  }
  static ActCodes act(__m512i a) { return {_mm512_xor_si512(a, _mm512_set1_epi8((char)0x80)), _mm512_setzero_si512()}; }
  static __m512i isum(const WeightCodes& w, const ActCodes& a) { return dpbusd(w.base, a.a, w.u); }
};

// The first two fp16 fields (4 bytes) of 8 consecutive blocks as 16 floats.
template <typename B>
inline __m128i fp16_pairs4(const B* b) {
  const __m128i b01 = _mm_unpacklo_epi32(_mm_loadu_si32(&b[0]), _mm_loadu_si32(&b[1]));
  const __m128i b23 = _mm_unpacklo_epi32(_mm_loadu_si32(&b[2]), _mm_loadu_si32(&b[3]));
  return _mm_unpacklo_epi64(b01, b23);
}
template <typename B>
inline __m512 fp16_pairs8(const B* b) {
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(fp16_pairs4(b)), fp16_pairs4(b + 4), 1));
}

template <typename W, typename A>
inline float block_scale(const W& x, const A& y) { return h2f(x.d) * h2f(y.d); }

// [d0 ×8 | d1 ×8]
inline __m512 scales2(float d0, float d1) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0)), _mm256_set1_ps(d1), 1);
}

// Q4_1/Q5_1 against Q8_1 carry a min term m_w·s_a per block.
template <typename A>
constexpr bool kHasMin = sizeof(A) == sizeof(BlockQ8_1);

template <typename W, typename A>
inline float min_term(const W& x, const A& y) {
  if constexpr (kHasMin<A>) return h2f(x.m) * h2f(y.s);
  else return 0.0f;
}

// Per pair, in this order: groups of 8 blocks into two accumulators (block pairs 0, 2 into
// acc0, 1, 3 into acc1) with the scales of all 8 from one product; the remaining block pairs
// into acc0; an odd last block into acc1; Q4_1/Q5_1's m_w·s_a into the odd lanes of acc_min
// for the groups and a float for the rest.
template <class Fmt>
struct LegacyTile {
  using W = typename Fmt::W;
  using A = typename Fmt::A;

  // A full group of 8 blocks of one row unpacked: what the group loop reads, for every token.
  struct Packed {
    WeightCodes wc[4];  // block pairs 0..3
    __m512 wsc;         // (d, m / meaningless) of the 8 blocks
  };
  static constexpr int kUnit = 8 * kQK;

  STEPQ_ALWAYS_INLINE static void pack(const uint8_t* row, int64_t unit, Packed& p) {
    const W* x = (const W*)row + 8 * unit;
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) p.wc[k] = Fmt::codes(x[2 * k], x[2 * k + 1]);
    p.wsc = fp16_pairs8(x);
  }

  // acc[r][c] += scale(r, c) · isum of block pair (j0, j1) of every token c against the codes
  // wc[r] of each row.
  template <int R, int C, class Scale>
  STEPQ_ALWAYS_INLINE static void block_pair(const WeightCodes (&wc)[R], const A* const (&y)[C], int64_t j0, int64_t j1,
                                             Scale scale, __m512 (&acc)[R][C]) {
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) {
      const ActCodes ac = Fmt::act(join_codes(y[c][j0].qs, y[c][j1].qs));
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
        acc[r][c] = _mm512_fmadd_ps(scale(r, c), _mm512_cvtepi32_ps(Fmt::isum(wc[r], ac)), acc[r][c]);
    }
  }

  template <int R>
  STEPQ_ALWAYS_INLINE static void row_codes(const W* const (&x)[R], int64_t j0, int64_t j1, WeightCodes (&wc)[R]) {
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) wc[r] = Fmt::codes(x[r][j0], x[r][j1]);
  }

  // Everything a pair accumulates, and the order it does so in: groups of 8 blocks into two
  // accumulators (block pairs 0, 2 into acc0, 1, 3 into acc1) with the scales of all 8 from one
  // product; the remaining block pairs into acc0; an odd last block into acc1; Q4_1/Q5_1's
  // m_w·s_a into the odd lanes of acc_min for the groups and a float for the rest. `group(g,
  // wsc, codes)` supplies group g's weight scales and block-pair codes, unpacked here or packed.
  template <int R, int C, class Group>
  STEPQ_ALWAYS_INLINE static void dot(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out,
                                      int64_t os, Group group) {
    const int64_t nb = n / kQK;
    const W* x[R];
    const A* y[C];
    for (int r = 0; r < R; r++) x[r] = (const W*)(w + r * ws);
    for (int c = 0; c < C; c++) y[c] = (const A*)(a + c * as);
    __m512 acc0[R][C], acc1[R][C], acc_min[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
        acc0[r][c] = _mm512_setzero_ps(), acc1[r][c] = _mm512_setzero_ps(), acc_min[r][c] = _mm512_setzero_ps();
    // Every block starts with d, then m / s (Q4_1, Q5_1, Q8_1) or code bytes: one 32-bit load
    // per block and one product give d_w·d_a in the even lanes and m_w·s_a (or a meaningless
    // value, never used) in the odd ones. Lanes 4k and 4k+2 are then spread to [×8 | ×8] for
    // block pair k.
    __m512i spread[4];
    for (int k = 0; k < 4; k++)
      spread[k] = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(4 * k), _mm512_set1_epi32(4 * k + 2));
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
      __m512 prod[R][C];
      {
        __m512 wsc[R];
        group.scales(x, i, wsc);
#pragma GCC unroll 16
        for (int c = 0; c < C; c++) {
          const __m512 asc = fp16_pairs8(y[c] + i);
#pragma GCC unroll 16
          for (int r = 0; r < R; r++) prod[r][c] = _mm512_mul_ps(wsc[r], asc);
        }
      }
#pragma GCC unroll 2
      for (int k = 0; k < 4; k += 2) {
        const int64_t j = i + 2 * k;
        WeightCodes wc[R];
        group.codes(x, i, k, wc);
        block_pair<R, C>(wc, y, j, j + 1, [&](int r, int c) { return _mm512_permutexvar_ps(spread[k], prod[r][c]); },
                         acc0);
        group.codes(x, i, k + 1, wc);
        block_pair<R, C>(wc, y, j + 2, j + 3,
                         [&](int r, int c) { return _mm512_permutexvar_ps(spread[k + 1], prod[r][c]); }, acc1);
      }
      if constexpr (kHasMin<A>) {
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 16
          for (int c = 0; c < C; c++) acc_min[r][c] = _mm512_mask_add_ps(acc_min[r][c], 0xAAAA, acc_min[r][c], prod[r][c]);
      }
    }
    float mins[R][C] = {};
    for (; i + 2 <= nb; i += 2) {
      WeightCodes wc[R];
      row_codes<R>(x, i, i + 1, wc);
      block_pair<R, C>(
          wc, y, i, i + 1,
          [&](int r, int c) { return scales2(block_scale(x[r][i], y[c][i]), block_scale(x[r][i + 1], y[c][i + 1])); },
          acc0);
      if constexpr (kHasMin<A>) {
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 16
          for (int c = 0; c < C; c++) mins[r][c] += min_term(x[r][i], y[c][i]) + min_term(x[r][i + 1], y[c][i + 1]);
      }
    }
    if (i < nb) {  // odd block count: pair the last block with itself, weighted 0 the second time
      WeightCodes wc[R];
      row_codes<R>(x, i, i, wc);
      block_pair<R, C>(wc, y, i, i, [&](int r, int c) { return scales2(block_scale(x[r][i], y[c][i]), 0.0f); }, acc1);
      if constexpr (kHasMin<A>) {
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
#pragma GCC unroll 16
          for (int c = 0; c < C; c++) mins[r][c] += min_term(x[r][i], y[c][i]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
        out[c * os + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r][c], acc1[r][c])) +
                          (_mm512_reduce_add_ps(acc_min[r][c]) + mins[r][c]);
  }

  template <int R>
  struct Unpacked {  // groups read from the rows as they go
    STEPQ_ALWAYS_INLINE void scales(const W* const (&x)[R], int64_t i, __m512 (&wsc)[R]) const {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) wsc[r] = fp16_pairs8(x[r] + i);
    }
    STEPQ_ALWAYS_INLINE void codes(const W* const (&x)[R], int64_t i, int k, WeightCodes (&wc)[R]) const {
      row_codes<R>(x, i + 2 * k, i + 2 * k + 1, wc);
    }
  };
  template <int R>
  struct FromPacked {  // groups from pack(): p[g·R + r] is group g of row r
    const Packed* p;
    STEPQ_ALWAYS_INLINE void scales(const W* const (&)[R], int64_t i, __m512 (&wsc)[R]) const {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) wsc[r] = p[(i / 8) * R + r].wsc;
    }
    STEPQ_ALWAYS_INLINE void codes(const W* const (&)[R], int64_t i, int k, WeightCodes (&wc)[R]) const {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) wc[r] = p[(i / 8) * R + r].wc[k];
    }
  };

  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    dot<R, C>(n, w, ws, a, as, out, os, Unpacked<R>{});
  }
  template <int R, int C>
  static void run_packed(int64_t n, const uint8_t* w, size_t ws, const Packed* p, const uint8_t* a, size_t as,
                         float* out, int64_t os) {
    dot<R, C>(n, w, ws, a, as, out, os, FromPacked<R>{p});
  }
};

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

// 128-bit lane l of a 512-bit vector, for l known only after loop unrolling: the intrinsics
// need an immediate, which GCC accepts from an unrolled loop variable and clang does not.
inline __m512i insert_lane_epi32(__m512i v, __m128i x, int l) {
  switch (l) {
    case 0: return _mm512_inserti32x4(v, x, 0);
    case 1: return _mm512_inserti32x4(v, x, 1);
    case 2: return _mm512_inserti32x4(v, x, 2);
    default: return _mm512_inserti32x4(v, x, 3);
  }
}
inline __m512 insert_lane_ps(__m512 v, __m128 x, int l) {
  switch (l) {
    case 0: return _mm512_insertf32x4(v, x, 0);
    case 1: return _mm512_insertf32x4(v, x, 1);
    case 2: return _mm512_insertf32x4(v, x, 2);
    default: return _mm512_insertf32x4(v, x, 3);
  }
}
inline __m128 extract_lane_ps(__m512 v, int l) {
  switch (l) {
    case 0: return _mm512_extractf32x4_ps(v, 0);
    case 1: return _mm512_extractf32x4_ps(v, 1);
    case 2: return _mm512_extractf32x4_ps(v, 2);
    default: return _mm512_extractf32x4_ps(v, 3);
  }
}

inline float hsum_ps(__m128 v) {
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  v = _mm_add_ss(v, _mm_movehdup_ps(v));
  return _mm_cvtss_f32(v);
}

// Q4_K, and Q5_K when kHighBit: sub-blocks of 32, 6-bit scales and mins. Per super-block and
// pair: 4 maddubs + 4 dpwssd (64 codes each) into 16 int32 lanes, scaled once in float; the
// mins term Σ_j m_j·(bsums_2j + bsums_2j+1) as 4 int32 partials, scaled by dmin·d_a.
template <typename Block, bool kHighBit>
struct K4Tile {
  // One super-block of one row unpacked: what the multiply loop reads, for every token.
  struct Packed {
    __m512i q[4];  // codes of sub-blocks 0,1 | 2,3 | 4,5 | 6,7, as the activation bytes 64k..64k+63
    __m512i s[4];  // their scales as int16 words beside each maddubs pair
    __m512i mins;  // the 8 mins as int16, repeated in every 128-bit lane
    float d, dmin;
  };
  static constexpr int kUnit = kQK_K;

  STEPQ_ALWAYS_INLINE static void pack(const uint8_t* row, int64_t i, Packed& p) {
    const Block* x = (const Block*)row + i;
    const __m512i m4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    uint64_t scales, mins;
    unpack_k4_scales(x->scales, scales, mins);
    const __m512i sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scales)));
    p.mins = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mins)));
    __m512i hbits = _mm512_setzero_si512();
    if constexpr (kHighBit) {  // [qh | qh>>1]: bit 0 of each half tracks sub-blocks 4p and 4p+1
      const __m256i qh = loadu256(x->qh);
      hbits = join256(qh, _mm256_srli_epi16(qh, 1));
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {  // 64 code bytes = 128 elements = sub-blocks 4h..4h+3
      const __m512i q = loadu512(x->qs + 64 * h);
      const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      __m512i qa = _mm512_shuffle_i64x2(lo, hi, 0x44);  // sub-blocks 4h (low nibbles), 4h+1 (high)
      __m512i qb = _mm512_shuffle_i64x2(lo, hi, 0xEE);  // sub-blocks 4h+2, 4h+3
      if constexpr (kHighBit) {
        qa = _mm512_or_si512(qa, _mm512_and_si512(_mm512_slli_epi16(hbits, 4), bit4));
        qb = _mm512_or_si512(qb, _mm512_and_si512(_mm512_slli_epi16(hbits, 2), bit4));
        hbits = _mm512_srli_epi16(hbits, 4);
      }
      p.q[2 * h] = qa;
      p.q[2 * h + 1] = qb;
      p.s[2 * h] = _mm512_shuffle_epi8(sc, word_pair_ctrl(4 * h, 4 * h + 1));
      p.s[2 * h + 1] = _mm512_shuffle_epi8(sc, word_pair_ctrl(4 * h + 2, 4 * h + 3));
    }
    p.d = h2f(x->d);
    p.dmin = h2f(x->dmin);
  }

  // The mins term runs four tokens to a vector: 128-bit lane l of accm[r][g] is what a single
  // token's 4-lane accumulator holds, for token 4g+l.
  template <int C>
  static constexpr int kGroups = (C + 3) / 4;

  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void superblock(const Packed* const (&p)[R], const BlockQ8_K* const (&y)[C], __m512 (&acc)[R][C],
                                __m512 (&accm)[R][kGroups<C>]) {
    __m512i sumi[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) sumi[r][c] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
        const __m512i yk = loadu512(y[c]->qs + 64 * k);
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
          sumi[r][c] = _mm512_dpwssd_epi32(sumi[r][c], _mm512_maddubs_epi16(p[r]->q[k], yk), p[r]->s[k]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512 dw = opaque(_mm512_set1_ps(p[r]->d));
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
        acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(y[c]->d)), _mm512_cvtepi32_ps(sumi[r][c]), acc[r][c]);
    }
    constexpr int G = kGroups<C>;
    __m512i pairs[G];
    __m512 dag[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; g++) {
      pairs[g] = _mm512_setzero_si512();
      dag[g] = _mm512_setzero_ps();
#pragma GCC unroll 4
      for (int l = 0; l < 4; l++) {
        if (4 * g + l >= C) break;
        const BlockQ8_K* yc = y[4 * g + l];
        pairs[g] = insert_lane_epi32(pairs[g], _mm_hadd_epi16(loadu128(yc->bsums), loadu128(yc->bsums + 8)), l);
        dag[g] = insert_lane_ps(dag[g], _mm_set1_ps(yc->d), l);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512 dm = _mm512_set1_ps(p[r]->dmin);
#pragma GCC unroll 4
      for (int g = 0; g < G; g++)
        accm[r][g] = _mm512_fmadd_ps(_mm512_mul_ps(dm, dag[g]), _mm512_cvtepi32_ps(_mm512_madd_epi16(p[r]->mins, pairs[g])),
                                     accm[r][g]);
    }
  }

  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void finish(const __m512 (&acc)[R][C], const __m512 (&accm)[R][kGroups<C>], float* out, int64_t os) {
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
        out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]) - hsum_ps(extract_lane_ps(accm[r][c / 4], c % 4));
  }

  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void zero(__m512 (&acc)[R][C], __m512 (&accm)[R][kGroups<C>]) {
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
#pragma GCC unroll 4
      for (int g = 0; g < kGroups<C>; g++) accm[r][g] = _mm512_setzero_ps();
    }
  }

  // Unpacking each super-block as it goes (one token, or too few to pay for packing).
  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    __m512 acc[R][C], accm[R][kGroups<C>];
    zero<R, C>(acc, accm);
    for (int64_t i = 0; i < n / kQK_K; i++) {
      Packed p[R];
      const Packed* pp[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) pack(w + r * ws, i, p[r]), pp[r] = &p[r];
      const BlockQ8_K* y[C];
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) y[c] = (const BlockQ8_K*)(a + c * as) + i;
      superblock<R, C>(pp, y, acc, accm);
    }
    finish<R, C>(acc, accm, out, os);
  }

  // From rows packed by pack(): p[i·R + r] is super-block i of row r.
  template <int R, int C>
  static void run_packed(int64_t n, const uint8_t*, size_t, const Packed* p, const uint8_t* a, size_t as, float* out,
                         int64_t os) {
    const int64_t nb = n / kQK_K;
    __m512 acc[R][C], accm[R][kGroups<C>];
    zero<R, C>(acc, accm);
    for (int64_t i = 0; i < nb; i++) {
      const Packed* pp[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) pp[r] = p + i * R + r;
      const BlockQ8_K* y[C];
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) y[c] = (const BlockQ8_K*)(a + c * as) + i;
      superblock<R, C>(pp, y, acc, accm);
    }
    finish<R, C>(acc, accm, out, os);
  }
};

// Q6_K: unsigned 6-bit codes (0..63), the −32 offset applied once per super-block and pair
// through bsums: Σ sc·(q−32)·a = Σ sc·q·a − 32·Σ_j sc_j·bsums_j (one more dpwssd, of the bsums
// against −32·sc, into the low 8 lanes).
struct Q6KTile {
  struct Packed {
    __m512i q[4];   // codes for the activation bytes 64k..64k+63
    __m512i s[4];   // their scales as int16 words beside each maddubs pair
    __m512i corr;   // −32·scales as 16 int16, upper half zero
    float d;
  };
  static constexpr int kUnit = kQK_K;

  STEPQ_ALWAYS_INLINE static void pack(const uint8_t* row, int64_t i, Packed& p) {
    const BlockQ6_K* x = (const BlockQ6_K*)row + i;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(x->scales));
    const __m512i sc = _mm512_castsi256_si512(sc16);  // only words 0..15 are indexed
    p.corr = _mm512_zextsi256_si512(_mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32)));
#pragma GCC unroll 2
    for (int g = 0; g < 2; g++) {  // 128-element halves
      const __m512i ql = loadu512(x->ql + 64 * g);
      const __m256i qh = loadu256(x->qh + 32 * g);
      // Elements 0..63 of the half: low nibbles of ql, qh bits 0-1 (first 32) and 2-3 (next 32);
      // elements 64..127: high nibbles, qh bits 4-5 and 6-7.
      p.q[2 * g] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                   _mm512_and_si512(join256(_mm256_slli_epi16(qh, 4), _mm256_slli_epi16(qh, 2)), m30));
      p.q[2 * g + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                       _mm512_and_si512(join256(qh, _mm256_srli_epi16(qh, 2)), m30));
      p.s[2 * g] = _mm512_permutexvar_epi16(quad_index(2 * g), sc);
      p.s[2 * g + 1] = _mm512_permutexvar_epi16(quad_index(2 * g + 1), sc);
    }
    p.d = h2f(x->d);
  }

  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void superblock(const Packed* const (&p)[R], const BlockQ8_K* const (&y)[C], __m512 (&acc)[R][C]) {
    __m512i sumi[R][C];
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) {
      const __m512i bsums = _mm512_zextsi256_si512(loadu256(y[c]->bsums));
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) sumi[r][c] = _mm512_dpwssd_epi32(_mm512_setzero_si512(), bsums, p[r]->corr);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
        const __m512i yk = loadu512(y[c]->qs + 64 * k);
#pragma GCC unroll 16
        for (int r = 0; r < R; r++)
          sumi[r][c] = _mm512_dpwssd_epi32(sumi[r][c], _mm512_maddubs_epi16(p[r]->q[k], yk), p[r]->s[k]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512 dw = opaque(_mm512_set1_ps(p[r]->d));
#pragma GCC unroll 16
      for (int c = 0; c < C; c++)
        acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(y[c]->d)), _mm512_cvtepi32_ps(sumi[r][c]), acc[r][c]);
    }
  }

  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void finish(const __m512 (&acc)[R][C], float* out, int64_t os) {
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]);
  }

  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    __m512 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; i++) {
      Packed p[R];
      const Packed* pp[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) pack(w + r * ws, i, p[r]), pp[r] = &p[r];
      const BlockQ8_K* y[C];
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) y[c] = (const BlockQ8_K*)(a + c * as) + i;
      superblock<R, C>(pp, y, acc);
    }
    finish<R, C>(acc, out, os);
  }

  template <int R, int C>
  static void run_packed(int64_t n, const uint8_t*, size_t, const Packed* p, const uint8_t* a, size_t as, float* out,
                         int64_t os) {
    const int64_t nb = n / kQK_K;
    __m512 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
      const Packed* pp[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) pp[r] = p + i * R + r;
      const BlockQ8_K* y[C];
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) y[c] = (const BlockQ8_K*)(a + c * as) + i;
      superblock<R, C>(pp, y, acc);
    }
    finish<R, C>(acc, out, os);
  }
};

// Σ_j v_j·bsums_j (16 int16 scales against the 16 bsums) as 16 int32 lanes, upper 8 zero.
inline __m512i scales_dot_bsums16(__m256i v16, const int16_t* bsums) {
  return _mm512_zextsi256_si512(_mm256_madd_epi16(v16, loadu256(bsums)));
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
  // Replacing a vec_dot drops the AVX2 tile kernel beside it (the two must agree bit for bit).
  auto dot = [&](QType q, VecDotFn f) {
    t.vec_dot[(uint32_t)q] = f;
    t.vec_dot_tile[(uint32_t)q] = nullptr;
  };
  auto tiled = [&](QType q, VecDotFn f, VecDotTileFn g) {
    t.vec_dot[(uint32_t)q] = f;
    t.vec_dot_tile[(uint32_t)q] = g;
  };
  // Tile shapes (rows × tokens, and rows for a single token): see bench/README.md.
  tiled(QType::F32, gemm_dot<FloatTile<F32Loads>>, gemm_tile<FloatTile<F32Loads>, 2, 3, 1>);
  tiled(QType::F16, gemm_dot<FloatTile<HalfLoads<load_f16x16>>>, gemm_tile<FloatTile<HalfLoads<load_f16x16>>, 2, 3, 1>);
  tiled(QType::BF16, gemm_dot<FloatTile<HalfLoads<load_bf16x16>>>, gemm_tile<FloatTile<HalfLoads<load_bf16x16>>, 2, 3, 1>);
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
  tiled(QType::Q6_K, gemm_dot<Q6KTile>, gemm_tile<Q6KTile, 4, 4, 1>);
}

}  // namespace stepq
