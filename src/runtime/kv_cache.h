// Paged key/value cache in f16 (llama.cpp's default cache type, so attention sees the same
// rounding).
//
// A KvPool owns fixed-size pages; each page holds `page_tokens` positions of every layer's keys
// and values. A KvCache is one sequence: a block table (page ids in position order) and a
// length. Sequences in one pool share pages by reference count:
//   - fork() gives a child that points at all of the parent's pages (nothing copied);
//   - the first write into a shared page copies it (copy on write; only the page holding the
//     next position can ever be written, so at most one page per sequence is copied);
//   - truncate(n) rolls back to n tokens and hands whole pages beyond n back to the pool;
//   - the destructor frees the sequence's pages.
// The pool's size is its memory budget, fixed at creation; running out is an Error that says
// how much is in use, never a crash. Not thread-safe: one scheduler thread owns a pool (the
// forward allocates before it goes parallel).
//
// Page layout, per layer: K then V. Keys are stored transposed, (n_head_kv, head_dim,
// page_tokens): the scores of 16 positions against a query are then plain vector fmas over
// head_dim, with no horizontal sums. Values are (n_head_kv, page_tokens, head_dim): the p·v
// accumulation reads whole rows.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace stepq {

struct ModelConfig;

class KvPool {
 public:
  static constexpr int kDefaultPageTokens = 16;

  // A pool of n_pages pages. The memory is reserved, not touched: a page costs RAM only once
  // written. Throws if n_pages pages could not fit in this machine's memory.
  KvPool(const ModelConfig& c, int64_t n_pages, int page_tokens = kDefaultPageTokens);
  ~KvPool();
  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  // Pages for `tokens` positions of one sequence (rounded up to whole pages).
  static int64_t pages_for(int64_t tokens, int page_tokens = kDefaultPageTokens);

  int page_tokens() const { return page_tokens_; }
  int64_t n_pages() const { return n_pages_; }
  int64_t free_pages() const { return (int64_t)free_.size(); }
  size_t page_bytes() const { return page_elems_ * sizeof(uint16_t); }

  // Keys of KV head `head` of `layer` in page `page`: (head_dim, page_tokens) f16 (transposed);
  // values: (page_tokens, head_dim) f16.
  uint16_t* k(int32_t page, int layer, int head) { return base_ + offset(page, layer, 0, head); }
  uint16_t* v(int32_t page, int layer, int head) { return base_ + offset(page, layer, 1, head); }
  const uint16_t* k(int32_t page, int layer, int head) const { return base_ + offset(page, layer, 0, head); }
  const uint16_t* v(int32_t page, int layer, int head) const { return base_ + offset(page, layer, 1, head); }

  int32_t allocate();  // a fresh page with one reference; throws when the budget is used up
  void require(int64_t pages) const;  // throws the budget message unless `pages` pages are free
  void retain(int32_t page) { refs_[page]++; }
  void release(int32_t page);
  int refcount(int32_t page) const { return refs_[page]; }
  void copy_page(int32_t dst, int32_t src);  // every layer and head

 private:
  size_t offset(int32_t page, int layer, int kv, int head) const {
    return (size_t)page * page_elems_ + ((size_t)(layer * 2 + kv) * n_head_kv_ + head) * head_elems_;
  }

  int n_layer_, n_head_kv_, head_dim_, page_tokens_;
  int64_t n_pages_;
  size_t head_elems_, page_elems_, map_bytes_ = 0;
  uint16_t* base_ = nullptr;
  std::vector<int32_t> free_;  // a stack: the most recently freed page is reused first (warm)
  std::vector<int32_t> refs_;
};

class KvCache {
 public:
  // A sequence in a shared pool, at most max_length tokens long.
  KvCache(std::shared_ptr<KvPool> pool, int max_length);
  // A sequence with a pool of its own, sized for exactly max_length tokens.
  KvCache(const ModelConfig& c, int max_length);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int length() const { return length_; }       // tokens stored
  int capacity() const { return max_length_; }  // the sequence's context limit
  KvPool& pool() const { return *pool_; }
  std::span<const int32_t> pages() const { return pages_; }

  // A new sequence in the same pool sharing every page (copy on write).
  std::unique_ptr<KvCache> fork() const;
  // Roll back to n tokens (n <= length); frees the pages wholly beyond n.
  void truncate(int n);
  // Exchanges contents (pages and length) with another sequence of the same pool: the fork that
  // won (Lookahead Reasoning's branches) becomes this sequence, the other one is freed with it.
  void swap(KvCache& other);

  // For the forward: pages that prepare(n) would take from the pool (new pages plus a copy of a
  // shared page); then prepare(n) makes positions [length, n) writable; set_length(n) after
  // writing them.
  int64_t pages_needed(int n) const;
  void prepare(int n);
  void set_length(int n);

  // The page holding position pos, and pos's row inside it.
  int32_t page_of(int pos) const { return pages_[pos / pool_->page_tokens()]; }
  int row_of(int pos) const { return pos % pool_->page_tokens(); }

 private:
  std::shared_ptr<KvPool> pool_;
  int max_length_, length_ = 0;
  std::vector<int32_t> pages_;
};

}  // namespace stepq
