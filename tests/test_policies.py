"""Every rule fires on its fire.yaml with the stated count, and stays quiet on pass.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import REPO_ROOT
from vllm_gitops.findings import Severity
from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.policies.registry import RULES, _load_builtin_rules, run_policies
from vllm_gitops.settings import load_settings

_load_builtin_rules()
POLICIES = REPO_ROOT / "policies"


def findings_for(rule_id: str, fixture: Path) -> list[str]:
    settings = load_settings(REPO_ROOT)
    scope = ScopeLoader(settings).load(Target(fixture, fixture.name, "paths"))
    assert not scope.findings, scope.findings
    return [f.rule for f in run_policies(scope, [RULES[rule_id]])]


def expected_count(fixture: Path) -> int:
    match = re.match(r"# expect: (\d+)", fixture.read_text())
    assert match, f"{fixture} must start with '# expect: N'"
    return int(match.group(1))


def test_every_rule_has_fixtures() -> None:
    missing = [rule_id for rule_id in RULES
               if not ((POLICIES / rule_id / "fire.yaml").is_file()
                       and (POLICIES / rule_id / "pass.yaml").is_file())]
    assert not missing, f"rules without policies/<id>/fire.yaml and pass.yaml: {missing}"


def test_no_fixture_without_a_rule() -> None:
    folders = {p.parent.relative_to(POLICIES).as_posix() for p in POLICIES.rglob("fire.yaml")}
    assert folders <= set(RULES), folders - set(RULES)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_fires(rule_id: str) -> None:
    fixture = POLICIES / rule_id / "fire.yaml"
    count = expected_count(fixture)
    assert count > 0
    assert findings_for(rule_id, fixture) == [rule_id] * count


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_passes(rule_id: str) -> None:
    fixture = POLICIES / rule_id / "pass.yaml"
    assert expected_count(fixture) == 0
    assert findings_for(rule_id, fixture) == []


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_explains_itself(rule_id: str) -> None:
    rule = RULES[rule_id]
    assert rule.severity in Severity
    assert len(rule.summary) < 100 and "\n" not in rule.summary
    assert len(rule.why) > 60 and len(rule.fix) > 20


def test_exemption_needs_a_reason(tmp_path: Path) -> None:
    fire = (POLICIES / "wiring/service-selects-nothing/fire.yaml").read_text()
    exempted = fire.replace(
        "metadata: {name: vllm, namespace: inference}\nspec:\n  selector: {app: vllm-server}",
        "metadata:\n  name: vllm\n  namespace: inference\n  annotations:\n"
        "    vllm-gitops.io/exempt: 'wiring/service-selects-nothing: {}'\n"
        "spec:\n  selector: {app: vllm-server}", 1)
    with_reason = tmp_path / "with-reason.yaml"
    with_reason.write_text(exempted.replace("{}", "endpoints come from an operator"))
    without = tmp_path / "without.yaml"
    without.write_text(exempted.replace("{}", ""))
    loader = ScopeLoader(load_settings(tmp_path))
    rule = [RULES["wiring/service-selects-nothing"]]
    ok = run_policies(loader.load(Target(with_reason, "x", "paths")), rule)
    bad = run_policies(loader.load(Target(without, "x", "paths")), rule)
    assert [f.rule for f in ok] == []
    # Without a reason the exemption does not count: the rule fires, and so does the guard.
    assert sorted(f.rule for f in bad) == ["exemption/no-reason", "wiring/service-selects-nothing"]
    assert next(f.line for f in bad if f.rule == "exemption/no-reason") == 9


def test_a_rule_that_crashes_is_reported_not_fatal(tmp_path: Path) -> None:
    from vllm_gitops.policies.registry import Rule, _check

    def broken(scope: object) -> list[object]:
        raise KeyError("env")

    rule = Rule("test/broken", Severity.ERROR, "s", "w" * 61, "f" * 21, broken)  # type: ignore[arg-type]
    scope = ScopeLoader(load_settings(tmp_path)).load(
        Target(POLICIES / "wiring/probe-port/pass.yaml", "x", "paths"))
    [finding] = _check(rule, scope)
    assert finding.rule == "policy/not-evaluated"
    assert finding.severity is Severity.WARNING
    assert "test/broken" in finding.message and "KeyError" in finding.message


def test_malformed_vllm_container_is_a_schema_error_not_a_crash(tmp_path: Path) -> None:
    from support import run_tool

    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        (POLICIES / "wiring/probe-port/pass.yaml").read_text()
        .replace("          image: vllm/vllm-openai:v0.11.0\n",
                 "          image: vllm/vllm-openai:v0.11.0\n          env: [HF_TOKEN]\n"
                 "          envFrom: [oops]\n", 1))
    run = run_tool("vllm_gitops.cli.validate", str(manifest), "-f", "json", cwd=tmp_path)
    assert run.code == 1, run.output
    assert "Traceback" not in run.output
    rules = {f["rule"] for f in run.json()["findings"]}
    assert "schema/invalid" in rules


PASS_FIXTURES = sorted(POLICIES.rglob("pass.yaml"))


@pytest.mark.parametrize("fixture", PASS_FIXTURES,
                         ids=[p.parent.relative_to(POLICIES).as_posix() for p in PASS_FIXTURES])
def test_pass_fixtures_are_good_manifests(fixture: Path) -> None:
    """A pass.yaml is a manifest that works: no rule (schema included) finds an error in it.
    They are the "good manifests" of tests/compare_tools.py, where any error is a false one."""
    from vllm_gitops.pipeline import targets_from_paths, validate

    # A kind whose schema is not locked (SealedSecret, cert-manager, HelmRepository) is a gap
    # of the lock, not a defect of the manifest: here it stays a warning even in CI.
    settings = load_settings(REPO_ROOT).with_overrides(missing_schema_is_error=False)
    report = validate([targets_from_paths([fixture], settings)], settings, paths=[fixture])
    assert report.resources > 0
    errors = [f"{f.rule} (line {f.line}): {f.message}" for f in report.findings
              if f.severity is Severity.ERROR]
    assert not errors, "\n".join(errors)
