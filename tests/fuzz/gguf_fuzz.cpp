// libFuzzer target: the GGUF reader and everything that reads metadata from it (model config,
// tokenizer) must turn any input into either a parsed file or an Error, never a crash, a hang or
// a huge allocation. Build: scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>

#include "base/error.h"
#include "formats/gguf.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = stepq::GgufFile::parse(data, size, "fuzz");
    // Touch the last byte of every tensor: bounds were checked, so this must be in the buffer.
    volatile uint8_t sink = 0;
    for (const auto& t : f->tensors())
      if (t.n_bytes) sink = sink ^ t.data[t.n_bytes - 1];
    try {
      stepq::ModelConfig::from_gguf(*f);
    } catch (const stepq::Error&) {
    }
    try {
      stepq::Tokenizer::from_gguf(*f);
    } catch (const stepq::Error&) {
    }
  } catch (const stepq::Error&) {
  }
  return 0;
}
