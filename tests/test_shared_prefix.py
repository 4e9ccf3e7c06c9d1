"""share_prefix: the shared prompt computed once gives the same tokens, the same loss and gradient, and the same
GRPO run as the plain path, on the real SmolLM2 model with a LoRA."""

from __future__ import annotations

import csv
import dataclasses
import doctest

import pytest

from grpo_helpers import shared_prefix
from grpo_helpers.shared_prefix import common_prefix_length, share_prefix

PREFILL = "<reasoning>\n"


@pytest.fixture(scope="module")
def lora_model():
    """SmolLM2-135M with the recorded demo adapter (trainable), and its tokenizer."""
    from peft import PeftModel

    from grpo_helpers.demo import recorded_run
    from grpo_helpers.models import load_model

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    return PeftModel.from_pretrained(model, str(recorded_run().lora_path), is_trainable=True), tokenizer


def prompts(n: int, split: str = "test"):
    from grpo_helpers.data import TINY_SYSTEM_PROMPT
    from grpo_helpers.word_sums import load_word_sums

    return [r["prompt"] for r in load_word_sums(split, n=n, system_prompt=TINY_SYSTEM_PROMPT, prefill=PREFILL)]


def test_common_prefix_leaves_every_row_a_token():
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2 and common_prefix_length([]) == 0


def test_greedy_answers_and_a_sampled_group_are_the_same_tokens(lora_model):
    from grpo_helpers.generation import GREEDY, Sampling, generate

    model, tok = lora_model
    greedy = dataclasses.replace(GREEDY, max_new_tokens=24, batch_size=6)
    plain = generate(model, tok, prompts(6), greedy, progress=False)
    group = [prompts(1)[0]] * 6
    sampled = Sampling(temperature=1.0, top_p=1.0, max_new_tokens=24, seed=7, batch_size=6)
    plain_group = generate(model, tok, group, sampled, progress=False)
    with share_prefix(model) as counts:
        assert generate(model, tok, prompts(6), greedy, progress=False) == plain
        assert generate(model, tok, group, sampled, progress=False) == plain_group
    assert counts.shared_generations == 2
    assert "generate" not in vars(model) and "forward" not in vars(model)  # the model is as it was
    assert not any(getattr(m, "merged", False) for m in model.modules())  # the LoRA is unmerged again


def test_the_loss_forward_gives_the_same_log_probs_and_gradient(lora_model):
    import torch

    from grpo_helpers.generation import render_prompt

    model, tok = lora_model
    prompt = tok(render_prompt(tok, prompts(1)[0])[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    gen = torch.Generator().manual_seed(0)
    width = 20
    completions = torch.randint(100, 5000, (4, width), generator=gen)
    mask = (torch.arange(width)[None] < torch.tensor([[20], [12], [7], [16]])).long()
    ids = torch.cat([prompt.repeat(4, 1), completions], 1)
    attention = torch.cat([torch.ones(4, prompt.shape[1], dtype=torch.long), mask], 1)
    params = [p for p in model.parameters() if p.requires_grad]

    def logps_and_grad():
        model.zero_grad()
        logits = model(input_ids=ids, attention_mask=attention, logits_to_keep=width + 1, use_cache=False).logits
        logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, completions[..., None])[..., 0] * mask
        (logps.sum() / mask.sum()).backward()
        return logps.detach(), torch.cat([p.grad.flatten() for p in params])

    model.train()
    plain_logps, plain_grad = logps_and_grad()
    with share_prefix(model) as counts:
        logps, grad = logps_and_grad()
    model.eval()
    assert counts.shared_forwards == 1
    assert float((logps - plain_logps).abs().max()) < 1e-3
    assert float((grad - plain_grad).norm() / plain_grad.norm()) < 1e-4


def test_a_grpo_run_inside_share_prefix_is_the_same_run(tmp_path):
    """Two real GRPO steps each way: the same sampled completions, rewards and loss; every step shared its prompt."""
    from peft import PeftModel

    from grpo_helpers.data import TINY_SYSTEM_PROMPT
    from grpo_helpers.demo import recorded_run
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import correctness_reward, soft_format_reward
    from grpo_helpers.training import build_trainer, grpo_config, train
    from grpo_helpers.word_sums import load_word_sums

    logs = {}
    for name in ("plain", "shared"):
        model, tok = load_model("smollm2-135m-offline", backend="trl-peft")
        model = PeftModel.from_pretrained(model, str(recorded_run().lora_path), is_trainable=True)
        rows = load_word_sums("train", n=8, system_prompt=TINY_SYSTEM_PROMPT, prefill=PREFILL)
        config = grpo_config("tiny", run_name=name, runs_dir=tmp_path, max_steps=2, num_generations=4,
                             max_completion_length=16, save_steps=1000)
        trainer = build_trainer(model, tok, rows, {correctness_reward: 2.0, soft_format_reward: 0.5}, config,
                                live_plot=False)
        if name == "plain":
            train(trainer)
        else:
            with share_prefix(trainer.model) as counts:
                train(trainer)
            assert (counts.shared_generations, counts.shared_forwards) == (2, 2)
        logs[name] = list(csv.DictReader(open(tmp_path / name / "metrics.csv")))
    keys = ("reward", "completions/mean_length", "rewards/correctness_reward/mean", "num_tokens")
    assert [[r[k] for k in keys] for r in logs["plain"]] == [[r[k] for k in keys] for r in logs["shared"]]
    assert [float(r["loss"]) for r in logs["plain"]] == pytest.approx([float(r["loss"]) for r in logs["shared"]],
                                                                     abs=1e-4)


def test_shared_prefix_doctests():
    failures, tried = doctest.testmod(shared_prefix)
    assert tried >= 5 and failures == 0
