# The two commands a researcher needs: `make validate` and `make test`.
# Both set up .venv on first use (pinned packages from pyproject.toml, kubectl/kustomize included).
SHELL := /bin/bash
ENV := source tools/_env.sh &&

.PHONY: validate test lint typecheck unit routes plan bench clean help

help:
	@echo "make validate   render every cluster, overlay and base; check schemas and policies"
	@echo "make test       the whole suite: lint, type checks, tests"
	@echo "make routes     regenerate each overlay's LiteLLM routes from its vLLM models"
	@echo "make plan       size the vLLM workloads of every overlay (GPU memory, context, cost)"
	@echo "make bench      print timing figures"

validate:
	@./tools/validate

test: lint typecheck unit

lint:
	@$(ENV) ruff check tools tests

typecheck:
	@$(ENV) mypy

unit:
	@$(ENV) python -m pytest -q

routes:
	@./tools/routes

plan:
	@for env in overlays/*/; do ./tools/plan "$${env%/}" || exit $$?; done

bench:
	@$(ENV) python tests/bench.py

clean:
	rm -rf .venv .venv.lock .venv.install.log .pytest_cache .mypy_cache .ruff_cache
