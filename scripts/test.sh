#!/usr/bin/env bash
# Sets up (packages, build, models) and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest --output-on-failure --timeout 1800 -j1
