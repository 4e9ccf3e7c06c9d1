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

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / "build" / "wheelhouse"

pytestmark = pytest.mark.wheelhouse


def clean_env(tmp: Path) -> dict:
    """This process's environment without any pip setting: only the wheelhouse may provide packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1",
               HOME=str(tmp / "home"), GRPO_COURSE_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1")
    return env


@pytest.fixture(scope="module")
def wheelhouse():
    stamp = WHEELHOUSE / "pyproject.toml"
    fresh = stamp.exists() and stamp.read_text() == (ROOT / "pyproject.toml").read_text()
    start = time.perf_counter()
    if not fresh:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_wheelhouse.py"), "--out", str(WHEELHOUSE)],
                       check=True)
        stamp.write_text((ROOT / "pyproject.toml").read_text())
    else:  # the course's own wheel must match the code under test
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(WHEELHOUSE),
                        str(ROOT)], check=True)
    print(f"\nwheelhouse ready in {time.perf_counter() - start:.0f} s "
          f"({sum(p.stat().st_size for p in WHEELHOUSE.iterdir()) / 2**20:.0f} MiB)")
    return WHEELHOUSE


def test_wheelhouse_installs_the_course_offline_into_a_fresh_venv(wheelhouse, tmp_path):
    env = clean_env(tmp_path)
    target = tmp_path / "room-venv"
    venv.create(target, with_pip=True)
    py = target / "bin" / "python"
    offline = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["grpo_course"]["no_deps"]
    start = time.perf_counter()
    for args in (["grpo-helpers[cpu]"], ["--no-deps", *offline]):
        result = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse),
                                 *args], env=env, capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, f"offline install failed:\n{result.stderr[-3000:]}"
    installed = time.perf_counter() - start
    check = subprocess.run([str(py), "-m", "grpo_helpers.preflight", "--only", "python", "pins", "offline pkgs",
                            "gsm8k data", "widgets", "challenge"], env=env, capture_output=True, text=True,
                           timeout=300, cwd=tmp_path)
    print(f"\noffline install into a fresh venv: {installed:.0f} s\n{check.stdout}")
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    lines = check.stdout.splitlines()
    assert sum(line.startswith("OK ") for line in lines) == 6 and lines[-1].startswith("READY")
    names = zipfile.ZipFile(wheelhouse / "grpo-course-notebooks.zip").namelist()
    assert "grpo-course/notebooks/04_reward_design.ipynb" in names
    assert "--no-index --find-links WHEELHOUSE" in (wheelhouse / "INSTALL.txt").read_text()
