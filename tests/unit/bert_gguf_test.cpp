// BERT in GGUF ("stepq-bert", docs/formats.md): all-MiniLM-L6-v2 read as a quantize source, written
// back as a GGUF and loaded by BertModel. The F32 copy embeds bit-identically to the folder; with
// HQ2 weights and MiLo compensators the loader binds both (the embeddings follow the dequantized
// weights with the compensator, not without it). tests/py/test_embed_quantized.py runs the same
// through `stepq quantize` and `stepq embed` and measures the quality.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "model/bert.h"
#include "quant/milo.h"
#include "quant/source.h"
#include "test_models.h"

namespace stepq {
namespace {

namespace fs = std::filesystem;

// A tensor of the file written here: its bytes replace the source's (or are new: compensators).
struct OutTensor {
  std::vector<int64_t> ne;
  QType type;
  std::vector<uint8_t> bytes;
};

// Writes the source's metadata and tensors; `replaced` tensors take the place of the source's of
// the same name, and `added[name]` follow tensor `name`.
void write_gguf(const QuantSource& src, const std::string& path, const std::map<std::string, OutTensor>& replaced,
                const std::map<std::string, std::vector<std::pair<std::string, OutTensor>>>& added = {}) {
  struct Entry {
    std::string name;
    std::vector<int64_t> ne;
    QType type;
    const uint8_t* data;
    size_t n;
  };
  std::vector<Entry> entries;
  for (const SourceTensor& t : src.tensors()) {
    auto r = replaced.find(t.name);
    if (r == replaced.end())
      entries.push_back({t.name, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.type, t.data, t.n_bytes});
    else
      entries.push_back({t.name, r->second.ne, r->second.type, r->second.bytes.data(), r->second.bytes.size()});
    if (auto a = added.find(t.name); a != added.end())
      for (const auto& [name, o] : a->second) entries.push_back({name, o.ne, o.type, o.bytes.data(), o.bytes.size()});
  }
  GgufWriter w(path);
  for (const auto& [k, v] : src.metadata()) w.add_kv(k, v);
  for (const Entry& e : entries) w.add_tensor(e.name, e.ne, e.type);
  w.begin_data();
  for (const Entry& e : entries) w.write(e.name, e.data, e.n);
  w.finish();
}

const std::vector<std::string> kTexts = {
    "A man is eating food.", "The stock market fell sharply today.", "How do I reverse a linked list in C++?",
    "Die Katze schläft auf dem Sofa.", "The mitochondria is the powerhouse of the cell, converting glucose into ATP.",
    "ok"};

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); i++) {
    ab += (double)a[i] * b[i];
    aa += (double)a[i] * a[i];
    bb += (double)b[i] * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

double mean_cosine(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += cosine(a[i], b[i]);
  return s / (double)a.size();
}

std::string tmp_file(const std::string& name) {
  return (fs::temp_directory_path() / ("stepq_bert_gguf_" + std::to_string(::getpid()) + "_" + name)).string();
}

TEST(BertGguf, SourceIsTheFolderInGgufOrder) {
  const std::string dir = test::model_path("minilm");
  if (!fs::exists(dir)) return;
  auto src = QuantSource::open(dir);
  int attention = 0, ffn = 0;
  for (const SourceTensor& t : src->tensors()) {
    if (t.role == LinearRole::Attention) attention++;
    if (t.role == LinearRole::DenseFfn) ffn++;
    EXPECT_EQ(t.type, QType::F32) << t.name;
  }
  EXPECT_EQ(attention, 24);  // 6 layers × query, key, value, attention output
  EXPECT_EQ(ffn, 12);        // 6 layers × intermediate, output
  const SourceTensor* up = src->tensor("encoder.layer.3.intermediate.dense.weight");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->n_dims, 2);
  EXPECT_EQ(up->ne[0], 384);  // [out, in] = [1536, 384] in HF order: rows of 384 inputs
  EXPECT_EQ(up->ne[1], 1536);
  EXPECT_EQ(up->layer, 3);
  EXPECT_EQ(up->role, LinearRole::DenseFfn);
  EXPECT_EQ(src->tensor("encoder.layer.3.intermediate.dense.bias")->role, LinearRole::None);
  EXPECT_EQ(src->tensor("pooler.dense.weight")->role, LinearRole::None);
  EXPECT_EQ(src->tensor("encoder.layer.5.attention.output.dense.weight")->role, LinearRole::Attention);
  // Row 7 of the weight is row 7 of the safetensors matrix.
  const std::vector<float> row = up->rows_f32(7, 1);
  float direct;
  std::memcpy(&direct, up->data + (7 * 384 + 5) * sizeof(float), sizeof(float));
  EXPECT_EQ(row[5], direct);
  EXPECT_EQ(src->tensor("embeddings.position_ids"), nullptr);  // an I64 buffer, left out with a note
  ASSERT_EQ(src->notes().size(), 1u);
  EXPECT_NE(src->notes()[0].find("embeddings.position_ids"), std::string::npos);
  // The text files verbatim.
  std::map<std::string, std::string> kv;
  for (const auto& [k, v] : src->metadata())
    if (v.type == GgufType::STRING) kv[k] = std::get<std::string>(v.v);
  EXPECT_EQ(kv["general.architecture"], "stepq-bert");
  EXPECT_EQ(kv["general.name"], "all-MiniLM-L6-v2");
  for (const BertTextFile& f : kBertTextFiles) {
    std::ifstream in(fs::path(dir) / f.file, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(kv[f.key], text) << f.key;
  }
}

TEST(BertGguf, F32CopyEmbedsExactlyAsTheFolder) {
  const std::string dir = test::model_path("minilm");
  if (!fs::exists(dir)) return;
  const std::string path = tmp_file("f32.gguf");
  write_gguf(*QuantSource::open(dir), path, {});
  ThreadPool pool(2);
  auto folder = BertModel::load(dir)->embed(kTexts, pool);
  auto m = BertModel::load(path);
  EXPECT_EQ(m->config().max_seq_len, 256);  // sentence_bert_config.json, from its KV
  auto gguf = m->embed(kTexts, pool);
  for (size_t i = 0; i < kTexts.size(); i++) EXPECT_EQ(gguf[i], folder[i]) << kTexts[i];
  // A GGUF re-read as a source is the same BERT: the same tensors are linear weights.
  auto again = QuantSource::open(path);
  int linear = 0;
  for (const SourceTensor& t : again->tensors()) linear += t.role != LinearRole::None;
  EXPECT_EQ(linear, 36);
  fs::remove(path);
}

TEST(BertGguf, QuantizedWeightsAndCompensatorsAreBound) {
  const std::string dir = test::model_path("minilm");
  if (!fs::exists(dir)) return;
  auto src = QuantSource::open(dir);
  ThreadPool pool(2);
  // Every linear weight at 2 bits with a rank-64 compensator in S3_32: large enough that leaving
  // the compensator out would show.
  MiloParams mp;
  mp.hqq.bits = 3;
  mp.rank = 64;
  mp.iters = 1;
  mp.lowrank_type = QType::S3_32;
  std::map<std::string, OutTensor> packed, with_comp, without_comp;
  std::map<std::string, std::vector<std::pair<std::string, OutTensor>>> comps;
  for (const SourceTensor& t : src->tensors()) {
    if (t.role == LinearRole::None) continue;
    const int64_t rows = t.ne[1], cols = t.ne[0];
    const std::vector<float> W = t.rows_f32(0, rows);
    MiloResult r = milo_quantize(W.data(), rows, cols, mp, pool);
    packed[t.name] = {{cols, rows}, hq_type(3, 64), hqq_pack(r.q)};
    const std::string base = t.name.substr(0, t.name.size() - 7);  // without ".weight"
    comps[t.name] = {{base + ".milo_u", {{64, rows}, QType::S3_32, r.packed.U}},
                     {base + ".milo_v", {{cols, 64}, QType::S3_32, r.packed.V}}};
    // The same weights in f32: deq(Q), and deq(Q) + Û·V̂ (r.lr holds the dequantized factors).
    std::vector<float> deq((size_t)(rows * cols));
    hqq_dequantize(r.q, deq.data());
    std::vector<float> sum = deq;
    for (int64_t i = 0; i < rows; i++)
      for (int k = 0; k < 64; k++)
        for (int64_t j = 0; j < cols; j++)
          sum[(size_t)(i * cols + j)] += r.lr.U[(size_t)(i * 64 + k)] * r.lr.V[(size_t)(k * cols + j)];
    auto bytes = [](const std::vector<float>& v) {
      const uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
      return std::vector<uint8_t>(p, p + v.size() * sizeof(float));
    };
    without_comp[t.name] = {{cols, rows}, QType::F32, bytes(deq)};
    with_comp[t.name] = {{cols, rows}, QType::F32, bytes(sum)};
  }
  const std::string q = tmp_file("hq2.gguf"), a = tmp_file("with.gguf"), b = tmp_file("without.gguf");
  write_gguf(*src, q, packed, comps);
  write_gguf(*src, a, with_comp);
  write_gguf(*src, b, without_comp);
  auto eq = BertModel::load(q)->embed(kTexts, pool);
  auto ea = BertModel::load(a)->embed(kTexts, pool);
  auto eb = BertModel::load(b)->embed(kTexts, pool);
  auto ef = BertModel::load(dir)->embed(kTexts, pool);
  const double qa = mean_cosine(eq, ea), qb = mean_cosine(eq, eb), af = mean_cosine(ea, ef), bf = mean_cosine(eb, ef);
  std::printf("mean cosine: quantized vs deq+UV %.6f, vs deq %.6f; f32 vs deq+UV %.4f, vs deq %.4f\n", qa, qb, af, bf);
  // The packed file differs from deq(Q) + Û·V̂ only by the Q8_0 activations the HQ kernels use.
  EXPECT_GT(qa, 0.998);
  EXPECT_LT(1 - qa, (1 - qb) / 4);
  EXPECT_GT(af, bf);  // the compensators bring the model closer to f32
  for (const std::string& p : {q, a, b}) fs::remove(p);
}

TEST(BertGguf, LoadErrorsNameTheProblem) {
  auto err = [](const std::string& path) -> std::string {
    try {
      BertModel::load(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  // A GGUF of another architecture.
  const std::string path = tmp_file("llama.gguf");
  {
    GgufWriter w(path);
    w.add_string("general.architecture", "llama");
    w.finish();
  }
  const std::string e = err(path);
  EXPECT_NE(e.find("general.architecture is 'llama', not 'stepq-bert'"), std::string::npos) << e;
  // stepq-bert without its config.
  {
    GgufWriter w(path);
    w.add_string("general.architecture", "stepq-bert");
    w.finish();
  }
  EXPECT_NE(err(path).find("no 'stepq.hf.config_json'"), std::string::npos) << err(path);
  fs::remove(path);
  EXPECT_NE(err("/nonexistent/model.gguf").find("no such folder or file"), std::string::npos);
}

TEST(BertGguf, QuantizeRefusesOtherFolders) {
  const auto dir = fs::temp_directory_path() / ("stepq_bert_gguf_llama_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto err = [&]() -> std::string {
    try {
      QuantSource::open(dir.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(err().find("only BERT folders"), std::string::npos) << err();
  EXPECT_NE(err().find("no config.json"), std::string::npos) << err();
  std::ofstream(dir / "config.json") << R"({"model_type": "llama", "hidden_size": 896})";
  EXPECT_NE(err().find("convert_hf_to_gguf.py"), std::string::npos) << err();
  EXPECT_NE(err().find("\"llama\""), std::string::npos) << err();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace stepq
