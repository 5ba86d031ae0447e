// Lookahead Reasoning (arXiv 2506.19830; ../shared/DESIGN.md §5): step-level speculative
// decoding, with token-level speculation inside every target step.
//
// A round, from committed text C (the target's cache holds C but its last token, "pending"); as
// written for width 1 (with width w > 1 the drafted steps form a tree, below):
//  1. The draft model writes the next `depth` steps d1..dγ, one token per draft forward.
//  2. The target reads pending + d1..dγ in ONE forward (a prefill, all logits kept). Its logits
//     after C + d1..d(i−1) + (a prefix of d_i) are exactly what it would compute generating its
//     own step t_i there (the forward is batch invariant), so t_i starts as the longest prefix of
//     d_i the target agrees with, token by token (speculative decoding's rule, exact for
//     sampling too). A d_i the target agrees with to its end IS t_i: that branch is done.
//  3. Every other branch i (a fork of the cache at its prefix: shared pages, no copies) goes on
//     generating t_i; all live branches advance together, one batched forward per token
//     (plus, with token speculation, n-gram drafted tokens for each branch in the same forward).
//  4. In depth order, as branches finish: d_i is kept when it is eligible (the text before it
//     ended at a step boundary) and the verifier accepts it against t_i; at the first d_i that
//     is not kept, t_i takes its place and the round ends. A rejection is decided as soon as it
//     is certain (an ineligible step the target left, or a verifier whose may_accept() rules the
//     target's partial step out): the deeper branches stop there and t_i finishes alone. If every d_i is kept, the round ends
//     with the target's own next step t_(γ+1). Branches that can no longer matter stop at once.
// Width w > 1: the tree is read as chains (a drafted step and its first alternatives below it),
// one batched forward per depth at which chains start; a branch follows every drafted step; the
// round walks down from C taking at each depth the first alternative the verifier keeps against
// the target's step there, and branches below rejected steps stop.
// Every round thus ends with one step the target generated itself, so with an always-reject
// verifier the output is the target's plain greedy output, and with a draft equal to the target
// every step is kept and the output is again plain greedy: both are tested.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "base/function_ref.h"
#include "runtime/generate.h"
#include "runtime/steps.h"

namespace stepq {

class Forward;
class KvCache;
class Sampler;
class StepVerifier;
class Tokenizer;

// Token speculation inside the target's steps.
//   kNgram: every live branch carries n-gram drafted tokens in the batched forward.
//   kDraft: the draft model drafts tokens for a branch once it is the only one still running
//           (the usual case after a rejection); its cache is the one that drafts the steps, so
//           the next round's step drafting finds the target's step already fed.
enum class StepTokenSpec { kNone, kNgram, kDraft };

struct LookaheadOptions {
  StepRules steps;
  int depth = 4;               // γ: steps the draft runs ahead each round (at most, when adaptive)
  // w: drafted alternatives per step. w > 1 drafts a tree: every drafted step (and the committed
  // text) gets w alternative next steps, which differ in their first token (alternative j takes
  // the draft's choice among the tokens alternatives 0..j−1 did not start with: its j-th best
  // token when greedy), up to depth γ: w + w² + … + w^γ drafted steps, a target branch after each.
  // At each depth the first alternative the verifier keeps is followed.
  int width = 1;
  // Adapt γ each round, as speculative decoding adapts k: after a round that kept every drafted
  // step, one more (up to depth); otherwise the kept count plus one. On a CPU, where drafting and
  // the target's reading of drafted tokens are not free, deep drafts that are rejected early
  // cost more than they save.
  bool adaptive_depth = true;
  StepTokenSpec token_spec = StepTokenSpec::kNone;
  int spec_k = 6;     // drafted tokens per branch per forward at most (token_spec != kNone)
  int ngram_max = 2;  // n-gram lookup's longest match
};

struct LookaheadStats {
  int rounds = 0;
  int target_forwards = 0, draft_forwards = 0;
  int drafted_steps = 0, kept_steps = 0;  // drafted steps offered to the verifier / kept
  int target_steps = 0;                   // steps the target wrote itself (one per round at most)
  int identical_steps = 0;                // drafted steps the target reproduced token for token
  int kept_alternatives = 0;              // kept drafted steps that were not their depth's first (width > 1)
  int ineligible_steps = 0;               // differing drafted steps after a capped step (not judged)
  int early_rejections = 0;               // rejections decided before the target's step ended
  int64_t depth_sum = 0;                  // γ summed over rounds (adaptive depth)
  std::vector<int> kept_at_depth;         // [i]: rounds that kept drafted step i+1
  std::vector<int> rounds_by_kept;        // [n]: rounds that kept n drafted steps
  int branch_tokens = 0;                  // tokens the target generated in branches (kept or not)
  int spec_drafted = 0, spec_accepted = 0;  // token speculation inside branches
  double draft_seconds = 0, target_seconds = 0, verify_seconds = 0;
};

// generate() with Lookahead Reasoning: same arguments and stopping rules, plus the draft model's
// forward (same vocabulary as the target) and the verifier. `kv`'s pool must have room for
// depth + 1 forks of up to a step each (about (depth + 1)·(max_tokens + spec_k) tokens beyond the
// sequence). on_token is called for every emitted token in order.
GenerateStats lookahead_generate(Forward& target, KvCache& kv, Forward& draft, Sampler& sampler,
                                 const Tokenizer& tok, std::span<const int32_t> prompt, const GenerateOptions& opt,
                                 StepVerifier& verifier, const LookaheadOptions& lo, LookaheadStats& stats,
                                 FunctionRef<bool(int32_t)> on_token);

// Drafted steps a round holds at most: w + w² + … + w^γ (saturating at INT32_MAX). lookahead_generate
// refuses options above kMaxTreeSteps: every drafted step gets a target branch in one batch.
int64_t lookahead_tree_steps(const LookaheadOptions& lo);
inline constexpr int kMaxTreeSteps = 64;

// Tokens of KV pool the target needs for a lookahead run with context `ctx` (for sizing KvPool).
int64_t lookahead_pool_tokens(int ctx, const LookaheadOptions& lo);

}  // namespace stepq
