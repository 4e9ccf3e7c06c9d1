"""GRPO from scratch: every piece of the loss in a few lines of torch, the way notebook 05 builds it.

The pieces, in the order one training step uses them:

1. :func:`sample_group`: G completions for one prompt (the *group*), with the completion mask TRL uses.
2. :func:`group_advantages`: reward minus the group's mean, divided by the group's std. No value model.
   (:func:`reward_metrics`: the ``reward_std`` and ``frac_reward_zero_std`` TRL logs about them.)
3. :func:`per_token_logps`: log pi(token | prefix) for every completion token.
4. :func:`clipped_surrogate`: the PPO-style clipped objective on the per-token ratio pi / pi_old
   (:func:`clipped_tokens`: where the clip is active; only ever with more than one optimizer step per batch).
5. :func:`k3_kl`: the per-token KL estimate to the reference model, ``exp(q) - q - 1`` with ``q = log ref - log pi``.
6. :func:`aggregate`: how per-token losses become one number: ``grpo``, ``bnpo``, ``dr_grpo``, ``dapo``.
7. :func:`vllm_importance_weights`: only when vLLM samples the group: TRL's weight pi_trainer / pi_vLLM per completion
   (or per token), truncated or masked, that corrects for the two engines' slightly different log-probabilities.

:func:`grpo_loss` puts them together; ``tests/test_grpo_math.py`` checks it equals TRL's ``GRPOTrainer`` loss.

Example:
    >>> import torch
    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), num_generations=4)
    tensor([ 0.8659, -0.8659, -0.8659,  0.8659])
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported inside functions, so importing this module stays cheap
    import torch

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
IS_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")  # GRPOConfig.vllm_importance_sampling_mode
SCALE_REWARDS = ("group", "batch", "none")


def group_advantages(rewards: "torch.Tensor", num_generations: int, scale_rewards: str = "group",
                     eps: float = 1e-4) -> "torch.Tensor":
    """Advantage of each completion: how much better it did than the other completions of its prompt.

    ``rewards`` holds ``num_generations`` consecutive completions per prompt. The group mean is the baseline
    (what PPO asks a value model for); ``scale_rewards`` divides by the group's std ("group", the GRPO paper),
    the whole batch's std ("batch") or nothing ("none", Dr. GRPO). A group whose rewards are all equal gets
    advantage 0: it teaches nothing.

    Example:
        >>> import torch
        >>> group_advantages(torch.tensor([2.0, 0.0, 5.0, 5.0]), num_generations=2, scale_rewards="none")
        tensor([ 1., -1.,  0.,  0.])
    """
    import torch

    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    grouped = rewards.view(-1, num_generations)
    baseline = grouped.mean(dim=1).repeat_interleave(num_generations)
    advantages = rewards - baseline
    if scale_rewards == "group":
        advantages = advantages / (grouped.std(dim=1).repeat_interleave(num_generations) + eps)
    elif scale_rewards == "batch":
        advantages = advantages / (rewards.std() + eps)
    return torch.nan_to_num(advantages, nan=0.0)


def reward_metrics(rewards: "torch.Tensor", num_generations: int) -> dict[str, float]:
    """The reward numbers TRL logs for a batch: ``reward``, ``reward_std`` and ``frac_reward_zero_std``.

    ``reward_std`` is the std over the whole batch (all prompts together); ``frac_reward_zero_std`` is the share of
    groups whose rewards are all equal, which get advantage 0 and teach nothing. When it is 1.0, the loss *and*
    ``grad_norm`` are 0: the step learned nothing (TRL issue #3857).

    Example:
        >>> import torch
        >>> metrics = reward_metrics(torch.tensor([1.0, 0.0, 2.0, 2.0]), num_generations=2)
        >>> {name: round(value, 3) for name, value in metrics.items()}
        {'reward': 1.25, 'reward_std': 0.957, 'frac_reward_zero_std': 0.5}
    """
    import torch

    group_std = rewards.view(-1, num_generations).std(dim=1)
    zero_std = torch.isclose(group_std, torch.zeros_like(group_std))
    return {"reward": rewards.mean().item(), "reward_std": rewards.std().item(),
            "frac_reward_zero_std": zero_std.float().mean().item()}


def numbers_used_reward(completions: list[str], question: str) -> list[float]:
    """A toy reward for the walk-through: the share of the question's numbers that a completion uses.

    Short completions of a 135M model often tie on the format rewards (a tied group has zero advantage);
    this one nearly always separates them. It is a teaching device, not a GSM8K reward.

    Example:
        >>> numbers_used_reward(["3 + 4 = 7", "no idea", "4 apples"], "Tom has 3 apples and buys 4.")
        [1.0, 0.0, 0.5]
    """
    import re

    wanted = set(re.findall(r"\d+(?:\.\d+)?", question.replace(",", "")))
    if not wanted:
        return [0.0 for _ in completions]
    return [len(wanted & set(re.findall(r"\d+(?:\.\d+)?", c.replace(",", "")))) / len(wanted) for c in completions]


@dataclasses.dataclass
class Group:
    """One sampled group, as token ids: left-padded prompts, right-padded completions and their masks."""

    prompt_ids: "torch.Tensor"  # (G, P)
    prompt_mask: "torch.Tensor"  # (G, P)
    completion_ids: "torch.Tensor"  # (G, C)
    completion_mask: "torch.Tensor"  # (G, C): 1 up to and including the first end-of-sequence token
    texts: list[str]


def completion_mask(completion_ids: "torch.Tensor", eos_token_id: int) -> "torch.Tensor":
    """1 for every token up to and including the first EOS, 0 after it (what the model "said").

    Example:
        >>> import torch
        >>> completion_mask(torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9]]), eos_token_id=2)
        tensor([[1, 1, 1, 0, 0],
                [1, 1, 1, 1, 1]])
    """
    import torch

    is_eos = completion_ids == eos_token_id
    first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), completion_ids.size(1))
    positions = torch.arange(completion_ids.size(1), device=completion_ids.device)
    return (positions.unsqueeze(0) <= first_eos.unsqueeze(1)).long()


def sample_group(model, tokenizer, prompt_text: str, num_generations: int = 4, max_new_tokens: int = 32,
                 temperature: float = 1.0, seed: int = 0) -> Group:
    """Sample ``num_generations`` completions of one already-rendered prompt: one GRPO group.

    Example:
        >>> from grpo_helpers.models import load_model
        >>> model, tok = load_model("tiny-random")
        >>> group = sample_group(model, tok, "<|im_start|>user\\nCalculate pi.<|im_end|>\\n", 2, max_new_tokens=5)
        >>> tuple(group.completion_ids.shape)
        (2, 5)
    """
    import torch

    torch.manual_seed(seed)
    enc = tokenizer([prompt_text] * num_generations, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0, top_k=0,
                             max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens // 2,
                             pad_token_id=tokenizer.pad_token_id)
    completion_ids = out[:, enc["input_ids"].size(1):]
    if completion_ids.size(1) < max_new_tokens:  # every sample stopped early: pad to a fixed width
        pad = completion_ids.new_full((num_generations, max_new_tokens - completion_ids.size(1)), tokenizer.pad_token_id)
        completion_ids = torch.cat([completion_ids, pad], dim=1)
    mask = completion_mask(completion_ids, tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(completion_ids * mask + tokenizer.pad_token_id * (1 - mask), skip_special_tokens=True)
    return Group(enc["input_ids"], enc["attention_mask"], completion_ids, mask, texts)


def per_token_logps(model, prompt_ids: "torch.Tensor", prompt_mask: "torch.Tensor", completion_ids: "torch.Tensor",
                    completion_mask: "torch.Tensor", temperature: float = 1.0) -> "torch.Tensor":
    """log pi(token_t | prompt, tokens before t) for each completion token, shape (G, C).

    One forward pass over prompt + completion; the logits at position t predict token t + 1, so we shift by one.
    Dividing the logits by the sampling ``temperature`` scores tokens under the distribution they were drawn from.

    Example:
        >>> import torch
        >>> from grpo_helpers.models import load_model
        >>> model, _ = load_model("tiny-random")
        >>> ids, mask = torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long)
        >>> per_token_logps(model, ids[:, :2], mask[:, :2], ids[:, 2:], mask[:, 2:]).shape
        torch.Size([1, 1])
    """
    import torch

    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, -completion_ids.size(1) - 1:-1, :] / temperature  # the positions that predict completion tokens
    logps = torch.log_softmax(logits.float(), dim=-1)
    return logps.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


def clipped_surrogate(logps: "torch.Tensor", old_logps: "torch.Tensor", advantages: "torch.Tensor",
                      epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> "torch.Tensor":
    """Per-token loss ``-min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A)`` with ``r = pi / pi_old``.

    Once ``r`` has left the band in the direction the advantage wants, the clipped branch is the minimum, it is flat,
    and that token's gradient is zero (:func:`clipped_tokens` finds those tokens). This can only happen when the
    model being trained differs from the one that sampled the batch, i.e. when a batch is used for more than one
    optimizer step (TRL's ``num_iterations > 1``, or ``steps_per_generation > gradient_accumulation_steps``).
    With one step per batch (TRL's default) ``old_logps = logps.detach()``, so ``r`` is exactly 1, nothing is ever
    clipped, and the loss is ``-A``; its gradient is still ``-A * grad log pi``.

    Example:
        >>> import torch
        >>> lp = torch.log(torch.tensor([[1.5, 0.5]]))
        >>> clipped_surrogate(lp, torch.zeros(1, 2), torch.tensor([1.0]))
        tensor([[-1.2000, -0.5000]])
    """
    ratio = (logps - old_logps).exp()
    advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    return -(ratio * advantages).min(clipped * advantages)


def clipped_tokens(logps: "torch.Tensor", old_logps: "torch.Tensor", advantages: "torch.Tensor",
                   epsilon_low: float = 0.2, epsilon_high: float = 0.2) -> "torch.Tensor":
    """True where the clip is active: the token's gradient is zero because it already moved far enough.

    That is ``r < 1 - eps_low`` for a token with ``A < 0`` (already made less likely enough) or ``r > 1 + eps_high``
    with ``A > 0`` (already made more likely enough), TRL's ``is_region_clipped``. Its masked mean is the
    ``clip_ratio/region_mean`` TRL logs; always 0 with one optimizer step per batch, where ``r = 1``.

    Example:
        >>> import torch
        >>> lp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))  # ratios 1.5, 0.5, 1.0 against old_logps = 0
        >>> clipped_tokens(lp, torch.zeros(1, 3), torch.tensor([1.0]))  # A > 0: only the token above 1.2
        tensor([[ True, False, False]])
    """
    ratio = (logps - old_logps).exp()
    advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    return ((ratio < 1 - epsilon_low) & (advantages < 0)) | ((ratio > 1 + epsilon_high) & (advantages > 0))


def k3_kl(logps: "torch.Tensor", ref_logps: "torch.Tensor") -> "torch.Tensor":
    """Per-token KL(pi || pi_ref) estimate ``exp(q) - q - 1`` with ``q = log pi_ref - log pi`` (Schulman's k3).

    Always >= 0, zero exactly when the two models agree on the token, and unbiased for tokens sampled from pi.

    Example:
        >>> import torch
        >>> k3_kl(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0]))
        tensor([0.0000, 0.7183])
    """
    q = ref_logps - logps
    return q.exp() - q - 1


def aggregate(per_token_loss: "torch.Tensor", mask: "torch.Tensor", loss_type: str = "grpo",
              max_completion_length: int | None = None, num_items_in_batch: float | None = None) -> "torch.Tensor":
    """Turn a (G, C) per-token loss into one number, the four ways TRL knows.

    * ``grpo``: average each sequence over its own tokens, then average sequences (long answers weigh less per token).
    * ``bnpo``: average over all tokens of the batch (every token weighs the same).
    * ``dr_grpo``: sum over tokens / (G * max_completion_length), a constant, so length does not bias the gradient.
    * ``dapo``: sum over tokens / tokens in the whole generation batch (``num_items_in_batch``; = bnpo on one batch).

    Example:
        >>> import torch
        >>> loss, mask = torch.ones(2, 4), torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
        >>> [round(float(aggregate(loss, mask, t, max_completion_length=4)), 3) for t in LOSS_TYPES]
        [1.0, 1.0, 0.625, 1.0]
    """
    mask = mask.to(per_token_loss.dtype)
    total = (per_token_loss * mask).sum()
    if loss_type == "grpo":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return total / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("dr_grpo divides by max_completion_length; pass it")
        return total / (per_token_loss.size(0) * max_completion_length)
    if loss_type == "dapo":
        items = mask.sum() if num_items_in_batch is None else num_items_in_batch
        return total / max(float(items), 1.0)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def vllm_importance_weights(trainer_logps: "torch.Tensor", sampler_logps: "torch.Tensor", mask: "torch.Tensor",
                            mode: str = "sequence_mask", clip_min: float | None = None,
                            clip_max: float | None = 3.0) -> "torch.Tensor":
    """TRL 1.14's importance weight for completions sampled by vLLM: rho = pi_trainer / pi_vLLM, then bounded.

    With ``use_vllm=True`` and ``vllm_importance_sampling_correction=True`` (TRL's default; Unsloth's is False), the
    trainer recomputes each token's log-probability (``trainer_logps``, its pi_old) and compares it with the one vLLM
    reported while sampling (``sampler_logps``). ``sequence_*`` modes use one ratio per completion,
    ``exp(sum_t (trainer - sampler))`` (shape (G, 1)); ``token_*`` modes one per token (G, T). ``*_truncate`` clips
    rho to [clip_min, clip_max]; ``*_mask`` sets rho to 0 outside it (the completion or token is dropped). TRL
    multiplies the per-token policy loss by rho, not the KL term (``GRPOTrainer._compute_loss``); this is the code
    of ``GRPOTrainer._generate_and_score_completions``, which ``tests/test_grpo_math.py`` runs against this function.

    Example:
        >>> import torch
        >>> trainer, sampler = torch.zeros(3, 2), torch.tensor([[0.0, 0.0], [-0.1, -0.1], [-1.0, -1.0]])
        >>> vllm_importance_weights(trainer, sampler, torch.ones(3, 2)).flatten()  # exp(0), exp(0.2), exp(2) > 3
        tensor([1.0000, 1.2214, 0.0000])
        >>> vllm_importance_weights(trainer, sampler, torch.ones(3, 2), mode="sequence_truncate").flatten()
        tensor([1.0000, 1.2214, 3.0000])
    """
    import math

    import torch

    if mode not in IS_MODES:
        raise ValueError(f"mode must be one of {IS_MODES}, got {mode!r}")
    diff = torch.nan_to_num((trainer_logps - sampler_logps) * mask, nan=0.0)  # a missing vLLM logprob: ratio 1
    if mode.startswith("sequence"):
        diff = diff.sum(dim=-1, keepdim=True)
    ratio = torch.exp(diff)
    if mode.endswith("truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    low = -math.inf if clip_min is None else clip_min
    high = math.inf if clip_max is None else clip_max
    return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)


def grpo_loss(logps: "torch.Tensor", old_logps: "torch.Tensor | None", ref_logps: "torch.Tensor | None",
              advantages: "torch.Tensor", mask: "torch.Tensor", loss_type: str = "grpo", beta: float = 0.0,
              epsilon_low: float = 0.2, epsilon_high: float = 0.2, max_completion_length: int | None = None,
              num_items_in_batch: float | None = None, bias_correction_kl: bool = True,
              importance_weights: "torch.Tensor | None" = None) -> "torch.Tensor":
    """The whole GRPO loss: clipped surrogate + beta * k3 KL, aggregated by ``loss_type``.

    ``old_logps=None`` means one update per batch (pi_old = pi, detached). ``ref_logps`` is needed when beta > 0.
    With ``beta=0`` and one update per batch the value is about 0 by construction (each group's advantages sum to
    zero; exactly 0 for ``grpo``, a small length-weighted remainder for the others) while the gradient is not:
    watch ``reward_std``, ``frac_reward_zero_std`` and ``grad_norm`` instead (TRL issues #3452, #3857).
    ``bias_correction_kl`` multiplies the KL by the ratio pi / pi_old, as TRL >= 1.x does by default
    (``use_bias_correction_kl``, from DeepSeek-V3.2): the value is unchanged on-policy, the gradient is not.
    ``importance_weights`` (:func:`vllm_importance_weights`, vLLM generation only) multiply the clipped surrogate
    before the KL is added, as in TRL.

    Example:
        >>> import torch
        >>> lp = torch.zeros(2, 3, requires_grad=True)
        >>> grpo_loss(lp, None, None, torch.tensor([1.0, -1.0]), torch.ones(2, 3)).item()
        0.0
    """
    old_logps = logps.detach() if old_logps is None else old_logps
    per_token_loss = clipped_surrogate(logps, old_logps, advantages, epsilon_low, epsilon_high)
    if importance_weights is not None:
        per_token_loss = per_token_loss * importance_weights
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs ref_logps (log-probs of the reference model)")
        kl = k3_kl(logps, ref_logps)
        if bias_correction_kl:
            kl = kl * (logps - old_logps).exp()
        per_token_loss = per_token_loss + beta * kl
    return aggregate(per_token_loss, mask, loss_type, max_completion_length, num_items_in_batch)
