"""Execute the course notebooks in fresh kernels and check what a learner would see in their outputs.

``nbval --nbval-lax`` only proves that no cell raised. This module also reads the outputs: a figure must be a
picture (not the text ``<Figure size 840x320 with 2 Axes>``), shown once, and no cell may print a traceback.
The executed copies land in ``build/notebooks/`` (git-ignored), where the course website is built from.

    python -m grpo_helpers.notebooks                      # every notebook and solution, in learning order
    python -m grpo_helpers.notebooks notebooks/04_reward_design.ipynb --out /tmp/executed

Example:
    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("fig")])
    >>> nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "<Figure size 640x480 with 1 Axes>"})]
    >>> output_problems(nb)
    ['cell 1: a figure printed as text (<Figure size 640x480 with 1 Axes>) instead of an image']
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Iterable

FIGURE_TEXT = re.compile(r"<Figure size [^>]*>")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w*Error: ", re.MULTILINE)
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")
DEFAULT_OUT = Path("build/notebooks")


def course_notebooks(folder: str | Path = "notebooks", solutions: bool = True) -> list[Path]:
    """Course notebooks in learning order (``NN_*.ipynb``), then their solutions.

    Example:
        >>> course_notebooks("no-such-folder")
        []
    """
    folder = Path(folder)
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if solutions:
        found += sorted((folder / "solutions").glob("[0-9][0-9]_*.ipynb"))
    return found


def _texts(output) -> Iterable[str]:
    if output.get("output_type") == "stream":
        yield output.get("text", "")
    data = output.get("data", {})
    for key in ("text/plain", "text/markdown"):
        if key in data:
            value = data[key]
            yield value if isinstance(value, str) else "".join(value)


def output_problems(notebook) -> list[str]:
    """What a learner would see go wrong in an executed notebook: errors, tracebacks, figures printed as text,
    the same picture shown twice in one cell.

    Example:
        >>> import nbformat
        >>> output_problems(nbformat.v4.new_notebook())
        []
    """
    problems = []
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        images = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"cell {number}: raised {output.get('ename')}: {output.get('evalue', '')[:200]}")
                continue
            for text in _texts(output):
                match = FIGURE_TEXT.search(text)
                if match and not any(k in output.get("data", {}) for k in IMAGE_TYPES):
                    problems.append(f"cell {number}: a figure printed as text ({match.group(0)}) instead of an image")
                if TRACEBACK.search(text):
                    first = next((line for line in text.splitlines() if "Error" in line or "Traceback" in line), "")
                    problems.append(f"cell {number}: printed a traceback or error ({first.strip()[:200]})")
            for kind in IMAGE_TYPES:
                if kind in output.get("data", {}):
                    images.append(str(output["data"][kind]))
        if len(images) != len(set(images)):
            problems.append(f"cell {number}: shows the same figure {len(images) - len(set(images)) + 1} times")
    return problems


def image_count(notebook) -> int:
    """How many pictures the executed notebook shows."""
    return sum(1 for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(k in o.get("data", {}) for k in IMAGE_TYPES))


@dataclasses.dataclass
class Executed:
    """One executed notebook: where its copy is, how long it took, what went wrong."""

    source: Path
    output: Path
    seconds: float
    problems: list[str]
    images: int


def execute(path: str | Path, out_dir: str | Path = DEFAULT_OUT, root: str | Path = "notebooks",
            timeout: int = 1200) -> Executed:
    """Run ``path`` top to bottom in a fresh kernel, save the executed copy under ``out_dir`` and inspect it.

    The kernel's working folder is the copy's folder, so notebooks that hand files to each other (06 saves the LoRA
    that 07 loads) find them there, as they would next to each other on a learner's disk. A cell that raises stops
    the run; the copy is still saved, with the error in it.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path, out_dir = Path(path), Path(out_dir)
    relative = path.resolve().relative_to(Path(root).resolve()) if Path(root).resolve() in path.resolve().parents \
        else Path(path.name)
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(target.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError:
        pass  # the error output is in the notebook; output_problems reports it
    seconds = time.perf_counter() - start
    nbformat.write(notebook, target)
    return Executed(path, target, seconds, output_problems(notebook), image_count(notebook))


def record_timings(results: Iterable[Executed], path: Path) -> dict:
    """Merge these runs into ``timings.json`` (seconds, figures, problems per notebook): the instructor kit's
    agenda and the site read it."""
    timings = json.loads(path.read_text()) if path.is_file() else {}
    timings.update({str(r.source): {"seconds": round(r.seconds, 1), "figures": r.images, "problems": r.problems}
                    for r in results})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings, indent=2, sort_keys=True))
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every course notebook, then the solutions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where executed copies go (default build/notebooks)")
    args = parser.parse_args(argv)
    paths = args.notebooks or course_notebooks()
    results = []
    for path in paths:
        result = execute(path, args.out)
        results.append(result)
        status = "ok" if not result.problems else f"{len(result.problems)} problem(s)"
        print(f"{result.seconds:7.1f} s  {result.images:3d} figures  {status:14s} {path}", flush=True)
        for problem in result.problems:
            print(f"           - {problem}")
    record_timings(results, args.out / "timings.json")
    print(f"{sum(r.seconds for r in results):7.1f} s  total; executed copies in {args.out}/")
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
