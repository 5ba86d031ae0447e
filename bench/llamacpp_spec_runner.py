#!/usr/bin/env python3
"""llama.cpp's side of bench/speculative_gsm8k.py, through llama-cpp-python (run it with the
reference venv's python, tools/setup_reference_venv.sh). Reads JSON lines {"id", "ids"} (prompt
token ids, made by stepq so both engines see the same tokens) on stdin and prints one JSON line
per prompt: {"id", "tokens": [...], "decode_s", "n"}. Greedy.

Modes: plain; --ngram (llama-cpp-python's LlamaPromptLookupDecoding, its prompt-lookup
speculation); --draft FILE (a greedy draft model wrapped as a LlamaDraftModel; llama-cpp-python
has no draft-model speculation of its own, so this is the simplest faithful one).

decode_s is the time from the first generated token to the last, so it covers n - 1 forwards
(the first token comes from the prompt's logits), the same interval stepq reports."""
import argparse
import json
import sys
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", "--n-predict", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--ngram", action="store_true")
    ap.add_argument("--ngram-max", type=int, default=2)
    ap.add_argument("--spec-k", type=int, default=6)
    ap.add_argument("--draft", default="")
    a = ap.parse_args()

    import llama_cpp
    from llama_cpp.llama_speculative import LlamaDraftModel, LlamaPromptLookupDecoding

    class GreedyDraft(LlamaDraftModel):
        def __init__(self, path, k):
            self.k = k
            self.llm = llama_cpp.Llama(model_path=path, n_ctx=a.ctx, n_threads=a.threads, n_threads_batch=a.threads,
                                       n_batch=512, verbose=False)

        def __call__(self, input_ids, **kwargs):
            out = []
            for tok in self.llm.generate(list(map(int, input_ids)), temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                         repeat_penalty=1.0, reset=True):
                out.append(tok)
                if len(out) >= self.k:
                    break
            return np.array(out, dtype=np.intc)

    draft = None
    if a.ngram:
        draft = LlamaPromptLookupDecoding(max_ngram_size=a.ngram_max, num_pred_tokens=a.spec_k)
    elif a.draft:
        draft = GreedyDraft(a.draft, a.spec_k)
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=a.ctx, n_threads=a.threads, n_threads_batch=a.threads,
                          n_batch=512, verbose=False, draft_model=draft)
    eog = {llm.token_eos()}
    for line in sys.stdin:
        req = json.loads(line)
        toks, first, last = [], None, None
        for tok in llm.generate(req["ids"], temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                reset=True):
            now = time.perf_counter()
            if first is None:
                first = now
            last = now
            toks.append(int(tok))
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok) or tok in eog or len(toks) >= a.n_predict:
                break
        print(json.dumps({"id": req["id"], "tokens": toks, "n": len(toks), "decode_s": (last - first) if toks else 0}),
              flush=True)


if __name__ == "__main__":
    main()
