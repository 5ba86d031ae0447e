#!/usr/bin/env python3
"""The stepq CLI as a user meets it: help, bad flags, bad files, streaming output, reproducibility."""
import os, tempfile

from common import MODELS, check, finish, stepq

SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
GEMMA = os.path.join(MODELS, "gemma-3-270m-q4_k_m.gguf")


for sub in ["run", "chat", "inspect", "tokenize", "dump-tensor", "dump-logits", "perplexity", "bench", "embed", "moe-stats",
            "eval", "quantize", "verify-steps"]:
    r = stepq(sub, "--help")
    check(r.returncode == 0 and "Usage" in r.stdout + r.stderr, f"{sub} --help", r)

r = stepq("run", "-m", SMOL, "-p", "hi", "--no-such-flag")
check(r.returncode != 0 and "no-such-flag" in r.stderr and "Segmentation" not in r.stderr, "unknown flag is named", r)

r = stepq("run", "-m", "/nonexistent.gguf", "-p", "hi")
check(r.returncode != 0 and "nonexistent" in r.stderr, "missing model file is named", r)

r = stepq("run", "-m", SMOL, "-p", "hi", "-t", "0")
check(r.returncode != 0 and "threads" in r.stderr.lower(), "bad thread count is refused", r)

with tempfile.TemporaryDirectory() as tmp:
    # A truncated model: header intact, tensor data cut off.
    cut = os.path.join(tmp, "cut.gguf")
    with open(SMOL, "rb") as f, open(cut, "wb") as g:
        g.write(f.read(5_000_000))
    r = stepq("run", "-m", cut, "-p", "hi", "-n", "4")
    check(r.returncode == 1 and "error:" in r.stderr and "past the end" in r.stderr, "truncated model: clear error", r)
    # Not a GGUF at all.
    junk = os.path.join(tmp, "junk.gguf")
    with open(junk, "wb") as g:
        g.write(b"hello world, definitely not a model" * 100)
    r = stepq("inspect", junk)
    check(r.returncode == 1 and "not a GGUF file" in r.stderr, "non-GGUF file: clear error", r)

# Greedy generation is deterministic; stdout carries only the text, stats go to stderr.
a = stepq("run", "-m", SMOL, "-p", "The capital of France is", "-n", "16", "--temp", "0", "-t", "2")
b = stepq("run", "-m", SMOL, "-p", "The capital of France is", "-n", "16", "--temp", "0", "-t", "1")
check(a.returncode == 0 and a.stdout == b.stdout and "Paris" in a.stdout, "greedy run is reproducible across thread counts", a)
check("tok/s" in a.stderr and "tok/s" not in a.stdout, "statistics go to stderr only", a)

# Sampling with a seed is reproducible; another seed gives another text.
s1 = stepq("run", "-m", SMOL, "-p", "Once upon a time", "-n", "24", "--temp", "1.0", "--seed", "7", "-q")
s2 = stepq("run", "-m", SMOL, "-p", "Once upon a time", "-n", "24", "--temp", "1.0", "--seed", "7", "-q")
s3 = stepq("run", "-m", SMOL, "-p", "Once upon a time", "-n", "24", "--temp", "1.0", "--seed", "8", "-q")
check(s1.returncode == 0 and s1.stdout == s2.stdout, "same seed, same text", s1)
check(s1.stdout != s3.stdout, "different seed, different text", s3)
check(s1.stderr == "", "-q keeps stderr empty", s1)

# Chat template path on both tokenizer families.
for m in (SMOL, GEMMA):
    r = stepq("run", "-m", m, "--chat", "-p", "What is 2+2? Answer with a number.", "-n", "24", "--temp", "0")
    check(r.returncode == 0 and len(r.stdout.strip()) > 0 and "<|im_end|>" not in r.stdout
          and "<end_of_turn>" not in r.stdout, f"--chat answers ({os.path.basename(m)})", r)

# Interactive chat reads stdin; an empty line ends it.
r = stepq("chat", "-m", SMOL, "--temp", "0", "-n", "16", input="Say hello.\n\n")
check(r.returncode == 0 and len(r.stdout.strip()) > 0, "chat answers a message from stdin", r)

# Context overflow is an error, not a crash.
r = stepq("run", "-m", SMOL, "-p", "word " * 100, "--ctx", "16", "-n", "4")
check(r.returncode == 1 and "context" in r.stderr, "prompt longer than --ctx: clear error", r)

# A context longer than the model's is refused before anything is allocated.
QWEN15 = os.path.join(MODELS, "qwen2.5-coder-1.5b-instruct.gguf")
r = stepq("run", "-m", QWEN15, "-p", "hi", "--ctx", "1000000", "-q")
check(r.returncode == 1 and "model's context of 32768" in r.stderr and "--ctx" in r.stderr,
      "--ctx beyond the model's context: clear error", r)

# A prompt longer than the model's context (SmolLM2: 8192) is an error that says so.
r = stepq("run", "-m", SMOL, "-p", "word " * 9000, "--ctx", "8192", "-n", "1", "-q")
check(r.returncode == 1 and "model's context of 8192" in r.stderr, "prompt beyond the model's context: clear error", r)

# A long prompt (4,100 tokens, prefilled in chunks) works, and memory stays within weights + KV budget.
import resource
before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
r = stepq("run", "-m", SMOL, "-p", "word " * 4099, "--ctx", "8192", "-n", "2", "--temp", "0")
peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
kv_mb = 8192 * 30 * 2 * 3 * 64 * 2 / 1e6  # tokens x layers x (K,V) x kv heads x head dim x f16
budget_mb = os.path.getsize(SMOL) / 1e6 + kv_mb + 250  # + activations, tokenizer, runtime
check(r.returncode == 0 and "prompt 4100 tokens" in r.stderr and peak_mb <= budget_mb,
      f"4,100-token prompt runs; peak RSS {peak_mb:.0f} MB <= {budget_mb:.0f} MB", r)

r = stepq("run", "-m", SMOL, "-p", "abc\udcff", "-n", "2")
check(r.returncode == 1 and "UTF-8" in r.stderr, "invalid UTF-8 prompt: clear error", r)

r = stepq("inspect", GEMMA)
check(r.returncode == 0 and "gemma3" in r.stdout and "global layers 5,11,17" in r.stdout and "bpw" in r.stdout,
      "inspect shows architecture, SWA layers and bits per weight", r)

r = stepq("tokenize", "-m", SMOL, "-p", "Hello world", "--ids")
check(r.returncode == 0 and r.stdout.strip() != "", "tokenize prints ids", r)

# --chat applies the model's template before tokenizing (special tokens parsed).
r = stepq("tokenize", "-m", SMOL, "-p", "Hello", "--chat", "--ids")
r2 = stepq("tokenize", "-m", SMOL, "-p", "Hello", "--ids")
check(r.returncode == 0 and len(r.stdout.split()) > len(r2.stdout.split()) + 4, "tokenize --chat wraps in the template", r)

# Speculative decoding: greedy output identical to plain decoding, statistics at the end.
code = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n"
plain = stepq("run", "-m", SMOL, "-p", code, "-n", "40", "--temp", "0")
for extra, what in [(["--ngram"], "n-gram"), (["--draft", SMOL, "--spec-k", "3"], "draft (itself)"),
                    (["--draft", GEMMA], "draft of another vocabulary")]:
    r = stepq("run", "-m", SMOL, "-p", code, "-n", "40", "--temp", "0", *extra)
    check(r.returncode == 0 and r.stdout == plain.stdout and "accepted" in r.stderr and "forwards per token" in r.stderr,
          f"speculative {what}: same text as plain greedy, statistics printed", r)
r = stepq("run", "-m", SMOL, "-p", code, "-n", "40", "--temp", "0", "--draft", SMOL, "--spec-k", "3")
check("accepted 100.0%" in r.stderr or "(100.0%)" in r.stderr, "a draft identical to the target is always accepted", r)
r = stepq("run", "-m", SMOL, "-p", "hi", "--draft", SMOL, "--ngram")
check(r.returncode != 0 and "--ngram" in r.stderr, "--draft with --ngram: clear error", r)
r = stepq("run", "-m", SMOL, "-p", "hi", "--draft", "/nonexistent.gguf")
check(r.returncode != 0 and "nonexistent" in r.stderr, "missing draft file is named", r)
r = stepq("run", "-m", SMOL, "-p", "hi", "--ngram", "--spec-k", "0")
check(r.returncode != 0 and "spec-k" in r.stderr, "bad --spec-k is refused", r)
# With adaptive k the draws depend on the k chosen from measured timings; a fixed k makes a
# seed's sampled output reproducible.
r = stepq("run", "-m", SMOL, "-p", code, "-n", "30", "--temp", "0.8", "--seed", "3", "--draft", SMOL, "--spec-fixed")
r2 = stepq("run", "-m", SMOL, "-p", code, "-n", "30", "--temp", "0.8", "--seed", "3", "--draft", SMOL, "--spec-fixed")
check(r.returncode == 0 and r.stdout == r2.stdout, "sampled speculative output (fixed k) is reproducible for a seed", r)

# Lookahead Reasoning from the command line: greedy output is the plain one; flags checked.
for extra, what in [([], "exact verifier"), (["--ngram", "--depth", "2", "--step-cap", "8"], "n-gram inside steps"),
                    (["--verifier", "judge", "--step-boundary", "\\n"], "judge verifier, newline steps"),
                    (["--width", "2", "--depth", "3", "--step-cap", "12"], "a tree of width 2")]:
    r = stepq("run", "-m", SMOL, "-p", code, "-n", "40", "--temp", "0", "--draft", SMOL, "--lookahead", *extra)
    check(r.returncode == 0 and r.stdout == plain.stdout and "kept by depth" in r.stderr,
          f"lookahead ({what}): same text as plain greedy, statistics printed", r)
r = stepq("run", "-m", SMOL, "-p", "hi", "--lookahead")
check(r.returncode != 0 and "--draft" in r.stderr, "--lookahead without --draft: clear error", r)
r = stepq("run", "-m", SMOL, "-p", "hi", "--lookahead", "--draft", GEMMA)
check(r.returncode != 0 and "vocabulary" in r.stderr, "--lookahead with another vocabulary: clear error", r)
r = stepq("run", "-m", SMOL, "-p", "hi", "--lookahead", "--draft", SMOL, "--verifier", "oracle")
check(r.returncode != 0 and "verifier" in r.stderr, "unknown --verifier is refused", r)
r = stepq("run", "-m", SMOL, "-p", "hi", "--lookahead", "--draft", SMOL, "--width", "4", "--depth", "3")
check(r.returncode != 0 and "--width 4" in r.stderr and "84 steps" in r.stderr,
      "a tree of more than 64 drafted steps a round is refused, with its size", r)

# --step-log: one JSON line per verifier call. The generated tiny pair (same vocabulary, the
# draft a perturbed target) drafts steps the target does not reproduce, so the verifier runs.
TINY_T = os.path.join(MODELS, "stepq-tiny-target.gguf")
TINY_D = os.path.join(MODELS, "stepq-tiny-draft.gguf")
MINILM = os.path.join(MODELS, "all-MiniLM-L6-v2")
if os.path.exists(TINY_T) and os.path.exists(TINY_D) and os.path.isdir(MINILM):
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "steps.jsonl")
        r = stepq("run", "-m", TINY_T, "--draft", TINY_D, "--lookahead", "--verifier", "embed", "--numbers-check",
                  "--step-boundary", "\\n", "--step-cap", "3", "--step-log", log, "-p", "1 2 3 4", "-n", "60",
                  "--temp", "0")
        import json, re
        m = re.search(r"verifier calls (\d+)", r.stderr)
        lines = [json.loads(x) for x in open(log)] if os.path.exists(log) else []
        keys = {"mode", "id", "verifier", "exact", "accepted", "score", "same_numbers", "context_bytes", "target",
                "draft"}
        check(r.returncode == 0 and m and int(m.group(1)) > 0 and len(lines) == int(m.group(1)) and
              all(set(x) == keys and x["verifier"] == "embed" for x in lines) and
              all(x["exact"] or x["same_numbers"] is not None for x in lines),
              "--step-log writes one JSON line per verifier call", r)

        # verify-steps reads what --step-log wrote and judges the same pairs again: the same
        # cosines, and with the numbers check off every pair reaches the model.
        again = os.path.join(tmp, "again.jsonl")
        r = stepq("verify-steps", "-f", log, "-o", again, "--verifier", "embed", "--no-numbers-check")
        redo = [json.loads(x) for x in open(again)] if os.path.exists(again) else []
        check(r.returncode == 0 and len(redo) == len(lines) and
              all(a["target"] == b["target"] and a["draft"] == b["draft"] and b["mode"] == "verify" for a, b in
                  zip(lines, redo)) and
              all(a["score"] == b["score"] for a, b in zip(lines, redo) if a["score"] is not None) and
              all(b["exact"] or b["score"] is not None for b in redo) and "pairs, accepted" in r.stderr,
              "verify-steps re-judges logged pairs: same cosines, every pair scored without the numbers check", r)
        pairs = os.path.join(tmp, "pairs.jsonl")
        with open(pairs, "w") as f:
            f.write(json.dumps({"target": "She makes 9 * 2 = $18.", "draft": "She makes 9 * 2 = $16."}) + "\n")
            f.write(json.dumps({"id": 7, "target": "So 3 + 4 = 7.", "draft": "so 3+4=7."}) + "\n")
        r = stepq("verify-steps", "-f", pairs, "--verifier", "exact")
        out = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        check(r.returncode == 0 and [x["accepted"] for x in out] == [False, True] and out[1]["id"] == "7" and
              out[1]["exact"], "verify-steps with the exact verifier, to standard output", r)
        with open(pairs, "a") as f:
            f.write('{"target": "only one side"}\n')
        r = stepq("verify-steps", "-f", pairs, "--verifier", "exact")
        check(r.returncode != 0 and "line 3" in r.stderr and "draft" in r.stderr,
              "verify-steps names a pair without a draft and its line", r)
        r = stepq("verify-steps", "-f", pairs, "--verifier", "judge")
        check(r.returncode != 0 and "--judge" in r.stderr, "verify-steps --verifier judge without --judge: clear error", r)
    r = stepq("run", "-m", TINY_T, "--draft", TINY_D, "--lookahead", "--step-log", "/nonexistent/dir/steps.jsonl",
              "-p", "1", "-n", "4")
    check(r.returncode != 0 and "--step-log" in r.stderr and "nonexistent" in r.stderr,
          "an unwritable --step-log is named", r)

finish("CLI")
