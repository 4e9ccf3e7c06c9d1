"""export_merged writes the trained adapter into the weights on the Unsloth backend: merged = base + (alpha/r)·B·A.

The adapter gets random, non-zero B matrices (a stand-in for training), is saved with save_lora, and is merged two
ways: from the model that carries it, and from the bare base model plus lora_path (what notebook 07 has on
unsloth-vllm, where the adapter lives only in vLLM).
"""

from __future__ import annotations

import pytest

RANK, ALPHA = 16, 32


def _tensors(folder):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _q_proj(tensors, layer=0):
    key = next(k for k in tensors if k.endswith(f"layers.{layer}.self_attn.q_proj.weight"))
    return tensors[key].float()


@pytest.mark.parametrize("four_bit", [False, True], ids=["lora-16bit", "qlora-4bit"])
@pytest.mark.parametrize("from_base", [False, True], ids=["trained-model", "base-plus-lora_path"])
def test_merged_weights_equal_base_plus_scaled_BA(qwen_dir, tmp_path, from_base, four_bit):
    """4-bit too: Unsloth's merged_16bit merges into the ORIGINAL 16-bit weights (here the random model's folder),
    not into the dequantized NF4 ones, so the same base + (alpha/r)·B·A must come out."""
    import torch

    from grpo_helpers import training
    from grpo_helpers.models import load_model

    base_q = _q_proj(_tensors(qwen_dir))
    model, tokenizer = load_model(str(qwen_dir), backend="unsloth", load_in_4bit=four_bit, max_seq_length=256,
                                  dtype="bfloat16")
    model = training.add_lora(model, backend="unsloth", rank=RANK, alpha=ALPHA)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    lora = training.save_lora(model, tmp_path / "lora", tokenizer, backend="unsloth")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    delta = (ALPHA / RANK) * (layer.lora_B["default"].weight.float() @ layer.lora_A["default"].weight.float())
    if from_base:
        del model
        model, tokenizer = load_model(str(qwen_dir), backend="unsloth", load_in_4bit=four_bit, max_seq_length=256,
                                      dtype="bfloat16")
        training.export_merged(model, tokenizer, tmp_path / "merged", lora_path=lora, backend="unsloth")
    else:
        training.export_merged(model, tokenizer, tmp_path / "merged", backend="unsloth")
    merged_q = _q_proj(_tensors(tmp_path / "merged"))
    expected = base_q + delta.cpu()
    assert float((merged_q - base_q).abs().max()) > 1e-3, "the merged model is the untrained base"
    err = float((merged_q - expected).abs().max())
    print(f"max |merged - (base + alpha/r BA)| = {err:.2e}, max |delta| = {float(delta.abs().max()):.2e}")
    assert err < 2e-2 * max(1.0, float(expected.abs().max()))  # bfloat16 rounding of the saved weights
