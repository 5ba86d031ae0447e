// BERT WordPiece tokenizer from a Hugging Face tokenizer.json, giving the same ids as PyPI
// `tokenizers` (../shared/reference/tokenizers.md §6):
//   added tokens matched on the raw text (leftmost-longest) -> BertNormalizer (clean text,
//   spaces around CJK ideographs, NFD + drop Mn when stripping accents, lowercase) ->
//   BertPreTokenizer (split on whitespace, every punctuation char its own piece) -> WordPiece
//   (greedy longest match, "##" continuation, a word over max_input_chars_per_word or with an
//   unmatchable part becomes [UNK]) -> the post-processor's template ([CLS] $A [SEP]).
//
// Unicode: NFD, general categories and lowercase come from utf8proc (Debian libutf8proc-dev),
// White_Space from stepq's own table (unicode.h). The reference uses Rust's tables, which may be
// a Unicode version apart: only code points new in between could tokenize differently.
// Invalid UTF-8 input is an Error (Python strings cannot hold it).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stepq {

class WordPieceTokenizer {
 public:
  // Parses the JSON text of a tokenizer.json; `what` names it in errors. Throws Error on a
  // malformed file and on any model, normalizer, pre-tokenizer or post-processor this class does
  // not implement (the message says which are supported).
  static std::unique_ptr<WordPieceTokenizer> from_json(std::string_view text, const std::string& what);
  static std::unique_ptr<WordPieceTokenizer> from_file(const std::string& path);

  // Text to ids. add_special applies the post-processor's template. max_len > 0 truncates the
  // text's own ids so that the result (special tokens included) has at most max_len ids, as HF
  // truncation does for a single sequence.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true, int max_len = 0) const;

  int32_t n_vocab() const { return (int32_t)id_to_token_.size(); }
  const std::string& token_text(int32_t id) const;  // "" for an id outside the vocabulary
  int32_t pad_id() const { return pad_id_; }        // 0 if the file names none
  int32_t find_token(std::string_view text) const;  // -1 if absent
  int n_special_added() const { return (int)(prefix_.size() + suffix_.size()); }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct AddedToken {
    std::string content;
    int32_t id;
  };

  WordPieceTokenizer() = default;
  static std::unique_ptr<WordPieceTokenizer> from_json_checked(std::string_view text, const std::string& what);
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;  // no added tokens inside
  std::u32string normalize(std::string_view text) const;
  void wordpiece(const std::u32string& word, std::vector<int32_t>& out, std::string& scratch) const;

  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<AddedToken> added_;  // matched on the raw text
  std::string prefix_cont_ = "##";
  int max_chars_ = 100;
  int32_t unk_ = -1;
  int32_t pad_id_ = 0;
  // BertNormalizer (all off when the file has no normalizer).
  bool clean_text_ = false, chinese_ = false, strip_accents_ = false, lowercase_ = false;
  // Post-processor template for one sequence: ids before and after it.
  std::vector<int32_t> prefix_, suffix_;
};

}  // namespace stepq
