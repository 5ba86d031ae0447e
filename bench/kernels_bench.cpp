// Kernel benchmarks: matmul() per weight format on real model shapes, for one token (decode
// GEMV) and for 8 / 64 / 512 tokens (batched decode, prefill), with 1 and 2 threads; and
// vec_dot alone on an L1-resident row. How to build and run: bench/README.md.
//
// Counters: GB/s = weight bytes read / time (for GEMV this is the memory-bandwidth figure that
// bounds decode); GFLOP/s = 2·in·out·tokens / time (a multiply-add is two operations).
// GEMV cycles through copies of the matrix (>= 256 MiB in all) so the weights come from DRAM as
// in decode; GEMM keeps one copy (its weights are reused across tokens anyway).
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quant_types.h"
#include "quant_test_util.h"

namespace stepq {
namespace {

struct Matrix {
  int64_t in, out;
  size_t row_stride;
  std::vector<uint8_t> data;  // copies × out rows
  int copies;
};

// Random weights (valid scales, as quant_test_util.h makes them), built once per shape.
const Matrix& matrix(QType t, int64_t in, int64_t out, bool from_dram) {
  static std::map<std::tuple<uint32_t, int64_t, int64_t, bool>, std::unique_ptr<Matrix>> cache;
  auto& slot = cache[{(uint32_t)t, in, out, from_dram}];
  if (slot) return *slot;
  std::mt19937 rng(42);
  auto m = std::make_unique<Matrix>();
  m->in = in, m->out = out, m->row_stride = row_bytes(t, in);
  const size_t bytes = m->row_stride * (size_t)out;
  m->copies = from_dram ? (int)std::max<size_t>(1, ((size_t)256 << 20) / bytes + 1) : 1;
  m->data.resize(bytes * m->copies);
  // A few distinct random rows repeated: generating every row is slow for the big matrices and
  // the kernels' speed does not depend on the values.
  std::vector<std::vector<uint8_t>> rows;
  for (int i = 0; i < 16; i++) rows.push_back(test::random_weight_row(t, in, rng));
  for (int64_t r = 0; r < out; r++) std::memcpy(&m->data[r * m->row_stride], rows[r % 16].data(), m->row_stride);
  for (int c = 1; c < m->copies; c++) std::memcpy(&m->data[c * bytes], m->data.data(), bytes);
  slot = std::move(m);
  return *slot;
}

void BM_Matmul(benchmark::State& state, QType t, int64_t in, int64_t out, int64_t n, int threads) {
  const Matrix& m = matrix(t, in, out, n == 1);
  std::mt19937 rng(1);
  std::vector<float> x;
  for (int64_t i = 0; i < n; i++) {
    const auto v = test::random_activations(in, rng);
    x.insert(x.end(), v.begin(), v.end());
  }
  std::vector<float> y((size_t)n * out);
  ThreadPool pool(threads);
  MatmulScratch scratch;
  const size_t bytes = m.row_stride * (size_t)out;
  int copy = 0;
  for (auto _ : state) {
    const Linear L{t, in, out, m.data.data() + (size_t)copy * bytes, m.row_stride, nullptr};
    matmul(L, x.data(), n, in, y.data(), out, pool, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    if (++copy == m.copies) copy = 0;
  }
  const double iters = (double)state.iterations();
  state.counters["GB/s"] = benchmark::Counter(iters * (double)bytes * 1e-9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(iters * 2.0 * (double)in * (double)out * (double)n * 1e-9, benchmark::Counter::kIsRate);
}

void BM_VecDot(benchmark::State& state, QType t, int64_t in) {
  std::mt19937 rng(3);
  const std::vector<uint8_t> w = test::random_weight_row(t, in, rng);
  const QType vdt = qtype_info(t).vec_dot_type;
  const std::vector<float> x = test::random_activations(in, rng);
  std::vector<uint8_t> a(row_bytes(vdt, in));
  quantize_row(vdt, x.data(), a.data(), in);
  for (auto _ : state) {
    float r = vec_dot(t, in, w.data(), a.data());
    benchmark::DoNotOptimize(r);
  }
  const double iters = (double)state.iterations();
  state.counters["GB/s"] = benchmark::Counter(iters * (double)w.size() * 1e-9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(iters * 2.0 * (double)in * 1e-9, benchmark::Counter::kIsRate);
}

void register_all() {
  // (in, out) of Qwen2.5-Coder-1.5B (attention 1536², FFN up/gate 1536→8960, down 8960→1536)
  // and 0.5B (FFN up/gate 896→4864, down 4864→896; 896 is no multiple of the K-quants' 256).
  const QType types[] = {QType::Q3_K, QType::Q4_K, QType::Q6_K, QType::Q4_0, QType::Q5_0, QType::Q8_0, QType::Q4_1, QType::F16,
                         QType::S3_16, QType::HQ3_32, QType::HQ3_64, QType::HQ4_64, QType::S3_32};
  for (QType t : types) {
    const bool kquant = qtype_info(t).block_size == 256;
    const std::pair<int64_t, int64_t> shapes[] = {
        {1536, 1536}, {1536, 8960}, {8960, 1536}, kquant ? std::pair<int64_t, int64_t>{4864, 896} : std::pair<int64_t, int64_t>{896, 4864}};
    const std::string tn = qtype_name((uint32_t)t);
    benchmark::RegisterBenchmark(("vec_dot/" + tn + "/in:1536").c_str(), BM_VecDot, t, (int64_t)1536);
    for (auto [in, out] : shapes)
      for (int64_t n : {1, 8, 64, 512})
        for (int threads : {1, 2}) {
          const std::string name = "matmul/" + tn + "/" + std::to_string(in) + "x" + std::to_string(out) +
                                   "/tokens:" + std::to_string(n) + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_Matmul, t, in, out, n, threads)->UseRealTime()->Unit(
              benchmark::kMicrosecond);
        }
  }
}

}  // namespace
}  // namespace stepq

int main(int argc, char** argv) {
  stepq::register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
