"""Run untrusted participant code (a reward function) so that nothing it does can crash or hang the caller.

:func:`run_isolated` calls ``job()`` in a forked child process with a time limit and a memory cap. The child sends
back a JSON-able result; whatever goes wrong (an exception, ``sys.exit()``, ``os._exit()``, an endless loop, a
memory bomb, a segfault, printing megabytes) comes back as an :class:`Outcome` with a one-line ``error``.

Where ``fork`` does not exist (Windows) it falls back to a thread: exceptions and timeouts are still reported, but a
timed-out thread keeps running in the background and ``os._exit()`` would end the kernel.

This isolates *mistakes*, not attackers: the child runs as the same user on the same machine.

Example:
    >>> run_isolated(lambda: sum(range(10)), timeout=5).value
    45
    >>> run_isolated(lambda: 1 / 0, timeout=5).error
    'raised: ZeroDivisionError: division by zero'
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from typing import Any, Callable

MAX_RESULT_BYTES = 8 * 2**20  # a result larger than this is a bug (the leaderboard's is a few kB)
MEMORY_CAP_BYTES = 2 * 2**30  # extra address space the child may map beyond what it inherited
PRINT_TAIL_CHARS = 300  # how much of what the code printed is kept for the error message


@dataclasses.dataclass
class Outcome:
    """What came back: ``value`` (the job's JSON-able result) or ``error`` (one line), the seconds it took, and the
    last characters the code printed."""

    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    printed: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class _Tail:
    """A stdout/stderr stand-in that keeps only the last characters written (printing can never fill memory)."""

    def __init__(self, keep: int = PRINT_TAIL_CHARS):
        self.keep, self.text = keep, ""

    def write(self, s) -> int:
        self.text = (self.text + str(s))[-self.keep:]
        return len(str(s))

    def flush(self) -> None:
        pass


def _short(err: BaseException) -> str:
    message = " ".join(str(err).split())
    message = message if len(message) <= 300 else message[:299] + "…"
    return f"raised: {type(err).__name__}: {message}" if message else f"raised: {type(err).__name__}"


def _cap_memory() -> None:
    """Limit the child's address space to what it inherited plus MEMORY_CAP_BYTES (Linux; elsewhere a no-op)."""
    try:
        import resource

        size_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
        limit = size_kb * 1024 + MEMORY_CAP_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except Exception:  # noqa: BLE001 - no /proc, no resource module, or a hard limit already lower: run uncapped
        pass


def _child(job: Callable[[], Any], conn) -> None:
    """Body of the forked child: own process group (so a timeout kills what it spawned), capped memory, no output."""
    try:
        os.setpgrp()
    except OSError:
        pass
    _cap_memory()
    tail = _Tail()
    try:
        with contextlib.redirect_stdout(tail), contextlib.redirect_stderr(tail):
            payload = {"value": job()}
        data = json.dumps(payload, allow_nan=True).encode()
    except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are mistakes to report too
        data = json.dumps({"error": _short(err)}).encode()
    if len(data) > MAX_RESULT_BYTES:
        data = json.dumps({"error": f"returned: {len(data) / 2**20:.0f} MB of results, far too much"}).encode()
    data = json.dumps({**json.loads(data), "printed": tail.text}).encode()
    try:
        conn.send_bytes(data)
    finally:
        os._exit(0)  # skip atexit handlers and the Jupyter state the fork inherited


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own group: it and anything it started
    except (ProcessLookupError, PermissionError, OSError):
        proc.kill()
    proc.join(5)


def _run_forked(job: Callable[[], Any], timeout: float) -> Outcome:
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(job, sender), daemon=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "fork() in a multi-threaded process" (Python 3.12+)
        proc.start()
    sender.close()
    data, finished = None, False
    try:
        finished = receiver.poll(timeout)  # True on data, and on end-of-file when the child died
        if finished:
            data = receiver.recv_bytes(MAX_RESULT_BYTES + 4096)
    except (EOFError, OSError):
        data = None  # the child died before sending (os._exit, segfault, killed for memory)
    seconds = time.perf_counter() - start
    receiver.close()
    if data is None:
        if not finished:
            _kill(proc)
            return Outcome(error=f"timeout: still running after {timeout:g} s (an endless loop? a slow call per "
                                 "completion?)", seconds=seconds)
        proc.join(5)
        _kill(proc)
        return Outcome(error=f"crashed: the process ended (exit code {proc.exitcode}) without returning rewards "
                             "(sys.exit/os._exit, a crash, or out of memory)", seconds=seconds)
    proc.join(5)
    if proc.is_alive():
        _kill(proc)
    try:
        payload = json.loads(data)
    except ValueError:
        return Outcome(error="crashed: sent back something that is not a result", seconds=seconds)
    return Outcome(value=payload.get("value"), error=payload.get("error"), seconds=seconds,
                   printed=str(payload.get("printed", "")))


def _run_threaded(job: Callable[[], Any], timeout: float) -> Outcome:
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = job()
        except BaseException as err:  # noqa: BLE001
            box["error"] = _short(err)

    start = time.perf_counter()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    seconds = time.perf_counter() - start
    if thread.is_alive():
        return Outcome(error=f"timeout: still running after {timeout:g} s (it keeps running in the background; "
                             "restart the kernel to stop it)", seconds=seconds)
    return Outcome(value=box.get("value"), error=box.get("error"), seconds=seconds)


def can_fork() -> bool:
    """Whether full isolation (a forked child that can be killed) is available here (Linux, macOS, Colab)."""
    return "fork" in multiprocessing.get_all_start_methods() and sys.platform != "win32"


def run_isolated(job: Callable[[], Any], timeout: float = 10.0) -> Outcome:
    """Run ``job()`` isolated from the caller, at most ``timeout`` seconds; its result must be JSON-able.

    Example:
        >>> run_isolated(lambda: [0.5, 2.0]).value
        [0.5, 2.0]
    """
    return _run_forked(job, timeout) if can_fork() else _run_threaded(job, timeout)
