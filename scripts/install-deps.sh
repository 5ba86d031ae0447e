#!/usr/bin/env bash
# Installs the Debian packages and Python packages stepq needs to build and test.
# Idempotent: skips what is already there.
set -euo pipefail
PKGS=(cmake ninja-build g++ clang libclang-rt-14-dev pkg-config
      libpcre2-dev libutf8proc-dev nlohmann-json3-dev libcli11-dev libfmt-dev
      libgtest-dev libgmock-dev libbenchmark-dev python3-venv
      libopenblas-serial-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install-deps] apt-get install ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Python helpers used by tests (reference dequantization, jinja2 templates, tokenizer.json WordPiece).
python3 - <<'PY' 2>/dev/null || python3 -m pip install -q "gguf==0.19.0" "numpy" "jinja2" "tokenizers==0.23.3"
import gguf, numpy, jinja2, tokenizers
PY
echo "[install-deps] ok" >&2
