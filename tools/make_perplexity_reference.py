#!/usr/bin/env python3
"""llama.cpp's perplexity on wikitext2 for the real models, computed with llama-cpp-python on the
same windows llama-perplexity (and `stepq perplexity`) uses: the whole file tokenized once (BOS
added if the model adds it), non-overlapping windows of N_CTX tokens, each evaluated from an empty
cache with its first token replaced by BOS when the model adds BOS, the second half scored.

    ~/.cache/stepq/venv-ref/bin/python tools/make_perplexity_reference.py [MODEL ...]

Writes tests/data/perplexity/reference.json.
"""
import json, os, sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = os.path.join(ROOT, "..", "shared", "data", "wikitext2", "wiki.test.raw")
sys.path.insert(0, os.path.join(ROOT, "tools"))
from stepq_models import MODEL_FILES as MODELS, models_dir, sha256_of  # noqa: E402

MODELS_DIR = models_dir()
OUT = os.path.join(ROOT, "tests", "data", "perplexity", "reference.json")
N_CTX, N_CHUNKS = 512, 16




def llama_perplexity(path, n_chunks, n_ctx=N_CTX, threads=2, label=None):
    """llama.cpp's perplexity of wiki.test.raw with this protocol on the first n_chunks windows:
    (tokens, ppl, ppl_error, n_scored)."""
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=threads, verbose=False)
    text = open(TEXT, "rb").read()
    tokens = llm.tokenize(text, add_bos=True, special=False)
    add_bos = len(llm.tokenize(b"a", add_bos=True)) > len(llm.tokenize(b"a", add_bos=False))
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    for i in range(n_chunks):
        window = list(tokens[i * n_ctx:(i + 1) * n_ctx])
        if add_bos:
            window[0] = llm.token_bos()
        llm.reset()
        llm.eval(window)
        logits = np.array(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(first, n_ctx - 1):
            row = logits[j]
            m = row.max()
            v = -((row[tokens[i * n_ctx + j + 1]] - m) - np.log(np.exp(row - m).sum()))
            nll += v
            nll2 += v * v
        count += n_ctx - 1 - first
        if label:
            print(f"[{label}] [{i + 1}]{np.exp(nll / count):.4f}", file=sys.stderr)
    mean = nll / count
    ppl = float(np.exp(mean))
    var = nll2 / count - mean * mean
    return tokens, ppl, float(np.sqrt(var / (count - 1)) * ppl), count


def run(name):
    path = os.path.join(MODELS_DIR, MODELS[name])
    tokens, ppl, err, count = llama_perplexity(path, N_CHUNKS, label=name)
    return {"model_file": MODELS[name], "model_sha256": sha256_of(path), "n_tokens": len(tokens),
            "ppl": ppl, "ppl_error": err, "n_scored": count}


def main():
    data = {}
    if os.path.exists(OUT):
        data = json.load(open(OUT))
    data.update({"reference": f"llama-cpp-python {llama_cpp.__version__} (f16 KV cache, no flash attention, batch = window)",
                 "text": "../shared/data/wikitext2/wiki.test.raw (as is)", "n_ctx": N_CTX, "n_chunks": N_CHUNKS})
    data.setdefault("models", {})
    for name in sys.argv[1:] or list(MODELS):
        data["models"][name] = run(name)
        with open(OUT, "w") as f:
            json.dump(data, f, indent=1)
        print(f"[{name}] PPL = {data['models'][name]['ppl']:.4f} +/- {data['models'][name]['ppl_error']:.5f}", file=sys.stderr)


if __name__ == "__main__":
    main()
