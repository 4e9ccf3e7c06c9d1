"""Time the reward challenge's host board: the 4 baselines plus 30 honest file submissions.

It writes 30 submissions (six kinds of honest reward written by participants, using ``re`` and the course helpers
notebook 09 lists, five weightings each) into a temporary folder and times the host's own command, a fresh process
each time, as on the projector::

    python -m grpo_helpers.challenge DIR --baselines

Run it under the CPU lock so that no other job shares the 2 cores::

    flock /tmp/cpu.lock .venv/bin/python benchmarks/challenge_board.py            # 3 runs, median
    flock /tmp/cpu.lock .venv/bin/python benchmarks/challenge_board.py --runs 5 --submissions 30
    flock /tmp/cpu.lock .venv/bin/python benchmarks/challenge_board.py --no-bwrap   # policy + seccomp only

It prints each run's wall time, the median, and the board's first lines (the isolation line, when there is one).
Every row must score: a run with an error row fails (an honest submission refused would be a bug).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATES = {
    "starter": '''
from grpo_helpers import rewards as R


def reward(prompts, completions, answer, **kwargs):
    texts = R.completion_texts(completions, kwargs.get("prefill"))
    scores = []
    for text, reference in zip(texts, answer):
        score = {right} if R.answers_match(R.extract_answer(text), reference) else 0.0
        score += {fmt} if R.strict_format_reward(completions=[text])[0] > 0 else 0.0
        scores.append(score)
    return scores
''',
    "ada": '''
from grpo_helpers import rewards as R


def reward(prompts, completions, answer, **kwargs):
    texts = R.completion_texts(completions, kwargs.get("prefill"))
    out = []
    for text, ref in zip(texts, answer):
        blocks = R.split_blocks(text)
        work = {fmt} if blocks is not None and R.has_reasoning(blocks.reasoning) else 0.0
        out.append(work + ({right} if R.answers_match(R.extract_answer(text), ref) else 0.0))
    return out
''',
    "no_hedge": '''
from grpo_helpers import rewards as R


def reward(prompts, completions, answer, **kwargs):
    texts = R.completion_texts(completions, kwargs.get("prefill"))
    out = []
    for text, ref in zip(texts, answer):
        value = R.parse_number(R.extract_answer(text))
        right = value is not None and value == R.parse_number(str(ref))
        out.append(({right} if right else 0.0) + ({fmt} if R.strict_format_reward(completions=[text])[0] > 0 else 0.0))
    return out
''',
    "regex_only": '''
import re

ANSWER = re.compile(r"<answer>\\s*(.*?)\\s*</answer>", re.DOTALL)


def reward(prompts, completions, answer, **kwargs):
    out = []
    for completion, ref in zip(completions, answer):
        text = (kwargs.get("prefill") or [""])[0] + (completion if isinstance(completion, str) else completion[0]["content"])
        found = ANSWER.findall(text)
        score = {fmt} if len(found) == 1 and "<reasoning>" in text else 0.0
        if len(found) == 1 and found[0].replace(",", "").strip("$ ") == str(ref).replace(",", ""):
            score += {right}
        out.append(score)
    return out
''',
    "counting": '''
import math
import re

from grpo_helpers import rewards as R


def reward(prompts, completions, answer, **kwargs):
    texts = R.completion_texts(completions, kwargs.get("prefill"))
    out = []
    for text, ref in zip(texts, answer):
        numbers = re.findall(r"-?\\d[\\d,]*(?:\\.\\d+)?", R.extract_answer(text) or "")
        one = len(numbers) == 1 and R.answers_match(numbers[0], ref)
        steps = len(re.findall(r"=", text))
        out.append(({right} if one else 0.0) + {fmt} * math.tanh(steps / 3) * (text.count("<answer>") == 1))
    return out
''',
    "fixed_bob": '''
import re

from grpo_helpers import rewards as R


def reward(prompts, completions, answer, **kwargs):
    texts = R.completion_texts(completions, kwargs.get("prefill"))
    return [({right} if R.answers_match(R.extract_answer(t), a) else 0.0)
            + ({fmt} if re.search(r"<answer>", t) else 0.0) for t, a in zip(texts, answer)]
''',
}
WEIGHTS = [(2.0, 0.5), (1.0, 0.25), (3.0, 1.0), (1.5, 0.1), (2.5, 0.75)]  # (right, format) per variant


def write_submissions(folder: Path, count: int) -> list[str]:
    """``count`` submission files, cycling through the templates and weightings."""
    names = []
    for i in range(count):
        kind = list(TEMPLATES)[i % len(TEMPLATES)]
        right, fmt = WEIGHTS[(i // len(TEMPLATES)) % len(WEIGHTS)]
        name = f"p{i:02d}_{kind}"
        (folder / f"{name}.py").write_text(TEMPLATES[kind].format(right=right, fmt=fmt))
        names.append(name)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-bwrap", action="store_true",
                        help="as on a machine without bubblewrap: the policy, seccomp and the limits only")
    args = parser.parse_args()
    times, out = [], ""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        names = write_submissions(folder, args.submissions)
        for run in range(args.runs):
            start = time.perf_counter()
            command = [sys.executable, "-m", "grpo_helpers.challenge", str(folder), "--baselines"]
            if args.no_bwrap:
                command[1:3] = ["-c", "import sys, grpo_helpers.sandbox as S; S.BWRAP = 'no-bwrap-here'; "
                                "from grpo_helpers.challenge import main; sys.exit(main(sys.argv[1:]))"]
            done = subprocess.run(command, capture_output=True, text=True, cwd=tmp)
            times.append(time.perf_counter() - start)
            out = done.stdout
            if done.returncode != 0 or "ERROR" in out or any(f" {n[:22]} " not in out for n in names):
                print(out, done.stderr, file=sys.stderr)
                raise SystemExit(f"run {run + 1}: the board has an error row or misses a submission")
            print(f"run {run + 1}: {times[-1]:.2f} s")
    print(f"board: 4 baselines + {args.submissions} submissions, {args.runs} runs: median {statistics.median(times):.2f} s,"
          f" min {min(times):.2f} s, max {max(times):.2f} s")
    print("\n".join(out.splitlines()[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
