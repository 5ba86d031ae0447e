// Chat templates render byte for byte as Python jinja2 in HF transformers' environment.
//
// Reference data: tests/data/chat/*.json, made by tools/make_chat_reference.py (jinja2 3.1):
//   <model>.json       the real templates (read here from the GGUF, checked by sha256) on
//                      conversations: system / no system, multi-turn, generation prompt on/off,
//                      unicode, Jinja-looking content, tools, and the errors Gemma raises
//   jinja_cases.json   ~220 small templates over the general features (and three larger ones in
//                      the style of Qwen3 / Llama 3 / Mistral templates), each with the output or
//                      the error Python gives
// Plus: syntax errors carry line:col, hostile templates give an Error (never a crash).
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "formats/gguf.h"
#include "test_models.h"
#include "tokenizer/chat_template.h"

namespace stepq {
namespace {

using ojson = nlohmann::ordered_json;

// ---- SHA-256 (FIPS 180-4), for checking the template text against the reference ---------------

std::string sha256_hex(const std::string& data) {
  static const uint32_t k[64] = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string msg = data;
  uint64_t bits = (uint64_t)data.size() * 8;
  msg.push_back((char)0x80);
  while (msg.size() % 64 != 56) msg.push_back(0);
  for (int i = 7; i >= 0; i--) msg.push_back((char)(bits >> (i * 8)));
  auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (size_t off = 0; off < msg.size(); off += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)(uint8_t)msg[off + 4 * i] << 24 | (uint32_t)(uint8_t)msg[off + 4 * i + 1] << 16 |
             (uint32_t)(uint8_t)msg[off + 4 * i + 2] << 8 | (uint32_t)(uint8_t)msg[off + 4 * i + 3];
    for (int i = 16; i < 64; i++) {
      uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
      uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  std::string hex;
  for (uint32_t v : h) hex += fmt::format("{:08x}", v);
  return hex;
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// ---- helpers ------------------------------------------------------------------------------------

ojson load_reference(const std::string& file) {
  std::string path = test::source_dir() + "/tests/data/chat/" + file;
  std::ifstream in(path);
  if (!in) throw Error("missing reference data " + path + " (run: python3 tools/make_chat_reference.py)");
  return ojson::parse(in);
}

// The message raise_exception was given, when the Python error came from it.
std::string raised_message(const std::string& python_error) {
  const std::string prefix = "TemplateError: ";
  return python_error.rfind(prefix, 0) == 0 ? python_error.substr(prefix.size()) : "";
}

// Renders one reference case and compares with Python's result (text, or an error).
void check_case(const ChatTemplate& tpl, const ojson& c, const std::string& label) {
  SCOPED_TRACE(label);
  if (c.contains("expected")) {
    std::string got;
    try {
      got = tpl.render(c["context"]);
    } catch (const Error& e) {
      ADD_FAILURE() << "render threw: " << e.what();
      return;
    }
    EXPECT_EQ(got, c["expected"].get<std::string>());
    return;
  }
  std::string python_error = c["error"].get<std::string>();
  try {
    std::string got = tpl.render(c["context"]);
    ADD_FAILURE() << "expected an error like Python's (" << python_error << "), got output: " << got;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind("chat template line ", 0), 0u) << msg;
    std::string raised = raised_message(python_error);
    if (!raised.empty()) {
      EXPECT_NE(msg.find(raised), std::string::npos) << msg;
    }
  }
}

// ---- the real templates -------------------------------------------------------------------------

void check_model(const std::string& model) {
  ojson ref = load_reference(model + ".json");
  auto gguf = GgufFile::open(test::model_path(model));
  std::string source;
  if (ref["template_in_gguf"].get<bool>()) {
    source = gguf->get_string("tokenizer.chat_template");
  } else {
    // The base Gemma 3 GGUF carries no template; the reference holds the instruct template.
    EXPECT_FALSE(gguf->has("tokenizer.chat_template")) << "the GGUF now has a template: regenerate the reference";
    source = ref["template"].get<std::string>();
  }
  ASSERT_EQ(sha256_hex(source), ref["template_sha256"].get<std::string>())
      << model << ": the template differs from the one the reference was made with";
  ChatTemplate tpl(source);
  const std::string bos = ref["bos_token"].get<std::string>(), eos = ref["eos_token"].get<std::string>();
  for (const auto& c : ref["cases"]) {
    std::string label = model + "/" + c["name"].get<std::string>();
    check_case(tpl, c, label);
    if (c["plain"].get<bool>() && c.contains("expected")) {
      // The convenience API builds the same context transformers does.
      std::vector<ChatMessage> messages;
      for (const auto& m : c["context"]["messages"])
        messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
      EXPECT_EQ(tpl.apply(messages, c["context"]["add_generation_prompt"].get<bool>(), bos, eos),
                c["expected"].get<std::string>())
          << label << " via apply()";
    }
  }
}

TEST(ChatTemplate, SmolLM2MatchesJinja2) { check_model("smollm2"); }
TEST(ChatTemplate, Qwen05bMatchesJinja2) { check_model("qwen0.5b"); }
TEST(ChatTemplate, Qwen15bMatchesJinja2) { check_model("qwen1.5b"); }
TEST(ChatTemplate, Gemma3MatchesJinja2) { check_model("gemma3"); }

TEST(ChatTemplate, GemmaRaisesOnBadAlternation) {
  ojson ref = load_reference("gemma3.json");
  ChatTemplate tpl(ref["template"].get<std::string>());
  try {
    tpl.apply({{"user", "a"}, {"user", "b"}}, true, "<bos>", "<eos>");
    FAIL() << "no error for two user turns in a row";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("Conversation roles must alternate user/assistant/user/assistant/..."), std::string::npos) << msg;
    EXPECT_NE(msg.find("chat template line 15:"), std::string::npos) << msg;  // the raise_exception call
  }
  // And a well-formed conversation still renders.
  EXPECT_EQ(tpl.apply({{"user", " hi "}, {"assistant", "yo"}}, true, "<bos>", "<eos>"),
            "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n<start_of_turn>model\n");
}

// ---- general features ---------------------------------------------------------------------------

TEST(ChatTemplate, GeneralCasesMatchJinja2) {
  ojson ref = load_reference("jinja_cases.json");
  int n = 0;
  for (const auto& c : ref["cases"]) {
    std::string name = c["name"].get<std::string>();
    std::string source = c["template"].get<std::string>();
    if (source.rfind("@", 0) == 0) source = ref["shared_templates"][source.substr(1)].get<std::string>();
    const std::string err = c.contains("error") ? c["error"].get<std::string>() : "";
    if (c.contains("error_line") || err.rfind("SyntaxError", 0) == 0) {
      // Python rejects it when compiling: so must we, at the same line.
      SCOPED_TRACE(name);
      try {
        ChatTemplate tpl(source);
        ADD_FAILURE() << "parsed a template Python rejects (" << err << ")";
      } catch (const Error& e) {
        std::string msg = e.what();
        if (c.contains("error_line")) {
          std::string want = fmt::format("chat template line {}:", c["error_line"].get<int>());
          EXPECT_EQ(msg.rfind(want, 0), 0u) << msg;
        }
      }
      n++;
      continue;
    }
    std::unique_ptr<ChatTemplate> tpl;
    try {
      tpl = std::make_unique<ChatTemplate>(source);
    } catch (const Error& e) {
      ADD_FAILURE() << name << ": parse failed: " << e.what();
      continue;
    }
    check_case(*tpl, c, name);
    n++;
  }
  EXPECT_GE(n, 150);
}

TEST(ChatTemplate, SyntaxErrorsNameLineAndColumn) {
  auto message = [](const std::string& src) -> std::string {
    try {
      ChatTemplate t(src);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(message("ab\ncd {{ 1 + }}"), "chat template line 2:11: unexpected end of print statement");
  EXPECT_EQ(message("{% if x %}\n  {% frob %}\n{% endif %}"), "chat template line 2:6: unknown tag 'frob'");
  EXPECT_EQ(message("x\n\n{# open"), "chat template line 3:1: missing end of comment tag");
  EXPECT_NE(message("{% for x in y %}").find("looking for the tags 'endfor' or 'else'"), std::string::npos);
}

TEST(ChatTemplate, RuntimeErrorsNameLine) {
  ChatTemplate tpl("line1\n{% for m in messages %}\n{{ m.content.nope.deeper }}\n{% endfor %}");
  try {
    tpl.render(nlohmann::json{{"messages", {{{"content", "x"}}}}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("chat template line 3:", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("'str object' has no attribute 'nope'"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, SortedJsonAndOrderedJsonContexts) {
  ChatTemplate tpl("{{ d | tojson }}");
  nlohmann::json sorted = {{"d", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(tpl.render(sorted), "{\"a\": 2, \"b\": 1}");
  ojson ordered = ojson::object();
  ordered["d"]["b"] = 1;
  ordered["d"]["a"] = 2;
  EXPECT_EQ(tpl.render(ordered), "{\"b\": 1, \"a\": 2}");
  EXPECT_THROW(tpl.render(nlohmann::json::array()), Error);
}

TEST(ChatTemplate, CopiesShareTheProgram) {
  ChatTemplate a("{{ x }}!");
  ChatTemplate b = a;
  a = ChatTemplate("other");
  EXPECT_EQ(b.render(nlohmann::json{{"x", "hi"}}), "hi!");
  EXPECT_EQ(a.render(nlohmann::json::object()), "other");
  EXPECT_EQ(b.source(), "{{ x }}!");
}

TEST(ChatTemplate, ApplyPassesToolsAndDocumentsAsNone) {
  ChatTemplate tpl("{{ tools is none }} {{ documents is none }} {{ messages | length }} {{ bos_token }}{{ eos_token }} {{ add_generation_prompt }}");
  EXPECT_EQ(tpl.apply({{"user", "x"}}, false, "<s>", "</s>"), "True True 1 <s></s> False");
}

TEST(ChatTemplate, RunawayRecursionIsAnError) {
  ChatTemplate tpl("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  EXPECT_THROW(tpl.render(nlohmann::json::object()), Error);
  std::string deep(5000, '(');
  EXPECT_THROW(ChatTemplate("{{ " + deep + " }}"), Error);
  std::string nested;
  for (int i = 0; i < 2000; i++) nested += "{% if true %}";
  EXPECT_THROW(ChatTemplate{nested}, Error);
  EXPECT_THROW(ChatTemplate("{{ range(1000000) | length }}").render(nlohmann::json::object()), Error);
}

// Random splices of template fragments: every outcome is a rendered string or an Error.
TEST(ChatTemplate, HostileTemplatesNeverCrash) {
  const std::vector<std::string> pieces = {
      "{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " ", "\n", "if", "for", "x", "in", "endif", "endfor",
      "else", "set", "=", "(", ")", "[", "]", "{", "}", "'", "\"", "|", "trim", "is", "defined", ".", ",",
      ":", "1", "0.5", "messages", "loop", "not", "and", "or", "~", "*", "**", "//", "%", "raw", "endraw",
      "macro", "endmacro", "call", "caller", "namespace", "\\", "é", "\xff", "\r"};
  std::mt19937 rng(1234);
  nlohmann::json ctx = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"x", 3}};
  int parsed = 0, rendered = 0;
  for (int iter = 0; iter < 3000; iter++) {
    std::string src;
    int n = 1 + rng() % 24;
    for (int k = 0; k < n; k++) src += pieces[rng() % pieces.size()];
    try {
      ChatTemplate tpl(src);
      parsed++;
      tpl.render(ctx);
      rendered++;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rendered, 50);
}

}  // namespace
}  // namespace stepq
