"""Regenerate the README's figures in assets/ and the headline caption from the recorded demo run, without training.

    make figures      (= HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_figures.py)
    python scripts/make_figures.py --check      (exit 1 when the README caption differs from the recorded run)

* assets/reward_curve.png   from grpo_helpers/recorded_demo/metrics.csv (the run `make demo --record` wrote)
* the README caption under it, between the demo-caption markers, from that run's settings.json
* assets/grpo_group_baseline.png   one group's rewards and GRPO advantages (grpo_helpers.figures, as in notebook 05)
assets/widget_playground.png is a real screenshot: the browser test (tests/test_widgets_browser.py) retakes it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from grpo_helpers import figures
from grpo_helpers.demo import RecordedRun, recorded_run
from grpo_helpers.plotting import plot_reward_curves, read_metrics_csv, save_figure

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
README = ROOT / "README.md"
START, END = "<!-- demo-caption:start -->", "<!-- demo-caption:end -->"


def caption(run: RecordedRun) -> str:
    """The README's headline caption, every number read from the recorded run's settings.json."""
    s, r = run.settings, run.settings["results"]
    before, primed, after = r["before"], r["after_priming"], r["after"]
    soft = r["first_last_10"]["soft_format_reward"]
    strict = r["first_last_10"]["strict_format_reward"]
    words = r["reasoning_words"]
    priming = (f"{s['prime_steps']} SFT priming steps, then " if s.get("prime_steps") else "")
    via = f" ({primed['format_rate']:.0%} after priming alone)" if primed else ""
    return (f"*The tiny CPU demo (`make demo`; this is the recorded run, seed {s['seed']}, {r['total_seconds']:.0f} s "
            f"on {s['threads']} CPU threads): SmolLM2-135M-Instruct, {priming}{s['grpo_config']['max_steps']} GRPO "
            f"steps on real GSM8K. On {before['n']} held-out test questions (greedy) the `<reasoning>/<answer>` "
            f"format went from {before['format_rate']:.0%} to {after['format_rate']:.0%}{via}, the strict layout "
            f"from {before['strict_format_rate']:.0%} to {after['strict_format_rate']:.0%}; in training the soft "
            f"format reward rose from {soft[0]:.2f} (first 10 steps) to {soft[1]:.2f} (last 10), the strict one from "
            f"{strict[0]:.2f} to {strict[1]:.2f}; mean reasoning {words['before']:.0f} words before, "
            f"{words['after']:.0f} after. Correctness: {_accuracies(before, after)}: a 135M model does not learn to "
            f"solve GSM8K in minutes, and the course says so.*")


def _accuracies(before: dict, after: dict) -> str:
    """Both accuracies where the recorded run has them (runs recorded before the format-free one have strict only)."""
    if "format_free_accuracy" not in before:
        return f"{before['accuracy']:.0%} before, {after['accuracy']:.0%} after (strict)"
    return (f"strict {before['strict_accuracy']:.0%} before, {after['strict_accuracy']:.0%} after; format-free "
            f"{before['format_free_accuracy']:.0%} before, {after['format_free_accuracy']:.0%} after")


def readme_with_caption(text: str, new: str) -> str:
    """``text`` with the block between the demo-caption markers replaced by ``new``."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {START} ... {END} block to write the caption into.")
    return pattern.sub(lambda _: f"{START}\n{new}\n{END}", text, count=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check that the README caption matches the recorded run")
    args = p.parse_args(argv)
    run = recorded_run()
    text = README.read_text()
    updated = readme_with_caption(text, caption(run))
    if args.check:
        if updated != text:
            print("README.md's demo caption differs from the recorded run: run `make figures`.")
            return 1
        print("README.md's demo caption matches the recorded run.")
        return 0
    title = f"Tiny CPU demo (recorded run, seed {run.settings['seed']}): SmolLM2-135M GRPO on GSM8K"
    written = [save_figure(plot_reward_curves(read_metrics_csv(run.metrics_csv), title=title),
                           ASSETS / "reward_curve.png")]
    written.append(save_figure(figures.group_baseline_figure([0.0, 0.5, 0.5, 2.5, 0.0, 3.0]),
                               ASSETS / "grpo_group_baseline.png"))
    if updated != text:
        README.write_text(updated)
        written.append(README)
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
