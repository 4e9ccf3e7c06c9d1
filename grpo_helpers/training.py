"""GRPO training: one config builder, LoRA, a trainer for every backend, live metrics, checkpoints, save/load.

The notebook-facing API is small: :func:`grpo_config` (+ :func:`explain_config`), :func:`add_lora`,
:func:`build_trainer`, :func:`train`, :func:`save_lora`, :func:`load_lora`, :func:`export_merged`.

Backends (see :func:`grpo_helpers.runtime.detect_backend`):

* ``unsloth-vllm``: Unsloth ``FastLanguageModel`` + LoRA, TRL's ``GRPOTrainer`` (patched by Unsloth) generating with vLLM.
* ``unsloth``: the same without vLLM (Hugging Face ``generate``).
* ``trl-peft``: plain TRL + PEFT LoRA; runs on a laptop CPU in tiny mode.

Each run lives in ``runs/<name>/``: ``checkpoints/`` (TRL's ``output_dir``), ``metrics.csv`` and ``reward_curve.png``.
An existing run folder is never overwritten silently: :func:`train` asks for ``resume=True`` or ``overwrite=True``.

Example (tiny CPU run; see ``tests/test_training.py``):
    >>> cfg = grpo_config("tiny", run_name="doc", max_steps=2)  # doctest: +SKIP
    >>> trainer = build_trainer(model, tokenizer, dataset, REWARD_FUNCS, cfg)  # doctest: +SKIP
    >>> train(trainer)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from grpo_helpers.runtime import detect_backend, has_cuda
from grpo_helpers.errors import CourseError
from grpo_helpers.models import LORA_TARGET_MODULES, align_eos_token
from grpo_helpers.recipes import GRPO_KEYS, RECIPES, SEED

RUNS_DIR = Path("runs")
CHECKPOINTS = "checkpoints"
METRICS_CSV = "metrics.csv"
REWARD_CURVE_PNG = "reward_curve.png"

# The seed recipe (Unsloth's Llama-3.1-8B GSM8K notebook): max_seq_length 1024, of which 256 for the prompt.
SEED_MAX_SEQ_LENGTH = SEED["max_seq_length"]
SEED_MAX_PROMPT_LENGTH = SEED["max_prompt_length"]


# ----------------------------------------------------------------------------------------------------------- config

def _recipe(preset) -> dict[str, Any]:
    """The recipe dict behind ``preset``: ``"seed"``, ``"tiny"`` or a ``CourseConfig`` (its own values)."""
    if dataclasses.is_dataclass(preset):
        return dataclasses.asdict(preset)
    if preset not in RECIPES:
        raise CourseError(f"Unknown GRPO preset {preset!r}.", fix="Use grpo_config('seed') (the full recipe, GPU) "
                          "or grpo_config('tiny') (a few minutes on a laptop CPU), or pass a course_config().")
    return dict(RECIPES[preset])


def grpo_config_kwargs(preset: Any = "tiny", run_name: str = "grpo", *, runs_dir: str | Path = RUNS_DIR,
                       backend: str | None = None, model=None, **overrides) -> dict[str, Any]:
    """The keyword arguments :func:`grpo_config` passes to ``GRPOConfig`` (a plain dict, to read or compare).

    Example:
        >>> kwargs = grpo_config_kwargs("seed", max_steps=3)
        >>> kwargs["max_steps"], kwargs["save_steps"], kwargs["save_total_limit"], kwargs["per_device_train_batch_size"]
        (3, 25, 2, 6)
    """
    import difflib

    from trl import GRPOConfig

    from grpo_helpers.precision import training_precision

    recipe = _recipe(preset)
    is_course = dataclasses.is_dataclass(preset)
    if backend is None and is_course:
        backend = preset.backend
    backend = detect_backend(backend) if backend or preset == "seed" else "trl-peft"
    gpu = has_cuda()
    values = {k: recipe[k] for k in GRPO_KEYS}
    values.update(
        per_device_train_batch_size=recipe["prompts_per_step"] * recipe["num_generations"],
        report_to="none", save_strategy="steps",
        log_completions=False,  # TRL prints these as a table; course_callbacks shows the best and worst instead
        # Unsloth does its own ("unsloth" checkpointing in get_peft_model); on a CPU it would only slow a 135M model
        gradient_checkpointing=False,
    )
    if values["optim"] == "paged_adamw_8bit" and not gpu:
        values["optim"] = "adamw_torch"  # bitsandbytes' paged 8-bit AdamW needs CUDA
    if gpu:
        # Follow the model's real dtype: a T4 (no bfloat16) must train in fp16 (see grpo_helpers.precision).
        values.update(training_precision(model, dtype=recipe.get("dtype")))
    else:
        values.update(use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0)
    if backend == "unsloth-vllm":
        # TRL 1.14's way to use vLLM inside the training process; Unsloth swaps in its own engine (fast_inference=True).
        values.update(use_vllm=True, vllm_mode="colocate")
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        hints = {k: difflib.get_close_matches(k, fields, n=2) for k in unknown}
        why = " (TRL removed it: drop prompts that are too long from the dataset instead; build_trainer does it with " \
              "max_prompt_length=...)" if "max_prompt_length" in unknown else ""
        raise CourseError(f"GRPOConfig has no setting(s) {unknown}{why}.",
                          fix="Check the spelling; close matches: " + "; ".join(f"{k} -> {v or 'none'}" for k, v in hints.items()))
    if "num_generations" in overrides and "per_device_train_batch_size" not in overrides:
        overrides = {**overrides, "per_device_train_batch_size": recipe["prompts_per_step"] * overrides["num_generations"]}
    values.update(overrides)
    values.setdefault("output_dir", str(Path(runs_dir) / run_name / CHECKPOINTS))
    if values["per_device_train_batch_size"] % values["num_generations"]:
        raise CourseError(
            f"per_device_train_batch_size={values['per_device_train_batch_size']} is not a multiple of "
            f"num_generations={values['num_generations']}.",
            fix="TRL counts completions per batch: use per_device_train_batch_size = prompts per step x num_generations.")
    return values


def grpo_config(preset: Any = "tiny", run_name: str = "grpo", *, runs_dir: str | Path = RUNS_DIR, backend: str | None = None,
                model=None, **overrides):
    """TRL ``GRPOConfig`` for the installed TRL, from a recipe plus overrides.

    ``preset``: ``"seed"`` (the blog's recipe, ``recipes.SEED``: lr 5e-6, betas 0.9/0.99, weight decay 0.1, warmup
    0.1, cosine, paged_adamw_8bit on GPU, one prompt x 6 generations per step, grad norm 0.1, 250 steps, a checkpoint
    every 25 steps keeping the last two), ``"tiny"`` (``recipes.TINY``, CPU) or a ``course_config()`` (its values).
    ``model``: bf16/fp16 follow the dtype it was loaded in (fp16 on a T4). Checkpoints go to
    ``runs/<run_name>/checkpoints``. On ``unsloth-vllm`` generation uses vLLM in colocate mode. Any ``GRPOConfig``
    field can be overridden; an unknown name is a :class:`CourseError` listing close matches.

    Example:
        >>> cfg = grpo_config("seed", run_name="doc", max_steps=3)
        >>> cfg.learning_rate, cfg.num_generations, cfg.max_steps, cfg.max_completion_length
        (5e-06, 6, 3, 768)
    """
    from trl import GRPOConfig

    return GRPOConfig(**grpo_config_kwargs(preset, run_name, runs_dir=runs_dir, backend=backend, model=model, **overrides))


# What explain_config() shows, with the reason the course sets each value.
EXPLAINED = {
    "learning_rate": "step size; LoRA tolerates far larger rates than full fine-tuning",
    "beta": "KL penalty to the reference model (0: no reference forward pass, no KL term)",
    "loss_type": "how per-token losses are averaged: grpo (per sequence), dapo (per token in the batch), dr_grpo",
    "scale_rewards": "advantage = (reward - group mean) / group std ('group'), batch std, or no division ('none')",
    "num_generations": "G, completions per prompt: the group that replaces PPO's value model",
    "per_device_train_batch_size": "completions per step (TRL counts completions, not prompts)",
    "max_completion_length": "longest completion in tokens; cut-off completions rarely get format rewards",
    "temperature": "sampling temperature: diversity inside a group is what GRPO learns from",
    "max_steps": "optimizer steps",
    "max_grad_norm": "gradient clipping",
    "warmup_steps": "linear warmup (a float < 1 is a fraction of max_steps)",
    "lr_scheduler_type": "learning-rate schedule after warmup",
    "weight_decay": "decoupled weight decay",
    "optim": "optimizer (paged 8-bit AdamW saves GPU memory)",
    "reward_weights": "weights of the reward functions in the total reward (None: all 1.0)",
    "use_vllm": "generate with vLLM (much faster than generate() on a GPU)",
    "vllm_importance_sampling_correction": "weight the loss by p_trainer / p_vLLM per completion (only with use_vllm)",
    "save_steps": "checkpoint every N steps (what resume=True continues from)",
    "save_total_limit": "how many checkpoints to keep (the oldest are deleted)",
}


def explain_config(config, keys: Sequence[str] | None = None) -> str:
    """A table of the settings the course teaches: this run's value next to TRL's default, and why.

    Example:
        >>> table = explain_config(grpo_config("seed", run_name="doc"), keys=["beta", "loss_type"])
        >>> table.splitlines()[2].split()[:3]
        ['beta', '0.04', '0.0']
    """
    from trl import GRPOConfig

    defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    rows = [("setting", "this run", "TRL default", "what it does")]
    for key in keys or EXPLAINED:
        ours, theirs = getattr(config, key), defaults.get(key, "-")
        rows.append((key, _short(ours), _short(theirs), EXPLAINED.get(key, "")))
    width = max(28, *(len(r[0]) for r in rows))  # vllm_importance_sampling_correction is 35 characters
    line = f"{'-' * width} {'-' * 14} {'-' * 18} {'-' * 12}"
    out = [f"{a:<{width}} {b:<14} {c:<18} {d}" for a, b, c, d in rows]
    return "\n".join([out[0], line, *out[1:]])


def _short(value: Any) -> str:
    value = getattr(value, "value", value)  # enums (optim, scheduler) print as their string
    return f"{value:g}" if isinstance(value, float) and value and abs(value) < 1e-3 else str(value)


# ------------------------------------------------------------------------------------------------------------- LoRA

def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; with LoRA the first is a few percent of the second.

    4-bit weights count at their real size, not the packed storage ``numel()`` reports
    (:func:`grpo_helpers.models.count_parameters`).

    Example:
        >>> from grpo_helpers.models import load_model
        >>> model, _ = load_model("tiny-random")
        >>> trainable, total = trainable_parameters(model)
        >>> trainable == total
        True
    """
    from grpo_helpers.models import count_parameters

    return count_parameters(model)


def is_peft_model(model) -> bool:
    """True when ``model`` already carries LoRA adapters (a ``peft.PeftModel``)."""
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def add_lora(model, backend: str | None = None, rank: int = 16, alpha: int | None = None,
             target_modules: Sequence[str] = tuple(LORA_TARGET_MODULES), dropout: float = 0.0, seed: int = 3407):
    """Wrap ``model`` with LoRA adapters on every projection (attention q/k/v/o and MLP gate/up/down).

    ``alpha`` defaults to ``rank`` (scale 1), as in the seed. Unsloth backends use ``FastLanguageModel.get_peft_model``
    with Unsloth's gradient checkpointing; ``trl-peft`` uses ``peft.get_peft_model``. The LoRA A matrices are random
    (seeded by ``seed``), B starts at zero, so the wrapped model first behaves exactly like the base model.

    Example:
        >>> from grpo_helpers.models import load_model
        >>> model, _ = load_model("tiny-random")
        >>> model = add_lora(model, rank=4)
        >>> trainable, total = trainable_parameters(model)
        >>> 0 < trainable < total
        True
    """
    backend = detect_backend(backend)
    if is_peft_model(model):
        raise CourseError("This model already has LoRA adapters.",
                          fix="Reload the base model (load_model) before add_lora, or train the existing adapters as they are.")
    alpha = rank if alpha is None else alpha
    if backend in ("unsloth", "unsloth-vllm"):
        return _add_lora_unsloth(model, rank, alpha, list(target_modules), dropout, seed)
    return _add_lora_peft(model, rank, alpha, list(target_modules), dropout, seed)


def _add_lora_unsloth(model, rank: int, alpha: int, target_modules: list[str], dropout: float, seed: int):
    from unsloth import FastLanguageModel

    return FastLanguageModel.get_peft_model(
        model, r=rank, target_modules=target_modules, lora_alpha=alpha, lora_dropout=dropout,
        use_gradient_checkpointing="unsloth",  # offloads activations to CPU RAM: long completions fit a T4
        random_state=seed)


def _add_lora_peft(model, rank: int, alpha: int, target_modules: list[str], dropout: float, seed: int):
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA A init: the same seed gives the same adapter, as Unsloth's random_state does
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=target_modules, lora_dropout=dropout,
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


# ----------------------------------------------------------------------------------------------------- data helpers

def drop_long_prompts(dataset, tokenizer, max_prompt_length: int):
    """Drop rows whose rendered prompt is longer than ``max_prompt_length`` tokens.

    TRL removed ``GRPOConfig.max_prompt_length`` (0.28): it no longer cuts prompts, so a long one would silently eat
    the completion budget (or exceed vLLM's context). Filtering the dataset first is what TRL and Unsloth now advise.

    Example:
        >>> from grpo_helpers.models import load_model
        >>> from grpo_helpers.data import load_gsm8k
        >>> _, tok = load_model("tiny-random")
        >>> len(drop_long_prompts(load_gsm8k("test", n=4, source="offline"), tok, 400))
        4
        >>> drop_long_prompts(load_gsm8k("test", n=4, source="offline"), tok, 10)
        Traceback (most recent call last):
        ...
        grpo_helpers.errors.CourseError: Every one of the 4 prompts is longer than max_prompt_length=10 tokens: nothing is left to train on.
          How to fix: Raise max_prompt_length (course_config(max_prompt_length=...)) or shorten the system prompt.
    """
    from grpo_helpers.generation import render_prompt

    def short_enough(row) -> bool:
        prompt = row["prompt"]
        text = prompt if isinstance(prompt, str) else render_prompt(tokenizer, prompt)[0]
        return len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_prompt_length

    kept = dataset.filter(short_enough)
    if len(kept) == 0 and len(dataset) > 0:
        from grpo_helpers.errors import CourseError

        raise CourseError(f"Every one of the {len(dataset)} prompts is longer than max_prompt_length={max_prompt_length} "
                          "tokens: nothing is left to train on.",
                          fix="Raise max_prompt_length (course_config(max_prompt_length=...)) or shorten the system prompt.")
    if len(kept) < len(dataset):
        print(f"drop_long_prompts: dropped {len(dataset) - len(kept)} of {len(dataset)} rows longer than "
              f"{max_prompt_length} prompt tokens")
    return kept


def prefill_as_text(dataset, tokenizer):
    """Render chat prompts that end in an assistant prefill to text, so TRL continues the prefill.

    TRL renders conversational prompts with ``add_generation_prompt=True`` only: an assistant prefill would be closed
    as a finished turn. As text (``continue_final_message=True``) the model continues it; TRL then hands rewards the
    completion without the prefill, and the course rewards add it back from the ``prefill`` column.
    """
    from grpo_helpers.generation import render_prompt

    def to_text(row):
        prompt = row["prompt"]
        if isinstance(prompt, list) and prompt and prompt[-1]["role"] == "assistant":
            return {"prompt": render_prompt(tokenizer, prompt)[0]}
        return {"prompt": prompt}

    if not len(dataset) or isinstance(dataset[0]["prompt"], str):
        return dataset
    if dataset[0]["prompt"][-1]["role"] != "assistant":
        return dataset
    return dataset.map(to_text)


# ---------------------------------------------------------------------------------------------------------- run dir

def run_folder(config) -> Path:
    """``runs/<name>/`` of a config built by :func:`grpo_config` (the parent of its ``checkpoints/``)."""
    out = Path(config.output_dir)
    return out.parent if out.name == CHECKPOINTS else out


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def last_checkpoint(config) -> str | None:
    """Path of the newest ``checkpoint-N`` folder of the run, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(config.output_dir)
    return get_last_checkpoint(str(out)) if out.is_dir() else None


# --------------------------------------------------------------------------------------------------------- callbacks

def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _metrics_callback_class():
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """Writes ``metrics.csv`` every logging step and ``reward_curve.png`` at checkpoints and at the end; in a
        notebook also redraws one live figure (total reward, each reward, reward std, KL when beta > 0, length)."""

        def __init__(self, run_dir: Path, live: bool | None = None, plot_every: int = 1):
            self.run_dir, self.plot_every = Path(run_dir), plot_every
            self.live = _in_notebook() if live is None else live
            self._handle = None

        def _rows(self, state) -> list[dict]:
            return [h for h in state.log_history if "reward" in h]

        def _write_png(self, state) -> None:
            from grpo_helpers.plotting import plot_reward_curves, save_figure

            rows = self._rows(state)
            if rows:
                save_figure(plot_reward_curves(rows), self.run_dir / REWARD_CURVE_PNG)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs:
                return
            from grpo_helpers.plotting import write_metrics_csv

            rows = self._rows(state)
            write_metrics_csv(rows, self.run_dir / METRICS_CSV)
            if self.live and len(rows) % self.plot_every == 0:
                self._redraw(rows)

        def _redraw(self, rows) -> None:
            import matplotlib.pyplot as plt
            from IPython.display import display

            from grpo_helpers.plotting import plot_reward_curves

            fig = plot_reward_curves(rows)
            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)
            plt.close(fig)

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self._write_png(state)

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                from grpo_helpers.plotting import write_metrics_csv

                write_metrics_csv(self._rows(state), self.run_dir / METRICS_CSV)
                self._write_png(state)

    return MetricsCallback


def _compact_progress_class():
    from transformers import TrainerCallback

    class CompactProgress(TrainerCallback):
        """A tqdm bar over the optimizer steps with reward, reward std and completion length as its postfix
        (instead of the Trainer printing every log dict)."""

        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            from tqdm.auto import tqdm

            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="GRPO steps", dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "reward" in logs:
                self.bar.set_postfix(reward=f"{logs['reward']:.3f}", std=f"{logs.get('reward_std', 0):.2f}",
                                     len=f"{logs.get('completions/mean_length', 0):.0f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return CompactProgress


def _find_trainer():
    """The ``Trainer`` whose callback is running, found on the call stack.

    Callbacks are handed the model, optimizer and dataloader, never the trainer; TRL keeps the texts and rewards of
    the latest generation batch on the trainer (``trainer._logs``), so the completions printer looks it up here.
    """
    import sys

    from transformers import Trainer

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Trainer):
            return candidate
        frame = frame.f_back
    return None


def group_extremes(logs: Mapping[str, Any], num_generations: int, weights: Sequence[float] | None = None) -> dict | None:
    """Best and worst completion of the group with the widest reward spread, from TRL's ``trainer._logs``.

    Example:
        >>> logs = {"prompt": ["Q1"] * 2 + ["Q2"] * 2, "completion": ["a", "b", "c", "d"],
        ...         "rewards": {"format": [0.0, 0.0, 0.0, 1.0], "correct": [0.0, 0.0, 0.0, 2.0]}}
        >>> g = group_extremes(logs, num_generations=2)
        >>> g["prompt"], g["best"], g["worst"]
        ('Q2', ('d', 3.0), ('c', 0.0))
    """
    prompts, completions = list(logs.get("prompt", [])), list(logs.get("completion", []))
    columns = [list(v) for v in logs.get("rewards", {}).values()]
    if not completions or not columns or num_generations < 1:
        return None
    weights = list(weights) if weights is not None else [1.0] * len(columns)
    totals = [sum(w * (c[i] if c[i] == c[i] else 0.0) for w, c in zip(weights, columns))  # NaN: reward not applied
              for i in range(len(completions))]
    groups = [range(start, start + num_generations) for start in range(0, len(completions) - num_generations + 1,
                                                                       num_generations)]
    if not groups:
        return None
    group = max(groups, key=lambda g: (max(totals[i] for i in g) - min(totals[i] for i in g)))
    best = max(group, key=lambda i: totals[i])
    worst = min(group, key=lambda i: totals[i])
    return {"prompt": prompts[group[0]] if prompts else "", "best": (completions[best], totals[best]),
            "worst": (completions[worst], totals[worst])}


def _short_text(text: Any, limit: int) -> str:
    from grpo_helpers.rewards import completion_text

    text = text if isinstance(text, str) else completion_text(text)
    return text if len(text) <= limit else text[:limit] + f" ... [{len(text) - limit} more characters]"


def _completions_callback_class():
    from transformers import TrainerCallback

    class ShowCompletions(TrainerCallback):
        """Every ``every`` steps, prints the best and the worst completion of one group with their total rewards.

        The group shown is the one whose rewards differ most: that is where GRPO's advantages are largest.
        """

        def __init__(self, every: int = 10, tokenizer=None, max_chars: int = 600):
            self.every, self.tokenizer, self.max_chars = max(1, int(every)), tokenizer, max_chars
            self.shown: list[dict] = []  # what was printed, for tests and for a look afterwards

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs or state.global_step % self.every:
                return
            trainer = _find_trainer()
            if trainer is None or not hasattr(trainer, "_logs"):
                return
            weights = getattr(trainer, "reward_weights", None)
            weights = weights.tolist() if hasattr(weights, "tolist") else weights
            extremes = group_extremes(trainer._logs, args.num_generations, weights)
            if extremes is None:
                return
            extremes["step"] = state.global_step
            self.shown.append(extremes)
            print(self.format(extremes), flush=True)

        def format(self, extremes: dict) -> str:
            prompt = " ".join(str(extremes["prompt"]).split())  # the question is at the end of the rendered prompt
            prompt = prompt if len(prompt) <= 200 else "..." + prompt[-200:]
            lines = [f"--- step {extremes['step']}: best and worst completion of one group", f"prompt: {prompt}"]
            for label in ("best", "worst"):
                text, total = extremes[label]
                size = ""
                if self.tokenizer is not None:
                    size = f", {len(self.tokenizer(_short_text(text, 10**9), add_special_tokens=False)['input_ids'])} tokens"
                lines.append(f"[{label}: reward {total:.2f}{size}]\n{_short_text(text, self.max_chars)}")
            return "\n".join(lines)

    return ShowCompletions


def course_callbacks(config, tokenizer=None, show_completions_every: int | None = 10, *, live_plot: bool | None = None,
                     progress: bool | None = None) -> list:
    """The course's ``TrainerCallback`` list for ``GRPOTrainer(..., callbacks=course_callbacks(config))``.

    * metrics: ``metrics.csv`` every step and ``reward_curve.png`` at checkpoints and at the end, in the run folder of
      ``config`` (the ``GRPOConfig``); in a notebook also one live figure (``live_plot``);
    * the best and worst completion of a group every ``show_completions_every`` steps (None: never);
    * ``progress=True``: also a compact progress bar with reward and length (for scripts; build_trainer uses it in
      place of the Trainer's own bar outside notebooks);
    * the GRPO doctor, live (:func:`grpo_helpers.doctor.live_callback`): prints a warning as soon as the run shows a
      known problem (e.g. 5 steps of ``completions/clipped_ratio`` > 0.5) and saves each step's completions.

    Example:
        >>> callbacks = course_callbacks(grpo_config("tiny", run_name="doc"), show_completions_every=5)
        >>> [type(c).__name__ for c in callbacks]
        ['MetricsCallback', 'ShowCompletions', 'LiveDoctor']
    """
    from grpo_helpers.doctor import live_callback

    callbacks = [_metrics_callback_class()(run_folder(config), live=live_plot)]
    if show_completions_every:
        callbacks.append(_completions_callback_class()(show_completions_every, tokenizer))
    if progress:
        callbacks.append(_compact_progress_class()())
    callbacks.append(live_callback())  # last, so the list's first entries stay where callers index them
    return callbacks


# ----------------------------------------------------------------------------------------------------------- trainer

def _reward_list(rewards) -> tuple[list[Callable], list[float] | None]:
    if isinstance(rewards, Mapping):
        return list(rewards), [float(w) for w in rewards.values()]
    if callable(rewards):
        return [rewards], None
    return list(rewards), None


def build_trainer(model, tokenizer, dataset, rewards: Sequence[Callable] | Mapping[Callable, float], config, *,
                  backend: str | None = None, lora_rank: int = 16, lora_alpha: int | None = None,
                  max_prompt_length: int | None = None,
                  live_plot: bool | None = None, callbacks: Sequence[Any] = ()):
    """TRL ``GRPOTrainer`` for ``model`` on any backend, with LoRA, metrics CSV/PNG and a compact progress bar.

    * ``rewards``: reward functions, or ``{function: weight}`` (weights go to ``config.reward_weights``).
    * Adds LoRA (:func:`add_lora`, rank ``lora_rank``) when ``model`` has none yet.
    * Prompts ending in an assistant prefill become text prompts (:func:`prefill_as_text`).
    * ``max_prompt_length``: drop longer prompts (:func:`drop_long_prompts`); the seed preset uses 256.

    Example:
        >>> trainer = build_trainer(model, tok, ds, {xmlcount_reward: 1.0}, grpo_config("tiny"))  # doctest: +SKIP
    """
    from grpo_helpers.rewards import make_sample_batch, validate_reward_funcs

    backend = detect_backend(backend)
    funcs, weights = _reward_list(rewards)
    if weights is not None:
        config.reward_weights = weights
    if config.reward_weights is not None and len(config.reward_weights) != len(funcs):
        raise CourseError(f"{len(config.reward_weights)} reward weights for {len(funcs)} reward functions.",
                          fix="Give one weight per reward function (or pass rewards as {function: weight}).")
    missing = [c for c in ("prompt",) if c not in dataset.column_names]
    if missing:
        raise CourseError(f"The training dataset has no 'prompt' column (it has {dataset.column_names}).",
                          fix="Build it with grpo_helpers.data.load_gsm8k (or format_gsm8k for your own rows).")
    if max_prompt_length is None and getattr(config, "max_completion_length", 0) == SEED_MAX_SEQ_LENGTH - SEED_MAX_PROMPT_LENGTH:
        max_prompt_length = SEED_MAX_PROMPT_LENGTH  # the seed preset's prompt budget
    align_eos_token(model, tokenizer)  # for models not loaded through models.load_model
    if max_prompt_length is not None:
        dataset = drop_long_prompts(dataset, tokenizer, max_prompt_length)
    dataset = prefill_as_text(dataset, tokenizer)
    # Check the rewards on a batch shaped like what TRL will hand them: text prompts + prefill in tiny mode.
    prefill = dataset[0]["prefill"] if "prefill" in dataset.column_names else ""
    validate_reward_funcs(funcs, make_sample_batch(conversational=not isinstance(dataset[0]["prompt"], str), prefill=prefill))
    if not is_peft_model(model):
        model = add_lora(model, backend=backend, rank=lora_rank, alpha=lora_alpha, seed=config.seed)
    if backend in ("unsloth", "unsloth-vllm"):
        trainer = _unsloth_trainer(model, tokenizer, dataset, funcs, config)
    else:
        trainer = _trl_trainer(model, tokenizer, dataset, funcs, config)
    _install_callbacks(trainer, config, live_plot, callbacks)
    return trainer


def _trl_trainer(model, tokenizer, dataset, funcs, config):
    from trl import GRPOTrainer

    return GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=funcs, args=config, train_dataset=dataset)


def _unsloth_trainer(model, tokenizer, dataset, funcs, config):
    # `import unsloth` (done by load_model) patches trl.GRPOTrainer; with fast_inference=True the patched trainer finds
    # model.vllm_engine and sets use_vllm=True itself. The call is the same as TRL's, as in the seed.
    import unsloth  # noqa: F401
    from trl import GRPOTrainer

    return GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=funcs, args=config, train_dataset=dataset)


def _install_callbacks(trainer, config, live_plot, callbacks) -> None:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from grpo_helpers.doctor import live_callback

    trainer.add_callback(_metrics_callback_class()(run_folder(config), live=live_plot))
    trainer.add_callback(live_callback())  # the doctor warns early (e.g. 5 steps of clipped_ratio > 0.5)
    if not _in_notebook():  # notebooks keep the Trainer's HTML table; scripts get one compact bar
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(_compact_progress_class()())
    for cb in callbacks:
        trainer.add_callback(cb)


def train(trainer, resume: bool = False, overwrite: bool = False):
    """Run GRPO. ``resume=True`` continues from the newest checkpoint of the run (weights, optimizer, scheduler, RNG).

    A run folder that already holds files is refused unless ``resume=True`` (continue it) or ``overwrite=True``
    (delete it and start again). Returns TRL's ``TrainOutput``; the metrics are in ``runs/<name>/metrics.csv``.

    Example:
        >>> out = train(trainer)  # doctest: +SKIP
        >>> out = train(build_trainer(...same arguments...), resume=True)  # after an interruption  # doctest: +SKIP
    """
    config = trainer.args
    run = run_folder(config)
    checkpoint = None
    if resume:
        checkpoint = last_checkpoint(config)
        if checkpoint is None:
            print(f"resume=True but {run} has no checkpoint yet: starting from step 0.")
    elif _has_files(run):
        if not overwrite:
            raise CourseError(f"The run folder {run} already holds a run; it is not overwritten silently.",
                              fix="train(trainer, resume=True) continues it, train(trainer, overwrite=True) deletes it "
                                  "and starts again, or give grpo_config a new run_name.")
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    return trainer.train(resume_from_checkpoint=checkpoint)


# ------------------------------------------------------------------------------------------------- save / load / export

_LORA_IDS = itertools.count(1)


RUN_SETTINGS = "course_run.json"
# What evaluation and later notebooks need to know about the run that trained an adapter.
RUN_SETTINGS_KEYS = ("model_name", "max_completion_length", "max_seq_length", "system_prompt", "prefill", "lora_rank",
                     "lora_alpha", "max_steps", "temperature")


def write_run_settings(path: str | Path, cfg=None, config=None, model=None) -> Path:
    """Write ``course_run.json`` next to an adapter: the settings it was trained with (see ``RUN_SETTINGS_KEYS``).

    ``cfg``: the ``course_config()``; ``config``: the ``GRPOConfig`` (its ``max_completion_length``, ``max_steps`` and
    ``temperature`` win, since that is what training used); ``model``: LoRA rank/alpha and base model when no cfg.

    Example:
        >>> import json, tempfile
        >>> from grpo_helpers.recipes import course_config
        >>> folder = tempfile.mkdtemp()
        >>> json.load(open(write_run_settings(folder, course_config(tiny=True, max_completion_length=64))))["max_completion_length"]
        64
    """
    import json

    settings: dict[str, Any] = {}
    if model is not None and is_peft_model(model):
        lora = next(iter(model.peft_config.values()))
        settings.update(lora_rank=lora.r, lora_alpha=lora.lora_alpha, model_name=lora.base_model_name_or_path)
    if cfg is not None:
        settings.update({k: getattr(cfg, k) for k in RUN_SETTINGS_KEYS if hasattr(cfg, k)})
    if config is not None:
        settings.update({k: getattr(config, k) for k in ("max_completion_length", "max_steps", "temperature")
                         if hasattr(config, k)})
    settings = {k: settings[k] for k in RUN_SETTINGS_KEYS if k in settings}
    target = Path(path) / RUN_SETTINGS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(settings, indent=2) + "\n")
    return target


def save_lora(model, path: str | Path, tokenizer=None, backend: str | None = None, *, cfg=None, config=None) -> Path:
    """Save only the LoRA adapter (a few MB): ``adapter_config.json`` + ``adapter_model.safetensors``, and
    ``course_run.json`` (the settings it was trained with: model, completion length, system prompt, prefill, ...).

    Example:
        >>> save_lora(trainer.model, "runs/demo/lora", tokenizer, cfg=cfg, config=trainer.args)  # doctest: +SKIP
        PosixPath('runs/demo/lora')
    """
    backend = detect_backend(backend)
    path = Path(path)
    if not is_peft_model(model):
        raise CourseError("This model has no LoRA adapter to save.",
                          fix="Save the model you trained (trainer.model), or use export_merged for a full model.")
    if backend in ("unsloth", "unsloth-vllm") and hasattr(model, "save_lora"):
        model.save_lora(str(path))  # Unsloth: casts the adapter to the model's 16-bit dtype
    else:
        model.save_pretrained(str(path))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    write_run_settings(path, cfg=cfg, config=config, model=model)
    return path


def _check_adapter(path: Path) -> None:
    if not (path / "adapter_config.json").is_file():
        raise CourseError(f"{path} holds no LoRA adapter (adapter_config.json is missing).",
                          fix="Pass the folder given to save_lora(), e.g. runs/<name>/lora.")


def load_lora(model, path: str | Path, backend: str | None = None, name: str | None = None):
    """Load a saved adapter for generation.

    * ``unsloth-vllm``: ``model.load_lora(path)``, Unsloth's own API: it returns a ``vllm.lora.request.LoRARequest``
      for ``model.fast_generate(..., lora_request=...)`` (the seed's ``model.load_lora("grpo_saved_lora")`` is exactly
      this call). Without Unsloth's method a ``LoRARequest`` is built directly.
    * other backends: returns the model with the adapter loaded (a ``PeftModel``) to pass to ``generate``.

    Example:
        >>> tuned = load_lora(base_model, "runs/demo/lora")  # doctest: +SKIP
    """
    backend = detect_backend(backend)
    path = Path(path)
    _check_adapter(path)
    if backend == "unsloth-vllm":
        if hasattr(model, "load_lora"):
            return model.load_lora(str(path))
        return _vllm_lora_request(path, name)
    return _load_lora_peft(model, path, name)


def _vllm_lora_request(path: Path, name: str | None = None):
    from vllm.lora.request import LoRARequest

    # vLLM caches adapters by integer id: every load gets a fresh id so a newer adapter in the same folder is reloaded.
    int_id = next(_LORA_IDS)
    return LoRARequest(name or f"{path.name}-{int_id}", int_id, str(path.resolve()))


def _load_lora_peft(model, path: Path, name: str | None = None):
    from peft import PeftModel

    if is_peft_model(model):
        adapter = name or f"loaded_{next(_LORA_IDS)}"
        model.load_adapter(str(path), adapter_name=adapter, is_trainable=False)
        model.set_adapter(adapter)
        return model
    return PeftModel.from_pretrained(model, str(path), is_trainable=False)


def export_merged(model, tokenizer, path: str | Path, lora_path: str | Path | None = None,
                  backend: str | None = None) -> Path:
    """Merge the LoRA adapter into the base weights and save a plain 16-bit model (for vLLM, llama.cpp, the Hub).

    The merged model contains the trained adapter on every backend:

    * ``model`` carries the adapter (``trainer.model``): it is merged.
    * ``model`` is the bare base model (on ``unsloth-vllm`` the adapter lives only in vLLM, so after
      ``load_lora`` the Python model has none): the adapter is loaded from ``lora_path`` onto it first, and taken off
      again after saving, so ``model`` (whose weights vLLM shares) is left as it was.
    * Unsloth backends write with Unsloth's ``save_pretrained_merged(..., save_method="merged_16bit")``, which
      merges into the original 16-bit weights (not the 4-bit ones); ``trl-peft`` merges a copy and writes bfloat16.

    Example:
        >>> export_merged(lora.model, tokenizer, "runs/course/merged", lora_path="runs/course/lora")  # doctest: +SKIP
    """
    backend = detect_backend(backend)
    path = Path(path)
    if not is_peft_model(model) and lora_path is None:
        raise CourseError("This model has no LoRA adapter, so the export would be the untrained base model.",
                          fix="Pass the trained model (trainer.model), or lora_path= the folder save_lora wrote "
                              "(on unsloth-vllm the adapter lives only in vLLM).")
    if lora_path is not None:
        _check_adapter(Path(lora_path))
    if backend in ("unsloth", "unsloth-vllm"):
        return _export_merged_unsloth(model, tokenizer, path, lora_path)
    return _export_merged_peft(model, tokenizer, path, lora_path)


def _merged_saver(model):
    """``model.save_pretrained_merged`` bound to ``model`` itself. A PeftModel that peft built (not Unsloth) would
    otherwise reach its base model's method through attribute forwarding, and Unsloth merges only for a PeftModel."""
    method = getattr(model, "save_pretrained_merged", None)
    if getattr(method, "__self__", None) is not model:
        from unsloth.save import patch_saving_functions

        patch_saving_functions(model)
    return model.save_pretrained_merged


def _export_merged_unsloth(model, tokenizer, path: Path, lora_path: str | Path | None) -> Path:
    if is_peft_model(model):
        _merged_saver(model)(str(path), tokenizer, save_method="merged_16bit")
        return path
    from peft import PeftModel

    # Unsloth merges only when handed a PeftModel (a bare base model is saved as it is): put the adapter on the base.
    with_adapter = PeftModel.from_pretrained(model, str(lora_path), is_trainable=False)
    try:
        _merged_saver(with_adapter)(str(path), tokenizer, save_method="merged_16bit")
    finally:
        with_adapter.unload()  # take the LoRA layers off again: the base stays what vLLM and later cells expect
    return path


def _export_merged_peft(model, tokenizer, path: Path, lora_path: str | Path | None = None) -> Path:
    import copy

    import torch

    merged = copy.deepcopy(model)  # merge a copy: `model` keeps its adapter (and its base stays untouched)
    if not is_peft_model(merged):
        from peft import PeftModel

        merged = PeftModel.from_pretrained(merged, str(lora_path), is_trainable=False)
    merged = merged.merge_and_unload()
    merged = merged.to(torch.bfloat16)
    merged.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


# ------------------------------------------------------------------------------------------------------------ helpers

def lora_state(model) -> dict:
    """A CPU copy of the LoRA weights (``lora_A`` / ``lora_B`` tensors), to compare two runs."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if "lora_" in k}


def max_abs_diff(a: Mapping, b: Mapping) -> float:
    """Largest absolute difference between two state dicts with the same keys."""
    if set(a) != set(b):
        raise ValueError(f"different keys: {sorted(set(a) ^ set(b))[:5]}")
    return max((float((a[k].float() - b[k].float()).abs().max()) for k in a), default=0.0)


def first_last_mean(values: Sequence[float], k: int = 10) -> tuple[float, float]:
    """Mean of the first ``k`` and of the last ``k`` values (the demo's "did the reward rise?" numbers).

    Example:
        >>> first_last_mean([0, 0, 1, 1], k=2)
        (0.0, 1.0)
    """
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    k = max(1, min(k, len(values) // 2 or 1))
    return sum(values[:k]) / k, sum(values[-k:]) / k
