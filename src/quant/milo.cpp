#include "quant/milo.h"

#include <cblas.h>

#include <cmath>

#include "base/error.h"
#include "quant/lapack.h"

namespace stepq {

namespace {

double frobenius(const std::vector<float>& a) {
  double s = 0;
  for (float v : a) s += (double)v * v;
  return std::sqrt(s);
}

}  // namespace

std::vector<uint8_t> quantize_rows(const float* x, int64_t rows, int64_t cols, QType type) {
  const QTypeInfo& info = qtype_info(type);
  if (cols % info.block_size != 0)
    fail("compensator rows of {} values do not fit {} blocks of {}", cols, info.name, info.block_size);
  const size_t rb = row_bytes(type, cols);
  std::vector<uint8_t> out(rb * (size_t)rows);
  for (int64_t r = 0; r < rows; r++) quantize_weight_row(type, x + r * cols, out.data() + rb * (size_t)r, cols);
  return out;
}

void dequantize_rows(const uint8_t* q, int64_t rows, int64_t cols, QType type, float* out) {
  const size_t rb = row_bytes(type, cols);
  for (int64_t r = 0; r < rows; r++) dequantize_row(type, q + rb * (size_t)r, out + r * cols, cols);
}

namespace {

// Quantizes V, refits U to R given V̂ (least squares), quantizes U; lr ends up holding Û, V̂.
void store_factors(const std::vector<float>& R, LowRank& lr, QType type, MiloResult& out) {
  const int64_t rows = lr.rows, cols = lr.cols, k = lr.rank;
  out.packed.V = quantize_rows(lr.V.data(), k, cols, type);
  dequantize_rows(out.packed.V.data(), k, cols, type, lr.V.data());
  // Normal equations: (V̂ V̂ᵀ) Uᵀ = V̂ Rᵀ, solved by Cholesky with a tiny ridge for safety. C = R V̂ᵀ
  // (rows × k, row-major) is column-major V̂ Rᵀ (k × rows), the right-hand side; the solution
  // overwrites it and read row-major is U. G's upper triangle (row-major) is the lower one for LAPACK.
  std::vector<float> G((size_t)(k * k)), C((size_t)(rows * k));
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)k, (int)cols, 1.0f, lr.V.data(), (int)cols, 0.0f, G.data(),
              (int)k);
  double trace = 0;
  for (int64_t i = 0; i < k; i++) trace += G[(size_t)(i * k + i)];
  for (int64_t i = 0; i < k; i++) G[(size_t)(i * k + i)] += (float)(1e-6 * trace / (double)k);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)k, (int)cols, 1.0f, R.data(), (int)cols,
              lr.V.data(), (int)cols, 0.0f, C.data(), (int)k);
  const int n = (int)k, nrhs = (int)rows;
  int info = 0;
  sposv_("L", &n, &nrhs, G.data(), &n, C.data(), &n, &info, 1);
  if (info == 0) lr.U = C;  // otherwise (V̂ singular) keep the SVD's U
  out.packed.U = quantize_rows(lr.U.data(), rows, k, type);
  dequantize_rows(out.packed.U.data(), rows, k, type, lr.U.data());
}

}  // namespace


MiloResult milo_quantize(const float* W, int64_t rows, int64_t cols, const MiloParams& p, ThreadPool& pool,
                         const std::function<void(int, double)>& log) {
  MiloResult best;
  const size_t n = (size_t)(rows * cols);
  std::vector<float> target(W, W + n), R(n), best_R;
  best.weight_norm = frobenius(target);
  LowRank lr;
  double best_err = INFINITY;
  const int iters = p.rank > 0 ? std::max(1, p.iters) : 1;
  for (int it = 0; it < iters; it++) {
    if (it > 0) subtract_lowrank(W, lr, target.data());  // quantize what the compensator does not cover
    GroupQuant q = hqq_quantize(target.data(), rows, cols, p.hqq, pool);
    hqq_dequantize(q, R.data());
    for (size_t i = 0; i < n; i++) R[i] = W[i] - R[i];  // what quantization lost
    if (it == 0) best.hqq_error = frobenius(R);
    double err = best.hqq_error;
    if (p.rank > 0) {
      SvdParams sp = p.svd;
      sp.seed = p.svd.seed + (uint64_t)it;
      lr = truncated_svd(R.data(), rows, cols, p.rank, sp, it > 0 ? &lr : nullptr);
      err = residual_norm(R.data(), lr);
    }
    best.errors.push_back(err);
    if (log) log(it, err);
    const bool improved = err < best_err;
    const bool enough = err < best_err * (1.0 - p.min_gain);
    if (improved) {
      best_err = err;
      best.q = std::move(q);
      best.lr = lr;
      best.best = it;
      // The stored factors are refitted to the chosen codes' residual.
      if (p.rank > 0 && p.lowrank_type != QType::F32) best_R = R;
    }
    if (it > 0 && !enough) break;
  }
  best.stored_error = best.errors[best.best];
  if (p.rank > 0 && p.lowrank_type != QType::F32) {
    // The factors as they will be stored, refitted to the chosen codes' residual.
    store_factors(best_R, best.lr, p.lowrank_type, best);
    best.stored_error = residual_norm(best_R.data(), best.lr);
  }
  return best;
}

}  // namespace stepq
