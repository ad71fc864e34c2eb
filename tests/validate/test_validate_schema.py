"""Schema validation: built-in Kubernetes 1.34 kinds and CRDs, strictly, with exact lines.

Fixtures: tests/fixtures/schema/good (must validate clean), tests/fixtures/schema/bad (one
known problem per file), tests/fixtures/schema/missing (a CRD with no schema anywhere).
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from validate_support import (
    FIXTURES,
    REPO_ROOT,
    CliRun,
    assert_no_crash,
    by_file,
    copy_fixture,
    keys,
    make_scratch_repo,
    run_validate,
    write,
)

GOOD = "tests/fixtures/schema/good"

# file in tests/fixtures/schema/bad -> (rule, line, message fragment, (apiVersion, kind, name))
BAD: dict[str, tuple[str, int, str, tuple[str, str, str]]] = {
    "deployment-unknown-field.yaml": (
        "schema/invalid", 18,
        "spec.template.spec.containers[0].imagePullPolicyy: unknown field 'imagePullPolicyy'",
        ("apps/v1", "Deployment", "typo")),
    "deployment-wrong-type.yaml": (
        "schema/invalid", 6, "spec.replicas: 'two' is not of type 'integer'",
        ("apps/v1", "Deployment", "wrong-type")),
    "deployment-missing-required.yaml": (
        "schema/invalid", 16,
        "spec.template.spec.containers[0]: 'name' is a required property",
        ("apps/v1", "Deployment", "no-name")),
    "pdb-v1beta1.yaml": (
        "schema/unknown-api", 2, "policy/v1beta1 PodDisruptionBudget does not exist in "
        "Kubernetes 1.34", ("policy/v1beta1", "PodDisruptionBudget", "removed-api")),
    "nodepool-bad-enum.yaml": (
        "schema/invalid", 17, "spec.disruption.consolidationPolicy: 'WhenIdle' is not one of",
        ("karpenter.sh/v1", "NodePool", "bad-enum")),
    "nodepool-unknown-field.yaml": (
        "schema/invalid", 16, "unknown field 'ttlSecondsAfterEmpty'",
        ("karpenter.sh/v1", "NodePool", "unknown-field")),
    "ec2nodeclass-missing-required.yaml": (
        "schema/invalid", 6, "spec: 'subnetSelectorTerms' is a required property",
        ("karpenter.k8s.aws/v1", "EC2NodeClass", "no-subnets")),
    "flux-kustomization-wrong-type.yaml": (
        "schema/invalid", 8, "spec.prune: 'yes' is not of type 'boolean'",
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apps")),
    "argocd-application-unknown-field.yaml": (
        "schema/invalid", 16, "spec.syncPolicy.automatic: unknown field 'automatic'",
        ("argoproj.io/v1alpha1", "Application", "metrics")),
    "externalsecret-bad-enum.yaml": (
        "schema/invalid", 13, "spec.target.creationPolicy: 'Always' is not one of",
        ("external-secrets.io/v1", "ExternalSecret", "hf-token")),
    "externalsecret-root-typo.yaml": (
        "schema/invalid", 7, "specs: unknown field 'specs'",
        ("external-secrets.io/v1", "ExternalSecret", "root-typo")),
}


def schema_only(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The schema stage's findings (policies also run on these fixtures; not this file's
    subject)."""
    return [f for f in findings if f["rule"].startswith("schema/")]


def count_documents(folder: Path) -> int:
    total = 0
    for file in folder.glob("*.yaml"):
        total += sum(1 for doc in yaml.safe_load_all(file.read_text()) if doc)
    return total


@pytest.fixture(scope="module")
def good_run(crd_schemas: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    # From the real repository root: builtin kinds and CRDs all resolve locally.
    return run_validate(GOOD, "-f", "json", cwd=REPO_ROOT, crd_schemas=crd_schemas,
                        cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def bad_run(crd_schemas: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    # In a scratch repository whose only locations are `default` + the CRD folder, so the
    # removed API is not looked up on the network.
    repo = make_scratch_repo(tmp_path_factory.mktemp("bad") / "repo")
    copy_fixture("schema/bad", repo)
    return run_validate("bad", "-f", "json", cwd=repo, crd_schemas=crd_schemas,
                        cache_dir=tmp_path_factory.mktemp("cache"))


def test_good_fixtures_validate_clean(good_run: CliRun) -> None:
    assert_no_crash(good_run)
    report = good_run.json()
    assert schema_only(report["findings"]) == []
    assert report["summary"]["targets"] == 1
    assert report["summary"]["resources"] == count_documents(FIXTURES / "schema" / "good")
    assert report["summary"]["resources"] == 8


def test_bad_fixtures_give_exactly_the_known_findings(bad_run: CliRun) -> None:
    assert_no_crash(bad_run)
    assert bad_run.code == 1
    report = bad_run.json()
    expected = {(rule, f"bad/{file}", line) for file, (rule, line, _, _) in BAD.items()}
    found = schema_only(report["findings"])
    assert keys(found) == expected
    assert len(found) == len(BAD)
    assert report["summary"]["resources"] == len(BAD)
    assert {f["severity"] for f in found} == {"error"}


@pytest.mark.parametrize("file", sorted(BAD))
def test_bad_fixture_finding_says_which_document_and_why(bad_run: CliRun, file: str) -> None:
    rule, line, fragment, (api_version, kind, name) = BAD[file]
    [finding] = by_file(schema_only(bad_run.json()["findings"]), f"bad/{file}")
    assert finding["rule"] == rule
    assert finding["line"] == line
    assert fragment in finding["message"]
    assert finding["resource"]["apiVersion"] == api_version
    assert finding["resource"]["kind"] == kind
    assert finding["resource"]["name"] == name
    assert finding["target"] == "bad"


def test_bad_fixtures_are_in_the_repository_tree() -> None:
    """Every fixture the table names exists, and nothing in the folder is untested."""
    assert {p.name for p in (FIXTURES / "schema" / "bad").glob("*.yaml")} == set(BAD)


# --- CRD with no schema anywhere -------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "env_value", "severity", "code"),
    [
        ((), "0", "warning", 0),  # the default: warn, do not fail
        ((), "1", "error", 1),  # CI: a missing schema must not pass silently
        (("--missing-schema-is-error",), "0", "error", 1),
        (("--missing-schema-is-warning",), "1", "warning", 0),  # the flag beats the env
    ],
)
def test_crd_without_schema(validate: Callable[..., Any], scratch_repo: Path,
                            args: tuple[str, ...], env_value: str, severity: str,
                            code: int) -> None:
    copy_fixture("schema/missing", scratch_repo)
    run = validate("missing", "-f", "json", *args, cwd=scratch_repo,
                   env={"VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": env_value})
    assert_no_crash(run)
    report = run.json()
    [finding] = report["findings"]
    assert finding["rule"] == "schema/missing"
    assert finding["severity"] == severity
    assert (finding["file"], finding["line"]) == ("missing/widget.yaml", 2)
    assert "no schema found for widgets.example.com/v1 Widget" in finding["message"]
    assert finding["resource"] == {"apiVersion": "widgets.example.com/v1", "kind": "Widget",
                                   "name": "gizmo", "namespace": None}
    assert report["summary"]["errors"] == (1 if severity == "error" else 0)
    assert report["summary"]["warnings"] == (1 if severity == "warning" else 0)
    assert run.code == code


def test_missing_schema_setting_in_config_file(validate: Callable[..., Any],
                                               scratch_repo: Path) -> None:
    (scratch_repo / "vllm-gitops.yaml").write_text(
        'kubernetesVersion: "1.34.0"\nschemaLocations: [default]\nmissingSchemaIsError: true\n')
    copy_fixture("schema/missing", scratch_repo)
    run = validate("missing", "-f", "json", cwd=scratch_repo,
                   env={"VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "0"})
    assert_no_crash(run)
    assert [f["severity"] for f in run.json()["findings"]] == ["error"]
    assert run.code == 1


# --- where CRD schemas come from ------------------------------------------------------

NODEPOOL_TYPO = FIXTURES / "schema" / "bad" / "nodepool-unknown-field.yaml"


def test_crd_needs_a_schema_location(validate: Callable[..., Any], scratch_repo: Path,
                                     crd_schemas: Path) -> None:
    """Without the CRD folder a NodePool is not validated; `--schema-location` adds it."""
    write(scratch_repo / "np.yaml", NODEPOOL_TYPO.read_text())
    no_crds = {"VLLM_GITOPS_SCHEMA_LOCATIONS": ""}
    without = validate("np.yaml", "-f", "json", cwd=scratch_repo, env=no_crds)
    assert_no_crash(without)
    assert keys(without.json()["findings"]) == {("schema/missing", "np.yaml", 1)}

    with_flag = validate("np.yaml", "-f", "json", "--schema-location", str(crd_schemas),
                         cwd=scratch_repo, env=no_crds)
    assert_no_crash(with_flag)
    assert keys(with_flag.json()["findings"]) == {("schema/invalid", "np.yaml", 16)}
    assert with_flag.code == 1


class _SchemaServer:
    """A local HTTP server for the CRD folder, recording the paths asked for."""

    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                requests.append(self.path)

        handler = functools.partial(Handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.running = False

    @property
    def template(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_" \
               "{{.ResourceAPIVersion}}.json"

    def start(self) -> None:
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.running = False


@pytest.fixture
def schema_server(crd_schemas: Path) -> Iterator[_SchemaServer]:
    server = _SchemaServer(crd_schemas)
    server.start()
    yield server
    server.stop()


def test_url_template_is_fetched_once_then_cached(scratch_repo: Path, crd_schemas: Path,
                                                  tmp_path: Path,
                                                  schema_server: _SchemaServer) -> None:
    write(scratch_repo / "np.yaml", NODEPOOL_TYPO.read_text())
    cache = tmp_path / "url-cache"
    env = {"VLLM_GITOPS_SCHEMA_LOCATIONS": "", "NO_PROXY": "*", "no_proxy": "*"}
    args = ("np.yaml", "-f", "json", "--schema-location", schema_server.template)

    first = run_validate(*args, cwd=scratch_repo, crd_schemas=crd_schemas, cache_dir=cache,
                         env=env)
    assert_no_crash(first)
    assert keys(first.json()["findings"]) == {("schema/invalid", "np.yaml", 16)}
    assert schema_server.requests == ["/karpenter.sh/nodepool_v1.json"]
    assert len(list((cache / "schemas").glob("*.json"))) == 1

    schema_server.stop()  # the network is gone: the cached schema must serve
    second = run_validate(*args, cwd=scratch_repo, crd_schemas=crd_schemas, cache_dir=cache,
                          env=env)
    assert_no_crash(second)
    assert second.json()["findings"] == first.json()["findings"]
    assert schema_server.requests == ["/karpenter.sh/nodepool_v1.json"]


def test_unreachable_schema_url_is_reported_not_fatal(validate: Callable[..., Any],
                                                      scratch_repo: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    write(scratch_repo / "np.yaml", NODEPOOL_TYPO.read_text())
    url = f"http://127.0.0.1:{port}/{{{{.Group}}}}/{{{{.ResourceKind}}}}.json"
    run = validate("np.yaml", "-f", "json", "--schema-location", url, cwd=scratch_repo,
                   env={"VLLM_GITOPS_SCHEMA_LOCATIONS": "", "NO_PROXY": "*", "no_proxy": "*"})
    assert_no_crash(run)
    [finding] = run.json()["findings"]
    assert finding["rule"] == "schema/missing"
    assert f"127.0.0.1:{port}" in finding["message"]
    assert "unreachable" in finding["message"]
    assert run.code == 1


SOPS_SECRET = """apiVersion: v1
kind: Secret
metadata: {name: hf-token, namespace: inference}
stringData:
  token: ENC[AES256_GCM,data:abc,iv:xyz,tag:t,type:str]
sops:
  age: [{recipient: age1xyz, enc: "-----BEGIN AGE ENCRYPTED FILE-----"}]
  mac: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]
  version: 3.9.0
"""
KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [secret.yaml]
"""


def test_sops_metadata_and_kustomize_files_are_not_api_objects(
        validate: Callable[..., Any], scratch_repo: Path) -> None:
    """A folder read as plain YAML may hold a SOPS-encrypted Secret (Flux decrypts it and
    drops `sops` before applying) and the kustomization file itself: neither is an error,
    while a real typo beside them still is."""
    folder = scratch_repo / "plain"
    folder.mkdir()
    (folder / "secret.yaml").write_text(SOPS_SECRET)
    (folder / "build.yaml").write_text(KUSTOMIZATION)
    run = validate("plain", "-f", "json", cwd=scratch_repo)
    assert [f["rule"] for f in run.json()["findings"]] == []
    (folder / "secret.yaml").write_text(SOPS_SECRET.replace("stringData", "stringDatta"))
    run = validate("plain", "-f", "json", cwd=scratch_repo)
    assert [(f["rule"], f["line"]) for f in run.json()["findings"]] == [("schema/invalid", 4)]
