"""The 06 -> 07 hand-off: ensure_lora trains and saves when the LoRA is missing, finds it otherwise; the LoRA switches."""

import doctest

from grpo_helpers import course
from grpo_helpers.recipes import course_config
from grpo_helpers.generation import GREEDY


def tiny_cfg():
    # tiny-random's byte-level tokenizer makes prompts ~4x longer than SmolLM2's: keep every row
    return course_config(tiny=True, model_preset="tiny-random", max_steps=1, num_generations=2,
                         max_completion_length=8, train_rows=4, eval_rows=2, max_prompt_length=4096)


def test_doctests():
    failures, tried = doctest.testmod(course)
    assert tried >= 4 and failures == 0


def test_ensure_lora_trains_when_missing_then_reuses(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg()
    path = course.ensure_lora(cfg)
    assert (tmp_path / path / "adapter_config.json").is_file()
    assert "Training a small one now" in capsys.readouterr().out
    assert course.ensure_lora(cfg) == path
    assert "Found the LoRA" in capsys.readouterr().out

    from grpo_helpers.models import load_model

    model, tokenizer = load_model("tiny-random", "trl-peft")
    lora = course.attach_lora(model, path, "trl-peft")
    assert course.lora_change(lora) >= 0.0
    answers = course.ask_both(lora, tokenizer, "Calculate pi.", GREEDY.__class__(temperature=0.0, max_new_tokens=4))
    assert set(answers) == {"without LoRA", "with LoRA"} and all(isinstance(a, str) for a in answers.values())


def test_lora_switch_really_switches(tmp_path):
    import torch

    from grpo_helpers.models import load_model
    from grpo_helpers.training import add_lora, save_lora

    model, tokenizer = load_model("tiny-random", "trl-peft")
    trained = add_lora(model, "trl-peft", rank=4)
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_B" in name:
                param.fill_(0.05)  # stand-in for training
    save_lora(trained, tmp_path / "lora")
    base, _ = load_model("tiny-random", "trl-peft")
    lora = course.attach_lora(base, tmp_path / "lora", "trl-peft")
    assert abs(course.lora_change(lora) - 0.05) < 1e-6
    batch = tokenizer(["Calculate pi."], return_tensors="pt")
    with torch.no_grad():
        with lora.off() as m:
            off = m["model"](**batch).logits
        with lora.on() as m:
            on = m["model"](**batch).logits
    assert (on - off).abs().max() > 1e-4
