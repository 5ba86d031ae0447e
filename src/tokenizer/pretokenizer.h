// Regex pre-tokenizer of byte-level BPE vocabularies: splits text into words before merging.
//
// Takes llama.cpp's regex lists verbatim (../shared/reference/tokenizers.md §1.3) and applies
// them the way llama.cpp's unicode_regex_split does (§1.4): the regexes run in order, each one
// re-splits every piece made so far independently (a piece's end is the end of text for
// lookaheads), and both the matches and the unmatched gaps between them become pieces.
//
// Matching is PCRE2 (JIT where available). \p{L}, \p{N}, \p{P}, \s and \S are replaced by
// explicit classes from llama.cpp's Unicode 15.1 tables before compiling (§1.6: this makes
// PCRE2 split exactly like llama.cpp's hand-written fast paths and its std::regex fallback).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace stepq {

// Rewrites \p{L} \p{N} \p{P} \s \S in a llama.cpp regex into explicit PCRE2 classes
// (inside [...] the members are inserted; outside, a class is made). Other escapes and syntax
// pass through. Throws Error on a \p{..} name it does not know or \S inside brackets.
std::string expand_unicode_classes(std::string_view regex);

class PreTokenizer {
 public:
  // Compiles every regex once (throws Error naming the regex on a compile failure).
  explicit PreTokenizer(const std::vector<std::string>& regexes);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Splits well-formed UTF-8 `text` (the caller validated it) into pieces that cover it in
  // order. Thread-safe: matching state is per call.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace stepq
