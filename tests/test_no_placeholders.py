"""Nothing unfilled reaches a learner (issue 19): no template token in a notebook, a solution, the docs or the README.

A template token is an all-caps placeholder a writer meant to replace: ``TIME06`` ("Tiny mode runs on a CPU (TIME06)"),
``TIME07S``, ``TODO``, ``FIXME``, ``XXX``, ``TBD``, ``PLACEHOLDER``, ``{{ name }}``, ``<FILL ...>``. The exercises'
``...`` starters are not placeholders of this kind: they are what the learner replaces, and the check cells say so.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = re.compile(r"\b(?:TODO|FIXME|XXX+|TBD|PLACEHOLDER|LOREM|[A-Z]{3,}\d{2}S?)\b|\{\{[^{}]*\}\}|<(?:FILL|INSERT)\b[^>]*>")


def learner_files() -> list[Path]:
    """Everything the course shows a learner: notebooks, solutions, README, CONTRIBUTING, docs and benchmark pages."""
    files = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
    files += [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")),
              *sorted((ROOT / "benchmarks").glob("*.md"))]
    return [f for f in files if f.exists()]


def placeholders(path: Path) -> list[str]:
    """``"<file> cell N: TOKEN in '...line...'"`` for every template token in ``path`` (cells counted from 1)."""
    rel = path.relative_to(ROOT).as_posix()
    if path.suffix == ".ipynb":
        parts = [(f"cell {i}", c.source) for i, c in enumerate(nbformat.read(path, as_version=4).cells, start=1)]
    else:
        parts = [("", path.read_text())]
    found = []
    for where, text in parts:
        for number, line in enumerate(text.splitlines(), start=1):
            for match in TOKEN.finditer(line):
                place = f"{where} line {number}".strip()
                found.append(f"{rel} {place}: {match.group(0)} in {line.strip()[:100]!r}")
    return found


def test_the_scanner_finds_the_tokens_of_issue_19():
    line = "Tiny mode runs on a CPU (TIME06); solutions TIME07S. TODO: fill {{ seconds }} <FILL here>"
    assert [m.group(0) for m in TOKEN.finditer(line)] == ["TIME06", "TIME07S", "TODO", "{{ seconds }}", "<FILL here>"]
    assert not TOKEN.search("GSM8K on a T4 or an H100 (SmolLM2-135M, Llama-3.1-8B, GRPO, QLoRA, KL, TRL, CPU, ...)")


@pytest.mark.parametrize("path", learner_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_template_token_is_left_for_a_learner(path):
    found = placeholders(path)
    assert not found, "template tokens a learner would see:\n" + "\n".join(found)
