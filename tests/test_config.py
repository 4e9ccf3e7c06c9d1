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
