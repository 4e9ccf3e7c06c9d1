"""The vLLM / Unsloth calls the course makes, checked against the REAL signatures of the pinned wheels.

The vLLM path (``fast_inference=True``, ``model.fast_generate``, ``model.load_lora`` / ``save_lora``,
``vllm.SamplingParams``, ``vllm.lora.request.LoRARequest``) cannot run in CI (no GPU) nor on the course's test GPU
(no vLLM there). So it is verified by signature, not executed: this test downloads the pinned unsloth, unsloth_zoo
and vllm wheels (cached in ``<course cache>/wheels``), parses their source with ``ast`` (never importing them), and
checks every such call found by AST-scanning ``grpo_helpers/*.py`` and the notebooks' code cells: each keyword must
be a named parameter (not merely swallowed by ``**kwargs``) and positional arguments must fit.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from grpo_helpers.config import GPU_PINS, cache_dir

ROOT = Path(__file__).resolve().parents[1]
WHEELS = {"unsloth": GPU_PINS["unsloth"], "unsloth_zoo": GPU_PINS["unsloth_zoo"], "vllm": GPU_PINS["vllm"]}


# ----------------------------------------------------------------------------------------------- the pinned wheels

def wheel_dir() -> Path:
    """The pinned wheels, downloaded once (vllm's is ~315 MB) with pip, no dependencies, into the course cache."""
    folder = cache_dir() / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    missing = [f"{name}=={version}" for name, version in WHEELS.items() if not _find_wheel(folder, name, version)]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(folder),
               *missing]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            pytest.fail(f"Could not download the pinned wheels {missing} from PyPI (needed to check the vLLM/Unsloth "
                        f"call signatures; is PyPI reachable?):\n{proc.stderr[-2000:]}")
    return folder


def _find_wheel(folder: Path, name: str, version: str) -> Path | None:
    return next(iter(sorted(folder.glob(f"{name}-{version}-*.whl"))), None)


@pytest.fixture(scope="module")
def sources():
    """{'unsloth/models/loader.py': source, ...}: only the files the checks read, straight from the wheels."""
    folder = wheel_dir()
    wanted = {"unsloth": ["unsloth/models/loader.py", "unsloth/models/llama.py", "unsloth/models/_utils.py"],
              "unsloth_zoo": ["unsloth_zoo/vllm_utils.py"],
              "vllm": ["vllm/sampling_params.py", "vllm/lora/request.py", "vllm/entrypoints/llm.py", "vllm/__init__.py"]}
    out = {}
    for name, paths in wanted.items():
        with zipfile.ZipFile(_find_wheel(folder, name, WHEELS[name])) as whl:
            for path in paths:
                out[path] = whl.read(path).decode()
    return out


# --------------------------------------------------------------------------------------------------- signatures

@dataclasses.dataclass(frozen=True)
class Signature:
    where: str
    positional: tuple[str, ...]  # parameters that can be passed by position, in order
    named: frozenset[str]  # parameters that can be passed by keyword
    var_positional: bool = False
    var_keyword: bool = False

    def problems(self, n_positional: int, keywords: list[str]) -> list[str]:
        out = []
        if n_positional > len(self.positional) and not self.var_positional:
            out.append(f"{n_positional} positional arguments, {self.where} takes {len(self.positional)} "
                       f"({', '.join(self.positional)})")
        bound = set(self.positional[:n_positional])
        for kw in keywords:
            if kw not in self.named:
                out.append(f"keyword {kw!r} is not a parameter of {self.where}" +
                           (" (it would only be swallowed by **kwargs)" if self.var_keyword else ""))
            elif kw in bound:
                out.append(f"{kw!r} given by position and by keyword")
        return out


def _function_signature(func: ast.FunctionDef, where: str, drop_first: int = 0) -> Signature:
    a = func.args
    positional = [x.arg for x in a.posonlyargs + a.args][drop_first:]
    named = [x.arg for x in a.args][max(0, drop_first - len(a.posonlyargs)):] + [x.arg for x in a.kwonlyargs]
    return Signature(where, tuple(positional), frozenset(named), a.vararg is not None, a.kwarg is not None)


def _struct_signature(cls: ast.ClassDef, where: str) -> Signature:
    """A msgspec.Struct: its annotated fields, in order, are its constructor parameters."""
    fields = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
              and "ClassVar" not in ast.unparse(n.annotation)]
    kw_only = any(k.arg == "kw_only" and getattr(k.value, "value", False) for k in cls.keywords)
    return Signature(where, () if kw_only else tuple(fields), frozenset(fields))


def _find(source: str, cls: str | None, name: str):
    tree = ast.parse(source)
    scope = tree.body
    if cls is not None:
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    return next(n for n in scope if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)


def real_signatures(src: dict[str, str]) -> dict[str, list[Signature]]:
    """Every call kind the course may make -> the signatures it must satisfy (all of them, where several apply)."""
    loader, llama = src["unsloth/models/loader.py"], src["unsloth/models/llama.py"]
    zoo = src["unsloth_zoo/vllm_utils.py"]
    from_pretrained = _find(loader, "FastLanguageModel", "from_pretrained")
    # FastLanguageModel.get_peft_model(model, *args, **kwargs) forwards to FastLlamaModel.get_peft_model.
    peft_forwarder = _find(loader, "FastLanguageModel", "get_peft_model")
    assert "FastLlamaModel.get_peft_model(model, *args, **kwargs)" in ast.unparse(peft_forwarder)
    return {
        "FastLanguageModel.from_pretrained": [
            _function_signature(from_pretrained, "unsloth FastLanguageModel.from_pretrained")],
        "FastLanguageModel.get_peft_model": [
            _function_signature(_find(llama, "FastLlamaModel", "get_peft_model"), "unsloth FastLlamaModel.get_peft_model")],
        # model.fast_generate = model.vllm_engine.generate (a vllm.LLM); model.load_lora / save_lora are
        # functools.partial(unsloth_zoo.vllm_utils.load_lora / save_lora, model) (unsloth/models/_utils.py).
        "fast_generate": [_function_signature(_find(src["vllm/entrypoints/llm.py"], "LLM", "generate"),
                                              "vllm LLM.generate", drop_first=1)],
        "load_lora": [_function_signature(_find(zoo, None, "load_lora"), "unsloth_zoo.vllm_utils.load_lora", drop_first=1)],
        "save_lora": [_function_signature(_find(zoo, None, "save_lora"), "unsloth_zoo.vllm_utils.save_lora", drop_first=1),
                      _function_signature(_find(src["unsloth/models/_utils.py"], None, "save_lora_adapter"),
                                          "unsloth save_lora_adapter (no vLLM engine)", drop_first=1)],
        "SamplingParams": [_struct_signature(_find(src["vllm/sampling_params.py"], None, "SamplingParams"),
                                             "vllm.SamplingParams")],
        "LoRARequest": [_struct_signature(_find(src["vllm/lora/request.py"], None, "LoRARequest"),
                                          "vllm.lora.request.LoRARequest")],
    }


# ------------------------------------------------------------------------------------------------- course calls

@dataclasses.dataclass
class CourseCall:
    kind: str
    where: str
    n_positional: int
    keywords: list[str]
    unresolved: str | None = None  # a **mapping the scanner could not resolve


def _imported_modules(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {a.asname or a.name for a in node.names if a.name[:1].islower()}
    return names


def _call_kind(call: ast.Call, modules: set[str]) -> str | None:
    f = call.func
    if isinstance(f, ast.Attribute):
        if isinstance(f.value, ast.Name) and f.value.id == "FastLanguageModel" and f.attr in ("from_pretrained",
                                                                                            "get_peft_model"):
            return f"FastLanguageModel.{f.attr}"
        if f.attr in ("fast_generate", "load_lora", "save_lora"):
            receiver = f.value
            if isinstance(receiver, ast.Name) and receiver.id in modules:
                return None  # grpo_helpers' own training.load_lora / save_lora, not the model's method
            return f.attr
        if f.attr in ("SamplingParams", "LoRARequest"):
            return f.attr
    if isinstance(f, ast.Name) and f.id in ("SamplingParams", "LoRARequest"):
        return f.id
    return None


def _mapping_keys(func: ast.AST | None, name: str) -> list[str] | None:
    """Keys put into the dict ``name`` inside ``func``: ``name = dict(a=..)`` / ``{'a': ..}`` and ``name.update(b=..)``."""
    if func is None:
        return None
    keys, found = [], False
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = node.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict" and not value.args:
                keys += [k.arg for k in value.keywords if k.arg]
                found = True
            elif isinstance(value, ast.Dict) and all(isinstance(k, ast.Constant) for k in value.keys):
                keys += [k.value for k in value.keys]
                found = True
            else:
                return None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == name):
            if node.args:
                return None
            keys += [k.arg for k in node.keywords if k.arg]
    return keys if found else None


def scan_source(source: str, where: str) -> list[CourseCall]:
    """Every vLLM/Unsloth call in ``source``, with its keywords (``**dict`` built in the same function resolved)."""
    tree = ast.parse(source)
    modules = _imported_modules(tree)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kind = _call_kind(node, modules)
        if kind is None:
            continue
        func = node
        while func in parents and not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = parents[func]
        func = func if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) else tree
        keywords, unresolved = [], None
        for kw in node.keywords:
            if kw.arg is not None:
                keywords.append(kw.arg)
            elif isinstance(kw.value, ast.Name) and (keys := _mapping_keys(func, kw.value.id)) is not None:
                keywords += keys
            else:
                unresolved = ast.unparse(kw.value)
        if any(isinstance(a, ast.Starred) for a in node.args):
            unresolved = "*" + ", ".join(ast.unparse(a) for a in node.args if isinstance(a, ast.Starred))
        calls.append(CourseCall(kind, f"{where}:{node.lineno}", len(node.args), keywords, unresolved))
    return calls


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        src = "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())
        try:
            ast.parse(src)
        except SyntaxError:
            continue
        lines.append(src)
    return "\n\n".join(lines)


def course_calls() -> list[CourseCall]:
    calls = []
    for path in sorted((ROOT / "grpo_helpers").glob("*.py")):
        calls += scan_source(path.read_text(), str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        calls += scan_source(_notebook_code(path), str(path.relative_to(ROOT)))
    return calls


def check_calls(calls: list[CourseCall], signatures: dict[str, list[Signature]]) -> list[str]:
    """One line per call that does not match the real signature (empty: all match)."""
    errors = []
    for call in calls:
        if call.unresolved:
            errors.append(f"{call.where}: {call.kind}(..., {call.unresolved}) cannot be checked: pass keywords "
                          "explicitly or build the dict with dict(...)/.update(...) in the same function")
            continue
        for sig in signatures[call.kind]:
            errors += [f"{call.where}: {call.kind}: {p}" for p in sig.problems(call.n_positional, call.keywords)]
    return errors


# -------------------------------------------------------------------------------------------------------- tests

def test_every_course_call_matches_the_pinned_signatures(sources):
    calls = course_calls()
    errors = check_calls(calls, real_signatures(sources))
    assert not errors, "\n".join(errors)
    print(f"\n{len(calls)} vLLM/Unsloth calls checked against unsloth {WHEELS['unsloth']}, unsloth_zoo "
          f"{WHEELS['unsloth_zoo']}, vllm {WHEELS['vllm']}:")
    for call in calls:
        print(f"  {call.where}: {call.kind}({call.n_positional} positional; {', '.join(call.keywords)})")


def test_the_scan_finds_the_calls_the_course_relies_on():
    # If a refactor hides a call from the scanner, this fails instead of the check above passing vacuously.
    by_kind: dict[str, set[str]] = {}
    for call in course_calls():
        by_kind.setdefault(call.kind, set()).update(call.keywords)
    assert {"model_name", "max_seq_length", "load_in_4bit", "fast_inference", "max_lora_rank",
            "gpu_memory_utilization"} <= by_kind["FastLanguageModel.from_pretrained"]
    assert {"r", "lora_alpha", "target_modules", "use_gradient_checkpointing", "random_state"} <= \
        by_kind["FastLanguageModel.get_peft_model"]
    assert {"temperature", "top_p", "max_tokens", "n", "seed"} <= by_kind["SamplingParams"]
    assert {"sampling_params", "lora_request"} <= by_kind["fast_generate"]
    assert "LoRARequest" in by_kind and "save_lora" in by_kind


def test_lora_request_positional_order(sources):
    # training._vllm_lora_request passes (name, int id, path) by position: the fields must stay in that order.
    sig = real_signatures(sources)["LoRARequest"][0]
    assert sig.positional[:3] == ("lora_name", "lora_int_id", "lora_path")


def test_the_seeds_calls_match_too(sources):
    # The seed notebook's own vLLM calls (model.load_lora("grpo_saved_lora"), fast_generate(text, sampling_params=...,
    # lora_request=...)) are valid signatures; the course's fix is the argument type, see training.load_lora.
    seed = ('model.save_lora("grpo_saved_lora")\nr = model.load_lora("grpo_saved_lora")\n'
            'out = model.fast_generate([text], sampling_params=sp, lora_request=r)\n'
            'sp = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=1024)\n')
    assert check_calls(scan_source(seed, "seed"), real_signatures(sources)) == []


def test_a_wrong_keyword_is_caught(sources):
    bad = ('def load(kwargs={}):\n'
           '    kwargs = dict(model_name="x", load_in_4bit=True)\n'
           '    kwargs.update(max_lora_rnak=8)\n'
           '    FastLanguageModel.from_pretrained(**kwargs)\n'
           'SamplingParams(temperature=1.0, max_new_tokens=8)\n'
           'LoRARequest("a", 1, "p", "base", "extra", True, False, "too many")\n'
           'FastLanguageModel.get_peft_model(model, r=8, gradient_checkpointing="unsloth")\n')
    errors = "\n".join(check_calls(scan_source(bad, "bad"), real_signatures(sources)))
    assert "'max_lora_rnak' is not a parameter" in errors and "swallowed by **kwargs" in errors
    assert "'max_new_tokens' is not a parameter of vllm.SamplingParams" in errors
    assert "8 positional arguments" in errors
    assert "'gradient_checkpointing' is not a parameter" in errors
