"""Run participant code (a reward function) so that nothing it does can crash, hang or harm the caller.

Two ways in, for two kinds of code:

* :func:`run_isolated` runs **your own** code (a function from your notebook): ``job()`` in a forked child with a
  time limit and a memory cap. Whatever goes wrong (an exception, ``sys.exit()``, ``os._exit()``, an endless loop, a
  memory bomb, a segfault, printing megabytes) comes back as an :class:`Outcome` with a one-line ``error``. It
  isolates *mistakes*: the child is still you. Where ``fork`` does not exist (Windows) it falls back to a thread.
* :func:`run_untrusted` runs **someone else's file**, as the host of the reward challenge does. Three walls:

  1. *before running*, a static policy (:func:`check_policy`): RestrictedPython compiles the file, and only the
     allowed imports, no ``open``/``eval``/``exec``/``compile``/``__import__``, no names or attributes that start with
     ``_``, no ``globals``/``vars``/``getattr`` are accepted; a refusal is one line, ``refused: import of os``;
  2. *while running*, a fresh Python process (never a fork of yours: it holds none of your memory or variables)
     inside bubblewrap where Linux allows it (:func:`isolation`): no network, a read-only view of the system's
     files and Python only (no home, no project, no ``/mnt``), a private ``/tmp``, its own process tree;
  3. *inside that process*, before the file runs: limits on memory (:data:`MEMORY_CAP_BYTES`), wall and CPU time,
     file size and processes, and on Linux (x86-64 and 64-bit ARM) a seccomp filter that refuses to open files, sockets,
     new processes, ``exec`` and signals to others; the code runs with RestrictedPython's guarded builtins, and
     modules are handed over as read-only views of their allowed names.

Example:
    >>> run_isolated(lambda: sum(range(10)), timeout=5).value
    45
    >>> run_isolated(lambda: 1 / 0, timeout=5).error
    'raised: ZeroDivisionError: division by zero'
    >>> check_policy("import os\\n")
    'refused: import of os'
    >>> check_policy("def reward(completions, **kw):\\n    return [len(open('/etc/passwd').read())]\\n")
    'refused: open()'
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import functools
import importlib
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

MAX_RESULT_BYTES = 8 * 2**20  # a result larger than this is a bug (the leaderboard's is a few kB)
MEMORY_CAP_BYTES = 2 * 2**30  # extra address space the child may map beyond what it inherited
PRINT_TAIL_CHARS = 300  # how much of what the code printed is kept for the error message
STARTUP_GRACE = 10.0  # seconds the host waits beyond the time limit before it kills an untrusted process itself

# Standard-library modules a reward may import, each handed over without its submodules (``re.enum`` would lead
# to ``sys``). None: every public name; a tuple: only those names. Left out on purpose: os, sys, io, pathlib, socket,
# subprocess, ctypes, importlib, operator (attrgetter reads "__globals__"), copy and pickle (rebuild any object),
# functools.singledispatch and typing.get_type_hints (both eval() strings outside the policy).
STDLIB_IMPORTS: dict[str, tuple[str, ...] | None] = {
    "re": None, "math": None, "string": None, "collections": None, "itertools": None, "statistics": None,
    "fractions": None, "decimal": None, "numbers": None, "unicodedata": None, "difflib": None, "json": None,
    "time": None, "random": None,
    "functools": ("reduce", "partial", "lru_cache", "cache", "cmp_to_key"),
    "typing": ("Any", "Callable", "Dict", "Iterable", "List", "Mapping", "Optional", "Sequence", "Set", "Tuple",
               "Union"),
}
_NO_NAMES = {"string": {"Formatter"}}  # string.Formatter.get_field reads attributes past the policy

# Builtins a reward may use; everything else in Python's builtins is refused by name (see _REFUSED_BUILTINS).
_EXTRA_BUILTINS = ("list", "dict", "tuple", "set", "frozenset", "enumerate", "zip", "map", "filter", "sorted",
                   "reversed", "sum", "min", "max", "any", "all", "iter", "next", "format", "bin", "ascii", "bytes")


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


# ----------------------------------------------------------------------------------------------------------------
# Your own code: a forked child (or a thread on Windows)
# ----------------------------------------------------------------------------------------------------------------


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


def _timeout_error(timeout: float) -> str:
    return f"timeout: still running after {timeout:g} s (an endless loop? a slow call per completion?)"


def _crash_error(exitcode: Any) -> str:
    return (f"crashed: the process ended (exit code {exitcode}) without returning rewards (sys.exit/os._exit, a "
            "crash, or out of memory)")


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
            return Outcome(error=_timeout_error(timeout), seconds=seconds)
        proc.join(5)
        _kill(proc)
        if proc.exitcode in (-getattr(signal, "SIGALRM", 0), -getattr(signal, "SIGXCPU", 0)):
            return Outcome(error=_timeout_error(timeout), seconds=seconds)  # the alarm a locked-down child set
        return Outcome(error=_crash_error(proc.exitcode), seconds=seconds)
    proc.join(5)
    if proc.is_alive():
        _kill(proc)
    return _outcome_from(data, seconds)


def _outcome_from(data: bytes, seconds: float) -> Outcome:
    """Parse what a child sent back; the child is not trusted to have sent a well-formed result."""
    try:
        payload = json.loads(data)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except ValueError:
        return Outcome(error="crashed: sent back something that is not a result", seconds=seconds)
    error = payload.get("error")
    return Outcome(value=payload.get("value"), error=None if error is None else str(error)[:400],
                   seconds=seconds, printed=str(payload.get("printed", ""))[-PRINT_TAIL_CHARS:])


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


# ----------------------------------------------------------------------------------------------------------------
# Someone else's file, wall 1: the static policy (RestrictedPython)
# ----------------------------------------------------------------------------------------------------------------


def _allowed_builtin_names() -> set[str]:
    from RestrictedPython import safe_builtins

    return (set(safe_builtins) - {"setattr", "delattr", "_getattr_"}) | set(_EXTRA_BUILTINS)


# Python's builtins a file may not name (open, eval, exec, compile, globals, vars, getattr, type, dir, input, ...):
# every public builtin except print and range (RestrictedPython rewrites print) and the allowed ones (_first_problem).
_REFUSED_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_")) - {
    "print", "range", "Ellipsis", "NotImplemented", "True", "False", "None"}


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the file binds itself (a variable called ``type`` is its own, not the builtin)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def _importable(allowed: Mapping[str, tuple[str, ...] | None]) -> set[str]:
    """The allowed modules and the packages above them (``grpo_helpers`` for ``grpo_helpers.rewards``)."""
    parts = [m.split(".") for m in allowed]
    return {".".join(p[:i]) for p in parts for i in range(1, len(p) + 1)}


def _import_problem(node: ast.Import | ast.ImportFrom, allowed: Mapping[str, tuple[str, ...] | None]) -> str | None:
    importable = _importable(allowed)
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "refused: relative import"
        module = node.module or ""
        if module == "__future__":
            return None
        for alias in node.names:
            if f"{module}.{alias.name}" in importable:
                continue  # from grpo_helpers import rewards
            if module not in importable:
                return f"refused: import of {module}"
            if module not in allowed or alias.name not in _public_names(module, allowed):
                return f"refused: import of {alias.name} from {module}"
        return None
    for alias in node.names:
        if alias.name not in importable:
            return f"refused: import of {alias.name}"
    return None


def _first_problem(tree: ast.AST, allowed: Mapping[str, tuple[str, ...] | None]) -> str | None:
    """The first thing the policy refuses, in the words a participant needs (RestrictedPython enforces it too)."""
    refused_builtins = _REFUSED_BUILTINS - _allowed_builtin_names()
    bound = _bound_names(tree)
    nodes = sorted((n for n in ast.walk(tree) if hasattr(n, "lineno")), key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            problem = _import_problem(node, allowed)
            if problem:
                return problem
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in refused_builtins and node.id not in bound:
                return f"refused: {node.id}()" if callable(getattr(builtins, node.id, None)) else f"refused: {node.id}"
            if node.id.startswith("_") and node.id != "_":
                return f'refused: {node.id} (line {node.lineno}: names that start with "_" are off limits)'
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") and node.attr != "_":
                return f'refused: .{node.attr} (line {node.lineno}: names that start with "_" are off limits)'
            if node.attr in ("format", "format_map"):
                return f"refused: str.{node.attr}() (line {node.lineno}: use an f-string)"
    return None


@functools.lru_cache(maxsize=None)
def _reward_policy():
    """RestrictedPython's policy, plus what rewards do often and it refuses: ``counts[k] += 1`` and
    ``self.total += x``, rewritten to guarded calls (``_aug_item_``, ``_aug_attr_``) that read and write through the
    same guards as ``counts[k] = counts[k] + 1`` would."""
    from RestrictedPython import RestrictingNodeTransformer
    from RestrictedPython.transformer import IOPERATOR_TO_STR, copy_locations

    class RewardPolicy(RestrictingNodeTransformer):
        def visit_AugAssign(self, node: ast.AugAssign):
            target = node.target
            if not isinstance(target, (ast.Subscript, ast.Attribute)):
                return super().visit_AugAssign(node)
            if isinstance(target, ast.Attribute) and target.attr.startswith("_"):
                self.error(node, f'"{target.attr}" is an invalid attribute name because it starts with "_".')
                return node
            op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
            obj, value = self.visit(target.value), self.visit(node.value)
            if isinstance(target, ast.Subscript):
                call = ast.Call(ast.Name("_aug_item_", ast.Load()), [obj, self.visit(target.slice), op, value], [])
            else:
                call = ast.Call(ast.Name("_aug_attr_", ast.Load()), [obj, ast.Constant(target.attr), op, value], [])
            new = ast.Expr(call)
            copy_locations(new, node)
            return ast.fix_missing_locations(new)

    return RewardPolicy


def _restricted_compile(source: str, filename: str):
    """RestrictedPython's compiler: (code, None) or (None, its first error as one line)."""
    from RestrictedPython import compile_restricted_exec

    result = compile_restricted_exec(source, filename=filename, policy=_reward_policy())
    if result.errors:
        return None, "refused: " + " ".join(str(result.errors[0]).split())[:300]
    return result.code, None


def check_policy(source: str, filename: str = "<submission>",
                 allowed: Mapping[str, tuple[str, ...] | None] | None = None) -> str | None:
    """None when ``source`` passes the static policy, else one line: ``load: syntax error …`` or ``refused: …``.

    ``allowed`` maps each importable module to its allowed names (None: every public name); default
    :data:`STDLIB_IMPORTS`. Nothing in ``source`` runs.

    Example:
        >>> check_policy("import re\\ndef reward(completions, **kw):\\n    return [0.0] * len(completions)\\n")
        >>> check_policy("x = ().__class__\\n")
        'refused: .__class__ (line 1: names that start with "_" are off limits)'
    """
    allowed = STDLIB_IMPORTS if allowed is None else allowed
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as err:
        return f"load: syntax error line {err.lineno}: {err.msg}"
    except ValueError as err:  # e.g. a NUL byte in the file
        return f"load: {err}"
    problem = _first_problem(tree, allowed)
    if problem:
        return problem
    return _restricted_compile(source, filename)[1]


# ----------------------------------------------------------------------------------------------------------------
# What the restricted code gets: guarded builtins, read-only module views
# ----------------------------------------------------------------------------------------------------------------


class ModuleView:
    """A read-only stand-in for an allowed module: only its allowed names, no submodules, no ``__dict__`` to reach."""

    __slots__ = ("_name", "_names")

    def __init__(self, name: str, names: Mapping[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_names", dict(names))

    def __getattr__(self, attr: str) -> Any:
        try:
            return self._names[attr]
        except KeyError:
            raise AttributeError(f"{self._name}.{attr} is not allowed in a submission") from None

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(f"{self._name} is read-only in a submission")

    def __dir__(self):
        return sorted(self._names)

    def __repr__(self) -> str:
        return f"<allowed module {self._name}>"


def _public_names(module: str, allowed: Mapping[str, tuple[str, ...] | None]) -> set[str]:
    """The names a submission may take from ``module``: the listed ones, or every public non-module attribute."""
    listed = allowed.get(module)
    if listed is not None:
        return set(listed)
    mod = importlib.import_module(module)
    children = {k.rsplit(".", 1)[1] for k in allowed if k.startswith(module + ".")}
    public = getattr(mod, "__all__", None) or [k for k in dir(mod) if not k.startswith("_")]
    return {k for k in public if not k.startswith("_") and hasattr(mod, k)
            and not isinstance(getattr(mod, k), types.ModuleType)} - _NO_NAMES.get(module, set()) | children


def _module_views(allowed: Mapping[str, tuple[str, ...] | None]) -> dict[str, ModuleView]:
    """A view per allowed module (parents first, so ``grpo_helpers`` holds the ``rewards`` view)."""
    views: dict[str, ModuleView] = {}
    for module in sorted(allowed, key=lambda m: -m.count(".")):  # children before parents
        mod = importlib.import_module(module)
        names = {}
        for name in _public_names(module, allowed):
            child = f"{module}.{name}"
            names[name] = views[child] if child in views else getattr(mod, name)
        views[module] = ModuleView(module, names)
    for module in allowed:  # a parent package the allow-list names only through its children
        parent = module.rsplit(".", 1)[0] if "." in module else None
        if parent and parent not in views:
            depth = parent.count(".") + 1
            views[parent] = ModuleView(parent, {k.rsplit(".", 1)[1]: views[k] for k in views
                                                if k.startswith(parent + ".") and k.count(".") == depth})
    return views


def _guarded_import(views: Mapping[str, ModuleView]):
    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "__future__" and not level:
            return importlib.import_module(name)  # `from __future__ import annotations`: compiler flags only
        if level or name not in views:
            raise ImportError(f"refused: import of {name}")
        if fromlist:
            for item in fromlist:
                try:
                    getattr(views[name], item)
                except AttributeError:
                    raise ImportError(f"refused: import of {item} from {name}") from None
            return views[name]
        return views[name.split(".")[0]]  # `import a.b` binds `a`, as Python does

    return guarded_import


def _restricted_globals(module_name: str, allowed: Mapping[str, tuple[str, ...] | None], tail: Any) -> dict:
    """Globals for a restricted module: RestrictedPython's guards, the allowed builtins and module views."""
    from RestrictedPython import PrintCollector, safe_builtins
    from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence, safer_getattr_raise

    def getattr_guard(obj, name):
        value = safer_getattr_raise(obj, name)  # refuses "_" names, str.format, frame and code attributes
        if isinstance(value, types.ModuleType):
            raise AttributeError(f"refused: .{name} is a module")
        return value

    def write_guard(obj):
        # Only the submission's own objects (and lists and dicts) may change: never a module view or a course object.
        if isinstance(obj, (dict, list)) or getattr(type(obj), "__module__", None) == module_name:
            return obj
        raise TypeError(f"refused: changing a {type(obj).__name__} object")

    class Printer(PrintCollector):
        def write(self, text: str) -> None:
            tail.write(text)

    import operator

    ops = {"+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
           "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "|=": operator.ior,
           "&=": operator.iand, "^=": operator.ixor, "<<=": operator.ilshift, ">>=": operator.irshift,
           "@=": operator.imatmul}

    def inplace(op, x, y):  # `x += y` compiles to _inplacevar_("+=", x, y)
        return ops[op](x, y)

    def aug_item(obj, index, op, value):  # `d[k] += v` (see _reward_policy)
        write_guard(obj)[index] = ops[op](obj[index], value)

    def aug_attr(obj, name, op, value):  # `o.name += v`
        setattr(write_guard(obj), name, ops[op](getattr_guard(obj, name), value))

    allowed_builtins = {k: v for k, v in safe_builtins.items() if k not in ("setattr", "delattr", "_getattr_")}
    allowed_builtins.update({k: getattr(builtins, k) for k in _EXTRA_BUILTINS})
    allowed_builtins.update(__import__=_guarded_import(_module_views(allowed)), range=range)
    return {"__builtins__": allowed_builtins, "__name__": module_name, "__metaclass__": type,
            "_getattr_": getattr_guard, "_getitem_": lambda obj, index: obj[index], "_getiter_": iter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence, "_unpack_sequence_": guarded_unpack_sequence,
            "_write_": write_guard, "_inplacevar_": inplace, "_aug_item_": aug_item, "_aug_attr_": aug_attr,
            "_apply_": lambda f, *a, **kw: f(*a, **kw),
            "_print_": Printer}


# ----------------------------------------------------------------------------------------------------------------
# Someone else's file, wall 3: what the worker process does to itself before the file runs
# ----------------------------------------------------------------------------------------------------------------

# Syscalls the seccomp filter answers with EPERM once the file may run: opening or changing files, sockets, new
# processes, exec, signals and tracing of other processes, namespaces and mounts, and the kernel interfaces that
# could do any of that behind the filter's back (io_uring, bpf). Numbers: Linux's asm/unistd_64.h and
# asm-generic/unistd.h (64-bit ARM), checked against the headers of Debian 12.
_DENIED = ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "fork", "vfork", "execve",
           "execveat", "open", "openat", "openat2", "creat", "open_by_handle_at", "name_to_handle_at", "unlink",
           "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink",
           "symlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
           "truncate", "utime", "utimes", "utimensat", "futimesat", "mknod", "mknodat", "ptrace", "process_vm_readv",
           "process_vm_writev", "kill", "tkill", "tgkill", "mount", "umount2", "pivot_root", "chroot", "unshare",
           "setns", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "io_uring_setup",
           "io_uring_enter", "io_uring_register", "fanotify_init", "inotify_init", "inotify_init1", "mount_setattr",
           "open_tree", "move_mount", "fsopen", "fsmount", "fspick")
_SYSCALLS = {
    "x86_64": (0xC000003E, dict(
        socket=41, socketpair=53, connect=42, bind=49, listen=50, accept=43, accept4=288, fork=57, vfork=58,
        execve=59, execveat=322, open=2, openat=257, openat2=437, creat=85, open_by_handle_at=304,
        name_to_handle_at=303, unlink=87, unlinkat=263, rename=82, renameat=264, renameat2=316, mkdir=83,
        mkdirat=258, rmdir=84, link=86, linkat=265, symlink=88, symlinkat=266, chmod=90, fchmod=91, fchmodat=268,
        fchmodat2=452, chown=92, fchown=93, lchown=94, fchownat=260, truncate=76, utime=132, utimes=235,
        utimensat=280, futimesat=261, mknod=133, mknodat=259, ptrace=101, process_vm_readv=310,
        process_vm_writev=311, kill=62, tkill=200, tgkill=234, mount=165, umount2=166, pivot_root=155, chroot=161,
        unshare=272, setns=308, bpf=321, perf_event_open=298, userfaultfd=323, keyctl=250, add_key=248,
        request_key=249, io_uring_setup=425, io_uring_enter=426, io_uring_register=427, fanotify_init=300,
        inotify_init=253, inotify_init1=294, mount_setattr=442, open_tree=428, move_mount=429, fsopen=430,
        fsmount=432, fspick=433, clone=56, clone3=435)),
    "aarch64": (0xC00000B7, dict(
        socket=198, socketpair=199, connect=203, bind=200, listen=201, accept=202, accept4=242, execve=221,
        execveat=281, openat=56, openat2=437, open_by_handle_at=265, name_to_handle_at=264, unlinkat=35,
        renameat=38, renameat2=276, mkdirat=34, linkat=37, symlinkat=36, fchmod=52, fchmodat=53, fchmodat2=452,
        fchown=55, fchownat=54, truncate=45, utimensat=88, mknodat=33, ptrace=117, process_vm_readv=270,
        process_vm_writev=271, kill=129, tkill=130, tgkill=131, mount=40, umount2=39, pivot_root=41, chroot=51,
        unshare=97, setns=268, bpf=280, perf_event_open=241, userfaultfd=282, keyctl=219, add_key=217,
        request_key=218, io_uring_setup=425, io_uring_enter=426, io_uring_register=427, fanotify_init=262,
        inotify_init1=26, mount_setattr=442, open_tree=428, move_mount=429, fsopen=430, fsmount=432, fspick=433,
        clone=220, clone3=435)),
}


def _seccomp_program(machine: str) -> list[tuple[int, int, int, int]] | None:
    """A classic-BPF seccomp filter (code, jt, jf, k) denying :data:`_DENIED`; None on an unknown architecture.

    ``clone`` stays allowed for threads only (CLONE_THREAD); ``clone3`` answers ENOSYS so that libc falls back to it.
    """
    if machine not in _SYSCALLS:
        return None
    arch, numbers = _SYSCALLS[machine]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ/JGE/JSET|K, BPF_RET|K
    allow, kill, errno = 0x7FFF0000, 0x80000000, 0x00050000
    eperm, enosys, clone_thread = 1, 38, 0x00010000
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill), (ld, 0, 0, 0)]  # seccomp_data.arch, then .nr
    if machine == "x86_64":
        prog += [(jge, 0, 1, 0x40000000), (ret, 0, 0, errno | eperm)]  # the x32 ABI: other numbers, same calls
    for name in _DENIED:
        if name in numbers:
            prog += [(jeq, 0, 1, numbers[name]), (ret, 0, 0, errno | eperm)]
    prog += [(jeq, 0, 1, numbers["clone3"]), (ret, 0, 0, errno | enosys)]
    prog += [(jeq, 0, 4, numbers["clone"]), (ld, 0, 0, 16),  # args[0] (the flags), low 32 bits
             (jset, 0, 1, clone_thread), (ret, 0, 0, allow), (ret, 0, 0, errno | eperm)]
    return prog + [(ret, 0, 0, allow)]


def _install_seccomp() -> bool:
    """Install :func:`_seccomp_program` on this process (Linux); False where it cannot be installed."""
    prog = _seccomp_program(platform.machine()) if sys.platform == "linux" else None
    if prog is None:
        return False
    import ctypes

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        filters = (SockFilter * len(prog))(*[SockFilter(*insn) for insn in prog])
        program = SockFprog(len(prog), filters)
        pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
        if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
            return False
        return libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(program), 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _lock_down(timeout: float) -> dict[str, bool]:
    """Limits on this process, then the seccomp filter, then the wall-clock alarm; returns what took effect."""
    facts = {"rlimits": False, "seccomp": False}
    _cap_memory()
    try:
        import resource

        cpu = int(timeout) + 2
        for limit, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0),
                             (resource.RLIMIT_NPROC, 0)):
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(limit, (value, value))
        facts["rlimits"] = True
    except ImportError:  # Windows: the host's kill after the time limit is all there is
        pass
    facts["seccomp"] = _install_seccomp()
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the alarm ends the process: no handler can catch it
        signal.setitimer(signal.ITIMER_REAL, max(timeout, 0.01))
    return facts


def prepare_restricted(source: str, filename: str, module_name: str,
                       allowed: Mapping[str, tuple[str, ...] | None] | None = None, tail: Any = None):
    """``(code, globals)`` for a file that passes :func:`check_policy`, else a CourseError whose problem is the
    one-line refusal. Nothing in ``source`` runs; ``exec(code, globals)`` runs it with the guarded builtins.

    Example:
        >>> code, namespace = prepare_restricted("import re\\nx = re.sub('a', 'b', 'aa')\\n", "x.py", "x")
        >>> exec(code, namespace); namespace["x"]
        'bb'
    """
    from grpo_helpers.errors import CourseError

    allowed = STDLIB_IMPORTS if allowed is None else allowed
    problem = check_policy(source, filename, allowed)
    code = None
    if problem is None:
        code, problem = _restricted_compile(source, filename)
    if problem:
        raise CourseError(problem, fix="Submissions may import only " + ", ".join(sorted(allowed)) + ".")
    namespace = _restricted_globals(module_name, allowed, tail if tail is not None else sys.stdout)
    namespace["__file__"] = filename
    return code, namespace


def _worker_run(request: dict, job: dict, run: Callable[[dict], Any]) -> dict:
    """In a forked child of the sandbox process: the policy, the lock-down, then the file's body and ``run``."""
    from grpo_helpers.errors import CourseError

    allowed = {k: None if v is None else tuple(v) for k, v in request["allowed"].items()}
    source, filename = job["source"], job["filename"]
    module_name = f"submission_{job['name']}"
    tail = _Tail()
    if request.get("policy", True):
        try:
            code, namespace = prepare_restricted(source, filename, module_name, allowed, tail)
        except CourseError as err:
            return {"error": err.problem}
    else:  # only the tests of the OS walls run a file without the policy
        code, namespace = compile(source, filename, "exec"), {"__name__": module_name, "__file__": filename}
    facts = _lock_down(float(request["timeout"])) if request.get("lock_down", True) else {}
    try:
        with contextlib.redirect_stdout(tail), contextlib.redirect_stderr(tail):
            exec(code, namespace)  # noqa: S102 - the participant's module body, restricted and locked down
            value = run(namespace)
        return {"value": value, "lockdown": facts, "printed": tail.text}
    except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are mistakes to report too
        return {"error": _short(err), "lockdown": facts, "printed": tail.text}


def _serve() -> None:
    """The sandbox process: read one request (JSON) on stdin, run each file in its own forked child, write the
    results (a JSON list) on stdout. Trusted setup (imports, ``entry(payload)``) happens once, before any fork."""
    request = json.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    for module in request.get("preload", []):
        with contextlib.suppress(Exception):  # e.g. math_verify, which parse_number may need; optional
            importlib.import_module(module)
    module, func = request["entry"].split(":")
    run = getattr(importlib.import_module(module), func)(request["payload"])
    timeout = float(request["timeout"])

    def one(job: dict) -> dict:
        outcome = run_isolated(lambda: _worker_run(request, job, run), timeout)
        inner = outcome.value if isinstance(outcome.value, dict) else {}
        return {"value": inner.get("value"), "error": outcome.error or inner.get("error"),
                "printed": inner.get("printed") or outcome.printed, "seconds": outcome.seconds,
                "lockdown": inner.get("lockdown", {})}

    jobs = request["jobs"]
    workers = max(1, min(len(jobs), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                         else os.cpu_count() or 1))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, jobs))
    data = json.dumps(results, allow_nan=True).encode()
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
    os._exit(0)


# ----------------------------------------------------------------------------------------------------------------
# Someone else's file, wall 2: the process, in bubblewrap where Linux allows it
# ----------------------------------------------------------------------------------------------------------------

BWRAP = "bwrap"  # Debian/Ubuntu: apt-get install bubblewrap (scripts/install_sandbox_tools.sh)


@dataclasses.dataclass(frozen=True)
class Isolation:
    """What protects this machine from a submitted file: ``policy`` (RestrictedPython installed), ``bwrap`` (the
    bubblewrap sandbox works), ``seccomp`` (the filter took effect), ``why`` (why bubblewrap is missing)."""

    policy: bool
    bwrap: bool
    seccomp: bool
    why: str = ""

    @property
    def complete(self) -> bool:
        return self.policy and self.bwrap and self.seccomp

    def line(self, timeout: float) -> str:
        """One line for the top of the board: what protects this machine, or what is missing."""
        caps = f"{timeout:g} s and {MEMORY_CAP_BYTES / 2**30:g} GiB per file"
        if not self.policy:
            return ("sandbox: RestrictedPython is not installed, so every file submission is refused "
                    "(pip install RestrictedPython)")
        if self.complete:
            return (f"sandbox: RestrictedPython policy + bubblewrap (no network, no home or project files, "
                    f"private /tmp) + seccomp; {caps}")
        has = "a seccomp filter (no files, sockets or new processes)" if self.seccomp else "nothing from the OS"
        return (f"sandbox: NO OS ISOLATION here ({self.why}): only the RestrictedPython policy, {has} and the caps "
                f"({caps}) protect this machine; see docs/challenge.md")


def _package_dirs() -> list[Path]:
    import grpo_helpers

    dirs = [Path(grpo_helpers.__file__).resolve().parent]
    with contextlib.suppress(ImportError):
        import RestrictedPython

        dirs.append(Path(RestrictedPython.__file__).resolve().parent)
    return dirs


def _server_command() -> list[str]:
    paths = sorted({str(d.parent) for d in _package_dirs()})
    boot = f"import sys; sys.path[:0] = {paths!r}; from grpo_helpers.sandbox import _serve; _serve()"
    # -I: no environment variables, no user site, no script or current folder on sys.path; -B: write no .pyc
    return [sys.executable, "-I", "-B", "-X", "utf8", "-c", boot]


def _python_dirs() -> list[str]:
    """What the sandboxed Python needs: its prefixes (the venv too) and libpython's folder, never a home folder."""
    import sysconfig

    dirs = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and os.path.isdir(libdir):
        dirs.add(libdir)
    found = {d for d in dirs if d and os.path.isdir(d)}
    found |= {os.path.realpath(d) for d in found}  # a venv's own path and the one its symlinks lead to
    # Never the whole file system or a home folder (a Python installed with --prefix=$HOME): then the sandboxed
    # Python cannot start, and the board says that bubblewrap cannot start here.
    homes = {"/", os.path.realpath(os.path.expanduser("~")), "/root", "/home"}
    return sorted(d for d in found if os.path.realpath(d) not in homes)


def _bwrap_command(bwrap: str) -> list[str]:
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL",
           "--die-with-parent", "--new-session", "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR",
           "/tmp", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8", "--tmpfs", "/tmp"]
    for system in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        cmd += ["--ro-bind-try", system, system]
    bound: list[str] = []
    for path in sorted([*_python_dirs(), *map(str, _package_dirs())], key=len):
        if not any(path == b or path.startswith(b.rstrip("/") + "/") for b in ["/usr", *bound]):
            cmd += ["--ro-bind", path, path]
            bound.append(path)
    return cmd + ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", "/tmp", "--"]


def _child_env(tmp: str) -> dict[str, str]:
    env = {"HOME": tmp, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp, "PATH": os.defpath, "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in ("SYSTEMROOT", "WINDIR") if k in os.environ})  # Windows needs these to start
    return env


def _kill_tree(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        if os.name == "nt":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap and, through --die-with-parent, everything inside it
    with contextlib.suppress(Exception):
        proc.communicate(timeout=5)


def _run_request(request: dict, bwrap: bool) -> list[Outcome]:
    """Start one sandbox process for every job of ``request``; one Outcome per job, in order."""
    jobs, timeout = request["jobs"], float(request["timeout"])
    command = (_bwrap_command(shutil.which(BWRAP) or BWRAP) if bwrap else []) + _server_command()
    deadline = STARTUP_GRACE + len(jobs) * (timeout + 5)  # a backstop: each file has its own limit inside
    with tempfile.TemporaryDirectory(prefix="grpo-submissions-") as tmp:  # its private folder when bwrap is missing
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=tmp, env=_child_env(tmp), start_new_session=os.name != "nt")
        try:
            out, err = proc.communicate(json.dumps(request).encode(), timeout=deadline)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            return [Outcome(error=_timeout_error(timeout), seconds=time.perf_counter() - start) for _ in jobs]
        seconds = time.perf_counter() - start
    try:
        results = json.loads(out)
        if not isinstance(results, list) or len(results) != len(jobs):
            raise ValueError("wrong length")
    except ValueError:
        lines = err.decode(errors="replace").strip().splitlines()
        why = lines[-1][:300] if lines else f"exit code {proc.returncode}"
        return [Outcome(error=f"crashed: the sandbox process failed: {why}", seconds=seconds) for _ in jobs]
    return [_outcome_from(json.dumps(r).encode(), float(r.get("seconds") or 0.0) if isinstance(r, dict) else 0.0)
            for r in results]


def _probe_job(payload: Any) -> Callable[[dict], dict]:
    """Entry of the isolation probe: after the lock-down, can this process still open a file or a socket?"""
    import socket

    def probe(namespace: dict) -> dict:
        blocked = {}
        for what, attempt in (("file", lambda: open("/proc/self/status").close()),
                              ("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())):
            try:
                attempt()
                blocked[what] = False
            except PermissionError:
                blocked[what] = True
        return blocked

    return probe


def _probe(bwrap: bool) -> tuple[Outcome, bool]:
    request = {"jobs": [{"source": "", "filename": "<probe>", "name": "probe"}], "payload": None, "allowed": {},
               "entry": "grpo_helpers.sandbox:_probe_job", "policy": False, "timeout": 10.0}
    outcome = _run_request(request, bwrap)[0]
    blocked = outcome.value if isinstance(outcome.value, dict) else {}
    return outcome, bool(blocked.get("file") and blocked.get("socket"))


@functools.lru_cache(maxsize=None)
def isolation() -> Isolation:
    """What this machine gives a submitted file (probed once: one sandboxed Python start, ~0.1 s).

    Example:
        >>> isolation().line(10).startswith("sandbox: ")
        True
    """
    policy = importlib.util.find_spec("RestrictedPython") is not None
    if sys.platform != "linux":
        _, seccomp = _probe(bwrap=False)
        return Isolation(policy, False, seccomp, why=f"bubblewrap is Linux-only; this is {platform.system()}")
    if shutil.which(BWRAP) is None:
        why = "bubblewrap is not installed: apt-get install bubblewrap"
    else:
        outcome, seccomp = _probe(bwrap=True)
        if outcome.ok:
            return Isolation(policy, True, seccomp)
        why = f"bubblewrap cannot start here: {outcome.error.removeprefix('crashed: the sandbox process failed: ')}"
    _, seccomp = _probe(bwrap=False)
    return Isolation(policy, False, seccomp, why=why)


def run_untrusted_many(files: list[tuple[str, str, str]], entry: str, payload: Any = None, timeout: float = 10.0,
                       allowed: Mapping[str, tuple[str, ...] | None] | None = None,
                       preload: tuple[str, ...] = ()) -> list[Outcome]:
    """Run other people's Python files under the three walls (module docstring); never raises for what they do.

    ``files`` holds ``(source, filename, name)``. One sandbox process serves them all, each file in its own forked
    child, as many at once as there are cores. Before any fork it imports ``preload`` and calls ``entry``
    (``"module:function"``, trusted code) once: ``function(payload)`` returns ``run(namespace)``, which each child
    calls after the file's module body, with its globals, and whose JSON-able result becomes ``Outcome.value``.
    ``timeout`` covers one file's body and ``run``; ``allowed`` is the import allow-list (default
    :data:`STDLIB_IMPORTS`).
    """
    if not files:
        return []
    if importlib.util.find_spec("RestrictedPython") is None:
        return [Outcome(error="refused: RestrictedPython is not installed (pip install RestrictedPython)")
                for _ in files]
    allowed = STDLIB_IMPORTS if allowed is None else allowed
    request = {"jobs": [{"source": src, "filename": fn, "name": nm} for src, fn, nm in files], "entry": entry,
               "payload": payload, "timeout": timeout, "preload": list(preload),
               "allowed": {k: None if v is None else list(v) for k, v in allowed.items()}}
    return _run_request(request, bwrap=isolation().bwrap)


def run_untrusted(source: str, filename: str, entry: str, payload: Any = None, timeout: float = 10.0,
                  allowed: Mapping[str, tuple[str, ...] | None] | None = None, name: str = "submission") -> Outcome:
    """:func:`run_untrusted_many` for one file.

    Example:
        >>> run_untrusted("import math\\nx = math.sqrt(16)\\n", "x.py", "grpo_helpers.sandbox:_global_x").value
        4.0
        >>> run_untrusted("import socket\\n", "x.py", "grpo_helpers.sandbox:_global_x").error
        'refused: import of socket'
    """
    return run_untrusted_many([(source, filename, name)], entry, payload, timeout, allowed)[0]


def _global_x(payload: Any) -> Callable[[dict], Any]:
    """A tiny entry for the docstring: the value of the file's global ``x``."""
    return lambda namespace: namespace.get("x")
