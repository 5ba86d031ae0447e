// libFuzzer target: the safetensors reader, and the BERT weight binding that reads tensors from it,
// must turn any input into either a parsed file or an Error, never a crash, a hang or a huge
// allocation. Build: scripts/fuzz.sh (seeds: tools/make_safetensors_seeds.py).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/error.h"
#include "formats/safetensors.h"
#include "base/thread_pool.h"
#include "model/bert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = stepq::SafetensorsFile::parse(data, size, "fuzz");
    // Touch the first and last byte of every tensor: bounds were checked, so both are in the buffer.
    volatile uint8_t sink = 0;
    for (const auto& t : f->tensors())
      if (t.n_bytes) sink = sink ^ t.data[0] ^ t.data[t.n_bytes - 1];
    // The shapes of tools/make_safetensors_seeds.py's tiny BERT: binding checks every tensor.
    stepq::BertConfig c;
    c.hidden = 4, c.n_layers = 1, c.n_heads = 2, c.intermediate = 8;
    c.max_position = 8, c.vocab = 16, c.type_vocab = 2, c.max_seq_len = 8;
    try {
      auto m = stepq::BertModel::from_parts(c, std::move(f));
      std::vector<std::vector<int32_t>> seqs = {{1, 2, 3}, {4}};
      std::vector<float> out(2 * 4);
      stepq::ThreadPool pool(1);
      m->embed_ids(seqs, out.data(), pool);
    } catch (const stepq::Error&) {
    }
  } catch (const stepq::Error&) {
  }
  return 0;
}
