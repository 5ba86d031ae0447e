#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "base/error.h"
#include "base/thread_pool.h"
#include "kernels/cpu/ops.h"

namespace stepq {

namespace {

// Cache budgets of one task (a core's L2 is 1 MiB on the Zen 5 this was tuned on, 2 MiB on
// recent Intel cores): the task's weight rows and one block of quantized activation rows
// stay in L2 while the tile kernel sweeps the tokens past each group of rows. Larger token
// blocks amortize the kernels' per-row unpacking over more tokens (measured best at about
// half of L2 for the activations).
constexpr size_t kTaskWeightBytes = 384 << 10;
constexpr size_t kTokenBlockBytes = 512 << 10;
constexpr int64_t kMaxTokenBlock = 128;
constexpr int64_t kRowAlign = 4;  // a multiple of every tile kernel's row count

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

}  // namespace

size_t Linear::bytes() const {
  return row_stride * (size_t)out + (lowrank ? lowrank->U.bytes() + lowrank->V.bytes() : 0);
}

void linear_row_f32(const Linear& W, int64_t r, float* dst) {
  dequantize_row(W.type, W.data + (size_t)r * W.row_stride, dst, W.in);
}

namespace {

struct ActRows {
  const uint8_t* data;
  size_t row;  // bytes per token
};

// Converts x once to each distinct vec_dot type the targets need (Q8_K for Q4_K and Q6_K alike).
void convert_activations(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t x_stride,
                         ThreadPool& pool, MatmulScratch& scratch, ActRows* per_target) {
  QType types[MatmulScratch::kMaxActTypes];
  int n_types = 0;
  int64_t in = targets[0].W->in;
  int slot_of[8];
  if (targets.size() > 8) fail("matmul_multi: at most 8 weights, got {}", targets.size());
  for (size_t i = 0; i < targets.size(); i++) {
    if (targets[i].W->in != in) fail("matmul_multi: weights read {} and {} inputs", in, targets[i].W->in);
    const QType t = qtype_info(targets[i].W->type).vec_dot_type;
    int k = 0;
    while (k < n_types && types[k] != t) k++;
    if (k == n_types) {
      if (n_types == MatmulScratch::kMaxActTypes) fail("matmul_multi: too many activation formats");
      types[n_types++] = t;
    }
    slot_of[i] = k;
  }
  size_t rows[MatmulScratch::kMaxActTypes];
  for (int k = 0; k < n_types; k++) {
    rows[k] = row_bytes(types[k], in);
    if (scratch.act[k].size() < rows[k] * (size_t)n) scratch.act[k].resize(rows[k] * (size_t)n);
  }
  pool.parallel_for(n * n_types, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const int k = (int)(i % n_types);
      const int64_t t = i / n_types;
      quantize_row(types[k], x + t * x_stride, scratch.act[k].data() + (size_t)t * rows[k], in);
    }
  });
  for (size_t i = 0; i < targets.size(); i++) per_target[i] = {scratch.act[slot_of[i]].data(), rows[slot_of[i]]};
}

// Rows per task: a few large tasks per thread, enough to balance and few enough that the shared
// task counter (a cache line both cores write) is not touched every few kilobytes of weights.
// With many tokens a task is also capped to what fits in L2 (`task_row_bytes` per row), so each
// block of activations is fetched once per task rather than once per row.
int64_t rows_per_task(int64_t total_rows, size_t task_row_bytes, int64_t n, const ThreadPool& pool) {
  const int64_t tasks = (int64_t)pool.size() * 4;
  int64_t rows = std::max<int64_t>(8, (total_rows + tasks - 1) / tasks);
  if (n > 1) rows = std::min<int64_t>(rows, std::max<size_t>(1, kTaskWeightBytes / task_row_bytes));
  return round_up(rows, kRowAlign);
}

// Rows [r0, r1) of W for every token: the rows are read from memory once and stay in cache while
// every token is dotted with them, a block of tokens at a time.
void rows_block(const Linear& W, ActRows a, int64_t n, int64_t r0, int64_t r1, float* y, int64_t y_stride) {
  const int64_t token_block = std::clamp<int64_t>((int64_t)(kTokenBlockBytes / a.row) / 4 * 4, 4, kMaxTokenBlock);
  for (int64_t t0 = 0; t0 < n; t0 += token_block) {
    const int64_t nt = std::min(token_block, n - t0);
    vec_dot_tile(W.type, W.in, W.data + (size_t)r0 * W.row_stride, W.row_stride, r1 - r0, a.data + (size_t)t0 * a.row,
                 a.row, nt, y + t0 * y_stride + r0, y_stride);
  }
  if (W.bias)
    for (int64_t t = 0; t < n; t++)
      for (int64_t r = r0; r < r1; r++) y[t * y_stride + r] += W.bias[r];
}

}  // namespace

namespace {

// y += U (V x) for the targets with a compensator: every V in one dispatch (they read the same x),
// then each U. Runs after the main product, whose scratch it reuses.
void add_lowrank(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t x_stride, ThreadPool& pool,
                 MatmulScratch& scratch) {
  MatmulTarget vt[8];
  int64_t offset[8], total = 0;
  size_t m = 0;
  for (const MatmulTarget& t : targets)
    if (t.W->lowrank) {
      offset[m] = total;
      total += t.W->lowrank->rank();
      vt[m++] = {&t.W->lowrank->V, nullptr, 0};
    }
  if (m == 0) return;
  std::vector<float>& tv = scratch.lowrank_t;
  if (tv.size() < (size_t)(n * total)) tv.resize((size_t)(n * total));
  for (size_t i = 0; i < m; i++) vt[i] = {vt[i].W, tv.data() + offset[i], total};
  matmul_multi({vt, m}, x, n, x_stride, pool, scratch);
  size_t i = 0;
  for (const MatmulTarget& t : targets) {
    if (!t.W->lowrank) continue;
    const Linear& U = t.W->lowrank->U;
    std::vector<float>& u = scratch.lowrank_y;
    if (u.size() < (size_t)(n * U.out)) u.resize((size_t)(n * U.out));
    const MatmulTarget ut{&U, u.data(), U.out};
    matmul_multi({&ut, 1}, tv.data() + offset[i++], n, total, pool, scratch);
    for (int64_t k = 0; k < n; k++) {
      float* y = t.y + k * t.y_stride;
      const float* d = u.data() + k * U.out;
      for (int64_t r = 0; r < U.out; r++) y[r] += d[r];
    }
  }
}

bool any_lowrank(std::span<const MatmulGroup> groups) {
  for (const MatmulGroup& g : groups)
    if (g.n > 0 && (g.W->lowrank || (g.W_up && g.W_up->lowrank))) return true;
  return false;
}

}  // namespace

void matmul_multi(std::span<const MatmulTarget> targets, const float* x, int64_t n, int64_t x_stride,
                  ThreadPool& pool, MatmulScratch& scratch) {
  if (n <= 0 || targets.empty()) return;
  ActRows act[8];
  convert_activations(targets, x, n, x_stride, pool, scratch, act);
  int64_t total_rows = 0;
  for (const MatmulTarget& m : targets) total_rows += m.W->out;
  scratch.tasks.clear();
  for (size_t i = 0; i < targets.size(); i++) {
    const Linear& W = *targets[i].W;
    const int64_t step = rows_per_task(total_rows, W.row_stride, n, pool);
    for (int64_t r0 = 0; r0 < W.out; r0 += step) scratch.tasks.push_back({(int)i, r0, std::min(W.out, r0 + step)});
  }
  pool.parallel_for((int64_t)scratch.tasks.size(), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const MatmulScratch::Task& task = scratch.tasks[i];
      const MatmulTarget& m = targets[task.target];
      rows_block(*m.W, act[task.target], n, task.r0, task.r1, m.y, m.y_stride);
    }
  });
  add_lowrank(targets, x, n, x_stride, pool, scratch);
}

void matmul(const Linear& W, const float* x, int64_t n, int64_t x_stride, float* y, int64_t y_stride,
            ThreadPool& pool, MatmulScratch& scratch) {
  const MatmulTarget target{&W, y, y_stride};
  matmul_multi({&target, 1}, x, n, x_stride, pool, scratch);
}

namespace {

void apply_glu(Glu glu, float* gate, const float* up, int64_t n, int64_t y_stride, int64_t r0, int64_t r1) {
  for (int64_t t = 0; t < n; t++) {
    float* g = gate + t * y_stride + r0;
    const float* u = up + t * y_stride + r0;
    if (glu == Glu::GeLU) geglu(g, u, g, (int)(r1 - r0));
    else swiglu(g, u, g, (int)(r1 - r0));
  }
}

// Shared body of the grouped matmuls: activations converted once for all rows, then one task
// list over (group, row block).
void grouped(std::span<const MatmulGroup> groups, const Glu* glu, const float* x, int64_t x_stride, float* y,
             float* up, int64_t y_stride, ThreadPool& pool, MatmulScratch& scratch) {
  int64_t n_rows = 0, total_rows = 0, max_n = 0;
  const MatmulGroup* first = nullptr;
  for (const MatmulGroup& g : groups) {
    if (g.n <= 0) continue;
    if (!first) first = &g;
    if (g.W->in != first->W->in || g.W->type != first->W->type || (glu && g.W_up->type != first->W_up->type) ||
        (glu && g.W_up->out != g.W->out))
      fail("matmul_grouped: the groups' weights differ in shape or format");
    n_rows = std::max(n_rows, g.row0 + g.n);
    total_rows += g.W->out * (glu ? 2 : 1);
    max_n = std::max(max_n, g.n);
  }
  if (!first) return;
  const MatmulTarget targets[2] = {{first->W, y, y_stride}, {glu ? first->W_up : first->W, up, y_stride}};
  ActRows act[2];
  convert_activations({targets, glu ? 2u : 1u}, x, n_rows, x_stride, pool, scratch, act);
  if (!glu) act[1] = act[0];
  const size_t task_row_bytes = first->W->row_stride + (glu ? first->W_up->row_stride : 0);
  scratch.tasks.clear();
  for (size_t i = 0; i < groups.size(); i++) {
    const MatmulGroup& g = groups[i];
    if (g.n <= 0) continue;
    const int64_t step = rows_per_task(total_rows / (glu ? 2 : 1), task_row_bytes, g.n, pool);
    for (int64_t r0 = 0; r0 < g.W->out; r0 += step) scratch.tasks.push_back({(int)i, r0, std::min(g.W->out, r0 + step)});
  }
  pool.parallel_for((int64_t)scratch.tasks.size(), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const MatmulScratch::Task& task = scratch.tasks[i];
      const MatmulGroup& g = groups[task.target];
      float* yg = y + g.row0 * y_stride;
      rows_block(*g.W, {act[0].data + (size_t)g.row0 * act[0].row, act[0].row}, g.n, task.r0, task.r1, yg, y_stride);
      if (glu) {
        float* ug = up + g.row0 * y_stride;
        rows_block(*g.W_up, {act[1].data + (size_t)g.row0 * act[1].row, act[1].row}, g.n, task.r0, task.r1, ug,
                   y_stride);
        apply_glu(*glu, yg, ug, g.n, y_stride, task.r0, task.r1);
      }
    }
  });
}

}  // namespace

void matmul_grouped(std::span<const MatmulGroup> groups, const float* x, int64_t x_stride, float* y,
                    int64_t y_stride, ThreadPool& pool, MatmulScratch& scratch) {
  if (any_lowrank(groups)) {  // compensated experts: one matmul per group
    for (const MatmulGroup& g : groups)
      if (g.n > 0) matmul(*g.W, x + g.row0 * x_stride, g.n, x_stride, y + g.row0 * y_stride, y_stride, pool, scratch);
    return;
  }
  grouped(groups, nullptr, x, x_stride, y, nullptr, y_stride, pool, scratch);
}

void matmul_glu_grouped(std::span<const MatmulGroup> groups, Glu glu, const float* x, int64_t x_stride, float* gate,
                        float* up, int64_t y_stride, ThreadPool& pool, MatmulScratch& scratch) {
  if (any_lowrank(groups)) {
    for (const MatmulGroup& g : groups)
      if (g.n > 0)
        matmul_glu(*g.W, *g.W_up, glu, x + g.row0 * x_stride, g.n, x_stride, gate + g.row0 * y_stride,
                   up + g.row0 * y_stride, y_stride, pool, scratch);
    return;
  }
  grouped(groups, &glu, x, x_stride, gate, up, y_stride, pool, scratch);
}

void matmul_glu(const Linear& W_gate, const Linear& W_up, Glu glu, const float* x, int64_t n, int64_t x_stride,
                float* gate, float* up, int64_t y_stride, ThreadPool& pool, MatmulScratch& scratch) {
  if (n <= 0) return;
  if (W_gate.out != W_up.out)
    fail("matmul_glu: gate has {} outputs but up has {}", W_gate.out, W_up.out);
  const MatmulTarget targets[2] = {{&W_gate, gate, y_stride}, {&W_up, up, y_stride}};
  if (W_gate.lowrank || W_up.lowrank) {  // the compensators must be in before the activation
    matmul_multi(targets, x, n, x_stride, pool, scratch);
    pool.parallel_for(W_gate.out, 256, [&](int64_t r0, int64_t r1) { apply_glu(glu, gate, up, n, y_stride, r0, r1); });
    return;
  }
  ActRows act[2];
  convert_activations(targets, x, n, x_stride, pool, scratch, act);
  const int64_t F = W_gate.out;
  const int64_t step = rows_per_task(2 * F, W_gate.row_stride + W_up.row_stride, n, pool);
  pool.parallel_for(F, step, [&](int64_t r0, int64_t r1) {
    rows_block(W_gate, act[0], n, r0, r1, gate, y_stride);
    rows_block(W_up, act[1], n, r0, r1, up, y_stride);
    apply_glu(glu, gate, up, n, y_stride, r0, r1);
  });
}

}  // namespace stepq
