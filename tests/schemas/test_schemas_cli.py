"""`tools/schemas`: the schema lock (list, add, check) and a fresh clone validating offline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import REPO_ROOT, Run, run_tool

MODULE = "vllm_gitops.cli.schemas"
SCHEMAS = REPO_ROOT / "schemas"
CRD_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "schema" / "crds" / "inferencemodels-v0.5.1.yaml"
# Every custom resource kind the repository's manifests use (README's tour), by API version.
KINDS_USED = {
    ("karpenter.sh/v1", "NodePool"), ("karpenter.k8s.aws/v1", "EC2NodeClass"),
    ("external-secrets.io/v1", "ExternalSecret"), ("external-secrets.io/v1", "ClusterSecretStore"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("argoproj.io/v1alpha1", "Application"), ("argoproj.io/v1alpha1", "AppProject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"), ("keda.sh/v1alpha1", "ScaledObject"),
}


def schemas(*args: str, cwd: Path = REPO_ROOT) -> Run:
    run = run_tool(MODULE, *args, cwd=cwd)
    assert "Traceback" not in run.output, run.output
    return run


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the repository's schema folder in a repository of its own."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "vllm-gitops.yaml").write_text("schemaLocations: [default, schemas]\n")
    shutil.copytree(SCHEMAS, root / "schemas")
    return root


def lock_of(root: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load((root / "schemas" / "lock.yaml")
                                                   .read_text())["schemas"]
    return entries


# --- check ------------------------------------------------------------------------------

def test_the_repository_lock_matches() -> None:
    run = schemas("check")
    assert run.code == 0
    assert run.stdout.strip() == f"schema lock: {len(lock_of(REPO_ROOT))} schemas, all match"
    assert schemas("--check").code == 0


def test_lock_sha256_is_each_files_own() -> None:
    for entry in lock_of(REPO_ROOT):
        data = (SCHEMAS / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        assert (SCHEMAS / entry["license_file"]).is_file()
        assert entry["source"].startswith("https://github.com/")


def test_the_lock_holds_every_kind_the_repository_uses() -> None:
    locked = {(f"{e['group']}/{e['version']}", e["kind"]) for e in lock_of(REPO_ROOT)}
    assert locked >= KINDS_USED
    wanted = {"HelmRelease", "PodMonitor", "TriggerAuthentication", "HTTPRoute", "Gateway",
              "InferencePool", "InferenceModel", "ApplicationSet", "SecretStore"}
    assert wanted <= {kind for _, kind in locked}


def test_an_edited_schema_is_caught(repo: Path) -> None:
    path = repo / "schemas" / "karpenter.sh" / "nodepool_v1.json"
    path.write_text(path.read_text().replace('"WhenEmpty"', '"WhenIdle"', 1))
    run = schemas("check", cwd=repo)
    assert run.code == 1
    assert "schemas/karpenter.sh/nodepool_v1.json: sha256 differs from the lock" in run.stdout


def test_an_unlocked_and_a_missing_schema_are_caught(repo: Path) -> None:
    (repo / "schemas" / "example.com").mkdir()
    (repo / "schemas" / "example.com" / "widget_v1.json").write_text("{}\n")
    (repo / "schemas" / "keda.sh" / "scaledobject_v1alpha1.json").unlink()
    run = schemas("check", cwd=repo)
    assert run.code == 1
    assert "schemas/example.com/widget_v1.json: not in the lock" in run.stdout
    assert "schemas/keda.sh/scaledobject_v1alpha1.json: locked but missing" in run.stdout
    assert "2 problem(s)" in run.stdout


def test_a_malformed_lock_is_exit_2_with_its_line(repo: Path) -> None:
    lock = repo / "schemas" / "lock.yaml"
    lock.write_text(lock.read_text().replace("  license: MIT\n", "", 1))
    run = schemas("check", cwd=repo)
    assert run.code == 2
    assert "schemas/lock.yaml:4: schema entry lacks license" in run.stderr


# --- list -------------------------------------------------------------------------------

def test_list_shows_kinds_releases_and_rules() -> None:
    run = schemas("list", "--rules")
    assert run.code == 0
    rows = {line.split()[0] + " " + line.split()[1]: line for line in run.stdout.splitlines()
            if line.strip() and len(line.split()) > 2}
    nodepool = rows["NodePool karpenter.sh/v1"]
    assert "Karpenter v1.14.1" in nodepool and "MIT" in nodepool
    assert nodepool.split()[-2:] == ["17", "3"]  # 3 transition rules (oldSelf) skipped
    assert rows["InferencePool inference.networking.k8s.io/v1"].split()[-3] == "Apache-2.0"


# --- add --------------------------------------------------------------------------------

def test_add_from_a_crd_file_converts_like_the_catalog(repo: Path) -> None:
    target = repo / "schemas" / "inference.networking.x-k8s.io" / "inferencemodel_v1alpha2.json"
    target.unlink()
    run = schemas("add", "--crd", str(CRD_FIXTURE), "--release", "Test v0.5.1",
                  "--source", "https://example.com/crd.yaml", "--license", "Apache-2.0",
                  "--license-file", "licenses/gateway-api-inference-extension.Apache-2.0.txt",
                  cwd=repo)
    assert run.code == 0, run.output
    assert "added schemas/inference.networking.x-k8s.io/inferencemodel_v1alpha2.json" in \
        run.stdout
    converted = json.loads(target.read_text())
    # The catalog's conversion: strict below the root, root left open, CEL rules kept.
    assert "additionalProperties" not in converted
    assert converted["properties"]["spec"]["additionalProperties"] is False
    assert "x-kubernetes-validations" in json.dumps(converted)
    assert target.read_bytes() == (SCHEMAS / target.relative_to(repo / "schemas")).read_bytes()
    [entry] = [e for e in lock_of(repo) if e["kind"] == "InferenceModel"]
    assert (entry["release"], entry["source"], entry["license"]) == (
        "Test v0.5.1", "https://example.com/crd.yaml", "Apache-2.0")
    assert schemas("check", cwd=repo).code == 0


def test_add_needs_the_licence_text(repo: Path) -> None:
    run = schemas("add", "--crd", str(CRD_FIXTURE), cwd=repo)
    assert run.code == 2
    assert "--license-file (none)" in run.stderr
    assert schemas("check", cwd=repo).code == 0  # nothing half-written


def test_add_refuses_a_file_that_is_not_a_crd(repo: Path) -> None:
    bad = repo / "deployment.yaml"
    bad.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    run = schemas("add", "--crd", str(bad), "--license-file", "licenses/CRDs-catalog.MIT.txt",
                  cwd=repo)
    assert run.code == 2
    assert "no CustomResourceDefinition" in run.stderr


class _Catalog:
    """A local stand-in for the CRDs catalog (a real HTTP server over a folder)."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def template(self) -> str:
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}/{{{{.Group}}}}/{{{{.ResourceKind}}}}_" \
               "{{.ResourceAPIVersion}}.json"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[_Catalog]:
    folder = tmp_path / "catalog" / "keda.sh"
    folder.mkdir(parents=True)
    shutil.copy(SCHEMAS / "keda.sh" / "scaledobject_v1alpha1.json", folder)
    served = _Catalog(tmp_path / "catalog")
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_add_from_the_catalog_keeps_the_file_byte_for_byte(repo: Path,
                                                           catalog: _Catalog) -> None:
    target = repo / "schemas" / "keda.sh" / "scaledobject_v1alpha1.json"
    target.unlink()
    run = schemas("add", "--catalog", "keda.sh/v1alpha1/ScaledObject", "--catalog-url",
                  catalog.template, cwd=repo)
    assert run.code == 0, run.output
    assert target.read_bytes() == (SCHEMAS / "keda.sh" / "scaledobject_v1alpha1.json").read_bytes()
    [entry] = [e for e in lock_of(repo) if e["kind"] == "ScaledObject"]
    assert entry["license"] == "MIT"
    assert entry["license_file"] == "licenses/CRDs-catalog.MIT.txt"
    assert entry["source"].endswith("/keda.sh/scaledobject_v1alpha1.json")
    assert schemas("check", cwd=repo).code == 0


def test_add_from_an_unreachable_catalog_is_exit_2(repo: Path, catalog: _Catalog) -> None:
    run = schemas("add", "--catalog", "example.com/v1/Widget", "--catalog-url",
                  catalog.template, cwd=repo)
    assert run.code == 2
    assert "cannot fetch http://127.0.0.1:" in run.stderr
    assert schemas("check", cwd=repo).code == 0


# --- a fresh clone, offline, nothing beside it --------------------------------------------

IGNORED = shutil.ignore_patterns(".git", ".venv", ".bin", ".cache", "__pycache__", ".*_cache",
                                 "*.egg-info", ".venv*")


def test_a_fresh_clone_validates_offline_with_no_warning(tmp_path: Path) -> None:
    """Copied alone into an empty folder (no ../shared), with no schema cache and the
    catalog URL unreachable: every custom resource is checked from schemas/."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO_ROOT, clone, ignore=IGNORED)
    run = run_tool("vllm_gitops.cli.validate", "-f", "json", cwd=clone, env={
        "VLLM_GITOPS_SCHEMA_LOCATIONS": "", "VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "0",
        "VLLM_GITOPS_CACHE_DIR": str(tmp_path / "cache"), "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9"})
    assert "Traceback" not in run.output, run.output
    report = run.json()
    assert [f"{f['rule']} {f['file']}:{f['line']} {f['message']}"
            for f in report["findings"]] == []
    assert report["summary"]["resources"] > 100
    assert run.code == 0
    assert not (tmp_path / "cache" / "schemas").exists()  # nothing was fetched
