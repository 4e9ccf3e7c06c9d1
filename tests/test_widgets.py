"""Widget logic without a browser: set widget values from Python and check what the widgets display."""

import pytest

from grpo_helpers import rewards as R
from grpo_helpers import widgets as Wd

GOOD = "<reasoning>\nTom has 3 apples and buys 4.\n</reasoning>\n<answer>\n7\n</answer>\n"


def test_playground_updates_as_the_completion_and_reference_change():
    pg = Wd.RewardPlayground()
    assert pg.total.value == "total: fixed 4.00 / 4.00 | seed 3.00"  # honest, right: the seed loses soft+strict
    pg.completion.value = "7"
    assert pg.total.value == "total: fixed 0.00 / 4.00 | seed 2.50"  # the bare-number hack
    pg.completion.value = GOOD.replace("\n7\n", "\n1,000\n")
    pg.answer.value = "1000"
    assert pg.total.value == "total: fixed 4.00 / 4.00 | seed 1.00"
    assert "<td>correctness</td><td>0..2</td><td>1</td><td>0</td><td><b>2</b></td>" in pg.table.value


def test_playground_weights_scale_the_totals():
    pg = Wd.RewardPlayground()
    pg.sliders["correctness_reward"].value = 0.5
    pg.sliders["xmlcount_reward"].value = 0.0
    assert pg.weights["correctness_reward"] == 0.5
    assert pg.total.value == "total: fixed 2.50 / 2.50 | seed 1.50"
    assert "<td>xmlcount</td><td>0..0.5</td><td>0</td>" in pg.table.value


def test_playground_picker_loads_every_example():
    pg = Wd.RewardPlayground()
    for name, (completion, answer) in Wd.EXAMPLES.items():
        pg.picker.value = name
        assert (pg.completion.value, pg.answer.value) == (completion, answer)
        expected = R.weighted_total({k: v[0] for k, v in R.score_completions([completion], answer).items()})
        assert pg.total.value.startswith(f"total: fixed {expected:.2f} / 4.00")


def test_playground_highlights_the_seed_bugs():
    pg = Wd.RewardPlayground("negative answer")
    result = pg.result()
    assert result["seed"]["int_reward"] == 0.0 and result["fixed"]["int_reward"] == 0.5
    assert 'style="background:#fff3cd"><td>int</td>' in pg.table.value


def test_playground_survives_input_that_crashes_nothing():
    pg = Wd.RewardPlayground()
    for text in ["", "<answer>", "\u2603" * 10_000, "</answer></answer><answer>"]:
        pg.completion.value = text
        assert pg.total.value.startswith("total: fixed ")


def test_widgets_carry_stable_css_classes_for_the_browser_test():
    pg = Wd.RewardPlayground()
    assert "grpo-playground-completion" in pg.completion._dom_classes
    assert "grpo-playground-total" in pg.total._dom_classes
    assert "application/vnd.jupyter.widget-view+json" in pg._repr_mimebundle_()


@pytest.mark.parametrize("scale_rewards", R.SCALE_REWARDS)
def test_group_view_shows_trl_advantages(scale_rewards):
    gv = Wd.GroupView(scale_rewards=scale_rewards)
    totals = [t for res in gv.results for t in res.totals]
    assert totals == [4.0, 2.0, 0.125, 0.25, 4.0, 1.5, 0.25, 2.0]
    expected = R.group_advantages(totals, 4, scale_rewards)
    assert [a for res in gv.results for a in res.advantages] == expected
    assert f"{expected[0]:+.3f}" in gv.html.value


def test_group_view_reacts_to_scale_weights_and_reward_set():
    gv = Wd.GroupView()
    group_adv = gv.results[0].advantages
    gv.scale_rewards.value = "none"
    assert gv.results[0].advantages == [2.40625, 0.40625, -1.46875, -1.34375]  # r - mean, no division
    assert "advantage = r - group mean" in gv.html.value
    gv.scale_rewards.value = "group"
    assert gv.results[0].advantages == group_adv
    gv.sliders["correctness_reward"].value = 0.0
    assert gv.results[0].totals == [2.0, 2.0, 0.125, 0.25]
    gv.which.value = "seed"
    gv.sliders["correctness_reward"].value = 1.0
    # Under the seed rewards the wrong "48" gets the best advantage of the Natalia group, "72 clips" almost none.
    natalia = gv.results[1]
    assert natalia.totals == [1.0, 1.0, 0.25, 1.5] and max(natalia.advantages) == natalia.advantages[3]


def test_group_rows_mean_and_std_are_unbiased():
    res = Wd.group_rows([Wd.Group("q", "7", (GOOD, "", "", ""))])[0]
    assert res.totals == [4.0, 0.0, 0.0, 0.0]
    assert res.mean == 1.0 and res.std == pytest.approx(2.0)  # torch.std([4,0,0,0]) = 2.0 (unbiased)
    assert res.advantages[0] == pytest.approx(3.0 / 2.0001)


def test_group_rows_rejects_ragged_groups():
    from grpo_helpers.errors import CourseError

    with pytest.raises(CourseError, match="different sizes"):
        Wd.group_rows([Wd.Group("q", "7", ("a", "b")), Wd.Group("q", "7", ("a",))])


@pytest.mark.slow
def test_sample_groups_from_smollm2(smollm2, gsm8k_test_small):
    from grpo_helpers.data import load_gsm8k

    model, tok = smollm2
    rows = load_gsm8k("test", n=1, source="offline", prefill="<reasoning>\n")
    groups = Wd.sample_groups(model, tok, list(rows), num_generations=2, max_new_tokens=8)
    assert len(groups) == 1 and len(groups[0].completions) == 2
    assert all(c.startswith("<reasoning>\n") for c in groups[0].completions)
    res = Wd.group_rows(groups)[0]
    assert all(s["correctness_reward"] == 0.0 for s in res.scores)  # a 135M model in 8 tokens: never right
