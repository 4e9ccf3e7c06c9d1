"""Where runs live on Colab (Drive, asked for), Kaggle (/kaggle/working) and locally (./runs), faked in tmp_path."""

from __future__ import annotations

import doctest
import sys
import types

import pytest

from grpo_helpers import runtime as course_runtime
from grpo_helpers import storage


@pytest.fixture
def place(monkeypatch, tmp_path):
    """Fake a runtime: 'colab' (google.colab importable), 'kaggle' (/kaggle/working exists) or 'local'."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRPO_COURSE_RUNS", raising=False)
    monkeypatch.setattr(storage, "DRIVE_MOUNT", tmp_path / "content" / "drive")
    monkeypatch.setattr(storage, "KAGGLE_WORKING", tmp_path / "kaggle" / "working")
    monkeypatch.setattr(storage, "KAGGLE_INPUT", tmp_path / "kaggle" / "input")
    mounts = []

    def fake(runtime: str):
        colab = runtime == "colab"
        monkeypatch.setattr(course_runtime, "_colab_available", lambda: colab)
        monkeypatch.setattr(course_runtime, "KAGGLE_WORKING", storage.KAGGLE_WORKING)
        if runtime == "kaggle":
            storage.KAGGLE_WORKING.mkdir(parents=True)
        if colab:
            drive = types.ModuleType("google.colab.drive")
            drive.mount = lambda path: (mounts.append(path), (storage.DRIVE_MOUNT / "MyDrive").mkdir(parents=True))
            colab_module = types.ModuleType("google.colab")
            colab_module.drive = drive
            monkeypatch.setitem(sys.modules, "google.colab", colab_module)
            monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
        return mounts

    return fake


def test_doctests():
    failures, tried = doctest.testmod(storage)
    assert tried >= 3 and failures == 0


def test_local_runs_next_to_the_notebook(place):
    place("local")
    assert course_runtime.detect_runtime() == "local"
    assert storage.runs_root() == storage.LOCAL_RUNS and storage.run_dir("x") == storage.LOCAL_RUNS / "x"


def test_kaggle_runs_in_working(place):
    place("kaggle")
    assert course_runtime.detect_runtime() == "kaggle"
    assert storage.runs_root() == storage.KAGGLE_WORKING / "grpo-course" / "runs"


def test_colab_never_mounts_drive_silently(place, capsys):
    mounts = place("colab")
    assert course_runtime.detect_runtime() == "colab"
    assert storage.runs_root() == storage.LOCAL_RUNS  # nothing asked yet: local, and nothing mounted
    assert mounts == []
    root = storage.use_google_drive()
    out = capsys.readouterr().out
    assert "Mounting Google Drive" in out and "allow access" in out
    assert mounts == [str(storage.DRIVE_MOUNT)]
    assert root == storage.DRIVE_MOUNT / "MyDrive" / "grpo-course" / "runs" == storage.runs_root()
    assert root.is_dir()
    storage.use_google_drive()  # already mounted: not mounted again
    assert len(mounts) == 1


def test_use_google_drive_off_colab_says_where_runs_go(place, capsys):
    place("local")
    assert storage.use_google_drive() == storage.LOCAL_RUNS
    assert "Not on Colab" in capsys.readouterr().out


def test_env_override_wins(place, monkeypatch, tmp_path):
    place("kaggle")
    monkeypatch.setenv("GRPO_COURSE_RUNS", str(tmp_path / "elsewhere"))
    assert storage.runs_root() == tmp_path / "elsewhere"


def _adapter(folder):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def test_find_lora_looks_everywhere_and_prefers_the_finished_adapter(place, tmp_path, capsys):
    place("kaggle")
    assert storage.find_lora("course") is None
    # Notebook 06 ran from the repository root, this notebook runs in notebooks/: ../runs is found.
    (tmp_path / "nb").mkdir()
    upper = _adapter(tmp_path / "runs" / "course" / "lora")
    import os

    os.chdir(tmp_path / "nb")
    assert storage.find_lora("course").resolve() == upper.resolve()
    # An interrupted run on Kaggle: only checkpoints; the newest one with an adapter is used, and it says so.
    ckpts = storage.KAGGLE_WORKING / "grpo-course" / "runs" / "k" / "checkpoints"
    _adapter(ckpts / "checkpoint-25")
    _adapter(ckpts / "checkpoint-50")
    (ckpts / "checkpoint-75").mkdir()  # being written when the runtime died: no adapter yet
    assert storage.find_lora("k") == ckpts / "checkpoint-50"
    assert "using" in capsys.readouterr().out
    finished = _adapter(storage.KAGGLE_WORKING / "grpo-course" / "runs" / "k" / "lora")
    assert storage.find_lora("k") == finished
    # A previous version's output attached as Kaggle input data.
    old = _adapter(storage.KAGGLE_INPUT / "my-run" / "grpo-course" / "runs" / "old" / "lora")
    assert storage.find_lora("old") == old
