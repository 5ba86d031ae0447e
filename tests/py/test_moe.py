#!/usr/bin/env python3
"""Mixture-of-experts models through the CLI: the generated files are the ones the references were
made from (sha256), every layout loads and generates, `inspect` shows the experts, `moe-stats`
counts every routed token, and broken routing metadata is refused with a clear error."""
import glob, json, os, tempfile

from common import MODELS, ROOT, SHARED_DATA, check, finish, stepq
from stepq_models import sha256_of  # noqa: E402

MOE = os.path.join(MODELS, "moe")
TEXT = os.path.join(SHARED_DATA, "wikitext2", "wiki.test.raw")


# The generated files are byte-identical to the ones llama.cpp's references were computed on.
refs = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "moe", "*.json")))
check(len(refs) == 30, f"30 MoE references in tests/data/moe (found {len(refs)})")
for ref in refs:
    meta = json.load(open(ref))
    name = os.path.basename(ref)[:-5]
    path = os.path.join(MOE, name + ".gguf")
    if not os.path.exists(path):
        check(False, f"{name}: generated file missing (run python3 scripts/make-test-models.py)")
        continue
    check(sha256_of(path) == meta["model_sha256"],
          f"{name}: sha256 matches the reference's (else tools/make_moe_model.py changed: regenerate both)")

# Every layout runs end to end.
for arch in ["mixtral", "qwen2moe", "qwen3moe", "deepseek", "olmoe"]:
    path = os.path.join(MOE, f"{arch}-s-q4_k.gguf")
    r = stepq("run", "-m", path, "-p", "The quick brown fox", "-n", "12", "--temp", "0", "-t", "2")
    check(r.returncode == 0 and len(r.stdout) > len("The quick brown fox"), f"{arch}: stepq run generates", r)

# inspect: experts per layer, active parameters and bytes per token.
r = stepq("inspect", os.path.join(MOE, "deepseek-m-q8_0.gguf"))
check(r.returncode == 0 and "experts 8 per MoE layer, 3 used per token" in r.stdout
      and "layers 1..2 (0..0 dense" in r.stdout and "active per token" in r.stdout
      and "shared expert ffn 512" in r.stdout, "inspect shows experts, dense layers and active size", r)
r = stepq("inspect", os.path.join(MOE, "qwen2moe-s-f16.gguf"))
check(r.returncode == 0 and "(sigmoid-gated)" in r.stdout and "% of the weights" in r.stdout,
      "inspect shows a gated shared expert", r)

# moe-stats: every token routed to k experts in every MoE layer, none in dense layers.
path = os.path.join(MOE, "deepseek-m-q4_k.gguf")
r = stepq("moe-stats", "-m", path, "-f", TEXT, "--max-tokens", "700", "--ctx", "256", "--json", "-t", "2")
ok = r.returncode == 0
if ok:
    j = json.loads(r.stdout.strip().splitlines()[-1])
    k, first = j["n_expert_used"], j["first_moe_layer"]
    sums = [sum(c) for c in j["counts"]]
    # 700 tokens in windows of 256 with a BOS added to each window when the model adds one
    ok = (j["n_expert"] == 8 and k == 3 and first == 1 and sums[0] == 0 and len(set(sums[1:])) == 1
          and sums[1] % k == 0 and 700 <= sums[1] // k <= 703
          and all(sum(1 for x in c if x > 0) > k for c in j["counts"][1:]))
    print(f"     counts per layer: {sums}")
check(ok, "moe-stats --json counts every routed token", r)
r = stepq("moe-stats", "-m", path, "-f", TEXT, "--max-tokens", "300", "-t", "2")
check(r.returncode == 0 and "balance" in r.stdout and "dense" in r.stdout, "moe-stats prints a table", r)
r = stepq("moe-stats", "-m", os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"), "-f", TEXT)
check(r.returncode == 1 and "dense model" in r.stderr, "moe-stats on a dense model: clear error", r)

# Broken routing metadata: expert_used_count patched to more than expert_count.
with tempfile.TemporaryDirectory() as tmp:
    data = bytearray(open(os.path.join(MOE, "mixtral-s-f16.gguf"), "rb").read())
    key = b"llama.expert_used_count"
    i = data.find(key) + len(key)
    assert int.from_bytes(data[i:i + 4], "little") == 4  # GGUF type u32
    data[i + 4:i + 8] = (99).to_bytes(4, "little")
    bad = os.path.join(tmp, "bad.gguf")
    open(bad, "wb").write(data)
    r = stepq("run", "-m", bad, "-p", "hi", "-n", "2")
    check(r.returncode == 1 and "expert" in r.stderr and "Segmentation" not in r.stderr,
          "expert_used_count > expert_count: clear error", r)
    # A truncated expert tensor: file cut inside the stacked experts.
    data = open(os.path.join(MOE, "olmoe-s-q8_0.gguf"), "rb").read()
    cut = os.path.join(tmp, "cut.gguf")
    open(cut, "wb").write(data[: len(data) * 2 // 3])
    r = stepq("run", "-m", cut, "-p", "hi", "-n", "2")
    check(r.returncode == 1 and "error:" in r.stderr, "truncated MoE file: clear error", r)

finish("MoE CLI")
