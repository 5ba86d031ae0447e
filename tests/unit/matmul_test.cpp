// matmul over every weight format against the scalar reference dot product, on awkward shapes: one output row, output rows not a
// multiple of any tile, many columns, several activation rows, 1-3 threads, with a bias.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "base/thread_pool.h"
#include "kernels/cpu/matmul.h"
#include "quant_test_util.h"

namespace stepq {
namespace {

const QType kTypes[] = {QType::F32,    QType::F16,    QType::BF16,    QType::Q4_0,   QType::Q4_1,  QType::Q5_0,
                        QType::Q5_1,   QType::Q8_0,   QType::IQ4_NL,  QType::Q2_K,   QType::Q3_K,  QType::Q4_K,
                        QType::Q5_K,   QType::Q6_K,   QType::HQ2_64,  QType::HQ3_64, QType::HQ3_128, QType::HQ4_64,
                        QType::S3_32,  QType::HQ3_32, QType::S3_16};

TEST(Matmul, EveryFormatMatchesReferenceOnAwkwardShapes) {
  std::mt19937 rng(99);
  struct Shape { int64_t out, n_tok; int in_blocks; };
  const Shape shapes[] = {{1, 1, 1}, {7, 1, 3}, {131, 3, 2}, {33, 17, 9}, {300, 2, 1}, {5, 1, 24}};
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    MatmulScratch scratch;
    for (QType t : kTypes) {
      const QTypeInfo& qi = qtype_info(t);
      for (const Shape& s : shapes) {
        const int64_t in = (int64_t)s.in_blocks * (qi.block_size == 1 ? 64 : qi.block_size);
        std::vector<uint8_t> w;
        for (int64_t r = 0; r < s.out; r++) {
          auto row = test::random_weight_row(t, in, rng);
          w.insert(w.end(), row.begin(), row.end());
        }
        std::vector<float> bias(s.out);
        for (auto& b : bias) b = std::uniform_real_distribution<float>(-1, 1)(rng);
        std::vector<float> x;
        for (int64_t i = 0; i < s.n_tok; i++) {
          auto a = test::random_activations(in, rng);
          x.insert(x.end(), a.begin(), a.end());
        }
        Linear L{t, in, s.out, w.data(), row_bytes(t, in), bias.data()};
        std::vector<float> y(s.n_tok * s.out);
        matmul(L, x.data(), s.n_tok, in, y.data(), s.out, pool, scratch);

        // Reference: the scalar dot product (vec_dot_ref, itself tested against a double dot of
        // the dequantized rows in quant_test) on the activation row quantized the same way.
        const QType vdt = qi.vec_dot_type;
        std::vector<float> wrow(in), arow(in);
        std::vector<uint8_t> aq(row_bytes(vdt, in));
        for (int64_t tk = 0; tk < s.n_tok; tk++) {
          quantize_row(vdt, &x[tk * in], aq.data(), in);
          dequantize_row(vdt, aq.data(), arow.data(), in);
          for (int64_t r = 0; r < s.out; r++) {
            const double ref = (double)vec_dot_ref(t, in, &w[r * L.row_stride], aq.data()) + bias[r];
            dequantize_row(t, &w[r * L.row_stride], wrow.data(), in);
            double mag = std::fabs(bias[r]);
            for (int64_t i = 0; i < in; i++) mag += std::fabs((double)wrow[i] * arow[i]);
            ASSERT_NEAR(y[tk * s.out + r], ref, 1e-5 * mag + 1e-6)
                << qi.name << " out=" << s.out << " in=" << in << " tok=" << tk << " row=" << r << " threads=" << threads;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace stepq
