#!/usr/bin/env python3
"""Lookahead Reasoning on GSM8K / MATH-500: AR, SD, LR and LR+SD side by side, its cost model,
and the plot of speedup against accepted steps per round.

Runs `stepq eval BENCH -m TARGET --draft DRAFT --mode ar,sd,lr,lr+sd` once per --verifier (each
run interleaves the modes problem by problem, so load on the machine falls on all alike), and
`stepq bench` on both models for the cost model:
  c     draft/target cost ratio: seconds per decoded token (tg), draft over target;
  p     a drafted token read by the target inside one long forward (prefill, pp256), over one
        decoded token;
  b(B)  a target forward advancing B sequences by one token each (batchB), over one such forward
        with B = 1: the price of B branches advancing together.
A round that drafts γ steps of L tokens, keeps a of them and ends with a target step costs about
  γ·L·(c + p) + L·b(branches)       target-token times,
and yields (a + 1)·L tokens; so the speedup over plain decoding is bounded by
  (a + 1) / (γ·(c + p) + b),
which the script prints beside the measured one.

  python3 bench/lookahead_gsm8k.py -n 20 --verifiers embed,exact --plot docs/lookahead-speedup.png
  python3 bench/lookahead_gsm8k.py --from run1.json run2.json --plot docs/lookahead-speedup.png
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from stepq_models import models_dir  # noqa: E402

STEPQ = os.path.join(ROOT, "build", "stepq")
PAPER = "paper (Qwen3-32B / 1.7B, GSM8K, H100): SD 1.4x, LR+SD 2.1x (arXiv 2506.19830)"


def log(msg):
    print(f"lr-bench: {msg}", file=sys.stderr, flush=True)


def model_file(name):
    short = {"qwen1.5b": "qwen2.5-coder-1.5b-instruct.gguf", "qwen0.5b": "qwen2.5-coder-0.5b-instruct.gguf"}
    p = name if os.path.sep in name else os.path.join(models_dir(), short.get(name, name))
    if not os.path.exists(p):
        sys.exit(f"lr-bench: model {p} not found (python3 scripts/fetch-models.py)")
    return p


def bench(model, threads):
    """t/s of tg, pp256 and batch 1,2,4,8 from `stepq bench --json`."""
    cmd = [STEPQ, "bench", "-m", model, "-t", str(threads), "-p", "256", "-n", "32", "-r", "2", "-b", "1,2,4,8",
           "--json"]
    log(" ".join(cmd))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            j = json.loads(line)
            res[j["test"]] = j["tokens_per_s"]
    return res


def cost_model(target, draft, threads):
    t, d = bench(target, threads), bench(draft, threads)
    tg_t = t["tg32"]
    c = tg_t / d["tg32"]
    p = tg_t / t["pp256"]
    b = {B: (B / t[f"batch{B}"]) / (1 / t["batch1"]) for B in (1, 2, 4, 8)}
    return {"target_tg": tg_t, "draft_tg": d["tg32"], "target_pp": t["pp256"], "c": c, "p": p, "b": b}


def run_eval(args, verifier):
    cmd = [STEPQ, "eval", args.bench, "-m", model_file(args.target), "--draft", model_file(args.draft), "--mode",
           args.modes, "--verifier", verifier, "-n", str(args.n), "--seed", str(args.seed), "--max-tokens",
           str(args.max_tokens), "-t", str(args.threads), "--json"] + (["--width", str(args.width)] if args.width > 1 else [])
    log(" ".join(cmd))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(runs):
    rows = ["| verifier | mode | accuracy | tok/s | speedup vs AR | kept / drafted steps | mean γ | "
            "kept steps per round |",
            "|---|---|---|---|---|---|---|---|"]
    for verifier, j in runs:
        for m in j["modes"]:
            la = m.get("lookahead")
            kept = f"{la['kept_steps']}/{la['drafted_steps']}" if la else "–"
            gamma = f"{la.get('mean_depth', la['depth']):.2f}" if la else "–"
            per_round = f"{la['kept_steps'] / max(1, la['rounds']):.2f}" if la else "–"
            if la and la.get("width", 1) > 1:
                kept += f" ({la['kept_alternatives']} not first)"
            who = (f"{verifier}, width {la['width']}" if la.get("width", 1) > 1 else verifier) if la else "–"
            rows.append(f"| {who} | {m['mode']} | {100 * m['accuracy']:.1f}% "
                        f"({m['correct']}/{m['n']}) | {m['tokens_per_s']:.2f} | {m.get('speedup_vs_ar', 1.0):.2f}x | "
                        f"{kept} | {gamma} | {per_round} |")
    return "\n".join(rows)


def draw_speedup_plot(points, path):
    """points: (label, accepted steps per round, speedup over AR) per problem and mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in dict.fromkeys(p[0] for p in points):
        xs = [p[1] for p in points if p[0] == label]
        ys = [p[2] for p in points if p[0] == label]
        ax.scatter(xs, ys, marker="^" if label.startswith("lr+sd") else "o", s=14, alpha=0.6, label=label)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel("accepted drafted steps per round (per problem)")
    ax.set_ylabel("speedup over plain decoding (tok/s ratio)")
    ax.set_title("Lookahead Reasoning, Qwen2.5-Coder 1.5B / 0.5B, 2 threads (CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


def plot(runs, path):
    points = []
    for verifier, j in runs:
        ar = next((m for m in j["modes"] if m["mode"] == "ar"), None)
        if not ar:
            continue
        ar_rate = {p["id"]: p["tokens"] / max(p["seconds"], 1e-9) for p in ar["per_problem"]}
        for m in j["modes"]:
            if m["mode"] not in ("lr", "lr+sd"):
                continue
            for p in m["per_problem"]:
                if p.get("rounds", 0) and p["id"] in ar_rate:
                    points.append((f"{m['mode']} ({verifier})", p["kept_steps"] / p["rounds"],
                                   p["tokens"] / max(p["seconds"], 1e-9) / ar_rate[p["id"]]))
    draw_speedup_plot(points, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", nargs="?", default="gsm8k", help="gsm8k, math500, aime2024 or aime2025")
    ap.add_argument("-n", type=int, default=20, help="problems (a seeded shuffle)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", default="qwen1.5b")
    ap.add_argument("--draft", default="qwen0.5b")
    ap.add_argument("--modes", default="ar,sd,lr,lr+sd")
    ap.add_argument("--verifiers", default="embed,exact", help="comma list: one eval run each")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--width", type=int, default=1, help="drafted alternatives per step (stepq eval --width)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--from", dest="from_json", nargs="*", help="eval --json outputs to read instead of running")
    ap.add_argument("--no-costs", action="store_true", help="skip the stepq bench cost model")
    ap.add_argument("--plot", help="PNG of speedup against accepted steps per round")
    args = ap.parse_args()

    runs = []
    if args.from_json:
        for f in args.from_json:
            with open(f) as fh:
                j = json.loads(fh.read().strip().splitlines()[-1])
            v = next((m["lookahead"]["verifier"] for m in j["modes"] if "lookahead" in m), "-")
            runs.append((v, j))
    else:
        for v in args.verifiers.split(","):
            runs.append((v, run_eval(args, v)))
    print(table(runs))
    print(f"\n{PAPER}")
    if not args.no_costs:
        cm = cost_model(model_file(args.target), model_file(args.draft), args.threads)
        print(f"\ncost model (stepq bench, {args.threads} threads): target {cm['target_tg']:.2f} tok/s decode, "
              f"{cm['target_pp']:.1f} tok/s prefill; draft {cm['draft_tg']:.2f} tok/s decode")
        print(f"  c = {cm['c']:.3f} (draft/target per token), p = {cm['p']:.3f} (a drafted token read in a prefill)")
        print("  b(B) = " + ", ".join(f"b({B}) = {v:.2f}" for B, v in cm["b"].items()))
        for verifier, j in runs:
            for m in j["modes"]:
                la = m.get("lookahead")
                if not la or not la["rounds"]:
                    continue
                a = la["kept_steps"] / la["rounds"]
                g = la.get("mean_depth", la["depth"])
                bound = (a + 1) / (g * (cm["c"] + cm["p"]) + cm["b"][1])
                print(f"  {m['mode']} ({verifier}): a = {a:.2f} kept steps per round, mean γ = {g:.2f}: "
                      f"bound (a+1)/(γ(c+p)+1) = {bound:.2f}x; measured {m.get('speedup_vs_ar', 0):.2f}x")
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
