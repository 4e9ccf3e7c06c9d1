"""The reward-design challenge: the pool, the metrics, the baselines, and hostile submissions that must never crash it."""

import math
import textwrap
import time

import numpy as np
import pytest

from grpo_helpers import challenge as C
from grpo_helpers import rewards as R
from grpo_helpers.challenge_view import LeaderboardView, hack_example
from grpo_helpers.errors import CourseError
from grpo_helpers.sandbox import run_isolated

TIMEOUT = 3.0  # seconds per submission in these tests (a real one takes well under 1 s on the whole pool)


@pytest.fixture(scope="module")
def pool():
    return C.load_pool()


# --- the pool ---------------------------------------------------------------------------------------------------


def test_pool_holds_real_labelled_smollm2_completions_and_every_hack(pool):
    summary = C.pool_summary(pool)
    assert summary["questions"] >= 12 and summary["wrong"] >= 60, summary
    assert pool[0].answer == "7" and [e.name for e in pool[0].entries if e.kind == "hack"][:len(R.HACKS)] == \
        [h.name for h in R.HACKS]
    for q in pool[1:]:
        names = [e.name for e in q.entries]
        assert names[:2] == ["gsm8k_solution", "slipped_answer"] and "smollm2" in names
        assert {h.name for h in R.HACKS} | set(C.PROBES) <= set(names)


def test_pool_labels_agree_with_the_course_checker(pool):
    """Every 'correct' completion is paid by correctness_reward and no 'wrong' one is (the cached labels stay true)."""
    for q in pool:
        for e in q.entries:
            if e.kind in ("correct", "wrong"):
                paid = R.correctness_reward(completions=[e.text], answer=[q.answer])[0]
                assert (paid > 0) == (e.kind == "correct"), (q.answer, e.name, e.text[:120])


def test_hack_entries_build_the_known_hacks_for_any_answer():
    hacks = {e.name: e.text for e in C.hack_entries("1,000", "250 * 4 = 1000")}
    assert hacks["bare_number"] == "1,000"
    assert "999 or 1,000 or 1001" in hacks["hedging"]
    assert R.extract_answer(hacks["empty_answer"]) == "" and "250 * 4" in hacks["empty_answer"]
    assert hacks["tag_spam"].count("<answer>") == 9


# --- metrics ----------------------------------------------------------------------------------------------------


def test_constant_reward_scores_one_half_and_every_hack_beats_it(pool):
    row = C.score_rewards("constant", pool, [[1.0] * len(q.entries) for q in pool])
    assert row.score == 0.5 and row.correct_vs_wrong == row.correct_vs_hacks == row.honest_wrong_vs_hacks == 0.5
    assert row.beaten_by == list(dict.fromkeys(e.name for q in pool for e in q.entries if e.kind == "hack"))


def test_a_perfect_oracle_scores_one(pool):
    oracle = [[{"correct": 2.0, "wrong": 1.0, "hack": 0.0}[e.kind] for e in q.entries] for q in pool]
    row = C.score_rewards("oracle", pool, oracle)
    assert (row.score, row.beaten_by, row.honest_pay) == (1.0, [], 2.0)
    assert row.hack_pay["tag_spam"] == 0.0


def test_check_values_range_and_types():
    assert C.check_values(np.array([0.5, 1]), 2) == [0.5, 1.0]
    for bad, message in [([None, 1.0], "None for completion 0; a reward used alone"), ([1.0, math.inf], "range: inf"),
                         ([1e9, 0.0], "range: 1e+09"), ("ab", "str, not a list"), ([1.0], "1 values for 2")]:
        with pytest.raises(CourseError) as err:
            C.check_values(bad, 2)
        assert message in str(err.value)


# --- baselines and the board --------------------------------------------------------------------------------------


def test_course_rewards_beat_every_hack_and_the_seed_and_naive_rewards_do_not(pool):
    board = C.leaderboard(C.BASELINES, pool, timeout=60)
    print("\n" + board.table())
    assert [r.name for r in board.rows] == ["course rewards", "format only", "seed rewards", "answer anywhere"]
    course, format_only, seed, naive = board.rows
    assert course.error is None and course.beaten_by == [] and course.score == 1.0
    assert format_only.beaten_by == ["hedging"] and format_only.correct_vs_wrong < 1.0  # blind to the slipped answer
    assert seed.beaten_by == ["one_line_spam"] and seed.honest_wrong_vs_hacks < 0.5
    assert {"hedging", "tag_spam", "bare_number"} <= set(naive.beaten_by)
    assert course.hack_pay["hedging"] < course.honest_pay and naive.hack_pay["hedging"] == naive.honest_pay


def test_board_html_and_widget_highlight_which_hack_beats_which_submission(pool):
    board = C.leaderboard({"course": C.course_rewards, "naive": C.answer_anywhere_reward, "<b>x</b>": "not callable"},
                          pool, timeout=30)
    html = board.to_html(highlight="hedging")
    assert html.count("grpo-challenge-beaten") == 1 and "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "grpo-challenge-error" in html
    view = LeaderboardView(board, hack="hedging")
    assert "beats <b>naive</b>" in view.about.value
    view.hack.value = "empty_template"
    assert "beats no submission" in view.about.value and "grpo-challenge-beaten" not in view.table.value
    text, why = hack_example(board, "many_answers")
    assert text.count("<answer>") == 3 and "last one" in why
    assert "<td" in board.beats_html()


def test_plot_draws_the_beat_matrix(pool):
    board = C.leaderboard({"naive": C.answer_anywhere_reward}, pool, timeout=30)
    fig = board.plot()
    assert fig.axes[0].images and fig.axes[0].get_yticklabels()[0].get_text() == "naive"


# --- hostile and broken submissions -------------------------------------------------------------------------------


def _sleepy(prompts, completions, **kw):
    import time as t

    t.sleep(0.3)  # per call: passes the 2 validation calls, but ~17 question groups take over TIMEOUT
    return [0.0] * len(completions)


def _hostile():
    """name -> (reward, expected error fragment)."""

    def raise_on_real_pool(prompts, completions, answer, **kw):
        if len(completions) > 2:
            raise KeyError("surprise")
        return [0.0] * len(completions)

    def returns_nan(completions, **kw):
        return [float("nan")] * len(completions)

    def returns_huge(completions, **kw):
        return [1e12] * len(completions)

    def returns_none(completions, **kw):
        return [None] * len(completions)

    def returns_two(completions, **kw):
        return [1.0, 0.0]

    def returns_text(completions, **kw):
        return "1.0"

    def returns_generator(completions, **kw):
        return (1.0 for _ in completions)

    def loops_forever(completions, **kw):
        while True:
            pass

    def exits(completions, **kw):
        import sys

        sys.exit(0)

    def hard_exits(completions, **kw):
        import os

        os._exit(3)

    def eats_memory(completions, **kw):
        hog = bytearray(64 * 2**30)  # far over the sandbox's memory cap
        return [float(len(hog))] * len(completions)

    def positional_only(completions, /):
        return [0.0] * len(completions)

    def needs_unknown_column(completions, difficulty, **kw):
        return [0.0] * len(completions)

    return {
        "raise_on_real_pool": (raise_on_real_pool, "raised: KeyError: 'surprise'"),
        "returns_nan": (returns_nan, "range: nan"),
        "returns_huge": (returns_huge, "range: 1e+12"),
        "returns_none": (returns_none, "returned: None for completion 0"),
        "returns_two": (returns_two, "returned: 2 values for"),
        "returns_text": (returns_text, "signature: Reward function 'returns_text' returned str, not a list."),
        "returns_generator": (returns_generator, "signature: Reward function 'returns_generator' returned generator"),
        "loops_forever": (loops_forever, "timeout: still running after 3 s"),
        "sleeps_per_group": (_sleepy, "timeout"),
        "exits": (exits, "SystemExit"),
        "hard_exits": (hard_exits, "crashed: the process ended (exit code 3)"),
        "eats_memory": (eats_memory, "MemoryError"),
        "positional_only": (positional_only, "positional-only"),
        "needs_unknown_column": (needs_unknown_column, "requires the argument 'difficulty'"),
        "not_callable": (42, "load: int is not a function"),
    }


def test_hostile_submissions_get_one_clear_error_row_each_and_never_crash_the_board(pool):
    hostile = _hostile()
    submissions = {"course rewards": C.course_rewards, **{k: f for k, (f, _) in hostile.items()}}
    start = time.perf_counter()
    board = C.leaderboard(submissions, pool, timeout=TIMEOUT)
    print(f"\n{len(submissions)} submissions scored in {time.perf_counter() - start:.1f} s\n{board.table()}")
    assert board.rows[0].name == "course rewards" and board.rows[0].error is None
    for name, (_, expected) in hostile.items():
        row = board.row(name)
        assert row.error is not None and expected in row.error, (name, row.error)
        assert "\n" not in row.error and len(row.error) < 400
    assert board.table().count("ERROR") == len(hostile)


def test_a_submission_that_patches_the_course_code_cannot_change_the_next_one(pool):
    def saboteur(completions, **kw):
        from grpo_helpers import rewards

        rewards.correctness_reward = lambda *a, **k: [100.0] * len(k["completions"])
        rewards.HACKS.clear()
        return [0.0] * len(completions)

    def mutates_its_input(prompts, completions, answer, **kw):
        n = len(completions)
        completions.clear()
        answer[:] = ["0"] * len(answer)
        return [0.0] * n

    board = C.leaderboard({"saboteur": saboteur, "mutator": mutates_its_input, "course": C.course_rewards}, pool,
                          timeout=30)
    alone = C.leaderboard({"course": C.course_rewards}, pool, timeout=30)
    assert board.row("course").score == alone.row("course").score and board.row("course").error is None
    assert R.HACKS and R.correctness_reward(completions=["<answer>7</answer>"], answer=["7"]) == [2.0]


def test_file_submissions_load_inside_the_sandbox(tmp_path, pool):
    """Files run in the sandbox process under the policy (tests/test_sandbox_hostile.py: the attacks)."""
    (tmp_path / "good.py").write_text(textwrap.dedent("""
        from grpo_helpers.challenge import course_rewards

        def reward(prompts, completions, answer, **kwargs):
            return course_rewards(prompts, completions, answer, **kwargs)
    """))
    (tmp_path / "named.py").write_text("def my_reward(completions, **kw):\n    return [1.0] * len(completions)\n")
    (tmp_path / "syntax.py").write_text("def reward(:\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "exits_on_import.py").write_text("import os\nos._exit(5)\n")
    (tmp_path / "raises_on_import.py").write_text("raise SystemExit(5)\n")
    (tmp_path / "prints.py").write_text("print('x' * 10_000_000)\ndef reward(completions, **kw):\n"
                                        "    print('debug', len(completions))\n    return [0.0] * len(completions)\n")
    (tmp_path / "_helper.py").write_text("raise RuntimeError('not a submission')\n")
    board = C.leaderboard(tmp_path, pool, timeout=30)
    assert [r.name for r in board.rows][:1] == ["good"]
    assert board.row("good").beaten_by == [] and board.row("named").score == 0.5
    assert board.row("syntax").error.startswith("load: syntax error line 1")
    assert board.row("empty").error == "load: empty.py defines no function named reward"
    assert board.row("exits_on_import").error == "refused: import of os"  # a file is someone else's code
    assert board.row("raises_on_import").error == "raised: SystemExit: 5"
    assert board.row("prints").error is None and "debug" in board.row("prints").printed  # output kept short, not shown
    assert "_helper" not in [r.name for r in board.rows]


def test_missing_submission_folder_is_a_course_error(tmp_path):
    with pytest.raises(CourseError, match="is not a folder of submissions"):
        C.leaderboard(tmp_path / "nope")


def test_sandbox_returns_values_and_reports_errors():
    assert run_isolated(lambda: {"a": [1, 2]}).value == {"a": [1, 2]}
    assert run_isolated(lambda: object()).error.startswith("raised: TypeError: Object of type object")
    slow = run_isolated(lambda: time.sleep(30), timeout=0.5)
    assert slow.error.startswith("timeout: still running after 0.5 s") and slow.seconds < 5


def test_doctests():
    import doctest

    from grpo_helpers import challenge_view, sandbox

    for module in (C, sandbox, challenge_view):
        failures, tried = doctest.testmod(module)
        assert tried > 0 and failures == 0, module.__name__


def test_host_command_prints_the_board_for_a_folder(tmp_path, capsys):
    (tmp_path / "ada.py").write_text("def reward(completions, **kw):\n    return [0.0] * len(completions)\n")
    assert C.main([str(tmp_path), "--baselines", "--timeout", "30", "--html", str(tmp_path / "board.html")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sandbox: ")  # files on the board: first, what protects this machine from them
    assert out[2].split()[:2] == ["1", "course"] and any(" ada " in line for line in out)
    assert "grpo-challenge-beats" in (tmp_path / "board.html").read_text()
