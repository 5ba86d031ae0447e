// Tokenizers against llama.cpp: every line of three corpora and a list of edge cases must give
// the ids llama.cpp gives (reference data made by tools/make_tokenizer_reference.py with
// llama-cpp-python, committed under tests/data/tokenizer/). Plus: vocabulary facts (EOG set,
// token attributes, every token's piece), invalid UTF-8, round trips, streaming, errors.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "formats/gguf.h"
#include "gguf_writer.h"
#include "test_models.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace stepq {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Reference data and hashing (definitions match tools/make_tokenizer_reference.py)

constexpr uint64_t kFnvOffset = 0xCBF29CE484222325ull;

uint64_t fnv1a(const void* data, size_t n, uint64_t h = kFnvOffset) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001B3ull;
  }
  return h;
}

// ids as int32 little-endian, then FF FF FF FF.
uint64_t hash_line(const std::vector<int32_t>& ids, uint64_t h = kFnvOffset) {
  for (int32_t id : ids) {
    const uint32_t u = static_cast<uint32_t>(id);
    const uint8_t b[4] = {uint8_t(u), uint8_t(u >> 8), uint8_t(u >> 16), uint8_t(u >> 24)};
    h = fnv1a(b, 4, h);
  }
  const uint8_t sep[4] = {0xFF, 0xFF, 0xFF, 0xFF};
  return fnv1a(sep, 4, h);
}

std::string hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A corpus as the reference script splits it: after each '\n' (kept), or one JSONL field.
std::vector<std::string> corpus_lines(const std::string& path, const std::string& split) {
  const std::string data = read_file(path);
  std::vector<std::string> lines;
  if (split == "lines") {
    size_t start = 0;
    while (start < data.size()) {
      size_t nl = data.find('\n', start);
      size_t end = nl == std::string::npos ? data.size() : nl + 1;
      lines.push_back(data.substr(start, end - start));
      start = end;
    }
    return lines;
  }
  const std::string field = split.substr(split.find(':') + 1);
  std::istringstream in(data);
  std::string l;
  while (std::getline(in, l))
    if (l.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(json::parse(l)[field].get<std::string>());
  return lines;
}

// The "random" corpus: strings of 1..40 pool items chosen by xorshift64* (the generator of
// tools/make_tokenizer_reference.py; the pool is in the reference JSON).
std::vector<std::string> random_strings(const std::vector<std::string>& pool, uint64_t seed, size_t count) {
  uint64_t state = seed;
  const auto next = [&] {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1Dull;
  };
  std::vector<std::string> out;
  for (size_t i = 0; i < count; i++) {
    const uint64_t n = 1 + next() % 40;
    std::string s;
    for (uint64_t k = 0; k < n; k++) s += pool[next() % pool.size()];
    out.push_back(std::move(s));
  }
  return out;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); i++) s += (i ? " " : "") + std::to_string(ids[i]);
  return s;
}

std::string escaped(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '\n') o += "\\n";
    else if (c == '\r') o += "\\r";
    else if (c == '\t') o += "\\t";
    else if (c < 0x20) o += fmt::format("\\x{:02x}", c);
    else o += static_cast<char>(c);
  }
  return o;
}

struct Model {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
  json ref;
};

// Loaded once per test binary run: the vocabularies take a moment to build.
const Model& model(const std::string& name) {
  static std::map<std::string, Model> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Model m;
  m.ref = json::parse(read_file(test::source_dir() + "/tests/data/tokenizer/" + name + ".json"));
  const std::string path = test::model_path(name);
  if (std::filesystem::exists(path)) {
    m.file = GgufFile::open(path);
    m.tok = Tokenizer::from_gguf(*m.file);
  }
  return cache.emplace(name, std::move(m)).first->second;
}

// The lines of a corpus entry of the reference JSON.
std::vector<std::string> lines_of(const json& c) {
  const std::string split = c["split"];
  if (split == "random")
    return random_strings((c.contains("pool") ? c["pool"] : model("smollm2").ref["corpora"]["random"]["pool"])
                              .get<std::vector<std::string>>(),
                          std::stoull(c["seed"].get<std::string>(), nullptr, 16), c["n_lines"].get<size_t>());
  return corpus_lines(test::shared_dir() + "/" + c["path"].get<std::string>(), split);
}

// llama.cpp's ids for some lines, from the reference venv when this machine has it.
std::optional<std::vector<std::vector<int32_t>>> reference_ids(const std::string& name,
                                                               const std::vector<std::string>& lines) {
  const char* env = std::getenv("STEPQ_REF_PYTHON");
  const char* home = std::getenv("HOME");
  const std::string py = env ? env : std::string(home ? home : "/root") + "/.cache/stepq/venv-ref/bin/python";
  if (!std::filesystem::exists(py)) return std::nullopt;
  const std::string in = (std::filesystem::temp_directory_path() / "stepq_tokenizer_lines.json").string();
  const std::string out = in + ".out";
  {
    std::ofstream f(in, std::ios::binary);
    f << json(lines).dump();
  }
  const std::string cmd = py + " " + test::source_dir() + "/tools/make_tokenizer_reference.py lines " + name + " " + in +
                          " > " + out + " 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) return std::nullopt;
  try {
    return json::parse(read_file(out)).get<std::vector<std::vector<int32_t>>>();
  } catch (...) {
    return std::nullopt;
  }
}

// Checks one corpus entry of the reference data block by block; on a mismatch, finds the first
// differing line (asking llama.cpp through the reference venv when `ref_model` names a real model
// the venv can load). Also the whole corpus in one call, timed.
void check_corpus_against_llama_cpp(const Tokenizer& tok, const std::string& label, const std::string& ref_model,
                                    const std::string& corpus, const json& c) {
  const std::vector<std::string> lines = lines_of(c);
  // The random strings alternate parse_special false / true; the text corpora are plain text.
  const bool random = c["split"] == "random";
  ASSERT_EQ(lines.size(), c["n_lines"].get<size_t>()) << corpus << ": the corpus file differs from the reference";
  const size_t block = c["block_lines"];
  const auto& blocks = c["blocks"];
  ASSERT_EQ(blocks.size(), (lines.size() + block - 1) / block);
  int64_t n_tokens = 0;
  int bad_blocks = 0;
  for (size_t b = 0; b < blocks.size(); b++) {
    uint64_t h = kFnvOffset;
    std::vector<std::vector<int32_t>> ids;
    for (size_t i = b * block; i < std::min(lines.size(), (b + 1) * block); i++) {
      ids.push_back(tok.encode(lines[i], false, random && i % 2 == 1));
      n_tokens += static_cast<int64_t>(ids.back().size());
      h = hash_line(ids.back(), h);
    }
    if (hex64(h) == blocks[b].get<std::string>()) continue;
    if (++bad_blocks > 3) continue;  // report the first few
    const size_t first = b * block;
    std::vector<std::string> block_lines(lines.begin() + first, lines.begin() + first + ids.size());
    std::string msg = fmt::format("{} {}: block {} (lines {}..{}) differs from llama.cpp", label, corpus, b,
                                  first + 1, first + ids.size());
    if (random) {
      msg += "\n  (random corpus: no per-line reference; our ids follow)";
      for (size_t i = 0; i < ids.size() && i < 8; i++)
        msg += fmt::format("\n  line {}: \"{}\" -> {}", first + i + 1, escaped(block_lines[i]), join_ids(ids[i]));
    } else if (auto want = ref_model.empty() ? std::nullopt : reference_ids(ref_model, block_lines)) {
      bool found = false;
      for (size_t i = 0; i < ids.size() && i < want->size(); i++) {
        if (ids[i] == (*want)[i]) continue;
        msg += fmt::format("\n  first differing line {}: \"{}\"\n  stepq:     {}\n  llama.cpp: {}", first + i + 1,
                           escaped(block_lines[i]), join_ids(ids[i]), join_ids((*want)[i]));
        found = true;
        break;
      }
      if (!found)
        msg += "\n  llama.cpp now gives our ids for every line of the block: the reference data is stale "
               "(regenerate it with tools/make_tokenizer_reference.py)";
    } else {
      msg += "\n  (no reference venv to show llama.cpp's ids; our ids for the block's lines follow)";
      for (size_t i = 0; i < ids.size(); i++)
        msg += fmt::format("\n  line {}: \"{}\" -> {}", first + i + 1, escaped(block_lines[i]), join_ids(ids[i]));
    }
    ADD_FAILURE() << msg;
  }
  EXPECT_EQ(bad_blocks, 0) << corpus << ": blocks differing from llama.cpp";
  EXPECT_EQ(n_tokens, c["n_tokens"].get<int64_t>()) << corpus;

  // The whole corpus in one call (lines joined: merges across line ends, one long input).
  std::string whole;
  for (const auto& l : lines) whole += l;
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> all = tok.encode(whole, false, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(static_cast<int64_t>(all.size()), c["whole_n_tokens"].get<int64_t>()) << corpus << " in one call";
  EXPECT_EQ(hex64(hash_line(all)), c["whole_hash"].get<std::string>()) << corpus << " in one call";
  std::printf("[ timing ] %s %s: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", label.c_str(), corpus.c_str(),
              whole.size(), all.size(), s, whole.size() / s / 1e6);
  // "Well under a second or two" for 1.3 MB in a Release build; the bound leaves room for
  // sanitizer and debug builds.
  EXPECT_LT(s, 20.0) << corpus << " took too long";
}

class TokenizerModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const Model& m = model(GetParam());
    if (!m.tok) GTEST_FAIL() << "model file for " << GetParam() << " is missing (run scripts/fetch-models.py)";
  }
  const Tokenizer& tok() const { return *model(GetParam()).tok; }
  const json& ref() const { return model(GetParam()).ref; }
  void check_corpus(const std::string& corpus) {
    check_corpus_against_llama_cpp(tok(), GetParam(), GetParam(), corpus, ref()["corpora"][corpus]);
  }
};

TEST_P(TokenizerModel, VocabularyMatchesLlamaCpp) {
  const json& v = ref()["vocab"];
  EXPECT_EQ(tok().n_vocab(), v["n_vocab"].get<int32_t>());
  EXPECT_EQ(tok().bos(), v["bos"].get<int32_t>());
  EXPECT_EQ(tok().eos(), v["eos"].get<int32_t>());
  EXPECT_EQ(tok().add_bos(), v["add_bos"].get<bool>());
  EXPECT_EQ(tok().add_eos(), v["add_eos"].get<bool>());
  const std::vector<int32_t> eog(tok().eog_ids().begin(), tok().eog_ids().end());
  EXPECT_EQ(eog, v["eog_ids"].get<std::vector<int32_t>>());
  int n_control = 0;
  uint64_t h_attr = kFnvOffset, h_piece = kFnvOffset, h_special = kFnvOffset;
  const uint8_t sep[4] = {0xFF, 0xFF, 0xFF, 0xFF};
  for (int32_t id = 0; id < tok().n_vocab(); id++) {
    n_control += tok().is_control(id);
    const uint32_t a = tok().token_attr(id);
    const uint8_t b[4] = {uint8_t(a), uint8_t(a >> 8), uint8_t(a >> 16), uint8_t(a >> 24)};
    h_attr = fnv1a(b, 4, h_attr);
    const std::string p = tok().token_to_piece(id, false), ps = tok().token_to_piece(id, true);
    h_piece = fnv1a(sep, 4, fnv1a(p.data(), p.size(), h_piece));
    h_special = fnv1a(sep, 4, fnv1a(ps.data(), ps.size(), h_special));
  }
  EXPECT_EQ(n_control, v["n_control"].get<int>());
  EXPECT_EQ(hex64(h_attr), v["attr_hash"].get<std::string>()) << "token attributes differ from llama.cpp's";
  EXPECT_EQ(hex64(h_piece), v["piece_hash"].get<std::string>()) << "token_to_piece(special=false) differs";
  EXPECT_EQ(hex64(h_special), v["piece_hash_special"].get<std::string>()) << "token_to_piece(special=true) differs";
}

TEST_P(TokenizerModel, EdgeCasesMatchLlamaCpp) {
  for (const json& e : ref()["edge_cases"]) {
    const std::string name = e["name"], text = e["text"];
    for (const auto& [key, ids] : e["ids"].items()) {
      const bool add_special = key[0] == 't', parse_special = key[1] == 't';
      EXPECT_EQ(join_ids(tok().encode(text, add_special, parse_special)), join_ids(ids.get<std::vector<int32_t>>()))
          << GetParam() << " edge case '" << name << "' add_special=" << add_special
          << " parse_special=" << parse_special << " text \"" << escaped(text) << "\"";
    }
    const std::vector<int32_t> tt = e["ids"]["tt"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok().decode(tt, false), e["decoded"].get<std::string>()) << GetParam() << " decode of '" << name << "'";
    EXPECT_EQ(tok().decode(tt, true), e["decoded_special"].get<std::string>())
        << GetParam() << " decode(special) of '" << name << "'";
  }
}

TEST_P(TokenizerModel, Wikitext2MatchesLlamaCpp) { check_corpus("wikitext2"); }
TEST_P(TokenizerModel, TinyShakespeareMatchesLlamaCpp) { check_corpus("tinyshakespeare"); }
TEST_P(TokenizerModel, Gsm8kMatchesLlamaCpp) { check_corpus("gsm8k"); }
TEST_P(TokenizerModel, RandomStringsMatchLlamaCpp) { check_corpus("random"); }

TEST_P(TokenizerModel, DecodeInvertsEncodeOnCorpora) {
  // Byte-level BPE is lossless. SentencePiece here (Gemma 3: no space prefix, byte fallback) is
  // too, except that a literal U+2581 in the text comes back as a space.
  const bool spm = tok().model() == "llama";
  for (const char* corpus : {"wikitext2", "tinyshakespeare", "gsm8k", "random"}) {
    const json& c = ref()["corpora"][corpus];
    int failures = 0;
    for (const std::string& line : lines_of(c)) {
      const std::string back = tok().decode(tok().encode(line, false, false));
      if (spm && line.find("\u2581") != std::string::npos) {
        std::string spaced = line;
        for (size_t p; (p = spaced.find("\u2581")) != std::string::npos;) spaced.replace(p, 3, " ");
        EXPECT_EQ(back, spaced);
        continue;
      }
      if (back != line && ++failures <= 3)
        ADD_FAILURE() << GetParam() << " " << corpus << ": \"" << escaped(line) << "\" decodes back to \""
                      << escaped(back) << "\"";
    }
    EXPECT_EQ(failures, 0) << corpus;
  }
}

TEST_P(TokenizerModel, InvalidUtf8IsAnErrorWithTheOffset) {
  const std::pair<std::string, std::string> cases[] = {
      {"\xff", "byte offset 0"},
      {"ab\xc3", "byte offset 2"},
      {"abc\xc0\xaf", "byte offset 3"},          // overlong '/'
      {"x\xed\xa0\x80y", "byte offset 1"},       // surrogate U+D800
      {"hi \xf4\x90\x80\x80", "byte offset 3"},  // above U+10FFFF
      {"ok\x80", "byte offset 2"},               // lone continuation byte
      {"\xe2\x82", "byte offset 0"},             // cut short
  };
  for (const auto& [text, want] : cases) {
    try {
      (void)tok().encode(text);
      ADD_FAILURE() << "no error for \"" << escaped(text) << "\"";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}

TEST_P(TokenizerModel, StreamerEmitsOnlyCompleteCharacters) {
  // Whole texts: the pieces concatenated equal decode, and every push is complete UTF-8.
  for (const char* text : {"Hello 👋 world 🌍!", "family: 👨‍👩‍👧‍👦", "你好，世界", "\U0001F9EC\U0001FAE0 \u0F3A"}) {
    const std::vector<int32_t> ids = tok().encode(text, false, false);
    TextStreamer st(tok());
    std::string out;
    for (int32_t id : ids) {
      const std::string s = st.push(id);
      EXPECT_NO_THROW(unicode::validate_utf8(s)) << "push gave a partial character for \"" << text << "\"";
      out += s;
    }
    out += st.flush();
    EXPECT_EQ(out, text);
  }
  // An emoji fed one byte token at a time: nothing until its last byte.
  std::vector<int32_t> byte_ids;
  for (char c : std::string("\xF0\x9F\x91\x8B")) {
    int32_t found = -1;
    for (int32_t id = 0; id < tok().n_vocab() && found < 0; id++)
      if (tok().token_to_piece(id, false) == std::string(1, c)) found = id;
    ASSERT_GE(found, 0) << "no single-byte token for 0x" << std::hex << (static_cast<int>(c) & 0xFF);
    byte_ids.push_back(found);
  }
  TextStreamer st(tok());
  EXPECT_EQ(st.push(byte_ids[0]), "");
  EXPECT_EQ(st.push(byte_ids[1]), "");
  EXPECT_EQ(st.push(byte_ids[2]), "");
  EXPECT_EQ(st.push(byte_ids[3]), "\xF0\x9F\x91\x8B");
  EXPECT_EQ(st.flush(), "");
  // An unfinished character at the end becomes U+FFFD; a stray continuation byte too, at once.
  EXPECT_EQ(st.push(byte_ids[0]), "");
  EXPECT_EQ(st.push(byte_ids[1]), "");
  EXPECT_EQ(st.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(st.push(byte_ids[2]), "\xEF\xBF\xBD");
  // A character cut short by another one: one U+FFFD for the cut part, then the new text.
  EXPECT_EQ(st.push(byte_ids[0]), "");
  const int32_t a = tok().encode("a", false, false).at(0);
  EXPECT_EQ(st.push(a), "\xEF\xBF\xBD" "a");
  st.reset();
  EXPECT_EQ(st.flush(), "");
}

INSTANTIATE_TEST_SUITE_P(Real, TokenizerModel, ::testing::Values("smollm2", "gemma3", "qwen0.5b"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

// The pre-tokenizer lists that no real model here uses (default, gpt-2, llama3, starcoder, and
// qwen2 on another vocabulary), on SmolLM2's vocabulary: its tokenizer.* metadata with
// tokenizer.ggml.pre replaced, as tools/make_tokenizer_reference.py gave it to llama.cpp.
std::vector<uint8_t> tokenizer_gguf_with_pre(const GgufFile& f, const std::string& pre) {
  std::vector<const std::pair<std::string, GgufValue>*> kvs;
  for (const auto& kv : f.metadata())
    if (kv.first.rfind("tokenizer.", 0) == 0 && kv.first != "tokenizer.chat_template") kvs.push_back(&kv);
  test::GgufBytes g;
  g.header(0, kvs.size());
  for (const auto* kv : kvs) {
    const auto& [key, val] = *kv;
    g.str(key);
    g.put<uint32_t>(static_cast<uint32_t>(val.type));
    switch (val.type) {
      case GgufType::STRING: g.str(key == "tokenizer.ggml.pre" ? pre : std::get<std::string>(val.v)); break;
      case GgufType::BOOL: g.put<uint8_t>(std::get<bool>(val.v)); break;
      case GgufType::U32: g.put<uint32_t>(static_cast<uint32_t>(std::get<int64_t>(val.v))); break;
      case GgufType::I32: g.put<int32_t>(static_cast<int32_t>(std::get<int64_t>(val.v))); break;
      case GgufType::ARRAY: {
        const GgufArray& a = std::get<GgufArray>(val.v);
        g.put<uint32_t>(static_cast<uint32_t>(a.elem_type));
        g.put<uint64_t>(a.size());
        if (a.elem_type == GgufType::STRING) {
          for (const auto& s : a.strings) g.str(s);
        } else if (a.elem_type == GgufType::I32) {
          for (int64_t v : a.ints) g.put<int32_t>(static_cast<int32_t>(v));
        } else if (a.elem_type == GgufType::F32) {
          for (double v : a.floats) g.put<float>(static_cast<float>(v));
        } else {
          throw std::runtime_error("tokenizer_gguf_with_pre: array type not handled for " + key);
        }
        break;
      }
      default: throw std::runtime_error("tokenizer_gguf_with_pre: type not handled for " + key);
    }
  }
  return g.b;
}

class PreVariant : public ::testing::TestWithParam<std::string> {};

TEST_P(PreVariant, MatchesLlamaCpp) {
  static const json variants = json::parse(read_file(test::source_dir() + "/tests/data/tokenizer/pre_variants.json"));
  const Model& base = model(variants["base_model"]);
  ASSERT_TRUE(base.tok) << "needs the SmolLM2 model file (scripts/fetch-models.py)";
  const json& v = variants["variants"][GetParam()];
  const std::vector<uint8_t> bytes = tokenizer_gguf_with_pre(*base.file, GetParam());
  auto f = GgufFile::parse(bytes.data(), bytes.size(), "smollm2 with pre " + GetParam());
  auto tok = Tokenizer::from_gguf(*f);
  EXPECT_EQ(tok->pre(), GetParam());
  EXPECT_EQ(tok->add_bos(), v["add_bos"].get<bool>());
  for (const json& e : base.ref["edge_cases"]) {
    const std::string name = e["name"], text = e["text"];
    EXPECT_EQ(join_ids(tok->encode(text, false, false)), join_ids(v["edge_ids"][name].get<std::vector<int32_t>>()))
        << "pre " << GetParam() << ", edge case '" << name << "': \"" << escaped(text) << "\"";
  }
  for (const auto& [corpus, c] : v["corpora"].items())
    check_corpus_against_llama_cpp(*tok, "pre " + GetParam(), "", corpus, c);
}

INSTANTIATE_TEST_SUITE_P(OnSmolLM2Vocab, PreVariant,
                         ::testing::Values("default", "gpt-2", "llama3", "qwen2", "starcoder"), [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(Tokenizer, Qwen15bHasTheSameTokenizerAs05b) {
  const Model& small = model("qwen0.5b");
  ASSERT_TRUE(small.tok);
  const std::string path = test::model_path("qwen1.5b");
  ASSERT_TRUE(std::filesystem::exists(path));
  auto f = GgufFile::open(path);
  auto big = Tokenizer::from_gguf(*f);
  ASSERT_EQ(big->n_vocab(), small.tok->n_vocab());
  for (int32_t id = 0; id < big->n_vocab(); id++) {
    ASSERT_EQ(big->token_text(id), small.tok->token_text(id)) << id;
    ASSERT_EQ(big->token_attr(id), small.tok->token_attr(id)) << id;
  }
  EXPECT_EQ(f->get_array("tokenizer.ggml.merges").strings, small.file->get_array("tokenizer.ggml.merges").strings);
  EXPECT_EQ(big->bos(), small.tok->bos());
  EXPECT_EQ(big->eos(), small.tok->eos());
  EXPECT_EQ(big->add_bos(), small.tok->add_bos());
  const std::string text = "def f(x):\n    return x ** 2  # 12345 <|im_start|>";
  EXPECT_EQ(big->encode(text, true, true), small.tok->encode(text, true, true));
}

// ---------------------------------------------------------------------------------------------
// Without real models

TEST(Tokenizer, ExpandsUnicodeClassesForPcre2) {
  const std::string e = expand_unicode_classes("[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|'s");
  EXPECT_EQ(e.find("\\p{"), std::string::npos);
  EXPECT_EQ(e.rfind("[^\\x{9}\\x{A}", 0), 0u) << e.substr(0, 40);  // whitespace members inside the one class
  EXPECT_NE(e.find("(?![^\\x{9}"), std::string::npos);
  EXPECT_NE(e.find("|'s"), std::string::npos);
  EXPECT_THROW(expand_unicode_classes("\\p{Han}+"), Error);
  EXPECT_THROW(expand_unicode_classes("[\\S]"), Error);
}

TEST(Tokenizer, PreTokenizerKeepsGapsAndPieceBoundaries) {
  // SmolLM's list: every digit alone first, then GPT-2 inside the rest (tokenizers.md §1.4).
  PreTokenizer smollm({"\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"});
  const auto v = [](std::vector<std::string_view> p) { return std::vector<std::string>(p.begin(), p.end()); };
  EXPECT_EQ(v(smollm.split(" 123")), (std::vector<std::string>{" ", "1", "2", "3"}));
  EXPECT_EQ(v(smollm.split("it's  ok\t")), (std::vector<std::string>{"it", "'s", " ", " ok", "\t"}));
  // U+180E is not whitespace for llama.cpp (PCRE2's own \s would say it is); U+2003 is.
  EXPECT_EQ(v(smollm.split("a\u180eb")), (std::vector<std::string>{"a", "\u180e", "b"}));
  // Only an ASCII space joins the next word; a lone other space before a word is left alone.
  EXPECT_EQ(v(smollm.split("a\u2003\u2003b")), (std::vector<std::string>{"a", "\u2003", "\u2003", "b"}));
  // CJK Extension I (U+2EBF0.., new in Unicode 15.1) is a letter; PCRE2 10.42's own tables
  // (Unicode 14) would see unassigned code points and split it from the "a".
  EXPECT_EQ(v(smollm.split("a\U0002EBF0\U0002EBF1")), (std::vector<std::string>{"a\U0002EBF0\U0002EBF1"}));
  // U+2FFC (15.1) is a symbol: it joins the punctuation-like run with the space.
  EXPECT_EQ(v(smollm.split("a \u2ffc\u31ef")), (std::vector<std::string>{"a", " \u2ffc\u31ef"}));
  PreTokenizer empty_ok({"\\p{N}"});
  EXPECT_TRUE(empty_ok.split("").empty());
  // A million spaces before a word: linear, and the JIT stack copes.
  std::string spaces(1000000, ' ');
  spaces += "x";
  const auto p = smollm.split(spaces);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[1], " x");
}

TEST(Tokenizer, Utf8Helpers) {
  EXPECT_EQ(unicode::utf8_sequence_length("\xF0\x9F\x91\x8B"), 4u);
  EXPECT_EQ(unicode::utf8_sequence_length("\xF0\x9F\x91"), 0u);
  EXPECT_TRUE(unicode::utf8_is_incomplete_prefix("\xF0\x9F\x91"));
  EXPECT_FALSE(unicode::utf8_is_incomplete_prefix("\xF0\x8F"));  // overlong start can never complete
  EXPECT_EQ(unicode::utf8_maximal_subpart("\xF0\x9F\x41"), 2u);
  EXPECT_EQ(unicode::utf8_maximal_subpart("\x80"), 1u);
  EXPECT_EQ(unicode::byte_to_codepoint(' '), 0x120u);
  EXPECT_EQ(unicode::byte_to_codepoint('\n'), 0x10Au);
  EXPECT_EQ(unicode::byte_to_codepoint(0xAD), 0x143u);
  for (int b = 0; b < 256; b++) EXPECT_EQ(unicode::codepoint_to_byte(unicode::byte_to_codepoint(uint8_t(b))), b);
}

// A tiny GGUF holding only a tokenizer.
struct TinyVocab {
  std::string model = "gpt2", pre = "gpt-2";
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;

  std::vector<uint8_t> bytes() const {
    test::GgufBytes g;
    const bool bpe = model == "gpt2";
    g.header(0, 3 + (bpe ? 1 : 0) + (types.empty() ? 0 : 1));
    g.kv_string("tokenizer.ggml.model", model);
    g.kv_string("tokenizer.ggml.pre", pre);
    const auto str_array = [&](const std::string& k, const std::vector<std::string>& v) {
      g.str(k);
      g.put<uint32_t>(9);
      g.put<uint32_t>(8);
      g.put<uint64_t>(v.size());
      for (const auto& s : v) g.str(s);
    };
    str_array("tokenizer.ggml.tokens", tokens);
    if (bpe) str_array("tokenizer.ggml.merges", merges);
    if (!types.empty()) {
      g.str("tokenizer.ggml.token_type");
      g.put<uint32_t>(9);
      g.put<uint32_t>(5);
      g.put<uint64_t>(types.size());
      for (int32_t t : types) g.put<int32_t>(t);
    }
    return g.b;
  }
};

TinyVocab byte_level_vocab() {
  TinyVocab v;
  for (int b = 0; b < 256; b++) {
    std::string s;
    unicode::append_utf8(s, unicode::byte_to_codepoint(uint8_t(b)));
    v.tokens.push_back(s);
  }
  v.tokens.push_back("he");       // 256
  v.tokens.push_back("hel");      // 257
  v.tokens.push_back("hell");     // 258
  v.tokens.push_back("hello");    // 259
  v.tokens.push_back("\xC4\xA0" "w");  // 260 "Ġw"
  v.tokens.push_back("<|end|>");  // 261
  v.merges = {"h e", "he l", "hel l", "hell o", "\xC4\xA0 w"};
  v.types.assign(v.tokens.size(), 1);
  v.types[261] = 3;
  return v;
}

TEST(Tokenizer, TinyByteLevelBpe) {
  const auto bytes = byte_level_vocab().bytes();
  auto f = GgufFile::parse(bytes.data(), bytes.size(), "tiny");
  auto tok = Tokenizer::from_gguf(*f);
  EXPECT_EQ(tok->model(), "gpt2");
  EXPECT_EQ(tok->pre(), "gpt-2");
  EXPECT_EQ(tok->encode("hello", false), (std::vector<int32_t>{259}));
  EXPECT_EQ(tok->encode("hello world", false),
            (std::vector<int32_t>{259, 260, 'o', 'r', 'l', 'd'}));
  EXPECT_EQ(tok->encode("hi<|end|>", false, true), (std::vector<int32_t>{'h', 'i', 261}));
  EXPECT_EQ(tok->encode("hi<|end|>", false, false).size(), 9u);
  EXPECT_TRUE(tok->is_eog(261));  // "<|end|>" ends generation
  EXPECT_EQ(tok->decode(tok->encode("hello world , ok", false)), "hello world, ok");  // clean_spaces for gpt-2
  EXPECT_EQ(tok->bos(), 11);  // llama.cpp's default BPE BOS id when the file has none
}

TEST(Tokenizer, UnsupportedTokenizersAreErrorsListingTheSupportedOnes) {
  TinyVocab v = byte_level_vocab();
  v.pre = "no-such-pre";
  auto bytes = v.bytes();
  auto f = GgufFile::parse(bytes.data(), bytes.size(), "tiny");
  try {
    (void)Tokenizer::from_gguf(*f);
    ADD_FAILURE() << "unknown pre accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no-such-pre"), std::string::npos) << m;
    for (const char* p : {"default", "gpt-2", "llama3", "qwen2", "smollm", "starcoder"})
      EXPECT_NE(m.find(p), std::string::npos) << p << " missing from: " << m;
  }
  v = byte_level_vocab();
  v.model = "bert";
  bytes = v.bytes();
  f = GgufFile::parse(bytes.data(), bytes.size(), "tiny");
  try {
    (void)Tokenizer::from_gguf(*f);
    ADD_FAILURE() << "unknown model accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'bert'"), std::string::npos) << m;
    EXPECT_NE(m.find("gpt2"), std::string::npos) << m;
    EXPECT_NE(m.find("llama"), std::string::npos) << m;
  }
  v = byte_level_vocab();
  v.tokens[256] = v.tokens[0];  // a duplicate text
  bytes = v.bytes();
  f = GgufFile::parse(bytes.data(), bytes.size(), "tiny");
  EXPECT_THROW(Tokenizer::from_gguf(*f), Error);
}

}  // namespace
}  // namespace stepq
