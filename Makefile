.PHONY: install lint test bench site clean

install:
	pip install -e '.[dev]'

lint:
	ruff check runtime registry_build tests bench
	ruff format --check runtime registry_build tests bench
	mypy
	actionlint

test:
	python -m pytest -q

bench:
	python -m bench

site:
	registry-build build

clean:
	rm -rf site .bench .pytest_cache .mypy_cache .ruff_cache
