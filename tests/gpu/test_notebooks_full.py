"""The course notebooks in FULL mode on the GPU (issue: a learner on a T4 runs them in full mode).

Each notebook runs top to bottom in a fresh kernel on the ``unsloth`` backend, with the model replaced through the
documented override ``GRPO_COURSE_MODEL``: a random-weight model in Llama-3.1-8B's layer shapes (2 layers, so it
loads in seconds), loaded in 4-bit like the seed. It runs twice: with the dtype Unsloth picks on this GPU, and with
``GRPO_COURSE_DTYPE=float16``, a T4's configuration. Outputs are checked like the CPU test's
(tests/test_notebook_outputs.py): no error, no traceback, figures as pictures.

What differs from a learner's run, on purpose:
* the install cell is replaced by a comment: this machine has no network, the GPU kit provides the packages, and
  the install cell's decisions are unit-tested on faked Colab/Kaggle/local runtimes (tests/test_install.py);
* sizes are cut so a notebook takes seconds: 2 steps (``GRPO_COURSE_STEPS``), 16 training rows, 4 evaluation rows,
  32-token completions (``course_config`` defaults patched in the kernel before the notebook's first line);
* 05 (GRPO from scratch) is left out: it always uses SmolLM2-135M, which is not on this machine (CI runs it on CPU).
* vLLM cells (``fast_inference=True``, ``fast_generate``, ``load_lora`` → ``LoRARequest``) do not run here (no vLLM on
  this machine): on the ``unsloth`` backend the notebooks take their Hugging Face ``generate`` branch. The vLLM path runs
  for real on CPU in tests/vllm_cpu.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
             if p.name[:2] in ("00", "01", "02", "03", "04", "06", "07", "08")]
QUICK = dict(train_rows=16, eval_rows=4, max_completion_length=32)
PATCH = f'''# GPU test only (tests/gpu/test_notebooks_full.py): quick sizes; the install cell's decisions are unit-tested on CPU.
import grpo_helpers.recipes as _recipes
_course_config = _recipes.course_config
_recipes.course_config = lambda *a, **k: _course_config(*a, **{{**{QUICK!r}, **k}})'''


@pytest.fixture(scope="module")
def llama_dir():
    from grpo_helpers.models import random_model_dir

    return random_model_dir("llama-3.1-8b-instruct", num_hidden_layers=2)


def _prepared(path: Path, out: Path) -> Path:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].source = PATCH  # the install cell
    copy = out / "src" / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, copy)
    return copy


@pytest.mark.parametrize("dtype", ["auto", "float16"], ids=["unsloth-dtype", "t4-float16"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_full_mode(path, dtype, llama_dir, tmp_path_factory, monkeypatch):
    from grpo_helpers.notebooks import execute

    out = tmp_path_factory.getbasetemp() / f"notebooks-{dtype}"  # shared by one dtype's notebooks: 06 hands 07 its LoRA
    env = {"GRPO_COURSE_TINY": "0", "GRPO_COURSE_BACKEND": "unsloth", "GRPO_COURSE_MODEL": str(llama_dir),
           "GRPO_COURSE_STEPS": "2", "GRPO_COURSE_RUNS": str(out / "runs"), "HF_HUB_OFFLINE": "1"}
    if dtype == "float16":
        env["GRPO_COURSE_DTYPE"] = "float16"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GRPO_COURSE_DTYPE", raising=False) if dtype == "auto" else None
    result = execute(_prepared(path, out), out / "executed", root=out / "src", timeout=900)
    print(f"{path.name} [{dtype}]: {result.seconds:.1f} s, {result.images} figures")
    os.makedirs(os.environ.get("OUT", "/tmp"), exist_ok=True)
    assert result.problems == [], "\n".join(result.problems)
