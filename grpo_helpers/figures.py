"""Theory figures for the notebooks, drawn by code so a learner can change the numbers and redraw.

Each function returns a ``matplotlib.figure.Figure`` that Jupyter shows once, as the cell's value (see
:func:`grpo_helpers.plotting.new_figure`), and takes the numbers it draws as arguments.

Example:
    >>> fig = clipping_figure(epsilon_low=0.2, epsilon_high=0.28)
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from typing import Sequence

POSITIVE, NEGATIVE, NEUTRAL = "#2a9d8f", "#e76f51", "#8d99ae"


def _figure(ncols: int = 1, width: float = 5.0, height: float = 3.2):
    from grpo_helpers.plotting import new_figure

    return new_figure(ncols, width=width, height=height, layout="constrained")


def group_baseline_figure(rewards: Sequence[float], scale_rewards: str = "group"):
    """Rewards of one group with their mean (the baseline), and the advantages that come out.

    Example:
        >>> fig = group_baseline_figure([0.5, 2.5, 0.0, 0.5])
        >>> [ax.get_title() for ax in fig.axes]
        ['rewards of one group', 'advantages (scale_rewards=group)']
    """
    import torch

    from grpo_helpers.grpo_math import group_advantages

    values = torch.tensor(list(rewards), dtype=torch.float32)
    advantages = group_advantages(values, len(values), scale_rewards).tolist()
    baseline = float(values.mean())
    fig, (left, right) = _figure(2, width=4.2)
    names = [f"#{i + 1}" for i in range(len(values))]
    left.bar(names, values.tolist(), color=NEUTRAL)
    left.axhline(baseline, color="black", linestyle="--", label=f"group mean = {baseline:.2f}")
    left.set(title="rewards of one group", xlabel="completion", ylabel="reward")
    left.legend(loc="upper right", fontsize=8)
    right.bar(names, advantages, color=[POSITIVE if a > 0 else NEGATIVE for a in advantages])
    right.axhline(0, color="black", linewidth=0.8)
    right.set(title=f"advantages (scale_rewards={scale_rewards})", xlabel="completion", ylabel="advantage")
    return fig


def clipping_figure(epsilon_low: float = 0.2, epsilon_high: float = 0.2):
    """The clipped surrogate ``min(r A, clip(r) A)`` against the ratio r, for A > 0 and A < 0.

    Where the curve is flat, the gradient is zero: that token has moved far enough this step.

    Example:
        >>> clipping_figure().axes[0].get_title()
        'advantage A = +1'
    """
    import torch

    ratio = torch.linspace(0.4, 1.8, 281)
    fig, axes = _figure(2, width=4.2)
    for ax, advantage in zip(axes, (1.0, -1.0)):
        objective = torch.minimum(ratio * advantage, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * advantage)
        ax.plot(ratio, ratio * advantage, color=NEUTRAL, linestyle=":", label="r·A (no clip)")
        ax.plot(ratio, objective, color=POSITIVE if advantage > 0 else NEGATIVE, linewidth=2.5, label="min(r·A, clip(r)·A)")
        ax.axvspan(1 - epsilon_low, 1 + epsilon_high, color="#f4f1de", label=f"clip band [{1 - epsilon_low:.2f}, {1 + epsilon_high:.2f}]")
        ax.axvline(1.0, color="black", linewidth=0.6)
        ax.set(title=f"advantage A = {advantage:+.0f}", xlabel="ratio r = π / π_old", ylabel="objective (maximised)")
        ax.legend(fontsize=7, loc="upper left" if advantage > 0 else "lower left")
    return fig


def ratio_figure(ratio, advantages, mask=None, epsilon_low: float = 0.2, epsilon_high: float = 0.2):
    """Every token's ratio r = π / π_old against the clip band, one column per completion, coloured by its advantage.

    ``ratio``: (G, T) ratios; ``advantages``: (G,); ``mask``: (G, T), True where the model said the token (default:
    all). Clipped tokens (r above the band with A > 0, below it with A < 0: zero gradient) are drawn as crosses.

    Example:
        >>> import torch
        >>> fig = ratio_figure(torch.tensor([[1.0, 1.3], [0.7, 0.9]]), torch.tensor([1.0, -1.0]))
        >>> fig.axes[0].get_title()
        '2 of 4 tokens clipped'
    """
    import torch

    from grpo_helpers.grpo_math import clipped_tokens

    ratio = torch.as_tensor(ratio, dtype=torch.float32).detach()
    adv = torch.as_tensor(advantages, dtype=torch.float32).detach().reshape(-1, 1).expand_as(ratio)
    said = torch.ones_like(ratio, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
    clipped = clipped_tokens(ratio.log(), torch.zeros_like(ratio), adv, epsilon_low, epsilon_high) & said
    column = torch.arange(ratio.size(0), dtype=torch.float32).reshape(-1, 1).expand_as(ratio)
    jitter = (torch.arange(ratio.size(1), dtype=torch.float32) / max(ratio.size(1) - 1, 1) - 0.5) * 0.6
    x = column + jitter  # a completion's tokens spread left to right within its column, in order
    fig, ax = _figure(1, width=6.5, height=3.4)
    ax.axhspan(1 - epsilon_low, 1 + epsilon_high, color="#f4f1de", label=f"clip band [{1 - epsilon_low:.2f}, {1 + epsilon_high:.2f}]")
    ax.axhline(1.0, color="black", linewidth=0.6)
    for sign, color, name in ((1, POSITIVE, "A > 0"), (-1, NEGATIVE, "A < 0"), (0, NEUTRAL, "A = 0")):
        side = (torch.sign(adv) == sign) & said
        if (side & ~clipped).any():
            ax.scatter(x[side & ~clipped], ratio[side & ~clipped], s=10, color=color, alpha=0.7, label=f"token, {name}")
        if (side & clipped).any():
            ax.scatter(x[side & clipped], ratio[side & clipped], s=40, color=color, marker="x", linewidths=1.8,
                       label=f"clipped, {name} (zero gradient)")
    ax.set_xticks(range(ratio.size(0)), [f"{i + 1}\nA={a:+.2f}" for i, a in enumerate(adv[:, 0].tolist())], fontsize=8)
    ax.set(xlabel="completion (its tokens in order)", ylabel="ratio r = π / π_old",
           title=f"{int(clipped.sum())} of {int(said.sum())} tokens clipped")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def k3_figure():
    """The k3 KL estimate ``exp(q) - q - 1`` against ``q = log π_ref - log π``, next to the naive ``-q``.

    Example:
        >>> k3_figure().axes[0].get_xlabel()
        'q = log π_ref(token) − log π(token)'
    """
    import torch

    from grpo_helpers.grpo_math import k3_kl

    q = torch.linspace(-2.0, 2.0, 201)
    fig, ax = _figure(1, width=5.5)
    ax.plot(q, k3_kl(torch.zeros_like(q), q), color=POSITIVE, linewidth=2.5, label="k3 = exp(q) − q − 1  (≥ 0 always)")
    ax.plot(q, -q, color=NEUTRAL, linestyle=":", label="k1 = −q  (unbiased, but can be negative)")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set(xlabel="q = log π_ref(token) − log π(token)", ylabel="per-token KL estimate",
           title="KL penalty per token: zero when the policy agrees with the reference")
    ax.legend(fontsize=8)
    return fig


def ppo_vs_grpo_figure():
    """Block diagram: PPO needs a value model for its baseline; GRPO uses the group's mean reward instead.

    Example:
        >>> [ax.get_title() for ax in ppo_vs_grpo_figure().axes]
        ['PPO', 'GRPO']
    """
    fig, (ppo, grpo) = _figure(2, width=5.2, height=3.6)

    def box(ax, x, y, text, color, trained=False):
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5,
                bbox=dict(boxstyle="round,pad=0.4", facecolor=color, edgecolor="black" if trained else "#999999",
                          linewidth=2 if trained else 1))

    def arrow(ax, start, end):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#333333"))

    for ax in (ppo, grpo):
        ax.set(xlim=(0, 10), ylim=(0, 10))
        ax.axis("off")
        box(ax, 1.4, 5, "question q", "white")
        box(ax, 4.0, 5, "policy π\n(trained)", "#bde0fe", trained=True)
        box(ax, 8.4, 1.2, "reference π_ref\n(frozen, KL)", "#e9ecef")
        arrow(ax, (2.3, 5), (3.1, 5))
        ax.annotate("", xy=(7.6, 1.7), xytext=(4.3, 4.4), arrowprops=dict(arrowstyle="<->", color="#999999", linestyle=":"))
    ppo.set_title("PPO")
    box(ppo, 7.0, 5, "one answer o", "white")
    box(ppo, 7.0, 8.6, "reward r", "#ffe8d6")
    box(ppo, 3.6, 8.6, "value model V\n(trained, as big as π)", "#ffc8dd", trained=True)
    box(ppo, 5.3, 2.6, "A = r − V(q)", "#d8f3dc")
    arrow(ppo, (4.9, 5), (6.1, 5))
    arrow(ppo, (7.0, 5.6), (7.0, 8.0))
    arrow(ppo, (6.8, 8.0), (5.6, 3.1))
    arrow(ppo, (3.8, 8.0), (5.0, 3.1))
    arrow(ppo, (4.6, 2.6), (3.9, 4.4))
    grpo.set_title("GRPO")
    box(grpo, 7.0, 5, "group o₁ … o_G\n(same question)", "white")
    box(grpo, 7.0, 8.6, "rewards r₁ … r_G", "#ffe8d6")
    box(grpo, 3.4, 8.6, "no value model", "white")
    box(grpo, 4.6, 2.4, "Aᵢ = (rᵢ − mean r)\n        / std r", "#d8f3dc")
    arrow(grpo, (4.9, 5), (5.6, 5))
    arrow(grpo, (7.0, 5.7), (7.0, 8.0))
    arrow(grpo, (6.6, 8.0), (5.0, 3.1))
    arrow(grpo, (3.6, 2.6), (3.9, 4.4))
    return fig


def loss_weighting_figure(lengths: Sequence[int] = (20, 80, 200), max_completion_length: int = 200):
    """How much one token's loss counts under each ``loss_type``, for completions of different lengths.

    ``grpo`` divides by the completion's own length (short answers weigh more per token), ``bnpo``/``dapo`` by the
    batch's token count (every token equal), ``dr_grpo`` by a constant (every token equal, batch-independent).

    Example:
        >>> loss_weighting_figure(lengths=(10, 30), max_completion_length=30).axes[0].get_ylabel()
        'weight of one token'
    """
    import numpy as np

    total = sum(lengths)
    weights = {
        "grpo": [1 / (len(lengths) * n) for n in lengths],
        "bnpo / dapo": [1 / total] * len(lengths),
        "dr_grpo": [1 / (len(lengths) * max_completion_length)] * len(lengths),
    }
    fig, ax = _figure(1, width=6.0)
    x = np.arange(len(lengths))
    for i, (name, values) in enumerate(weights.items()):
        ax.bar(x + (i - 1) * 0.27, values, width=0.27, label=name)
    ax.set_xticks(x, [f"{n} tokens" for n in lengths])
    ax.set(ylabel="weight of one token", xlabel="completion length (one batch of these completions)",
           title="Per-token weight in the loss, by loss_type")
    ax.legend(fontsize=8)
    return fig


def vram_figure(params_b: dict[str, float] | None = None, gpu_gb: float = 15.0, num_generations: int = 6,
                max_completion_length: int = 768):
    """Will it fit? GPU memory of one GRPO step, QLoRA 4-bit against 16-bit LoRA, for the seed's group size.

    Bars are ``grpo_helpers.memory`` estimates (within 15% of every peak measured in ``benchmarks/RESULTS.md``) of
    what a GPU must have, on the Unsloth path, with LoRA r=32, ``num_generations`` completions of
    ``max_completion_length`` tokens after a 256-token prompt. Dots mark Unsloth's rule of thumb for QLoRA, 1 GB per
    billion parameters. 16-bit weights take 4x the bytes of 4-bit ones, but weights are only part of a step: the
    label over each pair is 16-bit / QLoRA (what the GPU must have) for that model and this group, estimated. It grows with the model, as the
    weights' share grows. Measured (``benchmarks/RESULTS.md``, H100, Unsloth path, 8 x 256 tokens) it was 1.5x for
    Qwen2.5-0.5B and 2.0x for Qwen2.5-1.5B; a 16-bit 8B step was never measured (``memory.sixteen_bit_vs_qlora``).
    ``params_b`` maps model names to billions of parameters (default: the course's GPU presets).

    Example:
        >>> vram_figure({"tiny": 0.1}).axes[0].get_ylabel()
        'GPU memory needed (GB, estimate)'
    """
    import numpy as np

    from grpo_helpers.memory import estimate_vram, needed_gb
    from grpo_helpers.models import GPU_SHAPES

    if params_b is None:
        from grpo_helpers.models import PRESETS

        params_b = {name: p.params_b for name, p in PRESETS.items() if p.needs_gpu}
    names = list(params_b)

    def needed(name: str, four_bit: bool) -> float:
        est = estimate_vram(params_b[name], four_bit, 32, num_generations, 256 + max_completion_length, "unsloth",
                            max_completion_length=max_completion_length, shape=name if name in GPU_SHAPES else None)
        return needed_gb(est)

    qlora = np.array([needed(n, True) for n in names])
    lora16 = np.array([needed(n, False) for n in names])
    fig, ax = _figure(1, width=7.0, height=3.6)
    x = np.arange(len(names))
    ax.bar(x - 0.2, qlora, width=0.4, color=POSITIVE, label="QLoRA 4-bit")
    ax.bar(x + 0.2, lora16, width=0.4, color=NEUTRAL, label="LoRA 16-bit")
    for i, (four, sixteen) in enumerate(zip(qlora, lora16)):
        ax.annotate(f"{sixteen / four:.1f}x", (x[i] + 0.2, sixteen), ha="center", va="bottom", fontsize=7)
    ax.plot(x - 0.2, [params_b[n] for n in names], "k.", label="rule of thumb: 1 GB per billion (QLoRA)")
    ax.axhline(gpu_gb, color=NEGATIVE, linestyle="--", label=f"Colab T4: {gpu_gb:g} GB")
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    ax.set(ylabel="GPU memory needed (GB, estimate)",
           title=f"Will it fit? {num_generations} x {max_completion_length}-token completions, LoRA r=32; "
                 "labels: 16-bit / QLoRA")
    ax.legend(fontsize=8)
    return fig


def prompt_length_figure(lengths: Sequence[int], max_prompt_length: int | None = 256):
    """Histogram of prompt lengths in tokens, with the prompt budget as a line.

    Example:
        >>> prompt_length_figure([120, 130, 150, 300], max_prompt_length=256).axes[0].get_xlabel()
        'prompt length (tokens)'
    """
    fig, ax = _figure(1, width=6.0)
    ax.hist(list(lengths), bins=20, color=NEUTRAL)
    if max_prompt_length is not None:
        over = sum(n > max_prompt_length for n in lengths)
        ax.axvline(max_prompt_length, color=NEGATIVE, linestyle="--",
                   label=f"budget {max_prompt_length} tokens ({over} of {len(lengths)} prompts longer)")
        ax.legend(fontsize=8)
    ax.set(xlabel="prompt length (tokens)", ylabel="prompts", title="How long are the rendered prompts?")
    return fig
