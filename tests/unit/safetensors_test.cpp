// The safetensors reader on files built byte by byte here: valid ones read back exactly, and every
// kind of damage (truncation anywhere, bad header length, bad JSON, unknown dtype, offsets out of
// range, overlapping or of the wrong size, shapes that overflow) is an Error naming the file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/mapped_file.h"
#include "formats/safetensors.h"
#include "test_models.h"

namespace stepq {
namespace {

std::vector<uint8_t> st_bytes(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + data.size());
  for (int i = 0; i < 8; i++) out.push_back((uint8_t)((uint64_t)header.size() >> (8 * i)));  // little-endian
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

template <typename T>
void append(std::vector<uint8_t>& d, const std::vector<T>& v) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(v.data());
  d.insert(d.end(), p, p + v.size() * sizeof(T));
}

// The message of the Error that parsing `bytes` throws ("" if it parses).
std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    SafetensorsFile::parse(bytes.data(), bytes.size(), "test.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ST_ERROR(bytes, substr)                                  \
  do {                                                                  \
    std::string msg = parse_error(bytes);                               \
    EXPECT_NE(msg, "") << "parsed without error";                       \
    EXPECT_NE(msg.find("test.safetensors"), std::string::npos) << msg;  \
    EXPECT_NE(msg.find(substr), std::string::npos) << msg;              \
  } while (0)

// Two F32 matrices, an I64 vector, metadata, a scalar and an empty tensor.
std::vector<uint8_t> valid_file() {
  std::vector<uint8_t> d;
  append(d, std::vector<float>{1, 2, 3, 4, 5, 6});          // a: [2, 3] at [0, 24)
  append(d, std::vector<int64_t>{7, -8});                   // ids: [2] at [24, 40)
  append(d, std::vector<float>{0.5f, -0.25f});              // b: [1, 2] at [40, 48)
  append(d, std::vector<uint16_t>{0x3C00});                 // s: [] F16 1.0 at [48, 50)
  std::string h =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[1,2],"data_offsets":[40,48]},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"ids":{"dtype":"I64","shape":[2],"data_offsets":[24,40]},)"
      R"("s":{"dtype":"F16","shape":[],"data_offsets":[48,50]},"e":{"dtype":"BF16","shape":[0,4],"data_offsets":[50,50]}})";
  h += std::string(8 - h.size() % 8, ' ');  // the reference writer pads the header with spaces
  return st_bytes(h, d);
}

TEST(Safetensors, ReadsValidFile) {
  auto bytes = valid_file();
  auto f = SafetensorsFile::parse(bytes.data(), bytes.size(), "test.safetensors");
  ASSERT_EQ(f->tensors().size(), 5u);
  EXPECT_EQ(f->tensors()[0].name, "a");  // sorted by name
  const SafetensorsTensor* a = f->tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, StDtype::F32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->n_elements(), 6);
  EXPECT_EQ(a->n_bytes, 24u);
  float v[6];
  std::memcpy(v, a->data, 24);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[5], 6.0f);
  const SafetensorsTensor* ids = f->tensor("ids");
  ASSERT_NE(ids, nullptr);
  int64_t iv[2];
  std::memcpy(iv, ids->data, 16);
  EXPECT_EQ(iv[1], -8);
  EXPECT_EQ(st_dtype_name(ids->dtype), std::string("I64"));
  const SafetensorsTensor* s = f->tensor("s");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->n_elements(), 1);
  EXPECT_EQ(f->tensor("e")->n_elements(), 0);
  EXPECT_EQ(f->tensor("nope"), nullptr);
  ASSERT_EQ(f->metadata().size(), 1u);
  EXPECT_EQ(f->metadata()[0].second, "pt");
  EXPECT_EQ(f->data_offset() % 8, 0u);
}

TEST(Safetensors, EveryTruncationIsAnError) {
  auto bytes = valid_file();
  for (size_t n = 0; n < bytes.size(); n++) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + n);
    EXPECT_NE(parse_error(cut), "") << "truncated to " << n << " bytes";
  }
}

TEST(Safetensors, HostileHeaders) {
  const std::vector<uint8_t> d(64, 0);
  EXPECT_ST_ERROR((std::vector<uint8_t>{1, 2, 3}), "too short");
  {
    auto b = st_bytes("{}", d);
    const uint64_t big = 1000;
    std::memcpy(b.data(), &big, 8);
    EXPECT_ST_ERROR(b, "past the end");
  }
  {
    auto b = st_bytes("{}", d);
    const uint64_t huge = ~0ull;
    std::memcpy(b.data(), &huge, 8);
    EXPECT_ST_ERROR(b, "limit");
  }
  EXPECT_ST_ERROR(st_bytes("[1,2]", d), "JSON object");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32",)", d), "invalid JSON");
  EXPECT_ST_ERROR(st_bytes("{\"a\xff\":1}", d), "invalid JSON");
  EXPECT_ST_ERROR(st_bytes(R"({"a":[1]})", d), "not an object");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", d), "unknown or unsupported "
                                                                                            "dtype 'F4'");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", d), "dtype is not a string");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", d), "needs dtype, shape and data_offsets");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", d), "unknown field");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d), "non-negative");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d), "non-negative");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", d), "not an array");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d), "two non-negative");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d), "end before");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[60,68]}})", d), "past the end");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d), "needs 12 bytes");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           d),
                  "overlap");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                           d),
                  "appears twice");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", d),
                  "appears twice");
  // Shapes whose element count or byte count does not fit in 64 bits.
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", d),
                  "overflows");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", d),
                  "overflows");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,8]}})", d),
                  "overflows");
  EXPECT_ST_ERROR(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", d),
                  "past the end");
  EXPECT_ST_ERROR(st_bytes(R"({"__metadata__":{"k":1}})", d), "not a string");
}

TEST(Safetensors, OpenNamesMissingFile) {
  try {
    SafetensorsFile::open("/nonexistent/model.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, OpensFileOnDisk) {
  auto bytes = valid_file();
  const std::string p = (std::filesystem::temp_directory_path() / "stepq_safetensors_test.safetensors").string();
  {
    std::ofstream o(p, std::ios::binary);
    o.write(reinterpret_cast<const char*>(bytes.data()), (std::streamsize)bytes.size());
  }
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->tensors().size(), 5u);
  EXPECT_EQ(f->file_size(), bytes.size());
  std::remove(p.c_str());
}

// all-MiniLM-L6-v2's model.safetensors: the real layout, and a truncated copy refused.
TEST(Safetensors, RealMiniLM) {
  const std::string p = test::model_path("minilm") + "/model.safetensors";
  if (!std::filesystem::exists(p)) return;  // model_path has already failed the test
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->file_size(), 90868376u);
  const SafetensorsTensor* w = f->tensor("embeddings.word_embeddings.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, StDtype::F32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{30522, 384}));
  ASSERT_NE(f->tensor("embeddings.position_ids"), nullptr);
  EXPECT_EQ(f->tensor("embeddings.position_ids")->dtype, StDtype::I64);
  EXPECT_NE(f->tensor("encoder.layer.5.output.LayerNorm.bias"), nullptr);
  MappedFile m(p);
  try {
    SafetensorsFile::parse(m.data(), m.size() / 2, "half.safetensors");
    FAIL() << "a file cut in half parsed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("past the end"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stepq
