"""Exercise checks never raise on a learner's answer (issue 19): every check cell of every notebook and solution,
run on hostile answers.

A learner types anything into a starter cell: nothing, an empty string, text without tags, None, a huge or unicode
string, a number where a function belongs, a function that raises. The check cell under it must answer with a verdict
(``exercises.check``: ✅, ❌ with the reason, ⏳ not done yet), never with a traceback, and never with "could not check
this answer" (that is ``check`` catching a predicate that raised: a bug of the check, not of the answer).

How: each notebook's exercise check cells are read from the ``.ipynb`` (the code cells under ``## Exercises`` that call
``check``/``check_close``; in a solutions notebook, every such cell). The learner's names are those the main
notebook's starter cells leave as ``...`` (or define as a function that returns ``...``). Each check cell runs in a
namespace holding the notebook's imports, its function definitions, and small stand-ins for the state the check reads
(a tokenizer, a LoRA layer, a ``GRPOConfig``, an ``EvalResult``: ``STATE``), with every learner name set to one hostile
value; a solutions cell skips the statements that define the solution itself.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import math
from functools import lru_cache
from pathlib import Path

import nbformat
import pytest

from grpo_helpers.notebooks import course_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOT_CHECKED = "could not check this answer"


def _raises(*args, **kwargs):
    raise ValueError("a learner's function that raises")


HOSTILE = {
    "nothing (...)": ..., "None": None, "empty string": "", "text without tags": "no tags at all, just words",
    "huge text": "<answer>7</answer> " * 60_000, "unicode": "🤖 ünïcödé \u202e<answer>٣</answer>\x00\ud7ff",
    "zero": 0, "negative float": -1.5, "nan": math.nan, "huge int": 10**30, "empty list": [], "empty dict": {},
    "list of None": [None], "dict": {"a": 1}, "tuple": (1, "2"), "object": object(),
    "function that raises": _raises, "function returning text": lambda *a, **k: "x",
    "a well-formed completion": "<reasoning>\nIt is 7.\n</reasoning>\n<answer>\n7\n</answer>\n",
    "tags out of order": "</answer>\n7\n<answer>\n</reasoning>\nIt is.\n<reasoning>",
}


def _cells(path: Path) -> list:
    return nbformat.read(path, as_version=4).cells


def _source(cell) -> str:
    return "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _calls_check(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("check", "check_close")
               for n in ast.walk(node))


def _placeholder(node) -> bool:
    return isinstance(node, ast.Constant) and (node.value is ... or node.value is None)


@lru_cache(maxsize=None)
def learner_names(stem: str) -> frozenset[str]:
    """Names the main notebook's starter cells leave for the learner: ``x = ...``, ``def f(): ... return ...``, and
    values computed from such a function (``answer_1 = batch_scaled_advantages(...)``)."""
    names, functions, started = set(), set(), False
    for cell in _cells(ROOT / "notebooks" / f"{stem}.ipynb"):
        started = started or (cell.cell_type == "markdown" and cell.source.lstrip().startswith("## Exercises"))
        if not started or cell.cell_type != "code":
            continue
        tree = ast.parse(_source(cell))
        if _calls_check(tree):
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                last = node.body[-1]
                if isinstance(last, (ast.Expr, ast.Return)) and last.value is not None and _placeholder(last.value):
                    names.add(node.name)
                    functions.add(node.name)
            elif isinstance(node, ast.Assign):
                value = node.value
                if _placeholder(value) or (isinstance(value, ast.Call) and getattr(value.func, "id", None) in functions):
                    names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def check_cells(path: Path) -> list[tuple[int, str]]:
    """(cell number from 1, source) of the exercise check cells of ``path``."""
    solutions = path.parent.name == "solutions"
    out, started = [], solutions
    for number, cell in enumerate(_cells(path), start=1):
        started = started or (cell.cell_type == "markdown" and cell.source.lstrip().startswith("## Exercises"))
        if started and cell.cell_type == "code" and _calls_check(ast.parse(_source(cell))):
            out.append((number, _source(cell)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# The state a check cell reads from earlier cells, as small stand-ins of the same type
# ----------------------------------------------------------------------------------------------------------------


def _tokenizer():
    from transformers import AutoTokenizer

    from grpo_helpers.models import finish_tokenizer
    from grpo_helpers.recipes import course_config

    return finish_tokenizer(AutoTokenizer.from_pretrained(course_config(tiny=True).model_name))


def _lora_q(rank: int, alpha: int):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from grpo_helpers.models import tiny_random_dir

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_random_dir()),
                           LoraConfig(r=rank, lora_alpha=alpha, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    return model.base_model.model.model.layers[0].self_attn.q_proj


def _state_01():
    import torch

    from grpo_helpers.data import SYSTEM_PROMPT  # noqa: F401 - the notebook's import
    from grpo_helpers.generation import as_messages, render_prompt

    tokenizer = _tokenizer()
    return {"logits": torch.randn(64), "tokenizer": tokenizer,
            "text": render_prompt(tokenizer, as_messages("Calculate pi."))[0]}


def _state_02():
    from grpo_helpers.recipes import course_config

    return {"cfg": course_config(tiny=True), "tokenizer": _tokenizer(), "lengths": [120, 250, 90, 201]}


def _state_03():
    return {"q": _lora_q(8, 8), "q_small": _lora_q(4, 16)}


def _state_05():
    import torch

    torch.manual_seed(0)
    logps = torch.randn(6, 12)
    return {"batch_rewards": torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.5, 1.0, 3.0]),
            "logps_2": logps + 0.3 * torch.randn(6, 12), "old_logps": logps, "advantages": torch.randn(6),
            "said": torch.ones(6, 12, dtype=torch.bool)}


def _state_06():
    from grpo_helpers.training import grpo_config

    rows = [{"step": 1, "frac_reward_zero_std": 1.0, "rewards/soft_format_reward/mean": 0.0},
            {"step": 2, "frac_reward_zero_std": 0.0, "rewards/soft_format_reward/mean": 0.5}]
    return {"config": grpo_config("tiny", run_name="checks"), "recorded_metrics": rows}


def _state_07():
    from grpo_helpers.evaluation import score

    done = "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n"
    return {"before": score(["7", "I think 8"], ["7", "7"]), "after": score([done, "I think 8"], ["7", "7"])}


def _state_08():
    from grpo_helpers.recipes import course_config

    return {"cfg": course_config(tiny=True)}


STATE = {"01": _state_01, "02": _state_02, "03": _state_03, "05": _state_05, "06": _state_06, "07": _state_07,
         "08": _state_08}


@lru_cache(maxsize=None)
def base_namespace(path: Path) -> dict:
    """The notebook's top-level imports and function definitions (not the starter's), plus the ``STATE`` stand-ins."""
    stem = path.stem
    namespace: dict = {"__name__": "__check__", "display": lambda *a, **k: None}
    learner = learner_names(stem)
    for cell in _cells(path):
        if cell.cell_type != "code":
            continue
        for node in ast.parse(_source(cell)).body:
            keep = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.FunctionDef) and node.name not in learner)
            if keep:
                try:
                    exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
                except NameError:  # a def whose default reads the notebook's state (ask(..., n=settings[...])): no check
                    pass
    namespace.update(STATE.get(stem[:2], dict)())
    return namespace


def _defines_learner_name(node: ast.stmt, learner: frozenset[str]) -> bool:
    if isinstance(node, ast.FunctionDef):
        return node.name in learner
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    return any(isinstance(t, ast.Name) and t.id in learner for t in targets)


def run_check_cell(path: Path, source: str, value) -> str:
    """Run one check cell with every learner name set to ``value``; return what it printed. Raises what it raises."""
    learner = learner_names(path.stem)
    namespace = dict(base_namespace(path))
    namespace.update({name: value for name in learner})
    body = ast.parse(source).body
    last = max(i for i, node in enumerate(body) if _calls_check(node))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for node in body[:last + 1]:
            if not _defines_learner_name(node, learner):
                exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return printed.getvalue()


def _free_names(source: str) -> set[str]:
    """Names a cell reads that it does not bind itself (assignments, defs, arguments, imports, ``except ... as``)."""
    tree = ast.parse(source)
    bound = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            bound.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in n.names)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound


NOTEBOOKS = [p for p in course_notebooks(ROOT / "notebooks") if check_cells(p)]


def test_every_notebook_with_exercises_is_read():
    stems = {p.stem[:2] for p in NOTEBOOKS if p.parent.name != "solutions"}
    assert stems == {f"{n:02d}" for n in range(10)}, stems
    assert all(learner_names(p.stem) for p in NOTEBOOKS), [p.stem for p in NOTEBOOKS if not learner_names(p.stem)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT / "notebooks").as_posix())
def test_check_cells_answer_every_hostile_input_with_a_verdict(path):
    problems = []
    for number, source in check_cells(path):
        unknown = sorted(_free_names(source) - set(base_namespace(path)) - learner_names(path.stem) - set(dir(builtins)))
        assert not unknown, f"cell {number} reads {unknown}: add stand-ins to STATE in tests/test_exercise_checks.py"
        for label, value in HOSTILE.items():
            try:
                printed = run_check_cell(path, source, value)
            except Exception as err:  # noqa: BLE001 - the finding
                problems.append(f"cell {number}, {label}: raised {type(err).__name__}: {str(err)[:160]}")
                continue
            if NOT_CHECKED in printed:
                line = next(ln for ln in printed.splitlines() if NOT_CHECKED in ln)
                problems.append(f"cell {number}, {label}: the predicate raised ({line.strip()[:200]})")
            elif not printed.strip():
                problems.append(f"cell {number}, {label}: printed no verdict")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_check_and_check_close_never_raise(label, capsys):
    import numpy as np
    import torch

    from grpo_helpers.exercises import check, check_close

    value = HOSTILE[label]
    for expected in (4, 0.5, "text", ["1000", "7", None], {"a", "b"}, {"k": 1.0}, torch.tensor([1.0, -1.0]),
                     np.array([1, 2]), None):
        assert check("x", value, expected=expected) in (True, False)
        assert check("x", np.array([1, 2]), expected=value) in (True, False)  # an array against anything
        assert check_close("x", value, expected if not isinstance(expected, (str, set, dict)) else 1.0) in (True, False)
    printed = capsys.readouterr().out
    assert "Traceback" not in printed and max(map(len, printed.splitlines())) < 2_000
