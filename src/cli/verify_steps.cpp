// stepq verify-steps: run a Lookahead Reasoning step verifier over given pairs of steps, to tune
// or compare verifiers on the same pairs. The input is JSON lines with "target" and "draft" (and
// optionally "context" and "id") — the format `--step-log` writes, so pairs logged in one run can
// be judged again by another verifier or setting. The output is the --step-log format.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/commands.h"
#include "cli/lookahead_flags.h"
#include "model/model.h"
#include "runtime/step_verifier.h"

namespace stepq::cli {

namespace {

struct VerifyArgs : VerifierFlags {
  VerifyArgs() { verifier = "embed"; }
  std::string pairs, out;
  int judge_context = 0;
  int threads = default_threads();
};

struct Pair {
  std::string id, context, target, draft;
};

std::vector<Pair> read_pairs(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read the pairs file", path);
  std::vector<Pair> out;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    line_no++;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{} line {}: not JSON ({})", path, line_no, e.what());
    }
    auto text = [&](const char* key, bool required) -> std::string {
      if (!j.is_object() || !j.contains(key) || j[key].is_null()) {
        if (required) fail("{} line {}: no \"{}\" text (each line needs \"target\" and \"draft\")", path, line_no, key);
        return "";
      }
      if (j[key].is_string()) return j[key].get<std::string>();
      if (j[key].is_number() && std::string(key) == "id") return j[key].dump();
      fail("{} line {}: \"{}\" is not a string", path, line_no, key);
    };
    out.push_back({text("id", false), text("context", false), text("target", true), text("draft", true)});
  }
  if (out.empty()) fail("{}: no pairs (JSON lines with \"target\" and \"draft\")", path);
  return out;
}

void do_verify(const VerifyArgs& a) {
  if (a.verifier == "judge" && a.judge.empty())
    fail("--verifier judge needs the judge model: --judge MODEL.gguf (Lookahead Reasoning's default judge is the target)");
  const std::vector<Pair> pairs = read_pairs(a.pairs);
  auto pool = std::make_shared<ThreadPool>(a.threads);
  std::unique_ptr<Model> judge;
  StepVerifierOptions vo = verifier_options(a);
  vo.judge_context_chars = a.judge_context;
  if (a.verifier == "judge") {
    judge = Model::load(a.judge);
    vo.judge_model = judge.get();
  }
  vo.pool = pool;
  std::unique_ptr<StepVerifier> v = make_step_verifier(a.verifier, vo);

  const std::shared_ptr<std::FILE> out =
      a.out.empty() ? std::shared_ptr<std::FILE>(stdout, [](std::FILE*) {}) : open_step_log(a.out, "-o");
  std::string id;
  log_steps(*v, out, "verify", &id);
  const double t0 = now_s();
  for (size_t i = 0; i < pairs.size(); i++) {
    id = pairs[i].id.empty() ? std::to_string(i) : pairs[i].id;
    v->accept(pairs[i].context, pairs[i].target, pairs[i].draft);
    if (!a.out.empty() && (i + 1) % 20 == 0)
      std::fprintf(stderr, "stepq verify-steps: %zu/%zu pairs\n", i + 1, pairs.size());
  }
  const StepVerifierStats& s = v->stats();
  const std::string per_call =
      s.model_calls > 0 ? fmt::format(" ({:.0f} ms a model call)", 1e3 * s.seconds / (double)s.model_calls) : "";
  std::fprintf(stderr,
               "stepq verify-steps: %s%s: %lld pairs, accepted %lld (%.1f%%; %lld by the exact match), model calls "
               "%lld, %.2f s%s\n",
               v->name().c_str(), v->checks_numbers() ? " with the numbers check" : "", (long long)s.calls,
               (long long)s.accepted, 100.0 * s.accepted / std::max<int64_t>(1, s.calls), (long long)s.exact_matches,
               (long long)s.model_calls, now_s() - t0, per_call.c_str());
}

}  // namespace

void add_verify_steps(CLI::App& app) {
  auto a = std::make_shared<VerifyArgs>();
  CLI::App* c = app.add_subcommand(
      "verify-steps",
      "Run a Lookahead Reasoning step verifier over pairs of steps (JSON lines with \"target\", \"draft\", optional "
      "\"context\" and \"id\": what --step-log writes) and write its decisions in the --step-log format");
  c->add_option("-f,--pairs", a->pairs, "JSON lines file of step pairs")->required();
  c->add_option("-o,--out", a->out, "Append the decisions here (default: standard output)");
  add_verifier_flags(c, *a, "Judge model for --verifier judge (a GGUF file; required for judge)");
  c->add_option("--judge-context", a->judge_context, "Bytes of each pair's context the judge is shown (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 1024));
  c->callback([a] { do_verify(*a); });
}

}  // namespace stepq::cli
