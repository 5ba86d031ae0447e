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

// The draft model's side: one cache (a ModelDrafter's), kept in step with the committed
// history, that drafts the steps and, with StepTokenSpec::kDraft, the tokens inside the target's
// steps.
class StepDrafter {
 public:
  StepDrafter(Forward& fwd, const Tokenizer& tok, int ctx, const SamplerParams& sp, const StepRules& rules)
      : tok_(tok), md_(fwd, ctx, sp), sampler_(draft_params(sp), fwd.model().config().n_vocab), splitter_(rules) {}

  // Drafts up to `depth` steps after `history` (all tokens so far), at most `budget` tokens in all.
  // after_boundary: whether the committed text ends at a step boundary.
  void draft(std::span<const int32_t> history, int depth, int budget, bool after_boundary,
             std::vector<DraftStep>& out, LookaheadStats& stats) {
    out.clear();
    budget = std::min<int64_t>(budget, md_.capacity() - (int64_t)history.size());
    if (depth <= 0 || budget <= 0) return;
    const int64_t f0 = md_.forwards();
    std::span<const float> logits = sync(history);
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
      logits = md_.feed(t);
    }
    if (out.back().tokens.empty()) out.pop_back();
    else if (out.back().text.empty()) out.back().text = std::string(splitter_.text());
    stats.draft_forwards += (int)(md_.forwards() - f0);
  }

  // Catches the cache and the sampler's penalty history up with `history`; returns the logits
  // after it. (Alone: the draft's prefill of the prompt.)
  std::span<const float> sync(std::span<const int32_t> history) {
    std::span<const float> logits = md_.sync(history);
    for (size_t i = history.size() - (size_t)md_.last_catch_up(); i < history.size(); i++) sampler_.accept(history[i]);
    return logits;
  }

  // Token speculation inside a target step: up to k tokens after `history`.
  void propose(std::span<const int32_t> history, int k, std::vector<int32_t>& out, std::vector<float>* q,
               LookaheadStats& stats) {
    const int64_t f0 = md_.forwards();
    md_.propose(history, k, out, q);
    stats.draft_forwards += (int)(md_.forwards() - f0);
  }

 private:
  static SamplerParams draft_params(SamplerParams p) {
    p.seed ^= 0x1a5eed1a5eedull;
    return p;
  }

  const Tokenizer& tok_;
  ModelDrafter md_;
  Sampler sampler_;
  StepSplitter splitter_;
};

// Drafted-text lookup's tokens per branch per forward at most.
constexpr int kBranchLookupK = 3;

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
  int start = 0;                 // where d_i starts among the drafted tokens (d_1..d_(i-1) before it)
  int diverged = 0;              // tokens of d_i the target agreed with
  std::vector<int32_t> spec;     // this forward's drafted tokens (pending first)
  std::vector<float> q;          // their draft distributions (sampling with the draft model)
  Branch(const Sampler& s, const StepRules& r) : sampler(s), splitter(r) {}
};

// Token speculation for a branch among several (StepTokenSpec::kDraft before one branch is
// left): the tokens that follow the branch's last n tokens (n = max_n down to 2) in the drafted
// text from where the branch left its drafted step on. After a differing word or two the
// target's step often goes on as the draft's did; the lookup costs no model run, and a
// one-token match is not trusted (a wrong guess makes every branch's forward wider).
void drafted_lookup(std::span<const int32_t> drafted, std::span<const int32_t> branch, int max_n, int k,
                    std::vector<int32_t>& out) {
  out.clear();
  for (int n = std::min<int>(max_n, (int)branch.size()); n >= 2 && k > 0; n--) {
    const int32_t* pat = branch.data() + branch.size() - n;
    for (size_t i = 0; i + n < drafted.size(); i++) {
      if (!std::equal(pat, pat + n, drafted.data() + i)) continue;
      const size_t from = i + n, to = std::min(drafted.size(), from + (size_t)k);
      out.assign(drafted.begin() + (ptrdiff_t)from, drafted.begin() + (ptrdiff_t)to);
      return;
    }
  }
}

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
  int depth = lo.depth;  // this round's γ
  // The draft's own prefill counts as prompt processing.
  if ((int64_t)history.size() < kv.capacity()) drafter.sync(history);
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
    drafter.draft(history, depth, std::min(budget_left, room), after_boundary, drafts, stats);
    stats.draft_seconds += now_s() - tr;
    stats.depth_sum += depth;
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
    // The target's step after every drafted one (depth D+1) exists unless the drafts ended
    // generation or used up its budget.
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
      b->start = row;
      b->diverged = vr.n_accepted;
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

    // 3 + 4. Advance the live branches together; decide in depth order, as branches finish or as
    // soon as a rejection is certain.
    std::vector<int> decided(branches.size(), -1);  // per depth: 1 kept, 0 not kept, -1 open
    int winner = -1;  // the branch whose own step ends the round; -2: none (every step kept, nothing after)
    auto decide = [&]() {
      for (int i = 0; i < (int)branches.size(); i++) {
        Branch& b = *branches[i];
        if (i >= D) {
          winner = i;  // every drafted step kept: the target's step after them
          return;
        }
        if (decided[i] < 0) {
          const DraftStep& d = drafts[i];
          const bool eligible = i == 0 ? after_boundary : drafts[i - 1].end == StepEnd::kBoundary;
          if (!b.done) {
            // Still running: a rejection may already be certain. The target's step left the
            // drafted one (it holds a token the draft did not write there), and either the
            // drafted step may not be judged, or the verifier rules every completion out.
            const bool left = b.tokens.size() > d.tokens.size() ||
                              !std::equal(b.tokens.begin(), b.tokens.end(), d.tokens.begin());
            if (!left || (eligible && verifier.may_accept(b.splitter.text(), d.text))) return;
            decided[i] = 0;
            stats.drafted_steps++;
            stats.early_rejections++;
            if (!eligible) stats.ineligible_steps++;
          } else {
            stats.drafted_steps++;
            const double tv = now_s();
            // A drafted step identical to the target's needs no verifier (eligible or not).
            const bool same = b.tokens == d.tokens;
            if (same) stats.identical_steps++;  // counted as decided: depths past a rejection never are
            if (!eligible && !same) stats.ineligible_steps++;
            std::string context;
            if (!same && eligible) {
              context = generated;
              for (int j = 0; j < i; j++) context += drafts[j].text;
            }
            decided[i] = (same || (eligible && verifier.accept(context, b.splitter.text(), d.text))) ? 1 : 0;
            stats.verify_seconds += now_s() - tv;
          }
        }
        if (decided[i] == 0) {
          winner = i;
          return;
        }
        if (i == (int)branches.size() - 1) {
          winner = -2;
          return;
        }
      }
    };
    // Branch i's text so far: the history, d_1..d_(i-1), then t_i so far.
    auto branch_history = [&](int i, std::vector<int32_t>& h) {
      const Branch& b = *branches[i];
      h.assign(history.begin(), history.end());
      h.insert(h.end(), batch.begin() + 1, batch.begin() + 1 + b.start);
      h.insert(h.end(), b.tokens.begin(), b.tokens.end());
    };
    decide();
    while (winner != -2 && !(winner >= 0 && branches[winner]->done)) {
      live.clear();
      inputs.clear();
      for (int i = 0; i < (int)branches.size(); i++) {
        Branch& b = *branches[i];
        // Once the round's last step is known only it runs; before, every unfinished branch.
        if (b.done || (winner >= 0 && i != winner)) continue;
        b.spec.clear();
        b.q.clear();
        const int cap_left = b.kv->capacity() - b.kv->length() - 1;
        if (cap_left < 0) {
          b.done = true;  // out of context: the step ends here
          continue;
        }
        live.push_back(i);
      }
      if (live.empty()) {
        decide();
        if (winner == -1 || (winner >= 0 && !branches[winner]->done))
          fail("lookahead: every branch finished but no step was chosen (a bug)");
        break;
      }
      for (int i : live) {
        Branch& b = *branches[i];
        const int cap_left = b.kv->capacity() - b.kv->length() - 1;
        const int k = std::min({lo.spec_k, cap_left, b.limit - (int)b.tokens.size() - 1});
        if (k > 0 && lo.token_spec == StepTokenSpec::kNgram) {
          branch_history(i, spec_history);
          ngram.propose(spec_history, k, b.spec, nullptr);
        } else if (k > 0 && lo.token_spec == StepTokenSpec::kDraft && live.size() == 1) {
          branch_history(i, spec_history);
          const double td = now_s();
          drafter.propose(spec_history, k, b.spec, sampler.params().temperature > 0 ? &b.q : nullptr, stats);
          stats.draft_seconds += now_s() - td;
        } else if (k > 0 && lo.token_spec == StepTokenSpec::kDraft) {
          // Several branches: the drafted text after the point where this one left it.
          const int from = std::min<int>(b.start + b.diverged, (int)batch.size() - 1);
          drafted_lookup(std::span<const int32_t>(batch).subspan(1 + from), b.tokens, std::max(2, lo.ngram_max + 1),
                         std::min(k, kBranchLookupK), b.spec);
        }
        b.spec.insert(b.spec.begin(), b.pending);
        inputs.push_back(SequenceInput{b.kv.get(), b.spec, true});
      }
      const double tt = now_s();
      logits = target.run(inputs);
      stats.target_forwards++;
      for (size_t s = 0; s < live.size(); s++) {
        Branch& b = *branches[live[s]];
        const int before = b.kv->length() - (int)b.spec.size();  // the length before this forward
        std::span<const int32_t> sd(b.spec.data() + 1, b.spec.size() - 1);
        const VerifyResult vr =
            verify_drafts(b.sampler, logits.data() + (size_t)target.output_offset((int)s) * V, sd, b.q, probs);
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
      stats.target_seconds += now_s() - tt;
      if (winner == -1) decide();
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
    if (lo.adaptive_depth) {
      if (kept < D) depth = kept + 1;
      else if (D == depth) depth = std::min(lo.depth, depth + 1);
    }
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
