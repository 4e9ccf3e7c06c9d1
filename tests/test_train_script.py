"""scripts/train_grpo.py: bad flags fail early and clearly; 2 CPU processes train together, save and resume.

The multi-process run uses ``torchrun --nproc_per_node 2``, the entry point ``accelerate launch`` itself uses: on a
CPU, ``accelerate launch --cpu --num_processes 2`` (and an accelerate config with ``distributed_type: MULTI_CPU``)
start only one process (issue 15). The script then finds 2 ranks through torch.distributed (gloo), as it would find
2 GPUs under ``accelerate launch``. One process of the same script, run alone, gives the single-process baseline.

Model: the 2-layer tiny-random Llama (plumbing, not learning), 8 GSM8K rows, 4 generations of 8 tokens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_grpo.py"
TORCHRUN = Path(sys.executable).parent / "torchrun"
# tiny-random: prompts are long in its 400-token byte-level vocabulary, and it has 512 positions: 480 + 8 fits.
TINY_RUN = ["--model", "tiny-random", "--rows", "8", "--generations", "4", "--max-completion-length", "8",
            "--max-prompt-length", "480", "--lora-rank", "4", "--learning-rate", "1e-3"]


def _script(*args: str, cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(SCRIPT), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------------------- bad flags

@pytest.mark.parametrize("flags, message", [
    (["--generations", "1"], "--generations 1 is not a group"),
    (["--steps", "0"], "--steps 0 must be at least 1"),
    (["--rows", "9000"], "GSM8K's train split has 7473 rows"),
    (["--model", "no-such-model"], "is neither a course preset, a local folder nor a hub id"),
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    (["--resume", "--output-dir", "never-trained"], "holds no checkpoint to continue from"),
    (["--vllm-server", "localhost:8000"], "is not a URL"),
])
def test_bad_flags_stop_with_a_course_error(tmp_path, flags, message):
    done = _script(*flags, cwd=tmp_path)
    assert done.returncode == 2
    assert "CourseError: " in done.stderr and message in done.stderr and "How to fix:" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_existing_run_is_not_overwritten(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "metrics.csv").write_text("step,reward\n")
    done = _script("--output-dir", str(tmp_path / "run"))
    assert done.returncode == 2 and "already holds a run; it is not overwritten silently" in done.stderr
    assert (tmp_path / "run" / "metrics.csv").read_text() == "step,reward\n"


# ------------------------------------------------------------------------------------------ one process vs 2 processes

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process for 2 steps; 2 processes for 2 steps, then resumed by 2 processes to step 3."""
    base = tmp_path_factory.mktemp("train_script")
    alone, ddp = base / "alone", base / "ddp"
    done = _script(*TINY_RUN, "--steps", "2", "--output-dir", str(alone), timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    first = _torchrun(*TINY_RUN, "--steps", "2", "--output-dir", str(ddp))
    after_first = {"summary": _json(ddp / "run_summary.json"),
                   "ranks": [_json(ddp / "ranks" / f"rank-{r}.json") for r in (0, 1)],
                   "state": _json(ddp / "checkpoints" / "checkpoint-2" / "trainer_state.json")}
    resumed = _torchrun(*TINY_RUN, "--steps", "3", "--resume", "--output-dir", str(ddp))
    return dict(alone=alone, ddp=ddp, after_first=after_first, first_log=first.stdout + first.stderr,
                resumed_log=resumed.stdout + resumed.stderr)


def test_both_ranks_train_and_the_effective_batch_doubles(runs):
    alone, two = _json(runs["alone"] / "run_summary.json"), runs["after_first"]["summary"]
    assert alone["world_size"] == 1 and two["world_size"] == 2
    assert two["distributed_type"] == "DistributedType.MULTI_CPU"
    # Both ranks trained every step (each writes its own report after training).
    assert [(r["rank"], r["world_size"], r["steps_timed"]) for r in runs["after_first"]["ranks"]] == [(0, 2, 2), (1, 2, 2)]
    # Same per-process batch, twice the completions per optimizer step ...
    assert two["per_device_train_batch_size"] == alone["per_device_train_batch_size"] == 4
    assert two["completions_per_step"] == 2 * alone["completions_per_step"] == 8
    # ... and the data really was split: each step of 2 processes walks twice as far through the dataset.
    assert two["dataset_rows"] == alone["dataset_rows"]
    rows = two["dataset_rows"]
    assert alone["epoch"] == pytest.approx(2 / (rows // 1))
    assert two["epoch"] == pytest.approx(2 / (rows // 2))


def test_the_saved_adapter_loads(runs):
    import torch
    from peft import PeftModel

    from grpo_helpers.course import run_settings
    from grpo_helpers.models import load_model
    from grpo_helpers.training import lora_state, max_abs_diff

    lora = runs["ddp"] / "lora"
    assert (lora / "adapter_config.json").is_file() and (lora / "adapter_model.safetensors").is_file()
    assert json.loads((lora / "adapter_config.json").read_text())["r"] == 4
    settings = run_settings(lora)  # course_run.json, what notebook 07 evaluates the adapter with
    assert (settings["lora_rank"], settings["max_completion_length"], settings["max_steps"]) == (4, 8, 3)
    base, tokenizer = load_model("tiny-random", backend="trl-peft")
    model = PeftModel.from_pretrained(base, str(lora))
    weights = lora_state(model)
    assert len(weights) == 2 * 7 * 2  # A and B on 7 projections of 2 layers
    # The adapter in lora/ is the one of the last checkpoint (step 3, after the resume).
    checkpoint = PeftModel.from_pretrained(load_model("tiny-random", backend="trl-peft")[0],
                                           str(runs["ddp"] / "checkpoints" / "checkpoint-3"))
    assert max_abs_diff(weights, lora_state(checkpoint)) == 0.0
    ids = tokenizer("Calculate pi.", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 4


def test_resume_continues_from_the_checkpoint(runs):
    ddp = runs["ddp"]
    summary = _json(ddp / "run_summary.json")
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 3
    assert "resuming from" in runs["resumed_log"]
    # Each rank trained only the one missing step in the second run (a restart would have trained 3).
    for r in (0, 1):
        report = _json(ddp / "ranks" / f"rank-{r}.json")
        assert (report["world_size"], report["global_step"], report["steps_timed"]) == (2, 3, 1)
    # The log of steps 1-2 is carried over from the checkpoint, and step 3 continues the token count.
    history = [h for h in _json(ddp / "checkpoints" / "checkpoint-3" / "trainer_state.json")["log_history"] if "loss" in h]
    first = [h for h in runs["after_first"]["state"]["log_history"] if "loss" in h]
    assert [h["step"] for h in history] == [1, 2, 3]
    assert history[:2] == first
    assert history[2]["num_tokens"] > history[1]["num_tokens"]
    assert (ddp / "metrics.csv").read_text().count("\n") >= 3


# ------------------------------------------------------------------------------------------------ accelerate launch

def test_accelerate_launch_runs_the_script_with_the_ddp_config(tmp_path):
    """The GPU entry point on a CPU: one process (``--cpu`` starts only one here), the course's DDP config file."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs/accelerate/ddp.yaml"),
           "--cpu", "--num_processes", "1", str(SCRIPT), *TINY_RUN, "--steps", "1", "--output-dir", str(tmp_path / "run")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    summary = _json(tmp_path / "run" / "run_summary.json")
    assert (summary["world_size"], summary["global_step"], summary["completions_per_step"]) == (1, 1, 4)
    assert (tmp_path / "run" / "lora" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("ours, trls", [("ddp", "multi_gpu"), ("zero2", "zero2"), ("zero3", "zero3")])
def test_accelerate_configs_are_trls_and_load(ours, trls):
    import importlib.util

    import yaml
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "configs" / "accelerate" / f"{ours}.yaml"
    loaded = load_config_from_file(str(path))  # what `accelerate launch --config_file` reads
    assert loaded.distributed_type.value == ("MULTI_GPU" if ours == "ddp" else "DEEPSPEED")
    if ours != "ddp":
        assert loaded.deepspeed_config["zero_stage"] == int(ours[-1])
    trl_dir = Path(importlib.util.find_spec("trl").submodule_search_locations[0]) / "accelerate_configs"
    mine, theirs = yaml.safe_load(path.read_text()), yaml.safe_load((trl_dir / f"{trls}.yaml").read_text())
    assert {k: v for k, v in mine.items() if k != "num_processes"} == {k: v for k, v in theirs.items() if k != "num_processes"}
