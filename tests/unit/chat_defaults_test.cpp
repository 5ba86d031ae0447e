// The built-in fallback templates: Gemma 3's base GGUF has no chat template, so stepq uses a
// built-in Gemma one, which must render exactly like the official gemma-3-it template (the
// jinja2 outputs in tests/data/chat/gemma3.json) for plain string conversations.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "base/error.h"
#include "formats/gguf.h"
#include "test_models.h"
#include "tokenizer/chat_defaults.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace stepq {
namespace {

TEST(ChatDefaults, GemmaFallbackMatchesOfficialTemplate) {
  auto f = GgufFile::open(test::model_path("gemma3"));
  auto tok = Tokenizer::from_gguf(*f);
  ResolvedChatTemplate r = resolve_chat_template(*f, *tok);
  ASSERT_EQ(r.origin, "built-in gemma");
  ChatTemplate t(r.source);
  std::ifstream in(test::source_dir() + "/tests/data/chat/gemma3.json");
  ASSERT_TRUE(in) << "missing tests/data/chat/gemma3.json";
  nlohmann::json d;
  in >> d;
  int checked = 0;
  for (const auto& c : d["cases"]) {
    if (!c.value("plain", false)) continue;
    std::vector<ChatMessage> msgs;
    for (const auto& m : c["context"]["messages"]) msgs.push_back({m["role"], m["content"]});
    const std::string bos = c["context"]["bos_token"], eos = c["context"]["eos_token"];
    const bool gen = c["context"]["add_generation_prompt"];
    if (c.contains("error")) {
      EXPECT_THROW(t.apply(msgs, gen, bos, eos), Error) << c["name"];
    } else {
      EXPECT_EQ(t.apply(msgs, gen, bos, eos), c["expected"].get<std::string>()) << c["name"];
    }
    checked++;
  }
  EXPECT_GE(checked, 8);
}

TEST(ChatDefaults, ModelsWithTemplatesUseTheirOwn) {
  for (const char* m : {"smollm2", "qwen0.5b"}) {
    auto f = GgufFile::open(test::model_path(m));
    auto tok = Tokenizer::from_gguf(*f);
    EXPECT_EQ(resolve_chat_template(*f, *tok).origin, "model") << m;
  }
}

TEST(ChatDefaults, BosFromTemplateIsDroppedOnlyWhenTheTokenizerAddsIt) {
  auto g = GgufFile::open(test::model_path("gemma3"));
  auto gt = Tokenizer::from_gguf(*g);
  EXPECT_EQ(strip_template_bos("<bos><start_of_turn>user\n", *gt), "<start_of_turn>user\n");
  auto q = GgufFile::open(test::model_path("qwen0.5b"));
  auto qt = Tokenizer::from_gguf(*q);
  EXPECT_EQ(strip_template_bos("<|endoftext|>x", *qt), "<|endoftext|>x");  // Qwen adds no BOS
}

}  // namespace
}  // namespace stepq
