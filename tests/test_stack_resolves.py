"""Every GPU stack profile resolves on the recorded Colab and Kaggle GPU images, with the exact pip command the plan emits.

For each runtime x profile: the runtime's facts come from grpo_helpers/data_files/runtime_images.json (recorded from
googlecolab/backend-info and Kaggle/docker-python at named commits by scripts/record_runtime_images.py), the plan is
``install.plan_install`` on them, and pip resolves the plan's own arguments with ``--dry-run --ignore-installed
--report`` for the image's Python on manylinux x86_64, binaries only (metadata, no downloads of wheels), with the
runtime's kept packages as constraints. PyPI has no ``+cu128`` builds, so a kept ``torch==2.11.0+cu128`` is
resolved as PyPI's ``torch==2.11.0``: same version and requirements, other CUDA packages (which the CUDA check below
therefore reads from the image's torch, not from PyPI's stand-in). Asserted:

* it resolves without conflict;
* the kept torch is not replaced (the ``unsloth`` profile);
* every module the chosen settings import is provided, with 4-bit + vLLM the bitsandbytes plugin read from the
  pinned unsloth_zoo's own source (the module paths it tries to import), not from a typed list;
* the CUDA major of what is installed matches the profile's driver floor (runtime.CUDA_DRIVER_FLOOR).

Needs PyPI (pip's resolver reads metadata from it); without it the tests skip and say so.
"""

from __future__ import annotations

import ast
import concurrent.futures
import dataclasses
import json
import re
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

import background
from grpo_helpers import install, runtime
from grpo_helpers.config import GPU_PINS, PINS
from grpo_helpers.recipes import SEED
from grpo_helpers.runtime import CUDA_DRIVER_FLOOR, PROFILES, RuntimeFacts, torch_cuda_major

IMAGES = runtime.recorded_images()
# Kaggle publishes no driver: the vLLM profile is refused there (test below); its pins are still resolved on
# Kaggle's Python and packages as if the driver were the CUDA 13 floor, to show what a newer driver would get.
ASSUMED_DRIVER = f"{CUDA_DRIVER_FLOOR[13]}.65.06"
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(35, 16, -1)] + ["manylinux2014_x86_64", "linux_x86_64"]
CASES = [(image, profile) for image in IMAGES for profile in PROFILES]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def registry():
    if not pypi_reachable():
        pytest.skip("PyPI (https://pypi.org) is not reachable: pip cannot read the packages' metadata to resolve them")


def facts_for(image: str, profile: str) -> RuntimeFacts:
    return runtime.recorded_facts(image, driver=IMAGES[image]["driver"] or ASSUMED_DRIVER, tiny=False, profile=profile)


def resolve(image: str, profile: str, tmp: Path) -> dict:
    facts = facts_for(image, profile)
    steps = install.plan_install(facts)
    assert len(steps) == 1 and steps[0].why.startswith(f"GPU stack, profile {profile}:"), steps
    step = steps[0]
    keep = tmp / f"{image}-{profile}-keep.txt"
    keep.write_text("".join(f"{c.split('+')[0]}\n" for c in step.keep))  # PyPI has no +cu128 local builds
    report = tmp / f"{image}-{profile}-report.json"
    python = ".".join(facts.python.split(".")[:2])
    cmd = [sys.executable, "-m", "pip", "install", *step.args, "-c", str(keep), "--dry-run", "--ignore-installed",
           "--report", str(report), "--python-version", python, "--implementation", "cp", "--only-binary=:all:",
           "--disable-pip-version-check", *[f"--platform={p}" for p in PLATFORMS]]
    start = time.perf_counter()
    done = subprocess.run(background.niced(cmd), capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    installs = json.loads(report.read_text())["install"] if done.returncode == 0 else []
    return dict(facts=facts, step=step, returncode=done.returncode, stderr=done.stderr[-3000:], seconds=seconds,
                resolved={norm(i["metadata"]["name"]): i["metadata"] for i in installs})


def resolve_all() -> dict:
    """All runtime x profile resolves, four at once (pip waits on the network most of the time)."""
    tmp = background.temp_dir("resolve")
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        futures = {case: pool.submit(resolve, *case, tmp) for case in CASES}
        return {case: f.result() for case, f in futures.items()}


def zoo_vllm_utils() -> str:
    """The pinned unsloth_zoo's ``vllm_utils.py``, read from its wheel (downloaded, not installed)."""
    tmp = background.temp_dir("zoo")
    subprocess.run(background.niced([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                                     "--disable-pip-version-check", f"unsloth_zoo=={GPU_PINS['unsloth_zoo']}", "-d",
                                     str(tmp)]), check=True, capture_output=True, timeout=300)
    wheel = next(tmp.glob("unsloth_zoo-*.whl"))
    return zipfile.ZipFile(wheel).read("unsloth_zoo/vllm_utils.py").decode()


def start_in_background() -> None:
    """Called by tests/conftest.py once collection is done: the resolves overlap the tests that run before these."""
    if pypi_reachable():
        background.start("stack-resolves", resolve_all)
        background.start("unsloth-zoo-source", zoo_vllm_utils)


@pytest.fixture(scope="module")
def resolved():
    results = background.result("stack-resolves", resolve_all)
    print("\n" + "\n".join(f"resolve {image} x {profile}: {r['seconds']:.1f} s, {len(r['resolved'])} packages"
                           for (image, profile), r in results.items()))
    return results


@pytest.fixture(scope="module")
def zoo_bnb_modules() -> list[str]:
    """The module paths the pinned unsloth_zoo tries, in order, for vLLM's bitsandbytes (vllm_utils.py's
    ``for _bnb_path in (...)``): read from its wheel, so a new unsloth_zoo that needs another module shows up here."""
    source = background.result("unsloth-zoo-source", zoo_vllm_utils)
    paths = [c.value for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and node.target.id == "_bnb_path"
             for c in ast.walk(node.iter) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    assert paths, "unsloth_zoo's vllm_utils.py no longer has the `for _bnb_path in (...)` loop: read it again"
    return paths


def imported_modules(profile: str, zoo_paths: list[str]) -> set[str]:
    """Top-level modules the seed recipe's settings import on this profile."""
    modules = {"torch", "transformers", "trl", "peft", "accelerate", "datasets", "math_verify", "unsloth",
               "unsloth_zoo", "matplotlib", "ipywidgets", "tqdm", "psutil"}
    if SEED["load_in_4bit"]:
        modules.add("bitsandbytes")
    if profile == "unsloth-vllm":
        modules.add("vllm")
        if SEED["load_in_4bit"]:
            # vLLM >= 0.28 has no in-tree bitsandbytes: of unsloth_zoo's candidates, those outside vllm must be there.
            modules |= {p.split(".")[0] for p in zoo_paths if p.split(".")[0] != "vllm"}
    return modules


@pytest.mark.parametrize("image, profile", CASES)
def test_profile_resolves_on_the_recorded_image(resolved, zoo_bnb_modules, image, profile):
    r = resolved[(image, profile)]
    assert r["returncode"] == 0, f"{image} x {profile} does not resolve:\n{r['stderr']}"
    got, facts, chosen = r["resolved"], r["facts"], PROFILES[profile]
    image_packages = IMAGES[image]["packages"]
    for dist, version in {**chosen.pins(), **{k: v for k, v in PINS.items() if k != "torch"}}.items():
        assert got[norm(dist)]["version"] == version, f"{dist}: pinned {version}, resolved {got[norm(dist)]['version']}"

    # The kept torch is not replaced; the vLLM profile's torch is the course's pin.
    torch_resolved = got["torch"]["version"]
    kept_torch = image_packages["torch"]
    if chosen.installs_torch:
        assert torch_resolved == PINS["torch"]
    else:
        assert torch_resolved == kept_torch.split("+")[0], f"the {profile} profile moved torch off {kept_torch}"

    # Every module the settings import is in the set (resolved, or kept from the image).
    provided = set(got) | set(image_packages)
    missing = {m for m in imported_modules(profile, zoo_bnb_modules) if norm(m) not in provided}
    assert missing == set(), f"{image} x {profile}: nothing provides {sorted(missing)}"

    # CUDA: what runs is the image's torch (kept) or PyPI's (installed); every CUDA-specific package pip adds
    # outside torch's own requirements is built for the same CUDA major; the driver floor of that major is met.
    if chosen.installs_torch:
        cuda = torch_cuda_major(torch_resolved, tuple(got["torch"].get("requires_dist", [])))
        assert cuda == chosen.cuda_major
    else:
        cuda = torch_cuda_major(kept_torch)
    torch_deps = {norm(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]) for req in got["torch"].get("requires_dist", [])}
    for name, meta in got.items():
        if name == "torch" or (not chosen.installs_torch and name in torch_deps):
            continue  # stand-ins for the image's own torch and its CUDA libraries
        suffix = re.search(r"-cu(\d+)$", name)
        major = int(suffix.group(1)) if suffix else (int(meta["version"].split(".")[0]) if name == "cuda-toolkit" else None)
        if suffix and f"{name[:suffix.start()]}-cu{cuda}" in got:
            continue  # a bundle for both CUDA majors (nvidia-cutlass-dsl always requires its cu12 libs, and its cu13
            # libs with the [cu13] extra vLLM asks for): the one for this CUDA is there as well
        assert major in (None, cuda), f"{name} {meta['version']} is a CUDA {major} build; torch here is CUDA {cuda}"
    assert facts.driver_major >= CUDA_DRIVER_FLOOR[cuda], (
        f"CUDA {cuda} needs driver {CUDA_DRIVER_FLOOR[cuda]}+, {image} has {facts.driver}")


def test_kaggle_refuses_the_vllm_profile_without_a_known_driver():
    """Kaggle does not publish its driver: forcing vLLM there without nvidia-smi's answer installs nothing."""
    facts = dataclasses.replace(facts_for("kaggle-gpu", "unsloth-vllm"), driver=IMAGES["kaggle-gpu"]["driver"])
    assert facts.driver is None and install.plan_install(facts) == []
    assert "driver 580 or newer" in runtime.choose_profile(facts).problem


def test_each_image_chooses_the_profile_without_vllm_on_its_t4():
    for image in IMAGES:
        facts = dataclasses.replace(facts_for(image, "unsloth"), profile=None, driver=IMAGES[image]["driver"])
        assert runtime.choose_profile(facts).profile is PROFILES["unsloth"]


def test_the_recorded_images_name_their_source():
    for image, data in IMAGES.items():
        assert re.fullmatch(r"[0-9a-f]{40}", data["commit"]) and data["source"].startswith("github.com/")
        assert data["python"].startswith("3.") and data["packages"]["torch"]
