#include "runtime/kv_cache.h"

#include <unistd.h>

#include "base/error.h"
#include "model/config.h"

namespace stepq {

KvCache::KvCache(const ModelConfig& c, int capacity)
    : n_layer_(c.n_layer), kv_dim_(c.n_head_kv * c.head_dim), capacity_(capacity) {
  if (capacity <= 0) fail("context size must be positive (got {})", capacity);
  const size_t n = (size_t)n_layer_ * capacity_ * kv_dim_;
  // Refuse a cache that cannot fit in RAM up front: zero-filling it would otherwise get the
  // process killed by the OOM killer instead of a message.
  const double bytes = 2.0 * (double)n * sizeof(uint16_t);
  const double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
  if (ram > 0 && bytes > 0.8 * ram)
    fail("a context of {} tokens needs {:.1f} GB of KV cache, more than this machine's memory ({:.1f} GB); "
         "use a smaller --ctx",
         capacity, bytes / 1e9, ram / 1e9);
  k_.resize(n);
  v_.resize(n);
}

void KvCache::set_length(int n) {
  if (n < 0 || n > capacity_) fail("KV cache: length {} outside [0, {}]", n, capacity_);
  length_ = n;
}

void KvCache::truncate(int n) {
  if (n < 0 || n > length_) fail("KV cache: cannot roll back to {} tokens (holds {})", n, length_);
  length_ = n;
}

std::unique_ptr<KvCache> KvCache::fork() const { return std::make_unique<KvCache>(*this); }

}  // namespace stepq
