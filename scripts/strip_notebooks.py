"""Strip outputs from the course notebooks, or check that none are committed.

    python scripts/strip_notebooks.py notebooks            # strip in place (make clean-notebooks)
    python scripts/strip_notebooks.py --check notebooks    # exit 1 and list notebooks that have outputs (CI)

A clean notebook has no cell outputs, no execution counts and no saved widget state, so diffs show only
what a person wrote and learners never see stale results. Plain json, no Jupyter needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Notebook-level metadata written by Jupyter/Colab at run time, never by an author.
RUNTIME_METADATA = ("widgets", "execution")
CELL_RUNTIME_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


def notebook_paths(targets: list[str]) -> list[Path]:
    """Every ``.ipynb`` under the given files/folders, skipping ``.ipynb_checkpoints``.

    Example:
        >>> notebook_paths(["no-such-folder"])
        []
    """
    paths: list[Path] = []
    for target in map(Path, targets):
        if target.is_file() and target.suffix == ".ipynb":
            paths.append(target)
        elif target.is_dir():
            paths += [p for p in sorted(target.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
    return paths


def dirty_reasons(notebook: dict) -> list[str]:
    """Why a notebook is not clean (empty list: clean).

    Example:
        >>> dirty_reasons({"cells": [{"cell_type": "code", "outputs": [{"x": 1}], "execution_count": 3}]})
        ['cell 0: 1 output(s)', 'cell 0: execution_count 3']
    """
    reasons = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            reasons.append(f"cell {index}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            reasons.append(f"cell {index}: execution_count {cell['execution_count']}")
        stale = [key for key in CELL_RUNTIME_METADATA if key in cell.get("metadata", {})]
        if stale:
            reasons.append(f"cell {index}: run-time metadata {stale}")
    stale = [key for key in RUNTIME_METADATA if key in notebook.get("metadata", {})]
    if stale:
        reasons.append(f"notebook metadata {stale}")
    return reasons


def strip(notebook: dict) -> dict:
    """The same notebook with outputs, execution counts and run-time metadata removed (in place, returned).

    Example:
        >>> nb = strip({"metadata": {}, "cells": [{"cell_type": "code", "outputs": [1], "execution_count": 2, "metadata": {}}]})
        >>> dirty_reasons(nb)
        []
    """
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in CELL_RUNTIME_METADATA:
            cell.get("metadata", {}).pop(key, None)
    for key in RUNTIME_METADATA:
        notebook.get("metadata", {}).pop(key, None)
    return notebook


def dump(notebook: dict) -> str:
    """Serialise as Jupyter does (indent 1, unicode kept, trailing newline) so stripping a clean file changes nothing."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", default=["notebooks"], help="notebooks or folders (default: notebooks)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook has outputs")
    args = parser.parse_args(argv)

    paths = notebook_paths(args.targets)
    dirty = 0
    for path in paths:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        reasons = dirty_reasons(notebook)
        if not reasons:
            continue
        dirty += 1
        if args.check:
            shown = "; ".join(reasons[:3]) + (f"; ... {len(reasons) - 3} more" if len(reasons) > 3 else "")
            print(f"{path}: {shown}")
        else:
            path.write_text(dump(strip(notebook)), encoding="utf-8")
            print(f"stripped {path}")
    if args.check and dirty:
        print(f"{dirty} notebook(s) have outputs. Run `make clean-notebooks` and commit again.", file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(paths)} notebook(s) clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
