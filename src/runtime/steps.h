// Reasoning steps for Lookahead Reasoning (../shared/DESIGN.md §5): generated text is cut into
// steps, each ending at a boundary string ("\n\n") or after a token cap (100), whichever comes
// first. Steps are whole tokens: the text is matched byte by byte over the tokens' pieces, so a
// boundary may be split across tokens (".\n" then "\n") or a multi-byte character across byte
// tokens, and a step ends at the token that holds the boundary's last byte. Bytes of that token
// after the boundary (a piece "\n\nThe") stay in the step that ends there: a token cannot be cut,
// and the next step then starts after it. End of generation is the caller's business.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace stepq {

class Tokenizer;

struct StepRules {
  std::string boundary = "\n\n";  // bytes that end a step (not empty)
  int max_tokens = 100;           // a step without a boundary ends after this many tokens (>= 1)
};

enum class StepEnd {
  kNone,      // the step goes on
  kBoundary,  // this token holds the boundary's last byte (wins over the cap at the same token)
  kTokenCap,  // the step reached max_tokens tokens without a boundary
};

// Cuts a stream of generated tokens into steps, one token at a time. After push() reports an
// end, tokens() and text() hold the step that just ended until the next push(), which starts
// the next step. Buffers keep their capacity across steps: no allocation per token once warm.
class StepSplitter {
 public:
  // Throws Error on an empty boundary or max_tokens < 1.
  explicit StepSplitter(StepRules rules = {});

  // Feeds one token: its id and its piece (the bytes it decodes to; may be part of a UTF-8
  // character). Returns how the current step ended with this token, or kNone.
  StepEnd push(int32_t id, std::string_view piece);

  std::span<const int32_t> tokens() const { return tokens_; }  // the current step's tokens
  std::string_view text() const { return text_; }              // their pieces, concatenated
  // Whether the text before the current step ended at a step boundary: the previous step ended
  // by kBoundary (or, for the first step, what reset() was told). Lookahead Reasoning judges a
  // drafted step only when this holds; a step that starts after a token-capped one starts in the
  // middle of a thought. (The reference tests that the text ends with "\n\n"; the two differ only
  // when the boundary's token carries text past it; the byte-level BPE pre-tokenizers of Qwen2.5
  // and SmolLM2 cut newlines off the letters after them, so that can only be whitespace, e.g.
  // SmolLM2's "\n\n " before an indented line.)
  bool after_boundary() const { return after_boundary_; }
  // How the previous step ended (kNone for the first step after reset()).
  StepEnd previous_end() const { return previous_end_; }
  // True between a push() that ended a step and the next push().
  bool ended() const { return end_ != StepEnd::kNone; }

  // Starts over with an empty step. `after_boundary`: whether the text before it (the prompt, or
  // the accepted text the caller continues from) counts as ending at a boundary.
  void reset(bool after_boundary = true);

  const StepRules& rules() const { return rules_; }

 private:
  StepRules rules_;
  std::vector<int32_t> tokens_;
  std::string text_;
  StepEnd end_ = StepEnd::kNone;           // how the step in tokens_ ended, kNone while open
  StepEnd previous_end_ = StepEnd::kNone;  // how the step before it ended
  bool after_boundary_ = true;
};

// One step of an already generated sequence.
struct Step {
  int begin = 0, end = 0;           // token range [begin, end) in the sequence
  std::string text;                 // the tokens' pieces, concatenated
  StepEnd ended = StepEnd::kNone;   // kNone: the sequence ran out inside this step (last step only)
  bool after_boundary = true;       // whether the text before it ended at a boundary
};

// Splits `ids` into steps with the same rules as StepSplitter fed token_to_piece(id, special)
// for every id; the first step counts as after a boundary. Every token is in exactly one step.
std::vector<Step> split_steps(const Tokenizer& tok, std::span<const int32_t> ids, const StepRules& rules = {},
                              bool special = false);

}  // namespace stepq
