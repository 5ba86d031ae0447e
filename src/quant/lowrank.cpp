#include "quant/lowrank.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "base/error.h"
#include "quant/lapack.h"

namespace stepq {

namespace {

// Replaces row-major Y (m × n, m ≥ n) by an orthonormal basis of its column space. Row-major Y
// is the column-major n × m matrix Yᵀ; its LQ factorisation Yᵀ = L·Q leaves Q (orthonormal rows,
// spanning Yᵀ's rows) in place, which read row-major is Y's basis.
void orthonormalize(std::vector<float>& Y, int64_t m, int64_t n) {
  const int M = (int)n, N = (int)m, K = (int)n;
  std::vector<float> tau((size_t)n);
  int info = 0, lwork = -1;
  float q = 0;
  sgelqf_(&M, &N, Y.data(), &M, tau.data(), &q, &lwork, &info);
  lwork = std::max(1, (int)q);
  std::vector<float> work((size_t)lwork);
  sgelqf_(&M, &N, Y.data(), &M, tau.data(), work.data(), &lwork, &info);
  if (info != 0) fail("low-rank fit: LQ factorisation failed (LAPACK sgelqf info {})", info);
  lwork = -1;
  sorglq_(&M, &N, &K, Y.data(), &M, tau.data(), &q, &lwork, &info);
  lwork = std::max(1, (int)q);
  work.resize((size_t)lwork);
  sorglq_(&M, &N, &K, Y.data(), &M, tau.data(), work.data(), &lwork, &info);
  if (info != 0) fail("low-rank fit: LQ factorisation failed (LAPACK sorglq info {})", info);
}

}  // namespace

LowRank truncated_svd(const float* R, int64_t rows, int64_t cols, int rank, const SvdParams& p, const LowRank* warm) {
  LowRank lr;
  lr.rows = rows;
  lr.cols = cols;
  const int64_t kmax = std::min(rows, cols);
  const int64_t k = std::min<int64_t>(rank, kmax);
  if (k <= 0) return lr;
  const int64_t l = std::min<int64_t>(k + std::max(0, p.oversample), kmax);

  // The sketch's starting directions (cols × l): the warm factors' row space, then random columns.
  std::vector<float> omega((size_t)(cols * l));
  std::mt19937_64 rng(p.seed);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  int64_t from_warm = 0;
  if (warm && warm->cols == cols && warm->rank > 0) from_warm = std::min<int64_t>(warm->rank, l);
  for (int64_t c = 0; c < cols; c++)
    for (int64_t j = 0; j < l; j++)
      omega[(size_t)(c * l + j)] = j < from_warm ? warm->V[(size_t)(j * cols + c)] : gauss(rng);

  std::vector<float> Y((size_t)(rows * l)), Z((size_t)(cols * l));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)l, (int)cols, 1.0f, R, (int)cols,
              omega.data(), (int)l, 0.0f, Y.data(), (int)l);
  const int q = from_warm > 0 ? std::min(p.power_iters, 1) : p.power_iters;
  for (int it = 0; it < q; it++) {
    orthonormalize(Y, rows, l);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)cols, (int)l, (int)rows, 1.0f, R, (int)cols, Y.data(),
                (int)l, 0.0f, Z.data(), (int)l);
    orthonormalize(Z, cols, l);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)l, (int)cols, 1.0f, R, (int)cols,
                Z.data(), (int)l, 0.0f, Y.data(), (int)l);
  }
  orthonormalize(Y, rows, l);  // Q

  // B = Qᵀ R (l × cols), then its exact SVD.
  std::vector<float> B((size_t)(l * cols));
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l, (int)cols, (int)rows, 1.0f, Y.data(), (int)l, R,
              (int)cols, 0.0f, B.data(), (int)cols);
  // Row-major B is the column-major cols × l matrix Bᵀ = U'·S·V'ᵀ, so B = V'·S·U'ᵀ: LAPACK's U'
  // buffer (cols × l, column-major) read row-major is B's Vt (l × cols), and its V'ᵀ buffer
  // (l × l) read row-major is B's Ub.
  std::vector<float> S((size_t)l), Ub((size_t)(l * l)), Vt((size_t)(l * cols));
  {
    const int M = (int)cols, N = (int)l;
    int info = 0, lwork = -1;
    float q = 0;
    std::vector<int> iwork((size_t)(8 * l));
    sgesdd_("S", &M, &N, B.data(), &M, S.data(), Vt.data(), &M, Ub.data(), &N, &q, &lwork, iwork.data(), &info, 1);
    lwork = std::max(1, (int)q);
    std::vector<float> work((size_t)lwork);
    sgesdd_("S", &M, &N, B.data(), &M, S.data(), Vt.data(), &M, Ub.data(), &N, work.data(), &lwork, iwork.data(),
            &info, 1);
    if (info != 0) fail("low-rank fit: SVD did not converge (LAPACK sgesdd info {})", info);
  }

  lr.rank = (int)k;
  lr.U.resize((size_t)(rows * k));
  lr.V.resize((size_t)(k * cols));
  // U = Q · Ub[:, :k] · √S, V = √S · Vt[:k, :].
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)k, (int)l, 1.0f, Y.data(), (int)l, Ub.data(),
              (int)l, 0.0f, lr.U.data(), (int)k);
  for (int64_t j = 0; j < k; j++) {
    const float s = std::sqrt(std::max(S[(size_t)j], 0.0f));
    for (int64_t r = 0; r < rows; r++) lr.U[(size_t)(r * k + j)] *= s;
    for (int64_t c = 0; c < cols; c++) lr.V[(size_t)(j * cols + c)] = Vt[(size_t)(j * cols + c)] * s;
  }
  return lr;
}

void subtract_lowrank(const float* A, const LowRank& lr, float* out) {
  const size_t n = (size_t)(lr.rows * lr.cols);
  if (out != A) std::copy(A, A + n, out);
  if (lr.rank == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)lr.rows, (int)lr.cols, lr.rank, -1.0f, lr.U.data(),
              lr.rank, lr.V.data(), (int)lr.cols, 1.0f, out, (int)lr.cols);
}

double residual_norm(const float* A, const LowRank& lr) {
  std::vector<float> tmp((size_t)(lr.rows * lr.cols));
  subtract_lowrank(A, lr, tmp.data());
  double s = 0;
  for (float v : tmp) s += (double)v * v;
  return std::sqrt(s);
}

}  // namespace stepq
