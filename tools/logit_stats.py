"""Comparing and storing logits (numpy only): what the reference tools share."""
import struct

import numpy as np


def logsumexp(row):
    m = float(np.max(row))
    return m + float(np.log(np.sum(np.exp(row.astype(np.float64) - m))))


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def agreement(a, b):
    """top-1 agreement, mean KL(a || b) and max |a - b| of two (n, vocab) logit arrays."""
    la, lb = log_softmax(a), log_softmax(b)
    kl = (np.exp(la) * (la - lb)).sum(axis=1)
    return float((a.argmax(1) == b.argmax(1)).mean()), float(kl.mean()), float(np.abs(a - b).max())


def write_topk_reference(path, tokens, scores, top_k):
    """The .bin reference layout tests/unit/logits_ref.h reads (little-endian): int32 tokens[n],
    then per position { float lse; int32 ids[top_k]; float logits[top_k] }, largest first."""
    blob = bytearray(struct.pack(f"<{len(tokens)}i", *tokens))
    for row in scores:
        ids = np.argsort(-row, kind="stable")[:top_k]
        blob += struct.pack("<f", logsumexp(row))
        blob += struct.pack(f"<{top_k}i", *[int(i) for i in ids])
        blob += struct.pack(f"<{top_k}f", *[float(row[i]) for i in ids])
    with open(path, "wb") as f:
        f.write(blob)
    return len(blob)
