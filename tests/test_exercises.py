"""Exercise checks: a verdict line for right, wrong and not-yet-done answers, never an exception."""

import torch

from grpo_helpers.exercises import check, check_close


def test_check_says_correct_wrong_and_not_done(capsys):
    assert check("ex", 4, expected=4)
    assert not check("ex", 5, expected=4, hint="count again")
    assert not check("ex", ..., expected=4)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✅ ex: correct"
    assert out[1] == "❌ ex: got 5, expected 4"
    assert out[2] == "   Hint: count again"
    assert out[3].startswith("⏳ ex: not done yet")


def test_predicate_message_and_crash_are_reported(capsys):
    assert not check("ex", 3, predicate=lambda x: "" if x > 3 else "must be larger than 3")
    assert not check("ex", "text", predicate=lambda x: x + 1 > 0)
    out = capsys.readouterr().out
    assert "❌ ex: must be larger than 3" in out
    assert "could not check this answer (TypeError" in out


def test_check_close_names_the_worst_entry_and_shape(capsys):
    assert check_close("adv", torch.tensor([1.0, -1.0]), [1.0, -1.0 + 1e-7])
    assert not check_close("adv", torch.tensor([1.0, 0.0, 3.0]), torch.tensor([1.0, 0.5, 3.0]))
    assert not check_close("adv", torch.zeros(2, 3), torch.zeros(3, 2))
    assert not check_close("adv", [1.0], [1.0, 2.0])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✅ adv: correct"
    assert out[1].startswith("❌ adv: largest difference 0.5 at index 1")
    assert out[2] == "❌ adv: shape (2, 3), expected (3, 2)"
    assert out[3] == "❌ adv: 1 values, expected 2"


def test_answers_that_cannot_be_compared_or_that_raise_get_a_verdict(capsys):
    import numpy as np

    from grpo_helpers.exercises import Failed, attempt

    assert not check("ex", np.array([1, 2]), expected=[1, 2])  # "truth value of an array is ambiguous"
    assert not check("ex", "x" * 100_000, expected="y")
    failed = attempt(lambda: [len(t) for t in (None, "a")])
    assert isinstance(failed, Failed) and failed.reason.startswith("your code raised TypeError")
    assert not check("ex", failed, expected=[1]) and not check_close("ex", failed, [1.0])
    assert attempt(lambda: ["7", ...]) is ...
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("❌ ex: a ndarray cannot be compared with the expected list (ValueError)")
    assert len(out[1]) < 700 and out[1].endswith("(100,002 characters), expected 'y'")
    assert out[2] == "❌ ex: your code raised TypeError: object of type 'NoneType' has no len()"
