#include "model/bert.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/cpu/quant_types.h"
#include "model/model.h"
#include "tokenizer/wordpiece.h"

namespace stepq {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read it", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json(std::string_view text, const std::string& what) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", what, e.what());
  }
}

int get_positive(const json& j, const char* key, const std::string& what) {
  if (!j.contains(key)) fail("{}: '{}' is missing", what, key);
  const json& v = j[key];
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (1 << 24))
    fail("{}: '{}' must be a positive integer (at most 2^24), not {}", what, key, v.dump());
  return (int)v.get<int64_t>();
}

void layer_norm(const float* x, const float* w, const float* b, float* y, int n, float eps) {
  double mean = 0;
  for (int i = 0; i < n; i++) mean += x[i];
  mean /= n;
  double var = 0;
  for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
  var /= n;
  const float m = (float)mean, inv = (float)(1.0 / std::sqrt(var + eps));
  for (int i = 0; i < n; i++) y[i] = (x[i] - m) * inv * w[i] + b[i];
}

}  // namespace

BertConfig BertConfig::from_json(std::string_view text, const std::string& what) {
  try {
    return from_json_checked(text, what);
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    fail("{}: {}", what, e.what());
  }
}

BertConfig BertConfig::from_json_checked(std::string_view text, const std::string& what) {
  json j = parse_json(text, what);
  if (!j.is_object()) fail("{}: not a JSON object", what);
  if (j.contains("model_type") && j["model_type"] != "bert")
    fail("{}: model_type {} is not supported (stepq embeds with BERT models, model_type \"bert\")", what,
         j["model_type"].dump());
  if (j.value("hidden_act", std::string("gelu")) != "gelu")
    fail("{}: hidden_act {} is not supported (stepq implements \"gelu\", the erf form)", what, j["hidden_act"].dump());
  if (j.contains("position_embedding_type") && j["position_embedding_type"] != "absolute")
    fail("{}: position_embedding_type {} is not supported (only \"absolute\")", what,
         j["position_embedding_type"].dump());
  BertConfig c;
  c.hidden = get_positive(j, "hidden_size", what);
  c.n_layers = get_positive(j, "num_hidden_layers", what);
  c.n_heads = get_positive(j, "num_attention_heads", what);
  c.intermediate = get_positive(j, "intermediate_size", what);
  c.max_position = get_positive(j, "max_position_embeddings", what);
  c.vocab = get_positive(j, "vocab_size", what);
  c.type_vocab = get_positive(j, "type_vocab_size", what);
  if (c.hidden % c.n_heads != 0)
    fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", what, c.hidden, c.n_heads);
  if (j.contains("layer_norm_eps")) {
    if (!j["layer_norm_eps"].is_number() || !(j["layer_norm_eps"].get<double>() > 0))
      fail("{}: layer_norm_eps must be a positive number", what);
    c.ln_eps = (float)j["layer_norm_eps"].get<double>();
  }
  c.max_seq_len = c.max_position;
  return c;
}

BertModel::~BertModel() = default;

const WordPieceTokenizer& BertModel::tokenizer() const {
  if (!tok_) fail("this BERT model was built without a tokenizer");
  return *tok_;
}

std::unique_ptr<BertModel> BertModel::load(const std::string& path) {
  const char* expect =
      "give a Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json) or the stepq-bert GGUF "
      "that stepq quantize makes of one";
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("{}: no such folder or file ({})", path, expect);
  std::unique_ptr<BertModel> m(new BertModel());
  Texts tx;
  if (fs::is_directory(path, ec)) {
    const fs::path d(path);
    for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
      if (!fs::exists(d / f, ec)) fail("{}: no {} in this folder ({})", path, f, expect);
    for (size_t i = 0; i < kNumBertTextFiles; i++) {
      const fs::path f = d / kBertTextFiles[i].file;
      tx.what[i] = f.string();
      if (fs::exists(f, ec)) tx.text[i] = read_text(f.string());
    }
  } else {
    m->gguf_ = GgufFile::open(path);
    const std::string arch = m->gguf_->get_string("general.architecture", "");
    if (arch != kBertGgufArchitecture)
      fail("{}: general.architecture is '{}', not '{}': a BERT model is read from a Hugging Face folder or from the "
           "GGUF stepq quantize writes for one (stepq quantize -m BERT_FOLDER -o OUT.gguf)",
           path, arch, kBertGgufArchitecture);
    for (size_t i = 0; i < kNumBertTextFiles; i++) {
      const BertTextFile& f = kBertTextFiles[i];
      tx.what[i] = fmt::format("{} ({}, the folder's {})", path, f.key, f.file);
      if (m->gguf_->has(f.key)) tx.text[i] = m->gguf_->get_string(f.key);
      else if (f.required) fail("{}: no '{}' (a stepq-bert GGUF holds the folder's {} there)", path, f.key, f.file);
    }
  }

  BertConfig c = BertConfig::from_json(*tx.text[0], tx.what[0]);
  try {
    read_sentence_transformers(tx, c);
  } catch (const json::exception& e) {
    fail("{}: a sentence-transformers file has a field of the wrong type: {}", path, e.what());
  }
  // A folder's weights are opened once its config is known good (a bad config is the clearer error).
  if (!m->gguf_) m->st_ = SafetensorsFile::open((fs::path(path) / "model.safetensors").string());
  m->cfg_ = c;
  m->bind();
  m->tok_ = WordPieceTokenizer::from_json(*tx.text[1], tx.what[1]);
  if (m->tok_->n_vocab() > c.vocab)
    fail("{}: the tokenizer has {} tokens but the model's vocab_size is {}", path, m->tok_->n_vocab(), c.vocab);
  return m;
}

// sentence-transformers' files, when present: the truncation length, and the pooling this class implements.
void BertModel::read_sentence_transformers(const Texts& tx, BertConfig& c) {
  if (const auto& sbert = tx.text[2]) {
    const std::string& what = tx.what[2];
    json j = parse_json(*sbert, what);
    if (j.is_object() && j.contains("max_seq_length")) {
      if (!j["max_seq_length"].is_number_integer() || j["max_seq_length"].get<int64_t>() < 2)
        fail("{}: max_seq_length must be an integer >= 2", what);
      c.max_seq_len = (int)std::min<int64_t>(c.max_position, j["max_seq_length"].get<int64_t>());
    }
  }
  if (const auto& pool = tx.text[3]) {
    const std::string& what = tx.what[3];
    json j = parse_json(*pool, what);
    if (!j.is_object() || !j.value("pooling_mode_mean_tokens", false))
      fail("{}: only mean pooling (pooling_mode_mean_tokens) is supported", what);
    for (const char* k : {"pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"})
      if (j.value(k, false)) fail("{}: {} is not supported (only mean pooling)", what, k);
  }
}

std::unique_ptr<BertModel> BertModel::from_parts(const BertConfig& c, std::unique_ptr<SafetensorsFile> st) {
  std::unique_ptr<BertModel> m(new BertModel());
  m->cfg_ = c;
  m->st_ = std::move(st);
  m->bind();
  return m;
}

const std::string& BertModel::weights_path() const { return st_ ? st_->path() : gguf_->path(); }

std::optional<BertModel::TensorRef> BertModel::find(const std::string& name) const {
  TensorRef r;
  r.name = name;
  if (st_) {
    const SafetensorsTensor* t = st_->tensor(name);
    if (!t) return std::nullopt;
    r.shape = t->shape;
    r.data = t->data;
    switch (t->dtype) {
      case StDtype::F32: r.type = QType::F32; break;
      case StDtype::F16: r.type = QType::F16; break;
      case StDtype::BF16: r.type = QType::BF16; break;
      default: r.unsupported = st_dtype_name(t->dtype);
    }
  } else {
    const GgufTensorInfo* t = gguf_->tensor(name);
    if (!t) return std::nullopt;
    for (int d = t->n_dims - 1; d >= 0; d--) r.shape.push_back(t->ne[d]);
    r.type = t->type;
    r.data = t->data;
  }
  return r;
}

// The tensor `name` (after the prefix), which must exist with this shape (Hugging Face order).
BertModel::TensorRef BertModel::tensor(const std::string& name, std::initializer_list<int64_t> shape) const {
  std::optional<TensorRef> t = find(prefix_ + name);
  if (!t) fail("{}: tensor '{}' is missing (not a BERT checkpoint?)", weights_path(), prefix_ + name);
  if (!std::equal(t->shape.begin(), t->shape.end(), shape.begin(), shape.end())) {
    std::string want, got;
    for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
    for (int64_t d : t->shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
    fail("{}: tensor '{}' has shape [{}], config.json implies [{}]", weights_path(), t->name, got, want);
  }
  if (t->unsupported)
    fail("{}: tensor '{}' is {}; stepq's BERT reads F32, F16 and BF16", weights_path(), t->name, t->unsupported);
  return *t;
}

// A tensor of the expected shape as f32: in place when it is F32 and 4-byte aligned, else an
// owned converted copy (F16, BF16, a GGUF's other formats, or F32 at an odd offset: safetensors
// promises no alignment).
const float* BertModel::f32(const std::string& name, std::initializer_list<int64_t> shape) {
  const TensorRef t = tensor(name, shape);
  if (t.type == QType::F32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0)
    return reinterpret_cast<const float*>(t.data);
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  // Rows are stored back to back, so the whole tensor converts as one row (its row length is a
  // multiple of the block size: the GGUF reader checks that).
  const size_t bytes = row_bytes(t.type, n);
  std::vector<uint8_t> aligned;
  const uint8_t* src = t.data;
  if (reinterpret_cast<uintptr_t>(src) % alignof(float) != 0) {
    aligned.assign(src, src + bytes);
    src = aligned.data();
  }
  std::vector<float>& v = owned_.emplace_back((size_t)n);
  dequantize_row(t.type, src, v.data(), n);
  return v.data();
}

// From a folder, an f32 weight as the HF model computes it (F16/BF16 converted); from a GGUF,
// the weight in its stored format, in place, with its MiLo compensator if the file has one.
Linear BertModel::linear(const std::string& prefix, int64_t out, int64_t in) {
  Linear L;
  L.in = in;
  L.out = out;
  if (gguf_) {
    const TensorRef t = tensor(prefix + ".weight", {out, in});
    L.type = t.type;
    L.data = t.data;
    L.lowrank = bind_lowrank(*gguf_, prefix_ + prefix, in, out, -1, lowrank_);
  } else {
    L.type = QType::F32;
    L.data = reinterpret_cast<const uint8_t*>(f32(prefix + ".weight", {out, in}));
  }
  L.row_stride = row_bytes(L.type, in);
  L.bias = f32(prefix + ".bias", {out});
  return L;
}

void BertModel::bind() {
  const BertConfig& c = cfg_;
  if (!find("embeddings.word_embeddings.weight") && find("bert.embeddings.word_embeddings.weight")) prefix_ = "bert.";
  const int64_t H = c.hidden, I = c.intermediate;
  word_ = f32("embeddings.word_embeddings.weight", {c.vocab, H});
  pos_ = f32("embeddings.position_embeddings.weight", {c.max_position, H});
  type_ = f32("embeddings.token_type_embeddings.weight", {c.type_vocab, H});
  emb_ln_w_ = f32("embeddings.LayerNorm.weight", {H});
  emb_ln_b_ = f32("embeddings.LayerNorm.bias", {H});
  for (int l = 0; l < c.n_layers; l++) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    Layer L;
    L.q = linear(p + "attention.self.query", H, H);
    L.k = linear(p + "attention.self.key", H, H);
    L.v = linear(p + "attention.self.value", H, H);
    L.o = linear(p + "attention.output.dense", H, H);
    L.ln1_w = f32(p + "attention.output.LayerNorm.weight", {H});
    L.ln1_b = f32(p + "attention.output.LayerNorm.bias", {H});
    L.up = linear(p + "intermediate.dense", I, H);
    L.down = linear(p + "output.dense", H, I);
    L.ln2_w = f32(p + "output.LayerNorm.weight", {H});
    L.ln2_b = f32(p + "output.LayerNorm.bias", {H});
    layers_.push_back(L);
  }
}

void BertModel::embed_ids(std::span<const std::vector<int32_t>> seqs, float* out, ThreadPool& pool) const {
  const BertConfig& c = cfg_;
  const int H = c.hidden, I = c.intermediate, n_head = c.n_heads, hd = H / n_head;
  std::vector<int64_t> start(seqs.size() + 1, 0);  // first row of each sequence in the packed matrix
  for (size_t s = 0; s < seqs.size(); s++) {
    if (seqs[s].empty()) fail("BERT input {} has no tokens", s);
    if (seqs[s].size() > (size_t)c.max_position)
      fail("BERT input {} has {} tokens, more than the model's {} positions", s, seqs[s].size(), c.max_position);
    for (int32_t id : seqs[s])
      if (id < 0 || id >= c.vocab) fail("BERT input {}: token id {} is outside the vocabulary ({})", s, id, c.vocab);
    start[s + 1] = start[s] + (int64_t)seqs[s].size();
  }
  const int64_t N = start.back();
  if (N == 0) return;
  std::vector<float> x((size_t)N * H), q((size_t)N * H), k((size_t)N * H), v((size_t)N * H), ctx((size_t)N * H),
      tmp((size_t)N * H), ff((size_t)N * I);
  MatmulScratch scratch;

  // Embeddings (token type 0: single sentences), then LayerNorm.
  pool.parallel_for((int64_t)seqs.size(), 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; s++)
      for (size_t p = 0; p < seqs[s].size(); p++) {
        float* row = &x[(size_t)(start[s] + (int64_t)p) * H];
        const float* w = word_ + (size_t)seqs[s][p] * H;
        const float* ps = pos_ + p * H;
        for (int i = 0; i < H; i++) row[i] = w[i] + ps[i] + type_[i];
        layer_norm(row, emb_ln_w_, emb_ln_b_, row, H, c.ln_eps);
      }
  });

  const float scale = 1.0f / std::sqrt((float)hd);
  auto residual_norm = [&](const float* w, const float* b) {  // x = LN(x + tmp)
    pool.parallel_for(N, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r++) {
        float* xr = &x[(size_t)r * H];
        const float* tr = &tmp[(size_t)r * H];
        for (int i = 0; i < H; i++) xr[i] += tr[i];
        layer_norm(xr, w, b, xr, H, c.ln_eps);
      }
    });
  };
  for (const Layer& L : layers_) {
    const MatmulTarget qkv[3] = {{&L.q, q.data(), H}, {&L.k, k.data(), H}, {&L.v, v.data(), H}};
    matmul_multi(qkv, x.data(), N, H, pool, scratch);
    // Attention within each sequence: every (sequence, head) pair is one task. Both products go
    // through the SIMD dot-product tiles: scores S = Q·Kᵀ (keys as the "weight" rows), then
    // ctx = P·V with V transposed so that its columns are rows.
    const int64_t n_tasks = (int64_t)seqs.size() * n_head;
    pool.parallel_for(n_tasks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<float> S, vt;
      for (int64_t t = t0; t < t1; t++) {
        const int64_t s = t / n_head, h = t % n_head, r0 = start[s], T = start[s + 1] - r0;
        const float* qh = &q[(size_t)r0 * H + h * hd];
        const float* kh = &k[(size_t)r0 * H + h * hd];
        const float* vh = &v[(size_t)r0 * H + h * hd];
        S.resize((size_t)(T * T));
        vt.resize((size_t)(hd * T));
        vec_dot_tile(QType::F32, hd, kh, (size_t)H * sizeof(float), T, qh, (size_t)H * sizeof(float), T, S.data(), T);
        for (int64_t i = 0; i < T; i++) {  // softmax of row i, scaled
          float* row = &S[(size_t)(i * T)];
          float mx = -INFINITY;
          for (int64_t j = 0; j < T; j++) mx = std::max(mx, row[j] * scale);
          float sum = 0;
          for (int64_t j = 0; j < T; j++) {
            row[j] = std::exp(row[j] * scale - mx);
            sum += row[j];
          }
          const float inv = 1.0f / sum;
          for (int64_t j = 0; j < T; j++) row[j] *= inv;
        }
        for (int64_t j = 0; j < T; j++)
          for (int e = 0; e < hd; e++) vt[(size_t)(e * T + j)] = vh[(size_t)j * H + e];
        vec_dot_tile(QType::F32, T, vt.data(), (size_t)T * sizeof(float), hd, S.data(), (size_t)T * sizeof(float), T,
                     &ctx[(size_t)r0 * H + h * hd], H);
      }
    });
    matmul(L.o, ctx.data(), N, H, tmp.data(), H, pool, scratch);
    residual_norm(L.ln1_w, L.ln1_b);
    matmul(L.up, x.data(), N, H, ff.data(), I, pool, scratch);
    pool.parallel_for(N, 16, [&](int64_t r0, int64_t r1) {  // HF "gelu": the erf form
      for (float* p = ff.data() + (size_t)r0 * I; p < ff.data() + (size_t)r1 * I; p++)
        *p = 0.5f * *p * (1.0f + std::erf(*p * 0.70710678118654752f));
    });
    matmul(L.down, ff.data(), N, I, tmp.data(), H, pool, scratch);
    residual_norm(L.ln2_w, L.ln2_b);
  }

  // Mean over each sequence's tokens, then L2 normalization.
  for (size_t s = 0; s < seqs.size(); s++) {
    std::vector<double> acc(H, 0.0);
    for (int64_t r = start[s]; r < start[s + 1]; r++)
      for (int i = 0; i < H; i++) acc[i] += x[(size_t)r * H + i];
    double norm = 0;
    for (int i = 0; i < H; i++) {
      acc[i] /= (double)(start[s + 1] - start[s]);
      norm += acc[i] * acc[i];
    }
    // sentence-transformers' Normalize: x / max(||x||, 1e-12).
    const double inv = 1.0 / std::max(std::sqrt(norm), 1e-12);
    for (int i = 0; i < H; i++) out[s * H + i] = (float)(acc[i] * inv);
  }
}

std::vector<std::vector<float>> BertModel::embed(std::span<const std::string> texts, ThreadPool& pool, int batch,
                                                 int64_t* n_tokens) const {
  const WordPieceTokenizer& tok = tokenizer();
  if (batch < 1) fail("batch size must be at least 1, not {}", batch);
  std::vector<std::vector<float>> out(texts.size(), std::vector<float>(dim()));
  std::vector<float> buf;
  if (n_tokens) *n_tokens = 0;
  for (size_t b0 = 0; b0 < texts.size(); b0 += batch) {
    const size_t b1 = std::min(texts.size(), b0 + (size_t)batch);
    std::vector<std::vector<int32_t>> ids;
    for (size_t i = b0; i < b1; i++) {
      ids.push_back(tok.encode(texts[i], true, cfg_.max_seq_len));
      if (ids.back().empty()) fail("input {} gives no tokens (the tokenizer adds no special tokens)", i);
      if (n_tokens) *n_tokens += (int64_t)ids.back().size();
    }
    buf.resize(ids.size() * (size_t)dim());
    embed_ids(ids, buf.data(), pool);
    for (size_t i = b0; i < b1; i++)
      std::copy(buf.data() + (i - b0) * dim(), buf.data() + (i - b0 + 1) * dim(), out[i].begin());
  }
  return out;
}

}  // namespace stepq
