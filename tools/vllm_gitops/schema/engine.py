"""Stage 3: every document against its schema, strictly (unknown fields are errors), then the
CRD's own validation rules (CEL, `x-kubernetes-validations`) as the API server evaluates them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing import Resource as RefResource
from referencing.jsonschema import DRAFT202012

from vllm_gitops.findings import Finding, Severity
from vllm_gitops.resources import Resource
from vllm_gitops.schema.locations import SchemaKey, SchemaLocations, builtin_schema_dir
from vllm_gitops.yamlsafe import FieldPath

if TYPE_CHECKING:
    from vllm_gitops.schema.cel import CelEvaluator

MAX_ERRORS_PER_RESOURCE = 20
MAX_KEPT_VERDICTS = 50_000  # about 6 MB on disk (some 115 bytes each)
_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"


class SchemaEngine(Protocol):
    name: str

    def validate(self, resources: list[Resource]) -> list[list[Finding]]:
        """The findings of each resource, in the order given (one call: a batch)."""
        ...


BUILD_CONFIG_GROUPS = ("kustomize.config.k8s.io", "config.kubernetes.io")


def is_build_config(resource: Resource) -> bool:
    """A kustomization or component file read as plain YAML: input to kustomize, never sent
    to the API server, so no API schema applies."""
    return resource.api_version.split("/")[0] in BUILD_CONFIG_GROUPS


def as_applied(resource: Resource) -> Resource:
    """The object as the API server receives it: Flux's kustomize-controller decrypts a
    SOPS-encrypted file and drops its top-level `sops` metadata before applying
    (https://fluxcd.io/flux/guides/mozilla-sops/)."""
    if "sops" not in resource.doc:
        return resource
    doc = {key: value for key, value in resource.doc.items() if key != "sops"}
    return Resource(doc, resource.target, resource.layers)


def check_each_once(engine: SchemaEngine, resources: Iterable[Resource]) -> dict[int, list[
        Finding]]:
    """id(document) -> its findings, each document checked once in one batch however many
    scopes include it (scopes that share a rendered folder share its documents)."""
    unique = {id(r.doc): r for r in resources if not is_build_config(r)}
    verdicts = engine.validate([as_applied(r) for r in unique.values()]) if unique else []
    return dict(zip(unique, verdicts, strict=True))


def located(resource: Resource, rule: str, severity: Severity, message: str,
            path: FieldPath = ()) -> Finding:
    return Finding(rule, severity, message, resource.target, resource.ref,
                   resource.location_of(path) if path else resource.source)


def missing_identity(resource: Resource) -> Finding | None:
    if resource.api_version and resource.kind:
        return None
    return located(resource, "schema/no-kind", Severity.ERROR,
                   "document has no apiVersion or kind: not a Kubernetes object")


def missing_schema(resource: Resource, key: SchemaKey, locations: SchemaLocations,
                   missing_is_error: bool) -> Finding:
    if key.is_builtin_group:
        return located(resource, "schema/unknown-api", Severity.ERROR,
                       f"{key} does not exist in Kubernetes {locations.kubernetes_version} "
                       "(typo in apiVersion/kind, or an API version that was removed)")
    return located(resource, "schema/missing", Severity.ERROR if missing_is_error
                   else Severity.WARNING,
                   f"no schema found for {key}; not validated (tried: {locations.tried()})")


# (rule, severity, path, message) of one object's problems: what the verdict cache holds,
# under (schema, sha256 of the document).
Problem = tuple[str, Severity, FieldPath, str]
Verdict = tuple[SchemaKey, str]


class CelRules:
    """The CEL stage both engines share: rules of non-built-in schemas. A rule that cannot
    be evaluated is a warning in the verdict of every object it applies to (verdicts are kept
    per object); the report shows it once (pipeline.py)."""

    def __init__(self) -> None:
        self._evaluator: CelEvaluator | None = None

    @property
    def evaluator(self) -> CelEvaluator:
        """Built on first use: building the CEL parser takes a noticeable part of a second,
        and a run whose documents all have known verdicts needs none."""
        if self._evaluator is None:
            from vllm_gitops.schema.cel import CelEvaluator

            self._evaluator = CelEvaluator()
        return self._evaluator

    def problems(self, schema: dict[str, Any], doc: dict[str, Any]) -> list[Problem]:
        out: list[Problem] = []
        for failure in self.evaluator.failures(schema, doc):
            if not failure.unevaluable:
                where = dotted(failure.path) or "(document)"
                out.append(("schema/cel", Severity.ERROR, failure.path,
                            f"{where}: {failure.message}"))
            else:
                out.append(("schema/cel-unevaluable", Severity.WARNING, failure.path,
                            f"{doc.get('apiVersion')} {doc.get('kind')}: a CEL rule is not "
                            f"checked, {failure.message}"))
        return out


class JsonSchemaEngine:
    """In-process validation with the schemas kubeconform uses (kubernetes-validate, CRDs)."""

    name = "jsonschema"

    def __init__(self, locations: SchemaLocations, missing_is_error: bool,
                 known: dict[Verdict, list[Problem]] | None = None) -> None:
        self.locations = locations
        self.missing_is_error = missing_is_error
        self._validators: dict[SchemaKey, Draft202012Validator] = {}
        self._registry: Registry[Any] | None = None
        self._verdicts: dict[Verdict, list[Problem]] = dict(known or {})  # earlier runs'
        self.used: set[Verdict] = set()
        self.fresh = 0  # verdicts reached in this run
        self._schemas: dict[SchemaKey, dict[str, Any]] = {}  # non-built-in: carry CEL rules
        self.cel = CelRules()

    def validate(self, resources: list[Resource]) -> list[list[Finding]]:
        return [self.validate_one(resource) for resource in resources]

    def validate_one(self, resource: Resource) -> list[Finding]:
        problem = missing_identity(resource)
        if problem:
            return [problem]
        key = SchemaKey.of(resource.api_version, resource.kind)
        digest = hashlib.sha256(json.dumps(resource.doc, sort_keys=True, default=str)
                                .encode()).hexdigest()
        verdict = self._verdicts.get((key, digest))
        if verdict is None:
            validator = self._validator(key)
            if validator is None:
                return [missing_schema(resource, key, self.locations, self.missing_is_error)]
            verdict = [("schema/invalid", Severity.ERROR, *_describe(e))
                       for e in _errors(validator, resource.doc)]
            if not verdict and key in self._schemas:  # CEL only on a structurally valid object
                verdict = self.cel.problems(self._schemas[key], resource.doc)
            self._verdicts[(key, digest)] = verdict
            self.fresh += 1
        self.used.add((key, digest))
        return [located(resource, rule, severity, message, path)
                for rule, severity, path, message in verdict]

    def verdicts_to_keep(self) -> dict[Verdict, list[Problem]]:
        """What a later run may reuse: the known verdicts and this run's, only this run's
        once they are too many."""
        if len(self._verdicts) <= MAX_KEPT_VERDICTS:
            return self._verdicts
        return {k: v for k, v in self._verdicts.items() if k in self.used}

    def _validator(self, key: SchemaKey) -> Draft202012Validator | None:
        if key not in self._validators:
            found = self.locations.find(key)
            if found is None:
                return None
            schema = found.schema if found.builtin else strict_root(found.schema)
            if not found.builtin:
                self._schemas[key] = found.schema
            registry = self._builtin_registry() if found.builtin else Registry()
            self._validators[key] = Draft202012Validator(schema, registry=registry)
        return self._validators[key]

    def _builtin_registry(self) -> Registry[Any]:
        if self._registry is None:
            folder = builtin_schema_dir(self.locations.kubernetes_version)
            definitions = json.loads((folder / "_definitions.json").read_bytes())
            resource = RefResource.from_contents(definitions, default_specification=DRAFT202012)
            self._registry = Registry().with_resource(_DEFINITIONS_URI, resource)
        return self._registry


def strict_root(schema: dict[str, Any]) -> dict[str, Any]:
    """CRD catalog schemas are strict below the root; make a top-level typo an error too."""
    if "properties" in schema and "additionalProperties" not in schema:
        return {**schema, "additionalProperties": False}
    return schema


def _errors(validator: Draft202012Validator, doc: dict[str, Any]) -> Iterable[ValidationError]:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for error in errors[:MAX_ERRORS_PER_RESOURCE]:
        yield best_match(error.context) if error.context else error


def _describe(error: ValidationError) -> tuple[FieldPath, str]:
    path: FieldPath = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        allowed = set(schema.get("properties", {}))
        unknown = sorted(str(k) for k in error.instance if k not in allowed)
        if unknown:
            path = (*path, unknown[0])
            where = dotted(path)
            return path, f"{where}: unknown field {unknown[0]!r} (not in the schema; typo?)"
    return path, f"{dotted(path) or '(document)'}: {error.message}"


def dotted(path: FieldPath) -> str:
    """A field path as people write it: spec.template.spec.containers[0]."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out
