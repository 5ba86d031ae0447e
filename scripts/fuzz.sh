#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (+ASan/UBSan) and fuzzes the GGUF reader.
# usage: scripts/fuzz.sh [SECONDS]   (default 600)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEPQ_FUZZ=ON >/dev/null
ninja -C build-fuzz gguf_fuzz
mkdir -p fuzz-corpus/gguf
python3 tools/make_fuzz_seeds.py fuzz-corpus/seeds
./build-fuzz/gguf_fuzz fuzz-corpus/gguf fuzz-corpus/seeds -max_total_time="$SECS" -rss_limit_mb=2048 \
  -max_len=65536 -timeout=10 -print_final_stats=1
