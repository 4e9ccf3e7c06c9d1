"""The run a learner hands from notebook to notebook: course_run.json, the completions printer, the merged export
from a saved adapter, and ensure_lora's small fallback on the same model object. Tiny-random model, a few tokens."""

from __future__ import annotations

import json

import pytest
import torch

from grpo_helpers import course, training
from grpo_helpers.recipes import course_config
from grpo_helpers.errors import CourseError


def length_reward(completions, **kwargs) -> list[float]:
    """Test-only reward with variance inside every group (characters), so best and worst differ."""
    return [len(c if isinstance(c, str) else c[0]["content"]) / 10 for c in completions]


def tiny_cfg(**overrides):
    values = dict(model_preset="tiny-random", max_steps=2, num_generations=2, max_completion_length=8, train_rows=4,
                  eval_rows=2, lora_rank=4, lora_alpha=8, max_prompt_length=None)  # byte-level tokens: no prompt cap
    return course_config(tiny=True, **{**values, **overrides})


def test_doctests():
    import doctest

    assert doctest.testmod(course).failed == 0
    failures, tried = doctest.testmod(training)
    assert tried >= 5 and failures == 0


def test_save_lora_writes_course_run_json_and_run_settings_reads_it(tmp_path):
    from grpo_helpers.models import load_model

    cfg = tiny_cfg(max_completion_length=12)
    model, tokenizer = load_model(cfg.model_name, "trl-peft")
    lora = training.add_lora(model, "trl-peft", rank=cfg.lora_rank, alpha=cfg.lora_alpha)
    path = training.save_lora(lora, tmp_path / "lora", tokenizer, backend="trl-peft", cfg=cfg)
    written = json.loads((path / "course_run.json").read_text())
    assert written == {k: getattr(cfg, k) for k in training.RUN_SETTINGS_KEYS}
    assert course.run_settings(path)["max_completion_length"] == 12
    # Saved without the file (model.save_pretrained directly): rank/alpha from the adapter, the rest from cfg.
    lora.save_pretrained(tmp_path / "plain")
    settings = course.run_settings(tmp_path / "plain", cfg=tiny_cfg(max_completion_length=20))
    assert (settings["lora_rank"], settings["lora_alpha"], settings["max_completion_length"]) == (4, 8, 20)


def test_group_extremes_pick_the_group_with_the_widest_spread():
    logs = {"prompt": ["a", "a", "b", "b"], "completion": ["x", "yy", "z", "wwww"],
            "rewards": {"r1": [1.0, 1.0, 0.0, 3.0], "r2": [0.0, float("nan"), 0.0, 1.0]}}
    got = training.group_extremes(logs, num_generations=2, weights=[1.0, 0.5])
    assert got == {"prompt": "b", "best": ("wwww", 3.5), "worst": ("z", 0.0)}
    assert training.group_extremes({"completion": []}, 2) is None


def test_course_callbacks_print_best_and_worst_completion_while_training(tmp_path, capsys):
    """The real GRPOTrainer call with course_callbacks(...), as notebook 06 writes it."""
    from trl import GRPOTrainer

    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model

    cfg = tiny_cfg()
    model, tokenizer = load_model(cfg.model_name, "trl-peft")
    model = training.add_lora(model, "trl-peft", rank=cfg.lora_rank, alpha=cfg.lora_alpha)
    dataset = load_gsm8k("train", n=4, source="offline")
    config = training.grpo_config(cfg, run_name="cb", runs_dir=tmp_path)
    callbacks = training.course_callbacks(config, tokenizer, show_completions_every=1, live_plot=False)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[length_reward], args=config,
                          train_dataset=dataset, callbacks=callbacks)
    trainer.train()
    shown = callbacks[1].shown
    assert [s["step"] for s in shown] == [1, 2]
    out = capsys.readouterr().out
    assert out.count("best and worst completion of one group") == 2 and "[best: reward" in out and "tokens]" in out
    for s in shown:
        (best, best_r), (worst, worst_r) = s["best"], s["worst"]
        assert best_r >= worst_r and best_r == pytest.approx(len(best) / 10) and worst_r == pytest.approx(len(worst) / 10)
        assert isinstance(s["prompt"], str) and "<reasoning>" in s["prompt"]  # the rendered prompt of that group
    assert (tmp_path / "cb" / "metrics.csv").is_file()


def test_export_merged_from_a_saved_adapter_is_base_plus_scaled_BA(tmp_path):
    """The unsloth-vllm situation on the PEFT path: the model is the bare base, the adapter is only on disk."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from grpo_helpers.models import load_model

    rank, alpha = 4, 8
    trained, tokenizer = load_model("tiny-random", "trl-peft")
    trained = training.add_lora(trained, "trl-peft", rank=rank, alpha=alpha)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # stand-in for training (B starts at zero)
    lora_path = training.save_lora(trained, tmp_path / "lora", tokenizer, backend="trl-peft")
    base, _ = load_model("tiny-random", "trl-peft")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(CourseError, match="untrained base model"):
        training.export_merged(base, tokenizer, tmp_path / "nope", backend="trl-peft")
    path = training.export_merged(base, tokenizer, tmp_path / "merged", lora_path=lora_path, backend="trl-peft")
    assert not training.is_peft_model(base)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the base object is untouched
    merged = AutoModelForCausalLM.from_pretrained(path).state_dict()
    adapter = load_file(str(lora_path / "adapter_model.safetensors"))
    checked, moved = 0, 0.0
    for key, a in adapter.items():
        if "lora_A" not in key:
            continue
        b = adapter[key.replace("lora_A", "lora_B")]
        weight = key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
        expected = before[weight].float() + (alpha / rank) * (b.float() @ a.float())
        got = merged[weight].float()
        # Saved in bfloat16 (8 bits of mantissa): relative error below 2**-8 of the largest entry.
        assert float((got - expected).abs().max()) <= 2 ** -8 * float(expected.abs().max()), weight
        moved = max(moved, float((got - before[weight].float()).abs().max()))
        checked += 1
    assert checked == 2 * 7 and moved > 0.01  # 2 layers x 7 projections, and the merge really changed them


def test_ensure_lora_trains_a_few_steps_on_the_same_model_and_says_so(tmp_path, monkeypatch, capsys):
    from grpo_helpers import evaluation
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRPO_COURSE_RUNS", str(tmp_path / "runs"))
    cfg = tiny_cfg(max_steps=250)  # the recipe's 250 steps must not be what the fallback trains
    model, tokenizer = load_model(cfg.model_name, "trl-peft")
    loads = []
    monkeypatch.setattr("grpo_helpers.models.load_model", lambda *a, **k: loads.append(a))
    path = course.ensure_lora(cfg, model=model, tokenizer=tokenizer)
    out = capsys.readouterr().out
    assert "Training a small one now: 5 GRPO steps (not the recipe's 250)" in out and "model already loaded" in out
    assert loads == []  # no second base model
    assert not training.is_peft_model(model) and not any("lora" in k for k in model.state_dict())
    assert path == tmp_path / "runs" / "course" / "lora" and (path / "adapter_config.json").is_file()
    assert json.loads((path / "course_run.json").read_text())["max_steps"] == 5
    assert course.ensure_lora(cfg, model=model, tokenizer=tokenizer) == path
    assert "Found the LoRA" in capsys.readouterr().out
    # Evaluation decodes as many tokens as training allowed (8 here), read from the run's settings.
    lora = course.attach_lora(model, path, "trl-peft")
    assert lora.settings["max_completion_length"] == 8
    seen = []
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, sampling=None, **k: seen.append(sampling.max_new_tokens))
    course.evaluate_both(lora, tokenizer, load_gsm8k("test", n=1, source="offline"))
    assert seen == [8, 8]
