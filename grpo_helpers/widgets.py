"""ipywidgets for notebook 04: a reward playground and a GRPO group/advantage view (JupyterLab 4 and Colab).

* :class:`RewardPlayground`: type or pick a completion and a reference answer; see every reward, seed vs fixed, and
  the weighted totals update as you type. Sliders set the reward weights (TRL's ``reward_weights``).
* :class:`GroupView`: N completions per question -> rewards -> group mean/std -> advantages, exactly as TRL's
  GRPOTrainer computes them, for each ``scale_rewards`` option ("group", "batch", "none").

The logic lives in plain functions (:func:`score_both`, :func:`group_rows`) so it is tested without a browser.
Only core ipywidgets are used: Colab renders them without enabling a custom widget manager.

Example:
    >>> pg = RewardPlayground()
    >>> pg.completion.value = "<reasoning>\\n3 + 4 = 7 apples\\n</reasoning>\\n<answer>\\n7\\n</answer>\\n"
    >>> pg.answer.value = "7"
    >>> pg.total.value
    'total: fixed 4.00 / 4.00 | seed 3.50'
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import Mapping, Sequence

from grpo_helpers import rewards as R
from grpo_helpers import seed_rewards as S

SHORT = {"xmlcount_reward": "xmlcount", "soft_format_reward": "soft format", "strict_format_reward": "strict format",
         "int_reward": "int", "correctness_reward": "correctness"}

# Completions to pick from: (completion, reference answer). The hacks come from rewards.HACKS.
EXAMPLES: dict[str, tuple[str, str]] = {
    "honest, right": (R.HONEST_RIGHT.completion, "7"),
    "honest, wrong": (R.HONEST_WRONG.completion, "7"),
    "one line (seed's happy path)": ("<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n", "7"),
    "negative answer": ("<reasoning>\nThe temperature fell from 5 to -3 degrees.\n</reasoning>\n<answer>\n-3\n</answer>\n",
                        "-3"),
    "comma number": ("<reasoning>\n250 boxes of 4 pens is 1000 pens.\n</reasoning>\n<answer>\n1,000\n</answer>\n", "1000"),
    "dollars": ("<reasoning>\nShe pays 3 times $6, so $18.\n</reasoning>\n<answer>\n$18.00\n</answer>\n", "18"),
    "decimal": ("<reasoning>\nHalf of 5 hours is 2.5 hours.\n</reasoning>\n<answer>\n2.5\n</answer>\n", "2.5"),
    "boxed LaTeX": ("<reasoning>\nEach gets a half.\n</reasoning>\n<answer>\n\\boxed{\\frac{1}{2}}\n</answer>\n", "0.5"),
    "no newline at the end": ("<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>", "7"),
    **{f"hack: {h.name}": (h.completion, h.answer) for h in R.HACKS},
}


def score_both(completion: str, answer: str, weights: Mapping[str, float] | None = None) -> dict:
    """Seed and fixed scores of one plain-text completion, and their weighted totals.

    Example:
        >>> out = score_both("<answer>1,000</answer>", "1000")
        >>> out["fixed"]["correctness_reward"], out["seed"]["correctness_reward"]
        (2.0, 0.0)
    """
    weights = R.SEED_WEIGHTS if weights is None else weights
    fixed = {k: v[0] for k, v in R.score_completions([completion], answer).items()}
    try:
        seed = {k: v[0] for k, v in S.score_seed([completion], answer).items()}
    except Exception:  # noqa: BLE001 - the seed code can crash on odd input; show that instead of breaking the widget
        seed = {k: float("nan") for k in fixed}
    return {"fixed": fixed, "seed": seed, "fixed_total": R.weighted_total(fixed, weights),
            "seed_total": R.weighted_total(seed, weights)}


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}".rstrip("0").rstrip(".") or "0"


def scores_html(result: dict, weights: Mapping[str, float]) -> str:
    """An HTML table: reward, range, weight, seed, fixed (cells that differ are highlighted)."""
    rows = []
    for name in R.REWARD_NAMES:
        lo, hi = R.REWARD_RANGES[name]
        seed, fixed = result["seed"][name], result["fixed"][name]
        style = ' style="background:#fff3cd"' if _fmt(seed) != _fmt(fixed) else ""
        rows.append(f"<tr{style}><td>{SHORT[name]}</td><td>{_fmt(lo)}..{_fmt(hi)}</td><td>{_fmt(weights[name])}</td>"
                    f"<td>{_fmt(seed)}</td><td><b>{_fmt(fixed)}</b></td></tr>")
    head = "<tr><th>reward</th><th>range</th><th>weight</th><th>seed</th><th>fixed</th></tr>"
    style = "<style>.grpo-scores td, .grpo-scores th, .grpo-group td, .grpo-group th {padding: 2px 10px}</style>"
    return f'{style}<table class="grpo-scores">{head}{"".join(rows)}</table>'


def _weight_sliders(weights: Mapping[str, float] | None):
    import ipywidgets as W

    weights = R.SEED_WEIGHTS if weights is None else weights
    return {name: W.FloatSlider(value=float(weights.get(name, 1.0)), min=0.0, max=3.0, step=0.25,
                                description=SHORT[name], continuous_update=True,
                                style={"description_width": "90px"}) for name in R.REWARD_NAMES}


class _Displayable:
    widget = None

    def _repr_mimebundle_(self, **kwargs):  # display(view) shows its widget
        return self.widget._repr_mimebundle_(**kwargs)


class RewardPlayground(_Displayable):
    """Type or pick a completion and a reference; every reward (seed vs fixed) and the totals update live.

    Attributes to read or set from Python: ``picker``, ``completion`` (Textarea), ``answer`` (Text),
    ``sliders`` (one per reward), ``table`` (HTML), ``total`` (Label). ``display(pg)`` shows it.
    """

    def __init__(self, example: str = "honest, right", weights: Mapping[str, float] | None = None):
        import ipywidgets as W

        completion, answer = EXAMPLES[example]
        self.picker = W.Dropdown(options=list(EXAMPLES), value=example, description="pick",
                                 layout=W.Layout(width="420px"))
        self.completion = W.Textarea(value=completion, placeholder="Type a completion...", description="completion",
                                     continuous_update=True, layout=W.Layout(width="95%", height="150px"))
        self.answer = W.Text(value=answer, description="reference", continuous_update=True)
        self.sliders = _weight_sliders(weights)
        self.table = W.HTML()
        self.total = W.Label()
        for w, cls in [(self.completion, "completion"), (self.answer, "answer"), (self.table, "table"),
                       (self.total, "total")]:
            w.add_class(f"grpo-playground-{cls}")  # stable selectors for the browser test
        self.picker.observe(self._pick, names="value")
        for w in [self.completion, self.answer, *self.sliders.values()]:
            w.observe(lambda change: self.refresh(), names="value")
        self.widget = W.VBox([self.picker, self.completion, self.answer,
                              W.HBox([self.table, W.VBox(list(self.sliders.values()))]), self.total])
        self.refresh()

    @property
    def weights(self) -> dict[str, float]:
        return {name: s.value for name, s in self.sliders.items()}

    def _pick(self, change) -> None:
        completion, answer = EXAMPLES[change["new"]]
        self.answer.value = answer
        self.completion.value = completion

    def result(self) -> dict:
        """Scores for the current completion and reference (see :func:`score_both`)."""
        return score_both(self.completion.value, self.answer.value, self.weights)

    def refresh(self) -> None:
        result = self.result()
        self.table.value = scores_html(result, self.weights)
        max_total = sum(self.weights[n] * R.REWARD_RANGES[n][1] for n in R.REWARD_NAMES)
        self.total.value = (f"total: fixed {result['fixed_total']:.2f} / {max_total:.2f} | "
                            f"seed {result['seed_total']:.2f}")


# ----------------------------------------------------------------------------------------------------------------
# Group view
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Group:
    """One prompt and its sampled completions (as plain text, prefill included)."""

    question: str
    answer: str
    completions: tuple[str, ...]


# Canned groups in the style of tiny-mode rollouts (prefill "<reasoning>\n" included), so notebook 04 needs no model.
CANNED_GROUPS: list[Group] = [
    Group("Tom has 3 apples and buys 4 more. How many apples does he have?", "7", (
        R.HONEST_RIGHT.completion,
        R.HONEST_WRONG.completion,
        "<reasoning>\nTom has 3 apples. He buys 4 more apples. Then he has",
        "<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n",
    )),
    Group("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
          "How many clips did Natalia sell altogether in April and May?", "72", (
        "<reasoning>\nIn May she sold 48 / 2 = 24 clips.\n</reasoning>\n<answer>\n72 clips\n</answer>\n",
        "<reasoning>\nNatalia sold 48 clips in April and 24 in May.\n</reasoning>\n<answer>\n48 + 24\n</answer>\n",
        "<reasoning>\nLet's think step by step about the clips.\n</reasoning>\nThe answer is 72.",
        "<reasoning>\nShe sold 48 clips.\n</reasoning>\n<answer>\n48\n</answer>\n",
    )),
]


@dataclasses.dataclass
class GroupResult:
    """Per-completion rewards, totals and advantages of one group, with the group's mean and (unbiased) std."""

    group: Group
    scores: list[dict[str, float]]
    totals: list[float]
    mean: float
    std: float
    advantages: list[float]


def group_rows(groups: Sequence[Group], weights: Mapping[str, float] | None = None, scale_rewards: str = "group",
               which: str = "fixed") -> list[GroupResult]:
    """Score every completion of every group, then compute GRPO advantages over the batch, as TRL does.

    Example:
        >>> res = group_rows(CANNED_GROUPS[:1])
        >>> [round(t, 3) for t in res[0].totals], round(res[0].mean, 3)
        ([4.0, 2.0, 0.125, 0.25], 1.594)
    """
    weights = R.SEED_WEIGHTS if weights is None else weights
    sizes = {len(g.completions) for g in groups}
    if len(sizes) != 1:
        from grpo_helpers.errors import CourseError

        raise CourseError(f"Groups of different sizes {sorted(sizes)}.", fix="Give every question num_generations completions.")
    n = sizes.pop()
    per_group = []
    for g in groups:
        table = (R.score_completions(list(g.completions), g.answer) if which == "fixed"
                 else S.score_seed(list(g.completions), g.answer))
        scores = [{name: table[name][i] for name in R.REWARD_NAMES} for i in range(n)]
        per_group.append((g, scores, [R.weighted_total(s, weights) for s in scores]))
    advantages = R.group_advantages([t for _, _, totals in per_group for t in totals], n, scale_rewards)
    out = []
    for k, (g, scores, totals) in enumerate(per_group):
        out.append(GroupResult(g, scores, totals, R._nanmean(totals), R._nanstd(totals), advantages[k * n:(k + 1) * n]))
    return out


def _snippet(text: str, width: int = 70) -> str:
    flat = text.replace("\n", "⏎")
    return html.escape(flat if len(flat) <= width else flat[:width - 1] + "…")


def group_html(results: Sequence[GroupResult], scale_rewards: str) -> str:
    """HTML tables, one per group: completion, each reward, total, advantage; then mean and std."""
    formula = {"group": "(r - group mean) / (group std + 1e-4)", "batch": "(r - group mean) / (batch std + 1e-4)",
               "none": "r - group mean"}[scale_rewards]
    parts = ["<style>.grpo-group td, .grpo-group th {padding: 2px 8px}</style>", f"<p>advantage = {formula} &nbsp; (std: unbiased, as torch.std)</p>"]
    for res in results:
        head = "".join(f"<th>{SHORT[n]}</th>" for n in R.REWARD_NAMES)
        rows = []
        for text, scores, total, adv in zip(res.group.completions, res.scores, res.totals, res.advantages):
            color = "#d4edda" if adv > 1e-9 else "#f8d7da" if adv < -1e-9 else "#eee"
            cells = "".join(f"<td>{_fmt(scores[n])}</td>" for n in R.REWARD_NAMES)
            rows.append(f"<tr><td style='font-family:monospace'>{_snippet(text)}</td>{cells}<td><b>{_fmt(total)}</b></td>"
                        f"<td style='background:{color}'>{adv:+.3f}</td></tr>")
        parts.append(f"<p><b>Q:</b> {html.escape(res.group.question)} <b>reference:</b> {html.escape(res.group.answer)}"
                     f" &nbsp; mean {res.mean:.3f}, std {res.std:.3f}</p>"
                     f"<table class='grpo-group'><tr><th>completion</th>{head}<th>total</th><th>advantage</th></tr>"
                     f"{''.join(rows)}</table>")
    return "".join(parts)


class GroupView(_Displayable):
    """N completions per question -> rewards -> group mean/std -> advantages, with weight sliders and the
    ``scale_rewards`` choice. ``results`` holds the numbers shown; ``html`` the rendered tables."""

    def __init__(self, groups: Sequence[Group] | None = None, weights: Mapping[str, float] | None = None,
                 scale_rewards: str = "group", which: str = "fixed"):
        import ipywidgets as W

        self.groups = list(CANNED_GROUPS if groups is None else groups)
        self.scale_rewards = W.ToggleButtons(options=list(R.SCALE_REWARDS), value=scale_rewards,
                                             description="scale_rewards")
        self.which = W.ToggleButtons(options=["fixed", "seed"], value=which, description="rewards")
        self.sliders = _weight_sliders(weights)
        self.html = W.HTML()
        self.html.add_class("grpo-group-view")
        for w in [self.scale_rewards, self.which, *self.sliders.values()]:
            w.observe(lambda change: self.refresh(), names="value")
        self.widget = W.VBox([W.HBox([self.scale_rewards, self.which]), W.HBox(list(self.sliders.values())[:3]),
                              W.HBox(list(self.sliders.values())[3:]), self.html])
        self.results: list[GroupResult] = []
        self.refresh()

    @property
    def weights(self) -> dict[str, float]:
        return {name: s.value for name, s in self.sliders.items()}

    def refresh(self) -> None:
        self.results = group_rows(self.groups, self.weights, self.scale_rewards.value, self.which.value)
        self.html.value = group_html(self.results, self.scale_rewards.value)


def sample_groups(model, tokenizer, rows: Sequence[Mapping], num_generations: int = 4, max_new_tokens: int = 48,
                  seed: int = 3407) -> list[Group]:
    """Real groups: ``num_generations`` sampled completions for each dataset row (``prompt``, ``answer``, ``question``).

    The completions include the row's assistant prefill, as TRL's rewards see them once ``prefill`` is prepended.
    """
    from grpo_helpers.generation import Sampling, generate

    outs = generate(model, tokenizer, [r["prompt"] for r in rows],
                    Sampling(max_new_tokens=max_new_tokens, n=num_generations, seed=seed), progress=False)
    return [Group(r.get("question", ""), str(r["answer"]), tuple(o)) for r, o in zip(rows, outs)]
