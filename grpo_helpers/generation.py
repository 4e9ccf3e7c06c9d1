"""Text generation with one sampling object for both engines: vLLM (``fast_generate``) and Hugging Face ``generate``.

Example:
    >>> from grpo_helpers.models import load_model
    >>> model, tok = load_model("tiny-random")
    >>> out = generate(model, tok, ["Calculate pi."], Sampling(max_new_tokens=4, n=2))
    >>> len(out), len(out[0])
    (1, 2)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from grpo_helpers.runtime import detect_backend

Prompt = str | list[dict]  # a user question, or chat messages (optionally ending in an assistant prefill)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Sampling settings shared by both engines (the seed uses temperature 0.8, top_p 0.95)."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    n: int = 1  # completions per prompt
    seed: int | None = 3407
    batch_size: int = 8  # prompts per HF generate() call

    def to_vllm(self):
        """The same settings as a ``vllm.SamplingParams`` (only on the unsloth-vllm backend)."""
        from vllm import SamplingParams

        return SamplingParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_new_tokens,
                              n=self.n, seed=self.seed)


GREEDY = Sampling(temperature=0.0, top_p=1.0)


def as_messages(prompt: Prompt, system_prompt: str | None = None) -> list[dict]:
    """A plain question becomes a one-turn chat; chat messages pass through."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
        return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + messages
    return list(prompt)


def render_prompt(tokenizer, messages: list[dict]) -> tuple[str, str]:
    """Chat template text for ``messages`` and the assistant prefill it ends with ('' if none).

    A final assistant message is a prefill: the model continues it rather than starting a new turn.
    """
    prefill = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not prefill,
                                         continue_final_message=bool(prefill))
    return text, prefill


def _hf_generate(model, tokenizer, texts: list[str], sampling: Sampling, progress: bool) -> list[list[str]]:
    import torch
    from tqdm.auto import tqdm

    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    do_sample = sampling.temperature > 0
    results: list[list[str]] = []
    batches = range(0, len(texts), sampling.batch_size)
    for start in tqdm(batches, desc="generating", disable=not progress or len(batches) < 2):
        chunk = texts[start:start + sampling.batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        kwargs: dict[str, Any] = dict(max_new_tokens=sampling.max_new_tokens, do_sample=do_sample,
                                      num_return_sequences=sampling.n, pad_token_id=tokenizer.pad_token_id)
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        results += [decoded[i * sampling.n:(i + 1) * sampling.n] for i in range(len(chunk))]
    return results


def generate(model, tokenizer, prompts: Sequence[Prompt], sampling: Sampling = Sampling(), *, lora_request=None,
             backend: str | None = None, system_prompt: str | None = None, progress: bool = True) -> list[list[str]]:
    """``sampling.n`` completions for each prompt: ``result[i][j]`` is completion j of prompt i.

    vLLM ``fast_generate`` on the ``unsloth-vllm`` backend (``lora_request`` from ``training.load_lora``), batched
    Hugging Face ``generate`` with a progress bar otherwise. An assistant prefill is kept at the start of each
    completion, as TRL does, so rewards see the whole answer.
    """
    backend = detect_backend(backend)
    rendered = [render_prompt(tokenizer, as_messages(p, system_prompt)) for p in prompts]
    texts = [text for text, _ in rendered]
    if backend == "unsloth-vllm" and hasattr(model, "fast_generate"):
        outputs = model.fast_generate(texts, sampling_params=sampling.to_vllm(), lora_request=lora_request)
        raw = [[c.text for c in o.outputs] for o in outputs]
    else:
        if lora_request is not None:
            raise ValueError("lora_request is a vLLM object; on this backend load the adapter with training.load_lora().")
        raw = _hf_generate(model, tokenizer, texts, sampling, progress)
    return [[prefill + c for c in completions] for (_, prefill), completions in zip(rendered, raw)]


def chat(model, tokenizer, question: str, sampling: Sampling = Sampling(), system_prompt: str | None = None,
         **kwargs) -> str:
    """One answer to one question: the seed's "Calculate pi." cell in one call."""
    return generate(model, tokenizer, [question], dataclasses.replace(sampling, n=1), system_prompt=system_prompt,
                    progress=False, **kwargs)[0][0]


def count_tokens(tokenizer, texts: Sequence[str]) -> list[int]:
    """Token counts of ``texts`` (for lengths and tokens/s)."""
    return [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
