"""The reward-design challenge: score participants' reward functions in seconds, without training.

Each participant writes one reward function with TRL's signature, in a notebook cell or in a file
``submissions/NAME.py`` that defines ``reward(prompts, completions, answer, **kwargs)``. :func:`leaderboard` runs
every submission, each isolated in its own process with a time limit (:mod:`grpo_helpers.sandbox`: a file is someone
else's code, so it passes a static policy first and runs in the sandbox process, in bubblewrap where Linux allows),
on a fixed pool of completions grouped by question, as GRPO compares them:

* ``correct``: GSM8K's own worked solutions in the course format, and ``rewards.HONEST_RIGHT``;
* ``wrong``: real SmolLM2-135M completions labelled by the course checker (package data made by
  ``scripts/make_challenge_pool.py``), each worked solution with its final answer off by one (honest work, a slip),
  and ``rewards.HONEST_WRONG``;
* ``hack``: ``rewards.HACKS`` and the same hacks rebuilt for every question, plus three probes: an **empty answer**
  after real reasoning, **tag spam**, and **hedging** (several answers in one).

A submission scores the fraction of same-question pairs it orders right (ties count half): correct above wrong,
correct above hacks, and honest wrong work above hacks (with a tiny model nothing is correct, so GRPO learns only from
that last order); the score is their mean, 1.0 at best, 0.5 for a constant reward. A hack *beats* a submission
when it is paid at least as much as the honest correct answer on at least half the questions. Broken submissions
(signature, exceptions, wrong types or lengths, NaN or out-of-range values, timeouts, crashes) get an error row.

Example:
    >>> board = leaderboard({"course rewards": course_rewards, "seed rewards": seed_rewards}, timeout=60)
    >>> [row.name for row in board.rows]
    ['course rewards', 'seed rewards']
    >>> board.row("seed rewards").beaten_by
    ['one_line_spam']
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import numbers
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from grpo_helpers import rewards as R
from grpo_helpers.errors import CourseError
from grpo_helpers import sandbox
from grpo_helpers.sandbox import Outcome, run_isolated

POOL_FILE = Path(__file__).parent / "data_files" / "challenge_pool.json"
PROBES = ("empty_answer", "tag_spam", "hedging")  # what a reward pays for these is shown in its own columns
MAX_ABS_REWARD = 100.0  # GRPO divides by the group's std so scale does not matter, but |r| > 100 is nearly always a bug
DEFAULT_TIMEOUT = 10.0  # seconds per submission for the whole pool (~250 completions)
BEATS_AT = 0.5  # a hack beats a submission when it ties or wins against honest correct work on >= half the questions
_TIE = 1e-9
HONEST_WRONG = ("honest_wrong", "slipped_answer")  # wrong entries that are honest, formatted work (a slip at the end)
# What a submitted file may import: the standard-library modules of sandbox.STDLIB_IMPORTS and the course helpers
# notebook 09 names (the course's rewards are allowed too: the starter reward calls strict_format_reward).
COURSE_HELPERS = ("completion_text", "completion_texts", "extract_answer", "answers_match", "parse_number",
                  "split_blocks", "has_reasoning", "xmlcount_reward", "soft_format_reward", "strict_format_reward",
                  "int_reward", "correctness_reward", "score_completions", "weighted_total", "REWARD_FUNCS",
                  "HONEST_RIGHT", "HONEST_WRONG")
SUBMISSION_IMPORTS: dict[str, tuple[str, ...] | None] = {
    **sandbox.STDLIB_IMPORTS, "grpo_helpers.rewards": COURSE_HELPERS, "grpo_helpers.challenge": ("course_rewards",)}
PRELOAD = ("math_verify", "sympy")  # parse_number's LaTeX fallback; imported before the lock-down, once per board


@dataclasses.dataclass(frozen=True)
class Entry:
    """One completion of the pool: ``kind`` is 'correct', 'wrong' or 'hack'; ``name`` says where it comes from."""

    kind: str
    name: str
    text: str


@dataclasses.dataclass(frozen=True)
class Question:
    """A question, its reference answer, and the completions a reward must order (one GRPO group)."""

    question: str
    answer: str
    entries: tuple[Entry, ...]


# ----------------------------------------------------------------------------------------------------------------
# The pool
# ----------------------------------------------------------------------------------------------------------------


def _near_answers(answer: str) -> tuple[str, str]:
    """Two wrong numbers next to ``answer`` (for hedging and guesses)."""
    value = R.parse_number(answer)
    if value is None:
        return "0", "1"
    fmt = (lambda x: str(int(x))) if float(value).is_integer() else (lambda x: f"{x:g}")
    return fmt(value - 1), fmt(value + 1)


def hack_entries(answer: str, reasoning: str) -> list[Entry]:
    """The known hacks rebuilt for one question (names as in ``rewards.HACKS``) plus the three probes.

    ``reasoning`` is honest work for the question; the probes reuse it so that only the answer block is gamed.

    Example:
        >>> [e.name for e in hack_entries("18", "9 * 2 = 18")][-3:]
        ['empty_answer', 'tag_spam', 'hedging']
    """
    below, above = _near_answers(answer)
    wrong_guess = "1" if R.parse_number(answer) == 0 else "0"
    hacks = {
        "empty_template": "<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n",
        "guess_without_reasoning": f"<reasoning>\n\n</reasoning>\n<answer>\n{wrong_guess}\n</answer>\n",
        "bare_number": answer,
        "many_answers": (f"<reasoning>\nGuess.\n</reasoning>\n<answer>\n{below}\n</answer>\n<answer>\n{above}\n"
                         f"</answer>\n<answer>\n{answer}\n</answer>\n"),
        "tag_soup": f"</answer>\n<answer>\n</reasoning>\n<reasoning>\n{answer}",
        "one_line_spam": f"<reasoning>x</reasoning><answer>{answer}</answer>" * 3,
        "empty_answer": f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n\n</answer>\n",
        "tag_spam": (f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>\n"
                     + f"<reasoning></reasoning><answer>{answer}</answer>\n" * 8),
        "hedging": f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{below} or {answer} or {above}\n</answer>\n",
    }
    return [Entry("hack", name, text) for name, text in hacks.items()]


def _reasoning_of(completion: str) -> str:
    blocks = R.split_blocks(completion)
    return blocks.reasoning.strip() if blocks is not None else completion


def _slipped(gold: str) -> str:
    """Honest work with a slip at the very end: the worked solution, its final answer off by one."""
    blocks = R.split_blocks(gold)
    wrong, _ = _near_answers(blocks.answer.strip())
    return f"<reasoning>\n{blocks.reasoning.strip()}\n</reasoning>\n<answer>\n{wrong}\n</answer>\n"


def _apples_question() -> Question:
    """The apples question of notebook 04: HONEST_RIGHT, HONEST_WRONG and the literal ``rewards.HACKS``."""
    probes = [e for e in hack_entries("7", _reasoning_of(R.HONEST_RIGHT.completion)) if e.name in PROBES]
    return Question("Tom has 3 apples and buys 4 more. How many apples does he have?", "7", (
        Entry("correct", "honest_right", R.HONEST_RIGHT.completion),
        Entry("wrong", "honest_wrong", R.HONEST_WRONG.completion),
        *[Entry("hack", h.name, h.completion) for h in R.HACKS], *probes))


@lru_cache(maxsize=4)
def load_pool(path: str | Path | None = None) -> tuple[Question, ...]:
    """The challenge pool: the apples question, then every question of the cached SmolLM2 pool.

    Example:
        >>> pool = load_pool()
        >>> {e.kind for e in pool[0].entries} == {"correct", "wrong", "hack"}, pool[1].entries[0].name
        (True, 'gsm8k_solution')
    """
    path = Path(path) if path is not None else POOL_FILE
    if not path.exists():
        raise CourseError(f"The challenge pool {path} is missing.",
                          fix="Reinstall grpo-helpers, or regenerate it: python scripts/make_challenge_pool.py")
    data = json.loads(path.read_text())
    questions = [_apples_question()]
    for q in data["questions"]:
        entries = [Entry("correct", "gsm8k_solution", q["gold"]), Entry("wrong", "slipped_answer", _slipped(q["gold"]))]
        entries += [Entry("correct" if c["correct"] else "wrong", "smollm2", c["text"]) for c in q["completions"]]
        entries += hack_entries(q["answer"], _reasoning_of(q["gold"]))
        questions.append(Question(q["question"], q["answer"], tuple(entries)))
    return tuple(questions)


def pool_summary(pool: Sequence[Question] | None = None) -> dict[str, int]:
    """How many completions of each kind the pool holds.

    Example:
        >>> pool_summary()["questions"] > 10
        True
    """
    pool = load_pool() if pool is None else pool
    out = {"questions": len(pool)}
    for kind in ("correct", "wrong", "hack"):
        out[kind] = sum(e.kind == kind for q in pool for e in q.entries)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Submissions
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Submission:
    """A participant's reward: a function (your own code), or a file defining ``reward`` (someone else's: it runs
    only under the sandbox's policy and, on the board, in its sandbox process)."""

    name: str
    func: Callable | None = None
    path: Path | None = None

    def load(self) -> Callable:
        """The reward function. A file passes the static policy first (a CourseError ``refused: …`` if not) and runs
        with the guarded builtins, in this process: the board runs files in the sandbox process instead."""
        if self.func is not None:
            return self.func
        path = Path(self.path)
        code, namespace = sandbox.prepare_restricted(path.read_text(), path.name, f"submission_{self.name}",
                                                     SUBMISSION_IMPORTS)
        exec(code, namespace)  # noqa: S102 - restricted participant code
        return _reward_in(namespace)


def _reward_in(namespace: Mapping[str, Any]) -> Callable:
    """``reward`` from a file's globals, or its one function whose name ends in ``reward``."""
    filename = Path(str(namespace.get("__file__", "submission.py"))).name
    if callable(namespace.get("reward")):
        return namespace["reward"]
    found = [v for k, v in namespace.items() if k.endswith("reward") and callable(v)
             and getattr(v, "__module__", None) == namespace["__name__"]]
    if len(found) != 1:
        raise CourseError(f"{filename} defines no function named reward",
                          fix="def reward(prompts, completions, answer, **kwargs) -> list[float]")
    return found[0]


def submissions_from(source: Mapping[str, Callable] | Iterable[Submission | Callable] | str | Path) -> list[Submission]:
    """Submissions from a dict ``{name: function}``, a list of functions/Submissions, or a folder of ``*.py`` files.

    Example:
        >>> [s.name for s in submissions_from({"mine": course_rewards})]
        ['mine']
    """
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise CourseError(f"{folder} is not a folder of submissions.", fix="mkdir submissions and save NAME.py files there.")
        return [Submission(p.stem, path=p) for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]
    if isinstance(source, Mapping):
        return [Submission(str(name), func=f) for name, f in source.items()]
    out = []
    for item in source:
        out.append(item if isinstance(item, Submission) else Submission(getattr(item, "__name__", repr(item)), func=item))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Running one submission (inside the isolated process)
# ----------------------------------------------------------------------------------------------------------------


def _batch(q: Question) -> dict[str, Any]:
    """Keywords as TRL passes them for one group of chat completions (a fresh copy per call: rewards may mutate it)."""
    n = len(q.entries)
    from grpo_helpers.data import SYSTEM_PROMPT

    return {"prompts": [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": q.question}]] * n,
            "completions": [[{"role": "assistant", "content": e.text}] for e in q.entries],
            "completion_ids": [list(range(max(1, len(e.text) // 4))) for e in q.entries],
            "answer": [q.answer] * n, "question": [q.question] * n, "prefill": [""] * n,
            "trainer_state": R._TrainerStateStub(), "log_extra": lambda *a, **k: None,
            "log_metric": lambda *a, **k: None}


def _as_float(value: Any, i: int) -> float:
    if value is None:  # TRL reads None as "not applicable"; a reward scored alone must score every completion
        raise CourseError(f"None for completion {i}; a reward used alone must give every completion a float")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        x = float(value)
    elif hasattr(value, "item") and tuple(getattr(value, "shape", (1,))) == ():
        x = float(value.item())  # a 0-d tensor or numpy scalar
    else:
        raise CourseError(f"{type(value).__name__} {str(value)[:40]!r} for completion {i}; need a float")
    if not math.isfinite(x):
        raise CourseError(f"range: {x} for completion {i}; rewards must be finite")
    if abs(x) > MAX_ABS_REWARD:
        raise CourseError(f"range: {x:g} for completion {i}; keep rewards within ±{MAX_ABS_REWARD:g}")
    return x


def check_values(values: Any, n: int) -> list[float]:
    """The range check: ``n`` finite floats within ±MAX_ABS_REWARD, else a CourseError naming the first bad one.

    Example:
        >>> check_values([0.5, 2], 2)
        [0.5, 2.0]
        >>> check_values([float("nan"), 1.0], 2)
        Traceback (most recent call last):
        ...
        grpo_helpers.errors.CourseError: range: nan for completion 0; rewards must be finite
    """
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise CourseError(f"{type(values).__name__}, not a list of floats")
    if len(values) != n:
        raise CourseError(f"{len(values)} values for {n} completions")
    return [_as_float(v, i) for i, v in enumerate(values)]


def _value_error(err: CourseError) -> str:
    return err.problem if err.problem.startswith("range:") else f"returned: {err.problem}"


def _score_in_child(submission: Submission, pool: Sequence[Question]) -> dict[str, Any]:
    """Load (your own function), then :func:`_score_func`."""
    try:
        func = submission.load()
    except CourseError as err:
        return {"error": err.problem if err.problem.startswith("refused:") else f"load: {err.problem}"}
    except SyntaxError as err:
        return {"error": f"load: syntax error line {err.lineno}: {err.msg}"}
    return _score_func(func, pool)


def _score_func(func: Any, pool: Sequence[Question]) -> dict[str, Any]:
    """Check the signature the way TRL calls rewards, then reward every question's group."""
    if not callable(func):
        return {"error": f"load: {type(func).__name__} is not a function"}
    for batch in (None, R.make_sample_batch(conversational=False, prefill="<reasoning>\n")):
        try:
            R.validate_reward_funcs([func], batch)
        except CourseError as err:
            return {"error": "signature: " + " ".join(err.problem.split())[:300]}
    rewards = []
    for q in pool:
        try:
            rewards.append(check_values(func(**_batch(q)), len(q.entries)))
        except CourseError as err:
            return {"error": _value_error(err)}
    return {"rewards": rewards}


def _pool_payload(pool: Sequence[Question]) -> list[dict[str, Any]]:
    return [{"question": q.question, "answer": q.answer, "entries": [[e.kind, e.name, e.text] for e in q.entries]}
            for q in pool]


def _file_job(payload: list[dict[str, Any]]) -> Callable[[dict], dict[str, Any]]:
    """Entry of the sandbox process (trusted, before any file runs): the pool, then, per file, its reward scored."""
    from grpo_helpers.data import SYSTEM_PROMPT  # noqa: F401 - imported now: after the lock-down nothing can be

    pool = tuple(Question(q["question"], q["answer"], tuple(Entry(*e) for e in q["entries"])) for q in payload)

    def run(namespace: dict) -> dict[str, Any]:
        try:
            func = _reward_in(namespace)
        except CourseError as err:
            return {"error": f"load: {err.problem}"}
        return _score_func(func, pool)

    return run


# ----------------------------------------------------------------------------------------------------------------
# Metrics and the board
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One submission's result. ``error`` is None when it ran; then the scores are filled in."""

    name: str
    score: float = float("nan")
    correct_vs_wrong: float = float("nan")
    correct_vs_hacks: float = float("nan")
    honest_wrong_vs_hacks: float = float("nan")
    honest_pay: float = float("nan")  # mean reward of the correct completions
    hack_pay: dict[str, float] = dataclasses.field(default_factory=dict)  # mean reward per hack name
    beat_rate: dict[str, float] = dataclasses.field(default_factory=dict)  # share of questions a hack ties or wins
    error: str | None = None
    seconds: float = 0.0
    printed: str = ""

    @property
    def beaten_by(self) -> list[str]:
        """Hacks paid at least as much as honest correct work on at least half the questions."""
        return [h for h, rate in self.beat_rate.items() if rate >= BEATS_AT]


def _pair_score(a: float, b: float) -> float:
    return 1.0 if a > b + _TIE else 0.5 if abs(a - b) <= _TIE else 0.0


def score_rewards(name: str, pool: Sequence[Question], rewards: Sequence[Sequence[float]]) -> Row:
    """Metrics for one submission from its rewards (one list per question, aligned with the entries).

    Example:
        >>> pool = load_pool()
        >>> row = score_rewards("constant", pool, [[1.0] * len(q.entries) for q in pool])
        >>> row.score, row.beaten_by[:2]
        (0.5, ['empty_template', 'guess_without_reasoning'])
    """
    vs_wrong, vs_hacks, wrong_vs_hacks, honest = [], [], [], []
    per_hack: dict[str, list[float]] = {}
    beats: dict[str, list[float]] = {}
    for q, values in zip(pool, rewards):
        kinds = {k: [(e, v) for e, v in zip(q.entries, values) if e.kind == k] for k in ("correct", "wrong", "hack")}
        honest += [v for _, v in kinds["correct"]]
        vs_wrong += [_pair_score(c, w) for _, c in kinds["correct"] for _, w in kinds["wrong"]]
        for e, h in kinds["hack"]:
            per_hack.setdefault(e.name, []).append(h)
            pairs = [_pair_score(c, h) for _, c in kinds["correct"]]
            vs_hacks += pairs
            wrong_vs_hacks += [_pair_score(w, h) for e_w, w in kinds["wrong"] if e_w.name in HONEST_WRONG]
            beats.setdefault(e.name, []).append(float(sum(p < 1.0 for p in pairs) >= len(pairs) / 2))
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    row = Row(name, correct_vs_wrong=mean(vs_wrong), correct_vs_hacks=mean(vs_hacks),
              honest_wrong_vs_hacks=mean(wrong_vs_hacks), honest_pay=mean(honest),
              hack_pay={h: mean(v) for h, v in per_hack.items()}, beat_rate={h: mean(v) for h, v in beats.items()})
    row.score = (row.correct_vs_wrong + row.correct_vs_hacks + row.honest_wrong_vs_hacks) / 3
    return row


def _row_from(name: str, outcome: Outcome, pool: Sequence[Question]) -> Row:
    result = outcome.value if isinstance(outcome.value, dict) else {}
    error = outcome.error or result.get("error")
    if error is None:
        try:  # re-check in this process: the child is not trusted to have sent what it should
            rewards = [check_values(values, len(q.entries)) for q, values in zip(pool, result.get("rewards") or [])]
            if len(rewards) != len(pool):
                raise CourseError("no rewards")
        except CourseError as err:
            error = _value_error(err)
    if error is not None:
        return Row(name, error=" ".join(str(error).split())[:400], seconds=outcome.seconds, printed=outcome.printed)
    row = score_rewards(name, pool, rewards)
    row.seconds, row.printed = outcome.seconds, outcome.printed
    return row


def _score_files(submissions: Sequence[Submission], pool: Sequence[Question], timeout: float) -> list[Row]:
    """Every file in one sandbox process (each in its own child, as many at once as there are cores)."""
    files, unreadable = [], {}
    for s in submissions:
        try:
            files.append((Path(s.path).read_text(encoding="utf-8"), Path(s.path).name, s.name))
        except (OSError, UnicodeDecodeError) as err:
            unreadable[s.name] = f"load: cannot read {Path(s.path).name}: {type(err).__name__}"
    outcomes = iter(sandbox.run_untrusted_many(files, "grpo_helpers.challenge:_file_job", _pool_payload(pool),
                                               timeout, SUBMISSION_IMPORTS, PRELOAD))
    return [Row(s.name, error=unreadable[s.name]) if s.name in unreadable else _row_from(s.name, next(outcomes), pool)
            for s in submissions]


def score_submission(submission: Submission, pool: Sequence[Question] | None = None,
                     timeout: float = DEFAULT_TIMEOUT) -> Row:
    """Run one submission isolated (time limit ``timeout`` s) and score it; never raises for a broken submission.

    A function (your own code) runs in a forked child (:func:`sandbox.run_isolated`); a file (someone else's) runs
    under the sandbox's policy in its sandbox process (:func:`sandbox.run_untrusted_many`).

    Example:
        >>> print(score_submission(Submission("oops", func=lambda completions, **kw: 1 / 0)).error)
        signature: Reward function '<lambda>' raised ZeroDivisionError: division by zero when called as TRL calls it (chat messages).
    """
    pool = load_pool() if pool is None else tuple(pool)
    if submission.path is not None and submission.func is None:
        return _score_files([submission], pool, timeout)[0]
    return _row_from(submission.name, run_isolated(lambda: _score_in_child(submission, pool), timeout=timeout), pool)


@dataclasses.dataclass
class Leaderboard:
    """Every submission's :class:`Row`, best first (error rows last). Jupyter shows it as a table."""

    rows: list[Row]
    pool: tuple[Question, ...]
    sandbox: str | None = None  # what protects this machine from the files on the board (sandbox.Isolation.line)

    def row(self, name: str) -> Row:
        """The row of submission ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise CourseError(f"No submission named {name!r}.", fix=f"Use one of {[r.name for r in self.rows]}.")

    @property
    def hack_names(self) -> list[str]:
        return list(dict.fromkeys(e.name for q in self.pool for e in q.entries if e.kind == "hack"))

    def table(self) -> str:
        """The board as plain text (one line per submission; first, for files, the line on what protects you)."""
        lines = [self.sandbox] if self.sandbox else []
        lines += [f"{'#':>2}  {'submission':<22} {'score':>5}  {'c>w':>4}  {'c>hack':>6}  {'w>hack':>6}  {'honest':>6}  "
                 + "  ".join(f"{p:>12}" for p in PROBES) + "  beaten by / error"]
        for i, r in enumerate(self.rows, 1):
            if r.error:
                lines.append(f"{i:>2}  {r.name[:22]:<22} {'-':>5}  {'':>4}  {'':>6}  {'':>6}  {'':>6}  "
                             + "  ".join(f"{'':>12}" for _ in PROBES) + f"  ERROR {r.error}")
                continue
            lines.append(f"{i:>2}  {r.name[:22]:<22} {r.score:5.3f}  {r.correct_vs_wrong:4.2f}  {r.correct_vs_hacks:6.2f}"
                         f"  {r.honest_wrong_vs_hacks:6.2f}  {r.honest_pay:6.2f}  " + "  ".join(f"{r.hack_pay[p]:12.2f}" for p in PROBES)
                         + "  " + (", ".join(r.beaten_by) or "-"))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_html(self, highlight: str | None = None) -> str:
        """The sorted table as HTML; probe cells paid at least the honest answer are red; rows the ``highlight``
        hack beats are red too."""
        head = ("<tr><th>#</th><th>submission</th><th>score</th><th>correct &gt; wrong</th><th>correct &gt; hacks</th>"
                "<th>honest wrong &gt; hacks</th><th>pays honest correct</th>" + "".join(f"<th>pays {p.replace('_', ' ')}</th>" for p in PROBES)
                + (f"<th>pays {html.escape(highlight)}</th>" if highlight else "") + "<th>beaten by</th><th>s</th></tr>")
        body = []
        for i, r in enumerate(self.rows, 1):
            name = html.escape(r.name)
            if r.error:
                span = 6 + len(PROBES) + (1 if highlight else 0)
                body.append(f"<tr class='grpo-challenge-error'><td>{i}</td><td>{name}</td><td colspan='{span}' "
                            f"style='color:#a00'>error: {html.escape(r.error)}</td><td>{r.seconds:.1f}</td></tr>")
                continue
            red = "background:#f8d7da"
            probe_cells = "".join(f"<td style='{red if r.hack_pay[p] >= r.honest_pay - _TIE else ''}'>{r.hack_pay[p]:.2f}</td>"
                                  for p in PROBES)
            beaten = highlight is not None and highlight in r.beaten_by
            extra = f"<td style='{red if beaten else ''}'>{r.hack_pay.get(highlight, float('nan')):.2f}</td>" if highlight else ""
            body.append(f"<tr class='grpo-challenge-row{' grpo-challenge-beaten' if beaten else ''}' "
                        f"style='{red if beaten else ''}'><td>{i}</td><td>{name}</td><td><b>{r.score:.3f}</b></td>"
                        f"<td>{r.correct_vs_wrong:.2f}</td><td>{r.correct_vs_hacks:.2f}</td>"
                        f"<td>{r.honest_wrong_vs_hacks:.2f}</td><td>{r.honest_pay:.2f}</td>"
                        f"{probe_cells}{extra}<td>{html.escape(', '.join(r.beaten_by) or '-')}</td>"
                        f"<td>{r.seconds:.1f}</td></tr>")
        style = ("<style>.grpo-challenge {font-size: 0.85em} .grpo-challenge td, .grpo-challenge th {padding: 2px 6px; "
                 "text-align: left; vertical-align: top}</style>")
        # A wide table scrolls inside its own box, so it never overflows a notebook or a website column.
        note = f"<p class='grpo-challenge-sandbox'>{html.escape(self.sandbox)}</p>" if self.sandbox else ""
        return (f"{style}{note}<div style='overflow-x:auto'><table class='grpo-challenge'>{head}{''.join(body)}"
                "</table></div>")

    def _repr_html_(self) -> str:
        return self.to_html()

    def beats_html(self) -> str:
        """Which hack beats which submission: a grid of beat rates, red where the hack beats it."""
        hacks = self.hack_names
        head = "<tr><th>submission</th>" + "".join(f"<th>{html.escape(h)}</th>" for h in hacks) + "</tr>"
        body = []
        for r in self.rows:
            if r.error:
                continue
            cells = "".join(f"<td style='{'background:#f8d7da' if r.beat_rate[h] >= BEATS_AT else ''}'>"
                            f"{r.beat_rate[h]:.0%}</td>" for h in hacks)
            body.append(f"<tr><td>{html.escape(r.name)}</td>{cells}</tr>")
        return f"<div style='overflow-x:auto'><table class='grpo-challenge-beats'>{head}{''.join(body)}</table></div>"

    def plot(self):
        """A heat map of beat rates (submissions x hacks): the share of questions where the hack is paid at least as
        much as honest correct work. Returns the matplotlib Figure."""
        from grpo_helpers.plotting import new_figure

        rows = [r for r in self.rows if not r.error]
        hacks = self.hack_names
        fig, ax = new_figure(1, width=1.5 + 0.85 * len(hacks), height=1.4 + 0.45 * max(1, len(rows)))
        grid = [[r.beat_rate[h] for h in hacks] for r in rows] or [[0.0] * len(hacks)]
        image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(hacks)), [h.replace("_", "\n") for h in hacks], fontsize=8)
        ax.set_yticks(range(len(rows)), [r.name for r in rows], fontsize=9)
        for y, r in enumerate(rows):
            for x, h in enumerate(hacks):
                ax.text(x, y, f"{r.beat_rate[h]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if r.beat_rate[h] >= 0.6 else "black")
        ax.set_title("Which hack beats which reward (share of questions where it pays >= honest correct work)",
                     fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03)
        fig.tight_layout()
        return fig

    def view(self):
        """A widget: pick a hack, see its text and why it games rewards, and the rows it beats highlighted."""
        from grpo_helpers.challenge_view import LeaderboardView

        return LeaderboardView(self)


def leaderboard(submissions: Any, pool: Sequence[Question] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Leaderboard:
    """Score every submission (a dict name -> function, a list, or a folder of ``.py`` files) and sort them.

    Each has ``timeout`` seconds; a broken one becomes an error row, never an exception. Functions (your own code) run
    in forked children; files (other people's) pass the static policy and run in the sandbox process, and the board's
    first line says what protects this machine from them.
    """
    pool = load_pool() if pool is None else tuple(pool)
    entries = submissions_from(submissions)
    files = [s for s in entries if s.path is not None and s.func is None]
    by_name = {id(s): score_submission(s, pool, timeout) for s in entries if s not in files}
    by_name.update(zip(map(id, files), _score_files(files, pool, timeout)))
    rows = [by_name[id(s)] for s in entries]
    rows.sort(key=lambda r: (r.error is not None, -r.score if r.error is None else 0.0, r.name))
    return Leaderboard(rows, pool, sandbox=sandbox.isolation().line(timeout) if files else None)


# ----------------------------------------------------------------------------------------------------------------
# Baselines: the course's own rewards and two naive ones, to beat or to learn from
# ----------------------------------------------------------------------------------------------------------------


def course_rewards(prompts=None, completions=None, answer=None, **kwargs) -> list[float]:
    """The course's five fixed rewards summed with the seed's weights (all 1.0), as TRL would sum them."""
    scores = R.score_completions(completions, answer, kwargs.get("prefill"))
    return [R.weighted_total({k: v[i] for k, v in scores.items()}) for i in range(len(completions))]


def seed_rewards(prompts=None, completions=None, answer=None, **kwargs) -> list[float]:
    """The seed blog's five original rewards summed (they print samples; the leaderboard discards prints)."""
    from grpo_helpers import seed_rewards as S

    texts = R.completion_texts(completions, kwargs.get("prefill"))
    table = S.score_seed(texts, list(answer))
    return [sum(v[i] for v in table.values()) for i in range(len(texts))]


def answer_anywhere_reward(prompts=None, completions=None, answer=None, **kwargs) -> list[float]:
    """A naive reward: 1.0 when the reference number appears anywhere in the text. Hedging and spam love it."""
    texts = R.completion_texts(completions, kwargs.get("prefill"))
    return [1.0 if re.search(rf"(?<![\d.]){re.escape(str(a))}(?![\d])", t) else 0.0 for t, a in zip(texts, answer)]


def format_only_reward(prompts=None, completions=None, answer=None, **kwargs) -> list[float]:
    """The course's three format rewards alone: blind to whether the answer is right."""
    scores = R.score_completions(completions, answer, kwargs.get("prefill"),
                                 funcs=[R.xmlcount_reward, R.soft_format_reward, R.strict_format_reward])
    return [sum(v[i] for v in scores.values()) for i in range(len(completions))]


BASELINES: dict[str, Callable] = {"course rewards": course_rewards, "seed rewards": seed_rewards,
                                  "format only": format_only_reward, "answer anywhere": answer_anywhere_reward}


def main(argv: list[str] | None = None) -> int:
    """``python -m grpo_helpers.challenge submissions/``: the host's leaderboard in a terminal (``--html`` to a file)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m grpo_helpers.challenge", description=main.__doc__)
    parser.add_argument("folder", help="folder of submissions: NAME.py files that define reward(...)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per submission")
    parser.add_argument("--baselines", action="store_true", help="add the course's baselines to the board")
    parser.add_argument("--html", help="also write the table and the beat matrix to this HTML file")
    args = parser.parse_args(argv)
    entries = (submissions_from(BASELINES) if args.baselines else []) + submissions_from(args.folder)
    board = leaderboard(entries, timeout=args.timeout)
    print(board.table())
    if args.html:
        Path(args.html).write_text(f"<meta charset='utf-8'>{board.to_html()}<h3>Which hack beats which reward</h3>"
                                   f"{board.beats_html()}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
