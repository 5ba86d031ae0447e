// UTF-8 and the Unicode character classes the tokenizers need.
//
// The classes are llama.cpp's (Unicode 15.1, generated into unicode_tables.cpp by
// tools/gen_unicode_tables.py), not PCRE2's built-in \p{..} tables, so that regex splitting
// agrees with llama.cpp for every code point (../shared/reference/tokenizers.md §1.5-1.6).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace stepq::unicode {

struct CodepointRange {
  uint32_t first, last;  // inclusive
};

std::span<const CodepointRange> letter_ranges();       // \p{L}: general category L*
std::span<const CodepointRange> number_ranges();       // \p{N}: N* (Nd, Nl, No)
std::span<const CodepointRange> punctuation_ranges();  // \p{P}: P*
std::span<const CodepointRange> whitespace_ranges();   // \s: property White_Space (25 code points)

// Throws Error if `s` is not well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF); the message gives the byte offset of the first bad sequence and
// `what` names the input.
void validate_utf8(std::string_view s, std::string_view what = "text");

// Length in bytes of the well-formed UTF-8 sequence at the start of `s`: 1..4, or 0 if the
// bytes there are not a complete well-formed sequence (malformed, or cut short at the end).
size_t utf8_sequence_length(std::string_view s);

// True if all of `s` (1..3 bytes) is the start of a well-formed sequence that is not complete yet.
bool utf8_is_incomplete_prefix(std::string_view s);

// Length of the ill-formed sequence at the start of `s` that one U+FFFD replaces (the "maximal
// subpart" of Unicode §3.9: a lead byte and the continuation bytes that still fit it, or 1).
size_t utf8_maximal_subpart(std::string_view s);

// Appends the well-formed sequences of `s` to `out`, dropping what is not well-formed (a
// multi-byte character cut by a token boundary), so that text decoded from a span of tokens can
// be encoded by a tokenizer that refuses invalid UTF-8.
void append_well_formed(std::string& out, std::string_view s);

// Appends the UTF-8 encoding of `cp` (<= U+10FFFF).
void append_utf8(std::string& out, uint32_t cp);

// The code point of a well-formed sequence of `len` bytes at `p`.
uint32_t decode_utf8(const char* p, size_t len);

// GPT-2 byte-level alphabet (§1.1): each byte value has one printable code point.
uint32_t byte_to_codepoint(uint8_t b);
// Inverse: the byte for a code point of that alphabet, or -1 if it is not one of the 256.
int codepoint_to_byte(uint32_t cp);

}  // namespace stepq::unicode
