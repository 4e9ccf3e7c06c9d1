"""Shared fixtures: the real offline SmolLM2 model, the tiny random model and real GSM8K rows.

Session-scoped so the model loads once per test run (the first conversion from GGUF takes ~20 s, then it is cached).
Add fixtures here only when several test modules need them; keep the rest local to a test file.
"""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) for the real SmolLM2-135M-Instruct on the trl-peft backend, in eval mode."""
    from grpo_helpers.models import load_model

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_random():
    """(model, tokenizer) for the 2-layer random Llama: plumbing tests only."""
    from grpo_helpers.models import load_model

    return load_model("tiny-random", backend="trl-peft")


@pytest.fixture(scope="session")
def gsm8k_test_small():
    """8 real GSM8K test rows in course format."""
    from grpo_helpers.data import load_gsm8k

    return load_gsm8k("test", n=8, source="offline")


def pytest_collection_finish(session):
    """Start the selected modules' network-bound work now, niced, so it overlaps the tests before it (background.py)."""
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_in_background", None)
        if start is not None and module.__name__ not in started:
            started.add(module.__name__)
            start()
