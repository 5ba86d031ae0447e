#!/usr/bin/env python3
"""Reference logits from llama.cpp (llama-cpp-python) for the generated MoE test models.

The models are not committed: scripts/make-test-models.py regenerates them deterministically with
tools/make_moe_model.py into <models>/moe/<arch>-<size>-<type>.gguf (5 layouts x sizes s, m x
F16 / Q8_0 / Q4_K). This script, run with a Python that has llama-cpp-python built from source
(the venv of tools/setup_reference_venv.sh), writes for each of them a small reference:

    ~/.cache/stepq/venv-ref/bin/python tools/make_moe_reference.py [NAME ...]   # e.g. olmoe-s-q4_k

  tests/data/moe/<name>.bin   the same layout as tests/data/logits/*.bin, little-endian:
      int32 tokens[n_tokens]                 fed as independent sequences of `window` (16) tokens, each
                                             from an empty cache at position 0
      n_tokens x { float lse; int32 ids[K]; float logits[K] }  per position: log-sum-exp of the
                                                  full logit row, then the K largest logits, descending
  tests/data/moe/<name>.json  model_file (relative to the models folder), model_sha256 (the test
      should check it: a mismatch means the generator or numpy changed the bytes, and the
      reference must be remade), generator (make_moe_model.py arguments), reference
      (llama-cpp-python version and settings), n_tokens, top_k, n_vocab, and llama.cpp's agreement
      with itself when the same tokens are evaluated one at a time instead of in one batch
      (self_top1, self_mean_kl over the full vocabulary, self_max_abs), and with flash attention
      on (the llama.cpp CLI's default on CPU) instead of off (fa_top1, fa_mean_kl, fa_max_abs):
      two measures of how far equally valid float orderings move the logits. Also
      margin_*: how far the reference's top-1 logit is above its second (near-ties flip under noise).

Tokens: the first n_tokens (256) of tests/data/logits/smollm2.bin's token list (wikitext-2 tokenized
by SmolLM2, whose vocabulary these models copy), cut into 16 windows of 16 tokens, each evaluated
as its own sequence. Why windows: in these random MoE models one discrete event (a router near-tie
or a Q8_K rounding that a different summation order flips) changes every later position of the
sequence through attention, so over one long sequence llama.cpp disagrees with itself (batch vs
one token at a time) on up to 7% of top-1 tokens; short windows bound how far one such event
reaches, so the comparison measures per-token agreement rather than chaos. llama.cpp runs with its
library defaults as llama-cpp-python sets them (F16 KV cache, no flash attention), 2 threads, one
batch per window.
"""
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from logit_stats import agreement, log_softmax, logsumexp, write_topk_reference  # noqa: E402,F401
from stepq_models import models_dir, sha256_of  # noqa: E402
from make_moe_model import MOE_MODELS  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "moe")
N_TOKENS = 256
WINDOW = 16
TOP_K = 8


def tokens():
    t = np.fromfile(os.path.join(ROOT, "tests", "data", "logits", "smollm2.bin"), dtype="<i4", count=N_TOKENS)
    return [int(x) for x in t]


def run(name):
    rel = os.path.join("moe", name + ".gguf")
    path = os.path.join(models_dir(), rel)
    if not os.path.exists(path):
        sys.exit(f"missing {path}: run python3 scripts/make-test-models.py")
    toks = tokens()
    def evaluate(llm):
        rows = []
        for w in range(0, N_TOKENS, WINDOW):
            llm.reset()
            llm.eval(toks[w:w + WINDOW])
            rows.append(np.array(llm.scores[:WINDOW], dtype=np.float32))
        return np.concatenate(rows)

    llm = Llama(model_path=path, n_ctx=512, n_batch=512, logits_all=True, n_threads=2, verbose=False, seed=0)
    scores = evaluate(llm)
    n_vocab = int(llm.n_vocab())
    del llm
    n_bytes = write_topk_reference(os.path.join(OUT, f"{name}.bin"), toks, scores, TOP_K)

    one = Llama(model_path=path, n_ctx=512, n_batch=1, n_ubatch=1, logits_all=True, n_threads=2, verbose=False)
    top1, kl, mx = agreement(scores, evaluate(one))
    del one
    fa = Llama(model_path=path, n_ctx=512, n_batch=512, logits_all=True, n_threads=2, verbose=False, flash_attn=True)
    fa_top1, fa_kl, fa_mx = agreement(scores, evaluate(fa))
    del fa
    srt = np.sort(scores, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    meta = {
        "model_file": rel,
        "model_sha256": sha256_of(path),
        "generator": "tools/make_moe_model.py " + " ".join(MOE_MODELS[name]),
        "reference": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp defaults: f16 KV cache, no flash attention, 2 threads)",
        "text": "first n_tokens tokens of tests/data/logits/smollm2.bin (wikitext-2, SmolLM2 tokenizer), in independent windows of `window` tokens",
        "n_tokens": N_TOKENS,
        "window": WINDOW,
        "top_k": TOP_K,
        "n_vocab": n_vocab,
        "self_top1": top1,
        "self_mean_kl": kl,
        "self_max_abs": mx,
        "fa_top1": fa_top1,
        "fa_mean_kl": fa_kl,
        "fa_max_abs": fa_mx,
        "margin_min": float(margin.min()),
        "margin_median": float(np.median(margin)),
        "margin_frac_below_0.05": float((margin < 0.05).mean()),
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"[{name}] llama.cpp loads it; batch vs 1: top1 {top1:.4f} mean KL {kl:.3g} max |d| {mx:.3g}; "
          f"flash attention vs not: top1 {fa_top1:.4f} mean KL {fa_kl:.3g}; top-1 margin median {np.median(margin):.3f} min {margin.min():.4f}; wrote {n_bytes} bytes", flush=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    names = sys.argv[1:] or list(MOE_MODELS)
    for name in names:
        if name not in MOE_MODELS:
            sys.exit(f"unknown model {name}; known: {', '.join(MOE_MODELS)}")
        run(name)


if __name__ == "__main__":
    main()
