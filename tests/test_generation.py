"""grpo_helpers.generation with the real SmolLM2 on the CPU (HF generate backend)."""

import pytest

from grpo_helpers import data, generation
from grpo_helpers.generation import Sampling


def test_shape_is_prompts_by_n(tiny_random):
    model, tok = tiny_random
    out = generation.generate(model, tok, ["a", "b", "c"], Sampling(max_new_tokens=3, n=2, batch_size=2), progress=False)
    assert [len(o) for o in out] == [2, 2, 2] and all(isinstance(c, str) for o in out for c in o)


def test_greedy_is_deterministic_and_batching_does_not_change_it(smollm2):
    model, tok = smollm2
    qs = ["What is 2+3?", "Name a colour."]
    greedy = Sampling(temperature=0.0, max_new_tokens=12)
    one_by_one = [generation.generate(model, tok, [q], greedy, progress=False)[0][0] for q in qs]
    batched = [o[0] for o in generation.generate(model, tok, qs, greedy, progress=False)]
    assert one_by_one == batched  # left padding keeps batched greedy output identical
    assert "5" in one_by_one[0]


def test_sampling_seed_makes_runs_repeatable(smollm2):
    model, tok = smollm2
    s = Sampling(max_new_tokens=10, n=2, seed=7)
    assert generation.generate(model, tok, ["Tell a fact."], s, progress=False) == \
        generation.generate(model, tok, ["Tell a fact."], s, progress=False)


def test_prefill_starts_every_completion(smollm2):
    model, tok = smollm2
    prompt = data.build_prompt("What is 3+4?", prefill="<reasoning>\n")
    text, prefill = generation.render_prompt(tok, prompt)
    assert text.endswith("<|im_start|>assistant\n<reasoning>\n") and prefill == "<reasoning>\n"
    out = generation.generate(model, tok, [prompt], Sampling(max_new_tokens=8, n=2), progress=False)[0]
    assert all(c.startswith("<reasoning>\n") and len(c) > len(prefill) for c in out)


def test_chat_answers_calculate_pi(smollm2):
    model, tok = smollm2
    answer = generation.chat(model, tok, "Calculate pi.", Sampling(temperature=0.0, max_new_tokens=40))
    assert isinstance(answer, str) and len(answer) > 10


def test_vllm_sampling_fields_match_the_hf_ones():
    import dataclasses

    assert {f.name for f in dataclasses.fields(Sampling)} >= {"temperature", "top_p", "max_new_tokens", "n", "seed"}


def test_lora_request_off_vllm_is_explained(tiny_random):
    model, tok = tiny_random
    with pytest.raises(ValueError, match="training.load_lora"):
        generation.generate(model, tok, ["a"], Sampling(max_new_tokens=2), lora_request=object(), backend="trl-peft")
