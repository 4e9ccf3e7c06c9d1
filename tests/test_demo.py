"""The demo end to end at toy size (real SmolLM2, real GSM8K, 2 steps), and its report logic on fixed numbers."""

from __future__ import annotations

import pytest

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


def test_verdict_flags_the_collapse():
    collapsed = rows(0.2, 1.2)
    collapsed[-1].update(entropy=0.01, **{"completions/mean_length": 19.0})
    lines = verdict(reward_summary(collapsed), collapsed, score(["no"], ["1"]), score(["no"], ["1"]))
    assert any("reward hacking" in line for line in lines)


def test_choose_threads():
    assert choose_threads(3) == 3
    assert choose_threads() >= 1


def test_demo_end_to_end_toy_size(tmp_path, capsys):
    args = ["--runs-dir", str(tmp_path), "--name", "toy", "--steps", "2", "--generations", "2",
            "--completion-length", "8", "--train-rows", "16", "--eval-rows", "2", "--eval-tokens", "8",
            "--max-prompt-length", "200", "--no-assets"]
    assert main(args) == 0
    run = tmp_path / "toy"
    for name in ("metrics.csv", "reward_curve.png", "before_after.png", "report.md", "eval_before.jsonl",
                 "eval_after.jsonl", "lora/adapter_config.json"):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "Seed **3407**" in report and "first 10 steps" in report and "| accuracy |" in report
    out = capsys.readouterr().out
    assert "Mean total reward: first 10 steps" in out
    with pytest.raises(CourseError, match="already exists"):
        main(args)
