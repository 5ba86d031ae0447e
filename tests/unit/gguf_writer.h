// Builds GGUF bytes by hand for tests (hostile and minimal files the real writers never make).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace stepq::test {

struct GgufBytes {
  std::vector<uint8_t> b;
  template <typename T>
  void put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b = {'G', 'G', 'U', 'F'};
    put<uint32_t>(version);
    put<uint64_t>(n_tensors);
    put<uint64_t>(n_kv);
  }
  void kv_string(const std::string& k, const std::string& v) { str(k); put<uint32_t>(8); str(v); }
  void kv_u32(const std::string& k, uint32_t v) { str(k); put<uint32_t>(4); put<uint32_t>(v); }
  void kv_f32(const std::string& k, float v) { str(k); put<uint32_t>(6); put<float>(v); }
};

}  // namespace stepq::test
