"""What this machine is, read in one place, and the GPU stack it can run.

The facts: the runtime (Colab, Kaggle or local), the GPU's name and compute capability, the NVIDIA driver, the
installed torch and the CUDA major version it was built for, the Python version (:class:`RuntimeFacts`, read by
:func:`detect_facts` without importing torch). From them :func:`choose_profile` picks one of two named GPU stack
profiles (:data:`PROFILES`), each a pin set that CI resolves against the recorded Colab and Kaggle images
(``tests/test_stack_resolves.py``):

* ``unsloth``: keeps the runtime's own torch (any CUDA build, any driver that runs it), adds Unsloth without vLLM
  (``fast_inference=False``; GRPO samples with Hugging Face ``generate``). No restart for torch. The default
  wherever the vLLM profile cannot be shown to fit.
* ``unsloth-vllm``: the course's pinned vLLM 0.30.0, which pins torch 2.13.0; both are CUDA 13 builds on PyPI, so it
  needs a driver of the 580 series or newer and compute capability 7.5 or newer (CUDA 13 dropped Maxwell, Pascal
  and Volta). With 4-bit it brings ``vllm-bnb-plugin`` (vLLM >= 0.28 has no built-in bitsandbytes). Chosen by itself
  only on compute capability 8.0+ (vLLM's tested GPUs; Unsloth's own T4 notebooks pin an older vLLM), forced with
  ``GRPO_COURSE_PROFILE=unsloth-vllm``. Below 8.0 it sets ``UNSLOTH_VLLM_NO_FLASHINFER=1`` before Unsloth is imported.

The backend (:func:`detect_backend`) follows the profile, and :func:`environment_report` says which profile was
chosen, why, and what it gives up.

Example:
    >>> t4 = RuntimeFacts("colab", "Tesla T4", (7, 5), "580.82.07", "3.12.13", {"torch": "2.11.0+cu128"})
    >>> choose_profile(t4).profile.name, t4.torch_cuda
    ('unsloth', 12)
    >>> choose_profile(dataclasses.replace(t4, gpu_name="NVIDIA A100-SXM4-40GB", capability=(8, 0))).profile.name
    'unsloth-vllm'
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from grpo_helpers import config
from grpo_helpers.config import BACKENDS, GPU_PINS, PINS
from grpo_helpers.errors import CourseError

MIN_CAPABILITY = (7, 0)  # Triton, and so Unsloth, needs compute capability 7.0 or newer
# The oldest GPUs each CUDA major still builds for: CUDA 13 dropped Maxwell, Pascal and Volta (sm_50 to sm_72).
CUDA_MIN_CAPABILITY = {12: (5, 0), 13: (7, 5)}
# The oldest Linux driver branch that runs each CUDA major (NVIDIA's CUDA compatibility tables: 12.x from 525.60.13
# with minor-version compatibility, 13.x from 580.65.06).
CUDA_DRIVER_FLOOR = {12: 525, 13: 580}
VLLM_AUTO_CAPABILITY = (8, 0)  # the vLLM profile is chosen without being asked only from here
FLASHINFER_MIN_CAPABILITY = (8, 0)  # vLLM refuses its FlashInfer sampler below this (a T4 is 7.5)
KAGGLE_WORKING = Path("/kaggle/working")
# Compute capability by GPU name, for drivers whose nvidia-smi cannot report it.
KNOWN_CAPABILITIES = {"T4": (7, 5), "P100": (6, 0), "P4": (6, 1), "K80": (3, 7), "V100": (7, 0), "L4": (8, 9),
                      "A10": (8, 6), "A100": (8, 0), "L40": (8, 9), "H100": (9, 0), "H200": (9, 0)}


# ------------------------------------------------------------------------------------------------------ the facts

@dataclasses.dataclass(frozen=True)
class RuntimeFacts:
    """What the install plan and the profile choice decide from; built by :func:`detect_facts` (or by hand in tests)."""

    runtime: str  # "colab" | "kaggle" | "local"
    gpu_name: str | None
    capability: tuple[int, int] | None
    driver: str | None  # NVIDIA driver version, e.g. "580.82.07"
    python: str  # e.g. "3.12.13"
    installed: Mapping[str, str]  # distribution name -> version
    imported: frozenset[str] = frozenset()  # top-level modules already in sys.modules
    tiny: bool | None = None  # GRPO_COURSE_TINY (None: tiny unless a usable GPU)
    profile: str | None = None  # GRPO_COURSE_PROFILE (None: chosen from the facts)
    torch_requires: tuple[str, ...] = ()  # torch's Requires-Dist, for a build without a +cuXYZ tag

    @property
    def torch(self) -> str | None:
        return self.installed.get("torch")

    @property
    def torch_cuda(self) -> int | None:
        """The CUDA major version the installed torch was built for (None: no torch, or a CPU build)."""
        return torch_cuda_major(self.torch, self.torch_requires)

    @property
    def driver_major(self) -> int | None:
        return int(self.driver.split(".")[0]) if self.driver and self.driver.split(".")[0].isdigit() else None

    @property
    def usable_gpu(self) -> bool:
        """A GPU that Unsloth (Triton) can use: compute capability 7.0 or newer."""
        return self.capability is not None and tuple(self.capability) >= MIN_CAPABILITY

    @property
    def tiny_mode(self) -> bool:
        return (not self.usable_gpu) if self.tiny is None else self.tiny

    def describe_gpu(self) -> str:
        if self.gpu_name is None:
            return "no NVIDIA GPU"
        cap = f"compute capability {self.capability[0]}.{self.capability[1]}" if self.capability else "capability unknown"
        return f"{self.gpu_name} ({cap}, driver {self.driver or 'unknown'})"


def torch_cuda_major(version: str | None, requires: tuple[str, ...] = ()) -> int | None:
    """CUDA major of a torch build: from its local tag (``2.11.0+cu128`` -> 12), else from its requirements (PyPI's
    wheels carry no tag: torch 2.11+ from PyPI requires ``cuda-toolkit==13.*``, older ones ``nvidia-*-cu12``).

    Example:
        >>> torch_cuda_major("2.11.0+cu128"), torch_cuda_major("2.13.0+cpu"), torch_cuda_major(None)
        (12, None, None)
        >>> torch_cuda_major("2.13.0", ("cuda-toolkit[cublas,cudart]==13.0.3", "filelock"))
        13
    """
    if version is None:
        return None
    local = version.partition("+")[2]
    if local:
        match = re.fullmatch(r"cu(\d+?)(\d)", local)
        return int(match.group(1)) if match else None  # "cpu", "rocm6.2", ...: no CUDA
    for req in requires:
        match = re.match(r"cuda-toolkit\b[^=<>~]*==\s*(\d+)\.", req) or re.match(r"nvidia-[a-z-]+-cu(\d+)\b", req)
        if match:
            return int(match.group(1))
    return None


def _colab_available() -> bool:
    return config.is_installed("google.colab")


def detect_runtime() -> str:
    """``"colab"``, ``"kaggle"`` or ``"local"``: Colab has the ``google.colab`` package, Kaggle has ``/kaggle/working``.

    Example:
        >>> detect_runtime()  # doctest: +SKIP
        'local'
    """
    if _colab_available():
        return "colab"
    if KAGGLE_WORKING.is_dir():
        return "kaggle"
    return "local"


@functools.lru_cache(maxsize=1)
def nvidia_smi() -> tuple[str | None, tuple[int, int] | None, str | None]:
    """(GPU name, compute capability, driver version) from nvidia-smi, or Nones; read once per process, and without
    importing torch (an import would hold torch's version until the runtime restarts)."""
    if shutil.which("nvidia-smi") is None:
        return None, None, None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None, None, None
    if not out:
        return None, None, None
    name, cap, driver = ([p.strip() for p in out[0].split(",")] + ["", ""])[:3]
    if re.fullmatch(r"\d+\.\d+", cap):
        capability = tuple(int(x) for x in cap.split("."))
    else:
        capability = next((c for key, c in KNOWN_CAPABILITIES.items() if key in name), None)
    return name or None, capability, (driver if re.match(r"\d+\.", driver) else None)


def _installed(names) -> dict[str, str]:
    found = {}
    for name in names:
        version = config.installed_version(name)
        if version is not None:
            found[name] = version
    return found


def watched_packages() -> set[str]:
    """The distributions the plan reads: the course's pins and what a GPU stack install can move under a kernel."""
    return {*PINS, *GPU_PINS, *config.RUNTIME_PINS, "numpy", "pillow", "torchvision", "torchaudio", "triton",
            "xformers", "torchao", "huggingface-hub", "tokenizers", "safetensors",
            *(spec.split("==")[0] for spec in config.OFFLINE_PACKAGES.values())}


def detect_facts() -> RuntimeFacts:
    """This runtime, as the plan sees it (imports nothing heavy)."""
    name, capability, driver = nvidia_smi()
    requires: tuple[str, ...] = ()
    try:
        requires = tuple(importlib.metadata.requires("torch") or ())
    except importlib.metadata.PackageNotFoundError:
        pass
    return RuntimeFacts(detect_runtime(), name, capability, driver, platform.python_version(),
                        _installed(watched_packages()), frozenset(m.split(".")[0] for m in sys.modules),
                        config.tiny_flag(), config.profile_override(), requires)


RECORDED_IMAGES = Path(__file__).parent / "data_files" / "runtime_images.json"


def recorded_images() -> dict[str, dict]:
    """The package sets of Colab's and Kaggle's GPU images, recorded from their public sources at named commits
    (``scripts/record_runtime_images.py``): ``{"colab-gpu": {...}, "kaggle-gpu": {...}}``."""
    import json

    return json.loads(RECORDED_IMAGES.read_text())


def recorded_facts(image: str, **changes) -> RuntimeFacts:
    """:class:`RuntimeFacts` of a recorded image with its T4 (``image``: ``"colab-gpu"`` or ``"kaggle-gpu"``).

    Example:
        >>> colab = recorded_facts("colab-gpu")
        >>> colab.gpu_name, colab.torch_cuda, choose_profile(colab).profile.name
        ('Tesla T4', 12, 'unsloth')
    """
    images = recorded_images()
    if image not in images:
        raise CourseError(f"No recorded image {image!r}.", fix=f"Use one of {', '.join(images)}.")
    data = images[image]
    packages = data["packages"]
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    installed = {name: packages[norm(name)] for name in watched_packages() if norm(name) in packages}
    facts = RuntimeFacts(image.split("-")[0], data["gpu"], tuple(data["capability"]), data["driver"], data["python"],
                         installed)
    return dataclasses.replace(facts, **changes)


# -------------------------------------------------------------------------------------------------- the profiles

@dataclasses.dataclass(frozen=True)
class Profile:
    """A named GPU stack: what it installs (versions from ``config.GPU_PINS`` / ``PINS``) and what it needs."""

    name: str  # also the backend it runs
    title: str
    packages: tuple[str, ...]  # names in GPU_PINS it installs
    installs_torch: bool  # True: torch==PINS["torch"] replaces the runtime's; False: the runtime's torch stays
    cuda_major: int | None  # CUDA major of what it installs (None: the runtime torch's)
    gives_up: str

    @property
    def backend(self) -> str:
        return self.name

    def pins(self) -> dict[str, str]:
        """``{distribution: version}`` of the GPU packages this profile installs."""
        pins = {d: GPU_PINS[d] for d in self.packages}
        if self.installs_torch:
            pins["torch"] = PINS["torch"]
        return pins


PROFILES: dict[str, Profile] = {
    "unsloth": Profile(
        "unsloth", "Unsloth on the runtime's own torch, no vLLM", ("unsloth", "unsloth_zoo", "bitsandbytes"),
        installs_torch=False, cuda_major=None,
        gives_up="vLLM generation: each GRPO step samples its group with Hugging Face generate, the slow part of "
                 "a step (notebook 06 gives the expected time per step)"),
    "unsloth-vllm": Profile(
        "unsloth-vllm", "Unsloth + vLLM 0.30 (torch 2.13, CUDA 13)",
        ("unsloth", "unsloth_zoo", "bitsandbytes", "vllm", "vllm-bnb-plugin"),
        installs_torch=True, cuda_major=13,
        gives_up="the runtime's own torch: torch 2.13 (several GB) replaces it, then the runtime restarts once"),
}
assert set(PROFILES) == set(config.PROFILES)


@dataclasses.dataclass(frozen=True)
class ProfileChoice:
    """The profile for a runtime (None in tiny CPU mode), why, and a problem that stops the install (or None)."""

    profile: Profile | None
    reason: str
    problem: str | None = None

    def line(self) -> str:
        """One line for the environment report."""
        if self.problem:
            return f"none: {self.problem}"
        if self.profile is None:
            return f"none (tiny CPU mode): {self.reason}"
        return f"{self.profile.name} ({self.profile.title}): {self.reason}"


def gpu_problem(name: str, capability: tuple[int, int]) -> str | None:
    """A plain sentence when Unsloth cannot use this GPU at all (compute capability below 7.0), else None.

    Example:
        >>> gpu_problem("Tesla P100-PCIE-16GB", (6, 0))
        'Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings (Tesla P100-PCIE-16GB has compute capability 6.0; Triton needs 7.0 or newer), or run tiny mode on the CPU.'
        >>> gpu_problem("Tesla T4", (7, 5)) is None
        True
    """
    if tuple(capability) >= MIN_CAPABILITY:
        return None
    return (f"Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings ({name} has compute capability "
            f"{capability[0]}.{capability[1]}; Triton needs 7.0 or newer), or run tiny mode on the CPU.")


def cuda_problem(facts: RuntimeFacts, cuda_major: int, what: str) -> str | None:
    """Why a CUDA ``cuda_major`` build (``what``) cannot run here: too old a GPU or driver; None when it can.

    Example:
        >>> v100 = RuntimeFacts("local", "Tesla V100-SXM2-16GB", (7, 0), "580.65.06", "3.12.3", {})
        >>> cuda_problem(v100, 13, "the unsloth-vllm profile").split(":")[0]
        'the unsloth-vllm profile installs CUDA 13 builds, which no longer run on compute capability 7.0 (Tesla V100-SXM2-16GB)'
    """
    floor_cap, floor_driver = CUDA_MIN_CAPABILITY.get(cuda_major), CUDA_DRIVER_FLOOR.get(cuda_major)
    way_out = ("use the profile without vLLM (GRPO_COURSE_PROFILE=unsloth), which keeps the runtime's own torch"
               if "vllm" in what else "install a torch built for an older CUDA, or use another runtime")
    if floor_cap and facts.capability and tuple(facts.capability) < floor_cap:
        return (f"{what} installs CUDA {cuda_major} builds, which no longer run on compute capability "
                f"{facts.capability[0]}.{facts.capability[1]} ({facts.gpu_name}): {way_out}, or pick another "
                f"accelerator (T4, L4, A100)")
    if floor_driver and facts.driver_major is not None and facts.driver_major < floor_driver:
        return (f"{what} installs CUDA {cuda_major} builds, which need an NVIDIA driver {floor_driver} or newer; "
                f"this runtime has {facts.driver}: {way_out}, or a runtime with a newer driver")
    return None


def choose_profile(facts: RuntimeFacts) -> ProfileChoice:
    """The GPU stack profile for ``facts``; see the module docstring for the rule.

    Example:
        >>> p100 = RuntimeFacts("kaggle", "Tesla P100-PCIE-16GB", (6, 0), "560.35.03", "3.12.13", {})
        >>> choose_profile(p100).problem.startswith("Unsloth/Triton cannot use this GPU")
        True
        >>> old = RuntimeFacts("kaggle", "Tesla T4", (7, 5), "560.35.03", "3.12.13", {}, profile="unsloth-vllm")
        >>> "driver 580 or newer" in choose_profile(old).problem
        True
    """
    if facts.capability is not None and not facts.usable_gpu:
        return ProfileChoice(None, "", gpu_problem(facts.gpu_name or "this GPU", facts.capability))
    if facts.capability is None:
        return ProfileChoice(None, "no NVIDIA GPU here")
    if facts.tiny_mode:
        return ProfileChoice(None, "GRPO_COURSE_TINY=1")
    if facts.torch_cuda is not None:  # the runtime's own torch must run here, whatever the profile
        problem = cuda_problem(facts, facts.torch_cuda, f"this runtime's torch {facts.torch}")
        if problem:
            return ProfileChoice(None, "", problem)
    vllm = PROFILES["unsloth-vllm"]
    if facts.profile is not None:
        profile = PROFILES[facts.profile]
        problem = cuda_problem(facts, vllm.cuda_major, "the unsloth-vllm profile") if profile is vllm else None
        if profile is vllm and problem is None and facts.driver_major is None:
            problem = ("the unsloth-vllm profile needs an NVIDIA driver 580 or newer and nvidia-smi reports none: "
                       "use the profile without vLLM (GRPO_COURSE_PROFILE=unsloth)")
        return ProfileChoice(profile, "forced with GRPO_COURSE_PROFILE", problem)
    gpu = facts.describe_gpu()
    if tuple(facts.capability) < VLLM_AUTO_CAPABILITY:
        return ProfileChoice(PROFILES["unsloth"], f"{gpu} is below compute capability 8.0, where vLLM 0.30 is not "
                             "proven (Unsloth's own T4 notebooks pin an older vLLM); GRPO_COURSE_PROFILE=unsloth-vllm "
                             "forces it")
    if facts.driver_major is None or cuda_problem(facts, vllm.cuda_major, "vllm"):
        return ProfileChoice(PROFILES["unsloth"], f"{gpu}: vLLM 0.30's CUDA 13 build needs driver 580 or newer")
    return ProfileChoice(vllm, f"{gpu} runs vLLM 0.30's CUDA 13 build (driver 580 or newer, compute capability 8.0+)")


def profile_env(facts: RuntimeFacts, choice: ProfileChoice) -> dict[str, str]:
    """Environment variables the chosen profile needs before ``import unsloth``.

    Example:
        >>> t4 = RuntimeFacts("colab", "Tesla T4", (7, 5), "580.82.07", "3.12.13", {}, profile="unsloth-vllm")
        >>> profile_env(t4, choose_profile(t4))
        {'UNSLOTH_VLLM_NO_FLASHINFER': '1'}
    """
    env = {}
    if (choice.profile is PROFILES["unsloth-vllm"] and facts.capability is not None
            and tuple(facts.capability) < FLASHINFER_MIN_CAPABILITY):
        # unsloth_zoo would otherwise turn on vLLM's FlashInfer sampler, which vLLM refuses on sm_75 (vllm_utils.py)
        env["UNSLOTH_VLLM_NO_FLASHINFER"] = "1"
    return env


def apply_profile_env(facts: RuntimeFacts | None = None) -> dict[str, str]:
    """Set :func:`profile_env` in this process (before Unsloth is imported); returns what it set."""
    if not has_cuda_device():
        return {}
    facts = facts or detect_facts()
    env = profile_env(facts, choose_profile(facts))
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return env


# ------------------------------------------------------------------------------------------- device and backend

def has_cuda_device() -> bool:
    """An NVIDIA GPU is visible to nvidia-smi (no torch import)."""
    return nvidia_smi()[0] is not None


def has_cuda() -> bool:
    """True when torch sees a CUDA GPU (False when torch itself is missing)."""
    if not config.is_installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def usable_gpu() -> bool:
    """A CUDA GPU that Unsloth can use (compute capability 7.0 or newer: a T4 yes, Kaggle's P100 no)."""
    if not has_cuda():
        return False
    import torch

    return tuple(torch.cuda.get_device_capability()) >= MIN_CAPABILITY


def is_tiny() -> bool:
    """Tiny CPU mode? ``GRPO_COURSE_TINY`` decides; unset means 'tiny unless a usable CUDA GPU is present'."""
    flag = config.tiny_flag()
    return (not usable_gpu()) if flag is None else flag


def detect_backend(override: str | None = None) -> str:
    """The backend this machine runs: the profile's on a GPU with Unsloth installed, else ``trl-peft``.

    ``unsloth-vllm`` needs CUDA + unsloth + vllm and the ``unsloth-vllm`` profile; ``unsloth`` needs CUDA + unsloth;
    ``trl-peft`` runs anywhere. ``override`` (or ``GRPO_COURSE_BACKEND``) forces one; asking for a GPU backend
    without a GPU, or without its packages, is an error that says what to do.

    Example:
        >>> detect_backend("trl-peft")
        'trl-peft'
    """
    choice = override or config.backend_override()
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
            missing = [m for m in (["unsloth", "vllm"] if choice == "unsloth-vllm" else ["unsloth"])
                       if not config.is_installed(m)]
            if missing:
                raise CourseError(f"Backend {choice!r} needs {', '.join(missing)}, which is not installed.",
                                  fix="Run the first cell of the notebook: it installs the GPU stack profile.")
        return choice
    if not has_cuda() or not config.is_installed("unsloth"):
        return "trl-peft"
    profile = choose_profile(detect_facts()).profile
    if profile is PROFILES["unsloth-vllm"] and config.is_installed("vllm"):
        return "unsloth-vllm"
    return "unsloth"


# ---------------------------------------------------------------------------------------------------- the report

def _free_ram_gb() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def environment_report() -> str:
    """A one-screen report: versions, device, driver and torch build, stack profile and why, backend, free memory,
    pin problems.

    Example:
        >>> "stack profile" in environment_report()
        True
    """
    facts = detect_facts()
    lines = [f"python        {facts.python} ({sys.platform}, {facts.runtime})"]
    for dist in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "unsloth", "vllm", "bitsandbytes"):
        lines.append(f"{dist:<13} {config.installed_version(dist) or '-'}")
    if has_cuda():
        import torch

        free, total = torch.cuda.mem_get_info()
        lines.append(f"device        {facts.describe_gpu()}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB VRAM free")
    elif facts.gpu_name:
        lines.append(f"device        {facts.describe_gpu()}, but torch sees no CUDA GPU")
    else:
        lines.append(f"device        CPU ({os.cpu_count()} cores), no CUDA GPU")
    if facts.torch:
        cuda = f"CUDA {facts.torch_cuda}" if facts.torch_cuda else "no CUDA"
        lines.append(f"torch build   {facts.torch} ({cuda})")
    lines.append(f"free RAM      {_free_ram_gb():.1f} GiB")
    try:
        choice = choose_profile(facts)
        lines.append(f"stack profile {choice.line()}")
        if choice.profile is not None and not choice.problem:
            lines.append(f"gives up      {choice.profile.gives_up}")
            env = profile_env(facts, choice)
            if env:
                lines.append("environment   " + ", ".join(f"{k}={v}" for k, v in env.items()))
        backend = detect_backend()
        tiny = is_tiny()
    except CourseError as err:
        backend, tiny = f"error: {err}", "?"
    lines.append(f"backend       {backend}")
    lines.append(f"tiny mode     {tiny}")
    problems = config.check_pins()
    lines.append("pins          " + ("ok" if not problems else "; ".join(problems)))
    return "\n".join(lines)


def show_environment() -> None:
    """Print :func:`environment_report`, set the profile's environment variables, and make course errors show as
    short messages in Jupyter."""
    from grpo_helpers.errors import install_short_errors

    install_short_errors()
    apply_profile_env()
    print(environment_report())
