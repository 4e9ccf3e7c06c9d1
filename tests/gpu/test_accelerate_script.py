"""scripts/train_grpo.py under ``accelerate launch`` on one GPU (configs/accelerate/ddp.yaml, ``--num_processes 1``).

A random-weight model with Qwen2.5-0.5B-Instruct's layer shapes (4 layers), 3 GRPO steps of the seed recipe sized
down (4 generations x 32 tokens), then a resume to step 4. Checks what the CPU test (tests/test_train_script.py)
cannot: bf16 on the GPU, gradient checkpointing on, peak GPU memory reported by the process, resume on CUDA.
The 2-GPU run is the same command with ``--num_processes 2`` (see docs/scaling.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_grpo.py"


def _launch(model_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs/accelerate/ddp.yaml"),
           "--num_processes", "1", str(SCRIPT), "--model", str(model_dir), "--rows", "16", "--generations", "4",
           "--max-completion-length", "32", "--learning-rate", "1e-4", "--output-dir", str(out), *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def test_accelerate_launch_one_gpu_trains_saves_and_resumes(qwen_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    _launch(qwen_dir, out, "--steps", "3")
    summary = json.loads((out / "run_summary.json").read_text())
    rank0 = json.loads((out / "ranks" / "rank-0.json").read_text())
    print(json.dumps(summary, indent=1))
    assert (summary["world_size"], summary["global_step"], summary["completions_per_step"]) == (1, 3, 4)
    assert summary["dtype"] == "bfloat16" and summary["gradient_checkpointing"] is True
    assert rank0["device"].startswith("cuda") and rank0["peak_gpu_memory_gb"] > 0.36  # the bf16 weights alone: 0.36 GB
    assert rank0["steps_timed"] == 3 and rank0["median_step_seconds"] > 0

    _launch(qwen_dir, out, "--steps", "4", "--resume")
    resumed = json.loads((out / "ranks" / "rank-0.json").read_text())
    assert (resumed["global_step"], resumed["steps_timed"]) == (4, 1)

    base = AutoModelForCausalLM.from_pretrained(str(qwen_dir), dtype=torch.bfloat16, device_map={"": 0})
    model = PeftModel.from_pretrained(base, str(out / "lora"))
    assert model.peft_config["default"].r == 32  # the preset shape's default LoRA rank comes from the seed recipe
    ids = torch.tensor([[1, 2, 3]], device="cuda")
    assert model.generate(ids, max_new_tokens=2, do_sample=False).shape[1] == 5
