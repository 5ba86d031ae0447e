#include "runtime/lookahead.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "base/clock.h"
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

// One drafted step: its tokens and how it ended.
struct DraftStep {
  std::vector<int32_t> tokens;
  std::string text;
  StepEnd end = StepEnd::kNone;  // kNone: cut by end of generation, the budget or the context
  bool eog = false;
};

// A drafted step in a round's tree: the step after its parent's path (-1: the committed text).
struct DraftNode {
  DraftStep step;
  int parent = -1;
  int depth = 1;      // 1-based
  int path_len = 0;   // drafted tokens from the committed text through this step
  int chain = -1;     // the chain the target reads it in
  int offset = 0;     // where its tokens start in that chain's tokens
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

  // Drafts a tree (width > 1) after `history`: `width` alternatives of every step, down to `depth`,
  // at most `budget` tokens along any path; nodes in depth-first order, a node's children in
  // alternative order. Alternative j's first token is the sampler's choice among the tokens that
  // alternatives 0..j-1 did not start with; the rest of a step is drafted as usual.
  void draft_tree(std::span<const int32_t> history, int depth, int width, int budget, bool after_boundary,
                  std::vector<DraftNode>& out, LookaheadStats& stats) {
    out.clear();
    budget = std::min<int64_t>(budget, md_.capacity() - (int64_t)history.size());
    if (depth <= 0 || budget <= 0) return;
    const int64_t f0 = md_.forwards();
    prefix_.assign(history.begin(), history.end());
    grow(-1, 0, after_boundary, 1, depth, width, budget, out);
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

  // The children of `parent` (whose path is prefix_), then each one's subtree.
  void grow(int parent, int path_len, bool after_boundary, int level, int depth, int width, int budget,
            std::vector<DraftNode>& out) {
    std::vector<int32_t> firsts;
    for (int j = 0; j < width && path_len < budget; j++) {
      std::span<const float> l = md_.sync(prefix_);
      masked_.assign(l.begin(), l.end());
      for (int32_t f : firsts) masked_[(size_t)f] = -INFINITY;
      DraftNode node;
      node.parent = parent;
      node.depth = level;
      splitter_.reset(after_boundary);
      const float* logits = masked_.data();
      for (int n = path_len; n < budget; n++) {
        const int32_t t = sampler_.sample(logits);
        node.step.tokens.push_back(t);
        const StepEnd e = splitter_.push(t, tok_.token_to_piece(t, false));
        const bool eog = tok_.is_eog(t);
        if (e != StepEnd::kNone || eog) {
          node.step.end = e;
          node.step.eog = eog;
          break;
        }
        if (n + 1 == budget) break;
        logits = md_.feed(t).data();
      }
      node.step.text = std::string(splitter_.text());
      node.path_len = path_len + (int)node.step.tokens.size();
      firsts.push_back(node.step.tokens[0]);
      const bool more = level < depth && node.step.end != StepEnd::kNone && !node.step.eog;
      const bool boundary = node.step.end == StepEnd::kBoundary;
      const size_t n_tokens = node.step.tokens.size();
      prefix_.insert(prefix_.end(), node.step.tokens.begin(), node.step.tokens.end());
      out.push_back(std::move(node));
      if (more) grow((int)out.size() - 1, out.back().path_len, boundary, level + 1, depth, width, budget, out);
      prefix_.resize(prefix_.size() - n_tokens);
      if (firsts.size() == masked_.size()) break;
    }
  }

  const Tokenizer& tok_;
  ModelDrafter md_;
  Sampler sampler_;
  StepSplitter splitter_;
  std::vector<int32_t> prefix_;  // draft_tree: the path being grown
  std::vector<float> masked_;    // draft_tree: logits with the siblings' first tokens ruled out
};

// Drafted steps the target reads in one sequence: a step, then its first alternative below it, and
// so on, after a lead token (the last token before the first step) that gives the logits there.
struct Chain {
  std::vector<int32_t> tokens;    // the lead, then the steps' tokens
  KvCache* kv = nullptr;          // the sequence's own cache (the primary chain) or own
  std::unique_ptr<KvCache> own;   // a fork where the lead goes
  int start = 0;                  // the cache's length before the lead
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
  int pos = -1;                  // the drafted step it follows (-1: the committed text)
  int chain = 0, row = 0;        // its first logits: row `row` of that chain's forward
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

int64_t lookahead_tree_steps(const LookaheadOptions& lo) {
  int64_t n = 0, level = 1;
  for (int d = 0; d < std::max(1, lo.depth); d++) {
    level = std::min<int64_t>(level * std::max(1, lo.width), INT32_MAX);
    n = std::min<int64_t>(n + level, INT32_MAX);
  }
  return n;
}

int64_t lookahead_pool_tokens(int ctx, const LookaheadOptions& lo) {
  // The sequence, plus per branch a step, its token speculation and two partly filled pages.
  const int64_t per_branch = lo.steps.max_tokens + std::max(0, lo.spec_k) + 2 * KvPool::kDefaultPageTokens;
  if (lo.width <= 1) return (int64_t)ctx + (int64_t)(std::max(1, lo.depth) + 1) * per_branch;
  // A tree: a branch per drafted step and one after the committed text, and every drafted step
  // read in a chain of its own cache (at most a step and two partly filled pages each).
  const int64_t steps = std::min<int64_t>(lookahead_tree_steps(lo), kMaxTreeSteps);
  return (int64_t)ctx + (steps + 1) * per_branch + steps * (lo.steps.max_tokens + 2 * KvPool::kDefaultPageTokens);
}

GenerateStats lookahead_generate(Forward& target, KvCache& kv, Forward& draft, Sampler& sampler,
                                 const Tokenizer& tok, std::span<const int32_t> prompt, const GenerateOptions& opt,
                                 StepVerifier& verifier, const LookaheadOptions& lo, LookaheadStats& stats,
                                 FunctionRef<bool(int32_t)> on_token) {
  if (lo.depth < 1) fail("--depth must be at least 1, got {}", lo.depth);
  if (lo.width < 1) fail("--width must be at least 1, got {}", lo.width);
  if (lookahead_tree_steps(lo) > kMaxTreeSteps)
    fail("--width {} with --depth {} drafts {} steps a round, more than {}: lower --width or --depth", lo.width,
         lo.depth, lookahead_tree_steps(lo), kMaxTreeSteps);
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
  std::vector<DraftNode> nodes;
  std::vector<std::vector<int>> kids;
  std::vector<Chain> chains;
  std::vector<int> branch_at, decided, scratch_path;
  std::vector<int32_t> emit, spec_history;
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

    // 1. Draft: a chain of steps (width 1) or a tree.
    double tr = now_s();
    if (lo.width == 1) {
      drafter.draft(history, depth, std::min(budget_left, room), after_boundary, drafts, stats);
      nodes.clear();
      int path_len = 0;
      for (size_t i = 0; i < drafts.size(); i++) {
        DraftNode& n = nodes.emplace_back();
        n.step = std::move(drafts[i]);
        n.parent = (int)i - 1;
        n.depth = (int)i + 1;
        path_len += (int)n.step.tokens.size();
        n.path_len = path_len;
      }
    } else {
      drafter.draft_tree(history, depth, lo.width, std::min(budget_left, room), after_boundary, nodes, stats);
    }
    stats.draft_seconds += now_s() - tr;
    stats.depth_sum += depth;
    const int N = (int)nodes.size();
    int D = 0;  // the deepest drafted step
    for (auto& k : kids) k.clear();
    kids.resize((size_t)N + 1);  // kids[p + 1]: the drafted steps after p's path, in alternative order
    for (int i = 0; i < N; i++) {
      kids[(size_t)nodes[i].parent + 1].push_back(i);
      D = std::max(D, nodes[i].depth);
    }
    auto path = [&](int pos, std::vector<int>& out) {  // the drafted steps from the committed text to pos
      out.clear();
      for (int p = pos; p >= 0; p = nodes[p].parent) out.push_back(p);
      std::reverse(out.begin(), out.end());
    };

    // 2. The target reads every drafted token. A chain is a drafted step and its first
    // alternatives below it, read after a lead token (the pending one, or the last token of the
    // step before the chain's first) in a cache forked where that lead goes. The chain from the
    // committed text is read in the sequence's own cache. Chains that start at one depth are read
    // in one batched forward, after the chains they start from.
    tr = now_s();
    const int base = kv.length();
    chains.clear();
    auto add_chain = [&](int first) {  // first: a drafted step, or -1 for the primary chain
      Chain& c = chains.emplace_back();
      const int parent = first < 0 ? -1 : nodes[first].parent;
      if (parent < 0) {  // after the committed text: the pending token leads
        if (first < 0) {
          c.kv = &kv;
        } else {
          c.own = kv.fork();
          c.kv = c.own.get();
        }
        c.start = base;
        c.tokens.assign(1, history.back());
      } else {  // after drafted step p: fork p's chain where p's last token goes, and read it again
        const DraftNode& p = nodes[parent];
        const Chain& pc = chains[(size_t)p.chain];
        const int last = p.offset + (int)p.step.tokens.size() - 1;
        c.own = pc.kv->fork();
        c.kv = c.own.get();
        c.start = pc.start + last;
        c.kv->truncate(c.start);
        c.tokens.assign(1, pc.tokens[(size_t)last]);
      }
      const int ci = (int)chains.size() - 1;
      int n = first >= 0 ? first : kids[0].empty() ? -1 : kids[0][0];
      while (n >= 0) {
        nodes[n].chain = ci;
        nodes[n].offset = (int)c.tokens.size();
        c.tokens.insert(c.tokens.end(), nodes[n].step.tokens.begin(), nodes[n].step.tokens.end());
        n = kids[(size_t)n + 1].empty() ? -1 : kids[(size_t)n + 1][0];
      }
    };
    branches.clear();
    branch_at.assign((size_t)N + 1, -1);  // branch_at[p + 1]: the branch after p's path
    if (sampler.params().temperature > 0) sampler.uniform();  // each round's branches draw new numbers
    // Wave k reads the chains whose first step is at depth k + 1 (wave 0 also the primary one).
    for (int wave = 0, read = 0; wave == 0 || wave < D; wave++) {
      if (wave == 0) add_chain(-1);
      for (int i = 0; i < N; i++)
        if (nodes[i].depth == wave + 1 && kids[(size_t)nodes[i].parent + 1][0] != i) add_chain(i);
      const int first_chain = read;
      inputs.clear();
      for (int c = read; c < (int)chains.size(); c++) inputs.push_back(SequenceInput{chains[c].kv, chains[c].tokens, true});
      read = (int)chains.size();
      if (inputs.empty()) continue;
      std::span<const float> logits = target.run(inputs);
      stats.target_forwards++;
      // A branch after the committed text and after every drafted step of these chains, unless
      // that step ended generation, was cut short or used up its budget.
      for (int c = first_chain; c < read; c++) {
        const Chain& ch = chains[(size_t)c];
        const float* rows = logits.data() + (size_t)target.output_offset(c - first_chain) * V;
        auto add_branch = [&](int pos, int row) {
          auto b = std::make_unique<Branch>(sampler, lo.steps);
          for (size_t j = 0; j < branches.size() && sampler.params().temperature > 0; j++) b->sampler.uniform();
          b->splitter.reset(pos < 0 ? after_boundary : nodes[pos].step.end == StepEnd::kBoundary);
          const std::vector<int>& next = kids[(size_t)pos + 1];
          std::span<const int32_t> d = next.empty() ? std::span<const int32_t>() : nodes[next[0]].step.tokens;
          const VerifyResult vr = verify_drafts(b->sampler, rows + (size_t)row * V, d, {}, probs);
          const int path_len = pos < 0 ? 0 : nodes[pos].path_len;
          b->limit = budget_left - path_len;  // a step needs no more tokens than generation has left
          b->pos = pos;
          b->chain = c;
          b->row = row;
          b->diverged = vr.n_accepted;
          // t so far: the agreed prefix of the first alternative, then the target's own token.
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
            // Cache: the path through the agreed tokens; the last token of t is pending.
            b->kv = ch.kv->fork();
            b->kv->truncate(ch.start + row + (int)b->tokens.size());
            b->pending = b->tokens.back();
          }
          branch_at[(size_t)pos + 1] = (int)branches.size();
          branches.push_back(std::move(b));
        };
        if (c == 0) add_branch(-1, 0);
        for (int n = 0; n < N; n++) {
          const DraftNode& dn = nodes[n];
          if (dn.chain != c || dn.step.eog || dn.step.end == StepEnd::kNone || dn.path_len >= budget_left) continue;
          add_branch(n, dn.offset + (int)dn.step.tokens.size() - 1);
        }
      }
    }
    stats.target_seconds += now_s() - tr;

    // 3 + 4. Advance the live branches together; walk down from the committed text, deciding each
    // depth's alternatives in order as the branch above them finishes (or as soon as a rejection
    // is certain), following the first one kept.
    decided.assign((size_t)N, -1);  // per drafted step: 1 kept, 0 not kept, -1 open
    int winner = -1;  // the branch whose own step ends the round; -2: none (every step kept, nothing after)
    int final_pos = -1;  // the last kept drafted step (-1: none)
    auto decide = [&]() {
      int pos = -1;
      for (;;) {
        const std::vector<int>& next = kids[(size_t)pos + 1];
        const int bi = branch_at[(size_t)pos + 1];
        if (next.empty()) {  // every drafted step on the path kept: the target's step after them
          final_pos = pos;
          winner = bi >= 0 ? bi : -2;
          return;
        }
        if (bi < 0) fail("lookahead: a drafted step has no target branch before it (a bug)");
        Branch& b = *branches[(size_t)bi];
        const bool eligible = pos < 0 ? after_boundary : nodes[pos].step.end == StepEnd::kBoundary;
        int follow = -1;
        for (int i : next) {
          if (decided[i] < 0) {
            const DraftStep& d = nodes[i].step;
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
              if (same) stats.identical_steps++;  // counted as decided: steps past a rejection never are
              if (!eligible && !same) stats.ineligible_steps++;
              std::string context;
              if (!same && eligible) {
                context = generated;
                path(pos, scratch_path);
                for (int j : scratch_path) context += nodes[j].step.text;
              }
              decided[i] = (same || (eligible && verifier.accept(context, b.splitter.text(), d.text))) ? 1 : 0;
              stats.verify_seconds += now_s() - tv;
            }
          }
          if (decided[i] == 1) {
            follow = i;
            break;
          }
        }
        if (follow < 0) {  // every alternative rejected: the target's own step here ends the round
          final_pos = pos;
          winner = bi;
          return;
        }
        pos = follow;
      }
    };
    // Whether the round can still end at or below drafted step pos: no step on its path was
    // rejected or lost to an earlier alternative that was kept.
    auto reachable = [&](int pos) {
      for (int p = pos; p >= 0; p = nodes[p].parent) {
        if (decided[p] == 0) return false;
        for (int s : kids[(size_t)nodes[p].parent + 1]) {
          if (s == p) break;
          if (decided[s] == 1) return false;
        }
      }
      return true;
    };
    // Branch i's text so far: the history, its path, then its step so far.
    auto branch_history = [&](int i, std::vector<int32_t>& h) {
      const Branch& b = *branches[i];
      h.assign(history.begin(), history.end());
      path(b.pos, scratch_path);
      for (int j : scratch_path) h.insert(h.end(), nodes[j].step.tokens.begin(), nodes[j].step.tokens.end());
      h.insert(h.end(), b.tokens.begin(), b.tokens.end());
    };
    decide();
    while (winner != -2 && !(winner >= 0 && branches[winner]->done)) {
      live.clear();
      inputs.clear();
      for (int i = 0; i < (int)branches.size(); i++) {
        Branch& b = *branches[i];
        // Once the round's last step is known only it runs; before, every unfinished branch
        // the round can still end in.
        if (b.done || (winner >= 0 && i != winner) || (winner < 0 && !reachable(b.pos))) continue;
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
          const std::vector<int32_t>& ct = chains[(size_t)b.chain].tokens;
          const size_t from = std::min(ct.size(), (size_t)(1 + b.row + b.diverged));
          drafted_lookup(std::span<const int32_t>(ct).subspan(from), b.tokens, std::max(2, lo.ngram_max + 1),
                         std::min(k, kBranchLookupK), b.spec);
        }
        b.spec.insert(b.spec.begin(), b.pending);
        inputs.push_back(SequenceInput{b.kv.get(), b.spec, true});
      }
      const double tt = now_s();
      std::span<const float> logits = target.run(inputs);
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
    path(final_pos, scratch_path);
    const int kept = (int)scratch_path.size();
    for (int i : scratch_path) {
      emit.insert(emit.end(), nodes[i].step.tokens.begin(), nodes[i].step.tokens.end());
      stats.kept_at_depth[(size_t)nodes[i].depth - 1]++;
      if (kids[(size_t)nodes[i].parent + 1][0] != i) stats.kept_alternatives++;
    }
    stats.kept_steps += kept;
    if (lo.adaptive_depth) {
      if (kept < D) depth = kept + 1;
      else if (D == depth) depth = std::min(lo.depth, depth + 1);
    }
    stats.rounds_by_kept[kept]++;
    stats.rounds++;
    // The cache that holds the kept text: the winner's, or the chain that read its last token.
    auto take_chain_cache = [&](int chain) {
      Chain& c = chains[(size_t)chain];
      if (c.kv != &kv) kv.swap(*c.kv);
      kv.truncate(base + (int)emit.size());
    };
    StepEnd last_end;
    if (winner >= 0) {
      Branch& b = *branches[winner];
      emit.insert(emit.end(), b.tokens.begin(), b.tokens.end());
      stats.target_steps++;
      last_end = b.end;
      if (b.kv) {
        kv.swap(*b.kv);  // the winner's cache: the committed text but its last token
      } else {
        take_chain_cache(b.chain);
      }
    } else {
      last_end = nodes[final_pos].step.end;
      take_chain_cache(nodes[final_pos].chain);
    }
    branches.clear();  // frees the forks' pages
    chains.clear();
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
