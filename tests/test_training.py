"""Training: config presets, LoRA, a tiny real GRPO run, the run folder, resume after a hard kill, save/load/export.

Tiny TRL-test-style runs: 2 generations x 8 tokens x 2-4 steps. The trained models are loaded fresh here (not the
session ``smollm2`` fixture), because LoRA is injected into the model in place.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from grpo_helpers.errors import CourseError
from grpo_helpers.training import (SEED_MAX_PROMPT_LENGTH, add_lora, build_trainer, drop_long_prompts, explain_config,
                                   export_merged, first_last_mean, grpo_config, lora_state, load_lora,
                                   max_abs_diff, prefill_as_text, run_folder, save_lora, train, trainable_parameters)

PREFILL = "<reasoning>\n"
TINY = dict(max_steps=2, num_generations=2, per_device_train_batch_size=2, max_completion_length=8, save_steps=1000)


def length_reward(completions, **kwargs) -> list[float]:
    """Test-only reward with guaranteed variance inside a group (number of characters), so the loss is non-zero."""
    return [len(c if isinstance(c, str) else c[0]["content"]) / 10 for c in completions]


def lora_b_norm(model) -> float:
    return sum(float(v.abs().sum()) for k, v in lora_state(model).items() if "lora_B" in k)


# ------------------------------------------------------------------------------------------------------------ config

def test_seed_preset_has_the_seed_values(tmp_path):
    cfg = grpo_config("seed", run_name="seed", runs_dir=tmp_path)
    assert (cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2, cfg.weight_decay) == (5e-6, 0.9, 0.99, 0.1)
    assert cfg.warmup_steps == 0.1 and cfg.lr_scheduler_type.value == "cosine"
    assert cfg.num_generations == 6 and cfg.per_device_train_batch_size == 6  # one prompt x 6 completions per step
    assert (cfg.max_grad_norm, cfg.max_steps, cfg.logging_steps) == (0.1, 250, 1)
    assert (cfg.save_steps, cfg.save_total_limit) == (25, 2)  # a checkpoint every 25 steps, the last two kept
    assert cfg.max_completion_length == 1024 - SEED_MAX_PROMPT_LENGTH
    assert cfg.optim.value == "adamw_torch"  # no CUDA here: bitsandbytes' paged_adamw_8bit needs a GPU
    assert (cfg.beta, cfg.loss_type, cfg.scale_rewards) == (0.04, "grpo", "group")
    assert not hasattr(cfg, "max_prompt_length")
    assert run_folder(cfg) == tmp_path / "seed"


def test_tiny_preset_runs_on_cpu_and_overrides_apply(tmp_path):
    cfg = grpo_config("tiny", run_name="t", runs_dir=tmp_path, max_steps=7, learning_rate=1e-4)
    assert cfg.use_cpu and not cfg.bf16 and cfg.max_steps == 7 and cfg.learning_rate == 1e-4
    assert cfg.beta == 0.0 and cfg.loss_type == "dapo" and not cfg.gradient_checkpointing
    assert Path(cfg.output_dir) == tmp_path / "t" / "checkpoints"


def test_grpo_config_errors_are_helpful(tmp_path):
    with pytest.raises(CourseError, match="drop prompts"):
        grpo_config("tiny", runs_dir=tmp_path, max_prompt_length=256)
    with pytest.raises(CourseError, match="learning_rate"):
        grpo_config("tiny", runs_dir=tmp_path, learnig_rate=1e-5)
    with pytest.raises(CourseError, match="multiple of"):
        grpo_config("tiny", runs_dir=tmp_path, num_generations=3, per_device_train_batch_size=4)
    with pytest.raises(CourseError, match="Unknown GRPO preset"):
        grpo_config("huge", runs_dir=tmp_path)


def test_explain_config_shows_course_values_next_to_trl_defaults(tmp_path):
    from trl import GRPOConfig

    table = explain_config(grpo_config("seed", runs_dir=tmp_path))
    rows = {line.split()[0]: line.split()[1:3] for line in table.splitlines()[2:]}
    assert rows["loss_type"] == ["grpo", GRPOConfig.loss_type]  # TRL 1.14's default is "dapo"
    assert rows["beta"] == ["0.04", str(GRPOConfig.beta)]
    assert rows["scale_rewards"] == ["group", str(GRPOConfig.scale_rewards)]


# -------------------------------------------------------------------------------------------------------------- LoRA

def test_add_lora_counts_every_projection(tiny_random):
    from grpo_helpers.models import load_model

    model, _ = load_model("tiny-random", backend="trl-peft")  # fresh: add_lora modifies the model in place
    base_total = sum(p.numel() for p in model.parameters())
    rank = 4
    expected = 0
    for name, module in model.named_modules():
        if name.split(".")[-1] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            expected += rank * (module.in_features + module.out_features)
    lora = add_lora(model, backend="trl-peft", rank=rank)
    trainable, total = trainable_parameters(lora)
    assert trainable == expected and total == base_total + expected
    assert lora_b_norm(lora) == 0.0  # B starts at zero: the adapter does nothing before training
    with pytest.raises(CourseError, match="already has LoRA"):
        add_lora(lora, backend="trl-peft")


# -------------------------------------------------------------------------------------------------------------- data

def test_prefill_becomes_a_text_prompt_and_long_prompts_are_dropped(smollm2):
    from grpo_helpers.data import load_gsm8k

    _, tokenizer = smollm2
    ds = load_gsm8k("test", n=4, source="offline", prefill=PREFILL)
    text = prefill_as_text(ds, tokenizer)
    assert all(isinstance(p, str) and p.endswith("<|im_start|>assistant\n" + PREFILL) for p in text["prompt"])
    assert text["prefill"] == [PREFILL] * 4
    assert prefill_as_text(load_gsm8k("test", n=2, source="offline"), tokenizer)[0]["prompt"][-1]["role"] == "user"
    assert len(drop_long_prompts(ds, tokenizer, 10_000)) == 4
    with pytest.raises(CourseError, match="nothing is left to train on") as err:
        drop_long_prompts(ds, tokenizer, 20)
    assert "Raise max_prompt_length" in str(err.value)


def test_align_eos_token_matches_the_end_of_turn_token():
    from grpo_helpers.models import align_eos_token, load_model

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    align_eos_token(model, tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" == tokenizer.convert_ids_to_tokens(model.generation_config.eos_token_id)


# ------------------------------------------------------------------------------------------------ a tiny real run

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real GRPO run: SmolLM2-135M, real GSM8K train rows with the prefill, the course rewards + length_reward."""
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model
    from grpo_helpers.rewards import REWARD_FUNCS

    runs = tmp_path_factory.mktemp("runs")
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    ds = load_gsm8k("train", n=8, source="offline", prefill=PREFILL)
    cfg = grpo_config("tiny", run_name="tiny", runs_dir=runs, **TINY)
    funcs = list(REWARD_FUNCS) + [length_reward]
    trainer = build_trainer(model, tokenizer, ds, {f: 1.0 for f in funcs}, cfg, lora_rank=4, live_plot=False)
    before = lora_b_norm(trainer.model)
    output = train(trainer)
    return types.SimpleNamespace(trainer=trainer, tokenizer=tokenizer, ds=ds, cfg=cfg, funcs=funcs, runs=runs,
                                 before=before, output=output)


def test_tiny_run_changes_the_lora_weights(tiny_run):
    assert tiny_run.before == 0.0
    assert lora_b_norm(tiny_run.trainer.model) > 0.0
    assert tiny_run.trainer.state.global_step == 2


def test_tiny_run_writes_metrics_csv_and_curve(tiny_run):
    run = run_folder(tiny_run.cfg)
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["step"])) for r in rows] == [1, 2]
    expected = {"reward", "reward_std", "completions/mean_length", "entropy", "loss", "learning_rate"}
    expected |= {f"rewards/{f.__name__}/mean" for f in tiny_run.funcs}
    assert expected <= set(rows[0])
    assert all(0 < float(r["completions/mean_length"]) <= 8 for r in rows)
    assert (run / "reward_curve.png").stat().st_size > 1000
    assert tiny_run.cfg.reward_weights == [1.0] * len(tiny_run.funcs)


def test_existing_run_folder_is_never_overwritten_silently(tiny_run):
    from grpo_helpers.models import load_model

    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    trainer = build_trainer(model, tokenizer, tiny_run.ds, tiny_run.funcs, tiny_run.cfg, lora_rank=4, live_plot=False)
    with pytest.raises(CourseError, match="resume=True.*overwrite=True"):
        train(trainer)
    assert (run_folder(tiny_run.cfg) / "metrics.csv").exists()  # untouched


def test_save_and_load_lora_give_the_same_outputs(tiny_run, tmp_path):
    import torch

    from grpo_helpers.models import load_model

    trained = tiny_run.trainer.model.eval()
    tokenizer = tiny_run.tokenizer
    path = save_lora(trained, tmp_path / "lora", tokenizer, backend="trl-peft")
    assert (path / "adapter_config.json").exists() and (path / "adapter_model.safetensors").exists()
    enc = tokenizer(tiny_run.ds[0]["prompt"][1]["content"], return_tensors="pt")
    with torch.no_grad():
        want = trained(**enc).logits
    base, _ = load_model("smollm2-135m-offline", backend="trl-peft")
    with torch.no_grad():
        plain = base(**enc).logits
    reloaded = load_lora(base, path, backend="trl-peft").eval()
    with torch.no_grad():
        got = reloaded(**enc).logits
    assert float((want - plain).abs().max()) > 1e-4  # the adapter matters...
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # ...and the reloaded one is the same adapter
    with pytest.raises(CourseError, match="adapter_config.json"):
        load_lora(base, tmp_path, backend="trl-peft")


def test_export_merged_is_a_plain_16bit_model_close_to_the_adapter(tiny_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    trained = tiny_run.trainer.model.eval()
    path = export_merged(trained, tiny_run.tokenizer, tmp_path / "merged", backend="trl-peft")
    merged = AutoModelForCausalLM.from_pretrained(path)
    assert merged.dtype == torch.bfloat16 and not any("lora" in k for k in merged.state_dict())
    assert any("lora" in k for k in trained.state_dict())  # export merged a copy, the adapter is still there
    enc = tiny_run.tokenizer("Natalia sold clips to 48 of her friends.", return_tensors="pt")
    with torch.no_grad():
        want = trained(**enc).logits[0, -1]
        got = merged.float()(**enc).logits[0, -1]
    # bfloat16 keeps ~3 significant digits: compare the next-token distribution, not raw float32 logits
    assert int(want.argmax()) == int(got.argmax())
    assert float((want.softmax(-1) - got.softmax(-1)).abs().max()) < 0.02


def test_vllm_lora_request_gets_name_int_id_and_path(tmp_path, monkeypatch):
    """The vLLM path cannot run without a GPU; check the call it makes (vllm.lora.request.LoRARequest(name, id, path))."""
    calls = []

    class LoRARequest:
        def __init__(self, lora_name, lora_int_id, lora_path):
            calls.append((lora_name, lora_int_id, lora_path))

    fake = types.ModuleType("vllm.lora.request")
    fake.LoRARequest = LoRARequest
    for name in ("vllm", "vllm.lora"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", fake)
    (tmp_path / "adapter_config.json").write_text("{}")
    from grpo_helpers import training

    monkeypatch.setattr(training, "detect_backend", lambda backend=None: backend or "unsloth-vllm")
    first, second = load_lora(None, tmp_path), load_lora(None, tmp_path)
    assert isinstance(first, LoRARequest) and isinstance(second, LoRARequest)
    assert calls[0][2] == calls[1][2] == str(tmp_path.resolve())
    assert calls[0][1] != calls[1][1] and all(isinstance(c[1], int) and c[1] > 0 for c in calls)


# ------------------------------------------------------------------------------------------------------------ resume

RESUME_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_training import resume_trainer
    from transformers import TrainerCallback
    from grpo_helpers.training import train

    class HardKill(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 2:  # checkpoint-2 is on disk; die like a crashed Colab runtime
                os.kill(os.getpid(), signal.SIGKILL)

    train(resume_trainer({runs!r}, "killed", callbacks=[HardKill()]))
''')


def resume_trainer(runs, name, callbacks=()):
    """4 steps on tiny-random with a checkpoint every 2 steps (shared by the test and its killed subprocess)."""
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.models import load_model

    model, tokenizer = load_model("tiny-random", backend="trl-peft")
    ds = load_gsm8k("train", n=8, source="offline")
    cfg = grpo_config("tiny", run_name=name, runs_dir=runs, **{**TINY, "max_steps": 4, "save_steps": 2})
    return build_trainer(model, tokenizer, ds, [length_reward], cfg, lora_rank=4, live_plot=False,
                         callbacks=list(callbacks))


def test_resume_after_a_hard_kill_matches_an_uninterrupted_run(tmp_path):
    """Kill -9 a run after its step-2 checkpoint, resume it, compare with an uninterrupted run of the same seed.

    Bound: the checkpoint holds the LoRA weights, AdamW moments, scheduler, the sampler position and the RNG states
    (``rng_state.pth``: python, numpy, torch), so steps 3-4 see the same prompts and draw the same samples. The
    arithmetic is the same float32 CPU arithmetic, so the weights agree to float32 round-off; we allow 1e-6
    (the adapter weights are ~1e-2, so this is a relative error below 1e-4).
    """
    full = resume_trainer(tmp_path, "full")
    train(full)
    killed = subprocess.run([sys.executable, "-c", RESUME_SCRIPT.format(tests=str(Path(__file__).parent),
                                                                        runs=str(tmp_path))],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (tmp_path / "killed" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "killed" / "checkpoints" / "checkpoint-4").exists()
    with pytest.raises(CourseError, match="resume=True"):
        train(resume_trainer(tmp_path, "killed"))
    resumed = resume_trainer(tmp_path, "killed")
    train(resumed, resume=True)
    assert resumed.state.global_step == 4
    diff = max_abs_diff(lora_state(full.model), lora_state(resumed.model))
    assert lora_b_norm(full.model) > 0
    print(f"max |resumed - uninterrupted| LoRA weight difference: {diff:.3e}")
    assert diff <= 1e-6, f"resumed LoRA differs from the uninterrupted one by {diff:.2e}"
    with open(tmp_path / "killed" / "metrics.csv") as f:
        assert [int(float(r["step"])) for r in csv.DictReader(f)] == [1, 2, 3, 4]


def test_first_last_mean():
    assert first_last_mean([1.0] * 10 + [3.0] * 10) == (1.0, 3.0)
    assert first_last_mean([0.0, 2.0], k=10) == (0.0, 2.0)
