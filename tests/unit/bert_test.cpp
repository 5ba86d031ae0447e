// WordPiece (tokenizer.json) and the BERT encoder: ids as PyPI tokenizers 0.23.3 gives them for
// all-MiniLM-L6-v2 (tests/py/test_embed.py compares thousands of lines; these are the edge cases),
// the tokenizer's rules on a tiny hand-written vocabulary, config and loading errors, and the
// encoder's own invariants on the real model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/thread_pool.h"
#include "formats/safetensors.h"
#include "model/bert.h"
#include "test_models.h"
#include "tokenizer/wordpiece.h"

namespace stepq {
namespace {

using Ids = std::vector<int32_t>;

std::string minilm() { return test::model_path("minilm"); }

TEST(WordPiece, MiniLMMatchesHfTokenizers) {
  const std::string dir = minilm();
  if (!std::filesystem::exists(dir)) return;
  auto t = WordPieceTokenizer::from_file(dir + "/tokenizer.json");
  EXPECT_EQ(t->n_vocab(), 30522);
  // Expected ids: tokenizers 0.23.3, Tokenizer.from_file(...).encode(text).ids (truncation off).
  EXPECT_EQ(t->encode("Hello, world!"), (Ids{101, 7592, 1010, 2088, 999, 102}));
  EXPECT_EQ(t->encode("Café Déjà vu naïve ÀÉÎ"), (Ids{101, 7668, 2139, 3900, 24728, 15743, 29347, 2072, 102}));
  EXPECT_EQ(t->encode("unaffable tokenization"), (Ids{101, 14477, 20961, 3468, 19204, 3989, 102}));
  EXPECT_EQ(t->encode("北京大学 is in 北京"), (Ids{101, 1781, 1755, 1810, 1817, 2003, 1999, 1781, 1755, 102}));
  EXPECT_EQ(t->encode(std::string("a\0b\u200bc\td\u3000e", 13)), (Ids{101, 5925, 1040, 1041, 102}));
  EXPECT_EQ(t->encode("[CLS] x [SEP][MASK]y"), (Ids{101, 101, 1060, 102, 103, 1061, 102}));
  EXPECT_EQ(t->encode(std::string(101, 'x')), (Ids{101, 100, 102}));
  EXPECT_EQ(t->encode("İstanbul ΣΑΣ"), (Ids{101, 9960, 1173, 14608, 29733, 102}));
  EXPECT_EQ(t->encode("price: $5+3=8 €10 ™"),
            (Ids{101, 3976, 1024, 1002, 1019, 1009, 1017, 1027, 1022, 1574, 10790, 1580, 102}));
  EXPECT_EQ(t->encode(""), (Ids{101, 102}));
  EXPECT_EQ(t->encode("supercalifragilisticexpialidocious"),
            (Ids{101, 3565, 9289, 10128, 29181, 24411, 4588, 10288, 19312, 21273, 10085, 6313, 102}));
  EXPECT_EQ(t->encode("Hello, world!", false), (Ids{7592, 1010, 2088, 999}));
  // Truncation keeps [CLS] ... [SEP] within max_len.
  EXPECT_EQ(t->encode("Hello, world!", true, 4), (Ids{101, 7592, 1010, 102}));
  EXPECT_THROW(t->encode("bad \xff utf-8"), Error);
}

// A tiny tokenizer.json written here: each rule of the pipeline on its own.
const char* kTiny = R"({
  "added_tokens": [{"id": 0, "content": "[UNK]", "special": true, "normalized": false},
                   {"id": 1, "content": "[CLS]", "special": true, "normalized": false},
                   {"id": 2, "content": "[SEP]", "special": true, "normalized": false}],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                 "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 9,
            "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "un": 3, "##aff": 4, "##able": 5, "a": 6,
                      "##a": 7, ",": 8, "cafe": 9, "北": 10, "x": 11}}
})";

TEST(WordPiece, RulesOnTinyVocabulary) {
  auto t = WordPieceTokenizer::from_json(kTiny, "tiny.json");
  EXPECT_EQ(t->encode("unaffable", false), (Ids{3, 4, 5}));      // greedy longest match, ## continuation
  EXPECT_EQ(t->encode("unaffabl", false), (Ids{0}));             // a part matches nothing: whole word [UNK]
  EXPECT_EQ(t->encode("aaaaaaaaa", false), (Ids{6, 7, 7, 7, 7, 7, 7, 7, 7}));  // 9 chars: within the limit
  EXPECT_EQ(t->encode("aaaaaaaaaa", false), (Ids{0}));           // 10 chars > max_input_chars_per_word
  EXPECT_EQ(t->encode("a,a", false), (Ids{6, 8, 6}));            // punctuation is its own word
  EXPECT_EQ(t->encode("CAFÉ", false), (Ids{9}));                 // lowercase + strip accents (NFD, drop Mn)
  EXPECT_EQ(t->encode("x北x", false), (Ids{11, 10, 11}));        // CJK chars are split off
  EXPECT_EQ(t->encode("a\x01\u00ad", false), (Ids{6}));          // control and format chars are dropped
  EXPECT_EQ(t->encode("a [SEP]a"), (Ids{1, 6, 2, 6, 2}));        // added tokens match the raw text
  EXPECT_EQ(t->encode("a a a a", true, 4), (Ids{1, 6, 6, 2}));
  EXPECT_EQ(t->find_token("##aff"), 4);
  EXPECT_EQ(t->token_text(5), "##able");
}

TEST(WordPiece, RefusesWhatItDoesNotImplement) {
  auto err = [](const std::string& json) -> std::string {
    try {
      WordPieceTokenizer::from_json(json, "t.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::string tiny = kTiny;
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = tiny;
    size_t p = s.find(from);
    EXPECT_NE(p, std::string::npos) << from;
    return s.replace(p, from.size(), to);
  };
  EXPECT_NE(err(replace("\"type\": \"WordPiece\"", "\"type\": \"BPE\"")).find("'BPE' is not supported"),
            std::string::npos);
  EXPECT_NE(err(replace("BertNormalizer", "NFKC")).find("not supported"), std::string::npos);
  EXPECT_NE(err(replace("BertPreTokenizer", "Whitespace")).find("pre_tokenizer"), std::string::npos);
  EXPECT_NE(err(replace("BertProcessing", "RobertaProcessing")).find("post_processor"), std::string::npos);
  EXPECT_NE(err(replace("\"unk_token\": \"[UNK]\"", "\"unk_token\": \"<unk>\"")).find("'<unk>' is not in"),
            std::string::npos);
  EXPECT_NE(err(replace("\"x\": 11", "\"x\": -1")).find("token id"), std::string::npos);
  EXPECT_NE(err(replace("\"strip_accents\": null", "\"strip_accents\": 3")).find("boolean"), std::string::npos);
  EXPECT_NE(err("{\"model\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(err(replace("\"content\": \"[SEP]\", \"special\": true, \"normalized\": false",
                        "\"content\": \"[SEP]\", \"special\": true, \"normalized\": true"))
                .find("normalized"),
            std::string::npos);
  try {
    WordPieceTokenizer::from_file("/nonexistent/tokenizer.json");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tokenizer.json"), std::string::npos);
  }
}

const char* kConfig = R"({"model_type": "bert", "hidden_act": "gelu", "hidden_size": 384, "num_hidden_layers": 6,
  "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512, "vocab_size": 30522,
  "type_vocab_size": 2, "layer_norm_eps": 1e-12})";

TEST(Bert, ConfigFromJson) {
  BertConfig c = BertConfig::from_json(kConfig, "config.json");
  EXPECT_EQ(c.hidden, 384);
  EXPECT_EQ(c.n_layers, 6);
  EXPECT_EQ(c.n_heads, 12);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_FLOAT_EQ(c.ln_eps, 1e-12f);
  auto err = [](std::string json, const std::string& from, const std::string& to) -> std::string {
    json.replace(json.find(from), from.size(), to);
    try {
      BertConfig::from_json(json, "config.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(err(kConfig, "\"gelu\"", "\"relu\"").find("hidden_act"), std::string::npos);
  EXPECT_NE(err(kConfig, "\"bert\"", "\"roberta\"").find("model_type"), std::string::npos);
  EXPECT_NE(err(kConfig, "\"num_attention_heads\": 12", "\"num_attention_heads\": 7").find("multiple"),
            std::string::npos);
  EXPECT_NE(err(kConfig, "\"hidden_size\": 384,", "").find("'hidden_size' is missing"), std::string::npos);
  EXPECT_NE(err(kConfig, "\"vocab_size\": 30522", "\"vocab_size\": \"big\"").find("vocab_size"), std::string::npos);
  EXPECT_NE(err(kConfig, "\"hidden_act\": \"gelu\"", "\"hidden_act\": 1").find("config.json"), std::string::npos);
}

TEST(Bert, LoadErrorsNameTheProblem) {
  auto err = [](const std::string& dir) -> std::string {
    try {
      BertModel::load(dir);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(err("/nonexistent/minilm").find("no such folder"), std::string::npos);
  const auto tmp = std::filesystem::temp_directory_path() / "stepq_bert_test_empty";
  std::filesystem::create_directories(tmp);
  EXPECT_NE(err(tmp.string()).find("no config.json"), std::string::npos);
  std::filesystem::remove_all(tmp);

  // A safetensors file without the BERT tensors: binding names the first missing one.
  const std::string h = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::vector<uint8_t> bytes;
  for (int i = 0; i < 8; i++) bytes.push_back((uint8_t)((uint64_t)h.size() >> (8 * i)));  // little-endian
  bytes.insert(bytes.end(), h.begin(), h.end());
  bytes.resize(bytes.size() + 4);
  BertConfig c = BertConfig::from_json(kConfig, "config.json");
  try {
    BertModel::from_parts(c, SafetensorsFile::parse(bytes.data(), bytes.size(), "w.safetensors"));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("embeddings.word_embeddings.weight' is missing"), std::string::npos)
        << e.what();
  }
}

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += (double)a[i] * b[i];
  return (float)s;
}

TEST(Bert, MiniLMEmbeddings) {
  const std::string dir = minilm();
  if (!std::filesystem::exists(dir)) return;
  auto m = BertModel::load(dir);
  EXPECT_EQ(m->dim(), 384);
  EXPECT_EQ(m->config().max_seq_len, 256);  // sentence_bert_config.json
  ThreadPool pool(2);
  const std::vector<std::string> texts = {"This is an example sentence", "Each sentence is converted",
                                          "A man is eating food.", "A man is eating a piece of bread.",
                                          "The stock market fell sharply today."};
  auto batched = m->embed(texts, pool, 8);
  ASSERT_EQ(batched.size(), texts.size());
  for (const auto& e : batched) EXPECT_NEAR(dot(e, e), 1.0f, 1e-5f);
  // Published sentence-transformers output for the first sentence (its first 5 values).
  const float ref[5] = {6.76569194e-02f, 6.34959415e-02f, 4.87131625e-02f, 7.93049708e-02f, 3.74480560e-02f};
  for (int i = 0; i < 5; i++) EXPECT_NEAR(batched[0][i], ref[i], 1e-5f) << i;
  // Batching does not change a sentence's vector.
  for (size_t i = 0; i < texts.size(); i++) {
    auto alone = m->embed(std::span(&texts[i], 1), pool, 1);
    for (int j = 0; j < m->dim(); j++) EXPECT_NEAR(alone[0][j], batched[i][j], 1e-6f) << i << " " << j;
  }
  // Meaning: the two sentences about eating are closer to each other than to the market one.
  EXPECT_GT(dot(batched[2], batched[3]), dot(batched[2], batched[4]) + 0.2f);
  // Longer than max_seq_len: truncated, not refused.
  std::string long_text;
  for (int i = 0; i < 400; i++) long_text += "word ";
  int64_t n_tok = 0;
  auto e = m->embed(std::vector<std::string>{long_text}, pool, 1, &n_tok);
  EXPECT_EQ(n_tok, 256);
  EXPECT_NEAR(dot(e[0], e[0]), 1.0f, 1e-5f);
}

}  // namespace
}  // namespace stepq
