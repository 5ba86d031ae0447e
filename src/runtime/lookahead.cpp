#include "runtime/lookahead.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>

#include "base/error.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "runtime/speculative.h"
#include "runtime/step_verifier.h"
#include "tokenizer/tokenizer.h"

namespace stepq {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One drafted step: its tokens and how it ended.
struct DraftStep {
  std::vector<int32_t> tokens;
  std::string text;
  StepEnd end = StepEnd::kNone;  // kNone: cut by end of generation, the budget or the context
  bool eog = false;
};

// The draft model's side: its own cache, kept in step with the committed history, and the
// step-by-step drafting.
class StepDrafter {
 public:
  StepDrafter(Forward& fwd, const Tokenizer& tok, int ctx, const SamplerParams& sp, const StepRules& rules)
      : fwd_(fwd), tok_(tok), kv_(fwd.model().config(), ctx), sampler_(draft_params(sp), fwd.model().config().n_vocab),
        splitter_(rules) {}

  // Drafts up to `depth` steps after `history` (all tokens so far), at most `budget` tokens in all.
  // after_boundary: whether the committed text ends at a step boundary.
  void draft(std::span<const int32_t> history, int depth, int budget, bool after_boundary,
             std::vector<DraftStep>& out, LookaheadStats& stats) {
    out.clear();
    budget = std::min<int64_t>(budget, (int64_t)kv_.capacity() - (int64_t)history.size());
    if (depth <= 0 || budget <= 0) return;
    std::span<const float> logits = sync(history, stats);
    splitter_.reset(after_boundary);
    out.emplace_back();
    for (int n = 0; n < budget; n++) {
      const int32_t t = sampler_.sample(logits.data());
      sampler_.accept(t);
      DraftStep& s = out.back();
      s.tokens.push_back(t);
      const StepEnd e = splitter_.push(t, tok_.token_to_piece(t, false));
      const bool eog = tok_.is_eog(t);
      if (e != StepEnd::kNone || eog) {
        s.end = e;
        s.eog = eog;
        s.text = std::string(splitter_.text());
        if (eog || (int)out.size() == depth) break;
        out.emplace_back();
      }
      if (n + 1 == budget) break;
      SequenceInput in{&kv_, {&t, 1}, false};
      logits = fwd_.run({&in, 1});
      stats.draft_forwards++;
      seen_.push_back(t);
    }
    if (out.back().tokens.empty()) out.pop_back();
    else if (out.back().text.empty()) out.back().text = std::string(splitter_.text());
  }

 private:
  static SamplerParams draft_params(SamplerParams p) {
    p.seed ^= 0x1a5eed1a5eedull;
    return p;
  }

  // Catches the draft's cache and its sampler's penalty history up with h.
  std::span<const float> sync(std::span<const int32_t> h, LookaheadStats& stats) {
    const CacheSync r = sync_cache(fwd_, kv_, seen_, h);
    stats.draft_forwards += r.forwards;
    for (size_t i = h.size() - (size_t)r.fed; i < h.size(); i++) sampler_.accept(h[i]);
    return r.logits;
  }

  Forward& fwd_;
  const Tokenizer& tok_;
  KvCache kv_;
  Sampler sampler_;
  StepSplitter splitter_;
  std::vector<int32_t> seen_;  // the tokens in kv_
};

// The target generating its own step after one drafted prefix.
struct Branch {
  std::unique_ptr<KvCache> kv;   // null while the branch needs no forward (done at creation)
  Sampler sampler;
  StepSplitter splitter;
  std::vector<int32_t> tokens;   // t_i so far
  int32_t pending = -1;          // the last token of t_i, not yet in kv
  int limit = 0;                 // tokens t_i may have: what is left of n_predict after its prefix
  bool done = false, eog = false;
  StepEnd end = StepEnd::kNone;
  std::vector<int32_t> spec;     // this forward's n-gram drafted tokens
  Branch(const Sampler& s, const StepRules& r) : sampler(s), splitter(r) {}
};

}  // namespace

int64_t lookahead_pool_tokens(int ctx, const LookaheadOptions& lo) {
  // The sequence, plus per branch a step, its token speculation and two partly filled pages.
  const int64_t per_branch = lo.steps.max_tokens + std::max(0, lo.spec_k) + 2 * KvPool::kDefaultPageTokens;
  return (int64_t)ctx + (int64_t)(std::max(1, lo.depth) + 1) * per_branch;
}

GenerateStats lookahead_generate(Forward& target, KvCache& kv, Forward& draft, Sampler& sampler,
                                 const Tokenizer& tok, std::span<const int32_t> prompt, const GenerateOptions& opt,
                                 StepVerifier& verifier, const LookaheadOptions& lo, LookaheadStats& stats,
                                 FunctionRef<bool(int32_t)> on_token) {
  if (lo.depth < 1) fail("--depth must be at least 1, got {}", lo.depth);
  if (lo.spec_k < 0) fail("token speculation k must be >= 0, got {}", lo.spec_k);
  if (draft.model().config().n_vocab != target.model().config().n_vocab)
    fail("Lookahead Reasoning needs a draft model with the target's vocabulary ({} tokens), the draft has {}",
         target.model().config().n_vocab, draft.model().config().n_vocab);
  GenerateStats st;
  stats = LookaheadStats{};
  stats.kept_at_depth.assign(lo.depth, 0);
  stats.rounds_by_kept.assign(lo.depth + 1, 0);
  const int V = target.model().config().n_vocab;
  NgramDrafter ngram(lo.ngram_max);

  // The target's cache holds the history but its last token (`pending`), as in speculative
  // decoding: a round then feeds pending + the drafted steps in one forward.
  double t0 = now_s();
  if (prompt.empty()) fail("the prompt is empty: give at least one token of text");
  if (prompt.size() > 1) prefill(target, kv, sampler, prompt.first(prompt.size() - 1), opt.prefill_chunk);
  sampler.accept(prompt.back());
  if (kv.length() + 1 > kv.capacity()) fail("the prompt fills the whole context; raise --ctx or shorten it");
  StepDrafter drafter(draft, tok, kv.capacity(), sampler.params(), lo.steps);
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  {
    // The draft's own prefill counts as prompt processing.
    std::vector<DraftStep> none;
    drafter.draft(history, 0, 0, true, none, stats);
  }
  st.n_prompt = (int)prompt.size();
  st.prompt_seconds = now_s() - t0;

  t0 = now_s();
  std::string generated;        // the generated text so far (the verifiers' context)
  bool after_boundary = true;   // the committed text ends at a step boundary (the prompt counts)
  std::vector<DraftStep> drafts;
  std::vector<int32_t> batch, emit, spec_history;
  std::vector<float> probs;
  std::vector<std::unique_ptr<Branch>> branches;
  std::vector<SequenceInput> inputs;
  std::vector<int> live;
  bool stop = false;
  while (!stop) {
    const int budget_left = opt.n_predict >= 0 ? opt.n_predict - st.n_generated : INT32_MAX / 2;
    // Room in the context for drafted tokens after the pending one (as generate(), stop only
    // when not even the pending token fits).
    const int room = kv.capacity() - kv.length() - 1;
    if (budget_left <= 0) break;
    if (room < 0) {
      st.stopped_by_context = true;
      break;
    }

    // 1. Draft.
    double tr = now_s();
    drafter.draft(history, lo.depth, std::min(budget_left, room), after_boundary, drafts, stats);
    stats.draft_seconds += now_s() - tr;
    const int D = (int)drafts.size();

    // 2. The target reads pending + every drafted token at once.
    tr = now_s();
    const int base = kv.length();
    batch.assign(1, history.back());
    for (const DraftStep& d : drafts) batch.insert(batch.end(), d.tokens.begin(), d.tokens.end());
    SequenceInput in0{&kv, batch, true};
    std::span<const float> logits = target.run({&in0, 1});
    stats.target_forwards++;

    // Branch i (0-based, depth i+1) starts after pending + d_1..d_i's tokens: logits row `row`.
    // Depth D+1 (after every drafted step) exists when the drafts leave room and did not end
    // generation.
    // The target's step after every drafted one (depth D+1), unless the drafts ended generation
    // or used up its budget.
    const bool last_eog = D > 0 && drafts.back().eog;
    const bool last_cut = D > 0 && drafts.back().end == StepEnd::kNone;
    const int n_branches = D + ((last_eog || last_cut || (int)batch.size() - 1 >= budget_left) ? 0 : 1);
    branches.clear();
    int row = 0;
    if (sampler.params().temperature > 0) sampler.uniform();  // each round's branches draw new numbers
    for (int i = 0; i < std::max(1, n_branches); i++) {
      auto b = std::make_unique<Branch>(sampler, lo.steps);
      for (int j = 0; j < i && sampler.params().temperature > 0; j++) b->sampler.uniform();  // and apart
      // The splitter of branch i sees the same "after boundary" as drafted step i.
      b->splitter.reset(i == 0 ? after_boundary : drafts[i - 1].end == StepEnd::kBoundary);
      std::span<const int32_t> d = i < D ? std::span<const int32_t>(drafts[i].tokens) : std::span<const int32_t>();
      const VerifyResult vr = verify_drafts(b->sampler, logits.data() + (size_t)row * V, d, {}, probs);
      // A step needs no more tokens than generation has left after its prefix.
      b->limit = budget_left - row;
      // t_i so far: the agreed prefix of d_i, then the target's own token.
      for (int j = 0; j <= vr.n_accepted && !b->done; j++) {
        const int32_t t = j < vr.n_accepted ? d[j] : vr.next;
        b->tokens.push_back(t);
        const StepEnd e = b->splitter.push(t, tok.token_to_piece(t, false));
        b->eog = tok.is_eog(t);
        if (e != StepEnd::kNone || b->eog || (int)b->tokens.size() >= b->limit) {
          b->done = true;
          b->end = e;
        }
      }
      const bool identical = i < D && b->done && b->tokens.size() == d.size();
      if (identical) stats.identical_steps++;
      if (!b->done) {
        // Cache: the prefix through the agreed tokens; the last token of t_i is pending.
        b->kv = kv.fork();
        b->kv->truncate(base + 1 + row + (int)b->tokens.size() - 1);
        b->pending = b->tokens.back();
      }
      branches.push_back(std::move(b));
      if (i < D) row += (int)drafts[i].tokens.size();
    }
    stats.target_seconds += now_s() - tr;

    // 3 + 4. Advance the live branches together; decide in depth order as they finish.
    std::vector<int> decided(branches.size(), -1);  // per depth: 1 kept, 0 not kept, -1 open
    int winner = -1;  // the branch whose own step ends the round
    auto decide = [&]() {
      for (int i = 0; i < (int)branches.size(); i++) {
        Branch& b = *branches[i];
        if (!b.done) return;
        if (i >= D) {
          winner = i;  // every drafted step kept: the target's step after them
          return;
        }
        if (decided[i] < 0) {
          const DraftStep& d = drafts[i];
          const bool eligible = i == 0 ? after_boundary : drafts[i - 1].end == StepEnd::kBoundary;
          stats.drafted_steps++;
          const double tv = now_s();
          // A drafted step identical to the target's needs no verifier (eligible or not).
          const bool same = b.tokens == d.tokens;
          if (!eligible && !same) stats.ineligible_steps++;
          std::string_view t_text = b.splitter.text();
          std::string context;
          if (!same && eligible) {
            context = generated;
            for (int j = 0; j < i; j++) context += drafts[j].text;
          }
          decided[i] = (same || (eligible && verifier.accept(context, t_text, d.text))) ? 1 : 0;
          stats.verify_seconds += now_s() - tv;
        }
        if (decided[i] == 0) {
          winner = i;
          return;
        }
        if (i == (int)branches.size() - 1) {
          winner = -2;  // every drafted step kept, no step after them (end of generation or budget)
          return;
        }
      }
    };
    decide();
    while (winner == -1) {
      tr = now_s();
      live.clear();
      inputs.clear();
      for (int i = 0; i < (int)branches.size(); i++) {
        Branch& b = *branches[i];
        if (b.done) continue;
        // A branch deeper than an undecided rejection may still matter; one past a decided
        // rejection does not (decide() ended the round then).
        b.spec.clear();
        const int cap_left = b.kv->capacity() - b.kv->length() - 1;
        if (cap_left < 0) {
          b.done = true;  // out of context: the step ends here
          continue;
        }
        if (lo.spec_k > 0 && cap_left > 0) {
          spec_history.assign(history.begin(), history.end());
          for (int j = 0; j < i && j < D; j++)
            spec_history.insert(spec_history.end(), drafts[j].tokens.begin(), drafts[j].tokens.end());
          spec_history.insert(spec_history.end(), b.tokens.begin(), b.tokens.end());
          ngram.propose(spec_history, std::min(lo.spec_k, cap_left), b.spec, nullptr);
        }
        b.spec.insert(b.spec.begin(), b.pending);
        live.push_back(i);
        inputs.push_back(SequenceInput{b.kv.get(), b.spec, true});
      }
      if (live.empty()) {
        decide();
        if (winner == -1) fail("lookahead: every branch finished but no step was chosen (a bug)");
        break;
      }
      logits = target.run(inputs);
      stats.target_forwards++;
      for (size_t s = 0; s < live.size(); s++) {
        Branch& b = *branches[live[s]];
        const int before = b.kv->length() - (int)b.spec.size();  // the length before this forward
        std::span<const int32_t> sd(b.spec.data() + 1, b.spec.size() - 1);
        const VerifyResult vr =
            verify_drafts(b.sampler, logits.data() + (size_t)target.output_offset((int)s) * V, sd, {}, probs);
        stats.spec_drafted += (int)sd.size();
        stats.spec_accepted += vr.n_accepted;
        int fed = 1;  // tokens of this forward kept in the cache (pending, then the accepted)
        for (int j = 0; j <= vr.n_accepted && !b.done; j++) {
          const int32_t t = j < vr.n_accepted ? sd[j] : vr.next;
          b.tokens.push_back(t);
          stats.branch_tokens++;
          const StepEnd e = b.splitter.push(t, tok.token_to_piece(t, false));
          b.eog = tok.is_eog(t);
          if (e != StepEnd::kNone || b.eog || (int)b.tokens.size() >= b.limit) {
            b.done = true;
            b.end = e;
          }
          if (j < vr.n_accepted && !b.done) fed++;
        }
        b.kv->truncate(before + fed);
        b.pending = b.tokens.back();
      }
      stats.target_seconds += now_s() - tr;
      decide();
    }

    // Commit: the kept drafted steps, then the winner's own step.
    emit.clear();
    int kept = 0;
    for (int i = 0; i < D && (winner < 0 || i < winner); i++) {
      emit.insert(emit.end(), drafts[i].tokens.begin(), drafts[i].tokens.end());
      stats.kept_at_depth[i]++;
      kept++;
    }
    stats.kept_steps += kept;
    stats.rounds_by_kept[kept]++;
    stats.rounds++;
    StepEnd last_end;
    if (winner >= 0) {
      Branch& b = *branches[winner];
      emit.insert(emit.end(), b.tokens.begin(), b.tokens.end());
      stats.target_steps++;
      last_end = b.end;
      if (b.kv) {
        kv.swap(*b.kv);  // the winner's cache: the committed text but its last token
      } else {
        kv.truncate(base + (int)emit.size());
      }
    } else {
      last_end = drafts[D - 1].end;
      kv.truncate(base + (int)emit.size());
    }
    branches.clear();  // frees the forks' pages
    after_boundary = last_end == StepEnd::kBoundary;
    for (int32_t t : emit) {
      sampler.accept(t);
      generated += tok.token_to_piece(t, false);
      if (!emit_token(t, history, tok, opt, kv.capacity(), st, on_token)) {
        stop = true;
        break;
      }
    }
  }
  st.generate_seconds = now_s() - t0;
  return st;
}

}  // namespace stepq
