#!/usr/bin/env python3
"""Would overlapping the draft's and the target's work pay on this machine? (Lookahead
Reasoning, issue 8 requirement 2; docs/lookahead.md "Overlapping draft and target".)

  python3 bench/overlap_probe.py [--target T.gguf] [--draft D.gguf] [-n 32] [-r 3]

Decode speed (`stepq bench`, tg only) of the target and the draft: each alone with all threads
(what stepq does now: one model at a time, both using every core), each alone with half of them,
and both at once with half each (what an overlapped schedule would run). Then, for a
Lookahead round as the cost model in docs/lookahead.md describes it (γ drafted steps of L tokens:
the draft writes γL tokens; the target does γL·p + L·b(γ) token-equivalents of work reading them
and writing its own steps), the round's time one model after the other against the best an
overlapped schedule could reach (the draft writing the next round while the target works on this
one, perfectly pipelined: the slower of the two), and their ratio. A ratio above 1 means
overlapping could pay; the pipelining bound ignores that the next round's drafting depends on
what this round keeps, so the real gain would be smaller still.
"""
import argparse
import json
import os
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from stepq_models import models_dir  # noqa: E402

STEPQ = os.environ.get("STEPQ_BIN", os.path.join(ROOT, "build", "stepq"))


def tg(model, threads, n, reps, out=None, key=None):
    """tokens/s of `stepq bench` tg<n> (mean of reps)."""
    r = subprocess.run([STEPQ, "bench", "-m", model, "-t", str(threads), "-p", "0", "-n", str(n), "-r", str(reps),
                        "-b", "", "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"stepq bench failed on {model}:\n{r.stderr[-2000:]}")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    tps = next(x["tokens_per_s"] for x in rows if x["test"].startswith("tg"))
    if out is not None:
        out[key] = tps
    return tps


def main():
    m = models_dir()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default=os.path.join(m, "qwen2.5-coder-1.5b-instruct.gguf"))
    ap.add_argument("--draft", default=os.path.join(m, "qwen2.5-coder-0.5b-instruct.gguf"))
    ap.add_argument("-n", type=int, default=32, help="decode steps per repetition")
    ap.add_argument("-r", type=int, default=3, help="repetitions")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--depth", type=int, default=4, help="γ of the round the model prices")
    ap.add_argument("--p", type=float, default=0.16, help="a drafted token read by the target, in target tokens")
    ap.add_argument("--b", type=float, default=1.38, help="a forward over γ branches, relative to one")
    a = ap.parse_args()
    if a.threads < 2:
        sys.exit("needs at least 2 threads to split between the models")
    half = a.threads // 2
    s = {}
    s["target_all"] = tg(a.target, a.threads, a.n, a.r)
    s["draft_all"] = tg(a.draft, a.threads, a.n, a.r)
    s["target_half"] = tg(a.target, half, a.n, a.r)
    s["draft_half"] = tg(a.draft, half, a.n, a.r)
    # Both at once. The draft runs more repetitions so that it is still running while the target
    # is timed (the draft is the faster of the two); the target's speed is the one that matters.
    both = {}
    ts = [threading.Thread(target=tg, args=(a.target, half, a.n, a.r, both, "target")),
          threading.Thread(target=tg, args=(a.draft, half, a.n, 3 * a.r, both, "draft"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s["target_half_shared"] = both["target"]
    s["draft_half_shared"] = both["draft"]

    print(f"machine: {a.threads} threads; target {os.path.basename(a.target)}, draft {os.path.basename(a.draft)}")
    print("| run | target tok/s | draft tok/s |")
    print("|---|---|---|")
    print(f"| alone, {a.threads} threads each | {s['target_all']:.2f} | {s['draft_all']:.2f} |")
    print(f"| alone, {half} thread(s) each | {s['target_half']:.2f} | {s['draft_half']:.2f} |")
    print(f"| both at once, {half} thread(s) each | {s['target_half_shared']:.2f} | {s['draft_half_shared']:.2f} |")
    # One round per drafted-step length L = 1 (everything scales with L).
    g = a.depth
    work_t, work_d = g * a.p + a.b, g  # target token-equivalents, draft tokens
    seq = work_t / s["target_all"] + work_d / s["draft_all"]
    ovl = max(work_t / s["target_half_shared"], work_d / s["draft_half_shared"])
    print(f"\nround of γ = {g} (p = {a.p}, b = {a.b}), per drafted-step token: one after the other "
          f"{1000 * seq:.1f} ms, overlapped at best {1000 * ovl:.1f} ms: overlap speedup ≤ {seq / ovl:.2f}x")
    print(json.dumps({"speeds": s, "sequential_ms": 1000 * seq, "overlapped_ms": 1000 * ovl,
                      "overlap_speedup_bound": seq / ovl}))


if __name__ == "__main__":
    main()
