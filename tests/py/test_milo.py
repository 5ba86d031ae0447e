#!/usr/bin/env python3
"""MiLo files end to end: `stepq quantize --method milo` on a real dense model and on a generated
mixture of experts, the files loaded and run by the ordinary forward, and the compensators
shown to help where it counts, in the model's next-token distributions.

(a) SmolLM2-135M (F32 source): HQQ 3-bit and MiLo 3-bit (3 fits, the default 0.25 bits/weight
    budget). PyPI gguf lists the MiLo file's U/V tensors with their stepq.qtype keys; the summary's
    bits/weight match the file; `stepq perplexity --kl-reference SOURCE` on two wikitext windows:
    MiLo's KL to the source and its perplexity are below HQQ's.
(b) A generated qwen2moe model (8 experts, shared expert): `stepq moe-stats --json`, then MiLo
    with the frequency policy: every routed expert gets its own compensators (milo_u.<e> /
    milo_v.<e>) with ranks ordered as its routing counts, the model runs, and its KL to the source
    is below HQQ's. MiLo's default puts the routed experts on HQ3_128 and the rest on HQ3_32;
    --expert-group sets their group.
(c) Bad input: a policy name, --compensator-bits 5, frequency without --moe-stats, a budget at or
    below the base's bits, a --tensors regex that matches nothing: exit 1 with a message; negative
    ranks and an --expert-group that is no group size are refused by the option parser.
"""
import json
import os
import re
import tempfile

import gguf

from common import MODELS, SHARED_DATA, check, finish, stepq
from gguf_util import field_value  # noqa: E402

WIKI = os.path.join(SHARED_DATA, "wikitext2", "wiki.test.raw")


def kl_run(model, source, chunks=2, ctx=256):
    r = stepq("perplexity", "-m", model, "-f", WIKI, "--chunks", str(chunks), "--ctx", str(ctx), "--json",
              "--kl-reference", source)
    if r.returncode != 0:
        check(False, f"perplexity of {os.path.basename(model)}", r)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def quantize(src, out, *args):
    r = stepq("quantize", "-m", src, "-o", out, "-q", *args, timeout=900)
    check(r.returncode == 0 and os.path.exists(out), f"quantize {os.path.basename(src)} {' '.join(args)}", r)
    return r


def summary_bits(stdout, what):
    m = re.search(rf"{what}:\s+([0-9.]+) bits/weight", stdout)
    return float(m.group(1)) if m else None


with tempfile.TemporaryDirectory() as tmp:
    # (a) a real dense model
    src = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.f32.gguf")
    hqq, milo = os.path.join(tmp, "smol-hqq.gguf"), os.path.join(tmp, "smol-milo.gguf")
    quantize(src, hqq, "--method", "hqq")
    r = quantize(src, milo, "--method", "milo", "--iters", "3")
    if os.path.exists(milo):
        eff, base, comp = (summary_bits(r.stdout, k) for k in ("effective", "base", "compensators"))
        # HQ3_32 (3.625) where rows are whole blocks of 128, HQ3_64 (3.5) on SmolLM2's 576-wide rows;
        # the compensators fill the default budget of 3.75 bits/weight
        check(base is not None and 3.5 < base < 3.625 and comp is not None and 0.1 < comp and
              eff <= 3.75 + 2e-3 and abs(eff - base - comp) < 2e-3,
              f"summary: base between HQ3_64 and HQ3_32, effective = base + compensators <= 3.75 ({base}, {comp}, {eff})",
              r)
        rd = gguf.GGUFReader(milo)
        names = {t.name: t for t in rd.tensors}
        us = [n for n in names if n.endswith(".milo_u")]
        vs = [n for n in names if n.endswith(".milo_v")]
        check(len(us) > 60 and len(us) == len(vs), f"PyPI gguf lists {len(us)} U and {len(vs)} V tensors")
        # the defaults (--ffn-rank 0): a dense model's compensators are all on attention
        check(all(".attn_" in n for n in us + vs), "with the defaults every compensator belongs to an attention weight")
        keys = {f.name: f for f in rd.fields.values()}
        qt = {n: field_value(keys[f"stepq.qtype.{n}"])[0] for n in us + vs if f"stepq.qtype.{n}" in keys}
        check(len(qt) == len(us) + len(vs) and set(qt.values()) == {"S3_32"},
              f"every U/V is S3_32 by its stepq.qtype key ({set(qt.values())})")
        check(field_value(keys["stepq.quantize.method"])[0] == "milo", "stepq.quantize.method = milo")
        # --rank-width model (the default): ranks scaled by the hidden size (576) for every weight, so
        # grouped-query K (192 x 576) gets as much rank as Q (576 x 576); by each weight's own width
        # it would get a third. U is rows x rank in S3_32: 14 bytes per 32 of rank (gguf lists bytes).
        rank = {n: int(names[n].shape[0]) * 32 // 14 for n in us}
        rq = sum(r for n, r in rank.items() if ".attn_q." in n)
        rk = sum(r for n, r in rank.items() if ".attn_k." in n)
        check(field_value(keys["stepq.quantize.rank_width"])[0] == 576 and rq > 0 and 0.8 * rq <= rk <= 1.25 * rq,
              f"rank width 576: attn_k's ranks (sum {rk}) equal attn_q's (sum {rq})")
        # bits in the file = the summary's: linear weights' bytes (with U, V) over their weights
        lin = re.compile(r"blk\.\d+\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)\.")
        nbytes = sum(int(t.n_bytes) for n, t in names.items() if lin.match(n))
        block = {"HQ3_64": (64, 28), "HQ3_32": (128, 58)}  # weights, bytes per block
        wq = {n: field_value(keys[f"stepq.qtype.{n}"])[0] for n in names if lin.match(n) and n.endswith(".weight")}
        check(set(wq.values()) == {"HQ3_64", "HQ3_32"}, f"base weights are HQ3_32, HQ3_64 where 128 does not fit ({set(wq.values())})")
        weights = sum(int(names[n].n_elements) // block[q][1] * block[q][0] for n, q in wq.items())
        check(abs(8 * nbytes / weights - eff) < 2e-3, f"file's bits/weight {8 * nbytes / weights:.4f} = summary {eff}")
    if os.path.exists(hqq) and os.path.exists(milo):
        a, b = kl_run(hqq, src), kl_run(milo, src)
        if a and b:
            print(f"     SmolLM2: source ppl {a['reference_ppl']:.2f}; HQQ3 ppl {a['ppl']:.2f} KL {a['kl']:.4f} "
                  f"top-1 {100 * a['top1']:.1f}%; MiLo3 ppl {b['ppl']:.2f} KL {b['kl']:.4f} top-1 {100 * b['top1']:.1f}%")
            check(b["kl"] < 0.9 * a["kl"] and b["ppl"] < a["ppl"],
                  "MiLo's KL to the source is at least 10% below HQQ's, and its perplexity lower")
    # --embeddings hq4_64: the tied embeddings/head as HQQ 4-bit, run by the ordinary forward (token
    # rows dequantized, the head through the HQ4_64 kernels): far smaller, barely worse than HQQ3
    hqe = os.path.join(tmp, "smol-hqq-emb4.gguf")
    quantize(src, hqe, "--method", "hqq", "--embeddings", "hq4_64")
    if os.path.exists(hqq) and os.path.exists(hqe):
        a, e = kl_run(hqq, src), kl_run(hqe, src)
        saved = os.path.getsize(hqq) - os.path.getsize(hqe)
        if a and e:
            print(f"     SmolLM2 HQQ3 with HQ4_64 embeddings: ppl {e['ppl']:.2f} KL {e['kl']:.4f}, "
                  f"{saved / 1e6:.1f} MB smaller")
            # 49152 x 576 F32 (113 MB) -> HQ4_64 (4.5 bits/weight, 16 MB)
            check(saved > 90e6 and e["kl"] < 1.25 * a["kl"],
                  "HQ4_64 embeddings: the file is > 90 MB smaller, KL within 25% of HQQ3's with F32 embeddings")

    # (b) a mixture of experts, frequency policy
    msrc = os.path.join(MODELS, "moe", "qwen2moe-m-f16.gguf")
    stats = os.path.join(tmp, "stats.json")
    r = stepq("moe-stats", "-m", msrc, "-f", WIKI, "--max-tokens", "2048", "--json")
    check(r.returncode == 0, "moe-stats --json", r)
    if r.returncode == 0:
        with open(stats, "w") as f:
            f.write(r.stdout.strip().splitlines()[-1])
        counts = json.loads(r.stdout.strip().splitlines()[-1])["counts"]
        mh, mm = os.path.join(tmp, "moe-hqq.gguf"), os.path.join(tmp, "moe-milo.gguf")
        quantize(msrc, mh, "--method", "hqq")
        quantize(msrc, mm, "--method", "milo", "--rank-policy", "frequency", "--moe-stats", stats,
                 "--sparse-rank", "1024", "--rank-budget", "0", "--iters", "3", "--expert-group", "32")
        if os.path.exists(mm):
            rd = gguf.GGUFReader(mm)
            ranks = {}
            for t in rd.tensors:
                m = re.match(r"blk\.(\d+)\.ffn_up_exps\.milo_v\.(\d+)$", t.name)
                if m:
                    ranks[(int(m.group(1)), int(m.group(2)))] = int(t.shape[1])  # ne = [row bytes, rank]
            n_exp = len(counts[0])
            check(len(ranks) >= n_exp, f"routed experts have their own compensators ({len(ranks)} ffn_up ones)")
            ordered = all(ranks.get((0, i), 0) >= ranks.get((0, j), 0)
                          for i in range(n_exp) for j in range(n_exp) if counts[0][i] > 1.5 * counts[0][j])
            print(f"     layer 0 routing counts {counts[0]}, ffn_up ranks {[ranks.get((0, e), 0) for e in range(n_exp)]}")
            check(ordered, "frequency policy: an expert chosen 1.5x as often never gets a smaller rank")
            a, b = kl_run(mh, msrc), kl_run(mm, msrc)
            if a and b:
                print(f"     qwen2moe-m: HQQ3 KL {a['kl']:.4f}, MiLo3 KL {b['kl']:.4f}")
                check(b["kl"] < a["kl"], "MoE: MiLo's KL to the source is below HQQ's")

    # routed experts on a base of their own (--expert-group): MiLo's default puts them on HQ3_128 and
    # the rest on HQ3_32, the budget still 3.75; HQQ's default keeps them on HQ3_32; the flag sets it
    def base_types(path):
        keys = {f.name: f for f in gguf.GGUFReader(path).fields.values()}
        wq = {n[len("stepq.qtype."):]: field_value(f)[0] for n, f in keys.items()
              if n.startswith("stepq.qtype.") and n.endswith(".weight")}
        return ({q for n, q in wq.items() if "_exps." in n}, {q for n, q in wq.items() if "_exps." not in n},
                field_value(keys["stepq.quantize.expert_group"])[0])
    me, m64 = os.path.join(tmp, "moe-eg.gguf"), os.path.join(tmp, "moe-eg64.gguf")
    r = quantize(msrc, me, "--method", "milo", "--iters", "2")
    if os.path.exists(me):
        exps, rest, eg = base_types(me)
        check(exps == {"HQ3_128"} and rest == {"HQ3_32"} and eg == 128 and "routed experts HQ3_128" in r.stdout,
              f"milo's default: experts {exps}, the rest {rest}, expert_group {eg}; the summary names them", r)
        eff = summary_bits(r.stdout, "effective")
        check(eff is not None and 3.70 < eff <= 3.75 + 2e-3, f"the compensators still fill 3.75 bits/weight ({eff})", r)
    r = quantize(msrc, m64, "--method", "milo", "--iters", "2", "--expert-group", "64")
    if os.path.exists(m64):
        exps, rest, eg = base_types(m64)
        check(exps == {"HQ3_64"} and rest == {"HQ3_32"} and eg == 64, f"--expert-group 64: experts {exps}", r)
    if os.path.exists(os.path.join(tmp, "moe-hqq.gguf")):
        exps, rest, eg = base_types(os.path.join(tmp, "moe-hqq.gguf"))
        check(exps == {"HQ3_32"} and rest == {"HQ3_32"} and eg == 32, f"hqq's default: experts {exps}, rest {rest}")

    # (c) bad input
    bad = [(["--rank-policy", "bogus"], "rank policy"), (["--compensator-bits", "5"], "compensator-bits"),
           (["--rank-policy", "frequency"], "moe-stats"), (["--rank-budget", "3.3"], "rank-budget"),
           (["--tensors", "nothing.matches"], "no tensor")]
    for args, word in bad:
        out = os.path.join(tmp, "bad.gguf")
        if os.path.exists(out):
            os.remove(out)
        r = stepq("quantize", "-m", msrc, "-o", out, "--method", "milo", *args)
        check(r.returncode == 1 and word in r.stderr and not os.path.exists(out),
              f"{' '.join(args)}: exit 1 naming '{word}', no output", r)
    for flag, value in [("--dense-rank", "-5"), ("--sparse-rank", "-5"), ("--ffn-rank", "-5"), ("--expert-group", "48")]:
        out = os.path.join(tmp, "bad.gguf")  # refused by the option parser
        r = stepq("quantize", "-m", msrc, "-o", out, flag, value)
        check(r.returncode not in (0, None) and r.returncode < 128 and flag in r.stderr and not os.path.exists(out),
              f"{flag} {value}: refused naming the flag, no output", r)

finish("milo")
