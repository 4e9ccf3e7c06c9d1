#!/usr/bin/env bash
# The one command for the lent GPU (device `run`, carry ["gpu-kit"]): unpack the kit, run every GPU test and the
# 1-GPU accelerate run (RUN_ACCELERATE=0 skips it), copy logs to $OUT. Split across calls with GPU_K=...   Build the kit first, here:  bash tests/gpu/prepare_kit.sh
set -uo pipefail
OUT="${OUT:-/tmp/gpu-out}"; WORK=/tmp/gpu-work; mkdir -p "$OUT" "$WORK" /tmp/site
tar xzf gpu-kit/site.tgz -C /tmp/site && tar xzf gpu-kit/nb.tgz -C /tmp/site
export PYTHONPATH=/tmp/site:$PWD:$PWD/gpu-kit/extra HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 UNSLOTH_DISABLE_STATISTICS=1
export PATH=/tmp/site/bin:$PATH  # no MPLBACKEND: notebook kernels must use the inline backend
python3 -c 'import torch, unsloth, trl, nbclient, ipykernel; print(torch.__version__, torch.cuda.get_device_name(), unsloth.__version__, trl.__version__)' 2>&1 | tail -1
# test_accelerate_script.py runs inside run_accelerate.sh, after the training run it checks.
# GPU_K: a pytest -k expression (e.g. "fp16 or merged"); a device call runs at most 10 minutes, so split there.
timeout "${PYTEST_LIMIT:-3000}" python3 -m pytest -m gpu tests/gpu -v -p no:cacheprovider --durations=0 -s --ignore=tests/gpu/test_accelerate_script.py \
    ${GPU_K:+-k "$GPU_K"} 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "PASSED|FAILED|ERROR|SKIPPED|passed|failed|Error|figures|max \|" | tail -60
[ "${RUN_ACCELERATE:-1}" = 1 ] && OUT="$WORK/accelerate" bash tests/gpu/run_accelerate.sh 2>&1 | tee "$OUT/accelerate.log" | tail -15
tar czf "$OUT/results.tgz" -C "$WORK" . 2>/dev/null
