#include "quant/source.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fp16.h"
#include "formats/safetensors.h"
#include "model/bert.h"
#include "quant/milo.h"
#include "quant/plan.h"

namespace stepq {

namespace fs = std::filesystem;

std::vector<float> SourceTensor::rows_f32(int64_t r0, int64_t n) const {
  std::vector<float> w((size_t)(n * ne[0]));
  dequantize_rows(data + (size_t)r0 * row_bytes(type, ne[0]), n, ne[0], type, w.data());
  return w;
}

std::pair<LinearRole, int> bert_linear_role(const std::string& name) {
  static const std::regex re(R"((?:bert\.)?encoder\.layer\.(\d{1,6})\.()"
                              R"(attention\.self\.query|attention\.self\.key|attention\.self\.value|)"
                              R"(attention\.output\.dense|intermediate\.dense|output\.dense)\.weight)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return {LinearRole::None, -1};
  const bool ffn = m[2] == "intermediate.dense" || m[2] == "output.dense";
  return {ffn ? LinearRole::DenseFfn : LinearRole::Attention, std::stoi(m[1])};
}

namespace {

// The GGUF layouts stepq quantizes: llama.cpp's names ("blk.N.attn_q.weight"), and stepq-bert.
std::pair<LinearRole, int> gguf_linear_role(const std::string& name, bool bert) {
  if (bert) return bert_linear_role(name);
  if (!is_quantizable_weight(name)) return {LinearRole::None, -1};
  LinearRole r = LinearRole::Attention;
  if (name.find("_exps.") != std::string::npos) r = LinearRole::RoutedExperts;
  else if (name.find("_shexp.") != std::string::npos) r = LinearRole::SharedExpert;
  else if (name.find(".ffn_") != std::string::npos) r = LinearRole::DenseFfn;
  return {r, layer_of(name)};
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("{}: cannot read it", p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

QuantSource::~QuantSource() = default;

std::unique_ptr<QuantSource> QuantSource::open(const std::string& path) {
  std::unique_ptr<QuantSource> s(new QuantSource());
  s->path_ = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) s->open_bert_folder();
  else s->open_gguf();
  s->index();
  return s;
}

const SourceTensor* QuantSource::tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

void QuantSource::index() {
  for (size_t i = 0; i < tensors_.size(); i++) tensor_index_[tensors_[i].name] = i;
}

void QuantSource::open_gguf() {
  gguf_ = GgufFile::open(path_);
  kv_ = gguf_->metadata();
  const bool bert = gguf_->get_string("general.architecture", "") == kBertGgufArchitecture;
  for (const GgufTensorInfo& g : gguf_->tensors()) {
    SourceTensor& t = tensors_.emplace_back();
    t.name = g.name;
    t.n_dims = g.n_dims;
    std::copy(g.ne, g.ne + 4, t.ne);
    t.type = g.type;
    t.data = g.data;
    t.n_bytes = g.n_bytes;
    std::tie(t.role, t.layer) = gguf_linear_role(g.name, bert);
  }
}

void QuantSource::open_bert_folder() {
  const fs::path d(path_);
  const std::string not_bert = fmt::format(
      "{}: only BERT folders (all-MiniLM-L6-v2) are read directly; convert other Hugging Face models to GGUF with "
      "llama.cpp's convert_hf_to_gguf.py first",
      path_);
  std::error_code ec;
  if (!fs::exists(d / "config.json", ec)) fail("{} (this folder has no config.json)", not_bert);
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(read_text(d / "config.json"));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", (d / "config.json").string(), e.what());
  }
  if (!cfg.is_object() || (cfg.contains("model_type") && cfg["model_type"] != "bert"))
    fail("{} (config.json: model_type {})", not_bert, cfg.is_object() ? cfg["model_type"].dump() : "?");
  // Everything embed needs, checked now rather than in a GGUF written for nothing.
  BertModel::load(path_);

  kv_.emplace_back("general.architecture", GgufValue{GgufType::STRING, std::string(kBertGgufArchitecture)});
  fs::path name = fs::absolute(d, ec).lexically_normal();
  if (name.filename().empty()) name = name.parent_path();  // "folder/" normalizes with a trailing slash
  kv_.emplace_back("general.name", GgufValue{GgufType::STRING, name.filename().string()});
  for (const BertTextFile& f : kBertTextFiles)
    if (fs::exists(d / f.file, ec)) kv_.emplace_back(f.key, GgufValue{GgufType::STRING, read_text(d / f.file)});

  st_ = SafetensorsFile::open((d / "model.safetensors").string());
  std::vector<const SafetensorsTensor*> order;
  for (const SafetensorsTensor& t : st_->tensors()) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });  // the file's order
  for (const SafetensorsTensor* st : order) {
    if (st->dtype != StDtype::F32 && st->dtype != StDtype::F16 && st->dtype != StDtype::BF16) {
      notes_.push_back(fmt::format("{}: {} tensor left out (BERT reads float tensors only)", st->name,
                                   st_dtype_name(st->dtype)));
      continue;
    }
    if (st->shape.size() > 4) fail("{}: tensor '{}' has {} dimensions (GGUF allows 4)", st_->path(), st->name,
                                   st->shape.size());
    SourceTensor& t = tensors_.emplace_back();
    t.name = st->name;
    t.n_dims = std::max<int>(1, (int)st->shape.size());
    for (size_t i = 0; i < st->shape.size(); i++) t.ne[i] = st->shape[st->shape.size() - 1 - i];
    t.type = QType::F32;
    t.data = st->data;
    t.n_bytes = st->n_bytes;
    if (st->dtype != StDtype::F32) {  // to F32 (BERT checkpoints are small: a copy costs little)
      std::vector<float>& v = owned_.emplace_back((size_t)st->n_elements());
      for (size_t i = 0; i < v.size(); i++) {
        uint16_t h;
        std::memcpy(&h, st->data + 2 * i, 2);  // safetensors promises no alignment
        v[i] = st->dtype == StDtype::F16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
      t.data = reinterpret_cast<const uint8_t*>(v.data());
      t.n_bytes = v.size() * sizeof(float);
    }
    std::tie(t.role, t.layer) = bert_linear_role(t.name);
  }
}

}  // namespace stepq
