// GGUF v3 writer (../shared/reference/gguf-and-quants.md §1), streaming with bounded memory.
//
// Use: declare the metadata (add_kv and its shorthands) and the tensors (add_tensor), call
// begin_data() to write the header, then write() each tensor's bytes in declaration order (in
// one piece or row block by row block), then finish(). Only the header is held in memory; the
// tensor bytes go straight to a buffered file.
//
// The file is written to `path + ".tmp"` and renamed to `path` by finish(), so a crash or an
// error never leaves a partial file under the real name; a writer destroyed before finish()
// removes the .tmp file.
//
// The layout is what ggml and gguf-py make: tensor data offsets are the running sum of each
// tensor's size rounded up to the alignment, every tensor (the last too) is padded with zeros
// to the alignment, and `general.alignment` is written only when it is not the default 32.
//
// stepq-private weight types (QType ids >= kFirstPrivateQType) are unknown to ggml and gguf-py,
// which reject unknown tensor type ids. Such a tensor is stored as ggml type I8 (24) with
// ne = [row bytes, ne[1], ne[2], ne[3]] and a string KV `stepq.qtype.<tensor name>` = the
// type's name ("HQ3_64"); GgufFile resolves it back. The writer owns the `stepq.qtype.`
// namespace: those keys are made from the declared tensors at begin_data(), and a caller's
// key there that names no private-type tensor (copied from a source file whose tensor was since
// re-typed) is dropped.
//
// Every misuse (a duplicate tensor, a value that does not fit its type, writing out of order,
// too many or too few bytes) and every I/O failure throws stepq::Error naming the file, key or
// tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "kernels/cpu/quant_types.h"

namespace stepq {

// Ids at or above this are stepq's own weight formats, stored as I8 tensors (see above).
constexpr uint32_t kFirstPrivateQType = 40;
constexpr uint32_t kGgmlTypeI8 = 24;
// Prefix of the KV that gives a private-type tensor's real type: "stepq.qtype.<tensor name>".
inline constexpr std::string_view kStepqQTypeKeyPrefix = "stepq.qtype.";

class GgufWriter {
 public:
  // Creates `path + ".tmp"` (throws Error naming it and the OS reason if it cannot).
  explicit GgufWriter(std::string path);
  ~GgufWriter();  // removes the .tmp file unless finish() succeeded
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Data alignment: a power of two in [1, 2^20]; default 32. Written as `general.alignment`
  // (uint32) only if not 32. An add_kv of `general.alignment` (e.g. copied from another file)
  // sets it the same way.
  void set_alignment(size_t a);
  size_t alignment() const { return alignment_; }

  // Sets a metadata key. One value per key: setting a key again replaces its value and keeps the
  // position where it was first set. The value has the shape GgufFile gives (so every KV of a
  // read file can be copied verbatim): integers of every width as int64 (uint64 as uint64),
  // bool as bool, floats as double, arrays with their element type and widened values. Values
  // are narrowed to their type on writing; one that does not fit (300 as uint8, -1 as uint32,
  // 1e39 as float32, 2 as a bool element) is an Error, as is a value whose variant does not
  // match its type.
  void add_kv(std::string key, const GgufValue& v);
  void add_kv(std::string key, GgufValue&& v);  // same, without copying (long token lists)
  void add_string(std::string key, std::string v);
  void add_bool(std::string key, bool v);
  void add_u8(std::string key, uint8_t v);
  void add_i8(std::string key, int8_t v);
  void add_u16(std::string key, uint16_t v);
  void add_i16(std::string key, int16_t v);
  void add_u32(std::string key, uint32_t v);
  void add_i32(std::string key, int32_t v);
  void add_u64(std::string key, uint64_t v);
  void add_i64(std::string key, int64_t v);
  void add_f32(std::string key, float v);
  void add_f64(std::string key, double v);
  void add_string_array(std::string key, std::vector<std::string> v);
  void add_i32_array(std::string key, std::span<const int32_t> v);
  void add_u32_array(std::string key, std::span<const uint32_t> v);
  void add_f32_array(std::string key, std::span<const float> v);
  void add_bool_array(std::string key, std::span<const bool> v);
  // Removes a key set earlier (no-op if absent).
  void remove_kv(std::string_view key);
  bool has_kv(std::string_view key) const { return kv_index_.count(std::string(key)) != 0; }
  const GgufValue* find_kv(std::string_view key) const;

  // Declares a tensor of n_dims = ne.size() (1..4) dimensions; ne[0] is the contiguous row
  // length and must be a multiple of the type's block size. Its size is
  // row_bytes(type, ne[0]) * rows. The type must be a weight format stepq reads (a ggml type or a
  // private one). Names are 1..63 bytes and unique.
  void add_tensor(std::string name, std::span<const int64_t> ne, QType type);
  void add_tensor(std::string name, std::initializer_list<int64_t> ne, QType type) {
    add_tensor(std::move(name), std::span<const int64_t>(ne.begin(), ne.size()), type);
  }

  // Writes the header: magic, version 3, counts, the KVs, the tensor infos, padding to the
  // alignment. No add_kv/add_tensor/set_alignment after this.
  void begin_data();

  // Appends n bytes of tensor `name`. Tensors are written in declaration order, each in one or
  // more pieces; naming a tensor other than the one being written (or, once that one is
  // complete, the next one) or writing more bytes than it has is an Error.
  void write(std::string_view name, const void* data, size_t n);

  // Checks every tensor is complete, flushes, fsyncs and renames the .tmp file to the path.
  // Calls begin_data() first if it was not called (a file of metadata only).
  void finish();

  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_path_; }
  // Bytes of tensor data each declared tensor takes in the file (before padding).
  size_t tensor_bytes(std::string_view name) const;

 private:
  struct Tensor {
    std::string name;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // as declared
    QType type = QType::F32;
    uint64_t n_bytes = 0;
    uint64_t offset = 0;  // relative to the data section; set by begin_data
    uint64_t written = 0;
  };
  enum class State { Declaring, Data, Finished, Failed };

  void set_kv(std::string key, GgufValue v);
  void require_declaring(const char* what) const;
  void put(const void* p, size_t n);
  void pad_to_alignment();
  void put_u32(uint32_t v) { put(&v, 4); }
  void put_u64(uint64_t v) { put(&v, 8); }
  void put_string(std::string_view s);
  void put_value(const GgufValue& v);
  [[noreturn]] void io_error(const char* op);

  std::string path_;
  std::string tmp_path_;
  std::FILE* f_ = nullptr;
  std::unique_ptr<char[]> buf_;  // stdio buffer
  State state_ = State::Declaring;
  size_t alignment_ = 32;
  uint64_t pos_ = 0;  // bytes written so far
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<Tensor> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
  size_t cur_ = 0;  // tensor being written
};

}  // namespace stepq
