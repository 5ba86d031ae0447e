#include "quant/plan.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <regex>

#include "base/error.h"

namespace stepq {

RankPolicy rank_policy_from_name(const std::string& s) {
  if (s == "uniform") return RankPolicy::Uniform;
  if (s == "dense-sparse") return RankPolicy::DenseSparse;
  if (s == "kurtosis") return RankPolicy::Kurtosis;
  if (s == "frequency") return RankPolicy::Frequency;
  fail("unknown rank policy '{}'; use uniform, dense-sparse, kurtosis or frequency", s);
}

const char* rank_policy_name(RankPolicy p) {
  switch (p) {
    case RankPolicy::Uniform: return "uniform";
    case RankPolicy::DenseSparse: return "dense-sparse";
    case RankPolicy::Kurtosis: return "kurtosis";
    case RankPolicy::Frequency: return "frequency";
  }
  return "?";
}

std::string QuantItem::lowrank_name(char which) const {
  std::string base = tensor;
  const std::string suffix = ".weight";
  if (base.size() > suffix.size() && base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0)
    base.resize(base.size() - suffix.size());
  std::string n = base + (which == 'u' ? ".milo_u" : ".milo_v");
  if (expert >= 0) n += "." + std::to_string(expert);
  return n;
}

bool is_quantizable_weight(const std::string& name) {
  static const std::regex re(
      R"(blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down|ffn_gate_exps|ffn_up_exps|ffn_down_exps|ffn_gate_shexp|ffn_up_shexp|ffn_down_shexp)\.weight)");
  return std::regex_match(name, re);
}

int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  int l = 0;
  size_t i = 4;
  if (i >= name.size() || !std::isdigit((unsigned char)name[i])) return -1;
  while (i < name.size() && std::isdigit((unsigned char)name[i])) l = l * 10 + (name[i++] - '0');
  return l;
}

namespace {
int round_rank(double r, int multiple, int64_t limit) {
  const int64_t cap = limit / multiple * multiple;
  int64_t v = (int64_t)std::llround(r / multiple) * multiple;
  return (int)std::clamp<int64_t>(v, 0, cap);
}
}  // namespace

namespace {
// The policy's rank before rounding: at width 4096, scaled by RankParams::width (or this
// weight's own width).
double policy_rank_raw(const QuantItem& it, const RankParams& p) {
  const double width = (double)(p.width > 0 ? p.width : std::min(it.rows, it.cols)) / 4096.0;
  double r = 0;
  switch (p.policy) {
    case RankPolicy::Uniform: r = p.dense_rank; break;
    case RankPolicy::DenseSparse: r = it.sparse ? p.sparse_rank : it.ffn ? p.ffn_rank : p.dense_rank; break;
    case RankPolicy::Kurtosis:
      if (it.kurtosis < 1) r = 0;
      else if (it.kurtosis > 9) r = p.dense_rank;
      else r = std::min<double>(p.dense_rank, std::ldexp(1.0, (int)std::lround(it.kurtosis) + p.kurtosis_shift));
      break;
    case RankPolicy::Frequency:
      // Routed experts share the layer's sparse ranks by how often they are chosen; the others
      // as under dense-sparse.
      r = it.sparse ? it.freq_share * p.sparse_rank : it.ffn ? p.ffn_rank : p.dense_rank;
      break;
  }
  return r * width;
}
}  // namespace

int policy_rank(const QuantItem& it, const RankParams& p, double scale) {
  return round_rank(policy_rank_raw(it, p) * scale, p.multiple, std::min(it.rows, it.cols));
}

double lowrank_bits(int64_t rows, int64_t cols, int r, QType type) {
  const QTypeInfo& i = qtype_info(type);
  return (double)r * (double)(rows + cols) * 8.0 * i.type_size / i.block_size;
}

double assign_ranks(std::vector<QuantItem>& items, const RankParams& p, QType lowrank_type, double budget) {
  double weights = 0;
  for (const QuantItem& it : items) weights += (double)it.rows * (double)it.cols;
  if (weights <= 0) return 0;
  double bits = 0;
  if (budget <= 0) {
    for (QuantItem& it : items) {
      it.rank = policy_rank(it, p);
      bits += lowrank_bits(it.rows, it.cols, it.rank, lowrank_type);
    }
    return bits / weights;
  }
  // Budget: hand out rank in steps of p.multiple, each step to the weight whose rank is furthest
  // below its share (policy rank / (rank + step) largest), while the step still fits. Ranks end
  // up proportional to the policy's, as far as the rounding allows, and never above what would
  // cost more than the weight itself.
  double left = budget * weights;
  using Entry = std::pair<double, size_t>;
  std::priority_queue<Entry> pq;
  std::vector<double> want(items.size());
  for (size_t i = 0; i < items.size(); i++) {
    items[i].rank = 0;
    want[i] = policy_rank_raw(items[i], p);
    if (want[i] > 0) pq.push({want[i] / p.multiple, i});
  }
  while (!pq.empty()) {
    const size_t i = pq.top().second;
    pq.pop();
    QuantItem& it = items[i];
    const int next = it.rank + p.multiple;
    const double cost = lowrank_bits(it.rows, it.cols, p.multiple, lowrank_type);
    const bool worth = (double)next * (double)(it.rows + it.cols) < (double)it.rows * (double)it.cols;
    if (!worth || next > std::min(it.rows, it.cols) || cost > left) continue;
    it.rank = next;
    left -= cost;
    bits += cost;
    pq.push({want[i] / (next + p.multiple), i});
  }
  return bits / weights;
}

double kurtosis(const float* x, int64_t n) {
  if (n <= 0) return 0;
  double mean = 0;
  for (int64_t i = 0; i < n; i++) mean += x[i];
  mean /= (double)n;
  double m2 = 0, m4 = 0;
  for (int64_t i = 0; i < n; i++) {
    const double d = x[i] - mean, d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= (double)n;
  m4 /= (double)n;
  return m2 > 0 ? m4 / (m2 * m2) - 3.0 : 0;
}

}  // namespace stepq
