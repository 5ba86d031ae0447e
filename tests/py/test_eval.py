#!/usr/bin/env python3
"""stepq eval on SmolLM2-135M: the JSON result is complete and consistent, greedy Lookahead
Reasoning with the target as its own draft gives plain decoding's tokens and answers problem for
problem, the shared data is found, and bad input gets a message that names the problem."""
import json, os, tempfile

from common import MODELS, check, finish, stepq

SMOL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")

# The first three GSM8K test questions, with their gold answers.
QUESTIONS = [
    ("Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
     "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
     "How much in dollars does she make every day at the farmers' market?", "16 - 3 - 4 = 9; 9 * 2 = 18\n#### 18"),
    ("A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?",
     "2/2 = 1; 2 + 1 = 3\n#### 3"),
    ("Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in $50,000 in repairs.  This "
     "increased the value of the house by 150%.  How much profit did he make?", "#### 70,000"),
]
PROBLEM_FIELDS = ["id", "answer", "gold", "correct", "tokens", "seconds"]


def last_json(r):
    lines = r.stdout.strip().split("\n")
    try:
        return json.loads(lines[-1])
    except (json.JSONDecodeError, IndexError):
        return None


def check_mode(m, name):
    """The fields of one mode's result and their consistency."""
    for k in ["mode", "n", "accuracy", "tokens_per_s", "wall_s", "generated_tokens", "per_problem"]:
        check(k in m, f"{name}: field '{k}'")
    per = m.get("per_problem", [])
    check(len(per) == m.get("n") == 3, f"{name}: per_problem has n = 3 entries")
    check(all(all(k in p for k in PROBLEM_FIELDS) for p in per), f"{name}: every problem has {PROBLEM_FIELDS}")
    check(all(p["tokens"] > 0 for p in per), f"{name}: every problem generated tokens")
    check([p["gold"] for p in per] == ["18", "3", "70000"], f"{name}: gold answers read from the data file")
    if per:
        mean = sum(p["correct"] for p in per) / len(per)
        check(abs(m["accuracy"] - mean) < 1e-12, f"{name}: accuracy {m['accuracy']} = mean(correct) {mean}")
        check(m["generated_tokens"] == sum(p["tokens"] for p in per), f"{name}: generated_tokens = sum of tokens")
    check(m.get("tokens_per_s", 0) > 0 and m.get("wall_s", 0) > 0, f"{name}: tokens_per_s and wall_s positive")


with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "three.jsonl")
    with open(data, "w", encoding="utf-8") as f:
        for q, a in QUESTIONS:
            f.write(json.dumps({"question": q, "answer": a}) + "\n")

    # --- ar and lr over the same problems -------------------------------------------------------
    r = stepq("eval", "gsm8k", "-m", SMOL, "--draft", SMOL, "--data", data, "--mode", "ar,lr", "--json", "-n", "3",
              "--max-tokens", "48", "-t", "2")
    check(r.returncode == 0, "eval gsm8k --mode ar,lr runs", r)
    j = last_json(r)
    check(j is not None, "the last stdout line is one JSON object", r)
    if j:
        print(f"  ar: {j['tokens_per_s']:.1f} tok/s, accuracy {j['accuracy']:.3f}; "
              f"answers {[p['answer'] for p in j['per_problem']]}")
        check(j.get("mode") == "ar" and j.get("benchmark") == "gsm8k", "top level: the first mode (ar), the benchmark")
        check_mode(j, "top level")
        modes = j.get("modes", [])
        check([m.get("mode") for m in modes] == ["ar", "lr"], "modes: ar then lr")
        for m in modes:
            check_mode(m, f"mode {m.get('mode')}")
        if len(modes) == 2:
            ar, lr = modes
            check("speedup_vs_ar" in lr and "speedup_vs_ar" not in ar, "lr reports its speedup over ar")
            la = lr.get("lookahead", {})
            for k in ["drafted_steps", "kept_steps", "step_acceptance", "kept_at_depth", "verifier_calls", "rounds"]:
                check(k in la, f"lr: lookahead.{k}")
            # Lossless: the draft is the target, so greedy lr writes exactly what greedy ar writes.
            same_tokens = [p["tokens"] for p in ar["per_problem"]] == [p["tokens"] for p in lr["per_problem"]]
            same_answers = [p["answer"] for p in ar["per_problem"]] == [p["answer"] for p in lr["per_problem"]]
            check(same_tokens and same_answers, "greedy lr (draft = target) gives ar's tokens and answers per problem")
            check(0 < la.get("kept_steps", 0) <= la.get("drafted_steps", 0),
                  f"draft = target: drafted steps kept ({la.get('kept_steps')}/{la.get('drafted_steps')})")
    check("1/3" in r.stderr and "3/3" in r.stderr and "accuracy" in r.stderr, "progress per problem on stderr", r)

    # --- the shared data by default, a seeded selection -----------------------------------------
    a = stepq("eval", "aime2025", "-m", SMOL, "-n", "2", "--seed", "7", "--max-tokens", "2", "--json", "-t", "2")
    b = stepq("eval", "aime2025", "-m", SMOL, "-n", "2", "--seed", "7", "--max-tokens", "2", "--json", "-t", "2")
    ja, jb = last_json(a), last_json(b)
    check(a.returncode == 0 and ja is not None and len(ja["per_problem"]) == 2, "aime2025 from the shared data", a)
    if ja and jb:
        ids = [p["id"] for p in ja["per_problem"]]
        check(ids == [p["id"] for p in jb["per_problem"]], f"--seed picks the same problems each time ({ids})")
        check(all(p["gold"].isdigit() for p in ja["per_problem"]), "AIME gold answers are integers")

    # --- errors ---------------------------------------------------------------------------------
    r = stepq("eval", "gsm9k", "-m", SMOL)
    check(r.returncode != 0 and "unknown benchmark" in r.stderr and "gsm9k" in r.stderr, "unknown benchmark is named", r)
    r = stepq("eval", "gsm8k", "-m", SMOL, "--mode", "fast")
    check(r.returncode != 0 and "unknown mode" in r.stderr and "fast" in r.stderr, "unknown mode is named", r)
    r = stepq("eval", "gsm8k", "-m", SMOL, "--mode", "ar,lr", "--data", data)
    check(r.returncode != 0 and "--draft" in r.stderr and "lr" in r.stderr, "lr without --draft: says to give --draft", r)
    r = stepq("eval", "gsm8k", "-m", SMOL, "--mode", "sd", "--data", data)
    check(r.returncode != 0 and "--draft" in r.stderr and "--ngram" in r.stderr, "sd without a drafter is refused", r)
    r = stepq("eval", "gsm8k", "-m", SMOL, "--data", os.path.join(tmp, "missing.jsonl"))
    check(r.returncode != 0 and "missing.jsonl" in r.stderr, "missing data file is named", r)
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n" + json.dumps({"question": "2+2?"}) + "\n")
    r = stepq("eval", "gsm8k", "-m", SMOL, "--data", bad)
    check(r.returncode != 0 and "bad.jsonl:2" in r.stderr and "'answer'" in r.stderr, "a row without 'answer' is named", r)

finish("eval")
