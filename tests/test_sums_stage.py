"""sums_stage: the second demo stage's measurements on fixed records (no model, no training)."""

from __future__ import annotations

import doctest

import pytest

from grpo_helpers import sums_stage
from grpo_helpers.errors import CourseError
from grpo_helpers.evaluation import score
from grpo_helpers.sums_stage import GroupSignal, hack_checks, one_line, side_by_side, training_signal

Q = "Mia has 2 cups. She gets 4 more cups. How many cups does she have now?"


def completion(reasoning: str, answer: str) -> str:
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"


def test_hack_checks_count_copies_and_the_example_answer():
    records = [{"question": Q, "answer": "6", "completion": completion("Mia has 2 cups.", "2")},
               {"question": Q, "answer": "6", "completion": completion("She gets 4 more.", "4")},
               {"question": Q, "answer": "6", "completion": completion("3 + 4 = 7", "7")},
               {"question": Q, "answer": "6", "completion": completion("2 + 4 = 6", "6")}]
    checks = hack_checks(records)
    assert checks["n"] == 4 and checks["copied_count"] == 2 and checks["copied_question_number"] == 0.5
    assert checks["example_count"] == 1 and checks["example_answer"] == 0.25 and checks["example"] == "7"


def test_the_example_answer_is_no_hack_where_it_is_the_sum():
    q = "Ben has 3 pens. He gets 4 more pens. How many pens does he have now?"
    assert hack_checks([{"question": q, "answer": "7", "completion": "<answer>7</answer>"}])["example_answer"] == 0.0


def test_hack_checks_refuse_no_records():
    with pytest.raises(CourseError, match="No records"):
        hack_checks([])


def test_group_signal_counts_mixed_groups():
    signal = GroupSignal(right=(0, 3, 8, 1), group_size=8)
    assert (signal.mixed, signal.all_wrong, signal.all_right) == (2, 1, 1)
    assert "2 of 4 groups mixed" in repr(signal)


def test_training_signal_reads_the_reward_std():
    assert training_signal([{"rewards/correctness_reward/std": 0.0}, {}, {"rewards/correctness_reward/std": 0.9}]) \
        == [False, False, True]


def test_one_line_and_side_by_side():
    assert one_line("no tags at all") == "no tags at all"
    assert one_line(completion("x" * 200, "5"), limit=20).endswith("… -> 5")
    before = score([completion("Mia has 2 cups.", "2")], ["6"], [Q])
    after = score([completion("2 + 4 = 6", "6")], ["6"], [Q])
    table = side_by_side(before, after).splitlines()
    assert len(table) == 3 and "(wrong)" in table[2] and table[2].endswith("2 + 4 = 6 -> 6 (right) |")


def test_plot_sums_stage_marks_tied_steps():
    rows = [{"step": i, "rewards/correctness_reward/mean": 1.0, "rewards/correctness_reward/std": float(i % 2)}
            for i in range(1, 7)]
    acc = {"strict_accuracy": 0.2, "format_free_accuracy": 0.3}
    fig = sums_stage.plot_sums_stage(rows, {"held-out": acc, "harder": acc}, {"held-out": acc, "harder": acc},
                                     title="t")
    left = fig.axes[0]
    assert len(left.lines) == 3 and len(left.lines[2].get_xdata()) == 3  # steps 2, 4, 6 tied


def test_sums_stage_doctests():
    failures, tried = doctest.testmod(sums_stage)
    assert tried >= 10 and failures == 0


@pytest.mark.parametrize("value", [..., None, "", "wide", 0, -1.5, float("nan"), 10**30, [], {}, [None], (1, "2"),
                                   object(), lambda: 1, (True, 50), (9, 1), (1, 9), (1, 5), (1, 10**9), (1, 2, 3)])
def test_difficulty_verdict_answers_anything(value):
    assert isinstance(sums_stage.difficulty_verdict(value, signal=value, baseline=value), str)
    assert sums_stage.difficulty_verdict(value) != ""


def test_difficulty_verdict_passes_a_harder_range_with_its_signal():
    signal = GroupSignal(right=(0, 1), group_size=8)
    assert sums_stage.difficulty_verdict((1, 50), signal, GroupSignal(right=(3, 4), group_size=8)) == ""
    assert "same number of groups" in sums_stage.difficulty_verdict((1, 50), signal, GroupSignal((1,), 8))
