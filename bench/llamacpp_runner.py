#!/usr/bin/env python3
"""llama.cpp's side of bench/compare_llamacpp.py: the tests of `stepq bench` (pp, tg, batch),
timed the same way, through llama-cpp-python. Runs under the reference venv's python
(tools/setup_reference_venv.sh); prints one JSON object per line, with the keys of
`stepq bench --json` (model, threads, test, tokens_per_s, tokens_per_s_sd, ...).

Same policy as stepq bench: one untimed warm-up, then --reps timed repetitions, mean and sample
sd of tokens/s; the same token ids (splitmix64, see random_tokens in src/cli/bench.cpp); pp and
tg from an empty KV cache; batch<B>: B sequences each given an untimed 16-token prompt, then n
steps of one token per sequence in one llama_decode.

pp and tg go through Llama.eval (the high-level API); batch needs several sequences in one
context, which Llama() does not expose (its context has n_seq_max = 1), so it uses a second,
low-level context on the same loaded model (llama_init_from_model, llama_batch_init,
llama_decode)."""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

BATCH_PROMPT = 16  # as kBatchPrompt in src/cli/bench.cpp
MASK64 = (1 << 64) - 1


def random_tokens(n, seed, stream, n_vocab):
    """The token ids stepq bench uses for (seed, stream): splitmix64, (x >> 11) mod n_vocab."""
    state = (seed * 1000003 + stream) & MASK64
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        out.append((z >> 11) % n_vocab)
    return out


def progress(msg):
    print(f"llamacpp_runner: {msg}", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("-b", "--batch", default="8", help="comma-separated batch sizes; '' = none")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-vocab", type=int, default=0,
                    help="draw token ids from [0, N) (stepq's n_vocab, so both engines see the same ids); "
                         "default: llama.cpp's vocabulary size")
    a = ap.parse_args()
    batches = [int(x) for x in a.batch.split(",") if x.strip()]

    import llama_cpp
    from llama_cpp import Llama

    n_ctx = max(a.n_prompt + a.n_gen, 16)
    llm = Llama(model_path=a.model, n_ctx=n_ctx, n_threads=a.threads, n_threads_batch=a.threads,
                n_batch=512, n_ubatch=512, verbose=False, logits_all=False)
    n_vocab = a.n_vocab or llm.n_vocab()
    if n_vocab > llm.n_vocab():
        sys.exit(f"llamacpp_runner: --n-vocab {n_vocab} exceeds llama.cpp's vocabulary ({llm.n_vocab()})")
    ctx = llm._ctx.ctx
    name = os.path.basename(a.model)

    def emit(test, tokens, samples, **extra):
        mean = statistics.fmean(samples)
        sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
        print(json.dumps({"model": name, "threads": a.threads, "test": test, "tokens_per_s": mean,
                          "tokens_per_s_sd": sd, "reps": a.reps, "samples_tokens_per_s": samples,
                          "engine": "llama.cpp", "version": llama_cpp.__version__, **extra}), flush=True)

    def repeat(test, tokens, once):
        progress(f"{name} t={a.threads} {test}: warm-up + {a.reps} reps")
        once()
        samples = []
        for _ in range(a.reps):
            s = once()
            samples.append(tokens / max(s, 1e-9))
        return samples

    def clear():
        llm.reset()
        llm._ctx.kv_cache_clear()

    if a.n_prompt > 0:
        toks = random_tokens(a.n_prompt, a.seed, 1, n_vocab)

        def pp_once():
            clear()
            t0 = time.perf_counter()
            llm.eval(toks)
            llama_cpp.llama_synchronize(ctx)
            return time.perf_counter() - t0

        emit(f"pp{a.n_prompt}", a.n_prompt, repeat(f"pp{a.n_prompt}", a.n_prompt, pp_once),
             n_prompt=a.n_prompt, n_gen=0, n_batch=1)

    if a.n_gen > 0:
        toks = random_tokens(a.n_gen, a.seed, 2, n_vocab)

        def tg_once():
            clear()
            t0 = time.perf_counter()
            for t in toks:
                llm.eval([t])
            llama_cpp.llama_synchronize(ctx)
            return time.perf_counter() - t0

        emit(f"tg{a.n_gen}", a.n_gen, repeat(f"tg{a.n_gen}", a.n_gen, tg_once), n_prompt=0, n_gen=a.n_gen,
             n_batch=1)

        for B in batches:
            emit(f"batch{B}", B * a.n_gen, batch_test(llama_cpp, llm, a, B, n_vocab, repeat),
                 n_prompt=BATCH_PROMPT, n_gen=a.n_gen, n_batch=B)


def batch_test(llama_cpp, llm, a, B, n_vocab, repeat):
    per_seq = BATCH_PROMPT + a.n_gen
    p = llama_cpp.llama_context_default_params()
    # Per-sequence KV streams (kv_unified off, the default): n_ctx is split evenly between the
    # n_seq_max sequences, so each gets per_seq cells rounded up to llama.cpp's 256-cell padding.
    p.n_seq_max = B
    p.n_ctx = B * ((per_seq + 255) // 256 * 256)
    p.n_batch = max(512, B * BATCH_PROMPT)
    p.n_ubatch = p.n_batch
    p.n_threads = a.threads
    p.n_threads_batch = a.threads
    p.no_perf = True
    if hasattr(p, "flash_attn_type"):  # as Llama(flash_attn=False) sets it
        p.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = llama_cpp.llama_init_from_model(llm._model.model, p)
    if not ctx:
        raise RuntimeError(f"llama_init_from_model failed for batch {B}")
    batch = llama_cpp.llama_batch_init(B * BATCH_PROMPT, 0, 1)
    try:
        mem = llama_cpp.llama_get_memory(ctx)
        prompts = [random_tokens(BATCH_PROMPT, a.seed, 100 + 2 * s, n_vocab) for s in range(B)]
        steps = [random_tokens(a.n_gen, a.seed, 101 + 2 * s, n_vocab) for s in range(B)]

        def fill(entries):
            batch.n_tokens = len(entries)
            for j, (tok, pos, seq, logits) in enumerate(entries):
                batch.token[j] = tok
                batch.pos[j] = pos
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = seq
                batch.logits[j] = logits

        def decode():
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} (batch {B})")

        def once():
            llama_cpp.llama_memory_clear(mem, True)
            fill([(prompts[s][i], i, s, i == BATCH_PROMPT - 1) for s in range(B) for i in range(BATCH_PROMPT)])
            decode()
            llama_cpp.llama_synchronize(ctx)
            t0 = time.perf_counter()
            for i in range(a.n_gen):
                fill([(steps[s][i], BATCH_PROMPT + i, s, True) for s in range(B)])
                decode()
            llama_cpp.llama_synchronize(ctx)
            return time.perf_counter() - t0

        return repeat(f"batch{B}", B * a.n_gen, once)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


if __name__ == "__main__":
    main()
