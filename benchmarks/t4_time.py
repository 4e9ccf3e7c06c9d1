"""How long a GRPO step takes on a free T4: measured on the lent GPU, split into generation and the rest, then scaled.

On the GPU machine (kit unpacked, tests/gpu/README.md), each row runs the course's Unsloth path without vLLM (the
``unsloth`` profile, the T4 default) in a T4's configuration: the model loaded in float16, fp16 training, the seed's
GRPO settings (``grpo_config("seed")``: beta 0.04, so a reference forward pass). Random weights in the real shapes
(no hub there) rarely emit EOS, so every completion runs to ``max_completion_length``: the worst case. TRL's own
profiling timer around ``transformers.generate`` splits each step into generation and the rest (loss, backward,
optimizer, reference pass).

    python benchmarks/t4_time.py --measure --out DIR     # GPU machine: writes DIR/t4_time.json
    python benchmarks/t4_time.py --report grpo_helpers/data_files/t4_time.json   # anywhere: the table (markdown)

The shipped measurement is grpo_helpers/data_files/t4_time.json; grpo_helpers.timing turns it into T4 estimates
(the formula is written out there) and notebooks 06 and 08 print that table, labelled estimates, beside the T4
runs Unsloth's own notebooks measured (timing.ANCHORS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = 3
ROWS = [  # preset shape, 4-bit, generations, completion tokens
    dict(preset="llama-3.1-8b-instruct", four_bit=True, generations=6, completion=768, label="seed recipe"),
    dict(preset="qwen2.5-1.5b-instruct", four_bit=False, generations=6, completion=384, label="T4 preset candidate"),
    dict(preset="qwen2.5-1.5b-instruct", four_bit=True, generations=6, completion=384, label="T4 preset candidate"),
    dict(preset="llama-3.2-1b-instruct", four_bit=False, generations=6, completion=384, label="T4 preset candidate"),
]


# --------------------------------------------------------------------------------------------- on the GPU machine

def measure_row(row: dict, workdir: Path) -> dict:
    import gc

    import torch
    from transformers import TrainerCallback
    from trl.extras import profiling

    from grpo_helpers import training
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import count_parameters, load_model, random_model_dir
    from grpo_helpers.rewards import REWARD_FUNCS

    timings: list[tuple[str, float]] = []
    original = profiling.ProfilingContext._log_metrics

    def record(self, duration):  # TRL times generate/rewards/... with this; keep every duration
        timings.append((getattr(self, "name", ""), duration))
        return original(self, duration)

    profiling.ProfilingContext._log_metrics = record

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.marks, self._t = [], [], None

        def on_step_begin(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self._t = time.perf_counter()
            self.marks.append(len(timings))

        def on_step_end(self, args, state, control, **kw):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._t)

    path = random_model_dir(row["preset"])
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model, tokenizer = load_model(str(path), backend="unsloth", load_in_4bit=row["four_bit"], dtype="float16",
                                  max_seq_length=256 + row["completion"])
    params = count_parameters(model)[1]
    model = training.add_lora(model, backend="unsloth", rank=32)
    config = training.grpo_config("seed", run_name=f"t4time-{row['preset']}", runs_dir=workdir, backend="unsloth",
                                  model=model, max_steps=STEPS, num_generations=row["generations"],
                                  per_device_train_batch_size=row["generations"],
                                  max_completion_length=row["completion"], save_strategy="no")
    dataset = load_gsm8k("train", n=STEPS * 2 + 8, source="offline")
    timer = StepTimer()
    trainer = training.build_trainer(model, tokenizer, dataset, REWARD_FUNCS, config, backend="unsloth", lora_rank=32,
                                     max_prompt_length=256, callbacks=[timer], live_plot=False)
    training.train(trainer, overwrite=True)
    profiling.ProfilingContext._log_metrics = original
    marks = timer.marks + [len(timings)]
    per_step = [timings[a:b] for a, b in zip(marks, marks[1:])]
    gen = [sum(d for n, d in step if n.endswith("transformers.generate")) for step in per_step]
    logs = [h for h in trainer.state.log_history if "reward" in h]
    result = dict(row, ok=True, steps_s=[round(t, 3) for t in timer.times], generate_s=[round(g, 3) for g in gen],
                  timer_names=sorted({n for n, _ in timings}), fp16=bool(config.fp16), bf16=bool(config.bf16),
                  peak_gb=round(torch.cuda.max_memory_allocated() / 2**30, 3), parameters=params,
                  completion_mean_tokens=round(statistics.mean(h.get("completions/mean_length", 0) for h in logs), 1))
    del trainer, model
    gc.collect()
    torch.cuda.empty_cache()
    return result


def measure(out: Path, rows: list[dict]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    import unsloth  # noqa: F401  (before transformers/trl/peft)
    import torch

    out.mkdir(parents=True, exist_ok=True)
    path = out / "t4_time.json"
    data = dict(date=time.strftime("%Y-%m-%d"), device=torch.cuda.get_device_name(),
                capability=list(torch.cuda.get_device_capability()), torch=torch.__version__,
                arch_list=torch.cuda.get_arch_list(), unsloth=unsloth.__version__, rows=[])
    workdir = Path(tempfile.mkdtemp(prefix="t4time-"))
    for row in rows:
        t0 = time.time()
        try:
            result = measure_row(row, workdir)
        except Exception as err:  # noqa: BLE001 - one failed row is a result, the rest still run
            import traceback

            traceback.print_exc()
            result = dict(row, ok=False, error=f"{type(err).__name__}: {str(err)[:300]}")
        result["wall_s"] = round(time.time() - t0, 1)
        data["rows"].append(result)
        path.write_text(json.dumps(data, indent=1))
        print("ROW " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------------------- report

def report(data: dict) -> str:
    """The measured rows of ``data`` and their T4 estimates (grpo_helpers.timing), then Unsloth's T4 anchors."""
    from grpo_helpers import timing

    lines = [f"Measured on {data['device']} ({data['date']}, torch {data['torch']}, unsloth {data['unsloth']}), float16 "
             "+ fp16 training as on a T4, no vLLM, every completion full length; T4 figures are estimates "
             "(grpo_helpers.timing).", "", "| model | weights | G x L | lent GPU s/step (generate + rest) | "
             "T4 s/step (estimate) |", "|---|---|---|---|---|"]
    for row in data["rows"]:
        weights = "4-bit" if row["four_bit"] else "16-bit"
        if not row.get("ok"):
            lines.append(f"| {row['preset']} | {weights} | {row['generations']} x {row['completion']} | failed | |")
            continue
        e = timing.t4_estimate(row["preset"], four_bit=row["four_bit"], generations=row["generations"],
                               completion=row["completion"])
        lines.append(f"| {row['preset']} | {weights} | {row['generations']} x {row['completion']} | "
                     f"{e['measured_step_s']:.1f} ({e['measured_generate_s']:.1f} + {e['measured_rest_s']:.1f}) | "
                     f"{e['t4_step_s']:.0f} |")
    lines += ["", "| Unsloth notebook run on a free Colab T4 | model | vLLM | G x L | steps | wall | s/step |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {a['notebook']} | {a['model']} | {'yes' if a['vllm'] else 'no'} | {a['generations']} x "
              f"{a['completion']} | {a['steps']} | {a['wall']} | {timing.wall_seconds(a['wall']) / a['steps']:.1f} |"
              for a in timing.ANCHORS]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", action="store_true", help="run the rows on this GPU")
    parser.add_argument("--out", type=Path, default=Path("/tmp/t4time"))
    parser.add_argument("--rows", default="all", help="comma-separated row numbers (0-based) or 'all'")
    parser.add_argument("--report", type=Path, help="a t4_time.json to turn into the estimate table")
    args = parser.parse_args()
    if args.measure:
        rows = ROWS if args.rows == "all" else [ROWS[int(i)] for i in args.rows.split(",")]
        measure(args.out, rows)
    if args.report:
        print(report(json.loads(args.report.read_text())))


if __name__ == "__main__":
    main()
