"""How long a GRPO step takes on a free T4, for each recipe and stack profile: measured where it could be, estimated
with the formula written out where it could not, and always labelled which.

Sources:

* ``data_files/t4_time.json``: steps measured on the lent GPU (an H100) by ``benchmarks/t4_time.py`` in a T4's
  configuration (float16 weights, fp16 training, the seed's GRPO settings, Unsloth without vLLM), each step split by
  TRL's own timer into generation and the rest. Random weights never stop early, so every completion runs to
  ``max_completion_length``: the worst case.
* :data:`ANCHORS`: GRPO runs that Unsloth's own notebooks executed on free Colab T4s (their stored outputs).

The T4 estimate of a measured step (:func:`t4_estimate`):

* generation: ``L x max(t_token, bytes_per_token / (T4_BANDWIDTH x BANDWIDTH_EFFICIENCY))``: per new token a T4
  needs at least what the lent GPU needed (Python and kernel-launch overhead do not shrink on a slower card) and at
  least the time to move the bytes a decoding step moves. bitsandbytes dequantizes every 4-bit weight to float16 for
  a batch of sequences, so a 4-bit weight costs 0.5 + 2 + 2 bytes (read packed, write and read the copy), a 16-bit
  weight 2 bytes;
* the rest (reference pass, loss, backward, optimizer): times the ratio of the cards' float16 tensor-core peaks.

Example:
    >>> est = t4_estimate("llama-3.1-8b-instruct", four_bit=True, generations=6, completion=768)
    >>> est["measured_on"].startswith("NVIDIA H100"), est["t4_step_s"] > est["measured_step_s"]
    (True, True)
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from grpo_helpers.errors import CourseError

MEASURED = Path(__file__).parent / "data_files" / "t4_time.json"
T4_BANDWIDTH = 320e9  # bytes/s, NVIDIA T4 datasheet (GDDR6)
T4_FP16_TFLOPS = 65.0  # NVIDIA T4 datasheet, FP16 tensor core
BANDWIDTH_EFFICIENCY = 0.7  # share of the datasheet bandwidth a large memory-bound kernel reaches
CARDS = {"H100": dict(bandwidth=3.35e12, fp16_tflops=989.0), "H200": dict(bandwidth=4.8e12, fp16_tflops=989.0)}
# Colab's FAQ (research.google.com/colaboratory/faq.html): free notebooks run for at most 12 hours, not guaranteed,
# and an idle notebook is disconnected much sooner. Kaggle: 12 hours per session.
FREE_SESSION_H = 12.0
# Run on free Colab T4s by Unsloth's own notebooks, read from their stored outputs (github.com/unslothai/notebooks,
# commit bdda2efc): the progress bar's elapsed time after `steps` steps. Older stacks (Unsloth 2025.3, vLLM 0.7-0.8).
ANCHORS = [
    dict(notebook="nb/Llama3.1_(8B)-GRPO.ipynb", model="Llama-3.1-8B-Instruct, 4-bit", vllm=True, generations=6,
         completion=768, steps=250, wall="3:47:51"),
    dict(notebook="nb/Qwen2.5_(3B)-GRPO.ipynb", model="Qwen2.5-3B-Instruct, 4-bit", vllm=True, generations=8,
         completion=200, steps=250, wall="1:40:29"),
    dict(notebook="nb/Gemma3_(1B)-GRPO.ipynb", model="Gemma-3-1B-it, 16-bit", vllm=False, generations=4,
         completion=768, steps=14, wall="13:12"),
]


def wall_seconds(wall: str) -> int:
    """``"3:47:51"`` -> 13671.

    Example:
        >>> wall_seconds("3:47:51"), wall_seconds("13:12")
        (13671, 792)
    """
    parts = [int(p) for p in wall.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def measured() -> dict[str, Any]:
    """The lent GPU's measurements (``benchmarks/t4_time.py --measure``)."""
    return json.loads(MEASURED.read_text())


def _card(device: str) -> dict:
    return next((v for k, v in CARDS.items() if k in device), CARDS["H100"])


def bytes_per_token(params: float, four_bit: bool) -> float:
    """Bytes one decoding step moves per weight: 4-bit 0.5 + 2 + 2 (dequantized to float16), 16-bit 2."""
    return params * ((0.5 + 2 + 2) if four_bit else 2)


def t4_estimate(preset: str, *, four_bit: bool, generations: int, completion: int) -> dict[str, Any]:
    """The measured step of this configuration and its T4 estimate, in seconds (see the module docstring).

    A configuration the lent GPU did not run is a :class:`CourseError`: the course does not extrapolate.
    """
    from grpo_helpers.models import PRESETS

    data = measured()
    row = next((r for r in data["rows"] if r.get("ok") and r["preset"] == preset and r["four_bit"] == four_bit
                and r["generations"] == generations and r["completion"] == completion), None)
    if row is None:
        runs = ", ".join(f"{r['preset']} {'4-bit' if r['four_bit'] else '16-bit'} {r['generations']}x{r['completion']}"
                         for r in data["rows"] if r.get("ok"))
        raise CourseError(f"No step of {preset} ({'4-bit' if four_bit else '16-bit'}, {generations} x {completion} "
                          "tokens) was measured.", fix=f"Measured: {runs}. Add the row to benchmarks/t4_time.py and "
                                                       "run it on a GPU.")
    card = _card(data["device"])
    steps = row["steps_s"][1:] or row["steps_s"]  # the first step compiles
    gens = row["generate_s"][1:] or row["generate_s"]
    step, gen = statistics.median(steps), statistics.median(gens)
    rest = max(step - gen, 0.0)
    token = max(gen / completion,
                bytes_per_token(PRESETS[preset].params_b * 1e9, four_bit) / (T4_BANDWIDTH * BANDWIDTH_EFFICIENCY))
    t4_gen, t4_rest = completion * token, rest * card["fp16_tflops"] / T4_FP16_TFLOPS
    return dict(measured_on=data["device"], date=data["date"], measured_step_s=step, measured_generate_s=gen,
                measured_rest_s=rest, t4_generate_s=t4_gen, t4_rest_s=t4_rest, t4_step_s=t4_gen + t4_rest)


def recipe_times(cfg_or_recipe) -> dict[str, Any]:
    """Expected T4 time per step and for the run of a recipe, per profile, each labelled measured or estimate.

    Example:
        >>> from grpo_helpers.recipes import SEED
        >>> times = recipe_times(SEED)
        >>> times["unsloth"]["kind"], times["unsloth-vllm"]["kind"]
        ('estimate', 'measured by Unsloth on a T4, older stack')
    """
    get = (lambda k: cfg_or_recipe[k]) if isinstance(cfg_or_recipe, dict) else (lambda k: getattr(cfg_or_recipe, k))
    preset, steps = get("model_preset"), get("max_steps")
    shape = dict(four_bit=get("load_in_4bit"), generations=get("num_generations"),
                 completion=get("max_completion_length"))
    est = t4_estimate(preset, **shape)
    out = {"unsloth": dict(kind="estimate", step_s=est["t4_step_s"], run_h=est["t4_step_s"] * steps / 3600,
                           how=f"measured {est['measured_step_s']:.1f} s/step on {est['measured_on']} "
                               f"({est['measured_generate_s']:.1f} s generating), scaled to a T4")}
    anchor = next((a for a in ANCHORS if a["vllm"] and a["generations"] == shape["generations"]
                   and a["completion"] == shape["completion"] and preset.startswith("llama-3.1-8b")), None)
    if anchor:
        step = wall_seconds(anchor["wall"]) / anchor["steps"]
        out["unsloth-vllm"] = dict(kind="measured by Unsloth on a T4, older stack", step_s=step,
                                   run_h=step * steps / 3600, how=f"{anchor['notebook']}: {anchor['steps']} steps "
                                                                 f"in {anchor['wall']}")
    else:
        out["unsloth-vllm"] = dict(kind="not measured", step_s=None, run_h=None,
                                   how="vLLM cannot run on the course's test GPU and no T4 run of this recipe exists")
    return out


def times_table(recipes: dict[str, Any]) -> str:
    """A markdown table of :func:`recipe_times` for several recipes (notebooks 06 and 08 print it before training).

    Example:
        >>> from grpo_helpers.recipes import RECIPES
        >>> print(times_table({"seed": RECIPES["seed"]}).splitlines()[0])
        | recipe | model | G x L, steps | profile | s/step on a T4 | whole run | how it was obtained |
    """
    lines = ["| recipe | model | G x L, steps | profile | s/step on a T4 | whole run | how it was obtained |",
             "|---|---|---|---|---:|---:|---|"]
    for name, recipe in recipes.items():
        get = (lambda k: recipe[k]) if isinstance(recipe, dict) else (lambda k: getattr(recipe, k))
        shape = f"{get('num_generations')} x {get('max_completion_length')}, {get('max_steps')}"
        for profile, t in recipe_times(recipe).items():
            step = f"{t['step_s']:.0f}" if t["step_s"] else "-"
            run = f"{t['run_h']:.1f} h" if t["run_h"] else "-"
            lines.append(f"| {name} | {get('model_preset')} {'4-bit' if get('load_in_4bit') else '16-bit'} | {shape} "
                         f"| {profile} | {step} | {run} | {t['kind']}: {t['how']} |")
    return "\n".join(lines)
