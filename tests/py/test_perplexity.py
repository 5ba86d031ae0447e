#!/usr/bin/env python3
"""`stepq perplexity` agrees with llama.cpp's perplexity (llama-cpp-python on the same windows,
tests/data/perplexity/reference.json from tools/make_perplexity_reference.py) within 0.5%, on
16 windows of 512 tokens of wikitext2, for all four real models; output has llama.cpp's format."""
import json, os, re, subprocess, sys

BIN = os.environ.get("STEPQ_BIN", "build/stepq")
ROOT = os.environ.get("STEPQ_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.environ.get("STEPQ_MODELS", os.path.expanduser("~/.cache/stepq/models"))
ref = json.load(open(os.path.join(ROOT, "tests", "data", "perplexity", "reference.json")))
text = os.path.join(ROOT, "..", "shared", "data", "wikitext2", "wiki.test.raw")
failures = []
for name, r in ref["models"].items():
    out = subprocess.run([BIN, "perplexity", "-m", os.path.join(MODELS, r["model_file"]), "-f", text,
                          "--ctx", str(ref["n_ctx"]), "--chunks", str(ref["n_chunks"]), "-t", "2"],
                         capture_output=True, text=True, timeout=1200)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    m = re.fullmatch(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", last)
    if out.returncode != 0 or not m:
        print(f"FAIL {name}: rc={out.returncode} last line {last!r}\n{out.stderr[-500:]}")
        failures.append(name)
        continue
    ppl = float(m.group(1))
    rel = ppl / r["ppl"] - 1
    ok = abs(rel) <= 0.005 and out.stdout.startswith("[1]")
    print(f"{'ok  ' if ok else 'FAIL'} {name}: stepq PPL {ppl:.4f}, llama.cpp {r['ppl']:.4f} ({100 * rel:+.3f}%)")
    if not ok:
        failures.append(name)
print(f"{len(failures)} model(s) failed" if failures else "perplexity agrees with llama.cpp on all models")
sys.exit(1 if failures else 0)
