# hf_muon — every target bootstraps .venv from the repo's own files.
# Torch is chosen in ONE place: on this CPU machine `torch==2.13.0` resolves to a local CPU wheel.
# On a GPU box: make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" ...
TORCH_SPEC ?= torch==2.13.0
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export HF_EVALUATE_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_MUON_DATA ?= $(abspath ../shared/data)

.PHONY: venv install test test-slow test-all demo demo-optimizers bench bench-gpu gpu-check gpu-check-dry lint docs dist clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[hf,study,lmeval,dev,trl,peft,docs,deepspeed]"
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PIP) install --quiet -e ".[hf,study,lmeval,dev,trl,peft,docs,deepspeed,bench]"
	touch $(BENCH_STAMP)

venv install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -x --durations=15

# pytest exits 5 when no test is marked slow yet; that is not a failure.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15 || test $$? -eq 5

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" --durations=25

# The main job: the pretraining-vs-SFT optimizer-mismatch study, smoke scale (~5 min on 2 CPU cores).
demo: $(STAMP)
	$(PY) -m hf_muon.cli study recipes/mismatch/smoke.yaml --data-dir "$(HF_MUON_DATA)" --output-dir runs/mismatch-smoke

# The older quick comparison: a tiny Llama trained with AdamW and with Muon through Trainer (~3 min).
demo-optimizers: $(STAMP)
	$(PY) -m hf_muon.lab.demo --data "$(HF_MUON_DATA)" --out runs/demo

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py --device cpu

bench-gpu: $(BENCH_STAMP)
	$(PY) benchmarks/run_all.py --device cuda

LINT_PATHS := hf_muon tests benchmarks recipes examples

# One lent GPU: device checks, bf16 step table (GPT-2 small, ~1.1B Llama) vs torch.optim.Muon and fused AdamW with
# the NS matmul floor, a 1-GPU Trainer run; writes benchmarks/results/gpu_check.json + a RESULTS.md section (≤ 8 min, H100).
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

# Every code path of gpu-check on CPU at tiny sizes (CI); runs/gpu_check_dry.json, never RESULTS.md.
gpu-check-dry: $(STAMP)
	$(PY) benchmarks/gpu_check.py --dry

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

# The documentation site (mkdocs-material + mkdocstrings) into build/site; any warning fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Wheel + sdist into build/dist (ignored), then twine's metadata check.
DIST_DIR ?= build/dist
dist: $(STAMP)
	rm -rf $(DIST_DIR)
	$(PY) -m build --no-isolation --outdir $(DIST_DIR) .
	$(PY) -m twine check --strict $(DIST_DIR)/*

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
