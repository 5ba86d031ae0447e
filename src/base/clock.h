// Wall-clock seconds for timing runs and their parts.
#pragma once

#include <chrono>

namespace stepq {

// Seconds on the steady clock: differences of two calls are elapsed time.
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace stepq
