"""``make demo``: the whole course in one command on a laptop CPU, in about ten minutes.

Real SmolLM2-135M-Instruct, real GSM8K: evaluate on held-out test questions, train with GRPO (LoRA) on train
questions, evaluate again, and write ``runs/<name>/``: ``metrics.csv``, ``reward_curve.png``, ``before_after.png``,
``eval_before.jsonl`` / ``eval_after.jsonl``, ``lora/`` and ``report.md``. The curve is copied to
``assets/reward_curve.png`` for the README.

What to expect: a 135M model does not learn to solve grade-school math in a few minutes; its correctness reward
stays at (or near) zero and the report says so. What it does learn, visibly, is the ``<reasoning>/<answer>`` format
the rewards ask for (the assistant turn is prefilled with ``<reasoning>\\n`` so that some completions reach the
tags and the group has reward variance to learn from).

Run: ``python -m grpo_helpers.demo [--steps 30] [--name demo] [--overwrite]`` (``make demo ARGS="--steps 30"``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

PREFILL = "<reasoning>\n"
SEED = 3407

# Defaults for a 2-core CPU: about 7 minutes of GRPO on an idle machine (~20 s/step), plus two evaluations.
# Prompts are cut to GSM8K questions of at most 90 prompt tokens (about a fifth of them): on a CPU the backward pass
# over the prompt costs more than generating the completion. 128 completion tokens: shorter completions almost never
# reach a closing tag, so every completion of a group scores the same and GRPO has nothing to learn from.
DEMO = dict(steps=20, generations=8, completion_length=128, learning_rate=5e-4, lora_rank=16, train_rows=256,
            max_prompt_length=90, eval_rows=16, eval_tokens=128)
# Reward weights (GRPOConfig.reward_weights): the graded tag-count reward carries the learning signal early on
# (every tag written earns something), the all-or-nothing format rewards take over once the tags appear.
WEIGHTS = {"xmlcount_reward": 2.0, "soft_format_reward": 1.0, "strict_format_reward": 1.0, "int_reward": 0.5,
           "correctness_reward": 1.0}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m grpo_helpers.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=None, help="run folder name under runs/ (default: demo-<date>-<time>)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--steps", type=int, default=DEMO["steps"])
    p.add_argument("--generations", type=int, default=DEMO["generations"], help="completions per prompt (group size)")
    p.add_argument("--completion-length", type=int, default=DEMO["completion_length"], help="max completion tokens")
    p.add_argument("--lr", type=float, default=DEMO["learning_rate"])
    p.add_argument("--rank", type=int, default=DEMO["lora_rank"])
    p.add_argument("--train-rows", type=int, default=DEMO["train_rows"])
    p.add_argument("--max-prompt-length", type=int, default=DEMO["max_prompt_length"],
                   help="drop training questions with longer prompts (tokens)")
    p.add_argument("--eval-rows", type=int, default=DEMO["eval_rows"])
    p.add_argument("--eval-tokens", type=int, default=DEMO["eval_tokens"])
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the cores not busy right now)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the same name")
    p.add_argument("--no-assets", action="store_true", help="do not copy the curve into assets/")
    return p.parse_args(argv)


def _clock(t0: float) -> str:
    s = time.time() - t0
    return f"{int(s // 60)}:{int(s % 60):02d}"


def choose_threads(requested: int = 0) -> int:
    """CPU threads for torch: ``requested``, or the cores that are idle now (at least 1).

    On a busy CPU, more OpenMP threads than free cores is far slower than fewer: the threads spin-wait for each other
    (measured here with another job running: 8 x 48-token generation took 65 s with 2 threads, 18 s with 1).
    """
    import os

    import psutil

    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    # A short sample of CPU use now, not the 1-minute load average: that still counts `make setup`'s pip install.
    busy = psutil.cpu_percent(interval=0.5) / 100 * cores
    return max(1, min(cores, round(cores - busy)))


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


def reward_summary(rows: list[dict], k: int = 10) -> dict:
    """First-k and last-k means of the total reward and of each reward (the report's headline numbers)."""
    from grpo_helpers.plotting import reward_names
    from grpo_helpers.training import first_last_mean

    out = {"total": first_last_mean([r.get("reward") for r in rows], k)}
    for name in reward_names(rows):
        out[name] = first_last_mean([r.get(f"rewards/{name}/mean") for r in rows], k)
    for key in ("completions/mean_length", "entropy"):
        out[key] = first_last_mean([r.get(key) for r in rows], k)
    return out


def verdict(summary: dict, rows: list[dict], before, after) -> list[str]:
    """Plain-language conclusions, computed from the numbers (never claimed when the numbers do not show it)."""
    first, last = summary["total"]
    lines = []
    if last > first + 0.05:
        lines.append(f"The mean total reward rose from {first:.3f} (first 10 steps) to {last:.3f} (last 10 steps).")
    else:
        lines.append(f"The mean total reward did NOT clearly rise: {first:.3f} (first 10 steps) vs {last:.3f} "
                     f"(last 10). Try more --steps or a different --lr.")
    rose = [f"{n} {a:.3f} -> {b:.3f}" for n, (a, b) in summary.items()
            if n not in ("total", "completions/mean_length", "entropy") and b > a + 0.02]
    if rose:
        lines.append("Rewards that rose (first 10 -> last 10 steps): " + "; ".join(rose) + ".")
    corr = summary.get("correctness_reward", (0.0, 0.0))
    if max(corr) == 0 and after.accuracy <= before.accuracy:
        lines.append("GSM8K correctness did not move: the correctness reward stayed at 0 and test accuracy is "
                     f"{after.accuracy:.0%}. A 135M model cannot learn grade-school math in a few CPU minutes.")
    elif after.accuracy > before.accuracy:
        lines.append(f"Test accuracy changed from {before.accuracy:.0%} to {after.accuracy:.0%} on {after.n} questions "
                     "(tiny sample: treat as noise unless it repeats).")
    else:
        lines.append(f"Test accuracy: {before.accuracy:.0%} before, {after.accuracy:.0%} after ({after.n} questions).")
    soft = summary.get("soft_format_reward", (0.0, 0.0))
    if after.format_rate > before.format_rate:
        lines.append(f"Format (tags in order) on held-out test questions: {before.format_rate:.0%} -> "
                     f"{after.format_rate:.0%}; strict seed layout: {before.strict_format_rate:.0%} -> "
                     f"{after.strict_format_rate:.0%}.")
    elif soft[1] <= soft[0] + 0.02:
        lines.append(f"The full <reasoning>/<answer> format was NOT learned: the soft format reward stayed at "
                     f"{soft[1]:.3f} and the held-out format rate is {after.format_rate:.0%} "
                     f"(before: {before.format_rate:.0%}).")
    ints, length = summary.get("int_reward", (0.0, 0.0)), summary["completions/mean_length"]
    if ints[1] > ints[0] + 0.05 and soft[1] <= soft[0] + 0.02 and length[1] < 0.8 * length[0]:
        lines.append(f"Shortcut: completions got shorter ({length[0]:.0f} -> {length[1]:.0f} tokens) and more of them "
                     "write a bare <answer>number</answer> block, which int_reward (and the </answer> tag of "
                     "xmlcount_reward) pay for, without the reasoning block the format asks for.")
    entropy = [r.get("entropy") for r in rows if r.get("entropy") is not None]
    length = [r.get("completions/mean_length") for r in rows if r.get("completions/mean_length") is not None]
    if entropy and length and entropy[-1] < 0.1:
        lines.append(f"Warning, reward hacking: by the last step the policy's entropy fell to {entropy[-1]:.3f} and "
                     f"completions to {length[-1]:.0f} tokens; the model is collapsing onto an empty template that "
                     "earns the format rewards without reasoning (notebook 04 discusses this).")
    return lines


def write_report(path: Path, args, summary, comparison, before, after, timings, lines, rows) -> None:
    first, last = summary["total"]
    md = [f"# GRPO tiny CPU demo: {path.parent.name}", "",
          f"SmolLM2-135M-Instruct (LoRA r={args.rank}), real GSM8K. Seed **{args.seed}**. "
          f"{args.steps} GRPO steps x {args.generations} completions of at most {args.completion_length} tokens, "
          f"lr {args.lr:g}, prefill `{PREFILL.strip()}`, training questions of at most {args.max_prompt_length} "
          f"prompt tokens.", "",
          "## Reward", "",
          f"Mean total reward, first 10 steps: **{first:.3f}**; last 10 steps: **{last:.3f}** (seed {args.seed}).", "",
          "| reward (weight) | first 10 | last 10 |", "|---|---:|---:|"]
    for name, (a, b) in summary.items():
        if name in ("total", "completions/mean_length", "entropy"):
            continue
        md.append(f"| {name} ({WEIGHTS.get(name, 1.0):g}) | {a:.3f} | {b:.3f} |")
    md.append(f"| **total (weighted)** | **{first:.3f}** | **{last:.3f}** |")
    ml = summary["completions/mean_length"]
    md += [f"| completion length (tokens) | {ml[0]:.1f} | {ml[1]:.1f} |", "",
           "![reward curve](reward_curve.png)", "",
           f"## Held-out GSM8K test ({after.n} questions, greedy, {args.eval_tokens} new tokens, same for both)", "",
           comparison.table, "", "![before/after](before_after.png)", "",
           "## What this shows", ""] + [f"- {line}" for line in lines]
    md += ["", "## Time", "", "| phase | seconds |", "|---|---:|"] + [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    sample = next((r for r in after.records if r["formatted"]), after.records[0])
    md += ["", "## One answer after training", "", "```", sample["completion"].strip()[:600], "```", ""]
    path.write_text("\n".join(md))


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    timings: dict[str, float] = {}
    print(f"[{_clock(t0)}] GRPO tiny CPU demo: SmolLM2-135M-Instruct on GSM8K, seed {args.seed}", flush=True)

    from grpo_helpers.config import environment_report
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.errors import CourseError
    from grpo_helpers.evaluation import compare, evaluate
    from grpo_helpers.generation import Sampling
    from grpo_helpers.models import load_model
    from grpo_helpers.plotting import save_figure
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.training import (build_trainer, grpo_config, run_folder, save_lora, train,
                                       trainable_parameters)

    print(environment_report(), flush=True)
    import torch

    threads = choose_threads(args.threads)
    torch.set_num_threads(threads)
    print(f"torch threads {threads} (--threads to change)", flush=True)
    name = args.name or time.strftime("demo-%Y%m%d-%H%M%S")
    _seed_everything(args.seed)

    t = time.time()
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    train_ds = load_gsm8k("train", n=args.train_rows, seed=args.seed, prefill=PREFILL)
    test_ds = load_gsm8k("test", n=args.eval_rows, seed=args.seed, prefill=PREFILL)
    timings["load model + data"] = time.time() - t

    config = grpo_config("tiny", run_name=name, runs_dir=args.runs_dir, max_steps=args.steps,
                         num_generations=args.generations, per_device_train_batch_size=args.generations,
                         max_completion_length=args.completion_length, learning_rate=args.lr, seed=args.seed,
                         save_steps=max(1, args.steps // 3))
    run = run_folder(config)
    if run.exists() and any(run.iterdir()) and not args.overwrite:  # refuse before the slow part, not after it
        raise CourseError(f"{run} already exists.", fix="Pass --overwrite, or a new --name.")

    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=args.eval_tokens, n=1, batch_size=8)
    print(f"\n[{_clock(t0)}] 1/3 baseline: {len(test_ds)} held-out GSM8K test questions", flush=True)
    t = time.time()
    before = evaluate(model, tokenizer, test_ds, sampling=sampling, label="before")
    timings["eval before"] = time.time() - t
    print(f"  {before}", flush=True)

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
    save_lora(trainer.model, run / "lora", tokenizer)
    lines = verdict(summary, rows, before, after)
    timings["report"] = time.time() - t
    timings["total"] = time.time() - t0
    write_report(run / "report.md", args, summary, comparison, before, after, timings, lines, rows)
    if not args.no_assets and (run / "reward_curve.png").exists():
        assets = Path("assets")
        assets.mkdir(exist_ok=True)
        shutil.copyfile(run / "reward_curve.png", assets / "reward_curve.png")
        shutil.copyfile(run / "before_after.png", assets / "demo_before_after.png")
        shutil.copyfile(run / "metrics.csv", assets / "demo_metrics.csv")  # scripts/make_figures.py redraws from it
        text = (run / "report.md").read_text().replace("(before_after.png)", "(demo_before_after.png)")
        (assets / "demo_report.md").write_text(text)

    first, last = summary["total"]
    print(f"\n[{_clock(t0)}] done. Seed {args.seed}. Mean total reward: first 10 steps {first:.3f} -> last 10 steps "
          f"{last:.3f}", flush=True)
    print(comparison.table)
    for line in lines:
        print(f"- {line}")
    print(f"Run folder: {run}  (report.md, metrics.csv, reward_curve.png, before_after.png, lora/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
