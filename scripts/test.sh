#!/usr/bin/env bash
# Sets up (packages, build, models, and the exact F32 copies the parity tests use: ~11 GB more
# disk) and runs every test with ctest. Then builds again with AddressSanitizer + UBSan and runs
# the unit tests that do not need the large models (skip with STEPQ_SKIP_SANITIZE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 scripts/make-f32-models.py
python3 scripts/make-test-models.py
(cd build && ctest --output-on-failure --timeout 1800 -j1)

if [ "${STEPQ_SKIP_SANITIZE:-0}" != "1" ]; then
  echo "[test] sanitizer build (ASan + UBSan)" >&2
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEPQ_SANITIZE=ON >/dev/null
  ninja -C build-asan stepq_tests stepq
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ./build-asan/stepq_tests --gtest_filter='-ModelParity.*:BatchInvariance.*:Lookahead.RejectingEveryStepIsPlainGreedy' --gtest_brief=1
fi
