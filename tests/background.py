"""Slow subprocess work that waits on the network or the disk, started as soon as pytest has collected the tests.

pip resolving the GPU stacks against PyPI and the offline wheelhouse install take ~2.8 minutes of wall time run alone
(measured: 168 s wall, 152 s user + 63 s system CPU, so they do compete for the 2 cores; how much the overlap saves
in a full run is not measured yet). Started early (``tests/conftest.py``'s ``pytest_collection_finish``)
and niced, they run beside the CPU-bound tests that come before them instead of adding their wall time at the end;
their test then only waits for the result. A module opts in with a ``start_in_background()`` function.

Example (in a test module)::

    def start_in_background():
        background.start("resolves", resolve_all)

    @pytest.fixture(scope="module")
    def resolved():
        return background.result("resolves", resolve_all)
"""

from __future__ import annotations

import atexit
import concurrent.futures
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

NICE = 10  # the CPU-bound tests in the foreground keep priority; pip gets what they leave
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tests-background")
_JOBS: dict[str, concurrent.futures.Future] = {}


def niced(cmd: list[str]) -> list[str]:
    """``cmd`` under ``nice`` (a prefix, not ``preexec_fn``: that one may deadlock a child forked beside threads)."""
    return ["nice", "-n", str(NICE), *cmd]


def start(key: str, fn: Callable[[], Any]) -> concurrent.futures.Future:
    """Start ``fn`` in a background thread once per test session (a second call returns the first job)."""
    if key not in _JOBS:
        _JOBS[key] = _POOL.submit(fn)
    return _JOBS[key]


def result(key: str, fn: Callable[[], Any]) -> Any:
    """The result of ``fn`` started by :func:`start` (started now if it was not); raises what ``fn`` raised."""
    return start(key, fn).result()


def temp_dir(prefix: str) -> Path:
    """A temporary folder removed when the test process exits (tmp_path does not exist yet at collection time)."""
    path = Path(tempfile.mkdtemp(prefix=f"grpo-course-{prefix}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
