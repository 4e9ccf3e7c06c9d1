"""The word-sum task: rows shaped like GSM8K's, split by number pairs, never a held-out pair in training."""

from __future__ import annotations

import doctest

import pytest

from grpo_helpers import word_sums
from grpo_helpers.data import TINY_SYSTEM_PROMPT, load_gsm8k
from grpo_helpers.errors import CourseError
from grpo_helpers.rewards import correctness_reward
from grpo_helpers.word_sums import (EXAMPLE_PAIR, load_word_sums, question_numbers, split_of, split_pairs)


def pairs_in(ds) -> set[tuple[int, int]]:
    return {question_numbers(q) for q in ds["question"]}


def test_no_held_out_pair_appears_in_training_whatever_the_seed_and_size():
    held_out = set(split_pairs()[1])
    for seed in (0, 1, 3407):
        train = load_word_sums("train", n=500, seed=seed)
        assert pairs_in(train).isdisjoint(held_out)
        assert pairs_in(train) == set(split_pairs()[0])  # 500 rows cycle through all 61 training pairs
    test = load_word_sums("test", n=60)
    assert pairs_in(test) == held_out and len(held_out) == word_sums.HELD_OUT


def test_the_harder_split_is_a_range_training_never_shows():
    harder = pairs_in(load_word_sums("harder", n=189))
    assert min(a for a, _ in harder) == 10 and max(a for a, _ in harder) == 30
    assert all(a >= 10 for a, _ in harder) and harder.isdisjoint(set(word_sums.all_pairs()))


def test_the_system_prompt_example_stays_in_training():
    assert "3 + 4 = 7" in TINY_SYSTEM_PROMPT and EXAMPLE_PAIR in split_pairs()[0]
    for held in (5, 20, 40):
        assert EXAMPLE_PAIR not in split_pairs(held_out=held)[1]


def test_rows_have_gsm8k_shape_and_the_reward_scores_them():
    sums = load_word_sums("train", n=4, system_prompt=TINY_SYSTEM_PROMPT, prefill="<reasoning>\n")
    gsm = load_gsm8k("test", n=4, source="offline", system_prompt=TINY_SYSTEM_PROMPT, prefill="<reasoning>\n")
    assert sorted(sums.column_names) == sorted(gsm.column_names)
    assert [m["role"] for m in sums[0]["prompt"]] == [m["role"] for m in gsm[0]["prompt"]]
    a, b = question_numbers(sums[0]["question"])
    right = f"{a} + {b} = {a + b}\n</reasoning>\n<answer>\n{a + b}\n</answer>"
    wrong = f"{a}\n</reasoning>\n<answer>\n{a}\n</answer>"
    assert correctness_reward(completions=[right, wrong], answer=[sums[0]["answer"]] * 2,
                              prefill=["<reasoning>\n"] * 2) == [2.0, 0.0]


def test_the_same_seed_gives_the_same_rows_and_another_seed_other_words():
    assert load_word_sums("train", n=20, seed=5)["question"] == load_word_sums("train", n=20, seed=5)["question"]
    assert load_word_sums("train", n=20, seed=5)["question"] != load_word_sums("train", n=20, seed=6)["question"]


def test_difficulty_is_one_argument():
    wide = load_word_sums("train", n=50, numbers=(10, 99))
    assert all(10 <= x <= 99 for q in wide["question"] for x in question_numbers(q))
    train, test = split_pairs(numbers=(10, 99), held_out=500)
    assert len(train) + len(test) == 90 * 90 and set(train).isdisjoint(test)


def test_bad_input_says_how_to_fix():
    with pytest.raises(CourseError, match="no split 'dev'"):
        split_of("dev")
    with pytest.raises(CourseError, match="held_out=81"):
        split_pairs(held_out=81)
    with pytest.raises(CourseError, match="not a range"):
        load_word_sums(numbers=(9, 1))
    with pytest.raises(CourseError, match="two numbers"):
        question_numbers("How many?")
    with pytest.raises(CourseError, match="n=0"):
        load_word_sums(n=0)
    with pytest.raises(CourseError, match="No pronoun"):
        word_sums.word_sum(1, 2, name="Tom")


def test_word_sums_doctests():
    failures, tried = doctest.testmod(word_sums)
    assert tried >= 10 and failures == 0
