"""The hand-made GRPO loss (grpo_helpers.grpo_math) equals TRL's GRPOTrainer loss on the same batch, and its vLLM
importance weights are what TRL's own code computes.

The batch is real: TRL's own ``_generate_and_score_completions`` samples it with the tiny random Llama.
The policy is then nudged away from the reference model (so the k3 KL term is non-zero) and ``old_per_token_logps``
is perturbed (so ratios leave the clip band and clipping is exercised).
"""

import doctest

import pytest
import torch

from grpo_helpers import grpo_math
from grpo_helpers.grpo_math import (IS_MODES, LOSS_TYPES, aggregate, clipped_surrogate, clipped_tokens, completion_mask,
                                    group_advantages, grpo_loss, k3_kl, per_token_logps, reward_metrics,
                                    vllm_importance_weights)

NUM_GENERATIONS, MAX_COMPLETION = 4, 12
TEMPERATURE = 0.9


def test_doctests():
    failures, tried = doctest.testmod(grpo_math)
    assert tried > 10 and failures == 0


def test_group_advantages_match_the_formula():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0, 4.0, 4.0, 4.0, 4.0])
    adv = group_advantages(rewards, num_generations=4)
    first = (rewards[:4] - rewards[:4].mean()) / (rewards[:4].std() + 1e-4)
    assert torch.allclose(adv[:4], first)
    assert torch.equal(adv[4:], torch.zeros(4))  # equal rewards: no signal
    assert torch.allclose(group_advantages(rewards, 4, "none")[:4], rewards[:4] - 3.0)
    assert abs(float(adv[:4].sum())) < 1e-5  # advantages of a group sum to zero


def test_clipping_zeroes_the_gradient_outside_the_band():
    logps = torch.log(torch.tensor([[1.5, 0.9]])).requires_grad_()
    clipped_surrogate(logps, torch.zeros(1, 2), torch.tensor([1.0])).sum().backward()
    assert logps.grad[0, 0] == 0  # ratio 1.5 > 1.2 with A > 0: clipped, no push further
    assert logps.grad[0, 1] < 0  # ratio 0.9 inside the band: the loss pushes log pi up


def test_clipped_tokens_are_exactly_the_tokens_without_gradient():
    torch.manual_seed(0)
    logps = torch.randn(4, 6).requires_grad_()
    old = logps.detach() + 0.4 * torch.randn(4, 6)  # ratios on both sides of the band
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    clipped = clipped_tokens(logps, old, advantages, 0.2, 0.28)
    clipped_surrogate(logps, old, advantages, 0.2, 0.28).sum().backward()
    assert 0 < clipped.sum() < clipped.numel()
    assert torch.equal(clipped, logps.grad == 0)
    assert not clipped_tokens(logps, logps.detach(), advantages).any()  # one step per batch: ratio 1, never clipped


def test_reward_metrics_count_groups_that_teach_nothing():
    metrics = reward_metrics(torch.tensor([1.0, 2.0, 3.0, 6.0, 4.0, 4.0, 4.0, 4.0]), num_generations=4)
    assert metrics["frac_reward_zero_std"] == 0.5
    assert metrics["reward"] == 3.5
    assert abs(metrics["reward_std"] - float(torch.tensor([1.0, 2, 3, 6, 4, 4, 4, 4]).std())) < 1e-6


def test_k3_is_non_negative_and_zero_only_when_equal():
    logps = torch.randn(50)
    assert torch.all(k3_kl(logps, logps + torch.randn(50)) >= 0)
    assert torch.equal(k3_kl(logps, logps), torch.zeros(50))


def test_aggregate_rejects_unknown_loss_type():
    with pytest.raises(ValueError, match="loss_type"):
        aggregate(torch.ones(1, 2), torch.ones(1, 2), "ppo")


@pytest.fixture(scope="module")
def trl_batch(tiny_random):
    """A GRPOTrainer on the tiny random Llama (beta > 0, so it builds a reference model) and one batch it sampled."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = tiny_random

    def char_reward(completions, **kwargs):  # any deterministic reward with variance inside a group
        return [float(sum(map(ord, c[0]["content"])) % 7) for c in completions]  # conversational: [message]

    prompts = ["Calculate pi.", "What is 2 + 3?"]
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts]})
    args = GRPOConfig(output_dir="/tmp/grpo_math_test", per_device_train_batch_size=2 * NUM_GENERATIONS,
                      num_generations=NUM_GENERATIONS, max_completion_length=MAX_COMPLETION, beta=0.1,
                      temperature=TEMPERATURE, epsilon=0.2, epsilon_high=0.28, scale_rewards="group", report_to="none",
                      use_cpu=True, bf16=False, seed=0, logging_steps=1)
    torch.manual_seed(0)
    trainer = GRPOTrainer(model=model, reward_funcs=char_reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer)
    rows = [row for row in dataset for _ in range(NUM_GENERATIONS)]  # TRL's sampler repeats each prompt G times
    inputs = trainer._generate_and_score_completions(rows)
    with torch.no_grad():  # move the policy away from the reference so the KL term matters
        for param in trainer.model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    inputs["old_per_token_logps"] = per_token_logps(
        trainer.model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
        inputs["completion_mask"], TEMPERATURE).detach() + 0.3 * torch.randn(inputs["completion_ids"].shape)
    return trainer, inputs


def test_trl_batch_is_real_and_exercises_clipping_and_kl(trl_batch):
    trainer, inputs = trl_batch
    mask = inputs["completion_mask"]
    assert inputs["completion_ids"].shape == (2 * NUM_GENERATIONS, MAX_COMPLETION)
    assert inputs["advantages"].abs().sum() > 0
    logps = per_token_logps(trainer.model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"], mask,
                            TEMPERATURE)
    ratio = (logps - inputs["old_per_token_logps"]).exp()[mask.bool()]
    assert ((ratio < 0.8) | (ratio > 1.28)).any(), "no token outside the clip band: clipping is not tested"
    assert (k3_kl(logps, inputs["ref_per_token_logps"])[mask.bool()] > 1e-6).any()


def test_hand_advantages_equal_trls(trl_batch):
    trainer, inputs = trl_batch
    rewards = torch.tensor(list(trainer._logs["rewards"]["char_reward"])[-2 * NUM_GENERATIONS:])
    assert torch.allclose(group_advantages(rewards, NUM_GENERATIONS), inputs["advantages"], atol=1e-5)


def test_hand_reward_metrics_equal_trls_logs(trl_batch):
    trainer, inputs = trl_batch
    rewards = torch.tensor(list(trainer._logs["rewards"]["char_reward"])[-2 * NUM_GENERATIONS:])
    ours = reward_metrics(rewards, NUM_GENERATIONS)
    # TRL logs under "train" or "eval" after the model's mode when it sampled the batch
    logged = next(trainer._metrics[mode] for mode in ("train", "eval") if trainer._metrics[mode].get("reward_std"))
    for name, value in ours.items():
        assert abs(value - logged[name][-1]) < 1e-5, (name, value, logged[name])


def test_hand_clipped_tokens_equal_trls_clip_ratio(trl_batch):
    trainer, inputs = trl_batch
    trainer.loss_type = "grpo"
    trainer.model.eval()  # TRL logs under "eval" in eval mode
    with torch.no_grad():
        trainer._compute_loss(trainer.model, inputs)
        logps = per_token_logps(trainer.model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                                inputs["completion_mask"], TEMPERATURE)
    clipped = clipped_tokens(logps, inputs["old_per_token_logps"], inputs["advantages"], 0.2, 0.28)
    mask = inputs["completion_mask"].bool()
    ours = clipped[mask].float().mean().item()
    assert ours > 0, "no clipped token: the comparison tests nothing"
    assert abs(ours - trainer._metrics["eval"]["clip_ratio/region_mean"][-1]) < 1e-6


def test_hand_ref_logps_equal_trls(trl_batch):
    trainer, inputs = trl_batch
    with torch.no_grad():
        ref = per_token_logps(trainer.ref_model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                              inputs["completion_mask"], TEMPERATURE)
    mask = inputs["completion_mask"].bool()
    assert torch.allclose(ref[mask], inputs["ref_per_token_logps"][mask], atol=1e-5)


@pytest.mark.parametrize("on_policy", [False, True], ids=["old_logps", "on_policy"])
@pytest.mark.parametrize("bias_correction_kl", [True, False], ids=["kl_ratio", "plain_kl"])
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_hand_loss_equals_trl_loss(trl_batch, loss_type, bias_correction_kl, on_policy):
    trainer, inputs = trl_batch
    if on_policy:  # one update per batch: TRL then uses pi_old = pi.detach(), as grpo_loss does for old_logps=None
        inputs = {k: v for k, v in inputs.items() if k != "old_per_token_logps"}
    trainer.loss_type = loss_type
    trainer.args.use_bias_correction_kl = bias_correction_kl
    trainer.model.eval()  # eval mode: TRL does not divide by gradient-accumulation steps

    trl_loss = trainer._compute_loss(trainer.model, inputs)
    trl_grad = torch.autograd.grad(trl_loss, trainer.model.model.embed_tokens.weight)[0]

    logps = per_token_logps(trainer.model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                            inputs["completion_mask"], TEMPERATURE)
    hand_loss = grpo_loss(logps, inputs.get("old_per_token_logps"), inputs["ref_per_token_logps"], inputs["advantages"],
                          inputs["completion_mask"], loss_type=loss_type, beta=trainer.beta, epsilon_low=0.2,
                          epsilon_high=0.28, max_completion_length=MAX_COMPLETION,
                          num_items_in_batch=inputs["num_items_in_batch"], bias_correction_kl=bias_correction_kl)
    hand_grad = torch.autograd.grad(hand_loss, trainer.model.model.embed_tokens.weight)[0]

    assert abs(hand_loss.item() - trl_loss.item()) < 1e-5, (loss_type, hand_loss.item(), trl_loss.item())
    assert torch.allclose(hand_grad, trl_grad, atol=1e-5)
    assert trl_loss.item() != 0.0


def trl_importance_sampling_block():
    """The code TRL 1.14's ``_generate_and_score_completions`` runs on the vLLM path to weight completions, as source."""
    import inspect
    import textwrap

    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    start = source.index("            if self.use_vllm and self.vllm_importance_sampling_correction:\n                mask =")
    end = source.index("            # Compute the per-token log probabilities for the reference model", start)
    return textwrap.dedent(source[start:end])


@pytest.mark.parametrize("mode", IS_MODES)
@pytest.mark.parametrize("clip_min, clip_max", [(None, 3.0), (0.5, 2.0), (None, 1.05)])
def test_vllm_importance_weights_are_trls_code(mode, clip_min, clip_max):
    import math
    import types

    torch.manual_seed(0)
    trainer_logps = torch.randn(6, 9)
    sampler_logps = trainer_logps + 0.15 * torch.randn(6, 9)
    sampler_logps[0, 3] = float("nan")  # vLLM gave no logprob for this token: TRL treats its ratio as 1
    mask = torch.ones(6, 9)
    mask[1, 5:] = 0
    stub = types.SimpleNamespace(use_vllm=True, vllm_importance_sampling_correction=True,
                                 vllm_importance_sampling_mode=mode, vllm_importance_sampling_clip_min=clip_min,
                                 vllm_importance_sampling_clip_max=clip_max)
    scope = {"self": stub, "torch": torch, "math": math, "old_per_token_logps": trainer_logps,
             "sampling_per_token_logps": sampler_logps, "completion_mask": mask, "tool_mask": None}
    exec(trl_importance_sampling_block(), scope)
    theirs = scope["vllm_importance_sampling_ratio"]
    ours = vllm_importance_weights(trainer_logps, sampler_logps, mask, mode, clip_min, clip_max)
    assert ours.shape == theirs.shape and torch.equal(ours, theirs), (mode, ours, theirs)
    if mode.endswith("mask") and clip_max == 1.05:
        assert (ours == 0).any() and (ours > 0).any()  # a tight band drops some completions (or tokens), not all
    elif mode.endswith("truncate"):
        assert ours.max() <= clip_max


def test_hand_loss_with_vllm_weights_equals_trl_loss(trl_batch):
    trainer, inputs = trl_batch
    mask = inputs["completion_mask"]
    torch.manual_seed(1)
    sampler = inputs["old_per_token_logps"] + 0.05 * torch.randn(mask.shape)  # as if vLLM had sampled the batch
    weights = vllm_importance_weights(inputs["old_per_token_logps"], sampler, mask, "sequence_mask", None, 1.3)
    assert (weights == 0).any() and (weights != 0).any(), weights.flatten()
    trainer.loss_type, trainer.args.use_bias_correction_kl = "dapo", True
    trainer.use_vllm, trainer.vllm_importance_sampling_correction = True, True
    trainer.model.eval()
    try:
        trl_loss = trainer._compute_loss(trainer.model, {**inputs, "importance_sampling_ratio": weights})
    finally:
        trainer.use_vllm = False
    logps = per_token_logps(trainer.model, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"], mask,
                            TEMPERATURE)
    hand = grpo_loss(logps, inputs["old_per_token_logps"], inputs["ref_per_token_logps"], inputs["advantages"], mask,
                     "dapo", trainer.beta, 0.2, 0.28, MAX_COMPLETION, inputs["num_items_in_batch"],
                     importance_weights=weights)
    unweighted = grpo_loss(logps, inputs["old_per_token_logps"], inputs["ref_per_token_logps"], inputs["advantages"],
                           mask, "dapo", trainer.beta, 0.2, 0.28, MAX_COMPLETION, inputs["num_items_in_batch"])
    assert abs(hand.item() - trl_loss.item()) < 1e-5 and abs(hand.item() - unweighted.item()) > 1e-4
