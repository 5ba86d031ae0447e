// AVX-512 (F, BW, VL, DQ, VNNI) dot products of the HQ family and S3_32 (quant_blocks.h)
// against Q8_0 activations. Compiled with the flags in CMakeLists.txt; registered over the AVX2
// table (hq_dot_avx2.cpp).
//
// Both are tile kernels (gemm_tiling.h): R weight rows × C tokens per call, vec_dot being the
// 1×1 instance, each (row, token) pair running the same operations in every instance, so tile
// outputs are bit-identical to vec_dot. Weight codes are unpacked once per tile (or once per
// call through packing) into 64 unsigned bytes, activations once per token; the integer core is
// VNNI's _mm512_dpbusd_epi32 (unsigned codes × signed activations, 4 products per int32 lane).
//
// - HQ formats (w = (q − z)·d, groups of 64·m): per 64-element chunk, 16 int32 lanes of Σ q·a
//   (lanes 0..7: the first Q8_0 block, 8..15: the second) scaled by [dx0 ×8 | dx1 ×8] into a
//   per-block float vector bs; per token the same for Σ a gives bz (lane-wise, so bs − z·bz
//   is per lane what the reference computes per block); then acc += d·(bs − z·bz). The sum of
//   the lanes at the end is vec_dot_ref's value up to float rounding. HQ3_32 has a scale and
//   zero per 32 values, i.e. per half chunk: d and z become [d_2k ×8 | d_2k+1 ×8] vectors and
//   acc is updated per chunk instead of per block. S3_16 (symmetric, a scale per 16 values) is
//   the same with z = 4 and [d_4k ×4 | d_4k+1 ×4 | d_4k+2 ×4 | d_4k+3 ×4] per chunk k.
// - S3_32 (w = (q − 4)·d, blocks of 32): two blocks per vector, Σ (q − 4)·a as
//   dpbusd(−4·Σa, q, a) with −4·Σa once per token; acc += (d·dx)·isum per lane.
//
// Everything except the registration function is in an anonymous namespace; nothing allocates.
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

// fp16 scales straight to broadcast floats (a word broadcast from memory and one conversion).
inline __m512 h2f_x16(uint16_t h) { return _mm512_cvtph_ps(_mm256_set1_epi16((short)h)); }
// [h0 ×8 | h1 ×8]
inline __m512 h2f_x8x8(uint16_t h0, uint16_t h1) {
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)h0)), _mm_set1_epi16((short)h1), 1));
}

inline __m256i loadu256(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }
inline __m128i loadu128(const void* p) { return _mm_loadu_si128((const __m128i*)p); }

inline __m512i join256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) { return _mm512_dpbusd_epi32(acc, u, s); }

// ---------------------------------------------------------------------------------------------
// Code unpacking: element i of a 64-element chunk to byte i.

// 2-bit codes (HQ2, the low bits of HQ3): 128-bit lane k of the result is ql >> 2k.
inline __m512i codes2(const uint8_t* ql) {
  const __m512i v = _mm512_broadcast_i32x4(loadu128(ql));
  return _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0)), _mm512_set1_epi8(3));
}
// 3-bit: the 64 third bits are a byte mask as they are.
inline __m512i codes3(const HQ3Chunk& c) {
  uint64_t hb;
  std::memcpy(&hb, c.qh, 8);
  const __m512i lo = codes2(c.ql);
  return _mm512_mask_add_epi8(lo, (__mmask64)hb, lo, _mm512_set1_epi8(4));
}
// 4-bit: [qs & 15 | qs >> 4].
inline __m512i codes4(const uint8_t* qs) {
  const __m512i v = _mm512_broadcast_i64x4(loadu256(qs));
  return _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4), _mm512_set1_epi8(0x0F));
}

// Scales and zeros of one weight block, as `kUnits` (d, z) vector pairs: unit u covers chunks
// u·M/kUnits .. (u + 1)·M/kUnits − 1. table() is what load() needs, fetched once per call.
template <class W>
struct BlockScales {  // fp16 d, z for the whole block
  static constexpr int kUnits = 1;
  __m512 d, z;
  static const float* table() { return nullptr; }
  STEPQ_ALWAYS_INLINE static BlockScales load(const W& x, const float*) { return {h2f_x16(x.d), h2f_x16(x.z)}; }
  STEPQ_ALWAYS_INLINE void unit(int, __m512& du, __m512& zu) const { du = d, zu = z; }
};

// HQ3_32: group g's d = D·table[sc[g]], z = zc[g]/16 − 4, the reference's float operations
// (the product rounds the same in a vector; the zero is exact). Unit k is chunk k, its lanes
// 0..7 group 2k and 8..15 group 2k + 1.
struct GroupScales {
  static constexpr int kUnits = 2;
  __m128 d, z;  // groups 0..3
  static const float* table() { return hq3_32_scale_table(); }
  STEPQ_ALWAYS_INLINE static GroupScales load(const BlockHQ3_32& x, const float* tab) {
    int zc;
    std::memcpy(&zc, x.zc, 4);
    // Four scalar loads: gathers are slow on CPUs with the GDS microcode fix.
    const __m128 t = _mm_setr_ps(tab[x.sc[0]], tab[x.sc[1]], tab[x.sc[2]], tab[x.sc[3]]);
    const __m128 zf = _mm_cvtepi32_ps(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(zc)));
    return {_mm_mul_ps(_mm_cvtph_ps(_mm_set1_epi16((short)x.D)), t),
            _mm_sub_ps(_mm_mul_ps(zf, _mm_set1_ps(1.0f / 16.0f)), _mm_set1_ps(4.0f))};
  }
  STEPQ_ALWAYS_INLINE void unit(int k, __m512& du, __m512& zu) const {
    const __m512i idx = k ? _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2)
                          : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    du = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(d));
    zu = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(z));
  }
};

// S3_16: group g's d = D·(c_g − 16), z = 4 (symmetric), the reference's float operations (the
// product is exact). Unit k is chunk k; lane j of its vectors belongs to group 4k + j/4 (a 16-value
// group is 4 dpbusd lanes).
struct S3_16Scales {
  static constexpr int kUnits = 4;
  __m512 d;  // groups 0..15
  static const float* table() { return nullptr; }
  STEPQ_ALWAYS_INLINE static S3_16Scales load(const BlockS3_16& x, const float*) {
    uint64_t sl;
    uint16_t sh;
    std::memcpy(&sl, x.sl, 8);
    std::memcpy(&sh, x.sh, 2);
    const uint64_t m = 0x0F0F0F0F0F0F0F0Full;
    const __m512i lo4 = _mm512_cvtepu8_epi32(_mm_set_epi64x((long long)((sl >> 4) & m), (long long)(sl & m)));
    const __m512i c = _mm512_mask_add_epi32(lo4, (__mmask16)sh, lo4, _mm512_set1_epi32(16));
    const __m512 sf = _mm512_cvtepi32_ps(_mm512_sub_epi32(c, _mm512_set1_epi32(16)));
    return {_mm512_mul_ps(h2f_x16(x.d), sf)};
  }
  STEPQ_ALWAYS_INLINE void unit(int k, __m512& du, __m512& zu) const {
    const __m512i idx = _mm512_add_epi32(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                                         _mm512_set1_epi32(4 * k));
    du = _mm512_permutexvar_ps(idx, d);
    zu = _mm512_set1_ps(4.0f);
  }
};

struct HQ2_64Fmt {
  using W = BlockHQ2_64;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 1;
  static __m512i codes(const W& x, int) { return codes2(x.ql); }
};
struct HQ3_64Fmt {
  using W = BlockHQ3_64;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 1;
  static __m512i codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct HQ3_128Fmt {
  using W = BlockHQ3_128;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 2;
  static __m512i codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct HQ3_32Fmt {
  using W = BlockHQ3_32;
  using Scales = GroupScales;
  static constexpr int kChunks = 2;
  static __m512i codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct S3_16Fmt {
  using W = BlockS3_16;
  using Scales = S3_16Scales;
  static constexpr int kChunks = 4;
  static __m512i codes(const W& x, int k) { return codes3(x.c[k]); }
};
struct HQ4_64Fmt {
  using W = BlockHQ4_64;
  using Scales = BlockScales<W>;
  static constexpr int kChunks = 1;
  static __m512i codes(const W& x, int) { return codes4(x.qs); }
};

// ---------------------------------------------------------------------------------------------
// HQ formats. Per (row, token) pair and weight block, in this order, for each scale unit u:
//   for each chunk k of u: s = cvt(dpbusd(0, q_k, a_k)); bs = k first ? dx_k·s : fma(dx_k, s, bs)
//   acc = fma(d_u, fnma(z_u, bz, bs), acc)
// with bz built the same way from Σa (once per token and unit); one accumulator per pair,
// its lanes summed at the end.

template <class Fmt>
struct HQTile {
  using W = typename Fmt::W;
  using S = typename Fmt::Scales;
  static constexpr int M = Fmt::kChunks;
  static constexpr int U = S::kUnits, KU = M / U;  // scale units per block, chunks per unit
  struct Packed { __m512i q[M]; };  // one block of one row: the codes of its chunks
  static constexpr int kUnit = 64 * M;

  STEPQ_ALWAYS_INLINE static void pack(const uint8_t* row, int64_t i, Packed& p) {
    const W& x = ((const W*)row)[i];
#pragma GCC unroll 2
    for (int k = 0; k < M; k++) p.q[k] = Fmt::codes(x, k);
  }

  // `codes(x, i, q)` supplies the chunk codes of block i of every row, unpacked here or packed.
  template <int R, int C, class Codes>
  STEPQ_ALWAYS_INLINE static void dot(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out,
                                      int64_t os, Codes codes) {
    const int64_t nb = n / kUnit;
    const W* x[R];
    const BlockQ8_0* y[C];
    for (int r = 0; r < R; r++) x[r] = (const W*)(w + r * ws);
    for (int c = 0; c < C; c++) y[c] = (const BlockQ8_0*)(a + c * as);
    const __m512i ones = _mm512_set1_epi8(1);
    const float* tab = S::table();
    __m512 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
      __m512i q[R][M];
      __m512 d[R][U], z[R][U];
      if constexpr (C == 1) {
        // Matrix-vector: R row streams, each read once; prefetching 1 KiB ahead keeps DRAM latency
        // off the kernels that are light on arithmetic (HQ4_64 1.3x faster on Emerald Rapids).
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) _mm_prefetch((const char*)(x[r] + i) + 1024, _MM_HINT_T0);
      }
      codes(x, i, q);
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) {
        const S sr = S::load(x[r][i], tab);
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) sr.unit(u, d[r][u], z[r][u]);
      }
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) {
#pragma GCC unroll 2
        for (int u = 0; u < U; u++) {
          __m512 bs[R], bz;
#pragma GCC unroll 2
          for (int kk = 0; kk < KU; kk++) {
            const int k = u * KU + kk;
            const BlockQ8_0* yk = y[c] + (i * M + k) * 2;
            const __m512i ak = join256(loadu256(yk[0].qs), loadu256(yk[1].qs));
            const __m512 dx = h2f_x8x8(yk[0].d, yk[1].d);
            const __m512 sa = _mm512_cvtepi32_ps(dpbusd(_mm512_setzero_si512(), ones, ak));
            bz = kk == 0 ? _mm512_mul_ps(dx, sa) : _mm512_fmadd_ps(dx, sa, bz);
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) {
              const __m512 s = _mm512_cvtepi32_ps(dpbusd(_mm512_setzero_si512(), q[r][k], ak));
              bs[r] = kk == 0 ? _mm512_mul_ps(dx, s) : _mm512_fmadd_ps(dx, s, bs[r]);
            }
          }
#pragma GCC unroll 16
          for (int r = 0; r < R; r++)
            acc[r][c] = _mm512_fmadd_ps(d[r][u], _mm512_fnmadd_ps(z[r][u], bz, bs[r]), acc[r][c]);
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]);
  }

  template <int R>
  struct Unpacked {
    STEPQ_ALWAYS_INLINE void operator()(const W* const (&x)[R], int64_t i, __m512i (&q)[R][M]) const {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int k = 0; k < M; k++) q[r][k] = Fmt::codes(x[r][i], k);
    }
  };
  template <int R>
  struct FromPacked {  // p[i·R + r]: block i of row r
    const Packed* p;
    STEPQ_ALWAYS_INLINE void operator()(const W* const (&)[R], int64_t i, __m512i (&q)[R][M]) const {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int k = 0; k < M; k++) q[r][k] = p[i * R + r].q[k];
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
// S3_32, two blocks per vector. Per (row, token) pair and block pair:
//   acc = fma([d0 ×8 | d1 ×8]·[dx0 ×8 | dx1 ×8], cvt(dpbusd(−4·Σa, q, a)), acc)
// and an odd last block the same with the upper halves zero.

// Codes of blocks x0, x1 as [x0's 32 | x1's 32]: 64-bit lane k of each half is ql >> 2k.
inline __m512i s3_codes2(const BlockS3_32& x0, const BlockS3_32& x1) {
  long long l0, l1;
  uint32_t h0, h1;
  std::memcpy(&l0, x0.ql, 8);
  std::memcpy(&l1, x1.ql, 8);
  std::memcpy(&h0, x0.qh, 4);
  std::memcpy(&h1, x1.qh, 4);
  const __m512i v = join256(_mm256_set1_epi64x(l0), _mm256_set1_epi64x(l1));
  const __m512i lo = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_set_epi64(6, 4, 2, 0, 6, 4, 2, 0)), _mm512_set1_epi8(3));
  return _mm512_mask_add_epi8(lo, (__mmask64)h0 | ((__mmask64)h1 << 32), lo, _mm512_set1_epi8(4));
}

struct S3Tile {
  struct Packed {  // blocks 2u, 2u+1 of one row
    __m512i q;
    __m512 d;  // [d0 ×8 | d1 ×8]
  };
  static constexpr int kUnit = 2 * kQK;

  STEPQ_ALWAYS_INLINE static void pack(const uint8_t* row, int64_t u, Packed& p) {
    const BlockS3_32* x = (const BlockS3_32*)row + 2 * u;
    p.q = s3_codes2(x[0], x[1]);
    p.d = h2f_x8x8(x[0].d, x[1].d);
  }

  // acc[r][c] += the pair's terms for blocks j and j + 1 (or j alone when `single`).
  template <int R, int C>
  STEPQ_ALWAYS_INLINE static void step(const __m512i (&q)[R], const __m512 (&dw)[R], const BlockQ8_0* const (&y)[C],
                                       int64_t j, bool single, __m512 (&acc)[R][C]) {
#pragma GCC unroll 16
    for (int c = 0; c < C; c++) {
      const BlockQ8_0* yj = y[c] + j;
      const __m512i aj = single ? _mm512_zextsi256_si512(loadu256(yj[0].qs)) : join256(loadu256(yj[0].qs), loadu256(yj[1].qs));
      const __m512 dx = h2f_x8x8(yj[0].d, single ? 0 : yj[1].d);
      const __m512i base = _mm512_sub_epi32(_mm512_setzero_si512(), dpbusd(_mm512_setzero_si512(), _mm512_set1_epi8(4), aj));
#pragma GCC unroll 16
      for (int r = 0; r < R; r++)
        acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(dw[r], dx), _mm512_cvtepi32_ps(dpbusd(base, q[r], aj)), acc[r][c]);
    }
  }

  // `pair(x, j, q, dw)` supplies the codes and scales of blocks j, j + 1 of every row.
  template <int R, int C, class Pair>
  STEPQ_ALWAYS_INLINE static void dot(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* out,
                                      int64_t os, Pair pair) {
    const int64_t nb = n / kQK;
    const BlockS3_32* x[R];
    const BlockQ8_0* y[C];
    for (int r = 0; r < R; r++) x[r] = (const BlockS3_32*)(w + r * ws);
    for (int c = 0; c < C; c++) y[c] = (const BlockQ8_0*)(a + c * as);
    __m512 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 2 <= nb; j += 2) {
      __m512i q[R];
      __m512 dw[R];
      pair(x, j, q, dw);
      step<R, C>(q, dw, y, j, false, acc);
    }
    if (j < nb) {
      __m512i q[R];
      __m512 dw[R];
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) q[r] = s3_codes2(x[r][j], x[r][j]), dw[r] = h2f_x8x8(x[r][j].d, 0);
      step<R, C>(q, dw, y, j, true, acc);
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; r++)
#pragma GCC unroll 16
      for (int c = 0; c < C; c++) out[c * os + r] = _mm512_reduce_add_ps(acc[r][c]);
  }

  template <int R>
  struct Unpacked {
    STEPQ_ALWAYS_INLINE void operator()(const BlockS3_32* const (&x)[R], int64_t j, __m512i (&q)[R],
                                        __m512 (&dw)[R]) const {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) q[r] = s3_codes2(x[r][j], x[r][j + 1]), dw[r] = h2f_x8x8(x[r][j].d, x[r][j + 1].d);
    }
  };
  template <int R>
  struct FromPacked {  // p[u·R + r]: block pair u of row r
    const Packed* p;
    STEPQ_ALWAYS_INLINE void operator()(const BlockS3_32* const (&)[R], int64_t j, __m512i (&q)[R],
                                        __m512 (&dw)[R]) const {
#pragma GCC unroll 16
      for (int r = 0; r < R; r++) q[r] = p[(j / 2) * R + r].q, dw[r] = p[(j / 2) * R + r].d;
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

}  // namespace

void register_hq_kernels_avx512(DotTable& t) {
  auto tiled = [&](QType q, VecDotFn f, VecDotTileFn g) {
    t.vec_dot[(uint32_t)q] = f;
    t.vec_dot_tile[(uint32_t)q] = g;
  };
  // Matrix-vector with two rows per call for HQ3_32 and HQ4_64: the activation side (its Σa and
  // scale vectors per chunk) is then built once per two rows. Minimum of 12 runs, 1536 × 8960,
  // 2 threads: HQ3_32 545 → 478 µs, HQ4_64 517 → 491 µs; Q4_K, Q5_0, Q6_K and Q8_0 did not gain
  // (quant_dot_avx512.cpp), and four rows per call was slower than two.
  tiled(QType::HQ2_64, gemm_dot<HQTile<HQ2_64Fmt>>, gemm_tile<HQTile<HQ2_64Fmt>, 4, 4, 1>);
  tiled(QType::HQ3_64, gemm_dot<HQTile<HQ3_64Fmt>>, gemm_tile<HQTile<HQ3_64Fmt>, 4, 4, 1>);
  tiled(QType::HQ3_128, gemm_dot<HQTile<HQ3_128Fmt>>, gemm_tile<HQTile<HQ3_128Fmt>, 4, 4, 1>);
  tiled(QType::HQ4_64, gemm_dot<HQTile<HQ4_64Fmt>>, gemm_tile<HQTile<HQ4_64Fmt>, 4, 4, 2>);
  tiled(QType::S3_32, gemm_dot<S3Tile>, gemm_tile<S3Tile, 4, 4, 1>);
  tiled(QType::HQ3_32, gemm_dot<HQTile<HQ3_32Fmt>>, gemm_tile<HQTile<HQ3_32Fmt>, 4, 4, 2>);
  tiled(QType::S3_16, gemm_dot<HQTile<S3_16Fmt>>, gemm_tile<HQTile<S3_16Fmt>, 4, 4, 2>);
}

}  // namespace stepq
