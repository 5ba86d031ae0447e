#!/usr/bin/env bash
# The main job: set everything up, then ask the default model (Qwen2.5-Coder-1.5B-Instruct) a question.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODELS=${STEPQ_MODELS:-$HOME/.cache/stepq/models}
PROMPT=${1:-"Write a Python function that checks whether a number is prime, and explain it in two sentences."}
./build/stepq run -m "$MODELS/qwen2.5-coder-1.5b-instruct.gguf" --chat --temp 0 -n 256 -p "$PROMPT"
