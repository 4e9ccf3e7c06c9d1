"""Figures of a GRPO run: reward curves from the metrics log, and a before/after bar chart.

Both work from plain data (a list of TRL log dicts, or the ``metrics.csv`` a run writes), so a notebook can redraw
a finished run without the trainer.

Example:
    >>> rows = [{"step": 1, "reward": 0.1, "reward_std": 0.2, "rewards/xmlcount_reward/mean": 0.1,
    ...          "completions/mean_length": 30.0}, {"step": 2, "reward": 0.3, "reward_std": 0.1,
    ...          "rewards/xmlcount_reward/mean": 0.3, "completions/mean_length": 28.0}]
    >>> fig = plot_reward_curves(rows)
    >>> [ax.get_title() for ax in fig.axes][:2]
    ['total reward', 'each reward (mean)']
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

# Columns first in metrics.csv, in this order; other numeric log keys follow alphabetically.
FIRST_COLUMNS = ["step", "reward", "reward_std", "kl", "completions/mean_length", "entropy", "loss", "grad_norm",
                 "learning_rate", "frac_reward_zero_std"]


def _agg():
    import matplotlib

    if not _interactive():  # scripts and tests: draw off-screen, never open a window
        matplotlib.use("Agg")


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 3.2, nrows: int = 1, **subplots):
    """A figure with a row of axes that a notebook shows exactly once, as the value of the cell.

    Made through pyplot, because in Jupyter that is what loads the inline backend that turns a ``Figure`` into a
    picture (a figure made without pyplot shows as the text ``<Figure size ...>``), then closed at once, so pyplot's
    end-of-cell flush does not draw it a second time. Outside Jupyter it draws off-screen (Agg).

    Example:
        >>> fig, axes = new_figure(2)
        >>> len(fig.axes)
        2
    """
    _agg()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **subplots)
    plt.close(fig)
    return fig, axes


def finish_figure(fig, axes, title: str | None = None):
    """The course's axes style (small ticks, light grid), an optional suptitle and a tight layout; returns ``fig``.

    Example:
        >>> fig, axes = new_figure(2)
        >>> finish_figure(fig, axes, "two panels")._suptitle.get_text()
        'two panels'
    """
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _interactive() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def write_metrics_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write TRL log dicts (one per logging step) as a CSV with a ``step`` column first.

    Example:
        >>> import tempfile, os
        >>> p = write_metrics_csv([{"step": 1, "reward": 0.5}], os.path.join(tempfile.mkdtemp(), "m.csv"))
        >>> open(p).read().splitlines()
        ['step,reward', '1,0.5']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for row in rows:
        for k, v in row.items():
            if k not in keys and (isinstance(v, (int, float)) or v is None):
                keys.append(k)
    columns = [k for k in FIRST_COLUMNS if k in keys] + sorted(k for k in keys if k not in FIRST_COLUMNS)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k) for k in columns})
    tmp.replace(path)  # a notebook reading the CSV never sees half a file
    return path


def read_metrics_csv(path: str | Path) -> list[dict[str, float | None]]:
    """The rows of a ``metrics.csv`` as dicts of floats (empty cells are None)."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _rows(history) -> list[Mapping[str, Any]]:
    if isinstance(history, (str, Path)):
        return read_metrics_csv(history)
    if hasattr(history, "to_dict"):  # a pandas DataFrame
        return history.to_dict("records")
    return [h for h in history if "reward" in h]


def _series(rows, key) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(rows):
        y = _number(row.get(key))
        if y is not None:
            xs.append(_number(row.get("step")) or i + 1)
            ys.append(y)
    return xs, ys


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (shorter windows at the start).

    Example:
        >>> moving_average([1, 2, 3, 4], 2)
        [1.0, 1.5, 2.5, 3.5]
    """
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def reward_names(rows) -> list[str]:
    """Names of the individual reward functions logged as ``rewards/<name>/mean``."""
    names: list[str] = []
    for row in rows:
        for k in row:
            if k.startswith("rewards/") and k.endswith("/mean") and k[8:-5] not in names:
                names.append(k[8:-5])
    return names


def plot_reward_curves(history, title: str | None = None, smooth: int = 5):
    """One figure with a panel per signal: total reward (+ moving average), each reward's mean, reward std,
    KL (only when it was logged and is not all zero, i.e. beta > 0) and mean completion length.

    ``history``: TRL log dicts (``trainer.state.log_history``), a ``metrics.csv`` path, or a DataFrame.
    """
    rows = _rows(history)
    kl_x, kl_y = _series(rows, "kl")
    show_kl = any(abs(v) > 0 for v in kl_y)
    panels = ["total reward", "each reward (mean)", "reward std"] + (["KL to reference"] if show_kl else []) + \
             ["completion length (tokens)"]
    fig, axes = new_figure(len(panels), width=3.6, height=3.0, squeeze=False)
    axes = list(axes[0])
    x, y = _series(rows, "reward")
    axes[0].plot(x, y, ".", alpha=0.5, label="per step")
    if y:
        axes[0].plot(x, moving_average(y, smooth), "-", label=f"mean of {smooth}")
        axes[0].legend(fontsize=7)
    for name in reward_names(rows):
        rx, ry = _series(rows, f"rewards/{name}/mean")
        axes[1].plot(rx, moving_average(ry, smooth) if ry else ry, label=name.removesuffix("_reward"))
    if reward_names(rows):
        axes[1].legend(fontsize=7)
    axes[2].plot(*_series(rows, "reward_std"), color="tab:purple")
    i = 3
    if show_kl:
        axes[i].plot(kl_x, kl_y, color="tab:red")
        i += 1
    axes[i].plot(*_series(rows, "completions/mean_length"), color="tab:green")
    for ax, name in zip(axes, panels):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
    return finish_figure(fig, axes, title)


def plot_before_after(before: Mapping[str, float], after: Mapping[str, float],
                      metrics: Sequence[str] = ("strict_accuracy", "format_free_accuracy", "format_rate", "strict_format_rate"), title: str | None = None):
    """Grouped bars: each metric before and after training (rates in [0, 1]).

    Example:
        >>> fig = plot_before_after({"strict_accuracy": 0.0, "format_rate": 0.1},
        ...                         {"strict_accuracy": 0.0, "format_rate": 0.8}, metrics=["strict_accuracy", "format_rate"])
        >>> len(fig.axes[0].patches)
        4
    """
    fig, ax = new_figure(1, width=1.6 + 1.5 * len(metrics), height=3.2)
    xs = range(len(metrics))
    width = 0.38
    for offset, label, values, color in ((-width / 2, "before", before, "tab:gray"), (width / 2, "after", after, "tab:blue")):
        heights = [float(values.get(m, 0.0)) for m in metrics]
        bars = ax.bar([x + offset for x in xs], heights, width, label=label, color=color)
        ax.bar_label(bars, labels=[f"{h:.0%}" for h in heights], fontsize=8)
    ax.set_xticks(list(xs), [m.replace("_", " ") for m in metrics], fontsize=9)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("rate")
    ax.legend(fontsize=8)
    ax.set_title(title or "before vs after GRPO", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG (written to a temp file first, so readers never see half an image) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    tmp.replace(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ one seed can lie: the band

RECORDED_SEEDS = Path(__file__).resolve().parent / "recorded_seeds" / "seeds.json"
STAGES = ("before", "after priming", "after GRPO")  # the held-out evaluations of a demo run, in order


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def seed_band(curves: Mapping[Any, Sequence[float]], smooth: int = 5) -> dict[str, list[float]]:
    """Median and range over seeds, step by step, of reward curves (each smoothed by a trailing mean of ``smooth``).

    ``curves``: seed -> reward per step (step 1 first). Steps are kept while every seed has one.

    Example:
        >>> band = seed_band({1: [0.0, 1.0, 2.0], 2: [1.0, 1.0, 1.0], 3: [2.0, 3.0]}, smooth=1)
        >>> band["step"], band["median"], band["low"], band["high"]
        ([1, 2], [1.0, 1.0], [0.0, 1.0], [2.0, 3.0])
    """
    from grpo_helpers.errors import CourseError

    if not curves:
        raise CourseError("No reward curves to draw a band from.", fix="Pass {seed: [reward per step], ...}.")
    smoothed = [moving_average([float(v) for v in c], smooth) for c in curves.values()]
    steps = min(len(c) for c in smoothed)
    columns = [[c[i] for c in smoothed] for i in range(steps)]
    return {"step": list(range(1, steps + 1)), "median": [_median(c) for c in columns],
            "low": [min(c) for c in columns], "high": [max(c) for c in columns], "smooth": smooth}


def stage_band(rates: Mapping[Any, Mapping[str, float]], stages: Sequence[str] = STAGES) -> dict[str, list]:
    """Median and range over seeds of a rate measured at each stage (e.g. the held-out format rate).

    Example:
        >>> stage_band({1: {"before": 0.0, "after GRPO": 0.9}, 2: {"before": 0.0, "after GRPO": 0.5}},
        ...            stages=("before", "after GRPO"))["median"]
        [0.0, 0.7]
    """
    kept = [s for s in stages if all(s in r and r[s] is not None for r in rates.values())]
    columns = [[float(r[s]) for r in rates.values()] for s in kept]
    return {"stage": kept, "median": [_median(c) for c in columns], "low": [min(c) for c in columns],
            "high": [max(c) for c in columns]}


def recorded_seeds(path: str | Path | None = None) -> dict[str, Any]:
    """The recorded seed benchmark (``benchmarks/seeds.py --record``): the demo recipe run for several seeds.

    Keys: ``command`` (the demo command, seed left as ``<seed>``), ``seeds``, ``shipped_seed``, ``runs`` (per seed:
    ``reward`` per step, ``format_rate`` per stage, times, the doctor's verdict), ``band`` (reward: median and range
    per step), ``format_band`` (held-out format rate per stage), ``typical`` (where the shipped seed ranks).

    Example:
        >>> seeds = recorded_seeds()
        >>> len(seeds["runs"]) >= 2 and seeds["shipped_seed"] in seeds["seeds"]
        True
    """
    import json

    from grpo_helpers.errors import CourseError

    path = Path(path) if path is not None else RECORDED_SEEDS
    if not path.is_file():
        raise CourseError(f"No recorded seed benchmark at {path}.",
                          fix="Reinstall grpo-helpers, or record one: python benchmarks/seeds.py --record")
    return json.loads(path.read_text())


def _history_rows(history) -> list[Mapping[str, Any]]:
    if hasattr(history, "state") and hasattr(history.state, "log_history"):  # a Trainer
        history = history.state.log_history
    return _rows(history)


def plot_seed_band(seeds: Mapping[str, Any] | None = None, run=None, run_format: Mapping[str, float] | None = None,
                   label: str = "your run", title: str | None = None):
    """Reward curves and held-out format rates of the recorded seeds as a band (median and range), a run on top.

    ``seeds``: :func:`recorded_seeds` (the default) or the same dict from ``benchmarks/seeds.py``; ``run``: a
    learner's run to overlay (trainer, ``log_history``, ``metrics.csv``), smoothed like the band; ``run_format``:
    its held-out format rates by stage (``{"after GRPO": result.format_rate}``).

    Example:
        >>> fig = plot_seed_band(recorded_seeds())
        >>> [ax.get_title().split(" (")[0] for ax in fig.axes]
        ['reward during GRPO', 'held-out format rate']
    """
    seeds = recorded_seeds() if seeds is None else seeds
    band, fmt = seeds["band"], seeds["format_band"]
    n = len(seeds["runs"])
    fig, (left, right) = new_figure(2, width=4.6, height=3.3)
    smooth = int(band.get("smooth", 1))
    left.fill_between(band["step"], band["low"], band["high"], color="tab:blue", alpha=0.2,
                      label=f"range of {n} seeds")
    for r in seeds["runs"]:
        curve = moving_average(r["reward"], smooth)[:len(band["step"])]
        left.plot(band["step"][:len(curve)], curve, color="tab:blue", alpha=0.25, linewidth=0.8)
    left.plot(band["step"], band["median"], color="tab:blue", linewidth=2, label="median")
    if run is not None:
        x, y = _series(_history_rows(run), "reward")
        if y:
            left.plot(x, moving_average(y, smooth), color="tab:red", linewidth=2, label=label)
    left.set(title=f"reward during GRPO (trailing mean of {smooth} steps)" if smooth > 1 else "reward during GRPO",
             xlabel="step", ylabel="total reward")
    xs = list(range(len(fmt["stage"])))
    for i in xs:
        right.plot([i, i], [fmt["low"][i], fmt["high"][i]], color="tab:blue", linewidth=6, alpha=0.3,
                   solid_capstyle="butt", label=f"range of {n} seeds" if i == 0 else None)
        dots = [r["format_rate"][fmt["stage"][i]] for r in seeds["runs"]]
        right.plot([i] * len(dots), dots, "o", color="tab:blue", alpha=0.5, markersize=4)
        right.plot([i - 0.18, i + 0.18], [fmt["median"][i]] * 2, color="tab:blue", linewidth=2,
                   label="median" if i == 0 else None)
    if run_format:
        mine = [(i, run_format[s]) for i, s in enumerate(fmt["stage"]) if run_format.get(s) is not None]
        if mine:
            right.plot([i for i, _ in mine], [v for _, v in mine], "*", color="tab:red", markersize=12, label=label)
    right.set_xticks(xs, fmt["stage"], fontsize=8)
    right.set(title=f"held-out format rate (n={seeds['runs'][0].get('eval_n', '?')} questions)", ylim=(-0.05, 1.05),
              ylabel="rate")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title or f"recorded: the demo recipe over {n} seeds", fontsize=10)
    fig.tight_layout()
    return fig
