"""The GRPO doctor on runs that really have each problem, and on the healthy recorded demo run.

Each failure is produced for real by a tiny CPU run where a tiny run can (2-5 steps, 2-6 completions of 4-24
tokens): a too-short ``max_completion_length``, a chat template that opens ``<think>`` (TRL's own Qwen3.5 template)
with TRL's own ``think_format_reward``, a batch TRL refuses, rewards that tie every group, a lenient tag reward that
pays for broken formats, an adapter saved untrained, weights blown up to NaN. The rest (collapse, length, tag spam,
template copies, KL) are read from logged numbers and texts written here, as a run would log them. Every code a
failure produces is also checked absent from the healthy recorded demo run.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from grpo_helpers import doctor
from grpo_helpers.demo import recorded_run
from grpo_helpers.doctor import diagnose

PREFILL = "<reasoning>\n"
ROOT = Path(__file__).resolve().parents[1]


def char_length_reward(completions, **kwargs) -> list[float]:
    """Differs between completions (their length in characters), so groups do not tie unless asked to."""
    return [len(c if isinstance(c, str) else c[0]["content"]) / 10 for c in completions]


def constant_reward(completions, **kwargs) -> list[float]:
    """The same score for every completion: every group ties."""
    return [1.0] * len(completions)


def lenient_tag_reward(completions, prefill=None, **kwargs) -> list[float]:
    """Full marks when an <answer> tag appears anywhere: the kind of format reward a model games."""
    texts = [(p or "") + (c if isinstance(c, str) else c[0]["content"]) for c, p in zip(completions, prefill or [""] * len(completions))]
    return [1.0 if "<answer>" in t else 0.0 for t in texts]


def tiny_run(tmp_path, name, rewards, *, preset="smollm2-135m-offline", steps=2, template=None, prefill=PREFILL,
             system_prompt=None, **overrides):
    """A real GRPO run through the course's build_trainer/train (which installs the live doctor)."""
    from grpo_helpers.data import SYSTEM_PROMPT, load_gsm8k
    from grpo_helpers.models import load_model
    from grpo_helpers.training import build_trainer, grpo_config, train

    model, tokenizer = load_model(preset, backend="trl-peft")
    if template is not None:
        tokenizer.chat_template = template
    ds = load_gsm8k("train", n=8, source="offline", prefill=prefill, system_prompt=system_prompt or SYSTEM_PROMPT)
    settings = dict(max_steps=steps, num_generations=2, per_device_train_batch_size=2, max_completion_length=8,
                    save_steps=1000)
    settings.update(overrides)
    config = grpo_config("tiny", run_name=name, runs_dir=tmp_path, **settings)
    trainer = build_trainer(model, tokenizer, ds, rewards, config, lora_rank=4, live_plot=False)
    try:
        train(trainer)
        error = None
    except RuntimeError as err:  # a run that dies (NaN weights) is diagnosed from its exception
        error = err
    return types.SimpleNamespace(trainer=trainer, folder=tmp_path / name, error=error)


def live_doctor(trainer):
    return next(cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "LiveDoctor")


@pytest.fixture(scope="module")
def healthy():
    """The recorded `make demo` run: the doctor must say nothing false about it."""
    return diagnose(recorded_run())


# Every code a real failure below produces; none may appear for the healthy recorded run.
FAILURE_CODES = ["truncated", "template-opens-tag", "batch-not-divisible", "groups-tie", "lenient-reward-hacked",
                 "like-base", "nan", "collapse-repeated", "entropy-collapse", "length-collapse", "length-runaway",
                 "tag-spam", "template-copy", "kl-high", "reward-constant", "reward-flat", "format-not-content",
                 "outside-band"]


# ------------------------------------------------------------------------------------------- the healthy recorded run

def test_the_recorded_demo_run_is_healthy_with_its_own_numbers(healthy):
    import csv

    rows = list(csv.DictReader(open(recorded_run().metrics_csv)))
    assert healthy.healthy and healthy.steps == len(rows)
    assert healthy.codes("error") == healthy.codes("warning") == []
    first = sum(float(r["reward"]) for r in rows[:10]) / 10
    last = sum(float(r["reward"]) for r in rows[-10:]) / 10
    assert f"reward {first:.3f} (mean of the first 10 steps) -> {last:.3f} (mean of the last 10 steps)" in healthy.evidence
    tied = sum(float(r["frac_reward_zero_std"]) == 1.0 for r in rows)
    assert f"every group tied at {tied} of {len(rows)} steps" in " ".join(healthy.evidence)
    assert str(healthy).splitlines()[1].startswith("HEALTHY")


def test_its_one_note_is_true_the_loss_is_negative_or_zero_where_the_csv_says(healthy):
    import csv

    rows = list(csv.DictReader(open(recorded_run().metrics_csv)))
    note = healthy.find("loss-near-zero")
    assert note is not None and note.severity == "info"
    negative = [int(r["step"]) for r in rows if float(r["loss"]) < 0]
    zero = [int(r["step"]) for r in rows if float(r["loss"]) == 0]
    assert sorted(note.steps) == sorted(negative + zero)
    assert f"loss < 0 at steps {doctor.step_ranges(negative)}" in note.evidence
    assert "grad_norm > 0" in note.evidence and "dapo" in note.cause  # the recorded recipe's loss_type


@pytest.mark.parametrize("code", FAILURE_CODES)
def test_no_failure_is_claimed_for_the_healthy_run(healthy, code):
    assert code not in healthy.codes()


def test_the_doctor_is_instant_on_the_recorded_run_and_the_command_prints_the_same(healthy):
    folder = recorded_run().metrics_csv.parent
    out = subprocess.run([sys.executable, "-m", "grpo_helpers.doctor", str(folder)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == str(diagnose(folder))
    assert out.stdout.splitlines()[1].startswith("HEALTHY")
    bad = subprocess.run([sys.executable, "-m", "grpo_helpers.doctor", "no/such/run"], capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------------------ real failures

def test_too_short_completions_are_named_live_at_step_5_and_from_the_run_folder(tmp_path, capsys):
    from grpo_helpers.rewards import REWARD_FUNCS

    run = tiny_run(tmp_path, "short", [*REWARD_FUNCS, char_length_reward], steps=5, max_completion_length=4)
    found = diagnose(run.trainer).find("truncated")
    assert found is not None and found.severity == "error"
    assert "max_completion_length=4" in found.evidence and found.fix.startswith("max_completion_length=8")
    assert found.steps == (1, 2, 3, 4, 5) and "trl/issues/5697" in found.links[0]
    # live: the callback waited for 5 steps of clipped_ratio > 0.5, then warned once
    warned = live_doctor(run.trainer).warned
    assert [(step, f.code) for step, f in warned if f.code == "truncated"] == [(5, "truncated")]
    assert "GRPO doctor, step 5: ERROR   truncated" in capsys.readouterr().out
    # the run folder holds what the doctor needs: the same verdict from the command line
    assert (run.folder / "run_config.json").is_file() and (run.folder / "completions.jsonl").is_file()
    assert diagnose(run.folder).codes() == diagnose(run.trainer).codes()
    out = subprocess.run([sys.executable, "-m", "grpo_helpers.doctor", str(run.folder)], capture_output=True, text=True)
    assert out.returncode == 1 and "ERROR   truncated" in out.stdout


def test_a_template_that_opens_think_is_named_with_the_reward_it_zeroes(tmp_path):
    from trl.chat_template_utils import qwen3_5_think_chat_template
    from trl.rewards import think_format_reward

    run = tiny_run(tmp_path, "think", [think_format_reward, char_length_reward], template=qwen3_5_think_chat_template,
                   prefill="")
    d = diagnose(run.trainer)
    found = d.find("template-opens-tag")
    assert found is not None and found.severity == "error", d
    assert "<think>" in found.title and "think_format_reward" in found.evidence
    assert "<think>\\n'" in found.evidence and "'<think>\\n' + c[0]['content']" in found.fix
    assert "trl/issues/6966" in found.links[0]
    # thinking switched off: the template writes an empty <think></think> block, and the same reward stays at 0
    off = diagnose(run.trainer.state.log_history, config={"chat_template_kwargs": {"enable_thinking": False}},
                   tokenizer=run.trainer.processing_class).find("template-opens-tag")
    assert off is not None and "an empty <think></think> block" in off.title and "enable_thinking" in off.fix
    # the same model with its own template: no such finding
    plain = tiny_run(tmp_path, "plain", [think_format_reward, char_length_reward], prefill="")
    assert "template-opens-tag" not in diagnose(plain.trainer).codes()


def test_a_batch_trl_refuses_is_named_from_its_error_with_a_batch_that_works(tmp_path):
    from trl import GRPOConfig

    from grpo_helpers.errors import CourseError
    from grpo_helpers.training import grpo_config

    with pytest.raises(ValueError) as err:
        GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=3, use_cpu=True)
    found = diagnose(err.value).find("batch-not-divisible")
    assert found is not None and found.severity == "error"
    assert found.fix.startswith("per_device_train_batch_size=3 ")
    fixed = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=3, num_generations=3, use_cpu=True)
    assert diagnose(config=fixed).codes() == []
    # the course's own check says it first; the doctor reads that message too
    with pytest.raises(CourseError) as course:
        grpo_config("tiny", runs_dir=tmp_path, num_generations=3, per_device_train_batch_size=4)
    assert diagnose(course.value).find("batch-not-divisible").fix.startswith("per_device_train_batch_size=3 ")
    # a batch TRL accepts although per_device_train_batch_size < num_generations (2 x 3 accumulation = 6 = G)
    accepted = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=3,
                          num_generations=6, use_cpu=True)
    assert "batch-not-divisible" not in diagnose(config=accepted).codes()


@pytest.mark.parametrize("reward, value", [(constant_reward, 1.0), ("correctness", 0.0)])
def test_rewards_that_tie_every_group_are_named_and_the_zero_loss_is_explained(tmp_path, reward, value):
    from grpo_helpers.rewards import correctness_reward

    funcs = [correctness_reward] if reward == "correctness" else [reward]  # a random model never answers right
    run = tiny_run(tmp_path, "tie", funcs, preset="tiny-random")
    d = diagnose(run.trainer)
    found = d.find("groups-tie")
    assert found is not None and found.severity == "error", d
    assert found.steps == (1, 2) and f"reward at those steps {value:.3f}" in found.evidence
    assert ("partial credit" in found.fix) == (value == 0.0)  # "my reward is 0": give partial credit
    loss = d.find("loss-near-zero")
    assert loss is not None and "every group tied" in loss.cause and "grad_norm > 0 at 0 of 2" in loss.evidence


def test_a_lenient_tag_reward_is_caught_paying_for_broken_formats(tmp_path):
    from grpo_helpers.data import SYSTEM_PROMPT
    from grpo_helpers.rewards import soft_format_reward

    run = tiny_run(tmp_path, "lenient", [lenient_tag_reward, soft_format_reward], system_prompt=SYSTEM_PROMPT,
                   steps=3, num_generations=6, per_device_train_batch_size=6, max_completion_length=24)
    found = diagnose(run.trainer).find("lenient-reward-hacked")
    assert found is not None and found.severity == "warning"
    assert found.title.startswith("lenient_tag_reward gives full marks")
    paid, broken = map(int, re.search(r"paid its top score 1 to (\d+) of \d+; (\d+) of those", found.evidence).groups())
    assert broken >= 2 and broken >= paid / 2
    assert "soft_format_reward pays 0 of those" in found.evidence  # the course's reward is not fooled
    # the course's own graded reward is never called lenient: part marks are by design
    samples = [json.loads(line) for line in open(run.folder / "completions.jsonl")]
    assert samples and all("lenient_tag_reward" in s["rewards"] for s in samples)


def test_an_adapter_saved_untrained_and_an_evaluation_of_the_base_are_named(tmp_path):
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.demo import _write_jsonl
    from grpo_helpers.evaluation import evaluate
    from grpo_helpers.generation import Sampling
    from grpo_helpers.models import load_model
    from grpo_helpers.training import add_lora, save_lora

    base, tokenizer = load_model("tiny-random", backend="trl-peft")
    ds = load_gsm8k("test", n=4, source="offline")
    sampling = Sampling(temperature=0.0, max_new_tokens=8)
    before = evaluate(base, tokenizer, ds, sampling=sampling, progress=False)
    lora = add_lora(base, backend="trl-peft", rank=4)  # never trained: its B matrices are 0
    after = evaluate(lora, tokenizer, ds, sampling=sampling, progress=False)
    run = tmp_path / "run"
    save_lora(lora, run / "lora", backend="trl-peft")
    found = diagnose(run).find("like-base")
    assert found is not None and found.severity == "error" and "lora_B matrices" in found.evidence
    assert re.search(r"all (\d+) lora_B", found.evidence).group(1) == str(doctor.adapter_is_zero(run / "lora")[1])
    (run / "lora" / "adapter_model.safetensors").unlink()
    _write_jsonl(before.records, run / "eval_before.jsonl")
    _write_jsonl(after.records, run / "eval_after.jsonl")
    found = diagnose(run).find("like-base")
    assert found is not None and "4 of 4 held-out answers" in found.evidence


def test_weights_blown_up_to_nan_are_named_from_the_crash(tmp_path):
    run = tiny_run(tmp_path, "nan", [char_length_reward], preset="tiny-random", steps=3, learning_rate=1e30,
                   max_grad_norm=1e30)
    d = diagnose(run.error if run.error is not None else run.trainer, config=run.trainer.args)
    found = d.find("nan")
    assert found is not None and found.severity == "error", d
    assert found.fix.startswith("learning_rate=1e+29")


# --------------------------------------------------------------- findings read from logged numbers and texts

def rows(n, **series):
    """n logged steps; each keyword is a metric: a constant, or a function of the step (1-based)."""
    return [{"step": s, **{k.replace("__", "/"): (v(s) if callable(v) else v) for k, v in series.items()}}
            for s in range(1, n + 1)]


def test_entropy_length_and_kl_trends():
    collapse = rows(12, reward=1.0, entropy=lambda s: 1.5 if s < 6 else 0.02, completions__mean_length=lambda s:
                    60 if s < 6 else 6)
    d = diagnose(collapse)
    assert {"entropy-collapse", "length-collapse"} <= set(d.codes())
    runaway = diagnose(rows(12, reward=1.0, completions__mean_length=lambda s: 100 if s < 6 else 240),
                       config={"max_completion_length": 256, "loss_type": "grpo"}).find("length-runaway")
    assert runaway is not None and "loss_type='dr_grpo'" in runaway.fix and "Dr. GRPO" in runaway.cause
    kl = diagnose(rows(6, reward=1.0, kl=lambda s: 0.01 * 10 ** s), config={"beta": 0.04}).find("kl-high")
    assert kl is not None and kl.steps == (6,)


def test_nan_that_trl_logged_as_none_and_a_flat_reward():
    history = rows(4, reward=1.0, loss=0.1, kl=lambda s: 0.01 if s < 3 else None)
    found = diagnose(history).find("nan")
    assert found is not None and "kl NaN/inf at steps 3-4" in found.evidence
    flat = diagnose(rows(12, reward=lambda s: 0.5 + 0.01 * (s % 2), frac_reward_zero_std=0.0))
    assert flat.codes() == ["reward-flat"]


def test_collapse_tag_spam_and_template_copies_in_completions():
    d = diagnose(rows(2, reward=0.0), completions=["!!!!!!!!!!!!!!!!"] * 3 + ["<answer>7</answer>"])
    assert d.find("collapse-repeated") is not None
    spam = "<reasoning>\nx = 1\n</reasoning>\n<answer>\n1\n</answer>\n<answer>\n1\n</answer>"
    assert diagnose(completions=[spam] * 3 + ["fine"]).find("tag-spam") is not None
    from grpo_helpers.data import SYSTEM_PROMPT, TINY_SYSTEM_PROMPT

    dots = "<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"
    data = doctor.gather(None, completions=[dots] * 3 + ["<reasoning>\n2 + 2 = 4\n</reasoning>\n<answer>\n4\n</answer>"])
    data.system_prompt = SYSTEM_PROMPT
    copy = doctor.diagnose_data(data).find("template-copy")
    assert copy is not None and copy.severity == "warning" and "3 of 4" in copy.title
    data = doctor.gather(None, completions=["<reasoning>\nTom has 3 apples.\nx\n</reasoning>\n<answer>\n7\n</answer>"] * 2
                         + ["<reasoning>\n5 + 5 = 10\n</reasoning>\n<answer>\n10\n</answer>"] * 6)
    data.system_prompt = TINY_SYSTEM_PROMPT
    copy = doctor.diagnose_data(data).find("template-copy")
    assert copy is not None and copy.severity == "info" and "'Tom has 3 apples.'" in copy.evidence


def test_format_rising_while_correctness_stays_zero_is_a_note():
    history = rows(10, reward=1.0, rewards__soft_format_reward__mean=lambda s: 0.05 * s,
                   rewards__correctness_reward__mean=0.0)
    found = diagnose(history).find("format-not-content")
    assert found is not None and found.severity == "info"


def test_bad_input_is_a_course_error():
    from grpo_helpers.errors import CourseError

    with pytest.raises(CourseError, match="cannot read a int"):
        diagnose(3)
    with pytest.raises(CourseError, match="config must be a GRPOConfig"):
        diagnose([], config=3)


def test_doctests():
    import doctest

    failures, tried = doctest.testmod(doctor)
    assert tried > 10 and failures == 0


# ------------------------------------------------------------------------------------- seeds: the band and a run on it

def seeds_like(curves: dict, formats: dict) -> dict:
    """What benchmarks/seeds.py writes, for the runs given (seed -> rewards, seed -> format rate per stage)."""
    from grpo_helpers.plotting import seed_band, stage_band

    return {"runs": [{"seed": s, "reward": c, "format_rate": formats[s], "eval_n": 32} for s, c in curves.items()],
            "band": seed_band(curves), "format_band": stage_band(formats)}


def test_a_run_is_drawn_on_the_band_and_one_below_it_is_named(tmp_path):
    import csv

    from grpo_helpers.plotting import moving_average, plot_seed_band, save_figure

    recorded = [float(r["reward"]) for r in csv.DictReader(open(recorded_run().metrics_csv))]
    curves = {s: [v + 0.1 * s for v in recorded] for s in range(5)}  # five runs around the recorded curve
    formats = {s: {"before": 0.0, "after priming": 0.4 + 0.02 * s, "after GRPO": 0.8 + 0.03 * s} for s in range(5)}
    seeds = seeds_like(curves, formats)
    band = seeds["band"]
    assert band["median"] == pytest.approx(moving_average(curves[2], band["smooth"]))  # the middle seed, odd n
    assert band["low"] == pytest.approx(moving_average(curves[0], 5)) and seeds["format_band"]["high"][2] == 0.92
    fig = plot_seed_band(seeds, run=recorded_run().metrics_csv, run_format={"after GRPO": 0.5}, label="mine")
    left, right = fig.axes
    assert "mine" in [line.get_label() for line in left.get_lines()]
    assert "mine" in [line.get_label() for line in right.get_lines()]
    assert save_figure(fig, tmp_path / "band.png").stat().st_size > 10_000
    trainer_like = types.SimpleNamespace(state=types.SimpleNamespace(log_history=rows(4, reward=1.0)))
    fig = plot_seed_band(seeds, run=trainer_like)  # notebook cell: plot_seed_band(recorded_seeds(), run=trainer)
    assert [line.get_xdata().tolist() for line in fig.axes[0].get_lines() if line.get_label() == "your run"] == \
        [[1.0, 2.0, 3.0, 4.0]]
    # a run far below every seed: the doctor says so; a run on the median is not flagged
    found = diagnose(rows(len(band["step"]), reward=-1.0), reference=seeds).find("outside-band")
    assert found is not None and "below every one of the 5 recorded seeds" in found.title
    assert diagnose([{"step": s, "reward": v} for s, v in enumerate(curves[2], 1)],
                    reference=seeds).find("outside-band") is None
