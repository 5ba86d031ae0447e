// Which SIMD level the kernels use, decided once at start-up from CPUID.
// STEPQ_ISA=scalar|avx2|avx512 in the environment caps it (for tests and comparisons).
#pragma once

namespace stepq {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

Isa detected_isa();       // what this CPU supports
Isa active_isa();         // detected, capped by STEPQ_ISA; fixed after first call
const char* isa_name(Isa isa);

}  // namespace stepq
