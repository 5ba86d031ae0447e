#!/usr/bin/env python3
"""Reference tokenizations from llama.cpp (llama-cpp-python) for stepq's tokenizer tests.

Run with a Python that has llama-cpp-python (the venv made by tools/setup_reference_venv.sh):

    ~/.cache/stepq/venv-ref/bin/python tools/make_tokenizer_reference.py [MODEL ...] [pre_variants]
    ~/.cache/stepq/venv-ref/bin/python tools/make_tokenizer_reference.py lines MODEL FILE.json
        (FILE.json: a JSON list of strings; prints a JSON list of llama.cpp's ids for each, with
         add_special=false, parse_special=false. tests/unit/tokenizer_test.cpp runs this when a block
         of a corpus does not match, to show the first differing line with both id lists)

Writes tests/data/tokenizer/<model>.json for the three distinct tokenizers: smollm2 (gpt2 BPE, pre
smollm), gemma3 (SentencePiece with byte fallback), qwen0.5b (gpt2 BPE, pre qwen2); and
pre_variants.json: the pre-tokenizer lists no model here uses (default, gpt-2, llama3, qwen2's on
another vocabulary, starcoder), each on SmolLM2's vocabulary with tokenizer.ggml.pre replaced. The Qwen2.5
1.5B file carries the same tokenizer as the 0.5B; the script checks that (token strings, types,
merges and tokenizer settings all equal) and records the result in qwen0.5b.json.

What is recorded (vocab_only load; llama_tokenize / llama_detokenize / llama_token_to_piece):
- Corpora, tokenized one line at a time with add_special=false, parse_special=false: plain text
  as a model reads it in perplexity runs, without BOS (BOS/EOS adding is covered by the edge
  cases), and with special-token text left as text. Lines are the file split after each '\\n'
  (the '\\n' stays in the line, wikitext2's "\\r\\n" too); for gsm8k a line is the "question"
  field of a record. Each corpus is also tokenized whole, in one call.
- Hash: FNV-1a 64 (offset 0xcbf29ce484222325, prime 0x100000001b3) over the bytes of the ids as
  int32 little-endian, with the 4 bytes FF FF FF FF after each line's ids. One hash per block of
  BLOCK_LINES lines, plus total token counts and the whole-corpus hash.
- Edge cases: full id lists for each text under the four (add_special, parse_special)
  combinations, and llama_detokenize of the (true, true) ids with remove_special=false and
  unparse_special false / true.
- Vocabulary facts: n_vocab, bos, eos, add_bos, add_eos, every EOG id, the token attributes and
  token_to_piece (special false / true) of every id, hashed.
"""
import hashlib
import json
import os
import re
import sys
import ctypes

import llama_cpp
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
sys.path.insert(0, HERE)
from stepq_models import models_dir, sha256_of  # noqa: E402

MODELS_DIR = models_dir()
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
    "qwen0.5b": "qwen2.5-coder-0.5b-instruct.gguf",
}
SAME_AS = {"qwen0.5b": ("qwen1.5b", "qwen2.5-coder-1.5b-instruct.gguf")}
BLOCK_LINES = 64

CORPORA = [
    ("wikitext2", "data/wikitext2/wiki.test.raw", "lines"),
    ("tinyshakespeare", "data/tinyshakespeare/input.txt", "lines"),
    ("gsm8k", "data/gsm8k/test.jsonl", "jsonl:question"),
    ("random", None, "random"),
]

# The "random" corpus: RANDOM_COUNT strings of 1..40 items drawn from RANDOM_POOL by a
# xorshift64* generator (RANDOM_SEED); the pool is stored in the JSON so that the C++ test
# builds the same strings. Odd-numbered strings are tokenized with parse_special=true.
RANDOM_SEED = 0x5EED5EED12345678
RANDOM_COUNT = 20000
RANDOM_POOL = (
    [chr(c) for c in range(0x20, 0x7F)]
    + list("eeeeettttaaaoooiinnsshhrrddll")  # plain letters more often
    + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'LL", "'RE"]
    + ["\t", "\n", "\r", "\r\n", "\n\n", "\x0b", "\x0c", "  ", "   ", "\t\t", " \n", "\n "]
    + ["\u0085", "\u00a0", "\u1680", "\u2000", "\u2003", "\u200a", "\u2028", "\u2029", "\u202f",
       "\u205f", "\u3000", "\u180e", "\u200b", "\u200c", "\u200d", "\ufeff", "\x00", "\x1c", "\x1f", "\x7f"]
    + ["0", "1", "2", "3", "42", "123", "2024", "٣", "３", "²", "½", "Ⅻ", "⑦"]
    + ["é", "ü", "ß", "ſ", "\u212a", "İ", "ǅ", "Ω", "λ", "Я", "ж", "ա", "ש", "ع", "ह", "ि", "ก", "ั"]
    + ["\u0301", "\u0308", "\u0303", "\u20dd", "\u0903"]
    + ["中", "文", "日", "本", "語", "の", "カ", "한", "국", "\u2ffc", "\u31ef", "\U0002ebf0", "\U0002ee5d"]
    + ["😀", "👋", "🏽", "👨", "\u200d", "🌍", "🏳", "\ufe0f", "🧬", "🫠", "\U0001fae8"]
    + ["€", "©", "°", "™", "→", "∀", "√", "♪", "…", "—", "“", "”", "‘", "’", "«", "»", "·"]
    + ["\ue000", "\U000f0000", "\U000e0041", "\u0378", "\U0001fffe", "\u2581"]
    + ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
       "<tool_call>", "</tool_call>", "<|im_sta", "rt|>", "<", ">", "|", "<unused0>", "[multimodal]", "<pad>"]
)


def xorshift_strings(pool, seed, count):
    """Deterministic strings; tests/unit/tokenizer_test.cpp has the same generator."""
    state = seed

    def nxt():
        nonlocal state
        state ^= state >> 12
        state ^= (state << 25) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 27
        return (state * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF

    out = []
    for _ in range(count):
        n = 1 + nxt() % 40
        out.append("".join(pool[nxt() % len(pool)] for _ in range(n)).encode("utf-8"))
    return out

EDGE_CASES = [
    ("empty", ""),
    ("space", " "),
    ("emoji", "Hello 👋 world 🌍!"),
    ("emoji_zwj", "family: 👨‍👩‍👧‍👦 and 🏳️‍🌈"),
    ("emoji_skin_tone", "thumbs 👍🏽👍🏿 wave 👋🏻"),
    ("cjk", "你好，世界。日本語のテキスト、한국어 텍스트"),
    ("cjk_mixed", "GPT模型2024年发布了3个版本"),
    ("combining", "e\u0301 a\u0308 n\u0303o Zalgo: Z\u0351\u036b\u0343a\u0310l\u0352g\u0357o"),
    ("accents", "café naïve résumé Ångström Straße"),
    ("digits_1", "1"),
    ("digits_12", "12"),
    ("digits_123", "123"),
    ("digits_1234", "1234"),
    ("digits_12345678", "12345678"),
    ("digits_in_text", "In 1984, 3.14159 and 1,000,000 people paid $12.50 (v2.0.1)."),
    ("digits_space", " 123 4567 89"),
    ("digits_unicode", "٣٤٥ ３４５ ²³ ½ Ⅻ"),
    ("spaces_2", "a  b"),
    ("spaces_many", "a          b"),
    ("spaces_40", " " * 40),
    ("spaces_trailing", "word   "),
    ("tabs", "\tx\t\ty\t"),
    ("newlines", "a\nb\n\nc\n\n\n"),
    ("crlf", "line one\r\nline two\r\n\r\n"),
    ("mixed_ws", " \t \n \r\n\t\t  x \n\n  y"),
    ("leading_space", " hello"),
    ("leading_spaces", "   hello world"),
    ("nbsp", "a\u00a0b\u2003c\u3000d"),
    ("contractions", "it's I'll we've they're I'm he'd don't"),
    ("contractions_upper", "IT'S I'LL WE'VE THEY'RE I'M HE'D DON'T 'T 'S"),
    ("contractions_odd", "'s 'T 'll 'sup ''s"),
    ("punctuation", "Hello, world! How are you? (fine) [ok] {yes} <no> \"quoted\" 'single' ..."),
    ("symbols", "a+b=c; x<y>z; 50% & @user #tag ~tilde ^caret |pipe| \\back `tick`"),
    ("long_word", "pneumonoultramicroscopicsilicovolcanoconiosis" * 3),
    ("long_token_run", "a" * 300),
    ("code_python", "def fib(n):\n    if n < 2:\n        return n\n    return fib(n-1) + fib(n-2)\n"),
    ("code_cpp", "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n// done\n"),
    ("code_json", '{"key": [1, 2.5, null, true], "nested": {"a": "b"}}'),
    ("url", "https://example.com/path?q=1&r=two#frag"),
    ("im_chat", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
    ("im_inline", "text<|im_end|>more<|endoftext|>"),
    ("gemma_turn", "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n"),
    ("bos_text", "<bos>hello<eos>"),
    ("tool_call", "<tool_call>\n{\"name\": \"f\"}\n</tool_call>"),
    ("special_overlap", "<|im_start|><|im_start|>x<|im_end|"),
    ("special_partial", "<|im_sta rt|> <start_of_turn"),
    ("gemma_ws_tokens", "x\n\n\n\n\ny" + " " * 33 + "z\t\t\tw"),
    ("byte_fallback", "\U0001F9EC\U0001FAE0 \u0F3A\u0F3B \U00010348 \u1E9E \U000E0041"),
    ("control_chars", "a\x00b\x01c\x1fd\x7fe"),
    ("bom", "\ufeffhello"),
    ("rtl", "مرحبا بالعالم שלום עולם"),
    ("devanagari", "नमस्ते दुनिया"),
    ("thai", "สวัสดีชาวโลก"),
    ("greek_cyrillic", "Γειά σου Κόσμε Привет мир"),
    ("math", "∀x∈ℝ: x² ≥ 0 ⇒ √(x²) = |x|"),
    ("apostrophes", "l'homme d'état rock'n'roll ' ' '"),
    ("clean_spaces", "Hello , world ! It 's fine . Isn 't it ?"),
    ("sentencepiece_marker", "a\u2581b \u2581c"),
    ("newline_only", "\n"),
    ("crlf_only", "\r\n"),
    ("unicode_new", "\u2FFC \u31EF \U0001FAE8"),
    ("private_use", "\ue000\U000F0000"),
    ("mongolian_vs", "a\u180eb \u200bc\u200cd"),
]


def fnv1a64(data, h=0xCBF29CE484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


SEP = b"\xff\xff\xff\xff"


def ids_bytes(ids):
    return b"".join(int(i).to_bytes(4, "little", signed=True) for i in ids)




def expected_sha256(fname):
    """The sha256 scripts/fetch-models.py checks for this file."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fetch_models", os.path.join(ROOT, "scripts", "fetch-models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for m in mod.MODELS.values():
        if m["file"] == fname:
            return m["sha256"]
    return None


def corpus_lines(rel, split, count=RANDOM_COUNT):
    if split == "random":
        lines = xorshift_strings(RANDOM_POOL, RANDOM_SEED, count)
        return lines, b"".join(lines)
    path = os.path.join(SHARED, rel)
    data = open(path, "rb").read()
    if split == "lines":
        lines = [l + b"\n" for l in data.split(b"\n")]
        lines[-1] = lines[-1][:-1]
        if not lines[-1]:
            lines.pop()
        return lines, data
    field = split.split(":", 1)[1]
    lines = [json.loads(l)[field].encode("utf-8") for l in data.decode("utf-8").splitlines() if l.strip()]
    return lines, b"".join(lines)


class Ref:
    def __init__(self, path):
        self.llm = Llama(model_path=path, vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)

    def tokenize(self, text, add_special, parse_special):
        return self.llm.tokenize(text, add_bos=add_special, special=parse_special)

    def detokenize(self, ids, unparse_special):
        n = len(ids)
        arr = (llama_cpp.llama_token * max(n, 1))(*ids)
        size = 64 + 64 * n
        while True:
            buf = ctypes.create_string_buffer(size)
            r = llama_cpp.llama_detokenize(self.vocab, arr, n, buf, size, False, unparse_special)
            if r >= 0:
                return buf.raw[:r]
            size = -r + 1

    def piece(self, tok, special):
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            r = llama_cpp.llama_token_to_piece(self.vocab, tok, buf, size, 0, special)
            if r >= 0:
                return buf.raw[:r]
            size = -r + 1


def vocab_facts(ref):
    v = ref.vocab
    n = ref.n_vocab
    eog = [i for i in range(n) if llama_cpp.llama_vocab_is_eog(v, i)]
    attrs = [int(llama_cpp.llama_vocab_get_attr(v, i)) for i in range(n)]
    h_attr = fnv1a64(b"".join(a.to_bytes(4, "little") for a in attrs))
    h_plain = 0xCBF29CE484222325
    h_special = 0xCBF29CE484222325
    for i in range(n):
        h_plain = fnv1a64(ref.piece(i, False) + SEP, h_plain)
        h_special = fnv1a64(ref.piece(i, True) + SEP, h_special)
    return {
        "n_vocab": n,
        "bos": int(llama_cpp.llama_vocab_bos(v)),
        "eos": int(llama_cpp.llama_vocab_eos(v)),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(v)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(v)),
        "eog_ids": eog,
        "n_control": sum(1 for i in range(n) if llama_cpp.llama_vocab_is_control(v, i)),
        "attr_hash": f"{h_attr:016x}",
        "attr_hash_doc": "FNV-1a 64 over llama_vocab_get_attr of every id as uint32 LE",
        "piece_hash": f"{h_plain:016x}",
        "piece_hash_special": f"{h_special:016x}",
        "piece_hash_doc": "FNV-1a 64 over token_to_piece(id, lstrip 0, special false / true) of every id, FF FF FF FF after each",
    }


def corpus_entry(ref, name, rel, split, count=RANDOM_COUNT):
    lines, whole = corpus_lines(rel, split, count)
    blocks = []
    n_tokens = 0
    for b in range(0, len(lines), BLOCK_LINES):
        h = 0xCBF29CE484222325
        for i, line in enumerate(lines[b:b + BLOCK_LINES], start=b):
            ids = ref.tokenize(line, False, split == "random" and i % 2 == 1)
            n_tokens += len(ids)
            h = fnv1a64(ids_bytes(ids) + SEP, h)
        blocks.append(f"{h:016x}")
    whole_ids = ref.tokenize(whole, False, False)
    extra = {}
    if split == "random":
        extra = {"seed": f"{RANDOM_SEED:016x}", "pool": RANDOM_POOL, "parse_special": "odd lines (0-based)"}
    return {
        "path": rel,
        "split": split,
        **extra,
        "n_lines": len(lines),
        "block_lines": BLOCK_LINES,
        "n_tokens": n_tokens,
        "blocks": blocks,
        "whole_n_tokens": len(whole_ids),
        "whole_hash": f"{fnv1a64(ids_bytes(whole_ids) + SEP):016x}",
    }


def edge_entries(ref):
    out = []
    for name, text in EDGE_CASES:
        b = text.encode("utf-8")
        e = {"name": name, "text": text, "ids": {}}
        for add_special in (False, True):
            for parse_special in (False, True):
                key = ("t" if add_special else "f") + ("t" if parse_special else "f")
                e["ids"][key] = ref.tokenize(b, add_special, parse_special)
        tt = e["ids"]["tt"]
        for key, unparse in (("decoded", False), ("decoded_special", True)):
            d = ref.detokenize(tt, unparse)
            e[key] = d.decode("utf-8")  # text came in as valid UTF-8, whole pieces give it back
        out.append(e)
    return out


def tokenizer_identity(path):
    """Everything that defines a GGUF tokenizer, for comparing two files."""
    import gguf
    r = gguf.GGUFReader(path)
    out = {}
    for k, f in r.fields.items():
        if not k.startswith("tokenizer.") or k == "tokenizer.chat_template":
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            if f.types[1] == gguf.GGUFValueType.STRING:
                out[k] = hashlib.sha256(b"\0".join(bytes(f.parts[i]) for i in f.data)).hexdigest()
            else:
                out[k] = hashlib.sha256(b"".join(bytes(f.parts[i]) for i in f.data)).hexdigest()
        else:
            out[k] = repr(f.contents())
    return out


def make(name):
    fname = MODELS[name]
    path = os.path.join(MODELS_DIR, fname)
    sha = sha256_of(path)
    want = expected_sha256(fname)
    if want and sha != want:
        sys.exit(f"{path}: sha256 {sha} differs from scripts/fetch-models.py ({want})")
    print(f"[{name}] loading {path}", file=sys.stderr, flush=True)
    ref = Ref(path)
    res = {
        "model": name,
        "file": fname,
        "sha256": sha,
        "reference": f"llama-cpp-python {llama_cpp.__version__} (llama_tokenize, vocab_only)",
        "corpus_flags": {"add_special": False, "parse_special": False},
        "hash_doc": "FNV-1a 64 over the ids as int32 LE, bytes FF FF FF FF after each line's ids; one hash per block of block_lines lines",
        "vocab": vocab_facts(ref),
        "corpora": {},
        "edge_cases": edge_entries(ref),
    }
    for cname, rel, split in CORPORA:
        print(f"[{name}] {cname}", file=sys.stderr, flush=True)
        res["corpora"][cname] = corpus_entry(ref, cname, rel, split)
    if name in SAME_AS:
        other, ofile = SAME_AS[name]
        opath = os.path.join(MODELS_DIR, ofile)
        same = tokenizer_identity(path) == tokenizer_identity(opath)
        res["same_tokenizer"] = {other: same, "file": ofile, "sha256": sha256_of(opath),
                                 "compared": "every tokenizer.* GGUF key except chat_template (tokens, token types, merges, ids, flags)"}
        print(f"[{name}] tokenizer identical to {other}: {same}", file=sys.stderr)
    write_json(res, os.path.join(OUT, f"{name}.json"))


PRE_VARIANTS = ["default", "gpt-2", "llama3", "qwen2", "starcoder"]
VARIANT_RANDOM_COUNT = 5000


def write_variant(src, dst, pre):
    """A metadata-only copy of `src` with tokenizer.ggml.pre replaced."""
    import gguf
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        if k == "tokenizer.ggml.pre":
            w.add_string(k, pre)
        elif f.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_array(k, f.contents())
        else:
            w.add_key_value(k, f.contents(), f.types[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_pre_variants():
    """The pre-tokenizer lists no real model here uses, checked on SmolLM2's vocabulary: its
    tokenizer.* metadata with tokenizer.ggml.pre replaced (tests/data/tokenizer/pre_variants.json)."""
    import tempfile
    base = "smollm2"
    path = os.path.join(MODELS_DIR, MODELS[base])
    res = {
        "base_model": base,
        "base_file": MODELS[base],
        "base_sha256": sha256_of(path),
        "reference": f"llama-cpp-python {llama_cpp.__version__} (llama_tokenize, vocab_only)",
        "how": "the base model's metadata with tokenizer.ggml.pre replaced; edge-case texts are those of "
               "<base_model>.json, ids with add_special=false, parse_special=false",
        "hash_doc": "as in <base_model>.json",
        "variants": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_VARIANTS:
            print(f"[pre {pre}]", file=sys.stderr, flush=True)
            vpath = os.path.join(tmp, f"{pre}.gguf")
            write_variant(path, vpath, pre)
            ref = Ref(vpath)
            res["variants"][pre] = {
                "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(ref.vocab)),
                "edge_ids": {name: ref.tokenize(text.encode("utf-8"), False, False) for name, text in EDGE_CASES},
                "corpora": {
                    "wikitext2": corpus_entry(ref, "wikitext2", CORPORA[0][1], "lines"),
                    "random": corpus_entry(ref, "random", None, "random", VARIANT_RANDOM_COUNT),
                },
            }
            del res["variants"][pre]["corpora"]["random"]["pool"]  # the one in <base_model>.json
            del ref
    write_json(res, os.path.join(OUT, "pre_variants.json"))


def write_json(res, out):
    os.makedirs(OUT, exist_ok=True)
    text = json.dumps(res, ensure_ascii=False, indent=1)
    # One line per list of ids or hashes keeps the file short and diffable.
    text = re.sub(r'\[\s*((?:-?\d+|"[0-9a-f]{16}")(?:,\s*(?:-?\d+|"[0-9a-f]{16}"))*)\s*\]',
                  lambda m: "[" + re.sub(r"\s+", "", m.group(1)).replace(",", ", ") + "]", text)
    with open(out, "w") as f:
        f.write(text + "\n")
    print(f"wrote {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)


def lines_mode(name, file):
    path = os.path.join(MODELS_DIR, MODELS.get(name, name))
    ref = Ref(path)
    texts = json.load(open(file, encoding="utf-8"))
    print(json.dumps([ref.tokenize(t.encode("utf-8"), False, False) for t in texts]))


def main():
    args = sys.argv[1:]
    if args and args[0] == "lines":
        lines_mode(args[1], args[2])
        return
    for name in args or list(MODELS) + ["pre_variants"]:
        if name == "pre_variants":
            make_pre_variants()
            continue
        if name not in MODELS:
            sys.exit(f"unknown model {name}; known: {', '.join(MODELS)}, pre_variants")
        make(name)


if __name__ == "__main__":
    main()
