#!/usr/bin/env python3
"""An independent float64 numpy forward for the five MoE layouts tools/make_moe_model.py writes
(llama-with-experts "mixtral", qwen2moe, qwen3moe, deepseek, olmoe), with exactly the semantics of
../shared/reference/architectures.md §1-§3. It reads the GGUF with gguf.GGUFReader and dequantizes
with gguf.quants.dequantize, so it checks that a generated file means what we think, independently
of llama.cpp and of stepq.

  python3 tools/moe_numpy_forward.py FILE.gguf [...]          # routing / logit-margin statistics
  ~/.cache/stepq/venv-ref/bin/python tools/moe_numpy_forward.py --compare FILE.gguf [...]
        # and llama.cpp's logits (llama-cpp-python; F32 and F16 KV cache, no flash attention) vs it

Routing (build_moe_ffn): p = softmax(router . h) over all experts; the top k of p; their weights
p[sel], divided by max(sum, 2^-14) only for llama (mixtral) and qwen3moe; times
expert_weights_scale for deepseek when it is neither 0 nor 1; out = sum_j w_j down_j(silu(gate_j h)
* up_j h). qwen2moe adds the shared SwiGLU expert times sigmoid(ffn_gate_inp_shexp . h); deepseek
adds its shared SwiGLU expert ungated and runs dense SwiGLU layers below leading_dense_block_count.
q/k norms: qwen3moe per head ([hd]) before RoPE, olmoe over the full projection ([E]) before the
head reshape. RoPE NORM (pairs 2i, 2i+1) for llama and deepseek, NEOX (i, i + hd/2) for the others.
"""
import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from logit_stats import agreement, log_softmax, logsumexp  # noqa: E402,F401


class Model:
    def __init__(self, path):
        import gguf
        from gguf_util import field_value
        r = gguf.GGUFReader(path)
        self.meta = {k: field_value(f)[0] for k, f in r.fields.items()
                     if not k.startswith("tokenizer.") and not k.startswith("GGUF.")}
        self.arch = self.meta["general.architecture"]
        self.t, self.types = {}, {}
        for t in r.tensors:
            self.types[t.name] = t.tensor_type.name
            d = gguf.quants.dequantize(t.data, t.tensor_type)
            self.t[t.name] = np.asarray(d, dtype=np.float64).reshape([int(n) for n in reversed(t.shape)]
                                                                     if len(t.shape) > 1 else -1)

    def key(self, k, default=None):
        return self.meta.get(f"{self.arch}.{k}", default)


def act_quant(x, wtype):
    """What llama.cpp's CPU matmul does to the activations before multiplying them with a weight
    of type wtype (architectures.md §5): F16 weights -> f16 activations, Q8_0 -> Q8_0 blocks of 32
    (AVX: q = rint(x * 127/amax), scale stored as f16), K-quants -> Q8_K blocks of 256 (q =
    rint(x * -127/m), m the signed value of largest magnitude, f32 scale). F32: unchanged."""
    if wtype == "F32":
        return x
    if wtype == "F16":
        return x.astype(np.float16).astype(np.float64)
    n = x.shape[-1]
    bs = 32 if wtype == "Q8_0" else 256
    b = x.astype(np.float32).reshape(-1, n // bs, bs)
    if wtype == "Q8_0":
        amax = np.abs(b).max(axis=-1, keepdims=True)
        with np.errstate(divide="ignore"):
            idd = np.where(amax > 0, np.float32(127) / amax, 0).astype(np.float32)
        q = np.rint(b * idd)
        d = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
    else:
        i = np.abs(b).argmax(axis=-1)[..., None]
        mx = np.take_along_axis(b, i, axis=-1)
        with np.errstate(divide="ignore"):
            iscale = np.where(mx != 0, np.float32(-127) / mx, 0).astype(np.float32)
        q = np.minimum(np.rint(b * iscale), 127)
        with np.errstate(divide="ignore"):
            d = np.where(iscale != 0, np.float32(1) / iscale, 0).astype(np.float32)
    return (q * d).astype(np.float64).reshape(x.shape)


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1 + np.exp(-x))


def rope(x, pos, base, neox):
    """x: (T, heads, hd)."""
    hd = x.shape[-1]
    inv = base ** (-np.arange(0, hd // 2) * 2.0 / hd)
    ang = pos[:, None] * inv[None, :]                  # (T, hd/2)
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    if neox:
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def forward(m, tokens, stats=None, emulate=False, kv_f16=False):
    """float64 logits (T, V) for one sequence starting at position 0. emulate: round activations
    as llama.cpp's CPU matmuls do (act_quant); kv_f16: also round K, V, Q and the attention
    probabilities to f16 as its non-flash attention does with an F16 KV cache."""
    t, arch = m.t, m.arch

    def mm(x, name, w=None):
        w = t[name] if w is None else w
        return (act_quant(x, m.types[name]) if emulate else x) @ w.T

    def swiglu(h, g, u, d, ge=None, ue=None, de=None):
        return mm(silu(mm(h, g, ge)) * mm(h, u, ue), d, de)

    def f16(x):
        return x.astype(np.float16).astype(np.float64) if kv_f16 else x

    E = m.key("embedding_length")
    L = m.key("block_count")
    nh = m.key("attention.head_count")
    nkv = m.key("attention.head_count_kv", nh)
    hd = m.key("attention.key_length", E // nh)
    eps = m.key("attention.layer_norm_rms_epsilon")
    base = m.key("rope.freq_base", 10000.0)
    X, k = m.key("expert_count"), m.key("expert_used_count")
    lead = m.key("leading_dense_block_count", 0) if arch == "deepseek" else 0
    wscale = m.key("expert_weights_scale", 0.0) if arch == "deepseek" else 0.0
    norm_w = arch in ("llama", "qwen3moe")
    neox = arch in ("qwen2moe", "qwen3moe", "olmoe")
    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)
    x = t["token_embd.weight"][np.asarray(tokens)].copy()
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for il in range(L):
        p = f"blk.{il}."
        h = rmsnorm(x, t[p + "attn_norm.weight"], eps)
        q, kk, v = (mm(h, p + f"attn_{n}.weight") for n in "qkv")
        if p + "attn_q.bias" in t:
            q, kk, v = q + t[p + "attn_q.bias"], kk + t[p + "attn_k.bias"], v + t[p + "attn_v.bias"]
        if arch == "olmoe":
            q = rmsnorm(q, t[p + "attn_q_norm.weight"], eps)
            kk = rmsnorm(kk, t[p + "attn_k_norm.weight"], eps)
        q, kk, v = q.reshape(T, nh, hd), kk.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
        if arch == "qwen3moe":
            q = rmsnorm(q, t[p + "attn_q_norm.weight"], eps)
            kk = rmsnorm(kk, t[p + "attn_k_norm.weight"], eps)
        q, kk = rope(q, pos, base, neox), rope(kk, pos, base, neox)
        g = nh // nkv
        kk, v = np.repeat(kk, g, axis=1), np.repeat(v, g, axis=1)   # query head h reads kv head h // g
        s = np.einsum("thd,shd->hts", f16(q), f16(kk)) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        a = np.einsum("hts,shd->thd", f16(s), f16(v)).reshape(T, nh * hd)
        x = x + mm(a, p + "attn_output.weight")
        h = rmsnorm(x, t[p + "ffn_norm.weight"], eps)
        if il < lead:
            x = x + swiglu(h, p + "ffn_gate.weight", p + "ffn_up.weight", p + "ffn_down.weight")
            continue
        logits = h @ t[p + "ffn_gate_inp.weight"].T                    # (T, X)
        pr = np.exp(logits - logits.max(axis=1, keepdims=True))
        pr /= pr.sum(axis=1, keepdims=True)
        order = np.argsort(-pr, axis=1, kind="stable")
        sel = order[:, :k]
        w = np.take_along_axis(pr, sel, axis=1)
        if norm_w:
            w = w / np.maximum(w.sum(axis=1, keepdims=True), 6.103515625e-5)
        if wscale not in (0.0, 1.0):
            w = w * wscale
        if stats is not None:
            srt = np.take_along_axis(pr, order, axis=1)
            stats.setdefault("router_gap", []).append(srt[:, k - 1] - srt[:, k] if k < X else np.ones(T))
            stats.setdefault("top_w", []).append(srt[:, 0])
            stats.setdefault("usage", []).append(np.bincount(sel.ravel(), minlength=X) / sel.size)
        ge, ue, de = (p + f"ffn_{n}_exps.weight" for n in ("gate", "up", "down"))
        out = np.zeros_like(x)
        for e in range(X):
            rows, slot = np.nonzero(sel == e)
            if len(rows) == 0:
                continue
            y = swiglu(h[rows], ge, ue, de, t[ge][e], t[ue][e], t[de][e])
            out[rows] += w[rows, slot][:, None] * y
        if arch in ("qwen2moe", "deepseek"):
            sh = swiglu(h, p + "ffn_gate_shexp.weight", p + "ffn_up_shexp.weight", p + "ffn_down_shexp.weight")
            if arch == "qwen2moe":
                z = h @ t[p + "ffn_gate_inp_shexp.weight"]
                sh = sh * (1 / (1 + np.exp(-z)))[:, None]
            out = out + sh
        x = x + out
    x = rmsnorm(x, t["output_norm.weight"], eps)
    return mm(x, "output.weight" if "output.weight" in t else "token_embd.weight")


def default_tokens(n):
    return np.fromfile(os.path.join(ROOT, "tests", "data", "logits", "smollm2.bin"), dtype="<i4", count=n).tolist()


def margins(logits):
    srt = np.sort(logits, axis=1)
    return srt[:, -1] - srt[:, -2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("-n", type=int, default=256, help="tokens (the first n of tests/data/logits/smollm2.bin)")
    ap.add_argument("--compare", action="store_true", help="compare with llama.cpp (needs llama-cpp-python)")
    args = ap.parse_args()
    tokens = default_tokens(args.n)
    if args.compare:
        from llama_cpp import Llama
        print("numpy float64 forward vs llama.cpp; 'exact' = plain float64, 'emul' = with llama.cpp's activation"
              " rounding (and f16 K/V/Q/P for the f16 KV cache)")
        print(f"{'file':24} {'kv':3} {'ref':5} {'max|d|':>8} {'mean|d|':>8} {'max|ref|':>8} {'top1':>7} {'meanKL':>9}")
    for path in args.files:
        m = Model(path)
        st = {}
        ref = forward(m, tokens, st)
        name = os.path.basename(path)
        if not args.compare:
            mg = margins(ref) / ref.std()
            gap = np.concatenate(st["router_gap"]) if st else np.array([np.nan])
            use = np.array(st["usage"]) if st else np.array([[np.nan]])
            print(f"{name}: logit std {ref.std():.2f}, top1-top2 margin/std: median {np.median(mg):.3f}, "
                  f"<0.01: {(mg < 0.01).mean():.3f}, <0.05: {(mg < 0.05).mean():.3f}; router: top weight mean "
                  f"{np.concatenate(st['top_w']).mean():.2f}, k-th vs (k+1)-th prob gap <0.01: "
                  f"{(gap < 0.01).mean():.3f}, expert usage min/max {use.min():.2f}/{use.max():.2f}")
            continue
        for kv in ("f32", "f16"):
            kw = dict(type_k=0, type_v=0) if kv == "f32" else {}
            llm = Llama(model_path=path, n_ctx=max(512, len(tokens)), n_batch=512, logits_all=True, n_threads=2,
                        verbose=False, flash_attn=False, **kw)
            llm.eval(tokens)
            got = np.array(llm.scores[: len(tokens)], dtype=np.float64)
            del llm
            emul = forward(m, tokens, emulate=True, kv_f16=kv == "f16")
            for tag, r in (("exact", ref), ("emul", emul)):
                top1, kl, mx = agreement(r, got)
                d = np.abs(r - got)
                print(f"{name:24} {kv:3} {tag:5} {mx:8.2e} {d.mean():8.2e} {np.abs(r).max():8.2f} {top1:7.4f} {kl:9.2e}",
                      flush=True)


if __name__ == "__main__":
    main()
