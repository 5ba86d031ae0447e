// Low-rank factors of a matrix by truncated randomized SVD (Halko, Martinsson & Tropp 2011), on
// OpenBLAS (sgemm) and LAPACK (QR, SVD): MiLo's compensators (DESIGN.md §4).
#pragma once
#include <cstdint>
#include <vector>

namespace stepq {

// R ≈ U·V with U (rows × rank) = Us·√S and V (rank × cols) = √S·Vsᵀ, row-major.
struct LowRank {
  int64_t rows = 0, cols = 0;
  int rank = 0;
  std::vector<float> U, V;
};

struct SvdParams {
  int oversample = 8;   // extra columns of the random sketch
  int power_iters = 2;  // subspace iterations (each one pass over R and one over Rᵀ)
  uint64_t seed = 1;
};

// Truncated SVD of row-major R (rows × cols) at `rank` (at most min(rows, cols)). With `warm`
// (earlier factors of a nearby matrix, same shape), its row space seeds the sketch instead of a
// random matrix, so one power iteration is enough.
LowRank truncated_svd(const float* R, int64_t rows, int64_t cols, int rank, const SvdParams& p,
                      const LowRank* warm = nullptr);

// out (rows × cols) = A − U·V  (out may alias A).
void subtract_lowrank(const float* A, const LowRank& lr, float* out);

// ‖A − U·V‖_F (A rows × cols).
double residual_norm(const float* A, const LowRank& lr);

}  // namespace stepq
