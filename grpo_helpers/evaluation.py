"""Evaluate a model on held-out GSM8K: two accuracies, format rates, length, and every example; compare two runs.

Two accuracies, as GSM8K practice reports them (lm-eval's strict-match and flexible-extract):

* **strict**: the training reward's rule (``rewards.correctness_reward``): one ``<answer>`` block holding the right
  number. A model that solves the problem in plain prose scores 0 here.
* **format-free**: the last number of the completion, whatever the tags (``rewards.format_free_correct``).

A before/after gain in strict accuracy alone can be the model learning the tags; the format-free one says whether
it learned to solve. Scoring uses the course reward functions, so "correct" and "well formatted" mean exactly what
the training rewards mean. Evaluate before and after training on the same rows with the same ``Sampling``.

Example:
    >>> result = score(["<reasoning>\\n2 + 2 = 4\\n</reasoning>\\n<answer>\\n4\\n</answer>\\n", "2 + 3 = 5"], ["4", "5"])
    >>> result.strict_accuracy, result.format_free_accuracy, result.format_rate
    (0.5, 1.0, 0.5)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from grpo_helpers.errors import CourseError
from grpo_helpers.generation import Sampling, count_tokens, generate

# Evaluation sampling: greedy (deterministic, the same for before and after), room for a short solution.
EVAL_SAMPLING = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=256, n=1)


@dataclasses.dataclass
class EvalResult:
    """Strict accuracy (the right number in the one ``<answer>`` block), format-free accuracy (the right number last,
    whatever the tags), format rates (soft: tags in order; strict: the exact seed layout), mean completion length in
    tokens, and one record per example."""

    strict_accuracy: float
    format_free_accuracy: float
    format_rate: float
    strict_format_rate: float
    mean_length: float
    n: int
    records: list[dict[str, Any]]
    label: str = ""

    def summary(self) -> dict[str, float]:
        """The numbers only (what :func:`compare` and reports use)."""
        return {"strict_accuracy": self.strict_accuracy, "format_free_accuracy": self.format_free_accuracy,
                "format_rate": self.format_rate,
                "strict_format_rate": self.strict_format_rate, "mean_length": self.mean_length, "n": self.n}

    def __repr__(self) -> str:
        name = f"{self.label}: " if self.label else ""
        return (f"EvalResult({name}strict accuracy={self.strict_accuracy:.1%}, format-free accuracy="
                f"{self.format_free_accuracy:.1%}, format={self.format_rate:.1%}, "
                f"strict format={self.strict_format_rate:.1%}, mean length={self.mean_length:.1f} tokens, n={self.n})")


def score(completions: Sequence[str], answers: Sequence[str], questions: Sequence[str] | None = None,
          tokenizer=None, label: str = "") -> EvalResult:
    """Score finished completions (each one already starting with any prefill) against reference answers.

    Lengths are in tokens when ``tokenizer`` is given, else in characters.
    """
    from grpo_helpers.rewards import correctness_reward, format_free_correct, soft_format_reward, strict_format_reward

    if len(completions) != len(answers):
        raise CourseError(f"{len(completions)} completions for {len(answers)} answers.",
                          fix="Pass one completion per reference answer.")
    if not completions:
        raise CourseError("Nothing to evaluate: no completions.", fix="Use n >= 1 rows.")
    completions, answers = list(completions), [str(a) for a in answers]
    questions = list(questions) if questions is not None else [""] * len(completions)
    prompts = [[{"role": "user", "content": q}] for q in questions]
    correct = correctness_reward(prompts, completions, answers)
    soft = soft_format_reward(prompts, completions, answers)
    strict = strict_format_reward(prompts, completions, answers)
    lengths = count_tokens(tokenizer, completions) if tokenizer is not None else [len(c) for c in completions]
    records = [dict(question=q, answer=a, completion=c, correct=bool(r > 0), correct_format_free=format_free_correct(c, a),
                    formatted=bool(s > 0), strict_formatted=bool(t > 0), length=n)
               for q, a, c, r, s, t, n in zip(questions, answers, completions, correct, soft, strict, lengths)]
    count = len(records)
    return EvalResult(strict_accuracy=sum(r["correct"] for r in records) / count,
                      format_free_accuracy=sum(r["correct_format_free"] for r in records) / count,
                      format_rate=sum(r["formatted"] for r in records) / count,
                      strict_format_rate=sum(r["strict_formatted"] for r in records) / count,
                      mean_length=sum(lengths) / count, n=count, records=records, label=label)


def evaluate(model, tokenizer, dataset, n: int | None = None, sampling: Sampling = EVAL_SAMPLING, *,
             lora_request=None, backend: str | None = None, progress: bool = True, label: str = "") -> EvalResult:
    """Generate one answer per row of ``dataset`` (the first ``n`` rows) and score it.

    ``dataset``: rows with ``prompt`` (chat messages, possibly ending in an assistant prefill), ``answer`` and
    ``question``, e.g. ``load_gsm8k("test", n=50, prefill=...)``: the held-out test split, never the training rows.
    ``lora_request``: the adapter from ``training.load_lora`` on the ``unsloth-vllm`` backend.

    Example:
        >>> before = evaluate(model, tok, load_gsm8k("test", n=20), label="before")  # doctest: +SKIP
    """
    if n is not None:
        if n < 1:
            raise CourseError(f"n={n}: nothing to evaluate.", fix="Use n >= 1 (or None for every row).")
        dataset = dataset.select(range(min(n, len(dataset))))
    rows = list(dataset)
    if not rows:
        raise CourseError("The evaluation dataset is empty.", fix="Load some rows: load_gsm8k('test', n=20).")
    sampling = dataclasses.replace(sampling, n=1)
    outputs = generate(model, tokenizer, [r["prompt"] for r in rows], sampling, lora_request=lora_request,
                       backend=backend, progress=progress)
    return score([o[0] for o in outputs], [r["answer"] for r in rows], [r.get("question", "") for r in rows],
                 tokenizer=tokenizer, label=label)


LABELS = {"strict_accuracy": "strict accuracy", "format_free_accuracy": "format-free accuracy",
          "format_rate": "format rate", "strict_format_rate": "strict format rate", "mean_length": "mean length"}


@dataclasses.dataclass
class Comparison:
    """Before vs after: ``rows`` (metric, before, after, change), ``table`` (markdown) and ``figure`` (bar chart)."""

    rows: list[tuple[str, float, float, float]]
    table: str
    figure: Any = dataclasses.field(repr=False)  # shown by its own cell; as text it would read "<Figure size ...>"

    def _repr_markdown_(self) -> str:  # a notebook cell ending on a Comparison shows the table
        return self.table


def compare(before: EvalResult, after: EvalResult, title: str | None = None) -> Comparison:
    """A table and a bar chart of two evaluations of the same rows.

    Example:
        >>> a = score(["no"], ["4"]); b = score(["<reasoning>\\nx = 2 + 2\\n</reasoning>\\n<answer>\\n4\\n</answer>\\n"], ["4"])
        >>> compare(a, b).rows[0]
        ('strict_accuracy', 0.0, 1.0, 1.0)
    """
    from grpo_helpers.plotting import plot_before_after

    if before.n != after.n:
        raise CourseError(f"before has {before.n} examples, after has {after.n}.",
                          fix="Evaluate both on the same rows (same dataset, same n, same sampling).")
    b, a = before.summary(), after.summary()
    metrics = ["strict_accuracy", "format_free_accuracy", "format_rate", "strict_format_rate", "mean_length"]
    rows = [(m, b[m], a[m], a[m] - b[m]) for m in metrics]

    def fmt(metric, v, sign=False):
        if metric == "mean_length":
            return f"{v:+.1f}" if sign else f"{v:.1f}"
        return f"{v:+.1%}" if sign else f"{v:.1%}"

    lines = [f"| metric (n={before.n}) | before | after | change |", "|---|---:|---:|---:|"]
    lines += [f"| {LABELS[m]} | {fmt(m, x)} | {fmt(m, y)} | {fmt(m, d, True)} |" for m, x, y, d in rows]
    figure = plot_before_after(b, a, metrics=metrics[:4], title=title)
    return Comparison(rows=rows, table="\n".join(lines), figure=figure)
