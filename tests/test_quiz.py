"""Quizzes: grading, feedback text, the widget's reaction to a pick, and the static HTML fallback."""

import pytest

from grpo_helpers.errors import CourseError
from grpo_helpers.quiz import Question, feedback, quiz

QUESTIONS = [
    Question("What is the baseline in GRPO?", ["the group mean", "a value model"], answer=0, explain="No critic."),
    Question("β = 0 means?", ["no KL term", "no clipping"], answer=0, explain="β weighs the KL penalty."),
]


def test_grade_and_feedback():
    q = quiz(QUESTIONS)
    assert q.grade([0, 1]) == (1, 2)
    assert q.grade([None, 0]) == (1, 2)
    assert feedback(QUESTIONS[0], 0) == "✅ Right. No critic."
    assert feedback(QUESTIONS[0], 1).startswith("❌ Not quite: \"a value model\"")


def test_widget_shows_feedback_and_score_after_a_pick():
    q = quiz(QUESTIONS, title="Check yourself")
    form = q.widget()
    radios = [c for c in form.children if c.__class__.__name__ == "RadioButtons"]
    notes = [form.children[form.children.index(r) + 1] for r in radios]
    assert form.children[-1].value.startswith("<b>Score: 0 / 2</b> (0 answered)")
    radios[0].value = "the group mean"
    radios[1].value = "no clipping"
    assert "✅ Right" in notes[0].value and "❌ Not quite" in notes[1].value
    assert form.children[-1].value == "<b>Score: 1 / 2</b>"


def test_static_html_fallback_folds_the_answers():
    bundle = quiz(QUESTIONS)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].count("<details>") == 2
    assert "<b>the group mean</b>" in bundle["text/html"]


def test_bad_question_is_a_clear_error():
    with pytest.raises(CourseError, match="answer=2 but there are 2 options"):
        Question("?", ["a", "b"], answer=2)
