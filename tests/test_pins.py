"""One pin set: pyproject.toml is the source; environment.yml and grpo_helpers.config must agree with it."""

import re
import tomllib
from pathlib import Path

import background
from grpo_helpers import config

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(requirements):
    return dict(r.split("==") for r in requirements)


def test_every_requirement_is_pinned_exactly():
    extras = _pyproject()["project"]["optional-dependencies"]
    for name, reqs in extras.items():
        for req in reqs:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", req), f"[{name}] {req} is not an exact pin"


def test_config_pins_equal_pyproject():
    extras = _pyproject()["project"]["optional-dependencies"]
    cpu, gpu = _pins(extras["cpu"]), _pins(extras["gpu"])
    assert all(cpu[k] == v for k, v in config.PINS.items())
    assert all(gpu[k] == v for k, v in config.GPU_PINS.items())
    assert sorted(config.OFFLINE_PACKAGES.values()) == sorted(_pyproject()["tool"]["grpo_course"]["no_deps"])


def test_environment_yml_mirrors_pyproject():
    pip_lines = re.findall(r"^\s+- ([A-Za-z0-9_.-]+==[^\s#]+)", (ROOT / "environment.yml").read_text(), re.M)
    extras = _pyproject()["project"]["optional-dependencies"]
    expected = sorted(extras["cpu"] + extras["dev"] + extras["docs"])
    assert sorted(pip_lines) == expected


def test_installed_packages_match_the_pins():
    extras = _pyproject()["project"]["optional-dependencies"]
    assert config.check_pins(_pins(extras["cpu"] + extras["dev"])) == []


def resolve_full_pin_set() -> tuple[int, str, dict]:
    """pip's dry-run resolve of cpu+dev+gpu together: (return code, stderr tail, {name: version})."""
    import json
    import subprocess
    import sys

    report = background.temp_dir("pins") / "report.json"
    result = subprocess.run(background.niced(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
         f"{ROOT}[cpu,dev,gpu]"]), capture_output=True, text=True, timeout=900)
    resolved = {} if result.returncode else {
        i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
        for i in json.loads(report.read_text())["install"]}
    return result.returncode, result.stderr[-3000:], resolved


def start_in_background() -> None:
    """Called by tests/conftest.py once collection is done: pip's resolve overlaps the tests that run before it."""
    background.start("full-pin-set", resolve_full_pin_set)


def test_full_pin_set_resolves_without_surprises():
    """pip resolves cpu+dev+gpu together and lands every pinned package exactly on its pin (no silent up/downgrade).

    Uses pip's resolver with --dry-run (no install), so it also checks the GPU stack (unsloth, vllm) on this CPU machine.
    """
    returncode, stderr, resolved = background.result("full-pin-set", resolve_full_pin_set)
    assert returncode == 0, f"the pin set does not resolve:\n{stderr}"
    extras = _pyproject()["project"]["optional-dependencies"]
    for name, want in _pins(extras["cpu"] + extras["gpu"] + extras["dev"]).items():
        got = resolved[name.lower().replace("_", "-")]
        assert got.split("+")[0] == want, f"{name}: pinned {want}, pip resolved {got}"
