#!/usr/bin/env python3
"""Writes a small `llama` GGUF with well-scaled random weights and a real tokenizer copied from
another GGUF, for tests that need a cheap model whose exact distributions can be enumerated
(speculative sampling's distribution test). Deterministic for a seed: the same arguments give
the same bytes.

  python3 tools/make_test_model.py --tokenizer-from SmolLM2.gguf -o tiny.gguf --seed 1
  python3 tools/make_test_model.py ... --perturb-from-seed 1 --perturb 0.3   # a "draft": the seed-1
                                                          # model plus noise, close but not equal

Weights: embeddings N(0, logit_std^2 / n_embd) (tied output head, so logits have about
logit_std spread), projections N(0, 1 / fan_in), norms 1. Tensors are F32 (or F16 with --f16).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def weights(args, seed):
    rng = np.random.default_rng(seed)
    E, F, L = args.embd, args.ff, args.layers
    hd = E // args.heads
    V = args.vocab
    t = {}
    t["token_embd.weight"] = rng.normal(0, args.logit_std / np.sqrt(E), (V, E))
    for i in range(L):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = np.ones(E)
        t[p + "attn_q.weight"] = rng.normal(0, 1 / np.sqrt(E), (args.heads * hd, E))
        t[p + "attn_k.weight"] = rng.normal(0, 1 / np.sqrt(E), (args.kv_heads * hd, E))
        t[p + "attn_v.weight"] = rng.normal(0, 1 / np.sqrt(E), (args.kv_heads * hd, E))
        t[p + "attn_output.weight"] = rng.normal(0, 1 / np.sqrt(E), (E, args.heads * hd))
        t[p + "ffn_norm.weight"] = np.ones(E)
        t[p + "ffn_gate.weight"] = rng.normal(0, 1 / np.sqrt(E), (F, E))
        t[p + "ffn_up.weight"] = rng.normal(0, 1 / np.sqrt(E), (F, E))
        t[p + "ffn_down.weight"] = rng.normal(0, 1 / np.sqrt(F), (E, F))
    t["output_norm.weight"] = np.ones(E)
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer-from", required=True, help="GGUF whose tokenizer.* metadata is copied")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--ff", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--logit-std", type=float, default=4.0)
    ap.add_argument("--perturb-from-seed", type=int, default=None,
                    help="start from the model of this seed and add noise drawn with --seed")
    ap.add_argument("--perturb", type=float, default=0.3, help="noise scale relative to each tensor's std")
    ap.add_argument("--f16", action="store_true")
    args = ap.parse_args()

    import gguf
    from gguf_util import field_value

    r = gguf.GGUFReader(args.tokenizer_from)
    tokens = r.fields["tokenizer.ggml.tokens"]
    args.vocab = len(tokens.data)

    if args.perturb_from_seed is None:
        t = weights(args, args.seed)
    else:
        t = weights(args, args.perturb_from_seed)
        rng = np.random.default_rng(args.seed + 1_000_003)
        for k, v in t.items():
            if k.endswith("norm.weight"):
                continue
            t[k] = v + rng.normal(0, args.perturb * float(v.std()), v.shape)

    tmp = args.out + ".partial"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name(os.path.basename(args.out))
    w.add_context_length(args.ctx)
    w.add_embedding_length(args.embd)
    w.add_block_count(args.layers)
    w.add_feed_forward_length(args.ff)
    w.add_head_count(args.heads)
    w.add_head_count_kv(args.kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(1 if args.f16 else 0)
    for k, f in r.fields.items():
        if not k.startswith("tokenizer."):
            continue
        v, et = field_value(f)
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, v, f.types[0], sub_type=et)
        else:
            w.add_key_value(k, v, f.types[0])
    for k, v in t.items():
        dt = np.float16 if args.f16 and v.ndim == 2 else np.float32
        w.add_tensor(k, np.ascontiguousarray(v.astype(dt)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: llama, {args.layers} layers, embd {args.embd}, vocab {args.vocab}")


if __name__ == "__main__":
    main()
