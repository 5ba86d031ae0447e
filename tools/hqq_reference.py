#!/usr/bin/env python3
"""numpy reference of RTN and HQQ weight quantization, and decoders/packers for stepq's packed
formats (HQ2_64, HQ3_64, HQ3_128, HQ4_64, S3_32).

HQQ: Badri & Shaji 2023 ("Half-Quadratic Quantization of Large Machine Learning Models",
github.com/mobiusml/hqq): `Quantizer.quantize` with optimize=True, axis=1, and the proximal solver
`optimize_weights_proximal_legacy`, in float32 as that code runs on CPU. Written from the
algorithm's description; numpy only.

  groups of G consecutive values along a row: Wg = W.reshape(-1, G)
  scale = min((2^bits - 1) / (max - min), 2e4)      zero = -min * scale     (float32, per group)
  HQQ: up to 20 proximal steps moving `zero` (lp_norm 0.7, beta 10, kappa 1.01), stopping at
       the first step whose mean |W - W_r| over the whole tensor is not below the best so far
  codes = clip(round(Wg * scale + zero), 0, 2^bits - 1)   (round half to even)
  stored: d = fp16(1 / scale), z = fp16(zero);  dequantized = (code - z) * d   (float32)

Numerics (documented because a C++ port is compared against this one):
  * every array is float32; beta is a Python float (double) multiplied by kappa each step, as in
    the published code, and the shrink threshold is float32(1 / beta) * |x|**(p-1) with the
    exponent float32(0.7) - 1 (torch's `(1.0 / beta) * torch.pow(|x|, p - 1)` on a float32
    tensor); x == 0 gives 0. (The form |x|**(p-1) / beta with a float32 beta gave identical codes
    on every tensor tried; the published form is kept.)
  * the per-group mean that updates `zero` and the whole-tensor mean |W - W_r| are accumulated in
    float64 (the first is then rounded to float32): the correctly rounded value of the quantity,
    which any summation order approximates to a few float32 ulps;
  * a tensor with more than two dimensions (stacked experts) is one tensor: the stopping error is
    taken over all of it.

In a stepq GGUF a tensor of a private type is stored as ggml type I8 whose ne[0] is the row's
BYTES (PyPI gguf's GGUFReader shows shape (..., row_bytes) of int8), with a string KV
`stepq.qtype.<tensor name>` holding the type name. `read_stepq_tensor` reads either kind.

Run as a script for the self-check.
"""
import os
import sys

import numpy as np

# name: (bits, block values, block bytes, has zero)
FORMATS = {
    "HQ2_64": (2, 64, 20, True),
    "HQ3_64": (3, 64, 28, True),
    "HQ3_128": (3, 128, 52, True),
    "HQ4_64": (4, 64, 36, True),
    "S3_32": (3, 32, 14, False),
}
# (bits, group) -> type name: the combinations `stepq quantize` produces
HQ_TYPES = {(2, 64): "HQ2_64", (3, 64): "HQ3_64", (3, 128): "HQ3_128", (4, 64): "HQ4_64"}
QTYPE_KEY = "stepq.qtype."


# --------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------

class Quantized(tuple):
    """(codes, d, z, iters) plus the float32 scale/zero the codes were computed with.

    codes  uint8, W's shape
    d, z   float16, W.shape[:-1] + (cols // G,): stored scale 1/scale and zero point
    iters  HQQ proximal steps run (0 for RTN)
    scale, zero  float32, same shape as d: the values before the fp16 rounding of storage
               (scale is the multiplier: code = round(w * scale + zero); d = fp16(1 / scale))
    """
    __slots__ = ()

    def __new__(cls, codes, d, z, iters, scale, zero):
        return tuple.__new__(cls, (codes, d, z, iters, scale, zero))

    codes = property(lambda s: s[0])
    d = property(lambda s: s[1])
    z = property(lambda s: s[2])
    iters = property(lambda s: s[3])
    scale = property(lambda s: s[4])
    zero = property(lambda s: s[5])


def shrink_lp(x, beta, p):
    """Generalised soft-thresholding of HQQ: sign(x) * relu(|x| - |x|**(p-1) / beta) for a
    float32 x, computed as the published code does: float32(1 / beta) * |x|**(p - 1) with
    p a float32. x == 0 gives 0 (|0|**(p-1) is inf, the relu makes it 0, sign(0) = 0)."""
    ax = np.abs(x)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        t = ax - np.float32(1.0 / beta) * np.power(ax, np.float32(p) - np.float32(1))
    return np.sign(x) * np.maximum(t, np.float32(0))


def quantize(W, bits, group, method="hqq", lp_norm=0.7, beta=10.0, kappa=1.01, iters=20):
    """RTN (method="rtn") or HQQ (method="hqq") of W (..., cols), groups of `group` along the last
    axis. Returns Quantized(codes, d, z, iters, scale, zero); unpacks as a 6-tuple."""
    if method not in ("rtn", "hqq"):
        raise ValueError(f"method must be rtn or hqq, not {method!r}")
    W = np.asarray(W, dtype=np.float32)
    if W.ndim < 2:
        raise ValueError("W must have at least 2 dimensions (rows, cols)")
    cols = W.shape[-1]
    if cols % group:
        raise ValueError(f"row length {cols} is not a multiple of the group {group}")
    f32 = np.float32
    Wg = W.reshape(-1, group)
    max_v = f32(2 ** bits - 1)
    _min = Wg.min(axis=1, keepdims=True)
    _max = Wg.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = np.minimum(max_v / (_max - _min), f32(2e4))
    zero = -_min * scale
    n_iter = 0
    if method == "hqq":
        p, beta = f32(lp_norm), float(beta)
        best_error = 1e4
        for i in range(iters):
            W_q = np.clip(np.round(Wg * scale + zero), f32(0), max_v)
            W_r = (W_q - zero) / scale
            W_e = shrink_lp(Wg - W_r, beta, p)
            zero = np.mean(W_q - (Wg - W_e) * scale, axis=1, keepdims=True, dtype=np.float64).astype(f32)
            beta *= kappa
            err = float(np.mean(np.abs(Wg - W_r), dtype=np.float64))
            n_iter = i + 1
            if err < best_error:
                best_error = err
            else:
                break  # the zero just updated is kept, as in the published code
    codes = np.clip(np.round(Wg * scale + zero), f32(0), max_v).astype(np.uint8)
    gshape = W.shape[:-1] + (cols // group,)
    d = (f32(1) / scale).astype(np.float16).reshape(gshape)
    z = zero.astype(np.float16).reshape(gshape)
    assert scale.dtype == f32 and zero.dtype == f32
    return Quantized(codes.reshape(W.shape), d, z, n_iter, scale.reshape(gshape), zero.reshape(gshape))


def dequantize(codes, d, z=None, offset=0):
    """(codes - z) * d in float32, d/z per group (group = cols // d.shape[-1]); z None: (codes -
    offset) * d (S3_32: offset 4)."""
    codes = np.asarray(codes)
    d = np.asarray(d)
    G = codes.shape[-1] // d.shape[-1]
    q = codes.astype(np.float32).reshape(*d.shape, G)
    zz = np.float32(offset) if z is None else np.asarray(z).astype(np.float32)[..., None]
    return ((q - zz) * d.astype(np.float32)[..., None]).reshape(codes.shape)


def dequantized(qz):
    """The float32 matrix a Quantized result stands for."""
    return dequantize(qz.codes, qz.d, qz.z)


def rel_frobenius(W, Wd):
    """||W - Wd||_F / ||W||_F (float64)."""
    W = np.asarray(W, dtype=np.float64)
    n = np.linalg.norm(W)
    return float(np.linalg.norm(W - np.asarray(Wd, dtype=np.float64)) / n) if n else 0.0


def mean_abs_error(W, Wd):
    return float(np.mean(np.abs(np.asarray(W, np.float64) - np.asarray(Wd, np.float64))))


def kurtosis(W):
    """Pearson kurtosis E[(x - mu)^4] / sigma^4 of all of W (NOT excess: a gaussian gives 3),
    in float64. MiLo's kurtosis rank policy ranks tensors by this."""
    x = np.asarray(W, dtype=np.float64).ravel()
    c = x - x.mean()
    v = np.mean(c * c)
    return float(np.mean(c ** 4) / (v * v)) if v > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# Packed formats
def quantize_sym16(W, refine=True):
    """stepq's S3_16 (symmetric 3-bit, groups of 16, 5-bit scale codes per super-block of 256):
    each group's signed scale by llama.cpp's Q3_K fit (make_q3_quants: the value of largest
    magnitude at code -4; with `refine`, up to 5 passes moving single codes to the level nearest
    x * sum(w l^2) / sum(w l x) with weights w = x^2, kept when the weighted error falls; the
    scale is then sum(w l x) / sum(w l^2)); per super-block D = fp16(1 / (-16 / m)) with m the
    signed scale of largest magnitude, scale codes c = clip(rint(-16 / m * s), -16, 15) + 16, and
    codes clip(rint(x / (D (c - 16))), -4, 3) + 4; with `refine`, c - 1 or c + 1 (in range) replaces
    c when its codes give a lower sum of x^2 (x - code * scale)^2 (ties keep c, then c - 1).
    float32 throughout, sums accumulated in element order as the C++ does. W (..., cols), cols a
    multiple of 256.
    Returns (codes uint8 W.shape, sc uint8 (..., cols // 16), D float16 (..., cols // 256),
    dequantized float32)."""
    W = np.asarray(W, dtype=np.float32)
    lead, cols = W.shape[:-1], W.shape[-1]
    if cols % 256:
        raise ValueError(f"S3_16: row length {cols} is not a multiple of 256")
    f = np.float32
    G = W.reshape(-1, 16)
    n = G.shape[0]
    ax = np.abs(G)
    idx = np.argmax(ax, axis=1)
    amax = ax[np.arange(n), idx]
    mx = G[np.arange(n), idx]
    live = amax >= f(1e-15)
    iscale = np.where(live, f(-4) / np.where(live, mx, f(1)), f(0)).astype(f)
    if not refine:
        scale = np.where(live, f(1) / np.where(live, iscale, f(1)), f(0)).astype(f)
    else:
        L = np.clip(np.rint(iscale[:, None] * G), -4, 3).astype(f)
        sumlx = np.zeros(n, f)
        suml2 = np.zeros(n, f)
        for i in range(16):
            x, l = G[:, i], L[:, i]
            w = x * x
            sumlx = sumlx + w * x * l
            suml2 = suml2 + w * (l * l)
        for _ in range(5):
            changed = np.zeros(n, bool)
            for i in range(16):
                x, l = G[:, i], L[:, i]
                w = x * x
                slx = sumlx - w * x * l
                sl2 = suml2 - w * (l * l)
                pos = slx > 0
                nl = np.clip(np.rint(x * sl2 / np.where(pos, slx, f(1))), -4, 3).astype(f)
                slx2 = slx + w * x * nl
                sl22 = sl2 + w * (nl * nl)
                acc = live & pos & (nl != l) & (sl22 > 0) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
                L[acc, i] = nl[acc]
                sumlx = np.where(acc, slx2, sumlx).astype(f)
                suml2 = np.where(acc, sl22, suml2).astype(f)
                changed |= acc
            if not changed.any():
                break
        ok = suml2 > 0
        scale = np.where(ok & (amax >= f(1e-15)), sumlx / np.where(ok, suml2, f(1)), f(0)).astype(f)
    S = scale.reshape(-1, 16)
    j = np.argmax(np.abs(S), axis=1)
    sa = np.abs(S)[np.arange(S.shape[0]), j]
    sm = S[np.arange(S.shape[0]), j]
    bl = sa > 0
    isc = np.where(bl, f(-16) / np.where(bl, sm, f(1)), f(0)).astype(f)
    D = np.where(bl, f(1) / np.where(bl, isc, f(1)), f(0)).astype(np.float16)
    l = np.clip(np.rint(isc[:, None] * S), -16, 15).astype(f).reshape(-1)
    Dg = np.repeat(D.astype(f), 16)

    def codes_for(lc):
        d = (Dg * lc).astype(f)
        nz = d != 0
        q = np.where(nz[:, None], np.clip(np.rint(G / np.where(nz, d, f(1))[:, None]), -4, 3), f(0)).astype(f)
        err = np.zeros(n, f)
        for i in range(16):
            r = (G[:, i] - q[:, i] * d).astype(f)
            err = (err + (G[:, i] * G[:, i]) * (r * r)).astype(f)
        return q, err

    q, best = codes_for(l)
    if refine:
        l0 = l.copy()
        for t in (l0 - 1, l0 + 1):
            qt, et = codes_for(t)
            m = (t >= -16) & (t <= 15) & (et < best)
            q = np.where(m[:, None], qt, q)
            best = np.where(m, et, best)
            l = np.where(m, t, l)
    d = (Dg * l).astype(f)
    deq = ((q + 4 - f(4)) * d[:, None]).astype(f)
    return ((q + 4).astype(np.uint8).reshape(W.shape), (l + 16).astype(np.uint8).reshape(*lead, cols // 16),
            D.reshape(*lead, cols // 256), deq.reshape(W.shape))


def decode_s3_16(raw):
    """Decodes S3_16 rows (..., row_bytes) -> (codes uint8, sc uint8 (.., cols/16), D float16
    (.., cols/256), dequantized float32 (q - 4) * (D * (sc - 16)))."""
    raw = np.ascontiguousarray(raw).view(np.uint8)
    lead, rb = raw.shape[:-1], raw.shape[-1]
    if rb % 108:
        raise ValueError(f"S3_16: row of {rb} bytes is not a whole number of 108-byte blocks")
    nb = rb // 108
    b = raw.reshape(-1, nb, 108)
    D = b[..., 0:2].copy().view("<f2")[..., 0].astype(np.float16)
    sl = b[..., 2:10]
    sh = _unpack_bits(b[..., 10:12])
    sc = np.concatenate([sl & 15, sl >> 4], axis=-1) | (sh << 4)
    chunks = []
    for k in range(4):
        s = 12 + 24 * k
        chunks.append(_unpack_2bit(b[..., s:s + 16]) | (_unpack_bits(b[..., s + 16:s + 24]) << 2))
    codes = np.concatenate(chunks, axis=-1).astype(np.uint8)
    d = D.astype(np.float32)[..., None] * (sc.astype(np.float32) - 16)
    deq = ((codes.reshape(-1, nb, 16, 16).astype(np.float32) - 4) * d[..., None]).astype(np.float32)
    return (codes.reshape(*lead, nb * 256), sc.astype(np.uint8).reshape(*lead, nb * 16), D.reshape(*lead, nb),
            deq.reshape(*lead, nb * 256))


# --------------------------------------------------------------------------------------------

def _fp16_bytes(a):
    return np.ascontiguousarray(np.asarray(a, dtype="<f2")).view(np.uint8).reshape(*np.shape(a), 2)


def _pack_2bit(c):
    """c (..., 4n) values 0..3 -> (..., n) bytes: value i at byte i % n, bits 2*(i // n)."""
    n = c.shape[-1] // 4
    c = (c.astype(np.uint8) & 3).reshape(*c.shape[:-1], 4, n)
    return c[..., 0, :] | (c[..., 1, :] << 2) | (c[..., 2, :] << 4) | (c[..., 3, :] << 6)


def _unpack_2bit(b):
    """inverse of _pack_2bit: (..., n) bytes -> (..., 4n)."""
    sh = np.arange(0, 8, 2, dtype=np.uint8)[:, None]
    return ((b[..., None, :] >> sh) & 3).reshape(*b.shape[:-1], 4 * b.shape[-1])


def _pack_bits(c):
    """bit i of the little-endian bytes = c[i] (..., 8n) -> (..., n)."""
    return np.packbits(c.astype(np.uint8) & 1, axis=-1, bitorder="little")


def _unpack_bits(b):
    return np.unpackbits(b, axis=-1, bitorder="little")


def row_bytes(qtype, cols):
    _, blk, nbytes, _ = FORMATS[qtype]
    if cols % blk:
        raise ValueError(f"{qtype}: row length {cols} is not a multiple of {blk}")
    return cols // blk * nbytes


def pack_hq(codes, d, z, qtype):
    """Packs codes (rows, cols) uint8 and per-block d, z (rows, cols // block; fp16 or castable)
    into stepq's `qtype` layout: uint8 (rows, row_bytes). z is ignored (may be None) for S3_32.
    Leading dimensions beyond 2 are kept: codes (..., cols) -> (..., row_bytes)."""
    bits, blk, nbytes, has_z = FORMATS[qtype]
    codes = np.asarray(codes)
    lead, cols = codes.shape[:-1], codes.shape[-1]
    nb = cols // blk
    if cols % blk or np.shape(d) != lead + (nb,):
        raise ValueError(f"{qtype}: codes {codes.shape} / d {np.shape(d)} do not fit blocks of {blk}")
    if codes.size and int(codes.max()) >= 1 << bits:
        raise ValueError(f"{qtype}: codes must be < {1 << bits}")
    c = codes.astype(np.uint8).reshape(-1, nb, blk)
    parts = [_fp16_bytes(np.asarray(d).reshape(-1, nb))]
    if has_z:
        parts.append(_fp16_bytes(np.asarray(z).reshape(-1, nb)))
    if qtype == "HQ2_64":
        parts.append(_pack_2bit(c))
    elif qtype == "HQ4_64":
        parts.append((c[..., :32] & 15) | ((c[..., 32:] & 15) << 4))
    elif qtype == "S3_32":
        parts += [_pack_2bit(c), _pack_bits(c >> 2)]
    else:  # HQ3_64, HQ3_128: 64-value chunks of ql[16], qh[8]
        for k in range(blk // 64):
            ck = c[..., 64 * k:64 * (k + 1)]
            parts += [_pack_2bit(ck), _pack_bits(ck >> 2)]
    out = np.concatenate(parts, axis=-1)
    assert out.shape[-1] == nbytes
    return out.reshape(*lead, nb * nbytes)


def decode_hq(raw, qtype):
    """Decodes raw bytes (rows, row_bytes) of stepq's `qtype` (any leading dimensions; int8 or
    uint8). Returns (codes uint8 (..., cols), d float16 (..., cols // block), z float16 or None for
    S3_32, dequantized float32 (..., cols))."""
    bits, blk, nbytes, has_z = FORMATS[qtype]
    raw = np.ascontiguousarray(raw).view(np.uint8)
    lead, rb = raw.shape[:-1], raw.shape[-1]
    if rb % nbytes:
        raise ValueError(f"{qtype}: row of {rb} bytes is not a whole number of {nbytes}-byte blocks")
    nb = rb // nbytes
    b = raw.reshape(-1, nb, nbytes)
    d = b[..., 0:2].copy().view("<f2")[..., 0].astype(np.float16)
    z = b[..., 2:4].copy().view("<f2")[..., 0].astype(np.float16) if has_z else None
    o = 4 if has_z else 2
    if qtype == "HQ2_64":
        codes = _unpack_2bit(b[..., o:o + 16])
    elif qtype == "HQ4_64":
        qs = b[..., o:o + 32]
        codes = np.concatenate([qs & 15, qs >> 4], axis=-1)
    elif qtype == "S3_32":
        codes = _unpack_2bit(b[..., o:o + 8]) | (_unpack_bits(b[..., o + 8:o + 12]) << 2)
    else:
        chunks = []
        for k in range(blk // 64):
            s = o + 24 * k
            chunks.append(_unpack_2bit(b[..., s:s + 16]) | (_unpack_bits(b[..., s + 16:s + 24]) << 2))
        codes = np.concatenate(chunks, axis=-1)
    codes = codes.astype(np.uint8).reshape(*lead, nb * blk)
    d = d.reshape(*lead, nb)
    if has_z:
        z = z.reshape(*lead, nb)
        deq = dequantize(codes, d, z)
    else:
        deq = dequantize(codes, d, None, offset=4)
    return codes, d, z, deq


def _decode_block_scalar(block, qtype):
    """Element-by-element decode of ONE block written straight from the layout description
    (slow; used by the self-check to test the vectorised decoder)."""
    bits, blk, nbytes, has_z = FORMATS[qtype]
    block = bytes(block)
    d = float(np.frombuffer(block[0:2], "<f2")[0])
    z = float(np.frombuffer(block[2:4], "<f2")[0]) if has_z else None
    o = 4 if has_z else 2
    q = []
    for i in range(blk):
        if qtype == "HQ2_64":
            v = (block[o + i % 16] >> (2 * (i // 16))) & 3
        elif qtype == "HQ4_64":
            v = (block[o + i % 32] >> (4 * (i // 32))) & 15
        elif qtype == "S3_32":
            qh = int.from_bytes(block[o + 8:o + 12], "little")
            v = ((block[o + i % 8] >> (2 * (i // 8))) & 3) | (((qh >> i) & 1) << 2)
        else:
            c, j = divmod(i, 64)
            s = o + 24 * c
            v = ((block[s + j % 16] >> (2 * (j // 16))) & 3) | (((block[s + 16 + j // 8] >> (j % 8)) & 1) << 2)
        q.append(v)
    return q, d, z


# --------------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------------

def _field_str(f):
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def stepq_qtype(reader, name):
    """The stepq type name of tensor `name` (None for a standard ggml type)."""
    f = reader.fields.get(QTYPE_KEY + name)
    return None if f is None else _field_str(f)


def read_stepq_tensor(reader, name):
    """(type name, codes, d, z, dequantized float32 (rows, cols)) of tensor `name` in a
    gguf.GGUFReader. rows is the product of all but the innermost dimension (a 3-D expert tensor
    (E, R, C) gives E*R rows). For a standard ggml type: (type name, None, None, None, deq) with
    gguf.quants.dequantize. For S3_32, z is None; for S3_16, d and z are the scale codes and D."""
    import gguf
    ts = [t for t in reader.tensors if t.name == name]
    if not ts:
        raise KeyError(f"no tensor {name!r}")
    t = ts[0]
    qtype = stepq_qtype(reader, name)
    if qtype is None:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        cols = int(t.shape[0])
        return t.tensor_type.name, None, None, None, deq.reshape(-1, cols)
    if qtype not in FORMATS and qtype != "S3_16":
        raise ValueError(f"{name}: unknown stepq type {qtype!r}")
    if t.tensor_type != gguf.GGMLQuantizationType.I8:
        raise ValueError(f"{name}: stepq type {qtype} stored as {t.tensor_type.name}, expected I8")
    rb = int(t.shape[0])
    raw = np.asarray(t.data).view(np.uint8).reshape(-1, rb)
    if qtype == "S3_16":  # d holds the scale codes and z the fp16 super-block scales
        codes, sc, D, deq = decode_s3_16(raw)
        return qtype, codes, sc, D, deq
    codes, d, z, deq = decode_hq(raw, qtype)
    return qtype, codes, d, z, deq


def add_stepq_tensor(writer, name, qtype, packed):
    """Adds a packed stepq tensor (uint8 (..., row_bytes) from pack_hq) to a gguf.GGUFWriter the
    way stepq stores it: ggml type I8, ne[0] = row bytes, plus the string KV stepq.qtype.<name>.
    Call before the writer's write_header_to_file."""
    import gguf
    writer.add_string(QTYPE_KEY + name, qtype)
    writer.add_tensor(name, np.ascontiguousarray(packed).view(np.int8),
                      raw_dtype=gguf.GGMLQuantizationType.I8)


# --------------------------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------------------------

def test_matrices(rng):
    """Named float32 test matrices: gaussian, student-t(3), a constant group, an all-zero row."""
    m = {
        "gauss 16x256": (rng.standard_normal((16, 256)) * 0.02).astype(np.float32),
        "student-t(3) 32x384": (rng.standard_t(3, (32, 384)) * 0.02).astype(np.float32),
        "gauss 1x128": rng.standard_normal((1, 128)).astype(np.float32),
    }
    w = (rng.standard_normal((8, 512)) * 0.05).astype(np.float32)
    w[2, 128:256] = 0.37          # constant groups (64 and 128)
    w[3, 0:128] = -1.25
    w[5] = 0.0                    # all-zero row
    m["constant groups + zero row 8x512"] = w
    e = (rng.standard_t(3, (3, 8, 256)) * 0.01).astype(np.float32)
    e[1, 4] = 0.0
    m["experts 3x8x256"] = e
    return m


def self_check(verbose=True, seed=0):
    """Returns a list of failure descriptions (empty: all good)."""
    import gguf
    import tempfile
    rng = np.random.default_rng(seed)
    fails = []

    def ok(cond, what):
        if verbose:
            print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            fails.append(what)

    # quantization: codes in range, HQQ beats RTN in mean |error| over each tensor
    for name, W in test_matrices(rng).items():
        for (bits, G), qt in HQ_TYPES.items():
            r = quantize(W, bits, G, "rtn")
            h = quantize(W, bits, G, "hqq")
            in_range = all(q.codes.max() <= 2 ** bits - 1 and q.codes.dtype == np.uint8
                           and q.d.dtype == np.float16 and q.z.dtype == np.float16
                           and np.isfinite(q.d).all() and np.isfinite(q.z).all() for q in (r, h))
            er, eh = mean_abs_error(W, dequantized(r)), mean_abs_error(W, dequantized(h))
            fr, fh = rel_frobenius(W, dequantized(r)), rel_frobenius(W, dequantized(h))
            ok(in_range and eh <= er,
               f"{name} {qt}: mean|err| rtn {er:.4g} hqq {eh:.4g} ({h.iters} it), "
               f"rel-F rtn {fr:.4f} hqq {fh:.4f}")
        # constant groups and zero rows come back exactly (to fp16 storage) and finite
        if "zero row" in name:
            h = quantize(W, 3, 64, "hqq")
            dq = dequantized(h)
            ok(np.all(dq[5] == 0) and np.all(np.isfinite(dq)), f"{name}: all-zero row dequantizes to 0")
            ok(np.allclose(dq[2, 128:256], 0.37, rtol=2e-3), f"{name}: constant group ~0.37 "
               f"(got {dq[2, 128]:.5f})")
    ok(abs(kurtosis(rng.standard_normal(200000)) - 3) < 0.1, "kurtosis of a gaussian ~ 3 (Pearson)")

    # pack -> decode round trip and the vectorised decoder vs the element-by-element one
    for qt, (bits, blk, nbytes, has_z) in FORMATS.items():
        rows, nb = 5, 3
        codes = rng.integers(0, 1 << bits, (rows, nb * blk), dtype=np.uint8)
        d = rng.standard_normal((rows, nb)).astype(np.float16)
        z = (rng.standard_normal((rows, nb)) * 4).astype(np.float16) if has_z else None
        packed = pack_hq(codes, d, z, qt)
        c2, d2, z2, deq = decode_hq(packed, qt)
        same = (packed.shape == (rows, nb * nbytes) and np.array_equal(c2, codes)
                and np.array_equal(d2.view(np.uint16), d.view(np.uint16))
                and (not has_z or np.array_equal(z2.view(np.uint16), z.view(np.uint16))))
        ref = dequantize(codes, d, z, offset=0 if has_z else 4)
        ok(same and np.array_equal(deq, ref), f"{qt}: pack -> decode round trip ({nbytes} B / {blk})")
        raw = rng.integers(0, 256, (4, 2 * nbytes), dtype=np.uint8)
        raw[..., 1] &= 0x7b  # keep the fp16 d (and z) finite
        if has_z:
            raw[..., 3] &= 0x7b
            raw[..., nbytes + 3] &= 0x7b
        raw[..., nbytes + 1] &= 0x7b
        cv, dv, zv, _ = decode_hq(raw, qt)
        good = True
        for r in range(raw.shape[0]):
            for k in range(2):
                q, ds, zs = _decode_block_scalar(raw[r, k * nbytes:(k + 1) * nbytes], qt)
                good &= list(cv[r, k * blk:(k + 1) * blk]) == q and float(dv[r, k]) == ds
                good &= (not has_z) or float(zv[r, k]) == zs
        ok(good, f"{qt}: vectorised decode == element-by-element decode of the layout")
        # through a GGUF file, read back as stepq stores it
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.gguf")
            w = gguf.GGUFWriter(path, "llama")
            packed3 = pack_hq(codes.reshape(1, rows, -1), d.reshape(1, rows, -1),
                              None if z is None else z.reshape(1, rows, -1), qt)
            add_stepq_tensor(w, "blk.0.ffn_up_exps.weight", qt, packed3)
            w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
            rd = gguf.GGUFReader(path)
            t = rd.tensors[0]
            name3, c3, d3, z3, deq3 = read_stepq_tensor(rd, "blk.0.ffn_up_exps.weight")
            ok(name3 == qt and t.tensor_type == gguf.GGMLQuantizationType.I8
               and list(t.shape) == [nb * nbytes, rows, 1] and np.array_equal(c3, codes)
               and np.array_equal(deq3, ref), f"{qt}: GGUF I8 + stepq.qtype KV round trip")
    return fails


if __name__ == "__main__":
    f = self_check(verbose=True, seed=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"{len(f)} self-check failure(s)" if f else "hqq_reference self-check: all passed")
    sys.exit(1 if f else 0)
