"""CEL validation rules (x-kubernetes-validations) of the locked CRD schemas.

Fixtures: tests/fixtures/schema/cel/bad (each file breaks one real rule of a locked schema)
and tests/fixtures/schema/cel/good (the valid variants). The evaluator's Kubernetes details
(defaulting, escaped field names, fieldPath, messageExpression, transition rules, functions
it lacks) are checked on small schemas written here.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support import REPO_ROOT, Run, run_tool
from vllm_gitops.findings import Finding, SourceLocation
from vllm_gitops.pipeline import _once_per_message
from vllm_gitops.schema.cel import CelEvaluator, _called_functions, escape, rules_of_schema
from vllm_gitops.schema.engine import CelRules

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "schema" / "cel"
SCHEMAS = REPO_ROOT / "schemas"

# file in cel/bad -> (line, message): the rule's own message, at the field it guards.
BAD = {
    "nodepool-restricted-requirement.yaml": (
        17, 'spec.template.spec.requirements[1].key: label "karpenter.sh/nodepool" is '
            "restricted"),
    "nodepool-restricted-label.yaml": (
        9, 'spec.template.metadata.labels: label "kubernetes.io/hostname" is restricted'),
    "nodepool-budget-schedule.yaml": (
        19, "spec.disruption.budgets: 'schedule' must be set with 'duration'"),
    "ec2nodeclass-alias-conflict.yaml": (
        6, "spec: if set, amiFamily must be 'AL2023' or 'Custom' when using an AL2023 alias"),
    "ec2nodeclass-role-and-profile.yaml": (
        6, "spec: must specify exactly one of ['role', 'instanceProfile']"),
    "ec2nodeclass-windows-version.yaml": (
        8, "spec.amiSelectorTerms[0].alias: windows families may only specify version "
           "'latest'"),
    "httproute-backend-port.yaml": (
        11, "spec.rules[0].backendRefs[0]: Must have port for Service reference"),
    "httproute-timeouts.yaml": (
        13, "spec.rules[0].timeouts: backendRequest timeout cannot be longer than request "
            "timeout"),
    "gateway-duplicate-listener.yaml": (
        8, "spec.listeners: Listener name must be unique within the Gateway"),
}


def run_fixtures(folder: str, tmp_path: Path) -> Run:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / folder, repo / folder)
    (repo / "vllm-gitops.yaml").write_text(
        f'kubernetesVersion: "1.34.0"\nschemaLocations: [default, {SCHEMAS}]\n')
    return run_tool("vllm_gitops.cli.validate", folder, "-f", "json", cwd=repo, env={
        "VLLM_GITOPS_SCHEMA_LOCATIONS": "", "VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "1",
        "VLLM_GITOPS_CACHE_DIR": str(tmp_path / "cache")})


def schema_findings(run: Run) -> list[dict[str, Any]]:
    assert "Traceback" not in run.output, run.output
    return [f for f in run.json()["findings"] if f["rule"].startswith("schema/")]


def test_each_bad_fixture_breaks_its_rule_at_its_line(tmp_path: Path) -> None:
    found = {(f["file"].removeprefix("bad/"), f["line"], f["message"])
             for f in schema_findings(run_fixtures("bad", tmp_path))}
    assert found == {(file, line, message) for file, (line, message) in BAD.items()}
    assert {p.name for p in (FIXTURES / "bad").glob("*.yaml")} == set(BAD)


def test_bad_findings_are_errors_of_rule_schema_cel(tmp_path: Path) -> None:
    run = run_fixtures("bad", tmp_path)
    assert {(f["rule"], f["severity"]) for f in schema_findings(run)} == {
        ("schema/cel", "error")}
    assert run.code == 1


def test_the_valid_variants_are_clean(tmp_path: Path) -> None:
    run = run_fixtures("good", tmp_path)
    assert schema_findings(run) == []  # policies (not this test's subject) may add advice


# --- every locked rule ------------------------------------------------------------------

def locked_rules() -> list[tuple[str, Any]]:
    out = []
    for path in sorted(SCHEMAS.glob("*/*.json")):
        for rule in rules_of_schema(json.loads(path.read_bytes())):
            out.append((path.relative_to(SCHEMAS).as_posix(), rule))
    return out


def test_every_locked_rule_compiles_with_known_functions() -> None:
    """No rule of a locked schema is unevaluable: cel-python parses each, and each function
    it calls is standard CEL or implemented in cel_library."""
    evaluator = CelEvaluator()
    rules = [rule for _, rule in locked_rules()]
    problems = {rule.rule: evaluator._compile(rule.rule).problem for rule in rules}
    assert {text: p for text, p in problems.items() if p} == {}
    per_kind = Counter(file for file, rule in locked_rules() if not rule.is_transition)
    assert sum(per_kind.values()) == 223
    assert sum(1 for _, rule in locked_rules() if rule.is_transition) == 5
    called = set().union(*(_called_functions(evaluator._environment.compile(r.rule))
                           for r in rules))
    assert {"find", "split"} <= called  # the Kubernetes library functions the locks need


# --- Kubernetes semantics, on small schemas ----------------------------------------------

def obj(properties: dict[str, Any], rules: list[dict[str, str]] | None = None,
        **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if rules:
        node["x-kubernetes-validations"] = rules
    return node


STRING = {"type": "string"}


def failures(schema: dict[str, Any], doc: dict[str, Any]) -> list[tuple[Any, str, bool]]:
    return [(f.path, f.message, f.unevaluable) for f in CelEvaluator().failures(schema, doc)]


def test_defaults_apply_before_the_rules() -> None:
    """The API server defaults first: a rule may read a field the manifest leaves out."""
    schema = obj({"spec": obj({"kind": {**STRING, "default": "Service"},
                               "port": {"type": "integer"}},
                              [{"rule": "self.kind != 'Service' || has(self.port)",
                                "message": "port is required"}])})
    assert failures(schema, {"spec": {}}) == [(("spec",), "port is required", False)]
    assert failures(schema, {"spec": {"port": 80}}) == []
    assert failures(schema, {"spec": {"kind": "Other"}}) == []


def test_reserved_and_dashed_field_names_are_escaped() -> None:
    schema = obj({"spec": obj({"namespace": STRING, "max-size": STRING},
                              [{"rule": "self.__namespace__ == 'a' && "
                                        "self.max__dash__size == 'b'", "message": "no"}])})
    assert failures(schema, {"spec": {"namespace": "a", "max-size": "b"}}) == []
    assert failures(schema, {"spec": {"namespace": "x", "max-size": "b"}}) == [
        (("spec",), "no", False)]
    assert escape("a.b/c__d") == "a__dot__b__slash__c__underscores__d"


def test_field_path_and_message_expression_make_the_finding() -> None:
    schema = obj({"spec": obj({"min": {"type": "integer"}, "max": {"type": "integer"}}, [
        {"rule": "self.min <= self.max", "fieldPath": ".max",
         "messageExpression": "'max ' + string(self.max) + ' is below min ' + "
                              "string(self.min)"}])})
    assert failures(schema, {"spec": {"min": 3, "max": 1}}) == [
        (("spec", "max"), "max 1 is below min 3", False)]


def test_without_a_message_the_rule_is_the_message() -> None:
    schema = obj({"spec": obj({"a": STRING}, [{"rule": "self.a == 'x'"}])})
    assert failures(schema, {"spec": {"a": "y"}}) == [
        (("spec",), "failed rule: self.a == 'x'", False)]


def test_transition_rules_are_skipped() -> None:
    schema = obj({"spec": obj({"a": STRING}, [{"rule": "self == oldSelf", "message": "imm"}])})
    assert failures(schema, {"spec": {"a": "y"}}) == []
    [rule] = rules_of_schema(schema)
    assert rule.is_transition


def test_a_missing_field_the_rule_reads_is_an_error_like_the_api_server() -> None:
    schema = obj({"spec": obj({"a": STRING}, [{"rule": "self.a == 'x'", "message": "m"}])})
    [(path, message, unevaluable)] = failures(schema, {"spec": {}})
    assert (path, unevaluable) == (("spec",), False)
    assert "no such member" in message or "no such key" in message


def test_an_unknown_function_is_unevaluable_in_each_verdict_and_reported_once() -> None:
    schema = obj({"spec": obj({"u": STRING}, [
        {"rule": "url(self.u).getHost() == 'x'", "message": "host"}])})
    cel = CelRules()
    first = cel.problems(schema, {"apiVersion": "x/v1", "kind": "K", "spec": {"u": "http://a"}})
    second = cel.problems(schema, {"apiVersion": "x/v1", "kind": "K",
                                   "spec": {"u": "http://b"}})
    [(rule, severity, path, message)] = first
    assert (rule, severity.value, path) == ("schema/cel-unevaluable", "warning", ("spec",))
    assert "getHost, url" in message and "url(self.u).getHost()" in message
    assert second == first  # each object's verdict says so: verdicts are kept per object
    found = [Finding(rule, severity, message, "t", location=SourceLocation(f"{n}.yaml", 1))
             for n in ("a", "b")]
    assert _once_per_message(found) == found[:1]  # the report


@pytest.mark.parametrize(("rule", "value", "holds"), [
    ("self.find('^[^@]+') == 'al2023'", "al2023@v1", True),
    ("self.split('@')[1] == 'latest'", "windows2022@latest", True),
    ("self.split('@')[1] == 'latest'", "windows2022@v1", False),
    ("quantity(self).isGreaterThan(quantity('1Gi'))", "2Gi", True),
    ("quantity(self).compareTo(quantity('1000M')) == 0", "1G", True),
    ("isQuantity(self)", "12Zi", False),
    ("self.lowerAscii().startsWith('ab')", "ABc", True),
    ("self.substring(1, 3) == 'bc' && self.indexOf('c') == 2", "abcd", True),
    ("self.findAll('[0-9]+').size() == 2", "a1b22", True),
])
def test_kubernetes_library_functions(rule: str, value: str, holds: bool) -> None:
    schema = obj({"v": {**STRING, "x-kubernetes-validations": [
        {"rule": rule, "message": "broken"}]}})
    assert (failures(schema, {"v": value}) == []) is holds


@pytest.mark.parametrize(("rule", "holds"), [
    ("self.isSorted()", True), ("[3, 1].isSorted()", False), ("self.sum() == 6", True),
    ("self.min() == 1 && self.max() == 3", True), ("self.indexOf(2) == 1", True),
])
def test_kubernetes_list_functions(rule: str, holds: bool) -> None:
    schema = obj({"v": {"type": "array", "items": {"type": "integer"},
                        "x-kubernetes-validations": [{"rule": rule, "message": "broken"}]}})
    assert (failures(schema, {"v": [1, 2, 3]}) == []) is holds
