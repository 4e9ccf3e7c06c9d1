"""Regenerate the README's figures in assets/ and the headline caption from the recorded demo run, without training.

    make figures      (= HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_figures.py)
    python scripts/make_figures.py --check      (exit 1 when the README caption differs from the recorded run)

* assets/reward_curve.png   from grpo_helpers/recorded_demo/metrics.csv (the run `make demo --record` wrote)
* assets/sums_stage.png     stage 2 (word sums) of that run: grpo_helpers/recorded_demo/sums/metrics.csv + settings.json
* the README caption under it, between the demo-caption markers, from that run's settings.json (both stages)
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
from grpo_helpers.sums_stage import plot_sums_stage

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
            f"{'for both stages ' if r.get('sums') else ''}"
            f"on {s['threads']} CPU threads): SmolLM2-135M-Instruct, {priming}{s['grpo_config']['max_steps']} GRPO "
            f"steps on real GSM8K. On {before['n']} held-out test questions (greedy) the `<reasoning>/<answer>` "
            f"format went from {before['format_rate']:.0%} to {after['format_rate']:.0%}{via}, the strict layout "
            f"from {before['strict_format_rate']:.0%} to {after['strict_format_rate']:.0%}; in training the soft "
            f"format reward rose from {soft[0]:.2f} (first 10 steps) to {soft[1]:.2f} (last 10), the strict one from "
            f"{strict[0]:.2f} to {strict[1]:.2f}; mean reasoning {words['before']:.0f} words before, "
            f"{words['after']:.0f} after. GSM8K correctness: strict {before['strict_accuracy']:.0%} before, "
            f"{after['strict_accuracy']:.0%} after; format-free {before['format_free_accuracy']:.0%} before, "
            f"{after['format_free_accuracy']:.0%} after: a 135M model does not learn to solve GSM8K in minutes, and "
            f"the course says so.*" + sums_caption(run))


def sums_caption(run: RecordedRun) -> str:
    """Stage 2's sentence of the caption (word sums, correctness as the reward), '' for a format-only run."""
    sums = run.sums
    if not sums:
        return ""
    b, a = sums["before"], sums["after"]
    k = sums["first_last_k"]
    c0, c1 = sums["correctness_first_last"]
    copied = [sums["hack_checks"]["held-out"][w]["copied_question_number"] for w in ("before", "after")]
    seven = [sums["hack_checks"]["held-out"][w]["example_answer"] for w in ("before", "after")]
    g = sums.get("gsm8k_after") or {}
    gsm8k = f" GSM8K after stage 2: {g['strict_accuracy']:.0%} strict." if g else ""
    return (f"\n\n![Stage 2: GRPO on word sums](assets/sums_stage.png)\n\n*Stage 2, same run: "
            f"{sums['steps']} GRPO steps with correctness as the main reward on one-step word sums (\"Mia has 2 cups. "
            f"She gets 4 more cups. ...\"), from the format stage's adapter. Greedy accuracy on {b['held-out']['n']} "
            f"sums of number pairs never trained on: {b['held-out']['strict_accuracy']:.1%} -> "
            f"{a['held-out']['strict_accuracy']:.1%}; on {b['harder']['n']} sums with a first number from 10 to 30, a "
            f"range never trained on: {b['harder']['strict_accuracy']:.1%} -> {a['harder']['strict_accuracy']:.1%}. "
            f"Training correctness reward {c0:.2f} (first {k} steps) -> {c1:.2f} (last {k}). Held-out answers that "
            f"repeat a number of the question: {copied[0]:.0%} -> {copied[1]:.0%}; the prompt example's \"7\": "
            f"{seven[0]:.0%} -> {seven[1]:.0%}.{gsm8k} A one-step task sized for a 135M model: it shows GRPO teaching "
            "a verifier's task, not grade-school math.*")


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
    if run.sums and run.sums_metrics_csv is not None:
        sums = run.sums
        fig = plot_sums_stage(read_metrics_csv(run.sums_metrics_csv), sums["before"], sums["after"],
                              title=f"Stage 2 (recorded run, seed {run.settings['seed']}): GRPO on word sums")
        written.append(save_figure(fig, ASSETS / "sums_stage.png"))
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
