"""The format-free reading (issue 19): the last number of a completion, whatever the tags, as lm-eval's GSM8K
flexible-extract reads it. The same property test as for ``answers_match`` (tests/test_rewards_exact.py): every GSM8K
test reference written in prose (units, commas, ``$``, "The answer is", tags or none) is found; a completion whose last
number is another one is not accepted, even when the reference appears earlier.
"""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo_helpers import rewards as R
from tests.test_rewards_exact import REFS, near_misses


def commas(ref: str) -> str:
    value = Fraction(ref)
    return f"{int(value):,}" if value.denominator == 1 else f"{float(value):,}"


def in_prose(ref: str) -> list[str]:
    """The reference as a solver writes it at the end of a worked answer, with other numbers before it."""
    c = commas(ref)
    work = "She has 12 apples and buys 3 more, 12 + 3 = 15, then gives away 2-3 of them."
    return [
        f"{work} The answer is {ref}.", f"{work} The answer is: {c}", f"{work}\nSo she pays ${c} in all.",
        f"{work} Total: ${ref}.00.", f"{work} She ends with {c} apples.", f"{work} That is {ref} km/h!",
        f"{work}\n#### {ref}", f"{work} **{c}**", f"{work} \\boxed{{{ref}}}", f"{work} = {c}.\n",
        f"<reasoning>\n{work}\n</reasoning>\n<answer>\n{ref}\n</answer>\n",
        f"<reasoning>\n{work}\n</reasoning>\n<answer>\n${c}\n</answer><|im_end|>",
        f"{work} The final answer is {c} dollars. <answer2>", f"{work} (answer: {ref})",
        f"{work} The answer is {ref}%.", f"{work}\n\nAnswer: {c}\u00a0",
    ]


def other_last(ref: str) -> list[str]:
    """Prose that contains the reference but ends on another number: the format-free reading must reject it."""
    c = commas(ref)
    out = []
    for bad in near_misses(ref):
        out += [f"I first thought {ref}, but the answer is {bad}.", f"{c} apples? No: {bad}",
                f"<answer>\n{ref}\n</answer>\nWait, it is {bad}.", f"The answer is {ref}, or maybe {bad}."]
    return out


def test_every_gsm8k_reference_in_prose_is_found_and_another_last_number_is_not():
    found = rejected = 0
    for ref in REFS:
        for text in in_prose(ref):
            assert R.format_free_correct(text, ref), (text, ref, R.final_number(text))
            found += 1
        for text in other_last(ref):
            assert not R.format_free_correct(text, ref), (text, ref, R.final_number(text))
            rejected += 1
    print(f"\n{len(REFS)} GSM8K test references: {found} prose answers found, {rejected} other last numbers rejected")


@pytest.mark.parametrize("text, number", [
    ("It takes 2-3 hours, so 3", "3"), ("between 2-3 hours", "3"), ("5-8 = -3", "-3"), ("x = -3.", "-3"),
    ("The answer is \u22123", "-3"), ("She owes -$5.", "-5"), ("He earns $-5", "-5"),
    ("Total: 1,000.", "1,000"), ("1,000,000 people.", "1,000,000"), ("$1,234.50!", "1,234.50"),
    ("It is 18. Done.", "18"), ("18...", "18"), ("(18)", "18"), ("18%.", "18"), ("about .5 of it", ".5"),
    ("3/4 of the cake", "3/4"), ("<step2> 7 </step2>", "7"), ("<answer>7</answer><|im_end|>", "7"),
    ("12,50 and 1,0000 or 1,00", "00"), ("no digits", None), ("", None), (None, None),
])
def test_final_number_cases(text, number):
    assert R.final_number(text) == number


def test_a_range_is_not_a_negative_number():
    assert R.format_free_correct("It takes 2-3 hours.", "3")
    assert not R.format_free_correct("It takes 2-3 hours.", "-3")
    assert R.format_free_correct("3/4 of 8 is 6", "6") and not R.format_free_correct("She ate 3/4", "4")


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(n=st.integers(-10**12, 10**12), places=st.integers(0, 2), before=st.lists(st.integers(0, 10**6), max_size=4),
       unit=st.sampled_from(["", " apples", " dollars", "%", " km", "!", ".", " in all.", "\n"]),
       lead=st.sampled_from(["The answer is ", "So ", "= ", "Answer: ", "<answer>\n", "#### ", "$", ""]))
def test_any_number_last_in_prose_is_found_and_its_neighbour_is_not(n, places, before, unit, lead):
    value = Decimal(n).scaleb(-places)
    ref = f"{value:.{places}f}"
    work = " ".join(f"{b} + 1 = {b + 1}," for b in before)
    written = f"{value:,.{places}f}"
    if lead == "$" and value < 0:
        written = "-$" + written[1:]
    elif lead == "$":
        written = "$" + written
    prefix = "" if lead == "$" else lead
    assert R.format_free_correct(f"{work} {prefix}{written}{unit}", ref), (work, written, unit)
    other = f"{value + Decimal(1).scaleb(-places):,.{places}f}"
    assert not R.format_free_correct(f"{work} {ref} ... no, {prefix}{other}{unit}", ref)


@settings(max_examples=1500, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.one_of(st.text(max_size=200), st.none(),
                      st.lists(st.sampled_from(["<answer>", "-", "$", ",", ".", "1", "23", "1,000", "/", " ", "\u2212",
                                                "e5", "\\boxed{", "}", "9" * 400, "<|im_end|>"]), max_size=40).map("".join)))
def test_final_number_never_raises_and_reads_as_a_number(text):
    number = R.final_number(text)
    assert number is None or (number.strip() == number and set(number) <= set("-0123456789,./") and number[-1].isdigit())
    R.format_free_correct(text, "7")  # never raises


def test_huge_text_is_read_to_its_last_number():
    text = "step 1 + 2 = 3, " * 50_000 + "The answer is 42."
    assert R.final_number(text) == "42" and R.format_free_correct(text, "42")
