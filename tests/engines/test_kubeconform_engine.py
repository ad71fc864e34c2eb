"""The kubeconform engine against the real binary: the same verdicts as the in-process engine.

The binary is the project's `.bin/kubeconform` (the Makefile's pinned release, built with Go;
`make test` builds it first). When it is missing and Go is here, the fixture builds it; only a
machine with neither Go nor kubeconform skips these tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support import REPO_ROOT, TIMEOUT_SECONDS, Run, run_tool
from vllm_gitops.schema.kubeconform import leaf_errors

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "schema"
MODULE = "vllm_gitops.cli.validate"
PROJECT_BIN = REPO_ROOT / ".bin" / "kubeconform"
# Every folder of schema fixtures: each document a known verdict (clean or one problem).
FIXTURE_FOLDERS = ("good", "bad", "missing", "cel/good", "cel/bad")


def pinned_version() -> str:
    match = re.search(r"^KUBECONFORM_VERSION := (\S+)$", (REPO_ROOT / "Makefile").read_text(),
                      re.MULTILINE)
    assert match, "the Makefile pins no kubeconform version"
    return match.group(1)


@pytest.fixture(scope="session")
def kubeconform() -> Path:
    """The real binary: the project's build, built now when Go is here and it is missing."""
    if not PROJECT_BIN.is_file() and shutil.which("go") and shutil.which("make"):
        subprocess.run(["make", "-s", "kubeconform"], cwd=REPO_ROOT, check=False,
                       capture_output=True, timeout=TIMEOUT_SECONDS)
    if PROJECT_BIN.is_file():
        return PROJECT_BIN
    on_path = shutil.which("kubeconform")
    if on_path is None:
        pytest.skip("neither Go (to build kubeconform) nor kubeconform on PATH")
    return Path(on_path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of our own: the fixtures, the locked schemas, and no network location."""
    root = tmp_path_factory.mktemp("kubeconform") / "repo"
    shutil.copytree(FIXTURES, root / "fixtures", ignore=shutil.ignore_patterns("crds"))
    (root / "vllm-gitops.yaml").write_text(
        f'kubernetesVersion: "1.34.0"\nschemaLocations: [default, {REPO_ROOT / "schemas"}]\n'
        "missingSchemaIsError: true\n")
    return root


def validate(repo: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    base = {"VLLM_GITOPS_SCHEMA_LOCATIONS": "", "VLLM_GITOPS_CACHE_DIR": str(repo / ".cache"),
            "VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "1"}
    return run_tool(MODULE, *args, "-f", "json", cwd=repo, env={**base, **(env or {})})


def verdicts(run: Run) -> list[tuple[str, str, str, int, str]]:
    """(rule, severity, file, line, object) of each schema finding (policies are not ours)."""
    assert "Traceback" not in run.output, run.output
    return sorted((f["rule"], f["severity"], f["file"], f["line"],
                   f"{f['resource']['kind']}/{f['resource']['name']}")
                  for f in run.json()["findings"] if f["rule"].startswith("schema/"))


@pytest.mark.parametrize("folder", FIXTURE_FOLDERS)
def test_real_kubeconform_gives_the_in_process_verdicts(kubeconform: Path, scratch: Path,
                                                        folder: str) -> None:
    target = f"fixtures/{folder}"
    in_process = validate(scratch, target, "--engine", "jsonschema")
    real = validate(scratch, target, "--engine", "kubeconform",
                    env={"VLLM_GITOPS_KUBECONFORM": str(kubeconform)})
    assert verdicts(real) == verdicts(in_process)
    assert real.code == in_process.code
    if folder.endswith("bad") or folder == "missing":
        assert verdicts(real), "a fixture folder of problems gave no finding"


def test_kubeconform_findings_point_at_the_field(kubeconform: Path, scratch: Path) -> None:
    """Its error tree is read down to the leaf: the line of the wrong field, an unknown
    field by its name."""
    run = validate(scratch, "fixtures/bad", "--engine", "kubeconform",
                   env={"VLLM_GITOPS_KUBECONFORM": str(kubeconform)})
    by_file = {f["file"]: f for f in run.json()["findings"] if f["rule"].startswith("schema/")}
    wrong_type = by_file["fixtures/bad/deployment-wrong-type.yaml"]
    assert (wrong_type["line"], wrong_type["rule"]) == (6, "schema/invalid")
    assert wrong_type["message"].startswith("spec.replicas: ")
    typo = by_file["fixtures/bad/deployment-unknown-field.yaml"]
    assert typo["line"] == 18
    assert "unknown field 'imagePullPolicyy'" in typo["message"]


def test_the_built_binary_is_the_pinned_release(kubeconform: Path) -> None:
    if kubeconform != PROJECT_BIN:
        pytest.skip("kubeconform comes from PATH here, not from `make kubeconform`")
    done = subprocess.run([str(kubeconform), "-v"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.strip() == pinned_version()


def test_kubeconform_engine_offline_on_the_repository(kubeconform: Path,
                                                      tmp_path: Path) -> None:
    """The repository validates clean with kubeconform too, from the locked schemas only."""
    run = run_tool(MODULE, "-f", "json", "--engine", "kubeconform", cwd=REPO_ROOT, env={
        "VLLM_GITOPS_SCHEMA_LOCATIONS": "", "VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "1",
        "VLLM_GITOPS_CACHE_DIR": str(tmp_path / "cache"),
        "VLLM_GITOPS_KUBECONFORM": str(kubeconform)})
    assert "Traceback" not in run.output
    assert run.json()["findings"] == []
    assert run.code == 0


def test_a_missing_kubeconform_is_exit_2(scratch: Path) -> None:
    run = validate(scratch, "fixtures/good", "--engine", "kubeconform",
                   env={"VLLM_GITOPS_KUBECONFORM": str(scratch / "no-such-binary")})
    assert run.code == 2
    assert "no kubeconform executable there" in run.stderr
    assert "Traceback" not in run.output


def test_leaf_errors_of_a_kubeconform_message() -> None:
    # The message kubeconform v0.8.0 gives for a Deployment with three problems.
    message = ("problem validating schema. Check JSON formatting: jsonschema validation "
               "failed with 'file:///x/deployment-apps-v1.json#' - at '/spec': validation "
               "failed   - at '/spec/replicas': got string, want null or integer   - at "
               "'/spec/template/spec/containers/0': validation failed     - at "
               "'/spec/template/spec/containers/0': missing property 'name'     - at "
               "'/spec/template/spec/containers/0': additional properties 'imagePullPolicyy' "
               "not allowed")
    assert leaf_errors(message) == [
        (("spec", "replicas"), "got string, want null or integer"),
        (("spec", "template", "spec", "containers", 0), "missing property 'name'"),
        (("spec", "template", "spec", "containers", 0, "imagePullPolicyy"),
         "unknown field 'imagePullPolicyy' (not in the schema; typo?)"),
    ]


def test_kubeconform_json_is_what_we_parse(kubeconform: Path, tmp_path: Path) -> None:
    """Guards the parser against a kubeconform upgrade: the real output, read directly."""
    manifest = tmp_path / "svc.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
                        "spec: {ports: [{port: web}]}\n")
    done = subprocess.run([str(kubeconform), "-output", "json", "-verbose", "-schema-location",
                           str(tmp_path / "none") + "/{{.ResourceKind}}.json", str(manifest)],
                          capture_output=True, text=True, timeout=60, check=False)
    [item] = json.loads(done.stdout)["resources"]
    assert item["status"] == "statusError"
    assert "could not find schema" in item["msg"]


def test_every_locked_schema_gives_kubeconform_the_same_verdict(kubeconform: Path,
                                                                 tmp_path: Path) -> None:
    """One bare object (no spec) per locked kind: each schema loads in kubeconform, and the
    objects it rejects (and where) are those the in-process engine rejects."""
    repo = tmp_path / "repo"
    (repo / "bare").mkdir(parents=True)
    (repo / "vllm-gitops.yaml").write_text(f"schemaLocations: [default, {REPO_ROOT / 'schemas'}]\n")
    lock = yaml.safe_load((REPO_ROOT / "schemas" / "lock.yaml").read_text())["schemas"]
    for entry in lock:
        name = entry["file"].replace("/", "-").removesuffix(".json")
        (repo / "bare" / f"{name}.yaml").write_text(yaml.safe_dump({
            "apiVersion": f"{entry['group']}/{entry['version']}", "kind": entry["kind"],
            "metadata": {"name": "bare"}}))
    in_process = validate(repo, "bare", "--engine", "jsonschema")
    real = validate(repo, "bare", "--engine", "kubeconform",
                    env={"VLLM_GITOPS_KUBECONFORM": str(kubeconform)})
    assert set(verdicts(real)) == set(verdicts(in_process))
    assert not any(rule == "schema/missing" for rule, *_ in verdicts(real))
    rejected = {kind for _, _, _, _, kind in verdicts(real)}
    assert 0 < len(rejected) < len(lock), rejected  # some kinds need a spec, some do not
