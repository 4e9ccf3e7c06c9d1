"""Property test: no fixed reward raises, and every value stays in its documented range, on >= 10,000 generated
completions (empty, huge, unicode, nested/duplicated/unclosed tags, numbers in every format, None content).

Deterministic in CI: Hypothesis is derandomized, without a database or deadline.
"""

import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo_helpers import rewards as R

EXAMPLES = 2_600
BATCH = 4  # completions per example (fixed, so the count is exact): 2,600 x 4 = 10,400
SEEN = {"completions": 0, "none_content": 0, "huge": 0, "prefill": 0, "chat": 0, "int_paid": 0, "xml_credit": 0}
CLOCK = []

TAGS = ["<reasoning>", "</reasoning>", "<answer>", "</answer>", "<reasoning>\n", "\n</reasoning>\n", "\n<answer>\n",
        "\n</answer>", "\n</answer>\n", "<answer", "</reasoning", "<<answer>>", "<ANSWER>", "\\boxed{", "}"]
digits = st.integers(min_value=-10**12, max_value=10**12)
number = st.one_of(
    digits.map(str), digits.map(lambda n: f"{n:,}"), digits.map(lambda n: f"${n:,}.00"),
    st.floats(allow_nan=True, allow_infinity=True).map(str), st.floats(-1e6, 1e6).map(lambda x: f"{x:.3f}"),
    st.tuples(digits, st.integers(-5, 50)).map(lambda t: f"{t[0]}/{t[1]}"), digits.map(lambda n: f"{n}%"),
    digits.map(lambda n: f"\\boxed{{{n}}}"), st.tuples(digits, digits).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
    digits.map(lambda n: f"\u2212{abs(n)}"), digits.map(lambda n: f"{n}."), digits.map(lambda n: f"{n} dollars"),
    st.sampled_from(["1e999", "9" * 500, "\\sqrt{-4}", "2^{99999}", "1 1/0", "--3", "1,2,3", ".", "-", "1e", "0/0",
                     "\\frac{1}{0}", "\\boxed{", "x = ", "= 5 =", "\\infty", "$$", "\\sqrt{16}"]),
)
piece = st.one_of(st.sampled_from(TAGS), number, st.text(max_size=30),
                  st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF), max_size=10),
                  st.just("\n"), st.just(" "))
text = st.lists(piece, max_size=25).map("".join)
huge = st.tuples(text, st.integers(1_000, 50_000)).map(lambda t: (t[0] or "<answer>") * (t[1] // max(1, len(t[0])) + 1))
# Near-misses of the real format: each part may be dropped, doubled or swapped for noise.
part = lambda s: st.one_of(st.sampled_from([s, s, s, "", s + s, s.upper()]), st.just(s), piece)  # noqa: E731
structured = st.tuples(part(""), part("<reasoning>\n"), text, part("\n</reasoning>\n"), part("<answer>\n"), number,
                       part("\n</answer>"), st.one_of(st.just(""), text)).map("".join)
body = st.one_of(text, structured, structured, huge, st.just(""), st.none())
completion = st.one_of(
    body,  # plain string (or None)
    body.map(lambda t: [{"role": "assistant", "content": t}]),  # conversational, maybe None content
    st.lists(body, min_size=0, max_size=3).map(lambda ts: [{"role": "assistant", "content": t} for t in ts]),
)
reference = st.one_of(number, digits.map(str), st.text(max_size=10), st.none())


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True,
          suppress_health_check=list(HealthCheck))
@given(completions=st.lists(completion, min_size=BATCH, max_size=BATCH),
       answers=st.lists(reference, min_size=BATCH, max_size=BATCH),
       prefill=st.one_of(st.none(), st.just(["<reasoning>\n"] * BATCH), st.lists(st.sampled_from(["", "<reasoning>\n", None]),
                                                                                    min_size=BATCH, max_size=BATCH)))
def test_no_reward_raises_and_all_values_stay_in_range(completions, answers, prefill):
    CLOCK.append(time.perf_counter())
    SEEN["completions"] += len(completions)
    SEEN["prefill"] += prefill is not None
    for c in completions:
        content = c if not isinstance(c, list) else (c[0]["content"] if c else "")
        SEEN["none_content"] += content is None
        SEEN["huge"] += isinstance(content, str) and len(content) >= 1_000
        SEEN["chat"] += isinstance(c, list)
    columns = []
    for f in R.REWARD_FUNCS:
        values = f(prompts=["q"] * BATCH, completions=completions, answer=answers, prefill=prefill,
                   completion_ids=[[0]] * BATCH, trainer_state=None)
        lo, hi = R.REWARD_RANGES[f.__name__]
        assert len(values) == BATCH
        for v in values:
            assert isinstance(v, float) and math.isfinite(v) and lo <= v <= hi, (f.__name__, v)
        columns.append(values)
    SEEN["int_paid"] += sum(v > 0 for v in columns[3])
    SEEN["xml_credit"] += sum(v > 0 for v in columns[0])
    advantages = R.group_advantages([sum(col) for col in zip(*columns)], num_generations=2)
    assert all(math.isfinite(a) for a in advantages)


def test_fuzz_count_report():
    """Runs after the property test (file order): report how many completions it generated."""
    assert SEEN["completions"] >= 10_000, SEEN
    assert SEEN["none_content"] > 0 and SEEN["huge"] > 0 and SEEN["prefill"] > 0 and SEEN["chat"] > 0, SEEN
    assert SEEN["int_paid"] > 0 and SEEN["xml_credit"] > 0, SEEN  # the generator reaches the paying branches too
    print(f"\nfuzz: {SEEN['completions']} completions in {CLOCK[-1] - CLOCK[0]:.1f} s: {SEEN}")
