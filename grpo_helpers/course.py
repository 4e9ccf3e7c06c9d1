"""The course's own run: what notebook 06 trains and notebook 07 evaluates, with and without the LoRA.

Files passed between notebooks (relative to the notebook's folder):

* ``runs/course/lora/``: the LoRA adapter notebook 06 saves and notebook 07 loads.
* ``runs/course/metrics.csv`` and ``reward_curve.png``: the training curves of that run.

Notebook 07 must also work alone in a fresh kernel: :func:`ensure_lora` trains a minimal adapter when 06's is missing.

Example:
    >>> lora_dir()
    PosixPath('runs/course/lora')
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Iterator

RUN_NAME = "course"


def lora_dir(run_name: str = RUN_NAME, runs_dir: str | Path = "runs") -> Path:
    """Where the course run's LoRA adapter lives: ``runs/<run_name>/lora``."""
    return Path(runs_dir) / run_name / "lora"


def training_config(cfg, run_name: str = RUN_NAME, *, model=None, **overrides):
    """TRL ``GRPOConfig`` with the course config's values (``cfg`` comes from ``course_config()``).

    ``model``: bf16/fp16 follow the dtype it was loaded in (fp16 on a T4).

    Example:
        >>> from grpo_helpers.config import course_config
        >>> config = training_config(course_config(tiny=True, max_steps=2))
        >>> config.max_steps, config.num_generations, config.per_device_train_batch_size
        (2, 4, 4)
    """
    from grpo_helpers.training import grpo_config

    return grpo_config(cfg, run_name=run_name, backend=cfg.backend, model=model, **overrides)


def ensure_lora(cfg, run_name: str = RUN_NAME, **overrides) -> Path:
    """The LoRA from notebook 06 if it exists; otherwise train a minimal one now (what 06 does, in one call).

    Example:
        >>> path = ensure_lora(course_config(tiny=True, max_steps=1))  # doctest: +SKIP
    """
    path = lora_dir(run_name)
    if (path / "adapter_config.json").is_file():
        print(f"Found the LoRA from notebook 06 in {path}.")
        return path
    print(f"No LoRA in {path} (notebook 06 saves it there): training a minimal one now, "
          f"{overrides.get('max_steps', cfg.max_steps)} steps, so this notebook also runs on its own.")
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.training import build_trainer, save_lora, train

    model, tokenizer = load_model(cfg.model_preset, cfg.backend, max_seq_length=cfg.max_seq_length,
                                  lora_rank=cfg.lora_rank)
    dataset = load_gsm8k("train", n=cfg.train_rows, seed=cfg.seed, prefill=cfg.prefill)
    trainer = build_trainer(model, tokenizer, dataset, REWARD_FUNCS, training_config(cfg, run_name, **overrides),
                            backend=cfg.backend, lora_rank=cfg.lora_rank, live_plot=False)
    train(trainer, overwrite=True)
    return save_lora(trainer.model, path, tokenizer, backend=cfg.backend)


@dataclasses.dataclass
class AttachedLora:
    """A base model with a saved LoRA attached, switchable on and off (vLLM: a ``LoRARequest``; PEFT: adapter layers)."""

    model: Any
    request: Any  # vllm LoRARequest on unsloth-vllm, else None
    backend: str

    @contextlib.contextmanager
    def off(self) -> Iterator[dict]:
        """Generate without the LoRA: the base model exactly as before training."""
        if self.request is not None or not hasattr(self.model, "disable_adapter"):
            yield dict(model=self.model, lora_request=None)
        else:
            with self.model.disable_adapter():
                yield dict(model=self.model, lora_request=None)

    @contextlib.contextmanager
    def on(self) -> Iterator[dict]:
        """Generate with the LoRA."""
        yield dict(model=self.model, lora_request=self.request)


def attach_lora(model, path: str | Path, backend: str | None = None) -> AttachedLora:
    """Load the adapter in ``path`` onto ``model`` so it can be switched on and off.

    Example:
        >>> lora = attach_lora(model, "runs/course/lora")  # doctest: +SKIP
        >>> with lora.off() as m: ...  # doctest: +SKIP
    """
    from grpo_helpers.config import detect_backend
    from grpo_helpers.training import load_lora

    backend = detect_backend(backend)
    loaded = load_lora(model, path, backend=backend)
    if backend == "unsloth-vllm":
        return AttachedLora(model=model, request=loaded, backend=backend)
    return AttachedLora(model=loaded, request=None, backend=backend)


def lora_change(lora: AttachedLora) -> float:
    """Largest absolute entry of the LoRA B matrices: 0.0 means training never moved the adapter (B starts at 0).

    That happens when every group's rewards tied: all advantages were 0, so every gradient was 0.
    """
    import torch

    if lora.request is not None:
        from safetensors.torch import load_file

        weights = load_file(str(Path(lora.request.lora_path) / "adapter_model.safetensors"))
    else:
        weights = lora.model.state_dict()
    values = [w for k, w in weights.items() if "lora_B" in k]
    return max((float(torch.as_tensor(w).abs().max()) for w in values), default=0.0)


def ask_both(lora: AttachedLora, tokenizer, question: str, sampling, system_prompt: str | None = None) -> dict[str, str]:
    """The same question, same sampling and seed, answered without and with the LoRA.

    Example:
        >>> ask_both(lora, tokenizer, "Calculate pi.", Sampling(max_new_tokens=64))  # doctest: +SKIP
        {'without LoRA': '...', 'with LoRA': '...'}
    """
    from grpo_helpers.generation import chat

    answers = {}
    for label, switch in (("without LoRA", lora.off), ("with LoRA", lora.on)):
        with switch() as m:
            answers[label] = chat(m["model"], tokenizer, question, sampling, system_prompt=system_prompt,
                                  lora_request=m["lora_request"], backend=lora.backend)
    return answers


def evaluate_both(lora: AttachedLora, tokenizer, dataset, n: int | None = None, sampling=None):
    """(before, after): the same held-out rows evaluated without and with the LoRA, with the same greedy sampling.

    Example:
        >>> before, after = evaluate_both(lora, tokenizer, load_gsm8k("test", n=8))  # doctest: +SKIP
    """
    from grpo_helpers.evaluation import EVAL_SAMPLING, evaluate

    sampling = sampling or EVAL_SAMPLING
    results = []
    for label, switch in (("before (no LoRA)", lora.off), ("after (LoRA)", lora.on)):
        with switch() as m:
            results.append(evaluate(m["model"], tokenizer, dataset, n=n, sampling=sampling,
                                    lora_request=m["lora_request"], backend=lora.backend, label=label))
    return tuple(results)
