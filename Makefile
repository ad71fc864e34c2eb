# The two commands a researcher needs: `make validate` and `make test`.
# Both set up .venv on first use (pinned packages from pyproject.toml, kubectl/kustomize included).
SHELL := /bin/bash
ENV := source tools/_env.sh &&

.PHONY: validate test lint typecheck unit routes plan bench rules-doc clean help kustomize-batch

help:
	@echo "make validate   render every cluster, overlay and base; check schemas and policies"
	@echo "make test       the whole suite: lint, type checks, tests"
	@echo "make routes     regenerate each overlay's LiteLLM routes from its vLLM models"
	@echo "make plan       size the vLLM workloads of every overlay (GPU memory, context, cost)"
	@echo "tools/new-model MODEL --env ENV   add a model: sized, routed, validated (--help)"
	@echo "make bench      print timing figures"
	@echo "make rules-doc  regenerate docs/rules.md, the policy catalogue"

validate: kustomize-batch
	@./tools/validate

test: kustomize-batch kubeconform actionlint lint typecheck unit

# Go programs the tests run, pinned and built from source into .bin/ (git-ignored) with
# `go install`: kubeconform (the `--engine kubeconform` binary) and actionlint (lints the CI
# workflow). Without Go nothing fails: their tests skip and the default engine needs neither.
KUBECONFORM_VERSION := v0.8.0
ACTIONLINT_VERSION := v1.7.12

# $(call go-tool,name,version,module,version command,go install flags)
define go-tool
@if [ -x .bin/$(1) ] && [ "$$(.bin/$(1) $(4) | head -n1)" = "$(2)" ]; then :; \
elif command -v go >/dev/null 2>&1; then \
  echo "building $(1) $(2) into .bin/ (go install)"; \
  GOBIN="$(CURDIR)/.bin" go install $(5) $(3)@$(2) \
  || echo "warning: building $(1) failed (offline?); its tests will skip" >&2; \
else \
  echo "note: no Go, so $(1) is not built (optional). A release binary on PATH works too:"; \
  echo "  https://$(word 1,$(subst /cmd/, ,$(3)))/releases/tag/$(2)"; \
fi
endef

# kustomize-batch (tools/kustomize-batch): `kustomize build` of many folders in one process,
# from kustomize's own library at the release tools/kustomize-batch/go.mod pins. tools/validate
# uses it when built; without Go, renders run `kubectl kustomize` once per folder (slower).
KUSTOMIZE_BATCH_SOURCES := $(wildcard tools/kustomize-batch/*.go) tools/kustomize-batch/go.mod \
  tools/kustomize-batch/go.sum
kustomize-batch: .bin/kustomize-batch

.bin/kustomize-batch: $(KUSTOMIZE_BATCH_SOURCES)
	@if command -v go >/dev/null 2>&1; then \
	  echo "building kustomize-batch into .bin/ (go build)"; \
	  cd tools/kustomize-batch && go build -trimpath -o ../../.bin/kustomize-batch . \
	  || echo "warning: building kustomize-batch failed (offline?); renders use kubectl kustomize" >&2; \
	else \
	  echo "note: no Go, so kustomize-batch is not built (optional): renders use kubectl kustomize"; \
	fi

.PHONY: kubeconform actionlint
kubeconform:
	$(call go-tool,kubeconform,$(KUBECONFORM_VERSION),github.com/yannh/kubeconform/cmd/kubeconform,-v,-ldflags "-X main.version=$(KUBECONFORM_VERSION)")

actionlint:
	$(call go-tool,actionlint,$(ACTIONLINT_VERSION),github.com/rhysd/actionlint/cmd/actionlint,-version,)

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

bench: kustomize-batch
	@$(ENV) python tests/bench.py

rules-doc:
	@./tools/validate --list-rules --format markdown --output docs/rules.md

clean:
	rm -rf .venv .venv.lock .venv.install.log .pytest_cache .mypy_cache .ruff_cache
