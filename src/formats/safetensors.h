// safetensors reader (Hugging Face's tensor file: 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
// data region; offsets are relative to the start of the data region).
//
// As the GGUF reader: the file is mmapped, the header parsed once, tensor data used in place.
// Everything is checked before use (header length within the file, JSON well formed, dtype
// known, shape product x dtype size == the offsets' span without overflow, offsets inside the
// data region, no two tensors overlapping, no duplicate names), so a truncated, corrupt or hostile
// file gives an Error naming the file and what is wrong, never a crash or a huge allocation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace stepq {

enum class StDtype : uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };
const char* st_dtype_name(StDtype t);
size_t st_dtype_size(StDtype t);  // bytes per element

struct SafetensorsTensor {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;     // row-major, last dimension contiguous; empty = a scalar
  uint64_t begin = 0, end = 0;    // data_offsets, relative to the data region
  const uint8_t* data = nullptr;  // inside the mapping (no alignment is promised by the format)
  size_t n_bytes = 0;
  int64_t n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;  // cannot overflow: checked at parse time
    return n;
  }
};

class MappedFile;

class SafetensorsFile {
 public:
  // Header length limit, as the reference implementation (safetensors crate): 100 MB.
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // mmaps and parses `path`; throws Error with the path in the message.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  // Parses a buffer the caller keeps alive (fuzzing, tests). `what` names it in errors.
  static std::unique_ptr<SafetensorsFile> parse(const uint8_t* data, size_t size, std::string what = "<buffer>");
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  size_t file_size() const { return size_; }
  size_t data_offset() const { return data_offset_; }  // 8 + header length

  // Tensors sorted by name (the JSON header is an object: its order carries no meaning).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* tensor(std::string_view name) const;  // nullptr if absent
  // "__metadata__" string pairs, sorted by key.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  void parse_all();

  std::string path_;
  std::unique_ptr<MappedFile> map_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t data_offset_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

}  // namespace stepq
