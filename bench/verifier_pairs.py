#!/usr/bin/env python3
"""Tune and compare Lookahead Reasoning's step verifiers on the same real drafted steps (issue 8,
requirement 3: the embedding threshold, "to be tuned and reported").

1. collect: one `stepq eval --mode lr --verifier embed --embed-threshold 1 --no-numbers-check
   --step-log LOG` run over GSM8K problems that the full benchmark does not use (rows 200.. of the
   seeded shuffle of bench/lookahead_full.py, whose first 200 are the benchmark). At threshold 1
   no step that differs from the target's is kept, so the run writes the target's own text (as the
   exact verifier would) and logs every eligible drafted step beside the target's step after the
   same text.
2. score: `stepq verify-steps` runs each verifier over those same pairs without the numbers check:
   embed (MiniLM cosine, every pair) and judge (the target, by default, judging every pair).
3. report: for each embed threshold, and for the judge, how many pairs each keeps and how many of
   the kept hold other numbers than the target's step (step_numbers() in
   src/runtime/step_verifier.cpp: the distinct numbers written, separators and redundant zeros
   dropped). On GSM8K a step with other numbers computes something else, so that count is the
   proxy for wrong keeps; the numbers check (on by default) refuses those pairs outright.

  python3 bench/verifier_pairs.py run -n 40       # collect + score: ~40 s a problem, ~3 s a judge call
  python3 bench/verifier_pairs.py report          # the tables again from the saved pairs

The pairs (scores, judge margins, number agreement, lengths; no texts) go to
bench/results/verifier_pairs/pairs.jsonl; the logs with the texts stay in the work folder.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from lookahead_full import commit, cpu_name, selection  # noqa: E402
from lookahead_gsm8k import STEPQ, model_file  # noqa: E402

OUT = os.path.join(ROOT, "bench", "results", "verifier_pairs")
THRESHOLDS = [0.80, 0.85, 0.90, 0.92, 0.93, 0.94, 0.95, 0.97, 0.98, 0.99]


def log(msg):
    print(f"verifier-pairs: {msg}", file=sys.stderr, flush=True)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def verify(pairs_file, out, flags, reuse=False):
    if reuse and os.path.exists(out):
        log(f"reusing {out}")
        return read_jsonl(out)
    if os.path.exists(out):
        os.remove(out)
    cmd = [STEPQ, "verify-steps", "-f", pairs_file, "-o", out, "--no-numbers-check", *flags]
    log(" ".join(cmd))
    subprocess.run(cmd, check=True)
    return read_jsonl(out)


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
    steps = os.path.join(args.work, "steps.jsonl")
    if args.reuse and os.path.exists(steps):
        log(f"reusing the drafted steps in {steps}")
        accuracy = None
    else:
        if os.path.exists(steps):
            os.remove(steps)
        cmd = [STEPQ, "eval", "gsm8k", "-m", model_file(args.target), "--draft", model_file(args.draft), "--data",
               data, "--mode", "lr", "--verifier", "embed", "--embed-threshold", "1", "--no-numbers-check",
               "--step-log", steps, "--max-tokens", str(args.max_tokens), "--temp", "0", "-t", str(args.threads),
               "--json"]
        log(" ".join(cmd))
        res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if res.returncode != 0:
            sys.exit(f"verifier-pairs: stepq eval failed ({res.returncode})")
        accuracy = json.loads(res.stdout.strip().splitlines()[-1])["accuracy"]
    embed = verify(steps, os.path.join(args.work, "embed.jsonl"),
                   ["--verifier", "embed", "--embed-threshold", "-1", "-t", str(args.threads)], args.reuse)
    judge = None
    if not args.no_judge:
        judge = verify(steps, os.path.join(args.work, "judge.jsonl"),
                       ["--verifier", "judge", "--judge", model_file(args.judge), "-t", str(args.threads)],
                       args.reuse)
    pairs = []
    for i, e in enumerate(embed):
        p = {"id": e["id"], "exact": e["exact"], "embed": e["score"], "same_numbers": e["same_numbers"],
             "target_chars": len(e["target"]), "draft_chars": len(e["draft"])}
        if judge:
            p["judge"] = judge[i]["score"]  # logit(aligned) - logit(unaligned); kept when > 0
        pairs.append(p)
    meta = {"meta": True, "cpu": cpu_name(), "commit": commit(), "rows": f"{args.first}..{args.first + args.n - 1}",
            "seed": args.seed, "target": args.target, "draft": args.draft, "judge": None if args.no_judge else args.judge,
            "max_tokens": args.max_tokens, "problems": args.n, "lr_accuracy": accuracy}
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "pairs.jsonl")
    with open(path, "w") as f:
        f.write(json.dumps(meta) + "\n")
        for p in pairs:
            f.write(json.dumps(p) + "\n")
    log(f"{len(pairs)} pairs from {args.n} problems -> {path}; texts in {args.work}")
    report(path, os.path.join(args.work, "embed.jsonl"))


def report(path, texts=None):
    lines = read_jsonl(path)
    meta = next((x for x in lines if x.get("meta")), {})
    pairs = [x for x in lines if not x.get("meta")]
    exact = sum(1 for p in pairs if p["exact"])
    scored = [p for p in pairs if not p["exact"]]
    n = max(1, len(pairs))
    pct = lambda k: f"{k} ({100 * k / n:.0f}%)"  # noqa: E731
    print(f"- {meta.get('problems', '?')} GSM8K problems (rows {meta.get('rows', '?')} of the seeded shuffle, "
          f"seed {meta.get('seed', '?')}), target {meta.get('target')}, draft {meta.get('draft')}, "
          f"{meta.get('cpu', '?')}, commit {meta.get('commit', '?')}")
    print(f"- {len(pairs)} eligible drafted steps: {exact} equal to the target's step after normalization, "
          f"{len(scored)} not ({sum(1 for p in scored if p['same_numbers'])} of them with the same numbers)")
    print()
    print("| verifier | kept | kept with other numbers | share of the kept non-exact pairs with other numbers "
          "| kept with the numbers check |")
    print("|---|---|---|---|---|")

    def row(name, keep):
        bad = sum(1 for p in keep if not p["same_numbers"])
        share = f"{100 * bad / len(keep):.0f}%" if keep else "–"
        good = sum(1 for p in keep if p["same_numbers"])
        print(f"| {name} | {pct(exact + len(keep))} | {bad} | {share} | {pct(exact + good)} |")

    for t in THRESHOLDS:
        row(f"embed ≥ {t:.2f}", [p for p in scored if p["embed"] >= t])
    if scored and scored[0].get("judge") is not None:
        row(f"judge ({meta.get('judge')})", [p for p in scored if p["judge"] > 0])
    if texts and os.path.exists(texts):
        print()
        print("Highest-scoring pairs with other numbers (target | draft):")
        bad = sorted((r for r in read_jsonl(texts) if not r["exact"] and r["same_numbers"] is False),
                     key=lambda r: -r["score"])
        for r in bad[:5]:
            print(f"  {r['score']:.3f}  {r['target'].strip()[:140]!r}  |  {r['draft'].strip()[:140]!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="collect drafted steps, score them with every verifier, print the tables")
    r.add_argument("-n", type=int, default=40, help="problems (default 40)")
    r.add_argument("--first", type=int, default=200, help="first row of the seeded shuffle (default 200: after "
                   "the benchmark's 200)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--target", default="qwen1.5b")
    r.add_argument("--draft", default="qwen0.5b")
    r.add_argument("--judge", default="qwen1.5b", help="judge model (default: the target, as stepq's default)")
    r.add_argument("--no-judge", action="store_true", help="score with embed only")
    r.add_argument("--reuse", action="store_true",
                   help="reuse the steps (and scores) already in the work folder, computing only what is missing")
    r.add_argument("--max-tokens", type=int, default=512)
    r.add_argument("-t", "--threads", type=int, default=2)
    r.add_argument("--work", default="/tmp/stepq-verifier-pairs", help="folder for the data file and the logs")
    q = sub.add_parser("report", help="the tables from saved pairs")
    q.add_argument("--pairs", default=os.path.join(OUT, "pairs.jsonl"))
    q.add_argument("--texts", default="/tmp/stepq-verifier-pairs/embed.jsonl",
                   help="the embed log with texts, for examples (optional)")
    args = ap.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        report(args.pairs, args.texts)


if __name__ == "__main__":
    main()
