#include "runtime/kv_cache.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "base/error.h"
#include "model/config.h"

namespace stepq {

int64_t KvPool::pages_for(int64_t tokens, int page_tokens) { return (tokens + page_tokens - 1) / page_tokens; }

KvPool::KvPool(const ModelConfig& c, int64_t n_pages, int page_tokens)
    : n_layer_(c.n_layer), n_head_kv_(c.n_head_kv), head_dim_(c.head_dim), page_tokens_(page_tokens),
      n_pages_(n_pages) {
  if (page_tokens <= 0) fail("KV cache: page size must be positive (got {})", page_tokens);
  if (n_pages <= 0) fail("KV cache: the pool needs at least one page (got {})", n_pages);
  if (n_pages > INT32_MAX) fail("KV cache: {} pages is more than a pool can index", n_pages);
  head_elems_ = (size_t)page_tokens * head_dim_;
  page_elems_ = (size_t)n_layer_ * 2 * n_head_kv_ * head_elems_;
  map_bytes_ = page_elems_ * sizeof(uint16_t) * (size_t)n_pages;
  // Refuse a budget that cannot fit in RAM up front: filling it later would get the process
  // killed by the OOM killer instead of giving a message.
  const double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
  if (ram > 0 && (double)map_bytes_ > 0.8 * ram)
    fail("a KV cache of {} tokens needs {:.1f} GB, more than this machine's memory ({:.1f} GB); "
         "use a smaller --ctx (or fewer parallel sequences)",
         n_pages * page_tokens, map_bytes_ / 1e9, ram / 1e9);
  void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("KV cache: could not reserve {:.1f} MB of memory", map_bytes_ / 1e6);
  base_ = static_cast<uint16_t*>(p);
  refs_.assign((size_t)n_pages, 0);
  free_.reserve((size_t)n_pages);
  for (int64_t i = n_pages - 1; i >= 0; i--) free_.push_back((int32_t)i);
}

KvPool::~KvPool() {
  if (base_) munmap(base_, map_bytes_);
}

void KvPool::require(int64_t pages) const {
  if (pages > free_pages())
    fail("KV cache memory budget exhausted: {} more pages needed, {} of {} are free ({:.1f} MB, {} tokens in "
         "all); finish or free sequences, or start with a larger budget (a larger --ctx, or fewer parallel "
         "sequences)",
         pages, free_pages(), n_pages_, map_bytes_ / 1e6, n_pages_ * page_tokens_);
}

int32_t KvPool::allocate() {
  require(1);
  const int32_t p = free_.back();
  free_.pop_back();
  refs_[p] = 1;
  return p;
}

void KvPool::release(int32_t page) {
  if (--refs_[page] == 0) free_.push_back(page);
}

void KvPool::copy_page(int32_t dst, int32_t src) {
  std::memcpy(base_ + (size_t)dst * page_elems_, base_ + (size_t)src * page_elems_, page_bytes());
}

KvCache::KvCache(std::shared_ptr<KvPool> pool, int max_length) : pool_(std::move(pool)), max_length_(max_length) {
  if (max_length <= 0) fail("context size must be positive (got {})", max_length);
  pages_.reserve((size_t)KvPool::pages_for(max_length, pool_->page_tokens()));
}

KvCache::KvCache(const ModelConfig& c, int max_length)
    : KvCache(max_length > 0 ? std::make_shared<KvPool>(c, KvPool::pages_for(max_length)) : nullptr, max_length) {}

KvCache::~KvCache() {
  for (int32_t p : pages_) pool_->release(p);
}

std::unique_ptr<KvCache> KvCache::fork() const {
  auto child = std::make_unique<KvCache>(pool_, max_length_);
  child->pages_ = pages_;
  child->length_ = length_;
  for (int32_t p : pages_) pool_->retain(p);
  return child;
}

void KvCache::truncate(int n) {
  if (n < 0 || n > length_) fail("KV cache: cannot roll back to {} tokens (holds {})", n, length_);
  const size_t keep = (size_t)KvPool::pages_for(n, pool_->page_tokens());
  while (pages_.size() > keep) {
    pool_->release(pages_.back());
    pages_.pop_back();
  }
  length_ = n;
}

void KvCache::swap(KvCache& o) {
  if (o.pool_ != pool_) fail("KV cache: swap needs two sequences of the same pool");
  std::swap(pages_, o.pages_);
  std::swap(length_, o.length_);
  std::swap(max_length_, o.max_length_);
}

int64_t KvCache::pages_needed(int n) const {
  const int P = pool_->page_tokens();
  int64_t need = KvPool::pages_for(n, P) - (int64_t)pages_.size();
  if (need < 0) need = 0;
  // The page holding the next position is written into: a copy if another sequence shares it.
  if (n > length_ && length_ % P != 0 && pool_->refcount(pages_[length_ / P]) > 1) need++;
  return need;
}

void KvCache::prepare(int n) {
  if (n > max_length_)
    fail("context full: the sequence would reach {} tokens but its context holds {} (use a larger --ctx)", n,
         max_length_);
  if (n <= length_) return;
  const int P = pool_->page_tokens();
  pool_->require(pages_needed(n));  // all or nothing: no page is taken if the budget is short
  if (length_ % P != 0) {
    int32_t& last = pages_[length_ / P];
    if (pool_->refcount(last) > 1) {
      const int32_t copy = pool_->allocate();
      pool_->copy_page(copy, last);
      pool_->release(last);
      last = copy;
    }
  }
  while ((int64_t)pages_.size() < KvPool::pages_for(n, P)) pages_.push_back(pool_->allocate());
}

void KvCache::set_length(int n) {
  if (n < 0 || n > max_length_ || KvPool::pages_for(n, pool_->page_tokens()) > (int64_t)pages_.size())
    fail("KV cache: length {} is outside the prepared range", n);
  length_ = n;
}

}  // namespace stepq
