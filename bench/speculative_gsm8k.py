#!/usr/bin/env python3
"""Token-level speculative decoding on GSM8K, stepq vs llama.cpp, in one run.

For the first N questions of ../shared/data/gsm8k/test.jsonl, wrapped in the target's chat
template, greedy, T threads, up to --max-tokens generated tokens each:
  - stepq: plain decoding, draft-model speculation (each --draft, adaptive k <= --spec-k) and n-gram
    speculation (K = 6, n-grams up to 2);
  - llama.cpp (llama-cpp-python 0.3.36, native build): plain, and its prompt-lookup speculation;
    a greedy draft model through its LlamaDraftModel hook too (--llama-draft).
Decode tokens/s = (generated − 1) / (time from the first generated token to the last), summed
over questions; prefill is not counted. Greedy speculation is lossless, so stepq's texts must be
identical in every mode: the script checks it and says so.

It also measures what the speedups are made of: the draft/target cost ratio c (seconds per
decoded token of the draft over the target, `stepq bench` tg64), the cost of a target forward
over k+1 tokens relative to one (`stepq bench` batch1 .. batch9), and from those and the measured
tokens per round the speedup they imply: tokens per round / (drafted per round · c + r(k̄+1)).

  python3 bench/speculative_gsm8k.py -n 50 --out docs/speculative.md
  python3 bench/speculative_gsm8k.py -n 5 --max-tokens 64          # a quick look
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from stepq_models import models_dir  # noqa: E402

STEPQ = os.path.join(ROOT, "build", "stepq")
REF_PY = os.path.expanduser("~/.cache/stepq/venv-ref/bin/python")


def log(msg):
    print(f"spec-bench: {msg}", file=sys.stderr, flush=True)


def model_file(name):
    short = {"qwen1.5b": "qwen2.5-coder-1.5b-instruct.gguf", "qwen0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
             "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}
    p = name if os.path.sep in name else os.path.join(models_dir(), short.get(name, name))
    if not os.path.exists(p):
        sys.exit(f"spec-bench: model {p} not found (python3 scripts/fetch-models.py; for quantized drafts "
                 f"{REF_PY} tools/make_quantized_model.py)")
    return p


def questions(n):
    path = os.path.join(ROOT, "..", "shared", "data", "gsm8k", "test.jsonl")
    out = []
    with open(path) as f:
        for line in f:
            out.append(json.loads(line)["question"])
            if len(out) == n:
                break
    return out


GEN_RE = re.compile(r"generated (\d+) tokens in ([0-9.]+) s")
SPEC_RE = re.compile(r"(\d+) rounds, drafted (\d+), accepted (\d+)")


def stepq_run(target, q, args, extra):
    cmd = [STEPQ, "run", "-m", target, "--chat", "-p", q, "-n", str(args.max_tokens), "--temp", "0",
           "-t", str(args.threads)] + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"spec-bench: {' '.join(cmd[:6])}... failed:\n{r.stderr}")
    g = GEN_RE.search(r.stderr)
    s = SPEC_RE.search(r.stderr)
    return {"text": r.stdout, "n": int(g.group(1)), "decode_s": float(g.group(2)),
            "rounds": int(s.group(1)) if s else None, "drafted": int(s.group(2)) if s else 0,
            "accepted": int(s.group(3)) if s else 0}


def summarize(runs):
    n = sum(r["n"] for r in runs)
    forwards = sum(r["n"] - 1 for r in runs)
    secs = sum(r["decode_s"] for r in runs)
    out = {"tokens": n, "tps": forwards / secs if secs else 0.0, "seconds": secs}
    if runs and runs[0].get("rounds") is not None:
        rounds = sum(r["rounds"] for r in runs)
        drafted = sum(r["drafted"] for r in runs)
        out.update(rounds=rounds, drafted=drafted, accepted=sum(r["accepted"] for r in runs),
                   tokens_per_round=forwards / max(rounds, 1), drafted_per_round=drafted / max(rounds, 1))
    return out


def stepq_bench_tps(model, args, extra):
    cmd = [STEPQ, "bench", "-m", model, "-t", str(args.threads), "--json"] + extra
    if "-b" not in extra:
        cmd += ["-b", ""]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--questions", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--target", default="qwen1.5b")
    ap.add_argument("--drafts", default="qwen0.5b",
                    help="comma-separated draft models (short names or paths), tried in turn")
    ap.add_argument("--spec-k", type=int, default=8)
    ap.add_argument("--llama-draft", action="store_true", help="also time llama-cpp-python with the first draft")
    ap.add_argument("--no-llama", action="store_true", help="stepq only")
    ap.add_argument("--out", default="", help="write the table into this markdown file (between markers)")
    args = ap.parse_args()

    target = model_file(args.target)
    drafts = [model_file(d) for d in args.drafts.split(",") if d]
    qs = questions(args.questions)
    log(f"{len(qs)} questions, target {os.path.basename(target)}, drafts {[os.path.basename(d) for d in drafts]}")
    rows = []

    def stepq_mode(label, extra):
        t0 = time.time()
        runs = []
        for i, q in enumerate(qs):
            runs.append(stepq_run(target, q, args, extra))
            print(f"\r  stepq {label}: {i + 1}/{len(qs)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        s = summarize(runs)
        log(f"stepq {label}: {s['tps']:.2f} tok/s ({time.time() - t0:.0f} s)")
        return runs, s

    plain_runs, plain = stepq_mode("plain", [])
    rows.append(("stepq", "plain", "—", plain))
    mismatches = {}
    for d in drafts:
        runs, s = stepq_mode(f"draft {os.path.basename(d)}", ["--draft", d, "--spec-k", str(args.spec_k)])
        rows.append(("stepq", "draft", os.path.basename(d), s))
        mismatches[os.path.basename(d)] = sum(a["text"] != b["text"] for a, b in zip(runs, plain_runs))
    runs, s = stepq_mode("n-gram", ["--ngram"])
    rows.append(("stepq", "n-gram", "K=6, n<=2", s))
    mismatches["n-gram"] = sum(a["text"] != b["text"] for a, b in zip(runs, plain_runs))

    if not args.no_llama:
        ids = []
        for i, q in enumerate(qs):
            r = subprocess.run([STEPQ, "tokenize", "-m", target, "--chat", "--ids", "-p", q], capture_output=True,
                               text=True, check=True)
            ids.append({"id": i, "ids": [int(x) for x in r.stdout.split()]})
        feed = "".join(json.dumps(x) + "\n" for x in ids)

        def llama_mode(label, extra, draft_name):
            t0 = time.time()
            cmd = [REF_PY, os.path.join(HERE, "llamacpp_spec_runner.py"), "-m", target, "-t", str(args.threads),
                   "-n", str(args.max_tokens)] + extra
            r = subprocess.run(cmd, input=feed, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"spec-bench: llama.cpp {label} failed:\n{r.stderr[-3000:]}")
            runs = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
            s = summarize(runs)
            log(f"llama.cpp {label}: {s['tps']:.2f} tok/s ({time.time() - t0:.0f} s)")
            rows.append(("llama.cpp", label, draft_name, s))

        llama_mode("plain", [], "—")
        llama_mode("n-gram", ["--ngram", "--ngram-max", "2", "--spec-k", "6"], "prompt lookup K=6, n<=2")
        if args.llama_draft and drafts:
            llama_mode("draft", ["--draft", drafts[0], "--spec-k", "4"], os.path.basename(drafts[0]) + ", k=4")

    # What the speedups are made of.
    log("cost ratios (stepq bench)")
    tg = lambda m: stepq_bench_tps(m, args, ["-p", "0", "-n", "64", "-r", "3"])[0]["tokens_per_s"]  # noqa: E731
    t_target = 1.0 / tg(target)
    c = {os.path.basename(d): (1.0 / tg(d)) / t_target for d in drafts}
    # A forward over B tokens with a warm cache: stepq bench's batch<B> (B sequences, one token
    # each: the same matrix shapes as verifying B-1 drafted tokens; attention differs slightly).
    rows_b = stepq_bench_tps(target, args, ["-p", "0", "-n", "32", "-r", "3", "-b", ",".join(map(str, range(1, 10)))])
    verify = {int(j["test"][5:]): int(j["test"][5:]) / j["tokens_per_s"] for j in rows_b if j["test"].startswith("batch")}
    r = {k1: v / verify[1] for k1, v in sorted(verify.items())}

    plain_tps = {e: s["tps"] for e, m, _, s in rows if m == "plain"}
    lines = []
    lines.append(f"{len(qs)} GSM8K questions (test.jsonl, first {len(qs)}), target {os.path.basename(target)}, chat "
                 f"template, greedy, {args.threads} threads, at most {args.max_tokens} tokens each.")
    lines.append("")
    lines.append("| engine | mode | draft | decode tok/s | vs own plain | vs llama.cpp plain | accepted / drafted | "
                 "tokens per target forward | implied by c, r |")
    lines.append("|---|---|---|--:|--:|--:|--:|--:|--:|")
    for eng, mode, dname, s in rows:
        own = s["tps"] / plain_tps[eng] if plain_tps.get(eng) else 0
        vs = f"{s['tps'] / plain_tps['llama.cpp']:.2f}" if plain_tps.get("llama.cpp") else "—"
        acc = f"{s['accepted']}/{s['drafted']} ({100 * s['accepted'] / max(s['drafted'], 1):.0f}%)" if "rounds" in s else "—"
        tpr = f"{s['tokens_per_round']:.2f}" if "rounds" in s else "1"
        implied = "—"
        if eng == "stepq" and "rounds" in s:
            k1 = min(9, max(1, round(s["drafted_per_round"]) + 1))
            cost = s["drafted_per_round"] * c.get(dname, 0.0) + r[k1]
            implied = f"{s['tokens_per_round'] / cost:.2f}×"
        lines.append(f"| {eng} | {mode} | {dname} | {s['tps']:.2f} | {own:.2f}× | {vs} | {acc} | {tpr} | {implied} |")
    lines.append("")
    lines.append("Cost ratios (stepq bench, same run): draft/target time per decoded token c = " +
                 ", ".join(f"{k}: {v:.2f}" for k, v in c.items()) + "; a target forward over k+1 tokens / one "
                 "token r(k+1) = " + ", ".join(f"{k}: {v:.2f}" for k, v in r.items()) + ".")
    lines.append("")
    bad = {k: v for k, v in mismatches.items() if v}
    lines.append("Lossless check: stepq's greedy text is identical in every mode for all questions." if not bad else
                 f"**Lossless check failed**: questions whose text differs from plain decoding: {bad}.")
    text = "\n".join(lines)
    print(text)
    if args.out:
        try:
            cpu = [l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                   .stdout.splitlines() if l.startswith("Model name")][0]
        except Exception:
            cpu = "unknown"
        cmd = "python3 bench/speculative_gsm8k.py " + " ".join(sys.argv[1:])
        block = (f"<!-- speculative_gsm8k:begin -->\n`{cmd}` — {cpu}, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
                 f"{text}\n<!-- speculative_gsm8k:end -->")
        old = open(args.out).read() if os.path.exists(args.out) else ""
        if "<!-- speculative_gsm8k:begin -->" in old:
            a = old.index("<!-- speculative_gsm8k:begin -->")
            b = old.index("<!-- speculative_gsm8k:end -->") + len("<!-- speculative_gsm8k:end -->")
            new = old[:a] + block + old[b:]
        else:
            new = old + ("\n" if old else "") + block + "\n"
        with open(args.out, "w") as f:
            f.write(new)
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
