#!/usr/bin/env python3
"""`stepq quantize` (RTN and HQQ to stepq's HQ{bits}_{group} types) against the numpy port of the
published algorithm, tools/hqq_reference.py.

  stepq quantize -m IN.gguf -o OUT.gguf --method rtn|hqq|milo --bits 2|3|4 --group 64|128
                 [--tensors REGEX]

(a) A GGUF of random matrices (gaussian, student-t(3), a constant group, an all-zero row, exact
    rounding ties; awkward shapes, a 3-D expert tensor, F16 and Q8_0 sources) quantized with
    rtn 3/64 and hqq 3/64, 3/128, 4/64, 2/64: the output read with PyPI gguf (tensor names, I8
    storage, stepq.qtype.* and stepq.quantize.* KVs), decoded, and compared with the numpy port on
    the source tensors; every other tensor (other names, rows not a multiple of the group) and
    every KV byte- / value-identical; --tensors is a full match.
(b) Real weights (SmolLM2-135M F32, layers 0 and 7): the same comparison, and HQQ's mean |error|
    below RTN's on every quantized tensor (relative Frobenius errors reported).
(c) Bad input: missing input file, unsupported bits/group, output in a missing directory: exit
    status 1 and a message on stderr.

The comparisons with the port run stepq with STEPQ_ISA=scalar: its HQQ step calls libm's powf as
the port (numpy's float32 power) does, and the two agree exactly in practice. The AVX-512 step
computes |x|^(p-1) in double rounded to float, which differs from glibc's powf (up to 0.82 ulp) in
rare lanes; HQQ's loop turns that into other end points for about one group in 10^4. (d) checks the
default (SIMD) path against the scalar one: the same groups but for a few, and the same error.

Agreement with the port: codes equal on >= 99.99% of the elements, the stored fp16 d and z within
1e-4 relative (|a-b| <= 1e-4|b| + 1e-7) of the port's float32 values once the fp16 rounding of
storage is allowed for (a value near an fp16 rounding midpoint may round either way: the port and
stepq sum in different orders), ||deq - deq_ref||_F / ||deq_ref||_F <= 1e-4. The lines also say
how many groups differ from the port's fp16 values at all.
"""
import os
import re
import tempfile
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

from common import MODELS, check, finish, stepq
import hqq_reference as hq  # noqa: E402  (tools/ is on sys.path through common)
from gguf_util import field_value  # noqa: E402

QUANTIZABLE = re.compile(r"blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down"
                         r"|ffn_gate_exps|ffn_up_exps|ffn_down_exps|ffn_gate_shexp|ffn_up_shexp"
                         r"|ffn_down_shexp)\.weight")
CODE_MATCH = 0.9999
REL_TOL, ABS_TOL = 1e-4, 1e-7
FROB_TOL = 1e-4
t_start = time.time()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def tensors_of(reader):
    return {t.name: t for t in reader.tensors}


def source_f32(t):
    """A source tensor dequantized to float32, numpy shape (..., cols)."""
    a = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
    return a.reshape([int(n) for n in reversed(t.shape)])


def raw_bytes(t):
    return np.asarray(t.data).view(np.uint8).ravel()


def kv(reader, key):
    """(value, GGUF value type) of a KV, (None, None) when absent."""
    f = reader.fields.get(key)
    if f is None:
        return None, None
    return field_value(f)[0], f.types[0]


def fp16_half_ulp(b):
    """Half the fp16 spacing at |b| (float64), subnormals included."""
    e = np.floor(np.log2(np.maximum(np.abs(b), 2.0 ** -24)))
    return 2.0 ** (np.maximum(e, -14) - 10) / 2


def stored_ok(a16, b32):
    """stepq's stored fp16 values vs the port's float32 ones before storage rounding."""
    a, b = a16.astype(np.float64), b32.astype(np.float64)
    return np.abs(a - b) <= fp16_half_ulp(b) + REL_TOL * np.abs(b) + ABS_TOL


def diff16(a16, b16):
    """(groups whose fp16 differs, max |a-b| / max(|b|, 1e-7)) against the port's fp16 values."""
    a, b = a16.astype(np.float64), b16.astype(np.float64)
    n = int(np.sum(a16.view(np.uint16) != b16.view(np.uint16)))
    rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-7))) if a.size else 0.0
    return n, rel


def compare(tag, name, W, method, bits, group, got):
    """Compares one decoded stepq tensor with the numpy port on its float32 source W. Returns the
    (mean |error|, rel. Frobenius error) of stepq's result against W."""
    qtype, codes, d, z, deq = got
    cols = W.shape[-1]
    ref = hq.quantize(W, bits, group, method)
    nb = cols // group
    rc, rdeq = ref.codes.reshape(-1, cols), hq.dequantized(ref).reshape(-1, cols)
    rd, rz = ref.d.reshape(-1, nb), ref.z.reshape(-1, nb)
    rs, rzero = ref.scale.reshape(-1, nb), ref.zero.reshape(-1, nb)
    shapes = (codes.shape == rc.shape and d.shape == rd.shape and z is not None and z.shape == rz.shape)
    if not shapes:
        check(False, f"{tag} {name}: decoded shapes codes {codes.shape} d {d.shape} "
                     f"(expected {rc.shape}, {rd.shape})")
        return None
    eq = float(np.mean(codes == rc))
    d_ok = stored_ok(d, (np.float32(1) / rs))
    z_ok = stored_ok(z, rzero)
    nd, d_rel = diff16(d, rd)
    nz, z_rel = diff16(z, rz)
    den = np.linalg.norm(rdeq.astype(np.float64))
    frob = float(np.linalg.norm(deq.astype(np.float64) - rdeq) / den) if den else float(np.abs(deq).max())
    W2 = W.reshape(-1, cols)
    mae, relf = hq.mean_abs_error(W2, deq), hq.rel_frobenius(W2, deq)
    ok = qtype == hq.HQ_TYPES[(bits, group)] and eq >= CODE_MATCH and d_ok.all() and z_ok.all() and frob <= FROB_TOL
    check(ok, f"{tag} {name} {tuple(W.shape)}: {qtype} vs port ({ref.iters} it): codes {eq:.4%} equal, "
              f"d {nd}/{d.size} groups differ (max rel {d_rel:.1e}), z {nz}/{z.size} differ "
              f"(max rel {z_rel:.1e}, {int((~z_ok).sum())} beyond fp16 rounding + 1e-4), "
              f"deq rel-F diff {frob:.1e}; vs source rel-F {relf:.4f}")
    if not ok and eq < 1:
        # where the codes differ: how far the port's w * scale + zero was from a rounding tie
        # (near 0: float-ordering differences such as an FMA or another summation order)
        v = (W2.reshape(-1, group) * rs.reshape(-1, 1) + rzero.reshape(-1, 1)).reshape(W2.shape)
        diff = codes != rc
        dist = np.abs(v[diff] - np.floor(v[diff]) - 0.5)
        print(f"     {int(diff.sum())} codes differ, in {int(np.any(diff.reshape(-1, group), 1).sum())} "
              f"groups; |w*scale+zero - tie| there: max {dist.max():.1e}, median {np.median(dist):.1e}; "
              f"|code difference| max {int(np.abs(codes.astype(int) - rc)[diff].max())}")
    if not ok and W.ndim == 3 and method == "hqq":
        # the spec takes HQQ's stopping error over the whole (stacked) tensor; say if a per-expert
        # stopping rule would have matched
        pe = np.concatenate([hq.quantize(W[e], bits, group, method).codes.reshape(-1, cols)
                             for e in range(W.shape[0])])
        print(f"     (with HQQ's stopping error per expert instead: codes {np.mean(codes == pe):.4%} equal)")
    return mae, relf


def check_output(tag, rin, out, method, bits, group, tensors_re=None):
    """Structure, metadata and content of one `stepq quantize` output (rin: the source's
    GGUFReader); every quantized tensor is compared with the numpy port. Returns {name: (mae, relF)}
    of stepq's quantized tensors against their sources."""
    rout = gguf.GGUFReader(out)
    tin, tout = tensors_of(rin), tensors_of(rout)
    qt = hq.HQ_TYPES[(bits, group)]
    check(list(tin) == list(tout), f"{tag}: the same tensors in the same order ({len(tin)})")

    # metadata: every source KV unchanged, the stepq.quantize.* ones added, nothing else new
    changed = []
    for k, f in rin.fields.items():
        if k.startswith("GGUF."):
            continue
        v, t = kv(rout, k)
        if t != f.types[0] or v != field_value(f)[0] or list(rout.fields[k].types) != list(f.types):
            changed.append(k)
    extra = [k for k in rout.fields
             if k not in rin.fields and not k.startswith(("GGUF.", "stepq.quantize.", hq.QTYPE_KEY))]
    check(not changed and not extra, f"{tag}: source metadata copied unchanged (changed {changed[:5]}, "
                                     f"unexpected new keys {extra[:5]})")
    m, mt = kv(rout, "stepq.quantize.method")
    b, bt = kv(rout, "stepq.quantize.bits")
    g, gt = kv(rout, "stepq.quantize.group")
    U32, STR = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.STRING
    check(m == method and mt == STR and b == bits and bt == U32 and g == group and gt == U32,
          f"{tag}: stepq.quantize.method/bits/group = {m!r} ({mt and mt.name}), {b} ({bt and bt.name}), "
          f"{g} ({gt and gt.name})")

    # Groups of 128 fall back to 64 on rows that are not whole blocks of 128 (and are of 64).
    def group_of(cols):
        return 64 if qt == "HQ3_128" and cols % 128 and cols % 64 == 0 else group

    expected = [n for n, t in tin.items() if QUANTIZABLE.fullmatch(n) and len(t.shape) >= 2
                and int(t.shape[0]) % group_of(int(t.shape[0])) == 0
                and (tensors_re is None or re.fullmatch(tensors_re, n))]
    qkeys = sorted(k[len(hq.QTYPE_KEY):] for k in rout.fields if k.startswith(hq.QTYPE_KEY))
    check(qkeys == sorted(expected), f"{tag}: stepq.qtype.* KVs exactly for the {len(expected)} quantizable "
                                     f"tensors (extra {sorted(set(qkeys) - set(expected))[:4]}, "
                                     f"missing {sorted(set(expected) - set(qkeys))[:4]})")
    bad_layout, not_identical = [], []
    for n, t in tin.items():
        o = tout.get(n)
        if o is None:
            continue
        if n in expected:
            ft = hq.HQ_TYPES[(bits, group_of(int(t.shape[0])))]
            want = [hq.row_bytes(ft, int(t.shape[0]))] + [int(x) for x in t.shape[1:]]
            if (o.tensor_type != T.I8 or [int(x) for x in o.shape] != want
                    or hq.stepq_qtype(rout, n) != ft):
                bad_layout.append(f"{n}: {o.tensor_type.name} {list(o.shape)} {hq.stepq_qtype(rout, n)}")
        elif (o.tensor_type != t.tensor_type or list(o.shape) != list(t.shape)
              or not np.array_equal(raw_bytes(o), raw_bytes(t))):
            not_identical.append(n)
    check(not bad_layout, f"{tag}: quantized tensors stored as I8 of {qt} rows, ne[0] = row bytes "
                          f"{bad_layout[:3]}")
    check(not not_identical, f"{tag}: the {len(tin) - len(expected)} other tensors byte-identical "
                             f"{not_identical[:5]}")

    res = {}
    for n in expected:
        if n not in tout:
            continue
        try:
            got = hq.read_stepq_tensor(rout, n)
        except (ValueError, KeyError) as e:
            check(False, f"{tag} {n}: decodes ({e})")
            continue
        r = compare(tag, n, source_f32(tin[n]), method, bits, group_of(int(tin[n].shape[0])), got)
        if r:
            res[n] = r
    return res


def quantize(tag, src, out, method, bits, group, *extra, isa="scalar"):
    t0 = time.time()
    r = stepq("quantize", "-m", src, "-o", out, "--method", method, "--bits", str(bits),
              "--group", str(group), *extra, timeout=300, env={"STEPQ_ISA": isa} if isa else None)
    ok = r.returncode == 0 and os.path.exists(out)
    check(ok, f"{tag}: stepq quantize --method {method} --bits {bits} --group {group} {' '.join(extra)} "
              f"({time.time() - t0:.1f} s)", r)
    return ok


# ---------------------------------------------------------------------------------------------
# random matrices
# ---------------------------------------------------------------------------------------------

def build_random(path, rng):
    def gauss(shape, s=0.02):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    def heavy(shape, s=0.02):
        return (rng.standard_t(3, shape) * s).astype(np.float32)

    v = gauss((17, 640))
    v[5, 128:256] = 0.37            # constant group (at 64 and at 128)
    v[9, 0:64] = -0.0123            # another constant group, not exactly representable
    v[11] = 0.0                     # all-zero row
    e = heavy((4, 24, 128))
    e[1] *= 10                      # experts of different magnitudes in one tensor
    e[2, 3] = 0.0
    q8 = heavy((16, 256))
    # rounding ties: multiples of 1/4 in [0, 7] with 0 and 7 in every group, so that RTN 3-bit has
    # scale 1, zero 0 and a quarter of the values fall exactly on x.5 (round half to even)
    ties = rng.integers(0, 29, (6, 128)).astype(np.float32) / 4
    ties[:, [0, 64]], ties[:, [1, 65]] = 0.0, 7.0
    ties[0, 2:9] = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5]
    ties[5] -= 7                    # the same below zero: zero = 7
    w = gguf.GGUFWriter(path, "llama")
    w.add_string("general.name", "quantize-test")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_array("general.tags", ["random", "test"])
    tensors = [
        ("token_embd.weight", gauss((10, 64)), None),
        ("blk.0.attn_norm.weight", 1 + gauss((64,)), None),
        ("blk.0.attn_q.weight", gauss((1, 64)), None),
        ("blk.0.attn_k.weight", heavy((3, 128)), None),
        ("blk.0.attn_v.weight", v, None),
        ("blk.0.attn_output.weight", heavy((64, 896)), None),
        ("blk.0.attn_qkv.weight", gauss((8, 128)), None),      # not a name quantize takes
        ("blk.0.ffn_gate.weight", gauss((100, 192)), None),    # 192: not a multiple of 128
        ("blk.0.ffn_down.weight", gauss((5, 96)), None),       # 96: never a multiple of the group
        ("blk.0.ffn_up_exps.weight", e, None),
        ("blk.0.ffn_down_shexp.weight", gauss((32, 128)), None),
        ("blk.0.ffn_up_shexp.weight", ties, None),
        ("blk.1.attn_q.weight", gauss((8, 128)).astype(np.float16), None),   # F16 source
        ("blk.1.ffn_up.weight", gguf.quants.quantize(q8, T.Q8_0), T.Q8_0),  # Q8_0 source
        ("output_norm.weight", 1 + gauss((64,)), None),
    ]
    for name, a, raw in tensors:
        w.add_tensor(name, a, raw_dtype=raw)  # Q8_0: (rows, row bytes) uint8
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---------------------------------------------------------------------------------------------

fails = hq.self_check(verbose=False)
check(not fails, f"numpy port self-check (tools/hqq_reference.py) {fails[:3]}")

r = stepq("quantize", "--help")
if r.returncode != 0 or "--method" not in r.stdout + r.stderr:
    check(False, "`stepq quantize` exists (`stepq quantize --help` should exit 0 and list --method): "
                 "every other check is pending", r)
    finish("quantize")

with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "random.gguf")
    build_random(src, np.random.default_rng(1234))
    rsrc = gguf.GGUFReader(src)
    for method, bits, group in [("rtn", 3, 64), ("hqq", 3, 64), ("hqq", 3, 128), ("hqq", 4, 64), ("hqq", 2, 64)]:
        tag = f"random {method} {bits}/{group}"
        out = os.path.join(tmp, f"random-{method}-{bits}-{group}.gguf")
        if quantize(tag, src, out, method, bits, group):
            check_output(tag, rsrc, out, method, bits, group)

    # --tensors is a full match: 'ffn_up' alone matches no whole name
    sel = r"blk\.0\.attn_(q|v)\.weight|ffn_up"
    out = os.path.join(tmp, "random-sel.gguf")
    if quantize("random --tensors", src, out, "hqq", 3, 64, "--tensors", sel):
        check_output("random --tensors", rsrc, out, "hqq", 3, 64, tensors_re=sel)

    # (e) --embeddings: token_embd stored as asked (by llama.cpp's Q8_0 rules, or HQQ as the port
    # does it), whatever --tensors selects; widths a type cannot hold and unknown types refused
    emb = source_f32(tensors_of(rsrc)["token_embd.weight"])
    out = os.path.join(tmp, "random-emb-q8.gguf")
    if quantize("random --embeddings q8_0", src, out, "hqq", 3, 64, "--embeddings", "q8_0",
                "--tensors", r"blk\.0\.attn_k\.weight"):
        ro = gguf.GGUFReader(out)
        t = tensors_of(ro)["token_embd.weight"]
        want = np.asarray(gguf.quants.quantize(emb, T.Q8_0)).view(np.uint8).ravel()
        check(t.tensor_type == T.Q8_0 and np.array_equal(raw_bytes(t), want),
              f"--embeddings q8_0: token_embd is Q8_0 ({t.tensor_type.name}), bytes equal gguf's quantizer")
        check(kv(ro, "stepq.quantize.embeddings")[0] == "Q8_0", "--embeddings q8_0: stepq.quantize.embeddings = Q8_0")
    out = os.path.join(tmp, "random-emb-hq4.gguf")
    if quantize("random --embeddings hq4_64", src, out, "hqq", 3, 64, "--embeddings", "hq4_64",
                "--tensors", r"blk\.0\.attn_k\.weight"):
        got = hq.read_stepq_tensor(gguf.GGUFReader(out), "token_embd.weight")
        compare("random --embeddings hq4_64", "token_embd.weight", emb, "hqq", 4, 64, got)
    for typ, why in [("hq3_32", "64"), ("q5_k", "must be")]:
        o = os.path.join(tmp, f"bad-emb-{typ}.gguf")
        r = stepq("quantize", "-m", src, "-o", o, "--method", "hqq", "--embeddings", typ)
        check(r.returncode == 1 and "--embeddings" in r.stderr and why in r.stderr and not os.path.exists(o),
              f"--embeddings {typ} on 64-wide embeddings: refused with a message naming the flag", r)

    # (f) --fit mse: stepq's least-squares fit (not the port's algorithm): the file says so, and
    # its weight error is below HQQ's on every tensor (the unit tests check the fit itself)
    out_m, out_h = os.path.join(tmp, "random-mse.gguf"), os.path.join(tmp, "random-hqq.gguf")
    sel = r"blk\.0\.(attn_q|attn_k)\.weight"
    if quantize("random --fit mse", src, out_m, "hqq", 3, 64, "--fit", "mse", "--tensors", sel) and \
            quantize("random --fit hqq", src, out_h, "hqq", 3, 64, "--tensors", sel):
        rm, rh = gguf.GGUFReader(out_m), gguf.GGUFReader(out_h)
        check(kv(rm, "stepq.quantize.fit")[0] == "mse" and kv(rh, "stepq.quantize.fit")[0] == "hqq",
              "--fit: stepq.quantize.fit records mse / hqq")
        for name in ["blk.0.attn_q.weight", "blk.0.attn_k.weight"]:
            W = source_f32(tensors_of(rsrc)[name])
            errs = []
            for rd in (rm, rh):
                errs.append(hq.rel_frobenius(W, hq.read_stepq_tensor(rd, name)[4].reshape(W.shape)))
            check(errs[0] < errs[1], f"--fit mse {name}: relative error {errs[0]:.4f} below HQQ's {errs[1]:.4f}")
    # --hq4: the matching tensors stored as HQ4_64, equal to the port's 4-bit HQQ; the others keep the base type
    out = os.path.join(tmp, "random-hq4.gguf")
    if quantize("random --hq4", src, out, "hqq", 3, 64, "--hq4", r"blk\.0\.attn_k\.weight", "--tensors", sel):
        ro = gguf.GGUFReader(out)
        check(hq.stepq_qtype(ro, "blk.0.attn_k.weight") == "HQ4_64" and hq.stepq_qtype(ro, "blk.0.attn_q.weight") == "HQ3_64",
              "--hq4: attn_k is HQ4_64, attn_q keeps HQ3_64")
        compare("random --hq4", "blk.0.attn_k.weight", source_f32(tensors_of(rsrc)["blk.0.attn_k.weight"]), "hqq", 4, 64,
                hq.read_stepq_tensor(ro, "blk.0.attn_k.weight"))
    for bad, why in [(["--fit", "lsq"], "--fit must be"), (["--method", "rtn", "--fit", "mse"], "rtn has no fit"),
                     (["--hq4", "("], "--hq4"), (["--rank-width", "hidden"], "--rank-width must be")]:
        o = os.path.join(tmp, "bad-fit.gguf")
        r = stepq("quantize", "-m", src, "-o", o, *bad)
        check(r.returncode == 1 and why in r.stderr and not os.path.exists(o), f"{' '.join(bad)}: refused ({why})", r)

    # (g) --group 16: S3_16 (symmetric, 5-bit scale codes) for rows of whole 256-blocks, equal to the
    # port's quantize_sym16 (codes, scale codes, D); rows of 896 fall back to HQ3_32
    out = os.path.join(tmp, "random-s3_16.gguf")
    sel16 = r"blk\.1\.ffn_up\.weight|blk\.0\.attn_output\.weight"
    if quantize("random --group 16", src, out, "hqq", 3, 16, "--tensors", sel16, isa=None):
        ro = gguf.GGUFReader(out)
        check(hq.stepq_qtype(ro, "blk.1.ffn_up.weight") == "S3_16" and
              hq.stepq_qtype(ro, "blk.0.attn_output.weight") == "HQ3_32",
              "--group 16: 256-multiple rows are S3_16, rows of 896 fall back to HQ3_32")
        W = source_f32(tensors_of(rsrc)["blk.1.ffn_up.weight"])
        _, codes, sc, D, deq = hq.read_stepq_tensor(ro, "blk.1.ffn_up.weight")
        rc, rsc, rD, rdeq = hq.quantize_sym16(W)
        same = np.mean(codes.reshape(rc.shape) == rc)
        check(same >= CODE_MATCH and np.array_equal(sc.reshape(rsc.shape), rsc) and
              np.array_equal(D.reshape(rD.shape).view(np.uint16), rD.view(np.uint16)),
              f"--group 16 blk.1.ffn_up: codes {100 * same:.3f}% equal to the port, scale codes and D identical")
        check(hq.rel_frobenius(rdeq, deq.reshape(rdeq.shape)) <= FROB_TOL,
              "--group 16: dequantized equal to the port's")
    r = stepq("quantize", "-m", src, "-o", os.path.join(tmp, "bad16.gguf"), "--group", "16", "--fit", "mse")
    check(r.returncode == 1 and "symmetric" in r.stderr, "--group 16 --fit mse: refused (no zero to fit)", r)

    # (c) bad input
    r = stepq("quantize", "-m", os.path.join(tmp, "nonexistent.gguf"), "-o", os.path.join(tmp, "x.gguf"),
              "--method", "hqq", "--bits", "3", "--group", "64")
    check(r.returncode > 0 and "nonexistent" in r.stderr, "missing input file: an error exit, named on stderr", r)
    for bits, group in [(2, 128), (4, 128), (5, 64), (4, 16), (2, 32)]:
        o = os.path.join(tmp, f"bad-{bits}-{group}.gguf")
        r = stepq("quantize", "-m", src, "-o", o, "--method", "hqq", "--bits", str(bits), "--group", str(group))
        # (2,128), (4,128) are valid values of each option: only quantize itself can refuse them
        strict = (bits, group) in [(2, 128), (4, 128)]
        ok = (r.returncode == 1 if strict else r.returncode > 0) and r.stderr.strip() != "" \
            and "Segmentation" not in r.stderr and not os.path.exists(o)
        check(ok, f"--bits {bits} --group {group}: refused (exit {r.returncode}), message on stderr, no output", r)
    r = stepq("quantize", "-m", src, "-o", os.path.join(tmp, "no", "such", "dir", "out.gguf"),
              "--method", "rtn", "--bits", "3", "--group", "64")
    check(r.returncode == 1 and r.stderr.strip() != "", "output in a missing directory: exit 1, message on stderr", r)

# (b) real weights
real = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.f32.gguf")
if not os.path.exists(real):
    check(False, f"{real} missing (scripts/make-f32-models.py)")
else:
    sel = r"blk\.(0|7)\..*"
    rreal = gguf.GGUFReader(real)  # parsing its 49k-token vocabulary takes a second: once
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method, bits, group in [("rtn", 3, 64), ("hqq", 3, 64), ("hqq", 3, 128)]:
            tag = f"SmolLM2 {method} {bits}/{group}"
            out = os.path.join(tmp, f"smol-{method}-{bits}-{group}.gguf")
            if quantize(tag, real, out, method, bits, group, "--tensors", sel):
                results[(method, bits, group)] = check_output(tag, rreal, out, method, bits, group, tensors_re=sel)
        # (d) the default SIMD path against the scalar one (the port's), on the same tensors
        scal = os.path.join(tmp, "smol-hqq-3-64.gguf")
        simd = os.path.join(tmp, "smol-hqq-3-64-simd.gguf")
        if os.path.exists(scal) and quantize("SmolLM2 hqq 3/64 (default ISA)", real, simd, "hqq", 3, 64,
                                             "--tensors", sel, isa=None):
            ra, rb = gguf.GGUFReader(scal), gguf.GGUFReader(simd)
            src_t = tensors_of(rreal)
            groups = differ = 0
            worst = 0.0
            for t in ra.tensors:
                if not re.fullmatch(sel, t.name) or not QUANTIZABLE.fullmatch(t.name):
                    continue
                _, ca, da, za, qa = hq.read_stepq_tensor(ra, t.name)
                _, cb, db, zb, qb = hq.read_stepq_tensor(rb, t.name)
                W = source_f32(src_t[t.name]).reshape(qa.shape)
                g = ca.reshape(-1, 64)
                groups += g.shape[0]
                differ += int((g != cb.reshape(-1, 64)).any(axis=1).sum() + 0)
                ea, eb = hq.rel_frobenius(W, qa), hq.rel_frobenius(W, qb)
                worst = max(worst, abs(ea - eb) / ea)
            print(f"     SIMD vs scalar HQQ: {differ} of {groups} groups differ; quantization error differs by "
                  f"at most {worst:.1e} relative")
            check(groups > 0 and differ <= max(2, groups // 2000) and worst <= 1e-4,
                  f"SmolLM2 hqq 3/64: the AVX-512 path gives the scalar path's groups but for <= 0.05% "
                  f"({differ}/{groups}) and its error within 1e-4 relative ({worst:.1e})")
        for f in os.listdir(tmp):
            os.remove(os.path.join(tmp, f))
        rtn, hqq = results.get(("rtn", 3, 64)), results.get(("hqq", 3, 64))
        if rtn and hqq:
            src_t = tensors_of(rreal)
            worse = []
            for n in sorted(set(rtn) & set(hqq)):
                k = hq.kurtosis(source_f32(src_t[n]))
                print(f"     {n:26s} kurtosis {k:6.2f}  rel-F rtn {rtn[n][1]:.4f} hqq {hqq[n][1]:.4f}  "
                      f"mean|err| rtn {rtn[n][0]:.5f} hqq {hqq[n][0]:.5f}")
                if not hqq[n][0] < rtn[n][0]:
                    worse.append(n)
            check(not worse and len(set(rtn) & set(hqq)) == 14,
                  f"SmolLM2 3/64: HQQ's mean |error| below RTN's on each of the "
                  f"{len(set(rtn) & set(hqq))} quantized tensors {worse[:4]}")

print(f"     ({time.time() - t_start:.1f} s)")
finish("quantize")
