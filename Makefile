# The two commands: `make demo` and `make test`. Both set up first (idempotent, fast when unchanged).
SHELL := /bin/bash
.PHONY: setup test demo clean lint

setup:
	@bash scripts/setup.sh

test: setup
	@source env.sh && python -m pytest test -q -p no:cacheprovider

lint: setup
	@source env.sh && python -m ruff check .

demo: setup
	@source env.sh && lkd demo

clean:
	rm -rf .venv .overlay build install log
