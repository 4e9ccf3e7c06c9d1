"""The course's own run: what notebook 06 trains and notebook 07 evaluates, with and without the LoRA.

Files passed between notebooks, in the run folder ``storage.run_dir("course")`` (Google Drive on Colab when mounted,
``/kaggle/working`` on Kaggle, else ``runs/`` next to the notebook):

* ``lora/``: the LoRA adapter notebook 06 saves and notebook 07 loads, with ``course_run.json`` (its settings);
* ``checkpoints/``: every 25 steps of the seed recipe, the last two kept (``train(trainer, resume=True)`` continues);
* ``metrics.csv`` and ``reward_curve.png``: the training curves of that run.

Notebook 07 must also work alone in a fresh runtime: :func:`ensure_lora` looks everywhere a run may be stored and,
when there is no adapter, trains a small one (at most :data:`FALLBACK_STEPS` steps) on the model already loaded.

Example:
    >>> lora_dir().parts[-2:]
    ('course', 'lora')
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

RUN_NAME = "course"
FALLBACK_STEPS = 5  # what ensure_lora trains when no adapter exists: minutes, not the recipe's hours


def lora_dir(run_name: str = RUN_NAME, runs_dir: str | Path | None = None) -> Path:
    """Where the course run's LoRA adapter is saved: ``<runs_root>/<run_name>/lora`` (see :mod:`grpo_helpers.storage`)."""
    from grpo_helpers import storage

    return (Path(runs_dir) / run_name if runs_dir is not None else storage.run_dir(run_name)) / "lora"


def training_config(cfg, run_name: str = RUN_NAME, *, model=None, **overrides):
    """TRL ``GRPOConfig`` with the course config's values (``cfg`` comes from ``course_config()``).

    ``model``: bf16/fp16 follow the dtype it was loaded in (fp16 on a T4).

    Example:
        >>> from grpo_helpers.recipes import course_config
        >>> config = training_config(course_config(tiny=True, max_steps=2, num_generations=4))
        >>> config.max_steps, config.num_generations, config.per_device_train_batch_size
        (2, 4, 4)
    """
    from grpo_helpers import storage
    from grpo_helpers.training import grpo_config

    return grpo_config(cfg, run_name=run_name, runs_dir=storage.runs_root(), backend=cfg.backend, model=model, **overrides)


def run_settings(lora_path: str | Path, cfg=None) -> dict[str, Any]:
    """The settings the adapter in ``lora_path`` was trained with, from its ``course_run.json``.

    Evaluation decodes ``run_settings(path)["max_completion_length"]`` new tokens: as many as training allowed, so
    answers that grew longer during GRPO are not cut off before ``</answer>``. An adapter saved without the file
    (e.g. by ``model.save_lora`` directly) gets the missing values from ``cfg`` (default: ``course_config()``) and
    its ``adapter_config.json``.

    Example:
        >>> import tempfile
        >>> from grpo_helpers.recipes import course_config
        >>> from grpo_helpers.training import write_run_settings
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_run_settings(folder, course_config(tiny=True, max_completion_length=96))
        >>> run_settings(folder)["max_completion_length"]
        96
    """
    from grpo_helpers.training import RUN_SETTINGS, RUN_SETTINGS_KEYS

    path = Path(lora_path)
    settings: dict[str, Any] = {}
    if (path / RUN_SETTINGS).is_file():
        settings = json.loads((path / RUN_SETTINGS).read_text())
    missing = [k for k in RUN_SETTINGS_KEYS if k not in settings]
    if missing:
        from grpo_helpers.recipes import course_config

        cfg = cfg or course_config()
        fallback = {k: getattr(cfg, k) for k in missing}
        if (path / "adapter_config.json").is_file():
            adapter = json.loads((path / "adapter_config.json").read_text())
            fallback.update({k: adapter[a] for k, a in (("lora_rank", "r"), ("lora_alpha", "lora_alpha"))
                             if k in missing and a in adapter})
        settings.update(fallback)
    return {k: settings[k] for k in RUN_SETTINGS_KEYS}


def ensure_lora(cfg, run_name: str = RUN_NAME, *, model=None, tokenizer=None, steps: int = FALLBACK_STEPS) -> Path:
    """The LoRA from notebook 06, wherever it was stored; otherwise a small one trained now on ``model``.

    Looks with :func:`grpo_helpers.storage.find_lora` (Drive, Kaggle, ``runs/``, an interrupted run's checkpoint).
    When there is none it trains at most ``steps`` (:data:`FALLBACK_STEPS`) GRPO steps on the SAME ``model`` object
    (never a second base model: on a T4 two 8B models do not fit), saves the adapter, takes the LoRA layers off
    ``model`` again and says so. Only when no ``model`` is given is one loaded.

    Example:
        >>> path = ensure_lora(cfg, model=model, tokenizer=tokenizer)  # doctest: +SKIP
    """
    from grpo_helpers import storage

    found = storage.find_lora(run_name)
    if found is not None:
        print(f"Found the LoRA from notebook 06 in {found}.")
        return found
    steps = max(1, min(steps, cfg.max_steps))
    path = lora_dir(run_name)
    places = ", ".join(str(p) for p in storage._candidates(run_name)[:3])
    budget = f" (not the recipe's {cfg.max_steps})" if steps < cfg.max_steps else ""
    print(f"No LoRA from notebook 06 found (looked in {places}, ...). Training a small one now: {steps} GRPO "
          f"step{'s' if steps > 1 else ''}{budget} on the model already loaded, so this notebook also runs on its own. "
          f"Expect it to answer much like the base model; run notebook 06 for the real adapter.")
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.rewards import REWARD_FUNCS
    from grpo_helpers.training import build_trainer, save_lora, train

    if model is None:
        from grpo_helpers.models import load_model

        model, tokenizer = load_model(cfg.model_name, cfg.backend, max_seq_length=cfg.max_seq_length,
                                      lora_rank=cfg.lora_rank, load_in_4bit=cfg.load_in_4bit,
                                      fast_inference=cfg.fast_inference, dtype=cfg.dtype)
    elif tokenizer is None:
        from grpo_helpers.errors import CourseError

        raise CourseError("ensure_lora got a model but no tokenizer.", fix="Pass tokenizer=tokenizer as well.")
    dataset = load_gsm8k("train", n=cfg.train_rows, seed=cfg.seed, prefill=cfg.prefill, system_prompt=cfg.system_prompt)
    config = training_config(cfg, run_name, model=model, max_steps=steps, save_steps=steps)
    trainer = build_trainer(model, tokenizer, dataset, REWARD_FUNCS, config, backend=cfg.backend, lora_rank=cfg.lora_rank,
                            lora_alpha=cfg.lora_alpha, max_prompt_length=cfg.max_prompt_length, live_plot=False)
    train(trainer, overwrite=True)
    save_lora(trainer.model, path, tokenizer, backend=cfg.backend, cfg=cfg, config=config)
    if trainer.model is not model and hasattr(trainer.model, "unload"):
        trainer.model.unload()  # LoRA layers off again: `model` is the plain base model the notebook loaded
    return path


@dataclasses.dataclass
class AttachedLora:
    """A base model with a saved LoRA attached, switchable on and off (vLLM: a ``LoRARequest``; PEFT: adapter layers)."""

    model: Any
    request: Any  # vllm LoRARequest on unsloth-vllm, else None
    backend: str
    path: Path | None = None
    settings: dict = dataclasses.field(default_factory=dict)  # run_settings(path): how the adapter was trained

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
    from grpo_helpers.runtime import detect_backend
    from grpo_helpers.training import load_lora

    backend = detect_backend(backend)
    loaded = load_lora(model, path, backend=backend)
    settings = run_settings(path)
    if backend == "unsloth-vllm":
        return AttachedLora(model=model, request=loaded, backend=backend, path=Path(path), settings=settings)
    return AttachedLora(model=loaded, request=None, backend=backend, path=Path(path), settings=settings)


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

    Without ``sampling``: greedy, ``max_new_tokens`` = the run's ``max_completion_length`` (:func:`run_settings`).

    Example:
        >>> before, after = evaluate_both(lora, tokenizer, load_gsm8k("test", n=8))  # doctest: +SKIP
    """
    from grpo_helpers.evaluation import EVAL_SAMPLING, evaluate

    if sampling is None:
        # Decode as many tokens as training allowed: answers that grew longer must still reach </answer>.
        tokens = lora.settings.get("max_completion_length", EVAL_SAMPLING.max_new_tokens)
        sampling = dataclasses.replace(EVAL_SAMPLING, max_new_tokens=tokens)
    results = []
    for label, switch in (("before (no LoRA)", lora.off), ("after (LoRA)", lora.on)):
        with switch() as m:
            results.append(evaluate(m["model"], tokenizer, dataset, n=n, sampling=sampling,
                                    lora_request=m["lora_request"], backend=lora.backend, label=label))
    return tuple(results)
