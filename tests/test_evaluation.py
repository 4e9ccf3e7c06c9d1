"""Evaluation: scoring a fixed set of fake model outputs with known accuracy, evaluate() end to end, compare()."""

from __future__ import annotations

import pytest

from grpo_helpers import evaluation
from grpo_helpers.errors import CourseError
from grpo_helpers.evaluation import EVAL_SAMPLING, compare, evaluate, score

GOOD = "<reasoning>\n{r}\n</reasoning>\n<answer>\n{a}\n</answer>\n"
# (completion, reference answer): 2 of 5 correct, 4 with the tags in order, 3 in the strict seed layout.
FAKE = [
    (GOOD.format(r="48 / 2 = 24, 48 + 24 = 72", a="72"), "72"),                 # correct, strict
    (GOOD.format(r="12 * 50 / 60 = 10", a="10"), "10"),                          # correct, strict
    (GOOD.format(r="a guess", a="7"), "5"),                                      # wrong, strict
    ("<reasoning>rushed</reasoning> <answer>3</answer>", "4"),                  # wrong, soft format only
    ("The answer is 18.", "18"),                                                 # no tags: strict 0, format-free 1
]


def test_score_known_accuracy_and_format_rates():
    result = score([c for c, _ in FAKE], [a for _, a in FAKE], questions=[f"q{i}" for i in range(5)])
    assert (result.n, result.strict_accuracy, result.format_rate, result.strict_format_rate) == (5, 0.4, 0.8, 0.6)
    assert [r["correct"] for r in result.records] == [True, True, False, False, False]
    # Format-free: the last number, tags or not. The prose answer counts; a wrong number inside tags does not.
    assert [r["correct_format_free"] for r in result.records] == [True, True, False, False, True]
    assert result.format_free_accuracy == 0.6
    assert result.records[3]["formatted"] and not result.records[3]["strict_formatted"]
    assert result.mean_length == sum(len(c) for c, _ in FAKE) / 5  # characters without a tokenizer
    assert "strict accuracy=40.0%, format-free accuracy=60.0%" in repr(result)


def test_score_counts_tokens_with_a_tokenizer(smollm2):
    _, tokenizer = smollm2
    result = score([c for c, _ in FAKE], [a for _, a in FAKE], tokenizer=tokenizer)
    assert result.mean_length == sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c, _ in FAKE) / 5


def test_score_rejects_mismatched_inputs():
    with pytest.raises(CourseError, match="2 completions for 1 answers"):
        score(["a", "b"], ["1"])
    with pytest.raises(CourseError, match="no completions"):
        score([], [])


def test_evaluate_generates_once_per_row_and_scores(monkeypatch, gsm8k_test_small):
    """evaluate() with a fake model whose outputs are fixed: the accuracy is known in advance."""
    rows = list(gsm8k_test_small)[:4]
    answers = [r["answer"] for r in rows]
    outputs = [GOOD.format(r="x = 1 + 1", a=answers[0]), GOOD.format(r="x = 1 + 1", a="-1"), "no idea", GOOD.format(r="y = 2 + 2", a=answers[3])]
    seen = {}

    def fake_generate(model, tokenizer, prompts, sampling, **kwargs):
        seen.update(prompts=prompts, sampling=sampling)
        return [[o] for o in outputs[:len(prompts)]]

    monkeypatch.setattr(evaluation, "generate", fake_generate)
    result = evaluate(None, None, gsm8k_test_small, n=4, label="fake")
    assert result.strict_accuracy == 0.5 and result.format_rate == 0.75 and result.n == 4
    assert seen["prompts"] == [r["prompt"] for r in rows] and seen["sampling"].n == 1
    assert [r["answer"] for r in result.records] == answers
    with pytest.raises(CourseError, match="n=0"):
        evaluate(None, None, gsm8k_test_small, n=0)


def test_evaluate_real_model_on_held_out_rows(smollm2, gsm8k_test_small):
    import dataclasses

    model, tokenizer = smollm2
    sampling = dataclasses.replace(EVAL_SAMPLING, max_new_tokens=8)
    a = evaluate(model, tokenizer, gsm8k_test_small, n=2, sampling=sampling, progress=False)
    b = evaluate(model, tokenizer, gsm8k_test_small, n=2, sampling=sampling, progress=False)
    assert a.n == 2 and 0 < a.mean_length <= 8
    assert [r["completion"] for r in a.records] == [r["completion"] for r in b.records]  # greedy: same sampling, same text


def test_compare_table_and_chart():
    before = score(["no", "no", GOOD.format(r="r = 0 + 1", a="1"), "no"], ["1", "2", "3", "4"])
    after = score([GOOD.format(r="r = 0 + 1", a="1")] * 4, ["1", "2", "3", "4"])
    result = compare(before, after)
    rows = {m: (b, a, d) for m, b, a, d in result.rows}
    assert rows["strict_accuracy"] == (0.0, 0.25, 0.25) and rows["format_rate"] == (0.25, 1.0, 0.75)
    assert rows["format_free_accuracy"] == (0.0, 0.25, 0.25)  # the same answers, read without the tags
    assert "| format rate | 25.0% | 100.0% | +75.0% |" in result.table
    assert "| format-free accuracy | 0.0% | 25.0% | +25.0% |" in result.table
    assert len(result.figure.axes[0].patches) == 8  # 4 rate metrics x before/after
    assert result._repr_markdown_() == result.table
    with pytest.raises(CourseError, match="same rows"):
        compare(before, score(["x"], ["1"]))
