#!/usr/bin/env bash
# Builds the reference environment used by tools/make_*_reference.py: llama-cpp-python 0.3.36
# compiled from source with native CPU flags (about 10 minutes on 2 cores), plus gguf, numpy, jinja2.
# Not needed for building or testing stepq: the reference data it produces is committed.
set -euo pipefail
VENV=${STEPQ_REF_VENV:-$HOME/.cache/stepq/venv-ref}
python3 -m venv "$VENV"
CMAKE_ARGS="-DGGML_NATIVE=ON" "$VENV/bin/pip" install -q "llama-cpp-python==0.3.36" "gguf==0.19.0" numpy jinja2
"$VENV/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
