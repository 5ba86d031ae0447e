#!/usr/bin/env python3
"""Generates the small synthetic models the tests use into the models directory
(~/.cache/stepq/models, or $STEPQ_MODELS), next to the real ones whose tokenizer they copy:
tools/make_test_model.py's dense pair, and tools/make_moe_model.py's MoE files in moe/ (5 layouts x
2 sizes x F16/Q8_0/Q4_K, compared with llama.cpp's logits in tests/data/moe; deterministic, so the
references' sha256 match). Skips files that exist; --force remakes them; --no-moe skips the MoE
files. Takes about a minute."""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from stepq_models import models_dir  # noqa: E402
import make_moe_model  # noqa: E402

# name -> arguments of tools/make_test_model.py (the tokenizer comes from SmolLM2)
MODELS = {
    # Speculative sampling's distribution test: a target and a draft close to it (the target's
    # weights plus 30% noise), so that drafts are accepted often but not always.
    "stepq-tiny-target.gguf": ["--seed", "1"],
    "stepq-tiny-draft.gguf": ["--seed", "2", "--perturb-from-seed", "1", "--perturb", "0.3"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--no-moe", action="store_true")
    args = ap.parse_args()
    d = models_dir()
    tok = os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(tok):
        sys.exit(f"{tok} is missing: run python3 scripts/fetch-models.py first")
    for name, extra in MODELS.items():
        out = os.path.join(d, name)
        if os.path.exists(out) and not args.force:
            continue
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_test_model.py"), "--tokenizer-from", tok,
                        "-o", out] + extra, check=True)
    if args.no_moe:
        return
    os.makedirs(os.path.join(d, "moe"), exist_ok=True)
    # tools/make_moe_model.MOE_MODELS: <arch>-<size>-<type> -> arguments; made in this process
    # (the tokenizer is read once)
    for name, extra in make_moe_model.MOE_MODELS.items():
        out = os.path.join(d, "moe", name + ".gguf")
        if os.path.exists(out) and not args.force:
            continue
        make_moe_model.main(["--tokenizer-from", tok, "-o", out] + extra)


if __name__ == "__main__":
    main()
