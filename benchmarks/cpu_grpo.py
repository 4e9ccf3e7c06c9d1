"""CPU GRPO speed and memory: seconds per step, generated tokens per second and peak RSS for the tiny recipe.

Runs real GRPO steps of SmolLM2-135M-Instruct (LoRA, trl-peft backend) on GSM8K train questions with the settings
of ``make demo`` (grpo_helpers.demo.DEMO: tiny system prompt, SFT priming first, group size, completion length,
prompt-length cut, LoRA rank, reward weights) and prints one table row per setting. The first GRPO step of each
setting is a warm-up and is not timed. Priming is timed on its own.

Run: ``make benchmark`` or ``HF_HUB_OFFLINE=1 GRPO_COURSE_TINY=1 python benchmarks/cpu_grpo.py [--steps 4]
[--grid 6x72,8x96]``. Numbers depend on the CPU and on what else runs on it: measure with nothing else running
(on the shared course machine: under ``flock /tmp/cpu.lock``) and compare settings within one table.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def bench(generations: int, length: int, steps: int, runs_dir: str, prime_steps: int) -> dict:
    """Prime (as the demo does), then 1 warm-up + ``steps`` timed GRPO steps; the measured numbers as a dict."""
    from transformers import TrainerCallback

    from grpo_helpers import demo
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.training import add_lora, build_trainer, grpo_config, train

    class Clock(TrainerCallback):
        def __init__(self):
            self.starts, self.ends = {}, {}

        def on_step_begin(self, args, state, control, **kwargs):
            self.starts[state.global_step + 1] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()

    d = demo.DEMO
    system_prompt = demo.system_prompt_text("tiny")
    demo._seed_everything(demo.SEED)
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    rows = load_gsm8k("train", n=d["train_rows"], seed=demo.SEED, system_prompt=system_prompt, prefill=demo.PREFILL)
    model = add_lora(model, rank=d["lora_rank"], seed=demo.SEED)
    prime_s = 0.0
    if prime_steps:
        examples = demo.priming_rows(d["prime_rows"], system_prompt, exclude=set(rows["question"]))
        t = time.perf_counter()
        demo.prime(model, tokenizer, examples, prime_steps, d["prime_lr"], d["prime_batch"])
        prime_s = (time.perf_counter() - t) / prime_steps
    config = grpo_config("tiny", run_name=f"bench-g{generations}-l{length}", runs_dir=runs_dir, max_steps=steps + 1,
                         num_generations=generations, max_completion_length=length, learning_rate=d["learning_rate"],
                         temperature=d["temperature"], save_steps=10_000)
    clock = Clock()
    weights = {f: demo.WEIGHTS.get(f.__name__, 1.0) for f in REWARD_FUNCS}
    trainer = build_trainer(model, tokenizer, rows, weights, config, lora_rank=d["lora_rank"],
                            max_prompt_length=d["max_prompt_length"], live_plot=False, callbacks=[clock])
    train(trainer)
    timed = range(2, steps + 2)  # step 1 is the warm-up
    seconds = sum(clock.ends[s] - clock.starts[s] for s in timed)
    logs = {h["step"]: h for h in trainer.state.log_history if "reward" in h}
    tokens = sum(logs[s]["completions/mean_length"] * generations for s in timed)
    return {"generations": generations, "max_tokens": length, "s_per_step": seconds / steps,
            "tokens_per_s": tokens / seconds, "mean_len": tokens / (generations * steps), "peak_rss": peak_rss_mib(),
            "prime_s_per_step": prime_s}


def main(argv=None) -> int:
    from grpo_helpers import demo

    d = demo.DEMO
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4, help="timed GRPO steps per setting (after one warm-up step)")
    p.add_argument("--grid", default=f"{d['generations']}x{d['completion_length']}",
                   help="generations x max completion tokens, comma-separated, e.g. 6x72,8x96 (default: the demo's)")
    p.add_argument("--prime-steps", type=int, default=d["prime_steps"], help="SFT priming steps first (0: none)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: as the demo chooses)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(demo.choose_threads(args.threads))
    print(f"SmolLM2-135M-Instruct, LoRA r{d['lora_rank']}, demo recipe (tiny system prompt, prompts <= "
          f"{d['max_prompt_length']} tokens, {args.prime_steps} priming steps), trl-peft on CPU ({os.cpu_count()} "
          f"cores, {torch.get_num_threads()} torch threads); {args.steps} timed steps per row after 1 warm-up step")
    header = (f"{'generations':>11} {'max tokens':>10} {'s/step':>8} {'gen tok/s':>10} {'mean len':>9} "
              f"{'peak RSS MiB':>13} {'priming s/step':>15}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as runs:
        for spec in args.grid.split(","):
            g, n = (int(x) for x in spec.lower().split("x"))
            r = bench(g, n, args.steps, runs, args.prime_steps)
            print(f"{r['generations']:>11} {r['max_tokens']:>10} {r['s_per_step']:>8.2f} {r['tokens_per_s']:>10.1f} "
                  f"{r['mean_len']:>9.1f} {r['peak_rss']:>13.0f} {r['prime_s_per_step']:>15.2f}", flush=True)
    print("gen tok/s: completion tokens generated per second of a whole GRPO step (generation + scoring + backward).")
    print("peak RSS is the process peak so far (it only grows down the table).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
