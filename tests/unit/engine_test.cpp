// Thread pool and model-config checks that need no model file.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/gguf.h"
#include "gguf_writer.h"
#include "model/config.h"

namespace stepq {
namespace {

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 64, 1000, 4097}) {
      for (int64_t grain : {1, 3, 16, 5000}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; i++) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; i++) ASSERT_EQ(hits[i].load(), 1) << threads << " " << n << " " << grain;
      }
    }
  }
}

TEST(ThreadPool, RunGivesEachThreadItsIndex) {
  ThreadPool pool(4);
  for (int rep = 0; rep < 200; rep++) {  // many short jobs, as in decoding
    std::vector<std::atomic<int>> seen(4);
    pool.run([&](int i, int n) {
      ASSERT_EQ(n, 4);
      seen[i].fetch_add(1);
    });
    for (auto& s : seen) ASSERT_EQ(s.load(), 1);
  }
}

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Between jobs the workers spin only briefly, then sleep: an idle engine burns no CPU.
TEST(ThreadPool, IdlePoolSleeps) {
  ThreadPool pool(3);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, 10, [&](int64_t b, int64_t e) { sum += e - b; });
  ASSERT_EQ(sum.load(), 1000);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the spin phase end
  const double c0 = process_cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double used = process_cpu_seconds() - c0;
  EXPECT_LT(used, 0.03) << "an idle pool of 3 used " << used << " s of CPU in 0.3 s";
  // And it still wakes up for the next job.
  pool.parallel_for(1000, 10, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 2000);
}

TEST(ModelConfig, UnsupportedArchitectureListsSupportedOnes) {
  test::GgufBytes w;
  w.header(0, 1);
  w.kv_string("general.architecture", "mamba");
  auto f = GgufFile::parse(w.b.data(), w.b.size(), "mamba.gguf");
  try {
    ModelConfig::from_gguf(*f);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("mamba"), std::string::npos) << m;
    for (const char* a : {"llama", "qwen2", "gemma3", "qwen2moe", "qwen3moe", "deepseek", "olmoe"})
      EXPECT_NE(m.find(a), std::string::npos) << a << " missing from: " << m;
  }
}

TEST(ModelConfig, MissingRequiredKeyIsNamed) {
  test::GgufBytes w;
  w.header(0, 2);
  w.kv_string("general.architecture", "llama");
  w.kv_u32("llama.embedding_length", 64);
  auto f = GgufFile::parse(w.b.data(), w.b.size(), "x.gguf");
  try {
    ModelConfig::from_gguf(*f);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("llama.block_count"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stepq
