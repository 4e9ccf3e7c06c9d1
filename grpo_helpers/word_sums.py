"""One-step word sums: a task a 135M model can sometimes solve, so GRPO with a verifier as reward has signal.

"Mia has 2 cups. She gets 4 more cups. How many cups does she have now?" The rows have the shape of
:func:`grpo_helpers.data.load_gsm8k`'s (``question``, ``prompt``, ``answer``, ``prefill``), so a notebook swaps
tasks the way it swaps datasets, and the course's rewards (``correctness_reward`` first) score them unchanged.

The split is by **number pairs**, not by rows: of the 81 pairs ``(a, b)`` with ``a, b`` from 1 to 9, 20 are held out
(``split="test"``) and never appear in training (``split="train"``), whatever the names and objects around them. The
``"harder"`` split has a first number from 10 to 30, a range training never shows. The system prompt's own worked
example (3 + 4 = 7) always stays in the training pairs, so copying it can never score on held-out pairs.

Difficulty is one argument: ``numbers=(1, 9)`` sets the range of both numbers (notebook 06's exercise widens it and
watches the groups with mixed right/wrong answers, GRPO's signal, thin out).

Example:
    >>> train_pairs, test_pairs = split_pairs()
    >>> len(train_pairs), len(test_pairs), set(train_pairs) & set(test_pairs)
    (61, 20, set())
    >>> word_sum(2, 4, name="Mia", item="cups", verb="gets")
    'Mia has 2 cups. She gets 4 more cups. How many cups does she have now?'
"""

from __future__ import annotations

import random
import re

from grpo_helpers.data import SYSTEM_PROMPT, build_prompt
from grpo_helpers.errors import CourseError

# Names with their pronoun. Tom (the system prompt example's name) is left out, so a copy of the example shows.
NAMES = {"Mia": "she", "Ana": "she", "Lea": "she", "Zoe": "she", "Ivy": "she", "Eva": "she",
         "Ben": "he", "Sam": "he", "Leo": "he", "Max": "he", "Raj": "he", "Omar": "he"}
# Plural objects (apples, the example's, left out for the same reason).
ITEMS = ("cups", "pens", "books", "coins", "stamps", "shells", "cards", "marbles", "stickers", "plates", "rocks",
         "flowers")
VERBS = ("gets", "finds", "buys", "makes")  # "gets 4 more": every phrasing is the same one-step sum
PAIRS_SEED = 2024  # the held-out pairs are fixed, whatever seed a run samples its rows with
HELD_OUT = 20
NUMBERS = (1, 9)
HARDER = (10, 30)  # first number of the "harder" split; the second stays in NUMBERS
EXAMPLE_PAIR = (3, 4)  # the worked example in data.TINY_SYSTEM_PROMPT: "Tom has 3 apples. He buys 4 more."
SPLITS = ("train", "test", "harder")


def word_sum(a: int, b: int, name: str = "Mia", item: str = "cups", verb: str = "gets") -> str:
    """The question for ``a + b``, told about ``name`` and ``item``.

    Example:
        >>> word_sum(12, 3, name="Ben", item="coins", verb="finds")
        'Ben has 12 coins. He finds 3 more coins. How many coins does he have now?'
        >>> word_sum(1, 1, name="Ivy", item="pens")
        'Ivy has 1 pen. She gets 1 more pen. How many pens does she have now?'
    """
    if name not in NAMES:
        raise CourseError(f"No pronoun known for the name {name!r}.", fix=f"Use one of {', '.join(NAMES)}.")
    pronoun = NAMES[name]
    return (f"{name} has {a} {_count(a, item)}. {pronoun.capitalize()} {verb} {b} more {_count(b, item)}. "
            f"How many {item} does {pronoun} have now?")


def _count(k: int, item: str) -> str:
    """"1 cup", "2 cups": every item in ITEMS is a plural made with -s."""
    return item.removesuffix("s") if k == 1 else item


def all_pairs(numbers: tuple[int, int] = NUMBERS) -> list[tuple[int, int]]:
    """Every ``(a, b)`` with both numbers in the inclusive range ``numbers``.

    Example:
        >>> len(all_pairs()), all_pairs((1, 2))
        (81, [(1, 1), (1, 2), (2, 1), (2, 2)])
    """
    low, high = _check_range(numbers, "numbers")
    return [(a, b) for a in range(low, high + 1) for b in range(low, high + 1)]


def split_pairs(numbers: tuple[int, int] = NUMBERS, held_out: int = HELD_OUT,
                seed: int = PAIRS_SEED) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``(train_pairs, held_out_pairs)``: a fixed, seeded split of :func:`all_pairs`; the example pair stays in training.

    Example:
        >>> train, test = split_pairs()
        >>> EXAMPLE_PAIR in train, len(test)
        (True, 20)
    """
    pairs = all_pairs(numbers)
    candidates = [p for p in pairs if p != EXAMPLE_PAIR]
    if not 0 < held_out < len(candidates):
        raise CourseError(f"held_out={held_out} pairs asked for, but the range {numbers} has {len(pairs)} pairs.",
                          fix=f"Use 1 <= held_out <= {len(candidates) - 1}, or widen numbers=(low, high).")
    test = sorted(random.Random(seed).sample(candidates, held_out))
    chosen = set(test)
    return [p for p in pairs if p not in chosen], test


def split_of(split: str, numbers: tuple[int, int] = NUMBERS, harder: tuple[int, int] = HARDER,
             held_out: int = HELD_OUT) -> list[tuple[int, int]]:
    """The number pairs a split draws from: ``"train"``, ``"test"`` (held-out pairs) or ``"harder"``.

    Example:
        >>> min(a for a, _ in split_of("harder")), max(a for a, _ in split_of("harder")), len(split_of("harder"))
        (10, 30, 189)
    """
    if split not in SPLITS:
        raise CourseError(f"The word sums have no split {split!r}.", fix=f"Use one of {', '.join(SPLITS)}.")
    if split == "harder":
        low, high = _check_range(harder, "harder")
        b_low, b_high = _check_range(numbers, "numbers")
        return [(a, b) for a in range(low, high + 1) for b in range(b_low, b_high + 1)]
    train, test = split_pairs(numbers, held_out)
    return train if split == "train" else test


def load_word_sums(split: str = "train", n: int | None = None, seed: int = 3407, system_prompt: str = SYSTEM_PROMPT,
                   prefill: str = "", numbers: tuple[int, int] = NUMBERS, harder: tuple[int, int] = HARDER,
                   held_out: int = HELD_OUT):
    """Word sums as a ``datasets.Dataset`` with ``prompt``, ``answer``, ``question``, ``prefill`` (as ``load_gsm8k``).

    ``n`` rows (default: one per pair of the split) cycle through the split's pairs in a seeded order, each told with
    a seeded name, object and verb: with ``n`` larger than the pairs, every pair comes back in new words.

    Example:
        >>> ds = load_word_sums("test", n=3)
        >>> len(ds), sorted(ds.column_names), ds[0]["prompt"][-1]["role"]
        (3, ['answer', 'prefill', 'prompt', 'question'], 'user')
        >>> a, b = question_numbers(ds[0]["question"]); str(a + b) == ds[0]["answer"]
        True
    """
    from datasets import Dataset

    pairs = split_of(split, numbers, harder, held_out)
    n = len(pairs) if n is None else n
    if n < 1:
        raise CourseError(f"n={n} rows asked for.", fix="Use n >= 1 (or None: one row per number pair).")
    rng = random.Random(f"{seed}-{split}")  # a string seed: train and test rows of one seed draw different words
    order = rng.sample(pairs, len(pairs))
    names = list(NAMES)
    rows = []
    for i in range(n):
        if i and i % len(order) == 0:
            order = rng.sample(pairs, len(pairs))
        a, b = order[i % len(order)]
        question = word_sum(a, b, name=rng.choice(names), item=rng.choice(ITEMS), verb=rng.choice(VERBS))
        rows.append({"question": question, "prompt": build_prompt(question, system_prompt, prefill),
                     "answer": str(a + b), "prefill": prefill})
    return Dataset.from_list(rows)


_NUMBER = re.compile(r"\d+")


def question_numbers(question: str) -> tuple[int, int]:
    """The two numbers of a word-sum question, in order.

    Example:
        >>> question_numbers("Mia has 12 cups. She gets 4 more cups. How many cups does she have now?")
        (12, 4)
    """
    found = [int(x) for x in _NUMBER.findall(question)]
    if len(found) != 2:
        raise CourseError(f"A word sum has two numbers; found {len(found)} in {question!r}.",
                          fix="Pass a question made by word_sums.word_sum / load_word_sums.")
    return found[0], found[1]


def _check_range(numbers: tuple[int, int], name: str) -> tuple[int, int]:
    low, high = numbers
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        raise CourseError(f"{name}={numbers!r} is not a range of whole numbers.", fix=f"Use {name}=(low, high), 0 <= low <= high.")
    return low, high
