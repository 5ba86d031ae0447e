// OpenBLAS picks its kernels from the CPU model when it is loaded; on CPUs newer than its release
// (Debian 12's 0.3.21 on Emerald Rapids, model 207) it falls back to "Prescott", SSE3 kernels
// several times slower. The choice can only be made before the library loads, through
// OPENBLAS_CORETYPE, so `stepq quantize` (the one command that spends time in BLAS) restarts
// itself with it set when it finds the fallback on a CPU that has AVX2 or AVX-512.
#pragma once

namespace stepq {

// Returns only if nothing needs doing (the variable already set, a known core, no AVX2, or the
// restart failed); otherwise execs argv again with OPENBLAS_CORETYPE set.
void restart_for_openblas_kernels(char** argv);

}  // namespace stepq
