#!/usr/bin/env python3
"""Reference activation quantizations and dot products from llama.cpp's own ggml CPU backend.

Run with a Python that has llama-cpp-python built from source (its ggml libraries are loaded
with ctypes; see tools/setup_reference_venv.sh):

    ~/.cache/stepq/venv-ref/bin/python tools/make_quant_reference.py

Writes tests/data/quant/ggml_reference.bin (about 15 KB) and ggml_reference.json (provenance).
tests/unit/quant_test.cpp checks that stepq's quantize_row gives the same bytes as ggml's
`from_float` (the x86 path llama.cpp runs) and that every vec_dot kernel agrees with ggml's.

Inputs: one activation row x of N floats (random normal, plus crafted blocks: exact ties for the
Q8_0 rounding, an all-zero block, a Q8_K super-block whose largest magnitude occurs twice with
opposite signs) and, per weight type, one row quantized by ggml's own `from_float_ref`.

.bin layout (little-endian):
  char magic[8] = "STEPQQR1"; uint32 n; float32 x[n]
  uint32 n_act;    n_act    x { uint32 type; uint32 nbytes; uint8 bytes[nbytes] }   ggml from_float(x)
  uint32 n_weight; n_weight x { uint32 type; uint32 nbytes; uint8 bytes[nbytes];
                                float32 dot }   dot = ggml vec_dot(weight row, activations of
                                                its vec_dot_type)
"""
import ctypes
import json
import os
import struct
import sys

import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "data", "quant")
N = 512
SEED = 20261129

# ggml_type ids: (name, block size, bytes per block)
TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 20: ("IQ4_NL", 32, 18),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
}
ACT_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2), 8: ("Q8_0", 32, 34),
             9: ("Q8_1", 32, 36), 15: ("Q8_K", 256, 292)}


class TypeTraits(ctypes.Structure):  # struct ggml_type_traits (ggml.h)
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


class TypeTraitsCpu(ctypes.Structure):  # struct ggml_type_traits_cpu (ggml-cpu.h)
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


FromFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VecDot = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t,
                          ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def load_ggml():
    lib = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    base = ctypes.CDLL(os.path.join(lib, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(os.path.join(lib, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    base.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCpu)
    cpu.ggml_cpu_init()
    return base, cpu


def activations(rng):
    x = rng.standard_normal(N).astype(np.float32)
    # block 0: amax 127, so the x86 multiplier 127/amax is exactly 1 and these are exact ties
    x[0:32] = 0
    x[0:9] = [127.0, 0.5, 1.5, 2.5, -0.5, -2.5, -1.5, 3.5, 126.5]
    x[64:96] = 0  # an all-zero Q8_0 block
    x[300], x[400] = -9.0, 9.0  # Q8_K super-block 1: the first largest magnitude is negative
    return x


def main():
    base, cpu = load_ggml()
    for t, (name, blck, size) in {**TYPES, **ACT_TYPES}.items():
        tr = base.ggml_get_type_traits(t).contents
        if tr.type_name.decode().upper() != name:
            sys.exit(f"ggml type {t} is {tr.type_name!r}, expected {name}: struct layout changed?")
        if (tr.blck_size, tr.type_size) != (blck, size):
            sys.exit(f"{name}: ggml says block {tr.blck_size} / {tr.type_size} bytes, expected {blck} / {size}")

    rng = np.random.default_rng(SEED)
    x = activations(rng)

    def from_float(t, v):
        blck, size = ACT_TYPES.get(t, TYPES.get(t))[1:]
        out = (ctypes.c_uint8 * (N // blck * size))()
        f = cpu.ggml_get_type_traits_cpu(t).contents.from_float
        if t == 0:
            return v.tobytes()
        if not f:
            sys.exit(f"ggml has no CPU from_float for type {t}")
        FromFloat(f)(v.ctypes.data, ctypes.addressof(out), N)
        return bytes(out)

    acts = {t: from_float(t, x) for t in ACT_TYPES}
    weights = []
    for t, (name, blck, size) in TYPES.items():
        wf = (rng.standard_normal(N) * 0.02).astype(np.float32)
        if t == 0:
            wb = wf.tobytes()
        else:
            out = (ctypes.c_uint8 * (N // blck * size))()
            FromFloat(base.ggml_get_type_traits(t).contents.from_float_ref)(wf.ctypes.data, ctypes.addressof(out), N)
            wb = bytes(out)
        trc = cpu.ggml_get_type_traits_cpu(t).contents
        a = acts[trc.vec_dot_type]
        wbuf = ctypes.create_string_buffer(wb, len(wb))
        abuf = ctypes.create_string_buffer(a, len(a))
        s = ctypes.c_float(0)
        VecDot(trc.vec_dot)(N, ctypes.byref(s), 0, ctypes.addressof(wbuf), 0, ctypes.addressof(abuf), 0, 1)
        weights.append((t, name, wb, s.value, trc.vec_dot_type))

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "ggml_reference.bin"), "wb") as f:
        f.write(b"STEPQQR1" + struct.pack("<I", N) + x.astype("<f4").tobytes())
        f.write(struct.pack("<I", len(acts)))
        for t, b in acts.items():
            f.write(struct.pack("<II", t, len(b)) + b)
        f.write(struct.pack("<I", len(weights)))
        for t, _, wb, dot, _ in weights:
            f.write(struct.pack("<II", t, len(wb)) + wb + struct.pack("<f", dot))
    meta = {
        "reference": f"llama-cpp-python {llama_cpp.__version__} (its ggml CPU backend, this machine's x86 path)",
        "n": N, "seed": SEED,
        "activation_types": [ACT_TYPES[t][0] for t in acts],
        "dots": {name: {"vec_dot_type": ACT_TYPES[vdt][0], "ggml": dot} for _, name, _, dot, vdt in weights},
    }
    with open(os.path.join(OUT, "ggml_reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}/ggml_reference.bin ({os.path.getsize(os.path.join(OUT, 'ggml_reference.bin'))} bytes)")


if __name__ == "__main__":
    main()
