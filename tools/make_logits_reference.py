#!/usr/bin/env python3
"""Reference logits and greedy continuations from llama.cpp (llama-cpp-python) for the real models.

Run with a Python that has llama-cpp-python (built from source, e.g. the venv made by
`tools/setup_reference_venv.sh`):

    ~/.cache/stepq/venv-ref/bin/python tools/make_logits_reference.py [--quantized|--f32] [MODEL ...]

For each model it writes two references into tests/data/logits/:
  <model>.bin/.json      the real quantized file
  <model>.f32.bin/.json  the F32 copy made by scripts/make-f32-models.py (same weights, exact)
llama.cpp runs with its library defaults as llama-cpp-python sets them (F16 KV cache, no flash
attention), 2 threads, batches of 512.

With quantized weights llama.cpp quantizes every activation row (Q8_0/Q8_1/Q8_K) before each
matmul, so a different float summation order flips roundings and moves logits by up to ~1; the
.json of a quantized model therefore also records llama.cpp's agreement with itself when the same
tokens are evaluated one at a time instead of in batches of 512 ("self_*"): the noise floor any
other engine is measured against.

.bin layout (little-endian):
  int32 tokens[n_tokens]                         wikitext2 tokens fed in one sequence
  n_tokens x { float lse; int32 ids[K]; float logits[K] }   per position: log-sum-exp of the full
                                                 logit row and the K largest logits, descending
The .json holds the model sha256, llama-cpp-python version, K, and for each greedy prompt the
prompt token ids, the generated ids and, per step, the top-2 ids and logits (near-tie evidence).
"""
import json, os, sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared")
sys.path.insert(0, HERE)
from logit_stats import agreement, log_softmax, logsumexp, write_topk_reference  # noqa: E402,F401
from stepq_models import MODEL_FILES as MODELS, f32_file, models_dir, sha256_of  # noqa: E402

MODELS_DIR = models_dir()
OUT = os.path.join(ROOT, "tests", "data", "logits")
N_TOKENS = 1024
TOP_K = 16
GREEDY_STEPS = 128
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Let's think step by step.",
    "Once upon a time, in a small village by the sea,",
    "Q: What is the boiling point of water in Fahrenheit?\nA:",
]


def run(name, f32):
    file = f32_file(MODELS[name]) if f32 else MODELS[name]
    tag = name + (".f32" if f32 else "")
    path = os.path.join(MODELS_DIR, file)
    if not os.path.exists(path):
        sys.exit(f"missing {path}: run scripts/fetch-models.py and scripts/make-f32-models.py")
    llm = Llama(model_path=path, n_ctx=2048, n_batch=512, logits_all=True, n_threads=2, verbose=False, seed=0)
    text = open(os.path.join(SHARED, "data", "wikitext2", "wiki.test.raw"), encoding="utf-8").read().replace("\r", "")
    tokens = llm.tokenize(text[:20000].encode("utf-8"), add_bos=True, special=False)[:N_TOKENS]
    assert len(tokens) == N_TOKENS, len(tokens)
    llm.reset()
    llm.eval(tokens)
    scores = np.array(llm.scores[:N_TOKENS], dtype=np.float32)
    n_bytes = write_topk_reference(os.path.join(OUT, f"{tag}.bin"), tokens, scores, TOP_K)

    self_stats = None
    if not f32:
        one = Llama(model_path=path, n_ctx=2048, n_batch=1, n_ubatch=1, logits_all=True, n_threads=2, verbose=False)
        one.eval(tokens)
        top1, kl, mx = agreement(scores, np.array(one.scores[:N_TOKENS], dtype=np.float32))
        self_stats = {"self_top1": top1, "self_mean_kl": kl, "self_max_abs": mx}
        print(f"[{tag}] llama.cpp batch 512 vs 1: top1 {top1:.4f} mean KL {kl:.3g} max |d| {mx:.3g}", file=sys.stderr)
        del one

    greedy = []
    for prompt in PROMPTS:
        ptoks = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        llm.reset()
        llm.eval(ptoks)
        gen, top2 = [], []
        for _ in range(GREEDY_STEPS):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-row, kind="stable")[:2]
            nxt = int(order[0])
            gen.append(nxt)
            top2.append([int(order[0]), float(row[order[0]]), int(order[1]), float(row[order[1]])])
            llm.eval([nxt])
        greedy.append({"prompt": prompt, "prompt_tokens": ptoks, "generated": gen, "top2": top2})
        print(f"[{tag}] {prompt[:30]!r} -> {llm.detokenize(gen)[:60]!r}", file=sys.stderr)

    meta = {
        "model_file": file,
        "model_sha256": sha256_of(path),
        "reference": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp defaults: f16 KV cache, no flash attention, 2 threads)",
        "text": "first 20000 characters of ../shared/data/wikitext2/wiki.test.raw, \\r stripped, add_bos as the model sets it",
        "n_tokens": N_TOKENS,
        "top_k": TOP_K,
        "n_vocab": int(llm.n_vocab()),
        "greedy_steps": GREEDY_STEPS,
        "greedy": greedy,
    }
    if self_stats:
        meta.update(self_stats)
    with open(os.path.join(OUT, f"{tag}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"[{tag}] wrote {OUT}/{tag}.bin ({n_bytes} bytes) and .json", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    args = sys.argv[1:]
    kinds = [k for k in ("--quantized", "--f32") if k in args] or ["--quantized", "--f32"]
    names = [a for a in args if not a.startswith("--")] or list(MODELS)
    for name in names:
        if name not in MODELS:
            sys.exit(f"unknown model {name}; known: {', '.join(MODELS)}")
        for k in kinds:
            run(name, k == "--f32")


if __name__ == "__main__":
    main()
