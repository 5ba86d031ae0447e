// The Lookahead Reasoning flags that `stepq run` and `stepq eval` share, the options and the
// verifier they make, and the summary both print.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "runtime/lookahead.h"
#include "runtime/step_verifier.h"

namespace stepq {
class Model;
class StepVerifier;
class ThreadPool;
}  // namespace stepq

namespace stepq::cli {

// The step verifier's flags: `stepq run`, `stepq eval` (inside LookaheadFlags) and
// `stepq verify-steps`.
struct VerifierFlags {
  std::string verifier = "exact", judge, embed_model;
  float embed_threshold = kDefaultEmbedThreshold;
  bool numbers_check = true;
};

struct LookaheadFlags : VerifierFlags {
  int depth = 4, width = 1, step_cap = 100;
  bool fixed_depth = false;
  std::string boundary = "\\n\\n";
  std::string step_log;  // --step-log FILE: every verifier call as a JSON line
};

// --verifier --judge --embed-model --embed-threshold --[no-]numbers-check, into `app` (a
// subcommand or an option group); `judge_help` describes --judge.
void add_verifier_flags(CLI::App* app, VerifierFlags& f, const std::string& judge_help);

// The verifier options these flags give (the embedding model's default path filled in); the
// judge model and the pool are the caller's.
StepVerifierOptions verifier_options(const VerifierFlags& f);

// The verifier flags and --depth --fixed-depth --width --step-boundary --step-cap --step-log,
// into group g.
void add_lookahead_flags(CLI::Option_group* g, LookaheadFlags& f);

// The options for these flags and this token speculation inside steps (k: drafted tokens per
// forward). Refuses what is not built (--width > 1).
LookaheadOptions lookahead_options(const LookaheadFlags& f, StepTokenSpec spec, int k, int ngram_max);

// The verifier these flags choose. The judge is --judge (loaded into `judge_holder` unless it
// already holds a model) or the target; `pool` is the target's, so their threads take turns.
std::unique_ptr<StepVerifier> make_verifier(const LookaheadFlags& f, const Model& target,
                                            std::shared_ptr<ThreadPool> pool, std::unique_ptr<Model>& judge_holder);

// A step log (`path`: the value of `flag`), opened for appending: null when the path is empty,
// an error naming `flag` when it cannot be opened.
std::shared_ptr<std::FILE> open_step_log(const std::string& path, const char* flag = "--step-log");

// Sends every accept() of `v` to `file` as one JSON line: {"mode", "id" (*id, read at each call;
// null when id is null), "verifier", "exact", "accepted", "score" (null when none),
// "same_numbers" (null when the exact match decided), "context_bytes", "target", "draft"}. Nothing when
// `file` is null.
void log_steps(StepVerifier& v, std::shared_ptr<std::FILE> file, const std::string& mode, const std::string* id);

// Two lines on a run: rounds, γ, kept steps per depth, early rejections, verifier calls,
// forwards and the time in drafting, the target and the verifier; token speculation if any.
// `indent` starts the second line.
std::string lookahead_summary(const LookaheadOptions& lo, const LookaheadStats& s, const StepVerifier& v,
                              const std::string& indent);

}  // namespace stepq::cli
