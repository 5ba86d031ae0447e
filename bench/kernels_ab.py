#!/usr/bin/env python3
"""A/B kernel builds: runs stepq_kernels_bench binaries alternately and prints each benchmark's
minimum real time per build and the ratios to the first build.

Medians of one binary swing by ±20% on a shared 2-core host; the minimum over rounds of
alternated runs is what compares two builds. Keep a copy of the old binary before rebuilding:

  cp build/stepq_kernels_bench /tmp/kb_old && ninja -C build stepq_kernels_bench
  python3 bench/kernels_ab.py old=/tmp/kb_old new=build/stepq_kernels_bench \\
      --filter 'matmul/(HQ3_32|HQ4_64)/(1536x8960|896x4864|8960x1536)/tokens:1/' --rounds 3
"""
import argparse
import collections
import json
import subprocess


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a stepq_kernels_bench binary; the first is the baseline")
    ap.add_argument("--filter", default=r"matmul/(HQ3_32|HQ4_64)/1536x8960/tokens:1/", help="--benchmark_filter")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of all builds in turn")
    ap.add_argument("--repetitions", type=int, default=2, help="repetitions per benchmark per round")
    ap.add_argument("--min-time", type=float, default=0.2, help="--benchmark_min_time (seconds)")
    args = ap.parse_args()
    builds = dict(b.split("=", 1) for b in args.builds)
    best = collections.defaultdict(dict)
    for rnd in range(args.rounds):
        for name, exe in builds.items():
            out = subprocess.run([exe, f"--benchmark_filter={args.filter}", f"--benchmark_min_time={args.min_time}",
                                  f"--benchmark_repetitions={args.repetitions}", "--benchmark_format=json"],
                                 capture_output=True, text=True, check=True).stdout
            for b in json.loads(out)["benchmarks"]:
                if b.get("run_type") == "iteration":
                    best[b["run_name"]][name] = min(best[b["run_name"]].get(name, float("inf")), b["real_time"])
    names = list(builds)
    print("| benchmark | " + " | ".join(f"{n} (µs)" for n in names) + " | " +
          " | ".join(f"{names[0]}/{n}" for n in names[1:]) + " |")
    print("|---" * (2 * len(names)) + "|")
    for bench, d in best.items():
        print(f"| {bench} | " + " | ".join(f"{d[n]:.1f}" for n in names) + " | " +
              " | ".join(f"{d[names[0]] / d[n]:.2f}x" for n in names[1:]) + " |")


if __name__ == "__main__":
    main()
