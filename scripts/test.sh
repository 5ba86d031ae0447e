#!/usr/bin/env bash
# Sets up (packages, build, models, and the exact F32 copies the parity tests use: ~11 GB more
# disk) and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 scripts/make-f32-models.py
cd build
ctest --output-on-failure --timeout 1800 -j1
