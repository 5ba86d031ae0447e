// stepq: a C++ inference engine for reasoning and Mixture-of-Experts models.
#include <cstdio>
#include <string_view>

#include "base/error.h"
#include "cli/commands.h"
#include "quant/blas_setup.h"

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "quantize") {
    // Only when it will quantize: not for its --help.
    bool help = false;
    for (int i = 2; i < argc; i++) help |= std::string_view(argv[i]) == "-h" || std::string_view(argv[i]) == "--help";
    if (!help) stepq::restart_for_openblas_kernels(argv);
  }
  CLI::App app{"stepq: fast, small inference for reasoning and MoE models (GGUF)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "stepq 0.1.0");
  stepq::cli::add_run(app);
  stepq::cli::add_perplexity(app);
  stepq::cli::add_bench(app);
  stepq::cli::add_chat(app);
  stepq::cli::add_inspect(app);
  stepq::cli::add_tokenize(app);
  stepq::cli::add_embed(app);
  stepq::cli::add_moe_stats(app);
  stepq::cli::add_quantize(app);
  stepq::cli::add_eval(app);
  stepq::cli::add_verify_steps(app);
  stepq::cli::add_dump_tensor(app);
  stepq::cli::add_dump_logits(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const stepq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory (try a smaller --ctx or model)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
