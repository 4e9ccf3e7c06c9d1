"""Plotting: metrics CSV round trip, reward-curve panels (KL only when beta > 0), before/after bars, PNG files."""

from __future__ import annotations

from grpo_helpers.plotting import (moving_average, plot_before_after, plot_reward_curves, read_metrics_csv,
                                   reward_names, save_figure, write_metrics_csv)


def history(kl: float | None = None, steps: int = 6) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "reward": 0.1 * step, "reward_std": 0.2, "rewards/xmlcount_reward/mean": 0.05 * step,
               "rewards/correctness_reward/mean": 0.0, "completions/mean_length": 40.0 - step, "epoch": 0.1,
               "learning_rate": 1e-4}
        if kl is not None:
            row["kl"] = kl * step
        rows.append(row)
    return rows


def test_metrics_csv_round_trip(tmp_path):
    path = write_metrics_csv(history() + [{"step": 7, "reward": float("nan"), "loss": 0.5}], tmp_path / "m.csv")
    rows = read_metrics_csv(path)
    assert list(rows[0])[:2] == ["step", "reward"]
    assert rows[1]["reward"] == 0.2 and rows[0]["loss"] is None and rows[6]["reward"] is None
    assert reward_names(rows) == ["correctness_reward", "xmlcount_reward"]


def test_reward_curve_panels(tmp_path):
    titles = [ax.get_title() for ax in plot_reward_curves(history()).axes]
    assert titles == ["total reward", "each reward (mean)", "reward std", "completion length (tokens)"]
    assert "KL to reference" not in [ax.get_title() for ax in plot_reward_curves(history(kl=0.0)).axes]
    fig = plot_reward_curves(history(kl=0.01))
    assert "KL to reference" in [ax.get_title() for ax in fig.axes]
    labels = [line.get_label() for line in fig.axes[1].get_lines()]
    assert labels == ["xmlcount", "correctness"]
    png = save_figure(fig, tmp_path / "curve.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_reward_curve_from_csv_path(tmp_path):
    path = write_metrics_csv(history(), tmp_path / "metrics.csv")
    fig = plot_reward_curves(path)
    x, y = fig.axes[0].get_lines()[0].get_data()
    assert list(x) == [1, 2, 3, 4, 5, 6] and abs(y[-1] - 0.6) < 1e-9


def test_before_after_bars():
    fig = plot_before_after({"strict_accuracy": 0.0, "format_rate": 0.2}, {"strict_accuracy": 0.1, "format_rate": 0.9},
                            metrics=["strict_accuracy", "format_rate"])
    heights = sorted(round(p.get_height(), 3) for p in fig.axes[0].patches)
    assert heights == [0.0, 0.1, 0.2, 0.9]


def test_moving_average():
    assert moving_average([2, 4, 6], 5) == [2.0, 3.0, 4.0]
