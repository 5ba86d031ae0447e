// BERT sentence encoder (all-MiniLM-L6-v2 and other BertModel checkpoints) from a Hugging Face
// folder: config.json, model.safetensors, tokenizer.json (and, when present, the
// sentence-transformers files 1_Pooling/config.json and sentence_bert_config.json), or from the
// "stepq-bert" GGUF that `stepq quantize` makes of such a folder: the same text files as string
// KVs, the tensors under their Hugging Face names, linear weights in any format the matmul reads
// and with MiLo compensators (docs/formats.md "BERT in GGUF").
//
// Forward in f32, as HF BertModel in eval mode: word + position + token-type(0) embeddings,
// LayerNorm, then per layer bidirectional self-attention and an erf-GELU FFN, each followed by
// residual + LayerNorm (post-LN). The embedding is the mean of the last hidden states over the
// sequence's tokens ([CLS] and [SEP] included, as the attention mask has them), L2-normalized.
//
// Batching packs the sequences' tokens into one matrix (no padding rows): the linear layers run
// once over all tokens and attention stays within each sequence, which is what padding plus an
// attention mask computes, without the padded work. A sequence's vector does not depend on the
// batch it is in (the matmul kernels give each row the same result whatever the row count).
#pragma once
#include <cstdint>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu/matmul.h"

namespace stepq {

class GgufFile;
class SafetensorsFile;
class ThreadPool;
class WordPieceTokenizer;

// general.architecture of a BERT GGUF written by stepq quantize (a stepq-private layout).
inline constexpr const char* kBertGgufArchitecture = "stepq-bert";

// The text files BertModel reads from a folder, and the string KVs that hold them verbatim in a
// stepq-bert GGUF. The order is fixed: config, tokenizer, then the optional sentence-transformers files.
struct BertTextFile {
  const char* file;  // relative to the folder
  const char* key;   // GGUF string KV
  bool required;
};
inline constexpr BertTextFile kBertTextFiles[] = {
    {"config.json", "stepq.hf.config_json", true},
    {"tokenizer.json", "stepq.hf.tokenizer_json", true},
    {"sentence_bert_config.json", "stepq.hf.sentence_bert_config_json", false},
    {"1_Pooling/config.json", "stepq.hf.pooling_config_json", false},
};
inline constexpr size_t kNumBertTextFiles = std::size(kBertTextFiles);

struct BertConfig {
  int hidden = 0, n_layers = 0, n_heads = 0, intermediate = 0;
  int max_position = 0, vocab = 0, type_vocab = 0;
  float ln_eps = 1e-12f;
  int max_seq_len = 0;  // inputs are truncated to this many tokens (sentence_bert_config's, else max_position)

  // config.json text; `what` names it in errors. Refuses non-BERT models and any hidden_act but "gelu".
  static BertConfig from_json(std::string_view text, const std::string& what);

 private:
  static BertConfig from_json_checked(std::string_view text, const std::string& what);
};

class BertModel {
 public:
  // Loads a Hugging Face folder or a stepq-bert GGUF file. Throws Error naming the folder or file
  // and the missing or bad part (a GGUF of another architecture included).
  static std::unique_ptr<BertModel> load(const std::string& path);
  // Binds the weights of `st` for config `c` (no tokenizer: embed_ids only). Throws Error naming
  // a missing tensor, a wrong shape or an unsupported dtype.
  static std::unique_ptr<BertModel> from_parts(const BertConfig& c, std::unique_ptr<SafetensorsFile> st);
  ~BertModel();

  const BertConfig& config() const { return cfg_; }
  int dim() const { return cfg_.hidden; }
  const WordPieceTokenizer& tokenizer() const;  // throws if the model has none

  // One forward over several token sequences (each already with its special tokens, at most
  // max_seq_len long, non-empty). out: seqs.size() x dim() floats, each row L2-normalized.
  void embed_ids(std::span<const std::vector<int32_t>> seqs, float* out, ThreadPool& pool) const;
  // Tokenizes (truncating to max_seq_len) and embeds, `batch` texts per forward.
  std::vector<std::vector<float>> embed(std::span<const std::string> texts, ThreadPool& pool, int batch = 32,
                                        int64_t* n_tokens = nullptr) const;

 private:
  struct Layer {
    Linear q, k, v, o, up, down;
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  };
  // A tensor of either file in Hugging Face order: shape row-major, the last dimension contiguous
  // (a GGUF's ne reversed).
  struct TensorRef {
    std::string name;
    std::vector<int64_t> shape;
    QType type = QType::F32;
    const char* unsupported = nullptr;  // a safetensors dtype with no QType (I64, ...): its name
    const uint8_t* data = nullptr;
  };
  // The folder's text files (kBertTextFiles order), nullopt where absent, and how errors name each.
  struct Texts {
    std::optional<std::string> text[kNumBertTextFiles];
    std::string what[kNumBertTextFiles];
  };

  BertModel() = default;
  static void read_sentence_transformers(const Texts& tx, BertConfig& c);
  const std::string& weights_path() const;
  std::optional<TensorRef> find(const std::string& name) const;
  TensorRef tensor(const std::string& name, std::initializer_list<int64_t> shape) const;
  void bind();
  const float* f32(const std::string& name, std::initializer_list<int64_t> shape);
  Linear linear(const std::string& prefix, int64_t out, int64_t in);

  BertConfig cfg_;
  std::string prefix_;  // "" or "bert." before every tensor name
  std::unique_ptr<SafetensorsFile> st_;  // the weights: one of these two
  std::unique_ptr<GgufFile> gguf_;
  std::deque<LowRankLinear> lowrank_;  // compensators the Linears point to (GGUF)
  std::unique_ptr<WordPieceTokenizer> tok_;
  std::deque<std::vector<float>> owned_;  // f32 copies of F16/BF16/misaligned tensors (stable addresses)
  const float *word_ = nullptr, *pos_ = nullptr, *type_ = nullptr, *emb_ln_w_ = nullptr, *emb_ln_b_ = nullptr;
  std::vector<Layer> layers_;
};

}  // namespace stepq
