// Tokenizers of GGUF models, giving the same token ids as llama.cpp's llama_tokenize.
//
// Two vocabulary types (../shared/reference/tokenizers.md):
// - "gpt2": byte-level BPE (§1): special-token partition, regex pre-tokenizer chosen by
//   tokenizer.ggml.pre, GPT-2 byte alphabet, merges by rank.
// - "llama": SentencePiece BPE (§3): spaces become U+2581, pieces merge by score, byte fallback
//   to <0xXX> tokens (Gemma 3).
// The special-token partition (§2), BOS/EOS rules (§5), detokenization (§4) and the
// end-of-generation set follow llama.cpp's llama-vocab.cpp, including its load-time overrides.
//
// Invalid UTF-8 input is an Error (llama.cpp would silently turn bad bytes into U+FFFD).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tokenizer/token_index.h"

namespace stepq {

class GgufFile;
class PreTokenizer;

// Token attribute bits, as llama.cpp's llama_token_attr.
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrNormalized = 1u << 6,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
  kAttrSingleWord = 1u << 9,
};

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* from the file. Throws Error on a missing or malformed vocabulary and
  // on a tokenizer model or pre-tokenizer stepq does not support (the message lists those it does).
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& f);
  ~Tokenizer();

  // Text to ids, as llama_tokenize(text, add_special, parse_special). add_special adds BOS/EOS
  // where the vocabulary asks for them; parse_special turns the text of control tokens (like
  // "<|im_start|>") into those tokens (user-defined tokens are always matched). Throws Error on
  // invalid UTF-8, naming the byte offset.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = false) const;

  // The bytes of one token (may be a partial UTF-8 sequence). With special=false, control and
  // unknown tokens give "".
  std::string token_to_piece(int32_t id, bool special = true) const;
  // Ids to text, as llama_detokenize(remove_special=false, unparse_special=special): pieces
  // joined, the first piece's leading space dropped when the vocabulary adds a space prefix,
  // and llama.cpp's clean-up of spaces before punctuation where the vocabulary asks for it.
  std::string decode(std::span<const int32_t> ids, bool special = false) const;

  int32_t n_vocab() const { return static_cast<int32_t>(texts_.size()); }
  int32_t bos() const { return bos_; }  // -1 if none
  int32_t eos() const { return eos_; }  // -1 if none
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // End of generation: eos, eot, eom, <|im_end|>, <end_of_turn>, <|endoftext|>, FIM pad/repo/sep,
  // ... exactly the set llama.cpp builds at load.
  bool is_eog(int32_t id) const { return valid(id) && eog_flag_[id]; }  // O(1), no hashing: per-token hot path
  bool is_control(int32_t id) const { return valid(id) && (attrs_[id] & kAttrControl); }
  uint32_t token_attr(int32_t id) const { return valid(id) ? attrs_[id] : 0; }
  const std::string& token_text(int32_t id) const;  // raw vocabulary string
  std::span<const int32_t> eog_ids() const { return eog_sorted_; }
  std::string_view model() const { return model_; }  // "gpt2" | "llama"
  std::string_view pre() const { return pre_; }
  // Id of the token whose vocabulary text is exactly `text`, or -1.
  int32_t find_token(std::string_view text) const { return token_index_.find(text, texts_); }

 private:
  // Hash that accepts std::string_view keys without building a std::string.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  enum class Kind { kBpe, kSpm };

  Tokenizer() = default;
  void load_special_tokens(const GgufFile& f);
  void build_special_matcher();
  void build_pieces();
  void set_strip_attrs(const GgufFile& f);
  bool valid(int32_t id) const { return id >= 0 && id < n_vocab(); }

  // One fragment of text or one special token, after the special-token partition.
  struct Fragment {
    int32_t token = -1;  // >= 0: a special token
    std::string_view text;
  };
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;

  // bpe.cpp
  struct BpeScratch;
  void load_bpe(const GgufFile& f);
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  // One pre-tokenized piece (raw bytes).
  void bpe_word(std::string_view piece, std::vector<int32_t>& out, BpeScratch& scratch) const;
  // spm.cpp
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  int32_t byte_token_spm(uint8_t byte) const;

  Kind kind_ = Kind::kBpe;
  std::string model_, pre_;
  // Per token id.
  std::vector<std::string> texts_;
  std::vector<float> scores_;    // SentencePiece merge priority
  std::vector<uint32_t> attrs_;  // TokenAttr bits
  TokenIndex token_index_;
  std::vector<std::string> pieces_;  // token_to_piece(id, special=true) of every id

  int32_t bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1;
  bool add_bos_ = false, add_eos_ = false;
  bool add_space_prefix_ = false;
  bool clean_spaces_ = false;
  bool ignore_merges_ = false;
  std::unordered_set<int32_t> eog_;
  std::vector<int32_t> eog_sorted_;
  std::vector<uint8_t> eog_flag_;  // (n_vocab) 1 for end-of-generation tokens

  // Special-token partition: candidates longest text first (llama.cpp's order), and a byte trie
  // over their texts to find quickly which of them occur in a text at all.
  std::vector<int32_t> special_order_;           // ids, in partition order
  std::vector<int32_t> special_rank_;            // id -> position in special_order_, or -1
  struct TrieNode {
    std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
    int32_t token = -1;                              // token whose text ends here
  };
  std::vector<TrieNode> special_trie_;

  // BPE
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  // Merge ranks keyed by the ids of the two sides (every side of a real vocabulary's merges is
  // itself a token); merges with a side that is not a token are kept by text in merge_text_rank_.
  PairIndex merge_rank_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> merge_text_rank_;  // "left right"
  std::vector<int32_t> merge_result_;     // rank -> token of left+right, or -1
  bool special_texts_valid_utf8_ = true;  // else fragments between special tokens are re-checked
  std::vector<std::string> byte_symbol_;  // byte -> its GPT-2 alphabet character, UTF-8 encoded
  std::vector<int32_t> byte_token_;       // byte -> token of that character, or -1

  friend class TextStreamer;
};

// Incremental detokenizer for streaming generated tokens: push(id) returns only complete UTF-8
// characters; the bytes of a character cut between tokens wait for the next token. A byte that
// cannot start or continue a well-formed sequence comes out as U+FFFD at once; flush() returns
// what is left, an unfinished sequence as U+FFFD.
class TextStreamer {
 public:
  explicit TextStreamer(const Tokenizer& tok, bool special = false) : tok_(tok), special_(special) {}
  std::string push(int32_t id);
  std::string flush();
  void reset() { pending_.clear(); }

 private:
  const Tokenizer& tok_;
  bool special_;
  std::string pending_;
};

}  // namespace stepq
