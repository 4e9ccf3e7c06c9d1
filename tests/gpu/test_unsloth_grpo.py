"""The course's GPU path end to end, through grpo_helpers, on a random-weight model with Qwen2.5-0.5B-Instruct's layer
shapes (4 layers): Unsloth ``FastLanguageModel`` in 4-bit QLoRA (bitsandbytes) and bf16 LoRA, LoRA r=32 with
``use_gradient_checkpointing="unsloth"``, 3 GRPO steps of the seed recipe with the course rewards, save_lora, reload.

Not covered here (no vLLM on the test GPU): ``fast_inference=True``; tests/test_vllm_signatures.py checks those calls.
"""

from __future__ import annotations

import pytest

RANK = 32
STEPS = 3


def _load(qwen_dir, four_bit: bool):
    from grpo_helpers.models import load_model

    return load_model(str(qwen_dir), backend="unsloth", load_in_4bit=four_bit, max_seq_length=512)


def _free():
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


@pytest.mark.parametrize("four_bit", [True, False], ids=["qlora-4bit", "lora-bf16"])
def test_load_model_unsloth(qwen_dir, four_bit):
    import torch

    model, tokenizer = _load(qwen_dir, four_bit)
    q_proj = model.model.layers[0].self_attn.q_proj
    if four_bit:
        assert type(q_proj).__name__ == "Linear4bit"
        assert q_proj.weight.dtype == torch.uint8  # packed NF4
        assert q_proj.weight.quant_state.quant_type == "nf4"
    else:
        assert q_proj.weight.dtype == torch.bfloat16
    assert model.device.type == "cuda"
    assert tokenizer.padding_side == "left" and tokenizer.chat_template
    del model
    _free()


@pytest.mark.parametrize("four_bit", [True, False], ids=["qlora-4bit", "lora-bf16"])
def test_grpo_steps_save_lora_and_reload(qwen_dir, gsm8k_rows, signal_reward, tmp_path, four_bit):
    import torch

    from grpo_helpers import training
    from grpo_helpers.models import GPU_SHAPES
    from grpo_helpers.rewards import REWARD_FUNCS, REWARD_NAMES

    model, tokenizer = _load(qwen_dir, four_bit)
    model = training.add_lora(model, backend="unsloth", rank=RANK)
    shape = GPU_SHAPES["qwen2.5-0.5b-instruct"]
    h, inter = shape["hidden_size"], shape["intermediate_size"]
    kv = shape["num_key_value_heads"] * h // shape["num_attention_heads"]
    per_layer = RANK * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + inter) + (inter + h))
    assert training.trainable_parameters(model)[0] == 4 * per_layer  # r=32 on all 7 projections of 4 layers
    assert model.peft_config["default"].r == RANK
    before = training.lora_state(model)
    assert all(float(v.abs().max()) == 0 for k, v in before.items() if "lora_B" in k)  # B starts at zero

    config = training.grpo_config("seed", run_name=f"gpu-{'4bit' if four_bit else 'bf16'}", runs_dir=tmp_path,
                                  backend="unsloth", max_steps=STEPS, num_generations=4, per_device_train_batch_size=4,
                                  max_completion_length=48, learning_rate=1e-4, save_strategy="no")
    trainer = training.build_trainer(model, tokenizer, gsm8k_rows, REWARD_FUNCS + [signal_reward], config,
                                     backend="unsloth", lora_rank=RANK)
    training.train(trainer)

    assert trainer.state.global_step == STEPS
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == STEPS
    for name in REWARD_NAMES:  # every course reward ran on every step
        assert all(f"rewards/{name}/mean" in row for row in logs)
    assert all(row["reward_std"] > 0 for row in logs)
    after = training.lora_state(trainer.model)
    assert training.max_abs_diff(before, after) > 0  # the adapter learned something
    assert (training.run_folder(config) / training.METRICS_CSV).is_file()

    path = training.save_lora(trainer.model, tmp_path / "lora", tokenizer, backend="unsloth")
    assert (path / "adapter_model.safetensors").is_file() and (path / "adapter_config.json").is_file()

    from unsloth import FastLanguageModel

    enc = tokenizer(["<|im_start|>user\nHow many apples?<|im_end|>\n"], return_tensors="pt").to("cuda")
    FastLanguageModel.for_inference(trainer.model)
    with torch.no_grad():
        trained_logits = trainer.model(**enc).logits[:, -1].float()
    saved = {k: v.float() for k, v in training.lora_state(trainer.model).items()}
    del trainer, model
    _free()

    base, _ = _load(qwen_dir, four_bit)
    tuned = training.load_lora(base, path, backend="unsloth")
    loaded = {k: v.float() for k, v in training.lora_state(tuned).items()}
    assert set(loaded) == set(saved)
    assert training.max_abs_diff(saved, loaded) < 1e-2  # the same adapter (saved in 16 bits)
    FastLanguageModel.for_inference(tuned)
    with torch.no_grad():
        reloaded_logits = tuned(**enc).logits[:, -1].float()
    rel = float((reloaded_logits - trained_logits).abs().max() / trained_logits.abs().max())
    assert rel < 0.02, rel
    del base, tuned
    _free()
