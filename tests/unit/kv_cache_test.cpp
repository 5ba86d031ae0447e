// The paged KV cache: page accounting (fork, copy on write, rollback, budget) on a synthetic
// shape, then fork / diverge / roll back on every real architecture with the logits compared
// to a recomputation from scratch.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "base/error.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/model.h"
#include "runtime/kv_cache.h"
#include "test_models.h"

namespace stepq {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head_kv = 2;
  c.head_dim = 4;
  return c;
}

TEST(KvPool, ForkSharesPagesAndCopiesOnWrite) {
  const ModelConfig c = tiny_config();
  auto pool = std::make_shared<KvPool>(c, 8, 4);
  KvCache a(pool, 32);
  a.prepare(6);  // two pages, the second half full
  uint16_t* k = pool->v(a.page_of(5), 1, 1) + a.row_of(5) * c.head_dim;
  k[0] = 1234;
  a.set_length(6);
  EXPECT_EQ(pool->free_pages(), 6);

  auto b = a.fork();
  EXPECT_EQ(pool->free_pages(), 6);  // nothing copied
  EXPECT_EQ(pool->refcount(a.pages()[0]), 2);
  EXPECT_EQ(b->pages_needed(7), 1);  // its last page is shared: writing copies it
  b->prepare(7);
  EXPECT_EQ(pool->free_pages(), 5);
  EXPECT_EQ(a.pages()[0], b->pages()[0]);  // the full page stays shared
  EXPECT_NE(a.pages()[1], b->pages()[1]);
  EXPECT_EQ(pool->v(b->page_of(5), 1, 1)[a.row_of(5) * c.head_dim], 1234);  // the copy has the data
  EXPECT_EQ(pool->refcount(a.pages()[1]), 1);
  EXPECT_EQ(a.pages_needed(7), 0);  // the parent's page is its own again: written in place

  // Roll back into the shared first page: the next write copies that one too.
  b->set_length(7);
  b->truncate(2);
  EXPECT_EQ(b->pages().size(), 1u);
  EXPECT_EQ(pool->free_pages(), 6);
  EXPECT_EQ(b->pages_needed(3), 1);
  b->prepare(3);
  EXPECT_NE(a.pages()[0], b->pages()[0]);
  EXPECT_EQ(pool->refcount(a.pages()[0]), 1);

  b.reset();  // freeing a sequence returns its pages
  EXPECT_EQ(pool->free_pages(), 6);
  a.truncate(0);
  EXPECT_EQ(pool->free_pages(), 8);
}

TEST(KvPool, BudgetExhaustionIsAnErrorAndTakesNothing) {
  const ModelConfig c = tiny_config();
  auto pool = std::make_shared<KvPool>(c, 3, 4);
  KvCache a(pool, 100);
  a.prepare(8);
  a.set_length(8);
  KvCache b(pool, 100);
  try {
    b.prepare(9);  // needs 3 pages, 1 free
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("budget exhausted"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool->free_pages(), 1);
  EXPECT_TRUE(b.pages().empty());
  EXPECT_THROW(a.prepare(101), Error);  // past the sequence's own context limit
  EXPECT_THROW(a.truncate(9), Error);   // cannot roll forward
  EXPECT_THROW(KvPool(c, 0, 4), Error);
  try {  // larger than this machine's memory: refused up front, not an OOM kill later
    KvPool huge(c, INT32_MAX, 4096);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than this machine's memory"), std::string::npos) << e.what();
  }
  EXPECT_THROW(KvPool(c, 4, 0), Error);
}

// Logits of `tokens` computed in one forward from an empty cache (the last `n_last` rows).
std::vector<float> from_scratch(Forward& fwd, const std::vector<int32_t>& tokens, int n_last) {
  const ModelConfig& c = fwd.model().config();
  KvCache kv(c, (int)tokens.size());
  SequenceInput in{&kv, tokens, true};
  auto l = fwd.run({&in, 1});
  return std::vector<float>(l.end() - (ptrdiff_t)n_last * c.n_vocab, l.end());
}

// The forward's logits are valid until its next run: keep a copy.
std::vector<float> copy(std::span<const float> l) { return {l.begin(), l.end()}; }

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void expect_rows_equal(const float* got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(std::memcmp(got, want.data(), want.size() * sizeof(float)), 0) << what;
}

// A parent and two forks decode together in one batch (one of them crossing a page boundary,
// two writing into the page they share), then roll back into shared pages and diverge; every
// step is compared with a recomputation of the same tokens from scratch.
void check_fork_diverge_rollback(const std::string& name, int page_tokens) {
  auto model = Model::load(test::model_path(name));
  const ModelConfig& c = model->config();
  Forward fwd(*model, 2);
  std::mt19937 rng(5);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (auto& x : t) x = (int32_t)(rng() % (uint32_t)std::min(c.n_vocab, 30000));
    return t;
  };
  auto pool = std::make_shared<KvPool>(c, 64, page_tokens);
  const std::vector<int32_t> prompt = random_tokens(21);
  KvCache parent(pool, 200);
  {
    SequenceInput in{&parent, prompt, false};
    fwd.run({&in, 1});
  }
  auto a = parent.fork(), b = parent.fork();
  const std::vector<int32_t> tp = random_tokens(3), ta = random_tokens(1), tb = random_tokens(20);
  {
    SequenceInput batch[] = {{&parent, tp, true}, {a.get(), ta, true}, {b.get(), tb, true}};
    const std::vector<float> l = copy(fwd.run(batch));
    expect_rows_equal(l.data() + (size_t)fwd.output_offset(0) * c.n_vocab, from_scratch(fwd, concat(prompt, tp), 3),
                      name + " parent after fork");
    expect_rows_equal(l.data() + (size_t)fwd.output_offset(1) * c.n_vocab, from_scratch(fwd, concat(prompt, ta), 1),
                      name + " fork a");
    expect_rows_equal(l.data() + (size_t)fwd.output_offset(2) * c.n_vocab, from_scratch(fwd, concat(prompt, tb), 20),
                      name + " fork b");
  }
  // Roll b back into the first page (shared with both others), diverge; roll the parent back to
  // mid-prompt and diverge too.
  b->truncate(page_tokens / 2);
  parent.truncate(18);
  const std::vector<int32_t> tb2 = random_tokens(page_tokens + 3), tp2 = random_tokens(2);
  {
    SequenceInput batch[] = {{b.get(), tb2, true}, {&parent, tp2, false}};
    const std::vector<float> l = copy(fwd.run(batch));
    std::vector<int32_t> b_all(prompt.begin(), prompt.begin() + page_tokens / 2);
    expect_rows_equal(l.data(), from_scratch(fwd, concat(b_all, tb2), (int)tb2.size()), name + " b rolled back");
    std::vector<int32_t> p_all(prompt.begin(), prompt.begin() + 18);
    expect_rows_equal(l.data() + (size_t)fwd.output_offset(1) * c.n_vocab, from_scratch(fwd, concat(p_all, tp2), 1),
                      name + " parent rolled back");
  }
  // a was untouched by all of that.
  const std::vector<int32_t> ta2 = random_tokens(1);
  {
    SequenceInput in{a.get(), ta2, false};
    const std::vector<float> l = copy(fwd.run({&in, 1}));
    expect_rows_equal(l.data(), from_scratch(fwd, concat(concat(prompt, ta), ta2), 1), name + " fork a again");
  }
  a.reset();
  b.reset();
  parent.truncate(0);
  EXPECT_EQ(pool->free_pages(), pool->n_pages()) << name << ": pages leaked";
}

TEST(KvCacheModels, ForkDivergeRollbackLlama) { check_fork_diverge_rollback("smollm2", 16); }
TEST(KvCacheModels, ForkDivergeRollbackLlamaOddPages) { check_fork_diverge_rollback("smollm2", 5); }
TEST(KvCacheModels, ForkDivergeRollbackGemma3) { check_fork_diverge_rollback("gemma3", 16); }
TEST(KvCacheModels, ForkDivergeRollbackQwen2) { check_fork_diverge_rollback("qwen0.5b", 7); }

// Gemma 3's sliding window (512) crossed while decoding with small odd pages: the incremental
// logits equal one forward over all tokens.
TEST(KvCacheModels, SlidingWindowAcrossPages) {
  auto model = Model::load(test::model_path("gemma3"));
  const ModelConfig& c = model->config();
  ASSERT_GT(c.n_swa, 0);
  Forward fwd(*model, 2);
  std::mt19937 rng(11);
  std::vector<int32_t> tokens(c.n_swa + 9);
  for (auto& x : tokens) x = (int32_t)(rng() % 30000);
  auto pool = std::make_shared<KvPool>(c, KvPool::pages_for(tokens.size(), 13), 13);
  KvCache kv(pool, (int)tokens.size());
  const int head = c.n_swa - 4;
  SequenceInput in{&kv, {tokens.data(), (size_t)head}, false};
  fwd.run({&in, 1});
  std::vector<float> inc;
  for (size_t i = head; i < tokens.size(); i++) {
    in = SequenceInput{&kv, {tokens.data() + i, 1}, false};
    auto l = fwd.run({&in, 1});
    inc.insert(inc.end(), l.begin(), l.end());
  }
  expect_rows_equal(inc.data(), from_scratch(fwd, tokens, (int)(tokens.size() - head)), "gemma3 sliding window");
}

// A batch that does not fit in the pool is refused before anything is written.
TEST(KvCacheModels, ForwardOverBudgetLeavesCachesAlone) {
  auto model = Model::load(test::model_path("smollm2"));
  const ModelConfig& c = model->config();
  Forward fwd(*model, 1);
  auto pool = std::make_shared<KvPool>(c, 3, 16);
  KvCache a(pool, 100), b(pool, 100);
  std::vector<int32_t> ta(20, 7), tb(20, 9);
  SequenceInput batch[] = {{&a, ta, false}, {&b, tb, false}};  // 2 + 2 pages > 3
  EXPECT_THROW(fwd.run(batch), Error);
  EXPECT_EQ(a.length(), 0);
  EXPECT_EQ(b.length(), 0);
  EXPECT_EQ(pool->free_pages(), 3);
  fwd.run({batch, 1});  // one of them alone fits
  EXPECT_EQ(a.length(), 20);
}

}  // namespace
}  // namespace stepq
