# `make export` and `make test` are the whole set-up: the first use creates .venv with pinned deps
# (and a pinned TypeScript for the generated-constants check).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= artifacts
WEIGHTS ?= default
MODEL ?=
CONFIG ?=
VARIANT ?=
RUNS ?= 20
# CONFIG: one config file anywhere (a maintainer's own model); MODEL: configs/<MODEL>.yaml
CONFIGS := $(or $(CONFIG),$(if $(MODEL),configs/$(MODEL).yaml,$(wildcard configs/*.yaml)))
ONE_OUT = $(if $(CONFIG),$(OUT)/$(basename $(notdir $(CONFIG))),$(OUT)/$(MODEL))
VARIANT_FLAGS := $(foreach v,$(VARIANT),--variant $(v))
# bench, card and publish work on one model's folder: MODEL, or the seed model
ONE := $(or $(MODEL),deeplab_v3_resnet50)

BUILDER ?= deeplabv3_resnet50
MODELS ?=
J ?= 1
CONFIG_DIR ?= configs
SEED ?= 0
MEMBER ?= fixture

.PHONY: help venv export lint test test-fast docs bench profile card publish compat verify-coreml release fixture explain-int8 clean

help:
	@echo "make export  [WEIGHTS=default|random|PATH] [MODEL=name | CONFIG=path.yaml] [VARIANT=name ...] [JOBS=2]  -> $(OUT)/<model>/"
	@echo "make test       # lint, then all tests, offline (fast tier + real-architecture tier)"
	@echo "make lint       # ruff check, ruff format --check, mypy (export/)"
	@echo "make test-fast  # tests/unit: every stage on the tiny net (no real architecture, no whole flows)"
	@echo "make docs       # the measured tables in docs/ rendered from docs/data/ (bench.json per host, sources.json)"
	@echo "make bench   [MODEL=name] [RUNS=20] [BENCH_OUT=path]  # latency ratios vs eager and ONNX Runtime fp32/int8 -> bench.json"
	@echo "make profile [MODEL=name] [RUNS=20]   # bench + op-by-op profile of each XNNPACK file and ONNX Runtime -> profile.json/.png"
	@echo "make card    [MODEL=name]             # Hugging Face model card from manifest + bench"
	@echo "make publish MODEL=name REPO=owner/name TAG=vX.Y.Z [PUSH=1] [ALLOW_RANDOM=1]   # dry run unless PUSH=1"
	@echo "make compat  [MODEL=name] [RUNTIMES='0.6.0 1.3.1']  # load + parity in the ExecuTorch runtimes RNE releases embed"
	@echo "make release MODELS='a b' REPO='owner/{model}' TAG=vX.Y.Z [J=2] [WEIGHTS=..] [ALLOW_RANDOM=1] [SKIP_COMPAT=1]  # export -> publish -> one constants module"
	@echo "make verify-coreml [MODEL=name]     # execute the Core ML files (macOS only; exit 3 elsewhere) -> manifest"
	@echo "make explain-int8 [MODEL=name] [WEIGHTS=default|random|PATH]  # int8 per-layer sensitivity, worst first"
	@echo "make fixture [BUILDER=deeplabv3_resnet50] [SEED=0] [MEMBER=fixture]  # a weight-family checkpoint -> $(OUT)/fixtures/"

# the react-native-executorch checker (node packages) sets itself up on first use in ~/.cache/rne-export/ts
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The whole matrix (every config, every variant); MODEL= / VARIANT= narrow it. Up-to-date variants
# (same config, weights and tools) are skipped. JOBS: models built side by side, each in its own
# process on its share of the cores (lowering is mostly one-threaded); the files are the same bytes.
JOBS ?= 2
export: $(STAMP)
	$(PY) -m export build $(foreach c,$(CONFIGS),--config $(c)) --weights $(WEIGHTS) \
		--out $(if $(or $(MODEL),$(CONFIG)),$(ONE_OUT),$(OUT)) $(VARIANT_FLAGS) --jobs $(JOBS)

# ruff (lint + format check) and mypy on export/: seconds, and they run first
lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy

# TEST_WORKERS: pytest-xdist workers. Each takes whole test files (its module fixtures build once) and
# computes on its share of the cores (tests/conftest.py, RNE_EXPORT_THREADS)
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -rfEs -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: lint
	$(PYTEST) --durations=25

# tests/unit: every stage on the tiny net; tests/e2e (whole flows through child processes) and
# tests/slow (real architectures) run in make test
test-fast: lint
	$(PYTEST) tests/unit

# the measured tables in docs/ from docs/data/ (a bench.json kept there, sources.json)
docs: $(STAMP)
	$(PY) scripts/render_docs.py

# BENCH_OUT: another host's file beside this one's (the release's macOS job: bench-macos-arm64.json)
BENCH_OUT ?=
bench: $(STAMP)
	$(PY) -m export bench --manifest $(OUT)/$(ONE)/manifest.json --runs $(RUNS) \
		$(if $(filter-out default random,$(WEIGHTS)),--weights $(WEIGHTS),) $(if $(BENCH_OUT),--out $(BENCH_OUT),) $(if $(PROFILE),--profile,)

# bench, plus each XNNPACK file and ONNX Runtime peer op by op -> profile.json, profile.png (in the card)
profile: $(STAMP)
	$(MAKE) --no-print-directory bench PROFILE=1

card: $(STAMP)
	$(PY) -m export card --manifest $(OUT)/$(ONE)/manifest.json

# Each .pte in the older ExecuTorch runtimes its RNE releases embed (configs/runtimes/rne_releases.yaml),
# each in a cached side venv outside the repo (~/.cache/rne-export/runtimes, 4-7 GB each, made once).
RUNTIMES ?=
BACKEND ?=
compat: $(STAMP)
	$(PY) -m export compat --manifest $(OUT)/$(ONE)/manifest.json $(foreach r,$(RUNTIMES),--runtime $(r)) \
		$(if $(BACKEND),--backend $(BACKEND),)

# Core ML files executed where Core ML runs (macOS: the release's macOS job runs exactly this);
# on Linux it exits 3 with one line. BACKEND=coreml on compat: only those files, in every claimed runtime.
verify-coreml: $(STAMP)
	$(PY) -m export verify-coreml --manifest $(OUT)/$(ONE)/manifest.json \
		$(if $(filter-out default random,$(WEIGHTS)),--weights $(WEIGHTS),)

# token: HF_TOKEN or `hf auth login`
publish: $(STAMP)
	$(PY) -m export publish --manifest $(OUT)/$(ONE)/manifest.json --repo $(REPO) --tag $(TAG) $(if $(PUSH),--push,) \
		$(if $(ALLOW_RANDOM),--allow-random-weights,) $(if $(SKIP_COMPAT),--skip-compat,)

# One release, the steps CI runs (scripts/release.py): export J models at a time (each with its
# card), publish each to REPO ('owner/{model}') under TAG, merge constants into $(OUT)/release/.
release: $(STAMP)
	$(PY) scripts/release.py all $(if $(MODELS),--models $(MODELS),) --configs $(CONFIG_DIR) --out $(OUT) \
		--weights $(WEIGHTS) --jobs $(J) --repo '$(REPO)' --tag '$(TAG)' $(if $(ALLOW_RANDOM),--allow-random-weights,) \
		$(if $(SKIP_COMPAT),--skip-compat,) $(foreach r,$(RUNTIMES),--runtime $(r)) $(if $(BENCH_RUNS),--bench-runs $(BENCH_RUNS),)

# A seeded stand-in for trained weights (trained-scale, decisive logits), made offline in about a
# minute: try the gates on it with `make export WEIGHTS=$(OUT)/fixtures/<builder>_seed<N>.pth`.
fixture: $(STAMP)
	mkdir -p $(OUT)/fixtures
	$(PY) scripts/realistic_checkpoint.py $(BUILDER) $(OUT)/fixtures/$(BUILDER)_$(MEMBER)_seed$(SEED).pth --seed $(SEED) --member $(MEMBER)

# Which layers lose accuracy in int8 (each conv alone in int8, the rest fp32), worst first
explain-int8: $(STAMP)
	$(PY) -m export explain-int8 --config configs/$(ONE).yaml --weights $(WEIGHTS)

clean:
	rm -rf $(VENV) build *.egg-info
