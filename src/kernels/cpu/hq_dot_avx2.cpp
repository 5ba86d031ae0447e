// AVX2 dot products of the HQ family and S3_32 (quant_blocks.h) against Q8_0 activations.
// Compiled with -mavx2 -mfma -mf16c -mbmi2.
//
// Both are tile kernels (gemm_tiling.h): R weight rows × C tokens per call, vec_dot being the
// 1×1 instance, each (row, token) pair running the same operations in every instance, so tile
// outputs are bit-identical to vec_dot. Weight codes are unpacked once per tile into unsigned
// bytes (32 per Q8_0 block of activations), the activations' side once per token and tile, or
// once for all rows of a matrix-vector product (HQTile::matvec). Integer core
// as in quant_dot_avx2.cpp: _mm256_maddubs_epi16 (unsigned code × signed activation, pairs into
// int16: at most 2·15·127, no saturation) then _mm256_madd_epi16 into int32 lanes.
//
// - HQ formats (w = (q − z)·d, groups of 64·m): per Q8_0 block j of the group, 8 int32 lanes of
//   Σ q·a scaled by dx_j into a float vector bs; per token the same for Σ a gives bz; then
//   acc += d·(bs − z·bz), lane-wise the reference's per-block formula. HQ3_32 has a scale and
//   zero per Q8_0 block, so acc is updated per Q8_0 block instead of per weight block; S3_16 the
//   same with z = 4 and [d_2j ×4 | d_2j+1 ×4] for Q8_0 block j.
// - S3_32 (w = (q − 4)·d): Σ (q − 4)·a as madd(maddubs(q, a) − maddubs(4, a)), the second term
//   once per token; acc += (d·dx)·isum per lane.
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

// An fp16 scale straight to 8 broadcast floats (a word broadcast from memory, one conversion).
inline __m256 h2f_x8(uint16_t h) { return _mm256_cvtph_ps(_mm_set1_epi16((short)h)); }

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i loadu256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }
inline __m128i loadu128(const void* p) { return _mm_loadu_si128((const __m128i*)p); }

// Σ u·s over 32 byte pairs (u unsigned, s signed) as 8 int32 lanes, converted to float.
inline __m256 dot_us(__m256i u, __m256i s) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

// Bit e of 32 bits to byte e: 4 where set, 0 where clear. `v` holds the bits as bytes b..b+3
// of both 128-bit lanes (a 32- or 64-bit broadcast), `b` says where.
inline __m256i bits_to_fours(__m256i v, int b) {
  const __m256i spread = _mm256_shuffle_epi8(
      v, _mm256_add_epi8(_mm256_set1_epi8((char)b), _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                                                      2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)));
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(4));
}

// ---------------------------------------------------------------------------------------------
// Code unpacking: element i of a 64-element chunk to byte i of h[0] (i < 32) or h[1].

struct Chunk { __m256i h[2]; };

// 2-bit codes (HQ2, the low bits of HQ3): 128-bit lane k of h[0] is ql >> 2k, of h[1] ql >> 4 + 2k.
inline Chunk codes2(const uint8_t* ql) {
  const __m256i v = _mm256_broadcastsi128_si256(loadu128(ql));
  const __m256i m3 = _mm256_set1_epi8(3);
  return {{_mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2)), m3),
           _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(4, 4, 4, 4, 6, 6, 6, 6)), m3)}};
}
inline Chunk codes3(const HQ3Chunk& c) {
  long long hb;
  std::memcpy(&hb, c.qh, 8);
  const __m256i v = _mm256_set1_epi64x(hb);
  Chunk q = codes2(c.ql);
  q.h[0] = _mm256_or_si256(q.h[0], bits_to_fours(v, 0));
  q.h[1] = _mm256_or_si256(q.h[1], bits_to_fours(v, 4));
  return q;
}
inline Chunk codes4(const uint8_t* qs) {
  const __m256i v = loadu256(qs), m4 = _mm256_set1_epi8(0x0F);
  return {{_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)}};
}

// Scales and zeros of one weight block, as `kUnits` (d, z) broadcast pairs: unit u covers the
// block's Q8_0 blocks u·2M/kUnits .. (u + 1)·2M/kUnits − 1. table() is what load() needs,
// fetched once per call.
template <class W>
struct BlockScales {  // fp16 d, z for the whole block
  static constexpr int kUnits = 1;
  __m256 d, z;
  static const float* table() { return nullptr; }
  static BlockScales load(const W& x, const float*) { return {h2f_x8(x.d), h2f_x8(x.z)}; }
  __m256 unit_d(int) const { return d; }
  __m256 unit_z(int) const { return z; }
};

// HQ3_32: group g's d = D·table[sc[g]], z = zc[g]/16 − 4, the reference's float operations
// (the product rounds the same in a vector; the zero is exact). Unit g is group g.
struct GroupScales {
  static constexpr int kUnits = 4;
  alignas(16) float d[4], z[4];
  static const float* table() { return hq3_32_scale_table(); }
  static GroupScales load(const BlockHQ3_32& x, const float* tab) {
    GroupScales s;
    int zc;
    std::memcpy(&zc, x.zc, 4);
    const __m128 t = _mm_setr_ps(tab[x.sc[0]], tab[x.sc[1]], tab[x.sc[2]], tab[x.sc[3]]);
    const __m128 zf = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(zc)));
    _mm_store_ps(s.d, _mm_mul_ps(_mm_cvtph_ps(_mm_set1_epi16((short)x.D)), t));
    _mm_store_ps(s.z, _mm_sub_ps(_mm_mul_ps(zf, _mm_set1_ps(1.0f / 16.0f)), _mm_set1_ps(4.0f)));
    return s;
  }
  __m256 unit_d(int g) const { return _mm256_broadcast_ss(d + g); }
  __m256 unit_z(int g) const { return _mm256_broadcast_ss(z + g); }
};

// S3_16: group g's d = D·(c_g − 16), z = 4 (symmetric), the reference's float operations (the
// product is exact). Unit j is Q8_0 block j: its lanes 0..3 group 2j, 4..7 group 2j + 1.
struct S3_16Scales {
  static constexpr int kUnits = 8;
  float d[16];
  static const float* table() { return nullptr; }
  static S3_16Scales load(const BlockS3_16& x, const float*) {
    S3_16Scales s;
    const float D = _cvtsh_ss(x.d);
    for (int g = 0; g < 16; g++) {
      const int c = ((x.sl[g & 7] >> (4 * (g >> 3))) & 15) | (((x.sh[g >> 3] >> (g & 7)) & 1) << 4);
      s.d[g] = D * (float)(c - 16);
    }
    return s;
  }
  __m256 unit_d(int j) const { return _mm256_set_m128(_mm_set1_ps(d[2 * j + 1]), _mm_set1_ps(d[2 * j])); }
  __m256 unit_z(int) const { return _mm256_set1_ps(4.0f); }
};

struct HQ2_64Fmt {
  using W = BlockHQ2_64;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 1;
  static Chunk codes(const W& x, int) { return codes2(x.ql); }
};
struct HQ3_64Fmt {
  using W = BlockHQ3_64;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 1;
  static Chunk codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct HQ3_128Fmt {
  using W = BlockHQ3_128;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 2;
  static Chunk codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct HQ3_32Fmt {
  using W = BlockHQ3_32;
  using Scales = GroupScales;
  static constexpr int kChunks = 2;
  static Chunk codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct S3_16Fmt {
  using W = BlockS3_16;
  using Scales = S3_16Scales;
  static constexpr int kChunks = 4;
  static Chunk codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct HQ4_64Fmt {
  using W = BlockHQ4_64;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 1;
  static Chunk codes(const W& x, int) { return codes4(x.qs); }
};

// ---------------------------------------------------------------------------------------------
// HQ formats. Per (row, token) pair and weight block, in this order, for each scale unit u, over
// its Q8_0 blocks j: bs = j first ? dx_j·cvt(Σ_j q·a) : fma(dx_j, cvt(Σ_j q·a), bs); then
// acc = fma(d_u, fnma(z_u, bz, bs), acc), with bz built the same way from Σa.
//
// The token's side (dx_j, and bz per unit) comes from an activation source: built from the Q8_0
// blocks as they are read (Activations: tiles, where R rows share it), or read from tables built
// once for all rows of a matrix-vector product (Prepared: matvec), the same numbers. Without
// the tables a matrix-vector product rebuilds bz for every row, a third of HQ3_32's arithmetic.

template <class Fmt>
struct HQTile {
  using W = typename Fmt::W;
  using S = typename Fmt::Scales;
  static constexpr int M = Fmt::kChunks;
  static constexpr int U = S::kUnits, JU = 2 * M / U;  // scale units per block, Q8_0 blocks per unit
  static constexpr int64_t kUnit = 64 * M;                // values per weight block

  struct Activations {  // one token's Q8_0 blocks
    const BlockQ8_0* y;
    STEPQ_ALWAYS_INLINE __m256 dx(int64_t j) const { return h2f_x8(y[j].d); }
    STEPQ_ALWAYS_INLINE __m256 bz(int64_t i, int u) const {
      const __m256i ones = _mm256_set1_epi8(1);
      __m256 bz;
#pragma GCC unroll 4
      for (int jj = 0; jj < JU; jj++) {
        const BlockQ8_0& yj = y[i * 2 * M + u * JU + jj];
        const __m256 dx = h2f_x8(yj.d), sa = dot_us(ones, loadu256(yj.qs));
        bz = jj == 0 ? _mm256_mul_ps(dx, sa) : _mm256_fmadd_ps(dx, sa, bz);
      }
      return bz;
    }
  };
  struct Prepared {  // the same from tables: dxs[j] = dx_j, bzs[i·U + u] = bz of block i's unit u
    const BlockQ8_0* y;
    const float* dxs;
    const __m256* bzs;
    STEPQ_ALWAYS_INLINE __m256 dx(int64_t j) const { return _mm256_broadcast_ss(dxs + j); }
    STEPQ_ALWAYS_INLINE __m256 bz(int64_t i, int u) const { return bzs[i * U + u]; }
  };

  template <int R, int C, class A>
  STEPQ_ALWAYS_INLINE static void dot(int64_t n, const uint8_t* w, size_t ws, const A (&act)[C], float* out,
                                      int64_t os) {
    const int64_t nb = n / kUnit;
    const W* x[R];
    for (int r = 0; r < R; r++) x[r] = (const W*)(w + r * ws);
    const float* tab = S::table();
    __m256 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
      if constexpr (C == 1) {
        // Matrix-vector: R row streams, each read once; 1 KiB ahead keeps DRAM latency off them.
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) _mm_prefetch((const char*)(x[r] + i) + 1024, _MM_HINT_T0);
      }
      Chunk q[R][M];
      S sc[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
#pragma GCC unroll 2
        for (int k = 0; k < M; k++) q[r][k] = Fmt::codes(x[r][i], k);
        sc[r] = S::load(x[r][i], tab);
      }
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
#pragma GCC unroll 4
        for (int u = 0; u < U; u++) {
          const __m256 bz = act[c].bz(i, u);
          __m256 bs[R];
#pragma GCC unroll 4
          for (int jj = 0; jj < JU; jj++) {
            const int j = u * JU + jj;
            const __m256i aj = loadu256(act[c].y[i * 2 * M + j].qs);
            const __m256 dx = act[c].dx(i * 2 * M + j);
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) {
              const __m256 s = dot_us(q[r][j / 2].h[j % 2], aj);
              bs[r] = jj == 0 ? _mm256_mul_ps(dx, s) : _mm256_fmadd_ps(dx, s, bs[r]);
            }
          }
#pragma GCC unroll 16
          for (int r = 0; r < R; r++)
            acc[r][c] = _mm256_fmadd_ps(sc[r].unit_d(u), _mm256_fnmadd_ps(sc[r].unit_z(u), bz, bs[r]), acc[r][c]);
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) out[c * os + r] = hsum_ps(acc[r][c]);
  }

  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    Activations act[C];
    for (int c = 0; c < C; c++) act[c].y = (const BlockQ8_0*)(a + c * as);
    dot<R, C>(n, w, ws, act, out, os);
  }

  // Matrix-vector (gemm_tiling.h): the token's tables once, then R1 rows per call. Rows longer
  // than kMaxMatvecIn (the tables live on the stack: 36 KiB at most) take the tiles.
  static constexpr int64_t kMaxMatvecIn = 32768;
  template <int R1>
  static bool matvec(int64_t n, const uint8_t* w, size_t ws, int64_t rows, const uint8_t* a, float* out) {
    if (n > kMaxMatvecIn) return false;
    const int64_t nb = n / kUnit;
    const Activations src{(const BlockQ8_0*)a};
    float dxs[kMaxMatvecIn / kQK];
    __m256 bzs[kMaxMatvecIn / kUnit * U];
    for (int64_t j = 0; j < nb * 2 * M; j++) dxs[j] = _cvtsh_ss(src.y[j].d);
    for (int64_t i = 0; i < nb; i++)
#pragma GCC unroll 4
      for (int u = 0; u < U; u++) bzs[i * U + u] = src.bz(i, u);
    const Prepared act[1] = {{src.y, dxs, bzs}};
    int64_t r = 0;
    for (; r + R1 <= rows; r += R1) dot<R1, 1>(n, w + r * ws, ws, act, out + r, 0);
    for (; r < rows; r++) dot<1, 1>(n, w + r * ws, ws, act, out + r, 0);
    return true;
  }
};

// ---------------------------------------------------------------------------------------------
// S3_32. Per (row, token) pair and block: acc = fma(d·dx, cvt(madd(maddubs(q, a) − maddubs(4, a))), acc).

inline __m256i s3_codes(const BlockS3_32& x) {
  long long l;
  int h;
  std::memcpy(&l, x.ql, 8);
  std::memcpy(&h, x.qh, 4);
  const __m256i lo = _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x(l), _mm256_setr_epi64x(0, 2, 4, 6)),
                                      _mm256_set1_epi8(3));
  return _mm256_or_si256(lo, bits_to_fours(_mm256_set1_epi32(h), 0));
}

struct S3Tile {
  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out, int64_t os) {
    const int64_t nb = n / kQK;
    const BlockS3_32* x[R];
    const BlockQ8_0* y[C];
    for (int r = 0; r < R; r++) x[r] = (const BlockS3_32*)(w + r * ws);
    for (int c = 0; c < C; c++) y[c] = (const BlockQ8_0*)(a + c * as);
    const __m256i fours = _mm256_set1_epi8(4);
    __m256 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
      __m256i q[R];
      __m256 dw[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) q[r] = s3_codes(x[r][i]), dw[r] = h2f_x8(x[r][i].d);
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
        const __m256i ai = loadu256(y[c][i].qs);
        const __m256i off = _mm256_maddubs_epi16(fours, ai);
        const __m256 dx = h2f_x8(y[c][i].d);
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) {
          const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[r], ai), off);
          const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
          acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(dw[r], dx), s, acc[r][c]);
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) out[c * os + r] = hsum_ps(acc[r][c]);
  }
};

}  // namespace

void register_hq_kernels_avx2(DotTable& t) {
  auto tiled = [&](QType q, VecDotFn f, VecDotTileFn g) {
    t.vec_dot[(uint32_t)q] = f;
    t.vec_dot_tile[(uint32_t)q] = g;
  };
  tiled(QType::HQ2_64, gemm_dot<HQTile<HQ2_64Fmt>>, gemm_tile<HQTile<HQ2_64Fmt>, 4, 4, 1>);
  tiled(QType::HQ3_64, gemm_dot<HQTile<HQ3_64Fmt>>, gemm_tile<HQTile<HQ3_64Fmt>, 4, 4, 1>);
  tiled(QType::HQ3_128, gemm_dot<HQTile<HQ3_128Fmt>>, gemm_tile<HQTile<HQ3_128Fmt>, 4, 4, 1>);
  tiled(QType::HQ4_64, gemm_dot<HQTile<HQ4_64Fmt>>, gemm_tile<HQTile<HQ4_64Fmt>, 4, 4, 1>);
  tiled(QType::S3_32, gemm_dot<S3Tile>, gemm_tile<S3Tile, 4, 4, 1>);
  tiled(QType::HQ3_32, gemm_dot<HQTile<HQ3_32Fmt>>, gemm_tile<HQTile<HQ3_32Fmt>, 4, 4, 1>);
  tiled(QType::S3_16, gemm_dot<HQTile<S3_16Fmt>>, gemm_tile<HQTile<S3_16Fmt>, 4, 4, 1>);
}

}  // namespace stepq
