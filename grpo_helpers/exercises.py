"""Self-checking exercises: a check cell says "correct" or exactly what differs, never a bare assertion error.

Every notebook's exercises follow one pattern: a starter cell the learner fills in (it runs as shipped, with
``...`` or ``None`` as the placeholder), then a check cell. The solutions notebooks run the same check cells with
the answers filled in, and CI runs both.

A check never raises on a learner's answer, whatever its type or size: an answer it cannot compare, or a predicate
that raises, is a ❌ with the reason (``tests/test_exercise_checks.py`` runs every notebook's check cells on hostile
answers: empty strings, None, huge or unicode text, the wrong type).

Example:
    >>> check("exercise 1", 4, expected=4)
    ✅ exercise 1: correct
    True
    >>> check("exercise 2", ..., expected=4)
    ⏳ exercise 2: not done yet (replace the ... in the starter cell)
    False
    >>> check_close("exercise 3", [0.5, 1.0], [0.5, 1.2], atol=1e-3)
    ❌ exercise 3: largest difference 0.2 at index 1 (got 1, expected 1.2; tolerance 0.001)
    False
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

PASS, FAIL, TODO = "✅", "❌", "⏳"
SHOWN_CHARS = 300  # a learner's answer is quoted at most this long in a verdict (a huge string must not flood the cell)


@dataclasses.dataclass(frozen=True)
class Failed:
    """What :func:`attempt` returns when the learner's code raised: :func:`check` reports it as ❌ with the reason."""

    reason: str


def attempt(compute: Callable[[], Any]) -> Any:
    """``compute()``, the learner's code run for a check; a :class:`Failed` with the reason if it raises.

    A result that is, or (for a list or tuple) holds, the starter's ``...`` comes back as ``...``: not done yet.

    Example:
        >>> attempt(lambda: [1, 2]), attempt(lambda: [1, ...]), attempt(lambda: 1 / 0)
        ([1, 2], Ellipsis, Failed(reason='your code raised ZeroDivisionError: division by zero'))
    """
    try:
        value = compute()
    except Exception as err:  # noqa: BLE001 - the learner's code, whatever it raises, gets a verdict
        return Failed(f"your code raised {type(err).__name__}: {str(err)[:SHOWN_CHARS]}")
    if isinstance(value, (list, tuple)) and any(v is ... for v in value):
        return ...
    return value


def _not_done(value: Any) -> bool:
    return value is ... or value is None


def shown(value: Any) -> str:
    """``repr(value)``, cut to ``SHOWN_CHARS``; never raises, even for an object whose ``__repr__`` does.

    Example:
        >>> shown("x" * 1000)[-22:]
        '... (1,002 characters)'
    """
    try:
        text = repr(value)
    except Exception as err:  # noqa: BLE001 - an answer's broken __repr__ must not break the check
        text = f"<{type(value).__name__} whose repr raised {type(err).__name__}>"
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


def _say(mark: str, name: str, text: str, hint: str = "") -> None:
    print(f"{mark} {name}: {text}" + (f"\n   Hint: {hint}" if hint and mark == FAIL else ""))


def check(name: str, got: Any, expected: Any = None, *, predicate: Callable[[Any], bool | str] | None = None,
          hint: str = "") -> bool:
    """Compare a learner's answer with ``expected`` (or test it with ``predicate``) and print the verdict.

    ``predicate`` may return ``True``/``False`` or a string that explains what is wrong (empty string: correct).
    Returns whether the answer is correct, so a solutions notebook can ``assert check(...)``.

    Example:
        >>> check("sum", 3, predicate=lambda x: "" if x == 3 else "should be 3")
        ✅ sum: correct
        True
    """
    if isinstance(got, Failed):
        _say(FAIL, name, got.reason, hint)
        return False
    if _not_done(got):
        _say(TODO, name, "not done yet (replace the ... in the starter cell)")
        return False
    if predicate is not None:
        try:
            verdict = predicate(got)
        except Exception as err:  # noqa: BLE001 - a predicate that raises is a bug of the check; tests catch it
            _say(FAIL, name, f"could not check this answer ({type(err).__name__}: {str(err)[:SHOWN_CHARS]})", hint)
            return False
        if verdict is True or (isinstance(verdict, str) and verdict == ""):
            _say(PASS, name, "correct")
            return True
        text = verdict if isinstance(verdict, str) else "not what was asked"
        _say(FAIL, name, text if len(text) <= 3 * SHOWN_CHARS else text[:3 * SHOWN_CHARS] + "...", hint)
        return False
    try:
        equal = bool(got == expected)
    except Exception as err:  # noqa: BLE001 - e.g. an array compared with a list: "truth value is ambiguous"
        _say(FAIL, name, f"a {type(got).__name__} cannot be compared with the expected {type(expected).__name__} "
                         f"({type(err).__name__}); expected {shown(expected)}", hint)
        return False
    if equal:
        _say(PASS, name, "correct")
        return True
    _say(FAIL, name, f"got {shown(got)}, expected {shown(expected)}", hint)
    return False


def _as_float_list(value: Any) -> list[float]:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().flatten().tolist()
    elif hasattr(value, "tolist"):  # numpy array
        value = value.flatten().tolist() if hasattr(value, "flatten") else value.tolist()
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]


def _shape(value: Any) -> tuple | None:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else None


def check_close(name: str, got: Any, expected: Any, *, atol: float = 1e-5, hint: str = "") -> bool:
    """Compare numbers, lists or tensors within ``atol``; on a mismatch say where and by how much.

    Example:
        >>> import torch
        >>> check_close("advantages", torch.tensor([1.0, -1.0]), torch.tensor([1.0, -1.0]))
        ✅ advantages: correct
        True
    """
    if isinstance(got, Failed):
        _say(FAIL, name, got.reason, hint)
        return False
    if _not_done(got):
        _say(TODO, name, "not done yet (replace the ... in the starter cell)")
        return False
    got_shape, want_shape = _shape(got), _shape(expected)
    if got_shape is not None and want_shape is not None and got_shape != want_shape:
        _say(FAIL, name, f"shape {got_shape}, expected {want_shape}", hint)
        return False
    try:
        a, b = _as_float_list(got), _as_float_list(expected)
    except Exception as err:  # noqa: BLE001 - strings, dicts, nested lists, objects: say what came instead
        _say(FAIL, name, f"expected numbers, got {type(got).__name__} {shown(got)} ({type(err).__name__})", hint)
        return False
    if len(a) != len(b):
        _say(FAIL, name, f"{len(a)} values, expected {len(b)}", hint)
        return False
    diffs = [abs(x - y) if x == x and y == y else (0.0 if x != x and y != y else float("inf")) for x, y in zip(a, b)]
    worst = max(range(len(diffs)), key=diffs.__getitem__) if diffs else 0
    if not diffs or diffs[worst] <= atol:
        _say(PASS, name, "correct")
        return True
    where = f" at index {worst}" if len(a) > 1 else ""
    _say(FAIL, name, f"largest difference {diffs[worst]:.3g}{where} (got {a[worst]:.6g}, expected {b[worst]:.6g}; "
                     f"tolerance {atol:g})", hint)
    return False
