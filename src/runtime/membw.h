// Memory read bandwidth probe: the ceiling that decode speed is measured against (decode reads
// every weight once per token, so tokens/s x bytes per token cannot exceed it).
//
// Reads a buffer much larger than the last-level cache with the engine's ThreadPool, each
// thread a contiguous slice, with the widest loads the CPU has (AVX-512, AVX2, else plain
// 64-bit loads), summed so the reads cannot be optimized away. Reports the best of several
// passes: interference from other processes only ever makes a pass slower.
#pragma once
#include <cstddef>

namespace stepq {

class ThreadPool;

struct MemBandwidth {
  double best_gb_per_s = 0;  // 1e9 bytes per second, best pass
  double mean_gb_per_s = 0;  // mean over the passes
  size_t bytes = 0;          // buffer size read per pass
  int passes = 0;
  const char* isa = "";      // the load width used
};

// Allocates `bytes` (rounded down to 4 KiB, at least 4 KiB), touches it once, then times
// `passes` full reads with every thread of `pool`. Throws Error if the buffer cannot be allocated.
MemBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes);

}  // namespace stepq
