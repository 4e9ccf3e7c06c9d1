"""What a learner sees: every notebook executed in a fresh kernel, its outputs read.

Figures must be pictures shown once, never the text ``<Figure size ...>``; no cell may raise or print a traceback.
The executed copies stay in build/notebooks/ (git-ignored): the course website is built from them.
"""

import shutil
from pathlib import Path

import nbformat
import pytest

from grpo_helpers.notebooks import course_notebooks, execute, output_problems, record_timings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "notebooks"
NOTEBOOKS = course_notebooks(ROOT / "notebooks")


def _nb(*cells_outputs):
    nb = nbformat.v4.new_notebook()
    for outputs in cells_outputs:
        cell = nbformat.v4.new_code_cell("x")
        cell.outputs = outputs
        nb.cells.append(cell)
    return nb


def test_output_problems_catch_figure_text_duplicates_and_tracebacks():
    png = nbformat.v4.new_output("display_data", {"image/png": "AAAA", "text/plain": "<Figure size 10x10 with 1 Axes>"})
    nb = _nb(
        [nbformat.v4.new_output("execute_result", {"text/plain": "<Figure size 840x320 with 2 Axes>"})],
        [png, png],
        [nbformat.v4.new_output("stream", text="Traceback (most recent call last):\n  ...\nValueError: bad\n")],
        [nbformat.v4.new_output("error", ename="KeyError", evalue="'x'", traceback=[])],
        [png],  # a picture whose plain-text twin names the figure is fine
    )
    assert output_problems(nb) == [
        "cell 1: a figure printed as text (<Figure size 840x320 with 2 Axes>) instead of an image",
        "cell 2: shows the same figure 2 times",
        "cell 3: printed a traceback or error (Traceback (most recent call last):)",
        "cell 4: raised KeyError: 'x'",
    ]


def test_course_figures_render_once_in_a_fresh_kernel(tmp_path):
    source = tmp_path / "figs.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from grpo_helpers import figures\nfigures.k3_figure()"),
        nbformat.v4.new_code_cell("from grpo_helpers.plotting import plot_reward_curves\n"
                                  "plot_reward_curves([{'step': s, 'reward': 0.1 * s, 'reward_std': 0.2} for s in range(1, 4)])"),
        nbformat.v4.new_code_cell("from grpo_helpers.plotting import plot_before_after\n"
                                  "plot_before_after({'accuracy': 0.1}, {'accuracy': 0.5}, metrics=['accuracy'])"),
    ])
    nbformat.write(nb, source)
    result = execute(source, tmp_path / "out", root=tmp_path)
    assert result.problems == []
    executed = nbformat.read(result.output, as_version=4)
    per_cell = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in executed.cells]
    assert per_cell == [1, 1, 1]


@pytest.fixture(scope="module")
def fresh_out():
    shutil.rmtree(OUT / "runs", ignore_errors=True)  # stale runs must not hide a missing step
    shutil.rmtree(OUT / "solutions" / "runs", ignore_errors=True)
    return OUT


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOKS])
def test_notebook_runs_and_shows_what_it_should(path, fresh_out):
    result = execute(path, fresh_out, root=ROOT / "notebooks")
    record_timings([result], fresh_out / "timings.json")
    print(f"{path.name}: {result.seconds:.1f} s, {result.images} figures")
    assert result.problems == [], "\n".join(result.problems)
