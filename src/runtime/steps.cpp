#include "runtime/steps.h"

#include "base/error.h"
#include "tokenizer/tokenizer.h"

namespace stepq {

StepSplitter::StepSplitter(StepRules rules) : rules_(std::move(rules)) {
  if (rules_.boundary.empty()) fail("step rules: the step boundary is empty; give the text that ends a step");
  if (rules_.max_tokens < 1) fail("step rules: max_tokens is {}; a step needs at least 1 token", rules_.max_tokens);
  tokens_.reserve((size_t)rules_.max_tokens);
  text_.reserve((size_t)rules_.max_tokens * 8);
}

void StepSplitter::reset(bool after_boundary) {
  tokens_.clear();
  text_.clear();
  end_ = StepEnd::kNone;
  previous_end_ = StepEnd::kNone;
  after_boundary_ = after_boundary;
}

StepEnd StepSplitter::push(int32_t id, std::string_view piece) {
  if (end_ != StepEnd::kNone) {
    previous_end_ = end_;
    after_boundary_ = end_ == StepEnd::kBoundary;
    tokens_.clear();
    text_.clear();
    end_ = StepEnd::kNone;
  }
  const size_t old = text_.size();
  tokens_.push_back(id);
  text_.append(piece);
  // The text before this piece holds no boundary (the step would have ended), so a new one must
  // end inside the piece: search from boundary.size() - 1 bytes before it.
  const size_t b = rules_.boundary.size();
  const size_t from = old >= b - 1 ? old - (b - 1) : 0;
  if (std::string_view(text_).find(rules_.boundary, from) != std::string_view::npos)
    end_ = StepEnd::kBoundary;
  else if ((int)tokens_.size() >= rules_.max_tokens)
    end_ = StepEnd::kTokenCap;
  return end_;
}

std::vector<Step> split_steps(const Tokenizer& tok, std::span<const int32_t> ids, const StepRules& rules,
                              bool special) {
  std::vector<Step> steps;
  StepSplitter s(rules);
  int begin = 0;
  for (int i = 0; i < (int)ids.size(); i++) {
    const StepEnd e = s.push(ids[i], tok.token_to_piece(ids[i], special));
    if (e == StepEnd::kNone && i + 1 < (int)ids.size()) continue;
    steps.push_back({begin, i + 1, std::string(s.text()), e, s.after_boundary()});
    begin = i + 1;
  }
  return steps;
}

}  // namespace stepq
