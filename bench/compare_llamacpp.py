#!/usr/bin/env python3
"""stepq vs llama.cpp, side by side, in one run: the same GGUF files, thread counts, prompt sizes,
token ids, repetitions and warm-up policy; plus the memory bandwidth probe that bounds decode.
Prints one markdown table of ratios (stepq / llama.cpp) and can write it into a markdown file.

    python3 bench/compare_llamacpp.py                      # 4 real models + mixtral-like x threads 1,2, 5 reps
    python3 bench/compare_llamacpp.py --reps 3 --out docs/benchmarks.md
    python3 bench/compare_llamacpp.py --models smollm2 --threads 2 -p 128 -n 32
    python3 bench/compare_llamacpp.py --models mixtral-like      # the generated MoE model alone

stepq side: `stepq bench --json` (build it first: build/stepq, or --stepq PATH).
llama.cpp side: bench/llamacpp_runner.py under the reference venv's python, llama-cpp-python
0.3.36 built from source with native flags: $STEPQ_REF_VENV or ~/.cache/stepq/venv-ref, made by
tools/setup_reference_venv.sh.

The two engines never run at the same time (2 cores): per model and thread count, stepq first,
then llama.cpp. Both busy-spin their worker threads, so any other process on the machine hurts
them badly; before each measurement the script waits for the CPUs to be idle, and it measures
how much CPU other processes took during each run (system busy time minus this run's own CPU
time). A run disturbed by more than --max-other-cpu is repeated at once (--retries), and pairs still
disturbed are measured again, both engines, in up to --rounds extra rounds at the end; the table
marks any result that stayed disturbed.

% of bandwidth limit (tg and batch): weight bytes read per forward (stepq's
Model::weight_bytes_per_token) x forwards per second / the probe's best read rate with the same
thread count. For batch<B> a forward yields B tokens, so forwards/s = t/s / B.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import stepq_models  # noqa: E402

RUNNER = os.path.join(ROOT, "bench", "llamacpp_runner.py")
BEGIN = "<!-- compare_llamacpp:begin -->"
END = "<!-- compare_llamacpp:end -->"


def log(msg):
    print(f"compare: {msg}", file=sys.stderr, flush=True)


def ref_python():
    venv = os.environ.get("STEPQ_REF_VENV", os.path.expanduser("~/.cache/stepq/venv-ref"))
    py = os.path.join(venv, "bin", "python")
    ok = os.path.exists(py) and subprocess.run([py, "-c", "import llama_cpp"], capture_output=True).returncode == 0
    if not ok:
        sys.exit(f"compare: no llama-cpp-python in {venv}. Create it with `bash tools/setup_reference_venv.sh` "
                 "(about 10 minutes; set STEPQ_REF_VENV to put it elsewhere).")
    return py


def cpu_busy_seconds():
    """System-wide non-idle CPU seconds (steal included: another VM on our cores disturbs too)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    t = os.times()
    return t.children_user + t.children_system


def wait_for_quiet(max_other, max_wait):
    """Waits until other processes use at most max_other of the machine over a 2 s sample."""
    t_end = time.time() + max_wait
    ncpu = os.cpu_count() or 1
    while True:
        b0 = cpu_busy_seconds()
        time.sleep(2)
        frac = (cpu_busy_seconds() - b0) / (2 * ncpu)
        if frac <= max_other:
            return frac
        if time.time() > t_end:
            log(f"machine still busy ({100 * frac:.0f}% CPU by others) after {max_wait} s; measuring anyway")
            return frac
        log(f"waiting for a quiet machine ({100 * frac:.0f}% CPU in use by others; load {os.getloadavg()[0]:.2f})")
        time.sleep(8)


def measured(cmd, args, what):
    """Runs cmd (JSON lines on stdout) on a quiet machine; repeats it while others disturb it.
    Returns (results by test name, fraction of the machine other processes used)."""
    ncpu = os.cpu_count() or 1
    best = None
    for attempt in range(args.retries + 1):
        wait_for_quiet(args.max_other_cpu, args.max_wait)
        log(f"{what}{f' (retry {attempt})' if attempt else ''}: {shlex.join(cmd)}")
        b0, c0, t0 = cpu_busy_seconds(), children_cpu_seconds(), time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        wall = time.time() - t0
        other = max(0.0, (cpu_busy_seconds() - b0) - (children_cpu_seconds() - c0)) / (wall * ncpu)
        if r.returncode != 0:
            sys.exit(f"compare: {what} failed (rc {r.returncode}):\n{r.stderr[-2000:]}")
        res = {}
        for line in r.stdout.splitlines():
            if line.strip():
                j = json.loads(line)
                res[j["test"]] = j
        log(f"{what}: {wall:.0f} s, other processes used {100 * other:.1f}% of the CPUs")
        if best is None or other < best[1]:
            best = (res, other)
        if other <= args.max_other_cpu:
            break
    return best


# Generated on first use (no real MoE model is downloadable here): a Mixtral-like layout, 8
# experts with 2 used per token, Q4_K, about 400 MB of which 118 MB are read per token.
GENERATED = {
    "mixtral-like": ("moe/mixtral-like-q4_k.gguf",
                     ["--arch", "mixtral", "--embd", "1024", "--layers", "8", "--experts", "8", "--used", "2",
                      "--ff-exp", "2816", "--heads", "16", "--kv-heads", "4", "--type", "q4_k", "--seed", "7"]),
}


def generated_model(name):
    rel, extra = GENERATED[name]
    path = os.path.join(stepq_models.models_dir(), rel)
    if not os.path.exists(path):
        tok = os.path.join(stepq_models.models_dir(), stepq_models.MODEL_FILES["smollm2"])
        log(f"generating {path} (tools/make_moe_model.py, about 20 s)")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_moe_model.py"), "--tokenizer-from", tok,
                        "-o", path] + extra, check=True)
    return path


def resolve_models(names):
    out = []
    for n in names:
        if n in GENERATED:
            out.append(generated_model(n))
        elif n in stepq_models.MODEL_FILES:
            out.append(os.path.join(stepq_models.models_dir(), stepq_models.MODEL_FILES[n]))
        elif os.path.exists(n):
            out.append(n)
        elif os.path.exists(os.path.join(stepq_models.models_dir(), n)):
            out.append(os.path.join(stepq_models.models_dir(), n))
        else:
            sys.exit(f"compare: no model '{n}' (a path, a file in {stepq_models.models_dir()}, or one of "
                     f"{', '.join(stepq_models.MODEL_FILES)}); scripts/fetch-models.py downloads them")
    return out


def fmt_tps(j):
    return "—" if j is None else f"{j['tokens_per_s']:.1f} ± {j['tokens_per_s_sd']:.1f}"


def build_table(rows, bw, args):
    head = ["model", "threads", "test", "stepq t/s", "llama.cpp t/s", "ratio", "stepq GB/s", "% of bandwidth limit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "--:", "---", "--:", "--:", "--:", "--:", "--:"]) + "|"]
    for r in rows:
        s, l = r["stepq"], r["llama"]
        ratio = f"{s['tokens_per_s'] / l['tokens_per_s']:.2f}" if (s and l) else "—"
        pct = "—"
        if s and not r["test"].startswith("pp"):
            forwards = s["tokens_per_s"] / max(s.get("n_batch", 1), 1)
            pct = f"{100 * s['weight_bytes'] * forwards / (bw[r['threads']] * 1e9):.0f}%"
        mark = " *" if r["disturbed"] else ""
        gbs = "—" if not s else f"{s['gb_per_s']:.1f}"
        lines.append(f"| {r['model']} | {r['threads']} | {r['test']} | {fmt_tps(s)}{mark} | {fmt_tps(l)}{mark} | "
                     f"{ratio} | {gbs} | {pct} |")
    return "\n".join(lines)


def write_section(path, text):
    old = open(path).read() if os.path.exists(path) else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    with open(path, "w") as f:
        f.write(new)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(list(stepq_models.MODEL_FILES) + list(GENERATED)),
                    help="comma-separated short names (%(default)s; mixtral-like is generated on first use), "
                         "file names in the models folder, or paths")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default %(default)s)")
    ap.add_argument("-r", "--reps", type=int, default=5, help="timed repetitions per test, after one warm-up (default 5)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-b", "--batch", default="8", help="batched-decode sizes; '' = none (default %(default)s)")
    ap.add_argument("--stepq", default=os.path.join(ROOT, "build", "stepq"), help="stepq binary (default build/stepq)")
    ap.add_argument("--bw-mib", type=int, default=1024, help="bandwidth probe buffer (MiB)")
    ap.add_argument("--out", help="also write the table into this markdown file, between "
                                  f"'{BEGIN}' and '{END}' (added at the end if missing)")
    ap.add_argument("--json-out", help="also write every raw result (both engines) to this JSON file")
    ap.add_argument("--max-other-cpu", type=float, default=0.10,
                    help="fraction of the CPUs other processes may use during a run before it is repeated")
    ap.add_argument("--retries", type=int, default=1, help="immediate repeats of a disturbed engine run (default 1)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="extra rounds at the end that measure still-disturbed model/thread pairs again (default 2)")
    ap.add_argument("--max-wait", type=int, default=900, help="seconds to wait for a quiet machine each time")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds allowed per engine run")
    args = ap.parse_args()

    if not (os.path.isfile(args.stepq) and os.access(args.stepq, os.X_OK)):
        sys.exit(f"compare: no stepq binary at {args.stepq} (build it: cmake -S . -B build -G Ninja && ninja -C build, "
                 "or pass --stepq PATH)")
    py = ref_python()
    models = resolve_models([m for m in args.models.split(",") if m])
    threads = [int(t) for t in args.threads.split(",") if t]
    t_start = time.time()
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if l.startswith("Model name")), platform.processor())
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "--no-optional-locks", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    stepq_version = (head or "unknown") + (" plus uncommitted changes" if dirty else "")
    llama_version = subprocess.run([py, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                                   capture_output=True, text=True).stdout.strip()

    # Read-bandwidth ceiling per thread count: probed before and after the models and at the
    # start of every stepq run; the best counts, since a disturbance only ever lowers it (with 2
    # vCPUs, one busy moment of another process halves a 2-thread probe).
    probe_flags = ["--bandwidth", "--bw-mib", str(args.bw_mib), "--bw-passes", "10"]
    bw_samples = {t: [] for t in threads}

    def probe(t, when):
        res, _ = measured([args.stepq, "bench", "-t", str(t), *probe_flags, "--json"], args,
                          f"bandwidth probe t={t} ({when})")
        bw_samples[t].append(res["membw"]["gb_per_s"])

    for t in threads:
        probe(t, "before")

    common = ["-p", str(args.n_prompt), "-n", str(args.n_gen), "-r", str(args.reps), "-b", args.batch]

    def measure_pair(m, t, note=""):
        name = os.path.basename(m)
        s, s_other = measured([args.stepq, "bench", "-m", m, "-t", str(t), *common, *probe_flags, "--json"], args,
                              f"stepq {name} t={t}{note}")
        bw_samples[t].append(s.pop("membw")["gb_per_s"])
        n_vocab = next(iter(s.values()))["n_vocab"]
        l, l_other = measured([py, RUNNER, "-m", m, "-t", str(t), *common, "--n-vocab", str(n_vocab)], args,
                              f"llama.cpp {name} t={t}{note}")
        return {"model": name, "threads": t, "stepq": s, "llama.cpp": l,
                "other_cpu": {"stepq": s_other, "llama.cpp": l_other}, "other": max(s_other, l_other)}

    pairs = {(m, t): measure_pair(m, t) for m in models for t in threads}
    # A disturbed pair is measured again, both engines together, so its ratio compares runs made
    # under the same conditions; the least disturbed measurement of the pair is kept.
    for rnd in range(args.rounds):
        again = [k for k, v in pairs.items() if v["other"] > args.max_other_cpu]
        if not again:
            break
        log(f"round {rnd + 2}: measuring {len(again)} disturbed model/thread pair(s) again")
        for k in again:
            p = measure_pair(*k, note=f" (round {rnd + 2})")
            if p["other"] < pairs[k]["other"]:
                pairs[k] = p
    rows, raw = [], list(pairs.values())
    for p in raw:
        for test, sj in p["stepq"].items():
            rows.append({"model": p["model"].replace(".gguf", ""), "threads": p["threads"], "test": test,
                         "stepq": sj, "llama": p["llama.cpp"].get(test),
                         "disturbed": p["other"] > args.max_other_cpu})
    for t in threads:
        probe(t, "after")
    bw = {t: max(v) for t, v in bw_samples.items()}
    minutes = (time.time() - t_start) / 60

    table = build_table(rows, bw, args)
    cmd = "python3 bench/compare_llamacpp.py " + shlex.join(sys.argv[1:])
    bws = ", ".join(f"{bw[t]:.1f} GB/s with {t} thread{'s' if t > 1 else ''} (best of {len(bw_samples[t])} probes, "
                    f"lowest {min(bw_samples[t]):.1f})" for t in threads)
    header = (f"- measured {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {cpu} ({os.cpu_count()} CPUs), "
              f"{minutes:.0f} minutes in all\n"
              f"- stepq {stepq_version}; llama-cpp-python {llama_version}\n"
              f"- `{cmd.strip()}`: {args.reps} timed repetitions after one warm-up, mean ± sample sd\n"
              f"- memory read bandwidth (`stepq bench --bandwidth`, {args.bw_mib} MiB, best of 10 passes): {bws}\n")
    if any(r["disturbed"] for r in rows):
        header += f"- results marked * were disturbed by other processes (> {100 * args.max_other_cpu:.0f}% CPU)\n"
    text = header + "\n" + table
    print(text)
    if args.out:
        write_section(args.out, text)
        log(f"table written to {args.out}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"bandwidth_gb_per_s": bw, "bandwidth_probes": bw_samples, "cpu": cpu, "llama_cpp_python": llama_version, "runs": raw}, f,
                      indent=1)
    log(f"done in {minutes:.1f} minutes")


if __name__ == "__main__":
    main()
