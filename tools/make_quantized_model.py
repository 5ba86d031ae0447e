#!/usr/bin/env python3
"""Quantizes a GGUF with llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize), for
cheaper draft models until stepq's own quantizer (MiLo) exists. Run with the reference venv's
python (tools/setup_reference_venv.sh). Quantize from the exact F32 copy
(scripts/make-f32-models.py), not from an already-quantized file.

  ~/.cache/stepq/venv-ref/bin/python tools/make_quantized_model.py \\
      ~/.cache/stepq/models/qwen2.5-coder-0.5b-instruct.f32.gguf Q3_K_M \\
      ~/.cache/stepq/models/qwen2.5-coder-0.5b-instruct.Q3_K_M.gguf

KIND:f32-head (say Q3_K_S:f32-head) keeps the token embeddings and output head as F32.
"""
import ctypes
import os
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, kind, dst = sys.argv[1:]
    # KIND:f32-head leaves token_embd and output as F32 (llama.cpp quantizes them by its rules)
    kind, _, opt = kind.partition(":")
    if opt not in ("", "f32-head"):
        sys.exit(f"unknown option {opt}: the only one is KIND:f32-head")
    import llama_cpp
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}", None)
    if ftype is None:
        sys.exit(f"unknown type {kind}: try Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_M, Q6_K, Q8_0")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    if opt == "f32-head":
        params.token_embedding_type = 0  # GGML_TYPE_F32
        params.output_tensor_type = 0
    tmp = dst + ".partial"
    rc = llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed with {rc}")
    os.replace(tmp, dst)
    print(f"wrote {dst} ({os.path.getsize(dst) / 1e6:.0f} MB, {kind}, llama-cpp-python {llama_cpp.__version__})")


if __name__ == "__main__":
    main()
