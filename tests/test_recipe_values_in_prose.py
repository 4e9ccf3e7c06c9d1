"""Nothing typed twice (issue 19): a recipe value stated in prose or in a comment is the recipe's value.

``grpo_helpers.recipes`` is the one place the values of the two recipes are written (``SEED``: the seed's 8B run on a
GPU; ``TINY``: the CPU run). Notebooks read them from ``cfg``; where prose or a comment states one anyway ("the tiny
LoRA rank is 16", ``r=cfg.lora_rank,  # 16 in tiny mode``), this test reads it and compares it with the recipe:

* **comments on a cfg line**: ``x=cfg.<key>,  # <value> ...`` must give ``SEED[key]``, or ``TINY[key]`` when the
  comment says "tiny";
* **prose** (markdown cells, README, docs, and comments): a number written next to a recipe setting's name (rank,
  alpha, learning rate, generations, steps, completion length, β, temperature, checkpoint interval) in a sentence that
  says which recipe it means ("tiny", "seed", "full recipe", "8B", "T4") must be that recipe's value, or the value the
  notebook's own code sets (``course_config(max_steps=2)``), or the recorded tiny run's (``demo.DEMO``).

Also: a model preset that a recipe uses agrees with the recipe (``models.PRESETS`` repeats LoRA rank, sequence length,
4-bit and vLLM share for the memory estimate).
"""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from grpo_helpers.models import PRESETS
from grpo_helpers.recipes import RECIPES, SEED, TINY

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"(?<![\w.,-])(-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)(?!\.?\w|,\d)"
# A recipe key and the words prose uses for it; "priming steps" are the demo's SFT steps, not GRPO's max_steps.
KEY_WORDS = {
    "save_steps": r"every\s+(?=\d+\s+steps)|save_steps`?",
    "prime_steps": r"(?:SFT |supervised )?priming steps",
    "max_steps": r"(?<!priming )(?:GRPO |training )?\bsteps\b|max_steps",
    "lora_rank": r"LoRA rank|\brank\b|`r`|\br\s*=",
    "lora_alpha": r"lora_alpha|\balpha\b|α",
    "learning_rate": r"learning[ _]rate|\blr\b",
    "num_generations": r"generations|completions per (?:prompt|question)|group size|num_generations",
    "max_completion_length": r"-token completions|completion length|max_completion_length|completions? of up to|tokens per completion",
    "beta": r"β|\bbeta\b",
    "temperature": r"temperature",
}
KEYS = {key: re.compile(words, re.IGNORECASE) for key, words in KEY_WORDS.items()}
MODES = {"tiny": re.compile(r"\btiny\b(?![-\s]+random)|SmolLM2|135M|\bon a (?:laptop )?CPU\b", re.IGNORECASE),
         "seed": re.compile(r"\bseed\b(?!\s*=)|full recipe|\b8B\b|\bT4\b|Llama|\bon a (?:CUDA )?GPU\b", re.IGNORECASE)}
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z*`(\[])|\n\s*[-*] |\n\s*\n|;\s|\|")
# Words that may stand between a setting's name and its number ("the rank is small: 16", "learning rate of 5e-6").
CONNECTORS = {"of", "is", "to", "at", "uses", "use", "small", "was", "be", "set", "the", "a", "its", "are", "in", "with",
              "and", "recipe", "mode", "s"}
# True statements about runs that are not a recipe, with the code that holds their value.
def _pool_sampling(name: str):
    from grpo_helpers.challenge import POOL_FILE

    return json.loads(POOL_FILE.read_text())["meta"]["sampling"][name]


OTHER_RUNS = {
    "at most 5 steps": lambda: __import__("grpo_helpers.course", fromlist=["x"]).FALLBACK_STEPS,  # ensure_lora's stand-in
    "(temperature 0.8, 160 tokens": lambda: _pool_sampling("temperature"),  # docs/challenge.md: how the pool was sampled
}
DEMO_KEYS = {"max_steps": "steps", "num_generations": "generations", "max_completion_length": "completion_length",
             "learning_rate": "learning_rate", "lora_rank": "lora_rank", "temperature": "temperature",
             "prime_steps": "prime_steps"}
OVERRIDE_NAMES = {"max_steps": "max_steps", "num_generations": "num_generations", "lora_rank": "rank",
                  "lora_alpha": "alpha", "learning_rate": "learning_rate", "beta": "beta",
                  "max_completion_length": "max_completion_length", "temperature": "temperature",
                  "save_steps": "save_steps"}
NEAR = 28  # characters between a setting's name and its number


def demo_values() -> dict:
    from grpo_helpers.demo import DEMO

    return DEMO


def learner_texts() -> list[tuple[str, str, str, str]]:
    """(file, place, kind, text) for every markdown cell, code cell, README and docs page."""
    out = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted((ROOT / "notebooks/solutions").glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells, start=1):
            out.append((path.relative_to(ROOT).as_posix(), f"cell {i}", cell.cell_type, cell.source))
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out.append((path.relative_to(ROOT).as_posix(), "", "markdown", path.read_text()))
    return out


def as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))


def code_overrides(texts) -> dict[str, dict[str, set]]:
    """file -> key -> literal values its code passes as ``key=literal`` (``course_config(max_steps=2)``)."""
    found: dict[str, dict[str, set]] = {}
    for file, _, kind, text in texts:
        if kind != "code":
            continue
        for key, name in OVERRIDE_NAMES.items():
            for m in re.finditer(rf"\b{name}\s*=\s*({NUMBER})", text):
                value = as_number(m.group(1))
                if value is not None:
                    found.setdefault(file, {}).setdefault(key, set()).add(value)
    return found


def nearest_mode(sentence: str, at: int) -> str | None:
    """The recipe the sentence names nearest to position ``at``; inside parentheses that name none, the one named
    before them ("the seed recipe on a GPU (lr 5e-6, ..., r=32), the tiny recipe on a CPU": 32 is the seed's)."""
    opened = sentence.rfind("(", 0, at)
    closed = sentence.find(")", at)
    if opened > sentence.rfind(")", 0, at) and closed > 0 and not any(p.search(sentence[opened:closed]) for p in MODES.values()):
        sentence, at = sentence[:opened], opened
    best = None
    for mode, pattern in MODES.items():
        for m in pattern.finditer(sentence):
            distance = min(abs(m.start() - at), abs(m.end() - at))
            if best is None or distance < best[0]:
                best = (distance, mode)
    return None if best is None else best[1]


def prose_claims(text: str):
    """(key, number, mode, sentence) for each number written next to a recipe setting's name in a sentence that
    names a recipe. Fenced code blocks (shell commands with their flags) are not prose."""
    text = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    for sentence in SENTENCE.split(text):
        for m in re.finditer(NUMBER, sentence):
            number = as_number(m.group(1))
            if number is None:
                continue
            key = None
            for name, pattern in KEYS.items():
                for k in pattern.finditer(sentence):
                    before = k.end() <= m.start()
                    gap = sentence[k.end():m.start()] if before else sentence[m.end():k.start()]
                    words = re.findall(r"[A-Za-z]+", re.sub(r"`[^`]*`", " ", gap))
                    fits = (all(w.lower() in CONNECTORS for w in words) if before else not gap.strip(" `*"))
                    if len(gap) <= NEAR and fits and not re.search(r"\d", gap) and "\n" not in gap:
                        key = name
                        break
                if key:
                    break
            mode = nearest_mode(sentence, m.start()) if key else None
            if key and mode:
                yield key, number, mode, " ".join(sentence.split())


def allowed(key: str, mode: str, file: str, overrides) -> list:
    recipe = TINY if mode == "tiny" else SEED
    values = [recipe[key]] if key in recipe else []
    values += sorted(overrides.get(file, {}).get(key, ()))
    if mode == "tiny" and key in DEMO_KEYS:
        values.append(demo_values()[DEMO_KEYS[key]])
    if key == "max_completion_length":  # the seed's is max_seq_length - max_prompt_length
        values.append(SEED["max_seq_length"] - SEED["max_prompt_length"] if mode == "seed" else TINY[key])
    return values


def comment_claims(text: str):
    """(key, literal, mode, line) for ``... cfg.<key> ...  # <literal> ...`` lines."""
    for line in text.splitlines():
        code, sep, comment = line.partition("  #")
        keys = re.findall(r"\bcfg\.(\w+)", code)
        if not sep or len(keys) != 1 or keys[0] not in SEED:
            continue
        m = re.match(r"\s*(True|False|None|\"[^\"]*\"|'[^']*'|-?\d[\d_]*(?:\.\d+)?(?:e-?\d+)?)\b", comment)
        if m:
            mode = "tiny" if re.search(r"\btiny\b", comment, re.IGNORECASE) else "seed"
            yield keys[0], ast.literal_eval(m.group(1)), mode, line.strip()


def problems() -> list[str]:
    texts = learner_texts()
    overrides = code_overrides(texts)
    found = []
    for file, place, kind, text in texts:
        for key, value, mode, line in comment_claims(text) if kind == "code" else []:
            want = (TINY if mode == "tiny" else SEED)[key]
            if not same(value, want):
                found.append(f"{file} {place}: comment says {key}={value!r} ({mode}), recipes says {want!r}: {line}")
        prose = [text] if kind == "markdown" else [ln.partition("  #")[2] for ln in text.splitlines()
                                                   if "  #" in ln and "cfg." not in ln.partition("  #")[0]]
        for key, number, mode, sentence in (claim for part in prose for claim in prose_claims(part)):
            if any(phrase in sentence and same(number, value()) for phrase, value in OTHER_RUNS.items()):
                continue
            values = allowed(key, mode, file, overrides)
            if not any(same(number, v) for v in values if not isinstance(v, (str, bool)) and v is not None):
                found.append(f"{file} {place}: {key} {number:g} for the {mode} recipe, recipes says "
                             f"{values[0] if values else 'nothing'}: {sentence[:160]!r}")
    return found


def test_the_reader_finds_stated_values_and_their_recipe():
    claims = list(prose_claims("- **r**, the rank (`r`), is small: 16 in tiny mode, 32 in the seed. "
                               "The seed recipe uses β = 0.04; the tiny recipe uses β = 0. Its 250 steps take hours "
                               "on a T4, with a checkpoint every 25 steps. Rank 4 in an exercise is no claim."))
    assert [(k, n, m) for k, n, m, _ in claims] == [
        ("lora_rank", 16.0, "tiny"), ("beta", 0.04, "seed"), ("beta", 0.0, "tiny"), ("max_steps", 250.0, "seed"),
        ("save_steps", 25.0, "seed")]
    assert list(comment_claims("    r=cfg.lora_rank,  # 16 in tiny mode\n    max_lora_rank=cfg.lora_rank,  # 32\n")) == [
        ("lora_rank", 16, "tiny", "r=cfg.lora_rank,  # 16 in tiny mode"), ("lora_rank", 32, "seed", "max_lora_rank=cfg.lora_rank,  # 32")]


def test_recipe_values_in_prose_and_comments_are_the_recipes():
    found = problems()
    assert not found, "recipe values typed into prose that disagree with grpo_helpers.recipes:\n" + "\n".join(found)


@pytest.mark.parametrize("recipe", ["seed", "tiny"])  # their presets exist for them; t4-session reuses a general one
def test_a_recipes_model_preset_agrees_with_the_recipe(recipe):
    values = RECIPES[recipe]
    preset = PRESETS[values["model_preset"]]
    assert (preset.lora_rank, preset.max_seq_length, preset.load_in_4bit, preset.gpu_memory_utilization) == (
        values["lora_rank"], values["max_seq_length"], values["load_in_4bit"], values["gpu_memory_utilization"])
