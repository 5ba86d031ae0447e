#!/usr/bin/env python3
"""Lookahead Reasoning at full scale (issue 8, requirement 8), run in pieces that add up.

The full measurement (>= 200 GSM8K problems and a MATH-500 subset; AR, SD, LR and LR+SD; every
verifier; greedy and the reference's sampling) takes far longer than one sitting on a 2-core
CPU, so this script measures one problem at a time and appends each finished problem to a store
under bench/results/lookahead_full/, which later runs continue:

  python3 bench/lookahead_full.py run gsm8k --budget-min 90          # measure until 90 min are used
  python3 bench/lookahead_full.py run math500 -n 50 --budget-min 60
  python3 bench/lookahead_full.py report [--plot docs/lookahead-full.png]

Per problem, each verifier gets one `stepq eval` run that interleaves its modes on that problem:
  exact: ar, sd, lr, lr+sd        embed, judge (and the other settings in VERIFIERS): lr, lr+sd
A stored problem that lacks a verifier asked for gets that one run, merged into its record.
so every speedup compares runs minutes apart on the same machine; the store records the CPU, and
the report gives speedups per CPU model (never across machines) as total tokens over total
generation seconds, mode against AR on the same problems. The problems are a seeded shuffle of
the data file's rows (Python's random.Random(seed).shuffle); each one's row is its id.

`run` also records, once per CPU model and setting, the cost-model constants of
bench/lookahead_gsm8k.py (`stepq bench` on both models) in costs.jsonl beside the store.
"""
import argparse
import collections
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from lookahead_gsm8k import STEPQ, cost_model, draw_speedup_plot, model_file  # noqa: E402

DATA = {"gsm8k": "gsm8k/test.jsonl", "math500": "math500/test.jsonl"}
STORE = os.path.join(ROOT, "bench", "results", "lookahead_full")
# temperature 0, or the reference's sampling for reasoning models (DESIGN.md §5)
SAMPLING = {"greedy": ["--temp", "0"],
            "ref": ["--temp", "0.6", "--top-p", "0.95", "--top-k", "20", "--min-p", "0"]}
# Verifier settings by name: the stepq flags and the modes its run interleaves. A record's runs are
# keyed by these names, so a changed setting gets a new name and old results keep theirs. "embed"
# and "judge" are stepq's defaults: the numbers check on, embed at cosine >= 0.93
# (bench/verifier_pairs.py). The first GSM8K problems also ran the earlier defaults, without the
# numbers check: embed at 0.95 (8 problems, "embed@0.95") and the judge alone (9, "judge@plain").
VERIFIERS = {"exact": (["--verifier", "exact"], "ar,sd,lr,lr+sd"),
             "embed": (["--verifier", "embed"], "lr,lr+sd"),
             "judge": (["--verifier", "judge"], "lr,lr+sd"),
             "embed@0.95": (["--verifier", "embed", "--embed-threshold", "0.95", "--no-numbers-check"], "lr,lr+sd"),
             "judge@plain": (["--verifier", "judge", "--no-numbers-check"], "lr,lr+sd")}
PAPER = {"gsm8k": "paper (Qwen3-32B target, 1.7B draft, H100): SD 1.4x, LR+SD 2.1x, accuracy kept",
         "math500": "paper (Qwen3-32B target, 1.7B draft, H100): LR+SD about 2x on MATH-500, accuracy kept"}


def log(msg):
    print(f"lr-full: {msg}", file=sys.stderr, flush=True)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def data_dir():
    for d in (os.path.join(ROOT, "..", "shared", "data"), "/work/shared/data"):
        if os.path.isdir(d):
            return os.path.abspath(d)
    sys.exit("lr-full: ../shared/data not found (the evaluation data lives beside the clone)")


def selection(bench, seed):
    with open(os.path.join(data_dir(), DATA[bench])) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return rows, order


def store_path(bench, sampling):
    return os.path.join(STORE, f"{bench}-{sampling}.jsonl")


def load_store(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            out = [json.loads(line) for line in f if line.strip()]
    return out


def commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def compact(mode_json):
    """One mode's result on one problem, without what the report does not read."""
    p = mode_json["per_problem"][0]
    out = {k: p[k] for k in ("answer", "correct", "tokens", "seconds", "prompt_tokens", "prompt_seconds", "stopped")}
    la = mode_json.get("lookahead")
    if la:
        out["lookahead"] = {k: la[k] for k in ("rounds", "kept_steps", "drafted_steps", "kept_at_depth", "mean_depth",
                                               "target_forwards", "draft_forwards", "draft_seconds", "target_seconds",
                                               "spec_drafted", "spec_accepted", "verifier_calls",
                                               "verifier_model_calls", "verifier_seconds") if k in la}
    sp = mode_json.get("speculative")
    if sp:
        out["speculative"] = {k: v for k, v in sp.items() if isinstance(v, (int, float, str))}
    return _rounded(out)


def _rounded(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def run_problem(args, row, row_id, tmpdir, verifiers):
    item = dict(row)
    item["id"] = str(row_id)
    chunk = os.path.join(tmpdir, "problem.jsonl")
    with open(chunk, "w") as f:
        f.write(json.dumps(item) + "\n")
    runs = {}
    for v in verifiers:
        flags, modes = VERIFIERS[v]
        cmd = [STEPQ, "eval", args.bench, "-m", model_file(args.target), "--draft", model_file(args.draft),
               "--data", chunk, "--mode", modes, *flags, "--max-tokens", str(args.max_tokens),
               "-t", str(args.threads), "--seed", str(args.seed * 100003 + row_id), "--json"] + SAMPLING[args.sampling]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        j = json.loads(out.strip().splitlines()[-1])
        runs[v] = {m["mode"]: compact(m) for m in j["modes"]}
    return runs


def record_costs(args, cpu):
    path = os.path.join(STORE, "costs.jsonl")
    key = (cpu, args.target, args.draft, args.threads)
    for c in load_store(path):
        if (c["cpu"], c["target"], c["draft"], c["threads"]) == key:
            return
    log("cost model: stepq bench on both models (once per CPU model)")
    cm = cost_model(model_file(args.target), model_file(args.draft), args.threads)
    cm["b"] = {str(k): v for k, v in cm["b"].items()}
    rec = {"cpu": cpu, "target": args.target, "draft": args.draft, "threads": args.threads, "commit": commit(),
           "date": datetime.date.today().isoformat(), **cm}
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_run(args):
    if not os.path.exists(STEPQ):
        sys.exit(f"lr-full: {STEPQ} not built (bash scripts/build.sh)")
    os.makedirs(STORE, exist_ok=True)
    cpu = cpu_name()
    path = store_path(args.bench, args.sampling)
    wanted = args.verifiers.split(",")
    # A stored problem with some of the wanted verifiers missing gets only those, merged into its
    # record (their speedups still against the record's AR run).
    stored = {r["row"]: r for r in load_store(path)
              if r["max_tokens"] == args.max_tokens and r["target"] == args.target and r["draft"] == args.draft
              and r["threads"] == args.threads}
    missing = {i: [v for v in wanted if v not in stored.get(i, {"runs": {}})["runs"]] for i in order_of(args)}
    if "exact" not in wanted:
        # Speedups need the AR run, which comes with exact: only problems that have it.
        missing = {i: m for i, m in missing.items() if i in stored}
    todo = [i for i, m in missing.items() if m]
    rows, _ = selection(args.bench, args.seed)
    log(f"{args.bench}, {args.sampling}: {args.n - len(todo)} of the first {args.n} problems have "
        f"{','.join(wanted)} in {path}; {len(todo)} to go, within {args.budget_min} min")
    if not todo:
        return
    start = time.time()
    if not args.no_costs:
        record_costs(args, cpu)
    took = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, row_id in enumerate(todo):
            used = (time.time() - start) / 60
            guess = (sum(took) / len(took) if took else 0) / 60
            if used + guess > args.budget_min:
                log(f"stopping: {used:.1f} min used, the next problem takes about {guess:.1f}")
                break
            t0 = time.time()
            runs = run_problem(args, rows[row_id], row_id, tmp, missing[row_id])
            took.append(time.time() - t0)
            now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            if row_id in stored:
                rec = stored[row_id]
                if rec["cpu"] != cpu:
                    log(f"row {row_id}: stored on {rec['cpu']}, now on {cpu}: not merged")
                    continue
                rec["runs"].update(runs)
                rec.setdefault("added", {}).update({v: {"commit": commit(), "date": now} for v in runs})
                rewrite_store(path, rec)
            else:
                rec = {"row": row_id, "bench": args.bench, "sampling": args.sampling, "seed": args.seed,
                       "verifiers": args.verifiers, "max_tokens": args.max_tokens, "target": args.target,
                       "draft": args.draft, "threads": args.threads, "cpu": cpu, "commit": commit(),
                       "date": now, "runs": runs}
                with open(path, "a") as f:
                    f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            ar = rec["runs"].get("exact", {}).get("ar")
            parts = [f"{v}/{m} {'ok' if r['correct'] else 'wrong'} {r['tokens'] / max(r['seconds'], 1e-9):.1f} tok/s"
                     for v, ms in runs.items() for m, r in ms.items()]
            log(f"[{k + 1}/{len(todo)}] row {row_id} ({took[-1]:.0f} s): " + ", ".join(parts) +
                (f" (AR {ar['tokens']} tokens)" if ar else ""))


def order_of(args):
    return selection(args.bench, args.seed)[1][:args.n]


def rewrite_store(path, rec):
    """Replaces the stored record of rec's row (and settings) with rec, atomically."""
    out = []
    for r in load_store(path):
        same = all(r[k] == rec[k] for k in ("row", "max_tokens", "target", "draft", "threads", "cpu"))
        out.append(rec if same else r)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in out:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def aggregate(records):
    """{cpu: {(verifier, mode): totals}} over problems where AR ran in the same record."""
    out = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.Counter()))
    for r in records:
        ar = r["runs"].get("exact", {}).get("ar")
        if not ar:
            continue
        for v, ms in r["runs"].items():
            for m, x in ms.items():
                key = ("–" if m in ("ar", "sd") else v, m)
                if m in ("ar", "sd") and v != "exact":
                    continue
                t = out[r["cpu"]][key]
                t["n"] += 1
                t["correct"] += int(x["correct"])
                t["tokens"] += x["tokens"]
                t["seconds"] += x["seconds"]
                t["ar_tokens"] += ar["tokens"]
                t["ar_seconds"] += ar["seconds"]
                t["same_answer_as_ar"] += int(x["answer"] == ar["answer"])
                la = x.get("lookahead")
                if la:
                    t["rounds"] += la["rounds"]
                    t["kept"] += la["kept_steps"]
                    t["drafted"] += la["drafted_steps"]
                    t["depth_sum"] += la["mean_depth"] * la["rounds"]
                    t["verifier_seconds"] += la.get("verifier_seconds", 0)
                    for d, kd in enumerate(la["kept_at_depth"]):
                        t[f"kept_d{d + 1}"] += kd
    return out


def cmd_report(args):
    costs = load_store(os.path.join(STORE, "costs.jsonl"))
    points = []
    for bench in DATA:
        for sampling in SAMPLING:
            records = load_store(store_path(bench, sampling))
            if not records:
                continue
            agg = aggregate(records)
            for cpu, rows in agg.items():
                print(f"\n### {bench}, {sampling}, {cpu} ({max(t['n'] for t in rows.values())} problems)\n")
                print("| verifier | mode | problems | accuracy | same answer as AR | tok/s | speedup vs AR | "
                      "kept / drafted steps | kept per round at depth 1, 2, 3, 4 | mean γ |")
                print("|---|---|---|---|---|---|---|---|---|---|")
                order = sorted(rows, key=lambda k: (k[0] != "–", k[0], ["ar", "sd", "lr", "lr+sd"].index(k[1])))
                for key in order:
                    t = rows[key]
                    rate = t["tokens"] / max(t["seconds"], 1e-9)
                    speed = rate / max(t["ar_tokens"] / max(t["ar_seconds"], 1e-9), 1e-9)
                    if t["rounds"]:
                        kept = f"{t['kept']}/{t['drafted']}"
                        per_depth = ", ".join(f"{t[f'kept_d{d}'] / t['rounds']:.2f}" for d in range(1, 5))
                        gamma = f"{t['depth_sum'] / t['rounds']:.2f}"
                    else:
                        kept = per_depth = gamma = "–"
                    print(f"| {key[0]} | {key[1]} | {t['n']} | {100 * t['correct'] / t['n']:.1f}% | "
                          f"{100 * t['same_answer_as_ar'] / t['n']:.0f}% | {rate:.2f} | {speed:.2f}x | {kept} | "
                          f"{per_depth} | {gamma} |")
                print(f"\n{PAPER[bench]}")
                cm = next((c for c in costs if c["cpu"] == cpu), None)
                if cm:
                    print(f"\ncost model on this CPU: target {cm['target_tg']:.2f} tok/s decode; c = {cm['c']:.3f}, "
                          f"p = {cm['p']:.3f}, " + ", ".join(f"b({B}) = {v:.2f}" for B, v in cm["b"].items()))
                    for key in order:
                        t = rows[key]
                        if not t["rounds"]:
                            continue
                        a, g = t["kept"] / t["rounds"], t["depth_sum"] / t["rounds"]
                        bound = (a + 1) / (g * (cm["c"] + cm["p"]) + cm["b"]["1"])
                        print(f"  {key[1]} ({key[0]}): a = {a:.2f}, γ = {g:.2f}: bound (a+1)/(γ(c+p)+b) = {bound:.2f}x")
            for r in records:
                ar = r["runs"].get("exact", {}).get("ar")
                for v, ms in r["runs"].items():
                    for m, x in ms.items():
                        la = x.get("lookahead")
                        if ar and la and la["rounds"]:
                            points.append((f"{m} ({v})", la["kept_steps"] / la["rounds"],
                                           (x["tokens"] / max(x["seconds"], 1e-9)) /
                                           max(ar["tokens"] / max(ar["seconds"], 1e-9), 1e-9)))
    if args.plot and points:
        draw_speedup_plot(sorted(points), args.plot)


def main():
    global STORE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure problems not yet in the store, within a time budget")
    r.add_argument("bench", choices=sorted(DATA))
    r.add_argument("-n", type=int, default=None, help="problems of the seeded shuffle (default: gsm8k 200, math500 50)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--sampling", choices=sorted(SAMPLING), default="greedy")
    r.add_argument("--verifiers", default="exact,embed,judge",
                   help=f"comma list of {', '.join(VERIFIERS)} (default exact,embed,judge)")
    r.add_argument("--target", default="qwen1.5b")
    r.add_argument("--draft", default="qwen0.5b")
    r.add_argument("--max-tokens", type=int, default=None, help="default: gsm8k 512, math500 1024")
    r.add_argument("-t", "--threads", type=int, default=2)
    r.add_argument("--budget-min", type=float, default=60, help="stop before a problem that would end past this")
    r.add_argument("--no-costs", action="store_true", help="do not run the cost-model benchmark")
    p = sub.add_parser("report", help="tables (markdown) from the stores")
    p.add_argument("--plot", help="PNG of speedup against accepted steps per round, every problem")
    for q in (r, p):
        q.add_argument("--store", default=STORE, help="folder of the stores (default: bench/results/lookahead_full)")
    args = ap.parse_args()
    STORE = os.path.abspath(args.store)
    if args.cmd == "run":
        if args.n is None:
            args.n = 200 if args.bench == "gsm8k" else 50
        if args.max_tokens is None:
            args.max_tokens = 512 if args.bench == "gsm8k" else 1024
        for v in args.verifiers.split(","):
            if v not in VERIFIERS:
                sys.exit(f"lr-full: unknown verifier '{v}' ({', '.join(VERIFIERS)})")
        cmd_run(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
