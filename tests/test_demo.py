"""The demo end to end at toy size (real SmolLM2, real GSM8K, 2 steps), its report logic on fixed numbers, its
reproducibility, and the recorded run shipped with the package."""

from __future__ import annotations

import csv
import doctest
import json
import os
import subprocess
import sys

import pytest

from grpo_helpers import demo
from grpo_helpers.demo import choose_threads, main, reward_summary, verdict
from grpo_helpers.errors import CourseError
from grpo_helpers.evaluation import score

GOOD = "<reasoning>\nhalf of 48 is 24\n</reasoning>\n<answer>\n24\n</answer>\n"


def rows(start: float, end: float, n: int = 20) -> list[dict]:
    return [{"step": i + 1, "reward": start + (end - start) * i / (n - 1), "rewards/correctness_reward/mean": 0.0,
             "rewards/xmlcount_reward/mean": 0.1, "completions/mean_length": 40.0, "entropy": 1.0} for i in range(n)]


def test_verdict_reports_a_rise_only_when_there_is_one():
    before, after = score(["no"], ["24"]), score([GOOD], ["25"])
    up = verdict(reward_summary(rows(0.2, 1.2)), rows(0.2, 1.2), before, after)
    assert up[0].startswith("The mean total reward rose from 0.")
    assert any("correctness did not move" in line for line in up)
    assert any(line.startswith("Rewards that rose") for line in up) is False  # per-reward means are flat here
    assert any("0% -> 100%" in line for line in up)  # format on the held-out question
    flat = verdict(reward_summary(rows(0.5, 0.5)), rows(0.5, 0.5), before, after)
    assert "did NOT clearly rise" in flat[0]


def test_verdict_reports_priming_apart_from_grpo():
    before, primed, after = score(["no", "no"], ["1", "2"]), score([GOOD, "no"], ["1", "2"]), score([GOOD, GOOD], ["1", "2"])
    lines = verdict(reward_summary(rows(0.2, 1.2)), rows(0.2, 1.2), before, after, primed)
    assert any("priming alone took the held-out format rate from 0% to 50%" in line and "GRPO then took it to 100%"
               in line for line in lines)


def test_verdict_flags_the_collapse():
    collapsed = rows(0.2, 1.2)
    collapsed[-1].update(entropy=0.01, **{"completions/mean_length": 19.0})
    lines = verdict(reward_summary(collapsed), collapsed, score(["no"], ["1"]), score(["no"], ["1"]))
    assert any("reward hacking" in line for line in lines)


def test_reasoning_words_show_a_collapse():
    full = [{"completion": "<reasoning>\nTom has 3. He buys 4: 3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>",
             "formatted": True}]
    empty = [{"completion": "<reasoning>\n\n</reasoning>\n<answer>\n7\n</answer>", "formatted": False}]
    assert demo.reasoning_words(full) == 11.0 and demo.reasoning_words(empty) == 0.0
    assert demo.reasoning_words(full + empty, only_formatted=True) == 11.0


def test_priming_targets_are_well_formed_and_never_grpo_questions():
    from grpo_helpers.rewards import soft_format_reward, strict_format_reward

    first = demo.priming_rows(8, "sys")
    excluded = demo.priming_rows(8, "sys", exclude={first[0]["prompt"][1]["content"]})
    assert first[0]["prompt"][1]["content"] not in [r["prompt"][1]["content"] for r in excluded]
    texts = [r["target"] for r in first]
    assert all("<<" not in t for t in texts)  # GSM8K's calculator annotations removed
    assert soft_format_reward(completions=texts, prefill=[demo.PREFILL] * 8) == [0.5] * 8
    assert strict_format_reward(completions=texts, prefill=[demo.PREFILL] * 8) == [0.5] * 8


def test_choose_threads():
    assert choose_threads(3) == 3
    assert choose_threads() >= 1


def test_system_prompts():
    assert demo.system_prompt_text("tiny").count("<reasoning>") == 1 and "..." not in demo.system_prompt_text("tiny")
    assert "..." in demo.system_prompt_text("seed")
    with pytest.raises(CourseError, match="Unknown system prompt"):
        demo.system_prompt_text("huge")


TOY = ["--steps", "2", "--generations", "2", "--completion-length", "8", "--train-rows", "16", "--eval-rows", "2",
       "--eval-tokens", "8", "--max-prompt-length", "200", "--prime-steps", "1", "--prime-batch", "2", "--prime-rows",
       "4", "--threads", "2", "--no-assets", "--sums-steps", "1", "--sums-generations", "2", "--sums-completion-length",
       "8", "--sums-train-rows", "4", "--sums-test-rows", "2", "--sums-harder-rows", "2", "--sums-eval-tokens", "8"]
SAME = ("reward", "loss", "grad_norm", "completions/mean_length", "rewards/xmlcount_reward/mean")


def test_demo_end_to_end_toy_size_and_same_seed_same_numbers(tmp_path):
    # The two runs go side by side, one torch thread each (the same thread count makes the same numbers): on CI's
    # 2 cores that takes about half the time of two 2-thread runs in a row.
    one_thread = [a if a != "2" or TOY[i - 1] != "--threads" else "1" for i, a in enumerate(TOY)]
    procs = {name: subprocess.Popen([sys.executable, "-m", "grpo_helpers.demo", *one_thread, "--runs-dir", str(tmp_path),
                                     "--name", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"})
             for name in ("a", "b")}
    outs = {name: p.communicate(timeout=900)[0] for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outs[name][-3000:]
    runs = {name: tmp_path / name for name in procs}
    run = runs["a"]
    for name in ("metrics.csv", "reward_curve.png", "before_after.png", "report.md", "eval_before.jsonl",
                 "eval_after.jsonl", "settings.json", "lora/adapter_config.json"):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "Seed **3407**" in report and "first 10 steps" in report and "| strict accuracy |" in report and "| format-free accuracy |" in report
    assert "| metric (n=2) | before | after priming | after GRPO |" in report and "reasoning words" in report
    settings = json.loads((run / "settings.json").read_text())
    assert settings["seed"] == 3407 and settings["prime_steps"] == 1 and settings["threads"] == 1
    assert settings["command"].startswith("python -m grpo_helpers.demo --seed 3407 --steps 2")
    assert "Mean total reward: first 10 steps" in outs["a"]
    # Stage 2 (word sums) ran from the format stage's adapter and reported its numbers.
    sums = settings["results"]["sums"]
    assert sums["steps"] == 1 and sums["before"]["held-out"]["n"] == 2 and sums["after"]["harder"]["n"] == 2
    assert set(sums["hack_checks"]["held-out"]["after"]) >= {"copied_question_number", "example_answer"}
    assert "## Stage 2: GRPO on word sums" in report and "### Reward-hacking checks" in report
    assert "--sums-steps 1" in settings["command"]
    for name in ("sums/metrics.csv", "sums/sums_stage.png", "sums/lora/adapter_config.json", "sums/eval_after.jsonl"):
        assert (run / name).is_file(), name
    # The same seed (and threads) reproduces the run: sampled completions, rewards, losses and both evaluations.
    a, b = (list(csv.DictReader(open(r / "metrics.csv"))) for r in runs.values())
    assert [[row[k] for k in SAME] for row in a] == [[row[k] for k in SAME] for row in b]
    assert (runs["a"] / "eval_after.jsonl").read_text() == (runs["b"] / "eval_after.jsonl").read_text()
    assert (runs["a"] / "sums/eval_after.jsonl").read_text() == (runs["b"] / "sums/eval_after.jsonl").read_text()
    with pytest.raises(CourseError, match="already exists"):
        main(TOY + ["--runs-dir", str(tmp_path), "--name", "a"])


def test_recorded_run_is_complete_and_small():
    run = demo.recorded_run()
    adapter = run.lora_path / "adapter_model.safetensors"
    assert adapter.stat().st_size <= 5_000_000
    rows = list(csv.DictReader(open(run.metrics_csv)))
    assert len(rows) == run.settings["grpo_config"]["max_steps"] >= 20
    assert run.settings["seed"] == 3407 and "Seed **3407**" in run.report_md.read_text()
    results = run.settings["results"]
    assert results["before"]["format_rate"] == 0.0 and results["after"]["format_rate"] >= 0.8
    assert results["total_seconds"] <= 720  # both stages (issue #21's budget on the 2-core course machine)
    # Stage 2: GRPO with correctness as the reward teaches the sums (issue #21's targets), and it was recorded.
    sums = run.sums
    held, harder = (sums["before"]["held-out"], sums["after"]["held-out"]), (sums["before"]["harder"], sums["after"]["harder"])
    assert held[0]["strict_accuracy"] <= 0.2 and held[1]["strict_accuracy"] >= 0.8
    assert harder[1]["strict_accuracy"] >= harder[0]["strict_accuracy"] + 0.4
    assert sums["correctness_first_last"][1] > sums["correctness_first_last"][0]
    assert run.sums_lora_path is not None and (run.sums_lora_path / "adapter_model.safetensors").stat().st_size <= 5_000_000
    assert len(list(csv.DictReader(open(run.sums_metrics_csv)))) == sums["steps"] == run.settings["sums"]["sums_steps"]
    assert "## Stage 2: GRPO on word sums" in run.report_md.read_text()


def test_readme_caption_matches_the_recorded_run():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    check = subprocess.run([sys.executable, str(root / "scripts" / "make_figures.py"), "--check"], capture_output=True,
                           text=True, cwd=root)
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_sums_runs_the_format_stage_only():
    args = demo.parse_args(["--no-sums"])
    assert args.no_sums and "--no-sums" in " ".join(demo._cli(args, 2))
    assert f"--sums-steps {demo.SUMS['sums_steps']}" in " ".join(demo._cli(demo.parse_args([]), 2))


def test_recorded_run_missing_folder_says_how_to_fix(tmp_path):
    with pytest.raises(CourseError, match="python -m grpo_helpers.demo --record"):
        demo.recorded_run(tmp_path)


def test_recorded_adapter_loads_onto_smollm2_and_changes_greedy_output():
    from peft import PeftModel

    from grpo_helpers.data import build_prompt
    from grpo_helpers.generation import Sampling, generate
    from grpo_helpers.models import load_model

    run = demo.recorded_run()
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    question = "Tom has 12 marbles and gives 5 to Ann. How many marbles does Tom have left?"
    prompt = [build_prompt(question, run.settings["system_prompt"], run.settings["prefill"])]
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=64)
    base = generate(model, tokenizer, prompt, sampling, progress=False)[0][0]
    tuned_model = PeftModel.from_pretrained(model, str(run.lora_path), is_trainable=False)
    tuned = generate(tuned_model, tokenizer, prompt, sampling, progress=False)[0][0]
    assert tuned != base
    assert "</reasoning>" in tuned and "<answer>" in tuned, tuned


def test_demo_doctests():
    failures, tried = doctest.testmod(demo)
    assert tried >= 10 and failures == 0
