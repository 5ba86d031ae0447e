#include "tokenizer/unicode.h"

#include <array>

#include "base/error.h"

namespace stepq::unicode {

// Defined in the generated unicode_tables.cpp.
extern const CodepointRange kLetterRanges[];
extern const size_t kLetterRangesCount;
extern const CodepointRange kNumberRanges[];
extern const size_t kNumberRangesCount;
extern const CodepointRange kPunctuationRanges[];
extern const size_t kPunctuationRangesCount;
extern const CodepointRange kWhitespaceRanges[];
extern const size_t kWhitespaceRangesCount;

std::span<const CodepointRange> letter_ranges() { return {kLetterRanges, kLetterRangesCount}; }
std::span<const CodepointRange> number_ranges() { return {kNumberRanges, kNumberRangesCount}; }
std::span<const CodepointRange> punctuation_ranges() { return {kPunctuationRanges, kPunctuationRangesCount}; }
std::span<const CodepointRange> whitespace_ranges() { return {kWhitespaceRanges, kWhitespaceRangesCount}; }

namespace {
// Well-formed sequences (Unicode Table 3-7): the lead byte fixes the length and the range of the
// second byte, which rules out overlong forms, surrogates and code points above U+10FFFF.
struct LeadByte {
  size_t len = 0;  // 0: not a lead byte
  uint8_t lo = 0x80, hi = 0xBF;
};
LeadByte lead_byte(uint8_t c) {
  LeadByte l;
  if (c < 0x80) {
    l.len = 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    l.len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    l.len = 3;
    if (c == 0xE0) l.lo = 0xA0;
    if (c == 0xED) l.hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    l.len = 4;
    if (c == 0xF0) l.lo = 0x90;
    if (c == 0xF4) l.hi = 0x8F;
  }
  return l;
}
// Number of leading bytes of `s` (at most the sequence length) that fit the pattern of a
// well-formed sequence.
size_t matching_prefix(std::string_view s, const LeadByte& l) {
  size_t i = 1;
  for (; i < l.len && i < s.size(); i++) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    const uint8_t lo = i == 1 ? l.lo : 0x80, hi = i == 1 ? l.hi : 0xBF;
    if (b < lo || b > hi) break;
  }
  return i;
}
}  // namespace

size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) return 0;
  const LeadByte l = lead_byte(static_cast<uint8_t>(s[0]));
  if (l.len == 0) return 0;
  return matching_prefix(s, l) == l.len ? l.len : 0;
}

bool utf8_is_incomplete_prefix(std::string_view s) {
  if (s.empty()) return false;
  const LeadByte l = lead_byte(static_cast<uint8_t>(s[0]));
  return l.len > s.size() && matching_prefix(s, l) == s.size();
}

size_t utf8_maximal_subpart(std::string_view s) {
  if (s.empty()) return 0;
  const LeadByte l = lead_byte(static_cast<uint8_t>(s[0]));
  return l.len == 0 ? 1 : matching_prefix(s, l);
}

void append_well_formed(std::string& out, std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s.substr(i));
    if (n == 0) {
      i += utf8_maximal_subpart(s.substr(i));
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
}

void validate_utf8(std::string_view s, std::string_view what) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      i++;
      continue;
    }
    const size_t n = utf8_sequence_length(s.substr(i));
    if (n == 0)
      fail("{} is not valid UTF-8: byte offset {} (byte 0x{:02X}) does not start a well-formed sequence{}", what, i,
           c, utf8_is_incomplete_prefix(s.substr(i)) ? " (cut short at the end)" : "");
    i += n;
  }
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t decode_utf8(const char* p, size_t len) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(p[i])); };
  switch (len) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

namespace {
// Printable bytes keep their value; the other 68 (0x00-0x20, 0x7F-0xA0, 0xAD), in byte order,
// take U+0100, U+0101, ... (HF bytes_to_unicode).
struct ByteAlphabet {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 0x144> to_byte{};  // every code point of the alphabet is below U+0144
  ByteAlphabet() {
    to_byte.fill(-1);
    uint32_t next = 0x100;
    for (int b = 0; b < 256; b++) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}
}  // namespace

uint32_t byte_to_codepoint(uint8_t b) { return byte_alphabet().to_cp[b]; }

int codepoint_to_byte(uint32_t cp) { return cp < 0x144 ? byte_alphabet().to_byte[cp] : -1; }

}  // namespace stepq::unicode
