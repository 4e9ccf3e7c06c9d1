"""The five GSM8K rewards of the seed recipe, fixed, plus the tools to check, combine and compare them.

Every reward has TRL's reward-function signature ``(prompts, completions, answer, **kwargs) -> list[float]`` and
accepts conversational completions (``[[{"role": "assistant", "content": ...}]]``) or plain strings. When TRL
passes a ``prefill`` column (tiny mode prefills the assistant turn with ``"<reasoning>\\n"`` and hands rewards the
completion *without* it), each reward scores ``prefill[i] + completion``, so one reward works with and without prefill.

=====================  ==========  ====================================================================
reward                 range       pays for
=====================  ==========  ====================================================================
xmlcount_reward        0 .. 0.5    0.125 per tag present once and well placed (graded: partial credit)
soft_format_reward     {0, 0.5}    the four tags in order, any whitespace, non-empty reasoning and answer
strict_format_reward   {0, 0.5}    exactly the system prompt's layout (tags on their own lines)
int_reward             {0, 0.5}    the answer is one number (``-3``, ``2.5``, ``1,000``, ``$18`` all count)
correctness_reward     {0, 2.0}    the answer equals the reference exactly (decimals at its precision)
=====================  ==========  ====================================================================

Example:
    >>> good = "<reasoning>\\n3 + 4 = 7\\n</reasoning>\\n<answer>\\n7\\n</answer>\\n"
    >>> [f(completions=[good], answer=["7"])[0] for f in REWARD_FUNCS]
    [0.5, 0.5, 0.5, 0.5, 2.0]
    >>> correctness_reward(completions=["3 + 4 = 7\\n</reasoning>\\n<answer>$7.00</answer>"], answer=["7"],
    ...                    prefill=["<reasoning>\\n"])
    [2.0]
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import re
import threading
from fractions import Fraction
from typing import Any, Callable, Mapping, Sequence

from grpo_helpers.errors import CourseError

# ----------------------------------------------------------------------------------------------------------------
# Reading completions
# ----------------------------------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """A message's content as text: str, None, or a list of {"type": "text", "text": ...} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(_content_text(p.get("text") if isinstance(p, Mapping) else p) for p in content)
    return str(content)


def completion_text(completion: Any) -> str:
    """One completion as text: a plain string, one message dict, or a list of messages (their contents joined).

    Example:
        >>> completion_text([{"role": "assistant", "content": "hi"}]), completion_text("hi"), completion_text(None)
        ('hi', 'hi', '')
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        return "".join(_content_text(m.get("content")) if isinstance(m, Mapping) else completion_text(m)
                       for m in completion)
    return str(completion)


def completion_texts(completions: Sequence[Any], prefill: Sequence[str | None] | str | None = None) -> list[str]:
    """The text each reward scores: ``prefill[i] + completion`` (TRL hands rewards the completion without the prefill).

    Pass ``prefill`` only when the completions do not already start with it (TRL's case); a single string applies
    to every completion.

    Example:
        >>> completion_texts([[{"role": "assistant", "content": "7\\n</reasoning>"}], "x"], prefill=["<reasoning>\\n", ""])
        ['<reasoning>\\n7\\n</reasoning>', 'x']
    """
    if completions is None or isinstance(completions, (str, Mapping)):
        raise CourseError(f"completions must be a list (one entry per completion), got {type(completions).__name__}.",
                          fix='Pass a list, e.g. completions=["<reasoning>...</answer>"] or TRL\'s '
                              '[[{"role": "assistant", "content": ...}]].')
    texts = [completion_text(c) for c in completions]
    if prefill is None:
        return texts
    prefills = [prefill] * len(texts) if isinstance(prefill, str) else list(prefill)
    if len(prefills) != len(texts):
        raise CourseError(f"Got {len(prefills)} prefills for {len(texts)} completions.",
                          fix="Pass one prefill per completion (TRL repeats dataset columns per generation).")
    return [(p or "") + t for p, t in zip(prefills, texts)]


# ----------------------------------------------------------------------------------------------------------------
# Reading the answer and numbers
# ----------------------------------------------------------------------------------------------------------------

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
REASONING_OPEN, REASONING_CLOSE = "<reasoning>", "</reasoning>"
MIN_REASONING_CHARS = 5  # non-space characters a reasoning block needs; stops the empty-template hack
MATH_VERIFY_MAX_CHARS = 200  # longer "answers" are not math: skip the (slower) LaTeX parser


def extract_answer(text: str) -> str | None:
    """The stripped text inside the one ``<answer>...</answer>`` block; None when there is none, or several.

    The seed took the text after the *last* ``<answer>`` (or the whole completion when there was no tag),
    which rewards bare numbers and hedging with many answers.

    Example:
        >>> extract_answer("<reasoning>...</reasoning><answer> 18 </answer>")
        '18'
        >>> extract_answer("18") is None, extract_answer("<answer>1</answer><answer>18</answer>") is None
        (True, True)
    """
    text = text or ""
    if text.count(ANSWER_OPEN) != 1 or text.count(ANSWER_CLOSE) != 1:
        return None
    start = text.index(ANSWER_OPEN) + len(ANSWER_OPEN)
    end = text.index(ANSWER_CLOSE)
    return text[start:end].strip() if end >= start else None


_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"  # 1,000 | 18 | 18.5 | .5
_NUMBER_TOKEN = re.compile(
    rf"(?<![\w.,])(?P<neg>-\s?)?(?:"
    rf"(?P<whole>\d+)\s+(?P<mnum>\d+)\s*/\s*(?P<mden>\d+)(?![\d.])"  # mixed number 1 1/2
    rf"|(?P<num>{_NUM})\s*/\s*(?P<den>{_NUM})"  # fraction 3/4
    rf"|(?P<x>{_NUM})(?:[eE](?P<exp>[-+]?\d{{1,4}}))?)"  # plain, 1e5
)
_TEXT_COMMAND = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SIMPLE_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}")
_STRIP = str.maketrans({"$": " ", "%": " ", "€": " ", "£": " ", "\u2212": "-", "\u2013": "-", "\u00a0": " "})


def _unwrap_boxed(text: str) -> str:
    """The content of the last ``\\boxed{...}`` (or the text unchanged): matches braces, so ``\\boxed{\\frac{1}{2}}`` works."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return text
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i:j - 1] if depth == 0 else text[i:]


def _normalize(text: str) -> str:
    text = _unwrap_boxed(text.strip())
    text = text.replace("\\$", " ").replace("\\%", " ").replace("{,}", ",").replace("\\!", "").replace("\\,", "")
    text = _TEXT_COMMAND.sub(r" \1 ", text)
    text = _SIMPLE_FRAC.sub(r"\1/\2", text)
    text = text.translate(_STRIP)
    if "=" in text:  # "x = 18", "5 * 3 = 15": the right-hand side is the answer
        text = text.rsplit("=", 1)[1]
    return text.strip().rstrip(".").strip()


def _token_fraction(m: re.Match) -> Fraction | None:
    """A number token's exact value (a decimal string or fraction read without float rounding), or None."""
    sign = -1 if m.group("neg") else 1
    clean = lambda s: s.replace(",", "")  # noqa: E731
    try:
        if m.group("whole") is not None:
            den = int(m.group("mden"))
            value = Fraction(int(m.group("whole"))) + Fraction(int(m.group("mnum")), den) if den else None
        elif m.group("num") is not None:
            den = Fraction(clean(m.group("den")))
            value = Fraction(clean(m.group("num"))) / den if den else None
        else:
            value = Fraction(clean(m.group("x")) + (f"e{m.group('exp')}" if m.group("exp") else ""))
    except (ValueError, OverflowError, ZeroDivisionError):
        return None
    return None if value is None else sign * value


def _finite_float(value: Fraction | float | None) -> float | None:
    """``value`` as a finite float, or None (None, too large for a float, inf or nan)."""
    if value is None:
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _token_value(m: re.Match) -> float | None:
    return _finite_float(_token_fraction(m))


def _math_verify_value(text: str) -> Fraction | float | None:
    """Parse LaTeX (``\\sqrt{16}``, ``2^{10}``, ``3 \\times 4``) with math-verify into one real number, or None.

    Rationals come back exact (a Fraction), irrational values as floats.
    """
    if len(text) > MATH_VERIFY_MAX_CHARS:
        return None
    try:
        from math_verify import parse
        import sympy

        # math-verify's timeout uses signal.alarm, which only works in the main thread.
        timeout = 2 if threading.current_thread() is threading.main_thread() else None
        parsed = parse(f"${text}$", parsing_timeout=timeout)
        for item in parsed:
            if isinstance(item, sympy.Expr) and item.is_number:
                if item.is_Rational:
                    return Fraction(int(item.p), int(item.q))
                value = complex(sympy.N(item))
                if abs(value.imag) < 1e-12 and math.isfinite(value.real):
                    return float(value.real)
                return None
    except Exception:  # noqa: BLE001 - a reward must never crash training on a strange completion
        return None
    return None


def _math_verify_number(text: str) -> float | None:
    return _finite_float(_math_verify_value(text))


def parse_number(text: str | None) -> float | None:
    """The one number ``text`` states, or None (no number, several numbers, or not a number).

    Handles commas (``1,000``), ``$``/``%``/units (``$18``, ``18%``, ``18 dollars``), a trailing period, ``18.0``,
    ``-3``, fractions (``1/2``, ``1 1/2``, ``\\frac{1}{2}``), ``\\boxed{}`` and ``x = 18``. Other LaTeX
    (``\\sqrt{16}``, ``2^{10}``) goes to math-verify. Several numbers (``16 or 18``) give None: no hedging.

    Example:
        >>> [parse_number(s) for s in ["1,000", "$18.00.", "-3", "\\\\boxed{\\\\frac{1}{2}}", "x = 18 apples"]]
        [1000.0, 18.0, -3.0, 0.5, 18.0]
        >>> parse_number("16 or 18") is None, parse_number("") is None
        (True, True)
    """
    if not text:
        return None
    text = _normalize(text)
    if "\\" in text or "^" in text or "{" in text:
        return _math_verify_number(text)
    tokens = list(_NUMBER_TOKEN.finditer(text))
    if len(tokens) != 1:
        return None
    return _token_value(tokens[0])


def _normalize_words(text: str) -> str:
    return " ".join((text or "").casefold().split()).rstrip(".")


def exact_number(text: str | None) -> tuple[Fraction, int] | None:
    """The one number ``text`` states as an exact fraction, and how many decimal places it was written with.

    Reads the same formats as :func:`parse_number` (commas, ``$``, ``\\boxed{}``, fractions, LaTeX), but without
    float rounding, so ``1450001`` and ``1450000`` stay different. Places are 0 for integers, fractions, exponents
    and LaTeX (those compare exactly), and the digits after the point for a plain decimal (``2.50`` -> 2).

    Example:
        >>> exact_number("$1,450,000.50")
        (Fraction(2900001, 2), 2)
        >>> exact_number("\\\\boxed{18}"), exact_number("16 or 18")
        ((Fraction(18, 1), 0), None)
    """
    if not text:
        return None
    text = _normalize(text)
    if "\\" in text or "^" in text or "{" in text:
        value = _math_verify_value(text)
        if isinstance(value, float):
            value = Fraction(value)
        return None if value is None else (value, 0)
    tokens = list(_NUMBER_TOKEN.finditer(text))
    if len(tokens) != 1 or _token_value(tokens[0]) is None:  # not one number, or not a finite float either
        return None
    m = tokens[0]
    plain = m.group("x")
    places = len(plain.split(".", 1)[1]) if plain and "." in plain and not m.group("exp") else 0
    return _token_fraction(m), places


def _round_half_away(value: Fraction) -> int:
    whole = math.floor(abs(value) + Fraction(1, 2))
    return whole if value >= 0 else -whole


def answers_match(pred: str | None, ref: str | None) -> bool:
    """Whether a predicted answer equals the reference: exactly when the reference is a number, else as words.

    An integer (or fraction) reference must be met exactly: ``1,450,001`` is not ``1450000``. A decimal reference
    is met at its own precision: the prediction rounded (half away from zero) to the reference's decimal places must
    equal it, so ``0.333`` matches ``0.33`` but ``0.3`` does not. How the number is written does not matter:
    ``$1,000.``, ``1000.0`` and ``\\boxed{1000}`` all equal ``1000``.

    Example:
        >>> answers_match("$1,000.", "1000"), answers_match("18.0", "18"), answers_match("16 or 18", "18")
        (True, True, False)
        >>> answers_match("1,450,001", "1450000"), answers_match("0.333", "0.33"), answers_match("0.3", "0.33")
        (False, True, False)
    """
    if pred is None or ref is None:
        return False
    reference = exact_number(str(ref))
    if reference is None:  # a non-numeric reference (custom datasets): compare normalized words
        return bool(_normalize_words(str(ref))) and _normalize_words(pred) == _normalize_words(str(ref))
    predicted = exact_number(pred)
    if predicted is None:
        return False
    (ref_value, places), value = reference, predicted[0]
    if places == 0:
        return value == ref_value
    scale = 10 ** places
    return _round_half_away(value * scale) == ref_value * scale


# The format-free reading, as lm-eval's GSM8K "flexible-extract" filter does it: the last number in the text,
# whatever the tags. It counts what the model solved even when it never wrote <answer> (an untrained 8B model often
# solves in plain prose), so a before/after comparison can tell learning the format from learning to solve.
# Where lm-eval's regex (-?[$0-9.,]{2,})|(-?[0-9]+) misreads prose, this one does not (tests/test_rewards_format_free.py):
# a "-" right after a digit, letter or ")" is a dash, not a sign ("2-3 hours" ends on 3, not -3); "3/4" is one
# number; names of tags ("<step2>", "<|im_end|>") are not numbers; a trailing "." and "$" are not part of it.
_TAG_NAME = re.compile(r"</?[A-Za-z_|][\w|:.-]*\s*/?>")
_FINAL_NUMBER = re.compile(
    r"(?:(?P<sign>(?<![\w)])-)\$?|\$(?P<sign2>-)?)?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:/\d+(?![\d.]))?|\.\d+)")


def final_number(text: str | None) -> str | None:
    """The last number written anywhere in ``text`` (``$``, a trailing ``.`` and tag names kept out), or None.

    Commas stay (:func:`answers_match` reads them); a minus counts as a sign only where it cannot be a dash.

    Example:
        >>> final_number("She pays $1,200 in all. The answer is 1,250.")
        '1,250'
        >>> final_number("<answer>\\n-3\\n</answer>"), final_number("It takes 2-3 hours"), final_number("no digits") is None
        ('-3', '3', True)
    """
    if not text:
        return None
    text = _TAG_NAME.sub(" ", str(text).replace("\u2212", "-"))
    last = None
    for last in _FINAL_NUMBER.finditer(text):
        pass
    if last is None:
        return None
    return ("-" if last.group("sign") or last.group("sign2") else "") + last.group("num")


def format_free_correct(text: str | None, ref: str | None) -> bool:
    """Whether the last number of ``text`` equals the reference (:func:`answers_match`), tags or not.

    Example:
        >>> format_free_correct("3 + 4 = 7 apples.", "7"), format_free_correct("7 apples, then 8 more", "7")
        (True, False)
    """
    return answers_match(final_number(text), ref)


# ----------------------------------------------------------------------------------------------------------------
# Format
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Blocks:
    """The four tags, each present exactly once and in order: the text around and between them."""

    before: str
    reasoning: str
    between: str
    answer: str
    after: str


def split_blocks(text: str) -> Blocks | None:
    """Split ``text`` at its four tags when each appears exactly once, in order; else None.

    Example:
        >>> split_blocks("<reasoning>r</reasoning>\\n<answer>7</answer>").answer
        '7'
        >>> split_blocks("<answer>7</answer><reasoning>r</reasoning>") is None
        True
    """
    text = text or ""
    tags = (REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
    if any(text.count(t) != 1 for t in tags):
        return None
    at = [text.index(t) for t in tags]
    if at != sorted(at):
        return None
    ro, rc, ao, ac = at
    return Blocks(before=text[:ro], reasoning=text[ro + len(REASONING_OPEN):rc], between=text[rc + len(REASONING_CLOSE):ao],
                  answer=text[ao + len(ANSWER_OPEN):ac], after=text[ac + len(ANSWER_CLOSE):])


def has_reasoning(reasoning: str) -> bool:
    """A reasoning block counts when it has at least ``MIN_REASONING_CHARS`` non-space characters."""
    return len("".join(reasoning.split())) >= MIN_REASONING_CHARS


def _strict_ok(text: str) -> bool:
    b = split_blocks(text)
    if b is None or b.before or b.between != "\n" or not b.after.isspace() and b.after:
        return False
    # Tags on their own lines: "<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>" (+ optional whitespace).
    return (b.reasoning.startswith("\n") and b.reasoning.endswith("\n") and b.answer.startswith("\n")
            and b.answer.endswith("\n") and has_reasoning(b.reasoning) and bool(b.answer.strip()))


def _soft_ok(text: str) -> bool:
    b = split_blocks(text)
    return (b is not None and not b.before.strip() and not b.between.strip() and not b.after.strip()
            and has_reasoning(b.reasoning) and bool(b.answer.strip()))


def xml_score(text: str) -> float:
    """Graded tag score in [0, 0.5]: 0.125 for each of the four tags that appears exactly once and is well placed.

    * ``<reasoning>`` opens the text (only whitespace before it);
    * ``</reasoning>`` follows ``<reasoning>`` and closes a real reasoning (``MIN_REASONING_CHARS``);
    * ``<answer>`` follows ``</reasoning>`` with only whitespace between;
    * ``</answer>`` follows ``<answer>`` and closes a non-empty answer; text after it costs 0.001 per character,
      at most this tag's 0.125 (the seed's penalty had no floor).

    A repeated tag earns nothing, so spam, duplicated blocks and many answers do not pay; tags out of order earn
    nothing either. Partial credit stays, so a tiny model that gets some tags right sees reward variance.

    Example:
        >>> xml_score("<reasoning>\\n3 + 4 = 7\\n</reasoning>\\n<answer>\\n7\\n</answer>\\n")
        0.5
        >>> xml_score("<reasoning>\\n\\n</reasoning>\\n<answer>\\n\\n</answer>\\n")  # empty template
        0.25
    """
    text = text or ""
    at = {t: text.find(t) if text.count(t) == 1 else -1 for t in (REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)}
    ro, rc, ao, ac = at[REASONING_OPEN], at[REASONING_CLOSE], at[ANSWER_OPEN], at[ANSWER_CLOSE]
    score = 0.0
    if ro >= 0 and not text[:ro].strip():
        score += 0.125
    if 0 <= ro < rc and has_reasoning(text[ro + len(REASONING_OPEN):rc]):
        score += 0.125
    if 0 <= rc < ao and not text[rc + len(REASONING_CLOSE):ao].strip():
        score += 0.125
    if 0 <= ao < ac and text[ao + len(ANSWER_OPEN):ac].strip():
        score += 0.125 - min(0.125, 0.001 * len(text[ac + len(ANSWER_CLOSE):].strip()))
    return score


# ----------------------------------------------------------------------------------------------------------------
# The five rewards (TRL signature)
# ----------------------------------------------------------------------------------------------------------------


def _references(answer: Any, n: int, name: str) -> list[Any]:
    if answer is None:
        raise CourseError(f"{name} needs the reference answers, but answer=None.",
                          fix="Give the dataset an 'answer' column (TRL passes every column to rewards), or call "
                              f"{name}(completions=..., answer=[...]).")
    refs = [answer] * n if isinstance(answer, (str, int, float)) else list(answer)
    if len(refs) != n:
        raise CourseError(f"{name} got {len(refs)} answers for {n} completions.",
                          fix="Pass one reference answer per completion (TRL repeats it for each generation).")
    return refs


def xmlcount_reward(prompts=None, completions=None, answer=None, prefill=None, **kwargs) -> list[float]:
    """Graded tag reward, range [0, 0.5]: 0.125 per well-placed tag (see :func:`xml_score`).

    Example:
        >>> xmlcount_reward(completions=["3 + 4 = 7\\n</reasoning>\\nso"], prefill=["<reasoning>\\n"])
        [0.25]
    """
    return [xml_score(t) for t in completion_texts(completions, prefill)]


def soft_format_reward(prompts=None, completions=None, answer=None, prefill=None, **kwargs) -> list[float]:
    """0.5 when the text is ``<reasoning>..</reasoning> <answer>..</answer>`` with any whitespace (multi-line works),
    each tag once, a real reasoning and a non-empty answer, nothing else around; else 0.0. Range {0, 0.5}.

    Example:
        >>> soft_format_reward(completions=["<reasoning>line 1\\nline 2</reasoning> <answer>7</answer>"])
        [0.5]
    """
    return [0.5 if _soft_ok(t) else 0.0 for t in completion_texts(completions, prefill)]


def strict_format_reward(prompts=None, completions=None, answer=None, prefill=None, **kwargs) -> list[float]:
    """0.5 for exactly the system prompt's layout, tags on their own lines, trailing whitespace allowed; else 0.0.

    Example:
        >>> strict_format_reward(completions=["<reasoning>\\nstep 1\\nstep 2\\n</reasoning>\\n<answer>\\n7\\n</answer>"])
        [0.5]
    """
    return [0.5 if _strict_ok(t) else 0.0 for t in completion_texts(completions, prefill)]


def int_reward(prompts=None, completions=None, answer=None, prefill=None, **kwargs) -> list[float]:
    """0.5 when the one ``<answer>`` block states one number (``-3``, ``2.5``, ``1,000``, ``$18`` count); else 0.0.

    Example:
        >>> int_reward(completions=["<answer>-3</answer>", "<answer>1,000.5</answer>", "<answer>many</answer>"])
        [0.5, 0.5, 0.0]
    """
    return [0.5 if parse_number(extract_answer(t)) is not None else 0.0 for t in completion_texts(completions, prefill)]


def correctness_reward(prompts=None, completions=None, answer=None, prefill=None, **kwargs) -> list[float]:
    """2.0 when the one ``<answer>`` block equals the reference exactly (:func:`answers_match`); else 0.0.

    Example:
        >>> correctness_reward(completions=["<answer>$1,000.</answer>", "<answer>16 or 1000</answer>"],
        ...                    answer=["1000", "1000"])
        [2.0, 0.0]
    """
    texts = completion_texts(completions, prefill)
    refs = _references(answer, len(texts), "correctness_reward")
    return [2.0 if answers_match(extract_answer(t), None if r is None else str(r)) else 0.0 for t, r in zip(texts, refs)]


# The seed's order. TRL sums them with reward_weights (default 1.0 each); each reward's own scale sets its weight.
REWARD_FUNCS: list[Callable[..., list[float]]] = [
    xmlcount_reward, soft_format_reward, strict_format_reward, int_reward, correctness_reward]
REWARD_NAMES: list[str] = [f.__name__ for f in REWARD_FUNCS]
REWARD_RANGES: dict[str, tuple[float, float]] = {
    "xmlcount_reward": (0.0, 0.5), "soft_format_reward": (0.0, 0.5), "strict_format_reward": (0.0, 0.5),
    "int_reward": (0.0, 0.5), "correctness_reward": (0.0, 2.0)}
SEED_WEIGHTS: dict[str, float] = {name: 1.0 for name in REWARD_NAMES}  # the seed passes no reward_weights
MAX_TOTAL = sum(hi for _, hi in REWARD_RANGES.values())  # 4.0 with SEED_WEIGHTS


def score_completions(completions: Sequence[Any], answer: Any = None, prefill: Any = None,
                      funcs: Sequence[Callable] | None = None, **kwargs) -> dict[str, list[float | None]]:
    """Every reward's scores for a list of completions, keyed by function name.

    Example:
        >>> score_completions(["<answer>7</answer>"], answer=["7"])["correctness_reward"]
        [2.0]
    """
    funcs = REWARD_FUNCS if funcs is None else funcs
    n = len(completions)
    answers = [answer] * n if isinstance(answer, (str, int, float)) else answer
    kwargs.setdefault("prompts", None)
    return {_func_name(f): list(f(completions=completions, answer=answers, prefill=prefill, **kwargs)) for f in funcs}


def weighted_total(scores: Mapping[str, float | None], weights: Mapping[str, float] | None = None) -> float:
    """One completion's total reward as TRL sums it: ``sum(weight * score)``, skipping None (TRL's nansum).

    Every score None gives NaN: TRL calls such a completion unscorable and gives it advantage 0.

    Example:
        >>> weighted_total({"a": 0.5, "b": 2.0, "c": None}, {"a": 1.0, "b": 0.5, "c": 3.0})
        1.5
    """
    weights = SEED_WEIGHTS if weights is None else weights
    values = [(name, s) for name, s in scores.items() if s is not None and not (isinstance(s, float) and math.isnan(s))]
    if not values:
        return float("nan")
    return float(sum(float(weights.get(name, 1.0)) * float(s) for name, s in values))


# ----------------------------------------------------------------------------------------------------------------
# Advantages, exactly as TRL 1.14's GRPOTrainer computes them (multi_objective_aggregation="sum_then_normalize")
# ----------------------------------------------------------------------------------------------------------------

SCALE_REWARDS = ("group", "batch", "none")


def _nanmean(xs: Sequence[float]) -> float:
    vals = [x for x in xs if not math.isnan(x)]
    return sum(vals) / len(vals) if vals else float("nan")


def _nanstd(xs: Sequence[float]) -> float:
    """torch.std-like (unbiased, Bessel's correction) ignoring NaN; NaN when fewer than 2 values (TRL's nanstd)."""
    vals = [x for x in xs if not math.isnan(x)]
    if len(vals) < 2:
        return float("nan")
    mean = sum(vals) / len(vals)
    return math.sqrt(sum((x - mean) ** 2 for x in vals) / (len(vals) - 1))


def group_advantages(rewards: Sequence[float | None], num_generations: int, scale_rewards: str = "group",
                     eps: float = 1e-4) -> list[float]:
    """GRPO advantages for total rewards laid out as consecutive groups of ``num_generations`` (TRL's layout).

    ``advantage = (reward - group mean) / (std + 1e-4)`` where std is the unbiased std of the group
    (``"group"``, the GRPO paper) or of the whole batch (``"batch"``), or no division at all (``"none"``, Dr. GRPO).
    None rewards are skipped in means and stds; NaN advantages become 0, as in TRL.

    Example:
        >>> [round(a, 4) for a in group_advantages([1.0, 0.0, 3.0, 3.0], num_generations=2)]
        [0.707, -0.707, 0.0, 0.0]
    """
    if scale_rewards not in SCALE_REWARDS:
        raise CourseError(f"scale_rewards={scale_rewards!r} is not one of {SCALE_REWARDS}.",
                          fix='Use "group" (GRPO paper), "batch" or "none" (Dr. GRPO), as in GRPOConfig.')
    values = [float("nan") if r is None else float(r) for r in rewards]
    if num_generations < 1 or len(values) % num_generations:
        raise CourseError(f"{len(values)} rewards do not split into groups of num_generations={num_generations}.",
                          fix="Give num_generations completions per prompt, one reward each (TRL's layout).")
    groups = [values[i:i + num_generations] for i in range(0, len(values), num_generations)]
    means = [m for g in groups for m in [_nanmean(g)] * num_generations]
    if scale_rewards == "batch":
        stds = [_nanstd(values) if len(values) > 1 else 0.0] * len(values)
    else:
        stds = [s for g in groups for s in [_nanstd(g) if num_generations > 1 else 0.0] * num_generations]
    out = []
    for r, m, s in zip(values, means, stds):
        adv = r - m if scale_rewards == "none" else (r - m) / (s + eps)
        out.append(0.0 if math.isnan(adv) else adv)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Trainer-build-time check
# ----------------------------------------------------------------------------------------------------------------

SAMPLE_COMPLETIONS = [
    "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n",
    "I think the answer is 8.",
]


def make_sample_batch(conversational: bool = True, prefill: str = "", **columns: list) -> dict[str, Any]:
    """A tiny batch shaped like what TRL hands reward functions (2 completions), for :func:`validate_reward_funcs`.

    ``conversational`` picks chat messages or plain strings; a non-empty ``prefill`` is removed from the completions
    and passed as the ``prefill`` column, as in tiny mode. Extra ``columns`` (one value per completion) are added.

    Example:
        >>> sorted(make_sample_batch(conversational=False, prefill="<reasoning>\\n"))
        ['answer', 'completion_ids', 'completions', 'prefill', 'prompts']
    """
    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    texts = [c[len(prefill):] if prefill and c.startswith(prefill) else c for c in SAMPLE_COMPLETIONS]
    if conversational:
        prompts = [[{"role": "system", "content": "Respond in the format..."}, {"role": "user", "content": question}]] * 2
        completions: list = [[{"role": "assistant", "content": t}] for t in texts]
    else:
        prompts = [f"<|user|>{question}<|assistant|>{prefill}"] * 2
        completions = texts
    batch = {"prompts": prompts, "completions": completions, "completion_ids": [[1, 2, 3], [4, 5]],
             "answer": ["7", "7"]}
    if prefill:
        batch["prefill"] = [prefill] * 2
    batch.update(columns)
    return batch


class _TrainerStateStub:
    """Stands in for transformers.TrainerState: the fields reward functions read for shaping."""

    global_step, max_steps, epoch = 0, 1, 0.0


def _func_name(func: Any) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def _check_signature(func: Callable, name: str, keys: set[str]) -> None:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return  # builtins and C callables: the call below decides
    params = sig.parameters.values()
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    for p in params:
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            raise CourseError(f"Reward function {name!r} takes {p.name!r} as positional-only; TRL passes keywords.",
                              fix=f"Define it as def {name}(prompts, completions, **kwargs) -> list[float].")
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty and p.name not in keys:
            raise CourseError(
                f"Reward function {name!r} requires the argument {p.name!r}, which TRL does not pass. "
                f"It passes: {', '.join(sorted(keys))}.",
                fix=f"Rename the parameter to one of those, add a dataset column named {p.name!r}, or give it a default.")
    if not has_var_kw:
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        missing = sorted(keys - named)
        if missing:
            raise CourseError(f"Reward function {name!r} has no **kwargs, but TRL also passes {missing}.",
                              fix=f"Add **kwargs: def {name}(prompts, completions, **kwargs) -> list[float].")


def _check_value(value: Any, name: str, i: int) -> None:
    if value is None or isinstance(value, numbers.Real):
        return  # None: "not applicable" (TRL turns it into NaN); numpy scalars are numbers.Real too
    shape = getattr(value, "shape", None)
    if callable(getattr(value, "item", None)) and shape is not None and tuple(shape) == ():
        return  # a 0-d tensor
    raise CourseError(f"Reward function {name!r} returned {type(value).__name__} {str(value)[:60]!r} at position {i}; "
                      "TRL needs a float (or None) per completion.",
                      fix="Return a list of numbers, e.g. [1.0 if ok(c) else 0.0 for c in completions].")


def validate_reward_funcs(funcs: Callable | Sequence[Callable | str], sample_batch: Mapping[str, Any] | None = None) -> None:
    """Check each reward function the way TRL will call it, before any model loads; raise a CourseError if not.

    Calls each function with keywords like TRL's (``prompts``, ``completions``, ``completion_ids``, every dataset
    column such as ``answer`` and ``prefill``, ``trainer_state``, ``log_extra``, ``log_metric``) on ``sample_batch``
    (default: :func:`make_sample_batch`) and checks it returns one float (or None) per completion. Reward *models*
    (model ids, ``nn.Module``) are skipped: TRL scores them itself.

    Example:
        >>> validate_reward_funcs(REWARD_FUNCS)
        >>> validate_reward_funcs([lambda completions, **kw: [1.0]])
        Traceback (most recent call last):
        ...
        grpo_helpers.errors.CourseError: Reward function '<lambda>' returned 1 values for 2 completions.
          How to fix: Return exactly one reward per completion: [score(c) for c in completions].
    """
    funcs = [funcs] if callable(funcs) and not isinstance(funcs, (list, tuple)) else list(funcs)
    if not funcs:
        raise CourseError("No reward functions given.", fix="Pass at least one, e.g. rewards.REWARD_FUNCS.")
    batch = dict(make_sample_batch() if sample_batch is None else sample_batch)
    if "completions" not in batch or "prompts" not in batch:
        raise CourseError("sample_batch needs 'prompts' and 'completions'.", fix="Build it with make_sample_batch().")
    n = len(batch["completions"])
    batch.setdefault("completion_ids", [[0]] * n)
    batch.setdefault("trainer_state", _TrainerStateStub())
    batch.setdefault("log_extra", lambda *a, **k: None)
    batch.setdefault("log_metric", lambda *a, **k: None)
    for func in funcs:
        if isinstance(func, str) or (hasattr(func, "forward") and hasattr(func, "parameters")):
            continue  # a reward model: TRL loads and runs it
        name = _func_name(func)
        if not callable(func):
            raise CourseError(f"Reward {func!r} is not callable.", fix="Pass functions (or reward model ids).")
        _check_signature(func, name, set(batch))
        try:
            result = func(**batch)
        except CourseError:
            raise
        except Exception as err:
            raise CourseError(f"Reward function {name!r} raised {type(err).__name__}: {err} when called as TRL calls it "
                              f"({'chat messages' if isinstance(batch['completions'][0], list) else 'plain strings'}).",
                              fix="Read completions with rewards.completion_texts(completions, prefill) so it works "
                                  "for chat messages and plain strings.") from err
        if inspect.isawaitable(result):
            getattr(result, "close", lambda: None)()
            continue  # async reward: TRL awaits it; the signature was checked
        if isinstance(result, (str, bytes, Mapping)) or not hasattr(result, "__len__"):
            raise CourseError(f"Reward function {name!r} returned {type(result).__name__}, not a list.",
                              fix="Return a list with one float per completion.")
        if len(result) != n:
            raise CourseError(f"Reward function {name!r} returned {len(result)} values for {n} completions.",
                              fix="Return exactly one reward per completion: [score(c) for c in completions].")
        for i, value in enumerate(result):
            _check_value(value, name, i)


# ----------------------------------------------------------------------------------------------------------------
# Reward hacking: completions crafted to game the seed's rewards
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hack:
    """A completion that games the seed's rewards, the reference answer it is scored against, and how it games them."""

    name: str
    completion: str
    answer: str
    why: str


HONEST_WRONG = Hack("honest_wrong",
                    "<reasoning>\nTom starts with 3 apples.\nHe buys 4 more, so 3 + 5 = 8.\n</reasoning>\n"
                    "<answer>\n8\n</answer>\n", "7", "Real multi-line work, a slip, a wrong answer: the baseline a hack must not beat.")
HONEST_RIGHT = Hack("honest_right",
                    "<reasoning>\nTom starts with 3 apples.\nHe buys 4 more, so 3 + 4 = 7.\n</reasoning>\n"
                    "<answer>\n7\n</answer>\n", "7", "Real work and the right answer: what every reward should prefer.")

HACKS: list[Hack] = [
    Hack("empty_template", "<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n", "7",
         "Tags and nothing else: the seed pays 1.0 (xmlcount 0.5 + strict 0.5), as much as honest multi-line work."),
    Hack("guess_without_reasoning", "<reasoning>\n\n</reasoning>\n<answer>\n0\n</answer>\n", "7",
         "Empty reasoning, any integer: the seed pays 1.5 (tags + isdigit), more than honest multi-line work (1.0)."),
    Hack("bare_number", "7", "7",
         "No tags, no work: the seed reads the whole completion as the answer and pays 2.5 when the guess is right."),
    Hack("many_answers", "<reasoning>\nGuess.\n</reasoning>\n<answer>\n5\n</answer>\n<answer>\n6\n</answer>\n"
         "<answer>\n7\n</answer>\n", "7",
         "Several answers: the seed scores the last one, so hedging pays full correctness (2.75 in all)."),
    Hack("tag_soup", "</answer>\n<answer>\n</reasoning>\n<reasoning>\n7", "7",
         "Tags out of order and no content: the seed's xmlcount only counts tags and still pays 0.33."),
    Hack("one_line_spam", "<reasoning>x</reasoning><answer>7</answer>" * 3, "7",
         "Repeated one-line blocks: soft format matches the first, correctness reads the last: 3.0, as much as honest right work."),
]
