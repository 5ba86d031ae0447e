// stepq dump-tensor: write one tensor dequantized to raw little-endian float32
// (row-major, ne[0] fastest). Used by tests against PyPI gguf's dequantize.
#include <cstdio>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "formats/gguf.h"

namespace stepq::cli {

namespace {
struct DumpArgs {
  std::string model, tensor, out;
};

void do_dump(const DumpArgs& a) {
  auto f = GgufFile::open(a.model);
  const GgufTensorInfo* t = f->tensor(a.tensor);
  if (!t) fail("{}: no tensor named '{}' (see: stepq inspect {})", a.model, a.tensor, a.model);
  FILE* out = std::fopen(a.out.c_str(), "wb");
  if (!out) fail("cannot write '{}'", a.out);
  std::vector<float> row(t->ne[0]);
  const size_t rb = row_bytes(t->type, t->ne[0]);
  for (int64_t r = 0; r < t->n_rows(); r++) {
    dequantize_row(t->type, t->data + r * rb, row.data(), t->ne[0]);
    if (std::fwrite(row.data(), sizeof(float), row.size(), out) != row.size()) {
      std::fclose(out);
      fail("write to '{}' failed", a.out);
    }
  }
  std::fclose(out);
}
}  // namespace

void add_dump_tensor(CLI::App& app) {
  auto a = std::make_shared<DumpArgs>();
  CLI::App* c = app.add_subcommand("dump-tensor", "Write a tensor dequantized to raw float32");
  c->add_option("model", a->model, "Model file (GGUF)")->required()->check(CLI::ExistingFile);
  c->add_option("tensor", a->tensor, "Tensor name")->required();
  c->add_option("out", a->out, "Output file")->required();
  c->callback([a] { do_dump(*a); });
}

}  // namespace stepq::cli
