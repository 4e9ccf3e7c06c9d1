"""The SFT priming that notebooks 06 and 08 write out is ``grpo_helpers.demo.prime`` (issue 19: no black box).

The notebooks' two cells (``def sft_batch`` and the loop after it) run on the 2-layer random model with LoRA, and
``demo.prime`` runs on an identical copy with the same worked answers and settings: the losses of every step and
the trained LoRA weights must agree. Two steps on a tiny model: about a second.
"""

import copy
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["06_training.ipynb", "08_one_runtime_recipe.ipynb"]


def priming_cells(name: str) -> list[str]:
    """The source of the cell that defines ``sft_batch`` and of the loop cell under it."""
    cells = [c for c in nbformat.read(ROOT / "notebooks" / name, as_version=4).cells if c.cell_type == "code"]
    first = next(i for i, c in enumerate(cells) if "def sft_batch" in c.source)
    loop = cells[first + 1].source
    assert "optimizer.step()" in loop and "DEMO[\"prime_steps\"]" in loop, "the loop cell follows sft_batch's"
    return [cells[first].source, loop]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_written_out_priming_is_demo_prime(name, tiny_random):
    import torch
    from peft import LoraConfig, get_peft_model

    from grpo_helpers.demo import prime, priming_rows
    from grpo_helpers.models import finish_tokenizer
    from grpo_helpers.recipes import course_config

    base, tokenizer = tiny_random
    tokenizer = finish_tokenizer(tokenizer, base)
    torch.manual_seed(0)
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                           lora_dropout=0.0, task_type="CAUSAL_LM"))
    with torch.no_grad():  # B starts at 0; give it values so that both runs start from a model that is not the base
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    twin = copy.deepcopy(model)
    cfg = course_config(tiny=True)
    worked = priming_rows(5, cfg.system_prompt, seed=cfg.seed)
    settings = {"prime_steps": 2, "prime_batch": 3, "prime_lr": 1e-3}

    from grpo_helpers.generation import render_prompt

    namespace = {"torch": torch, "tokenizer": tokenizer, "model": model, "cfg": cfg, "worked": worked,
                 "DEMO": settings, "render_prompt": render_prompt, "print": lambda *a, **k: None}
    for source in priming_cells(name):
        exec(compile(source, name, "exec"), namespace)

    expected = prime(twin, tokenizer, worked, steps=settings["prime_steps"], lr=settings["prime_lr"],
                     batch_size=settings["prime_batch"], seed=cfg.seed)
    assert namespace["losses"] == pytest.approx(expected, rel=1e-6)
    for (n, a), (_, b) in zip(model.named_parameters(), twin.named_parameters()):
        if "lora_" in n:
            assert torch.allclose(a, b, atol=1e-7), n
