"""Where runs (LoRA adapters, checkpoints, metrics) are stored so that they outlive a Colab or Kaggle runtime.

Colab gives each notebook its own runtime, and a free session can drop at any time: whatever is written to
``/content`` is gone afterwards. So the course stores its runs in the first of these that applies:

1. ``GRPO_COURSE_RUNS`` (read in :mod:`grpo_helpers.config`), when set;
2. Kaggle: ``/kaggle/working/grpo-course/runs`` (kept as the notebook's output when you "Save Version");
3. Colab with Google Drive mounted: ``/content/drive/MyDrive/grpo-course/runs``. Drive is mounted only when you
   run :func:`use_google_drive` yourself; the course never mounts it silently;
4. anywhere else: ``./runs`` next to the notebook.

Which runtime this is comes from :func:`grpo_helpers.runtime.detect_runtime`.

Example:
    >>> runs_root() in (LOCAL_RUNS, KAGGLE_WORKING / PROJECT / "runs", drive_runs()) or runs_override() is not None
    True
"""

from __future__ import annotations

from pathlib import Path

from grpo_helpers.config import runs_override
from grpo_helpers.runtime import KAGGLE_WORKING, detect_runtime

PROJECT = "grpo-course"
DRIVE_MOUNT = Path("/content/drive")
KAGGLE_INPUT = Path("/kaggle/input")
LOCAL_RUNS = Path("runs")
LORA = "lora"
CHECKPOINTS = "checkpoints"


def drive_runs() -> Path:
    """The course's folder on a mounted Google Drive (it may not exist yet)."""
    return DRIVE_MOUNT / "MyDrive" / PROJECT / "runs"


def drive_mounted() -> bool:
    """Whether Google Drive is mounted at ``/content/drive`` in this runtime."""
    return (DRIVE_MOUNT / "MyDrive").is_dir()


def use_google_drive() -> Path:
    """Mount Google Drive (Colab only, after saying so) and return the runs folder on it.

    Colab opens a dialog asking you to allow access; nothing is mounted unless you run this. Elsewhere it only says
    where runs are stored instead.

    Example:
        >>> use_google_drive()  # doctest: +SKIP
        Mounting Google Drive at /content/drive: ...
        PosixPath('/content/drive/MyDrive/grpo-course/runs')
    """
    if detect_runtime() != "colab":
        root = runs_root()
        print(f"Not on Colab: no Google Drive to mount. Runs are stored in {root.resolve()}.")
        return root
    if not drive_mounted():
        print(f"Mounting Google Drive at {DRIVE_MOUNT} so the LoRA and the checkpoints outlive this runtime "
              f"(they go to MyDrive/{PROJECT}/runs). Colab now asks you to allow access.")
        from google.colab import drive

        drive.mount(str(DRIVE_MOUNT))
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    print(f"Runs are stored in {root}.")
    return root


def runs_root() -> Path:
    """The folder runs are stored in: ``GRPO_COURSE_RUNS``, Kaggle's working folder, Drive when mounted, else ./runs.

    Example:
        >>> runs_root()  # doctest: +SKIP
        PosixPath('runs')
    """
    override = runs_override()
    if override is not None:
        return override
    runtime = detect_runtime()
    if runtime == "kaggle":
        return KAGGLE_WORKING / PROJECT / "runs"
    if runtime == "colab" and drive_mounted():
        return drive_runs()
    return LOCAL_RUNS


def run_dir(run_name: str = "course") -> Path:
    """``<runs_root>/<run_name>``: the run's adapter (``lora/``), checkpoints and metrics live in it.

    Example:
        >>> run_dir("demo").name
        'demo'
    """
    return runs_root() / run_name


def _candidates(run_name: str) -> list[Path]:
    """Run folders to look in, most likely first (deduplicated)."""
    roots = [runs_root(), LOCAL_RUNS, Path("..") / LOCAL_RUNS, KAGGLE_WORKING / PROJECT / "runs"]
    if drive_mounted():
        roots.append(drive_runs())
    if KAGGLE_INPUT.is_dir():  # a previous notebook's output added to this one as input data
        roots += sorted(KAGGLE_INPUT.glob(f"*/{PROJECT}/runs")) + sorted(KAGGLE_INPUT.glob("*/runs"))
    seen, out = set(), []
    for root in roots:
        folder = root / run_name
        key = str(folder.resolve()) if folder.exists() else str(folder)
        if key not in seen:
            seen.add(key)
            out.append(folder)
    return out


def _newest_checkpoint(folder: Path) -> Path | None:
    steps = [(int(p.name.split("-")[-1]), p) for p in (folder / CHECKPOINTS).glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "adapter_config.json").is_file()]
    return max(steps)[1] if steps else None


def find_lora(run_name: str = "course") -> Path | None:
    """The saved LoRA adapter of ``run_name``, looked for in every place a course run may be stored; None if none.

    Each run folder is checked for ``lora/`` (what ``save_lora`` wrote at the end) and then for the newest checkpoint
    (an interrupted run); it says which one it found.

    Example:
        >>> find_lora("surely-no-such-run") is None
        True
    """
    for folder in _candidates(run_name):
        if (folder / LORA / "adapter_config.json").is_file():
            return folder / LORA
        checkpoint = _newest_checkpoint(folder)
        if checkpoint is not None:
            print(f"No finished adapter in {folder / LORA}, but the run left a checkpoint: using {checkpoint}.")
            return checkpoint
    return None
