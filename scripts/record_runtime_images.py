"""Record the package sets of Colab's and Kaggle's GPU images into grpo_helpers/data_files/runtime_images.json.

Reads git checkouts of the two public sources, at the commits given:

* ``googlecolab/backend-info``: ``pip-freeze.gpu.txt`` and ``os-info-gpu.txt`` (Colab's GPU runtime);
* ``Kaggle/docker-python``: ``Dockerfile.tmpl`` (its GPU image is built FROM a dated Colab runtime release) and
  ``kaggle_requirements.txt`` (what Kaggle adds on top, with uv, keeping Colab's torch/jax/tensorflow).

    python scripts/record_runtime_images.py --colab PATH/backend-info --kaggle PATH/docker-python

The NVIDIA driver is the host's, not the image's: Colab's comes from backend-info's own changelog (the commit that
moved Colab to driver 580.82.07); Kaggle publishes none, so it is recorded as unknown.
tests/test_stack_resolves.py resolves every stack profile's pip command against these sets.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "grpo_helpers" / "data_files" / "runtime_images.json"
DRIVER_COMMIT = "66982a15e8f58adbbb17cf4b656cb19f36f984b7"  # backend-info: "updates to versions: drivers: 580.82.07"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def freeze(text: str) -> dict[str, str]:
    """``name==version`` lines of a pip freeze (other forms, e.g. ``name @ url``, are left out)."""
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line.strip())
        if match:
            out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def python_version(os_info: str) -> str:
    return re.search(r"^Python (\S+)", os_info, re.M).group(1)


def colab_at(repo: Path, commit: str) -> dict:
    os_info = git(repo, "show", f"{commit}:os-info-gpu.txt")
    return dict(packages=freeze(git(repo, "show", f"{commit}:pip-freeze.gpu.txt")), python=python_version(os_info),
                os=next(line for line in os_info.splitlines() if line.startswith("Ubuntu")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--colab", type=Path, required=True, help="a git checkout of googlecolab/backend-info")
    parser.add_argument("--kaggle", type=Path, required=True, help="a git checkout of Kaggle/docker-python")
    parser.add_argument("--colab-commit", default="HEAD")
    parser.add_argument("--kaggle-commit", default="HEAD")
    args = parser.parse_args()

    colab_commit = git(args.colab, "rev-parse", args.colab_commit).strip()
    colab_date = git(args.colab, "show", "-s", "--format=%cs", colab_commit).strip()
    driver_note = git(args.colab, "show", "-s", "--format=%s", DRIVER_COMMIT).strip()
    driver = re.search(r"drivers: (\d+\.\d+\.\d+)", driver_note).group(1)
    colab = dict(source="github.com/googlecolab/backend-info", commit=colab_commit, date=colab_date,
                 files=["pip-freeze.gpu.txt", "os-info-gpu.txt"], gpu="Tesla T4", capability=[7, 5], driver=driver,
                 driver_source=f"backend-info commit {DRIVER_COMMIT[:8]}: {driver_note!r}", **colab_at(args.colab, colab_commit))

    kaggle_commit = git(args.kaggle, "rev-parse", args.kaggle_commit).strip()
    dockerfile = git(args.kaggle, "show", f"{kaggle_commit}:Dockerfile.tmpl")
    release = re.search(r"FROM \S+/runtime:release-colab-external-images_(\d{8})", dockerfile).group(1)
    day = f"{release[:4]}-{release[4:6]}-{release[6:]}"
    # The Colab runtime release Kaggle builds on: the last backend-info change to the GPU files before that day.
    base = git(args.colab, "log", "-1", "--format=%H", f"--before={day}", colab_commit, "--",
               "pip-freeze.gpu.txt", "os-info-gpu.txt").strip()
    kaggle = colab_at(args.colab, base)
    requirements = git(args.kaggle, "show", f"{kaggle_commit}:kaggle_requirements.txt")
    added = freeze(requirements)  # the exact pins Kaggle adds; its ranges are met by the base image's versions
    kaggle["packages"].update(added)
    kaggle.update(source="github.com/Kaggle/docker-python", commit=kaggle_commit,
                  date=git(args.kaggle, "show", "-s", "--format=%cs", kaggle_commit).strip(),
                  files=["Dockerfile.tmpl", "kaggle_requirements.txt"],
                  base=dict(release=release, source="github.com/googlecolab/backend-info", commit=base,
                            note="Kaggle's GPU image is FROM this Colab runtime release; torch, jax and tensorflow are "
                                 "kept from it (Dockerfile.tmpl)"),
                  added_pins=added, gpu="Tesla T4", capability=[7, 5], driver=None,
                  driver_source="the host's driver is not part of the image and Kaggle does not publish it")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"colab-gpu": colab, "kaggle-gpu": kaggle}, indent=1, sort_keys=True) + "\n")
    for name, image in (("colab-gpu", colab), ("kaggle-gpu", kaggle)):
        print(f"{name}: Python {image['python']}, torch {image['packages'].get('torch')}, "
              f"{len(image['packages'])} packages, commit {image['commit'][:8]}")


if __name__ == "__main__":
    main()
