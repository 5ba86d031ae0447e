#!/usr/bin/env python3
"""MiLo's quality table (docs/milo.md): quantizes a model every way the table compares, and
measures each result against its source in the same run.

  python3 bench/milo_quality.py --model qwen0.5b [--rows hqq3,milo3] [--chunks 16]

For each row: `stepq quantize` (or llama.cpp's quantizer, through the reference venv, for the
Q3_K_S / Q2_K rows) from the source GGUF, then `stepq perplexity --kl-reference SOURCE` on
wikitext-2 (the first --chunks windows of 512 tokens, second half scored, as llama-perplexity):
perplexity, mean KL(source || quantized) and top-1 agreement of the next-token distributions.
Bits per weight count everything the quantized linear weights cost (codes, scales, zeros,
compensators) over the weights of those linear layers (attention, FFN, experts), read from the
output file; embeddings, norms, router and output head are not counted (they stay as they were
in stepq's files, llama.cpp quantizes some of them: compare the file sizes too).

Results accumulate in bench/results/milo_quality.json (one entry per model and row; a rerun
replaces it); `--report` prints the markdown table and writes docs/milo_ppl_vs_bits.png.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from stepq_models import models_dir  # noqa: E402

MODELS = models_dir()
STEPQ = os.environ.get("STEPQ_BIN", os.path.join(ROOT, "build", "stepq"))
VENV_PY = os.path.expanduser("~/.cache/stepq/venv-ref/bin/python")
WIKI = os.path.join(ROOT, "..", "shared", "data", "wikitext2", "wiki.test.raw")
RESULTS = os.path.join(ROOT, "bench", "results", "milo_quality.json")

SOURCES = {
    "qwen0.5b": "qwen2.5-coder-0.5b-instruct.f32.gguf",
    "qwen1.5b": "qwen2.5-coder-1.5b-instruct.f32.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.f32.gguf",
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.f32.gguf",
    "qwen0.5b-moe": "moe/qwen2.5-coder-0.5b.moe-e8-k2-shauto.f16.gguf",
}
# The file perplexity and KL are measured against: the published GGUF the F32 source was made
# from (the same values, exactly: scripts/make-f32-models.py), which runs faster than its F32 copy.
REFERENCES = {
    "qwen0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
    "qwen1.5b": "qwen2.5-coder-1.5b-instruct.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen0.5b-moe": "moe/qwen2.5-coder-0.5b.moe-e8-k2-shauto.f16.gguf",
}
# row -> stepq quantize arguments (None: not a stepq row)
ROWS = {
    "source": None,
    "rtn3": ["--method", "rtn", "--group", "64"],
    "hqq3": ["--method", "hqq", "--group", "64"],  # the HQQ3: groups of 64, fp16 scale and zero
    "hqq3-g128": ["--method", "hqq", "--group", "128"],
    "hqq3-g32": ["--method", "hqq", "--group", "32"],
    "mse3-g32": ["--method", "hqq", "--fit", "mse"],  # HQ3_32 with stepq's least-squares fit instead of HQQ's
    # The defaults: HQ3_32 base, 3.75 bits/weight, the compensator budget on attention (and shared
    # experts); dense FFN layers get none (--ffn-rank 0); ranks scaled by the model's width; routed
    # experts on HQ3_128 (--expert-group 128).
    "milo3": ["--method", "milo"],
    # The defaults before --rank-width: ranks scaled by each weight's own min(rows, cols). The rows
    # below that name --rank-width tensor were measured before it existed, when that was the rule.
    "milo3-tw": ["--method", "milo", "--rank-width", "tensor", "--expert-group", "32"],
    # The defaults before --ffn-rank existed: dense FFN weights compensated as attention is.
    "milo3-all": ["--method", "milo", "--ffn-rank", "1024", "--rank-width", "tensor"],
    # milo3-all plus the token embeddings and output head as HQQ 4-bit (not counted in bits/weight)
    "milo3-e4": ["--method", "milo", "--ffn-rank", "1024", "--embeddings", "hq4_64", "--rank-width", "tensor"],
    "milo3-g64": ["--method", "milo", "--group", "64", "--ffn-rank", "1024", "--rank-width", "tensor"],
    "milo3-uniform": ["--method", "milo", "--group", "64", "--rank-policy", "uniform", "--rank-width", "tensor"],
    "milo3-attn": ["--method", "milo", "--group", "64", "--ffn-rank", "0", "--rank-width", "tensor"],
    "milo3-kurtosis": ["--method", "milo", "--group", "64", "--rank-policy", "kurtosis", "--rank-width", "tensor"],
    # part of the budget on 4-bit weights where llama.cpp's Q3_K_M spends more bits (attn_v, the
    # first and last FFN down projections), compensators on attention with the rest
    "milo3-mix": ["--method", "milo", "--rank-budget", "3.75", "--rank-width", "tensor", "--hq4",
                  r"blk\.\d+\.attn_v\.weight|blk\.([0-3]|2[5-7])\.ffn_down\.weight"],
    "milo3-frequency": ["--method", "milo", "--rank-policy", "frequency", "--rank-width", "tensor", "--expert-group", "32"],
    # routed experts' sparse rank as large as the dense one, so that the budget reaches them: equal
    # shares (dense-sparse) against shares scaled by routing counts (frequency)
    # (MoE rows measured before --expert-group existed, when the experts were on --group: 32)
    "milo3-sparse1024": ["--method", "milo", "--sparse-rank", "1024", "--rank-width", "tensor", "--expert-group", "32"],
    "milo3-frequency-1024": ["--method", "milo", "--rank-policy", "frequency", "--sparse-rank", "1024",
                             "--rank-width", "tensor", "--expert-group", "32"],
    "milo3-g128": ["--method", "milo", "--group", "128", "--rank-budget", "3.5", "--ffn-rank", "1024",
                   "--rank-width", "tensor"],
    # llama.cpp Q3_K_S's size on Qwen 0.5B
    "milo3-4.19": ["--method", "milo", "--group", "64", "--rank-budget", "4.19", "--ffn-rank", "1024",
                   "--rank-width", "tensor"],
    "hqq4": ["--method", "hqq", "--bits", "4"],
    # S3_16: symmetric 3-bit groups of 16 with 5-bit scale codes (3.375 bits/weight), scales fitted
    # as llama.cpp's Q3_K; alone, then with compensators filling Q3_K's 3.4375 bits/weight, and
    # with the default 3.75
    "s3-g16": ["--method", "hqq", "--group", "16"],
    "milo3-g16": ["--method", "milo", "--group", "16", "--rank-budget", "3.4375"],
    "milo3-g16-3.75": ["--method", "milo", "--group", "16", "--expert-group", "16"],
    # before --rank-width and the scale-code search (a build since replaced: not reproducible as is)
    "milo3-g16-tw": ["--method", "milo", "--group", "16", "--rank-budget", "3.4375", "--rank-width", "tensor"],
    "milo3-sparse1024-mw": ["--method", "milo", "--sparse-rank", "1024", "--expert-group", "32"],
    # MoE: routed experts on groups of 64 with fp16 scale and zero (the defaults put them on groups
    # of 128), the bits saved going to the attention and shared-expert compensators
    "milo3-eg64": ["--method", "milo", "--expert-group", "64"],
    "llama-q3_k_s": "Q3_K_S",
    # the same with the token embeddings and output head left F32, as stepq's rows leave them
    "llama-q3_k_s-f32head": "Q3_K_S:f32-head",
    "llama-q3_k_m": "Q3_K_M",
    "llama-q2_k": "Q2_K",
}
LINEAR = re.compile(r"blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down|ffn_gate_exps|"
                    r"ffn_up_exps|ffn_down_exps|ffn_gate_shexp|ffn_up_shexp|ffn_down_shexp)\.(weight|milo_[uv](\.\d+)?)$")


def linear_bits_per_weight(path):
    """(bits per weight of the linear layers incl. compensators, number of those weights)."""
    import gguf
    r = gguf.GGUFReader(path)
    qtypes = {}
    for f in r.fields.values():
        if f.name.startswith("stepq.qtype."):
            qtypes[f.name[len("stepq.qtype."):]] = bytes(f.parts[f.data[0]]).decode()
    bits = weights = 0
    for t in r.tensors:
        m = LINEAR.match(t.name)
        if not m:
            continue
        bits += 8 * int(t.n_bytes)
        if m.group(2) == "weight":
            n = int(t.n_elements)
            if t.name in qtypes:  # private types are I8 rows of bytes: count the real weights
                bs, ts = {"HQ2_64": (64, 20), "HQ3_64": (64, 28), "HQ3_128": (128, 52), "HQ4_64": (64, 36),
                          "S3_32": (32, 14), "HQ3_32": (128, 58), "S3_16": (256, 108)}[qtypes[t.name]]
                n = n // ts * bs
            weights += n
    return bits / weights, weights


def run(cmd, **kw):
    """(result, wall seconds, CPU seconds of the child)."""
    t0 = time.time()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, time.time() - t0, (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)


def perplexity(model, source, chunks, threads):
    r, _, _ = run([STEPQ, "perplexity", "-m", model, "-f", WIKI, "--chunks", str(chunks), "-t", str(threads),
                   "--json"] + (["--kl-reference", source] if model != source else []))
    return json.loads(r.stdout.strip().splitlines()[-1])


def load_results():
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            return json.load(f)
    return {}


def save_results(res, key):
    """Writes entry `key` of res into the results file, re-reading it first: runs of the script
    for other models or rows may have added theirs meanwhile."""
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    merged = load_results()
    merged[key] = res[key]
    with open(RESULTS + ".tmp", "w") as f:
        json.dump(merged, f, indent=1, sort_keys=True)
    os.replace(RESULTS + ".tmp", RESULTS)


def machine():
    """lscpu's model name (the quantize times depend on it)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown"


def measure(model, row, chunks, threads, work, keep):
    src = os.path.join(MODELS, SOURCES[model])
    ref = os.path.join(MODELS, REFERENCES[model])
    for f in (src, ref):
        if not os.path.exists(f):
            sys.exit(f"{f} missing: python3 scripts/make-f32-models.py (or tools/moefy.py for the MoE model)")
    spec = ROWS[row]
    out = os.path.join(work, f"{model}.{row}.gguf")
    entry = {"model": model, "row": row, "source": SOURCES[model], "reference": REFERENCES[model], "chunks": chunks,
             "threads": threads, "machine": machine()}
    if spec is None:
        out = ref
        entry["command"] = f"stepq perplexity -m {SOURCES[model]} -f wiki.test.raw --chunks {chunks}"
    elif isinstance(spec, str):
        _, secs, cpu = run([VENV_PY, os.path.join(ROOT, "tools", "make_quantized_model.py"), src, spec, out])
        entry["quantize_s"], entry["quantize_cpu_s"] = secs, cpu
        entry["command"] = f"tools/make_quantized_model.py {SOURCES[model]} {spec} OUT (llama-cpp-python)"
    else:
        args = list(spec)
        if row.startswith("milo3-frequency"):
            stats = os.path.join(work, f"{model}.moe-stats.json")
            # routing counts from C4 text (not the wikitext the table scores)
            text = os.path.join(work, "c4.txt")
            with open(os.path.join(ROOT, "..", "shared", "data", "c4-sample", "c4_sample.jsonl")) as f, \
                    open(text, "w") as g:
                for line in f:
                    g.write(json.loads(line)["text"] + "\n\n")
            r, _, _ = run([STEPQ, "moe-stats", "-m", src, "-f", text, "--max-tokens", "8192", "--json", "-t",
                        str(threads)])
            with open(stats, "w") as f:
                f.write(r.stdout.strip().splitlines()[-1])
            args += ["--moe-stats", stats]
        r, secs, cpu = run([STEPQ, "quantize", "-m", src, "-o", out, "-t", str(threads), "-q"] + args)
        entry["quantize_s"], entry["quantize_cpu_s"] = secs, cpu
        entry["command"] = "stepq quantize -m SOURCE -o OUT " + " ".join(args)
        entry["summary"] = r.stdout.strip()
    entry["bits_per_weight"], entry["linear_weights"] = linear_bits_per_weight(out)
    entry["file_mb"] = os.path.getsize(out) / 1e6
    p = perplexity(out, ref, chunks, threads)
    entry.update({k: p[k] for k in ("ppl", "ppl_error", "kl", "top1", "reference_ppl") if k in p})
    if out != ref and not keep:
        os.remove(out)
    return entry


def report(res):
    lines = []
    by_model = {}
    for e in res.values():
        by_model.setdefault(e["model"], []).append(e)
    for model, entries in by_model.items():
        src = next((e for e in entries if e["row"] == "source"), None)
        hqq = next((e for e in entries if e["row"] == "hqq3"), None)
        machines = sorted({e.get("machine", "AMD EPYC (Zen 5), before machine names were recorded") for e in entries})
        lines.append(f"\n**{model}** (source: `{entries[0]['source']}`, wikitext-2, {entries[0]['chunks']} windows "
                     f"of 512; quantize times on {' / '.join(machines)})\n")
        lines.append("| row | PPL | KL vs source | top-1 vs source | bits/weight | file MB | quantize s (CPU s) | "
                     "gap to source recovered |")
        lines.append("|---|---|---|---|---|---|---|---|")
        order = list(ROWS)
        for e in sorted(entries, key=lambda e: order.index(e["row"])):
            gap = ""
            src_ppl = src["ppl"] if src else (hqq or {}).get("reference_ppl")
            if src_ppl and hqq and e["row"].startswith("milo") and hqq["ppl"] > src_ppl:
                gap = f"{100 * (hqq['ppl'] - e['ppl']) / (hqq['ppl'] - src_ppl):.0f}%"
            kl = f"{e['kl']:.4f}" if "kl" in e else "–"
            top1 = f"{100 * e['top1']:.1f}%" if "top1" in e else "–"
            qs = f"{e['quantize_s']:.0f}" if "quantize_s" in e else "–"
            if "quantize_cpu_s" in e:
                qs += f" ({e['quantize_cpu_s']:.0f})"
            lines.append(f"| {e['row']} | {e['ppl']:.3f} | {kl} | {top1} | {e['bits_per_weight']:.3f} | "
                         f"{e['file_mb']:.0f} | {qs} | {gap} |")
    print("\n".join(lines))
    plot(by_model)


def plot(by_model):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib missing: pip install matplotlib for the plot)")
        return
    models = [m for m in by_model if any(e["row"] != "source" for e in by_model[m])]
    cols = min(3, len(models))
    rows = (len(models) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, models):
        for e in by_model[model]:
            if e["row"] == "source":
                ax.axhline(e["ppl"], color="gray", linestyle="--", label="source")
                continue
            marker = "s" if e["row"].startswith("llama") else ("o" if e["row"].startswith("milo") else "^")
            ax.scatter(e["bits_per_weight"], e["ppl"], marker=marker)
            ax.annotate(e["row"], (e["bits_per_weight"], e["ppl"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_title(model)
        ax.set_xlabel("bits per linear weight (everything counted)")
        ax.set_ylabel("wikitext-2 perplexity")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = os.path.join(ROOT, "docs", "milo_ppl_vs_bits.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=list(SOURCES))
    ap.add_argument("--rows", default="source,rtn3,hqq3,milo3,milo3-uniform,milo3-kurtosis,llama-q3_k_s,llama-q2_k")
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", action="store_true", help="keep the quantized files (in --work)")
    ap.add_argument("--work", default=None, help="folder for the quantized files (default: a temp dir)")
    ap.add_argument("--report", action="store_true", help="print the table and write the plot")
    a = ap.parse_args()
    res = load_results()
    if a.model:
        work = a.work or tempfile.mkdtemp(prefix="stepq-milo-")
        os.makedirs(work, exist_ok=True)
        for row in a.rows.split(","):
            if row not in ROWS:
                sys.exit(f"unknown row {row}; rows: {', '.join(ROWS)}")
            e = measure(a.model, row, a.chunks, a.threads, work, a.keep)
            res[f"{a.model}/{row}"] = e
            save_results(res, f"{a.model}/{row}")
            print(f"{a.model:12s} {row:16s} ppl {e['ppl']:9.3f}  kl {e.get('kl', 0):.4f}  "
                  f"top1 {100 * e.get('top1', 1):5.1f}%  {e['bits_per_weight']:.3f} b/w  "
                  f"{e.get('quantize_s', 0):6.0f} s", flush=True)
    if a.report or not a.model:
        report(res)


if __name__ == "__main__":
    main()
