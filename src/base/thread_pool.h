// A fixed pool of worker threads for data-parallel loops (matmul rows, attention heads).
// The caller takes part in the work. Workers spin briefly between jobs (decode issues
// hundreds of short jobs per token) and then sleep, so an idle engine uses no CPU.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "base/function_ref.h"

namespace stepq {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads includes the caller; >= 1
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(thread_index, n_threads) once on every thread (the caller is index 0) and waits.
  // fn must not throw. Not reentrant.
  void run(FunctionRef<void(int, int)> fn);

  // Splits [0, n) into chunks of `grain` handed out dynamically; fn(begin, end).
  void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t)> fn);

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  const FunctionRef<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

}  // namespace stepq
