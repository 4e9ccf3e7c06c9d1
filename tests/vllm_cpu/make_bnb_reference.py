"""Writes ``bnb_4bit_reference.json``: Hugging Face's own bitsandbytes 4-bit run on the CPU, the yardstick that
``test_vllm_bnb_4bit.py`` holds vLLM's 4-bit engine (vllm-bnb-plugin) against.

    flock /tmp/cpu.lock .venv-vllm/bin/python tests/vllm_cpu/make_bnb_reference.py     # ~1 minute on 2 cores

Run it in ``.venv-vllm`` (it has bitsandbytes; the main ``.venv`` does not) after a pin bump, a new recorded demo
adapter or a new prompt format: the test names which of these no longer match and asks for this command.

What it records, greedy, one prompt at a time (no padding), for the first GSM8K test questions with the tiny-mode
prefill: the full-precision model (float32, the course's trl-peft load), and for bfloat16 and float16 the model loaded
with ``transformers.BitsAndBytesConfig`` as Unsloth builds it for ``load_in_4bit`` (nf4, double quantization, compute
dtype = the model dtype; ``unsloth/models/llama.py``), alone and with the recorded demo run's adapter through the
course's ``training.load_lora``. Token ids are kept: the test feeds them back to vLLM (teacher forcing), which does
not drift after one near-tie the way free-running greedy text does.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "bnb_4bit_reference.json"
N_PROMPTS = 3
MAX_NEW_TOKENS = 40
PREFILL = "<reasoning>\n"
DTYPES = ("bfloat16", "float16")
VERSIONED = ("torch", "transformers", "peft", "bitsandbytes")  # what decides the reference's numbers


def adapter_path() -> Path:
    """The adapter the course trained: the recorded ``make demo`` run (trl-peft GRPO on SmolLM2-135M)."""
    from grpo_helpers.demo import recorded_run

    return recorded_run().lora_path


def adapter_sha256() -> str:
    return hashlib.sha256((adapter_path() / "adapter_model.safetensors").read_bytes()).hexdigest()


def installed_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in VERSIONED}


def course_prompts(tokenizer) -> list[str]:
    """The chat-template texts the course sends to either engine (``generation.render_prompt``)."""
    from grpo_helpers.data import load_gsm8k
    from grpo_helpers.generation import as_messages, render_prompt

    rows = load_gsm8k("test", n=N_PROMPTS, source="offline", prefill=PREFILL)["prompt"]
    return [render_prompt(tokenizer, as_messages(p))[0] for p in rows]


def greedy_ids(model, tokenizer, texts: list[str]) -> list[list[int]]:
    import torch

    out = []
    for text in texts:
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        out.append(ids[0, enc["input_ids"].shape[1]:].tolist())
    return out


def load_bnb_4bit(dtype_name: str):
    """SmolLM2-135M in bitsandbytes 4-bit on the CPU, configured as Unsloth configures ``load_in_4bit``."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from grpo_helpers.models import smollm2_local_dir

    dtype = getattr(torch, dtype_name)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(str(smollm2_local_dir()), dtype=dtype, device_map="cpu",
                                                quantization_config=config).eval()


def cpu_model() -> str:
    """The CPU's name (bfloat16/float16 kernels differ between CPU generations; the reference says where it ran)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return names[0] if names else platform.processor() or "unknown CPU"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from grpo_helpers import training
    from grpo_helpers.models import load_model

    full, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")  # float32 on the CPU
    texts = course_prompts(tokenizer)
    runs: dict[str, list[list[int]]] = {"full precision": greedy_ids(full.eval(), tokenizer, texts)}
    for dtype in DTYPES:
        model = load_bnb_4bit(dtype)
        model.generation_config.eos_token_id = full.generation_config.eos_token_id
        runs[f"hf bnb 4-bit {dtype}"] = greedy_ids(model, tokenizer, texts)
        model = training.load_lora(model, adapter_path(), backend="trl-peft")
        runs[f"hf bnb 4-bit {dtype} + adapter"] = greedy_ids(model, tokenizer, texts)
        print(f"{dtype}: done", file=sys.stderr)
    reference = {
        "command": "flock /tmp/cpu.lock .venv-vllm/bin/python tests/vllm_cpu/make_bnb_reference.py",
        "versions": installed_versions(),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores",
        "adapter_sha256": adapter_sha256(),
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompts": texts,
        "token_ids": runs,
        "text": {name: [tokenizer.decode(ids, skip_special_tokens=True) for ids in out] for name, out in runs.items()},
    }
    REFERENCE.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {REFERENCE}", file=sys.stderr)


if __name__ == "__main__":
    main()
