"""grpo_helpers.runtime: the facts of a runtime, the stack profile chosen from them, the backend, the report."""

from __future__ import annotations

import dataclasses
import doctest

import pytest

from grpo_helpers import config, runtime
from grpo_helpers.errors import CourseError
from grpo_helpers.runtime import PROFILES, RuntimeFacts, choose_profile, profile_env

COLAB_T4 = RuntimeFacts("colab", "Tesla T4", (7, 5), "580.82.07", "3.13.15", {"torch": "2.11.0+cu128"})
KAGGLE_T4 = RuntimeFacts("kaggle", "Tesla T4", (7, 5), "560.35.03", "3.12.13", {"torch": "2.10.0+cu128"})
A100 = RuntimeFacts("colab", "NVIDIA A100-SXM4-40GB", (8, 0), "580.82.07", "3.13.15", {"torch": "2.11.0+cu128"})


def test_doctests():
    failures, tried = doctest.testmod(runtime)
    assert tried >= 10 and failures == 0


def test_torch_cuda_build_is_read_without_importing_torch():
    assert runtime.torch_cuda_major("2.11.0+cu128") == 12 and runtime.torch_cuda_major("2.11.0+cu130") == 13
    assert runtime.torch_cuda_major("2.9.0+cu126") == 12 and runtime.torch_cuda_major("2.13.0+cpu") is None
    # PyPI's wheels have no tag: their requirements tell (torch 2.11+ from PyPI is a CUDA 13 build).
    assert runtime.torch_cuda_major("2.13.0", ("cuda-toolkit[cublas,cudart]==13.0.3",)) == 13
    assert runtime.torch_cuda_major("2.9.1", ("nvidia-cuda-runtime-cu12==12.8.90; platform_system == 'Linux'",)) == 12
    here = runtime.detect_facts()
    assert here.torch == config.installed_version("torch") and here.torch_cuda is None  # this venv: torch 2.13.0+cpu


def test_a_t4_gets_the_runtime_torch_without_vllm_and_is_told_why():
    choice = choose_profile(COLAB_T4)
    assert choice.profile is PROFILES["unsloth"] and choice.problem is None
    line = choice.line()
    assert line.startswith("unsloth (Unsloth on the runtime's own torch, no vLLM): Tesla T4")
    assert "compute capability 7.5" in line and "GRPO_COURSE_PROFILE=unsloth-vllm" in line
    assert "Hugging Face generate" in choice.profile.gives_up
    assert not PROFILES["unsloth"].installs_torch and "vllm" not in PROFILES["unsloth"].pins()
    assert profile_env(COLAB_T4, choice) == {}


def test_vllm_is_chosen_only_where_gpu_and_driver_fit():
    assert choose_profile(A100).profile is PROFILES["unsloth-vllm"]
    old_driver = dataclasses.replace(A100, driver="570.124.06")
    assert choose_profile(old_driver).profile is PROFILES["unsloth"]
    assert "driver 580" in choose_profile(old_driver).reason
    no_driver = dataclasses.replace(A100, driver=None)
    assert choose_profile(no_driver).profile is PROFILES["unsloth"]
    pins = PROFILES["unsloth-vllm"].pins()
    assert pins["vllm-bnb-plugin"] == config.GPU_PINS["vllm-bnb-plugin"] and pins["torch"] == config.PINS["torch"]


def test_forcing_vllm_on_a_t4_sets_the_flashinfer_switch():
    forced = dataclasses.replace(COLAB_T4, profile="unsloth-vllm")
    choice = choose_profile(forced)
    assert choice.profile is PROFILES["unsloth-vllm"] and choice.problem is None
    assert profile_env(forced, choice) == {"UNSLOTH_VLLM_NO_FLASHINFER": "1"}
    assert profile_env(dataclasses.replace(A100, profile="unsloth-vllm"), choose_profile(A100)) == {}


@pytest.mark.parametrize("facts, words", [
    (dataclasses.replace(KAGGLE_T4, profile="unsloth-vllm"),
     ["need an NVIDIA driver 580 or newer", "560.35.03", "GRPO_COURSE_PROFILE=unsloth"]),
    (RuntimeFacts("local", "Tesla V100-SXM2-16GB", (7, 0), "580.65.06", "3.12.3", {"torch": "2.8.0+cu126"},
                  profile="unsloth-vllm"),
     ["no longer run on compute capability 7.0", "Tesla V100", "GRPO_COURSE_PROFILE=unsloth", "another accelerator"]),
    (RuntimeFacts("kaggle", "Tesla P100-PCIE-16GB", (6, 0), "560.35.03", "3.12.13", {"torch": "2.10.0+cu128"}),
     ["Unsloth/Triton cannot use this GPU", "pick the T4", "6.0"]),
    (RuntimeFacts("local", "Tesla V100-SXM2-16GB", (7, 0), "580.65.06", "3.12.3", {"torch": "2.11.0+cu130"}),
     ["torch 2.11.0+cu130", "CUDA 13", "compute capability 7.0"]),
])
def test_hardware_the_stack_cannot_serve_gets_a_plain_message(facts, words):
    problem = choose_profile(facts).problem
    assert problem is not None and "\n" not in problem
    for word in words:
        assert word in problem, (word, problem)


def test_a_v100_with_a_cuda12_torch_runs_the_profile_without_vllm():
    v100 = RuntimeFacts("local", "Tesla V100-SXM2-16GB", (7, 0), "550.54.15", "3.12.3", {"torch": "2.8.0+cu126"})
    assert choose_profile(v100).profile is PROFILES["unsloth"] and choose_profile(v100).problem is None


def test_tiny_mode_has_no_profile():
    assert choose_profile(dataclasses.replace(COLAB_T4, tiny=True)).profile is None
    assert choose_profile(RuntimeFacts("colab", None, None, None, "3.12.13", {})).profile is None


@pytest.mark.parametrize("cuda, installed, profile, expected", [
    (True, {"unsloth", "vllm"}, "unsloth-vllm", "unsloth-vllm"),
    (True, {"unsloth", "vllm"}, "unsloth", "unsloth"),  # the profile says no vLLM, whatever else is installed
    (True, {"unsloth"}, "unsloth-vllm", "unsloth"),
    (True, set(), "unsloth", "trl-peft"),
    (False, {"unsloth", "vllm"}, "unsloth-vllm", "trl-peft"),
])
def test_backend_follows_the_profile(monkeypatch, cuda, installed, profile, expected):
    monkeypatch.delenv("GRPO_COURSE_BACKEND", raising=False)
    monkeypatch.setattr(runtime, "has_cuda", lambda: cuda)
    monkeypatch.setattr(config, "is_installed", lambda m: m in installed)
    monkeypatch.setattr(runtime, "detect_facts", lambda: A100 if profile == "unsloth-vllm" else COLAB_T4)
    assert runtime.detect_backend() == expected


def test_backend_override_and_env(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_BACKEND", "trl-peft")
    assert runtime.detect_backend() == "trl-peft"
    with pytest.raises(CourseError, match="unsloth-vllm, unsloth, trl-peft"):
        runtime.detect_backend("deepspeed")


def test_gpu_backend_on_cpu_explains_tiny_mode(monkeypatch):
    monkeypatch.setattr(runtime, "has_cuda", lambda: False)
    with pytest.raises(CourseError, match="needs a CUDA GPU") as err:
        runtime.detect_backend("unsloth-vllm")
    assert "GRPO_COURSE_TINY=1" in str(err.value)


def test_tiny_switch_is_read_from_env(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_TINY", "1")
    assert runtime.is_tiny() is True
    monkeypatch.setenv("GRPO_COURSE_TINY", "0")
    assert runtime.is_tiny() is False
    monkeypatch.delenv("GRPO_COURSE_TINY")
    monkeypatch.setattr(runtime, "has_cuda", lambda: False)
    assert runtime.is_tiny() is True


def test_environment_report_has_the_essentials():
    report = runtime.environment_report()
    for word in ("torch", "transformers", "trl", "peft", "device", "torch build", "free RAM", "stack profile",
                 "backend", "tiny mode", "pins"):
        assert word in report
    assert "pins          ok" in report  # the venv made by `make setup` matches the pins
    assert "stack profile none (tiny CPU mode)" in report


def _fake_gpu(monkeypatch, name, capability, driver):
    import torch

    monkeypatch.delenv("GRPO_COURSE_TINY", raising=False)
    monkeypatch.delenv("GRPO_COURSE_BACKEND", raising=False)
    monkeypatch.setattr(runtime, "nvidia_smi", lambda: (name, capability, driver))
    monkeypatch.setattr(runtime, "has_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (15 * 2**30, 16 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)


def test_environment_report_names_the_profile_on_a_t4(monkeypatch):
    _fake_gpu(monkeypatch, "Tesla T4", (7, 5), "580.82.07")
    report = runtime.environment_report()
    assert "device        Tesla T4 (compute capability 7.5, driver 580.82.07), 15.0 of 16.0 GiB VRAM free" in report
    profile = next(line for line in report.splitlines() if line.startswith("stack profile"))
    assert profile.startswith("stack profile unsloth (Unsloth on the runtime's own torch, no vLLM): Tesla T4")
    assert "gives up      vLLM generation" in report


def test_environment_report_names_an_unsupported_gpu(monkeypatch):
    """Kaggle's P100 (capability 6.0): Triton, and so Unsloth, cannot use it; the report says what to do."""
    _fake_gpu(monkeypatch, "Tesla P100-PCIE-16GB", (6, 0), "560.35.03")
    report = runtime.environment_report()
    assert "Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings" in report
    assert "compute capability 6.0" in report
    assert "tiny mode     True" in report  # the course falls back to tiny mode instead of failing later
