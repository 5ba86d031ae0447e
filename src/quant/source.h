// What `stepq quantize` reads: a GGUF file, or a Hugging Face BERT folder (all-MiniLM-L6-v2), each
// seen as the GGUF it becomes: tensors in GGUF dimension order with their stored bytes, the
// metadata to carry over, and which tensors are linear weights to quantize (and what kind, for
// the rank policies). The output keeps every tensor under its source name.
//
// A BERT folder becomes a "stepq-bert" GGUF (docs/formats.md "BERT in GGUF"): its text files as
// string KVs (kBertTextFiles), its tensors under their Hugging Face names with ne = the shape
// reversed, F16/BF16 converted to F32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "kernels/cpu/quant_types.h"

namespace stepq {

class SafetensorsFile;

// What a tensor is to the quantizer and its rank policies.
enum class LinearRole {
  None,           // copied as it is: embeddings, norms, biases, router, output head, BERT's pooler
  Attention,      // Q, K, V and the attention output
  DenseFfn,       // the FFN of a dense layer
  SharedExpert,   // a shared expert's FFN
  RoutedExperts,  // a stacked [in, out, X] tensor of routed experts
};

struct SourceTensor {
  std::string name;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};   // ne[0] is the contiguous row length (a Linear's input dimension)
  QType type = QType::F32;
  const uint8_t* data = nullptr;  // n_bytes: rows of row_bytes(type, ne[0]), back to back
  size_t n_bytes = 0;
  LinearRole role = LinearRole::None;
  int layer = -1;                 // the transformer block it belongs to, −1 if none

  // Rows [r0, r0 + n) (rows over ne[1..3]) as row-major f32.
  std::vector<float> rows_f32(int64_t r0, int64_t n) const;
};

class QuantSource {
 public:
  // A GGUF file, or a folder: only a Hugging Face BERT folder is read directly (checked by loading
  // it as BertModel does, so the output is known to load). Throws Error naming the path.
  static std::unique_ptr<QuantSource> open(const std::string& path);
  ~QuantSource();

  const std::string& path() const { return path_; }
  const std::vector<SourceTensor>& tensors() const { return tensors_; }
  const SourceTensor* tensor(std::string_view name) const;  // nullptr if absent
  // KVs for the output, in order (a GGUF's own; for a BERT folder, the stepq-bert ones).
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  // Tensors of the source left out of the output, with why (a BERT folder's integer buffers).
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  QuantSource() = default;
  void open_gguf();
  void open_bert_folder();
  void index();

  std::string path_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<SafetensorsFile> st_;
  std::deque<std::vector<float>> owned_;  // F32 copies of F16/BF16 safetensors tensors
  std::vector<SourceTensor> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<std::string> notes_;
};

// The Hugging Face name of one of a BERT layer's six linear weights (query, key, value, attention
// output, intermediate, output; "bert." prefix or not): its role and layer. Role None otherwise.
std::pair<LinearRole, int> bert_linear_role(const std::string& name);

}  // namespace stepq
