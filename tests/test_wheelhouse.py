"""``make wheelhouse``: a room with no internet installs the course from one folder, into a fresh venv.

Builds the wheelhouse (downloads from the package index once; pip's cache makes reruns fast) unless
``build/wheelhouse`` already holds one made from the current pyproject.toml, then installs ``grpo-helpers[cpu]`` and
the offline packages with ``pip install --no-index --find-links`` into a new venv, with every pip setting of this
machine removed (its find-links or index could otherwise hide a missing wheel), and runs the pre-flight there.
Marked ``wheelhouse`` (a few minutes: ~470 MiB of wheels are unpacked): ``make test-wheelhouse`` runs it alone.
"""

import os
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

import background

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / "build" / "wheelhouse"

pytestmark = pytest.mark.wheelhouse


def clean_env(tmp: Path) -> dict:
    """This process's environment without any pip setting: only the wheelhouse may provide packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1",
               HOME=str(tmp / "home"), GRPO_COURSE_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1")
    return env


def build_wheelhouse() -> str:
    """Build (or refresh) build/wheelhouse; returns what it took, for the test's output."""
    stamp = WHEELHOUSE / "pyproject.toml"
    fresh = stamp.exists() and stamp.read_text() == (ROOT / "pyproject.toml").read_text()
    start = time.perf_counter()
    if not fresh:
        subprocess.run(background.niced([sys.executable, str(ROOT / "scripts" / "make_wheelhouse.py"), "--out",
                                         str(WHEELHOUSE)]), check=True, capture_output=True)
        stamp.write_text((ROOT / "pyproject.toml").read_text())
    else:  # the course's own wheel must match the code under test
        subprocess.run(background.niced([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir",
                                         str(WHEELHOUSE), str(ROOT)]), check=True, capture_output=True)
    return (f"wheelhouse ready in {time.perf_counter() - start:.0f} s "
            f"({sum(p.stat().st_size for p in WHEELHOUSE.iterdir()) / 2**20:.0f} MiB)")


def install_offline() -> dict:
    """The room's install: a fresh venv, pip with no index and no pip settings, then the pre-flight there."""
    built = build_wheelhouse()
    tmp = background.temp_dir("room")
    env = clean_env(tmp)
    target = tmp / "room-venv"
    venv.create(target, with_pip=True)
    py = target / "bin" / "python"
    offline = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["grpo_course"]["no_deps"]
    start = time.perf_counter()
    for args in (["grpo-helpers[cpu]"], ["--no-deps", *offline]):
        result = subprocess.run(background.niced([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                                                  str(WHEELHOUSE), *args]), env=env, capture_output=True, text=True,
                                timeout=1200)
        if result.returncode:
            return dict(built=built, failed=f"offline install failed:\n{result.stderr[-3000:]}")
    installed = time.perf_counter() - start
    check = subprocess.run([str(py), "-m", "grpo_helpers.preflight", "--only", "python", "pins", "offline pkgs",
                            "gsm8k data", "widgets", "challenge"], env=env, capture_output=True, text=True,
                           timeout=300, cwd=tmp)
    return dict(built=built, failed=None, installed=installed, check=check)


def start_in_background() -> None:
    """Called by tests/conftest.py once collection is done: the build and install overlap the tests before them."""
    background.start("wheelhouse", install_offline)


def test_wheelhouse_installs_the_course_offline_into_a_fresh_venv():
    room = background.result("wheelhouse", install_offline)
    print(f"\n{room['built']}")
    assert room["failed"] is None, room["failed"]
    check = room["check"]
    print(f"offline install into a fresh venv: {room['installed']:.0f} s\n{check.stdout}")
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    lines = check.stdout.splitlines()
    assert sum(line.startswith("OK ") for line in lines) == 6 and lines[-1].startswith("READY")
    names = zipfile.ZipFile(WHEELHOUSE / "grpo-course-notebooks.zip").namelist()
    assert "grpo-course/notebooks/04_reward_design.ipynb" in names
    assert "--no-index --find-links WHEELHOUSE" in (WHEELHOUSE / "INSTALL.txt").read_text()
