#include "formats/gguf.h"

#include <cstring>
#include <limits>

#include "base/error.h"
#include "base/mapped_file.h"
#include "formats/gguf_writer.h"

namespace stepq {

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "uint8";
    case GgufType::I8: return "int8";
    case GgufType::U16: return "uint16";
    case GgufType::I16: return "int16";
    case GgufType::U32: return "uint32";
    case GgufType::I32: return "int32";
    case GgufType::F32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::U64: return "uint64";
    case GgufType::I64: return "int64";
    case GgufType::F64: return "float64";
  }
  return "invalid";
}

size_t GgufArray::size() const { return ints.size() + floats.size() + strings.size(); }

namespace {

constexpr uint64_t kMaxStringLength = 1ull << 30;   // as ggml
constexpr uint64_t kMaxArrayElements = 1ull << 30;  // as ggml

// Bytes one scalar of this type occupies; 0 for STRING/ARRAY (variable) and invalid types.
size_t scalar_size(uint32_t t) {
  switch ((GgufType)t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}
bool valid_type(uint32_t t) { return t <= (uint32_t)GgufType::F64; }

// Reads little-endian fields with a bounds check before every read.
class Cursor {
 public:
  Cursor(const uint8_t* p, size_t n, const std::string& what) : p_(p), n_(n), what_(what) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

  void need(uint64_t bytes, const char* field) {
    if (bytes > remaining())
      fail("{}: truncated or corrupt GGUF: {} needs {} bytes at offset {}, but only {} remain", what_,
           field, bytes, pos_, remaining());
  }
  template <typename T>
  T read(const char* field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* field) {
    uint64_t len = read<uint64_t>(field);
    if (len > kMaxStringLength)
      fail("{}: corrupt GGUF: {} has length {} at offset {} (limit {})", what_, field, len, pos_ - 8,
           kMaxStringLength);
    need(len, field);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), (size_t)len);
    pos_ += len;
    return s;
  }
  void skip(uint64_t bytes, const char* field) {
    need(bytes, field);
    pos_ += bytes;
  }
  const std::string& what() const { return what_; }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  const std::string& what_;
};

int64_t read_int_scalar(Cursor& c, GgufType t, const std::string& key) {
  switch (t) {
    case GgufType::U8: return c.read<uint8_t>("value");
    case GgufType::I8: return c.read<int8_t>("value");
    case GgufType::U16: return c.read<uint16_t>("value");
    case GgufType::I16: return c.read<int16_t>("value");
    case GgufType::U32: return c.read<uint32_t>("value");
    case GgufType::I32: return c.read<int32_t>("value");
    case GgufType::I64: return c.read<int64_t>("value");
    case GgufType::BOOL: {
      uint8_t b = c.read<uint8_t>("value");
      return b != 0;
    }
    case GgufType::U64: {
      uint64_t v = c.read<uint64_t>("value");
      if (v > (uint64_t)std::numeric_limits<int64_t>::max())
        fail("{}: array '{}' holds a uint64 value {} too large to use", c.what(), key, v);
      return (int64_t)v;
    }
    default: fail("{}: internal: not an integer type", c.what());
  }
}

GgufValue read_value(Cursor& c, uint32_t type, const std::string& key) {
  if (!valid_type(type)) fail("{}: corrupt GGUF: key '{}' has invalid value type {}", c.what(), key, type);
  GgufValue out;
  out.type = (GgufType)type;
  switch (out.type) {
    case GgufType::F32: out.v = (double)c.read<float>("float32 value"); break;
    case GgufType::F64: out.v = c.read<double>("float64 value"); break;
    case GgufType::BOOL: out.v = c.read<uint8_t>("bool value") != 0; break;
    case GgufType::U64: out.v = c.read<uint64_t>("uint64 value"); break;
    case GgufType::STRING: out.v = c.read_string("string value"); break;
    case GgufType::ARRAY: {
      uint32_t et = c.read<uint32_t>("array element type");
      uint64_t n = c.read<uint64_t>("array length");
      if (!valid_type(et) || et == (uint32_t)GgufType::ARRAY)
        fail("{}: corrupt GGUF: array '{}' has invalid element type {} (nested arrays are not supported)",
             c.what(), key, et);
      if (n > kMaxArrayElements)
        fail("{}: corrupt GGUF: array '{}' claims {} elements (limit {})", c.what(), key, n, kMaxArrayElements);
      // Every element needs at least its scalar size (8 for a string's length): check before
      // allocating so a hostile count cannot make us reserve gigabytes.
      size_t min_elem = et == (uint32_t)GgufType::STRING ? 8 : scalar_size(et);
      if (n * min_elem > c.remaining())
        fail("{}: truncated or corrupt GGUF: array '{}' claims {} elements of {} but only {} bytes remain",
             c.what(), key, n, gguf_type_name((GgufType)et), c.remaining());
      GgufArray a;
      a.elem_type = (GgufType)et;
      if (a.elem_type == GgufType::STRING) {
        a.strings.reserve(n);
        for (uint64_t i = 0; i < n; i++) a.strings.push_back(c.read_string("array string"));
      } else if (a.elem_type == GgufType::F32 || a.elem_type == GgufType::F64) {
        a.floats.reserve(n);
        for (uint64_t i = 0; i < n; i++)
          a.floats.push_back(a.elem_type == GgufType::F32 ? (double)c.read<float>("array float")
                                                          : c.read<double>("array float"));
      } else {
        a.ints.reserve(n);
        for (uint64_t i = 0; i < n; i++) a.ints.push_back(read_int_scalar(c, a.elem_type, key));
      }
      out.v = std::move(a);
      break;
    }
    default: out.v = read_int_scalar(c, out.type, key); break;
  }
  return out;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

// A stepq-private weight type is stored as an I8 tensor whose ne[0] counts the bytes of a row,
// with a string KV stepq.qtype.<name> giving the real type (gguf_writer.h). Turns `t` and
// `type` into the real type's; a plain I8 tensor (no such key) is left as it is, and is refused
// like any other type stepq does not read.
void resolve_private_type(const GgufFile& f, GgufTensorInfo& t, uint32_t& type) {
  const std::string& path = f.path();
  const std::string key = std::string(kStepqQTypeKeyPrefix) + t.name;
  const GgufValue* v = f.find(key);
  if (!v) return;
  if (v->type != GgufType::STRING)
    fail("{}: tensor '{}': {} must be a string, found {}", path, t.name, key, gguf_type_name(v->type));
  const std::string& name = std::get<std::string>(v->v);
  const std::optional<QType> q = qtype_from_name(name);
  const QTypeInfo* qi = q ? qtype_info((uint32_t)*q) : nullptr;
  if (!qi)
    fail("{}: tensor '{}': {} names unknown type '{}' (file made by a newer stepq?)", path, t.name, key,
         name);
  if (!qi->storage)
    fail("{}: tensor '{}': {} names type '{}', which stepq does not support as a weight format", path, t.name,
         key, name);
  if ((uint32_t)*q < kFirstPrivateQType)
    fail("{}: corrupt GGUF: tensor '{}': {} names '{}', which is a ggml type, not a stepq-private one (those "
         "are stored as themselves, not as int8)",
         path, t.name, key, name);
  if (t.ne[0] % qi->type_size != 0)
    fail("{}: corrupt GGUF: tensor '{}' ({} stored as int8) has rows of {} bytes, not a multiple of "
         "the {}-byte block",
         path, t.name, qi->name, t.ne[0], qi->type_size);
  const int64_t ne0 = t.ne[0] / qi->type_size * qi->block_size;
  uint64_t n_el = (uint64_t)ne0;
  if (ne0 > ((int64_t)1 << 40) || mul_overflows(n_el, (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]), &n_el) ||
      n_el > ((uint64_t)1 << 50))
    fail("{}: corrupt GGUF: tensor '{}' has too many elements", path, t.name);
  t.ne[0] = ne0;
  type = (uint32_t)*q;
}

}  // namespace

GgufFile::~GgufFile() = default;

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->map_ = std::make_unique<MappedFile>(path);
  f->base_ = f->map_->data();
  f->size_ = f->map_->size();
  f->parse_all();
  return f;
}

std::unique_ptr<GgufFile> GgufFile::parse(const uint8_t* data, size_t size, std::string what) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = std::move(what);
  f->base_ = data;
  f->size_ = size;
  f->parse_all();
  return f;
}

void GgufFile::parse_all() {
  Cursor c(base_, size_, path_);
  if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0)
    fail("{}: not a GGUF file (the first 4 bytes are not 'GGUF')", path_);
  c.skip(4, "magic");
  version_ = c.read<uint32_t>("version");
  if ((version_ & 0xFFFF) == 0 && version_ != 0)
    fail("{}: GGUF version field {:#x} looks byte-swapped: big-endian GGUF files are not supported", path_,
         version_);
  if (version_ == 1) fail("{}: GGUF version 1 is not supported (only 2 and 3); re-convert the model", path_);
  if (version_ != 2 && version_ != 3)
    fail("{}: unsupported GGUF version {} (stepq reads versions 2 and 3)", path_, version_);
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 + 4 + 8 + 4 + 8. Counts larger than the file can hold are corrupt; rejecting them here
  // keeps a hostile count from driving a huge reserve().
  if (n_kv > c.remaining() / 13)
    fail("{}: corrupt GGUF: metadata count {} cannot fit in the {} bytes that remain", path_, n_kv, c.remaining());
  if (n_tensors > c.remaining() / 32)
    fail("{}: corrupt GGUF: tensor count {} cannot fit in the {} bytes that remain", path_, n_tensors,
         c.remaining());

  kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; i++) {
    std::string key = c.read_string("metadata key");
    if (key.empty()) fail("{}: corrupt GGUF: metadata entry {} has an empty key", path_, i);
    uint32_t type = c.read<uint32_t>("metadata value type");
    GgufValue v = read_value(c, type, key);
    if (kv_index_.count(key)) fail("{}: corrupt GGUF: duplicate metadata key '{}'", path_, key);
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::U32)
      fail("{}: general.alignment must be uint32, found {}", path_, gguf_type_name(a->type));
    int64_t al = std::get<int64_t>(a->v);
    if (al == 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      fail("{}: general.alignment = {} is not a power of two in [1, 2^20]", path_, al);
    alignment_ = (size_t)al;
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; i++) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor name");
    if (t.name.empty() || t.name.size() >= 64)
      fail("{}: corrupt GGUF: tensor {} has a name of {} bytes (must be 1..63)", path_, i, t.name.size());
    uint32_t n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims < 1 || n_dims > 4)
      fail("{}: corrupt GGUF: tensor '{}' has {} dimensions (must be 1..4)", path_, t.name, n_dims);
    t.n_dims = (int)n_dims;
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
      uint64_t ne = c.read<uint64_t>("tensor dimension");
      if (ne == 0 || ne > (uint64_t)1 << 40)
        fail("{}: corrupt GGUF: tensor '{}' dimension {} is {}", path_, t.name, d, ne);
      if (mul_overflows(n_el, ne, &n_el) || n_el > ((uint64_t)1 << 50))
        fail("{}: corrupt GGUF: tensor '{}' has too many elements", path_, t.name);
      t.ne[d] = (int64_t)ne;
    }
    uint32_t type = c.read<uint32_t>("tensor type");
    if (type == kGgmlTypeI8) resolve_private_type(*this, t, type);
    const QTypeInfo* qi = type < kQTypeIdLimit ? qtype_info(type) : nullptr;
    if (!qi || !qi->storage)
      fail("{}: tensor '{}' has type {} which stepq does not support (supported: F32 F16 BF16 Q4_0 Q4_1 "
           "Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL)",
           path_, t.name, qtype_name(type));
    t.type = (QType)type;
    if (t.ne[0] % qi->block_size != 0)
      fail("{}: corrupt GGUF: tensor '{}' ({}) has rows of {} elements, not a multiple of the block size {}",
           path_, t.name, qi->name, t.ne[0], qi->block_size);
    uint64_t nb = (uint64_t)(t.ne[0] / qi->block_size) * (uint64_t)qi->type_size;
    if (mul_overflows(nb, (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]), &nb))
      fail("{}: corrupt GGUF: tensor '{}' is too large", path_, t.name);
    t.n_bytes = nb;
    t.offset = c.read<uint64_t>("tensor offset");
    if (t.offset % alignment_ != 0)
      fail("{}: corrupt GGUF: tensor '{}' offset {} is not a multiple of the alignment {}", path_, t.name,
           t.offset, alignment_);
    if (tensor_index_.count(t.name)) fail("{}: corrupt GGUF: duplicate tensor name '{}'", path_, t.name);
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  size_t end_of_infos = c.pos();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_offset_ > size_)
    fail("{}: truncated GGUF: the data section would start at byte {} but the file has {} bytes", path_,
         data_offset_, size_);
  for (GgufTensorInfo& t : tensors_) {
    uint64_t begin = (uint64_t)data_offset_ + t.offset;
    if (t.offset > size_ || begin > size_ || t.n_bytes > size_ - begin)
      fail("{}: truncated or corrupt GGUF: tensor '{}' ({} bytes at data offset {}) extends past the end "
           "of the file ({} bytes)",
           path_, t.name, t.n_bytes, t.offset, size_);
    t.data = base_ + begin;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
[[noreturn]] void missing(const std::string& path, std::string_view key) {
  fail("{}: required metadata key '{}' is missing", path, key);
}
[[noreturn]] void wrong_type(const std::string& path, std::string_view key, GgufType t, const char* want) {
  fail("{}: metadata key '{}' has type {}, expected {}", path, key, gguf_type_name(t), want);
}
}  // namespace

std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(path_, key);
  if (v->type != GgufType::STRING) wrong_type(path_, key, v->type, "string");
  return std::get<std::string>(v->v);
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(path_, key);
  if (v->type == GgufType::U64) {
    uint64_t u = std::get<uint64_t>(v->v);
    if (u > (uint64_t)std::numeric_limits<int64_t>::max())
      fail("{}: metadata key '{}' = {} is out of range", path_, key, u);
    return (int64_t)u;
  }
  if (!std::holds_alternative<int64_t>(v->v) || v->type == GgufType::BOOL)
    wrong_type(path_, key, v->type, "an integer");
  return std::get<int64_t>(v->v);
}

uint32_t GgufFile::get_u32(std::string_view key) const {
  int64_t v = get_int(key);
  if (v < 0 || v > (int64_t)std::numeric_limits<uint32_t>::max())
    fail("{}: metadata key '{}' = {} is out of range for uint32", path_, key, v);
  return (uint32_t)v;
}

float GgufFile::get_f32(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(path_, key);
  if (v->type != GgufType::F32 && v->type != GgufType::F64) wrong_type(path_, key, v->type, "float32");
  return (float)std::get<double>(v->v);
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(path_, key);
  if (v->type != GgufType::BOOL) wrong_type(path_, key, v->type, "bool");
  return std::get<bool>(v->v);
}

const GgufArray& GgufFile::get_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) missing(path_, key);
  if (v->type != GgufType::ARRAY) wrong_type(path_, key, v->type, "array");
  return std::get<GgufArray>(v->v);
}

std::string GgufFile::get_string(std::string_view key, std::string def) const {
  return has(key) ? get_string(key) : def;
}
uint32_t GgufFile::get_u32(std::string_view key, uint32_t def) const { return has(key) ? get_u32(key) : def; }
float GgufFile::get_f32(std::string_view key, float def) const { return has(key) ? get_f32(key) : def; }
bool GgufFile::get_bool(std::string_view key, bool def) const { return has(key) ? get_bool(key) : def; }

}  // namespace stepq
