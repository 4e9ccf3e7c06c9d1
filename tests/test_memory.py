"""grpo_helpers.memory: the VRAM estimator reproduces every GPU measurement within ±15%, and its advice is sane."""

import json
from pathlib import Path

import pytest

from grpo_helpers.errors import CourseError
from grpo_helpers.memory import (T4_GB, estimate_vram, fit_report, fits_gpu, needed_gb, preset_estimate,
                                 suggest_preset)

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_results.json"


def _measured_rows():
    data = json.loads(RESULTS.read_text())
    return [r for r in data["results"] if r.get("ok")]


def test_results_file_has_all_measured_groups():
    rows = _measured_rows()
    assert {r["group"] for r in rows} == {"main", "settings", "t4"}
    assert len([r for r in rows if r["group"] == "main"]) == 8  # 2 shapes x 2 precisions x 2 backends


@pytest.mark.parametrize("row", _measured_rows(),
                         ids=lambda r: f"{r['backend']}-{r['shape']}-{'4bit' if r['four_bit'] else 'bf16'}-G{r['generations']}-{r['gc']}")
def test_estimate_within_15_percent_of_measured_peak(row):
    import sys

    sys.path.insert(0, str(RESULTS.parent))
    from gpu_unsloth_vs_trl import estimate_for, net_peak

    measured = net_peak(row)
    estimated = estimate_for(row).total_gb
    assert abs(estimated / measured - 1) <= 0.15, (estimated, measured)


def test_breakdown_adds_up_and_4bit_shrinks_weights():
    bf16 = estimate_vram(1.54, False, 32, 8, 372, "unsloth", max_completion_length=256)
    nf4 = estimate_vram(1.54, True, 32, 8, 372, "unsloth", max_completion_length=256)
    parts = bf16.weights_gb + bf16.lora_optimizer_gb + bf16.activations_gb
    assert bf16.peak_phase == "training" and bf16.total_gb == pytest.approx(parts)
    assert 2.8 < bf16.weights_gb < 3.0  # 1.54B x 2 bytes
    assert nf4.weights_gb < 0.4 * bf16.weights_gb
    assert nf4.lora_optimizer_gb == bf16.lora_optimizer_gb


def test_settings_move_the_estimate_the_right_way():
    base = dict(params_b=1.54, load_in_4bit=False, lora_rank=32, num_generations=8, max_seq_len=372,
                max_completion_length=256)
    trl = estimate_vram(backend="trl-peft", **base).total_gb
    assert estimate_vram(backend="unsloth", **base).total_gb < trl  # chunked logits + offloaded checkpoints
    assert estimate_vram(backend="trl-peft", gradient_checkpointing=False, **base).total_gb > 2 * trl
    assert estimate_vram(backend="trl-peft", **dict(base, num_generations=4)).total_gb < trl
    assert estimate_vram(backend="trl-peft", **dict(base, lora_rank=64)).lora_optimizer_gb > \
        estimate_vram(backend="trl-peft", **base).lora_optimizer_gb


def test_presets_on_a_t4():
    # The measured T4 check: 8B 4-bit, 6 x 768 tokens peaked at 7.8 GB under a 15 GB cap.
    assert fits_gpu("llama-3.1-8b-instruct", T4_GB)
    assert needed_gb(preset_estimate("llama-3.1-8b-instruct")) < T4_GB
    assert fits_gpu("qwen2.5-0.5b-instruct", T4_GB)
    assert not fits_gpu("llama-3.1-8b-instruct", 6)
    assert suggest_preset(T4_GB) == "llama-3.1-8b-instruct"
    assert suggest_preset(4) in ("qwen2.5-1.5b-instruct", "llama-3.2-1b-instruct", "qwen2.5-0.5b-instruct")
    assert suggest_preset(0.5) is None


def test_fit_report_suggests_a_smaller_preset():
    text = fit_report("llama-3.1-8b-instruct", 6)
    assert "does NOT fit" in text and "Try '" in text
    assert "-> fits." in fit_report("qwen2.5-0.5b-instruct", T4_GB)


def test_vllm_backend_needs_room_for_its_pool():
    est = preset_estimate("llama-3.1-8b-instruct", "unsloth-vllm")
    assert est.generation_gb > 1.0  # vLLM's KV pool + engine stay allocated during training
    assert fits_gpu("qwen2.5-0.5b-instruct", T4_GB, "unsloth-vllm")


def test_bad_arguments_are_course_errors():
    with pytest.raises(CourseError, match="backend"):
        estimate_vram(1.0, False, 16, 4, 512, "jax")
    with pytest.raises(CourseError, match="positive"):
        estimate_vram(1.0, False, 16, 0, 512)


def test_per_gpu_estimate_follows_each_strategy():
    from grpo_helpers.memory import estimate_vram, per_gpu_estimate, scaling_table
    from grpo_helpers.models import get_preset

    preset = "llama-3.1-8b-instruct"
    one = estimate_vram(get_preset(preset).params_b, False, 32, 6, 1024, "trl-peft", max_completion_length=768,
                        shape=preset, optimizer="adamw_torch")
    ddp = [per_gpu_estimate(preset, n) for n in (1, 2, 4, 8)]
    zero2 = [per_gpu_estimate(preset, n, "zero2") for n in (1, 2, 4, 8)]
    zero3 = [per_gpu_estimate(preset, n, "zero3") for n in (1, 2, 4, 8)]
    assert ddp[0] == pytest.approx(one.total_gb + one.lora_optimizer_gb / 4)  # one GPU + DDP's gradient buckets
    assert len(set(ddp)) == 1  # DDP copies the whole model to every GPU
    assert zero2[0] > zero2[-1] > one.weights_gb + one.activations_gb  # only the small LoRA states shrink
    # ZeRO-3 splits the 15 GB of bf16 weights: 8 GPUs hold an eighth each, plus two gathered layers (32 in the model).
    layer_gb = (one.weights_gb - 2 * 128256 * 4096 * 2 / 2**30) / 32
    assert zero3[0] - zero3[-1] == pytest.approx((one.weights_gb + one.lora_optimizer_gb) * 7 / 8 - 2 * layer_gb)
    assert zero3[-1] < 10 < 23 < ddp[-1]
    table = scaling_table((preset,))
    assert table.count("\n") == 5 and f"| {preset} | 8 | 8 | {ddp[-1]:.1f} | {zero2[-1]:.1f} | {zero3[-1]:.1f} |" in table
    with pytest.raises(CourseError, match="Unknown strategy"):
        per_gpu_estimate(preset, 2, "fsdp")


def test_fit_report_splits_the_gpu_at_vllms_share():
    """vLLM reserves gpu_memory_utilization of the GPU; training gets the rest (issue 19: 00 ignored the share)."""
    from grpo_helpers.memory import vllm_split

    at_06 = fit_report("llama-3.1-8b-instruct", T4_GB, "unsloth-vllm", gpu_memory_utilization=0.6)
    at_09 = fit_report("llama-3.1-8b-instruct", T4_GB, "unsloth-vllm", gpu_memory_utilization=0.9)
    assert "= 9.0 GB for the weights" in at_06 and "training gets the other 6.0 GB" in at_06 and at_06.endswith("-> fits.")
    assert "training gets the other 1.5 GB" in at_09 and "does NOT fit with this split" in at_09
    assert not fits_gpu("llama-3.1-8b-instruct", T4_GB, "unsloth-vllm", gpu_memory_utilization=0.9)
    split = vllm_split(preset_estimate("llama-3.1-8b-instruct", "unsloth-vllm"), T4_GB, 0.6)
    assert split["vllm_gb"] + split["training_gb"] == pytest.approx(T4_GB)
    with pytest.raises(CourseError, match="share of the GPU"):
        fits_gpu("llama-3.1-8b-instruct", T4_GB, "unsloth-vllm", gpu_memory_utilization=60)


def measured_16bit_over_qlora() -> dict[str, float]:
    """Measured peak of 16-bit LoRA / QLoRA on the Unsloth path, per shape (benchmarks/gpu_results.json)."""
    import sys

    sys.path.insert(0, str(RESULTS.parent))
    from gpu_unsloth_vs_trl import net_peak

    rows = {(r["shape"], r["four_bit"]): net_peak(r) for r in _measured_rows()
            if r["group"] == "main" and r["backend"] == "unsloth"}
    return {shape: rows[(shape, False)] / rows[(shape, True)] for shape in ("0.5B", "1.5B")}


def test_the_16bit_over_qlora_ratio_is_stated_for_the_shapes_it_was_measured_on():
    from grpo_helpers import memory
    from grpo_helpers.memory import sixteen_bit_vs_qlora

    measured = measured_16bit_over_qlora()
    assert {k: round(v, 1) for k, v in measured.items()} == {"0.5B": 1.5, "1.5B": 2.0}
    assert "1.5x for Qwen2.5-0.5B and 2.0x for\n    Qwen2.5-1.5B" in memory.sixteen_bit_vs_qlora.__doc__
    import nbformat

    cells = nbformat.read(RESULTS.parents[1] / "notebooks" / "03_lora_setup.ipynb", as_version=4).cells
    notebook = " ".join(" ".join(c.source for c in cells if c.cell_type == "markdown").split())
    assert "1.5× the QLoRA step for Qwen2.5-0.5B and at 2.0× for Qwen2.5-1.5B" in notebook  # notebook 03's prose
    for preset, shape in (("qwen2.5-0.5b-instruct", "0.5B"), ("qwen2.5-1.5b-instruct", "1.5B")):
        estimated = sixteen_bit_vs_qlora(preset, num_generations=8, max_completion_length=256)["ratio"]
        assert abs(estimated / measured[shape] - 1) < 0.1, (preset, estimated, measured[shape])
    seed = sixteen_bit_vs_qlora("llama-3.1-8b-instruct")  # the seed's own group: 6 x 768 tokens
    assert seed["ratio"] > max(measured.values()) and needed_gb(preset_estimate(
        "llama-3.1-8b-instruct", load_in_4bit=False)) > T4_GB > needed_gb(preset_estimate("llama-3.1-8b-instruct"))
