"""CPU GRPO speed and memory: seconds per step, generated tokens per second and peak RSS, both stages of the demo.

Stage 1 (format): real GRPO steps of SmolLM2-135M-Instruct (LoRA, trl-peft backend) on GSM8K train questions with
the settings of ``make demo`` (grpo_helpers.demo.DEMO: tiny system prompt, SFT priming first, group size, completion
length, prompt-length cut, LoRA rank, reward weights), one table row per setting. Stage 2 (word sums): GRPO steps
from the recorded format-stage adapter with the demo's stage-2 settings (grpo_helpers.demo.SUMS, rewards
sums_stage.SUMS_WEIGHTS, word_sums training rows). Both train inside ``shared_prefix.share_prefix``, as the demo
does. The first GRPO step of each row is a warm-up and is not timed; priming is timed on its own. Each row runs in a
process of its own, so its peak RSS is that row's.

Run: ``make benchmark`` or ``HF_HUB_OFFLINE=1 GRPO_COURSE_TINY=1 python benchmarks/cpu_grpo.py [--steps 4]
[--grid 6x72,8x96] [--stage format|sums|both]``. Numbers depend on the CPU and on what else runs on it: measure with
nothing else running (on the shared course machine: under ``flock /tmp/cpu.lock``) and compare settings within one
table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _clock():
    """A TrainerCallback that records the wall time of each optimizer step."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.starts, self.ends = {}, {}

        def on_step_begin(self, args, state, control, **kwargs):
            self.starts[state.global_step + 1] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()

    return Clock()


def _measure(trainer, clock, generations: int, steps: int, **extra) -> dict:
    """Train (shared prefix, as the demo), then the numbers of the timed steps 2 .. steps + 1 (1 is the warm-up)."""
    from grpo_helpers.shared_prefix import share_prefix
    from grpo_helpers.training import train

    with share_prefix(trainer.model):
        train(trainer)
    timed = range(2, steps + 2)
    seconds = sum(clock.ends[s] - clock.starts[s] for s in timed)
    logs = {h["step"]: h for h in trainer.state.log_history if "reward" in h}
    tokens = sum(logs[s]["completions/mean_length"] * generations for s in timed)
    return {"generations": generations, "s_per_step": seconds / steps, "tokens_per_s": tokens / seconds,
            "mean_len": tokens / (generations * steps), "peak_rss": peak_rss_mib(), **extra}


def bench(generations: int, length: int, steps: int, runs_dir: str, prime_steps: int) -> dict:
    """Stage 1: prime (as the demo does), then 1 warm-up + ``steps`` timed GRPO steps; the numbers as a dict."""
    from grpo_helpers import demo
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.training import add_lora, build_trainer, grpo_config

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
                         temperature=d["temperature"], save_strategy="no")
    clock = _clock()
    weights = {f: demo.WEIGHTS.get(f.__name__, 1.0) for f in REWARD_FUNCS}
    trainer = build_trainer(model, tokenizer, rows, weights, config, lora_rank=d["lora_rank"],
                            max_prompt_length=d["max_prompt_length"], live_plot=False, callbacks=[clock])
    return _measure(trainer, clock, generations, steps, stage="1 format (GSM8K)", max_tokens=length,
                    prime_s_per_step=prime_s)


def bench_sums(generations: int, length: int, steps: int, runs_dir: str) -> dict:
    """Stage 2: word sums from the recorded format-stage adapter, 1 warm-up + ``steps`` timed GRPO steps."""
    from peft import PeftModel

    from grpo_helpers import demo
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.sums_stage import SUMS_WEIGHTS
    from grpo_helpers.training import build_trainer, grpo_config

    demo._seed_everything(demo.SEED)
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    model = PeftModel.from_pretrained(model, str(demo.recorded_run().lora_path), is_trainable=True)
    rows = demo.sums_datasets(demo.parse_args([]), demo.system_prompt_text("tiny"))["train"]
    config = grpo_config("tiny", run_name=f"bench-sums-g{generations}-l{length}", runs_dir=runs_dir,
                         max_steps=steps + 1, num_generations=generations, max_completion_length=length,
                         learning_rate=demo.SUMS["sums_lr"], temperature=demo.DEMO["temperature"], save_strategy="no")
    funcs = {f.__name__: f for f in REWARD_FUNCS}
    clock = _clock()
    trainer = build_trainer(model, tokenizer, rows, {funcs[n]: w for n, w in SUMS_WEIGHTS.items()}, config,
                            live_plot=False, callbacks=[clock])
    return _measure(trainer, clock, generations, steps, stage="2 word sums", max_tokens=length, prime_s_per_step=0.0)


def _row(r: dict) -> str:
    return (f"| {r['stage']} | {r['generations']} | {r['max_tokens']} | {r['s_per_step']:.2f} | "
            f"{r['tokens_per_s']:.1f} | {r['mean_len']:.1f} | {r['peak_rss']:.0f} | {r['prime_s_per_step']:.2f} |")


def main(argv=None) -> int:
    from grpo_helpers import demo

    d, s = demo.DEMO, demo.SUMS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4, help="timed GRPO steps per setting (after one warm-up step)")
    p.add_argument("--grid", default=f"{d['generations']}x{d['completion_length']}",
                   help="stage 1: generations x max completion tokens, comma-separated, e.g. 6x72,8x96")
    p.add_argument("--sums-grid", default=f"{s['sums_generations']}x{s['sums_completion_length']}",
                   help="stage 2: generations x max completion tokens (default: the demo's)")
    p.add_argument("--stage", choices=("format", "sums", "both"), default="both")
    p.add_argument("--prime-steps", type=int, default=d["prime_steps"], help="SFT priming steps first (0: none)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: as the demo chooses)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one row, in this process, as JSON
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(demo.choose_threads(args.threads))
    if args.one:
        stage, spec = args.one.split(":")
        g, n = (int(x) for x in spec.lower().split("x"))
        with tempfile.TemporaryDirectory() as runs:
            r = (bench(g, n, args.steps, runs, args.prime_steps) if stage == "format"
                 else bench_sums(g, n, args.steps, runs))
        print("ROW " + json.dumps(r), flush=True)
        return 0
    print(f"SmolLM2-135M-Instruct, LoRA r{d['lora_rank']}, demo recipe (tiny system prompt, prefill), trl-peft on CPU "
          f"({os.cpu_count()} cores, {torch.get_num_threads()} torch threads), shared prompt prefix; {args.steps} timed "
          f"steps per row after 1 warm-up step; stage 1 after {args.prime_steps} priming steps, stage 2 from the "
          "recorded format-stage adapter")
    print("| stage | generations | max tokens | s/step | generated tok/s | mean completion | peak RSS MiB | "
          "priming s/step |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    jobs = ([("format", x) for x in args.grid.split(",")] if args.stage in ("format", "both") else []) + \
           ([("sums", x) for x in args.sums_grid.split(",")] if args.stage in ("sums", "both") else [])
    for stage, spec in jobs:
        cmd = [sys.executable, __file__, "--one", f"{stage}:{spec}", "--steps", str(args.steps), "--prime-steps",
               str(args.prime_steps), "--threads", str(torch.get_num_threads())]
        out = subprocess.run(cmd, capture_output=True, text=True)
        rows = [line[4:] for line in out.stdout.splitlines() if line.startswith("ROW ")]
        if out.returncode or not rows:
            print(out.stdout[-2000:] + out.stderr[-4000:], file=sys.stderr)
            return 1
        print(_row(json.loads(rows[0])), flush=True)
    print("generated tok/s: completion tokens generated per second of a whole GRPO step (generation + scoring + "
          "backward). peak RSS: the peak of the process that ran the row.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
