"""Short multiple-choice quizzes with feedback, at the end of each concept notebook.

A quiz is a list of :class:`Question`. In JupyterLab and Colab it is a small ipywidgets form: pick an option and the
feedback (right or wrong, and why) appears under the question, with a running score. Anywhere widgets do not run
(the static course website, a plain nbconvert) the same quiz shows as HTML with the answers folded away. Nothing is
sent anywhere: it works offline.

Example:
    >>> q = Question("What replaces PPO's value model in GRPO?",
    ...              options=["the group's mean reward", "a reward model", "the KL term"], answer=0,
    ...              explain="Each prompt's group of completions is its own baseline.")
    >>> Quiz([q]).grade([0])
    (1, 1)
    >>> feedback(q, 2).startswith("❌")
    True
"""

from __future__ import annotations

import dataclasses
import html
from typing import Sequence

from grpo_helpers.errors import CourseError


@dataclasses.dataclass(frozen=True)
class Question:
    """One question: the text, the options, the index of the right option and why it is right."""

    text: str
    options: Sequence[str]
    answer: int
    explain: str = ""

    def __post_init__(self):
        if not 0 <= self.answer < len(self.options):
            raise CourseError(f"Question {self.text[:40]!r}: answer={self.answer} but there are {len(self.options)} options.",
                              fix="answer is the 0-based index of the right option.")


def feedback(question: Question, choice: int) -> str:
    """The line shown after picking option ``choice`` (0-based)."""
    if choice == question.answer:
        return f"✅ Right. {question.explain}".strip()
    return f"❌ Not quite: \"{question.options[choice]}\" is not it. Try again."


class Quiz:
    """A quiz that renders as widgets where they run and as static HTML elsewhere."""

    def __init__(self, questions: Sequence[Question], title: str = "Quiz"):
        if not questions:
            raise CourseError("A quiz needs at least one question.", fix="Pass a list of Question(...).")
        self.questions, self.title = list(questions), title
        self._widget = None

    def grade(self, choices: Sequence[int | None]) -> tuple[int, int]:
        """(right answers, questions) for a list of chosen option indexes (None: unanswered)."""
        right = sum(1 for q, c in zip(self.questions, choices) if c == q.answer)
        return right, len(self.questions)

    def to_html(self) -> str:
        """Static version: questions with options, the answer folded into a <details> element."""
        parts = [f"<div class='grpo-quiz'><h4>{html.escape(self.title)}</h4><ol>"]
        for q in self.questions:
            options = "".join(f"<li>{html.escape(o)}</li>" for o in q.options)
            parts.append(f"<li><p>{html.escape(q.text)}</p><ol type='a'>{options}</ol>"
                         f"<details><summary>Show the answer</summary><p><b>{html.escape(q.options[q.answer])}</b>. "
                         f"{html.escape(q.explain)}</p></details></li>")
        parts.append("</ol></div>")
        return "".join(parts)

    def widget(self):
        """The interactive form (built once): radio buttons, per-question feedback, a score line."""
        if self._widget is not None:
            return self._widget
        import ipywidgets as w

        score = w.HTML()
        chosen: list[int | None] = [None] * len(self.questions)

        def update_score() -> None:
            right, total = self.grade(chosen)
            answered = sum(c is not None for c in chosen)
            score.value = f"<b>Score: {right} / {total}</b>" + ("" if answered == total else f" ({answered} answered)")

        rows = [w.HTML(f"<h4>{html.escape(self.title)}</h4>")]
        for i, q in enumerate(self.questions):
            radio = w.RadioButtons(options=list(q.options), value=None, layout=w.Layout(width="max-content"))
            note = w.HTML()

            def on_pick(change, i=i, q=q, note=note) -> None:
                if change["new"] is None:
                    return
                chosen[i] = list(q.options).index(change["new"])
                note.value = html.escape(feedback(q, chosen[i]))
                update_score()

            radio.observe(on_pick, names="value")
            rows += [w.HTML(f"<p><b>{i + 1}.</b> {html.escape(q.text)}</p>"), radio, note]
        update_score()
        self._widget = w.VBox([*rows, score])
        return self._widget

    def _repr_mimebundle_(self, **kwargs):
        bundle = {"text/html": self.to_html(), "text/plain": f"{self.title}: {len(self.questions)} questions"}
        try:
            widget_bundle = self.widget()._repr_mimebundle_(**kwargs) or {}
        except ImportError:  # no ipywidgets: the static quiz still works
            widget_bundle = {}
        bundle.update({k: v for k, v in widget_bundle.items() if k != "text/plain"})
        return bundle


def quiz(questions: Sequence[Question], title: str = "Quiz") -> Quiz:
    """Build a quiz; end a cell on it to show it.

    Example:
        >>> quiz([Question("2 + 2?", ["3", "4"], answer=1)]).grade([1])
        (1, 1)
    """
    return Quiz(questions, title)
