"""A T4's configuration on the lent GPU: the model loaded in float16 (what Unsloth does on compute capability 7.5),
then 3 GRPO steps through the course's own config and trainer. The config must say fp16, never bf16.

Faking capability (7, 5) for the whole process would make Triton build sm_75 kernels that fail on this GPU, so the
fake stays where the dtype is decided (grpo_helpers.precision), and the model itself is loaded in float16.
"""

from __future__ import annotations

import pytest


def test_precision_decision_on_a_faked_t4(monkeypatch):
    import torch

    from grpo_helpers import precision
    from grpo_helpers.recipes import course_config
    from grpo_helpers.training import grpo_config

    monkeypatch.setattr(precision, "cuda_capability", lambda: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a T4 answers (emulation)
    assert precision.training_precision() == {"bf16": False, "fp16": True}
    config = grpo_config(course_config(tiny=False, backend="unsloth"), run_name="t4", backend="unsloth")
    assert (config.fp16, config.bf16) == (True, False)


@pytest.mark.parametrize("four_bit", [True, False], ids=["qlora-4bit", "lora-fp16"])
def test_float16_model_trains_three_grpo_steps_in_fp16(qwen_dir, gsm8k_rows, signal_reward, tmp_path, four_bit):
    import torch

    from grpo_helpers import training
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS

    model, tokenizer = load_model(str(qwen_dir), backend="unsloth", load_in_4bit=four_bit, max_seq_length=512,
                                  dtype="float16")
    assert model.config.dtype in (torch.float16, "float16") or model.get_input_embeddings().weight.dtype == torch.float16
    model = training.add_lora(model, backend="unsloth", rank=16)
    config = training.grpo_config("seed", run_name="t4-fp16", runs_dir=tmp_path, backend="unsloth", model=model,
                                  max_steps=3, num_generations=4, per_device_train_batch_size=4,
                                  max_completion_length=32, learning_rate=1e-4, save_strategy="no")
    assert (config.fp16, config.bf16) == (True, False)
    trainer = training.build_trainer(model, tokenizer, gsm8k_rows, REWARD_FUNCS + [signal_reward], config,
                                     backend="unsloth", lora_rank=16)
    training.train(trainer)
    assert trainer.state.global_step == 3
    bf16 = [n for n, p in trainer.model.named_parameters() if p.dtype == torch.bfloat16]
    assert bf16 == [], f"bfloat16 weights in a T4 run: {bf16[:3]}"
