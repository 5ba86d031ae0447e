#!/usr/bin/env python3
"""Reference logits and greedy continuations from llama.cpp (llama-cpp-python) for the real models.

Run with a Python that has llama-cpp-python (built from source, e.g. the venv made by
`tools/setup_reference_venv.sh`):

    ~/.cache/stepq/venv-ref/bin/python tools/make_logits_reference.py [MODEL ...]

Writes tests/data/logits/<model>.bin and <model>.json. llama.cpp runs with its library defaults
as llama-cpp-python sets them (F16 KV cache, no flash attention), 2 threads.

.bin layout (little-endian):
  int32 tokens[n_tokens]                         wikitext2 tokens fed in one sequence
  n_tokens x { float lse; int32 ids[K]; float logits[K] }   per position: log-sum-exp of the full
                                                 logit row and the K largest logits, descending
The .json holds the model sha256, llama-cpp-python version, K, and for each greedy prompt the
prompt token ids, the generated ids and, per step, the top-2 ids and logits (near-tie evidence).
"""
import hashlib, json, os, struct, sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(ROOT, "..", "shared")
MODELS_DIR = os.environ.get("STEPQ_MODELS", os.path.expanduser("~/.cache/stepq/models"))
OUT = os.path.join(ROOT, "tests", "data", "logits")

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
    "qwen0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
    "qwen1.5b": "qwen2.5-coder-1.5b-instruct.gguf",
}
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


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def logsumexp(row):
    m = float(np.max(row))
    return m + float(np.log(np.sum(np.exp(row.astype(np.float64) - m))))


def run(name):
    path = os.path.join(MODELS_DIR, MODELS[name])
    llm = Llama(model_path=path, n_ctx=2048, n_batch=512, logits_all=True, n_threads=2, verbose=False, seed=0)
    text = open(os.path.join(SHARED, "data", "wikitext2", "wiki.test.raw"), encoding="utf-8").read().replace("\r", "")
    tokens = llm.tokenize(text[:20000].encode("utf-8"), add_bos=True, special=False)[:N_TOKENS]
    assert len(tokens) == N_TOKENS, len(tokens)
    llm.reset()
    llm.eval(tokens)
    scores = np.array(llm.scores[:N_TOKENS], dtype=np.float32)
    blob = bytearray(struct.pack(f"<{N_TOKENS}i", *tokens))
    for row in scores:
        ids = np.argsort(-row, kind="stable")[:TOP_K]
        blob += struct.pack("<f", logsumexp(row))
        blob += struct.pack(f"<{TOP_K}i", *[int(i) for i in ids])
        blob += struct.pack(f"<{TOP_K}f", *[float(row[i]) for i in ids])
    with open(os.path.join(OUT, f"{name}.bin"), "wb") as f:
        f.write(blob)

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
        print(f"[{name}] {prompt[:30]!r} -> {llm.detokenize(gen)[:60]!r}", file=sys.stderr)

    meta = {
        "model_file": MODELS[name],
        "model_sha256": sha256_of(path),
        "reference": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp defaults: f16 KV cache, no flash attention, 2 threads)",
        "text": "first 20000 characters of ../shared/data/wikitext2/wiki.test.raw, \\r stripped, add_bos as the model sets it",
        "n_tokens": N_TOKENS,
        "top_k": TOP_K,
        "n_vocab": int(llm.n_vocab()),
        "greedy_steps": GREEDY_STEPS,
        "greedy": greedy,
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"[{name}] wrote {OUT}/{name}.bin ({len(blob)} bytes) and .json", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in sys.argv[1:] or list(MODELS):
        if name not in MODELS:
            sys.exit(f"unknown model {name}; known: {', '.join(MODELS)}")
        run(name)


if __name__ == "__main__":
    main()
