// Tile kernels (VecDotTileFn, quant_dispatch.h) and matmul's batch invariance.
//
// - For every weight format and every ISA table this CPU has: each output of the table's tile
//   product is bit-identical to the same table's vec_dot on that (row, token) pair, on tiles
//   of 1..9 rows × 1..13 tokens (every remainder of the register tiles), at unaligned row
//   addresses, with an output stride wider than the tile; and close to the scalar reference.
// - matmul: a token's output row is bit-identical whether the token is alone or anywhere in a
//   batch of 1..13, with 1 and 3 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_dispatch.h"
#include "kernels/cpu/quant_types.h"
#include "quant_test_util.h"

namespace stepq {
namespace {

const QType kTypes[] = {QType::F32,    QType::F16,    QType::BF16,    QType::Q4_0,   QType::Q4_1,
                        QType::Q5_0,   QType::Q5_1,   QType::Q8_0,    QType::IQ4_NL, QType::Q2_K,
                        QType::Q3_K,   QType::Q4_K,   QType::Q5_K,    QType::Q6_K,   QType::HQ2_64,
                        QType::HQ3_64, QType::HQ3_128, QType::HQ4_64, QType::S3_32,  QType::HQ3_32,
                        QType::S3_16};

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512})
    if ((int)isa <= (int)detected_isa()) v.push_back(isa);
  return v;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Rows of `in` elements: 1 block, a few blocks, and a longer row. The 32-element formats'
// kernels work in groups of 8 blocks, then pairs, then an odd block: 9 = a group and an odd
// block, 47 = 5 groups, 3 pairs and an odd block.
std::vector<int64_t> widths(QType t) {
  const int bs = qtype_info(t).block_size;
  if (bs == 1) return {17, 64, 896};
  if (bs == 32) return {32, 9 * 32, 47 * 32};
  if (bs == 64 || bs == 128) return {bs, 3 * bs, 25 * bs};
  return {256, 768, 1536};
}

// A matrix of weight rows stored only as aligned as rows inside a GGUF tensor can be (2 bytes;
// 4 for F32), and quantized activation rows likewise (4 bytes for the F32 and Q8_K rows, whose
// fields are floats), with strides that keep every row at that alignment only.
struct Operands {
  size_t w_stride = 0, a_stride = 0, w_off = 0, a_off = 0;
  std::vector<uint8_t> wbuf, abuf;
  const uint8_t* w() const { return wbuf.data() + w_off; }
  const uint8_t* a() const { return abuf.data() + a_off; }
};

Operands make_operands(QType t, int64_t in, int rows, int tokens, std::mt19937& rng) {
  Operands o;
  const QType vdt = qtype_info(t).vec_dot_type;
  o.w_off = t == QType::F32 ? 4 : 2;
  o.a_off = vdt == QType::F32 || vdt == QType::Q8_K ? 4 : 2;
  o.w_stride = row_bytes(t, in) + o.w_off;
  o.a_stride = row_bytes(vdt, in) + o.a_off;
  o.wbuf.assign(o.w_off + o.w_stride * rows, 0);
  o.abuf.assign(o.a_off + o.a_stride * tokens, 0);
  for (int r = 0; r < rows; r++) {
    const auto row = test::random_weight_row(t, in, rng);
    std::memcpy(o.wbuf.data() + o.w_off + r * o.w_stride, row.data(), row.size());
  }
  for (int k = 0; k < tokens; k++) {
    const auto x = test::random_activations(in, rng);
    quantize_row(vdt, x.data(), o.abuf.data() + o.a_off + k * o.a_stride, in);
  }
  return o;
}

TEST(GemmTile, EveryOutputBitEqualsVecDotOfItsTable) {
  constexpr int kRows = 9, kTokens = 13;
  std::mt19937 rng(2024);
  for (QType t : kTypes) {
    for (int64_t in : widths(t)) {
      const Operands o = make_operands(t, in, kRows, kTokens, rng);
      for (Isa isa : isas()) {
        const DotTable& table = dot_table(isa);
        const VecDotFn dot = table.vec_dot[(uint32_t)t];
        ASSERT_NE(dot, nullptr);
        float want[kTokens][kRows];
        for (int k = 0; k < kTokens; k++)
          for (int r = 0; r < kRows; r++) want[k][r] = dot(in, o.w() + r * o.w_stride, o.a() + k * o.a_stride);
        for (int rows = 1; rows <= kRows; rows++) {
          for (int cols = 1; cols <= kTokens; cols++) {
            // The tile at the far corner, so that both offsets are exercised too.
            const int r0 = kRows - rows, c0 = kTokens - cols;
            const int64_t os = rows + 3;
            std::vector<float> got((size_t)os * cols, NAN);
            dot_tile(table, t, in, o.w() + r0 * o.w_stride, o.w_stride, rows, o.a() + c0 * o.a_stride, o.a_stride,
                     cols, got.data(), os);
            for (int k = 0; k < cols; k++) {
              for (int r = 0; r < rows; r++)
                ASSERT_EQ(bits(got[k * os + r]), bits(want[c0 + k][r0 + r]))
                    << isa_name(isa) << " " << qtype_name((uint32_t)t) << " in=" << in << " tile " << rows << "x"
                    << cols << " row " << r0 + r << " token " << c0 + k;
              for (int r = rows; r < os; r++) ASSERT_TRUE(std::isnan(got[k * os + r])) << "wrote outside the tile";
            }
          }
        }
      }
    }
  }
}

TEST(GemmTile, CloseToScalarReference) {
  constexpr int kRows = 5, kTokens = 7;
  std::mt19937 rng(77);
  for (QType t : kTypes) {
    const QType vdt = qtype_info(t).vec_dot_type;
    for (int64_t in : widths(t)) {
      const Operands o = make_operands(t, in, kRows, kTokens, rng);
      std::vector<float> wf(in), af(in);
      double mag[kTokens][kRows];
      float ref[kTokens][kRows];
      for (int k = 0; k < kTokens; k++) {
        dequantize_row(vdt, o.a() + k * o.a_stride, af.data(), in);
        for (int r = 0; r < kRows; r++) {
          dequantize_row(t, o.w() + r * o.w_stride, wf.data(), in);
          mag[k][r] = 0;
          for (int64_t i = 0; i < in; i++) mag[k][r] += std::fabs((double)wf[i] * af[i]);
          // Q4_1/Q5_1's min term m·s is not in the dequantized product; bound it generously.
          if (vdt == QType::Q8_1) mag[k][r] *= 2;
          ref[k][r] = vec_dot_ref(t, in, o.w() + r * o.w_stride, o.a() + k * o.a_stride);
        }
      }
      for (Isa isa : isas()) {
        float got[kTokens][kRows];
        dot_tile(dot_table(isa), t, in, o.w(), o.w_stride, kRows, o.a(), o.a_stride, kTokens, &got[0][0], kRows);
        for (int k = 0; k < kTokens; k++)
          for (int r = 0; r < kRows; r++)
            EXPECT_NEAR(got[k][r], ref[k][r], 1e-5 * mag[k][r] + 1e-30)
                << isa_name(isa) << " " << qtype_name((uint32_t)t) << " in=" << in << " row " << r << " token " << k;
      }
    }
  }
}

TEST(GemmTile, PublicEntryUsesActiveTable) {
  std::mt19937 rng(5);
  for (QType t : {QType::Q4_K, QType::Q6_K, QType::Q5_0, QType::Q8_0, QType::Q4_1, QType::F16, QType::HQ3_64,
                  QType::S3_32, QType::HQ3_32, QType::S3_16}) {
    const int64_t in = widths(t)[1];
    const Operands o = make_operands(t, in, 3, 5, rng);
    float got[5][3], want[5][3];
    vec_dot_tile(t, in, o.w(), o.w_stride, 3, o.a(), o.a_stride, 5, &got[0][0], 3);
    for (int k = 0; k < 5; k++)
      for (int r = 0; r < 3; r++) {
        want[k][r] = vec_dot(t, in, o.w() + r * o.w_stride, o.a() + k * o.a_stride);
        EXPECT_EQ(bits(got[k][r]), bits(want[k][r])) << qtype_name((uint32_t)t);
      }
  }
}

// A token's logits must not depend on what else is in the batch: decode (1 token) must equal
// the same token inside a k-token verification batch, at any position.
TEST(GemmMatmul, TokenRowBitIdenticalAloneOrInAnyBatch) {
  constexpr int kTokens = 13;
  std::mt19937 rng(31);
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    MatmulScratch scratch;
    for (QType t : kTypes) {
      const QTypeInfo& qi = qtype_info(t);
      const int64_t in = qi.block_size == 1 ? 80 : qi.block_size == 32 ? 96 : 512, out = 37;
      std::vector<uint8_t> w;
      for (int64_t r = 0; r < out; r++) {
        const auto row = test::random_weight_row(t, in, rng);
        w.insert(w.end(), row.begin(), row.end());
      }
      std::vector<float> bias(out);
      for (auto& b : bias) b = std::uniform_real_distribution<float>(-1, 1)(rng);
      std::vector<float> x;
      for (int k = 0; k < kTokens; k++) {
        const auto v = test::random_activations(in, rng);
        x.insert(x.end(), v.begin(), v.end());
      }
      const Linear L{t, in, out, w.data(), row_bytes(t, in), bias.data()};
      std::vector<float> alone((size_t)kTokens * out);
      for (int k = 0; k < kTokens; k++) matmul(L, &x[k * in], 1, in, &alone[k * out], out, pool, scratch);
      // Every batch size and position with one thread; with three (more threads than this
      // machine may have cores, so each call is slow) the edges of a few sizes.
      for (int size = 1; size <= kTokens; size++) {
        if (threads > 1 && size != 1 && size != 4 && size != 5 && size != kTokens) continue;
        for (int first = 0; first + size <= kTokens; first++) {
          if (threads > 1 && first != 0 && first + size != kTokens) continue;
          std::vector<float> y((size_t)size * out);
          matmul(L, &x[first * in], size, in, y.data(), out, pool, scratch);
          ASSERT_EQ(std::memcmp(y.data(), &alone[first * out], y.size() * 4), 0)
              << qi.name << " batch of " << size << " from token " << first << ", threads=" << threads;
        }
      }
    }
  }
}

// Many tokens: more than one token block and row tasks smaller than the rows, through the
// public matmul, still equal to vec_dot token by token.
TEST(GemmMatmul, LargeBatchEqualsVecDot) {
  std::mt19937 rng(8);
  ThreadPool pool(2);
  MatmulScratch scratch;
  for (QType t : {QType::Q4_K, QType::Q6_K, QType::Q5_0, QType::Q8_0, QType::HQ3_64, QType::HQ3_128, QType::S3_32,
                  QType::HQ3_32, QType::S3_16}) {
    const int64_t in = 1536, out = 45, n = 150;
    std::vector<uint8_t> w;
    for (int64_t r = 0; r < out; r++) {
      const auto row = test::random_weight_row(t, in, rng);
      w.insert(w.end(), row.begin(), row.end());
    }
    std::vector<float> x;
    for (int64_t k = 0; k < n; k++) {
      const auto v = test::random_activations(in, rng);
      x.insert(x.end(), v.begin(), v.end());
    }
    const Linear L{t, in, out, w.data(), row_bytes(t, in), nullptr};
    std::vector<float> y((size_t)n * out);
    matmul(L, x.data(), n, in, y.data(), out, pool, scratch);
    const QType vdt = qtype_info(t).vec_dot_type;
    std::vector<uint8_t> aq(row_bytes(vdt, in));
    for (int64_t k = 0; k < n; k++) {
      quantize_row(vdt, &x[k * in], aq.data(), in);
      for (int64_t r = 0; r < out; r++)
        ASSERT_EQ(bits(y[k * out + r]), bits(vec_dot(t, in, &w[r * L.row_stride], aq.data())))
            << qtype_name((uint32_t)t) << " token " << k << " row " << r;
    }
  }
}

}  // namespace
// Q, K and V in one dispatch (mixed formats, so more than one activation conversion) and
// gate/up with the activation applied per task: bit-identical to the separate calls, for decode
// and prefill shapes and with more threads than rows.
TEST(GemmMatmul, FusedMultiAndGluEqualSeparateCalls) {
  std::mt19937 rng(17);
  auto make = [&](QType t, int64_t in, int64_t out, std::vector<uint8_t>& w, std::vector<float>* bias) {
    w.clear();
    for (int64_t r = 0; r < out; r++) {
      const auto row = test::random_weight_row(t, in, rng);
      w.insert(w.end(), row.begin(), row.end());
    }
    if (bias) {
      bias->resize(out);
      for (auto& b : *bias) b = std::uniform_real_distribution<float>(-1, 1)(rng);
    }
    return Linear{t, in, out, w.data(), row_bytes(t, in), bias ? bias->data() : nullptr};
  };
  const int64_t in = 512;
  std::vector<uint8_t> wq, wk, wv, wg, wu;
  std::vector<float> bq, bk;
  const Linear Lq = make(QType::Q4_K, in, 70, wq, &bq), Lk = make(QType::Q5_0, in, 13, wk, &bk),
               Lv = make(QType::Q6_K, in, 13, wv, nullptr);
  const Linear Lg = make(QType::Q4_K, in, 91, wg, nullptr), Lu = make(QType::Q8_0, in, 91, wu, nullptr);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    MatmulScratch scratch;
    for (int64_t n : {1, 3, 9, 130}) {
      std::vector<float> x;
      for (int64_t k = 0; k < n; k++) {
        const auto v = test::random_activations(in, rng);
        x.insert(x.end(), v.begin(), v.end());
      }
      // Separate calls.
      std::vector<float> q(n * 70), k(n * 13), v(n * 13), g(n * 91), u(n * 91);
      matmul(Lq, x.data(), n, in, q.data(), 70, pool, scratch);
      matmul(Lk, x.data(), n, in, k.data(), 13, pool, scratch);
      matmul(Lv, x.data(), n, in, v.data(), 13, pool, scratch);
      matmul(Lg, x.data(), n, in, g.data(), 91, pool, scratch);
      matmul(Lu, x.data(), n, in, u.data(), 91, pool, scratch);
      std::vector<float> silu(g.size()), gelu(g.size());
      for (int64_t t = 0; t < n; t++) {
        swiglu(&g[t * 91], &u[t * 91], &silu[t * 91], 91);
        geglu(&g[t * 91], &u[t * 91], &gelu[t * 91], 91);
      }
      // Fused.
      std::vector<float> q2(q.size()), k2(k.size()), v2(v.size()), g2(g.size()), u2(u.size());
      const MatmulTarget qkv[3] = {{&Lq, q2.data(), 70}, {&Lk, k2.data(), 13}, {&Lv, v2.data(), 13}};
      matmul_multi(qkv, x.data(), n, in, pool, scratch);
      const auto what = "n=" + std::to_string(n) + " threads=" + std::to_string(threads);
      ASSERT_EQ(std::memcmp(q.data(), q2.data(), q.size() * 4), 0) << what;
      ASSERT_EQ(std::memcmp(k.data(), k2.data(), k.size() * 4), 0) << what;
      ASSERT_EQ(std::memcmp(v.data(), v2.data(), v.size() * 4), 0) << what;
      matmul_glu(Lg, Lu, Glu::SiLU, x.data(), n, in, g2.data(), u2.data(), 91, pool, scratch);
      ASSERT_EQ(std::memcmp(silu.data(), g2.data(), g2.size() * 4), 0) << "silu " << what;
      matmul_glu(Lg, Lu, Glu::GeLU, x.data(), n, in, g2.data(), u2.data(), 91, pool, scratch);
      ASSERT_EQ(std::memcmp(gelu.data(), g2.data(), g2.size() * 4), 0) << "gelu " << what;
    }
  }
  // Weights of different widths or output counts are refused, not misread.
  ThreadPool pool(1);
  MatmulScratch scratch;
  std::vector<uint8_t> w2;
  const Linear other = make(QType::Q8_0, 256, 13, w2, nullptr);
  std::vector<float> x(in), y(200);
  const MatmulTarget bad[2] = {{&Lq, y.data(), 70}, {&other, y.data(), 13}};
  EXPECT_THROW(matmul_multi(bad, x.data(), 1, in, pool, scratch), Error);
  EXPECT_THROW(matmul_glu(Lg, Lk, Glu::SiLU, x.data(), 1, in, y.data(), y.data(), 91, pool, scratch), Error);
}

// Experts over their own rows of one buffer, in one dispatch: each group's rows equal matmul()
// on those rows alone, whatever the other groups hold (some empty, some with one row, some many).
TEST(GemmMatmul, GroupedEqualPerGroupCalls) {
  std::mt19937 rng(23);
  const int64_t in = 512, F = 75, X = 5;
  for (QType t : {QType::Q4_K, QType::Q8_0, QType::F16, QType::F32}) {
    std::vector<std::vector<uint8_t>> wg(X), wu(X), wd(X);
    std::vector<Linear> G(X), U(X), D(X);
    auto fill = [&](std::vector<uint8_t>& w, int64_t i, int64_t o) {
      for (int64_t r = 0; r < o; r++) {
        const auto row = test::random_weight_row(t, i, rng);
        w.insert(w.end(), row.begin(), row.end());
      }
      return Linear{t, i, o, w.data(), row_bytes(t, i), nullptr};
    };
    for (int e = 0; e < X; e++) {
      G[e] = fill(wg[e], in, F);
      U[e] = fill(wu[e], in, F);
      D[e] = fill(wd[e], F, 64);  // F = 75 is not a multiple of a quant block: only for F16/F32
    }
    const bool down_ok = t == QType::F16 || t == QType::F32;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      MatmulScratch scratch;
      const int64_t sizes[X] = {3, 0, 1, 17, 9};
      int64_t rows = 0;
      std::vector<MatmulGroup> groups(X);
      for (int e = 0; e < X; e++) {
        groups[e] = {&G[e], &U[e], rows, sizes[e]};
        rows += sizes[e];
      }
      std::vector<float> x;
      for (int64_t r = 0; r < rows; r++) {
        const auto v = test::random_activations(in, rng);
        x.insert(x.end(), v.begin(), v.end());
      }
      std::vector<float> g(rows * F), u(rows * F), ref_g(rows * F), ref_u(rows * F);
      matmul_glu_grouped(groups, Glu::SiLU, x.data(), in, g.data(), u.data(), F, pool, scratch);
      for (int e = 0; e < X; e++) {
        if (!sizes[e]) continue;
        const int64_t r0 = groups[e].row0;
        matmul_glu(G[e], U[e], Glu::SiLU, &x[r0 * in], sizes[e], in, &ref_g[r0 * F], &ref_u[r0 * F], F, pool, scratch);
      }
      const auto what = std::string(qtype_name((uint32_t)t)) + " threads=" + std::to_string(threads);
      ASSERT_EQ(std::memcmp(g.data(), ref_g.data(), g.size() * 4), 0) << what;
      if (!down_ok) continue;
      for (int e = 0; e < X; e++) groups[e] = {&D[e], nullptr, groups[e].row0, sizes[e]};
      std::vector<float> y(rows * 64), ref_y(rows * 64);
      matmul_grouped(groups, g.data(), F, y.data(), 64, pool, scratch);
      for (int e = 0; e < X; e++)
        if (sizes[e]) matmul(D[e], &g[groups[e].row0 * F], sizes[e], F, &ref_y[groups[e].row0 * 64], 64, pool, scratch);
      ASSERT_EQ(std::memcmp(y.data(), ref_y.data(), y.size() * 4), 0) << "down " << what;
    }
  }
}

}  // namespace stepq
