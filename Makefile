.PHONY: install lint test test-fast bench site clean

install:
	pip install -e '.[dev]'

lint:
	ruff check runtime registry_build tests bench
	ruff format --check runtime registry_build tests bench
	mypy
	actionlint

test:
	python -m pytest -q

test-fast:
	python -m pytest -q -m 'not slow'

bench:
	python -m bench

site:
	registry-build build

clean:
	rm -rf site .bench .pytest_cache .mypy_cache .ruff_cache
