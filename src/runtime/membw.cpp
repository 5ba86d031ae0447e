#include "runtime/membw.h"

#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/cpu_features.h"
#include "base/error.h"
#include "base/thread_pool.h"

namespace stepq {

namespace {

// Several independent accumulators so the adds never limit the load rate; the sum only has
// to depend on every byte, its value is meaningless.
__attribute__((target("avx512f"))) uint64_t sum_avx512(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 256) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void*)(p + i)));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void*)(p + i + 64)));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void*)(p + i + 128)));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void*)(p + i + 192)));
  }
  a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
  // A store, not _mm512_reduce_add_epi64, whose inlined body trips GCC 12's -Wuninitialized.
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512((void*)lanes, a0);
  uint64_t s = 0;
  for (uint64_t l : lanes) s += l;
  return s;
}

__attribute__((target("avx2"))) uint64_t sum_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i < n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i*)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i*)(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i*)(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i*)(p + i + 96)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256((__m256i*)lanes, a0);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t sum_scalar(const uint8_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (size_t i = 0; i < n; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    a0 += w[0];
    a1 += w[1];
    a2 += w[2];
    a3 += w[3];
  }
  return a0 + a1 + a2 + a3;
}

struct Buffer {
  uint8_t* p = nullptr;
  size_t n = 0;
  explicit Buffer(size_t bytes) : n(bytes) {
    void* m = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("bandwidth probe: cannot allocate {} MiB (try a smaller --bw-mib)", n >> 20);
    p = (uint8_t*)m;
    // Huge pages, where the kernel allows them, take TLB misses out of the measurement: the
    // probe should report what the memory can deliver, not what 4 KiB paging costs.
    madvise(p, n, MADV_HUGEPAGE);
  }
  ~Buffer() { munmap(p, n); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

}  // namespace

MemBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
  // Every slice starts on a 4 KiB boundary and is a multiple of the widest unrolled step.
  constexpr size_t kPage = 4096;
  bytes = std::max(bytes / kPage * kPage, kPage);
  passes = std::max(passes, 1);
  Buffer buf(bytes);
  const int nt = pool.size();
  const size_t pages = bytes / kPage;
  auto slice = [&](int i, size_t& begin, size_t& len) {
    const size_t b = pages * (size_t)i / (size_t)nt, e = pages * (size_t)(i + 1) / (size_t)nt;
    begin = b * kPage;
    len = (e - b) * kPage;
  };
  // Written by the thread that later reads the slice, so pages land near it on NUMA machines;
  // nonzero so no page is left mapped to the shared zero page.
  pool.run([&](int i, int) {
    size_t b, n;
    slice(i, b, n);
    std::memset(buf.p + b, 0x5a + i, n);
  });

  const Isa isa = active_isa();
  uint64_t (*sum)(const uint8_t*, size_t) =
      isa >= Isa::Avx512 ? sum_avx512 : isa >= Isa::Avx2 ? sum_avx2 : sum_scalar;
  std::vector<uint64_t> sums((size_t)nt * 8, 0);  // one cache line per thread: no false sharing
  MemBandwidth r;
  r.bytes = bytes;
  r.passes = passes;
  r.isa = isa_name(isa);
  double total = 0;
  for (int pass = 0; pass < passes; pass++) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int i, int) {
      size_t b, n;
      slice(i, b, n);
      sums[(size_t)i * 8] += sum(buf.p + b, n);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double gbs = (double)bytes / std::max(s, 1e-9) / 1e9;
    r.best_gb_per_s = std::max(r.best_gb_per_s, gbs);
    total += gbs;
  }
  r.mean_gb_per_s = total / passes;
  // Publishing the sums makes them observable, so no pass can be dropped as dead code.
  uint64_t all = 0;
  for (int i = 0; i < nt; i++) all += sums[(size_t)i * 8];
  volatile uint64_t sink = all;
  (void)sink;
  return r;
}

}  // namespace stepq
