"""grpo_helpers.models: presets, the real offline SmolLM2, tiny-random, and clear errors."""

from types import SimpleNamespace

import pytest
import torch

from grpo_helpers import config, models
from grpo_helpers.errors import CourseError


def test_smollm2_is_the_real_instruct_model(smollm2):
    model, tokenizer = smollm2
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 136_000_000
    assert model.dtype == torch.float32  # dequantized: trainable
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"


def test_smollm2_weights_are_trainable(smollm2):
    model, tokenizer = smollm2
    batch = tokenizer(["<answer>\n72\n</answer>"], return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    grads = torch.autograd.grad(out.loss, model.model.layers[0].self_attn.q_proj.weight)
    assert grads[0].abs().sum() > 0


def test_smollm2_is_cached_as_a_normal_hf_folder():
    path = models.smollm2_local_dir()
    assert (path / ".complete").exists() and (path / "config.json").exists()
    assert path.parent == config.cache_dir()


def test_tiny_random_builds_offline_and_round_trips_text(tiny_random):
    model, tokenizer = tiny_random
    assert sum(p.numel() for p in model.parameters()) < 200_000
    text = "<reasoning>\nπ ≈ 3.14\n</reasoning>"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: any text
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("name", sorted(models.PRESETS))
def test_every_preset_has_sane_recommendations(name):
    preset = models.PRESETS[name]
    assert preset.lora_rank in (8, 16, 32) and 0 < preset.gpu_memory_utilization <= 0.9
    assert preset.needs_gpu == (name not in ("smollm2-135m-offline", "tiny-random"))
    if preset.params_b >= 3:
        assert preset.load_in_4bit, "3B+ models need 4-bit to fit a 15 GB T4"


def test_seed_model_preset():
    seed = models.get_preset("llama-3.1-8b-instruct")
    assert "Llama-3.1-8B-Instruct" in seed.source and seed.load_in_4bit and seed.gpu_memory_utilization == 0.6


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(CourseError, match="Unknown model preset 'gpt-5'") as err:
        models.load_model("gpt-5")
    for name in models.PRESETS:
        assert name in str(err.value)


def test_gpu_only_options_on_cpu_explain_tiny_mode():
    with pytest.raises(CourseError, match="fast_inference=True needs the 'unsloth-vllm' backend") as err:
        models.load_model("tiny-random", backend="trl-peft", fast_inference=True)
    assert "tiny mode" in str(err.value)
    with pytest.raises(CourseError, match="load_in_4bit=True needs a CUDA GPU") as err:
        models.load_model("tiny-random", backend="trl-peft", load_in_4bit=True)
    assert "float32 on the CPU" in str(err.value)


def test_gpu_preset_on_cpu_suggests_tiny_mode():
    with pytest.raises(CourseError, match="needs a CUDA GPU") as err:
        models.load_model("llama-3.1-8b-instruct", backend="trl-peft")
    assert "GRPO_COURSE_TINY=1" in str(err.value)


def test_missing_chat_template_gets_chatml(tiny_random):
    _, tokenizer = tiny_random
    saved = tokenizer.chat_template
    try:
        tokenizer.chat_template = None
        models.finish_tokenizer(tokenizer)
        assert tokenizer.chat_template == models.CHATML_TEMPLATE
    finally:
        tokenizer.chat_template = saved


def test_smollm2_tokenizer_ends_turns_like_the_model(smollm2):
    model, tokenizer = smollm2
    # The GGUF tokenizer says <|im_start|>; the model (and TRL's completion mask) need <|im_end|>.
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == model.generation_config.eos_token_id
    assert tokenizer.pad_token == "<|im_end|>"


class Params4bit(torch.nn.Parameter):
    """Stand-in for ``bitsandbytes.nn.Params4bit`` (bitsandbytes is not installed on CPU CI): uint8 storage holding
    two 4-bit weights per byte, and a ``quant_state`` that remembers the shape before packing."""


def packed_linear(d_in: int = 16, d_out: int = 8, with_state: bool = True) -> torch.nn.Linear:
    layer = torch.nn.Linear(d_in, d_out)
    packed = Params4bit(torch.zeros(d_in * d_out // 2, 1, dtype=torch.uint8), requires_grad=False)
    if with_state:
        packed.quant_state = SimpleNamespace(shape=torch.Size([d_out, d_in]))
    layer.weight = packed
    return layer


def test_4bit_weights_count_at_their_real_size():
    layer = packed_linear()
    assert sum(p.numel() for p in layer.parameters()) == 64 + 8  # what numel() says: half the weights
    assert models.count_parameters(layer) == (8, 16 * 8 + 8)  # only the bias is trainable; 128 weights + 8 biases
    assert models.real_numel(packed_linear(with_state=False).weight) == 128  # no quant_state: PEFT's 2 x numel


def test_count_parameters_counts_tied_weights_once_and_lora_as_trainable(tiny_random):
    from grpo_helpers.training import add_lora, trainable_parameters

    model, _ = tiny_random
    total = sum(p.numel() for p in model.parameters())
    assert models.count_parameters(model) == (total, total)
    lora = add_lora(models.load_model("tiny-random", "trl-peft")[0], "trl-peft", rank=4)
    trainable, lora_total = trainable_parameters(lora)
    assert trainable == sum(p.numel() for n, p in lora.named_parameters() if "lora_" in n)
    assert lora_total == total + trainable
