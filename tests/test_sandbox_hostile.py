"""Hostile submitted files: each gets one line on the board, and nothing outside its own temporary folder changes.

The host here is a fake one in tmp_path: a HOME with a Hugging Face token and SSH keys, a submissions folder, a
listening TCP socket (it counts connections) and a path a subprocess would create. Every case runs through the host's
own path (``leaderboard`` on a folder) next to an honest submission that must still score; afterwards the fake
host's files, the socket and the marker path are checked. The OS walls are also tested alone (the static policy off),
so that each wall is shown to hold by itself.
"""

from __future__ import annotations

import hashlib
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from grpo_helpers import challenge as C
from grpo_helpers import sandbox as S

TIMEOUT = 3.0

HONEST = '''
import re

from grpo_helpers import rewards as R

NUMBER = re.compile(r"-?\\d[\\d,]*(?:\\.\\d+)?")


def reward(prompts, completions, answer, **kwargs):
    texts = R.completion_texts(completions, kwargs.get("prefill"))
    out = []
    for text, ref in zip(texts, answer):
        found = NUMBER.findall(R.extract_answer(text) or "")
        blocks = R.split_blocks(text)
        work = 0.25 if blocks is not None and R.has_reasoning(blocks.reasoning) else 0.0
        out.append(work + (2.0 if len(found) == 1 and R.answers_match(found[0], ref) else 0.0))
    return out
'''


class Host:
    """The fake host: files to protect, a socket that counts connections, a path nothing may create."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "home"
        self.token = self.home / ".cache" / "huggingface" / "token"
        self.ssh = self.home / ".ssh"
        self.submissions = root / "submissions"
        self.marker = root / "created_by_a_subprocess"
        for path, text in ((self.token, "hf_THE_HOSTS_SECRET_TOKEN\n"), (self.ssh / "id_ed25519", "PRIVATE KEY\n"),
                           (self.ssh / "known_hosts", "github.com ssh-ed25519 AAAA\n"),
                           (self.home / ".bashrc", "export PATH\n"), (self.submissions / "ada.py", HONEST)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.connections = 0
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.server.close()

    def snapshot(self) -> dict[str, str]:
        """Every file and folder under the fake host, with a hash of its bytes and its mode."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            rel = str(path.relative_to(self.root))
            out[rel] = "dir" if path.is_dir() else f"{hashlib.sha256(path.read_bytes()).hexdigest()}:{path.stat().st_mode:o}"
        return out

    def fill(self, source: str) -> str:
        return (textwrap.dedent(source).replace("HOME", str(self.home)).replace("TOKEN", str(self.token))
                .replace("SSH", str(self.ssh)).replace("SUBMISSIONS", str(self.submissions))
                .replace("MARKER", str(self.marker)).replace("PORT", str(self.port)))


@pytest.fixture()
def host(tmp_path, monkeypatch):
    h = Host(tmp_path)
    monkeypatch.setenv("HOME", str(h.home))
    yield h
    h.close()


@pytest.fixture(scope="module")
def pool():
    return C.load_pool()


# name -> (the file, the one line the board must show: a prefix of the error, or a tuple of them; 2 GiB of pages
# take ~3 s to fill on this 2-core machine, so a growing memory bomb may meet the time limit before the memory cap)
HOSTILE = {
    # writing or deleting a file in the host's home or the submissions folder, at import time
    "writes_home": ("open('HOME/pwned', 'w').write('x')\n", "refused: open()"),
    "deletes_submission": ("import os\nos.remove('SUBMISSIONS/ada.py')\n", "refused: import of os"),
    "pathlib_unlink": ("from pathlib import Path\nPath('SUBMISSIONS/ada.py').unlink()\n", "refused: import of pathlib"),
    "rmtree_home": ("import shutil\nshutil.rmtree('HOME')\n", "refused: import of shutil"),
    # reading the token or the SSH keys, inside reward
    "reads_token": ("""
        def reward(completions, **kw):
            secret = open('TOKEN').read()
            return [float(len(secret))] * len(completions)
        """, "refused: open()"),
    "lists_ssh": ("import glob\nKEYS = glob.glob('SSH/*')\n", "refused: import of glob"),
    "io_open": ("import io\nio.open('SSH/id_ed25519').read()\n", "refused: import of io"),
    # the network
    "opens_socket": ("import socket\nsocket.create_connection(('127.0.0.1', PORT))\n", "refused: import of socket"),
    "urllib": ("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT/')\n",
               "refused: import of urllib.request"),
    # subprocesses
    "subprocess": ("import subprocess\nsubprocess.run(['touch', 'MARKER'])\n", "refused: import of subprocess"),
    "os_system_via_import": ("__import__('os').system('touch MARKER')\n", "refused: __import__"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).system(b'touch MARKER')\n", "refused: import of ctypes"),
    # reaching os through __builtins__, __subclasses__, a helper module's globals, or strings the policy cannot see
    "builtins_dict": ("__builtins__['__import__']('os').system('touch MARKER')\n", "refused: __builtins__"),
    "subclasses": ("""
        popen = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]
        popen(['touch', 'MARKER'])
        """, "refused: .__"),
    "helper_globals": ("""
        from grpo_helpers import rewards as R
        R.extract_answer.__globals__['re'].purge()
        """, "refused: .__globals__"),
    "helper_module_attribute": ("""
        from grpo_helpers import rewards as R
        R.inspect.sys.modules['os'].system('touch MARKER')
        """, "raised: AttributeError: grpo_helpers.rewards.inspect is not allowed in a submission"),
    "stdlib_submodule_chain": ("import re\nre.enum.sys.modules['os'].system('touch MARKER')\n",
                               "raised: AttributeError: re.enum is not allowed in a submission"),
    "from_import_submodule": ("from re import enum\n", "refused: import of enum from re"),
    "getattr_string": ("""
        from grpo_helpers import rewards as R
        g = getattr(R.extract_answer, '__glob' + 'als__')
        """, "refused: getattr()"),
    "format_string": ("from grpo_helpers import rewards as R\nx = '{0.__globals__}'.format(R.extract_answer)\n",
                      "refused: str.format()"),
    "globals_call": ("globals()['__builtins__']\n", "refused: globals()"),
    "vars_call": ("from grpo_helpers import rewards as R\nvars(R)\n", "refused: vars()"),
    "eval": ("eval(\"__import__('os').system('touch MARKER')\")\n", "refused: eval()"),
    "exec": ("exec(\"__import__('os').system('touch MARKER')\")\n", "refused: exec()"),
    "compile": ("code = compile('1', 'x', 'eval')\n", "refused: compile()"),
    "type_hints_eval": ("from typing import get_type_hints\n", "refused: import of get_type_hints from typing"),
    "string_formatter": ("from string import Formatter\n", "refused: import of Formatter from string"),
    "frame_walk": ("""
        def reward(completions, **kw):
            frame = (x for x in [1]).gi_frame
            return [0.0] * len(completions)
        """, "refused: Line 3: \"gi_frame\""),
    "traceback_frame": ("""
        try:
            1 / 0
        except ZeroDivisionError as err:
            tb = err.__traceback__
        """, "refused: .__traceback__"),
    "patches_course_code": ("""
        from grpo_helpers import rewards as R
        R.correctness_reward = lambda *a, **k: [100.0]
        """, "raised: TypeError: refused: changing a ModuleView object"),
    "relative_import": ("from . import ada\n", "refused: relative import"),
    # fork bombs and memory bombs
    "fork_bomb": ("import os\nwhile True:\n    os.fork()\n", "refused: import of os"),
    "multiprocessing_bomb": ("import multiprocessing\n", "refused: import of multiprocessing"),
    "thread_bomb": ("import threading\n", "refused: import of threading"),
    "memory_bomb_at_import": ("hog = 'x' * (64 * 2**30)\n", "raised: MemoryError"),
    "memory_bomb_growing": ("""
        def reward(completions, **kw):
            hog = []
            while True:
                hog.append(' ' * 2**24)
        """, ("signature: Reward function 'reward' raised MemoryError", "timeout: still running after 3 s")),
    "endless_import": ("while True:\n    pass\n", "timeout: still running after 3 s"),
    "sleeps_at_import": ("import time\ntime.sleep(60)\n", "timeout: still running after 3 s"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_gets_one_line_and_changes_nothing_outside_its_temp_dir(name, host, pool):
    source, expected = HOSTILE[name]
    (host.submissions / f"{name}.py").write_text(host.fill(source))
    before = host.snapshot()
    board = C.leaderboard(host.submissions, pool, timeout=TIMEOUT)
    row = board.row(name)
    assert row.error is not None and row.error.startswith(expected), (name, row.error)  # expected: str or tuple
    assert "\n" not in row.error and len(row.error) < 400
    assert board.row("ada").error is None and board.row("ada").score > 0.9  # the board goes on
    assert host.snapshot() == before, "a file under the fake host changed"
    assert host.connections == 0 and not host.marker.exists()
    assert board.sandbox.startswith("sandbox: ")


def test_an_honest_file_scores_exactly_as_the_same_function_in_the_notebook(host, pool):
    namespace: dict = {}
    exec(compile(HONEST, "ada.py", "exec"), namespace)  # the participant's own notebook cell: plain Python
    as_function = C.leaderboard({"ada": namespace["reward"]}, pool, timeout=30).row("ada")
    as_file = C.leaderboard(host.submissions, pool, timeout=30).row("ada")
    assert as_file.error is None and as_file.score == as_function.score and as_file.score > 0.9
    assert (as_file.hack_pay, as_file.beat_rate, as_file.honest_pay) == \
        (as_function.hack_pay, as_function.beat_rate, as_function.honest_pay)


def test_a_file_may_use_the_stdlib_modules_and_course_helpers_a_reward_needs(host, pool):
    (host.submissions / "stdlib.py").write_text(textwrap.dedent('''
        from __future__ import annotations

        import math, string, statistics, json, time, unicodedata
        from collections import Counter, defaultdict
        from fractions import Fraction
        from functools import lru_cache
        from itertools import pairwise
        from typing import List

        from grpo_helpers.rewards import answers_match, extract_answer, completion_texts, strict_format_reward
        from grpo_helpers.challenge import course_rewards


        class Scorer:
            def __init__(self, weight):
                self.weight = weight

            def score(self, text, ref):
                found = extract_answer(text) or ""
                words = Counter(w.strip(string.punctuation) for w in text.split())
                total = self.weight * answers_match(found, ref) + 0.1 * math.tanh(len(words) / 50)
                total += 0.5 * (strict_format_reward(completions=[text])[0] > 0)
                return total


        def reward(prompts, completions, answer, **kwargs) -> List[float]:
            texts = completion_texts(completions, kwargs.get("prefill"))
            scorer = Scorer(2.0)
            out = [scorer.score(t, a) for t, a in zip(texts, answer)]
            out[0] += 0.0 * statistics.mean([1, 2]) * float(Fraction(1, 2)) * len(json.dumps({}))
            assert len(out) == len(course_rewards(prompts, completions, answer, **kwargs))
            print(f"scored {len(out)}")
            return out
        '''))
    board = C.leaderboard(host.submissions, pool, timeout=30)
    row = board.row("stdlib")
    assert row.error is None and row.score > 0.9, row.error
    assert "scored" in row.printed


def test_check_policy_says_what_it_refuses_without_running_anything(host):
    assert S.check_policy("import os\n") == "refused: import of os"
    assert S.check_policy("def f(x):\n    return x.__dict__\n").startswith("refused: .__dict__ (line 2")
    assert S.check_policy("type = 3\nx = type + 1\n") is None  # a name the file binds itself is its own
    assert S.check_policy("def reward(:\n").startswith("load: syntax error line 1")
    assert S.check_policy("x = 1\n", allowed={}) is None


# --- the OS walls alone (the static policy off): each must hold by itself -------------------------------------------

ATTACKS = '''
import os, socket, subprocess
x = {}
def attempt(what, f):
    try:
        f()
        x[what] = "done"
    except BaseException as err:
        x[what] = type(err).__name__
attempt("read_token", lambda: open("TOKEN").read())
attempt("list_ssh", lambda: os.listdir("SSH"))
attempt("write_home", lambda: open("HOME/pwned", "w").write("x"))
attempt("delete_submission", lambda: os.remove("SUBMISSIONS/ada.py"))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", PORT), timeout=1).close())
attempt("subprocess", lambda: subprocess.run(["touch", "MARKER"], check=True))
attempt("environment_token", lambda: os.environ["HF_TOKEN"])
'''


def _run_attacks(host: Host, monkeypatch, bwrap: bool, lock_down: bool) -> dict:
    monkeypatch.setenv("HF_TOKEN", "hf_THE_HOSTS_SECRET_TOKEN")
    request = {"jobs": [{"source": host.fill(ATTACKS), "filename": "attacks.py", "name": "attacks"}],
               "entry": "grpo_helpers.sandbox:_global_x", "payload": None, "allowed": {}, "policy": False,
               "lock_down": lock_down, "timeout": 20.0}
    before = host.snapshot()
    outcome = S._run_request(request, bwrap=bwrap)[0]
    assert outcome.error is None, outcome.error
    assert host.snapshot() == before and host.connections == 0 and not host.marker.exists()
    return outcome.value


def _bwrap_works() -> str:
    iso = S.isolation()
    return "" if iso.bwrap else iso.why


def test_bubblewrap_alone_hides_the_home_blocks_the_network_and_keeps_writes_private(host, monkeypatch):
    missing = _bwrap_works()
    if missing:
        pytest.skip(f"bubblewrap is needed here ({missing}); CI installs it (Makefile: make test)")
    result = _run_attacks(host, monkeypatch, bwrap=True, lock_down=False)
    assert result["read_token"] == result["list_ssh"] == "FileNotFoundError", result  # the home is not there
    assert result["write_home"] in ("FileNotFoundError", "OSError") and result["delete_submission"] == "FileNotFoundError"
    assert result["connect"] in ("ConnectionRefusedError", "OSError")  # its own loopback: the host's port is not there
    assert result["subprocess"] in ("CalledProcessError", "FileNotFoundError")  # ran, but inside the sandbox
    assert result["environment_token"] == "KeyError"


def test_seccomp_alone_refuses_files_sockets_and_processes(host, monkeypatch):
    if not S.isolation().seccomp:
        pytest.skip("a seccomp filter is needed here (Linux on x86-64 or 64-bit ARM)")
    result = _run_attacks(host, monkeypatch, bwrap=False, lock_down=True)
    assert set(result.values()) == {"PermissionError", "KeyError"}, result
    assert result["environment_token"] == "KeyError"  # the sandbox process never gets the host's environment


def test_seccomp_and_limits_stop_forks_and_memory_bombs_without_the_policy(host):
    if not S.isolation().seccomp:
        pytest.skip("a seccomp filter is needed here (Linux on x86-64 or 64-bit ARM)")
    bombs = {"fork": "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\n",  # one fork, if the filter failed
             "memory": "hog = bytearray(64 * 2**30)\n"}
    request = {"jobs": [{"source": src, "filename": f"{n}.py", "name": n} for n, src in bombs.items()],
               "entry": "grpo_helpers.sandbox:_global_x", "payload": None, "allowed": {}, "policy": False,
               "timeout": 5.0}
    fork, memory = S._run_request(request, bwrap=False)
    assert fork.error.startswith("raised: PermissionError: [Errno 1] Operation not permitted"), fork.error
    assert memory.error == "raised: MemoryError"


def test_without_bubblewrap_the_board_says_so_and_the_policy_still_holds(host, pool, monkeypatch):
    monkeypatch.setattr(S, "BWRAP", "bwrap-is-not-installed-here")
    S.isolation.cache_clear()
    try:
        (host.submissions / "bad.py").write_text("import os\nos.remove('SUBMISSIONS/ada.py')\n".replace(
            "SUBMISSIONS", str(host.submissions)))
        before = host.snapshot()
        board = C.leaderboard(host.submissions, pool, timeout=10)
        assert board.sandbox.startswith("sandbox: NO OS ISOLATION here (bubblewrap is not installed: apt-get install "
                                        "bubblewrap)")
        assert board.table().splitlines()[0] == board.sandbox and "\n" not in board.sandbox
        assert board.row("bad").error == "refused: import of os" and board.row("ada").error is None
        assert host.snapshot() == before
    finally:
        S.isolation.cache_clear()


def test_the_board_line_says_which_walls_are_up():
    full = S.Isolation(policy=True, bwrap=True, seccomp=True)
    assert full.line(10) == ("sandbox: RestrictedPython policy + bubblewrap (no network, no home or project files, "
                             "private /tmp) + seccomp; 10 s and 2 GiB per file")
    mac = S.Isolation(policy=True, bwrap=False, seccomp=False, why="bubblewrap is Linux-only; this is Darwin")
    assert mac.line(5).startswith("sandbox: NO OS ISOLATION here (bubblewrap is Linux-only; this is Darwin): only the "
                                  "RestrictedPython policy, nothing from the OS and the caps (5 s")
    assert S.Isolation(policy=False, bwrap=True, seccomp=True).line(5).startswith(
        "sandbox: RestrictedPython is not installed, so every file submission is refused")


def test_the_host_guide_names_the_allowed_imports_and_the_board_line_the_code_has():
    guide = " ".join((Path(__file__).resolve().parents[1] / "docs" / "challenge.md").read_text().split())
    policy = guide[guide.index("Allowed imports only:"):guide.index("Refused:")]
    assert all(f"`{module}`" in policy for module in S.STDLIB_IMPORTS), policy
    assert "`challenge.COURSE_HELPERS`" in policy and "`course_rewards`" in policy
    assert f"`{S.Isolation(policy=True, bwrap=True, seccomp=True).line(C.DEFAULT_TIMEOUT)}`" in guide
    assert S.MEMORY_CAP_BYTES == 2 * 2**30 and "2 GiB beyond what the process holds" in guide


def test_a_bubblewrap_that_cannot_create_namespaces_is_named_on_the_board(host, pool, monkeypatch):
    """As in a container without user namespaces: bwrap exits 1 with its own message; seccomp and the policy hold."""
    fake = host.root / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(S, "BWRAP", str(fake))
    S.isolation.cache_clear()
    try:
        iso = S.isolation()
        assert not iso.bwrap and iso.why == "bubblewrap cannot start here: bwrap: No permissions to create new namespace"
        (host.submissions / "reads_token.py").write_text(host.fill(HOSTILE["reads_token"][0]))
        before = host.snapshot()
        board = C.leaderboard(host.submissions, pool, timeout=10)
        assert board.sandbox.startswith("sandbox: NO OS ISOLATION here (bubblewrap cannot start here: bwrap: No "
                                        "permissions to create new namespace)")
        assert ("a seccomp filter" in board.sandbox) == iso.seccomp
        assert board.row("reads_token").error == "refused: open()" and board.row("ada").error is None
        assert host.snapshot() == before
    finally:
        S.isolation.cache_clear()
