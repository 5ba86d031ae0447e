#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (+ASan/UBSan) and fuzzes the file readers: the GGUF
# reader (gguf) and the safetensors reader with the BERT weight binding (safetensors).
# usage: scripts/fuzz.sh [SECONDS] [TARGET ...]   (default 600 seconds each; targets gguf safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(gguf safetensors)
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTEPQ_FUZZ=ON >/dev/null
for t in "${TARGETS[@]}"; do
  case "$t" in
    gguf) python3 tools/make_fuzz_seeds.py fuzz-corpus/seeds ;;
    safetensors) python3 tools/make_safetensors_seeds.py fuzz-corpus/safetensors-seeds ;;
    *) echo "unknown fuzz target '$t' (gguf, safetensors)" >&2; exit 2 ;;
  esac
  ninja -C build-fuzz "${t}_fuzz"
  mkdir -p "fuzz-corpus/$t"
  seeds=fuzz-corpus/seeds
  [ "$t" = safetensors ] && seeds=fuzz-corpus/safetensors-seeds
  "./build-fuzz/${t}_fuzz" "fuzz-corpus/$t" "$seeds" -max_total_time="$SECS" -rss_limit_mb=2048 \
    -max_len=65536 -timeout=10 -print_final_stats=1
done
