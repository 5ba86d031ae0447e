#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <span>

#include "base/error.h"
#include "tokenizer/unicode.h"

namespace stepq {

namespace {

using unicode::CodepointRange;

void append_class_members(std::string& out, std::span<const CodepointRange> ranges) {
  for (const CodepointRange& r : ranges) {
    if (r.first == r.last)
      out += fmt::format("\\x{{{:X}}}", r.first);
    else
      out += fmt::format("\\x{{{:X}}}-\\x{{{:X}}}", r.first, r.last);
  }
}

std::span<const CodepointRange> property_ranges(std::string_view name, std::string_view regex) {
  if (name == "L") return unicode::letter_ranges();
  if (name == "N") return unicode::number_ranges();
  if (name == "P") return unicode::punctuation_ranges();
  fail("pre-tokenizer regex uses \\p{{{}}}, which stepq does not support (only \\p{{L}}, \\p{{N}}, \\p{{P}}): {}",
       name, regex);
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

std::string expand_unicode_classes(std::string_view regex) {
  std::string out;
  bool in_class = false;
  size_t class_start = 0;  // index in `regex` just after '[' or '[^'
  for (size_t i = 0; i < regex.size(); i++) {
    const char c = regex[i];
    if (c == '\\' && i + 1 < regex.size()) {
      const char e = regex[i + 1];
      if (e == 'p' && i + 2 < regex.size() && regex[i + 2] == '{') {
        const size_t close = regex.find('}', i + 3);
        if (close == std::string_view::npos) fail("pre-tokenizer regex has an unclosed \\p{{: {}", regex);
        auto ranges = property_ranges(regex.substr(i + 3, close - i - 3), regex);
        if (!in_class) out += '[';
        append_class_members(out, ranges);
        if (!in_class) out += ']';
        i = close;
      } else if (e == 's') {
        if (!in_class) out += '[';
        append_class_members(out, unicode::whitespace_ranges());
        if (!in_class) out += ']';
        i++;
      } else if (e == 'S') {
        if (in_class) fail("pre-tokenizer regex has \\S inside [...], which stepq cannot expand: {}", regex);
        out += "[^";
        append_class_members(out, unicode::whitespace_ranges());
        out += ']';
        i++;
      } else {
        out += c;
        out += e;
        i++;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < regex.size() && regex[i + 1] == '^') out += regex[++i];
      class_start = i + 1;
      continue;
    }
    // A ']' right after '[' or '[^' is a literal member, not the end of the class.
    if (in_class && c == ']' && i != class_start) in_class = false;
    out += c;
  }
  if (in_class) fail("pre-tokenizer regex has an unclosed [: {}", regex);
  return out;
}

struct PreTokenizer::Compiled {
  std::string source;  // llama.cpp's form, for messages
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const std::vector<std::string>& regexes) {
  for (const std::string& r : regexes) {
    auto c = std::make_unique<Compiled>();
    c->source = r;
    const std::string pattern = expand_unicode_classes(r);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    // UTF: the subject is UTF-8 and classes hold code points. No UCP: every class that depends
    // on Unicode properties is explicit, so PCRE2's own Unicode tables play no part.
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF, &err, &err_off,
                            nullptr);
    if (!c->code) fail("pre-tokenizer regex does not compile in PCRE2 ({} at offset {}): {}", pcre2_message(err), err_off, r);
    // JIT is an optimisation only: without it (unsupported platform) matching falls back to
    // the interpreter with the same results.
    pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE);
    regexes_.push_back(std::move(c));
  }
}

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(pcre2_match_data_create(1, nullptr),
                                                                          &pcre2_match_data_free);
  if (!md) fail("out of memory creating PCRE2 match data");
  std::vector<std::string_view> next;
  for (const auto& re : regexes_) {
    next.clear();
    next.reserve(pieces.size() * 2);
    for (std::string_view piece : pieces) {
      // Each piece is its own subject, so lookaheads see the piece's end as the end of text.
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0;
      size_t gap_start = 0;
      while (pos < piece.size()) {
        const int rc = pcre2_match(re->code, subject, piece.size(), pos, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) fail("pre-tokenizer regex failed while matching ({}): {}", pcre2_message(rc), re->source);
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t m0 = ov[0], m1 = ov[1];
        if (m1 == m0) {
          // None of llama.cpp's regexes can match empty; if one did, step over one code point
          // and leave it in the gap, as a regex iterator would.
          pos = m0 + std::max<size_t>(1, unicode::utf8_sequence_length(piece.substr(m0)));
          continue;
        }
        if (m0 > gap_start) next.push_back(piece.substr(gap_start, m0 - gap_start));
        next.push_back(piece.substr(m0, m1 - m0));
        pos = gap_start = m1;
      }
      if (gap_start < piece.size()) next.push_back(piece.substr(gap_start));
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace stepq
