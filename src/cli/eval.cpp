// stepq eval: accuracy and decoding speed on a math benchmark (GSM8K, MATH-500, AIME 2024/2025),
// for plain decoding, token-level speculation, Lookahead Reasoning, or several of them over the
// same problems. Progress goes to stderr; the summary (or, with --json, one JSON object) to stdout.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/clock.h"
#include "base/error.h"
#include "cli/commands.h"
#include "cli/lookahead_flags.h"
#include "eval/answers.h"
#include "formats/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "runtime/lookahead.h"
#include "runtime/speculative.h"
#include "runtime/step_verifier.h"
#include "tokenizer/tokenizer.h"

namespace stepq::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Benchmark {
  const char* name;
  const char* file;  // under ../shared/data
  AnswerFormat format;
};

constexpr Benchmark kBenchmarks[] = {
    {"gsm8k", "gsm8k/test.jsonl", AnswerFormat::kNumber},
    {"math500", "math500/test.jsonl", AnswerFormat::kMath},
    {"aime2024", "aime2024/aime-2024.jsonl", AnswerFormat::kInteger},
    {"aime2025", "aime2025/test.jsonl", AnswerFormat::kInteger},
};

// The standard Qwen math instruction, after the question in the user message.
constexpr const char* kInstruction = "\nPlease reason step by step, and put your final answer within \\boxed{}.";

enum class Mode { kAr, kSd, kLr, kLrSd };

struct ModeName {
  const char* name;
  Mode mode;
};
constexpr ModeName kModes[] = {{"ar", Mode::kAr}, {"sd", Mode::kSd}, {"lr", Mode::kLr}, {"lr+sd", Mode::kLrSd}};

const char* mode_name(Mode m) {
  for (const ModeName& n : kModes)
    if (n.mode == m) return n.name;
  return "?";
}

struct EvalArgs {
  std::string benchmark, model, draft, data, modes = "ar";
  int n = 0;  // problems; 0 = all
  int max_tokens = 1024;
  int threads = default_threads();
  int ctx = 0;
  bool json = false, ngram = false, seeded = false;
  SamplerParams sampling;
  // Token speculation.
  int spec_k = 0;  // 0: 8 with a draft model, 6 with n-gram lookup
  int ngram_max = 2;
  LookaheadFlags la;  // Lookahead Reasoning
};

struct Problem {
  int row = 0;  // line in the data file, from 0 (blank lines not counted)
  std::string id, question, gold;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t c = s.find(',', start);
    out.push_back(s.substr(start, c == std::string::npos ? std::string::npos : c - start));
    if (c == std::string::npos) return out;
    start = c + 1;
  }
}

// The shared data folder: beside the source tree (STEPQ_SOURCE_DIR, the tree the executable was
// built in, or the working directory), as ../shared/data.
std::string find_data_file(const Benchmark& b) {
  std::vector<fs::path> roots;
  if (const char* src = std::getenv("STEPQ_SOURCE_DIR")) roots.emplace_back(src);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) roots.push_back(exe.parent_path().parent_path());  // <source>/<build dir>/stepq
  roots.push_back(fs::current_path(ec));
  std::string tried;
  for (const fs::path& r : roots) {
    const fs::path p = (r / ".." / "shared" / "data" / b.file).lexically_normal();
    if (fs::is_regular_file(p, ec)) return p.string();
    tried += "\n  " + p.string();
  }
  fail(
      "cannot find the {} data ({}); looked for:{}\npass --data FILE.jsonl, or set STEPQ_SOURCE_DIR to the stepq "
      "source folder (the data is read from $STEPQ_SOURCE_DIR/../shared/data)",
      b.name, b.file, tried);
}

std::string json_text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// Rows: `problem` or `question` (the text asked), `answer` (GSM8K: the worked solution ending in
// "#### N", or the number alone; MATH: the expression; AIME: the integer, text or number);
// `id` or `unique_id` when present, else the row number.
std::vector<Problem> load_problems(const std::string& path, const Benchmark& b) {
  std::ifstream f(path);
  if (!f) fail("cannot read data file '{}'", path);
  std::vector<Problem> out;
  std::string line;
  for (int line_no = 1; std::getline(f, line); line_no++) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json r;
    try {
      r = json::parse(line);
    } catch (const json::parse_error& e) {
      fail("{}:{}: not a JSON object ({})", path, line_no, e.what());
    }
    if (!r.is_object()) fail("{}:{}: not a JSON object", path, line_no);
    Problem p;
    p.row = (int)out.size();
    const char* qkey = r.contains("problem") ? "problem" : "question";
    if (!r.contains(qkey) || !r[qkey].is_string())
      fail("{}:{}: no 'problem' or 'question' text field ({} rows need the question and its 'answer')", path, line_no,
           b.name);
    if (!r.contains("answer") || r["answer"].is_null() || r["answer"].is_object() || r["answer"].is_array())
      fail("{}:{}: no 'answer' field ({} rows need the question and its 'answer')", path, line_no, b.name);
    p.question = r[qkey].get<std::string>();
    p.gold = gold_answer(b.format, json_text(r["answer"]));
    if (p.gold.empty()) fail("{}:{}: the 'answer' field holds no {} answer", path, line_no, b.name);
    if (r.contains("id"))
      p.id = json_text(r["id"]);
    else if (r.contains("unique_id"))
      p.id = json_text(r["unique_id"]);
    else
      p.id = std::to_string(p.row);
    out.push_back(std::move(p));
  }
  if (out.empty()) fail("data file '{}' has no problems", path);
  return out;
}

// The first n problems in file order, or with a seed the first n of a seeded shuffle
// (Fisher-Yates on the sampler's generator: the same selection on every platform).
std::vector<Problem> select_problems(std::vector<Problem> all, int n, std::optional<uint64_t> seed) {
  if (seed) {
    Rng rng(*seed);
    for (size_t i = all.size(); i > 1; i--) std::swap(all[i - 1], all[rng.next() % i]);
  }
  if (n > 0 && n < (int)all.size()) all.resize(n);
  return all;
}

struct ProblemResult {
  std::string answer;
  bool correct = false;
  int tokens = 0, prompt_tokens = 0;
  double seconds = 0, prompt_seconds = 0, wall_seconds = 0;  // generation (prefill excluded); prefill; both
  const char* stopped = "max_tokens";
  int rounds = 0, kept_steps = 0;  // lookahead modes
};

// One mode's run over the problems: its options, its verifier and its running totals.
struct ModeRun {
  Mode mode;
  LookaheadOptions lo;
  SpeculativeOptions so;
  bool ngram_sd = false;  // sd with n-gram lookup (else with the draft model)
  std::unique_ptr<StepVerifier> verifier;
  std::vector<ProblemResult> results;
  LookaheadStats ls;    // summed over problems
  SpeculativeStats ss;  // summed over problems
  int correct = 0;
  int64_t tokens = 0;
  double seconds = 0, prompt_seconds = 0, wall_seconds = 0;

  bool lookahead() const { return mode == Mode::kLr || mode == Mode::kLrSd; }
  double tokens_per_s() const { return tokens / std::max(seconds, 1e-9); }
  double accuracy() const { return results.empty() ? 0.0 : (double)correct / results.size(); }
};

void add_stats(LookaheadStats& t, const LookaheadStats& s) {
  t.rounds += s.rounds;
  t.target_forwards += s.target_forwards;
  t.draft_forwards += s.draft_forwards;
  t.drafted_steps += s.drafted_steps;
  t.kept_steps += s.kept_steps;
  t.target_steps += s.target_steps;
  t.identical_steps += s.identical_steps;
  t.kept_alternatives += s.kept_alternatives;
  t.ineligible_steps += s.ineligible_steps;
  t.early_rejections += s.early_rejections;
  t.depth_sum += s.depth_sum;
  t.branch_tokens += s.branch_tokens;
  t.spec_drafted += s.spec_drafted;
  t.spec_accepted += s.spec_accepted;
  t.draft_seconds += s.draft_seconds;
  t.target_seconds += s.target_seconds;
  t.verify_seconds += s.verify_seconds;
  for (auto [to, from] :
       {std::pair{&t.kept_at_depth, &s.kept_at_depth}, std::pair{&t.rounds_by_kept, &s.rounds_by_kept}}) {
    if (to->size() < from->size()) to->resize(from->size());
    for (size_t i = 0; i < from->size(); i++) (*to)[i] += (*from)[i];
  }
}

void add_stats(SpeculativeStats& t, const SpeculativeStats& s) {
  t.rounds += s.rounds;
  t.drafted += s.drafted;
  t.accepted += s.accepted;
  t.draft_seconds += s.draft_seconds;
  t.verify_seconds += s.verify_seconds;
}

json lookahead_json(const ModeRun& m) {
  const LookaheadStats& s = m.ls;
  const StepVerifierStats& v = m.verifier->stats();
  json kept_rate = json::array();
  for (int k : s.kept_at_depth) kept_rate.push_back(s.rounds ? (double)k / s.rounds : 0.0);
  return {{"depth", m.lo.depth},
          {"width", m.lo.width},
          {"kept_alternatives", s.kept_alternatives},
          {"adaptive_depth", m.lo.adaptive_depth},
          {"mean_depth", s.rounds ? (double)s.depth_sum / s.rounds : 0.0},
          {"token_spec", m.lo.token_spec == StepTokenSpec::kNone    ? "none"
                         : m.lo.token_spec == StepTokenSpec::kNgram ? "ngram"
                                                                    : "draft"},
          {"spec_k", m.lo.spec_k},
          {"rounds", s.rounds},
          {"drafted_steps", s.drafted_steps},
          {"kept_steps", s.kept_steps},
          {"step_acceptance", s.drafted_steps ? (double)s.kept_steps / s.drafted_steps : 0.0},
          {"kept_at_depth", s.kept_at_depth},
          {"kept_at_depth_per_round", kept_rate},
          {"identical_steps", s.identical_steps},
          {"ineligible_steps", s.ineligible_steps},
          {"early_rejections", s.early_rejections},
          {"draft_seconds", s.draft_seconds},
          {"target_seconds", s.target_seconds},
          {"target_steps", s.target_steps},
          {"target_forwards", s.target_forwards},
          {"draft_forwards", s.draft_forwards},
          {"spec_drafted", s.spec_drafted},
          {"spec_accepted", s.spec_accepted},
          {"verifier", m.verifier->name()},
          {"verifier_calls", v.calls},
          {"verifier_model_calls", v.model_calls},
          {"verifier_seconds", v.seconds}};
}

json mode_json(const ModeRun& m, const std::vector<Problem>& problems, const ModeRun* ar) {
  json per = json::array();
  for (size_t i = 0; i < m.results.size(); i++) {
    const ProblemResult& r = m.results[i];
    per.push_back({{"id", problems[i].id},
                   {"row", problems[i].row},
                   {"answer", r.answer},
                   {"gold", problems[i].gold},
                   {"correct", r.correct},
                   {"tokens", r.tokens},
                   {"seconds", r.seconds},
                   {"prompt_tokens", r.prompt_tokens},
                   {"prompt_seconds", r.prompt_seconds},
                   {"stopped", r.stopped}});
    if (m.lookahead()) {
      per.back()["rounds"] = r.rounds;
      per.back()["kept_steps"] = r.kept_steps;
    }
  }
  json j = {{"mode", mode_name(m.mode)},
            {"n", m.results.size()},
            {"correct", m.correct},
            {"accuracy", m.accuracy()},
            {"tokens_per_s", m.tokens_per_s()},
            {"generated_tokens", m.tokens},
            {"generate_s", m.seconds},
            {"prompt_s", m.prompt_seconds},
            {"wall_s", m.wall_seconds}};
  if (ar) j["speedup_vs_ar"] = m.tokens_per_s() / std::max(ar->tokens_per_s(), 1e-9);
  if (m.lookahead()) j["lookahead"] = lookahead_json(m);
  if (m.mode == Mode::kSd)
    j["speculative"] = {{"drafter", m.ngram_sd ? "ngram" : "draft"},
                        {"rounds", m.ss.rounds},
                        {"drafted", m.ss.drafted},
                        {"accepted", m.ss.accepted},
                        {"acceptance", m.ss.acceptance_rate()}};
  j["per_problem"] = std::move(per);
  return j;
}

void do_eval(const EvalArgs& a) {
  const double t_start = now_s();
  const Benchmark* bench = nullptr;
  std::string names;
  for (const Benchmark& b : kBenchmarks) {
    if (a.benchmark == b.name) bench = &b;
    names += names.empty() ? b.name : std::string(", ") + b.name;
  }
  if (!bench) fail("unknown benchmark '{}': choose one of {}", a.benchmark, names);

  // Modes, checked before anything loads.
  std::vector<ModeRun> modes;
  for (const std::string& name : split_commas(a.modes)) {
    auto it = std::find_if(std::begin(kModes), std::end(kModes), [&](const ModeName& m) { return name == m.name; });
    if (it == std::end(kModes))
      fail("unknown mode '{}' in --mode {}: choose from ar, sd, lr, lr+sd (a comma list runs several)", name, a.modes);
    for (const ModeRun& m : modes)
      if (m.mode == it->mode) fail("--mode {}: '{}' is listed twice", a.modes, name);
    ModeRun& m = modes.emplace_back();
    m.mode = it->mode;
    if (m.lookahead() && a.draft.empty())
      fail("--mode {} (Lookahead Reasoning) needs --draft MODEL, the model that drafts the steps", name);
    if (m.mode == Mode::kSd && a.draft.empty() && !a.ngram)
      fail("--mode sd needs a drafter: --draft MODEL or --ngram (n-gram lookup)");
    // lr+sd: the draft model's tokens inside the target's steps, or n-gram lookup with --ngram.
    const StepTokenSpec spec = m.mode != Mode::kLrSd ? StepTokenSpec::kNone
                               : a.ngram             ? StepTokenSpec::kNgram
                                                     : StepTokenSpec::kDraft;
    m.lo = lookahead_options(a.la, spec, a.spec_k > 0 ? a.spec_k : 6, a.ngram_max);
    if (m.mode == Mode::kSd) {
      m.ngram_sd = a.ngram;
      m.so.k_max = a.spec_k > 0 ? a.spec_k : m.ngram_sd ? 6 : 8;
      m.so.k_start = std::min(m.so.k_max, 4);
    }
  }

  const std::string data_path = a.data.empty() ? find_data_file(*bench) : a.data;
  if (!fs::is_regular_file(data_path)) fail("data file '{}' does not exist", data_path);
  const std::optional<uint64_t> seed = a.seeded ? std::optional<uint64_t>(a.sampling.seed) : std::nullopt;
  const std::vector<Problem> problems = select_problems(load_problems(data_path, *bench), a.n, seed);

  auto model = Model::load(a.model);
  const ModelConfig& c = model->config();
  const Tokenizer& tok = model->tokenizer();
  std::fprintf(stderr, "stepq eval: %s, %zu problem(s) from %s%s; %s (%s, %d layers), %d threads\n", bench->name,
               problems.size(), data_path.c_str(), seed ? fmt::format(" (shuffled, seed {})", *seed).c_str() : "",
               a.model.c_str(), arch_name(c.arch), c.n_layer, a.threads);

  // Prompts first: the context must hold the longest one plus --max-tokens.
  std::string origin;
  std::vector<std::vector<int32_t>> prompts;
  size_t longest = 0;
  for (const Problem& p : problems) {
    prompts.push_back(tok.encode(chat_prompt(model->gguf(), tok, p.question + kInstruction, "", &origin), true, true));
    longest = std::max(longest, prompts.back().size());
  }
  if (origin != "model")
    std::fprintf(stderr, "stepq eval: the model has no chat template; using the %s template\n", origin.c_str());
  int ctx = a.ctx;
  if (ctx == 0) {
    const int model_ctx = c.n_ctx_train > 0 ? c.n_ctx_train : 1 << 20;
    ctx = std::min<int64_t>(model_ctx, std::max<int64_t>(resolve_ctx(0, c), (int64_t)longest + a.max_tokens));
  }
  ctx = resolve_ctx(ctx, c);

  Forward fwd(*model, a.threads);
  std::unique_ptr<Model> draft_model;
  std::unique_ptr<Forward> draft_fwd;
  bool same_vocab = true;
  int draft_ctx = ctx;
  if (!a.draft.empty()) {
    draft_model = Model::load(a.draft);
    const ModelConfig& dc = draft_model->config();
    draft_fwd = std::make_unique<Forward>(*draft_model, fwd.shared_pool());
    draft_ctx = std::min(ctx, dc.n_ctx_train > 0 ? dc.n_ctx_train : ctx);
    same_vocab = same_vocabulary(tok, draft_model->tokenizer());
    std::fprintf(stderr, "stepq eval: draft %s (%s, %d layers)%s\n", a.draft.c_str(), arch_name(dc.arch), dc.n_layer,
                 same_vocab ? "" : ", another vocabulary");
  }
  std::unique_ptr<Model> judge_model;

  // One KV pool for every mode (they run one at a time), sized for the hungriest.
  const std::shared_ptr<std::FILE> step_log = open_step_log(a.la.step_log);
  std::string problem_id;  // the problem running, for --step-log
  int64_t pool_tokens = ctx;
  for (ModeRun& m : modes) {
    if (!m.lookahead()) continue;
    if (!same_vocab)
      fail("--mode {} needs a draft model with the target's vocabulary; {} has another one", mode_name(m.mode),
           a.draft);
    pool_tokens = std::max(pool_tokens, lookahead_pool_tokens(ctx, m.lo));
    m.verifier = make_verifier(a.la, *model, fwd.shared_pool(), judge_model);
    log_steps(*m.verifier, step_log, mode_name(m.mode), &problem_id);
  }
  auto kv_pool = std::make_shared<KvPool>(c, KvPool::pages_for(pool_tokens));

  const ModeRun* ar = nullptr;
  for (const ModeRun& m : modes)
    if (m.mode == Mode::kAr) ar = &m;

  // Interleaved by problem: each problem runs in every mode before the next, so that load on the
  // machine over time falls on all modes alike.
  const int N = (int)problems.size();
  for (int i = 0; i < N; i++) {
    const Problem& p = problems[i];
    problem_id = p.id;
    for (ModeRun& m : modes) {
      KvCache kv(kv_pool, ctx);
      // Seeded by the problem, not its position: a problem samples the same way in every mode
      // and whichever problems are selected with it.
      SamplerParams sp = a.sampling;
      sp.seed = a.sampling.seed + (uint64_t)p.row;
      Sampler sampler(sp, c.n_vocab);
      GenerateOptions opt;
      opt.n_predict = a.max_tokens;
      std::string text;
      TextStreamer streamer(tok, false);
      auto on_token = [&](int32_t id) {
        if (!tok.is_eog(id)) text += streamer.push(id);
        return true;
      };
      const double t0 = now_s();
      GenerateStats st;
      int rounds = 0, kept_steps = 0;
      if (m.lookahead()) {
        LookaheadStats ls;
        st = lookahead_generate(fwd, kv, *draft_fwd, sampler, tok, prompts[i], opt, *m.verifier, m.lo, ls, on_token);
        add_stats(m.ls, ls);
        rounds = ls.rounds;
        kept_steps = ls.kept_steps;
      } else if (m.mode == Mode::kSd) {
        // A fresh drafter per problem: no state carried from one problem to the next.
        std::unique_ptr<Drafter> drafter;
        if (m.ngram_sd)
          drafter = std::make_unique<NgramDrafter>(a.ngram_max);
        else if (same_vocab)
          drafter = std::make_unique<ModelDrafter>(*draft_fwd, draft_ctx, sp);
        else
          drafter = std::make_unique<TextDrafter>(*draft_fwd, tok, draft_ctx);
        SpeculativeStats ss;
        st = speculative_generate(fwd, kv, sampler, tok, prompts[i], opt, *drafter, m.so, ss, on_token);
        add_stats(m.ss, ss);
      } else {
        st = generate(fwd, kv, sampler, tok, prompts[i], opt, on_token);
      }
      text += streamer.flush();
      ProblemResult r;
      r.wall_seconds = now_s() - t0;
      r.answer = extract_answer(bench->format, text);
      r.correct = answer_correct(bench->format, r.answer, p.gold);
      r.tokens = st.n_generated;
      r.prompt_tokens = st.n_prompt;
      r.seconds = st.generate_seconds;
      r.prompt_seconds = st.prompt_seconds;
      r.stopped = st.stopped_by_eog ? "eog" : st.stopped_by_context ? "context" : "max_tokens";
      r.rounds = rounds;
      r.kept_steps = kept_steps;
      m.correct += r.correct;
      m.tokens += r.tokens;
      m.seconds += r.seconds;
      m.prompt_seconds += r.prompt_seconds;
      m.wall_seconds += r.wall_seconds;
      m.results.push_back(r);
      std::fprintf(stderr,
                   "[%d/%d] %-5s id %s: %s (gold %s) %s, %d tokens%s, %.2f s, %.1f tok/s; accuracy %d/%zu (%.1f%%)\n",
                   i + 1, N, mode_name(m.mode), p.id.c_str(), r.answer.empty() ? "no answer" : r.answer.c_str(),
                   p.gold.c_str(), r.correct ? "correct" : "wrong", r.tokens,
                   std::string(r.stopped) == "eog" ? "" : fmt::format(" ({})", r.stopped).c_str(), r.seconds,
                   r.tokens / std::max(r.seconds, 1e-9), m.correct, m.results.size(), 100.0 * m.accuracy());
    }
  }
  const double wall = now_s() - t_start;

  // Summary: to stdout, or to stderr when stdout carries the JSON.
  FILE* out = a.json ? stderr : stdout;
  std::fprintf(out,
               "\nstepq eval %s: %d problem%s, %s decoding, at most %d tokens each; tok/s = generated tokens / "
               "generation seconds (prefill excluded)\n",
               bench->name, N, N == 1 ? "" : "s",
               a.sampling.temperature <= 0 ? "greedy" : fmt::format("temperature {}", a.sampling.temperature).c_str(),
               a.max_tokens);
  std::fprintf(out, "%-6s %9s %8s %9s %10s %9s %9s %9s\n", "mode", "accuracy", "correct", "tok/s", "speedup", "tokens",
               "gen s", "wall s");
  for (const ModeRun& m : modes) {
    std::fprintf(out, "%-6s %8.1f%% %4d/%-3d %9.2f %10s %9lld %9.2f %9.2f\n", mode_name(m.mode), 100.0 * m.accuracy(),
                 m.correct, N, m.tokens_per_s(),
                 ar ? fmt::format("{:.2f}x", m.tokens_per_s() / std::max(ar->tokens_per_s(), 1e-9)).c_str() : "-",
                 (long long)m.tokens, m.seconds, m.wall_seconds);
  }
  for (const ModeRun& m : modes) {
    if (m.lookahead()) {
      std::fprintf(out, "%s: %s\n", mode_name(m.mode), lookahead_summary(m.lo, m.ls, *m.verifier, "  ").c_str());
    } else if (m.mode == Mode::kSd) {
      std::fprintf(out, "sd: %s, k <= %d: %d rounds, accepted %d/%d drafted tokens (%.1f%%)\n",
                   m.ngram_sd ? "n-gram lookup" : "draft model", m.so.k_max, m.ss.rounds, m.ss.accepted, m.ss.drafted,
                   100.0 * m.ss.acceptance_rate());
    }
  }
  std::fprintf(out, "wall %.2f s in all (models loaded and every mode run)\n", wall);

  if (a.json) {
    json j = mode_json(modes[0], problems, modes[0].mode == Mode::kAr ? nullptr : ar);
    json all = json::array();
    for (const ModeRun& m : modes) all.push_back(mode_json(m, problems, &m == ar ? nullptr : ar));
    j["benchmark"] = bench->name;
    j["data"] = data_path;
    j["model"] = a.model;
    if (!a.draft.empty()) j["draft"] = a.draft;
    j["seed"] = seed ? json(*seed) : json(nullptr);
    j["temperature"] = a.sampling.temperature;
    j["max_tokens"] = a.max_tokens;
    j["ctx"] = ctx;
    j["threads"] = a.threads;
    j["total_wall_s"] = wall;
    j["modes"] = std::move(all);
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
}

}  // namespace

void add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  a->sampling.temperature = 0;  // greedy unless --temp says otherwise
  CLI::App* c =
      app.add_subcommand("eval", "Accuracy and speed on gsm8k, math500, aime2024 or aime2025 (ar, sd, lr, lr+sd)");
  c->add_option("benchmark", a->benchmark, "gsm8k, math500, aime2024 or aime2025")->required();
  c->add_option("-m,--model", a->model, "Target model (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_option("--draft", a->draft, "Draft model (GGUF): drafts steps for lr modes, tokens for sd")
      ->check(CLI::ExistingFile);
  c->add_option(
       "--mode", a->modes,
       "ar (plain), sd (token speculation), lr (Lookahead Reasoning), lr+sd (with n-gram tokens inside steps); "
       "a comma list runs each over the same problems")
      ->capture_default_str();
  c->add_option("-n", a->n,
                "Problems to evaluate (default: all): the first N in file order, or of a seeded shuffle with --seed")
      ->check(CLI::Range(1, 1 << 30));
  c->add_option("--data", a->data, "Another JSONL file of the benchmark's shape (default: ../shared/data)");
  c->add_flag("--json", a->json, "Print one JSON object with the results as the last stdout line");
  c->add_option("--max-tokens", a->max_tokens, "Tokens generated per problem at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
  c->add_option("--ctx", a->ctx,
                "Context size (default: room for the longest prompt plus --max-tokens, at least 4096, "
                "at most the model's)")
      ->check(CLI::Range(1, 1 << 20));
  add_sampling_flags(c, a->sampling);
  c->get_option("--seed")->description("Seed: sampling, and which problems -n picks (a seeded shuffle)");
  auto* s = c->add_option_group("Speculation");
  s->add_flag("--ngram", a->ngram, "sd and lr+sd: n-gram lookup instead of the draft model");
  s->add_option("--spec-k", a->spec_k,
                "Drafted tokens per round at most (default: sd 8 with a draft, 6 with n-gram; lr+sd 6, by the draft "
                "model or with --ngram by n-gram lookup)")
      ->check(CLI::Range(1, 64));
  s->add_option("--ngram-max", a->ngram_max, "Longest n-gram matched")->capture_default_str()->check(CLI::Range(1, 16));
  add_lookahead_flags(c->add_option_group("Lookahead Reasoning"), a->la);
  c->callback([a, c] {
    a->seeded = c->get_option("--seed")->count() > 0;
    do_eval(*a);
  });
}

}  // namespace stepq::cli
