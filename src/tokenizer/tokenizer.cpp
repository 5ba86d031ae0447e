// Vocabulary loading, special tokens, the special-token partition, detokenization, streaming.
// The BPE and SentencePiece merge loops are in bpe.cpp and spm.cpp.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "base/error.h"
#include "formats/gguf.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"

namespace stepq {

namespace {

// GGUF token types (tokenizer.ggml.token_type) -> attribute bits.
uint32_t attr_of_type(int64_t type) {
  switch (type) {
    case 1: return kAttrNormal;
    case 2: return kAttrUnknown;
    case 3: return kAttrControl;
    case 4: return kAttrUserDefined;
    case 5: return kAttrUnused;
    case 6: return kAttrByte;
    default: return kAttrUndefined;  // 0 and unknown values
  }
}

bool is_one_of(std::string_view s, std::span<const std::string_view> list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}
bool is_one_of(std::string_view s, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

// Token texts llama.cpp recognises at load (llama-vocab.cpp, impl::load). A token found this
// way gets the CONTROL bit, and its id is used when the GGUF does not give one.
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"};
constexpr std::string_view kEomTexts[] = {"<|eom_id|>"};
constexpr std::string_view kFimPreTexts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"};
constexpr std::string_view kFimSufTexts[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"};
constexpr std::string_view kFimMidTexts[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"};
constexpr std::string_view kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
constexpr std::string_view kFimRepTexts[] = {
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"};
constexpr std::string_view kFimSepTexts[] = {"<|file_sep|>"};
// Every token with one of these texts ends generation.
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~["};

// Pre-tokenizer regex lists (tokenizers.md §1.3), exactly as llama.cpp stores them.
const char* const kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const kLlama3Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2Regex =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct PreType {
  std::vector<std::string_view> names;
  std::vector<std::string> regexes;
  bool clean_spaces = true;
  bool ignore_merges = false;
  bool add_bos = false;
};

const std::vector<PreType>& pre_types() {
  static const std::vector<std::string> kDefault = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Regex, "\\p{N}+", "[0-9][0-9][0-9]"};
  static const std::vector<std::string> kGpt2 = {kGpt2Regex};
  static const std::vector<std::string> kStarcoder = {"\\p{N}", kGpt2Regex};
  static const std::vector<std::string> kLlama3 = {kLlama3Regex};
  static const std::vector<std::string> kQwen2 = {kQwen2Regex};
  static const std::vector<PreType> types = {
      {{"default"}, kDefault},
      {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
        "modern-bert", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais"},
       kGpt2},
      {{"trillion", "granite-docling"}, kGpt2, /*clean_spaces=*/false},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"},
       kLlama3, true, /*ignore_merges=*/true, /*add_bos=*/true},
      {{"dbrx", "smaug-bpe"}, kLlama3},
      {{"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open"}, kQwen2, false},
      {{"megrez", "stablelm2"}, kQwen2},
      {{"smollm", "command-r"}, kStarcoder, false},
      {{"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"}, kStarcoder},
  };
  return types;
}

std::string supported_pre_list() {
  std::string s;
  for (const PreType& t : pre_types())
    for (std::string_view n : t.names) s += fmt::format("{}{}", s.empty() ? "" : ", ", n);
  return s;
}

// C isspace in the "C" locale: what llama.cpp's LSTRIP/RSTRIP trim.
bool is_c_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

std::string lowercase_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  if (!f.has("tokenizer.ggml.model"))
    fail("{}: 'tokenizer.ggml.model' is missing: the file has no tokenizer", f.path());
  t->model_ = f.get_string("tokenizer.ggml.model");
  t->pre_ = f.get_string("tokenizer.ggml.pre", "");
  if (t->model_ == "gpt2") {
    t->kind_ = Kind::kBpe;
  } else if (t->model_ == "llama") {
    t->kind_ = Kind::kSpm;
  } else {
    fail("{}: tokenizer model '{}' is not supported; stepq supports 'gpt2' (byte-level BPE) and 'llama' "
         "(SentencePiece)", f.path(), t->model_);
  }

  // Vocabulary.
  const GgufArray& texts = f.get_array("tokenizer.ggml.tokens");
  if (texts.elem_type != GgufType::STRING)
    fail("{}: 'tokenizer.ggml.tokens' holds {}, not strings", f.path(), gguf_type_name(texts.elem_type));
  const size_t n = texts.strings.size();
  if (n == 0) fail("{}: 'tokenizer.ggml.tokens' is empty", f.path());
  if (n > static_cast<size_t>(INT32_MAX)) fail("{}: {} tokens is more than token ids can hold", f.path(), n);
  const GgufArray* scores = f.has("tokenizer.ggml.scores") ? &f.get_array("tokenizer.ggml.scores") : nullptr;
  if (scores && scores->floats.size() < n && scores->ints.size() < n)
    fail("{}: 'tokenizer.ggml.scores' has {} numeric entries for {} tokens", f.path(), scores->size(), n);
  const GgufArray* types = f.has("tokenizer.ggml.token_type") ? &f.get_array("tokenizer.ggml.token_type") : nullptr;
  if (types && (types->size() < n || types->ints.size() < n))
    fail("{}: 'tokenizer.ggml.token_type' has {} integer entries for {} tokens", f.path(), types->ints.size(), n);

  t->texts_.resize(n);
  t->scores_.assign(n, 0.0f);
  t->attrs_.assign(n, kAttrNormal);
  for (size_t i = 0; i < n; i++) {
    std::string& text = t->texts_[i];
    text = texts.strings[i];
    if (text.empty()) text = fmt::format("[EMPTY_{}]", i);  // as llama.cpp renames them
    if (scores)
      t->scores_[i] = scores->floats.empty() ? static_cast<float>(scores->ints[i]) : static_cast<float>(scores->floats[i]);
    if (types) t->attrs_[i] = attr_of_type(types->ints[i]);
    const int32_t other = t->token_index_.insert(text, static_cast<int32_t>(i), t->texts_);
    if (other >= 0) fail("{}: token {} has the same text as token {}: '{}'", f.path(), i, other, text);
  }

  // Per-type settings (llama-vocab.cpp impl::load), then the GGUF's own flags.
  if (t->kind_ == Kind::kBpe) {
    std::string pre = t->pre_.empty() ? "default" : t->pre_;  // llama.cpp warns and uses default
    const PreType* pt = nullptr;
    for (const PreType& p : pre_types())
      if (is_one_of(pre, p.names)) pt = &p;
    if (!pt)
      fail("{}: pre-tokenizer '{}' (tokenizer.ggml.pre) is not supported; stepq supports: {}", f.path(), t->pre_,
           supported_pre_list());
    t->add_space_prefix_ = false;
    t->clean_spaces_ = pt->clean_spaces;
    t->ignore_merges_ = pt->ignore_merges;
    t->add_bos_ = pt->add_bos;
    t->add_eos_ = false;
    t->pre_tokenizer_ = std::make_unique<PreTokenizer>(pt->regexes);
    t->load_bpe(f);
  } else {
    t->add_space_prefix_ = true;
    t->clean_spaces_ = false;
    t->add_bos_ = true;
    t->add_eos_ = false;
  }
  t->add_space_prefix_ = f.get_bool("tokenizer.ggml.add_space_prefix", t->add_space_prefix_);

  t->load_special_tokens(f);
  t->build_special_matcher();
  t->build_pieces();
  t->set_strip_attrs(f);
  return t;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (!valid(id)) fail("token id {} is out of range (vocabulary of {})", id, n_vocab());
  return texts_[id];
}

void Tokenizer::load_special_tokens(const GgufFile& f) {
  const int32_t n = n_vocab();
  // Defaults per vocabulary type; an id outside the vocabulary means none.
  int32_t sep = -1, pad = -1, mask = -1;
  int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
  if (kind_ == Kind::kSpm) {
    bos_ = 1, eos_ = 2, unk_ = 0;
  } else {
    bos_ = 11, eos_ = 11, unk_ = -1;
  }
  for (int32_t* id : {&bos_, &eos_, &unk_})
    if (*id >= n) *id = -1;
  const std::pair<const char*, int32_t*> keys[] = {
      {"tokenizer.ggml.bos_token_id", &bos_},         {"tokenizer.ggml.eos_token_id", &eos_},
      {"tokenizer.ggml.eot_token_id", &eot_},         {"tokenizer.ggml.eom_token_id", &eom_},
      {"tokenizer.ggml.unknown_token_id", &unk_},     {"tokenizer.ggml.seperator_token_id", &sep},
      {"tokenizer.ggml.padding_token_id", &pad},      {"tokenizer.ggml.mask_token_id", &mask},
      {"tokenizer.ggml.fim_pre_token_id", &fim_pre},  {"tokenizer.ggml.fim_suf_token_id", &fim_suf},
      {"tokenizer.ggml.fim_mid_token_id", &fim_mid},  {"tokenizer.ggml.fim_pad_token_id", &fim_pad},
      {"tokenizer.ggml.fim_rep_token_id", &fim_rep},  {"tokenizer.ggml.fim_sep_token_id", &fim_sep},
      {"tokenizer.ggml.prefix_token_id", &fim_pre},   {"tokenizer.ggml.suffix_token_id", &fim_suf},
      {"tokenizer.ggml.middle_token_id", &fim_mid},
  };
  for (auto [key, id] : keys) {
    if (!f.has(key)) continue;
    const int64_t v = f.get_int(key);
    if (v >= 0 && v < n) *id = static_cast<int32_t>(v);  // llama.cpp ignores an out-of-range id (with a warning)
  }
  add_bos_ = f.get_bool("tokenizer.ggml.add_bos_token", add_bos_);
  add_eos_ = f.get_bool("tokenizer.ggml.add_eos_token", add_eos_);
  if (add_bos_ && bos_ < 0) fail("{}: the tokenizer adds BOS but has no valid BOS id", f.path());
  if (add_eos_ && eos_ < 0) fail("{}: the tokenizer adds EOS but has no valid EOS id", f.path());

  // Special tokens recognised by their text. llama.cpp walks a hash map, so when several texts
  // of one list are present which one it takes is unspecified; the CONTROL bit and the EOG set
  // come out the same either way for every list whose members are all EOG texts. We walk ids
  // in order.
  auto detect = [&](int32_t& slot, std::span<const std::string_view> texts_of_slot) {
    if (slot >= 0) return;
    for (int32_t id = 0; id < n; id++) {
      if (is_one_of(texts_[id], texts_of_slot)) {
        slot = id;
        attrs_[id] |= kAttrControl;
        return;
      }
    }
  };
  detect(eot_, kEotTexts);
  detect(eom_, kEomTexts);
  detect(fim_pre, kFimPreTexts);
  detect(fim_suf, kFimSufTexts);
  detect(fim_mid, kFimMidTexts);
  detect(fim_pad, kFimPadTexts);
  detect(fim_rep, kFimRepTexts);
  detect(fim_sep, kFimSepTexts);

  // Control tokens named "unused..." are unused.
  for (int32_t id = 0; id < n; id++)
    if ((attrs_[id] & kAttrControl) && texts_[id].find("unused") != std::string::npos) attrs_[id] |= kAttrUnused;

  // End-of-generation set.
  eog_.clear();
  for (int32_t id : {fim_pad, fim_rep, fim_sep})
    if (id >= 0) eog_.insert(id);
  for (int32_t id = 0; id < n; id++) {
    if (is_one_of(texts_[id], kEogTexts)) {
      eog_.insert(id);
      attrs_[id] |= kAttrControl;
    }
  }
  // gpt-oss: these are always rendered.
  for (int32_t id = 0; id < n; id++)
    if (is_one_of(texts_[id], {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}))
      attrs_[id] = kAttrUserDefined;
  for (int32_t id : {eos_, eot_, eom_})
    if (id >= 0) eog_.insert(id);
  // o200k_harmony / solar-open: with <|return|> and <|call|> (or <|calls|> and <|flush|>),
  // <|end|> does not end generation.
  {
    bool has_return = false, has_call = false, has_flush = false;
    int32_t end_id = -1;
    for (int32_t id : eog_) {
      const std::string& s = texts_[id];
      if (s == "<|return|>") has_return = true;
      else if (s == "<|call|>" || s == "<|calls|>") has_call = true;
      else if (s == "<|flush|>") has_flush = true;
      else if (s == "<|end|>") end_id = id;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
      eog_.erase(end_id);
      attrs_[end_id] = kAttrUserDefined;
    }
  }
  // gemma4 / plamo2: </s> is a normal token there.
  {
    bool has_marker = false;
    int32_t s_id = -1;
    for (int32_t id : eog_) {
      const std::string& s = texts_[id];
      if (s == "<|tool_response>" || s == "<|plamo:eos|>") has_marker = true;
      else if (s == "</s>") s_id = id;
    }
    if (has_marker && s_id >= 0) {
      eog_.erase(s_id);
      attrs_[s_id] = kAttrNormal;
    }
  }
  eog_sorted_.assign(eog_.begin(), eog_.end());
  std::sort(eog_sorted_.begin(), eog_sorted_.end());
  eog_flag_.assign(texts_.size(), 0);
  for (int32_t id : eog_sorted_) eog_flag_[id] = 1;
}

void Tokenizer::build_special_matcher() {
  const int32_t n = n_vocab();
  // llama.cpp: ids in order, then std::sort by text length, longest first. std::sort is not
  // stable; sorting the same sequence with the same comparator reproduces its order for
  // equal lengths (it only matters for overlapping special texts of equal length).
  special_order_.clear();
  for (int32_t id = 0; id < n; id++)
    if (attrs_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_order_.push_back(id);
  std::sort(special_order_.begin(), special_order_.end(),
            [&](int32_t a, int32_t b) { return texts_[a].size() > texts_[b].size(); });

  special_rank_.assign(n, -1);
  special_trie_.assign(1, TrieNode{});
  for (size_t r = 0; r < special_order_.size(); r++) {
    const int32_t id = special_order_[r];
    special_rank_[id] = static_cast<int32_t>(r);
    int32_t node = 0;
    for (char ch : texts_[id]) {
      const uint8_t b = static_cast<uint8_t>(ch);
      auto& next = special_trie_[node].next;
      auto it = std::lower_bound(next.begin(), next.end(), b, [](const auto& e, uint8_t v) { return e.first < v; });
      if (it != next.end() && it->first == b) {
        node = it->second;
      } else {
        const int32_t child = static_cast<int32_t>(special_trie_.size());
        next.insert(it, {b, child});
        special_trie_.emplace_back();
        node = child;
      }
    }
    special_trie_[node].token = id;
  }
}

void Tokenizer::set_strip_attrs(const GgufFile& f) {
  // llama.cpp sets LSTRIP/RSTRIP by model and pre-tokenizer name (the GGUF does not carry
  // them), after the partition order and the piece cache are built.
  const std::string name = lowercase_ascii(f.get_string("general.name", ""));
  const std::string arch = f.get_string("general.architecture", "");
  const auto contains_any = [](const std::string& s, std::initializer_list<std::string_view> subs) {
    for (std::string_view sub : subs)
      if (s.find(sub) != std::string::npos) return true;
    return false;
  };
  const auto set = [&](std::string_view text, uint32_t bit, bool on) {
    const int32_t id = find_token(text);
    if (id < 0) return;
    attrs_[id] = on ? (attrs_[id] | bit) : (attrs_[id] & ~bit);
  };
  if (contains_any(pre_, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) ||
      contains_any(arch, {"nomic-bert-moe", "jina-bert-v3"})) {
    set("<mask>", kAttrLstrip, true);
  } else if (contains_any(name, {"phi-3", "phi3"})) {
    for (int32_t id : special_order_) attrs_[id] |= kAttrRstrip;
    set("</s>", kAttrRstrip, true);
    for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) set(t, kAttrRstrip, false);
  } else if (contains_any(name, {"modern-bert"})) {
    set("[MASK]", kAttrLstrip, true);
  }
}

void Tokenizer::build_pieces() {
  pieces_.resize(texts_.size());
  for (size_t id = 0; id < texts_.size(); id++) {
    const std::string& text = texts_[id];
    const uint32_t attr = attrs_[id];
    std::string& p = pieces_[id];
    if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
      p = text;
    } else if (attr & kAttrNormal) {
      if (kind_ == Kind::kSpm) {
        // U+2581 -> space
        for (size_t i = 0; i < text.size(); i++) {
          if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
            p += ' ';
            i += 2;
          } else {
            p += text[i];
          }
        }
      } else {
        // Each character of the GPT-2 byte alphabet back to its byte; llama.cpp writes a marker
        // for a character outside the alphabet.
        std::string_view s = text;
        for (size_t i = 0; i < s.size();) {
          size_t len = unicode::utf8_sequence_length(s.substr(i));
          const uint32_t cp = len ? unicode::decode_utf8(s.data() + i, len) : 0xFFFD;
          const int b = unicode::codepoint_to_byte(cp);
          if (b >= 0) {
            p += static_cast<char>(b);
          } else {
            std::string utf8;
            unicode::append_utf8(utf8, cp);
            p += "[UNK_BYTE_0x";
            for (char c : utf8) p += fmt::format("{:02x}", static_cast<uint8_t>(c));
            p += text + "]";
          }
          i += len ? len : 1;
        }
      }
    } else if (attr & kAttrByte) {
      // "<0xXX>"
      if (text.size() >= 5) p = std::string(1, static_cast<char>(std::strtol(text.substr(3, 2).c_str(), nullptr, 16)));
    }
    // Unused-only and undefined tokens have no text.
  }
}

std::vector<Tokenizer::Fragment> Tokenizer::partition(std::string_view text, bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, text});

  // Which candidates occur in the text at all (a fragment is a substring of the text, so no
  // other candidate can match anywhere below): walk the trie from every byte.
  std::vector<int32_t> ranks;
  const auto wanted = [&](int32_t id) {
    return parse_special || !(attrs_[id] & (kAttrControl | kAttrUnknown));
  };
  for (size_t i = 0; i < text.size(); i++) {
    int32_t node = 0;
    for (size_t j = i; j < text.size(); j++) {
      const auto& next = special_trie_[node].next;
      const uint8_t b = static_cast<uint8_t>(text[j]);
      auto it = std::lower_bound(next.begin(), next.end(), b, [](const auto& e, uint8_t v) { return e.first < v; });
      if (it == next.end() || it->first != b) break;
      node = it->second;
      const int32_t tok = special_trie_[node].token;
      if (tok >= 0 && wanted(tok)) ranks.push_back(special_rank_[tok]);
    }
  }
  if (ranks.empty()) return frags;
  std::sort(ranks.begin(), ranks.end());
  ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());

  // llama.cpp's tokenizer_st_partition: each candidate in order splits every text fragment at
  // all its occurrences, left to right.
  std::vector<Fragment> next;
  for (int32_t r : ranks) {
    const int32_t id = special_order_[r];
    const std::string& st = texts_[id];
    const uint32_t attr = attrs_[id];
    next.clear();
    for (const Fragment& fr : frags) {
      if (fr.token >= 0) {
        next.push_back(fr);
        continue;
      }
      std::string_view rest = fr.text;
      while (!rest.empty()) {
        const size_t m = rest.find(st);
        if (m == std::string_view::npos) {
          next.push_back({-1, rest});
          break;
        }
        std::string_view left = rest.substr(0, m);
        if (attr & kAttrLstrip)
          while (!left.empty() && is_c_space(left.back())) left.remove_suffix(1);
        if (!left.empty()) next.push_back({-1, left});
        next.push_back({id, {}});
        rest.remove_prefix(m + st.size());
        if (attr & kAttrRstrip)
          while (!rest.empty() && is_c_space(rest.front())) rest.remove_prefix(1);
      }
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  unicode::validate_utf8(text, "text to tokenize");
  const std::vector<Fragment> frags = partition(text, parse_special);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && add_bos_) out.push_back(bos_);
  if (kind_ == Kind::kSpm) {
    bool prev_special = true;  // a space prefix goes before the first text fragment too
    std::string buf;
    for (const Fragment& fr : frags) {
      if (fr.token >= 0) {
        out.push_back(fr.token);
        prev_special = true;
        continue;
      }
      // Spaces become U+2581 (and one is put in front where the vocabulary asks for it).
      buf.clear();
      if (add_space_prefix_ && prev_special) buf += "\xE2\x96\x81";
      for (char c : fr.text) {
        if (c == ' ') buf += "\xE2\x96\x81";
        else buf += c;
      }
      encode_spm(buf, out);
      prev_special = false;
    }
  } else {
    for (const Fragment& fr : frags) {
      if (fr.token >= 0) out.push_back(fr.token);
      else encode_bpe(fr.text, out);
    }
  }
  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  if (!valid(id)) fail("token id {} is out of range (vocabulary of {})", id, n_vocab());
  if (!special && (attrs_[id] & (kAttrUnknown | kAttrControl))) return {};
  return pieces_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
  std::string text;
  bool remove_space = add_space_prefix_;
  for (int32_t id : ids) {
    if (!valid(id)) fail("token id {} is out of range (vocabulary of {})", id, n_vocab());
    std::string_view p;
    if (special || !(attrs_[id] & (kAttrUnknown | kAttrControl))) p = pieces_[id];
    if (remove_space && !p.empty() && p.front() == ' ') p.remove_prefix(1);
    remove_space = false;
    text += p;
  }
  if (!clean_spaces_ || text.empty()) return text;

  // llama.cpp's three clean-up passes (impl::detokenize), in place.
  // 1: no space before ? ! . ,
  size_t total = 1;
  for (size_t i = 1; i < text.size(); i++) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
    text[total++] = x;
  }
  text.resize(total);
  // 2: " ' " -> "'"
  total = 1;
  for (size_t i = 1; i < text.size(); i++) {
    const char x = text[i];
    if (x == '\'' && i + 1 < text.size() && text[i - 1] == ' ' && text[i + 1] == ' ') {
      total--;
      ++i;  // drop the next space too
    }
    text[total++] = x;
  }
  text.resize(total);
  // 3: no space before 's 'm 're 've (kept before 't 'd 'll)
  total = 1;
  for (size_t i = 1; i < text.size(); i++) {
    const char x = text[i];
    if (text[i - 1] == ' ' && x == '\'' && i + 1 < text.size()) {
      const char x1 = text[i + 1];
      if (x1 == 's' || x1 == 'm') {
        total--;
      } else if (i + 2 < text.size()) {
        const char x2 = text[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
      }
    }
    text[total++] = x;
  }
  text.resize(total);
  return text;
}

std::string TextStreamer::push(int32_t id) {
  pending_ += tok_.token_to_piece(id, special_);
  std::string out;
  std::string_view s = pending_;
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = unicode::utf8_sequence_length(s.substr(i));
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else if (unicode::utf8_is_incomplete_prefix(s.substr(i))) {
      break;  // the rest of this character comes with a later token
    } else {
      out += "\xEF\xBF\xBD";
      i += unicode::utf8_maximal_subpart(s.substr(i));
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string TextStreamer::flush() {
  std::string out = pending_.empty() ? std::string() : std::string("\xEF\xBF\xBD");
  pending_.clear();
  return out;
}

}  // namespace stepq
