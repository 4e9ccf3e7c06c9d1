"""One error type for mistakes a learner can fix, with the fix in the message.

Example:
    >>> str(CourseError("No GPU found.", fix="Use tiny mode."))
    'No GPU found.\\n  How to fix: Use tiny mode.'
"""

from __future__ import annotations


class CourseError(ValueError):
    """A problem with the learner's input or machine. The message says what happened and what to do."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem, self.fix = problem, fix
        super().__init__(problem if fix is None else f"{problem}\n  How to fix: {fix}")


def install_short_errors() -> bool:
    """In IPython/Jupyter, show a :class:`CourseError` as its message instead of a long traceback.

    Returns True when installed (inside IPython), False elsewhere.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False

    def _show(shell, etype, value, tb, tb_offset=None):
        print(f"{etype.__name__}: {value}")

    shell.set_custom_exc((CourseError,), _show)
    return True
