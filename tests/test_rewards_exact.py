"""Exact answer checking (issue 12): over every GSM8K test answer, near misses are wrong and rewritings are right.

The seed compared floats with a relative tolerance, so ``1,450,001`` earned full correctness for ``1450000``.
"""

import doctest
import json
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpo_helpers import rewards as R
from grpo_helpers.data import extract_hash_answer, gsm8k_jsonl


def gsm8k_test_answers() -> list[str]:
    with open(gsm8k_jsonl("test")) as f:
        return [extract_hash_answer(json.loads(line)["answer"]) for line in f]


REFS = gsm8k_test_answers()


def rewritings(ref: str) -> list[str]:
    """The same number written as a learner's model might: commas, dollars, a trailing .0, a LaTeX box."""
    value = Fraction(ref)
    commas = f"{int(value):,}" if value.denominator == 1 else f"{float(value):,}"
    return [ref, commas, f"${commas}", f"${ref}", f"{ref}.0" if "." not in ref else f"{ref}0",
            f"\\boxed{{{ref}}}", f"\\boxed{{{commas}}}", f"{commas}."]


def near_misses(ref: str) -> list[str]:
    """ref + 1, ref - 1 and ref x 10, plain and with thousands commas."""
    value = Fraction(ref)
    out = []
    for v in [value + 1, value - 1] + ([value * 10] if value != 0 else []):
        out += [str(int(v)), f"{int(v):,}"] if v.denominator == 1 else [str(float(v))]
    return out


def test_every_gsm8k_test_answer_is_checked_exactly():
    assert len(REFS) == 1319 and all(REFS)
    accepted = rejected = 0
    for ref in REFS:
        for good in rewritings(ref):
            assert R.answers_match(good, ref), (good, ref)
            accepted += 1
        for bad in near_misses(ref):
            assert not R.answers_match(bad, ref), (bad, ref)
            rejected += 1
    print(f"\n{len(REFS)} GSM8K test answers: {accepted} rewritings accepted, {rejected} near misses rejected")


def test_the_large_answer_the_issue_names():
    assert not R.answers_match("1,450,001", "1450000")  # rel_tol=1e-6 accepted it
    assert not R.answers_match("1449999", "1,450,000")
    assert R.answers_match("$1,450,000.00", "1450000")
    assert not R.answers_match("1450000.5", "1450000")  # an integer reference is met exactly
    assert R.answers_match("123456789012345678", "123456789012345678")
    assert not R.answers_match("123456789012345679", "123456789012345678")  # equal as floats


@pytest.mark.parametrize("pred, ref, same", [
    ("2.5", "2.5", True), ("2.50", "2.5", True), ("$2.50", "2.5", True), ("2.54", "2.5", True), ("2.46", "2.5", True),
    ("2.45", "2.5", True), ("2.55", "2.5", False), ("2.6", "2.5", False), ("2", "2.5", False), ("25", "2.5", False),
    ("0.333", "0.33", True), ("1/3", "0.33", True), ("0.3", "0.33", False), ("-12.50", "-12.5", True),
    ("-12.55", "-12.5", False), ("0.5", "1/2", True), ("0.50001", "1/2", False), ("\\frac{1}{2}", "0.5", True),
    ("\\sqrt{16}", "4", True), ("2^{10}", "1024", True), ("1e3", "1000", True), ("1e3", "1001", False),
    ("18.4", "18", False), ("18.00", "18", True),
])
def test_decimal_references_compare_at_their_precision(pred, ref, same):
    assert R.answers_match(pred, ref) is same


def test_correctness_reward_pays_only_the_exact_answer():
    block = "<reasoning>\nSome careful steps here.\n</reasoning>\n<answer>\n{}\n</answer>\n"
    got = R.correctness_reward(completions=[block.format("1,450,001"), block.format("$1,450,000")],
                               answer=["1450000", "1450000"])
    assert got == [0.0, 2.0]


def test_rewards_doctests():
    failures, tried = doctest.testmod(R)
    assert tried > 10 and failures == 0


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(n=st.integers(-10**15, 10**15), places=st.integers(0, 3))
def test_any_number_matches_itself_written_otherwise_and_not_its_neighbour(n, places):
    value = Decimal(n).scaleb(-places)  # n / 10**places, exactly
    ref = f"{value:.{places}f}"
    assert R.answers_match(f"${value:,.{places + 1}f}", ref)  # one more (zero) decimal, commas, dollars
    assert not R.answers_match(f"{value + Decimal(1).scaleb(-places):.{places}f}", ref)  # the next number
    assert not R.answers_match(f"{value * 10:.{places}f}", ref) or n == 0
