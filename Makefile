# Two entry points for a fresh clone: `make demo` and `make test`.
# PyTorch: the CPU build 2.13.0 (GPU hosts install their own CUDA build before the package).
VENV := .venv
BIN := $(VENV)/bin
DEMO_INPUT := examples/demo_contigs.fa

.PHONY: demo test clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/virnucpro predict $(DEMO_INPUT) --chunk-size 500 --out demo-out --demo-models --db
	$(BIN)/virnucpro jobs --last 3
	@echo "results: demo-out/, and the job in the default SQLite database (demo models: the predictions are meaningless)"
	@echo "every job recorded there: $(BIN)/virnucpro jobs"

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out
