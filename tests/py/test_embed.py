#!/usr/bin/env python3
"""BERT sentence embeddings (stepq embed) and WordPiece (stepq tokenize -m FOLDER) on all-MiniLM-L6-v2.

(a) token ids equal PyPI `tokenizers` on every line of the shared corpora (wikitext2, gsm8k,
    math500, mt-bench, c4 sample, self-instruct);
(b) 200 sentences from the shared data: `stepq embed --json` against a numpy float64 forward of
    the same safetensors (header parsed here by hand), cosine >= 0.9999 for each; vectors from a
    batched run equal those of sentences embedded alone within 1e-6;
(c) clear errors for a missing folder, a folder without config.json, and a truncated safetensors.
"""
import json, math, os, struct, sys, tempfile, time

import numpy as np
from tokenizers import Tokenizer

from common import MODELS, SHARED_DATA as DATA, check, finish, stepq
from stepq_models import MODEL_DIRS  # noqa: E402

MODEL = os.path.join(MODELS, MODEL_DIRS["minilm"])


def jsonl(path, *keys):
    out = []
    with open(os.path.join(DATA, path), encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            for k in keys:
                v = rec.get(k)
                out.extend(v if isinstance(v, list) else [v] if v else [])
    return out


def corpus_lines():
    """Every line of the shared corpora (texts split at newlines), in a fixed order."""
    texts = []
    with open(os.path.join(DATA, "wikitext2", "wiki.test.raw"), encoding="utf-8") as f:
        texts += f.read().split("\n")
    texts += jsonl("gsm8k/test.jsonl", "question", "answer")
    texts += jsonl("math500/test.jsonl", "problem", "solution")
    texts += jsonl("mt-bench/question.jsonl", "turns")
    texts += jsonl("self-instruct-user/user_oriented_instructions.jsonl", "instruction")
    texts += jsonl("c4-sample/c4_sample.jsonl", "text")[:300]
    lines = []
    for t in texts:
        lines += t.split("\n")
    return lines


# --- (a) WordPiece ids -------------------------------------------------------------------------
def test_tokenizer():
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    lines = corpus_lines()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lines.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        r = stepq("tokenize", "-m", MODEL, "-f", path)
    got = r.stdout.split("\n")[:-1]
    check(r.returncode == 0 and len(got) == len(lines), f"tokenize -f: one line of ids per input line ({len(lines)})", r)
    if r.returncode != 0 or len(got) != len(lines):
        return
    want = [" ".join(map(str, e.ids)) for e in tok.encode_batch(lines)]
    same = sum(a == b for a, b in zip(got, want))
    n_tokens = sum(len(e.split()) for e in want)
    bad = [(i, lines[i][:80], got[i][:80], want[i][:80]) for i in range(len(lines)) if got[i] != want[i]]
    for b in bad[:5]:
        print(f"  line {b[0]} {b[1]!r}\n    stepq {b[2]}\n    hf    {b[3]}")
    check(not bad, f"WordPiece ids identical to tokenizers on {same}/{len(lines)} lines ({n_tokens} tokens)")


# --- (b) embeddings vs numpy -------------------------------------------------------------------
def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    base = 8 + n
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(buf, dtype=dtypes[t["dtype"]], count=(e - b) // np.dtype(dtypes[t["dtype"]]).itemsize,
                                  offset=base + b).reshape(t["shape"])
    return out


def erf(x):
    """math.erf element by element (numpy has no erf; this is exact and as fast as a vectorized
    approximation: ~60 ns per value)."""
    return np.fromiter(map(math.erf, x.ravel().tolist()), np.float64, x.size).reshape(x.shape)


class NumpyBert:
    """HF BertModel forward (eval) in float64, mean pooling, L2 normalization."""

    def __init__(self, folder):
        cfg = json.load(open(os.path.join(folder, "config.json")))
        self.nh, self.eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
        self.nl = cfg["num_hidden_layers"]
        self.w = {k: v.astype(np.float64) for k, v in read_safetensors(os.path.join(folder, "model.safetensors")).items()}

    def ln(self, x, p):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + self.eps) * self.w[p + ".weight"] + self.w[p + ".bias"]

    def lin(self, x, p):
        return x @ self.w[p + ".weight"].T + self.w[p + ".bias"]

    def embed(self, seqs):
        """All sequences at once, their tokens packed as rows (attention within each sequence)."""
        w = self.w
        starts = np.cumsum([0] + [len(q) for q in seqs])
        ids = np.concatenate(seqs)
        pos = np.concatenate([np.arange(len(q)) for q in seqs])
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self.ln(x, "embeddings.LayerNorm")
        N, H = x.shape
        hd = H // self.nh
        for l in range(self.nl):
            p = f"encoder.layer.{l}."
            q, k, v = (self.lin(x, p + "attention.self." + n).reshape(N, self.nh, hd).transpose(1, 0, 2)
                       for n in ("query", "key", "value"))
            ctx = np.empty((self.nh, N, hd))
            for a, b in zip(starts[:-1], starts[1:]):
                s = q[:, a:b] @ k[:, a:b].transpose(0, 2, 1) / np.sqrt(hd)
                s = np.exp(s - s.max(-1, keepdims=True))
                s /= s.sum(-1, keepdims=True)
                ctx[:, a:b] = s @ v[:, a:b]
            ctx = ctx.transpose(1, 0, 2).reshape(N, H)
            x = self.ln(x + self.lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = self.lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
            x = self.ln(x + self.lin(h, p + "output.dense"), p + "output.LayerNorm")
        e = np.array([x[a:b].mean(0) for a, b in zip(starts[:-1], starts[1:])])
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def sentences(n=200):
    """n texts from the shared data: questions, prompts and Wikipedia lines of varied length (some
    longer than 256 tokens, so truncation is compared too)."""
    wiki = [l.strip() for l in open(os.path.join(DATA, "wikitext2", "wiki.test.raw"), encoding="utf-8")
            if len(l.strip()) > 30 and not l.strip().startswith("=")]
    out = jsonl("gsm8k/test.jsonl", "question")[:70] + jsonl("mt-bench/question.jsonl", "turns")[:50]
    out += [l for l in wiki if len(l) < 400][:n - len(out) - 2] + sorted(wiki, key=len)[-2:]
    return [s.replace("\n", " ") for s in out[:n]]


def run_embed(texts, *flags):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(texts) + "\n")
        t0 = time.time()
        r = stepq("embed", "-m", MODEL, "-f", path, "--json", *flags)
        dt = time.time() - t0
    ok = r.returncode == 0
    return (np.array(json.loads(r.stdout), dtype=np.float64) if ok else None), r, dt


def test_embeddings():
    texts = sentences()
    emb, r, dt = run_embed(texts, "--batch", "16")
    check(emb is not None and emb.shape == (len(texts), 384), f"embed --json: {len(texts)} x 384 ({dt:.1f} s)", r)
    if emb is None:
        return
    print(f"  stepq: {r.stderr.strip()}")
    tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
    tok.enable_truncation(256)  # sentence_bert_config.json max_seq_length
    tok.no_padding()
    ref_model = NumpyBert(MODEL)
    ids = [e.ids for e in tok.encode_batch(texts)]
    ref = ref_model.embed([np.array(i) for i in ids])
    cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    print(f"  {len(texts)} sentences, {sum(map(len, ids))} tokens (longest {max(map(len, ids))}): "
          f"min cosine {cos.min():.9f}, max |cos-1| {np.abs(cos - 1).max():.2e}, "
          f"max |stepq-numpy| {np.abs(emb - ref).max():.2e}")
    check(cos.min() >= 0.9999, f"cosine >= 0.9999 against numpy on every sentence (min {cos.min():.9f})")
    check(np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5), "embeddings are normalized")

    # Batching does not change a vector: the first 32 sentences one per forward, and two alone.
    single, r1, _ = run_embed(texts[:32], "--batch", "1")
    check(single is not None and np.abs(single - emb[:32]).max() <= 1e-6,
          f"--batch 1 equals --batch 16 within 1e-6 (max diff "
          f"{np.abs(single - emb[:32]).max() if single is not None else float('nan'):.1e})", r1)
    for i in (0, 130):
        r2 = stepq("embed", "-m", MODEL, "-p", texts[i], "--json", "-q")
        one = np.array(json.loads(r2.stdout))[0] if r2.returncode == 0 else None
        check(one is not None and np.abs(one - emb[i]).max() <= 1e-6 and r2.stderr == "",
              f"sentence {i} alone (-p) equals its batched vector within 1e-6", r2)

    r3 = stepq("embed", "-m", MODEL, "-p", "hello world", "-p", "goodbye")
    check(r3.returncode == 0 and len(r3.stdout.splitlines()) == 2 and "norm 1.000000" in r3.stdout,
          "plain output: one line per input with the norm", r3)


# --- (c) errors --------------------------------------------------------------------------------
def test_errors():
    r = stepq("embed", "-m", "/nonexistent/minilm", "-p", "hi")
    check(r.returncode == 1 and "/nonexistent/minilm" in r.stderr and "no such folder" in r.stderr,
          "missing folder: clear error", r)
    with tempfile.TemporaryDirectory() as tmp:
        r = stepq("embed", "-m", tmp, "-p", "hi")
        check(r.returncode == 1 and "no config.json" in r.stderr and "Segmentation" not in r.stderr,
              "folder without config.json: clear error", r)
        # config and tokenizer, but the weights cut off after 1 MB.
        for f in ("config.json", "tokenizer.json"):
            with open(os.path.join(MODEL, f), "rb") as src, open(os.path.join(tmp, f), "wb") as dst:
                dst.write(src.read())
        with open(os.path.join(MODEL, "model.safetensors"), "rb") as src, \
                open(os.path.join(tmp, "model.safetensors"), "wb") as dst:
            dst.write(src.read(1 << 20))
        r = stepq("embed", "-m", tmp, "-p", "hi")
        check(r.returncode == 1 and "model.safetensors" in r.stderr and "past the end" in r.stderr,
              "truncated model.safetensors: clear error", r)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            f.write('{"model_type": "bert", "hidden_act": "relu"}')
        r = stepq("embed", "-m", tmp, "-p", "hi")
        check(r.returncode == 1 and "hidden_act" in r.stderr, "unsupported config: clear error", r)
    r = stepq("embed", "-m", MODEL)
    check(r.returncode == 1 and "nothing to embed" in r.stderr, "no input: clear error", r)


if not os.path.isdir(MODEL):
    print(f"FAIL model folder missing: {MODEL} (run: python3 scripts/fetch-models.py all-minilm-l6-v2)")
    sys.exit(1)
test_tokenizer()
test_embeddings()
test_errors()
finish("embed")
