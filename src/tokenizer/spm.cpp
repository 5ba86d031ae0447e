// SentencePiece BPE (tokenizer.ggml.model = "llama"): ../shared/reference/tokenizers.md §3.
//
// No pre-tokenizer and no merges list: starting from single characters, the adjacent pair whose
// concatenation is the vocabulary token with the highest score merges first (leftmost among
// equal scores), until no adjacent pair forms a token. A character that is not a token comes
// out as its bytes, <0xXX> tokens (byte fallback). This is llama.cpp's llm_tokenizer_spm_session.
#include <algorithm>
#include <cstdio>

#include "base/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace stepq {

namespace {
// Length of the character starting with byte `c`, from its high bits alone (as llama.cpp's
// unicode_len_utf8; the input is well-formed UTF-8 here, so this is the true length).
size_t char_len(char c) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[static_cast<uint8_t>(c) >> 4];
}
}  // namespace

int32_t Tokenizer::byte_token_spm(uint8_t byte) const {
  char hex[8];
  std::snprintf(hex, sizeof hex, "<0x%02X>", byte);
  if (int32_t id = find_token(hex); id >= 0) return id;
  const char raw = static_cast<char>(byte);
  if (int32_t id = find_token(std::string_view(&raw, 1)); id >= 0) return id;
  fail("the vocabulary has neither a byte token {} nor a token for the byte itself, so this text cannot be tokenized",
       hex);
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  struct Symbol {
    uint32_t start, len;  // bytes in `text`; len 0 once merged into its left neighbour
    int32_t prev, next;
  };
  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t len;  // left.len + right.len when pushed: a pair that changed since is stale
    // priority_queue order: highest score on top, then leftmost
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  std::vector<Symbol> sym;
  sym.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(char_len(text[i]), text.size() - i);
    const int32_t idx = static_cast<int32_t>(sym.size());
    sym.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len), idx - 1, i + len < text.size() ? idx + 1 : -1});
    i += len;
  }
  std::vector<Bigram> heap;
  const auto push_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    // Neighbours are contiguous in the text.
    const uint32_t len = sym[l].len + sym[r].len;
    const int32_t id = find_token(text.substr(sym[l].start, len));
    if (id < 0) return;
    heap.push_back({scores_[id], l, r, len});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 1; i < static_cast<int32_t>(sym.size()); i++) push_pair(i - 1, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    const Bigram b = heap.back();
    heap.pop_back();
    Symbol& l = sym[b.left];
    Symbol& r = sym[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    push_pair(l.prev, b.left);
    push_pair(b.left, l.next);
  }
  for (int32_t i = 0; i >= 0 && i < static_cast<int32_t>(sym.size()); i = sym[i].next) {
    const std::string_view piece = text.substr(sym[i].start, sym[i].len);
    if (int32_t id = find_token(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    // Only single characters can miss (every merge made a token): byte fallback.
    for (char c : piece) out.push_back(byte_token_spm(static_cast<uint8_t>(c)));
  }
}

}  // namespace stepq
