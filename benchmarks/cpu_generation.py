"""Generation speed of SmolLM2-135M-Instruct on this machine (HF generate, float32), as a table.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cpu_generation.py [--tokens 64] [--repeats 2]

Tokens/s counts generated tokens only (prompt tokens excluded), summed over the batch.
"""

from __future__ import annotations

import argparse
import os
import time

from grpo_helpers.data import load_gsm8k
from grpo_helpers.generation import Sampling, generate
from grpo_helpers.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    t0 = time.perf_counter()
    model, tokenizer = load_model("smollm2-135m-offline", backend="trl-peft")
    load_s = time.perf_counter() - t0
    model.eval()
    prompts = load_gsm8k("test", n=8, source="offline", prefill="<reasoning>\n")["prompt"]
    print(f"SmolLM2-135M-Instruct, float32, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores; load from cache {load_s:.1f} s")
    print(f"| prompts x n | new tokens max | tokens/s | s/call |")
    print(f"|---|---|---|---|")
    for batch, n in [(1, 1), (1, 4), (2, 4), (8, 1)]:
        best = None
        for _ in range(args.repeats):
            sampling = Sampling(temperature=0.8, max_new_tokens=args.tokens, n=n, batch_size=batch, seed=0)
            t0 = time.perf_counter()
            out = generate(model, tokenizer, prompts[:batch], sampling, progress=False)
            seconds = time.perf_counter() - t0
            made = sum(len(tokenizer(c[len("<reasoning>\n"):], add_special_tokens=False)["input_ids"])
                       for group in out for c in group)
            rate = made / seconds
            best = max(best or 0, rate)
        print(f"| {batch} x {n} | {args.tokens} | {best:.1f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
