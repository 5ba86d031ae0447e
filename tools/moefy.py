#!/usr/bin/env python3
"""MoEfication: turns a dense qwen2 GGUF (Qwen2.5) into a `qwen2moe` GGUF with real weight
statistics, by splitting every FFN's intermediate neurons into E equal experts (balanced k-means)
and giving each layer a router. llama.cpp loads the result; see docs/moe.md.

    python3 tools/moefy.py -m SRC.f32.gguf -o OUT.gguf --experts 8 --used 2 \\
        [--shared-neurons N|auto] [--cluster weights|coact] [--router centroid|lsq] \\
        [--calib-tokens N] [--seed S] [--type f32|f16]

Construction (exact identity, then top-k drops experts):
- The dense FFN is down·(silu(gate·h) ⊙ up·h) = Σ_neurons d_i·a_i(h). Partition the F neurons
  into a shared set S (N neurons) and E clusters of Fe = (F − N)/E neurons. Expert e = its
  neurons' rows of gate/up and columns of down; the sum of all experts plus the shared expert is
  the dense FFN exactly.
- qwen2moe weights each selected expert by p_e = softmax(router·h)_e over ALL experts, without
  renormalising. The router rows are centred (mean row removed: softmax is shift-invariant) and
  scaled by a small alpha so that the logit spread stays ≤ --router-spread (1e-3) on calibration
  tokens; then p_e = (1/E)·(1 + O(1e-3)) and the expert's down is multiplied by E, so each
  selected expert enters with weight 1 ± 0.1%. The top-k choice is scale-invariant. Not much
  smaller: llama.cpp ranks experts by p, and p is f32 with a relative resolution of 1.2e-7; at a
  1e-6 spread neighbouring experts' p tie in f32 and the choice among them becomes index order
  (wikitext perplexity of the E = 8, k = 2 model rose from 166 to 189). h is RMS-normalised, so no
  input reaches a much larger spread than the calibration tokens.
- The shared expert's gate σ(w·h) (llama.cpp: silu(z)/z, NaN at z = 0 exactly) is made 1/2 for
  every input: w is a fixed random direction scaled so that |z| ≤ --shexp-z (1e-6) for an h 100
  times larger than the largest calibration h, and the shared expert's down is multiplied by 2.
  σ(z) = 1/2 + z/4, so the shared expert enters with weight 1 ± 1e-6 whatever h is. (A gate made
  large, σ → 1, needs a direction every h projects positively on; no such direction holds beyond
  the calibration text: on wikitext it went negative for almost every token in 9 of 24 layers of
  Qwen2.5-0.5B, switching the shared expert off.) z = 0 exactly would need h ⟂ w to the last bit.
  llama.cpp REQUIRES the four shared-expert tensors, so without shared neurons a 256-wide shared
  expert with zero weights is written (contributes exactly 0).
- The calibration pass is a numpy forward of the DENSE model (f32) over --calib-tokens tokens of
  C4 train text in windows of 512 (no BOS: Qwen2.5 adds none), layer by layer, which also gives
  every layer's FFN input h and neuron activations a (T, F) for clustering, routing and shared
  neurons. Memory is bounded by one layer's activations.

Other modes (need llama-cpp-python, e.g. ~/.cache/stepq/venv-ref/bin/python):
    tools/moefy.py --check-forward SRC.f32.gguf       numpy forward vs llama.cpp logits
    tools/moefy.py --perplexity M.gguf [...] --chunks 16   wikitext2 perplexity, the protocol of
                                                       tools/make_perplexity_reference.py
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C4 = os.path.join(ROOT, "..", "shared", "data", "c4-sample", "c4_sample.jsonl")
N_CTX = 512
ZERO_SHEXP_WIDTH = 256  # width of the all-zero shared expert written when there are no shared neurons


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Dense qwen2 model from a GGUF (memory-mapped; numpy arrays in PyTorch layout)

class Qwen2:
    def __init__(self, path):
        import gguf
        self.reader = gguf.GGUFReader(path)
        r = self.reader
        arch = self.str_field("general.architecture")
        if arch != "qwen2":
            sys.exit(f"{path}: architecture {arch!r}, expected qwen2")
        self.t = {t.name: t for t in r.tensors}
        g = lambda k: self.num_field(f"qwen2.{k}")
        self.E = int(g("embedding_length"))            # model width
        self.L = int(g("block_count"))
        self.F = int(g("feed_forward_length"))
        self.nh = int(g("attention.head_count"))
        self.nkv = int(g("attention.head_count_kv"))
        self.hd = self.E // self.nh
        self.eps = float(g("attention.layer_norm_rms_epsilon"))
        self.base = float(g("rope.freq_base"))
        for name, t in self.t.items():
            if t.tensor_type.name not in ("F32", "F16"):
                sys.exit(f"{path}: tensor {name} is {t.tensor_type.name}; moefy reads F32/F16 sources "
                         "(make one with scripts/make-f32-models.py)")

    def str_field(self, k):
        f = self.reader.fields[k]
        return bytes(f.parts[f.data[0]]).decode()

    def num_field(self, k):
        f = self.reader.fields[k]
        return f.parts[f.data[0]].tolist()[0]

    def w(self, name):
        """(rows, cols) float32 array, PyTorch layout ((out, in) for matrices)."""
        return np.asarray(self.t[name].data, dtype=np.float32)

    def has(self, name):
        return name in self.t


def rmsnorm(x, w, eps):
    ms = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True).astype(np.float32)
    return x * (1.0 / np.sqrt(ms + eps)) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def rope_tables(n, hd, base):
    inv = base ** (-np.arange(0, hd // 2, dtype=np.float64) * 2.0 / hd)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rope_neox(x, cos, sin):
    """x (..., n, hd): rotates pairs (x[i], x[i + hd/2])."""
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return np.concatenate([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)


def attention_block(m, l, x):
    """x (S, n, E) residual stream -> residual + attention output, for S independent windows."""
    p = f"blk.{l}."
    S, n, E = x.shape
    hn = rmsnorm(x, m.w(p + "attn_norm.weight"), m.eps).reshape(S * n, E)
    q = hn @ m.w(p + "attn_q.weight").T
    k = hn @ m.w(p + "attn_k.weight").T
    v = hn @ m.w(p + "attn_v.weight").T
    if m.has(p + "attn_q.bias"):
        q += m.w(p + "attn_q.bias")
        k += m.w(p + "attn_k.bias")
        v += m.w(p + "attn_v.bias")
    cos, sin = rope_tables(n, m.hd, m.base)
    q = rope_neox(q.reshape(S, n, m.nh, m.hd).transpose(0, 2, 1, 3), cos, sin)
    k = rope_neox(k.reshape(S, n, m.nkv, m.hd).transpose(0, 2, 1, 3), cos, sin)
    v = v.reshape(S, n, m.nkv, m.hd).transpose(0, 2, 1, 3)
    rep = m.nh // m.nkv  # query head h reads KV head h // rep
    mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
    out = np.empty((S, n, m.nh * m.hd), dtype=np.float32)
    scale = np.float32(1.0 / np.sqrt(m.hd))
    for s in range(S):
        kk = np.repeat(k[s], rep, axis=0)
        vv = np.repeat(v[s], rep, axis=0)
        sc = q[s] @ kk.transpose(0, 2, 1) * scale + mask
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc /= sc.sum(-1, keepdims=True)
        out[s] = (sc @ vv).transpose(1, 0, 2).reshape(n, m.nh * m.hd)
    return x + (out.reshape(S * n, -1) @ m.w(p + "attn_output.weight").T).reshape(S, n, E)


def ffn_activations(m, l, x):
    """(h, a): FFN input h (T, E) = RMSNorm(x) and the neurons' activations a (T, F)."""
    p = f"blk.{l}."
    h = rmsnorm(x.reshape(-1, m.E), m.w(p + "ffn_norm.weight"), m.eps)
    a = silu(h @ m.w(p + "ffn_gate.weight").T) * (h @ m.w(p + "ffn_up.weight").T)
    return h, a


def dense_logits(m, tokens):
    """Logits (n, V) of one window, the dense f32 forward (for --check-forward)."""
    x = m.w("token_embd.weight")[np.asarray(tokens)][None].copy()
    for l in range(m.L):
        x = attention_block(m, l, x)
        h, a = ffn_activations(m, l, x)
        x = x + (a @ m.w(f"blk.{l}.ffn_down.weight").T).reshape(x.shape)
    x = rmsnorm(x[0], m.w("output_norm.weight"), m.eps)
    head = m.w("output.weight") if m.has("output.weight") else m.w("token_embd.weight")
    return x @ head.T


# ----------------------------------------------------------------------------------------------
# Calibration text (C4 train sample; never the wikitext2 test file the perplexity is measured on)

def calibration_tokens(model_path, n_tokens):
    docs = []
    size = 0
    with open(C4) as f:
        for line in f:
            docs.append(json.loads(line)["text"])
            size += len(docs[-1])
            if size > n_tokens * 6:  # ~4 characters a token; generous
                break
    text = "\n\n".join(docs)
    ids = tokenize(model_path, text)
    if len(ids) < n_tokens:
        sys.exit(f"calibration text has only {len(ids)} tokens, {n_tokens} asked")
    return np.array(ids[:n_tokens], dtype=np.int64)


def tokenize(model_path, text):
    """Token ids without BOS: llama-cpp-python when importable, else ./build/stepq tokenize (both
    are llama.cpp-exact tokenizers)."""
    try:
        from llama_cpp import Llama
        llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
        return list(llm.tokenize(text.encode(), add_bos=False, special=False))
    except ImportError:
        pass
    stepq = os.environ.get("STEPQ_BIN", os.path.join(ROOT, "build", "stepq"))
    if not os.path.exists(stepq):
        sys.exit(f"tokenizing the calibration text needs llama-cpp-python or stepq ({stepq}; set STEPQ_BIN)")
    ids = []
    piece = 60000  # characters per call (argv limit); split at paragraph ends
    i = 0
    while i < len(text):
        j = min(len(text), i + piece)
        if j < len(text):
            k = text.rfind("\n", i, j)
            j = k + 1 if k > i else j
        out = subprocess.run([stepq, "tokenize", "-m", model_path, "--ids", "--no-bos", "-p", text[i:j]],
                             check=True, capture_output=True, text=True).stdout
        ids += [int(s) for s in out.split()]
        i = j
    return ids


# ----------------------------------------------------------------------------------------------
# Balanced spherical k-means

def balanced_assign(sim, cap):
    """Greedy capacity-constrained assignment: (neuron, cluster) pairs by descending similarity,
    each neuron to its best cluster that still has room. sim (n, X); returns labels (n,)."""
    n, X = sim.shape
    labels = np.full(n, -1, dtype=np.int64)
    room = np.full(X, cap, dtype=np.int64)
    left = n
    for idx in np.argsort(-sim, axis=None, kind="stable"):
        i, e = divmod(int(idx), X)
        if labels[i] < 0 and room[e] > 0:
            labels[i] = e
            room[e] -= 1
            left -= 1
            if left == 0:
                break
    return labels


def balanced_kmeans(feat, X, rng, iters=25):
    """feat (n, d) unit rows, n divisible by X -> labels (n,) with n/X members per cluster."""
    n = feat.shape[0]
    cap = n // X
    # k-means++ initialisation on cosine distance
    cent = [feat[rng.integers(n)]]
    d = 1.0 - feat @ cent[0]
    for _ in range(1, X):
        pr = np.maximum(d, 0) ** 2
        c = feat[rng.choice(n, p=pr / pr.sum())] if pr.sum() > 0 else feat[rng.integers(n)]
        cent.append(c)
        d = np.minimum(d, 1.0 - feat @ c)
    cent = np.stack(cent)
    labels = None
    for it in range(iters):
        sim = feat @ cent.T
        # a few free iterations first, then balanced ones
        new = sim.argmax(1) if it < iters // 3 else balanced_assign(sim, cap)
        if labels is not None and np.array_equal(new, labels) and it >= iters // 3:
            break
        labels = new
        for e in range(X):
            mem = feat[labels == e]
            if len(mem):
                c = mem.sum(0)
                cent[e] = c / max(np.linalg.norm(c), 1e-12)
    if np.bincount(labels, minlength=X).max() != cap:
        labels = balanced_assign(feat @ cent.T, cap)
    return labels


def unit_rows(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------------
# One layer: experts, router, shared expert

def moefy_layer(m, l, h, a, args, X, Fe, n_shared, rng):
    """h (T, E) FFN inputs, a (T, F) neuron activations of the dense model on calibration text.
    Returns (tensors: name -> numpy array in PyTorch layout, stats dict)."""
    p = f"blk.{l}."
    gate, up, down = m.w(p + "ffn_gate.weight"), m.w(p + "ffn_up.weight"), m.w(p + "ffn_down.weight")
    T = h.shape[0]
    dnorm = np.linalg.norm(down, axis=0)                      # (F,) norm of each neuron's down column
    importance = np.abs(a).mean(0) * dnorm                    # mean |contribution| of each neuron
    order = np.argsort(-importance, kind="stable")
    shared = np.sort(order[:n_shared])
    routed = np.sort(order[n_shared:])

    if args.cluster == "weights":
        feat = unit_rows(gate[routed])
    else:  # coact: activity pattern over calibration tokens
        feat = unit_rows(np.abs(a[:, routed]).T)
    labels = balanced_kmeans(feat.astype(np.float32), X, rng)
    groups = [routed[labels == e] for e in range(X)]          # sorted neuron ids per expert

    # each expert's output norm on calibration tokens (T, X); and the outputs for the error stats
    y = np.empty((X, T, m.E), dtype=np.float32)
    for e, g in enumerate(groups):
        y[e] = a[:, g] @ down[:, g].T
    ynorm = np.linalg.norm(y, axis=2).T                       # (T, X)
    y_shared = a[:, shared] @ down[:, shared].T if n_shared else np.zeros((T, m.E), np.float32)
    y_dense = y.sum(0) + y_shared

    def router_rows(hh, yn):
        if args.router == "centroid":
            wts = np.linalg.norm(up, axis=1) * dnorm          # neuron output scale
            return np.stack([(gate[g] * wts[g, None]).mean(0) for g in groups])
        target = yn / np.maximum(yn.mean(1, keepdims=True), 1e-12)  # (T, X) relative expert norm
        A = hh.astype(np.float64)
        lam = args.ridge * np.trace(A.T @ A) / A.shape[1]
        return np.linalg.solve(A.T @ A + lam * np.eye(A.shape[1]), A.T @ target).T.astype(np.float32)

    def rel_err(sel, idx):
        """relative error of (selected experts + shared) against the dense FFN on tokens idx."""
        out = y_shared[idx].copy()
        for j in range(sel.shape[1]):
            out += y[sel[:, j], idx]
        return float(np.linalg.norm(out - y_dense[idx]) / np.linalg.norm(y_dense[idx]))

    # held-out check: fit on the first 3/4 of the tokens, measure on the rest; then fit on all
    cut = (3 * T) // 4
    ho = np.arange(cut, T)
    R = router_rows(h[:cut], ynorm[:cut])
    k = args.used
    sel_router = np.argsort(-(h[ho] @ R.T), axis=1, kind="stable")[:, :k]
    sel_oracle = np.argsort(-ynorm[ho], axis=1, kind="stable")[:, :k]
    stats = {"err_router": rel_err(sel_router, ho), "err_oracle": rel_err(sel_oracle, ho),
             "err_random": rel_err(rng.permuted(np.tile(np.arange(X), (len(ho), 1)), axis=1)[:, :k], ho)}

    R = router_rows(h, ynorm)
    R -= R.mean(0, keepdims=True)                             # softmax is shift-invariant
    logits = h @ R.T
    spread = float((logits.max(1) - logits.min(1)).max())
    alpha = args.router_spread / max(spread, 1e-30)
    router = (R * alpha).astype(np.float32)                   # (X, E)

    t = {}
    t["ffn_gate_inp.weight"] = router
    t["ffn_gate_exps.weight"] = np.stack([gate[g] for g in groups])                # (X, Fe, E)
    t["ffn_up_exps.weight"] = np.stack([up[g] for g in groups])                    # (X, Fe, E)
    t["ffn_down_exps.weight"] = np.stack([down[:, g] * np.float32(X) for g in groups])  # (X, E, Fe)

    # shared expert gate: sigma(z) = 1/2 for every h (|z| tiny), down x 2
    w = rng.standard_normal(h.shape[1]).astype(np.float64)
    w /= np.linalg.norm(w)
    w *= args.shexp_z / (100.0 * float(np.linalg.norm(h, axis=1).max()))
    z = h.astype(np.float64) @ w
    stats["shexp_z_min"], stats["shexp_z_max"] = float(np.abs(z).min()), float(np.abs(z).max())
    t["ffn_gate_inp_shexp.weight"] = w.astype(np.float32)                           # (E,)
    if n_shared:
        t["ffn_gate_shexp.weight"] = gate[shared]
        t["ffn_up_shexp.weight"] = up[shared]
        t["ffn_down_shexp.weight"] = down[:, shared] * np.float32(2)
    else:
        t["ffn_gate_shexp.weight"] = np.zeros((ZERO_SHEXP_WIDTH, m.E), np.float32)
        t["ffn_up_shexp.weight"] = np.zeros((ZERO_SHEXP_WIDTH, m.E), np.float32)
        t["ffn_down_shexp.weight"] = np.zeros((m.E, ZERO_SHEXP_WIDTH), np.float32)

    # the llama.cpp weights of the selected experts on calibration tokens: X·p_e, expect ≈ 1
    lg = h @ router.T
    pe = np.exp(lg - lg.max(1, keepdims=True))
    pe = X * pe / pe.sum(1, keepdims=True)
    stats["xp_min"], stats["xp_max"] = float(pe.min()), float(pe.max())
    stats["spread"] = spread
    # expert load on calibration tokens (how often each expert is in the router's top-k)
    load = np.bincount(np.argsort(-lg, axis=1)[:, :k].ravel(), minlength=X) / (T * k)
    stats["load_max"] = float(load.max() * X)
    return t, stats


# ----------------------------------------------------------------------------------------------
# Writing the qwen2moe GGUF

MOE_NAMES = ["ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight",
             "ffn_gate_inp_shexp.weight", "ffn_gate_shexp.weight", "ffn_up_shexp.weight", "ffn_down_shexp.weight"]
DENSE_FFN = ("ffn_gate.weight", "ffn_up.weight", "ffn_down.weight")


def out_dtype(name, shape, kind):
    """F16 for matrices when asked; norms, biases and both routers stay F32 (the converter keeps
    ffn_gate_inp F32 and llama-quantize never quantizes it)."""
    if kind == "f16" and len(shape) >= 2 and "gate_inp" not in name:
        return np.float16
    return np.float32


def moefy(args):
    import gguf
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from gguf_util import field_value

    t0 = time.time()
    m = Qwen2(args.model)
    X, k = args.experts, args.used
    if not 1 <= k <= X:
        sys.exit(f"--used {k} must be in 1..--experts {X}")
    if args.shared_neurons == "auto":
        n_shared = m.F % (X * 256)  # smallest N making Fe a multiple of 256 (K-quant rows)
    else:
        n_shared = int(args.shared_neurons)
    if (m.F - n_shared) % X or not 0 <= n_shared < m.F:
        sys.exit(f"F - shared = {m.F} - {n_shared} is not divisible by {X} experts")
    Fe = (m.F - n_shared) // X
    Fs = n_shared or ZERO_SHEXP_WIDTH
    log(f"[moefy] {os.path.basename(args.model)}: E={m.E} L={m.L} F={m.F} -> {X} experts x {Fe} "
        f"(top {k}), shared {n_shared} neurons (tensor width {Fs}); cluster={args.cluster} router={args.router}")

    # -- metadata: everything copied, qwen2.* -> qwen2moe.*, the expert keys added
    w = gguf.GGUFWriter(args.output + ".partial", "qwen2moe")
    for key, f in m.reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        v, et = field_value(f)
        t = f.types[0]
        if key == "general.file_type":
            v = 1 if args.type == "f16" else 0
        if key.startswith("qwen2."):
            key = "qwen2moe." + key[len("qwen2."):]
        if t == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, v, t, sub_type=et)
        else:
            w.add_key_value(key, v, t)
    U32 = gguf.GGUFValueType.UINT32
    w.add_key_value("qwen2moe.expert_count", X, U32)
    w.add_key_value("qwen2moe.expert_used_count", k, U32)
    w.add_key_value("qwen2moe.expert_feed_forward_length", Fe, U32)
    w.add_key_value("qwen2moe.expert_shared_feed_forward_length", Fs, U32)
    recipe = (f"moefy: {os.path.basename(args.model)} experts={X} used={k} shared_neurons={n_shared} "
              f"cluster={args.cluster} router={args.router} calib_tokens={args.calib_tokens} seed={args.seed}")
    w.add_key_value("moefy.recipe", recipe, gguf.GGUFValueType.STRING)

    # -- tensor infos, in writing order: globals, then layer by layer
    shapes = {}  # name -> numpy shape
    order = []
    for name in ("token_embd.weight", "output_norm.weight", "output.weight"):
        if m.has(name):
            order.append(name)
            shapes[name] = tuple(m.t[name].data.shape)
    moe_shapes = {"ffn_gate_inp.weight": (X, m.E), "ffn_gate_exps.weight": (X, Fe, m.E),
                  "ffn_up_exps.weight": (X, Fe, m.E), "ffn_down_exps.weight": (X, m.E, Fe),
                  "ffn_gate_inp_shexp.weight": (m.E,), "ffn_gate_shexp.weight": (Fs, m.E),
                  "ffn_up_shexp.weight": (Fs, m.E), "ffn_down_shexp.weight": (m.E, Fs)}
    for l in range(m.L):
        p = f"blk.{l}."
        for name in sorted(n for n in m.t if n.startswith(p)):
            if name[len(p):] not in DENSE_FFN:
                order.append(name)
                shapes[name] = tuple(m.t[name].data.shape)
        for n in MOE_NAMES:
            order.append(p + n)
            shapes[p + n] = moe_shapes[n]
    if "output.weight" not in shapes:  # qwen2moe requires output.weight: tie it explicitly
        order.insert(2, "output.weight")
        shapes["output.weight"] = tuple(m.t["token_embd.weight"].data.shape)
    for name in order:
        dt = out_dtype(name, shapes[name], args.type)
        w.add_tensor_info(name, shapes[name], np.dtype(dt), int(np.prod(shapes[name])) * np.dtype(dt).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    written = []

    def put(name, arr):
        assert name == order[len(written)], (name, order[len(written)])
        assert tuple(arr.shape) == shapes[name], (name, arr.shape, shapes[name])
        w.write_tensor_data(np.ascontiguousarray(arr, dtype=out_dtype(name, shapes[name], args.type)))
        written.append(name)

    put("token_embd.weight", m.w("token_embd.weight"))
    put("output_norm.weight", m.w("output_norm.weight"))
    put("output.weight", m.w("output.weight" if m.has("output.weight") else "token_embd.weight"))

    # -- calibration forward, layer by layer
    ids = calibration_tokens(args.model, args.calib_tokens)
    S = args.calib_tokens // N_CTX
    x = m.w("token_embd.weight")[ids[:S * N_CTX].reshape(S, N_CTX)].astype(np.float32)
    log(f"[moefy] calibration: {S} windows of {N_CTX} tokens of C4 train ({time.time() - t0:.0f} s)")
    rng = np.random.default_rng(args.seed)
    summary = []
    for l in range(m.L):
        tl = time.time()
        p = f"blk.{l}."
        x = attention_block(m, l, x)
        h, a = ffn_activations(m, l, x)
        t, st = moefy_layer(m, l, h, a, args, X, Fe, n_shared, rng)
        for name in order[len(written):]:
            if not name.startswith(p):
                break
            base = name[len(p):]
            put(name, t[base] if base in t else m.w(name))
        x = x + (a @ m.w(p + "ffn_down.weight").T).reshape(x.shape)  # dense continues
        del h, a, t
        summary.append(st)
        log(f"[moefy] layer {l:2d}: top-{k} rel. error router {st['err_router']:.3f} oracle "
            f"{st['err_oracle']:.3f} random {st['err_random']:.3f} | X*p in [{st['xp_min']:.5f}, "
            f"{st['xp_max']:.5f}] | max load {st['load_max']:.2f}x | shexp |z| [{st['shexp_z_min']:.1e}, "
            f"{st['shexp_z_max']:.1e}] | {time.time() - tl:.1f} s")
    assert len(written) == len(order)
    w.close()
    os.replace(args.output + ".partial", args.output)
    mean = lambda key: float(np.mean([s[key] for s in summary]))
    log(f"[moefy] mean held-out top-{k} rel. error: router {mean('err_router'):.4f}, oracle "
        f"{mean('err_oracle'):.4f}, random {mean('err_random'):.4f}")
    log(f"[moefy] wrote {args.output} ({os.path.getsize(args.output) / 1e6:.0f} MB) in {time.time() - t0:.0f} s")


# ----------------------------------------------------------------------------------------------
# llama.cpp checks (llama-cpp-python)

def check_forward(path):
    from llama_cpp import Llama
    m = Qwen2(path)
    llm = Llama(model_path=path, n_ctx=256, n_batch=256, logits_all=True, n_threads=2, verbose=False)
    toks = llm.tokenize(b"def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", add_bos=False)
    llm.reset()
    llm.eval(toks)
    ref = np.array(llm.scores[:len(toks)], dtype=np.float32)
    got = dense_logits(m, toks)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    print(f"{len(toks)} tokens: max |numpy - llama.cpp| / max |logit| = {err:.2e}, argmax agreement {agree:.3f}")


def perplexity(path, chunks, threads):
    """wikitext2 test perplexity with llama.cpp, tools/make_perplexity_reference.py's protocol:
    file tokenized once, windows of 512, BOS replacing the first token only when the model adds
    BOS, second half of each window scored; the first `chunks` windows."""
    from make_perplexity_reference import llama_perplexity
    t0 = time.time()
    _, ppl, err, count = llama_perplexity(path, chunks, N_CTX, threads)
    res = {"model": os.path.basename(path), "ppl": ppl, "ppl_error": err, "chunks": chunks,
           "n_scored": count, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(res), flush=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", help="dense qwen2 source GGUF (F32 or F16)")
    ap.add_argument("-o", "--output", help="qwen2moe GGUF to write")
    ap.add_argument("--experts", type=int, default=8, help="routed experts X")
    ap.add_argument("--used", type=int, default=2, help="experts used per token k")
    ap.add_argument("--shared-neurons", default="0",
                    help="N most active neurons form the shared expert; 'auto' = F mod (X*256), "
                         "which makes the expert width a multiple of 256")
    ap.add_argument("--cluster", choices=["weights", "coact"], default="coact",
                    help="neuron features: normalised gate rows, or |activation| over calibration tokens")
    ap.add_argument("--router", choices=["centroid", "lsq"], default="lsq",
                    help="centroid: weighted mean gate row of the expert's neurons; lsq: ridge "
                         "regression of the experts' relative output norms on h")
    ap.add_argument("--calib-tokens", type=int, default=4096, help="calibration tokens (C4 train), multiple of 512")
    ap.add_argument("--ridge", type=float, default=1e-3, help="lsq ridge, relative to mean diag(HᵀH)")
    ap.add_argument("--router-spread", type=float, default=1e-3,
                    help="max router logit spread on calibration tokens (softmax weights = (1 ± spread)/X)")
    ap.add_argument("--shexp-z", type=float, default=1e-6,
                    help="largest |shared-gate logit| for an h 100x the largest calibration h")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--type", choices=["f32", "f16"], default="f16", help="matrices' type in the output")
    ap.add_argument("--check-forward", metavar="GGUF", help="compare the numpy forward with llama.cpp")
    ap.add_argument("--perplexity", nargs="+", metavar="GGUF", help="wikitext2 perplexity with llama.cpp")
    ap.add_argument("--chunks", type=int, default=16, help="windows of 512 for --perplexity")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.check_forward:
        return check_forward(args.check_forward)
    if args.perplexity:
        for p in args.perplexity:
            perplexity(p, args.chunks, args.threads)
        return
    if not args.model or not args.output:
        ap.error("-m and -o are required")
    if args.calib_tokens % N_CTX:
        ap.error(f"--calib-tokens must be a multiple of {N_CTX}")
    moefy(args)


if __name__ == "__main__":
    main()
