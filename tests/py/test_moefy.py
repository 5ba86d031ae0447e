#!/usr/bin/env python3
"""tools/moefy.py on the real Qwen2.5-Coder-0.5B: with every expert used (k = E) the qwen2moe file
it writes is the dense model again (stepq's logits on the MoE equal the dense model's up to the F16
rounding of the weights), and with top-2 routing (the same file, expert_used_count patched to 2)
it is not. Checks the split, the routing weights (each expert enters with weight ~1), the shared
expert and its sigmoid gate, and stepq's qwen2moe forward on real weights. About two minutes."""
import os, subprocess, sys, tempfile

import numpy as np

from common import BIN, MODELS, ROOT, check, finish, stepq

DENSE = os.path.join(MODELS, "qwen2.5-coder-0.5b-instruct.f32.gguf")
TOKENS = [int(t) for t in np.fromfile(os.path.join(ROOT, "tests", "data", "logits", "qwen0.5b.bin"), dtype="<i4",
                                      count=48)]


def logits(path, out):
    r = stepq("dump-logits", "-m", path, "--tokens", " ".join(map(str, TOKENS)), "-o", out, "-t", "2")
    check(r.returncode == 0, f"dump-logits {os.path.basename(path)}", r)
    return np.fromfile(out, dtype=np.float32).reshape(len(TOKENS), -1).astype(np.float64)


def compare(a, b):
    la = a - a.max(1, keepdims=True)
    la -= np.log(np.exp(la).sum(1, keepdims=True))
    lb = b - b.max(1, keepdims=True)
    lb -= np.log(np.exp(lb).sum(1, keepdims=True))
    return float((a.argmax(1) == b.argmax(1)).mean()), float((np.exp(la) * (la - lb)).sum(1).mean())


if not os.path.exists(DENSE):
    check(False, f"{DENSE} missing (run python3 scripts/make-f32-models.py)")
    finish("moefy")

with tempfile.TemporaryDirectory() as tmp:
    moe = os.path.join(tmp, "moe-e8-k8.gguf")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "moefy.py"), "-m", DENSE, "-o", moe, "--experts",
                        "8", "--used", "8", "--shared-neurons", "auto", "--calib-tokens", "1024"],
                       capture_output=True, text=True, timeout=1800, env=dict(os.environ, STEPQ_BIN=BIN))
    check(r.returncode == 0 and os.path.exists(moe), "moefy writes a qwen2moe file", r)
    if r.returncode == 0:
        ins = stepq("inspect", moe)
        check(ins.returncode == 0 and "arch qwen2moe" in ins.stdout and "experts 8 per MoE layer, 8 used" in ins.stdout
              and "shared expert ffn 768 (sigmoid-gated)" in ins.stdout, "inspect: 8 experts and a gated shared expert",
              ins)
        dense = logits(DENSE, os.path.join(tmp, "dense.bin"))
        full = logits(moe, os.path.join(tmp, "full.bin"))
        top1, kl = compare(dense, full)
        print(f"     k = E: top-1 agreement with the dense model {top1:.4f}, mean KL {kl:.2e}")
        check(top1 >= 0.98 and kl <= 1e-4, "k = E reproduces the dense model (F16 weights)")
        # Same file, 2 of 8 experts per token.
        data = bytearray(open(moe, "rb").read())
        key = b"qwen2moe.expert_used_count"
        i = data.find(key) + len(key)
        data[i + 4:i + 8] = (2).to_bytes(4, "little")
        k2 = os.path.join(tmp, "moe-e8-k2.gguf")
        open(k2, "wb").write(data)
        del data
        top2 = logits(k2, os.path.join(tmp, "k2.bin"))
        top1_2, kl_2 = compare(dense, top2)
        print(f"     k = 2: top-1 agreement {top1_2:.4f}, mean KL {kl_2:.2e}")
        check(kl_2 > 10 * kl and kl_2 > 1e-2, "top-2 routing drops experts (the logits move)")

finish("moefy")
