"""Regenerate the README's figures in assets/ from committed logs, without training or a browser.

    make figures      (= HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_figures.py)

* assets/reward_curve.png   from assets/demo_metrics.csv (written by `make demo`, which also redraws it)
* assets/grpo_group_baseline.png   one group's rewards and GRPO advantages (grpo_helpers.figures, as in notebook 05)
assets/widget_playground.png is a real screenshot: the browser test (tests/test_widgets_browser.py) retakes it.
"""

from pathlib import Path

from grpo_helpers import figures
from grpo_helpers.plotting import plot_reward_curves, read_metrics_csv, save_figure

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def main() -> None:
    written = [save_figure(plot_reward_curves(read_metrics_csv(ASSETS / "demo_metrics.csv"),
                                              title="Tiny CPU demo: SmolLM2-135M GRPO on GSM8K"),
                           ASSETS / "reward_curve.png")]
    written.append(save_figure(figures.group_baseline_figure([0.0, 0.5, 0.5, 2.5, 0.0, 3.0]),
                               ASSETS / "grpo_group_baseline.png"))
    for path in written:
        print(f"wrote {path.relative_to(ASSETS.parent)}")


if __name__ == "__main__":
    main()
