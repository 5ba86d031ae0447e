#!/usr/bin/env python3
"""Writes a small Mixture-of-Experts GGUF with well-scaled random weights and a real tokenizer
copied from another GGUF, in one of the five MoE layouts llama.cpp runs (the tensor names, shapes
and keys of ../shared/reference/architectures.md §2.1, §2.4-2.7, §4):

  mixtral   general.architecture "llama" with expert_count > 0: every layer MoE, expert width =
            feed_forward_length, softmax -> top-k -> renormalise, NORM RoPE
  qwen2moe  q/k/v biases, every layer MoE (no renormalisation) + a shared SwiGLU expert gated by
            sigmoid(ffn_gate_inp_shexp . h), output.weight required, NEOX RoPE
  qwen3moe  per-head q/k RMSNorm ([hd]), hd = key_length with nh*hd != E, renormalised top-k, NEOX
  deepseek  leading dense layer(s), then MoE (no renormalisation, routed weights x
            expert_weights_scale) + one ungated shared SwiGLU of width Fe*n_shared, NORM RoPE
  olmoe     full-width q/k RMSNorm ([E], so nkv == nh), expert width = feed_forward_length, no
            renormalisation, output.weight required, NEOX RoPE

  python3 tools/make_moe_model.py --arch qwen2moe --size s --type q4_k --tokenizer-from SmolLM2.gguf -o out.gguf
  python3 tools/make_moe_model.py --arch mixtral --embd 1024 --layers 8 --experts 8 --used 2 \\
      --ff-exp 2816 --type q4_k --tokenizer-from SmolLM2.gguf -o mixtral-like.gguf     # a benchmark model

Deterministic: the same arguments give the same bytes, and the weights depend only on the shape
arguments and --seed, not on --type (the f16 / q8_0 / q4_k files of one size are one model,
quantized three ways).

Weights: token embeddings N(0, logit_std^2 / E) (so logits have about logit_std spread through a tied
head; the untied output.weight has the same scale), projections N(0, 1 / fan_in), routers N(0,
router_var / E) (router logits of std sqrt(router_var): routing spread over the experts but not
uniform), norm weights 1 + N(0, 0.1^2), biases N(0, 0.2^2).

Tensor types: norms, biases, routers (ffn_gate_inp) and the shared-expert gate are F32;
token_embd is always Q8_0 (as in SmolLM2's file; keeps the 49152-row tables small); every other
matrix, output.weight included, has --type: F16, Q8_0 (gguf.quants, bit-exact with ggml's
reference) or Q4_K (quantize_q4_k below: a simple deterministic numpy quantizer, not ggml's
search, checked by dequantizing with gguf.quants and llama.cpp). Q4_K needs every row length
(E, Fe, F, Fs, nh*hd) to be a multiple of 256.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

ARCHS = ("mixtral", "qwen2moe", "qwen3moe", "deepseek", "olmoe")
GGUF_ARCH = {"mixtral": "llama", "qwen2moe": "qwen2moe", "qwen3moe": "qwen3moe", "deepseek": "deepseek",
             "olmoe": "olmoe"}

# Base shapes per size. ff: deepseek's dense width / qwen2moe's shared width; shared: deepseek's
# expert_shared_count; wscale: deepseek's expert_weights_scale; tied: for the archs where
# output.weight is optional (mixtral, qwen3moe, deepseek), whether the head is token_embd.
SIZES = {
    "s": dict(embd=256, layers=2, experts=4, used=2, ff_exp=256, ff=512, heads=4, kv_heads=2, head_dim=64,
              shared=1, wscale=2.5),
    "m": dict(embd=512, layers=3, experts=8, used=3, ff_exp=256, ff=768, heads=8, kv_heads=2, head_dim=64,
              shared=2, wscale=1.0),
}
# The generated test models: name -> arguments of this script (without --tokenizer-from / -o).
# scripts/make-test-models.py writes them to <models>/moe/<name>.gguf; tools/make_moe_reference.py
# makes their llama.cpp references in tests/data/moe/.
MOE_MODELS = {f"{a}-{s}-{t}": ["--arch", a, "--size", s, "--type", t, "--seed", "1"]
              for a in ARCHS for s in ("s", "m") for t in ("f16", "q8_0", "q4_k")}

TIED = {("mixtral", "s"): False, ("mixtral", "m"): True,
        ("qwen3moe", "s"): True, ("qwen3moe", "m"): False,
        ("deepseek", "s"): False, ("deepseek", "m"): True}


def config(args):
    """The full shape/hyperparameter dict for the arguments (size defaults, arch rules, overrides)."""
    c = dict(SIZES[args.size])
    a = args.arch
    if a == "olmoe":
        c["kv_heads"] = c["heads"]           # k_norm is [E]: needs nkv == nh
    if a == "qwen3moe":
        c["kv_heads"] = c["heads"] // 2      # and hd 128 below: nh*hd != E, as in Qwen3-30B-A3B
    c["tied"] = TIED.get((a, args.size), False)
    for k in ("embd", "layers", "experts", "used", "ff_exp", "ff", "heads", "kv_heads", "head_dim", "shared",
              "wscale"):
        v = getattr(args, k)
        if v is not None:
            c[k] = v
    if args.tied is not None:
        c["tied"] = args.tied
    if a in ("qwen2moe", "olmoe"):
        c["tied"] = False                    # output.weight is required
    if a in ("mixtral", "olmoe") and args.ff is None:
        c["ff"] = c["ff_exp"]                # their expert width is feed_forward_length
    if args.head_dim is None:                # qwen3moe: 128 (nh*hd != E); the others E/nh
        c["head_dim"] = 128 if a == "qwen3moe" else c["embd"] // c["heads"]
    if a == "olmoe" and c["kv_heads"] != c["heads"]:
        sys.exit("olmoe needs --kv-heads == --heads")
    if a in ("qwen2moe", "deepseek", "olmoe") and c["heads"] * c["head_dim"] != c["embd"]:
        sys.exit(f"{a} needs heads * head_dim == embd")
    if c["heads"] % c["kv_heads"] or not 0 < c["used"] <= c["experts"]:
        sys.exit("bad heads/kv-heads or used/experts")
    if a == "deepseek":
        c["dense"] = min(args.dense_layers, c["layers"] - 1)
        c["ff_shexp"] = c["ff_exp"] * c["shared"]
    if a == "qwen2moe":
        c["ff_shexp"] = c["ff"]
    c["rope_base"] = 1e6 if a in ("qwen2moe", "qwen3moe") else 1e4
    c["eps"] = 1e-6 if a in ("qwen2moe", "qwen3moe", "deepseek") else 1e-5
    return c


# ---------------------------------------------------------------------------------------------
# Q4_K (block of 256: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks of 32,
# 128 bytes of 4-bit codes; value = d*sc*q - dmin*m). A plain min/max fit per sub-block, then the
# 6-bit scales/mins against the block's d/dmin; deterministic (float32 numpy, round half to even).

def quantize_q4_k(x):
    """x: float array whose last dimension is a multiple of 256 -> uint8 (..., n/256*144)."""
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    assert shape[-1] % 256 == 0, shape
    b = x.reshape(-1, 8, 32)
    lo = np.minimum(b.min(axis=2), 0.0)                     # (nb, 8): min clipped to <= 0
    hi = np.maximum(b.max(axis=2), lo)
    scale = (hi - lo) / np.float32(15)
    minv = -lo
    d = (scale.max(axis=1) / np.float32(63)).astype(np.float16)
    dmin = (minv.max(axis=1) / np.float32(63)).astype(np.float16)
    df, dminf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.round(scale / df), 0)
        m = np.where(dminf > 0, np.round(minv / dminf), 0)
    sc = np.clip(np.where((scale > 0) & (sc < 1), 1, sc), 0, 63).astype(np.uint8)
    m = np.clip(m, 0, 63).astype(np.uint8)
    step = (df * sc.astype(np.float32))[:, :, None]
    off = (dminf * m.astype(np.float32))[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(step > 0, np.round((b + off) / step), 0)
    q = np.clip(q, 0, 15).astype(np.uint8)                 # (nb, 8, 32)
    nb = b.shape[0]
    out = np.zeros((nb, 144), dtype=np.uint8)
    out[:, 0:2] = d.reshape(nb, 1).view(np.uint8)
    out[:, 2:4] = dmin.reshape(nb, 1).view(np.uint8)
    s = np.zeros((nb, 12), dtype=np.uint8)
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((m[:, 4:8] & 0x0F) << 4)
    out[:, 4:16] = s
    # 32-byte chunk c holds sub-block 2c in the low nibbles and 2c+1 in the high nibbles
    out[:, 16:] = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(nb, 128)
    return out.reshape(*shape[:-1], shape[-1] // 256 * 144)


def encode(name, v, wtype):
    """(array, raw_dtype) for GGUFWriter.add_tensor: v as the tensor type chosen for `name`."""
    import gguf
    Q = gguf.GGMLQuantizationType
    if v.ndim == 1 or "ffn_gate_inp" in name:
        return np.ascontiguousarray(v.astype(np.float32)), None
    if name == "token_embd.weight":
        t = "q8_0"
    else:
        t = wtype
    if t == "f16":
        return np.ascontiguousarray(v.astype(np.float16)), None
    if t == "q8_0":
        return gguf.quants.quantize(v.astype(np.float32), Q.Q8_0), Q.Q8_0
    if t == "q4_k":
        return quantize_q4_k(v), Q.Q4_K
    raise ValueError(t)


def tensors(arch, c, vocab, seed, args):
    """Yields (name, float32 numpy array in row-major = reversed-ne shape), drawn in a fixed order."""
    rng = np.random.default_rng(seed)
    E, L, X, Fe = c["embd"], c["layers"], c["experts"], c["ff_exp"]
    nh, nkv, hd = c["heads"], c["kv_heads"], c["head_dim"]

    def normal(shape, std):
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def norm(n):
        return 1 + normal((n,), 0.1)

    def proj(out, inp):
        return normal((out, inp), 1 / np.sqrt(inp))

    def experts(shape, std):
        # a part shared by all experts plus an expert's own part of relative size expert_spread
        # (1: independent experts): a routing decision flipped by rounding noise at a near-tie
        # then moves the output by a fraction expert_spread of an expert's output, not all of it
        sp = args.expert_spread
        if sp == 1:
            return normal(shape, std)
        base = normal(shape[1:], std)
        return np.float32(np.sqrt(1 - sp * sp)) * base + np.float32(sp) * normal(shape, std)

    yield "token_embd.weight", normal((vocab, E), args.logit_std / np.sqrt(E))
    yield "output_norm.weight", norm(E)
    if not c["tied"]:
        yield "output.weight", normal((vocab, E), args.logit_std / np.sqrt(E))
    for i in range(L):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", norm(E)
        yield p + "attn_q.weight", proj(nh * hd, E)
        yield p + "attn_k.weight", proj(nkv * hd, E)
        yield p + "attn_v.weight", proj(nkv * hd, E)
        if arch == "qwen2moe":
            yield p + "attn_q.bias", normal((nh * hd,), 0.2)
            yield p + "attn_k.bias", normal((nkv * hd,), 0.2)
            yield p + "attn_v.bias", normal((nkv * hd,), 0.2)
        yield p + "attn_output.weight", proj(E, nh * hd)
        if arch == "qwen3moe":
            yield p + "attn_q_norm.weight", norm(hd)
            yield p + "attn_k_norm.weight", norm(hd)
        if arch == "olmoe":
            yield p + "attn_q_norm.weight", norm(E)
            yield p + "attn_k_norm.weight", norm(nkv * hd)
        yield p + "ffn_norm.weight", norm(E)
        if arch == "deepseek" and i < c["dense"]:
            F = c["ff"]
            yield p + "ffn_gate.weight", proj(F, E)
            yield p + "ffn_up.weight", proj(F, E)
            yield p + "ffn_down.weight", proj(E, F)
            continue
        yield p + "ffn_gate_inp.weight", normal((X, E), np.sqrt(args.router_var / E))
        yield p + "ffn_gate_exps.weight", experts((X, Fe, E), 1 / np.sqrt(E))
        yield p + "ffn_up_exps.weight", experts((X, Fe, E), 1 / np.sqrt(E))
        yield p + "ffn_down_exps.weight", experts((X, E, Fe), 1 / np.sqrt(Fe))
        if arch in ("qwen2moe", "deepseek"):
            Fs = c["ff_shexp"]
            if arch == "qwen2moe":
                yield p + "ffn_gate_inp_shexp.weight", normal((E,), 1 / np.sqrt(E))
            yield p + "ffn_gate_shexp.weight", proj(Fs, E)
            yield p + "ffn_up_shexp.weight", proj(Fs, E)
            yield p + "ffn_down_shexp.weight", proj(E, Fs)


def add_params(w, arch, c, args):
    import gguf
    w.add_context_length(args.ctx)
    w.add_embedding_length(c["embd"])
    w.add_block_count(c["layers"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv(c["kv_heads"])
    if c["head_dim"] != c["embd"] // c["heads"]:
        w.add_key_length(c["head_dim"])
        w.add_value_length(c["head_dim"])
    w.add_rope_dimension_count(c["head_dim"])
    w.add_rope_freq_base(c["rope_base"])
    w.add_layer_norm_rms_eps(c["eps"])
    w.add_expert_count(c["experts"])
    w.add_expert_used_count(c["used"])
    if arch in ("mixtral", "olmoe"):
        w.add_feed_forward_length(c["ff_exp"])          # their expert width
    elif arch == "qwen2moe":
        w.add_feed_forward_length(c["ff"])
        w.add_expert_feed_forward_length(c["ff_exp"])
        w.add_expert_shared_feed_forward_length(c["ff_shexp"])
    elif arch == "qwen3moe":
        w.add_feed_forward_length(c["ff_exp"] * c["used"])
        w.add_expert_feed_forward_length(c["ff_exp"])
    elif arch == "deepseek":
        w.add_feed_forward_length(c["ff"])              # the dense layers' width
        w.add_expert_feed_forward_length(c["ff_exp"])
        w.add_expert_shared_count(c["shared"])
        w.add_leading_dense_block_count(c["dense"])
        w.add_expert_weights_scale(c["wscale"])
    ft = gguf.LlamaFileType
    w.add_file_type({"f16": ft.MOSTLY_F16, "q8_0": ft.MOSTLY_Q8_0, "q4_k": ft.MOSTLY_Q4_K_S}[args.type])


_TOKENIZERS = {}


def tokenizer_fields(path):
    """[(key, value, type, element type)] of the tokenizer.* metadata of a GGUF (cached: reading
    SmolLM2's 49152 tokens and merges with GGUFReader takes a couple of seconds)."""
    if path not in _TOKENIZERS:
        import gguf
        from gguf_util import field_value
        r = gguf.GGUFReader(path)
        out = []
        for k, f in r.fields.items():
            if k.startswith("tokenizer."):
                v, et = field_value(f)
                out.append((k, v, f.types[0], et))
        _TOKENIZERS[path] = out
    return _TOKENIZERS[path]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=ARCHS)
    ap.add_argument("--size", choices=sorted(SIZES), default="s")
    ap.add_argument("--type", choices=("f16", "q8_0", "q4_k"), default="f16")
    ap.add_argument("--tokenizer-from", required=True, help="GGUF whose tokenizer.* metadata is copied")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--logit-std", type=float, default=4.0)
    ap.add_argument("--router-var", type=float, default=2.0, help="variance of the router logits")
    ap.add_argument("--expert-spread", type=float, default=1.0,
                    help="relative size of each expert's own weights (1: independent experts)")
    g = ap.add_argument_group("overrides of the --size shapes")
    g.add_argument("--embd", type=int)
    g.add_argument("--layers", type=int)
    g.add_argument("--experts", type=int)
    g.add_argument("--used", type=int, help="experts per token")
    g.add_argument("--ff-exp", type=int, help="expert FFN width")
    g.add_argument("--ff", type=int, help="dense FFN width (deepseek) / shared-expert width (qwen2moe)")
    g.add_argument("--heads", type=int)
    g.add_argument("--kv-heads", type=int)
    g.add_argument("--head-dim", type=int)
    g.add_argument("--shared", type=int, help="deepseek expert_shared_count")
    g.add_argument("--wscale", type=float, help="deepseek expert_weights_scale")
    g.add_argument("--dense-layers", type=int, default=1, help="deepseek leading_dense_block_count")
    g.add_argument("--tied", dest="tied", action="store_true", default=None)
    g.add_argument("--untied", dest="tied", action="store_false")
    args = ap.parse_args(argv)

    import gguf

    c = config(args)
    tok = tokenizer_fields(args.tokenizer_from)
    vocab = len(next(v for k, v, _, _ in tok if k == "tokenizer.ggml.tokens"))

    tmp = args.out + ".partial"
    w = gguf.GGUFWriter(tmp, GGUF_ARCH[args.arch])
    w.add_name(f"stepq-moe-{args.arch}-{args.size}-{args.type}")   # not the output path: same args, same bytes
    add_params(w, args.arch, c, args)
    for k, v, t, et in tok:
        if t == gguf.GGUFValueType.ARRAY:
            w.add_key_value(k, v, t, sub_type=et)
        else:
            w.add_key_value(k, v, t)
    for name, v in tensors(args.arch, c, vocab, args.seed, args):
        data, raw = encode(name, v, args.type)
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, args.out)
    desc = ", ".join(f"{k} {v}" for k, v in c.items())
    print(f"wrote {args.out}: {args.arch} {args.type}, vocab {vocab}, {desc}")


if __name__ == "__main__":
    main()
