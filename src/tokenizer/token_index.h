// Open-addressing hash tables for the two lookups in the tokenizers' inner loops: token text ->
// id (SentencePiece tries every adjacent pair of symbols) and (left id, right id) -> merge rank
// (BPE). Built once at load, read-only afterwards. One probe sequence over a flat array costs
// about one cache miss where std::unordered_map costs two or three.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace stepq {

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xC2B2AE3D27D4EB4Full);
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 29);
}

inline uint64_t hash_u64(uint64_t x) {
  x = (x ^ (x >> 33)) * 0xFF51AFD7ED558CCDull;
  x = (x ^ (x >> 33)) * 0xC4CEB9FE1A85EC53ull;
  return x ^ (x >> 33);
}

// Text -> id over texts owned elsewhere (`texts[id]` must stay alive and unchanged).
class TokenIndex {
 public:
  // Returns the id already holding `text` if there is one (and does not insert), else -1.
  int32_t insert(std::string_view text, int32_t id, const std::vector<std::string>& texts) {
    if ((size_ + 1) * 2 > slots_.size()) grow(texts);
    const uint64_t h = hash_bytes(text);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s = {static_cast<uint32_t>(h >> 32), id};
        size_++;
        return -1;
      }
      if (s.tag == static_cast<uint32_t>(h >> 32) && texts[s.id] == text) return s.id;
    }
  }
  int32_t find(std::string_view text, const std::vector<std::string>& texts) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash_bytes(text);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.tag == static_cast<uint32_t>(h >> 32) && texts[s.id] == text) return s.id;
    }
  }

 private:
  struct Slot {
    uint32_t tag = 0;  // high half of the hash: most mismatches never touch the text
    int32_t id = -1;
  };
  void grow(const std::vector<std::string>& texts) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    size_ = 0;
    for (const Slot& s : old)
      if (s.id >= 0) insert(texts[s.id], s.id, texts);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

// uint64 key -> int32 value; the first insert of a key wins.
class PairIndex {
 public:
  void reserve(size_t n) {
    size_t cap = 1024;
    while (cap < n * 2) cap *= 2;
    if (cap > slots_.size()) rehash(cap);
  }
  void insert(uint64_t key, int32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 1024 : slots_.size() * 2);
    for (size_t i = hash_u64(key) & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.value < 0) {
        s = {key, value};
        size_++;
        return;
      }
      if (s.key == key) return;
    }
  }
  int32_t find(uint64_t key) const {
    if (slots_.empty()) return -1;
    for (size_t i = hash_u64(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.value < 0) return -1;
      if (s.key == key) return s.value;
    }
  }

 private:
  struct Slot {
    uint64_t key = 0;
    int32_t value = -1;  // values are >= 0; -1 marks an empty slot
  };
  void rehash(size_t cap) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    size_ = 0;
    for (const Slot& s : old)
      if (s.value >= 0) insert(s.key, s.value);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
};

}  // namespace stepq
