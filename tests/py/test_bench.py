#!/usr/bin/env python3
"""`stepq bench`: JSON lines with the documented keys and sane values, the text table, the
bandwidth probe, and clear errors for bad flags. Tiny sizes: a few seconds in all."""
import json, os

from common import MODELS, check, finish, stepq

SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
KEYS = {"model", "threads", "test", "tokens_per_s", "tokens_per_s_sd", "gb_per_s"}


def json_lines(r):
    try:
        return [json.loads(l) for l in r.stdout.splitlines()]
    except json.JSONDecodeError:
        return None


r = stepq("bench", "--help")
check(r.returncode == 0 and "Usage" in r.stdout and "GB/s" in r.stdout and "--bandwidth" in r.stdout,
      "bench --help documents GB/s and --bandwidth", r)

# The probe alone, no model: fast with a small buffer (64 MiB is still twice the L3 cache here).
r = stepq("bench", "--bandwidth", "--bw-mib", "64", "--bw-passes", "2", "-t", "2", "--json", timeout=20)
lines = json_lines(r) if r.returncode == 0 else None
check(lines is not None and len(lines) == 1 and KEYS <= lines[0].keys() and lines[0]["test"] == "membw"
      and lines[0]["gb_per_s"] > 0 and lines[0]["threads"] == 2, "--bandwidth alone: one membw line, positive GB/s", r)

if not os.path.exists(SMOL):
    print(f"skip model tests: {SMOL} is missing (scripts/fetch-models.py downloads it)")
else:
    r = stepq("bench", "-m", SMOL, "-p", "16", "-n", "4", "-r", "2", "-b", "1,2", "-t", "2", "--json")
    lines = json_lines(r) if r.returncode == 0 else None
    check(lines is not None, "--json: every stdout line is a JSON object", r)
    if lines is not None:
        check([j.get("test") for j in lines] == ["pp16", "tg4", "batch1", "batch2"], "test names pp16 tg4 batch1 batch2", r)
        check(all(KEYS <= j.keys() for j in lines), "every line has the required keys", r)
        check(all(j["model"] == os.path.basename(SMOL) and j["threads"] == 2 for j in lines),
              "model is the file name, threads as given", r)
        check(all(j["tokens_per_s"] > 0 and j["tokens_per_s_sd"] >= 0 and j["gb_per_s"] > 0 for j in lines),
              "positive tokens/s and GB/s, non-negative sd", r)
        check(all(j["reps"] == 2 and len(j["samples_tokens_per_s"]) == 2 for j in lines), "two timed reps per test", r)
        check(all(j["weight_bytes"] > 50e6 for j in lines), "weight bytes look like the model's (~96 MB)", r)
        by = {j["test"]: j for j in lines}
        check(by["pp16"]["n_prompt"] == 16 and by["tg4"]["n_gen"] == 4 and by["batch2"]["n_batch"] == 2,
              "n_prompt / n_gen / n_batch recorded", r)
        # Decode reads all weights per step: GB/s (total bytes / total time over the repetitions,
        # so the harmonic mean of the per-repetition rates) is at least weight bytes x steps/s.
        tg = by["tg4"]
        steps_per_s = len(tg["samples_tokens_per_s"]) / sum(1 / x for x in tg["samples_tokens_per_s"])
        check(tg["gb_per_s"] * 1e9 >= tg["weight_bytes"] * steps_per_s * 0.999, "tg GB/s counts the weights", r)
    check("warm-up" in r.stderr, "progress goes to stderr", r)

    r = stepq("bench", "-m", SMOL, "-p", "8", "-n", "2", "-r", "1", "-b", "", "--bandwidth", "--bw-mib", "64")
    out = r.stdout.splitlines()
    check(r.returncode == 0 and out[0].startswith("| model") and any(" pp8 |" in l for l in out)
          and any("tg2" in l for l in out) and any("membw" in l for l in out) and not any("batch" in l for l in out)
          and "±" in r.stdout, "text table: header, pp8, tg2, membw, no batch with -b ''", r)

    # Bad flags: non-zero exit, the flag or problem named, no crash.
    bad = [
        (["-p", "-1"], "n-prompt"),
        (["-n", "-5"], "n-gen"),
        (["-r", "0"], "repetitions"),
        (["-t", "0"], "threads"),
        (["-b", "1,x"], "batch"),
        (["-b", "0"], "batch"),
        (["-p", "100000"], "context"),  # SmolLM2 was trained for 8192
        (["--no-such-flag"], "no-such-flag"),
    ]
    for extra, word in bad:
        r = stepq("bench", "-m", SMOL, "-n", "1", "-r", "1", *extra)
        check(r.returncode != 0 and word in r.stderr.lower() and "Segmentation" not in r.stderr
              and "terminate" not in r.stderr, f"bad flag {' '.join(extra)}: clear error naming '{word}'", r)
    r = stepq("bench", "-m", SMOL, "-p", "0", "-n", "0")
    check(r.returncode != 0 and "nothing to run" in r.stderr, "-p 0 -n 0: nothing to run", r)

r = stepq("bench", "-m", "/nonexistent/model.gguf")
check(r.returncode != 0 and "nonexistent" in r.stderr, "missing model file is named", r)
r = stepq("bench")
check(r.returncode != 0 and "-m" in r.stderr, "no model and no --bandwidth: asks for -m", r)

finish("stepq bench")
