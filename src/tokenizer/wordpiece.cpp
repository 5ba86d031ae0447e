#include "tokenizer/wordpiece.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "base/error.h"
#include "tokenizer/unicode.h"

namespace stepq {

namespace {

using json = nlohmann::json;

bool in_ranges(uint32_t cp, std::span<const unicode::CodepointRange> r) {
  auto it = std::upper_bound(r.begin(), r.end(), cp,
                             [](uint32_t c, const unicode::CodepointRange& x) { return c < x.first; });
  return it != r.begin() && cp <= (it - 1)->last;
}

// Rust char::is_whitespace (the White_Space property), which HF uses for both clean-up and splitting.
bool is_whitespace(uint32_t cp) { return in_ranges(cp, unicode::whitespace_ranges()); }

// HF bert.rs is_control: Cc, Cf, Co, except \t \n \r (those count as whitespace).
bool is_control(uint32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  auto c = utf8proc_category((utf8proc_int32_t)cp);
  return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CO;
}

// BertPreTokenizer's punctuation: any ASCII punctuation (so $+<=>^`|~ too) or Unicode P*.
bool is_punctuation(uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
           (cp >= 0x7B && cp <= 0x7E);
  switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO: return true;
    default: return false;
  }
}

// HF's CJK ranges, including its 0x2B920 start of the fifth range (not 0x2B820).
bool is_chinese(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// Rust char::to_lowercase: the simple mapping, except U+0130 whose full lowercase is two chars
// (the only unconditional multi-char lowercase in SpecialCasing).
void push_lower(std::u32string& out, uint32_t cp) {
  if (cp == 0x130) {
    out.push_back('i');
    out.push_back(0x307);
    return;
  }
  out.push_back((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
}

int32_t get_id(const json& j, const std::string& what, const char* field) {
  if (!j.is_number_integer() || j.get<int64_t>() < 0 || j.get<int64_t>() >= (1 << 24))
    fail("{}: {} is not a token id in [0, 2^24): {}", what, field, j.dump());
  return (int32_t)j.get<int64_t>();
}

bool get_bool(const json& obj, const char* key, bool def, const std::string& what) {
  if (!obj.contains(key) || obj[key].is_null()) return def;
  if (!obj[key].is_boolean()) fail("{}: '{}' is not a boolean", what, key);
  return obj[key].get<bool>();
}

}  // namespace

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read the tokenizer (missing or unreadable)", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json(ss.str(), path);
}

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::from_json(std::string_view text, const std::string& what) {
  try {
    return from_json_checked(text, what);
  } catch (const json::exception& e) {  // a field of the wrong JSON type
    fail("{}: {}", what, e.what());
  }
}

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::from_json_checked(std::string_view text,
                                                                          const std::string& what) {
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", what, e.what());
  }
  if (!j.is_object()) fail("{}: not a tokenizer.json (not a JSON object)", what);
  std::unique_ptr<WordPieceTokenizer> t(new WordPieceTokenizer());

  // Model.
  if (!j.contains("model") || !j["model"].is_object()) fail("{}: no 'model' object", what);
  const json& m = j["model"];
  if (m.contains("type") && m["type"] != "WordPiece")
    fail("{}: tokenizer model '{}' is not supported (stepq reads WordPiece from tokenizer.json)", what,
         m["type"].is_string() ? m["type"].get<std::string>() : m["type"].dump());
  if (!m.contains("vocab") || !m["vocab"].is_object() || m["vocab"].empty())
    fail("{}: WordPiece model has no vocab object", what);
  int32_t max_id = -1;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    int32_t id = get_id(it.value(), what, "a vocab entry");
    t->vocab_.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  if (m.contains("continuing_subword_prefix")) {
    if (!m["continuing_subword_prefix"].is_string()) fail("{}: continuing_subword_prefix is not a string", what);
    t->prefix_cont_ = m["continuing_subword_prefix"].get<std::string>();
  }
  if (m.contains("max_input_chars_per_word")) {
    if (!m["max_input_chars_per_word"].is_number_unsigned()) fail("{}: max_input_chars_per_word is not a count", what);
    t->max_chars_ = (int)std::min<uint64_t>(m["max_input_chars_per_word"].get<uint64_t>(), 1 << 30);
  }
  std::string unk = "[UNK]";
  if (m.contains("unk_token")) {
    if (!m["unk_token"].is_string()) fail("{}: unk_token is not a string", what);
    unk = m["unk_token"].get<std::string>();
  }

  // Added tokens: all must be matched on the raw text (normalized: false), without stripping.
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) fail("{}: added_tokens is not an array", what);
    for (const json& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id"))
        fail("{}: an added token lacks content or id", what);
      AddedToken at{a["content"].get<std::string>(), get_id(a["id"], what, "an added token's id")};
      if (at.content.empty()) fail("{}: an added token has empty content", what);
      unicode::validate_utf8(at.content, what + ": added token");
      if (get_bool(a, "normalized", false, what) || get_bool(a, "lstrip", false, what) ||
          get_bool(a, "rstrip", false, what) || get_bool(a, "single_word", false, what))
        fail("{}: added token '{}' asks for normalized/lstrip/rstrip/single_word matching, which stepq does not "
             "implement",
             what, at.content);
      max_id = std::max(max_id, at.id);
      t->added_.push_back(std::move(at));
    }
  }
  t->id_to_token_.assign((size_t)max_id + 1, std::string());
  for (const auto& [s, id] : t->vocab_) t->id_to_token_[id] = s;
  for (const auto& a : t->added_) t->id_to_token_[a.id] = a.content;
  t->unk_ = t->find_token(unk);
  if (t->unk_ < 0) fail("{}: the unknown token '{}' is not in the vocabulary", what, unk);

  // Normalizer.
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const json& n = j["normalizer"];
    if (!n.is_object() || n.value("type", "") != "BertNormalizer")
      fail("{}: normalizer {} is not supported (stepq implements BertNormalizer)", what,
           n.is_object() ? n.value("type", "?") : n.dump());
    t->clean_text_ = get_bool(n, "clean_text", true, what);
    t->chinese_ = get_bool(n, "handle_chinese_chars", true, what);
    t->lowercase_ = get_bool(n, "lowercase", true, what);
    t->strip_accents_ = get_bool(n, "strip_accents", t->lowercase_, what);  // null follows lowercase
  }
  // Pre-tokenizer.
  if (!j.contains("pre_tokenizer") || !j["pre_tokenizer"].is_object() ||
      j["pre_tokenizer"].value("type", "") != "BertPreTokenizer")
    fail("{}: pre_tokenizer {} is not supported (stepq implements BertPreTokenizer)", what,
         j.contains("pre_tokenizer") ? j["pre_tokenizer"].dump().substr(0, 80) : "(none)");
  // Post-processor: the template for a single sequence.
  if (j.contains("post_processor") && !j["post_processor"].is_null()) {
    const json& p = j["post_processor"];
    std::string type = p.is_object() ? p.value("type", "") : "";
    if (type == "TemplateProcessing") {
      if (!p.contains("single") || !p["single"].is_array()) fail("{}: TemplateProcessing without 'single'", what);
      bool seen_seq = false;
      for (const json& item : p["single"]) {
        if (item.is_object() && item.contains("Sequence")) {
          if (seen_seq) fail("{}: TemplateProcessing 'single' names the sequence twice", what);
          seen_seq = true;
        } else if (item.is_object() && item.contains("SpecialToken") && item["SpecialToken"].is_object() &&
                   item["SpecialToken"].contains("id") && item["SpecialToken"]["id"].is_string()) {
          std::string name = item["SpecialToken"]["id"].get<std::string>();
          const json& st = p.contains("special_tokens") ? p["special_tokens"] : json();
          if (!st.is_object() || !st.contains(name) || !st[name].is_object() || !st[name].contains("ids") ||
              !st[name]["ids"].is_array())
            fail("{}: TemplateProcessing special token '{}' has no ids", what, name);
          for (const json& id : st[name]["ids"])
            (seen_seq ? t->suffix_ : t->prefix_).push_back(get_id(id, what, "a special token id"));
        } else {
          fail("{}: TemplateProcessing item {} is not understood", what, item.dump().substr(0, 80));
        }
      }
      if (!seen_seq) fail("{}: TemplateProcessing 'single' never names the sequence", what);
    } else if (type == "BertProcessing") {
      for (const char* k : {"cls", "sep"})
        if (!p.contains(k) || !p[k].is_array() || p[k].size() != 2)
          fail("{}: BertProcessing needs '{}' as [token, id]", what, k);
      t->prefix_.push_back(get_id(p["cls"][1], what, "BertProcessing cls id"));
      t->suffix_.push_back(get_id(p["sep"][1], what, "BertProcessing sep id"));
    } else {
      fail("{}: post_processor '{}' is not supported (stepq implements TemplateProcessing and BertProcessing)", what,
           type.empty() ? p.dump().substr(0, 80) : type);
    }
    for (int32_t id : t->prefix_)
      if (id > max_id) fail("{}: post-processor token id {} is outside the vocabulary", what, id);
    for (int32_t id : t->suffix_)
      if (id > max_id) fail("{}: post-processor token id {} is outside the vocabulary", what, id);
  }
  if (j.contains("padding") && j["padding"].is_object() && j["padding"].contains("pad_id"))
    t->pad_id_ = get_id(j["padding"]["pad_id"], what, "padding pad_id");
  else if (int32_t p = t->find_token("[PAD]"); p >= 0)
    t->pad_id_ = p;
  // Longest first, so that the first match at a position is the leftmost-longest one.
  std::stable_sort(t->added_.begin(), t->added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  return t;
}

const std::string& WordPieceTokenizer::token_text(int32_t id) const {
  static const std::string empty;
  return id >= 0 && id < n_vocab() ? id_to_token_[id] : empty;
}

int32_t WordPieceTokenizer::find_token(std::string_view text) const {
  for (const auto& a : added_)
    if (a.content == text) return a.id;
  auto it = vocab_.find(text);
  return it == vocab_.end() ? -1 : it->second;
}

std::u32string WordPieceTokenizer::normalize(std::string_view text) const {
  std::u32string out;
  out.reserve(text.size() + 8);
  utf8proc_int32_t decomposed[32];
  for (size_t i = 0; i < text.size();) {
    size_t len = unicode::utf8_sequence_length(text.substr(i));
    if (len == 0) len = 1;  // cannot happen: encode() validated the text
    uint32_t cp = unicode::decode_utf8(text.data() + i, len);
    i += len;
    // Each stage maps one char to chars, so they run char by char in HF's order:
    // clean text, CJK spacing, strip accents (NFD, drop Mn), lowercase.
    if (clean_text_) {
      if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
      if (is_whitespace(cp)) cp = ' ';
    }
    const bool cjk = chinese_ && is_chinese(cp);
    if (cjk) out.push_back(' ');
    utf8proc_ssize_t n = 1;
    decomposed[0] = (utf8proc_int32_t)cp;
    if (strip_accents_) {
      int boundclass = 0;
      n = utf8proc_decompose_char((utf8proc_int32_t)cp, decomposed, 32, UTF8PROC_DECOMPOSE, &boundclass);
      if (n < 1 || n > 32) {  // cannot happen for a valid code point; keep the char as it is
        n = 1;
        decomposed[0] = (utf8proc_int32_t)cp;
      }
    }
    for (utf8proc_ssize_t k = 0; k < n; k++) {
      uint32_t c = (uint32_t)decomposed[k];
      if (strip_accents_ && utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN) continue;
      if (lowercase_) push_lower(out, c);
      else out.push_back(c);
    }
    if (cjk) out.push_back(' ');
  }
  return out;
}

void WordPieceTokenizer::wordpiece(const std::u32string& word, std::vector<int32_t>& out, std::string& cand) const {
  if (word.size() > (size_t)max_chars_) {
    out.push_back(unk_);
    return;
  }
  std::string bytes;
  std::vector<size_t> off;  // byte offset of each char, and the end
  off.reserve(word.size() + 1);
  for (char32_t c : word) {
    off.push_back(bytes.size());
    unicode::append_utf8(bytes, (uint32_t)c);
  }
  off.push_back(bytes.size());
  const size_t n = word.size(), first = out.size();
  for (size_t start = 0; start < n;) {
    int32_t found = -1;
    size_t end = n;
    for (; end > start; end--) {
      cand.clear();
      if (start > 0) cand += prefix_cont_;
      cand.append(bytes, off[start], off[end] - off[start]);
      auto it = vocab_.find(std::string_view(cand));
      if (it != vocab_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // some part matches nothing: the whole word is unknown
      out.resize(first);
      out.push_back(unk_);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

void WordPieceTokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  const std::u32string norm = normalize(text);
  std::u32string word;
  std::string scratch;
  auto flush = [&] {
    if (!word.empty()) wordpiece(word, out, scratch);
    word.clear();
  };
  for (char32_t c : norm) {
    if (is_whitespace((uint32_t)c)) {
      flush();
    } else if (is_punctuation((uint32_t)c)) {
      flush();
      word.push_back(c);
      flush();
    } else {
      word.push_back(c);
    }
  }
  flush();
}

std::vector<int32_t> WordPieceTokenizer::encode(std::string_view text, bool add_special, int max_len) const {
  unicode::validate_utf8(text, "text");
  std::vector<int32_t> ids;
  // Added tokens on the raw text, leftmost-longest; the text between them is tokenized normally.
  size_t seg = 0;
  for (size_t i = 0; i < text.size() && !added_.empty();) {
    const AddedToken* hit = nullptr;
    for (const auto& a : added_)
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    if (!hit) {
      i++;
      continue;
    }
    if (i > seg) encode_text(text.substr(seg, i - seg), ids);
    ids.push_back(hit->id);
    i += hit->content.size();
    seg = i;
  }
  if (seg < text.size()) encode_text(text.substr(seg), ids);
  if (!add_special) {
    if (max_len > 0 && ids.size() > (size_t)max_len) ids.resize(max_len);
    return ids;
  }
  if (max_len > 0) {
    const int keep = std::max(0, max_len - n_special_added());
    if (ids.size() > (size_t)keep) ids.resize(keep);
  }
  std::vector<int32_t> out;
  out.reserve(ids.size() + prefix_.size() + suffix_.size());
  out.insert(out.end(), prefix_.begin(), prefix_.end());
  out.insert(out.end(), ids.begin(), ids.end());
  out.insert(out.end(), suffix_.begin(), suffix_.end());
  return out;
}

}  // namespace stepq
