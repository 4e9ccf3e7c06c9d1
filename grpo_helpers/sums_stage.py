"""``make demo``'s second stage: GRPO with a verifier as the reward teaches SmolLM2-135M to *solve*, on word sums.

The first stage teaches the answer format on GSM8K, where a 135M model's correctness stays at 0: with every
completion wrong, every group ties on correctness and GRPO has nothing to prefer. Word sums
(:mod:`grpo_helpers.word_sums`) are sized so the formatted model is *sometimes* right: sampled at temperature 1, some
groups hold both right and wrong answers (:func:`mixed_groups`), and GRPO's group-relative advantage pushes towards
whatever the right ones did. The reward is the verifier, ``correctness_reward`` (the right number in the one
``<answer>`` block), with the format rewards at a small weight so the format learned in stage 1 is kept.

What to measure, all here: greedy accuracy on held-out number pairs and on a harder range never trained on
(:func:`evaluate_splits`, both accuracies), the share of groups with mixed right/wrong answers in training
(:func:`training_signal`), and two reward hacks (:func:`hack_checks`): copying a number from the question, and
answering the system prompt example's own answer.

Example:
    >>> recs = [{"question": "Mia has 2 cups. She gets 4 more cups. How many cups does she have now?", "answer": "6",
    ...          "completion": "<reasoning>\\nMia has 2 cups.\\n</reasoning>\\n<answer>\\n2\\n</answer>"}]
    >>> hack_checks(recs)["copied_question_number"]
    1.0
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

# Reward weights of the sums stage (GRPOConfig.reward_weights). Correctness is the lesson: x2 on its 0/2 scale makes
# a right answer worth 4 against at most 0.5 for the format. The two format rewards stay, at 0.5 each, so GRPO does
# not trade away the format stage's tags while chasing the number (without them nothing holds the layout).
SUMS_WEIGHTS = {"correctness_reward": 2.0, "soft_format_reward": 0.5, "strict_format_reward": 0.5}
EXAMPLE_ANSWER = "7"  # data.TINY_SYSTEM_PROMPT's worked example ends on <answer>7</answer>


def given_answer(completion: str) -> str | None:
    """The answer a completion gives: its one ``<answer>`` block, else its last number (None without either).

    Example:
        >>> given_answer("<reasoning>\\n2 + 4 = 6\\n</reasoning>\\n<answer>\\n6\\n</answer>"), given_answer("so 9 cups")
        ('6', '9')
    """
    from grpo_helpers.rewards import extract_answer, final_number

    inside = extract_answer(completion)
    return inside if inside is not None else final_number(completion)


def hack_checks(records: Sequence[Mapping[str, Any]], example_answer: str = EXAMPLE_ANSWER) -> dict[str, Any]:
    """Two reward hacks, measured on evaluation records (``question``, ``answer``, ``completion``):

    * ``copied_question_number``: share of answers that equal one of the question's two numbers (never right:
      both numbers are at least 1, so the sum is larger than either);
    * ``example_answer``: share of answers that are the system prompt example's answer where the sum is not.

    Example:
        >>> q = "Ben has 1 pen. He gets 2 more pens. How many pens does he have now?"
        >>> hack_checks([{"question": q, "answer": "3", "completion": "<answer>7</answer>"},
        ...              {"question": q, "answer": "3", "completion": "<answer>3</answer>"}])["example_answer"]
        0.5
    """
    from grpo_helpers.errors import CourseError
    from grpo_helpers.rewards import answers_match
    from grpo_helpers.word_sums import question_numbers

    if not records:
        raise CourseError("No records to check.", fix="Pass the records of an evaluation (EvalResult.records).")
    copied = example = 0
    for r in records:
        given = given_answer(r["completion"])
        copied += any(answers_match(given, str(x)) for x in question_numbers(r["question"]))
        example += answers_match(given, example_answer) and not answers_match(str(r["answer"]), example_answer)
    n = len(records)
    return {"n": n, "copied_question_number": copied / n, "example_answer": example / n,
            "copied_count": copied, "example_count": example, "example": example_answer}


def evaluate_splits(model, tokenizer, datasets: Mapping[str, Any], max_new_tokens: int, label: str = "") -> dict[str, Any]:
    """Greedy evaluation of several datasets in **one** batched ``generate`` call; an ``EvalResult`` per dataset.

    A CPU's decoding step costs about the same for 40 rows as for 90 (it reads every weight once either way), so one
    batch is cheaper than one per split; :func:`grpo_helpers.shared_prefix.share_prefix` computes the system
    prompt every row shares once.

    Example:
        >>> evals = evaluate_splits(model, tok, {"held-out": test, "harder": harder}, 48)  # doctest: +SKIP
        >>> evals["held-out"].strict_accuracy, evals["held-out"].format_free_accuracy  # doctest: +SKIP
    """
    from datasets import concatenate_datasets

    from grpo_helpers.evaluation import evaluate, score
    from grpo_helpers.shared_prefix import share_prefix
    from grpo_helpers.generation import Sampling

    joined = concatenate_datasets(list(datasets.values()))
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, n=1, batch_size=len(joined))
    with share_prefix(model):
        result = evaluate(model, tokenizer, joined, sampling=sampling, progress=False, label=label)
    out, start = {}, 0
    for name, ds in datasets.items():
        recs = result.records[start:start + len(ds)]
        start += len(ds)
        out[name] = score([r["completion"] for r in recs], [r["answer"] for r in recs], [r["question"] for r in recs],
                          tokenizer=tokenizer, label=f"{label} {name}".strip())
    return out


@dataclasses.dataclass(frozen=True)
class GroupSignal:
    """Right answers per group of sampled completions: GRPO learns only from groups that hold both right and wrong."""

    right: tuple[int, ...]  # right answers in each group
    group_size: int

    @property
    def mixed(self) -> int:
        """Groups with at least one right and one wrong completion: their advantages are not all 0."""
        return sum(0 < r < self.group_size for r in self.right)

    @property
    def all_wrong(self) -> int:
        return sum(r == 0 for r in self.right)

    @property
    def all_right(self) -> int:
        return sum(r == self.group_size for r in self.right)

    def __repr__(self) -> str:
        return (f"GroupSignal({self.mixed} of {len(self.right)} groups mixed right/wrong, {self.all_wrong} all wrong, "
                f"{self.all_right} all right; right answers per group of {self.group_size}: {list(self.right)})")


def mixed_groups(model, tokenizer, dataset, groups: int = 8, group_size: int = 8, max_new_tokens: int = 48,
                 temperature: float = 1.0, seed: int = 3407) -> GroupSignal:
    """Sample ``group_size`` completions for each of the first ``groups`` rows, as GRPO does, and count right ones.

    Right means what ``correctness_reward`` pays for. All rows go through one batched ``generate`` call.

    Example:
        >>> mixed_groups(model, tok, load_word_sums("train", n=8, system_prompt=..., prefill=...))  # doctest: +SKIP
        GroupSignal(5 of 8 groups mixed right/wrong, 3 all wrong, 0 all right; ...)
    """
    from grpo_helpers.errors import CourseError
    from grpo_helpers.shared_prefix import share_prefix
    from grpo_helpers.generation import Sampling, generate
    from grpo_helpers.rewards import correctness_reward

    if groups < 1 or group_size < 2 or groups > len(dataset):
        raise CourseError(f"groups={groups}, group_size={group_size} for a dataset of {len(dataset)} rows.",
                          fix="Use 1 <= groups <= len(dataset) and group_size >= 2 (a group of one has no variance).")
    rows = [dataset[i] for i in range(groups)]
    prompts = [r["prompt"] for r in rows for _ in range(group_size)]
    sampling = Sampling(temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens, n=1, seed=seed,
                        batch_size=len(prompts))
    with share_prefix(model):
        completions = [c[0] for c in generate(model, tokenizer, prompts, sampling, progress=False)]
    answers = [r["answer"] for r in rows for _ in range(group_size)]
    right = [s > 0 for s in correctness_reward(completions=completions, answer=answers)]
    return GroupSignal(right=tuple(sum(right[g * group_size:(g + 1) * group_size]) for g in range(groups)),
                       group_size=group_size)


def training_signal(rows: Sequence[Mapping[str, Any]], key: str = "correctness_reward") -> list[bool]:
    """For each logged GRPO step (one prompt per step), whether its group had mixed right/wrong answers.

    TRL logs each reward's standard deviation over the step's completions (``rewards/<name>/std``): above 0, the
    group did not tie on that reward.

    Example:
        >>> training_signal([{"rewards/correctness_reward/std": 0.0}, {"rewards/correctness_reward/std": 1.07}])
        [False, True]
    """
    return [(r.get(f"rewards/{key}/std") or 0.0) > 0 for r in rows]


def one_line(completion: str, limit: int = 90) -> str:
    """A completion in one short line for a table: its reasoning lines joined by " / ", then "-> answer".

    Example:
        >>> one_line("<reasoning>\\nMia has 2 cups.\\nShe has 2 + 4 = 6\\n</reasoning>\\n<answer>\\n6\\n</answer>")
        'Mia has 2 cups. / She has 2 + 4 = 6 -> 6'
    """
    from grpo_helpers.rewards import ANSWER_OPEN, REASONING_CLOSE, REASONING_OPEN

    text = completion.split(REASONING_OPEN, 1)[-1]
    reasoning = text.split(REASONING_CLOSE, 1)[0].split(ANSWER_OPEN, 1)[0]
    line = " / ".join(x.strip() for x in reasoning.strip().splitlines() if x.strip())
    line = (line[:limit - 1] + "…") if len(line) > limit else line
    given = given_answer(completion)
    return f"{line} -> {given}" if given is not None else line


def side_by_side(before, after, k: int = 4) -> str:
    """A markdown table of the first ``k`` questions: the reference, the answer before and the answer after.

    Example:
        >>> from grpo_helpers.evaluation import score
        >>> q = ["Ben has 1 pen. He gets 2 more pens. How many pens does he have now?"]
        >>> b = score(["<reasoning>\\nBen has 1 pen.\\n</reasoning>\\n<answer>\\n1\\n</answer>"], ["3"], q)
        >>> a = score(["<reasoning>\\n1 + 2 = 3\\n</reasoning>\\n<answer>\\n3\\n</answer>"], ["3"], q)
        >>> print(side_by_side(b, a).splitlines()[2])
        | Ben has 1 pen. He gets 2 more pens. How many pens does he have now? | 3 | Ben has 1 pen. -> 1 (wrong) | 1 + 2 = 3 -> 3 (right) |
    """
    md = ["| question | sum | before GRPO | after GRPO |", "|---|---:|---|---|"]
    for rb, ra in list(zip(before.records, after.records))[:k]:
        md.append(f"| {rb['question']} | {rb['answer']} | {one_line(rb['completion'])} "
                  f"({'right' if rb['correct'] else 'wrong'}) | {one_line(ra['completion'])} "
                  f"({'right' if ra['correct'] else 'wrong'}) |")
    return "\n".join(md)


def plot_sums_stage(rows: Sequence[Mapping[str, Any]], before: Mapping[str, Mapping[str, float]],
                    after: Mapping[str, Mapping[str, float]], title: str | None = None, smooth: int = 5):
    """Two panels: the training correctness reward per step (with its moving average and the steps whose group was
    mixed), and greedy accuracy before vs after on each evaluation split (strict and format-free).

    ``before``/``after``: ``{split: EvalResult.summary()}``; ``rows``: TRL log dicts or a ``metrics.csv``'s rows.

    Example:
        >>> rows = [{"step": i, "rewards/correctness_reward/mean": 0.1 * i, "rewards/correctness_reward/std": 1.0}
        ...         for i in range(1, 9)]
        >>> acc = {"strict_accuracy": 0.1, "format_free_accuracy": 0.1}
        >>> fig = plot_sums_stage(rows, {"held-out": acc}, {"held-out": {**acc, "strict_accuracy": 0.9}})
        >>> [ax.get_title() for ax in fig.axes]
        ['training correctness reward (0 to 2)', 'greedy accuracy, never-trained sums']
    """
    from grpo_helpers.plotting import finish_figure, moving_average, new_figure

    fig, (left, right) = new_figure(2, width=4.6, height=3.3)
    steps = [r.get("step") or i + 1 for i, r in enumerate(rows)]
    values = [r.get("rewards/correctness_reward/mean") or 0.0 for r in rows]
    mixed = training_signal(rows)
    left.plot(steps, values, ".", alpha=0.5, color="tab:blue", label="per step")
    left.plot(steps, moving_average(values, smooth), "-", color="tab:blue", label=f"mean of {smooth}")
    left.plot([s for s, m in zip(steps, mixed) if not m], [v for v, m in zip(values, mixed) if not m], "x",
              color="tab:red", label="group tied (no signal)")
    left.set_ylim(-0.05, 2.05)
    left.set_title("training correctness reward (0 to 2)", fontsize=10)
    left.set_xlabel("GRPO step", fontsize=8)
    left.legend(fontsize=7)
    splits = list(after)
    bars = [(f"{s}\n{kind}", before[s][key], after[s][key]) for s in splits
            for kind, key in (("strict", "strict_accuracy"), ("format-free", "format_free_accuracy"))]
    xs = range(len(bars))
    width = 0.38
    for offset, label, column, color in ((-width / 2, "before", 1, "tab:gray"), (width / 2, "after", 2, "tab:blue")):
        heights = [b[column] for b in bars]
        drawn = right.bar([x + offset for x in xs], heights, width, label=label, color=color)
        right.bar_label(drawn, labels=[f"{h:.0%}" for h in heights], fontsize=7)
    right.set_xticks(list(xs), [b[0] for b in bars], fontsize=7)
    right.set_ylim(0, 1.3)
    right.set_title("greedy accuracy, never-trained sums", fontsize=10)
    right.legend(fontsize=7, loc="upper left", ncol=2)
    return finish_figure(fig, (left, right), title)


def difficulty_verdict(numbers: Any, signal: Any = None, baseline: Any = None) -> str:
    """The check of notebook 06's exercise (make the sums harder, watch GRPO's signal): '' when ``numbers`` is a
    harder range than the course's (1, 9) and ``signal`` is the :class:`GroupSignal` sampled for it, else what is
    wrong. Never raises, whatever it is given (a learner types anything).

    Example:
        >>> difficulty_verdict((1, 50), GroupSignal(right=(0, 1, 0, 0), group_size=8))
        ''
        >>> difficulty_verdict("wide")
        'my_numbers is a str; give a range of two whole numbers, e.g. (1, 50)'
        >>> difficulty_verdict((1, 9), None)
        'that is the course task itself, both numbers 1-9: widen the range, e.g. (1, 50)'
    """
    from grpo_helpers.word_sums import NUMBERS

    try:
        low, high = numbers
    except Exception:  # noqa: BLE001 - anything but a pair
        return f"my_numbers is a {type(numbers).__name__}; give a range of two whole numbers, e.g. (1, 50)"
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (low, high)):
        return f"my_numbers holds {type(low).__name__} and {type(high).__name__}; give two whole numbers, e.g. (1, 50)"
    if not 0 <= low <= high:
        return f"({low}, {high}) is not a range: use (low, high) with 0 <= low <= high"
    if (low, high) == NUMBERS:
        return "that is the course task itself, both numbers 1-9: widen the range, e.g. (1, 50)"
    if high <= NUMBERS[1]:
        return f"({low}, {high}) is no harder than 1-9: the sums only get harder with larger numbers, e.g. (1, 50)"
    if high > 10**6:
        return f"({low}, {high}): numbers that large are tokenized into many pieces; stay below a million"
    if not isinstance(signal, GroupSignal):
        return "my_signal is not a GroupSignal yet: run the cell that samples the groups for your range"
    if isinstance(baseline, GroupSignal) and len(baseline.right) != len(signal.right):
        return "compare the same number of groups: sample as many groups for your range as for the course's"
    return ""

