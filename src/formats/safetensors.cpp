#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/mapped_file.h"

namespace stepq {

namespace {

struct DtypeInfo {
  const char* name;
  StDtype type;
  size_t size;
};
// The dtypes of the safetensors format that have a whole number of bytes per element.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", StDtype::BOOL, 1}, {"U8", StDtype::U8, 1},   {"I8", StDtype::I8, 1},
    {"F8_E5M2", StDtype::F8_E5M2, 1}, {"F8_E4M3", StDtype::F8_E4M3, 1}, {"I16", StDtype::I16, 2},
    {"U16", StDtype::U16, 2},   {"F16", StDtype::F16, 2}, {"BF16", StDtype::BF16, 2},
    {"I32", StDtype::I32, 4},   {"U32", StDtype::U32, 4}, {"F32", StDtype::F32, 4},
    {"F64", StDtype::F64, 8},   {"I64", StDtype::I64, 8}, {"U64", StDtype::U64, 8},
};

const DtypeInfo* find_dtype(std::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

using json = nlohmann::json;

// A JSON value in an error message: short, one line.
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', true, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// A non-negative JSON integer (JSON numbers like 1.0 or -1 are refused).
bool as_u64(const json& j, uint64_t* out) {
  if (!j.is_number_unsigned()) return false;
  *out = j.get<uint64_t>();
  return true;
}

}  // namespace

const char* st_dtype_name(StDtype t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  return "invalid";
}

size_t st_dtype_size(StDtype t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.size;
  return 0;
}

SafetensorsFile::~SafetensorsFile() = default;

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = std::make_unique<MappedFile>(path);
  f->base_ = f->map_->data();
  f->size_ = f->map_->size();
  f->parse_all();
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, size_t size, std::string what) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = std::move(what);
  f->base_ = data;
  f->size_ = size;
  f->parse_all();
  return f;
}

const SafetensorsTensor* SafetensorsFile::tensor(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsFile::parse_all() {
  if (size_ < 8)
    fail("{}: not a safetensors file: {} bytes, too short for the 8-byte header length", path_, size_);
  uint64_t n_header = 0;
  std::memcpy(&n_header, base_, 8);  // little-endian, as every platform stepq runs on
  if (n_header > kMaxHeaderBytes)
    fail("{}: not a safetensors file, or corrupt: header length {} is over the {} byte limit", path_, n_header,
         kMaxHeaderBytes);
  if (n_header > size_ - 8)
    fail("{}: truncated or corrupt safetensors file: header length {} runs past the end of the file ({} bytes)",
         path_, n_header, size_);
  if (n_header < 2 || base_[8] != '{')
    fail("{}: not a safetensors file: the header does not start with a JSON object", path_);
  data_offset_ = 8 + (size_t)n_header;
  const uint64_t data_size = size_ - data_offset_;

  // Duplicate keys are ambiguous (which one wins differs between readers): refuse them, at any
  // depth, by tracking the keys of each open object while parsing.
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string duplicate;
  json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  json header;
  try {
    const char* p = reinterpret_cast<const char*>(base_ + 8);
    header = json::parse(p, p + n_header, cb);
  } catch (const json::exception& e) {
    fail("{}: corrupt safetensors header (invalid JSON): {}", path_, e.what());
  }
  if (!duplicate.empty()) fail("{}: corrupt safetensors header: key '{}' appears twice", path_, duplicate);
  if (!header.is_object()) fail("{}: corrupt safetensors header: not a JSON object", path_);

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: safetensors __metadata__ is not an object", path_);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail("{}: safetensors __metadata__ value of '{}' is not a string: {}", path_, m.key(), brief(m.value()));
        metadata_.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (!v.is_object()) fail("{}: tensor '{}': header entry is not an object: {}", path_, name, brief(v));
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        fail("{}: tensor '{}': unknown field '{}'", path_, name, f.key());
    if (!v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail("{}: tensor '{}': needs dtype, shape and data_offsets", path_, name);

    SafetensorsTensor t;
    t.name = name;
    const json& jd = v["dtype"];
    if (!jd.is_string()) fail("{}: tensor '{}': dtype is not a string: {}", path_, name, brief(jd));
    const DtypeInfo* di = find_dtype(jd.get_ref<const std::string&>());
    if (!di)
      fail("{}: tensor '{}': unknown or unsupported dtype '{}' (stepq reads BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 "
           "F16 BF16 I32 U32 F32 F64 I64 U64)",
           path_, name, jd.get_ref<const std::string&>());
    t.dtype = di->type;

    const json& js = v["shape"];
    if (!js.is_array()) fail("{}: tensor '{}': shape is not an array: {}", path_, name, brief(js));
    if (js.size() > 16) fail("{}: tensor '{}': shape has {} dimensions (limit 16)", path_, name, js.size());
    uint64_t n_elem = 1;
    for (const json& d : js) {
      uint64_t dim = 0;
      if (!as_u64(d, &dim))
        fail("{}: tensor '{}': shape entry {} is not a non-negative integer", path_, name, brief(d));
      if (dim > (uint64_t)std::numeric_limits<int64_t>::max() || __builtin_mul_overflow(n_elem, dim, &n_elem))
        fail("{}: tensor '{}': shape {} overflows 64 bits", path_, name, brief(js));
      t.shape.push_back((int64_t)dim);
    }
    uint64_t n_bytes = 0;
    if (__builtin_mul_overflow(n_elem, (uint64_t)di->size, &n_bytes) ||
        n_elem > (uint64_t)std::numeric_limits<int64_t>::max())
      fail("{}: tensor '{}': shape {} of {} overflows 64 bits", path_, name, brief(js), di->name);

    const json& jo = v["data_offsets"];
    if (!jo.is_array() || jo.size() != 2 || !as_u64(jo[0], &t.begin) || !as_u64(jo[1], &t.end))
      fail("{}: tensor '{}': data_offsets must be two non-negative integers [begin, end], not {}", path_, name,
           brief(jo));
    if (t.begin > t.end)
      fail("{}: tensor '{}': data_offsets [{}, {}] end before they begin", path_, name, t.begin, t.end);
    if (t.end > data_size)
      fail("{}: truncated or corrupt safetensors file: tensor '{}' data_offsets [{}, {}] run past the end of the "
           "data region ({} bytes)",
           path_, name, t.begin, t.end, data_size);
    if (t.end - t.begin != n_bytes)
      fail("{}: tensor '{}': shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", path_, name,
           brief(js), di->name, n_bytes, t.begin, t.end, t.end - t.begin);
    t.n_bytes = (size_t)n_bytes;
    t.data = base_ + data_offset_ + t.begin;
    tensors_.push_back(std::move(t));
  }

  // No two tensors may share bytes: a writer never does that, and a reader that modified one
  // (or assumed they are distinct) would be fooled.
  std::vector<const SafetensorsTensor*> by_offset;
  for (const auto& t : tensors_)
    if (t.n_bytes) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); i++)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail("{}: corrupt safetensors file: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path_,
           by_offset[i - 1]->name, by_offset[i - 1]->begin, by_offset[i - 1]->end, by_offset[i]->name,
           by_offset[i]->begin, by_offset[i]->end);

  for (size_t i = 0; i < tensors_.size(); i++) index_.emplace(tensors_[i].name, i);
}

}  // namespace stepq
