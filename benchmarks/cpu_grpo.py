"""CPU GRPO speed and memory: seconds per step, generated tokens per second and peak RSS for the tiny preset.

Runs a few real GRPO steps of SmolLM2-135M-Instruct (LoRA, trl-peft backend) on GSM8K train questions for each
setting in the grid and prints a table. The first step of each setting is a warm-up and is not timed.

Run: ``make benchmark`` or ``HF_HUB_OFFLINE=1 GRPO_COURSE_TINY=1 python benchmarks/cpu_grpo.py [--steps 4]``.
Numbers depend on the CPU and on what else runs on it; compare settings within one table.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

# (generations per prompt, max completion tokens): the tests' setting, the tiny preset's group, the demo's setting.
GRID = [(2, 8), (4, 32), (6, 48), (8, 64)]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def bench(generations: int, length: int, steps: int, rows, runs_dir: str) -> dict:
    from transformers import TrainerCallback

    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.training import build_trainer, grpo_config, train

    class Clock(TrainerCallback):
        def __init__(self):
            self.starts, self.ends = {}, {}

        def on_step_begin(self, args, state, control, **kwargs):
            self.starts[state.global_step + 1] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    config = grpo_config("tiny", run_name=f"bench-g{generations}-l{length}", runs_dir=runs_dir, max_steps=steps + 1,
                         num_generations=generations, per_device_train_batch_size=generations,
                         max_completion_length=length, save_steps=10_000)
    clock = Clock()
    trainer = build_trainer(model, tokenizer, rows, REWARD_FUNCS, config, lora_rank=16, live_plot=False,
                            callbacks=[clock])
    train(trainer)
    timed = range(2, steps + 2)  # step 1 is the warm-up
    seconds = sum(clock.ends[s] - clock.starts[s] for s in timed)
    logs = {h["step"]: h for h in trainer.state.log_history if "reward" in h}
    tokens = sum(logs[s]["completions/mean_length"] * generations for s in timed)
    return {"generations": generations, "max_tokens": length, "s_per_step": seconds / steps,
            "tokens_per_s": tokens / seconds, "mean_len": tokens / (generations * steps), "peak_rss": peak_rss_mib()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up step)")
    p.add_argument("--grid", default=",".join(f"{g}x{n}" for g, n in GRID), help="e.g. 2x8,4x32")
    args = p.parse_args(argv)

    import torch

    from grpo_helpers.data import load_gsm8k

    rows = load_gsm8k("train", n=64, prefill="<reasoning>\n")
    print(f"SmolLM2-135M-Instruct, LoRA r16, tiny preset, trl-peft on CPU ({os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads); {args.steps} timed steps per row after 1 warm-up step")
    header = f"{'generations':>11} {'max tokens':>10} {'s/step':>8} {'gen tok/s':>10} {'mean len':>9} {'peak RSS MiB':>13}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as runs:
        for spec in args.grid.split(","):
            g, n = (int(x) for x in spec.lower().split("x"))
            r = bench(g, n, args.steps, rows, runs)
            print(f"{r['generations']:>11} {r['max_tokens']:>10} {r['s_per_step']:>8.2f} {r['tokens_per_s']:>10.1f} "
                  f"{r['mean_len']:>9.1f} {r['peak_rss']:>13.0f}", flush=True)
    print("gen tok/s: completion tokens generated per second of a whole GRPO step (generation + scoring + backward).")
    print("peak RSS is the process peak so far (it only grows down the table).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
