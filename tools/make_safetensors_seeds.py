#!/usr/bin/env python3
"""Seed corpus for the safetensors fuzz target (tests/fuzz/safetensors_fuzz.cpp).

Writes tiny BERT checkpoints with all-MiniLM-L6-v2's tensor names and layout (hidden 4, 1 layer,
2 heads, intermediate 8, 8 positions, vocab 16: the config the fuzz target binds), in F32, F16 and
BF16, plus one with an I64 tensor and __metadata__ as in the real file, so the fuzzer starts from
the exact structure of real files at a size it can mutate quickly. Only numpy is needed.

usage: tools/make_safetensors_seeds.py OUT_DIR
"""
import json, os, struct, sys

import numpy as np

H, I, P, V, T = 4, 8, 8, 16, 2


def bert_tensors(rng):
    t = {
        "embeddings.word_embeddings.weight": (V, H),
        "embeddings.position_embeddings.weight": (P, H),
        "embeddings.token_type_embeddings.weight": (T, H),
        "embeddings.LayerNorm.weight": (H,),
        "embeddings.LayerNorm.bias": (H,),
    }
    p = "encoder.layer.0."
    for n, shape in [("attention.self.query", (H, H)), ("attention.self.key", (H, H)),
                     ("attention.self.value", (H, H)), ("attention.output.dense", (H, H)),
                     ("intermediate.dense", (I, H)), ("output.dense", (H, I))]:
        t[p + n + ".weight"] = shape
        t[p + n + ".bias"] = (shape[0],)
    for n in ["attention.output.LayerNorm", "output.LayerNorm"]:
        t[p + n + ".weight"] = (H,)
        t[p + n + ".bias"] = (H,)
    return {k: rng.standard_normal(s).astype(np.float32) * 0.5 for k, s in t.items()}


def write(path, tensors, metadata=None):
    """tensors: name -> (dtype string, raw bytes, shape)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dt, raw, shape) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the data region starts 8-aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    w = bert_tensors(np.random.default_rng(0))
    write(os.path.join(out, "bert-f32.safetensors"), {k: ("F32", v.tobytes(), v.shape) for k, v in w.items()})
    write(os.path.join(out, "bert-f16.safetensors"),
          {k: ("F16", v.astype(np.float16).tobytes(), v.shape) for k, v in w.items()})
    bf16 = {k: ("BF16", (v.view(np.uint32) >> 16).astype(np.uint16).tobytes(), v.shape) for k, v in w.items()}
    write(os.path.join(out, "bert-bf16.safetensors"), bf16)
    extra = {"embeddings.position_ids": ("I64", np.arange(P, dtype=np.int64).tobytes(), (1, P))}
    extra.update({k: ("F32", v.tobytes(), v.shape) for k, v in w.items()})
    write(os.path.join(out, "bert-meta.safetensors"), extra, {"format": "pt"})
    for f in sorted(os.listdir(out)):
        print(f"{os.path.join(out, f)}: {os.path.getsize(os.path.join(out, f))} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
