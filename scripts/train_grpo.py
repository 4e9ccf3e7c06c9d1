"""Notebook 06's GRPO run as a script: alone on one device, or on several GPUs under ``accelerate launch``.

    python scripts/train_grpo.py --steps 4                                   # one process (CPU tiny mode, or 1 GPU)
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 4 scripts/train_grpo.py --model ...
    torchrun --nproc_per_node 2 scripts/train_grpo.py ...                    # 2 CPU processes (gloo), as the CI test

It is the course's run written out: GSM8K prompts (``grpo_helpers.data.load_gsm8k``), the course's reward functions
(``grpo_helpers.rewards.REWARD_FUNCS``), a PEFT ``LoraConfig`` on every projection, and TRL's ``GRPOConfig`` /
``GRPOTrainer`` with their values visible below. It uses plain TRL + PEFT, the road Accelerate and DeepSpeed scale;
the course's Unsloth path is single-GPU. Generation can move to a vLLM server on its own GPU (``--vllm-server``,
``vllm_mode="server"``; see docs/scaling.md).

Every process trains on its own slice of each batch (DDP), so one optimizer step uses ``--prompts-per-device`` x
number of processes prompts, each with ``--generations`` completions.

The output folder (``--output-dir``) holds:

* ``checkpoints/checkpoint-N``: TRL checkpoints (``--resume`` continues the newest one),
* ``lora/``: the trained LoRA adapter, tokenizer and ``course_run.json`` (``peft.PeftModel.from_pretrained`` loads
  it; notebook 07's ``run_settings`` reads the settings),
* ``metrics.csv`` and ``reward_curve.png``: the course's training curves,
* ``ranks/rank-K.json``: one per process (device, steps, step time, peak GPU memory): proof that every rank trained,
* ``run_summary.json``: world size, batch sizes, epochs, step times.

A bad flag stops the script before any model loads, with a ``CourseError`` that says how to fix it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from grpo_helpers.data import GSM8K_SIZES
from grpo_helpers.errors import CourseError

GSM8K_TRAIN_ROWS = GSM8K_SIZES["train"]


# ------------------------------------------------------------------------------------------------------------- flags

def build_parser() -> argparse.ArgumentParser:
    """The script's flags. Left unset, a value comes from ``grpo_helpers.recipes.course_config()``: the tiny recipe on
    a CPU (``GRPO_COURSE_TINY=1``), the seed recipe otherwise (``grpo_helpers.recipes``).

    Example:
        >>> build_parser().parse_args(["--steps", "2"]).steps
        2
    """
    usage = "\n\n".join(__doc__.split("\n\n")[:2]).replace("``", "`")  # the first line and the example commands
    p = argparse.ArgumentParser(prog="train_grpo.py", description=usage, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="course preset (e.g. qwen2.5-1.5b-instruct, tiny-random), hub id or local folder "
                   "(default: the recipe's model)")
    p.add_argument("--rows", type=int, help="GSM8K train rows to use (0 = all 7473; default: the recipe's)")
    p.add_argument("--steps", type=int, help="optimizer steps (max_steps)")
    p.add_argument("--generations", type=int, help="completions per prompt, the GRPO group (num_generations)")
    p.add_argument("--prompts-per-device", type=int, help="prompts per process per step (default: the recipe's, 1)")
    p.add_argument("--max-completion-length", type=int, help="tokens per completion")
    p.add_argument("--max-prompt-length", type=int, help="drop prompts longer than this many tokens (seed: 256)")
    p.add_argument("--lora-rank", type=int, help="LoRA rank r (lora_alpha = r: scale 1, as in the seed)")
    p.add_argument("--learning-rate", type=float, help="default: the recipe's (seed 5e-6, tiny 2e-4)")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (and always at the last step)")
    p.add_argument("--output-dir", default="runs/scaled", help="run folder (default runs/scaled)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    p.add_argument("--overwrite", action="store_true", help="delete an existing --output-dir and start again")
    p.add_argument("--vllm-server", metavar="URL", help="generate with a running `trl vllm-serve` (e.g. "
                   "http://localhost:8000): vllm_mode='server'; needs CUDA and vllm")
    return p


def _positive(args: argparse.Namespace, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise CourseError(f"{flag} {value} must be at least 1.", fix=f"Give {flag} a positive whole number.")


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def check_model_name(name: str) -> None:
    """A course preset, a local folder, or something shaped like a hub id (``owner/name``); else a CourseError.

    Example:
        >>> check_model_name("qwen2.5-1.5b-instruct")
    """
    from grpo_helpers.models import PRESETS

    if name in PRESETS or Path(name).is_dir() or (name.count("/") == 1 and not name.startswith((".", "/"))):
        return
    raise CourseError(f"--model {name!r} is neither a course preset, a local folder nor a hub id (owner/name).",
                      fix=f"Use one of: {', '.join(PRESETS)}; a folder holding config.json; or a hub id such as "
                          "Qwen/Qwen2.5-1.5B-Instruct.")


def check_args(args: argparse.Namespace) -> None:
    """Refuse flags that would fail late (after minutes of loading) or silently do something else.

    Example:
        >>> check_args(build_parser().parse_args(["--generations", "1"]))
        Traceback (most recent call last):
        ...
        grpo_helpers.errors.CourseError: --generations 1 is not a group: GRPO compares completions of the same prompt.
          How to fix: Use --generations 2 or more (the seed uses 6).
    """
    _positive(args, ["steps", "prompts_per_device", "max_completion_length", "max_prompt_length", "lora_rank",
                     "save_steps"])
    if args.generations is not None and args.generations < 2:
        raise CourseError(f"--generations {args.generations} is not a group: GRPO compares completions of the same prompt.",
                          fix="Use --generations 2 or more (the seed uses 6).")
    if args.rows is not None and not 0 <= args.rows <= GSM8K_TRAIN_ROWS:
        raise CourseError(f"--rows {args.rows}: GSM8K's train split has {GSM8K_TRAIN_ROWS} rows.",
                          fix=f"Use 1 <= --rows <= {GSM8K_TRAIN_ROWS}, or --rows 0 for all of them.")
    if args.learning_rate is not None and not 0 < args.learning_rate < 1:
        raise CourseError(f"--learning-rate {args.learning_rate} is not a usable learning rate.",
                          fix="LoRA GRPO uses values such as 5e-6 (the seed) to 2e-4 (tiny mode).")
    if args.model is not None:
        check_model_name(args.model)
    if args.resume and args.overwrite:
        raise CourseError("--resume and --overwrite contradict each other.",
                          fix="--resume continues the run in --output-dir; --overwrite deletes it and starts again.")
    out = Path(args.output_dir)
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*")) if out.is_dir() else []
    if args.resume and not checkpoints:
        raise CourseError(f"--resume: {out / 'checkpoints'} holds no checkpoint to continue from.",
                          fix="Run once without --resume first, or point --output-dir at the run to continue.")
    if not args.resume and not args.overwrite and _has_files(out):
        raise CourseError(f"{out} already holds a run; it is not overwritten silently.",
                          fix="Add --resume to continue it, --overwrite to start again, or pick another --output-dir.")
    if args.vllm_server:
        from grpo_helpers.config import is_installed
        from grpo_helpers.runtime import has_cuda

        if not args.vllm_server.startswith(("http://", "https://")):
            raise CourseError(f"--vllm-server {args.vllm_server!r} is not a URL.",
                              fix="Give the address `trl vllm-serve` prints, e.g. --vllm-server http://localhost:8000.")
        if not has_cuda() or not is_installed("vllm"):
            raise CourseError("--vllm-server needs a CUDA GPU and the vllm package in the training environment "
                              "(TRL sends the weights to the server over NCCL).",
                              fix="Leave --vllm-server out: the trainer then generates with Hugging Face generate().")


def course_settings(args: argparse.Namespace):
    """``course_config()`` with the flags as overrides: flags win over ``GRPO_COURSE_*`` variables, which win over the
    recipe. The backend is ``trl-peft``: this script trains with plain TRL + PEFT on every device.

    Example:
        >>> cfg = course_settings(build_parser().parse_args(["--steps", "2", "--lora-rank", "8"]))  # doctest: +SKIP
        >>> cfg.max_steps, cfg.lora_rank, cfg.lora_alpha  # doctest: +SKIP
        (2, 8, 8)
    """
    from grpo_helpers.recipes import course_config
    from grpo_helpers.models import PRESETS

    flags = dict(train_rows=args.rows, max_steps=args.steps, num_generations=args.generations,
                 prompts_per_step=args.prompts_per_device, max_completion_length=args.max_completion_length,
                 max_prompt_length=args.max_prompt_length, lora_rank=args.lora_rank, lora_alpha=args.lora_rank,
                 learning_rate=args.learning_rate, save_steps=args.save_steps)
    overrides = {k: v for k, v in flags.items() if v is not None}
    if args.rows == 0:
        overrides["train_rows"] = None  # the whole split
    if args.model is not None:
        overrides["model_preset" if args.model in PRESETS else "model_name"] = args.model
    return course_config(backend="trl-peft", **overrides)


# ---------------------------------------------------------------------------------------------------------- training

def load_policy(model_name: str, dtype_name: str | None):
    """The model every process trains, and its tokenizer (EOS, pad, chat template, left padding set by the course).

    No ``device_map``: Accelerate places each process's copy on its own GPU, and DeepSpeed ZeRO-3 shards the weights
    while they load (the GRPOConfig is built first, so ``from_pretrained`` sees the ZeRO-3 setting).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_helpers.models import finish_tokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(model_name, dtype=getattr(torch, dtype_name or "float32"))
        tokenizer = AutoTokenizer.from_pretrained(model_name)
    except OSError as err:
        raise CourseError(f"Could not load the model {model_name!r}: {str(err).splitlines()[0]}",
                          fix="Use a course preset (grpo_helpers.models.PRESETS), a local folder, or a hub id while "
                              "online (with HF_HUB_OFFLINE=1 only models already downloaded load).") from None
    return model, finish_tokenizer(tokenizer, model)


def training_dataset(cfg, tokenizer):
    """GSM8K rows as notebook 06 uses them: chat prompts (+ tiny mode's prefill), too-long prompts dropped."""
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.training import drop_long_prompts, prefill_as_text

    dataset = load_gsm8k("train", n=cfg.train_rows, seed=cfg.seed, system_prompt=cfg.system_prompt, prefill=cfg.prefill)
    if cfg.max_prompt_length is not None:
        dataset = drop_long_prompts(dataset, tokenizer, cfg.max_prompt_length)
    if len(dataset) == 0:
        raise CourseError(f"No GSM8K prompt is shorter than --max-prompt-length {cfg.max_prompt_length} tokens.",
                          fix="Raise --max-prompt-length (the seed uses 256).")
    return prefill_as_text(dataset, tokenizer)


def _step_timer_class():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of every optimizer step on this process (generation + scoring + backward + optimizer)."""

        def __init__(self):
            self.seconds: list[float] = []
            self._start = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self._start is not None:
                self.seconds.append(time.perf_counter() - self._start)

    return StepTimer


def load_optimizer_on_cpu(trainer) -> None:
    """Let several CPU processes resume: transformers 5.17 loads a checkpoint's optimizer with
    ``map_location=args.device`` when more than one process trains, and on CPU processes that device is
    ``torch.device("cpu", 0)``, which ``torch.load`` refuses ("don't know how to restore data location ... cpu:0").
    This loads the same files onto ``"cpu"`` (the same memory). GPUs (``cuda:N``) are not affected.
    """
    import torch

    def load(checkpoint):
        if checkpoint is None:
            return
        folder = Path(checkpoint)
        trainer.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        trainer.lr_scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))

    trainer._load_optimizer_and_scheduler = load


def _median_after_first(seconds: Sequence[float]) -> float | None:
    rest = list(seconds[1:]) or list(seconds)  # the first step also warms up (allocations, kernels)
    return round(statistics.median(rest), 3) if rest else None


def run(cfg, output_dir: Path, *, resume: bool = False, overwrite: bool = False,
        vllm_server: str | None = None) -> dict[str, Any]:
    """Train as notebook 06 does and write the output folder described at the top. Returns the run summary."""
    import torch
    from peft import LoraConfig
    from transformers import set_seed
    from trl import GRPOConfig, GRPOTrainer

    from grpo_helpers.models import LORA_TARGET_MODULES
    from grpo_helpers.precision import gpu_dtype_name, training_precision
    from grpo_helpers.rewards import REWARD_FUNCS, make_sample_batch, validate_reward_funcs
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from grpo_helpers.training import course_callbacks, last_checkpoint, write_run_settings

    out = Path(output_dir)
    gpu = torch.cuda.is_available()
    dtype_name = cfg.dtype or gpu_dtype_name()  # bfloat16 from Ampere on, float16 on a T4, None (float32) on a CPU
    # Built before the model loads: under DeepSpeed ZeRO-3, from_pretrained then shards the weights as they load.
    config = GRPOConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.per_device_train_batch_size,  # TRL counts completions: prompts x generations
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        beta=cfg.beta,  # seed: 0.04 KL to the reference (the base model: the adapter switched off); tiny: 0
        loss_type=cfg.loss_type,
        temperature=cfg.temperature,
        scale_rewards=cfg.scale_rewards,
        adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_steps, lr_scheduler_type=cfg.lr_scheduler_type,
        # Plain AdamW instead of the notebooks' paged 8-bit one: DeepSpeed ZeRO shards its states, and it needs no
        # bitsandbytes. For LoRA it is small either way (8 bytes per LoRA parameter).
        optim="adamw_torch",
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps, report_to="none", log_completions=False,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        # Activation checkpointing on a GPU: recompute each layer in the backward pass instead of keeping it (bigger
        # models, longer completions). transformers picks non-reentrant checkpointing; TRL switches to reentrant for
        # PEFT under ZeRO-3, which needs it. On a CPU the tiny models do not need it and it only costs time.
        gradient_checkpointing=gpu,
        ddp_find_unused_parameters=False,  # only LoRA weights train, and all of them take part in every step
        use_cpu=not gpu,
        use_vllm=vllm_server is not None,
        vllm_mode="server",  # only used with --vllm-server: generation runs in `trl vllm-serve` on its own GPU(s)
        vllm_server_base_url=vllm_server,
        **training_precision(dtype=dtype_name),
    )
    rank, world = config.process_index, config.world_size
    # Every process has checked --output-dir (check_args) before any of them writes to it.
    config.distributed_state.wait_for_everyone()
    if overwrite:
        with config.main_process_first(desc="clearing the output folder"):
            if rank == 0 and out.exists():
                shutil.rmtree(out)
    set_seed(cfg.seed)  # the LoRA A matrices start the same on every process
    model, tokenizer = load_policy(cfg.model_name, dtype_name)
    with config.main_process_first(desc="preparing GSM8K"):  # the main process fills the datasets cache first
        dataset = training_dataset(cfg, tokenizer)
    prefill = dataset[0]["prefill"] if "prefill" in dataset.column_names else ""
    validate_reward_funcs(REWARD_FUNCS, make_sample_batch(conversational=not isinstance(dataset[0]["prompt"], str),
                                                          prefill=prefill))
    peft_config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=LORA_TARGET_MODULES,
                             lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    timer = _step_timer_class()()
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=REWARD_FUNCS,
        args=config,
        train_dataset=dataset,
        peft_config=peft_config,  # TRL wraps the model with LoRA (under ZeRO-3 too)
        # metrics.csv + reward_curve.png, the best and worst completion of a group every 10 steps, a compact bar
        callbacks=[*course_callbacks(config, tokenizer, show_completions_every=10, progress=True), timer],
    )
    trainer.remove_callback(ProgressCallback)  # the compact bar replaces the Trainer's bar and its printed log dicts
    trainer.remove_callback(PrinterCallback)
    if not gpu and world > 1:
        load_optimizer_on_cpu(trainer)
    checkpoint = last_checkpoint(config) if resume else None
    if checkpoint and trainer.is_world_process_zero():
        print(f"resuming from {checkpoint}")
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out / "lora"))  # the adapter only (PEFT); gathered from every shard under ZeRO-3
    if trainer.is_world_process_zero():
        write_run_settings(out / "lora", cfg=cfg, config=config)  # course_run.json: what notebook 07 evaluates with

    peak_gb = round(torch.cuda.max_memory_allocated() / 2**30, 3) if gpu else None
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    rank_report = dict(rank=rank, world_size=world, device=str(config.device), steps_timed=len(timer.seconds),
                       global_step=trainer.state.global_step, step_seconds=[round(s, 3) for s in timer.seconds],
                       median_step_seconds=_median_after_first(timer.seconds), peak_gpu_memory_gb=peak_gb)
    (out / "ranks" / f"rank-{rank}.json").write_text(json.dumps(rank_report, indent=2))
    summary = dict(
        model=cfg.model_name, world_size=world, distributed_type=str(config.distributed_state.distributed_type),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        completions_per_step=config.per_device_train_batch_size * world * config.gradient_accumulation_steps,
        prompts_per_step=cfg.prompts_per_step * world, num_generations=config.num_generations,
        max_completion_length=config.max_completion_length, lora_rank=cfg.lora_rank,
        dataset_rows=len(dataset), global_step=trainer.state.global_step, epoch=trainer.state.epoch,
        resumed_from=checkpoint, train_runtime_s=round(result.metrics.get("train_runtime", 0.0), 2),
        median_step_seconds=rank_report["median_step_seconds"], peak_gpu_memory_gb_rank0=peak_gb,
        dtype=dtype_name or "float32", gradient_checkpointing=config.gradient_checkpointing, vllm_server=vllm_server,
    )
    if trainer.is_world_process_zero():
        (out / "run_summary.json").write_text(json.dumps(summary, indent=2))
        print(f"done: {summary['global_step']} steps on {world} process(es), {summary['completions_per_step']} "
              f"completions per step; adapter in {out / 'lora'}")
    if torch.distributed.is_initialized():
        # Leave together, with the process group shut down in order: a rank that exits first while gloo's threads
        # are still alive can die with "terminate called without an active exception" (SIGABRT), failing the run.
        config.distributed_state.wait_for_everyone()
        torch.distributed.destroy_process_group()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and check the flags, then train. A ``CourseError`` prints as a short message (exit status 2).

    Example:
        >>> main(["--steps", "0"])  # doctest: +SKIP
        CourseError: --steps 0 must be at least 1.
          How to fix: Give --steps a positive whole number.
        2
    """
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        run(course_settings(args), Path(args.output_dir), resume=args.resume, overwrite=args.overwrite,
            vllm_server=args.vllm_server)
    except CourseError as err:
        print(f"CourseError: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
