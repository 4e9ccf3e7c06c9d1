#!/usr/bin/env bash
# scripts/train_grpo.py under `accelerate launch` on the lent GPU(s): step time and peak memory per GPU into $OUT,
# next to the memory estimator's number (grpo_helpers.memory.per_gpu_estimate), then tests/gpu/test_accelerate_script.py.
#
# On the device (`run`, carry ["gpu-kit"]; build gpu-kit/ once on the CPU machine with `make gpu-kit`), project root:
#     bash tests/gpu/run_accelerate.sh                 # 1 GPU  (nvidia-h200)
#     NUM_GPUS=2 bash tests/gpu/run_accelerate.sh      # 2 GPUs (nvidia-h200-x2): the same run, DDP over 2 processes
# $OUT gets: gpus.txt, versions.txt, train-<N>gpu.log, run_summary-<N>gpu.json, rank-<K>-<N>gpu.json,
# accelerate-<N>gpu.md (a table row for benchmarks/RESULTS.md) and pytest.log. Not yet run: its time is unmeasured.
set -euo pipefail
NUM_GPUS="${NUM_GPUS:-1}"
OUT="${OUT:-/tmp/accelerate-out}"
SHAPE=qwen2.5-1.5b-instruct   # random weights in the real shape (no hub on the device); full 28 layers
STEPS=6 GENERATIONS=6 COMPLETION=256 ROWS=64
RUN=/tmp/train-grpo-${NUM_GPUS}gpu   # checkpoints hold the optimizer state (hundreds of MB): kept out of $OUT

mkdir -p "$OUT" /tmp/site
[ -d /tmp/site/trl ] || tar xzf gpu-kit/site.tgz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD:$PWD/gpu-kit/extra HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset GRPO_COURSE_TINY GRPO_COURSE_STEPS   # full mode: the seed recipe (bf16, LoRA r=32, lr 5e-6, beta 0.04)

nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee "$OUT/gpus.txt"
python3 -c "import sys, torch, transformers, trl, peft, accelerate
print('python', sys.version.split()[0], '| torch', torch.__version__, '| transformers', transformers.__version__,
      '| trl', trl.__version__, '| peft', peft.__version__, '| accelerate', accelerate.__version__)" | tee "$OUT/versions.txt"
MODEL=$(python3 -c "from grpo_helpers.models import random_model_dir; print(random_model_dir('$SHAPE'))" | tail -n 1)

start=$(date +%s)
python3 -m accelerate.commands.launch --config_file configs/accelerate/ddp.yaml --num_processes "$NUM_GPUS" \
    scripts/train_grpo.py --model "$MODEL" --rows "$ROWS" --steps "$STEPS" --generations "$GENERATIONS" \
    --max-completion-length "$COMPLETION" --output-dir "$RUN" --overwrite > "$OUT/train-${NUM_GPUS}gpu.log" 2>&1 \
    || { tail -n 60 "$OUT/train-${NUM_GPUS}gpu.log"; exit 1; }
echo "accelerate launch wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/train-${NUM_GPUS}gpu.log"
cp "$RUN/run_summary.json" "$OUT/run_summary-${NUM_GPUS}gpu.json"
for f in "$RUN"/ranks/rank-*.json; do cp "$f" "$OUT/$(basename "$f" .json)-${NUM_GPUS}gpu.json"; done

python3 - "$RUN" "$MODEL" "$SHAPE" "$NUM_GPUS" "$GENERATIONS" "$COMPLETION" "$ROWS" > "$OUT/accelerate-${NUM_GPUS}gpu.md" <<'EOF'
"""One table row: measured median step time and peak memory per GPU vs grpo_helpers.memory.per_gpu_estimate."""
import json, statistics, sys
from pathlib import Path

from transformers import AutoTokenizer

from grpo_helpers.data import load_gsm8k
from grpo_helpers.generation import render_prompt
from grpo_helpers.memory import per_gpu_estimate

run, model, shape, n, gens, completion, rows = sys.argv[1:]
summary = json.loads((Path(run) / "run_summary.json").read_text())
ranks = [json.loads(p.read_text()) for p in sorted((Path(run) / "ranks").glob("rank-*.json"))]
tok = AutoTokenizer.from_pretrained(model)
lengths = [len(tok(render_prompt(tok, r["prompt"])[0])["input_ids"]) for r in load_gsm8k("train", n=int(rows))]
prompt = round(statistics.mean(length for length in lengths if length <= 256))  # the script drops prompts > 256
est = per_gpu_estimate(shape, int(n), "ddp", num_generations=int(gens), max_completion_length=int(completion),
                       max_prompt_length=prompt)
peaks = ", ".join("-" if r["peak_gpu_memory_gb"] is None else f"{r['peak_gpu_memory_gb']:.2f}" for r in ranks)
steps = ", ".join(f"{r['median_step_seconds']:.2f}" for r in ranks)
print("| GPUs | model | per GPU | step s (median after the 1st, per rank) | peak GB per GPU | estimate GB per GPU |")
print("|---|---|---|---|---|---|")
print(f"| {summary['world_size']} | {shape} (random weights), bf16 LoRA r={summary['lora_rank']} | 1 prompt x {gens} "
      f"x {completion} tokens, prompts ~{prompt} tokens | {steps} | {peaks} | {est:.2f} |")
EOF
cat "$OUT/accelerate-${NUM_GPUS}gpu.md"

if [ "$NUM_GPUS" = 1 ]; then
  python3 -m pytest -m gpu tests/gpu/test_accelerate_script.py -v -s -p no:cacheprovider > "$OUT/pytest.log" 2>&1 \
    || { tail -n 80 "$OUT/pytest.log"; exit 1; }
  tail -n 3 "$OUT/pytest.log"
fi
