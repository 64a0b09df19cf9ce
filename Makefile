# The two commands: `make demo` and `make test`. Both set up first (idempotent, fast when unchanged).
# `make test` runs every test (CI calls it); `make test-fast` leaves out those marked slow, for the edit loop.
SHELL := /bin/bash
.PHONY: setup test test-fast demo clean lint

setup:
	@bash scripts/setup.sh

test: setup
	@source env.sh && python -m pytest test -q -p no:cacheprovider

test-fast: setup
	@source env.sh && python -m pytest test -q -p no:cacheprovider -m "not slow"

lint: setup
	@source env.sh && python -m ruff check .

demo: setup
	@source env.sh && lkd demo

clean:
	rm -rf .venv .overlay build install log
