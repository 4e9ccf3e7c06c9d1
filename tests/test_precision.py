"""Precision follows the model's real dtype; a (faked) T4 trains in fp16 for every preset and backend.

The T4 is faked only where the dtype is decided (torch.cuda's three answers, for one test), never for the process:
a process-wide capability 7.5 would also make Triton build sm_75 kernels on a real GPU.
"""

from __future__ import annotations

import doctest

import pytest
import torch

from grpo_helpers import config, precision
from grpo_helpers.recipes import course_config
from grpo_helpers.training import grpo_config_kwargs


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA GPU of the given capability whose is_bf16_supported() answers True (as a T4's does, by emulation)."""
    asked = []

    def install(capability: tuple[int, int]):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)

        def bf16_supported(*args, **kwargs):
            asked.append(1)
            return True

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16_supported)
        monkeypatch.setattr(config, "is_installed", lambda module: True)  # unsloth and vllm "installed"
        return asked

    return install


def test_doctests():
    failures, tried = doctest.testmod(precision)
    assert tried >= 5 and failures == 0


@pytest.mark.parametrize("preset", ["tiny", "seed"])
@pytest.mark.parametrize("backend", ["trl-peft", "unsloth", "unsloth-vllm"])
def test_t4_trains_in_fp16_for_every_preset_and_backend(fake_gpu, tmp_path, preset, backend):
    asked = fake_gpu((7, 5))
    kwargs = grpo_config_kwargs(preset, backend=backend, runs_dir=tmp_path)
    assert (kwargs["fp16"], kwargs["bf16"]) == (True, False)
    assert "use_cpu" not in kwargs
    assert not asked, "torch.cuda.is_bf16_supported() was consulted (True on a T4 through emulation)"


@pytest.mark.parametrize("backend", ["trl-peft", "unsloth", "unsloth-vllm"])
def test_t4_course_config_trains_in_fp16(fake_gpu, tmp_path, backend):
    asked = fake_gpu((7, 5))
    cfg = course_config(tiny=False, backend=backend, model_name="some/model")
    kwargs = grpo_config_kwargs(cfg, runs_dir=tmp_path)
    assert (kwargs["fp16"], kwargs["bf16"], kwargs["optim"]) == (True, False, "paged_adamw_8bit")
    assert kwargs.get("use_vllm", False) == (backend == "unsloth-vllm")
    assert not asked


def test_ampere_trains_in_bf16_unless_float16_is_forced(fake_gpu, tmp_path):
    fake_gpu((8, 0))
    assert precision.training_precision() == {"bf16": True, "fp16": False}
    assert grpo_config_kwargs("seed", backend="unsloth", runs_dir=tmp_path)["bf16"] is True
    forced = course_config(tiny=False, backend="unsloth", dtype="float16", model_name="some/model")
    kwargs = grpo_config_kwargs(forced, runs_dir=tmp_path)
    assert (kwargs["fp16"], kwargs["bf16"]) == (True, False)  # GRPO_COURSE_DTYPE=float16: a T4's setup on any GPU


@pytest.mark.parametrize("dtype, expected", [(torch.float16, (True, False)), (torch.bfloat16, (False, True)),
                                             (torch.float32, (False, False))])
def test_the_model_dtype_decides_even_against_the_gpu(fake_gpu, tmp_path, dtype, expected):
    asked = fake_gpu((9, 0))  # an H100 says bf16, but a model loaded in float16 must train in fp16
    model = torch.nn.Linear(2, 2).to(dtype)
    kwargs = grpo_config_kwargs("seed", backend="unsloth", runs_dir=tmp_path, model=model)
    assert (kwargs["fp16"], kwargs["bf16"]) == expected
    assert not asked


def test_model_dtype_reads_the_config_first_as_unsloth_does(tiny_random):
    model, _ = tiny_random
    assert precision.model_dtype(model) == torch.float32

    class FourBit(torch.nn.Module):  # packed uint8 weights; the config carries the compute dtype
        config = type("Config", (), {"dtype": "float16"})()

        def __init__(self):
            super().__init__()
            self.packed = torch.nn.Parameter(torch.zeros(4, dtype=torch.uint8), requires_grad=False)

    assert precision.model_dtype(FourBit()) == torch.float16
    assert precision.training_precision(FourBit()) == {"bf16": False, "fp16": True}


def test_cpu_trains_in_float32(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.training_precision() == {"bf16": False, "fp16": False}
    kwargs = grpo_config_kwargs("seed", backend="trl-peft", runs_dir=tmp_path)
    assert (kwargs["fp16"], kwargs["bf16"], kwargs["use_cpu"], kwargs["optim"]) == (False, False, True, "adamw_torch")
