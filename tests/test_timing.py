"""grpo_helpers.timing: T4 step times from the lent GPU's measurement, the formula checked by hand, labels kept."""

from __future__ import annotations

import doctest
import statistics

import pytest

from grpo_helpers import memory, timing
from grpo_helpers.errors import CourseError
from grpo_helpers.models import PRESETS
from grpo_helpers.recipes import RECIPES, SEED, T4_SESSION


def test_doctests():
    failures, tried = doctest.testmod(timing)
    assert tried >= 4 and failures == 0


def test_the_estimate_is_the_written_formula():
    row = next(r for r in timing.measured()["rows"] if r["preset"] == "llama-3.1-8b-instruct")
    est = timing.t4_estimate("llama-3.1-8b-instruct", four_bit=True, generations=6, completion=768)
    assert est["measured_generate_s"] == pytest.approx(statistics.median(row["generate_s"][1:]))  # step 1 compiles
    per_token_bytes = PRESETS["llama-3.1-8b-instruct"].params_b * 1e9 * 4.5
    t4_token = max(est["measured_generate_s"] / 768, per_token_bytes / (320e9 * 0.7))
    assert est["t4_generate_s"] == pytest.approx(768 * t4_token)
    assert est["t4_rest_s"] == pytest.approx(est["measured_rest_s"] * 989 / 65)
    assert est["t4_step_s"] > est["measured_step_s"] * 5  # a T4 is far slower than the lent H100


def test_an_unmeasured_configuration_is_not_extrapolated():
    with pytest.raises(CourseError, match="was measured"):
        timing.t4_estimate("llama-3.1-8b-instruct", four_bit=True, generations=8, completion=768)


def test_the_t4_session_recipe_fits_a_free_session_and_the_seed_without_vllm_does_not():
    session, seed = timing.recipe_times(T4_SESSION)["unsloth"], timing.recipe_times(SEED)["unsloth"]
    assert session["kind"] == seed["kind"] == "estimate"
    assert session["run_h"] < timing.FREE_SESSION_H / 4  # room for set-up, evaluation and a slower T4 than estimated
    assert seed["run_h"] > timing.FREE_SESSION_H * 0.6
    assert memory.fits_gpu(T4_SESSION["model_preset"], memory.T4_GB, "unsloth",
                           num_generations=T4_SESSION["num_generations"],
                           max_completion_length=T4_SESSION["max_completion_length"])
    assert RECIPES["t4-session"] is T4_SESSION


def test_the_table_labels_every_number():
    table = timing.times_table({"seed": SEED, "t4-session": T4_SESSION})
    rows = table.splitlines()[2:]
    assert len(rows) == 4
    assert all(any(k in r for k in ("estimate:", "measured by Unsloth", "not measured")) for r in rows)
    anchor = timing.recipe_times(SEED)["unsloth-vllm"]
    assert anchor["step_s"] == pytest.approx(timing.wall_seconds("3:47:51") / 250)


def test_the_readme_states_the_table_s_hours():
    """The README's "about N hours" for each recipe are the table's, rounded (they are typed there, so a test reads them)."""
    import re
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    seed, session = (re.search(rf"{k}.*?about (\d+) hours", text).group(1) for k in ("seed's 8B recipe", "t4-session"))
    assert int(seed) == round(timing.recipe_times(SEED)["unsloth"]["run_h"])
    assert int(session) == round(timing.recipe_times(T4_SESSION)["unsloth"]["run_h"])
