"""GPU tests: the course's own Unsloth path on a CUDA machine (the lent H100; see README.md here).

Every test in this folder is marked ``gpu``. Without CUDA + unsloth they are skipped, and the reason is printed in
the header and the summary. ``make test`` deselects them (``-m "not gpu"``); ``make test-gpu`` runs them.
Unsloth must be imported before transformers/trl/peft, so this conftest imports it first when it can.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _why_not() -> str | None:
    """None when the GPU path can run here, else what is missing."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible (run on a GPU machine: tests/gpu/README.md)"
    for module in ("unsloth", "bitsandbytes", "trl", "datasets"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (unpack the GPU kit: tests/gpu/README.md)"
    return None


WHY_NOT = _why_not()
if WHY_NOT is None:
    import unsloth  # noqa: F401  (before transformers / trl / peft: Unsloth patches them on import)


def pytest_report_header(config):
    return f"gpu tests: {'run' if WHY_NOT is None else 'SKIPPED: ' + WHY_NOT}"


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.gpu)
            if WHY_NOT is not None:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {WHY_NOT}"))


def pytest_terminal_summary(terminalreporter):
    if WHY_NOT is not None and any(getattr(r, "fspath", "").startswith("tests/gpu") or "tests/gpu" in str(getattr(r, "nodeid", ""))
                                   for r in terminalreporter.stats.get("skipped", [])):
        terminalreporter.write_line(f"tests/gpu skipped: {WHY_NOT}")


@pytest.fixture(scope="session")
def qwen_dir():
    """A random-weight model with Qwen2.5-0.5B-Instruct's exact layer shapes (vocab 151936), 4 layers deep for speed."""
    from grpo_helpers.models import random_model_dir

    return random_model_dir("qwen2.5-0.5b-instruct", num_hidden_layers=4)


@pytest.fixture(scope="session")
def gsm8k_rows():
    """16 real GSM8K train rows in course format (offline copy)."""
    from grpo_helpers.data import load_gsm8k

    return load_gsm8k("train", n=16, source="offline")


@pytest.fixture(scope="session")
def signal_reward():
    """A reward that always varies inside a group (mean token id, scaled to [0, 1]).

    A random-weight model never writes the course's tags, so the course rewards are all 0 and GRPO's advantages too:
    the adapter would not move. With this reward beside them, a test can see the adapter learn.
    """
    def token_signal_reward(completions, completion_ids=None, **kwargs) -> list[float]:
        return [sum(ids) / max(len(ids), 1) / 151936 for ids in completion_ids]

    return token_signal_reward
