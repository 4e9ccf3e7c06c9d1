"""How much GPU memory GRPO with LoRA needs: an estimate with a breakdown, and "does this preset fit my GPU?".

The estimate is built from the model's shape (hidden size, layers, vocab, KV heads) and counts bytes:

* **weights**: bf16 = 2 bytes/parameter; 4-bit QLoRA = NF4 linear layers (~0.53 bytes/parameter with their scales)
  plus embeddings / LM head kept in 16 bits.
* **LoRA + optimizer**: LoRA parameters in fp32 + their fp32 gradients (8 bytes/parameter). The course's optimizer,
  bitsandbytes' paged 8-bit AdamW, keeps its states in paged (unified) memory outside PyTorch's allocator; a plain
  AdamW adds 8 bytes/parameter.
* **activations** (training): one transformer layer's activations for the whole batch (recomputed under gradient
  checkpointing), the checkpointed layer inputs (Unsloth offloads them to CPU RAM, Hugging Face keeps them on the
  GPU; without checkpointing every layer keeps its activations), and the logits of the completion tokens.
  The logits term is the big one at Qwen's 151,936-token vocabulary: plain TRL materialises bf16 logits, a scaled
  copy and their gradient (~7.25 bytes per completion token x vocab entry, measured); Unsloth computes log-probs in
  chunks (~0.3 bytes per entry, measured).
* **generation**: the KV cache of ``num_generations`` sequences (Hugging Face ``generate``). With vLLM
  (``unsloth-vllm``) the KV cache is vLLM's own pool plus ~1 GB for its engine (not measured here: vLLM cannot run
  on the course's test GPU).

Two constants (the logits bytes) were fitted to the H100 measurements in ``benchmarks/RESULTS.md``; every measured
row there is reproduced within ±15% (``tests/test_memory.py`` checks it). Peaks are ``torch.cuda.max_memory_allocated``:
a real GPU also holds the CUDA context (~0.5 GB) and allocator slack, which :func:`fits_gpu` adds.

Example:
    >>> est = estimate_vram(1.54, load_in_4bit=False, lora_rank=32, num_generations=8, max_seq_len=372,
    ...                     backend="unsloth", max_completion_length=256)
    >>> round(est.total_gb, 1), est.peak_phase
    (3.6, 'training')
"""

from __future__ import annotations

import dataclasses
import math

from grpo_helpers.errors import CourseError

GIB = 2**30
NF4_BYTES = 0.53  # 4-bit weight + blockwise scales (double-quantized), per parameter, measured on load
LORA_BYTES = 8  # fp32 LoRA weight + fp32 gradient per LoRA parameter
ADAMW_BYTES = 8  # two fp32 moments, when the optimizer is not the paged 8-bit one
LOGIT_BYTES = {"trl-peft": 7.25, "unsloth": 0.3, "unsloth-vllm": 0.3}  # per completion token x vocab entry (fitted)
VLLM_ENGINE_GB = 1.0  # vLLM's CUDA graphs, sampler and workspace (an assumption: not measurable on the test GPU)
CUDA_CONTEXT_GB = 0.5  # outside PyTorch's allocator
SLACK = 1.10  # allocator fragmentation: reserved / allocated
T4_GB = 15.0
BACKENDS = ("unsloth-vllm", "unsloth", "trl-peft")


@dataclasses.dataclass(frozen=True)
class VramEstimate:
    """GPU memory estimate in GiB (peak of ``torch.cuda.max_memory_allocated``), with its breakdown."""

    weights_gb: float
    lora_optimizer_gb: float
    activations_gb: float  # training: one layer's activations + checkpoints kept on the GPU + completion logits
    generation_gb: float  # KV cache while sampling (vLLM: its pool + engine)
    total_gb: float
    peak_phase: str  # 'training' or 'generation' (Hugging Face generate frees its cache before training)

    def breakdown(self) -> dict[str, float]:
        """The parts, rounded, as a dict (for a table or a bar chart)."""
        return {k: round(getattr(self, k), 2) for k in
                ("weights_gb", "lora_optimizer_gb", "activations_gb", "generation_gb", "total_gb")}

    def summary(self) -> str:
        """One line for a notebook."""
        b = self.breakdown()
        return (f"~{b['total_gb']:.1f} GB peak ({self.peak_phase}): weights {b['weights_gb']:.1f}, LoRA+optimizer "
                f"{b['lora_optimizer_gb']:.2f}, activations {b['activations_gb']:.1f}, generation {b['generation_gb']:.1f}")


def _shape(params_b: float, shape: str | dict | None) -> dict:
    """The named shape, or the GPU preset shape nearest in size, widened/narrowed to ``params_b``."""
    from grpo_helpers.models import GPU_SHAPES, shape_params

    if isinstance(shape, dict):
        return shape
    if shape is not None:
        if shape not in GPU_SHAPES:
            raise CourseError(f"No GPU shape {shape!r}.", fix=f"Use one of: {', '.join(GPU_SHAPES)}.")
        return GPU_SHAPES[shape]
    name = min(GPU_SHAPES, key=lambda n: abs(math.log(shape_params(n) / 1e9 / params_b)))
    base = dict(GPU_SHAPES[name])
    ratio = params_b * 1e9 / shape_params(base)
    if abs(ratio - 1) > 0.15:  # another model: keep depth and vocab, scale the width
        scale = math.sqrt(ratio)
        base["hidden_size"] = int(base["hidden_size"] * scale) // 64 * 64 or 64
        base["intermediate_size"] = int(base["intermediate_size"] * scale) // 64 * 64 or 64
        base.pop("head_dim", None)
    return base


def _lora_params(c: dict, rank: int) -> int:
    h, inter = c["hidden_size"], c["intermediate_size"]
    head_dim = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * head_dim, c["num_key_value_heads"] * head_dim
    return rank * c["num_hidden_layers"] * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + inter) + (inter + h))


def estimate_vram(params_b: float, load_in_4bit: bool, lora_rank: int, num_generations: int, max_seq_len: int,
                  backend: str = "unsloth", *, max_completion_length: int | None = None, shape: str | dict | None = None,
                  gradient_checkpointing: bool = True, offload_checkpoints: bool | None = None,
                  optimizer: str = "paged_adamw_8bit") -> VramEstimate:
    """Peak GPU memory (GiB) of one GRPO step with LoRA, with a breakdown.

    ``max_seq_len``: prompt + completion tokens; ``max_completion_length`` defaults to ``max_seq_len - 256`` (the
    seed's prompt budget). ``shape``: a ``grpo_helpers.models.GPU_SHAPES`` name (default: the nearest in size).
    ``offload_checkpoints`` defaults to True on Unsloth backends (``use_gradient_checkpointing="unsloth"``).

    Example:
        >>> est = estimate_vram(8.03, True, 32, 6, 1024, "unsloth")
        >>> 7 < est.total_gb < 9
        True
    """
    from grpo_helpers.models import shape_params

    if backend not in BACKENDS:
        raise CourseError(f"Unknown backend {backend!r}.", fix=f"Use one of {', '.join(BACKENDS)}.")
    if min(params_b, lora_rank, num_generations, max_seq_len) <= 0:
        raise CourseError("estimate_vram needs positive sizes.", fix="Pass params_b > 0, lora_rank, num_generations and "
                          "max_seq_len >= 1.")
    c = _shape(params_b, shape)
    h, layers, vocab, inter = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"], c["intermediate_size"]
    head_dim = c.get("head_dim") or h // c["num_attention_heads"]
    completion = max_completion_length or max(max_seq_len - 256, 1)
    tokens = num_generations * max_seq_len
    offload = backend != "trl-peft" if offload_checkpoints is None else offload_checkpoints

    params = shape_params(c)
    embed = vocab * h * (1 if c["tie_word_embeddings"] else 2)
    weights = (embed * 2 + (params - embed) * NF4_BYTES) if load_in_4bit else params * 2

    lora = _lora_params(c, lora_rank)
    lora_opt = lora * (LORA_BYTES + (0 if "8bit" in optimizer else ADAMW_BYTES))

    layer_act = tokens * 2 * (14 * h + 4.8 * inter)  # bf16 activations of one layer (attention + gated MLP + LoRA)
    if not gradient_checkpointing:
        kept = layer_act * (layers - 1)  # every layer keeps its activations
    elif offload:
        kept = 0.0  # Unsloth: layer inputs live in CPU RAM
    else:
        kept = tokens * h * 2 * layers  # HF checkpointing: each layer's input stays on the GPU
    logits = num_generations * completion * vocab * LOGIT_BYTES[backend]
    activations = layer_act + kept + logits

    kv = num_generations * max_seq_len * layers * 2 * c["num_key_value_heads"] * head_dim * 2
    sampling = num_generations * vocab * 4 * 2  # fp32 logits of the last token + their softmax
    generation = kv + sampling
    if backend == "unsloth-vllm":
        generation += VLLM_ENGINE_GB * GIB
        train_total = weights + lora_opt + activations + generation  # vLLM keeps its pool during training
        total, phase = train_total, "training"
    else:
        train_total, gen_total = weights + lora_opt + activations, weights + lora_opt + generation
        total, phase = (train_total, "training") if train_total >= gen_total else (gen_total, "generation")
    return VramEstimate(weights / GIB, lora_opt / GIB, activations / GIB, generation / GIB, total / GIB, phase)


# ------------------------------------------------------------------------------------------------------ presets

def preset_estimate(preset: str, backend: str = "unsloth", *, num_generations: int = 6, max_completion_length: int = 768,
                    max_prompt_length: int = 256, load_in_4bit: bool | None = None) -> VramEstimate:
    """:func:`estimate_vram` for a model preset of ``grpo_helpers.models.PRESETS`` (its size, 4-bit choice, rank).

    Defaults are the seed recipe's: 6 generations x 768 completion tokens after a 256-token prompt.
    ``load_in_4bit`` overrides the preset's choice (None: the preset's).

    Example:
        >>> preset_estimate("llama-3.1-8b-instruct").weights_gb > 5
        True
    """
    from grpo_helpers.models import GPU_SHAPES, get_preset

    p = get_preset(preset)
    four_bit = p.load_in_4bit if load_in_4bit is None else load_in_4bit
    return estimate_vram(p.params_b, four_bit, p.lora_rank, num_generations,
                         max_prompt_length + max_completion_length, backend,
                         max_completion_length=max_completion_length, shape=preset if preset in GPU_SHAPES else None)


def sixteen_bit_vs_qlora(preset: str, backend: str = "unsloth", **kwargs) -> dict[str, float]:
    """The same GRPO step with QLoRA (4-bit base weights) and with 16-bit LoRA: estimated peaks and their ratio.

    The ratio grows with the model, because the weights' share of a step grows: measured on an H100
    (``benchmarks/RESULTS.md``, Unsloth path, 8 completions x 256 tokens) it was 1.5x for Qwen2.5-0.5B and 2.0x for
    Qwen2.5-1.5B; a 16-bit 8B step was never measured. ``kwargs`` go to :func:`preset_estimate` (the seed's group of
    6 x 768 tokens by default).

    Example:
        >>> r = sixteen_bit_vs_qlora("llama-3.1-8b-instruct")
        >>> round(r["qlora_gb"], 1), round(r["lora16_gb"], 1), round(r["ratio"], 1)
        (7.6, 17.2, 2.3)
    """
    qlora = preset_estimate(preset, backend, load_in_4bit=True, **kwargs).total_gb
    lora16 = preset_estimate(preset, backend, load_in_4bit=False, **kwargs).total_gb
    return {"qlora_gb": qlora, "lora16_gb": lora16, "ratio": lora16 / qlora}


def needed_gb(estimate: VramEstimate) -> float:
    """What a GPU must have for ``estimate``: the peak plus allocator slack plus the CUDA context."""
    return estimate.total_gb * SLACK + CUDA_CONTEXT_GB


def _utilization(preset: str, gpu_memory_utilization: float | None) -> float:
    from grpo_helpers.models import get_preset

    util = get_preset(preset).gpu_memory_utilization if gpu_memory_utilization is None else gpu_memory_utilization
    if not 0 < util < 1:
        raise CourseError(f"gpu_memory_utilization={util} is not a share of the GPU.",
                          fix="Pass a number between 0 and 1, e.g. cfg.gpu_memory_utilization (0.6 in the seed).")
    return util


def vllm_split(estimate: VramEstimate, gpu_gb: float, gpu_memory_utilization: float) -> dict[str, float]:
    """How a GPU is shared on ``unsloth-vllm``: vLLM reserves ``gpu_memory_utilization`` of it up front for the
    weights and its KV cache; LoRA, optimizer and activations must fit in the rest, with the CUDA context.

    Example:
        >>> split = vllm_split(preset_estimate("llama-3.1-8b-instruct", "unsloth-vllm"), 15.0, 0.6)
        >>> split["vllm_gb"], split["training_gb"]
        (9.0, 6.0)
    """
    return {"vllm_gb": gpu_memory_utilization * gpu_gb, "vllm_needs_gb": estimate.weights_gb + estimate.generation_gb,
            "training_gb": (1 - gpu_memory_utilization) * gpu_gb,
            "training_needs_gb": (estimate.lora_optimizer_gb + estimate.activations_gb) * SLACK + CUDA_CONTEXT_GB}


def fits_gpu(preset: str, gpu_gb: float = T4_GB, backend: str = "unsloth", *,
             gpu_memory_utilization: float | None = None, **kwargs) -> bool:
    """Whether ``preset`` trains on a GPU with ``gpu_gb`` GB (default: a free Colab T4, 15 GB).

    With ``unsloth-vllm``, vLLM takes ``gpu_memory_utilization`` of the GPU (default: the preset's, which is the
    recipe's for the seed's model) for weights + KV cache, and training must fit in the rest (:func:`vllm_split`).
    ``kwargs`` go to :func:`preset_estimate` (num_generations, max_completion_length, ...).

    Example:
        >>> fits_gpu("qwen2.5-0.5b-instruct", 15)
        True
        >>> fits_gpu("llama-3.1-8b-instruct", 8)
        False
    """
    est = preset_estimate(preset, backend, **kwargs)
    if backend == "unsloth-vllm":
        split = vllm_split(est, gpu_gb, _utilization(preset, gpu_memory_utilization))
        return split["vllm_needs_gb"] <= split["vllm_gb"] and split["training_needs_gb"] <= split["training_gb"]
    return needed_gb(est) <= gpu_gb


def suggest_preset(gpu_gb: float = T4_GB, backend: str = "unsloth", **kwargs) -> str | None:
    """The largest GPU preset that fits ``gpu_gb`` GB (None if none does).

    Example:
        >>> suggest_preset(15)
        'llama-3.1-8b-instruct'
        >>> suggest_preset(2.5)
        'qwen2.5-0.5b-instruct'
    """
    from grpo_helpers.models import PRESETS

    gpu_presets = sorted((p for p in PRESETS.values() if p.needs_gpu), key=lambda p: p.params_b, reverse=True)
    return next((p.name for p in gpu_presets if fits_gpu(p.name, gpu_gb, backend, **kwargs)), None)


def fit_report(preset: str, gpu_gb: float | None = None, backend: str = "unsloth", *,
               gpu_memory_utilization: float | None = None, **kwargs) -> str:
    """A few lines for notebooks 00/03: the estimate for ``preset``, whether it fits, and what to pick if not.

    ``gpu_gb`` defaults to this machine's GPU (a T4's 15 GB when there is none, to plan for Colab). On
    ``unsloth-vllm`` the report splits the GPU as vLLM does: ``gpu_memory_utilization`` of it (default: the preset's;
    pass ``cfg.gpu_memory_utilization``) for vLLM, the rest for training.

    Example:
        >>> "fits" in fit_report("qwen2.5-0.5b-instruct", 15)
        True
        >>> print(fit_report("llama-3.1-8b-instruct", 15, "unsloth-vllm", gpu_memory_utilization=0.6).splitlines()[1])
        vLLM reserves gpu_memory_utilization=0.6 of 15.0 GB = 9.0 GB for the weights and its KV cache; they need ~7.2 GB
    """
    gpu_gb = gpu_gb if gpu_gb is not None else (gpu_memory_gb() or T4_GB)
    est = preset_estimate(preset, backend, **kwargs)
    lines = [f"{preset} on {backend}: {est.summary()}"]
    util = _utilization(preset, gpu_memory_utilization) if backend == "unsloth-vllm" else None
    if util is not None:
        split = vllm_split(est, gpu_gb, util)
        lines += [f"vLLM reserves gpu_memory_utilization={util:g} of {gpu_gb:.1f} GB = {split['vllm_gb']:.1f} GB for the "
                  f"weights and its KV cache; they need ~{split['vllm_needs_gb']:.1f} GB",
                  f"training gets the other {split['training_gb']:.1f} GB and needs ~{split['training_needs_gb']:.1f} GB "
                  "(LoRA, optimizer, activations, CUDA context, allocator slack)"]
    else:
        lines.append(f"needs ~{needed_gb(est):.1f} GB with CUDA context and allocator slack; this GPU: {gpu_gb:.1f} GB")
    if fits_gpu(preset, gpu_gb, backend, gpu_memory_utilization=gpu_memory_utilization, **kwargs):
        lines.append("-> fits.")
    elif util is not None and split["vllm_needs_gb"] + split["training_needs_gb"] <= gpu_gb:
        low, high = split["vllm_needs_gb"] / gpu_gb, 1 - split["training_needs_gb"] / gpu_gb
        lines.append(f"-> does NOT fit with this split; gpu_memory_utilization between {low:.2f} and {high:.2f} would.")
    else:
        better = suggest_preset(gpu_gb, backend, **kwargs)
        lines.append(f"-> does NOT fit. Try {better!r}, fewer generations or shorter completions." if better else
                     "-> does NOT fit, and no course preset does: use tiny mode (GRPO_COURSE_TINY=1).")
    return "\n".join(lines)


def gpu_memory_gb() -> float | None:
    """Total memory of this machine's CUDA GPU in GB (GiB, as nvidia-smi and Colab show it), or None."""
    from grpo_helpers.runtime import has_cuda

    if not has_cuda():
        return None
    import torch

    return torch.cuda.get_device_properties(0).total_memory / GIB


# ------------------------------------------------------------------------------------------------------ several GPUs

STRATEGIES = ("ddp", "zero2", "zero3")  # the three configs in configs/accelerate/


def per_gpu_estimate(preset: str, num_gpus: int, strategy: str = "ddp", *, num_generations: int = 6,
                     max_completion_length: int = 768, max_prompt_length: int = 256) -> float:
    """Peak GiB on each training GPU when ``scripts/train_grpo.py`` trains ``preset`` on ``num_gpus`` GPUs.

    The script's setup: plain TRL + PEFT (``trl-peft``), bf16 weights, LoRA of the preset's rank, AdamW, Hugging Face
    gradient checkpointing, one prompt x ``num_generations`` completions per GPU (so N GPUs take N prompts per step).

    * ``ddp``: every GPU holds everything: the one-GPU estimate (plus DDP's fp32 gradient buckets for the LoRA).
    * ``zero2``: gradients and AdamW states (12 of the 16 bytes per LoRA parameter) are split over the GPUs.
    * ``zero3``: the bf16 weights and the LoRA weights are split too; a GPU gathers one layer at a time (two with
      prefetch) while it computes. Activations and logits are per GPU and are not split by any strategy.

    GPUs running ``trl vllm-serve`` are not counted: they hold vLLM's own ``gpu_memory_utilization`` share.

    Example:
        >>> ddp, zero3 = per_gpu_estimate("llama-3.1-8b-instruct", 8), per_gpu_estimate("llama-3.1-8b-instruct", 8, "zero3")
        >>> ddp > 20 > zero3
        True
    """
    from grpo_helpers.models import GPU_SHAPES, get_preset, shape_params

    if strategy not in STRATEGIES:
        raise CourseError(f"Unknown strategy {strategy!r}.", fix=f"Use one of {', '.join(STRATEGIES)}.")
    if num_gpus < 1:
        raise CourseError(f"num_gpus={num_gpus} must be at least 1.", fix="Count the training GPUs, e.g. 1, 2, 4 or 8.")
    p = get_preset(preset)
    shape = preset if preset in GPU_SHAPES else None
    est = estimate_vram(p.params_b, False, p.lora_rank, num_generations, max_prompt_length + max_completion_length,
                        "trl-peft", max_completion_length=max_completion_length, shape=shape, optimizer="adamw_torch")
    lora_weights = est.lora_optimizer_gb / 4  # 16 bytes per LoRA parameter: 4 weight, 4 gradient, 8 AdamW
    sharded_states = est.lora_optimizer_gb - lora_weights
    if strategy == "ddp":
        fixed = est.weights_gb + est.lora_optimizer_gb + lora_weights  # + gradient buckets
    elif strategy == "zero2":
        fixed = est.weights_gb + lora_weights + sharded_states / num_gpus
    else:
        c = _shape(p.params_b, shape)
        embeddings = c["vocab_size"] * c["hidden_size"] * (1 if c["tie_word_embeddings"] else 2)
        layer_gb = (shape_params(c) - embeddings) / c["num_hidden_layers"] * 2 / GIB  # one bf16 layer
        gathered = 2 * layer_gb if num_gpus > 1 else 0.0
        fixed = (est.weights_gb + est.lora_optimizer_gb) / num_gpus + gathered
    return fixed + max(est.activations_gb, est.generation_gb)  # HF generate frees its KV cache before training


def scaling_table(presets: tuple[str, ...] = ("qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "llama-3.1-8b-instruct"),
                  gpus: tuple[int, ...] = (1, 2, 4, 8), **kwargs) -> str:
    """A markdown table of :func:`per_gpu_estimate` for each preset, GPU count and strategy (docs/scaling.md).

    Print it with ``python -c "from grpo_helpers.memory import scaling_table; print(scaling_table())"``.

    Example:
        >>> scaling_table(("qwen2.5-0.5b-instruct",), gpus=(1, 2)).splitlines()[0]
        '| model | GPUs | prompts per step | DDP GB/GPU | ZeRO-2 GB/GPU | ZeRO-3 GB/GPU |'
    """
    lines = ["| model | GPUs | prompts per step | DDP GB/GPU | ZeRO-2 GB/GPU | ZeRO-3 GB/GPU |", "|---|---|---|---|---|---|"]
    for preset in presets:
        for n in gpus:
            cells = [f"{per_gpu_estimate(preset, n, s, **kwargs):.1f}" for s in STRATEGIES]
            lines.append(f"| {preset} | {n} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
