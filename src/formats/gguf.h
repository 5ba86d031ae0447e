// GGUF v2/v3 reader (../shared/reference/gguf-and-quants.md §1).
//
// The file is mmapped; metadata is parsed once into owned values, tensor data stays in the
// mapping and is used in place. Every count, length, offset and size is checked against the
// bytes that remain before it is used, so a truncated, corrupt or hostile file gives an Error
// naming what is wrong, never a crash, a hang or a huge allocation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "kernels/cpu/quant_types.h"

namespace stepq {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

struct GgufArray {
  GgufType elem_type = GgufType::U8;
  // Exactly one of these is filled, by element type: integers and bools widen to int64
  // (u64 values above INT64_MAX are rejected), floats to double, strings as strings.
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  size_t size() const;
};

struct GgufValue {
  GgufType type = GgufType::U8;
  std::variant<int64_t, uint64_t, double, bool, std::string, GgufArray> v;
};

struct GgufTensorInfo {
  std::string name;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous row length
  QType type = QType::F32;
  uint64_t offset = 0;           // relative to the data section
  size_t n_bytes = 0;
  const uint8_t* data = nullptr; // inside the mapping
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
};

class MappedFile;

class GgufFile {
 public:
  // mmaps and parses `path`; throws Error with the path in the message.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses a buffer the caller keeps alive (fuzzing, tests). `what` names it in errors.
  static std::unique_ptr<GgufFile> parse(const uint8_t* data, size_t size, std::string what = "<buffer>");
  ~GgufFile();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }

  // Metadata, in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. Integer getters accept any integer type whose value fits; float getters
  // accept F32/F64. A missing key or a wrong type throws an Error naming the key and the file.
  std::string get_string(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const GgufArray& get_array(std::string_view key) const;
  // Same, with a default when the key is absent (a wrong type still throws).
  std::string get_string(std::string_view key, std::string def) const;
  uint32_t get_u32(std::string_view key, uint32_t def) const;
  float get_f32(std::string_view key, float def) const;
  bool get_bool(std::string_view key, bool def) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* tensor(std::string_view name) const;  // nullptr if absent

 private:
  GgufFile() = default;
  void parse_all();

  std::string path_;
  std::unique_ptr<MappedFile> map_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace stepq
