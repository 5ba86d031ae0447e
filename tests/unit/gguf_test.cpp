// GGUF reader: real files parse; every truncation and a set of hostile edits give an Error,
// never a crash or a huge allocation.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/error.h"
#include "formats/gguf.h"
#include "gguf_writer.h"
#include "test_models.h"

namespace stepq {
namespace {

// version, 2 tensors (F32 [4], Q8_0 [32 x 2]), metadata of every scalar type plus arrays.
std::vector<uint8_t> make_file(uint32_t version = 3) {
  test::GgufBytes w;
  w.b = {'G', 'G', 'U', 'F'};
  w.put<uint32_t>(version);
  w.put<uint64_t>(2);   // tensors
  w.put<uint64_t>(15);  // kv
  w.str("general.architecture"); w.put<uint32_t>(8); w.str("llama");
  w.str("k.u8"); w.put<uint32_t>(0); w.put<uint8_t>(200);
  w.str("k.i8"); w.put<uint32_t>(1); w.put<int8_t>(-5);
  w.str("k.u16"); w.put<uint32_t>(2); w.put<uint16_t>(60000);
  w.str("k.i16"); w.put<uint32_t>(3); w.put<int16_t>(-300);
  w.str("k.u32"); w.put<uint32_t>(4); w.put<uint32_t>(4000000000u);
  w.str("k.i32"); w.put<uint32_t>(5); w.put<int32_t>(-7);
  w.str("k.f32"); w.put<uint32_t>(6); w.put<float>(1.5f);
  w.str("k.bool"); w.put<uint32_t>(7); w.put<uint8_t>(1);
  w.str("k.u64"); w.put<uint32_t>(10); w.put<uint64_t>(1ull << 40);
  w.str("k.i64"); w.put<uint32_t>(11); w.put<int64_t>(-(1ll << 40));
  w.str("k.f64"); w.put<uint32_t>(12); w.put<double>(2.25);
  w.str("k.arr_i32"); w.put<uint32_t>(9); w.put<uint32_t>(5); w.put<uint64_t>(3);
  w.put<int32_t>(1); w.put<int32_t>(2); w.put<int32_t>(3);
  w.str("k.arr_str"); w.put<uint32_t>(9); w.put<uint32_t>(8); w.put<uint64_t>(2); w.str("ab"); w.str("");
  w.str("general.alignment"); w.put<uint32_t>(4); w.put<uint32_t>(32);
  // tensor infos
  w.str("a"); w.put<uint32_t>(1); w.put<uint64_t>(4); w.put<uint32_t>(0); w.put<uint64_t>(0);
  w.str("b"); w.put<uint32_t>(2); w.put<uint64_t>(32); w.put<uint64_t>(2); w.put<uint32_t>(8); w.put<uint64_t>(32);
  while (w.b.size() % 32) w.b.push_back(0);
  for (int i = 0; i < 4; i++) w.put<float>((float)i);
  while (w.b.size() % 32) w.b.push_back(0);
  for (int i = 0; i < 2 * 34; i++) w.b.push_back((uint8_t)i);
  return w.b;
}

TEST(Gguf, ParsesEveryMetadataType) {
  for (uint32_t version : {2u, 3u}) {
    auto buf = make_file(version);
    auto f = GgufFile::parse(buf.data(), buf.size());
    EXPECT_EQ(f->version(), version);
    EXPECT_EQ(f->get_string("general.architecture"), "llama");
    EXPECT_EQ(f->get_int("k.u8"), 200);
    EXPECT_EQ(f->get_int("k.i8"), -5);
    EXPECT_EQ(f->get_int("k.u16"), 60000);
    EXPECT_EQ(f->get_int("k.i16"), -300);
    EXPECT_EQ(f->get_u32("k.u32"), 4000000000u);
    EXPECT_EQ(f->get_int("k.i32"), -7);
    EXPECT_FLOAT_EQ(f->get_f32("k.f32"), 1.5f);
    EXPECT_TRUE(f->get_bool("k.bool"));
    EXPECT_EQ(f->get_int("k.u64"), 1ll << 40);
    EXPECT_EQ(f->get_int("k.i64"), -(1ll << 40));
    EXPECT_FLOAT_EQ(f->get_f32("k.f64"), 2.25f);
    EXPECT_EQ(f->get_array("k.arr_i32").ints, (std::vector<int64_t>{1, 2, 3}));
    EXPECT_EQ(f->get_array("k.arr_str").strings, (std::vector<std::string>{"ab", ""}));
    ASSERT_EQ(f->tensors().size(), 2u);
    const GgufTensorInfo* a = f->tensor("a");
    ASSERT_NE(a, nullptr);
    float v[4];
    std::memcpy(v, a->data, 16);
    EXPECT_EQ(v[3], 3.0f);
    const GgufTensorInfo* b = f->tensor("b");
    EXPECT_EQ(b->n_bytes, 68u);
    EXPECT_EQ(b->data - buf.data(), (ptrdiff_t)(f->data_offset() + 32));
    // Typed getters refuse the wrong type, naming the key.
    try {
      f->get_string("k.u8");
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("k.u8"), std::string::npos);
    }
    EXPECT_THROW(f->get_u32("k.i8"), Error);  // negative
    EXPECT_THROW(f->get_u32("missing.key"), Error);
    EXPECT_EQ(f->get_u32("missing.key", 7u), 7u);
  }
}

TEST(Gguf, EveryTruncationIsAnError) {
  auto buf = make_file();
  for (size_t n = 0; n < buf.size(); n++) {
    std::vector<uint8_t> cut(buf.begin(), buf.begin() + n);
    EXPECT_THROW(GgufFile::parse(cut.data(), cut.size()), Error) << "prefix of " << n << " bytes";
  }
}

TEST(Gguf, HostileEditsAreErrors) {
  auto base = make_file();
  auto expect_error = [&](size_t off, std::vector<uint8_t> bytes, const char* what) {
    auto b = base;
    std::memcpy(b.data() + off, bytes.data(), bytes.size());
    try {
      GgufFile::parse(b.data(), b.size());
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      SCOPED_TRACE(e.what());
    }
  };
  expect_error(0, {'G', 'G', 'U', 'X'}, "bad magic");
  expect_error(4, {1, 0, 0, 0}, "version 1");
  expect_error(4, {9, 0, 0, 0}, "version 9");
  expect_error(4, {0, 0, 0, 3}, "byte-swapped version");
  expect_error(8, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "huge tensor count");
  expect_error(16, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "huge kv count");
  expect_error(24, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "huge key length");
  // value type of the first kv: after key "general.architecture" (8 + 20 bytes)
  expect_error(24 + 8 + 20, {99, 0, 0, 0}, "bad value type");
  // Random byte flips: must never crash (errors or successful parses are both fine).
  std::mt19937 rng(1234);
  for (int i = 0; i < 20000; i++) {
    auto b = base;
    int flips = 1 + (int)(rng() % 4);
    for (int k = 0; k < flips; k++) b[rng() % b.size()] = (uint8_t)rng();
    try {
      GgufFile::parse(b.data(), b.size());
    } catch (const Error&) {
    }
  }
}

TEST(Gguf, RealModelsParse) {
  for (const char* m : {"smollm2", "gemma3", "qwen0.5b", "qwen1.5b"}) {
    auto f = GgufFile::open(test::model_path(m));
    EXPECT_GT(f->tensors().size(), 100u) << m;
    EXPECT_FALSE(f->get_string("general.architecture").empty());
    size_t end = 0;
    for (const auto& t : f->tensors()) end = std::max(end, (size_t)(f->data_offset() + t.offset + t.n_bytes));
    EXPECT_LE(end, f->file_size()) << m;
  }
}

TEST(Gguf, MissingFileNamesThePath) {
  try {
    GgufFile::open("/nonexistent/model.gguf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos);
  }
}

}  // namespace
}  // namespace stepq
