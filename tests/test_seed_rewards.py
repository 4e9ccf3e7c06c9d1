"""Pins each documented bug of the seed's reward functions: every test shows the wrong value the original gives.

If one of these fails, grpo_helpers.seed_rewards no longer matches the seed, and notebook 04's demos are wrong.
"""

import pytest

from grpo_helpers import rewards as R
from grpo_helpers import seed_rewards as S

MULTILINE = "<reasoning>\nTom has 3 apples.\nHe buys 4: 3 + 4 = 7.\n</reasoning>\n<answer>\n7\n</answer>\n"
ONE_LINE = "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n"


def msgs(*texts):
    return S.as_messages(list(texts))


def answer_block(ans):
    return f"<reasoning>\nwork\n</reasoning>\n<answer>\n{ans}\n</answer>\n"


def correctness(ans, ref):
    S.PRINT_SAMPLES = False
    try:
        return S.correctness_reward_func([[{"role": "user", "content": "q"}]], msgs(answer_block(ans)), [ref])[0]
    finally:
        S.PRINT_SAMPLES = True


def test_bug1_soft_format_fails_on_multiline_reasoning():
    assert S.soft_format_reward_func(msgs(MULTILINE)) == [0.0]  # should be 0.5: no re.DOTALL
    assert S.soft_format_reward_func(msgs(ONE_LINE)) == [0.0]  # even one line: "<reasoning>\n" needs a newline match
    assert S.soft_format_reward_func(msgs("<reasoning>x</reasoning><answer>7</answer>")) == [0.5]
    assert R.soft_format_reward(completions=[MULTILINE, ONE_LINE]) == [0.5, 0.5]


def test_bug1_strict_format_fails_on_multiline_and_without_a_final_newline():
    assert S.strict_format_reward_func(msgs(ONE_LINE)) == [0.5]
    assert S.strict_format_reward_func(msgs(MULTILINE)) == [0.0]  # should be 0.5
    assert S.strict_format_reward_func(msgs(ONE_LINE.rstrip("\n"))) == [0.0]  # EOS right after </answer>
    assert R.strict_format_reward(completions=[MULTILINE, ONE_LINE.rstrip("\n")]) == [0.5, 0.5]


@pytest.mark.parametrize("number", ["-3", "2.5", "1,000", "$18", " 18 %"])
def test_bug2_int_reward_isdigit_rejects_real_numbers(number):
    assert S.int_reward_func(msgs(answer_block(number))) == [0.0]  # should be 0.5
    assert R.int_reward(completions=[answer_block(number)]) == [0.5]


@pytest.mark.parametrize("pred, ref", [("1,000", "1000"), ("$18", "18"), ("18.0", "18"), ("18.", "18"),
                                       ("18 dollars", "18"), ("\\boxed{18}", "18"), ("0.5", "1/2")])
def test_bug3_correctness_compares_raw_strings(pred, ref):
    assert correctness(pred, ref) == 0.0  # should be 2.0
    assert R.correctness_reward(completions=[answer_block(pred)], answer=[ref]) == [2.0]


def test_bug4_extraction_rewards_bare_numbers_and_hedging():
    assert S.extract_xml_answer("7") == "7"  # no tags: the whole text is "the answer"
    assert S.extract_xml_answer("<answer>5</answer><answer>7</answer>") == "7"  # the last of many
    assert S.score_seed(["7"], "7")["correctness_reward"] == [2.0]  # should be 0: no format at all
    hedge = "<reasoning>\n?\n</reasoning>\n<answer>\n5\n</answer>\n<answer>\n6\n</answer>\n<answer>\n7\n</answer>\n"
    assert S.score_seed([hedge], "7")["correctness_reward"] == [2.0]  # should be 0: three answers
    assert R.correctness_reward(completions=["7", hedge], answer="7") == [0.0, 0.0]


def test_bug5_count_xml_pays_empty_templates_scrambled_tags_and_goes_negative():
    assert S.count_xml("<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n") == 0.5  # full marks for no content
    assert S.count_xml("</answer>\n<answer>\n</reasoning>\n<reasoning>\n7") == pytest.approx(0.33)  # wrong order
    assert S.count_xml(ONE_LINE + "x" * 1000) == pytest.approx(-1.5)  # no floor: below -1
    assert S.count_xml(ONE_LINE.rstrip("\n")) == pytest.approx(0.5 - 0.0 + 0.001 - 0.001 * len(ONE_LINE.rstrip("\n")))
    fixed = R.xmlcount_reward(completions=["<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n", ONE_LINE + "x" * 1000])
    assert fixed == [0.25, 0.375]


def test_bug6_plain_string_completions_and_text_prompts_crash():
    with pytest.raises(TypeError):
        S.xmlcount_reward_func([ONE_LINE])  # "<"["content"]
    with pytest.raises(TypeError):
        S.correctness_reward_func(["<|user|>How many?<|assistant|><reasoning>\n"], msgs(ONE_LINE), ["7"])
    assert R.xmlcount_reward(completions=[ONE_LINE]) == [0.5]


def test_bug7_correctness_prints_every_call(capsys):
    S.correctness_reward_func([[{"role": "user", "content": "How many?"}]], msgs(ONE_LINE), ["7"])
    assert "Question:\nHow many?" in capsys.readouterr().out
    S.score_seed([ONE_LINE], "7")
    assert capsys.readouterr().out == ""


def test_seed_and_fixed_agree_where_the_seed_is_right():
    # One-line, well formed, integer answer: the seed's happy path. Only soft_format differs (bug 1).
    seed = S.score_seed([ONE_LINE], "7")
    fixed = R.score_completions([ONE_LINE], "7")
    assert {k: v for k, v in seed.items() if k != "soft_format_reward"} == \
           {k: v for k, v in fixed.items() if k != "soft_format_reward"}
    assert [f.__name__.replace("_func", "") for f in S.SEED_REWARD_FUNCS] == R.REWARD_NAMES
