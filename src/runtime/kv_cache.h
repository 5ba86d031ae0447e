// Per-sequence key/value cache in f16 (llama.cpp's default cache type, so attention sees the same
// rounding). Layout per layer: K and V as (capacity, n_head_kv * head_dim) row-major.
//
// This is the contiguous first version: capacity is fixed when the sequence is created.
// Rolling back is setting the length; forking copies. The paged cache (shared pages, copy on
// write) replaces the storage behind this interface.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

namespace stepq {

struct ModelConfig;

class KvCache {
 public:
  KvCache(const ModelConfig& c, int capacity);

  int length() const { return length_; }      // tokens stored
  int capacity() const { return capacity_; }
  int kv_dim() const { return kv_dim_; }

  uint16_t* k(int layer, int pos) { return k_.data() + ((size_t)layer * capacity_ + pos) * kv_dim_; }
  uint16_t* v(int layer, int pos) { return v_.data() + ((size_t)layer * capacity_ + pos) * kv_dim_; }
  const uint16_t* k(int layer, int pos) const { return k_.data() + ((size_t)layer * capacity_ + pos) * kv_dim_; }
  const uint16_t* v(int layer, int pos) const { return v_.data() + ((size_t)layer * capacity_ + pos) * kv_dim_; }

  void set_length(int n);   // after the forward wrote positions [length, n)
  void truncate(int n);     // roll back to n tokens (n <= length)
  std::unique_ptr<KvCache> fork() const;

 private:
  int n_layer_, kv_dim_, capacity_, length_ = 0;
  std::vector<uint16_t> k_, v_;
};

}  // namespace stepq
