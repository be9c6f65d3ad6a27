# `make export` and `make test` are the whole set-up: the first use creates .venv with pinned deps.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/deeplab_v3_resnet50.yaml
WEIGHTS ?= default
OUT ?= artifacts
VARIANT ?=
VARIANT_FLAGS := $(foreach v,$(VARIANT),--variant $(v))

.PHONY: export test test-fast venv clean help publish bench

help:
	@echo "make export [WEIGHTS=default|random|PATH] [VARIANT=xnnpack_fp32] [CONFIG=configs/x.yaml] [OUT=artifacts]"
	@echo "make test        # all tests (fast tier + real-architecture tier)"
	@echo "make test-fast   # fast tier only"

$(STAMP): pyproject.toml scripts/ts/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	npm ci --prefix scripts/ts --no-audit --no-fund --loglevel=error
	touch $(STAMP)

venv: $(STAMP)

export: $(STAMP)
	$(PY) -m export build --config $(CONFIG) --weights $(WEIGHTS) --out $(OUT) $(VARIANT_FLAGS)

test: $(STAMP)
	$(PY) -m pytest -q -rfEs

test-fast: $(STAMP)
	$(PY) -m pytest -q -rfEs -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info

# make bench [RUNS=20] — latency ratios vs eager and ONNX Runtime, measured in one run; writes $(OUT)/bench.json
RUNS ?= 20
bench: $(STAMP)
	$(PY) -m export bench --manifest $(OUT)/manifest.json --runs $(RUNS) $(if $(filter-out default random,$(WEIGHTS)),--weights $(WEIGHTS),)

# make publish REPO=owner/name TAG=v1.0.0 [PUSH=1] — dry run unless PUSH=1 (token: HF_TOKEN or `hf auth login`)
publish: $(STAMP)
	$(PY) -m export publish --manifest $(OUT)/manifest.json --repo $(REPO) --tag $(TAG) $(if $(PUSH),--push,)
