// stepq quantize: RTN, HQQ or MiLo (HQQ plus low-rank compensators) quantization of a model's
// linear weights into a new GGUF. The source is a GGUF or a Hugging Face BERT folder
// (quant/source.h). Tensors are streamed one at a time: memory stays at a few copies of the
// largest weight whatever the model size.
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/thread_pool.h"
#include "cli/commands.h"
#include "formats/gguf_writer.h"
#include "quant/milo.h"
#include "quant/plan.h"
#include "quant/source.h"

namespace stepq::cli {

namespace {

struct QuantizeArgs {
  std::string model, out, method = "milo", policy = "dense-sparse", tensors, moe_stats, embeddings = "keep";
  std::string fit = "hqq";
  std::string rank_width = "model";
  std::string hq4;  // regex: tensors stored with 4-bit HQ4_64 weights instead of the base type
  int bits = 3, group = 0, iters = 8, dense_rank = 1024, sparse_rank = 32, ffn_rank = 0, kurtosis_shift = 2;
  int compensator_bits = 3;
  int expert_group = 0;  // routed experts' base group; 0: as --group
  double rank_budget = -1;  // effective bits per weight; −1: the method's default
  int threads = default_threads();
  bool quiet = false;
};

QType compensator_type(int bits) {
  switch (bits) {
    case 3: return QType::S3_32;
    case 4: return QType::Q4_0;
    case 8: return QType::Q8_0;
    case 16: return QType::F16;
  }
  fail("--compensator-bits must be 3, 4, 8 or 16, got {}", bits);
}

// --embeddings: the type the token embeddings and output head are stored as (nullopt: as they are).
std::optional<QType> embeddings_type(const std::string& name) {
  std::string u;
  for (char ch : name) u += (char)std::toupper((unsigned char)ch);
  if (u == "KEEP") return std::nullopt;
  const std::optional<QType> t = qtype_from_name(u);
  if (t && (*t == QType::F16 || *t == QType::Q8_0 || *t == QType::Q4_0 || *t == QType::HQ4_64 ||
            *t == QType::HQ3_32 || *t == QType::HQ3_64))  // the list --help gives
    return t;
  fail("--embeddings must be keep, f16, q8_0, q4_0, hq4_64, hq3_32 or hq3_64, got '{}'", name);
}

// A tensor-name filter given by `flag` (none when empty).
std::optional<std::regex> name_regex(const char* flag, const std::string& pattern) {
  if (pattern.empty()) return std::nullopt;
  try {
    return std::regex(pattern);
  } catch (const std::regex_error& e) {
    fail("{} '{}' is not a valid regular expression ({})", flag, pattern, e.what());
  }
}

// The type a weight with rows of `cols` gets when the base type's blocks do not fit them, as
// llama.cpp's K-quants fall back: S3_16 (blocks of 256) to HQ3_32, HQ3_32 and HQ3_128 (128) to HQ3_64;
// `base` itself when its blocks fit or nothing smaller does.
QType fallback_type(QType base, int64_t cols) {
  if (cols % qtype_info(base).block_size == 0) return base;
  if (base == QType::S3_16) return fallback_type(QType::HQ3_32, cols);
  if ((base == QType::HQ3_32 || base == QType::HQ3_128) && cols % 64 == 0) return QType::HQ3_64;
  return base;
}

bool is_embedding_or_head(const std::string& name) { return name == "token_embd.weight" || name == "output.weight"; }

// All of t quantized to `type`, 4096 rows at a time (the f32 copy stays small): plain types by
// their round-to-nearest quantizer, HQ types by HQQ (no compensator). Written to w as one tensor.
void write_embedding_tensor(const SourceTensor& t, QType type, GgufWriter& w, ThreadPool& pool) {
  const int64_t rows = t.ne[1], cols = t.ne[0], chunk = 4096;
  const std::optional<HqqParams> hq = hq_params(type);
  MiloParams mp;
  if (hq) mp.hqq = *hq;
  std::vector<uint8_t> out;
  out.reserve(row_bytes(type, cols) * (size_t)rows);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    const std::vector<float> x = t.rows_f32(r0, n);
    const std::vector<uint8_t> q =
        hq ? hqq_pack(milo_quantize(x.data(), n, cols, mp, pool).q) : quantize_rows(x.data(), n, cols, type);
    out.insert(out.end(), q.begin(), q.end());
  }
  w.write(t.name, out.data(), out.size());
}

std::string fmt_time(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", (int)s / 60, (int)s % 60);
  return fmt::format("{}h{:02d}m", (int)s / 3600, ((int)s % 3600) / 60);
}

// Routing shares from `stepq moe-stats --json`: share[layer][expert] = count / mean count.
std::vector<std::vector<double>> read_routing(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("cannot read --moe-stats file '{}'", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    fail("--moe-stats file '{}' is not JSON ({}); make it with: stepq moe-stats -m MODEL -f TEXT --json", path,
         e.what());
  }
  if (!j.contains("counts") || !j["counts"].is_array())
    fail("--moe-stats file '{}' has no 'counts' array (expected the output of stepq moe-stats --json)", path);
  std::vector<std::vector<double>> share;
  for (const auto& layer : j["counts"]) {
    std::vector<double> v;
    double total = 0;
    for (const auto& c : layer) {
      v.push_back(c.get<double>());
      total += v.back();
    }
    for (double& x : v) x = total > 0 ? x / total * (double)v.size() : 1.0;
    share.push_back(std::move(v));
  }
  return share;
}

void do_quantize(const QuantizeArgs& args) {
  const auto t_start = std::chrono::steady_clock::now();
  QuantizeArgs a = args;
  // 3 bits: groups of 32 with 8-bit scale/zero codes (HQ3_32, 3.625 bits/weight) measured far
  // better than groups of 64 with fp16 ones at nearly the same size (docs/milo.md).
  if (a.group == 0) a.group = a.bits == 3 ? 32 : 64;
  if (a.method != "rtn" && a.method != "hqq" && a.method != "milo")
    fail("--method must be rtn, hqq or milo, got '{}'", a.method);
  const bool milo = a.method == "milo";
  if (a.fit != "hqq" && a.fit != "mse") fail("--fit must be hqq or mse, got '{}'", a.fit);
  if (a.method == "rtn" && a.fit != "hqq") fail("--fit applies to --method hqq and milo; rtn has no fit");
  const QType base_type = hq_type(a.bits, a.group);
  if (base_type == QType::S3_16 && a.fit != "hqq")
    fail("--fit {}: groups of 16 (S3_16) are symmetric, with no zero to fit; their scales are always fitted "
         "by weighted least squares (llama.cpp's Q3_K fit)", a.fit);
  // MiLo at 3 bits: routed experts on groups of 128 (HQ3_128, 3.25 bits/weight), the bits saved
  // going to the compensators of attention and shared experts, which every token reads. On the
  // MoEfied Qwen2.5-Coder-0.5B this recovers 80% of HQQ3's perplexity gap against 45% with the
  // experts on HQ3_32 (docs/milo.md); dense models have no routed experts.
  if (a.expert_group == 0) a.expert_group = milo && a.bits == 3 ? 128 : a.group;
  const QType expert_type = hq_type(a.bits, a.expert_group);
  if (expert_type == QType::S3_16 && a.fit != "hqq")
    fail("--fit {}: --expert-group 16 (S3_16) is symmetric, with no zero to fit", a.fit);
  const QType comp_type = compensator_type(a.compensator_bits);
  RankParams rp;
  rp.policy = rank_policy_from_name(a.policy);
  rp.dense_rank = a.dense_rank;
  rp.sparse_rank = a.sparse_rank;
  rp.ffn_rank = a.ffn_rank;
  rp.kurtosis_shift = a.kurtosis_shift;
  rp.multiple = qtype_info(comp_type).block_size == 1 ? 8 : qtype_info(comp_type).block_size;
  if (rp.policy == RankPolicy::Frequency && a.moe_stats.empty())
    fail("--rank-policy frequency needs --moe-stats FILE (from: stepq moe-stats -m MODEL -f TEXT --json)");
  if (a.rank_width != "tensor" && a.rank_width != "model")
    fail("--rank-width must be tensor or model, got '{}'", a.rank_width);
  const std::optional<std::regex> only = name_regex("--tensors", a.tensors);
  const std::optional<std::regex> hq4 = name_regex("--hq4", a.hq4);
  const std::optional<QType> emb_type = embeddings_type(a.embeddings);
  auto src = QuantSource::open(a.model);
  for (const std::string& note : src->notes()) std::fprintf(stderr, "stepq quantize: %s\n", note.c_str());
  ThreadPool pool(a.threads);
  if (a.rank_width == "model")
    // The hidden size: every linear weight of a block has it on one side, so it is the largest
    // min(rows, cols) among them (counted over all of them, whatever --tensors selects).
    for (const SourceTensor& t : src->tensors())
      if (t.role != LinearRole::None) rp.width = std::max(rp.width, std::min(t.ne[0], t.ne[1]));
  const auto routing = a.moe_stats.empty() ? std::vector<std::vector<double>>{} : read_routing(a.moe_stats);

  // What to quantize: every matching linear weight (experts one by one).
  std::vector<QuantItem> items;
  std::vector<bool> quantized(src->tensors().size(), false);
  // Each tensor's packed type: base_type, or fallback_type's for rows its blocks do not fit
  // (SmolLM2's 576), as llama.cpp's K-quants fall back on rows their super-blocks do not fit.
  std::vector<QType> packed_type(src->tensors().size(), base_type);
  int skipped = 0;
  std::map<std::pair<QType, QType>, int> fallbacks;  // (type, the one used instead): tensors
  auto type_bpw = [](QType t) { return 8.0 * qtype_info(t).type_size / qtype_info(t).block_size; };
  double base_bits = 0;  // what the packed weights will cost
  for (size_t i = 0; i < src->tensors().size(); i++) {
    const SourceTensor& t = src->tensors()[i];
    if (t.role == LinearRole::None || (only && !std::regex_match(t.name, *only))) continue;
    QType type = t.role == LinearRole::RoutedExperts ? expert_type : base_type;
    if (hq4 && std::regex_match(t.name, *hq4)) type = QType::HQ4_64;
    if (const QType f = fallback_type(type, t.ne[0]); f != type) {
      fallbacks[{type, f}]++;
      type = f;
    }
    const int64_t block = qtype_info(type).block_size;
    if (t.ne[0] % block != 0 || t.ne[3] != 1) {
      std::fprintf(stderr, "stepq quantize: %s: row length %lld is not a multiple of %s's block of %lld; kept as %s\n",
                   t.name.c_str(), (long long)t.ne[0], qtype_name((uint32_t)type), (long long)block,
                   qtype_name((uint32_t)t.type));
      skipped++;
      continue;
    }
    packed_type[i] = type;
    quantized[i] = true;
    const bool stacked = t.role == LinearRole::RoutedExperts;
    const int64_t X = t.ne[2];
    for (int64_t e = 0; e < X; e++) {
      QuantItem it;
      it.tensor = t.name;
      it.expert = stacked ? (int)e : -1;
      it.layer = t.layer;
      it.rows = t.ne[1] * (stacked ? 1 : X);
      it.cols = t.ne[0];
      it.sparse = stacked;
      it.ffn = t.role == LinearRole::DenseFfn;
      if (stacked) {
        it.freq_share = 1.0;
        if (!routing.empty()) {
          if (it.layer < 0 || it.layer >= (int)routing.size() || (int64_t)routing[it.layer].size() != X)
            fail("--moe-stats '{}' has no routing counts for the {} experts of layer {} (was it made on this model?)",
                 a.moe_stats, X, it.layer);
          it.freq_share = routing[it.layer][e];
        }
      }
      base_bits += type_bpw(type) * (double)(it.rows * it.cols);
      items.push_back(std::move(it));
      if (!stacked) break;
    }
  }
  if (items.empty()) fail("{}: no tensor to quantize (see: stepq inspect {})", a.model, a.model);
  // --embeddings: token_embd and output (when the model has an untied head), whatever --tensors says.
  std::vector<bool> embedding(src->tensors().size(), false);
  if (emb_type) {
    int found = 0;
    for (size_t i = 0; i < src->tensors().size(); i++) {
      const SourceTensor& t = src->tensors()[i];
      if (!is_embedding_or_head(t.name)) continue;
      if (t.n_dims != 2 || t.ne[0] % qtype_info(*emb_type).block_size != 0)
        fail("--embeddings {}: {} has rows of {}, not a multiple of {}'s block of {}; use keep, f16 or q8_0",
             a.embeddings, t.name, t.ne[0], qtype_name((uint32_t)*emb_type), qtype_info(*emb_type).block_size);
      embedding[i] = true;
      found++;
    }
    if (!found)
      fail("--embeddings {}: {} has no token_embd.weight or output.weight tensor", a.embeddings, a.model);
  }

  int64_t n_weights = 0;
  for (const QuantItem& it : items) n_weights += it.rows * it.cols;
  if (milo && rp.policy == RankPolicy::Kurtosis) {
    std::fprintf(stderr, "stepq quantize: measuring weight kurtosis of %zu matrices\n", items.size());
    for (QuantItem& it : items) {
      const SourceTensor& t = *src->tensor(it.tensor);
      const int64_t r0 = it.expert >= 0 ? it.expert * it.rows : 0;
      std::vector<float> w = t.rows_f32(r0, it.rows);
      it.kurtosis = kurtosis(w.data(), (int64_t)w.size());
    }
  }
  for (const auto& [types, n] : fallbacks)
    std::fprintf(stderr, "stepq quantize: %d tensor(s) with rows %s's blocks of %d do not fit use %s\n", n,
                 qtype_name((uint32_t)types.first), qtype_info(types.first).block_size,
                 qtype_name((uint32_t)types.second));
  const double base_bpw = base_bits / (double)n_weights;
  double comp_bpw = 0;
  if (milo) {
    // Default: 3 bits fill 3.75 bits/weight (HQQ3 at groups of 64 plus 0.25, MiLo's target
    // size); other widths get 0.25 above their base.
    const double budget = a.rank_budget >= 0 ? a.rank_budget : a.bits == 3 ? std::max(3.75, base_bpw + 0.125)
                                                                           : base_bpw + 0.25;
    if (a.rank_budget == 0) comp_bpw = assign_ranks(items, rp, comp_type, 0);
    else {
      if (budget <= base_bpw)
        fail("--rank-budget {} bits/weight leaves nothing for compensators: {} alone costs {} bits/weight", budget,
             qtype_name((uint32_t)base_type), base_bpw);
      comp_bpw = assign_ranks(items, rp, comp_type, budget - base_bpw);
    }
  }

  // The output: every KV of the source, then tensors in source order, each quantized weight
  // followed by its compensators.
  GgufWriter w(a.out);
  for (const auto& [k, v] : src->metadata()) w.add_kv(k, v);
  w.add_kv("stepq.quantize.method", GgufValue{GgufType::STRING, a.method});
  w.add_kv("stepq.quantize.bits", GgufValue{GgufType::U32, (int64_t)a.bits});
  w.add_kv("stepq.quantize.group", GgufValue{GgufType::U32, (int64_t)a.group});
  bool has_experts = false;
  for (size_t i = 0; i < src->tensors().size(); i++)
    has_experts |= quantized[i] && src->tensors()[i].role == LinearRole::RoutedExperts;
  if (has_experts)
    w.add_kv("stepq.quantize.expert_group", GgufValue{GgufType::U32, (int64_t)a.expert_group});
  if (a.method != "rtn")
    w.add_kv("stepq.quantize.fit",
             GgufValue{GgufType::STRING, base_type == QType::S3_16 ? std::string("symmetric-wls") : a.fit});
  if (emb_type)
    w.add_kv("stepq.quantize.embeddings", GgufValue{GgufType::STRING, std::string(qtype_name((uint32_t)*emb_type))});
  if (milo) {
    w.add_kv("stepq.quantize.rank_policy", GgufValue{GgufType::STRING, std::string(rank_policy_name(rp.policy))});
    w.add_kv("stepq.quantize.rank_width", GgufValue{GgufType::U32, rp.width});
    w.add_kv("stepq.quantize.compensator_type",
             GgufValue{GgufType::STRING, std::string(qtype_name((uint32_t)comp_type))});
  }
  size_t next_item = 0;
  std::vector<std::pair<size_t, size_t>> item_range(src->tensors().size(), {0, 0});
  for (size_t i = 0; i < src->tensors().size(); i++) {
    const SourceTensor& t = src->tensors()[i];
    const int64_t ne[4] = {t.ne[0], t.ne[1], t.ne[2], t.ne[3]};
    if (!quantized[i]) {
      w.add_tensor(t.name, std::span<const int64_t>(ne, t.n_dims), embedding[i] ? *emb_type : t.type);
      continue;
    }
    w.add_tensor(t.name, std::span<const int64_t>(ne, t.n_dims), packed_type[i]);
    const size_t first = next_item;
    while (next_item < items.size() && items[next_item].tensor == t.name) {
      const QuantItem& it = items[next_item++];
      if (it.rank == 0) continue;
      const int64_t u_ne[2] = {it.rank, it.rows}, v_ne[2] = {it.cols, it.rank};
      w.add_tensor(it.lowrank_name('u'), u_ne, comp_type);
      w.add_tensor(it.lowrank_name('v'), v_ne, comp_type);
    }
    item_range[i] = {first, next_item};
  }
  w.begin_data();

  std::fprintf(stderr,
               "stepq quantize: %s -> %s: %s, %d-bit groups of %d (%s), %zu matrices, %.1fM weights, %d threads\n",
               a.model.c_str(), a.out.c_str(), a.method.c_str(), a.bits, a.group, qtype_name((uint32_t)base_type),
               items.size(), n_weights / 1e6, a.threads);
  if (milo)
    std::fprintf(stderr, "  compensators: %s, rank policy %s, %.3f bits/weight planned\n",
                 qtype_name((uint32_t)comp_type), rank_policy_name(rp.policy), comp_bpw);

  MiloParams mp;  // bits, group and scale precision are set per tensor from its packed type
  mp.hqq.fit = a.method == "rtn" ? HqqParams::Fit::Rtn : a.fit == "mse" ? HqqParams::Fit::Mse : HqqParams::Fit::Hqq;
  mp.iters = a.iters;
  mp.lowrank_type = comp_type;
  int64_t done_weights = 0;
  double base_bytes = 0, comp_bytes = 0, err2_before = 0, err2_after = 0, w2 = 0;
  size_t done_items = 0;
  for (size_t i = 0; i < src->tensors().size(); i++) {
    const SourceTensor& t = src->tensors()[i];
    if (!quantized[i]) {
      if (embedding[i]) {
        const auto t0 = std::chrono::steady_clock::now();
        write_embedding_tensor(t, *emb_type, w, pool);
        if (!a.quiet)
          std::fprintf(stderr, "  %-40s %5lldx%-5lld %s -> %s %.1fs\n", t.name.c_str(), (long long)t.ne[1],
                       (long long)t.ne[0], qtype_name((uint32_t)t.type), qtype_name((uint32_t)*emb_type),
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      } else {
        w.write(t.name, t.data, t.n_bytes);
      }
      continue;
    }
    std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> comps;  // U, V
    for (size_t k = item_range[i].first; k < item_range[i].second; k++) {
      const QuantItem& it = items[k];
      const auto t0 = std::chrono::steady_clock::now();
      const int64_t r0 = it.expert >= 0 ? it.expert * it.rows : 0;
      std::vector<float> W = t.rows_f32(r0, it.rows);
      mp.rank = it.rank;
      // HQ3_32 stores 8-bit scale and zero codes, S3_16 is symmetric; a fallback tensor has its own.
      const HqqParams tp = *hq_params(packed_type[i]);
      mp.hqq.bits = tp.bits;
      mp.hqq.group = tp.group;
      mp.hqq.meta_bits = tp.meta_bits;
      mp.hqq.symmetric = tp.symmetric;
      MiloResult res = milo_quantize(W.data(), it.rows, it.cols, mp, pool);
      const std::vector<uint8_t> packed = hqq_pack(res.q);
      w.write(t.name, packed.data(), packed.size());
      base_bytes += (double)packed.size();
      if (it.rank > 0) {
        comps.emplace_back(std::move(res.packed.U), std::move(res.packed.V));
        comp_bytes += (double)(comps.back().first.size() + comps.back().second.size());
      }
      const double wn = res.weight_norm * res.weight_norm;
      w2 += wn;
      err2_before += res.hqq_error * res.hqq_error;
      err2_after += res.stored_error * res.stored_error;
      done_weights += it.rows * it.cols;
      done_items++;
      if (!a.quiet) {
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double frac = (double)done_weights / (double)n_weights;
        std::string what = it.expert >= 0 ? fmt::format("{}[{}]", it.tensor, it.expert) : it.tensor;
        std::string detail = fmt::format("{}, rel.err {:.4f}",
                                         mp.hqq.fit == HqqParams::Fit::Hqq ? fmt::format("{} steps", res.q.iterations)
                                         : mp.hqq.fit == HqqParams::Fit::Mse ? std::string("lsq")
                                                                             : std::string("rtn"),
                                         res.hqq_error / std::sqrt(std::max(wn, 1e-30)));
        if (it.rank > 0)
          detail += fmt::format(" -> {:.4f} (rank {}, {} fits, best {})",
                                res.stored_error / std::sqrt(std::max(wn, 1e-30)), it.rank, res.errors.size(),
                                res.best);
        std::fprintf(stderr, "  [%zu/%zu] %-34s %5lldx%-5lld %s %.1fs | %3.0f%% ETA %s\n", done_items, items.size(),
                     what.c_str(), (long long)it.rows, (long long)it.cols, detail.c_str(), dt, 100 * frac,
                     fmt_time(el / frac * (1 - frac)).c_str());
      }
    }
    size_t c = 0;
    for (size_t k = item_range[i].first; k < item_range[i].second; k++) {
      const QuantItem& it = items[k];
      if (it.rank == 0) continue;
      w.write(it.lowrank_name('u'), comps[c].first.data(), comps[c].first.size());
      w.write(it.lowrank_name('v'), comps[c].second.data(), comps[c].second.size());
      c++;
    }
  }
  w.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  const double nw = (double)n_weights;
  std::printf("quantized %zu matrices (%.1fM weights) in %s%s\n", items.size(), nw / 1e6, fmt_time(secs).c_str(),
              skipped ? fmt::format(", {} kept as they were", skipped).c_str() : "");
  int n_hq4 = 0;
  if (base_type != QType::HQ4_64)
    for (size_t i = 0; i < packed_type.size(); i++) n_hq4 += quantized[i] && packed_type[i] == QType::HQ4_64;
  std::printf("  base:         %.3f bits/weight (%s%s%s)\n", base_bytes * 8 / nw, qtype_name((uint32_t)base_type),
              has_experts && expert_type != base_type ? fmt::format(", routed experts {}", qtype_name((uint32_t)expert_type)).c_str()
                                       : "",
              n_hq4 ? fmt::format(", {} tensor(s) HQ4_64", n_hq4).c_str() : "");
  if (milo)
    std::printf("  compensators: %.3f bits/weight (%s)\n", comp_bytes * 8 / nw, qtype_name((uint32_t)comp_type));
  std::printf("  effective:    %.3f bits/weight\n", (base_bytes + comp_bytes) * 8 / nw);
  std::printf("  weight error: %.4f relative (Frobenius)%s\n", std::sqrt(err2_before / std::max(w2, 1e-30)),
              milo ? fmt::format(", {:.4f} with compensators", std::sqrt(err2_after / std::max(w2, 1e-30)))
                         .c_str()
                   : "");
  std::printf("  wrote %s\n", a.out.c_str());
}

}  // namespace

void add_quantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* c = app.add_subcommand(
      "quantize",
      "Quantize a model's linear weights: RTN, HQQ or MiLo (HQQ plus low-rank compensators)");
  c->add_option("-m,--model", a->model, "Source model: a GGUF (any weight format) or a Hugging Face BERT folder")
      ->required()
      ->check(CLI::ExistingPath);
  c->add_option("-o,--out", a->out, "Output GGUF")->required();
  c->add_option("--method", a->method, "rtn, hqq or milo")->capture_default_str();
  c->add_option("--bits", a->bits, "Bits per weight code: 3 (groups of 16, 32, 64 or 128), 2 or 4 (groups of 64)")
      ->capture_default_str();
  c->add_option("--group", a->group,
                "Weights per scale/zero group along the input dimension: 32 (HQ3_32: 8-bit scale and zero codes; "
                "the default for 3 bits), 64 (fp16 scale and zero; the default for 2 and 4 bits), 128, or 16 (3 bits "
                "only: S3_16, symmetric with 5-bit scale codes, 3.375 bits/weight; scales fitted as llama.cpp's Q3_K)");
  c->add_option("--fit", a->fit,
                "How hqq and milo fit each group's scale and zero: hqq (HQQ's proximal loop on the zero, as "
                "published) or mse (least squared error: a clipping-range search, then least squares)")
      ->capture_default_str();
  c->add_option("--expert-group", a->expert_group,
                "Group of the routed experts' weights (MoE models), as --group; default: 128 for --method milo at 3 "
                "bits (the bits saved go to the compensators of attention and shared experts), else --group")
      ->check(CLI::IsMember({16, 32, 64, 128}));
  c->add_option("--hq4", a->hq4,
                "Tensors whose names fully match this regex get 4-bit weights (HQ4_64) instead of the base type; "
                "they count in --rank-budget");
  c->add_option("--iters", a->iters, "MiLo: quantize/refit alternations at most (stops early when they stop helping)")
      ->capture_default_str();
  c->add_option("--rank-policy", a->policy, "MiLo: uniform, dense-sparse, kurtosis or frequency")
      ->capture_default_str();
  c->add_option("--dense-rank", a->dense_rank,
                "MiLo: rank of attention and shared-expert compensators at width 4096 (scaled by width)")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  c->add_option("--rank-width", a->rank_width,
                "MiLo: the width ranks are scaled by: model (the hidden size, for every weight: grouped-query K and V "
                "get the rank Q and O get; measured better on every model) or tensor (each weight's min(rows, cols))")
      ->capture_default_str();
  c->add_option("--sparse-rank", a->sparse_rank, "MiLo: rank of routed-expert compensators at width 4096")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  c->add_option("--ffn-rank", a->ffn_rank,
                "MiLo: rank of dense (non-expert) FFN compensators at width 4096; 0 (the default) leaves a dense "
                "model's budget to attention, which measured best")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  c->add_option("--kurtosis-shift", a->kurtosis_shift, "MiLo kurtosis policy: s in 2^(round(kurtosis)+s)")
      ->capture_default_str();
  c->add_option("--rank-budget", a->rank_budget,
                "MiLo: effective bits/weight to fill (ranks scaled to fit); default 3.75 for 3 bits, else base + "
                "0.25; 0 = policy ranks as they are");
  c->add_option("--compensator-bits", a->compensator_bits, "MiLo: U, V storage: 3 (S3_32), 4 (Q4_0), 8 (Q8_0), 16 (F16)")
      ->capture_default_str();
  c->add_option("--moe-stats", a->moe_stats, "Routing counts for the frequency policy (stepq moe-stats --json)");
  c->add_option("--embeddings", a->embeddings,
                "Token embeddings and output head: keep (as in the source), f16, q8_0, q4_0, hq4_64 (HQQ 4-bit), "
                "hq3_32 or hq3_64 (HQQ 3-bit); the head is read once per token, so a smaller one decodes faster")
      ->capture_default_str();
  c->add_option("--tensors", a->tensors, "Only quantize tensors whose name fully matches this regex");
  c->add_option("-t,--threads", a->threads, "Threads")->capture_default_str();
  c->add_flag("-q,--quiet", a->quiet, "No per-tensor progress");
  c->callback([a] { do_quantize(*a); });
}

}  // namespace stepq::cli
