.PHONY: setup demo serve test lint bench token

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/socle demo

serve: setup
	.venv/bin/socle serve

# An access token of the running demo: make token WHO=practitioner:<RPPS> (see the demo banner)
token:
	@.venv/bin/socle token $(or $(WHO),operator)

test:
	bash scripts/test.sh

lint: setup
	.venv/bin/ruff check socle tests bench docs/examples
	.venv/bin/mypy socle

bench: setup
	.venv/bin/python bench/run.py
