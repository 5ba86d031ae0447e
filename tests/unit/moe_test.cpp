// Mixture-of-experts forward on the generated MoE models (tools/make_moe_model.py, made by
// scripts/make-test-models.py) against llama.cpp's logits on the same files
// (tools/make_moe_reference.py), plus batch and chunking invariance and the routing counts.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

#include "logits_ref.h"
#include "model/config.h"
#include "test_models.h"

namespace stepq {
namespace {

std::string moe_path(const std::string& name) {
  const std::string p = test::models_dir() + "/moe/" + name + ".gguf";
  if (!std::filesystem::exists(p))
    ADD_FAILURE() << "generated model missing: " << p << " (run: python3 scripts/make-test-models.py)";
  return p;
}

void check_moe_logits(const std::string& name) {
  test::LogitsRef r = test::load_ref(name, "moe");
  auto model = Model::load(moe_path(name));
  ASSERT_TRUE(model->config().is_moe());
  ASSERT_EQ(model->config().n_vocab, r.n_vocab);
  const test::Agreement g = test::agreement(r, *model);
  std::printf("[%s] %d positions: top-1 agreement %.4f (%d misses at a tie), mean KL %.3g (%.3g without the worst "
              "1%%), max KL %.3g\n", name.c_str(), r.n_tokens, g.top1, g.tie_misses, g.mean_kl, g.trimmed_kl, g.max_kl);
  // The bar is top-1 >= 99.5% and mean KL <= 1e-3. Where llama.cpp itself cannot meet it,
  // the bar is how far llama.cpp moves under float orderings that are equally valid: its batch and
  // one-token-at-a-time paths (self_*), and its flash-attention and plain attention paths (fa_*).
  // The reference was made on one CPU and the test runs on another (AVX-512 or AVX2 kernels, in
  // llama.cpp and in stepq), so these files are sensitive in two ways that are not errors:
  // - a top-1 "miss" where the reference's logits for both tokens are within Agreement::kTie is a
  //   coin flip, and does not count;
  // - quantized activations round differently after any change of summation order, and a flipped
  //   router near-tie changes a token's experts: one such token alone can add 0.004 to a mean KL
  //   over 256. So the 1e-3 bar is on the mean without the worst 1% of positions, and the plain
  //   mean must stay within what llama.cpp's own attention paths differ by.
  // stepq must have no more top-1 misses than the larger of those (plus two Poisson standard
  // deviations of the batch-vs-one count).
  const double self_top1 = r.meta["self_top1"], self_kl = r.meta["self_mean_kl"];
  const double fa_top1 = r.meta["fa_top1"], fa_kl = r.meta["fa_mean_kl"];
  const double self_miss = (1.0 - self_top1) * r.n_tokens, fa_miss = (1.0 - fa_top1) * r.n_tokens;
  const double miss = (1.0 - g.top1) * r.n_tokens - g.tie_misses;
  std::printf("[%s] llama.cpp batch vs one at a time: top-1 %.4f, mean KL %.3g; flash attention vs not: top-1 %.4f, "
              "mean KL %.3g\n", name.c_str(), self_top1, self_kl, fa_top1, fa_kl);
  const double max_miss = std::max({0.005 * r.n_tokens, self_miss + 2.0 * std::sqrt(self_miss), fa_miss});
  EXPECT_LE(miss, max_miss + 1e-9) << name << ": top-1 agreement " << g.top1
                                  << " (if the generator changed, regenerate the file and its reference)";
  EXPECT_LE(g.trimmed_kl, std::max(1e-3, self_kl)) << name;
  EXPECT_LE(g.mean_kl, std::max({1e-3, self_kl, fa_kl})) << name;
}

class MoeParity : public ::testing::TestWithParam<std::string> {};
TEST_P(MoeParity, LogitsMatchLlamaCpp) { check_moe_logits(GetParam()); }

std::vector<std::string> moe_names() {
  std::vector<std::string> v;
  for (const char* a : {"mixtral", "qwen2moe", "qwen3moe", "deepseek", "olmoe"})
    for (const char* s : {"s", "m"})
      for (const char* t : {"f16", "q8_0", "q4_k"}) v.push_back(std::string(a) + "-" + s + "-" + t);
  return v;
}
INSTANTIATE_TEST_SUITE_P(Generated, MoeParity, ::testing::ValuesIn(moe_names()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

// Grouping tokens by expert must not change any token's result: the same logits whether a
// token is alone, in a batch with other sequences, or fed in chunks.
TEST(MoeInvariance, Batch) {
  for (const char* n : {"deepseek-m-q4_k", "qwen2moe-s-q8_0", "olmoe-m-f16"}) test::check_batch_invariance(moe_path(n), n);
}
TEST(MoeInvariance, Chunking) {
  for (const char* n : {"mixtral-m-q4_k", "qwen3moe-s-q8_0"}) test::check_chunking_invariance(moe_path(n), n);
}

// Every token is routed to exactly k experts in every MoE layer, none in dense layers.
TEST(MoeRouting, CountsEveryToken) {
  auto model = Model::load(moe_path("deepseek-m-q8_0"));
  const ModelConfig& c = model->config();
  ASSERT_GT(c.n_layer_dense_lead, 0);
  Forward fwd(*model, 2);
  std::vector<int32_t> toks(37);
  for (size_t i = 0; i < toks.size(); i++) toks[i] = (int32_t)((i * 7919 + 13) % c.n_vocab);
  KvCache a(c, 64), b(c, 64);
  SequenceInput batch[2] = {{&a, {toks.data(), 30}, false}, {&b, {toks.data() + 30, 7}, false}};
  fwd.run(batch);
  const auto& n = fwd.expert_counts();
  ASSERT_EQ(n.size(), (size_t)c.n_layer * c.n_expert);
  for (int l = 0; l < c.n_layer; l++) {
    const uint64_t sum = std::accumulate(n.begin() + (size_t)l * c.n_expert, n.begin() + (size_t)(l + 1) * c.n_expert,
                                         uint64_t{0});
    EXPECT_EQ(sum, c.layer_is_moe(l) ? 37u * c.n_expert_used : 0u) << "layer " << l;
    if (c.layer_is_moe(l)) {
      int used = 0;
      for (int e = 0; e < c.n_expert; e++) used += n[(size_t)l * c.n_expert + e] > 0;
      EXPECT_GT(used, c.n_expert_used) << "routing is degenerate in layer " << l;
    }
  }
  fwd.reset_expert_counts();
  EXPECT_EQ(std::accumulate(n.begin(), n.end(), uint64_t{0}), 0u);
}

}  // namespace
}  // namespace stepq
