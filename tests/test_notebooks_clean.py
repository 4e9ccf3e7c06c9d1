"""Notebooks are committed without outputs, and scripts/strip_notebooks.py finds and removes them."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "strip_notebooks.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def dirty_notebook() -> dict:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"widgets": {"state": {}}},
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# 00 · Title"},
            {"cell_type": "code", "id": "b", "metadata": {"execution": {}}, "execution_count": 7, "source": "1 + 1",
             "outputs": [{"output_type": "execute_result", "execution_count": 7, "metadata": {},
                          "data": {"text/plain": "2"}}]},
        ],
    }


def test_committed_notebooks_have_no_outputs():
    result = run_script("--check", "notebooks")
    assert result.returncode == 0, f"Notebooks with outputs (run `make clean-notebooks`):\n{result.stdout}"


def test_check_lists_a_dirty_notebook_and_fails(tmp_path):
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(dirty_notebook()))
    result = run_script("--check", str(tmp_path))
    assert result.returncode == 1
    assert "dirty.ipynb" in result.stdout and "cell 1: 1 output(s)" in result.stdout
    assert json.loads(path.read_text()) == dirty_notebook()  # --check changes nothing


def test_strip_cleans_in_place_and_keeps_sources(tmp_path):
    path = tmp_path / "dirty.ipynb"
    path.write_text(json.dumps(dirty_notebook()))
    assert run_script(str(tmp_path)).returncode == 0
    cleaned = json.loads(path.read_text())
    code = cleaned["cells"][1]
    assert code["outputs"] == [] and code["execution_count"] is None and code["metadata"] == {}
    assert "widgets" not in cleaned["metadata"]
    assert [c["source"] for c in cleaned["cells"]] == ["# 00 · Title", "1 + 1"]
    assert run_script("--check", str(tmp_path)).returncode == 0
    before = path.read_text()
    run_script(str(tmp_path))
    assert path.read_text() == before  # stripping a clean notebook is a no-op
