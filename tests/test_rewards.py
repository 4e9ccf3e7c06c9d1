"""The fixed rewards on hand-written cases, the reward check, the advantage formula and the reward-hacking examples."""

import math

import pytest

from grpo_helpers import rewards as R
from grpo_helpers import seed_rewards as S
from grpo_helpers.errors import CourseError

GOOD = "<reasoning>\nTom has 3 apples.\nHe buys 4 more: 3 + 4 = 7.\n</reasoning>\n<answer>\n7\n</answer>\n"
PREFILL = "<reasoning>\n"


def chat(text):
    return [{"role": "assistant", "content": text}]


def answer_block(ans):
    return f"<reasoning>\nSome careful steps here.\n</reasoning>\n<answer>\n{ans}\n</answer>\n"


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize("text, value", [
    ("18", 18.0), ("-3", -3.0), ("2.5", 2.5), ("1,000", 1000.0), ("1,234,567.89", 1234567.89), ("$18", 18.0),
    ("\\$18", 18.0), ("18%", 18.0), ("18 dollars", 18.0), ("18.", 18.0), ("18.0", 18.0), ("$1,000.00.", 1000.0),
    ("1/2", 0.5), ("1 1/2", 1.5), ("-1/4", -0.25), (".5", 0.5), ("\\boxed{18}", 18.0), ("\\boxed{\\frac{1}{2}}", 0.5),
    ("\\dfrac{3}{4}", 0.75), ("x = 18", 18.0), ("5 * 3 = 15", 15.0), ("The answer is 18.", 18.0),
    ("\u22123", -3.0), ("18 \\text{ apples}", 18.0), ("1e3", 1000.0), ("\\sqrt{16}", 4.0), ("2^{10}", 1024.0),
    ("$3 \\times 4$", 12.0), ("1{,}000", 1000.0),
])
def test_parse_number_formats(text, value):
    assert R.parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", None, "eighteen", "16 or 18", "1, 2, 3", "18 apples and 2 oranges", "1/0",
                                  "9" * 400, "\\sqrt{-1}", "\\{16, 18\\}", "-"])
def test_parse_number_rejects_non_numbers_and_hedges(text):
    assert R.parse_number(text) is None


@pytest.mark.parametrize("pred, ref, same", [
    ("1,000", "1000", True), ("$18", "18", True), ("18.0", "18", True), ("18.", "18", True), ("-3", "-3", True),
    ("0.5", "1/2", True), ("\\boxed{7}", "7", True), ("18%", "18", True), ("17", "18", False), ("-18", "18", False),
    ("16 or 18", "18", False), (None, "18", False), ("18", None, False), ("Paris.", "paris", True),
])
def test_answers_match(pred, ref, same):
    assert R.answers_match(pred, ref) is same


def test_extract_answer_needs_exactly_one_block():
    assert R.extract_answer(GOOD) == "7"
    assert R.extract_answer("7") is None  # the seed returned the whole text
    assert R.extract_answer("<answer>6</answer><answer>7</answer>") is None  # the seed returned the last
    assert R.extract_answer("</answer>7<answer>") is None
    assert R.extract_answer("<answer>\n7") is None  # unclosed: truncated at max tokens


# ---------------------------------------------------------------- the five rewards


@pytest.mark.parametrize("ans, ref", [
    ("72", "72"), ("-3", "-3"), ("5.5", "5.5"), ("1,080", "1080"), ("$1,080", "1080"), ("1080.00", "1080"),
    ("$18.", "18"), ("18 dollars", "18"), ("\\boxed{18}", "18"), ("0.25", "1/4"), ("-12.50", "-12.5"), ("75%", "75"),
])
def test_correctness_gsm8k_style_numbers(ans, ref):
    assert R.correctness_reward(completions=[chat(answer_block(ans))], answer=[ref]) == [2.0]
    assert R.int_reward(completions=[answer_block(ans)]) == [0.5]


@pytest.mark.parametrize("ans, ref", [("71", "72"), ("-3", "3"), ("5.4", "5.5"), ("1,008", "1080"), ("", "18"),
                                      ("16 or 18", "18")])
def test_correctness_rejects_wrong_answers(ans, ref):
    assert R.correctness_reward(completions=[answer_block(ans)], answer=[ref]) == [0.0]


def test_every_reward_on_a_well_formed_completion_chat_and_plain():
    for completions in ([chat(GOOD)], [GOOD]):
        assert [f(None, completions, ["7"])[0] for f in R.REWARD_FUNCS] == [0.5, 0.5, 0.5, 0.5, 2.0]


def test_prefill_is_prepended_so_rewards_agree_with_and_without_it():
    tail = GOOD[len(PREFILL):]
    for f in R.REWARD_FUNCS:
        with_prefill = f(prompts=["p"], completions=[tail, chat(tail)], answer=["7", "7"], prefill=[PREFILL, PREFILL])
        assert with_prefill == f(prompts=["p"], completions=[GOOD, chat(GOOD)], answer=["7", "7"]), f.__name__
    assert R.strict_format_reward(completions=[tail]) == [0.0]  # the missing prefill matters
    assert R.completion_texts(["a"], prefill=None) == ["a"] and R.completion_texts(["a"], prefill="<r>") == ["<r>a"]


def test_soft_format_accepts_multiline_and_any_whitespace():
    assert R.soft_format_reward(completions=["<reasoning>line one\nline two</reasoning>  <answer>7</answer>  "]) == [0.5]
    assert R.soft_format_reward(completions=["  <reasoning>\nfine work\n</reasoning>\n\n<answer> 7 </answer>"]) == [0.5]
    assert R.soft_format_reward(completions=["<reasoning>\nfine work\n</reasoning>\n<answer>7</answer> and more"]) == [0.0]
    assert R.soft_format_reward(completions=["<reasoning></reasoning><answer>7</answer>"]) == [0.0]


def test_strict_format_wants_the_system_prompt_layout():
    assert R.strict_format_reward(completions=[GOOD.rstrip("\n")]) == [0.5]  # EOS right after </answer> is fine
    assert R.strict_format_reward(completions=[GOOD + "\n\n"]) == [0.5]
    assert R.strict_format_reward(completions=["<reasoning>fine work</reasoning>\n<answer>\n7\n</answer>"]) == [0.0]
    assert R.strict_format_reward(completions=["Hi!\n" + GOOD]) == [0.0]
    assert R.strict_format_reward(completions=[GOOD + "PS: more"]) == [0.0]


def test_int_reward_accepts_every_number_format_and_nothing_else():
    numbers = ["7", "-3", "2.5", "1,000", "$18", "18%", "1/2"]
    assert R.int_reward(completions=[answer_block(n) for n in numbers]) == [0.5] * len(numbers)
    assert R.int_reward(completions=[answer_block("seven"), "7", answer_block("6 or 7")]) == [0.0, 0.0, 0.0]


def test_xmlcount_is_graded_tag_by_tag():
    steps = ["<reasoning>\n", "<reasoning>\nstep one\n</reasoning>\n", "<reasoning>\nstep one\n</reasoning>\n<answer>\n",
             "<reasoning>\nstep one\n</reasoning>\n<answer>\n7\n</answer>\n"]
    assert R.xmlcount_reward(completions=steps) == [0.125, 0.25, 0.375, 0.5]
    assert R.xmlcount_reward(completions=["no tags at all", ""]) == [0.0, 0.0]
    partial = ["<reasoning>\nstep one\n<answer>\n7\n</answer>",  # forgot </reasoning>: 2 well-placed tags
               "<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n",  # empty template: the two openers only
               "Sure! <reasoning>\nstep one\n</reasoning>\n<answer>\n7\n</answer>"]  # text before <reasoning>
    assert R.xmlcount_reward(completions=partial) == [0.25, 0.25, 0.375]


def test_xmlcount_cannot_be_gamed_by_spam_repeats_or_tails():
    spam = "<reasoning>\nstep one\n</reasoning>\n<answer>\n7\n</answer>\n" * 5
    assert R.xmlcount_reward(completions=[spam]) == [0.0]  # repeated <reasoning>: no credit at all
    repeated_answer = "<reasoning>\nstep one\n</reasoning>\n<answer>\n7\n</answer>\n</answer>\n</answer>"
    assert R.xmlcount_reward(completions=[repeated_answer]) == [0.375]
    tail = R.xmlcount_reward(completions=[GOOD + "x" * 50, GOOD + "x" * 10_000])
    assert tail == [pytest.approx(0.45), 0.375]  # the penalty is floored: never below the 3 earlier tags
    assert R.xmlcount_reward(completions=["</answer>\n<answer>\n</reasoning>\n<reasoning>\n"]) == [0.0]


def test_rewards_stay_in_their_documented_ranges_on_examples():
    texts = [GOOD, "", "7", *(h.completion for h in R.HACKS), GOOD + "junk" * 1000]
    for f in R.REWARD_FUNCS:
        lo, hi = R.REWARD_RANGES[f.__name__]
        assert all(lo <= v <= hi for v in f(completions=texts, answer=["7"] * len(texts))), f.__name__


def test_rewards_accept_none_content_and_odd_message_shapes():
    odd = [[{"role": "assistant", "content": None}], None, {"role": "assistant", "content": GOOD},
           [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]]
    assert R.correctness_reward(completions=odd, answer="7") == [0.0, 0.0, 2.0, 2.0]


def test_reward_input_errors_are_course_errors():
    with pytest.raises(CourseError, match="needs the reference answers"):
        R.correctness_reward(completions=[GOOD])
    with pytest.raises(CourseError, match="2 answers for 1 completions"):
        R.correctness_reward(completions=[GOOD], answer=["7", "8"])
    with pytest.raises(CourseError, match="must be a list"):
        R.int_reward(completions=GOOD)
    with pytest.raises(CourseError, match="prefills"):
        R.int_reward(completions=[GOOD], prefill=["a", "b"])


def test_tiny_model_correctness_stays_zero_on_typical_smollm2_output():
    # What SmolLM2-135M writes after the prefill: format attempts, no right answer. Correctness must say 0.
    typical = ["To find the total, we add the numbers.\n</reasoning>\n<answer>\nThe answer is 12 apples and 3 pears\n</answer>",
               "Let's think step by step. Natalia sold clips to 48 of her friends"]
    assert R.correctness_reward(completions=typical, answer=["72", "72"], prefill=[PREFILL] * 2) == [0.0, 0.0]


# ---------------------------------------------------------------- totals and advantages


def test_weighted_total_follows_trl_nansum():
    scores = {"xmlcount_reward": 0.5, "correctness_reward": 2.0, "int_reward": None}
    assert R.weighted_total(scores) == 2.5
    assert R.weighted_total(scores, {"xmlcount_reward": 2.0, "correctness_reward": 0.5}) == 2.0
    assert math.isnan(R.weighted_total({"a": None}))
    assert R.MAX_TOTAL == 4.0 and list(R.SEED_WEIGHTS) == R.REWARD_NAMES


def trl_advantages(rewards, num_generations, scale_rewards):
    """TRL 1.14 GRPOTrainer._generate_and_score_completions, sum_then_normalize branch, copied line for line."""
    import torch
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([float("nan") if r is None else r for r in rewards], dtype=torch.float32)
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        if num_generations > 1:
            std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
            std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
        else:
            std_rewards = torch.zeros_like(rewards)
    else:
        std_rewards = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0).tolist()


@pytest.mark.parametrize("scale_rewards", R.SCALE_REWARDS)
@pytest.mark.parametrize("rewards, g", [
    ([0.125, 0.5, 2.625, 0.25, 4.0, 0.0, 0.0, 0.375], 4),
    ([1.0, 1.0, 1.0, 1.0, 0.0, 3.5, 0.5, 0.5], 4),  # a zero-std group: advantages 0
    ([0.0, 2.0, None, 1.0, None, None], 3),  # None (not applicable) and an all-None row
    ([3.0, 1.0, 2.0], 1),  # num_generations 1: zero std
    ([0.3, 0.9, 0.1, 0.7, 0.2, 0.4, 0.8, 0.6], 2),
])
def test_group_advantages_equal_trl(rewards, g, scale_rewards):
    ours = R.group_advantages(rewards, g, scale_rewards)
    assert ours == pytest.approx(trl_advantages(rewards, g, scale_rewards), rel=1e-5, abs=1e-5)


def test_trl_source_still_has_the_formula_we_copy():
    import inspect

    from trl import GRPOTrainer

    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for line in ["advantages = rewards - mean_grouped_rewards", "advantages = advantages / (std_rewards + 1e-4)",
                 "std_rewards = nanstd(rewards).expand_as(rewards)",
                 "std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)"]:
        assert line in src


def test_group_advantages_errors():
    with pytest.raises(CourseError, match="scale_rewards"):
        R.group_advantages([1.0, 2.0], 2, "std")
    with pytest.raises(CourseError, match="groups of num_generations=2"):
        R.group_advantages([1.0, 2.0, 3.0], 2)


# ---------------------------------------------------------------- validate_reward_funcs


def test_validate_accepts_the_course_rewards_in_both_shapes():
    R.validate_reward_funcs(R.REWARD_FUNCS)
    R.validate_reward_funcs(R.REWARD_FUNCS, R.make_sample_batch(conversational=False, prefill=PREFILL))
    R.validate_reward_funcs([lambda completions, **kw: [None] * len(completions)])  # None = not applicable
    R.validate_reward_funcs(["some/reward-model-id"])  # reward models are TRL's job


def too_few(completions, **kwargs):
    return [1.0]


def no_kwargs(prompts, completions):
    return [0.0] * len(completions)


def needs_column(completions, solution, **kwargs):
    return [0.0] * len(completions)


def returns_strings(completions, **kwargs):
    return ["1.0"] * len(completions)


def returns_float(completions, **kwargs):
    return 1.0


def chat_only(completions, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]


@pytest.mark.parametrize("func, message", [
    (too_few, "'too_few' returned 1 values for 2 completions"),
    (no_kwargs, "'no_kwargs' has no \\*\\*kwargs"),
    (needs_column, "'needs_column' requires the argument 'solution'"),
    (returns_strings, "'returns_strings' returned str '1.0' at position 0"),
    (returns_float, "'returns_float' returned float, not a list"),
])
def test_validate_names_the_function_and_the_problem(func, message):
    with pytest.raises(CourseError, match=message):
        R.validate_reward_funcs([R.int_reward, func])


def test_validate_catches_a_chat_only_reward_on_plain_text_and_the_seed_rewards():
    R.validate_reward_funcs(chat_only)
    plain = R.make_sample_batch(conversational=False, prefill=PREFILL)
    with pytest.raises(CourseError, match="'chat_only' raised TypeError.*plain strings"):
        R.validate_reward_funcs(chat_only, plain)
    with pytest.raises(CourseError, match="'xmlcount_reward_func' raised TypeError"):
        R.validate_reward_funcs(S.SEED_REWARD_FUNCS, plain)


def test_validate_passes_trl_kwargs():
    seen = {}

    def spy(prompts, completions, completion_ids, trainer_state, log_extra, log_metric, answer, prefill, **kw):
        seen.update(n=len(completions), step=trainer_state.global_step, prefill=prefill)
        return [0.0] * len(completions)

    R.validate_reward_funcs([spy], R.make_sample_batch(conversational=False, prefill=PREFILL))
    assert seen == {"n": 2, "step": 0, "prefill": [PREFILL, PREFILL]}


# ---------------------------------------------------------------- reward hacking


def totals(texts, answer, seed=False):
    table = S.score_seed(texts, answer) if seed else R.score_completions(texts, answer)
    return [sum(col[i] for col in table.values()) for i in range(len(texts))]


@pytest.mark.parametrize("hack", R.HACKS, ids=lambda h: h.name)
def test_fixed_rewards_resist_each_hack(hack):
    seed_hack, = totals([hack.completion], hack.answer, seed=True)
    fixed_hack, fixed_wrong, fixed_right = totals([hack.completion, R.HONEST_WRONG.completion,
                                                   R.HONEST_RIGHT.completion], hack.answer)
    assert seed_hack > fixed_hack  # the seed pays the hack more than the fixed rewards do
    assert fixed_hack < fixed_wrong < fixed_right  # honest work, even wrong, beats every hack
    assert fixed_hack < 1.0  # at most tags and a number, never half of honest wrong work


def test_hacks_beat_honest_work_under_the_seed():
    seed_wrong, seed_right = totals([R.HONEST_WRONG.completion, R.HONEST_RIGHT.completion], "7", seed=True)
    by_name = {h.name: totals([h.completion], h.answer, seed=True)[0] for h in R.HACKS}
    assert seed_wrong == pytest.approx(1.0) and seed_right == pytest.approx(3.0)  # multi-line work loses the format rewards
    assert by_name["empty_template"] >= seed_wrong
    assert by_name["guess_without_reasoning"] > seed_wrong
    assert by_name["bare_number"] > seed_wrong
    assert by_name["many_answers"] > seed_wrong
    assert by_name["one_line_spam"] >= seed_right
