#include "formats/gguf_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/error.h"

namespace stepq {

namespace {

// The reader's limits (gguf.cpp); the writer never makes a file the reader would refuse.
constexpr uint64_t kMaxStringLength = 1ull << 30;
constexpr uint64_t kMaxArrayElements = 1ull << 30;
constexpr int64_t kMaxDim = (int64_t)1 << 40;
constexpr uint64_t kMaxElements = 1ull << 50;
constexpr size_t kMaxAlignment = (size_t)1 << 20;
constexpr size_t kBufferSize = (size_t)1 << 20;

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64:
      return true;
    default:
      return false;
  }
}

// Whether a signed value fits integer type t (U64: any value >= 0; BOOL: 0 or 1).
bool int_fits(GgufType t, int64_t v) {
  switch (t) {
    case GgufType::U8: return v >= 0 && v <= 0xFF;
    case GgufType::I8: return v >= -128 && v <= 127;
    case GgufType::U16: return v >= 0 && v <= 0xFFFF;
    case GgufType::I16: return v >= -32768 && v <= 32767;
    case GgufType::U32: return v >= 0 && v <= (int64_t)0xFFFFFFFFu;
    case GgufType::I32: return v >= INT32_MIN && v <= INT32_MAX;
    case GgufType::U64: return v >= 0;
    case GgufType::I64: return true;
    case GgufType::BOOL: return v == 0 || v == 1;
    default: return false;
  }
}

// float64 -> float32 loses precision (fine: such values came from float32) but must not overflow.
bool float_fits(GgufType t, double v) {
  if (t == GgufType::F64) return true;
  return !(std::isfinite(v) && std::isinf((float)v));
}

bool valid_type(GgufType t) { return (uint32_t)t <= (uint32_t)GgufType::F64; }

// Checks that a value has the variant its type needs and that it fits; fails naming the key.
void check_value(const std::string& path, const std::string& key, const GgufValue& v) {
  const GgufType t = v.type;
  if (!valid_type(t)) fail("{}: GGUF writer: key '{}' has invalid value type {}", path, key, (uint32_t)t);
  auto mismatch = [&]() {
    fail("{}: GGUF writer: key '{}' has type {} but holds a value of another kind", path, key,
         gguf_type_name(t));
  };
  auto out_of_range = [&](auto value) {
    fail("{}: GGUF writer: key '{}' = {} does not fit its type {}", path, key, value, gguf_type_name(t));
  };
  if (is_int_type(t)) {
    if (const int64_t* i = std::get_if<int64_t>(&v.v)) {
      if (!int_fits(t, *i)) out_of_range(*i);
    } else if (const uint64_t* u = std::get_if<uint64_t>(&v.v)) {
      if (t != GgufType::U64 && (*u > (uint64_t)INT64_MAX || !int_fits(t, (int64_t)*u))) out_of_range(*u);
    } else {
      mismatch();
    }
    return;
  }
  switch (t) {
    case GgufType::BOOL:
      if (const int64_t* i = std::get_if<int64_t>(&v.v)) {
        if (!int_fits(t, *i)) out_of_range(*i);
      } else if (!std::holds_alternative<bool>(v.v)) {
        mismatch();
      }
      return;
    case GgufType::F32:
    case GgufType::F64:
      if (const double* d = std::get_if<double>(&v.v)) {
        if (!float_fits(t, *d)) out_of_range(*d);
      } else {
        mismatch();
      }
      return;
    case GgufType::STRING:
      if (const std::string* s = std::get_if<std::string>(&v.v)) {
        if (s->size() > kMaxStringLength)
          fail("{}: GGUF writer: key '{}' holds a string of {} bytes (limit {})", path, key, s->size(),
               kMaxStringLength);
      } else {
        mismatch();
      }
      return;
    case GgufType::ARRAY: {
      const GgufArray* a = std::get_if<GgufArray>(&v.v);
      if (!a) {
        mismatch();
        return;
      }
      const GgufType et = a->elem_type;
      if (!valid_type(et) || et == GgufType::ARRAY)
        fail("{}: GGUF writer: array '{}' has invalid element type {} (nested arrays are not supported)",
             path, key, (uint32_t)et);
      if (a->size() > kMaxArrayElements)
        fail("{}: GGUF writer: array '{}' has {} elements (limit {})", path, key, a->size(),
             kMaxArrayElements);
      const bool strings = et == GgufType::STRING;
      const bool floats = et == GgufType::F32 || et == GgufType::F64;
      const bool ints = !strings && !floats;
      if ((!strings && !a->strings.empty()) || (!floats && !a->floats.empty()) || (!ints && !a->ints.empty()))
        fail("{}: GGUF writer: array '{}' has element type {} but holds values of another kind", path, key,
             gguf_type_name(et));
      for (size_t i = 0; i < a->ints.size(); i++)
        if (!int_fits(et, a->ints[i]))
          fail("{}: GGUF writer: array '{}' element {} = {} does not fit its element type {}", path, key, i,
               a->ints[i], gguf_type_name(et));
      for (size_t i = 0; i < a->floats.size(); i++)
        if (!float_fits(et, a->floats[i]))
          fail("{}: GGUF writer: array '{}' element {} = {} does not fit its element type {}", path, key, i,
               a->floats[i], gguf_type_name(et));
      for (size_t i = 0; i < a->strings.size(); i++)
        if (a->strings[i].size() > kMaxStringLength)
          fail("{}: GGUF writer: array '{}' element {} is a string of {} bytes (limit {})", path, key, i,
               a->strings[i].size(), kMaxStringLength);
      return;
    }
    default:
      mismatch();
  }
}

// Little-endian bytes of integer value v as type t (checked by check_value beforehand).
size_t encode_int(GgufType t, int64_t v, uint8_t out[8]) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: {
      uint8_t x = (uint8_t)v;
      std::memcpy(out, &x, 1);
      return 1;
    }
    case GgufType::U16: case GgufType::I16: {
      uint16_t x = (uint16_t)v;
      std::memcpy(out, &x, 2);
      return 2;
    }
    case GgufType::U32: case GgufType::I32: {
      uint32_t x = (uint32_t)v;
      std::memcpy(out, &x, 4);
      return 4;
    }
    default: {
      std::memcpy(out, &v, 8);
      return 8;
    }
  }
}

size_t encode_float(GgufType t, double v, uint8_t out[8]) {
  if (t == GgufType::F32) {
    float f = (float)v;
    std::memcpy(out, &f, 4);
    return 4;
  }
  std::memcpy(out, &v, 8);
  return 8;
}

bool is_private(QType t) { return (uint32_t)t >= kFirstPrivateQType; }

std::string qtype_key(std::string_view tensor) {
  return std::string(kStepqQTypeKeyPrefix) + std::string(tensor);
}

}  // namespace

GgufWriter::GgufWriter(std::string path) : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) fail("{}: cannot create the file: {}", tmp_path_, std::strerror(errno));
  buf_.reset(new char[kBufferSize]);
  std::setvbuf(f_, buf_.get(), _IOFBF, kBufferSize);
}

GgufWriter::~GgufWriter() {
  if (f_) std::fclose(f_);
  if (state_ != State::Finished) std::remove(tmp_path_.c_str());
}

void GgufWriter::require_declaring(const char* what) const {
  if (state_ != State::Declaring)
    fail("{}: GGUF writer: {} after begin_data() (metadata and tensors must all be declared first)", path_,
         what);
}

void GgufWriter::set_alignment(size_t a) {
  require_declaring("set_alignment");
  if (a == 0 || (a & (a - 1)) != 0 || a > kMaxAlignment)
    fail("{}: GGUF writer: alignment {} is not a power of two in [1, 2^20]", path_, a);
  alignment_ = a;
  if (a == 32) {
    remove_kv("general.alignment");
  } else {
    GgufValue v;
    v.type = GgufType::U32;
    v.v = (int64_t)a;
    set_kv("general.alignment", std::move(v));
  }
}

void GgufWriter::set_kv(std::string key, GgufValue v) {
  auto it = kv_index_.find(key);
  if (it != kv_index_.end()) {
    kv_[it->second].second = std::move(v);
    return;
  }
  kv_index_.emplace(key, kv_.size());
  kv_.emplace_back(std::move(key), std::move(v));
}

void GgufWriter::add_kv(std::string key, const GgufValue& v) { add_kv(std::move(key), GgufValue(v)); }

void GgufWriter::add_kv(std::string key, GgufValue&& v) {
  require_declaring("add_kv");
  if (key.empty()) fail("{}: GGUF writer: empty metadata key", path_);
  if (key.size() > kMaxStringLength) fail("{}: GGUF writer: metadata key of {} bytes", path_, key.size());
  check_value(path_, key, v);
  if (key == "general.alignment") {
    if (v.type != GgufType::U32)
      fail("{}: GGUF writer: general.alignment must be uint32, got {}", path_, gguf_type_name(v.type));
    const int64_t* a = std::get_if<int64_t>(&v.v);
    set_alignment(a ? (size_t)*a : (size_t)std::get<uint64_t>(v.v));
    return;
  }
  set_kv(std::move(key), std::move(v));
}

void GgufWriter::remove_kv(std::string_view key) {
  require_declaring("remove_kv");
  auto it = kv_index_.find(std::string(key));
  if (it == kv_index_.end()) return;
  const size_t i = it->second;
  kv_index_.erase(it);
  kv_.erase(kv_.begin() + (ptrdiff_t)i);
  for (auto& [k, idx] : kv_index_)
    if (idx > i) idx--;
  if (key == "general.alignment") alignment_ = 32;
}

const GgufValue* GgufWriter::find_kv(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

namespace {
// A value of type t holding v (the alternative of GgufValue::v that t reads).
template <typename V>
GgufValue value(GgufType t, V v) {
  GgufValue g;
  g.type = t;
  g.v = std::move(v);
  return g;
}
GgufValue array(GgufArray a) { return value(GgufType::ARRAY, std::move(a)); }
template <typename T>
GgufValue int_array(GgufType et, std::span<const T> v) {
  GgufArray a;
  a.elem_type = et;
  a.ints.assign(v.begin(), v.end());
  return array(std::move(a));
}
}  // namespace

void GgufWriter::add_string(std::string key, std::string v) { add_kv(std::move(key), value(GgufType::STRING, std::move(v))); }
void GgufWriter::add_bool(std::string key, bool v) { add_kv(std::move(key), value(GgufType::BOOL, v)); }
void GgufWriter::add_u8(std::string key, uint8_t v) { add_kv(std::move(key), value(GgufType::U8, (int64_t)v)); }
void GgufWriter::add_i8(std::string key, int8_t v) { add_kv(std::move(key), value(GgufType::I8, (int64_t)v)); }
void GgufWriter::add_u16(std::string key, uint16_t v) { add_kv(std::move(key), value(GgufType::U16, (int64_t)v)); }
void GgufWriter::add_i16(std::string key, int16_t v) { add_kv(std::move(key), value(GgufType::I16, (int64_t)v)); }
void GgufWriter::add_u32(std::string key, uint32_t v) { add_kv(std::move(key), value(GgufType::U32, (int64_t)v)); }
void GgufWriter::add_i32(std::string key, int32_t v) { add_kv(std::move(key), value(GgufType::I32, (int64_t)v)); }
void GgufWriter::add_i64(std::string key, int64_t v) { add_kv(std::move(key), value(GgufType::I64, v)); }
void GgufWriter::add_u64(std::string key, uint64_t v) { add_kv(std::move(key), value(GgufType::U64, v)); }
void GgufWriter::add_f32(std::string key, float v) { add_kv(std::move(key), value(GgufType::F32, (double)v)); }
void GgufWriter::add_f64(std::string key, double v) { add_kv(std::move(key), value(GgufType::F64, v)); }
void GgufWriter::add_string_array(std::string key, std::vector<std::string> v) {
  GgufArray a;
  a.elem_type = GgufType::STRING;
  a.strings = std::move(v);
  add_kv(std::move(key), array(std::move(a)));
}
void GgufWriter::add_i32_array(std::string key, std::span<const int32_t> v) {
  add_kv(std::move(key), int_array(GgufType::I32, v));
}
void GgufWriter::add_u32_array(std::string key, std::span<const uint32_t> v) {
  add_kv(std::move(key), int_array(GgufType::U32, v));
}
void GgufWriter::add_bool_array(std::string key, std::span<const bool> v) {
  add_kv(std::move(key), int_array(GgufType::BOOL, v));
}
void GgufWriter::add_f32_array(std::string key, std::span<const float> v) {
  GgufArray a;
  a.elem_type = GgufType::F32;
  a.floats.assign(v.begin(), v.end());
  add_kv(std::move(key), array(std::move(a)));
}

void GgufWriter::add_tensor(std::string name, std::span<const int64_t> ne, QType type) {
  require_declaring("add_tensor");
  if (name.empty() || name.size() >= 64)
    fail("{}: GGUF writer: tensor name '{}' has {} bytes (must be 1..63)", path_, name, name.size());
  if (tensor_index_.count(name)) fail("{}: GGUF writer: tensor '{}' declared twice", path_, name);
  if (ne.empty() || ne.size() > 4)
    fail("{}: GGUF writer: tensor '{}' has {} dimensions (must be 1..4)", path_, name, ne.size());
  const QTypeInfo* qi = qtype_info((uint32_t)type);
  if (!qi || !qi->storage)
    fail("{}: GGUF writer: tensor '{}' has type {}, which is not a weight format stepq reads", path_, name,
         qtype_name((uint32_t)type));
  Tensor t;
  t.name = name;
  t.n_dims = (int)ne.size();
  t.type = type;
  uint64_t n_el = 1;
  for (size_t d = 0; d < ne.size(); d++) {
    if (ne[d] < 1 || ne[d] > kMaxDim)
      fail("{}: GGUF writer: tensor '{}' dimension {} is {} (must be 1..2^40)", path_, name, d, ne[d]);
    t.ne[d] = ne[d];
    if (__builtin_mul_overflow(n_el, (uint64_t)ne[d], &n_el) || n_el > kMaxElements)
      fail("{}: GGUF writer: tensor '{}' has too many elements", path_, name);
  }
  if (t.ne[0] % qi->block_size != 0)
    fail("{}: GGUF writer: tensor '{}' ({}) has rows of {} elements, not a multiple of the block size {}",
         path_, name, qi->name, t.ne[0], qi->block_size);
  const uint64_t row = row_bytes(type, t.ne[0]);
  const uint64_t rows = (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]);
  if (__builtin_mul_overflow(row, rows, &t.n_bytes))
    fail("{}: GGUF writer: tensor '{}' is too large", path_, name);
  if (is_private(type)) {
    // Stored as I8 with ne[0] = row bytes: that dimension and element count must pass the
    // reader's limits too.
    if (row > (uint64_t)kMaxDim || t.n_bytes > kMaxElements)
      fail("{}: GGUF writer: tensor '{}' is too large", path_, name);
  }
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back(std::move(t));
  if (is_private(type)) {
    GgufValue v;
    v.type = GgufType::STRING;
    v.v = std::string(qi->name);
    set_kv(qtype_key(name), std::move(v));
  }
}

size_t GgufWriter::tensor_bytes(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  if (it == tensor_index_.end()) fail("{}: GGUF writer: no tensor '{}' was declared", path_, name);
  return (size_t)tensors_[it->second].n_bytes;
}

// ---------------------------------------------------------------------------------------------
// Output

void GgufWriter::io_error(const char* op) {
  const int err = errno;
  state_ = State::Failed;
  fail("{}: {} failed: {}", tmp_path_, op, std::strerror(err));
}

void GgufWriter::put(const void* p, size_t n) {
  if (n == 0) return;
  errno = 0;
  if (std::fwrite(p, 1, n, f_) != n) io_error("write");
  pos_ += n;
}

void GgufWriter::pad_to_alignment() {
  static const uint8_t zeros[4096] = {};
  uint64_t pad = (alignment_ - pos_ % alignment_) % alignment_;
  while (pad > 0) {
    const size_t k = (size_t)std::min<uint64_t>(pad, sizeof zeros);
    put(zeros, k);
    pad -= k;
  }
}

void GgufWriter::put_string(std::string_view s) {
  put_u64(s.size());
  put(s.data(), s.size());
}

void GgufWriter::put_value(const GgufValue& v) {
  uint8_t b[8];
  put_u32((uint32_t)v.type);
  switch (v.type) {
    case GgufType::STRING: put_string(std::get<std::string>(v.v)); return;
    case GgufType::F32: case GgufType::F64: put(b, encode_float(v.type, std::get<double>(v.v), b)); return;
    case GgufType::BOOL: {
      const int64_t* i = std::get_if<int64_t>(&v.v);
      const uint8_t x = i ? (uint8_t)*i : (uint8_t)std::get<bool>(v.v);
      put(&x, 1);
      return;
    }
    case GgufType::ARRAY: {
      const GgufArray& a = std::get<GgufArray>(v.v);
      put_u32((uint32_t)a.elem_type);
      put_u64(a.size());
      for (const std::string& s : a.strings) put_string(s);
      for (double d : a.floats) put(b, encode_float(a.elem_type, d, b));
      for (int64_t i : a.ints) put(b, encode_int(a.elem_type, i, b));
      return;
    }
    default: {
      if (const uint64_t* u = std::get_if<uint64_t>(&v.v)) {
        if (v.type == GgufType::U64) {
          put_u64(*u);
          return;
        }
        put(b, encode_int(v.type, (int64_t)*u, b));
        return;
      }
      put(b, encode_int(v.type, std::get<int64_t>(v.v), b));
      return;
    }
  }
}

void GgufWriter::begin_data() {
  require_declaring("begin_data");
  // The stepq.qtype. keys: one per private-type tensor, naming its type; no others.
  for (const Tensor& t : tensors_) {
    if (!is_private(t.type)) continue;
    GgufValue v;
    v.type = GgufType::STRING;
    v.v = std::string(qtype_info(t.type).name);
    set_kv(qtype_key(t.name), std::move(v));
  }
  std::vector<std::string> stale;
  for (const auto& [k, v] : kv_) {
    if (k.compare(0, kStepqQTypeKeyPrefix.size(), kStepqQTypeKeyPrefix) != 0) continue;
    auto it = tensor_index_.find(k.substr(kStepqQTypeKeyPrefix.size()));
    if (it == tensor_index_.end() || !is_private(tensors_[it->second].type)) stale.push_back(k);
  }
  for (const std::string& k : stale) remove_kv(k);

  uint64_t off = 0;
  for (Tensor& t : tensors_) {
    t.offset = off;
    off += (t.n_bytes + alignment_ - 1) / alignment_ * alignment_;
  }

  state_ = State::Data;
  put("GGUF", 4);
  put_u32(3);
  put_u64(tensors_.size());
  put_u64(kv_.size());
  for (const auto& [k, v] : kv_) {
    put_string(k);
    put_value(v);
  }
  for (const Tensor& t : tensors_) {
    put_string(t.name);
    put_u32((uint32_t)t.n_dims);
    for (int d = 0; d < t.n_dims; d++) {
      const uint64_t ne = d == 0 && is_private(t.type) ? row_bytes(t.type, t.ne[0]) : (uint64_t)t.ne[d];
      put_u64(ne);
    }
    put_u32(is_private(t.type) ? kGgmlTypeI8 : (uint32_t)t.type);
    put_u64(t.offset);
  }
  pad_to_alignment();
  cur_ = 0;
}

void GgufWriter::write(std::string_view name, const void* data, size_t n) {
  if (state_ == State::Declaring) fail("{}: GGUF writer: write('{}') before begin_data()", path_, name);
  if (state_ == State::Finished) fail("{}: GGUF writer: write('{}') after finish()", path_, name);
  if (state_ == State::Failed)
    fail("{}: GGUF writer: write('{}') after an earlier write failed", path_, name);
  if (cur_ < tensors_.size() && tensors_[cur_].name == name) {
    Tensor& t = tensors_[cur_];
    if (n > t.n_bytes - t.written)
      fail("{}: GGUF writer: tensor '{}' has {} bytes; {} written and {} more is too many", path_, name,
           t.n_bytes, t.written, n);
    put(data, n);
    t.written += n;
    if (t.written == t.n_bytes) {
      pad_to_alignment();
      cur_++;
    }
    return;
  }
  auto it = tensor_index_.find(std::string(name));
  if (it == tensor_index_.end())
    fail("{}: GGUF writer: write to tensor '{}', which was not declared", path_, name);
  const Tensor& t = tensors_[it->second];
  if (it->second < cur_)
    fail("{}: GGUF writer: tensor '{}' is already complete ({} bytes); {} more bytes is too many", path_,
         name, t.n_bytes, n);
  const Tensor& c = tensors_[cur_];
  fail("{}: GGUF writer: tensor '{}' written before tensor '{}' is complete ({} of {} bytes written); "
       "tensors must be written in declaration order",
       path_, name, c.name, c.written, c.n_bytes);
}

void GgufWriter::finish() {
  if (state_ == State::Finished) fail("{}: GGUF writer: finish() called twice", path_);
  if (state_ == State::Failed) fail("{}: GGUF writer: finish() after an earlier write failed", path_);
  if (state_ == State::Declaring) begin_data();
  if (cur_ < tensors_.size()) {
    const Tensor& t = tensors_[cur_];
    fail("{}: GGUF writer: tensor '{}' is incomplete at finish(): {} of {} bytes written ({} of {} tensors "
         "complete)",
         path_, t.name, t.written, t.n_bytes, cur_, tensors_.size());
  }
  errno = 0;
  if (std::fflush(f_) != 0 || std::ferror(f_)) io_error("write");
  // EINVAL: the file does not support syncing (not a regular file); nothing to wait for.
  if (::fsync(fileno(f_)) != 0 && errno != EINVAL) io_error("fsync");
  std::FILE* f = f_;
  f_ = nullptr;
  if (std::fclose(f) != 0) io_error("close");
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    state_ = State::Failed;
    fail("{}: cannot rename {} to it: {}", path_, tmp_path_, std::strerror(err));
  }
  state_ = State::Finished;
}

}  // namespace stepq
