#!/usr/bin/env python3
"""Seed corpus for the GGUF fuzz target: the real models' headers, shrunk.

For each real model, writes a GGUF with the same metadata keys and types (token arrays cut to
their first N entries, ids kept in range) and a handful of tiny tensors of the file's own types,
so the fuzzer starts from the exact structure of real files at a size it can mutate quickly.

usage: tools/make_fuzz_seeds.py OUT_DIR [--tokens N]
"""
import argparse, os, sys

import numpy as np
import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_util import architecture, copy_metadata  # noqa: E402
from stepq_models import MODEL_FILES, models_dir  # noqa: E402

MODELS_DIR = models_dir()
FILES = list(MODEL_FILES.values())


def shrink(path, out, n_tokens):
    r = gguf.GGUFReader(path)
    w = gguf.GGUFWriter(out, architecture(r))

    def cut(k, v, t, et):
        if t == gguf.GGUFValueType.ARRAY:
            return v[:n_tokens]
        if k.startswith("tokenizer.ggml.") and k.endswith("_token_id"):
            return min(v, n_tokens - 1)
        if k == "tokenizer.chat_template":
            return v[:2000]
        return v

    copy_metadata(r, w, cut)
    types = []
    for t in r.tensors:
        if t.tensor_type not in types:
            types.append(t.tensor_type)
    for i, qt in enumerate(types):
        bs, ts = gguf.GGML_QUANT_SIZES[qt]
        raw = np.random.default_rng(i).integers(0, 255, size=(2, ts * max(1, 256 // bs)), dtype=np.uint8)
        if qt == gguf.GGMLQuantizationType.F32:
            raw = np.zeros((2, 256), dtype=np.float32)
        w.add_tensor(f"seed.{i}.weight", raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tokens", type=int, default=400)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for fn in FILES:
        p = os.path.join(MODELS_DIR, fn)
        if not os.path.exists(p):
            sys.exit(f"missing {p}: run scripts/fetch-models.py")
        out = os.path.join(a.out, fn.replace(".gguf", ".seed.gguf"))
        shrink(p, out, a.tokens)
        print(f"{out}: {os.path.getsize(out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
