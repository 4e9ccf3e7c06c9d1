"""The seed recipe's five reward functions, kept exactly as published, so notebook 04 can show their bugs live.

Do not train with these: use :mod:`grpo_helpers.rewards`. Each bug below is pinned by a test in
``tests/test_seed_rewards.py`` that shows the wrong value the original gives.

Documented bugs:

1. ``soft_format_reward_func`` and ``strict_format_reward_func`` use ``.*?`` without ``re.DOTALL``: any multi-line
   reasoning scores 0.0, while one-line spam scores 0.5. The strict one also demands a final ``"\\n"`` after
   ``</answer>`` (a completion that ends with the EOS token right after ``</answer>`` gets 0.0).
2. ``int_reward_func`` uses ``str.isdigit()``: ``-3``, ``2.5`` and ``1,000`` get 0.0.
3. ``correctness_reward_func`` compares raw strings: ``1,000`` vs ``1000``, ``$18`` vs ``18``, ``18.0`` vs ``18``,
   ``18.`` vs ``18`` all get 0.0.
4. ``extract_xml_answer`` returns the whole completion when there is no ``<answer>`` tag and the *last* answer when
   there are several: a bare number with no format gets full correctness, hedging with many answers pays.
5. ``count_xml`` only counts tags: an empty template gets the full 0.5, tags in the wrong order still earn credit,
   and its 0.001-per-character penalty for text after ``</answer>`` has no floor (1000 characters: -1.5). A
   completion that ends right at ``</answer>`` (EOS, no final newline) loses 0.001 per character of the *whole* text.
6. Every function reads ``completion[0]["content"]``: plain-string completions (TRL's text prompts, used with a
   prefill in tiny mode) raise ``TypeError``; ``correctness_reward_func`` also reads ``prompts[0][-1]["content"]``.
7. Not a wrong score, but noise: ``correctness_reward_func`` prints the question, reference, first response and its
   extracted answer on every call (notebook 04 shows it once, then sets ``PRINT_SAMPLES = False``; the seed has no switch).

Example:
    >>> soft_format_reward_func([[{"role": "assistant", "content": "<reasoning>\\na\\n</reasoning>\\n<answer>\\n7\\n</answer>"}]])
    [0.0]
"""

from __future__ import annotations

import re

PRINT_SAMPLES = True  # the seed prints question/answer/response on every correctness call


# LLM生成答案与标准答案一致则进行奖励
def correctness_reward_func(prompts, completions, answer, **kwargs) -> list[float]:
    responses = [completion[0]['content'] for completion in completions]
    q = prompts[0][-1]['content']
    extracted_responses = [extract_xml_answer(r) for r in responses]
    if PRINT_SAMPLES:
        print('-' * 20, f"Question:\n{q}", f"\nAnswer:\n{answer[0]}", f"\nResponse:\n{responses[0]}",
              f"\nExtracted:\n{extracted_responses[0]}")
    return [2.0 if r == a else 0.0 for r, a in zip(extracted_responses, answer)]


# LLM生成答案为数字则进行奖励
def int_reward_func(completions, **kwargs) -> list[float]:
    responses = [completion[0]['content'] for completion in completions]
    extracted_responses = [extract_xml_answer(r) for r in responses]
    return [0.5 if r.isdigit() else 0.0 for r in extracted_responses]


# LLM生成结果符合system prompt的格式要求则进行奖励（严格版本）
def strict_format_reward_func(completions, **kwargs) -> list[float]:
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$"
    responses = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, r) for r in responses]
    return [0.5 if match else 0.0 for match in matches]


# LLM生成结果符合system prompt的格式要求则进行奖励（宽松版本）
def soft_format_reward_func(completions, **kwargs) -> list[float]:
    """Reward function that checks if the completion has a specific format."""
    pattern = r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>"
    responses = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, r) for r in responses]
    return [0.5 if match else 0.0 for match in matches]


# 按标签给分，并且 </answer> 之后的内容越短，奖励越高
def xmlcount_reward_func(completions, **kwargs) -> list[float]:
    contents = [completion[0]["content"] for completion in completions]
    return [count_xml(c) for c in contents]


def count_xml(text) -> float:
    count = 0.0
    if text.count("<reasoning>\n") == 1:
        count += 0.125
    if text.count("\n</reasoning>\n") == 1:
        count += 0.125
    if text.count("\n<answer>\n") == 1:
        count += 0.125
        count -= len(text.split("\n</answer>\n")[-1]) * 0.001
    if text.count("\n</answer>") == 1:
        count += 0.125
        count -= (len(text.split("\n</answer>")[-1]) - 1) * 0.001
    return count


def extract_xml_answer(text: str) -> str:
    answer = text.split("<answer>")[-1]
    answer = answer.split("</answer>")[0]
    return answer.strip()


# The seed's list, in the seed's order (same order as rewards.REWARD_FUNCS).
SEED_REWARD_FUNCS = [xmlcount_reward_func, soft_format_reward_func, strict_format_reward_func, int_reward_func,
                     correctness_reward_func]


def as_messages(texts: list[str]) -> list[list[dict]]:
    """Wrap plain strings as TRL conversational completions, the only shape the seed's functions accept.

    Example:
        >>> as_messages(["7"])
        [[{'role': 'assistant', 'content': '7'}]]
    """
    return [[{"role": "assistant", "content": t}] for t in texts]


def score_seed(texts: list[str], answer: list[str] | str, question: str = "?") -> dict[str, list[float]]:
    """Every seed reward's scores for plain-text completions (wrapped as messages), keyed by the fixed reward's name.

    Example:
        >>> score_seed(["<answer>1,000</answer>"], "1000")["correctness_reward"]
        [0.0]
    """
    answers = [answer] * len(texts) if isinstance(answer, str) else list(answer)
    completions = as_messages(texts)
    prompts = [[{"role": "user", "content": question}]] * len(texts)
    names = ["xmlcount_reward", "soft_format_reward", "strict_format_reward", "int_reward", "correctness_reward"]
    global PRINT_SAMPLES
    printing, PRINT_SAMPLES = PRINT_SAMPLES, False  # a table of scores, not a screen of prints
    try:
        return {name: f(prompts=prompts, completions=completions, answer=answers)
                for name, f in zip(names, SEED_REWARD_FUNCS)}
    finally:
        PRINT_SAMPLES = printing
