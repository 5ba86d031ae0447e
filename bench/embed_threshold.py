#!/usr/bin/env python3
"""Tune the embedding verifier's threshold (issue 8, requirement 3) on real drafted steps.

One `stepq eval --mode lr --verifier embed --embed-threshold 1 --step-log LOG` run over GSM8K
problems that the full benchmark does not use (rows 200.. of the same seeded shuffle as
bench/lookahead_full.py, whose first 200 are the benchmark): at threshold 1 no step that differs
from the target's is kept, so the run writes the target's own text (as the exact verifier would)
and logs every eligible drafted step with the target's step after the same text and their MiniLM
cosine similarity. Then, offline, for each threshold t: which of those pairs embed would keep at
t, and how many of the kept pairs hold other numbers than the target's step (step_numbers() in
src/runtime/step_verifier.cpp: the same numbers, sorted, after dropping separators and zeros).
On GSM8K a step with other numbers computes something else, so that share is the proxy for the
verifier's wrong keeps; --embed-numbers refuses them outright.

  python3 bench/embed_threshold.py run -n 40            # ~40 s a problem on 2 cores
  python3 bench/embed_threshold.py report [--pairs F]   # the table again from the saved pairs

The pairs (scores, number agreement and lengths, no texts) go to
bench/results/embed_threshold/pairs.jsonl; the full log with the texts stays in the work folder.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from lookahead_full import cpu_name, commit, selection  # noqa: E402
from lookahead_gsm8k import STEPQ, model_file  # noqa: E402

OUT = os.path.join(ROOT, "bench", "results", "embed_threshold")
THRESHOLDS = [0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99]


def log(msg):
    print(f"embed-threshold: {msg}", file=sys.stderr, flush=True)


def cmd_run(args):
    rows, order = selection("gsm8k", args.seed)
    pick = order[args.first:args.first + args.n]
    os.makedirs(args.work, exist_ok=True)
    data = os.path.join(args.work, "problems.jsonl")
    with open(data, "w") as f:
        for r in pick:
            item = dict(rows[r])
            item["id"] = str(r)
            f.write(json.dumps(item) + "\n")
    step_log = os.path.join(args.work, "steps.jsonl")
    if os.path.exists(step_log):
        os.remove(step_log)
    cmd = [STEPQ, "eval", "gsm8k", "-m", model_file(args.target), "--draft", model_file(args.draft), "--data", data,
           "--mode", "lr", "--verifier", "embed", "--embed-threshold", "1", "--step-log", step_log,
           "--max-tokens", str(args.max_tokens), "--temp", "0", "-t", str(args.threads), "--json"]
    log(" ".join(cmd))
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit(f"embed-threshold: stepq eval failed ({res.returncode})")
    run = json.loads(res.stdout.strip().splitlines()[-1])
    os.makedirs(OUT, exist_ok=True)
    pairs = []
    with open(step_log) as f:
        for line in f:
            d = json.loads(line)
            pairs.append({"id": d["id"], "exact": d["exact"], "score": d["score"],
                          "same_numbers": d["same_numbers"], "target_chars": len(d["target"]),
                          "draft_chars": len(d["draft"])})
    meta = {"meta": True, "cpu": cpu_name(), "commit": commit(), "rows": f"{args.first}..{args.first + args.n - 1}",
            "seed": args.seed, "target": args.target, "draft": args.draft, "max_tokens": args.max_tokens,
            "accuracy": run["accuracy"], "problems": run["n"]}
    path = os.path.join(OUT, "pairs.jsonl")
    with open(path, "w") as f:
        f.write(json.dumps(meta) + "\n")
        for p in pairs:
            f.write(json.dumps(p) + "\n")
    log(f"{len(pairs)} verifier calls on {run['n']} problems -> {path}; texts in {step_log}")
    report(path, step_log)


def report(path, texts=None):
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    meta = next((x for x in lines if x.get("meta")), {})
    pairs = [x for x in lines if not x.get("meta")]
    exact = sum(1 for p in pairs if p["exact"])
    scored = [p for p in pairs if not p["exact"] and p["score"] is not None]
    print(f"- {meta.get('problems', '?')} GSM8K problems (rows {meta.get('rows', '?')} of the seeded shuffle, "
          f"seed {meta.get('seed', '?')}), {meta.get('cpu', '?')}, commit {meta.get('commit', '?')}")
    print(f"- {len(pairs)} eligible drafted steps judged: {exact} equal to the target's after normalization, "
          f"{len(scored)} scored by MiniLM ({sum(1 for p in scored if p['same_numbers'])} of them with the same "
          f"numbers as the target's step)")
    print()
    print("| threshold | kept (of all judged) | kept with other numbers | of the kept non-exact: other numbers "
          "| kept with --embed-numbers |")
    print("|---|---|---|---|---|")
    n = max(1, len(pairs))
    for t in THRESHOLDS:
        keep = [p for p in scored if p["score"] >= t]
        bad = sum(1 for p in keep if not p["same_numbers"])
        guarded = sum(1 for p in keep if p["same_numbers"])
        share = f"{100 * bad / len(keep):.0f}%" if keep else "–"
        print(f"| {t:.2f} | {exact + len(keep)} ({100 * (exact + len(keep)) / n:.0f}%) | {bad} | {share} "
              f"| {exact + guarded} ({100 * (exact + guarded) / n:.0f}%) |")
    if texts and os.path.exists(texts):
        print()
        print("Highest-scoring pairs with other numbers (target | draft):")
        with open(texts) as f:
            rows = [json.loads(line) for line in f]
        bad = sorted((r for r in rows if not r["exact"] and r["same_numbers"] is False and r["score"] is not None),
                     key=lambda r: -r["score"])
        for r in bad[:5]:
            print(f"  {r['score']:.3f}  {r['target'].strip()[:140]!r}  |  {r['draft'].strip()[:140]!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run LR with threshold 1 and a step log, then print the table")
    r.add_argument("-n", type=int, default=40, help="problems (default 40)")
    r.add_argument("--first", type=int, default=200, help="first row of the seeded shuffle (default 200: after "
                   "the benchmark's 200)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--target", default="qwen1.5b")
    r.add_argument("--draft", default="qwen0.5b")
    r.add_argument("--max-tokens", type=int, default=512)
    r.add_argument("-t", "--threads", type=int, default=2)
    r.add_argument("--work", default="/tmp/stepq-embed-threshold", help="folder for the data file and the step log")
    q = sub.add_parser("report", help="the table from saved pairs")
    q.add_argument("--pairs", default=os.path.join(OUT, "pairs.jsonl"))
    q.add_argument("--texts", default="/tmp/stepq-embed-threshold/steps.jsonl",
                   help="the step log with texts, for examples (optional)")
    args = ap.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        report(args.pairs, args.texts)


if __name__ == "__main__":
    main()
