// stepq embed: sentence embeddings from a Hugging Face BERT folder (all-MiniLM-L6-v2) or the
// stepq-bert GGUF stepq quantize makes of one: mean-pooled and L2-normalized, as
// sentence-transformers computes them.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/commands.h"
#include "model/bert.h"

namespace stepq::cli {

namespace {
struct EmbedArgs {
  std::string model, file;
  std::vector<std::string> prompts;
  bool json = false, quiet = false;
  int threads = default_threads(), batch = 32;
};

void do_embed(const EmbedArgs& a) {
  if (a.batch < 1) fail("--batch must be at least 1, not {}", a.batch);
  std::vector<std::string> texts = a.prompts;
  if (!a.file.empty()) {
    std::ifstream in(a.file, std::ios::binary);
    if (!in) fail("{}: cannot read the input file", a.file);
    for (std::string line; std::getline(in, line);) texts.push_back(line);  // one text per line, "" included
  }
  if (texts.empty()) fail("nothing to embed: give -p TEXT or -f FILE");
  auto t0 = std::chrono::steady_clock::now();
  auto model = BertModel::load(a.model);
  ThreadPool pool(a.threads);
  auto t1 = std::chrono::steady_clock::now();
  int64_t n_tokens = 0;
  auto emb = model->embed(texts, pool, a.batch, &n_tokens);
  auto t2 = std::chrono::steady_clock::now();
  if (a.json) {
    std::string out = "[";
    for (size_t i = 0; i < emb.size(); i++) {
      out += i ? ",\n[" : "[";
      for (size_t j = 0; j < emb[i].size(); j++) out += fmt::format("{}{:.9g}", j ? "," : "", emb[i][j]);
      out += "]";
    }
    out += "]\n";
    std::fputs(out.c_str(), stdout);
  } else {
    for (size_t i = 0; i < emb.size(); i++) {
      double n2 = 0;
      for (float v : emb[i]) n2 += (double)v * v;
      std::string head;
      for (size_t j = 0; j < std::min<size_t>(4, emb[i].size()); j++) head += fmt::format("{:.6f} ", emb[i][j]);
      std::printf("%zu: dim %zu [%s...] norm %.6f\n", i, emb[i].size(), head.c_str(), std::sqrt(n2));
    }
  }
  if (!a.quiet) {
    const double load_s = std::chrono::duration<double>(t1 - t0).count();
    const double run_s = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr, "embedded %zu text(s), %lld tokens, in %.3f s (%.1f texts/s, %.0f tokens/s; load %.3f s)\n",
                 texts.size(), (long long)n_tokens, run_s, texts.size() / std::max(run_s, 1e-9),
                 n_tokens / std::max(run_s, 1e-9), load_s);
  }
}
}  // namespace

void add_embed(CLI::App& app) {
  auto a = std::make_shared<EmbedArgs>();
  CLI::App* c = app.add_subcommand(
      "embed", "Sentence embeddings from a Hugging Face BERT folder (all-MiniLM-L6-v2) or its quantized GGUF");
  c->add_option("-m,--model", a->model,
                "Model folder (config.json, model.safetensors, tokenizer.json), or the GGUF stepq quantize writes "
                "from one")
      ->required();
  c->add_option("-p,--prompt", a->prompts, "Text to embed (repeat for several)");
  c->add_option("-f,--file", a->file, "File with one text per line");
  c->add_flag("--json", a->json, "Print a JSON array with one array of floats per input");
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str()->check(CLI::Range(1, 256));
  c->add_option("--batch", a->batch, "Texts per forward pass")->capture_default_str();
  c->add_flag("-q,--quiet", a->quiet, "No timing line on stderr");
  c->callback([a] { do_embed(*a); });
}

}  // namespace stepq::cli
