"""What a learner sees: every notebook executed in a fresh kernel, its outputs read.

Figures must be pictures shown once, never the text ``<Figure size ...>``; no cell may raise or print a traceback.
The executed copies stay in build/notebooks/ (git-ignored): the course website is built from them.
"""

import json
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from grpo_helpers.notebooks import Executed, course_notebooks, execute, output_problems, record_timings

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


# Two kernels at a time, each with one torch thread: on CI's 2 cores that keeps both busy (a kernel spends much of its
# time in single-threaded Python: imports, tokenizing, plotting) without two 2-thread kernels oversubscribing them,
# which slows both about 20x. Longest first (the last recorded times), so the short ones fill in at the end.
WORKERS = 2
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# The slowest notebooks, slowest first, as build/notebooks/timings.json measured them (a scheduling hint only).
SLOW_FIRST = ["06_training.ipynb", "08_one_runtime_recipe.ipynb", "01_pretraining_inference.ipynb",
              "07_post_training_inference_and_eval.ipynb", "solutions/07_post_training_inference_and_eval.ipynb",
              "solutions/06_training.ipynb", "05_grpo_from_scratch.ipynb", "solutions/05_grpo_from_scratch.ipynb"]
AFTER = {"07_post_training_inference_and_eval.ipynb": "06_training.ipynb"}  # 07 loads the LoRA 06 saved next to it


def _execute_all(paths: list[Path], out: Path) -> dict[Path, Executed]:
    timings_file = out / "timings.json"
    last = json.loads(timings_file.read_text()) if timings_file.is_file() else {}

    def slowest_first(p: Path) -> tuple[float, int]:
        if str(p) in last:
            return -last[str(p)]["seconds"], 0
        name = str(p.relative_to(ROOT / "notebooks"))  # a fresh clone has no timings yet: the hint
        return 0.0, SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    order = sorted(paths, key=slowest_first)
    for path in [p for p in order if p.name in AFTER]:  # a notebook is queued after the one it reads from
        first = next((q for q in order if q.parent == path.parent and q.name == AFTER[path.name]), None)
        if first is not None and order.index(first) > order.index(path):
            order.remove(path)
            order.insert(order.index(first) + 1, path)
    futures: dict[Path, Future] = {}

    def run(path: Path) -> Executed:
        before = next((futures[q] for q in order if q.parent == path.parent and q.name == AFTER.get(path.name)), None)
        if before is not None:
            before.result()  # wait for the notebook that writes this one's input, whatever it found
        return execute(path, out, root=ROOT / "notebooks")

    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update(ONE_THREAD)  # the kernels inherit it when they start
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            for path in order:
                futures[path] = pool.submit(run, path)
            results = {path: f.result() for path, f in futures.items()}
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    record_timings(results.values(), timings_file)
    return results


@pytest.fixture(scope="module")
def executed(request, fresh_out) -> dict[Path, Executed]:
    """Every notebook this session selected, executed once, two at a time."""
    selected = [item.callspec.params["path"] for item in request.session.items
                if getattr(item, "originalname", "") == "test_notebook_runs_and_shows_what_it_should"]
    return _execute_all(selected, fresh_out)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT / "notebooks")) for p in NOTEBOOKS])
def test_notebook_runs_and_shows_what_it_should(path, executed):
    result = executed[path]
    print(f"{path.name}: {result.seconds:.1f} s, {result.images} figures")
    assert result.problems == [], "\n".join(result.problems)
