"""The GRPO doctor: read a run and say what is wrong, why, and the one setting to change.

:func:`diagnose` reads a run in any of the forms a learner has at hand: a ``GRPOTrainer`` (during or after
training), a run folder (``runs/<name>/``: ``metrics.csv``, ``settings.json`` or ``run_config.json``, sample
completions, the saved ``lora/``), a ``metrics.csv``, TRL's ``log_history`` (a list of dicts), a checkpoint's
``trainer_state.json``, or the exception a run died with; plus the ``GRPOConfig`` and tokenizer where it needs them.
It returns a :class:`Diagnosis`: the findings, each with a severity, the evidence (numbers and steps), the cause in
one sentence, the fix as a concrete setting and the tracker threads where learners met it; or "healthy" with the
evidence when nothing is wrong. From a shell: ``python -m grpo_helpers.doctor runs/<name>`` prints the same.

What it checks (the questions learners bring to the GRPO trackers), by finding code:

=========================  ==================================================================================
code                       what the run shows
=========================  ==================================================================================
``batch-not-divisible``    the generation batch (``per_device_train_batch_size`` x GPUs x accumulation) is not
                           a multiple of ``num_generations`` (TRL refuses the config)
``template-opens-tag``     the chat template (or the prefill) already writes ``<think>``, so a reward that
                           wants the tag from the model scores 0
``groups-tie``             ``frac_reward_zero_std`` near 1: every completion of a group scores alike, advantages
                           are 0, nothing is learned
``reward-constant``        one reward function never varied (std 0 at every step): it adds nothing
``loss-near-zero``         the loss sits at 0 or goes negative (normal in GRPO; the doctor says why)
``truncated``              ``completions/clipped_ratio`` > 0.5: completions are cut at ``max_completion_length``
``nan``                    NaN or inf in the loss, KL, gradient norm or rewards (or the sampler died on them)
``collapse-repeated``      completions are one token repeated (``!!!!``)
``entropy-collapse``       the policy's entropy fell to almost 0
``length-collapse``        completions shrank to a few tokens
``length-runaway``         completions grow to the cap (with ``loss_type="grpo"``: the length bias Dr. GRPO removes)
``tag-spam``               completions repeat a tag (a reward that counts tags pays for copies)
``template-copy``          completions copy the system prompt's template or worked example
``lenient-reward-hacked``  a format reward gives full marks to completions with nothing inside the tags
``format-not-content``     format rewards rise while correctness stays at 0 at every step
``like-base``              the saved adapter is all zeros, or the evaluated model answers exactly like the base
``kl-high``                the KL to the reference model grew large
``reward-flat``            the reward did not rise over 10 or more steps, with no other cause found
``outside-band``           the run's reward is below every recorded seed of the same recipe
=========================  ==================================================================================

Example:
    >>> rows = [{"step": s, "reward": 0.0, "reward_std": 0.0, "frac_reward_zero_std": 1.0, "loss": 0.0,
    ...          "grad_norm": 0.0, "completions/clipped_ratio": 1.0, "completions/max_length": 64.0}
    ...         for s in (1, 2, 3)]
    >>> d = diagnose(rows, config={"max_completion_length": 64, "num_generations": 4})
    >>> d.codes()
    ['truncated', 'groups-tie', 'loss-near-zero']
    >>> print(d.find("truncated").fix)
    max_completion_length=128 (or ask for shorter answers in the system prompt)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import re
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from grpo_helpers.plotting import reward_names  # no matplotlib at import: plotting loads it inside its functions

SEVERITIES = ("error", "warning", "info")
LIVE_STREAK = 5  # steps in a row a live warning waits for (e.g. 5 steps of clipped_ratio > 0.5)
CLIPPED_LIMIT = 0.5  # completions/clipped_ratio above this: more than half of the completions were cut off
TIE_LIMIT = 0.999  # frac_reward_zero_std at or above this: every group of the step tied
SAMPLES_FILE = "completions.jsonl"  # what the live callback writes: the completions of every step, with rewards
RUN_CONFIG_FILE = "run_config.json"  # what the live callback writes at the start: config, template, prefill
MAX_SAMPLE_CHARS = 2000  # completions are stored cut to this many characters
# Rewards that judge the format (by name): the ones a completion can earn without answering anything.
FORMAT_REWARD = re.compile(r"format|xml|tag|think|count|struct", re.I)
CORRECTNESS_REWARD = re.compile(r"correct|accura|exact|math_verify", re.I)

GITHUB = "https://github.com/"
LINKS: dict[str, tuple[str, ...]] = {
    "batch-not-divisible": ("huggingface/trl/issues/2858", "huggingface/trl/issues/3061",
                            "huggingface/open-r1/issues/249"),
    "template-opens-tag": ("huggingface/trl/issues/6966", "huggingface/open-r1/pull/349"),
    "groups-tie": ("huggingface/trl/issues/3857", "huggingface/open-r1/issues/235"),
    "reward-constant": ("huggingface/trl/issues/3857",),
    "loss-near-zero": ("huggingface/trl/issues/3452", "huggingface/trl/issues/2703", "huggingface/open-r1/issues/704"),
    "truncated": ("huggingface/trl/issues/5697",),
    "nan": ("huggingface/open-r1/issues/704", "volcengine/verl/issues/721"),
    "collapse-repeated": ("huggingface/open-r1/issues/704", "volcengine/verl/issues/721"),
    "entropy-collapse": ("huggingface/open-r1/issues/704",),
    "length-collapse": ("https://arxiv.org/abs/2503.20783",),
    "length-runaway": ("https://arxiv.org/abs/2503.20783",),
    "tag-spam": ("huggingface/open-r1/issues/359",),
    "template-copy": ("grpo_helpers/data.py (TINY_SYSTEM_PROMPT: the course's own finding)",),
    "lenient-reward-hacked": ("huggingface/open-r1/issues/359", "grpo_helpers/rewards.py (MIN_REASONING_CHARS)"),
    "format-not-content": ("grpo_helpers/recorded_demo/report.md (a 135M model learns the format, not the math)",),
    "like-base": ("unslothai/unsloth/issues/2009", "unslothai/unsloth/issues/1929"),
    "kl-high": ("huggingface/open-r1/issues/704",),
    "reward-flat": ("huggingface/trl/issues/3857",),
    "outside-band": ("benchmarks/RESULTS.md (the seeds' band)",),
}


def _links(code: str) -> tuple[str, ...]:
    return tuple(x if x.startswith(("http", "grpo_helpers/", "benchmarks/")) else GITHUB + x for x in LINKS[code])


# ------------------------------------------------------------------------------------------------------- findings

@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing the doctor found: how bad, what shows it, why, the setting that fixes it, where others met it."""

    code: str
    severity: str  # "error" (the run cannot learn or is broken), "warning" (it learns badly), "info" (worth knowing)
    title: str
    evidence: str
    cause: str
    fix: str
    links: tuple[str, ...] = ()
    steps: tuple[int, ...] = ()  # the steps that show it

    def __str__(self) -> str:
        lines = [f"{self.severity.upper():7} {self.code}: {self.title}", f"  evidence: {self.evidence}",
                 f"  cause:    {self.cause}", f"  fix:      {self.fix}"]
        if self.links:
            lines.append(f"  see:      {', '.join(self.links)}")
        return "\n".join(lines)


@dataclasses.dataclass
class Diagnosis:
    """The doctor's answer: findings (errors first) and, when none is an error or warning, the evidence of health."""

    source: str
    steps: int
    findings: list[Finding]
    evidence: list[str]  # the numbers the doctor looked at, stated whether or not something is wrong

    @property
    def healthy(self) -> bool:
        """No error and no warning (info notes may remain)."""
        return not any(f.severity in ("error", "warning") for f in self.findings)

    def codes(self, severity: str | None = None) -> list[str]:
        """The finding codes, in order (only those of ``severity`` when given)."""
        return [f.code for f in self.findings if severity is None or f.severity == severity]

    def find(self, code: str) -> Finding | None:
        """The finding with this code, or None."""
        return next((f for f in self.findings if f.code == code), None)

    def __str__(self) -> str:
        counts = Counter(f.severity for f in self.findings)
        head = f"GRPO doctor: {self.source} ({self.steps} logged step{'s' if self.steps != 1 else ''})"
        lines = [head]
        if self.healthy:
            notes = f" ({counts['info']} note{'s' if counts['info'] != 1 else ''} below)" if counts["info"] else ""
            lines.append(f"HEALTHY: nothing wrong found{notes}. Evidence:")
        else:
            lines.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s). "
                         "What the run shows:")
        lines += [f"  - {e}" for e in self.evidence]
        lines += ["", *(str(f) + "\n" for f in self.findings)] if self.findings else []
        return "\n".join(lines).rstrip() + "\n"

    __repr__ = __str__  # a notebook cell ending on diagnose(...) shows the report


# ----------------------------------------------------------------------------------------------------- run inputs

@dataclasses.dataclass
class RunData:
    """What :func:`diagnose` reads, gathered from whatever form the run came in."""

    source: str = "run"
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one dict of metrics per logged step
    config: dict[str, Any] = dataclasses.field(default_factory=dict)  # GRPOConfig values that are known
    template_tail: str | None = None  # the chat template's generation prompt, rendered for one user message
    prefill: str = ""
    system_prompt: str = ""
    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # training completions (+ rewards)
    eval_before: list[dict[str, Any]] | None = None
    eval_after: list[dict[str, Any]] | None = None
    adapter: Path | None = None
    error: BaseException | None = None


def _float(value: Any) -> float | None:
    """A number (NaN and inf kept: the doctor looks for them), or None for empty cells and text."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.csv`` as dicts of floats, NaN kept (``plotting.read_metrics_csv`` drops it).

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "metrics.csv")
        >>> _ = open(p, "w").write("step,loss\\n1,0.5\\n2,nan\\n")
        >>> [r["loss"] for r in read_metrics(p)][0], math.isnan(read_metrics(p)[1]["loss"])
        (0.5, True)
    """
    with open(path, newline="") as f:
        return [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _metric_rows(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The per-step rows of a log_history: those with a reward (the last entry is the run's summary)."""
    rows = []
    for i, h in enumerate(history):
        if "reward" in h or "loss" in h and "train_runtime" not in h:
            row = {k: (_float(v) if not isinstance(v, (list, dict)) else None) for k, v in h.items()}
            row.setdefault("step", float(i + 1))
            rows.append(row)
    return rows


def _config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config.get("grpo_config", config))
    if hasattr(config, "to_dict"):  # GRPOConfig / TrainingArguments
        values = config.to_dict()
        for key in ("generation_batch_size", "steps_per_generation", "world_size"):
            if hasattr(config, key):
                values[key] = getattr(config, key)
        return values
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    raise _error(f"config must be a GRPOConfig or a dict, got {type(config).__name__}.",
                 "Pass trainer.args, the GRPOConfig you built, or the dict of its settings.")


def _error(problem: str, fix: str):
    from grpo_helpers.errors import CourseError

    return CourseError(problem, fix=fix)


def template_tail(tokenizer, chat_template_kwargs: Mapping[str, Any] | None = None) -> str | None:
    """The end of the prompt the chat template writes for one user message (what the model continues from).

    Example:
        >>> class Tok:
        ...     def apply_chat_template(self, messages, tokenize, add_generation_prompt, **kw):
        ...         return "<|user|>" + messages[0]["content"] + "<|assistant|><think>\\n"
        >>> template_tail(Tok())
        '<|assistant|><think>\\n'
    """
    if tokenizer is None or not hasattr(tokenizer, "apply_chat_template"):
        return None
    marker = "QUESTION_MARKER_7f3"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                             add_generation_prompt=True, **dict(chat_template_kwargs or {}))
    except Exception:  # no template, or one that needs a system message: nothing to read
        return None
    return text.split(marker)[-1] if isinstance(text, str) else None


def _find_trainer():
    """The ``Trainer`` running the calling callback (callbacks are handed the model, never the trainer)."""
    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if hasattr(candidate, "state") and hasattr(candidate, "args") and hasattr(candidate, "callback_handler"):
            return candidate
        frame = frame.f_back
    return None


def _trainer_samples(trainer) -> list[dict[str, Any]]:
    """The latest generation batch TRL keeps on the trainer (``trainer._logs``), as sample dicts."""
    logs = getattr(trainer, "_logs", None)
    if not logs or not logs.get("completion"):
        return []
    from grpo_helpers.rewards import completion_text

    completions = [completion_text(c) for c in logs["completion"]]
    prompts = [p if isinstance(p, str) else completion_text(p) for p in logs.get("prompt", [""] * len(completions))]
    rewards = {name: list(values) for name, values in logs.get("rewards", {}).items()}
    step = int(getattr(trainer.state, "global_step", 0))
    return [{"step": step, "prompt": prompts[i][-300:] if i < len(prompts) else "",
             "completion": completions[i][:MAX_SAMPLE_CHARS],
             "rewards": {n: (None if v[i] != v[i] else float(v[i])) for n, v in rewards.items() if i < len(v)}}
            for i in range(len(completions))]


def _dataset_prompt_facts(dataset) -> tuple[str, str]:
    """(prefill, system prompt) of a training dataset's first row, where it has them."""
    if dataset is None or not len(dataset):
        return "", ""
    row = dataset[0]
    prefill = row.get("prefill") or "" if hasattr(row, "get") else ""
    prompt = row.get("prompt") if hasattr(row, "get") else None
    system = ""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], Mapping) and prompt[0].get("role") == "system":
        system = str(prompt[0].get("content") or "")
    return str(prefill), system


def run_folder_of(config: Mapping[str, Any]) -> Path | None:
    """``runs/<name>/`` of a config whose ``output_dir`` is ``runs/<name>/checkpoints`` (the course's layout)."""
    out = config.get("output_dir")
    if not out:
        return None
    out = Path(out)
    return out.parent if out.name == "checkpoints" else out


def _from_folder(folder: Path, data: RunData) -> None:
    metrics = folder / "metrics.csv"
    if metrics.is_file():
        data.rows = read_metrics(metrics)
    else:
        states = sorted(folder.glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
        if states:
            data.rows = _metric_rows(json.loads(states[-1].read_text()).get("log_history", []))
    for name in ("settings.json", RUN_CONFIG_FILE):  # the demo's settings, then what the live callback wrote
        path = folder / name
        if path.is_file():
            settings = json.loads(path.read_text())
            data.config.update(settings.get("grpo_config", {}))
            data.prefill = settings.get("prefill", data.prefill) or data.prefill
            data.system_prompt = settings.get("system_prompt", data.system_prompt) or data.system_prompt
            if settings.get("chat_template_tail") is not None:
                data.template_tail = settings["chat_template_tail"]
    if (folder / SAMPLES_FILE).is_file():
        data.samples = _read_jsonl(folder / SAMPLES_FILE)
    for attr, name in (("eval_before", "eval_before.jsonl"), ("eval_after", "eval_after.jsonl")):
        if (folder / name).is_file():
            setattr(data, attr, _read_jsonl(folder / name))
    if (folder / "lora" / "adapter_model.safetensors").is_file():
        data.adapter = folder / "lora"


def gather(run: Any, config: Any = None, tokenizer=None, completions: Sequence[Any] | None = None) -> RunData:
    """Everything :func:`diagnose` can read from ``run`` (see :func:`diagnose` for the forms it takes)."""
    data = RunData()
    if isinstance(run, BaseException):
        data.source, data.error = f"{type(run).__name__}: {str(run).splitlines()[0][:120] if str(run) else ''}", run
    elif hasattr(run, "state") and hasattr(run, "args"):  # a (GRPO)Trainer
        data.rows = _metric_rows(run.state.log_history)
        data.config = _config_dict(run.args)
        data.source = f"trainer of {run_folder_of(data.config) or 'a run'}"
        tokenizer = tokenizer if tokenizer is not None else getattr(run, "processing_class", None)
        data.prefill, data.system_prompt = _dataset_prompt_facts(getattr(run, "train_dataset", None))
        folder = run_folder_of(data.config)
        if folder is not None and (folder / SAMPLES_FILE).is_file():
            data.samples = _read_jsonl(folder / SAMPLES_FILE)
        if not data.samples:
            data.samples = _trainer_samples(run)
    elif hasattr(run, "metrics_csv"):  # demo.RecordedRun
        folder = Path(run.metrics_csv).parent
        data.source = f"recorded run {folder.name}"
        _from_folder(folder, data)
    elif isinstance(run, (str, Path)):
        path = Path(run)
        if not path.exists():
            raise _error(f"{path} does not exist.", "Pass a run folder (runs/<name>), its metrics.csv, a "
                         "trainer_state.json, or the trainer itself.")
        data.source = str(path)
        if path.is_dir():
            _from_folder(path, data)
        elif path.name == "trainer_state.json":
            data.rows = _metric_rows(json.loads(path.read_text()).get("log_history", []))
        else:
            data.rows = read_metrics(path)
            _from_folder(path.parent, data)
            data.rows = read_metrics(path)
    elif isinstance(run, Sequence) and not isinstance(run, (str, bytes)):
        data.source = "log_history"
        data.rows = _metric_rows(run)
    elif run is not None:
        raise _error(f"The doctor cannot read a {type(run).__name__}.",
                     "Pass the trainer, a run folder (runs/<name>), a metrics.csv path, trainer.state.log_history, "
                     "or the exception the run raised.")
    data.config.update(_config_dict(config))
    if tokenizer is not None:
        data.template_tail = template_tail(tokenizer, data.config.get("chat_template_kwargs") or None)
    if completions is not None:
        from grpo_helpers.rewards import completion_text

        data.samples = [{"step": None, "completion": completion_text(c), "rewards": {}} for c in completions]
    return data


# --------------------------------------------------------------------------------------------------- small helpers

def series(rows: Sequence[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for every row that logged ``key`` as a number (NaN kept).

    Example:
        >>> series([{"step": 1, "loss": 0.5}, {"step": 2}], "loss")
        [(1, 0.5)]
    """
    out = []
    for i, row in enumerate(rows):
        value = _float(row.get(key))
        if value is not None:
            step = _float(row.get("step"))
            out.append((int(step) if step is not None and math.isfinite(step) else i + 1, value))
    return out


def at_steps(steps: Sequence[int]) -> str:
    """'at step 3' or 'at steps 1-3, 5'.

    Example:
        >>> at_steps([3]), at_steps([1, 2, 3, 5])
        ('at step 3', 'at steps 1-3, 5')
    """
    return f"at step{'s' if len(steps) != 1 else ''} {step_ranges(steps)}"


def step_ranges(steps: Sequence[int]) -> str:
    """Steps as short ranges.

    Example:
        >>> step_ranges([1, 2, 3, 5, 7, 8])
        '1-3, 5, 7-8'
    """
    if not steps:
        return "none"
    steps, parts, start = sorted(steps), [], None
    for i, s in enumerate(steps):
        if start is None:
            start = s
        if i + 1 == len(steps) or steps[i + 1] != s + 1:
            parts.append(f"{start}" if start == s else f"{start}-{s}")
            start = None
    return ", ".join(parts)


def longest_streak(values: Sequence[tuple[int, float]], test) -> list[int]:
    """The steps of the longest run of consecutive logged steps whose value passes ``test``.

    Example:
        >>> longest_streak([(1, 0.9), (2, 0.2), (3, 0.8), (4, 0.7)], lambda v: v > 0.5)
        [3, 4]
    """
    best, current = [], []
    for step, value in values:
        current = current + [step] if test(value) else []
        if len(current) > len(best):
            best = current
    return best


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def first_last(values: Sequence[float], k: int = 10) -> tuple[float, float, int]:
    """(mean of the first k, mean of the last k, k), with k at most half of the values (at least 1)."""
    k = max(1, min(k, len(values) // 2 or 1))
    return _mean(values[:k]), _mean(values[-k:]), k


def _first(k: int, which: str = "first") -> str:
    """'first step' or 'mean of the first 10 steps' (the evidence's wording)."""
    return f"{which} step" if k == 1 else f"mean of the {which} {k} steps"


def _finite(values: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(s, v) for s, v in values if math.isfinite(v)]


def _snippet(text: str, limit: int = 70) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _last_samples(samples: Sequence[Mapping[str, Any]], steps: int = LIVE_STREAK) -> list[Mapping[str, Any]]:
    """The samples of the last ``steps`` logged steps (all of them when the samples carry no step)."""
    known = sorted({s.get("step") for s in samples if s.get("step") is not None})
    if not known:
        return list(samples)
    keep = set(known[-steps:])
    return [s for s in samples if s.get("step") in keep]


def _texts(samples: Sequence[Mapping[str, Any]], prefill: str) -> list[str]:
    """The text each reward saw: TRL hands rewards the completion without the prefill, so it is added back."""
    out = []
    for s in samples:
        text = str(s.get("completion") or "")
        out.append(text if s.get("has_prefill") or not prefill or text.startswith(prefill) else prefill + text)
    return out


TAG = re.compile(r"</?([A-Za-z][\w-]*)>")


def content_chars(text: str) -> int:
    """Characters of a completion outside its tags, whitespace and dots: what is left of an empty template.

    Example:
        >>> content_chars("<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>")
        0
        >>> content_chars("<reasoning>\\n3 + 4 = 7\\n</reasoning>\\n<answer>\\n7\\n</answer>")
        6
    """
    return len(re.sub(r"[\s.]", "", TAG.sub("", text)))


def repeated_tags(text: str) -> dict[str, int]:
    """Tags that appear more than once in ``text`` (name -> count).

    Example:
        >>> repeated_tags("<answer>1</answer><answer>1</answer>")
        {'<answer>': 2, '</answer>': 2}
    """
    counts = Counter(m.group(0) for m in TAG.finditer(text))
    return {tag: n for tag, n in counts.items() if n > 1}


def is_degenerate(text: str) -> bool:
    """One character or one word repeated: what a collapsed policy writes (``!!!!!!``).

    Example:
        >>> is_degenerate("!!!!!!!!!!!!"), is_degenerate("the the the the the the the the"), is_degenerate("3 + 4 = 7")
        (True, True, False)
    """
    chars = [c for c in text if not c.isspace()]
    if len(chars) >= 8 and Counter(chars).most_common(1)[0][1] >= 0.8 * len(chars):
        return True
    words = text.split()
    return len(words) >= 8 and Counter(words).most_common(1)[0][1] >= 0.8 * len(words)


def well_formed(text: str) -> bool:
    """Every tag in ``text`` opens once, then closes once, with something other than dots inside.

    Example:
        >>> well_formed("<think>\\n2 + 2 = 4\\n</think>\\n4"), well_formed("<reasoning>\\n<answer>\\n12 years")
        (True, False)
        >>> well_formed("<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>")
        False
    """
    places: dict[str, list[tuple[bool, int, int]]] = {}
    for m in TAG.finditer(text):
        places.setdefault(m.group(1), []).append((m.group(0).startswith("</"), m.start(), m.end()))
    if not places:
        return False
    for items in places.values():
        if [closing for closing, _, _ in items] != [False, True]:
            return False
        if content_chars(text[items[0][2]:items[1][1]]) == 0:
            return False
    return True


# -------------------------------------------------------------------------------------------------------- the rules

def _batch(data: RunData) -> Finding | None:
    cfg = data.config
    message = str(data.error) if data.error is not None else ""
    m = re.search(r"generation_batch_size \((\d+)\) must be divisible by num_generations \((\d+)\)", message) or \
        re.search(r"per_device_train_batch_size=(\d+) is not a multiple of\s+num_generations=(\d+)", message)
    if m:
        batch, groups = int(m.group(1)), int(m.group(2))
        evidence = f"the run stopped with: {message.splitlines()[0][:160]}"
    else:
        groups = cfg.get("num_generations")
        per_device = cfg.get("per_device_train_batch_size")
        if not groups or not per_device:
            return None
        steps = cfg.get("steps_per_generation") or cfg.get("gradient_accumulation_steps") or 1
        batch = cfg.get("generation_batch_size") or per_device * (cfg.get("world_size") or 1) * steps
        if batch % groups == 0:
            return None
        evidence = (f"per_device_train_batch_size={per_device} x {cfg.get('world_size') or 1} process(es) x "
                    f"{steps} step(s) per generation = {batch} completions per generation batch; "
                    f"num_generations={groups}; {batch} % {groups} = {batch % groups}")
    prompts = max(1, round(batch / groups))
    return Finding(
        "batch-not-divisible", "error",
        f"a generation batch of {batch} completions cannot be cut into groups of {groups}",
        evidence,
        "TRL's per_device_train_batch_size counts completions, not prompts, so the batch must hold whole groups of "
        "num_generations completions of one prompt.",
        f"per_device_train_batch_size={prompts * groups} ({prompts} prompt(s) x num_generations={groups} per step)",
        _links("batch-not-divisible"))


OPEN_TAG_AT_END = re.compile(r"<([A-Za-z][\w-]*)>\s*$")
EMPTY_BLOCK_AT_END = re.compile(r"<([A-Za-z][\w-]*)>\s*</\1>\s*$")


def _always_zero_rewards(rows) -> list[str]:
    out = []
    for name in reward_names(rows):
        values = [v for _, v in _finite(series(rows, f"rewards/{name}/mean"))]
        if len(values) >= 2 and max(abs(v) for v in values) == 0:
            out.append(name)
    return out


def _template(data: RunData) -> Finding | None:
    # Only the chat template: the course's own prefill is added back by its rewards (the 'prefill' column).
    tail = data.template_tail
    if not tail:
        return None
    empty, opened = EMPTY_BLOCK_AT_END.search(tail), OPEN_TAG_AT_END.search(tail)
    if not empty and not opened:
        return None
    tag = (empty or opened).group(1)
    written = tail[(empty or opened).start():]
    how = f"an empty <{tag}></{tag}> block" if empty else f"<{tag}>"
    zero = [n for n in _always_zero_rewards(data.rows) if FORMAT_REWARD.search(n) or tag.lower() in n.lower()]
    texts = [str(s.get("completion") or "") for s in data.samples]
    evidence = f"the chat template ends every prompt with {how} (rendered prompt ends {tail[-40:]!r})"
    if texts:
        evidence += f"; sample completions that write <{tag}> themselves: {sum(f'<{tag}>' in t for t in texts)} of {len(texts)}"
    if not zero:
        return Finding(
            "template-opens-tag", "info", f"the chat template already writes {how} for the model", evidence,
            f"The model continues after the template's {how}: a reward that wants <{tag}> from the model never gets "
            "it (no format reward here is stuck at 0, so yours seem to cope).",
            "none needed while no format reward is stuck at 0", _links("template-opens-tag"))
    evidence += f"; format reward(s) at 0 on every one of the {len(data.rows)} steps: {', '.join(zero)}"
    if empty:
        cause = (f"With thinking switched off the template writes an empty <{tag}></{tag}> block itself, so a reward "
                 f"that wants the model to write <{tag}> scores 0 on every completion (all groups tie).")
        fix = (f"drop {', '.join(zero)} while thinking is off, or switch thinking on (chat_template_kwargs="
               "{'enable_thinking': True}) and score the template's tag + completion")
    else:
        cause = (f"TRL hands rewards only what the model generated, which starts after the template's <{tag}>, so a "
                 f"reward that wants the completion to start with <{tag}> scores 0 on every completion (all groups "
                 "tie).")
        fix = (f"score {written!r} + completion: wrap {zero[0]} as "
               f"lambda completions, **kw: {zero[0]}([[{{'content': {written!r} + c[0]['content']}}] for c in "
               "completions]) (the course's rewards do this with a 'prefill' dataset column)")
    return Finding("template-opens-tag", "error", f"the chat template already writes {how} for the model", evidence,
                   cause, fix, _links("template-opens-tag"))


def _ties(data: RunData) -> list[Finding]:
    rows, out = data.rows, []
    frac = _finite(series(rows, "frac_reward_zero_std"))
    n = len(frac)
    if n:
        tied = [s for s, v in frac if v >= TIE_LIMIT]
        streak = longest_streak(frac, lambda v: v >= TIE_LIMIT)
        mean = _mean([v for _, v in frac])
        if n >= 2 and (mean >= 0.8 or len(streak) >= min(LIVE_STREAK, n)):
            tied_rows = [r for r in rows if int(_float(r.get("step")) or 0) in set(tied)] or rows
            reward_at_ties = _mean([_float(r.get("reward")) or 0.0 for r in tied_rows])
            grad = [v for s, v in _finite(series(rows, "grad_norm")) if s in set(tied)]
            zero_grad = sum(v == 0 for v in grad)
            constant = [f"{name} = {_mean([_float(r.get(f'rewards/{name}/mean')) or 0.0 for r in tied_rows]):.3f}"
                        for name in reward_names(rows)]
            evidence = (f"frac_reward_zero_std >= {TIE_LIMIT} {at_steps(tied)} ({len(tied)} of {n}; mean "
                        f"{mean:.2f}); reward at those steps {reward_at_ties:.3f} with every reward the same within "
                        f"each group ({'; '.join(constant) or 'no per-reward columns'}); grad_norm 0 at {zero_grad} "
                        f"of {len(grad)} of them")
            groups, temp = data.config.get("num_generations"), data.config.get("temperature")
            more = f"num_generations={2 * groups}" if groups else "a larger num_generations"
            if abs(reward_at_ties) < 1e-9:
                cause = ("Every completion of a group scored 0, so every advantage (reward minus the group mean) is 0 "
                         "and the update is 0: the model never samples anything the rewards pay for.")
                fix = (f"give partial credit (grpo_helpers.rewards.xmlcount_reward), prime with a few SFT steps "
                       f"(grpo_helpers.demo.prime), or sample more varied groups: {more}, temperature=1.0"
                       + (f" (now {temp:g})" if isinstance(temp, (int, float)) else ""))
            else:
                cause = ("Every completion of a group got the same nonzero reward, so every advantage is 0: the "
                         "rewards do not tell the completions apart (a constant reward, or questions already solved).")
                fix = (f"use rewards that differ between completions (a graded one such as "
                       f"grpo_helpers.rewards.xmlcount_reward, or correctness on harder questions) and {more}")
            out.append(Finding("groups-tie", "error" if mean >= 0.9 else "warning",
                               f"every group tied at {len(tied)} of {n} steps: no learning signal there",
                               evidence, cause, fix, _links("groups-tie"), tuple(tied)))
    tie_found = bool(out)  # every reward is constant where groups tie: groups-tie says it
    for name in reward_names(rows):
        std = _finite(series(rows, f"rewards/{name}/std"))
        mean = _finite(series(rows, f"rewards/{name}/mean"))
        if len(std) >= max(2, min(LIVE_STREAK, len(rows))) and all(v == 0 for _, v in std) and not tie_found:
            value = _mean([v for _, v in mean])
            out.append(Finding(
                "reward-constant", "info",  # other rewards vary (else groups-tie): a weak signal, not a fault
                f"{name} gave every completion the same score at every step",
                f"rewards/{name}/std = 0 at all {len(std)} steps; its mean {value:.3f}",
                "A reward that never differs within a group adds nothing to any advantage, so GRPO cannot learn "
                "what it asks for.",
                ("none while the model cannot answer yet: correctness starts to count once some answers are "
                 "right (easier questions, a larger model, more steps)") if CORRECTNESS_REWARD.search(name) and
                value == 0 else
                f"make {name} give partial credit, or check it against real completions with "
                "grpo_helpers.rewards.score_completions",
                _links("reward-constant")))
    return out


def _loss(data: RunData, ties: Finding | None) -> Finding | None:
    loss = _finite(series(data.rows, "loss"))
    if not loss:
        return None
    negative = [s for s, v in loss if v < 0]
    zero = [s for s, v in loss if abs(v) < 1e-9]
    if not negative and not zero:
        return None
    grad = _finite(series(data.rows, "grad_norm"))
    moving = sum(v > 0 for _, v in grad)
    loss_type = data.config.get("loss_type")
    parts = []
    if negative:
        parts.append(f"loss < 0 {at_steps(negative)}")
    if zero:
        parts.append(f"loss = 0 {at_steps(zero)}")
    evidence = "; ".join(parts) + f" ({len(loss)} steps); grad_norm > 0 at {moving} of {len(grad)} steps"
    if ties is not None and moving == 0:
        cause = "The loss is 0 because every group tied (see groups-tie): with all advantages 0 there is no gradient."
        fix = "fix groups-tie; the loss follows"
    else:
        why = ("with loss_type='grpo' each completion's loss is its own token mean, so at the first update of a "
               "batch (ratio 1) it is minus the mean advantage, 0 by construction" if loss_type == "grpo" else
               f"with loss_type={loss_type!r} the tokens of the batch are pooled, so its sign only says whether the "
               "longer completions scored better")
        kl = " plus beta x KL" if (data.config.get("beta") or 0) > 0 else ""
        cause = (f"GRPO's loss is the advantage-weighted probability ratio{kl}, not an error to drive to 0: advantages "
                 f"average 0 in each group, so the loss sits near 0 and can be negative; {why}.")
        fix = "none: watch reward, reward_std and grad_norm (> 0 means the weights move), not the loss"
    return Finding("loss-near-zero", "info", "the loss is 0 or negative at some steps", evidence, cause, fix,
                   _links("loss-near-zero"), tuple(sorted(negative + zero)))


def _truncated(data: RunData) -> Finding | None:
    clipped = _finite(series(data.rows, "completions/clipped_ratio"))
    n = len(clipped)
    if not n:
        return None
    over = [s for s, v in clipped if v > CLIPPED_LIMIT]
    streak = longest_streak(clipped, lambda v: v > CLIPPED_LIMIT)
    mean = _mean([v for _, v in clipped])
    late = _mean([v for _, v in clipped[n // 2:]])
    if not (len(streak) >= min(LIVE_STREAK, n) or (n >= 2 * LIVE_STREAK and late > CLIPPED_LIMIT)):
        return None
    cap = data.config.get("max_completion_length")
    longest = max((v for _, v in _finite(series(data.rows, "completions/max_length"))), default=None)
    cap = cap or (int(longest) if longest else None)
    terminated = [v for _, v in _finite(series(data.rows, "completions/mean_terminated_length")) if v > 0]
    evidence = (f"completions/clipped_ratio > {CLIPPED_LIMIT} {at_steps(over)} ({len(over)} of {n}; "
                f"mean {mean:.0%}, longest streak {len(streak)} steps)")
    if cap:
        evidence += f"; max_completion_length={cap}"
    if longest is not None:
        evidence += f"; longest completion {longest:.0f} tokens"
    evidence += (f"; completions that did end averaged {_mean(terminated):.0f} tokens" if terminated else
                 "; no completion ended on its own")
    return Finding(
        "truncated", "error" if mean >= 0.9 else "warning",
        f"{mean:.0%} of completions were cut off at max_completion_length",
        evidence,
        f"Completions hit max_completion_length{'=' + str(cap) if cap else ''} before the end-of-turn token, so a "
        "cut-off answer never closes </answer> and the format and correctness rewards cannot pay it.",
        f"max_completion_length={2 * cap} (or ask for shorter answers in the system prompt)" if cap else
        "a larger max_completion_length (or ask for shorter answers in the system prompt)",
        _links("truncated"), tuple(over))


NAN_KEYS = ("loss", "grad_norm", "reward", "reward_std", "kl", "entropy", "completions/mean_length")
SAMPLER_NAN = re.compile(r"probability tensor contains either `?inf`?, `?nan`?", re.I)


def _nan(data: RunData) -> Finding | None:
    bad: dict[str, list[int]] = {}
    for key in NAN_KEYS:
        seen_number = False
        for i, row in enumerate(data.rows):
            value = row.get(key)
            step = int(_float(row.get("step")) or i + 1)
            number = _float(value)
            if number is not None and not math.isfinite(number):
                bad.setdefault(key, []).append(step)
            elif number is None and seen_number and key in row:  # TRL logs a metric that turned NaN as None
                bad.setdefault(key, []).append(step)
            seen_number = seen_number or (number is not None and math.isfinite(number))
    message = str(data.error) if data.error is not None else ""
    if not bad and not SAMPLER_NAN.search(message):
        return None
    lr = data.config.get("learning_rate")
    if bad:
        first = min(min(v) for v in bad.values())
        evidence = "; ".join(f"{k} NaN/inf {at_steps(v)}" for k, v in bad.items())
        title = f"NaN or inf from step {first}"
    else:
        first = None
        evidence = f"the run stopped while sampling: {message.splitlines()[0][:160]}"
        title = "the weights or logits became NaN/inf, and sampling failed"
    return Finding(
        "nan", "error", title, evidence,
        "A NaN or inf in the loss, KL or logits (an fp16 overflow, or a learning rate so large one update wrecks the "
        "weights) makes every later update garbage; the policy then writes one token over and over or cannot sample.",
        (f"learning_rate={lr / 10:g}" if isinstance(lr, (int, float)) and lr else "a 10x smaller learning_rate")
        + ", max_grad_norm=0.1, and bf16=True instead of fp16 on a GPU that has bfloat16",
        _links("nan"), tuple(sorted({s for v in bad.values() for s in v})) if first is not None else ())


def _sample_sets(data: RunData) -> list[tuple[str, list[str]]]:
    """(where, texts) for the completions the doctor can read: training samples (last steps), held-out answers."""
    out = []
    if data.samples:
        recent = _last_samples(data.samples)
        steps = sorted({s.get("step") for s in recent if s.get("step") is not None})
        where = f"training completions of step{'s' if len(steps) > 1 else ''} {step_ranges(steps)}" if steps else \
            "the given completions"
        out.append((where, _texts(recent, data.prefill)))
    if data.eval_after:
        out.append(("held-out answers after training (eval_after.jsonl)",
                    [str(r.get("completion") or "") for r in data.eval_after]))
    return out


def _collapse(data: RunData) -> Finding | None:
    for where, texts in _sample_sets(data):
        bad = [t for t in texts if is_degenerate(t)]
        if texts and len(bad) >= max(2, 0.5 * len(texts)):
            lr = data.config.get("learning_rate")
            return Finding(
                "collapse-repeated", "error", f"{len(bad)} of {len(texts)} completions are one token repeated",
                f"{where}: {len(bad)} of {len(texts)} are one character or word repeated, e.g. {_snippet(bad[0])}",
                "The policy collapsed onto a single token, which is what follows NaN weights or logits, or an update "
                "far too large for the model.",
                (f"learning_rate={lr / 10:g}" if isinstance(lr, (int, float)) and lr else "a 10x smaller "
                 "learning_rate") + ", max_grad_norm=0.1, and restart from the last healthy checkpoint",
                _links("collapse-repeated"))
    return None


def _entropy(data: RunData) -> Finding | None:
    entropy = _finite(series(data.rows, "entropy"))
    if len(entropy) < 2:
        return None
    values = [v for _, v in entropy]
    first, last, k = first_last(values)
    if not (values[-1] < 0.1 and last < 0.15 and first > 2 * last):
        return None
    lr = data.config.get("learning_rate")
    return Finding(
        "entropy-collapse", "warning", f"the policy's entropy fell to {values[-1]:.3f}",
        f"entropy {first:.3f} ({_first(k)}) -> {last:.3f} ({_first(k, 'last')}); {values[-1]:.3f} at step "
        f"{entropy[-1][0]}",
        "The policy became almost deterministic: the completions of a group come out (nearly) the same, tie, and "
        "GRPO stops learning; usually a collapse onto one template.",
        (f"learning_rate={lr / 2:g}" if isinstance(lr, (int, float)) and lr else "a smaller learning_rate")
        + ", temperature=1.0",
        _links("entropy-collapse"), (entropy[-1][0],))


def _length(data: RunData) -> Finding | None:
    lengths = _finite(series(data.rows, "completions/mean_length"))
    if len(lengths) < 6:
        return None
    values = [v for _, v in lengths]
    first, last, k = first_last(values)
    cap = data.config.get("max_completion_length")
    loss_type = data.config.get("loss_type")
    evidence = f"completions/mean_length {first:.1f} (first {k} steps) -> {last:.1f} tokens (last {k})"
    if last < 0.4 * first and last < 20:
        return Finding(
            "length-collapse", "warning", f"completions shrank from {first:.0f} to {last:.0f} tokens", evidence,
            "The completions shrank to the shortest text the rewards still pay for: a template with no reasoning in it.",
            "pay only for a real reasoning block (grpo_helpers.rewards.soft_format_reward needs MIN_REASONING_CHARS "
            "characters of it) and lower learning_rate",
            _links("length-collapse"))
    if cap and last > 1.5 * first and last >= 0.8 * cap:
        bias = (" With loss_type='grpo' each completion's loss is divided by its own length, so a long wrong answer is "
                "penalised less per token: the length bias Dr. GRPO removes." if loss_type == "grpo" else "")
        return Finding(
            "length-runaway", "warning", f"completions grew from {first:.0f} to {last:.0f} of {cap} tokens",
            evidence + f"; max_completion_length={cap}",
            "Completions grow until they hit the cap, and cut-off ones earn no format reward." + bias,
            "loss_type='dr_grpo'" + (" (now 'grpo')" if loss_type == "grpo" else "") +
            f", or a reward that pays for a finished answer; max_completion_length={2 * cap} if answers need the room",
            _links("length-runaway"))
    return None


def _tag_spam(data: RunData) -> Finding | None:
    for where, texts in _sample_sets(data):
        spam = [t for t in texts if repeated_tags(t)]
        if texts and len(spam) >= max(2, 0.25 * len(texts)):
            tags = Counter(tag for t in spam for tag in repeated_tags(t))
            return Finding(
                "tag-spam", "warning", f"{len(spam)} of {len(texts)} completions repeat a tag",
                f"{where}: {len(spam)} of {len(texts)} repeat {', '.join(t for t, _ in tags.most_common(3))}; "
                f"e.g. {_snippet(spam[0])}",
                "A reward that counts tags pays for every copy, so repeating the tags scores more than answering.",
                "pay for each tag at most once (grpo_helpers.rewards.xmlcount_reward does: a repeated tag earns 0)",
                _links("tag-spam"))
    return None


def _example_of(system_prompt: str) -> tuple[str, str, bool]:
    """(first reasoning line, answer, uses placeholders) of the template or worked example a system prompt shows."""
    reasoning = re.search(r"<reasoning>\s*(.*?)\s*</reasoning>", system_prompt, re.S)
    answer = re.search(r"<answer>\s*(.*?)\s*</answer>", system_prompt, re.S)
    first_line = reasoning.group(1).splitlines()[0].strip() if reasoning and reasoning.group(1).strip() else ""
    answer_text = answer.group(1).strip() if answer else ""
    placeholder = bool(first_line) and not first_line.strip(". ") or answer_text in ("...", "…")
    return first_line, answer_text, placeholder


def _template_copy(data: RunData) -> Finding | None:
    if not data.system_prompt:
        return None
    first_line, answer, placeholder = _example_of(data.system_prompt)
    if not first_line and not answer:
        return None
    from grpo_helpers.rewards import extract_answer

    for where, texts in _sample_sets(data):
        copies = []
        for t in texts:
            reasoning = re.search(r"<reasoning>\s*(.*?)(?:</reasoning>|<answer>|$)", t, re.S)
            line = reasoning.group(1).strip().splitlines()[0].strip() if reasoning and reasoning.group(1).strip() else ""
            given = (extract_answer(t) or "").strip()
            if placeholder and (content_chars(t) == 0 and "<answer>" in t):
                copies.append(t)
            elif not placeholder and first_line and line == first_line:
                copies.append(t)
        share = len(copies) / len(texts) if texts else 0.0
        if len(copies) >= 2 and share >= 0.2:
            what = ("the template's placeholders ('...') with nothing of their own" if placeholder else
                    f"the worked example's first line {first_line!r}")
            return Finding(
                "template-copy", "warning" if share >= 0.5 else "info",
                f"{len(copies)} of {len(texts)} completions copy the system prompt's {'template' if placeholder else 'example'}",
                f"{where}: {len(copies)} of {len(texts)} write {what}; e.g. {_snippet(copies[0])}",
                "A small model copies what the prompt shows, and rewards that check only the tags pay the copy "
                "as much as an answer.",
                "show one short worked example instead of '...' placeholders (grpo_helpers.data.TINY_SYSTEM_PROMPT) "
                "and pay only for real reasoning (grpo_helpers.rewards.soft_format_reward)" if placeholder else
                "vary or shorten the worked example, and keep rewards that pay only for real reasoning",
                _links("template-copy"))
    return None


def _lenient(data: RunData) -> Finding | None:
    recent = [s for s in _last_samples(data.samples) if s.get("rewards")]
    if not recent:
        return None
    texts = _texts(recent, data.prefill)
    from grpo_helpers.rewards import soft_format_reward

    for name in sorted({n for s in recent for n in s["rewards"]}):
        if not FORMAT_REWARD.search(name):
            continue
        values = [s["rewards"].get(name) for s in recent]
        numbers = [v for v in values if v is not None and math.isfinite(v)]
        top = max(numbers, default=0.0)
        # Only pass/fail rewards: a graded one (xmlcount_reward) pays part marks for part of the format by design.
        if top <= 0 or not set(numbers) <= {0.0, top}:
            continue
        paid = [t for t, v in zip(texts, values) if v == top]
        broken = [t for t in paid if not well_formed(t)]
        if len(broken) >= 2 and len(broken) >= 0.5 * len(paid):
            honest = sum(r > 0 for r in soft_format_reward(completions=broken))
            steps = sorted({s.get("step") for s in recent if s.get("step") is not None})
            return Finding(
                "lenient-reward-hacked", "warning",
                f"{name} gives full marks to completions that do not have the format",
                f"training completions of steps {step_ranges(steps) if steps else '?'}: {name} paid its top score "
                f"{top:g} to {len(paid)} of {len(texts)}; {len(broken)} of those have a tag unclosed, repeated or "
                f"empty, e.g. {_snippet(broken[0])}; grpo_helpers.rewards.soft_format_reward pays {honest} of those "
                f"{len(broken)}",
                f"{name} checks that a tag is there, not that the format is whole or has anything inside it, so GRPO "
                "reinforces the cheapest text that passes (an unclosed tag, an empty template).",
                f"replace {name} with grpo_helpers.rewards.soft_format_reward (each tag once, in order, "
                "MIN_REASONING_CHARS characters of reasoning, a non-empty answer)",
                _links("lenient-reward-hacked"), tuple(steps))
    return None


def _format_not_content(data: RunData) -> Finding | None:
    rows = data.rows
    if len(rows) < 6:
        return None
    names = reward_names(rows)
    correct = [n for n in names if CORRECTNESS_REWARD.search(n)]
    formats = [n for n in names if FORMAT_REWARD.search(n) and n not in correct]
    if not correct or not formats:
        return None
    if any(max((abs(v) for _, v in _finite(series(rows, f"rewards/{n}/mean"))), default=1) > 0 for n in correct):
        return None
    rose = []
    for n in formats:
        values = [v for _, v in _finite(series(rows, f"rewards/{n}/mean"))]
        a, b, k = first_last(values)
        if b > a + 0.05:
            rose.append(f"{n} {a:.3f} -> {b:.3f}")
    if not rose:
        return None
    return Finding(
        "format-not-content", "info", "the format is being learned, not the answers",
        f"rising: {'; '.join(rose)} (first vs last steps); {', '.join(correct)} = 0 at every one of {len(rows)} steps",
        "The format rewards pay for the layout whatever number is inside, so a model that cannot do the task yet "
        "learns the layout first (for a small model that is all a short run teaches).",
        "none for a small model; on a larger one check the held-out accuracy and the completions for template copies",
        _links("format-not-content"))


def adapter_is_zero(folder: str | Path) -> tuple[int, int] | None:
    """(lora_B tensors that are all zero, lora_B tensors) of a saved adapter, read from the safetensors header.

    LoRA's B matrices start at 0, so an adapter whose B are still all 0 was never updated: it leaves the base model
    exactly as it was. Reads the raw bytes (no torch), so it takes milliseconds. None when there is no adapter file.
    """
    path = Path(folder) / "adapter_model.safetensors"
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        base = 8 + size
        zero = total = 0
        for name, meta in header.items():
            if name == "__metadata__" or "lora_B" not in name:
                continue
            start, end = meta["data_offsets"]
            f.seek(base + start)
            total += 1
            zero += not any(f.read(end - start))
    return zero, total


def _like_base(data: RunData) -> Finding | None:
    fix = ("after train(), save trainer.model (training.save_lora) and evaluate the adapter: "
           "load_lora(base_model, 'runs/<name>/lora'), or export_merged(model, tokenizer, path, lora_path=...)")
    if data.adapter is not None:
        counted = adapter_is_zero(data.adapter)
        if counted and counted[1] and counted[0] == counted[1]:
            return Finding(
                "like-base", "error", "the saved adapter is untrained: the model is exactly the base model",
                f"all {counted[1]} lora_B matrices in {data.adapter}/adapter_model.safetensors are 0",
                "LoRA's B matrices start at 0, so an adapter saved before training (or from a run whose every step "
                "had zero gradient) adds nothing to the base model.", fix, _links("like-base"))
    if data.eval_before and data.eval_after and len(data.eval_before) == len(data.eval_after) >= 4:
        same = sum(a.get("completion") == b.get("completion") for a, b in zip(data.eval_before, data.eval_after))
        if same >= 0.9 * len(data.eval_after):
            return Finding(
                "like-base", "error", "the evaluated model answers exactly like the base model",
                f"{same} of {len(data.eval_after)} held-out answers after training are identical to those before "
                "(eval_before.jsonl vs eval_after.jsonl, greedy)",
                "The model evaluated after training is the base model: the adapter was not loaded, or the merge or "
                "export wrote the base weights.", fix, _links("like-base"))
    return None


def _kl(data: RunData) -> Finding | None:
    kl = _finite(series(data.rows, "kl"))
    if not kl:
        return None
    peak_step, peak = max(kl, key=lambda sv: sv[1])
    if peak <= 1.0:
        return None
    beta, lr = data.config.get("beta"), data.config.get("learning_rate")
    return Finding(
        "kl-high", "warning", f"the KL to the reference model reached {peak:.2f}",
        f"kl {kl[0][1]:.3f} at step {kl[0][0]} -> {peak:.3f} at step {peak_step}" +
        (f"; beta={beta:g}" if isinstance(beta, (int, float)) else ""),
        "The policy moved far from the reference model in a few steps: a large KL usually comes just before the "
        "output degenerates.",
        (f"learning_rate={lr / 2:g}" if isinstance(lr, (int, float)) and lr else "a smaller learning_rate") +
        (f", beta={2 * beta:g}" if isinstance(beta, (int, float)) and beta else ""),
        _links("kl-high"), (peak_step,))


def _flat(data: RunData, others: Sequence[Finding]) -> Finding | None:
    reward = [v for _, v in _finite(series(data.rows, "reward"))]
    if len(reward) < 10 or any(f.severity in ("error", "warning") for f in others):
        return None
    a, b, k = first_last(reward)
    if b > a + 0.05:
        return None
    lr = data.config.get("learning_rate")
    return Finding(
        "reward-flat", "warning", "the reward did not rise",
        f"reward {a:.3f} (first {k} steps) -> {b:.3f} (last {k}), over {len(reward)} steps",
        "The groups differ (no ties) but the updates do not move the reward: the step size is too small for this "
        "many steps, or the rewards are noise the model cannot act on.",
        (f"learning_rate={2 * lr:g}" if isinstance(lr, (int, float)) and lr else "a larger learning_rate") +
        " or more max_steps; check a few completions against each reward (rewards.score_completions)",
        _links("reward-flat"))


def _band(data: RunData, reference: Mapping[str, Any] | None) -> Finding | None:
    if not reference:
        return None
    from grpo_helpers.plotting import moving_average

    low = {int(s): v for s, v in zip(reference["band"]["step"], reference["band"]["low"])}
    raw = _finite(series(data.rows, "reward"))
    smooth = moving_average([v for _, v in raw], int(reference["band"].get("smooth", 1)))  # as the band was
    reward = [(s, v) for (s, _), v in zip(raw, smooth) if s in low]
    if len(reward) < 4:
        return None
    k = min(10, len(reward) // 2)
    last = reward[-k:]
    mine, floor = _mean([v for _, v in last]), _mean([low[s] for s, _ in last])
    if mine >= floor:
        return None
    seeds = len(reference.get("runs", []))
    return Finding(
        "outside-band", "warning", f"the reward is below every one of the {seeds} recorded seeds",
        f"reward (trailing mean of {reference['band'].get('smooth', 1)} steps) over steps {last[0][0]}-{last[-1][0]}: "
        f"{mine:.3f} on average; the lowest recorded seed there: {floor:.3f}",
        "A run of the same recipe that falls below all recorded seeds is not bad luck alone: something in the run "
        "differs (the other findings say what).",
        "compare this run's settings with the recorded ones (grpo_helpers/recorded_seeds/seeds.json, 'command')",
        _links("outside-band"), tuple(s for s, _ in last))


# --------------------------------------------------------------------------------------------------------- evidence

def _evidence(data: RunData) -> list[str]:
    rows, out = data.rows, []
    reward = [v for _, v in _finite(series(rows, "reward"))]
    if reward:
        a, b, k = first_last(reward)
        out.append(f"reward {a:.3f} ({_first(k)}) -> {b:.3f} ({_first(k, 'last')})")
    frac = _finite(series(rows, "frac_reward_zero_std"))
    if frac:
        tied = sum(v >= TIE_LIMIT for _, v in frac)
        out.append(f"groups that all tied (frac_reward_zero_std): mean {_mean([v for _, v in frac]):.2f}; every group "
                   f"tied at {tied} of {len(frac)} steps")
    clipped = _finite(series(rows, "completions/clipped_ratio"))
    if clipped:
        streak = longest_streak(clipped, lambda v: v > CLIPPED_LIMIT)
        out.append(f"completions cut off (completions/clipped_ratio): mean {_mean([v for _, v in clipped]):.0%}; "
                   f"longest streak above {CLIPPED_LIMIT}: {len(streak)} step(s)")
    lengths = [v for _, v in _finite(series(rows, "completions/mean_length"))]
    if lengths:
        a, b, k = first_last(lengths)
        cap = data.config.get("max_completion_length")
        out.append(f"mean completion length {a:.1f} -> {b:.1f} tokens" + (f" (max_completion_length={cap})" if cap else ""))
    entropy = [v for _, v in _finite(series(rows, "entropy"))]
    if entropy:
        a, b, k = first_last(entropy)
        out.append(f"entropy {a:.3f} -> {b:.3f}")
    grad = _finite(series(rows, "grad_norm"))
    if grad:
        out.append(f"grad_norm > 0 at {sum(v > 0 for _, v in grad)} of {len(grad)} steps")
    if rows:
        checked = [k for k in NAN_KEYS if any(k in r for r in rows)]
        out.append(f"NaN/inf checked in {', '.join(checked) or 'nothing logged'}")
    for where, texts in _sample_sets(data):
        out.append(f"{where}: {len(texts)} read")
    if data.template_tail is not None:
        out.append(f"chat template's generation prompt ends {data.template_tail[-30:]!r}")
    if data.adapter is not None:
        counted = adapter_is_zero(data.adapter)
        if counted:
            out.append(f"adapter: {counted[1] - counted[0]} of {counted[1]} lora_B matrices non-zero")
    if data.error is not None:
        out.append(f"the run raised {type(data.error).__name__}")
    return out


# --------------------------------------------------------------------------------------------------------- diagnose

ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def diagnose(run: Any = None, config: Any = None, tokenizer=None, *, completions: Sequence[Any] | None = None,
             reference: Mapping[str, Any] | None = None) -> Diagnosis:
    """Read a GRPO run and say what is wrong, why, and what to change; or that it is healthy, with the evidence.

    ``run``: a ``GRPOTrainer``; a run folder (``runs/<name>``: ``metrics.csv``, ``settings.json`` /
    ``run_config.json``, ``completions.jsonl``, ``eval_*.jsonl``, ``lora/``); a ``metrics.csv`` or
    ``trainer_state.json`` path; ``trainer.state.log_history``; ``demo.recorded_run()``; or the exception the run
    raised. ``config``: the ``GRPOConfig`` (or a dict of its settings) when ``run`` does not carry it;
    ``tokenizer``: to read the chat template; ``completions``: sample completions to read;
    ``reference``: a seeds band (``plotting.recorded_seeds()``) to compare the reward with.

    Example:
        >>> from grpo_helpers.demo import recorded_run
        >>> d = diagnose(recorded_run())
        >>> d.healthy, d.codes()
        (True, ['loss-near-zero'])
        >>> print(diagnose(config={"per_device_train_batch_size": 4, "num_generations": 3}).find(
        ...     "batch-not-divisible").fix)
        per_device_train_batch_size=3 (1 prompt(s) x num_generations=3 per step)
    """
    data = gather(run, config, tokenizer, completions)
    return diagnose_data(data, reference)


def diagnose_data(data: RunData, reference: Mapping[str, Any] | None = None) -> Diagnosis:
    """:func:`diagnose` on already gathered :class:`RunData` (what the live callback calls every step)."""
    findings: list[Finding] = []

    def add(f):
        if f is not None:
            findings.append(f)

    add(_batch(data))
    add(_nan(data))
    add(_template(data))
    add(_truncated(data))
    ties = _ties(data)
    findings += ties
    add(_loss(data, next((f for f in ties if f.code == "groups-tie"), None)))
    add(_collapse(data))
    add(_entropy(data))
    add(_length(data))
    add(_tag_spam(data))
    add(_lenient(data))
    add(_template_copy(data))
    add(_format_not_content(data))
    add(_like_base(data))
    add(_kl(data))
    add(_band(data, reference))
    add(_flat(data, findings))
    findings.sort(key=lambda f: ORDER[f.severity])  # stable: within a severity, the order above (causes first)
    return Diagnosis(source=data.source, steps=len(data.rows), findings=findings, evidence=_evidence(data))


# ------------------------------------------------------------------------------------------------ live, in training

RUN_CONFIG_KEYS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "max_grad_norm",
                   "beta", "loss_type", "scale_rewards", "temperature", "num_generations",
                   "per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size",
                   "steps_per_generation", "world_size", "max_completion_length", "max_steps", "seed", "output_dir",
                   "reward_weights", "chat_template_kwargs", "bf16", "fp16", "mask_truncated_completions")


def live_callback(streak: int = LIVE_STREAK, write_samples: bool = True):
    """A ``TrainerCallback`` that runs the doctor after every logged step and prints each new warning once.

    It waits for ``streak`` logged steps before judging trends (e.g. 5 steps of ``clipped_ratio`` > 0.5), except
    NaN, which it reports at once. In the run folder it writes ``run_config.json`` at the start (the settings, the
    chat template's generation prompt, the prefill, the system prompt) and appends every step's completions and
    rewards to ``completions.jsonl``, so ``diagnose("runs/<name>")`` reads everything afterwards.
    ``training.build_trainer`` installs it; ``training.course_callbacks`` includes it.

    Example:
        >>> cb = live_callback()
        >>> type(cb).__name__, cb.streak
        ('LiveDoctor', 5)
    """
    from transformers import TrainerCallback

    class LiveDoctor(TrainerCallback):
        """Prints the doctor's errors and warnings as soon as the run shows them (each code once)."""

        def __init__(self):
            self.streak, self.write_samples = streak, write_samples
            self.data: RunData | None = None
            self.warned: list[tuple[int, Finding]] = []  # (step, finding) of every warning printed
            self.folder: Path | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            trainer = _find_trainer()
            config = _config_dict(args)
            self.folder = run_folder_of(config)
            tokenizer = kwargs.get("processing_class") or getattr(trainer, "processing_class", None)
            prefill, system = _dataset_prompt_facts(getattr(trainer, "train_dataset", None))
            self.data = RunData(source=f"live run {self.folder}", config=config, prefill=prefill,
                                system_prompt=system,
                                template_tail=template_tail(tokenizer, config.get("chat_template_kwargs") or None))
            self.data.rows = _metric_rows(state.log_history)
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                settings = {"grpo_config": {k: config.get(k) for k in RUN_CONFIG_KEYS if k in config},
                            "chat_template_tail": self.data.template_tail, "prefill": prefill, "system_prompt": system}
                (self.folder / RUN_CONFIG_FILE).write_text(json.dumps(settings, indent=2, default=str) + "\n")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs or self.data is None:
                return
            self.data.rows = _metric_rows(state.log_history)
            trainer = _find_trainer()
            batch = _trainer_samples(trainer) if trainer is not None else []
            if batch:
                self.data.samples = [s for s in self.data.samples if s["step"] != batch[0]["step"]] + batch
                if self.write_samples and self.folder is not None:
                    with open(self.folder / SAMPLES_FILE, "a") as f:
                        for s in batch:
                            f.write(json.dumps(s, ensure_ascii=False) + "\n")
            self.check(state.global_step)

        def check(self, step: int) -> list[Finding]:
            """Run the doctor on the steps so far; print and return the errors and warnings not yet printed."""
            assert self.data is not None
            diagnosis = diagnose_data(self.data)
            done = {f.code for _, f in self.warned}
            new = [f for f in diagnosis.findings if f.severity in ("error", "warning") and f.code not in done
                   and (len(self.data.rows) >= self.streak or f.code == "nan")]
            for f in new:
                self.warned.append((step, f))
                print(f"\nGRPO doctor, step {step}: {f}\n", flush=True)
            return new

    return LiveDoctor()


# -------------------------------------------------------------------------------------------------------- command

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m grpo_helpers.doctor runs/<name>``: print the diagnosis; exit 1 when it found an error."""
    parser = argparse.ArgumentParser(prog="python -m grpo_helpers.doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run folder (runs/<name>), a metrics.csv or a trainer_state.json")
    args = parser.parse_args(argv)
    from grpo_helpers.errors import CourseError

    try:
        diagnosis = diagnose(args.run)
    except CourseError as err:
        print(f"grpo_helpers.doctor: {err}", file=sys.stderr)
        return 2
    print(diagnosis, end="")
    return 1 if diagnosis.codes("error") else 0


if __name__ == "__main__":
    sys.exit(main())
