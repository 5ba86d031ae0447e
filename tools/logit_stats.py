"""Comparing logits (numpy only): what the reference tools share."""
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
