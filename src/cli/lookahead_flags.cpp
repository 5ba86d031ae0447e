#include "cli/lookahead_flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "model/model.h"
#include "runtime/step_verifier.h"

namespace stepq::cli {

namespace {

// "\n" and "\t" written in a flag as two characters each mean a newline and a tab.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'n' || s[i + 1] == 't' || s[i + 1] == '\\')) {
      out += s[i + 1] == 'n' ? '\n' : s[i + 1] == 't' ? '\t' : '\\';
      i++;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

void add_verifier_flags(CLI::App* app, VerifierFlags& f, const std::string& judge_help) {
  app->add_option("--verifier", f.verifier, "exact (normalized text), embed (MiniLM cosine) or judge (an LLM)")
      ->capture_default_str()
      ->check(CLI::IsMember({"exact", "embed", "judge"}));
  app->add_option("--judge", f.judge, judge_help)->check(CLI::ExistingFile);
  app->add_option("--embed-model", f.embed_model,
                  "BERT folder for --verifier embed (default: all-MiniLM-L6-v2 in ~/.cache/stepq/models)");
  app->add_option("--embed-threshold", f.embed_threshold, "Cosine similarity at which --verifier embed keeps a step")
      ->capture_default_str()
      ->check(CLI::Range(-1.0, 1.0));
  app->add_flag("--numbers-check,!--no-numbers-check", f.numbers_check,
                "embed and judge keep a drafted step only when it holds the same numbers as the target's step "
                "(default on: neither MiniLM's cosine nor a small judge sees arithmetic)");
}

StepVerifierOptions verifier_options(const VerifierFlags& f) {
  StepVerifierOptions vo;
  vo.embed_model = f.embed_model.empty() ? default_embed_model() : f.embed_model;
  vo.embed_threshold = f.embed_threshold;
  vo.numbers_check = f.numbers_check;
  return vo;
}

void add_lookahead_flags(CLI::Option_group* l, LookaheadFlags& f) {
  l->add_option("--depth", f.depth, "Steps the draft runs ahead per round (at most, unless --fixed-depth)")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  l->add_flag("--fixed-depth", f.fixed_depth,
              "Always draft --depth steps (default: after a rejection at depth i draft i steps next, after a "
              "round that kept every step one more)");
  l->add_option("--width", f.width,
                "Drafted alternatives per step (a tree of width^1 + ... + width^depth steps a round)")->capture_default_str()->check(CLI::Range(1, 8));
  add_verifier_flags(l, f, "Judge model for --verifier judge (default: the target)");
  l->add_option("--step-log", f.step_log,
                "Append every verifier call (the two steps, the decision, the similarity or judge margin) to this "
                "file as JSON lines");
  l->add_option("--step-boundary", f.boundary, "Text that ends a step (\\n = newline)")->capture_default_str();
  l->add_option("--step-cap", f.step_cap, "Tokens after which a step ends without a boundary")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
}

LookaheadOptions lookahead_options(const LookaheadFlags& f, StepTokenSpec spec, int k, int ngram_max) {
  LookaheadOptions lo;
  lo.depth = f.depth;
  lo.width = f.width;
  if (lookahead_tree_steps(lo) > kMaxTreeSteps)
    fail("--width {} --depth {} drafts {} steps a round (w + w^2 + ... + w^depth), more than {}: lower --width or "
         "--depth",
         lo.width, lo.depth, lookahead_tree_steps(lo), kMaxTreeSteps);
  lo.adaptive_depth = !f.fixed_depth;
  lo.steps.max_tokens = f.step_cap;
  lo.steps.boundary = unescape(f.boundary);
  if (lo.steps.boundary.empty()) fail("--step-boundary is empty; give the text that ends a step (default \\n\\n)");
  lo.token_spec = spec;
  lo.spec_k = k;
  lo.ngram_max = ngram_max;
  return lo;
}

std::unique_ptr<StepVerifier> make_verifier(const LookaheadFlags& f, const Model& target,
                                            std::shared_ptr<ThreadPool> pool, std::unique_ptr<Model>& judge_holder) {
  StepVerifierOptions vo = verifier_options(f);
  if (f.verifier == "judge" && !f.judge.empty() && !judge_holder) judge_holder = Model::load(f.judge);
  vo.judge_model = judge_holder ? judge_holder.get() : &target;
  vo.pool = std::move(pool);
  return make_step_verifier(f.verifier, vo);
}

std::shared_ptr<std::FILE> open_step_log(const std::string& path, const char* flag) {
  if (path.empty()) return nullptr;
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (!file) fail("{}: cannot open {} for appending: {}", flag, path, std::strerror(errno));
  return std::shared_ptr<std::FILE>(file, [](std::FILE* p) { std::fclose(p); });
}

void log_steps(StepVerifier& v, std::shared_ptr<std::FILE> file, const std::string& mode, const std::string* id) {
  if (!file) return;
  v.set_log([file, mode, id, name = v.name()](const StepDecision& d) {
    nlohmann::json j = {{"mode", mode},
                        {"id", id ? nlohmann::json(*id) : nlohmann::json()},
                        {"verifier", name},
                        {"exact", d.exact},
                        {"accepted", d.accepted},
                        {"score", std::isnan(d.score) ? nlohmann::json() : nlohmann::json(d.score)},
                        {"same_numbers", d.same_numbers < 0 ? nlohmann::json() : nlohmann::json(d.same_numbers == 1)},
                        {"context_bytes", d.context.size()},
                        {"target", std::string(d.target_step)},
                        {"draft", std::string(d.draft_step)}};
    // A step cut by the token cap may end inside a character: replace what is not UTF-8.
    const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    std::fwrite(line.data(), 1, line.size(), file.get());
    std::fflush(file.get());
  });
}

std::string lookahead_summary(const LookaheadOptions& lo, const LookaheadStats& s, const StepVerifier& v,
                              const std::string& indent) {
  std::string per_depth;
  for (size_t i = 0; i < s.kept_at_depth.size(); i++)
    per_depth += fmt::format(" {}:{}/{}", i + 1, s.kept_at_depth[i], s.rounds);
  const StepVerifierStats& vs = v.stats();
  const std::string width =
      lo.width > 1 ? fmt::format(", width {}: {} kept steps were not their depth's first alternative", lo.width,
                                 s.kept_alternatives)
                   : std::string();
  std::string out = fmt::format(
      "{} rounds (depth {}{}, mean {:.2f}), verifier {}: drafted steps {}, kept {} ({:.1f}%; {} identical to the "
      "target's, {} not eligible, {} rejected early); kept by depth (of rounds):{}{}\n",
      s.rounds, lo.depth, lo.adaptive_depth ? " at most" : "", (double)s.depth_sum / std::max(1, s.rounds), v.name(),
      s.drafted_steps, s.kept_steps, 100.0 * s.kept_steps / std::max(1, s.drafted_steps), s.identical_steps,
      s.ineligible_steps, s.early_rejections, per_depth, width);
  out += indent;
  out += fmt::format(
      "target forwards {}, draft forwards {}; verifier calls {} (model calls {}, {:.2f} s); draft {:.2f} s, target "
      "{:.2f} s",
      s.target_forwards, s.draft_forwards, vs.calls, vs.model_calls, vs.seconds, s.draft_seconds, s.target_seconds);
  if (lo.token_spec != StepTokenSpec::kNone)
    out += fmt::format("; {} tokens in target steps (k {}): accepted {}/{}",
                       lo.token_spec == StepTokenSpec::kNgram ? "n-gram" : "draft-model", lo.spec_k, s.spec_accepted,
                       s.spec_drafted);
  return out;
}

}  // namespace stepq::cli
