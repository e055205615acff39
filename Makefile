# The two commands of the README. Both create or reuse .venv through scripts/bootstrap_env.sh.
PY := .venv/bin/python

.PHONY: env run test bench model results compare

env:
	@bash scripts/bootstrap_env.sh

run: env
	$(PY) -m dyn_fusion.cli up vehicle --duration-s 30 --out runs/latest --overwrite

test: env
	.venv/bin/ruff check .
	$(PY) -m pytest -q tests

bench: env
	$(PY) benchmarks/sim_throughput.py

model: env
	bash scripts/train_default_model.sh

results: env
	bash scripts/evaluate_default_model.sh

compare: env
	bash scripts/compare_default_model.sh
