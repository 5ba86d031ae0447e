// stepq dump-logits: run token ids through the model and write every position's logits as raw
// float32 (n_tokens x n_vocab). For comparisons with other engines.
#include <cstdio>
#include <sstream>

#include "base/error.h"
#include "cli/commands.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"

namespace stepq::cli {

namespace {
struct DumpLogitsArgs {
  std::string model, tokens, out;
  int threads = default_threads();
};

void do_dump_logits(const DumpLogitsArgs& a) {
  std::vector<int32_t> ids;
  std::istringstream ss(a.tokens);
  for (int32_t id; ss >> id;) ids.push_back(id);
  if (ids.empty()) fail("--tokens: give space-separated token ids");
  auto model = Model::load(a.model);
  Forward fwd(*model, a.threads);
  KvCache kv(model->config(), (int)ids.size());
  SequenceInput in{&kv, ids, true};
  auto logits = fwd.run({&in, 1});
  FILE* f = std::fopen(a.out.c_str(), "wb");
  if (!f) fail("cannot write '{}'", a.out);
  std::fwrite(logits.data(), sizeof(float), logits.size(), f);
  std::fclose(f);
}
}  // namespace

void add_dump_logits(CLI::App& app) {
  auto a = std::make_shared<DumpLogitsArgs>();
  CLI::App* c = app.add_subcommand("dump-logits", "Write the logits of every position of a token sequence (raw float32)");
  c->add_option("-m,--model", a->model, "Model file (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_option("--tokens", a->tokens, "Space-separated token ids")->required();
  c->add_option("-o,--out", a->out, "Output file")->required();
  c->add_option("-t,--threads", a->threads, "Threads")->check(CLI::Range(1, 256));
  c->callback([a] { do_dump_logits(*a); });
}

}  // namespace stepq::cli
