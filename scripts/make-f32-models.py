#!/usr/bin/env python3
"""Makes F32 copies of the real models: every tensor dequantized exactly (PyPI gguf 0.19.0), all
metadata kept. Mathematically the same model as the quantized file, but with no activation
quantization in llama.cpp's matmuls — so two engines can be compared at float precision.

Output: <models dir>/<name>.f32.gguf. Deterministic; the sha256 of each output is recorded below
and checked; idempotent (an existing file with the right size and checksum is kept).

usage: scripts/make-f32-models.py [--dir DIR] [MODEL ...]   (default: all four)
"""
import argparse, os, sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from stepq_models import MODEL_FILES as SOURCES, f32_file, models_dir, sha256_of  # noqa: E402

# sha256 of the outputs made with gguf==0.19.0 (update with --print-sha if the writer changes).
EXPECTED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "f32-models.sha256")


def log(msg):
    print(f"[make-f32-models] {msg}", file=sys.stderr, flush=True)




def convert(src, dst):
    import gguf
    from gguf_util import architecture, copy_metadata
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst + ".partial", architecture(r))
    copy_metadata(r, w, lambda k, v, t, et: 0 if k == "general.file_type" else v)
    for t in r.tensors:
        a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # ne order -> numpy order
        w.add_tensor(t.name, np.ascontiguousarray(a.reshape(shape)), raw_dtype=gguf.GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".partial", dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=models_dir())
    ap.add_argument("--print-sha", action="store_true", help="print the outputs' sha256 lines (to record them)")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    expected = {}
    if os.path.exists(EXPECTED_FILE):
        for line in open(EXPECTED_FILE):
            if line.strip():
                h, n = line.split()
                expected[n] = h
    for name in a.models or list(SOURCES):
        if name not in SOURCES:
            sys.exit(f"error: unknown model '{name}'; known: {', '.join(SOURCES)}")
        src = os.path.join(a.dir, SOURCES[name])
        if not os.path.exists(src):
            sys.exit(f"error: {src} is missing: run scripts/fetch-models.py first")
        dst = os.path.join(a.dir, f32_file(SOURCES[name]))
        want = expected.get(os.path.basename(dst))
        if os.path.exists(dst) and want and sha256_of(dst) == want:
            log(f"{name}: ok ({dst})")
            continue
        log(f"{name}: dequantizing {SOURCES[name]} to F32 ...")
        convert(src, dst)
        got = sha256_of(dst)
        if a.print_sha:
            print(f"{got}  {os.path.basename(dst)}")
        elif want and got != want:
            os.remove(dst)
            sys.exit(f"error: {dst}: sha256 {got} differs from the recorded {want}.\n"
                     f"  The gguf package version may differ from 0.19.0 (pip install gguf==0.19.0).")
        log(f"{name}: wrote {dst} ({os.path.getsize(dst)} bytes)")


if __name__ == "__main__":
    main()
