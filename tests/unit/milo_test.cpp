// HQQ / RTN quantization, the randomized SVD, MiLo's alternation, rank policies and the
// compensated matmul. The numpy port of the reference HQQ is checked against `stepq quantize` in
// tests/py/test_quantize.py; these tests check the properties the algorithms must have.
#include <gtest/gtest.h>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/cpu/matmul.h"
#include "quant/lapack.h"
#include "quant/milo.h"
#include "quant/plan.h"
#include "test_models.h"

namespace stepq {
namespace {

std::vector<float> heavy_tailed(int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> t(3.0f);
  std::vector<float> w((size_t)(rows * cols));
  for (float& v : w) v = 0.02f * t(rng);
  return w;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); i++) {
    num += (double)(a[i] - b[i]) * (a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return std::sqrt(num / den);
}

double mean_abs_err(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += std::fabs(a[i] - b[i]);
  return s / (double)a.size();
}

TEST(Hqq, CodesInRangeAndBeatsRtn) {
  ThreadPool pool(2);
  for (auto [bits, group] : {std::pair{3, 64}, {3, 128}, {2, 64}, {4, 64}, {3, 32}}) {
    const int64_t rows = 37, cols = 640;
    const std::vector<float> W = heavy_tailed(rows, cols, 7 + bits);
    HqqParams p;
    p.bits = bits;
    p.group = group;
    p.meta_bits = group == 32 ? 8 : 16;  // HQ3_32
    p.fit = HqqParams::Fit::Rtn;
    const GroupQuant rtn = hqq_quantize(W.data(), rows, cols, p, pool);
    p.fit = HqqParams::Fit::Hqq;
    const GroupQuant hqq = hqq_quantize(W.data(), rows, cols, p, pool);
    EXPECT_EQ(rtn.iterations, 0);
    EXPECT_GE(hqq.iterations, 1);
    EXPECT_LE(hqq.iterations, 20);
    for (uint8_t c : hqq.codes) ASSERT_LT(c, 1 << bits);
    std::vector<float> dr(W.size()), dh(W.size());
    hqq_dequantize(rtn, dr.data());
    hqq_dequantize(hqq, dh.data());
    // HQQ minimises an lp (p < 1) error; its mean absolute error is below RTN's.
    EXPECT_LT(mean_abs_err(dh, W), mean_abs_err(dr, W)) << bits << " bits, group " << group;
    // The packed rows decode (dequantize_row) to exactly what hqq_dequantize gives.
    const QType t = hq_type(bits, group);
    const std::vector<uint8_t> packed = hqq_pack(hqq);
    ASSERT_EQ(packed.size(), row_bytes(t, cols) * rows);
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; r++) {
      dequantize_row(t, packed.data() + r * row_bytes(t, cols), row.data(), cols);
      for (int64_t c = 0; c < cols; c++) ASSERT_EQ(row[c], dh[r * cols + c]) << r << "," << c;
    }
  }
}

// HQ3_32: the stored scales are D·2^(−c/32) with D the block's largest, rounded up to fp16;
// the zeros are c/16 − 4; with them the weight error is well below groups of 64 with fp16 ones.
TEST(Hqq, EightBitScalesAndZeros) {
  ThreadPool pool(2);
  const int64_t rows = 29, cols = 896;
  const std::vector<float> W = heavy_tailed(rows, cols, 17);
  HqqParams p;
  p.group = 32;
  p.meta_bits = 8;
  const GroupQuant q = hqq_quantize(W.data(), rows, cols, p, pool);
  ASSERT_EQ(q.D.size(), (size_t)(rows * cols / kMetaBlock));
  for (size_t g = 0; g < q.d.size(); g++) {
    const float D = fp16_to_fp32(q.D[g / 4]);
    ASSERT_EQ(q.d[g], D * hq3_32_scale(q.sc[g])) << g;
    ASSERT_EQ(q.z[g], q.zc[g] / 16.0f - 4.0f) << g;
  }
  for (size_t b = 0; b < q.D.size(); b++) {  // the block's largest scale has code 0 (or 1 after rounding D up)
    uint8_t lo = 255;
    for (int k = 0; k < 4; k++) lo = std::min(lo, q.sc[b * 4 + k]);
    EXPECT_LE(lo, 1) << b;
  }
  std::vector<float> d32(W.size()), d64(W.size());
  hqq_dequantize(q, d32.data());
  p.group = 64;
  p.meta_bits = 16;
  const GroupQuant q64 = hqq_quantize(W.data(), rows, cols, p, pool);
  hqq_dequantize(q64, d64.data());
  EXPECT_LT(mean_abs_err(d32, W), 0.9 * mean_abs_err(d64, W));
  p.group = 32;
  p.meta_bits = 8;
  EXPECT_THROW(hqq_quantize(W.data(), rows, 32 * 3, p, pool), Error);  // rows of 96: not whole blocks of 128
}

// S3_16 (HqqParams::symmetric): d_g = D·(sc − 16) with the super-block's largest scale at code 0
// (−16·D) or 1, z = 4, codes < 8; the weighted least-squares fit has a lower w²-weighted error than
// symmetric RTN; the packed rows decode to what hqq_dequantize gives; rows that are not whole
// super-blocks are refused.
TEST(Hqq, SymmetricGroupsOf16) {
  ThreadPool pool(2);
  const int64_t rows = 23, cols = 768;
  std::vector<float> W((size_t)(rows * cols));  // gaussian: w²-weighted errors of t(3) weights are a few outliers'
  std::mt19937_64 rng(29);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& v : W) v = normal(rng);
  HqqParams p = *hq_params(QType::S3_16);
  EXPECT_TRUE(p.symmetric);
  EXPECT_EQ(hq_type(3, 16), QType::S3_16);
  const GroupQuant q = hqq_quantize(W.data(), rows, cols, p, pool);
  ASSERT_TRUE(q.symmetric);
  ASSERT_EQ(q.D.size(), (size_t)(rows * cols / kSymBlock));
  ASSERT_EQ(q.sc.size(), (size_t)(rows * cols / 16));
  for (uint8_t c : q.codes) ASSERT_LT(c, 8);
  for (size_t g = 0; g < q.d.size(); g++) {
    ASSERT_LT(q.sc[g], 32) << g;
    ASSERT_EQ(q.d[g], fp16_to_fp32(q.D[g / 16]) * (float)((int)q.sc[g] - 16)) << g;
    ASSERT_EQ(q.z[g], 4.0f) << g;
  }
  // The largest scale of a block gets code 0 (−16), or 1 where the search for the code with the
  // lower weighted error moved it.
  for (size_t b = 0; b < q.D.size(); b++) {
    int lo = 31;
    for (int k = 0; k < 16; k++) lo = std::min(lo, (int)q.sc[b * 16 + k]);
    EXPECT_LE(lo, 1) << b;
  }
  p.fit = HqqParams::Fit::Rtn;
  const GroupQuant r = hqq_quantize(W.data(), rows, cols, p, pool);
  std::vector<float> dq(W.size()), dr(W.size());
  hqq_dequantize(q, dq.data());
  hqq_dequantize(r, dr.data());
  double eq = 0, er = 0;
  for (size_t i = 0; i < W.size(); i++) {
    const double w2 = (double)W[i] * W[i];
    eq += w2 * (dq[i] - W[i]) * (dq[i] - W[i]);
    er += w2 * (dr[i] - W[i]) * (dr[i] - W[i]);
  }
  EXPECT_LT(eq, 0.95 * er);
  const std::vector<uint8_t> packed = hqq_pack(q);
  ASSERT_EQ(packed.size(), row_bytes(QType::S3_16, cols) * rows);
  std::vector<float> row(cols);
  for (int64_t i = 0; i < rows; i++) {
    dequantize_row(QType::S3_16, packed.data() + i * row_bytes(QType::S3_16, cols), row.data(), cols);
    for (int64_t c = 0; c < cols; c++) ASSERT_EQ(row[c], dq[i * cols + c]) << i << "," << c;
  }
  // An all-zero matrix: D = 0, every weight exactly 0.
  const std::vector<float> Z(256 * 2, 0.0f);
  const GroupQuant z = hqq_quantize(Z.data(), 2, 256, *hq_params(QType::S3_16), pool);
  std::vector<float> dz(Z.size(), 1.0f);
  hqq_dequantize(z, dz.data());
  for (float v : dz) ASSERT_EQ(v, 0.0f);
  EXPECT_THROW(hqq_quantize(W.data(), rows * 6, 128, *hq_params(QType::S3_16), pool), Error);
}

// Fit::Mse chooses each group's range by its squared error: on random and real weights, in both
// scale/zero precisions, its Frobenius error is below RTN's (a candidate it always tries) and
// HQQ's, its codes are in range, and the stored scales and zeros follow the format.
TEST(Hqq, LeastSquaresFitBeatsRtnAndHqq) {
  ThreadPool pool(2);
  auto f = GgufFile::open(test::model_path("smollm2.f32"));
  struct Case {
    const char* name;
    std::vector<float> W;
    int64_t rows, cols;
  };
  std::vector<Case> cases;
  cases.push_back({"student-t", heavy_tailed(33, 640, 5), 33, 640});
  for (const char* name : {"blk.3.attn_k.weight", "blk.20.ffn_down.weight"}) {
    const GgufTensorInfo* t = f->tensor(name);
    ASSERT_NE(t, nullptr) << name;
    const int64_t rows = std::min<int64_t>(t->ne[1], 96);
    cases.push_back({name, std::vector<float>((const float*)t->data, (const float*)t->data + rows * t->ne[0]), rows,
                     t->ne[0]});
  }
  for (const Case& c : cases) {
    for (auto [group, meta] : {std::pair{32, 8}, {64, 16}}) {
      if (meta == 8 && c.cols % kMetaBlock != 0) continue;
      HqqParams p;
      p.group = group;
      p.meta_bits = meta;
      std::vector<double> err;
      for (auto fit : {HqqParams::Fit::Rtn, HqqParams::Fit::Hqq, HqqParams::Fit::Mse}) {
        p.fit = fit;
        const GroupQuant q = hqq_quantize(c.W.data(), c.rows, c.cols, p, pool);
        for (uint8_t code : q.codes) ASSERT_LT(code, 8);
        if (meta == 8)
          for (size_t g = 0; g < q.d.size(); g++) {
            ASSERT_EQ(q.d[g], fp16_to_fp32(q.D[g / 4]) * hq3_32_scale(q.sc[g])) << g;
            ASSERT_EQ(q.z[g], q.zc[g] / 16.0f - 4.0f) << g;
          }
        std::vector<float> d(c.W.size());
        hqq_dequantize(q, d.data());
        err.push_back(rel_err(d, c.W));
      }
      EXPECT_LT(err[2], 0.97 * err[0]) << c.name << " group " << group;
      EXPECT_LT(err[2], err[1]) << c.name << " group " << group;
      std::printf("%s, groups of %d: relative error RTN %.4f, HQQ %.4f, least squares %.4f\n", c.name, group, err[0],
                  err[1], err[2]);
    }
  }
}

TEST(Hqq, ConstantAndZeroGroups) {
  ThreadPool pool(1);
  std::vector<float> W(2 * 64, 0.0f);
  for (int i = 64; i < 128; i++) W[i] = 0.25f;  // a constant group: scale clamps at 2e4
  for (auto fit : {HqqParams::Fit::Hqq, HqqParams::Fit::Mse}) {
    HqqParams p;
    p.fit = fit;
    const GroupQuant q = hqq_quantize(W.data(), 2, 64, p, pool);
    std::vector<float> d(W.size());
    hqq_dequantize(q, d.data());
    for (size_t i = 0; i < W.size(); i++) EXPECT_NEAR(d[i], W[i], 1e-3) << i;
  }
}

TEST(Hqq, RejectsBadShapes) {
  ThreadPool pool(1);
  std::vector<float> W(100);
  HqqParams p;
  EXPECT_THROW(hqq_quantize(W.data(), 1, 100, p, pool), Error);
  EXPECT_THROW(hq_type(4, 16), Error);
  EXPECT_EQ(hq_type(3, 16), QType::S3_16);
  EXPECT_EQ(hq_type(3, 32), QType::HQ3_32);
  EXPECT_THROW(hq_type(5, 64), Error);
}

// The best rank-k approximation error from LAPACK's full SVD: sqrt(Σ_{i>k} σ_i²).
double optimal_error(std::vector<float> A, int64_t rows, int64_t cols, int k) {
  // Singular values only; row-major A is column-major Aᵀ, which has the same ones.
  std::vector<float> S((size_t)std::min(rows, cols));
  const int M = (int)cols, N = (int)rows, one = 1;
  int info = 0, lwork = -1;
  float q = 0, dummy = 0;
  std::vector<int> iwork(8 * S.size());
  sgesdd_("N", &M, &N, A.data(), &M, S.data(), &dummy, &one, &dummy, &one, &q, &lwork, iwork.data(), &info, 1);
  lwork = (int)q;
  std::vector<float> work((size_t)lwork);
  sgesdd_("N", &M, &N, A.data(), &M, S.data(), &dummy, &one, &dummy, &one, work.data(), &lwork, iwork.data(), &info, 1);
  EXPECT_EQ(info, 0);
  double e = 0;
  for (size_t i = k; i < S.size(); i++) e += (double)S[i] * S[i];
  return std::sqrt(e);
}

TEST(LowRank, RandomizedSvdNearOptimal) {
  // A decaying spectrum plus noise, on awkward shapes (wide, tall, rank above the sketch).
  for (auto [rows, cols, k] : {std::tuple{150, 97, 10}, {64, 300, 32}, {40, 40, 40}, {33, 129, 1}}) {
    std::mt19937_64 rng(rows * 1000 + cols);
    std::normal_distribution<float> g;
    const int true_rank = 20;
    std::vector<float> A((size_t)(rows * cols)), B((size_t)(rows * true_rank)), C((size_t)(true_rank * cols));
    for (int j = 0; j < true_rank; j++) {
      const float s = std::pow(0.7f, (float)j);
      for (int64_t r = 0; r < rows; r++) B[r * true_rank + j] = s * g(rng);
    }
    for (float& v : C) v = g(rng);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, true_rank, 1.0f, B.data(), true_rank, C.data(),
                cols, 0.0f, A.data(), cols);
    for (float& v : A) v += 0.01f * g(rng);
    const LowRank lr = truncated_svd(A.data(), rows, cols, k, SvdParams{});
    ASSERT_EQ(lr.rank, std::min<int>(k, std::min(rows, cols)));
    const double got = residual_norm(A.data(), lr), best = optimal_error(A, rows, cols, k);
    double norm = 0;
    for (float v : A) norm += (double)v * v;
    EXPECT_LE(got, best * 1.02 + 1e-4 * std::sqrt(norm)) << rows << "x" << cols << " rank " << k;
    // Warm-started from its own factors, the fit stays as good.
    const LowRank again = truncated_svd(A.data(), rows, cols, k, SvdParams{}, &lr);
    EXPECT_LE(residual_norm(A.data(), again), best * 1.02 + 1e-4 * std::sqrt(norm));
  }
}

// MiLo's claim at the level of one matrix: alternating quantization and refitting leaves less
// error than fitting the compensator once to the HQQ residual, and both less than HQQ alone.
void expect_iteration_helps(const std::vector<float>& W, int64_t rows, int64_t cols, int rank, const char* what) {
  ThreadPool pool(2);
  MiloParams p;
  p.rank = rank;
  p.iters = 6;
  p.min_gain = 0;
  const MiloResult r = milo_quantize(W.data(), rows, cols, p, pool);
  ASSERT_GE(r.errors.size(), 2u) << what;
  EXPECT_LT(r.errors[0], r.hqq_error) << what;
  EXPECT_LT(r.errors[r.best], r.errors[0]) << what;
  EXPECT_GT(r.best, 0) << what;
  // The reported error is what the factors and codes give.
  std::vector<float> D(W.size());
  hqq_dequantize(r.q, D.data());
  for (size_t i = 0; i < D.size(); i++) D[i] = W[i] - D[i];
  EXPECT_NEAR(residual_norm(D.data(), r.lr), r.errors[r.best], 1e-3 * r.errors[r.best]) << what;
  std::printf("%s: HQQ %.5f, one-shot %.5f, iterated %.5f (%zu fits, best %d)\n", what, r.hqq_error, r.errors[0],
              r.errors[r.best], r.errors.size(), r.best);
}

TEST(Milo, IteratedBeatsOneShotOnRandom) {
  const std::vector<float> W = heavy_tailed(256, 384, 3);
  expect_iteration_helps(W, 256, 384, 32, "student-t 256x384");
}

TEST(Milo, IteratedBeatsOneShotOnRealLayers) {
  auto f = GgufFile::open(test::model_path("smollm2.f32"));
  for (const char* name : {"blk.0.attn_q.weight", "blk.10.ffn_down.weight", "blk.29.attn_v.weight"}) {
    const GgufTensorInfo* t = f->tensor(name);
    ASSERT_NE(t, nullptr) << name;
    ASSERT_EQ(t->type, QType::F32);
    std::vector<float> W((const float*)t->data, (const float*)t->data + t->n_elements());
    expect_iteration_helps(W, t->ne[1], t->ne[0], 64, name);
  }
}

TEST(Milo, StoredFactorsRefitU) {
  // Quantized factors cost some accuracy; refitting U to the quantized V keeps most of the gain.
  ThreadPool pool(2);
  const std::vector<float> W = heavy_tailed(192, 256, 9);
  MiloParams p;
  p.rank = 32;
  p.iters = 3;
  for (QType t : {QType::F16, QType::Q4_0, QType::S3_32}) {
    p.lowrank_type = t;
    const MiloResult r = milo_quantize(W.data(), 192, 256, p, pool);
    ASSERT_EQ(r.packed.U.size(), row_bytes(t, 32) * 192) << qtype_name((uint32_t)t);
    ASSERT_EQ(r.packed.V.size(), row_bytes(t, 256) * 32);
    EXPECT_LT(r.stored_error, r.hqq_error) << qtype_name((uint32_t)t);
    EXPECT_GE(r.stored_error, r.errors[r.best] * 0.999) << qtype_name((uint32_t)t);
    // lr holds exactly the stored values
    std::vector<float> u(192 * 32);
    dequantize_rows(r.packed.U.data(), 192, 32, t, u.data());
    EXPECT_EQ(u, r.lr.U);
    std::printf("%s: HQQ %.4f, fp32 factors %.4f, stored %.4f\n", qtype_name((uint32_t)t), r.hqq_error,
                r.errors[r.best], r.stored_error);
  }
}

TEST(Milo, RankZeroIsHqq) {
  ThreadPool pool(1);
  const std::vector<float> W = heavy_tailed(8, 128, 5);
  MiloParams p;
  const MiloResult r = milo_quantize(W.data(), 8, 128, p, pool);
  const GroupQuant q = hqq_quantize(W.data(), 8, 128, p.hqq, pool);
  EXPECT_EQ(r.lr.rank, 0);
  EXPECT_EQ(r.q.codes, q.codes);
  EXPECT_EQ(r.q.z, q.z);
}

TEST(RankPlan, PoliciesAndBudget) {
  QuantItem dense{"blk.0.attn_q.weight", -1, 0, 2048, 2048, false};
  QuantItem expert{"blk.0.ffn_up_exps.weight", 3, 0, 1024, 2048, true};
  RankParams p;
  EXPECT_EQ(policy_rank(dense, p), 512);   // 1024 at width 4096, scaled to 2048
  EXPECT_EQ(policy_rank(expert, p), 0);    // 32 · 1024/4096 = 8 rounds to 0 at multiples of 32
  p.multiple = 8;
  EXPECT_EQ(policy_rank(expert, p), 8);
  // A dense FFN weight: ffn_rank (0 by default: the budget goes to attention), or the dense rank's share.
  QuantItem ffn{"blk.0.ffn_up.weight", -1, 0, 4096, 2048, false, true};
  EXPECT_EQ(policy_rank(ffn, p), 0);
  p.ffn_rank = 1024;
  EXPECT_EQ(policy_rank(ffn, p), 512);
  p.ffn_rank = 0;
  p.policy = RankPolicy::Uniform;
  EXPECT_EQ(policy_rank(expert, p), 256);
  p.policy = RankPolicy::Kurtosis;
  p.multiple = 1;
  dense.kurtosis = 0.5;
  EXPECT_EQ(policy_rank(dense, p), 0);
  dense.kurtosis = 10;
  EXPECT_EQ(policy_rank(dense, p), 512);
  dense.kurtosis = 4.4;  // 2^(4 + 2) = 64 at width 4096
  EXPECT_EQ(policy_rank(dense, p), 32);
  p.policy = RankPolicy::Frequency;
  expert.freq_share = 2.0;  // twice the mean share: twice the sparse rank
  EXPECT_EQ(policy_rank(expert, p), 16);
  EXPECT_EQ(dense.lowrank_name('u'), "blk.0.attn_q.milo_u");
  EXPECT_EQ(expert.lowrank_name('v'), "blk.0.ffn_up_exps.milo_v.3");

  // Budget: the ranks fill but never exceed it.
  std::vector<QuantItem> items = {dense, expert};
  p.policy = RankPolicy::DenseSparse;
  p.multiple = 32;
  EXPECT_EQ(assign_ranks(items, p, QType::S3_32, 0.05), 0.0);  // rank 32 alone would cost 0.11
  for (double budget : {0.25, 1.0}) {
    const double spent = assign_ranks(items, p, QType::S3_32, budget);
    EXPECT_LE(spent, budget);
    EXPECT_GT(spent, budget * 0.7) << budget;
    EXPECT_EQ(items[0].rank % 32, 0);
  }
  EXPECT_NEAR(kurtosis(std::vector<float>{1, -1, 1, -1}.data(), 4), -2.0, 1e-12);
  EXPECT_THROW(rank_policy_from_name("bogus"), Error);
}

TEST(RankPlan, ModelWidth) {
  // Grouped-query K (256 × 1536) beside Q (1536 × 1536): by their own widths K gets a sixth of
  // Q's rank; by the model's width the same rank, up to what is worth storing.
  QuantItem q{"blk.0.attn_q.weight", -1, 0, 1536, 1536, false};
  QuantItem k{"blk.0.attn_k.weight", -1, 0, 256, 1536, false};
  RankParams p;
  EXPECT_EQ(policy_rank(q, p), 384);
  EXPECT_EQ(policy_rank(k, p), 64);
  p.width = 1536;
  EXPECT_EQ(policy_rank(q, p), 384);
  EXPECT_EQ(policy_rank(k, p), 256);  // capped at min(rows, cols)
  // Budget (0.5 bits/weight: 1.38M bits; a rank-32 step costs 344k bits on Q, 201k on K): by
  // their own widths Q takes it all; by the model's, they share it in equal ranks.
  std::vector<QuantItem> items = {q, k};
  p.width = 0;
  assign_ranks(items, p, QType::S3_32, 0.5);
  EXPECT_EQ(items[0].rank, 128);
  EXPECT_EQ(items[1].rank, 0);
  p.width = 1536;
  assign_ranks(items, p, QType::S3_32, 0.5);
  EXPECT_GE(items[0].rank, 64);
  EXPECT_LE(std::abs(items[0].rank - items[1].rank), 32);
  // With room to spare K stops where its rank stops paying: r · (256 + 1536) < 256 · 1536, r ≤ 219.
  assign_ranks(items, p, QType::S3_32, 3.0);
  EXPECT_EQ(items[1].rank, 192);
  EXPECT_GT(items[0].rank, 192);
}

TEST(Milo, CompensatedMatmulMatchesReference) {
  // y = deq(W) x + U (V x) with U, V stored quantized, against a float reference on the
  // dequantized factors (the kernels quantize activations to Q8_0, hence the tolerance).
  ThreadPool pool(2);
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  for (QType ct : {QType::F16, QType::Q8_0, QType::Q4_0, QType::S3_32}) {
    const int64_t out = 70, in = 192, rank = 32, n = 5;
    const std::vector<float> W = heavy_tailed(out, in, 17);
    HqqParams hp;
    const GroupQuant q = hqq_quantize(W.data(), out, in, hp, pool);
    const std::vector<uint8_t> wq = hqq_pack(q);
    LowRank lr;
    lr.rows = out;
    lr.cols = in;
    lr.rank = rank;
    lr.U.resize(out * rank);
    lr.V.resize(rank * in);
    for (float& v : lr.U) v = 0.05f * g(rng);
    for (float& v : lr.V) v = 0.05f * g(rng);
    const std::vector<uint8_t> pu = quantize_rows(lr.U.data(), out, rank, ct), pv = quantize_rows(lr.V.data(), rank, in, ct);
    LowRankLinear L;
    L.U = {ct, rank, out, pu.data(), row_bytes(ct, rank)};
    L.V = {ct, in, rank, pv.data(), row_bytes(ct, in)};
    Linear lin{QType::HQ3_64, in, out, wq.data(), row_bytes(QType::HQ3_64, in)};
    lin.lowrank = &L;
    std::vector<float> x(n * in);
    for (float& v : x) v = g(rng);
    std::vector<float> y(n * out), ref(n * out, 0.0f);
    MatmulScratch scratch;
    matmul(lin, x.data(), n, in, y.data(), out, pool, scratch);
    // Reference in double from the dequantized weight and factors.
    std::vector<float> Wd(out * in), Ud(out * rank), Vd(rank * in);
    for (int64_t r = 0; r < out; r++) dequantize_row(QType::HQ3_64, wq.data() + r * lin.row_stride, &Wd[r * in], in);
    for (int64_t r = 0; r < out; r++) dequantize_row(ct, pu.data() + r * L.U.row_stride, &Ud[r * rank], rank);
    for (int64_t r = 0; r < rank; r++) dequantize_row(ct, pv.data() + r * L.V.row_stride, &Vd[r * in], in);
    double scale = 0;
    for (int64_t t = 0; t < n; t++) {
      std::vector<double> vx(rank, 0.0);
      for (int64_t k = 0; k < rank; k++)
        for (int64_t c = 0; c < in; c++) vx[k] += (double)Vd[k * in + c] * x[t * in + c];
      for (int64_t r = 0; r < out; r++) {
        double s = 0;
        for (int64_t c = 0; c < in; c++) s += (double)Wd[r * in + c] * x[t * in + c];
        for (int64_t k = 0; k < rank; k++) s += (double)Ud[r * rank + k] * vx[k];
        ref[t * out + r] = (float)s;
        scale = std::max(scale, std::fabs(s));
      }
    }
    for (size_t i = 0; i < y.size(); i++) ASSERT_NEAR(y[i], ref[i], 0.02 * scale) << qtype_name((uint32_t)ct) << " " << i;
    // The compensator is really applied: without it the output moves.
    Linear plain = lin;
    plain.lowrank = nullptr;
    std::vector<float> y0(n * out);
    matmul(plain, x.data(), n, in, y0.data(), out, pool, scratch);
    EXPECT_GT(rel_err(y0, y), 0.01);
    // Glu and one-row calls agree with the batched call (batch invariance).
    std::vector<float> y1(out);
    matmul(lin, x.data() + 2 * in, 1, in, y1.data(), out, pool, scratch);
    for (int64_t r = 0; r < out; r++) ASSERT_EQ(y1[r], y[2 * out + r]);
  }
}

}  // namespace
}  // namespace stepq
