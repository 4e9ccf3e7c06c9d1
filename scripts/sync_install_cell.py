"""Write the install cell (grpo_helpers.install.INSTALL_CELL) into cell 1 of every notebook and solution notebook.

The repository URL comes from pyproject.toml ([project.urls] Repository), the only place it is written.
Run after changing the template or the URL; tests/test_install.py fails while a notebook differs.

    .venv/bin/python scripts/sync_install_cell.py          # rewrite
    .venv/bin/python scripts/sync_install_cell.py --check  # exit 1 and list the notebooks that differ
    .venv/bin/python scripts/sync_install_cell.py notebooks/00_install_and_check.ipynb  # only these
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

from grpo_helpers.install import INSTALL_CELL

ROOT = Path(__file__).resolve().parents[1]
INSTALL_CELL_INDEX = 1  # cell 0 is the title and the "Open in Colab" badge


def repo_url(root: Path = ROOT) -> str:
    """The repository URL from pyproject.toml."""
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def install_cell_source(root: Path = ROOT) -> str:
    """The install cell's code, with the repository URL filled in."""
    return INSTALL_CELL.format(repo=repo_url(root))


def notebooks(root: Path = ROOT) -> list[Path]:
    """Every course notebook and solution notebook."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
        (root / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def sync(path: Path, source: str, write: bool) -> bool:
    """True when ``path``'s install cell differs from ``source`` (and rewrites it when ``write``)."""
    nb = json.loads(path.read_text())
    cell = nb["cells"][INSTALL_CELL_INDEX]
    if cell["cell_type"] == "code" and _source(cell) == source:
        return False
    if write:
        if cell["cell_type"] != "code":
            raise SystemExit(f"{path}: cell {INSTALL_CELL_INDEX} is {cell['cell_type']}, not the install cell")
        cell["source"] = source.splitlines(keepends=True)
        cell["outputs"], cell["execution_count"] = [], None
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report notebooks whose install cell differs")
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks to sync (default: all of them)")
    args = parser.parse_args(argv)
    source = install_cell_source()
    differ = [p for p in (args.paths or notebooks()) if sync(p.resolve(), source, write=not args.check)]
    for path in differ:
        print(f"{'differs' if args.check else 'rewrote'}: {path}")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
