// Byte-level BPE (tokenizer.ggml.model = "gpt2"): ../shared/reference/tokenizers.md §1.
//
// A text fragment is split into words by the pre-tokenizer regexes, each word's bytes are
// written in the GPT-2 byte alphabet, and within each word adjacent symbols are merged by merge
// rank (lowest first, leftmost first among equal ranks) until no adjacent pair has a rank. This
// is llama.cpp's llm_tokenizer_bpe_session, which gives the same result as HF's BPE.
#include <algorithm>

#include "base/error.h"
#include "formats/gguf.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace stepq {

namespace {
uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}
}  // namespace

void Tokenizer::load_bpe(const GgufFile& f) {
  if (!f.has("tokenizer.ggml.merges")) fail("{}: 'tokenizer.ggml.merges' is missing (a gpt2 tokenizer needs it)", f.path());
  const GgufArray& merges = f.get_array("tokenizer.ggml.merges");
  if (merges.elem_type != GgufType::STRING)
    fail("{}: 'tokenizer.ggml.merges' holds {}, not strings", f.path(), gguf_type_name(merges.elem_type));
  merge_rank_.reserve(merges.strings.size());
  merge_result_.assign(merges.strings.size(), -1);
  for (size_t i = 0; i < merges.strings.size(); i++) {
    const std::string& m = merges.strings[i];
    // "left right", split at the first space after the first byte; a duplicate keeps its
    // first (lowest) rank. An entry without such a space can never apply.
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) continue;
    const std::string_view left = std::string_view(m).substr(0, sp), right = std::string_view(m).substr(sp + 1);
    const int32_t rank = static_cast<int32_t>(i);
    const int32_t l = find_token(left), r = find_token(right);
    if (l >= 0 && r >= 0) {
      merge_rank_.insert(pair_key(l, r), rank);
    } else {
      merge_text_rank_.emplace(std::string(left) + ' ' + std::string(right), rank);
    }
    merge_result_[i] = find_token(std::string(left) + std::string(right));
  }
  byte_symbol_.resize(256);
  byte_token_.resize(256);
  for (int b = 0; b < 256; b++) {
    byte_symbol_[b].clear();
    unicode::append_utf8(byte_symbol_[b], unicode::byte_to_codepoint(static_cast<uint8_t>(b)));
    byte_token_[b] = find_token(byte_symbol_[b]);
  }
  special_texts_valid_utf8_ = true;
  for (int32_t id = 0; id < n_vocab(); id++) {
    if (!(attrs_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown))) continue;
    try {
      unicode::validate_utf8(texts_[id]);
    } catch (const Error&) {
      special_texts_valid_utf8_ = false;
    }
  }
}

// Scratch space reused across the words of one fragment.
struct Tokenizer::BpeScratch {
  struct Symbol {
    uint32_t start, len;  // bytes in the word
    int32_t id;           // token with this text, or -1
    int32_t prev, next;
  };
  struct Bigram {
    int32_t rank;
    int32_t left, right;
    uint32_t len;  // left.len + right.len when pushed: a pair that changed since is stale
    // priority_queue keeps the largest on top: lowest rank, then leftmost
    bool operator<(const Bigram& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
  };
  std::vector<Symbol> symbols;
  std::vector<Bigram> heap;
  std::string word;
};

void Tokenizer::bpe_word(std::string_view piece, std::vector<int32_t>& out, BpeScratch& s) const {
  using Bigram = BpeScratch::Bigram;
  // The word in the byte alphabet, one symbol per byte of the piece (1 or 2 bytes each).
  s.word.clear();
  auto& sym = s.symbols;
  sym.clear();
  for (size_t i = 0; i < piece.size(); i++) {
    const uint8_t b = static_cast<uint8_t>(piece[i]);
    const int32_t idx = static_cast<int32_t>(i);
    sym.push_back({static_cast<uint32_t>(s.word.size()), static_cast<uint32_t>(byte_symbol_[b].size()), byte_token_[b],
                   idx - 1, i + 1 < piece.size() ? idx + 1 : -1});
    s.word += byte_symbol_[b];
  }
  const std::string_view word = s.word;
  if (ignore_merges_) {
    if (int32_t id = find_token(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const auto rank_of = [&](const BpeScratch::Symbol& l, const BpeScratch::Symbol& r) -> int32_t {
    if (l.id >= 0 && r.id >= 0) {
      return merge_rank_.find(pair_key(l.id, r.id));
    }
    if (merge_text_rank_.empty()) return -1;
    std::string key;
    key.append(word.substr(l.start, l.len)).append(1, ' ').append(word.substr(r.start, r.len));
    auto it = merge_text_rank_.find(key);
    return it == merge_text_rank_.end() ? -1 : it->second;
  };
  auto& heap = s.heap;
  heap.clear();
  const auto push_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const int32_t rank = rank_of(sym[l], sym[r]);
    if (rank < 0) return;
    heap.push_back({rank, l, r, sym[l].len + sym[r].len});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); i++) push_pair(i - 1, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Bigram b = heap.back();
    heap.pop_back();
    auto& l = sym[b.left];
    auto& r = sym[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
    l.len += r.len;
    l.id = merge_result_[b.rank];
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    push_pair(l.prev, b.left);
    push_pair(b.left, l.next);
  }
  for (int32_t i = 0; i >= 0 && i < static_cast<int32_t>(sym.size()); i = sym[i].next) {
    const auto& x = sym[i];
    if (x.id >= 0) {
      out.push_back(x.id);
      continue;
    }
    // Not a token (cannot happen with a complete byte alphabet): llama.cpp looks up each byte
    // as a one-byte text and drops those it does not find.
    for (char c : word.substr(x.start, x.len))
      if (int32_t id = find_token(std::string_view(&c, 1)); id >= 0) out.push_back(id);
  }
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  // A special token with malformed UTF-8 text could cut the text inside a character; PCRE2
  // must not see malformed UTF-8.
  if (!special_texts_valid_utf8_) unicode::validate_utf8(text, "text fragment between special tokens");
  BpeScratch s;
  for (std::string_view piece : pre_tokenizer_->split(text)) bpe_word(piece, out, s);
}

}  // namespace stepq
