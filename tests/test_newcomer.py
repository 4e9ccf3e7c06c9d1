"""scripts/newcomer_check.py catches notebooks that lean on another notebook's memory or undocumented files,
and every course notebook follows the skeleton of CONTRIBUTING.md."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "newcomer_check.py"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OWN_NOTEBOOKS = [p for p in NOTEBOOKS if not p.name.startswith("04_")]  # 04 follows the same skeleton, checked too


def write(folder: Path, name: str, header: str, *sources: str) -> Path:
    notebook = new_notebook(cells=[new_markdown_cell(header)] + [new_code_cell(s) for s in sources],
                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = folder / name
    nbformat.write(notebook, path)
    return path


def run_check(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_memory_dependency_fails_with_a_clear_reason(tmp_path):
    first = write(tmp_path, "00_a.ipynb", "# 00", "answer = 42")
    second = write(tmp_path, "01_b.ipynb", "# 01", "answer + 1")  # works only in the same kernel as 00
    result = run_check(first, second)
    assert result.returncode == 1
    assert "ok" in result.stdout and "FAIL" in result.stdout and "01_b.ipynb" in result.stdout
    assert "NameError" in result.stdout and "another notebook left in memory" in result.stdout


def test_file_passed_between_notebooks_is_fine_in_order_and_needs_documenting_alone(tmp_path):
    writer = write(tmp_path, "00_w.ipynb", "# 00", "open('hand_off.txt', 'w').write('hi')")
    reader = write(tmp_path, "01_r.ipynb", "# 01", "open('hand_off.txt').read()")
    in_order = run_check(writer, reader)
    assert in_order.returncode == 0, in_order.stdout
    assert "2 of 2 notebook runs passed" in in_order.stdout
    alone = run_check("--alone", writer, reader)
    assert alone.returncode == 1
    assert "01_r.ipynb (alone)" in alone.stdout and "Files this notebook uses" in alone.stdout


def test_executed_notebooks_can_be_saved(tmp_path):
    notebook = write(tmp_path, "00_v.ipynb", "# 00", "6 * 7")
    result = run_check("--save-to", tmp_path / "out", notebook)
    assert result.returncode == 0
    saved = json.loads((tmp_path / "out" / "00_v.ipynb").read_text())
    assert "".join(saved["cells"][1]["outputs"][0]["data"]["text/plain"]) == "42"


# ------------------------------------------------------------------------------------------- the skeleton


def code_cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_all_course_notebooks_exist():
    names = [p.stem[:2] for p in NOTEBOOKS]
    assert names == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09"], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_skeleton(path):
    cells = nbformat.read(path, as_version=4).cells
    head = cells[0].source
    assert cells[0].cell_type == "markdown" and head.startswith(f"# {path.stem[:2]} ")
    assert f"colab.research.google.com/github/grpo-course/grpo-course/blob/main/notebooks/{path.name}" in head
    assert "What you will learn" in head and "What you need" in head
    code = code_cells(path)
    assert 'find_spec("grpo_helpers") is None' in code[0] and "pip" in code[0]  # installs only when missing
    assert "show_environment()" in code[1]
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "## Summary" in markdown and "## Exercises" in markdown and "solutions/" in markdown


@pytest.mark.parametrize("path", OWN_NOTEBOOKS, ids=lambda p: p.stem)
def test_install_cell_hands_over_to_prepare_runtime(path):
    # The pins live in grpo_helpers.install (which reads config.py); tests/test_install.py checks the cell's text.
    install = code_cells(path)[0]
    assert "prepare_runtime()" in install, "run scripts/sync_install_cell.py"
    assert "cfg = course_config()" in code_cells(path)[2]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_exist(path):
    solutions = list((ROOT / "notebooks" / "solutions").glob(f"{path.stem[:2]}_*.ipynb"))
    assert solutions, f"no solutions notebook for {path.name}"
