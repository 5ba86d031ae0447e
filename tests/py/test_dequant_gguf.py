#!/usr/bin/env python3
"""stepq's dequantize_row is bit-identical to PyPI gguf's gguf.quants.dequantize.

(a) Random blocks of every storage type (random code bytes, finite fp16 scales of any
    magnitude, subnormals included), written raw into a temporary GGUF with gguf.GGUFWriter.
(b) Real tensors: for every tensor type in each real model file, the two smallest tensors.

stepq's values come from `$STEPQ_BIN dump-tensor FILE TENSOR OUT.f32` (raw little-endian
float32, row-major, ne[0] fastest). Values are compared as float32 bit patterns (NaN equal to
NaN). Prints one line per checked tensor group and exits 1 on any mismatch.
"""
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

STORAGE_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.IQ4_NL,
                 T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]

# Byte offsets of the fp16 fields inside one block (gguf-and-quants.md §2).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q5_0: [0], T.Q8_0: [0], T.IQ4_NL: [0],
    T.Q4_1: [0, 2], T.Q5_1: [0, 2], T.Q4_K: [0, 2], T.Q5_K: [0, 2],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q6_K: [208],
}

MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf",
          "qwen2.5-coder-0.5b-instruct.gguf", "qwen2.5-coder-1.5b-instruct.gguf"]


def stepq_bin():
    b = os.environ.get("STEPQ_BIN")
    if not b or not os.path.exists(b):
        sys.exit(f"FAIL: STEPQ_BIN is not set to the stepq binary (got {b!r}); run through ctest")
    return b


def models_dir():
    return os.environ.get("STEPQ_MODELS") or os.path.expanduser("~/.cache/stepq/models")


def finite_halves(rng, n, exp_bits, exp_shift):
    """n random 16-bit patterns whose exponent field is not all ones (no Inf/NaN)."""
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint32)
    all_ones = ((h >> exp_shift) & ((1 << exp_bits) - 1)) == (1 << exp_bits) - 1
    h[all_ones] &= ~np.uint32(1 << exp_shift)  # clear the lowest exponent bit
    return h.astype(np.uint16)


def random_tensor(qtype, rows, cols, rng):
    """(rows, row_bytes) uint8: raw data of a random tensor of the given type."""
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols
    if qtype == T.F32:
        v = (rng.standard_normal(n) * np.exp(rng.uniform(-20, 20, n))).astype(np.float32)
        return v.view(np.uint8).reshape(rows, cols * 4)
    if qtype == T.F16:
        return finite_halves(rng, n, 5, 10).view(np.uint8).reshape(rows, cols * 2)
    if qtype == T.BF16:
        return finite_halves(rng, n, 8, 7).view(np.uint8).reshape(rows, cols * 2)
    nb = n // block
    raw = rng.integers(0, 256, size=(nb, type_size), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        raw[:, off:off + 2] = finite_halves(rng, nb, 5, 10).view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, cols // block * type_size)


def dump(binary, path, name, workdir):
    out = os.path.join(workdir, "out.f32")
    r = subprocess.run([binary, "dump-tensor", path, name, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"stepq dump-tensor {path} {name} failed: {r.stderr.strip()}")
    return np.fromfile(out, dtype="<f4")


def compare(got, want):
    """Number of elements whose float32 bits differ (NaN matches NaN); -1 on a size mismatch."""
    want = np.ascontiguousarray(want, dtype=np.float32).reshape(-1)
    if got.size != want.size:
        return -1
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    return int(got.size - np.count_nonzero(same))


def report(label, bad, detail=""):
    status = "ok" if bad == 0 else ("SIZE MISMATCH" if bad < 0 else f"{bad} elements differ")
    print(f"  {label:<58} {status}{detail}")
    return bad == 0


def random_blocks(binary, workdir):
    print("(a) random blocks, temporary GGUF written with gguf.GGUFWriter")
    rng = np.random.default_rng(2024)
    path = os.path.join(workdir, "random.gguf")
    w = gguf.GGUFWriter(path, arch="stepq-test")
    expected = {}
    for qtype in STORAGE_TYPES:
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        widths = [1, 3, 7, 33, 100] if block == 1 else [block * k for k in (1, 3, 7, 9)]
        for i, cols in enumerate(widths):
            rows = 3 + 2 * i
            raw = random_tensor(qtype, rows, cols, rng)
            name = f"rand.{qtype.name}.{cols}x{rows}"
            w.add_tensor(name, raw, raw_dtype=qtype)
            expected[name] = (qtype, gguf.quants.dequantize(raw, qtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ok = True
    by_type = defaultdict(list)
    for name, (qtype, want) in expected.items():
        by_type[qtype].append(compare(dump(binary, path, name, workdir), want))
    for qtype, bads in by_type.items():
        bad = -1 if -1 in bads else sum(bads)
        ok &= report(f"{qtype.name}: {len(bads)} tensors", bad)
    return ok


def tensor_infos(path):
    """[(name, qtype, ne, raw uint8 data)] of a GGUF file (§1 of gguf-and-quants.md).

    A minimal reader: gguf.GGUFReader builds numpy views for every vocabulary string and
    takes seconds per model; this skips the metadata values instead.
    """
    import struct
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(data)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def skip_value(vtype):
        nonlocal pos
        if vtype == 8:
            n = take("Q")
            pos += n
        elif vtype == 9:
            etype, count = take("I"), take("Q")
            if etype in scalar:
                pos += struct.calcsize("<" + scalar[etype]) * count
            else:
                for _ in range(count):
                    skip_value(etype)
        else:
            pos += struct.calcsize("<" + scalar[vtype])

    magic, version, n_tensors, n_kv = take("4sIQQ")
    assert magic == b"GGUF" and version in (2, 3), path
    alignment = 32
    for _ in range(n_kv):
        n = take("Q")
        key = bytes(buf[pos:pos + n]).decode()
        pos += n
        vtype = take("I")
        if key == "general.alignment":
            alignment = take("I")
        else:
            skip_value(vtype)
    infos = []
    for _ in range(n_tensors):
        n = take("Q")
        name = bytes(buf[pos:pos + n]).decode()
        pos += n
        n_dims = take("I")
        ne = [take("Q") for _ in range(n_dims)]
        qtype, offset = T(take("I")), take("Q")
        infos.append((name, qtype, ne, offset))
    data_start = (pos + alignment - 1) // alignment * alignment
    out = []
    for name, qtype, ne, offset in infos:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        row_bytes = ne[0] // block * type_size
        rows = int(np.prod(ne[1:], dtype=np.int64)) if len(ne) > 1 else 1
        start = data_start + offset
        out.append((name, qtype, ne, data[start:start + rows * row_bytes].reshape(rows, row_bytes)))
    return out


def real_tensors(binary, workdir):
    print(f"(b) real tensors, two smallest per type per model ({models_dir()})")
    ok = True
    for file in MODELS:
        path = os.path.join(models_dir(), file)
        if not os.path.exists(path):
            print(f"  FAIL: model file missing: {path} (run: python3 scripts/fetch-models.py)")
            ok = False
            continue
        by_type = defaultdict(list)
        for info in tensor_infos(path):
            by_type[info[1]].append(info)
        for qtype, tensors in sorted(by_type.items()):
            if qtype not in STORAGE_TYPES:
                ok &= report(f"{file}: {qtype.name}", -1, " (type not supported by stepq)")
                continue
            picked = sorted(tensors, key=lambda t: (t[3].size, t[0]))[:2]
            bad = 0
            for name, _, _, raw in picked:
                b = compare(dump(binary, path, name, workdir), gguf.quants.dequantize(np.asarray(raw), qtype))
                bad = -1 if b < 0 or bad < 0 else bad + b
            names = ", ".join(t[0] for t in picked)
            ok &= report(f"{file[:24]}: {qtype.name}", bad, f"  ({names})")
    return ok


def main():
    binary = stepq_bin()
    start = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        ok = random_blocks(binary, workdir)
        ok &= real_tensors(binary, workdir)
    print(f"{'PASS' if ok else 'FAIL'} ({time.time() - start:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
