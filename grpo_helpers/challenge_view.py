"""The leaderboard widget of the reward challenge: pick a hack, see which submissions it beats.

Core ipywidgets only (Colab renders them). The HTML comes from :class:`grpo_helpers.challenge.Leaderboard`, so the
logic is tested without a browser.

Example:
    >>> from grpo_helpers.challenge import leaderboard, BASELINES
    >>> view = leaderboard(BASELINES, timeout=60).view()
    >>> view.hack.value = "bare_number"
    >>> "grpo-challenge-beaten" in view.table.value
    True
"""

from __future__ import annotations

import html

from grpo_helpers import rewards as R


def hack_example(board, name: str) -> tuple[str, str]:
    """The text of hack ``name`` on the apples question, and why it games rewards (from ``rewards.HACKS``)."""
    why = {h.name: h.why for h in R.HACKS}
    why.update(empty_answer="Real reasoning, an empty answer block: pays every format reward that forgets the answer.",
               tag_spam="An honest answer followed by the tags repeated: pays rewards that count tags.",
               hedging="Several numbers in one answer, the right one among them: pays rewards that search for the number.")
    text = next((e.text for e in board.pool[0].entries if e.name == name), "")
    return text, why.get(name, "")


class LeaderboardView:
    """``hack`` (Dropdown), ``about`` (HTML: the hack's text and why), ``table`` (HTML: the board, beaten rows red)."""

    def __init__(self, board, hack: str | None = None):
        import ipywidgets as W

        self.board = board
        names = board.hack_names
        self.hack = W.Dropdown(options=names, value=hack or names[0], description="hack",
                               layout=W.Layout(width="360px"))
        self.about = W.HTML()
        self.table = W.HTML()
        self.table.add_class("grpo-challenge-table")
        self.hack.observe(lambda change: self.refresh(), names="value")
        self.widget = W.VBox([self.hack, self.about, self.table])
        self.refresh()

    def refresh(self) -> None:
        text, why = hack_example(self.board, self.hack.value)
        beaten = [r.name for r in self.board.rows if not r.error and self.hack.value in r.beaten_by]
        verdict = (f"beats <b>{html.escape(', '.join(beaten))}</b>" if beaten else "beats no submission")
        self.about.value = (f"<p>{html.escape(why)} It {verdict}.</p>"
                            f"<pre style='font-size:11px;max-height:8em;overflow:auto'>{html.escape(text)}</pre>")
        self.table.value = self.board.to_html(highlight=self.hack.value)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
