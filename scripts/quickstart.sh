#!/usr/bin/env bash
# The main job: set everything up, then ask the default model (Qwen2.5-Coder-1.5B-Instruct) a question.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODELS=${STEPQ_MODELS:-$HOME/.cache/stepq/models}
PROMPT=${1:-"Write a Python function that checks whether a number is prime, and explain it in two sentences."}
./build/stepq run -m "$MODELS/qwen2.5-coder-1.5b-instruct.gguf" --chat --temp 0 -n 256 -p "$PROMPT"

# Lookahead Reasoning: the 0.5B drafts whole reasoning steps, the 1.5B checks them in one batched
# forward, MiniLM decides whether a differing step means the same, and the draft's tokens speed up
# the steps the target writes itself. The same GSM8K question with plain decoding first, then LR:
# the answers, the steps accepted and the speedup measured in this run.
echo
echo "== Lookahead Reasoning on GSM8K's first test question: plain decoding (ar) vs LR with token speculation (lr+sd) =="
./build/stepq eval gsm8k -m "$MODELS/qwen2.5-coder-1.5b-instruct.gguf" --draft "$MODELS/qwen2.5-coder-0.5b-instruct.gguf" \
  --mode ar,lr+sd --verifier embed -n 1 --max-tokens 512
