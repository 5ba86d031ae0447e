#include "quant/blas_setup.h"

#include <cblas.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/cpu_features.h"

namespace stepq {

void restart_for_openblas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // set by the user, or by the restart itself
  const char* core = openblas_get_corename();
  if (!core || std::strcmp(core, "Prescott") != 0) return;
  const Isa isa = detected_isa();
  if (isa == Isa::Scalar) return;
  const char* want = isa == Isa::Avx512 ? "SkylakeX" : "Haswell";
  setenv("OPENBLAS_CORETYPE", want, 1);
  std::fprintf(stderr, "stepq: OpenBLAS does not know this CPU and chose its generic kernels; restarting with "
                       "OPENBLAS_CORETYPE=%s\n", want);
  std::fflush(stderr);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "stepq: restart failed (%s); going on with the generic kernels\n", std::strerror(errno));
}

}  // namespace stepq
