.PHONY: setup demo serve test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/socle demo

serve: setup
	.venv/bin/socle serve

test:
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check socle tests bench docs/examples
	.venv/bin/mypy socle

bench: setup
	.venv/bin/python bench/run.py
