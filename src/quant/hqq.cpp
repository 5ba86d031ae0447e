#include "quant/hqq.h"

#include <algorithm>
#include <cmath>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/fp16.h"
#include "base/thread_pool.h"
#include "quant/hqq_kernels.h"
#include "quant/hqq_simd.h"

namespace stepq {

QType hq_type(int bits, int group) {
  if (bits == 3 && group == 16) return QType::S3_16;
  if (bits == 3 && group == 32) return QType::HQ3_32;
  if (bits == 2 && group == 64) return QType::HQ2_64;
  if (bits == 3 && group == 64) return QType::HQ3_64;
  if (bits == 3 && group == 128) return QType::HQ3_128;
  if (bits == 4 && group == 64) return QType::HQ4_64;
  fail("no packed format for {} bits with groups of {}; supported: --bits 3 --group 16|32|64|128, --bits 2|4 --group 64",
       bits, group);
}

std::optional<HqqParams> hq_params(QType t) {
  HqqParams p;
  switch (t) {
    case QType::S3_16: p.bits = 3, p.group = 16, p.symmetric = true; return p;
    case QType::HQ3_32: p.bits = 3, p.group = 32, p.meta_bits = 8; return p;
    case QType::HQ2_64: p.bits = 2, p.group = 64; return p;
    case QType::HQ3_64: p.bits = 3, p.group = 64; return p;
    case QType::HQ3_128: p.bits = 3, p.group = 128; return p;
    case QType::HQ4_64: p.bits = 4, p.group = 64; return p;
    default: return std::nullopt;
  }
}

namespace {
double step_scalar(const float* w, int64_t G, float max_v, float s, float* z, float inv_beta, float p) {
  return hqq_proximal_step(w, G, max_v, s, z, inv_beta, p);
}
HqqStepFn pick_step() { return active_isa() >= Isa::Avx512 ? hqq_step_avx512() : step_scalar; }
double mse_fit_scalar(const float* w, int64_t G, float max_v, int grid, float step, int ls_iters, float* s, float* z) {
  return mse_fit_group(w, G, max_v, grid, step, ls_iters, s, z);
}
MseFitFn pick_mse_fit() { return active_isa() >= Isa::Avx512 ? mse_fit_avx512() : mse_fit_scalar; }
// The signed scale of one group for codes −nmax..nmax−1 (llama.cpp's make_q3_quants): the value
// of largest magnitude goes to −nmax; with `refine`, passes over the group then move one code at
// a time to the nearest level for the current least-squares scale while that lowers the error
// weighted by w² (at most 5 passes), and the scale is the weighted least-squares one.
float sym_group_scale(const float* x, int n, int nmax, bool refine) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; i++)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  if (amax < 1e-15f) return 0;
  const float iscale = -(float)nmax / max;
  if (!refine) return 1.0f / iscale;
  int L[kSymBlock];
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; i++) {
    L[i] = std::clamp((int)std::nearbyint(iscale * x[i]), -nmax, nmax - 1);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * (float)L[i];
    suml2 += w * (float)(L[i] * L[i]);
  }
  for (int pass = 0; pass < 5; pass++) {
    int changed = 0;
    for (int i = 0; i < n; i++) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * (float)L[i];
      if (slx <= 0) continue;
      float sl2 = suml2 - w * (float)(L[i] * L[i]);
      // Clamped as a float: x·sl2/slx can be far outside int's range when slx is tiny.
      const int nl = (int)std::clamp(std::nearbyint(x[i] * sl2 / slx), (float)-nmax, (float)(nmax - 1));
      if (nl == L[i]) continue;
      slx += w * x[i] * (float)nl;
      sl2 += w * (float)(nl * nl);
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = nl;
        sumlx = slx;
        suml2 = sl2;
        changed++;
      }
    }
    if (!changed) break;
  }
  return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

// S3_16 (HqqParams::symmetric): per super-block of kSymBlock weights, the group scales, their
// 5-bit codes against D (refining: the nearest code or a neighbour, by the group's weighted
// error), then the codes for the stored scales.
GroupQuant sym_quantize(const float* W, int64_t rows, int64_t cols, const HqqParams& p, ThreadPool& pool) {
  if (p.bits != 3 || p.group != 16) fail("hqq: symmetric codes are 3 bits with groups of 16 (S3_16)");
  if (cols % kSymBlock != 0) fail("hqq: S3_16 needs rows that are a multiple of {}, got {}", kSymBlock, cols);
  constexpr int G = 16, gpb = kSymBlock / G, nmax = 4, half = 16;
  GroupQuant q;
  q.rows = rows, q.cols = cols, q.bits = 3, q.group = G, q.symmetric = true;
  const int64_t n_groups = rows * cols / G, n_blocks = n_groups / gpb;
  q.codes.resize((size_t)(rows * cols));
  q.d.resize((size_t)n_groups);
  q.z.assign((size_t)n_groups, 4.0f);
  q.sc.resize((size_t)n_groups);
  q.D.resize((size_t)n_blocks);
  const bool refine = p.fit != HqqParams::Fit::Rtn;
  std::vector<double> err((size_t)n_blocks);
  pool.parallel_for(n_blocks, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const float* x = W + b * kSymBlock;
      float s[gpb], max = 0, amax = 0;
      for (int g = 0; g < gpb; g++) {
        s[g] = sym_group_scale(x + g * G, G, nmax, refine);
        if (std::fabs(s[g]) > amax) amax = std::fabs(s[g]), max = s[g];
      }
      const float iscale = amax > 0 ? -(float)half / max : 0.0f;
      q.D[b] = fp32_to_fp16(amax > 0 ? 1.0f / iscale : 0.0f);
      const float D = fp16_to_fp32(q.D[b]);
      double e = 0;
      for (int g = 0; g < gpb; g++) {
        // The scale code nearest the fitted scale, or (refining) its neighbour when the group's
        // codes for that scale have the lower error weighted by x² (as the scale's own fit is).
        const int l0 = std::clamp((int)std::nearbyint(iscale * s[g]), -half, half - 1);
        const float* xg = x + g * G;
        auto codes_for = [&](int l, int* c) {
          const float d = D * (float)l;
          float err = 0;
          for (int i = 0; i < G; i++) {
            c[i] = d != 0.0f ? std::clamp((int)std::nearbyint(xg[i] / d), -nmax, nmax - 1) : 0;
            const float r = xg[i] - (float)c[i] * d;
            err += xg[i] * xg[i] * (r * r);
          }
          return err;
        };
        int best[G], cand[G];
        int l = l0;
        float best_err = codes_for(l0, best);
        if (refine)
          for (int t : {l0 - 1, l0 + 1}) {
            if (t < -half || t > half - 1) continue;
            const float err = codes_for(t, cand);
            if (err < best_err) best_err = err, l = t, std::copy(cand, cand + G, best);
          }
        const int64_t gi = b * gpb + g;
        q.sc[gi] = (uint8_t)(l + half);
        const float d = D * (float)l;
        q.d[gi] = d;
        for (int i = 0; i < G; i++) {
          q.codes[(size_t)(gi * G + i)] = (uint8_t)(best[i] + nmax);
          e += std::fabs(xg[i] - (float)best[i] * d);
        }
      }
      err[b] = e;
    }
  });
  double total = 0;
  for (double e : err) total += e;
  q.mean_abs_error = total / (double)(rows * cols);
  return q;
}

}  // namespace

GroupQuant hqq_quantize(const float* W, int64_t rows, int64_t cols, const HqqParams& p, ThreadPool& pool) {
  static const HqqStepFn step = pick_step();
  static const MseFitFn mse_fit = pick_mse_fit();
  if (p.symmetric) return sym_quantize(W, rows, cols, p, pool);
  if (p.bits < 1 || p.bits > 8) fail("hqq: bits must be 1..8, got {}", p.bits);
  if (p.group <= 0 || cols % p.group != 0) fail("hqq: row length {} is not a multiple of the group {}", cols, p.group);
  const int64_t G = p.group, n_groups = rows * cols / G;
  const float max_v = (float)((1 << p.bits) - 1);

  GroupQuant q;
  q.rows = rows;
  q.cols = cols;
  q.bits = p.bits;
  q.group = p.group;
  q.codes.resize((size_t)(rows * cols));
  q.d.resize((size_t)n_groups);
  q.z.resize((size_t)n_groups);

  // Per group: the float32 scale s and zero z of the reference (s is inverted only when stored).
  std::vector<float> scale((size_t)n_groups), zero((size_t)n_groups);
  std::vector<double> err((size_t)n_groups);
  const int64_t grain = std::max<int64_t>(1, 16384 / G);
  const bool mse = p.fit == HqqParams::Fit::Mse;
  if (mse && G > kMseMaxGroup) fail("hqq: the least-squares fit takes groups of at most {}, got {}", kMseMaxGroup, G);
  pool.parallel_for(n_groups, grain, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; g++) {
      if (mse) mse_fit(W + g * G, G, max_v, p.mse_grid, p.mse_step, p.mse_ls_iters, &scale[g], &zero[g]);
      else hqq_init_group(W + g * G, G, max_v, &scale[g], &zero[g]);
    }
  });

  if (p.meta_bits != 16 && p.meta_bits != 8) fail("hqq: scale/zero precision must be 16 or 8 bits, got {}", p.meta_bits);
  const bool meta8 = p.meta_bits == 8;
  const int64_t gpb = meta8 ? kMetaBlock / G : 0;  // groups per block of one D
  if (meta8) {
    // The stored scales first, so that the zero loop fits the zeros to them: per block of 128
    // weights D = the largest d rounded up to fp16, each group's d = D·2^(−c/32).
    if (kMetaBlock % G != 0 || cols % kMetaBlock != 0)
      fail("hqq: 8-bit scales need groups dividing {} and rows that are a multiple of it (row {}, group {})",
           kMetaBlock, cols, G);
    q.sc.resize((size_t)n_groups);
    q.zc.resize((size_t)n_groups);
    q.D.resize((size_t)(n_groups / gpb));
    pool.parallel_for(n_groups / gpb, std::max<int64_t>(1, grain / gpb), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; b++) {
        float dmax = 0;
        for (int64_t g = b * gpb; g < (b + 1) * gpb; g++) dmax = std::max(dmax, 1.0f / scale[g]);
        uint16_t h = fp32_to_fp16(dmax);
        if (fp16_to_fp32(h) < dmax) h++;  // round up: every group's scale is D or below
        q.D[b] = h;
        const float D = fp16_to_fp32(h);
        for (int64_t g = b * gpb; g < (b + 1) * gpb; g++) {
          // The nearest code in log2 terms, then the exact stored value.
          const float c = std::clamp(std::nearbyint(-32.0f * std::log2((1.0f / scale[g]) / D)), 0.0f, 255.0f);
          q.sc[g] = (uint8_t)c;
          q.d[g] = D * hq3_32_scale(q.sc[g]);
          scale[g] = 1.0f / q.d[g];
        }
      }
    });
  }

  if (mse && meta8) {
    // The zeros again, for the scales as stored.
    pool.parallel_for(n_groups, grain, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; g++) mse_refit_zero(W + g * G, G, max_v, scale[g], &zero[g], 3);
    });
  }
  if (p.fit == HqqParams::Fit::Hqq) {
    double beta = p.beta, best = 1e4;
    for (int it = 0; it < p.iters; it++) {
      const float inv_beta = (float)(1.0 / beta);
      pool.parallel_for(n_groups, grain, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; g++)
          err[g] = step(W + g * G, G, max_v, scale[g], &zero[g], inv_beta, p.lp_norm);
      });
      beta *= p.kappa;
      double total = 0;
      for (double e : err) total += e;
      const double mean = total / (double)(rows * cols);
      q.iterations = it + 1;
      q.mean_abs_error = mean;
      if (mean < best) best = mean;
      else break;  // the zero points of this step are kept, as in the reference
    }
  }

  pool.parallel_for(n_groups, grain, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; g++) {
      if (meta8) {
        q.zc[g] = (uint8_t)std::clamp(std::nearbyint((zero[g] + 4.0f) * 16.0f), 0.0f, 255.0f);
        zero[g] = q.zc[g] / 16.0f - 4.0f;
        q.z[g] = zero[g];
      } else {
        q.d[g] = fp16_to_fp32(fp32_to_fp16(1.0f / scale[g]));
        q.z[g] = fp16_to_fp32(fp32_to_fp16(zero[g]));
      }
      hqq_codes(W + g * G, G, max_v, scale[g], zero[g], q.codes.data() + g * G);
    }
  });
  return q;
}

void hqq_dequantize(const GroupQuant& q, float* dst) {
  const int64_t G = q.group;
  for (int64_t g = 0; g < (int64_t)q.d.size(); g++) {
    const float d = q.d[g], z = q.z[g];
    for (int64_t i = 0; i < G; i++) dst[g * G + i] = ((float)q.codes[g * G + i] - z) * d;
  }
}

std::vector<uint8_t> hqq_pack(const GroupQuant& q) {
  const QType t = hq_type(q.bits, q.group);
  const size_t rb = row_bytes(t, q.cols);
  std::vector<uint8_t> out(rb * (size_t)q.rows);
  const int64_t gpr = q.cols / q.group;
  if (t == QType::S3_16) {
    if (!q.symmetric || q.D.size() != q.codes.size() / kSymBlock)
      fail("hqq_pack: S3_16 needs the symmetric quantizer's scale codes (HqqParams::symmetric)");
    for (int64_t r = 0; r < q.rows; r++)
      s3_16_pack_row(q.codes.data() + r * q.cols, q.sc.data() + r * gpr, q.D.data() + r * (q.cols / kSymBlock),
                     q.cols, out.data() + rb * (size_t)r);
    return out;
  }
  if (t == QType::HQ3_32) {
    if (q.D.empty()) fail("hqq_pack: HQ3_32 needs 8-bit scales and zeros (HqqParams::meta_bits = 8)");
    for (int64_t r = 0; r < q.rows; r++)
      hq3_32_pack_row(q.codes.data() + r * q.cols, q.sc.data() + r * gpr, q.zc.data() + r * gpr,
                      q.D.data() + r * (q.cols / kMetaBlock), q.cols, out.data() + rb * (size_t)r);
    return out;
  }
  for (int64_t r = 0; r < q.rows; r++)
    hq_pack_row(t, q.codes.data() + r * q.cols, q.d.data() + r * gpr, q.z.data() + r * gpr, q.cols,
                out.data() + rb * (size_t)r);
  return out;
}

}  // namespace stepq
