"""Theory figures draw the numbers they are given."""

import doctest

import pytest

from grpo_helpers import figures


def test_doctests():
    failures, tried = doctest.testmod(figures)
    assert tried >= 6 and failures == 0


def test_group_baseline_bars_are_rewards_and_advantages():
    fig = figures.group_baseline_figure([1.0, 3.0], scale_rewards="none")
    rewards_ax, advantages_ax = fig.axes
    assert [p.get_height() for p in rewards_ax.patches] == [1.0, 3.0]
    assert [p.get_height() for p in advantages_ax.patches] == [-1.0, 1.0]


def test_clipping_curve_is_flat_beyond_the_band():
    line = figures.clipping_figure(epsilon_low=0.2, epsilon_high=0.2).axes[0].lines[1]  # A = +1, clipped
    x, y = line.get_xdata(), line.get_ydata()
    assert y[x > 1.3].min() == pytest.approx(1.2) and y[x > 1.3].max() == pytest.approx(1.2)


@pytest.mark.parametrize("name", ["k3_figure", "ppo_vs_grpo_figure", "prompt_length_figure", "loss_weighting_figure", "vram_figure"])
def test_figures_render(name, tmp_path):
    fig = getattr(figures, name)([100, 300]) if name == "prompt_length_figure" else getattr(figures, name)()
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_vram_bars_are_the_memory_estimates_and_16_bit_is_not_four_times():
    from grpo_helpers.memory import needed_gb, preset_estimate

    fig = figures.vram_figure({"llama-3.1-8b-instruct": 8.03})
    qlora, lora16 = (p.get_height() for p in fig.axes[0].patches)
    assert qlora == pytest.approx(needed_gb(preset_estimate("llama-3.1-8b-instruct")), rel=0.01)
    assert qlora < 15 < lora16 < 4 * qlora  # the seed's 8B fits a T4 only in 4-bit
    assert [t.get_text() for t in fig.axes[0].texts] == [f"{lora16 / qlora:.1f}x"]  # the ratio, labelled


def test_ratio_figure_marks_exactly_the_clipped_tokens():
    import torch

    from grpo_helpers.grpo_math import clipped_tokens

    torch.manual_seed(0)
    logps, old = torch.randn(3, 8), torch.randn(3, 8) * 0.1
    advantages, mask = torch.tensor([1.0, -1.0, 0.5]), torch.ones(3, 8, dtype=torch.bool)
    mask[2, 5:] = False
    fig = figures.ratio_figure(torch.exp(logps - old), advantages, mask)
    expected = int((clipped_tokens(logps, old, advantages) & mask).sum())
    crosses = sum(len(c.get_offsets()) for c in fig.axes[0].collections if "clipped" in c.get_label())
    assert crosses == expected > 0 and fig.axes[0].get_title() == f"{expected} of 21 tokens clipped"
    assert not any("A = 0" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
