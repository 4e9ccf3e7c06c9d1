"""Run the notebooks as a newcomer would: in order, each in a fresh kernel, in a fresh folder.

    python scripts/newcomer_check.py                  # notebooks/NN_*.ipynb in order (make newcomer)
    python scripts/newcomer_check.py --alone           # also each notebook alone, in its own empty folder
    python scripts/newcomer_check.py --save-to out/    # keep the executed notebooks (with outputs) to read them

A notebook fails the check when a cell raises. A ``NameError`` in a fresh kernel almost always means the notebook
uses a variable another notebook left in memory, and the report says so. Files on disk may pass from one notebook
to the next (06 saves the LoRA that 07 loads), but ``--alone`` then requires the notebook that needs them to
document them at the top, under **Files this notebook uses**, and to cope when they are missing.

The copy runs in a temporary folder, so ``runs/`` left by earlier sessions cannot hide a missing step.
Prints one line per notebook with its time; exits 1 if any notebook failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

FILES_HEADER = "Files this notebook uses"


@dataclasses.dataclass
class Outcome:
    """What happened to one notebook."""

    name: str
    ok: bool
    seconds: float
    error: str = ""


def course_notebooks(folder: Path) -> list[Path]:
    """The course notebooks in learning order: ``NN_*.ipynb`` directly in ``folder`` (solutions are not part of it).

    Example:
        >>> course_notebooks(Path("no-such-folder"))
        []
    """
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def documents_files(notebook) -> bool:
    """Whether the first markdown cell has a 'Files this notebook uses' section."""
    first = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    return first is not None and FILES_HEADER.lower() in first.source.lower()


def explain(error: Exception, notebook) -> str:
    """A one-paragraph reason, with a hint when the failure looks like a dependency on another notebook."""
    text = str(error).strip().splitlines()
    name = getattr(error, "ename", type(error).__name__)
    summary = next((line for line in reversed(text) if line.strip()), name)
    if name == "NameError":
        return (f"{summary}\n    -> a name defined in no earlier cell of this notebook: it depends on state another "
                f"notebook left in memory. Define or load it here.")
    if name in ("FileNotFoundError", "CourseError") and not documents_files(notebook):
        return (f"{summary}\n    -> it may need a file another notebook writes: document it at the top under "
                f"'**{FILES_HEADER}**' and create it when it is missing.")
    return summary


def run_notebook(path: Path, workdir: Path, timeout: int, save_to: Path | None = None, kernel: str = "python3") -> Outcome:
    """Execute one notebook in a fresh kernel whose working folder is ``workdir``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    try:
        client.execute()
        outcome = Outcome(path.name, True, time.perf_counter() - start)
    except CellExecutionError as error:
        outcome = Outcome(path.name, False, time.perf_counter() - start, explain(error, notebook))
    except Exception as error:  # the kernel did not start or died: report it, go on with the next notebook
        outcome = Outcome(path.name, False, time.perf_counter() - start, f"kernel failure: {error!r}")
    if save_to is not None:
        save_to.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, save_to / path.name)
    return outcome


def check(notebooks: list[Path], alone: bool = False, timeout: int = 900, save_to: Path | None = None) -> list[Outcome]:
    """Run ``notebooks`` in order in one fresh folder (and, with ``alone``, each in its own fresh folder)."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="newcomer-") as tmp:
        shared = Path(tmp) / "in-order"
        shared.mkdir()
        for path in notebooks:
            outcome = run_notebook(path, shared, timeout, save_to)
            outcomes.append(outcome)
            report(outcome, "in order")
        if alone:
            for path in notebooks:
                folder = Path(tmp) / f"alone-{path.stem}"
                folder.mkdir()
                outcome = run_notebook(path, folder, timeout)
                outcome.name += " (alone)"
                outcomes.append(outcome)
                report(outcome, "alone")
    return outcomes


def report(outcome: Outcome, mode: str) -> None:
    status = "ok  " if outcome.ok else "FAIL"
    print(f"{status} {outcome.seconds:7.1f} s  {outcome.name}", flush=True)
    if not outcome.ok:
        print(f"    {outcome.error}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks in order (default: notebooks/NN_*.ipynb)")
    parser.add_argument("--alone", action="store_true", help="also run each notebook alone in an empty folder")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--save-to", type=Path, help="write the executed notebooks (with outputs) here")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or course_notebooks(Path(__file__).resolve().parents[1] / "notebooks")
    if not notebooks:
        print("No notebooks to check.", file=sys.stderr)
        return 1
    outcomes = check(notebooks, alone=args.alone, timeout=args.timeout, save_to=args.save_to)
    failed = [o for o in outcomes if not o.ok]
    total = sum(o.seconds for o in outcomes)
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} notebook runs passed in {total:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
