"""grpo_helpers.config: the environment switches (read only there) and the pins."""

import doctest

import pytest

from grpo_helpers import config
from grpo_helpers.errors import CourseError


def test_doctests():
    failures, tried = doctest.testmod(config)
    assert tried >= 3 and failures == 0


def test_config_imports_nothing_else_from_the_package():
    """The bottom layer: everything else may import config, config imports only errors."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(config.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("grpo_helpers")} == {"grpo_helpers.errors"}


def test_tiny_flag(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_TINY", "1")
    assert config.tiny_flag() is True
    monkeypatch.setenv("GRPO_COURSE_TINY", "off")
    assert config.tiny_flag() is False
    monkeypatch.delenv("GRPO_COURSE_TINY")
    assert config.tiny_flag() is None
    monkeypatch.setenv("GRPO_COURSE_TINY", "maybe")
    with pytest.raises(CourseError, match="GRPO_COURSE_TINY=1"):
        config.tiny_flag()


def test_profile_and_backend_overrides_are_checked(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_PROFILE", "unsloth")
    assert config.profile_override() == "unsloth"
    monkeypatch.setenv("GRPO_COURSE_PROFILE", "vllm")
    with pytest.raises(CourseError, match="unsloth, unsloth-vllm"):
        config.profile_override()
    monkeypatch.setenv("GRPO_COURSE_BACKEND", "deepspeed")
    with pytest.raises(CourseError, match="unsloth-vllm, unsloth, trl-peft"):
        config.backend_override()


def test_pin_mismatch_is_described():
    assert config.check_pins({"torch": "0.0.1"})[0].startswith("torch: 2.13.0")
    assert config.check_pins({"torch": "0.0.1"})[0].endswith("the course pins 0.0.1")


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_COURSE_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_overrides_are_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_COURSE_RUNS", str(tmp_path / "runs"))
    assert config.runs_override() == tmp_path / "runs"
    monkeypatch.setenv("GRPO_COURSE_DTYPE", "fp8")
    with pytest.raises(CourseError, match="GRPO_COURSE_DTYPE=float16"):
        config.dtype_override()
    monkeypatch.setenv("GRPO_COURSE_STEPS", "two")
    with pytest.raises(CourseError, match="positive whole number"):
        config.steps_override()
