// GgufWriter: files it writes read back through GgufFile with the same metadata and tensor bytes;
// misuse and I/O failures are Errors; a writer that does not finish leaves no file behind; a real
// model copied through it reads back identical (and byte-identical to the gguf-py original);
// PyPI gguf reads its files, private-type tensors included. Also the reader side of the private
// types: an I8 tensor with a stepq.qtype.<name> key, built by hand, and its hostile variants.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "gguf_writer.h"
#include "test_models.h"

namespace stepq {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it.
struct TempDir {
  fs::path dir;
  TempDir() {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("stepq_gguf_writer_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = (uint8_t)rng();
  return b;
}

// Equality of two metadata values, including the stored type.
bool same_value(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.v.index() != b.v.index()) return false;
  if (a.type == GgufType::ARRAY) {
    const GgufArray& x = std::get<GgufArray>(a.v);
    const GgufArray& y = std::get<GgufArray>(b.v);
    return x.elem_type == y.elem_type && x.ints == y.ints && x.floats == y.floats && x.strings == y.strings;
  }
  return std::visit(
      [&](const auto& va) {
        using T = std::decay_t<decltype(va)>;
        if constexpr (std::is_same_v<T, GgufArray>) return false;
        else return va == std::get<T>(b.v);
      },
      a.v);
}

void expect_same_metadata(const GgufFile& a, const GgufFile& b) {
  ASSERT_EQ(a.metadata().size(), b.metadata().size());
  for (size_t i = 0; i < a.metadata().size(); i++) {
    EXPECT_EQ(a.metadata()[i].first, b.metadata()[i].first) << "entry " << i;
    EXPECT_TRUE(same_value(a.metadata()[i].second, b.metadata()[i].second)) << a.metadata()[i].first;
  }
}

void expect_same_tensors(const GgufFile& a, const GgufFile& b) {
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (size_t i = 0; i < a.tensors().size(); i++) {
    const GgufTensorInfo& x = a.tensors()[i];
    const GgufTensorInfo& y = b.tensors()[i];
    SCOPED_TRACE(x.name);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.n_dims, y.n_dims);
    for (int d = 0; d < 4; d++) EXPECT_EQ(x.ne[d], y.ne[d]);
    EXPECT_EQ(x.type, y.type);
    ASSERT_EQ(x.n_bytes, y.n_bytes);
    EXPECT_EQ(std::memcmp(x.data, y.data, x.n_bytes), 0);
  }
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
// Runs stmt once; expects an Error whose message contains text.
#define EXPECT_ERROR_HAS(stmt, text)                                  \
  do {                                                                \
    const std::string error_message_ = error_of([&] { stmt; });       \
    EXPECT_NE(error_message_.find(text), std::string::npos) << error_message_; \
  } while (0)

GgufValue int_value(GgufType t, int64_t v) {
  GgufValue g;
  g.type = t;
  g.v = v;
  return g;
}
GgufValue array_value(GgufType et, std::vector<int64_t> ints, std::vector<double> floats = {},
                      std::vector<std::string> strings = {}) {
  GgufArray a;
  a.elem_type = et;
  a.ints = std::move(ints);
  a.floats = std::move(floats);
  a.strings = std::move(strings);
  GgufValue g;
  g.type = GgufType::ARRAY;
  g.v = std::move(a);
  return g;
}

struct TensorSpec {
  std::string name;
  std::vector<int64_t> ne;
  QType type;
  std::vector<uint8_t> bytes;
};

// Declares the tensors, writes them (each in `pieces` pieces where it can) and finishes.
void write_tensors(GgufWriter& w, std::vector<TensorSpec>& ts, size_t pieces) {
  for (size_t i = 0; i < ts.size(); i++) {
    w.add_tensor(ts[i].name, ts[i].ne, ts[i].type);
    ts[i].bytes = random_bytes(w.tensor_bytes(ts[i].name), 100 + (uint32_t)i);
  }
  w.begin_data();
  for (const TensorSpec& t : ts) {
    const size_t n = t.bytes.size(), step = (n + pieces - 1) / pieces;
    for (size_t off = 0; off < n; off += step) w.write(t.name, t.bytes.data() + off, std::min(step, n - off));
  }
  w.finish();
}

void expect_tensors(const GgufFile& f, const std::vector<TensorSpec>& ts) {
  ASSERT_EQ(f.tensors().size(), ts.size());
  uint64_t expect_offset = 0;
  for (size_t i = 0; i < ts.size(); i++) {
    const GgufTensorInfo& t = f.tensors()[i];
    SCOPED_TRACE(ts[i].name);
    EXPECT_EQ(t.name, ts[i].name);
    EXPECT_EQ(t.n_dims, (int)ts[i].ne.size());
    for (int d = 0; d < 4; d++) EXPECT_EQ(t.ne[d], d < (int)ts[i].ne.size() ? ts[i].ne[d] : 1);
    EXPECT_EQ(t.type, ts[i].type);
    // ggml's layout: offsets are the running sum of the aligned sizes.
    EXPECT_EQ(t.offset, expect_offset);
    expect_offset += (t.n_bytes + f.alignment() - 1) / f.alignment() * f.alignment();
    ASSERT_EQ(t.n_bytes, ts[i].bytes.size());
    EXPECT_EQ(std::memcmp(t.data, ts[i].bytes.data(), t.n_bytes), 0);
  }
  // Every tensor, the last included, is padded to the alignment.
  EXPECT_EQ(f.file_size(), f.data_offset() + expect_offset);
}

class GgufWriterAlign : public ::testing::TestWithParam<size_t> {};

TEST_P(GgufWriterAlign, RoundTripEveryKvTypeAndTensors) {
  const size_t align = GetParam();
  TempDir tmp;
  const std::string path = tmp.path("rt.gguf");
  std::vector<TensorSpec> ts = {
      {"f32.1d", {7}, QType::F32, {}},
      {"f16.2d", {5, 3}, QType::F16, {}},
      {"q8.2d", {64, 3}, QType::Q8_0, {}},
      {"q8.3d", {32, 2, 3}, QType::Q8_0, {}},
      {"f32.4d", {2, 3, 2, 2}, QType::F32, {}},
      {"q4k", {256, 2}, QType::Q4_K, {}},
  };
  {
    GgufWriter w(path);
    if (align != 32) w.set_alignment(align);
    w.add_string("general.architecture", "llama");
    w.add_u8("k.u8", 200);
    w.add_i8("k.i8", -5);
    w.add_u16("k.u16", 60000);
    w.add_i16("k.i16", -300);
    w.add_u32("k.u32", 4000000000u);
    w.add_i32("k.i32", -7);
    w.add_f32("k.f32", 1.5f);
    w.add_bool("k.bool", true);
    w.add_bool("k.bool0", false);
    w.add_string("k.str", "héllo\n");
    w.add_string("k.empty", "");
    w.add_u64("k.u64", 18000000000000000000ull);
    w.add_i64("k.i64", -(1ll << 40));
    w.add_f64("k.f64", 2.25);
    const int32_t i32s[] = {1, -2, 3, INT32_MIN, INT32_MAX};
    w.add_i32_array("k.arr_i32", i32s);
    const uint32_t u32s[] = {0, 4000000000u};
    w.add_u32_array("k.arr_u32", u32s);
    const float f32s[] = {0.5f, -1e30f, 3.0f};
    w.add_f32_array("k.arr_f32", f32s);
    const bool bools[] = {true, false, true};
    w.add_bool_array("k.arr_bool", bools);
    w.add_string_array("k.arr_str", {"ab", "", "c d"});
    w.add_kv("k.arr_u8", array_value(GgufType::U8, {0, 255, 7}));
    w.add_kv("k.arr_i8", array_value(GgufType::I8, {-128, 127}));
    w.add_kv("k.arr_u16", array_value(GgufType::U16, {65535}));
    w.add_kv("k.arr_i16", array_value(GgufType::I16, {-32768}));
    w.add_kv("k.arr_u64", array_value(GgufType::U64, {INT64_MAX}));
    w.add_kv("k.arr_i64", array_value(GgufType::I64, {INT64_MIN, 1}));
    w.add_kv("k.arr_f64", array_value(GgufType::F64, {}, {0.1, -2.5}));
    w.add_kv("k.arr_empty", array_value(GgufType::I32, {}));
    write_tensors(w, ts, 3);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), align);
  EXPECT_EQ(f->data_offset() % align, 0u);
  EXPECT_EQ(f->has("general.alignment"), align != 32);
  if (align != 32) {
    EXPECT_EQ(f->get_u32("general.alignment"), align);
  }
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->find("k.u8")->type, GgufType::U8);
  EXPECT_EQ(f->get_int("k.u8"), 200);
  EXPECT_EQ(f->find("k.i8")->type, GgufType::I8);
  EXPECT_EQ(f->get_int("k.i8"), -5);
  EXPECT_EQ(f->find("k.u16")->type, GgufType::U16);
  EXPECT_EQ(f->get_int("k.u16"), 60000);
  EXPECT_EQ(f->find("k.i16")->type, GgufType::I16);
  EXPECT_EQ(f->get_int("k.i16"), -300);
  EXPECT_EQ(f->find("k.u32")->type, GgufType::U32);
  EXPECT_EQ(f->get_u32("k.u32"), 4000000000u);
  EXPECT_EQ(f->find("k.i32")->type, GgufType::I32);
  EXPECT_EQ(f->get_int("k.i32"), -7);
  EXPECT_EQ(f->find("k.f32")->type, GgufType::F32);
  EXPECT_EQ(f->get_f32("k.f32"), 1.5f);
  EXPECT_TRUE(f->get_bool("k.bool"));
  EXPECT_FALSE(f->get_bool("k.bool0"));
  EXPECT_EQ(f->get_string("k.str"), "héllo\n");
  EXPECT_EQ(f->get_string("k.empty"), "");
  EXPECT_EQ(f->find("k.u64")->type, GgufType::U64);
  EXPECT_EQ(std::get<uint64_t>(f->find("k.u64")->v), 18000000000000000000ull);
  EXPECT_EQ(f->find("k.i64")->type, GgufType::I64);
  EXPECT_EQ(f->get_int("k.i64"), -(1ll << 40));
  EXPECT_EQ(f->find("k.f64")->type, GgufType::F64);
  EXPECT_EQ(std::get<double>(f->find("k.f64")->v), 2.25);
  EXPECT_TRUE(same_value(*f->find("k.arr_i32"),
                         array_value(GgufType::I32, {1, -2, 3, INT32_MIN, INT32_MAX})));
  EXPECT_TRUE(same_value(*f->find("k.arr_u32"), array_value(GgufType::U32, {0, 4000000000ll})));
  EXPECT_TRUE(same_value(*f->find("k.arr_f32"), array_value(GgufType::F32, {}, {0.5, (double)-1e30f, 3.0})));
  EXPECT_TRUE(same_value(*f->find("k.arr_bool"), array_value(GgufType::BOOL, {1, 0, 1})));
  EXPECT_TRUE(same_value(*f->find("k.arr_str"), array_value(GgufType::STRING, {}, {}, {"ab", "", "c d"})));
  EXPECT_TRUE(same_value(*f->find("k.arr_u8"), array_value(GgufType::U8, {0, 255, 7})));
  EXPECT_TRUE(same_value(*f->find("k.arr_i8"), array_value(GgufType::I8, {-128, 127})));
  EXPECT_TRUE(same_value(*f->find("k.arr_u16"), array_value(GgufType::U16, {65535})));
  EXPECT_TRUE(same_value(*f->find("k.arr_i16"), array_value(GgufType::I16, {-32768})));
  EXPECT_TRUE(same_value(*f->find("k.arr_u64"), array_value(GgufType::U64, {INT64_MAX})));
  EXPECT_TRUE(same_value(*f->find("k.arr_i64"), array_value(GgufType::I64, {INT64_MIN, 1})));
  EXPECT_TRUE(same_value(*f->find("k.arr_f64"), array_value(GgufType::F64, {}, {0.1, -2.5})));
  EXPECT_TRUE(same_value(*f->find("k.arr_empty"), array_value(GgufType::I32, {})));
  expect_tensors(*f, ts);

  // Copying every KV of the file read back, verbatim, writes the same metadata again.
  const std::string path2 = tmp.path("rt2.gguf");
  {
    GgufWriter w(path2);
    for (const auto& [k, v] : f->metadata()) w.add_kv(k, v);
    w.finish();  // no tensors: begin_data() is implied
  }
  auto f2 = GgufFile::open(path2);
  EXPECT_EQ(f2->alignment(), align);
  expect_same_metadata(*f, *f2);
  EXPECT_TRUE(f2->tensors().empty());
}

INSTANTIATE_TEST_SUITE_P(GgufWriter, GgufWriterAlign, ::testing::Values(size_t{32}, size_t{64}, size_t{1}));

TEST(GgufWriter, LastValueWinsFirstPositionKept) {
  TempDir tmp;
  const std::string path = tmp.path("kv.gguf");
  {
    GgufWriter w(path);
    w.add_u32("a", 1);
    w.add_string("b", "x");
    w.add_string("c", "y");
    w.add_i32("a", -2);  // replaces, type included
    w.remove_kv("c");
    w.remove_kv("not.there");
    w.set_alignment(64);
    w.set_alignment(32);  // back to the default: no key
    EXPECT_TRUE(w.has_kv("a"));
    EXPECT_EQ(w.find_kv("c"), nullptr);
    w.finish();
  }
  auto f = GgufFile::open(path);
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata()[0].first, "a");
  EXPECT_EQ(f->metadata()[0].second.type, GgufType::I32);
  EXPECT_EQ(f->get_int("a"), -2);
  EXPECT_EQ(f->metadata()[1].first, "b");
  EXPECT_FALSE(f->has("general.alignment"));
}

TEST(GgufWriter, PrivateTypeRoundTrip) {
  TempDir tmp;
  const std::string path = tmp.path("hq.gguf");
  std::vector<TensorSpec> ts = {
      {"norm", {128}, QType::F32, {}},
      {"w.hq3", {128, 3}, QType::HQ3_64, {}},
      {"w.s3", {64, 2, 2}, QType::S3_32, {}},
      {"w.hq3_128", {256}, QType::HQ3_128, {}},
      {"w.q8", {32, 5}, QType::Q8_0, {}},
  };
  {
    GgufWriter w(path);
    w.add_string("general.architecture", "llama");
    // A stale key (copied from a file where "norm" was private) is dropped: "norm" is F32 now.
    w.add_string("stepq.qtype.norm", "HQ2_64");
    // A wrong value for a private tensor is corrected.
    w.add_string("stepq.qtype.w.s3", "HQ4_64");
    write_tensors(w, ts, 2);
  }
  auto f = GgufFile::open(path);
  expect_tensors(*f, ts);
  EXPECT_EQ(f->tensor("w.hq3")->n_bytes, 2u * 28 * 3);
  EXPECT_EQ(f->get_string("stepq.qtype.w.hq3"), "HQ3_64");
  EXPECT_EQ(f->get_string("stepq.qtype.w.s3"), "S3_32");
  EXPECT_EQ(f->get_string("stepq.qtype.w.hq3_128"), "HQ3_128");
  EXPECT_FALSE(f->has("stepq.qtype.norm"));
  EXPECT_FALSE(f->has("stepq.qtype.w.q8"));
  // The KV order: the architecture first, then the keys in the order they were first set.
  ASSERT_EQ(f->metadata().size(), 4u);
  EXPECT_EQ(f->metadata()[0].first, "general.architecture");
  EXPECT_EQ(f->metadata()[1].first, "stepq.qtype.w.s3");
  EXPECT_EQ(f->metadata()[2].first, "stepq.qtype.w.hq3");
  EXPECT_EQ(f->metadata()[3].first, "stepq.qtype.w.hq3_128");

  // Copying the file (its stepq.qtype keys with it) gives the same file again.
  const std::string path2 = tmp.path("hq2.gguf");
  {
    GgufWriter w(path2);
    for (const auto& [k, v] : f->metadata()) w.add_kv(k, v);
    for (const auto& t : f->tensors()) w.add_tensor(t.name, std::span<const int64_t>(t.ne, t.n_dims), t.type);
    w.begin_data();
    for (const auto& t : f->tensors()) w.write(t.name, t.data, t.n_bytes);
    w.finish();
  }
  auto f2 = GgufFile::open(path2);
  expect_same_metadata(*f, *f2);
  expect_same_tensors(*f, *f2);
}

TEST(GgufWriter, MisuseIsAnError) {
  TempDir tmp;
  const std::string path = tmp.path("bad.gguf");
  GgufWriter w(path);
  // Values that do not fit their type, scalars and array elements.
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::U8, {1, 300})), "element 1 = 300 does not fit");
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::I8, {-129})), "does not fit");
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::U32, {-1})), "does not fit");
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::I32, {1ll << 31})), "does not fit");
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::BOOL, {2})), "does not fit");
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::F32, {}, {1e39})), "does not fit");
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::I32, {}, {1.0})), "another kind");
  EXPECT_ERROR_HAS(w.add_kv("x", array_value(GgufType::ARRAY, {})), "nested arrays");
  EXPECT_ERROR_HAS(w.add_kv("x", int_value(GgufType::U16, 70000)), "'x' = 70000 does not fit");
  EXPECT_ERROR_HAS(w.add_kv("x", int_value(GgufType::STRING, 1)), "another kind");
  EXPECT_ERROR_HAS(w.add_kv("x", int_value((GgufType)13, 1)), "invalid value type");
  EXPECT_ERROR_HAS(w.add_kv("", int_value(GgufType::U8, 1)), "empty metadata key");
  EXPECT_ERROR_HAS(w.add_kv("general.alignment", int_value(GgufType::U32, 48)), "not a power of two");
  EXPECT_ERROR_HAS(w.add_kv("general.alignment", int_value(GgufType::U64, 64)), "must be uint32");
  EXPECT_FALSE(w.has_kv("x"));
  // Tensors the reader would refuse.
  EXPECT_ERROR_HAS(w.add_tensor("q", {33}, QType::Q8_0), "not a multiple of the block size 32");
  EXPECT_ERROR_HAS(w.add_tensor("q", {32}, (QType)17), "not a weight format");
  EXPECT_ERROR_HAS(w.add_tensor("q", {32}, QType::Q8_K), "not a weight format");
  EXPECT_ERROR_HAS(w.add_tensor(std::string(64, 'n'), {32}, QType::F32), "must be 1..63");
  EXPECT_ERROR_HAS(w.add_tensor("q", {}, QType::F32), "0 dimensions");
  EXPECT_ERROR_HAS(w.add_tensor("q", {1, 1, 1, 1, 1}, QType::F32), "5 dimensions");
  EXPECT_ERROR_HAS(w.add_tensor("q", {0}, QType::F32), "dimension 0 is 0");
  w.add_tensor("a", {32, 2}, QType::F32);
  w.add_tensor("b", {32}, QType::Q8_0);
  w.add_tensor("c", {4}, QType::F16);
  EXPECT_ERROR_HAS(w.add_tensor("a", {4}, QType::F32), "declared twice");
  EXPECT_ERROR_HAS(w.write("a", nullptr, 0), "before begin_data");
  w.begin_data();
  // No declarations after the header is out.
  EXPECT_ERROR_HAS(w.add_u32("late", 1), "after begin_data");
  EXPECT_ERROR_HAS(w.add_tensor("late", {4}, QType::F32), "after begin_data");
  EXPECT_ERROR_HAS(w.set_alignment(64), "after begin_data");
  EXPECT_ERROR_HAS(w.begin_data(), "after begin_data");
  std::vector<uint8_t> buf(512, 1);
  EXPECT_ERROR_HAS(w.write("b", buf.data(), 34),
                   "tensor 'b' written before tensor 'a' is complete (0 of 256");
  EXPECT_ERROR_HAS(w.write("zz", buf.data(), 1), "not declared");
  EXPECT_ERROR_HAS(w.write("a", buf.data(), 257), "too many");
  w.write("a", buf.data(), 100);
  EXPECT_ERROR_HAS(w.write("b", buf.data(), 34), "(100 of 256 bytes written)");
  w.write("a", buf.data(), 156);
  EXPECT_ERROR_HAS(w.write("a", buf.data(), 1), "already complete");
  EXPECT_ERROR_HAS(w.write("c", buf.data(), 8), "tensor 'c' written before tensor 'b'");
  w.write("b", buf.data(), 34);
  w.write("c", buf.data(), 7);
  // A short tensor at finish: an Error, and no file under the real name.
  EXPECT_ERROR_HAS(w.finish(), "tensor 'c' is incomplete at finish(): 7 of 8 bytes");
  EXPECT_FALSE(fs::exists(path));
  w.write("c", buf.data(), 1);
  w.finish();
  EXPECT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_ERROR_HAS(w.finish(), "called twice");
  EXPECT_ERROR_HAS(w.write("c", buf.data(), 1), "after finish");
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->tensors().size(), 3u);
}

TEST(GgufWriter, UnfinishedWriterLeavesNoFile) {
  TempDir tmp;
  const std::string path = tmp.path("unfinished.gguf");
  {
    GgufWriter w(path);
    EXPECT_EQ(w.tmp_path(), path + ".tmp");
    w.add_string("general.architecture", "llama");
    w.add_tensor("a", {1024}, QType::F32);
    w.begin_data();
    std::vector<float> x(512, 1.0f);
    w.write("a", x.data(), x.size() * 4);
    EXPECT_TRUE(fs::exists(path + ".tmp"));
    EXPECT_FALSE(fs::exists(path));
  }
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_FALSE(fs::exists(path));
  // An earlier file under the real name survives a writer that does not finish.
  { std::ofstream(path) << "old"; }
  { GgufWriter w(path); }
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  std::ifstream in(path);
  std::string s;
  in >> s;
  EXPECT_EQ(s, "old");
}

TEST(GgufWriter, IoErrorsNameTheFileAndReason) {
  EXPECT_ERROR_HAS(GgufWriter("/nonexistent-dir/x.gguf"), "/nonexistent-dir/x.gguf.tmp: cannot create");
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // The .tmp file is a link to /dev/full: every write fails with ENOSPC (here at the flush).
  TempDir tmp;
  const std::string path = tmp.path("full.gguf");
  fs::create_symlink("/dev/full", path + ".tmp");
  {
    GgufWriter w(path);
    w.add_tensor("a", {16}, QType::F32);
    w.begin_data();
    std::vector<float> x(16);
    w.write("a", x.data(), 64);
    std::string e = error_of([&] { w.finish(); });
    EXPECT_NE(e.find(path + ".tmp"), std::string::npos) << e;
    EXPECT_NE(e.find(std::strerror(ENOSPC)), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(path));
  }
  EXPECT_FALSE(fs::is_symlink(path + ".tmp"));  // removed (the link, not /dev/full)
  EXPECT_TRUE(fs::exists("/dev/full"));
}

// Copies a real model file (KVs verbatim, tensors row block by row block) and reads both back.
TEST(GgufWriter, CopiesARealModel) {
  const std::string src = test::model_path("stepq-tiny-target.gguf");
  if (!fs::exists(src)) return;
  auto a = GgufFile::open(src);
  TempDir tmp;
  const std::string path = tmp.path("copy.gguf");
  {
    GgufWriter w(path);
    w.set_alignment(a->alignment());
    for (const auto& [k, v] : a->metadata()) w.add_kv(k, v);
    for (const auto& t : a->tensors()) w.add_tensor(t.name, std::span<const int64_t>(t.ne, t.n_dims), t.type);
    w.begin_data();
    for (const auto& t : a->tensors()) {
      const size_t row = t.n_bytes / (size_t)t.n_rows();
      for (int64_t r = 0; r < t.n_rows(); r += 5)
        w.write(t.name, t.data + (size_t)r * row, (size_t)std::min<int64_t>(5, t.n_rows() - r) * row);
    }
    w.finish();
  }
  auto b = GgufFile::open(path);
  expect_same_metadata(*a, *b);
  expect_same_tensors(*a, *b);
  // The source was written by gguf-py, whose layout is the writer's: the copy is the same file.
  ASSERT_EQ(a->file_size(), b->file_size());
  std::ifstream fa(src, std::ios::binary), fb(path, std::ios::binary);
  std::vector<char> ba(a->file_size()), bb(b->file_size());
  fa.read(ba.data(), (std::streamsize)ba.size());
  fb.read(bb.data(), (std::streamsize)bb.size());
  EXPECT_TRUE(ba == bb);
}

// PyPI gguf (gguf-py, which raises on tensor type ids it does not know) reads a file the writer
// made, a private-type tensor included: it sees an I8 tensor of [row bytes, rows] and the
// stepq.qtype key. There is no tests/py script for this because a Python test would need a
// stepq command that writes such a file; the gtest writes it and runs a Python snippet instead
// (skipped when python3 or its gguf package is missing).
TEST(GgufWriter, PyPIGgufReadsTheFile) {
  if (std::system("python3 -c 'import gguf' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 -c 'import gguf' fails";
  TempDir tmp;
  const std::string path = tmp.path("py.gguf");
  std::vector<TensorSpec> ts = {
      {"tok.f32", {16, 4}, QType::F32, {}},
      {"w.q8", {64, 2}, QType::Q8_0, {}},
      {"w.hq3", {128, 3}, QType::HQ3_64, {}},
      {"w.s3", {32, 2, 2}, QType::S3_32, {}},
  };
  {
    GgufWriter w(path);
    w.set_alignment(64);
    w.add_string("general.architecture", "llama");
    w.add_u32("llama.block_count", 2);
    w.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
    const float scores[] = {0.5f, -1.0f};
    w.add_f32_array("tokenizer.ggml.scores", scores);
    write_tensors(w, ts, 1);
  }
  for (const TensorSpec& t : ts) std::ofstream(tmp.path(t.name + ".bin"), std::ios::binary)
      .write((const char*)t.bytes.data(), (std::streamsize)t.bytes.size());
  const std::string script = tmp.path("check.py");
  std::ofstream(script) << R"PY(
import os, sys
import gguf
path, d = sys.argv[1], os.path.dirname(sys.argv[1])
r = gguf.GGUFReader(path)
T = gguf.GGMLQuantizationType
t = {x.name: x for x in r.tensors}
assert list(t) == ["tok.f32", "w.q8", "w.hq3", "w.s3"], list(t)
want = {"tok.f32": (T.F32, [16, 4]), "w.q8": (T.Q8_0, [64, 2]),
        "w.hq3": (T.I8, [2 * 28, 3]), "w.s3": (T.I8, [14, 2, 2])}
for name, (ty, shape) in want.items():
    assert t[name].tensor_type == ty, (name, t[name].tensor_type)
    assert [int(s) for s in t[name].shape] == shape, (name, t[name].shape)
    data = open(os.path.join(d, name + ".bin"), "rb").read()
    assert t[name].data.tobytes() == data, name
f = r.fields
assert f["stepq.qtype.w.hq3"].contents() == "HQ3_64"
assert f["stepq.qtype.w.s3"].contents() == "S3_32"
assert "stepq.qtype.w.q8" not in f
assert f["general.alignment"].contents() == 64
assert f["general.architecture"].contents() == "llama"
assert f["llama.block_count"].contents() == 2
assert f["tokenizer.ggml.tokens"].contents() == ["a", "b"]
assert f["tokenizer.ggml.scores"].contents() == [0.5, -1.0]
print("ok")
)PY";
  const std::string cmd = "python3 '" + script + "' '" + path + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

// ---------------------------------------------------------------------------------------------
// Reader: private types stored as I8, built by hand (independent of the writer).

// One tensor "w" of ggml type `type` with ne = {ne0, 2}, and an optional KV stepq.qtype.w.
std::vector<uint8_t> i8_file(uint64_t ne0, uint32_t type, const char* qtype_name, uint32_t kv_type = 8) {
  test::GgufBytes w;
  w.header(1, qtype_name ? 2 : 1);
  w.kv_string("general.architecture", "llama");
  if (qtype_name) {
    w.str("stepq.qtype.w");
    w.put<uint32_t>(kv_type);
    if (kv_type == 8) w.str(qtype_name);
    else w.put<uint32_t>(49);
  }
  w.str("w");
  w.put<uint32_t>(2);
  w.put<uint64_t>(ne0);
  w.put<uint64_t>(2);
  w.put<uint32_t>(type);
  w.put<uint64_t>(0);
  while (w.b.size() % 32) w.b.push_back(0);
  for (uint64_t i = 0; i < ne0 * 2; i++) w.b.push_back((uint8_t)i);
  while (w.b.size() % 32) w.b.push_back(0);
  return w.b;
}

std::string parse_error(const std::vector<uint8_t>& b) {
  return error_of([&] { GgufFile::parse(b.data(), b.size(), "f.gguf"); });
}

TEST(GgufPrivateType, I8WithKeyResolves) {
  auto b = i8_file(56, 24, "HQ3_64");
  auto f = GgufFile::parse(b.data(), b.size(), "f.gguf");
  const GgufTensorInfo* t = f->tensor("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, QType::HQ3_64);
  EXPECT_EQ(t->n_dims, 2);
  EXPECT_EQ(t->ne[0], 128);
  EXPECT_EQ(t->ne[1], 2);
  EXPECT_EQ(t->n_bytes, 112u);
  EXPECT_EQ(t->data[57], 57);
}

TEST(GgufPrivateType, HostileVariantsAreErrors) {
  // Plain I8 (no key): refused like any type stepq does not read.
  EXPECT_NE(
      parse_error(i8_file(56, 24, nullptr)).find("tensor 'w' has type type 24 which stepq does not support"),
      std::string::npos)
      << parse_error(i8_file(56, 24, nullptr));
  EXPECT_NE(
      parse_error(i8_file(56, 24, "HQ9_99"))
          .find(
              "f.gguf: tensor 'w': stepq.qtype.w names unknown type 'HQ9_99' (file made by a newer stepq?)"),
      std::string::npos)
      << parse_error(i8_file(56, 24, "HQ9_99"));
  EXPECT_NE(parse_error(i8_file(56, 24, "Q8_0")).find("not a stepq-private one"), std::string::npos);
  EXPECT_NE(parse_error(i8_file(56, 24, "Q8_K")).find("not support as a weight format"), std::string::npos);
  EXPECT_NE(parse_error(i8_file(56, 24, "HQ3_64", 4)).find("must be a string"), std::string::npos);
  EXPECT_NE(
      parse_error(i8_file(57, 24, "HQ3_64")).find("rows of 57 bytes, not a multiple of the 28-byte block"),
      std::string::npos)
      << parse_error(i8_file(57, 24, "HQ3_64"));
  // The key on a tensor of another type means nothing: an F32 tensor stays F32.
  auto b = i8_file(4, 0, "HQ3_64");
  auto f = GgufFile::parse(b.data(), b.size(), "f.gguf");
  EXPECT_EQ(f->tensor("w")->type, QType::F32);
  // The size checks still apply to the resolved tensor: data past the end of the file.
  auto cut = i8_file(56, 24, "HQ3_64");
  cut.resize(cut.size() - 40);
  EXPECT_NE(parse_error(cut).find("extends past the end"), std::string::npos) << parse_error(cut);
  // Every truncation of a good file that cuts into the tensor data is an Error.
  auto good = i8_file(56, 24, "HQ3_64");
  for (size_t n = 0; n < good.size() - 16; n++) {
    std::vector<uint8_t> c(good.begin(), good.begin() + (ptrdiff_t)n);
    EXPECT_THROW(GgufFile::parse(c.data(), c.size()), Error) << n;
  }
  // Random byte flips never crash, and a file that still parses has a tensor inside it.
  std::mt19937 rng(99);
  for (int i = 0; i < 20000; i++) {
    auto b = good;
    const int flips = 1 + (int)(rng() % 4);
    for (int k = 0; k < flips; k++) b[rng() % b.size()] = (uint8_t)rng();
    try {
      auto g = GgufFile::parse(b.data(), b.size());
      for (const GgufTensorInfo& t : g->tensors())
        ASSERT_LE((size_t)(t.data - b.data()) + t.n_bytes, b.size());
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace stepq
