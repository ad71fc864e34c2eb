"""Subtle cases of the secrets, gateway, objects, Flux and storage rules, which one fire/pass
pair cannot show: when a reference check runs (partial scopes), what is and is not a
credential, where a LiteLLM key belongs, cycles, autoscaler maxima."""

from __future__ import annotations

import base64
import json
from importlib import resources as package_files
from pathlib import Path

import pytest

from vllm_gitops.findings import Finding
from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.policies.registry import RULES, _load_builtin_rules, run_policies
from vllm_gitops.policies.secrets import credential_kind
from vllm_gitops.scope import Scope
from vllm_gitops.settings import load_settings

_load_builtin_rules()


def load(tmp_path: Path, text: str, kind: str = "paths") -> Scope:
    """The documents of `text`, written to disk and loaded as one scope of the given kind."""
    path = tmp_path / "manifests.yaml"
    path.write_text(text)
    scope = ScopeLoader(load_settings(tmp_path)).load(Target(path, "manifests", "paths"))
    assert not scope.findings, scope.findings
    return Scope(scope.name, kind, scope.resources) if kind != "paths" else scope


def run(scope: Scope, rule_id: str) -> list[Finding]:
    return run_policies(scope, [RULES[rule_id]])


def server(name: str, args: str, namespace: str = "inference", extra: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: vllm
          image: vllm/vllm-openai:v0.11.0
          args: {args}
{extra}---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 8000, targetPort: 8000}}]
---
"""


def litellm_config(body: str, key: str = "config.yaml") -> str:
    indented = "".join(f"    {line}\n" for line in body.strip("\n").splitlines())
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: litellm-config, namespace: inference}}
data:
  {key}: |
{indented}---
"""


def route(name: str, model: str, base: str) -> str:
    return f"""
  - model_name: {name}
    litellm_params:
      model: {model}
      api_base: {base}"""


# ---------------------------------------------------------------- gateway


def test_litellm_key_lists_name_their_source() -> None:
    data = json.loads(package_files.files("vllm_gitops.policies").joinpath(
        "data", "litellm_keys.json").read_text())
    assert data["litellm_version"] == "1.80.11"
    assert all(s.startswith("https://github.com/BerriAI/litellm/") for s in data["sources"])
    sections = data["sections"]
    assert "drop_params" in sections["litellm_settings"]
    assert "drop_parmas" not in sections["litellm_settings"]
    assert "routing_strategy" in sections["router_settings"]
    assert {"model_list", "include", "litellm_settings"} <= set(sections["top_level"])


def test_unknown_key_suggests_a_spelling_or_the_right_section(tmp_path: Path) -> None:
    config = litellm_config("""
model_list: []
litellm_setting:
  drop_params: true
litellm_settings:
  drop_parmas: true
general_settings:
  routing_strategy: least-busy
  master_key: os.environ/LITELLM_MASTER_KEY
""")
    found = run(load(tmp_path, config), "litellm/unknown-config-key")
    assert [f.line for f in found] == [8, 11, 13]  # the file lines of the keys
    assert [f.message for f in found] == [
        "config.yaml line 2: top-level key 'litellm_setting' is silently ignored by LiteLLM "
        "1.80.11; did you mean litellm_settings?",
        "config.yaml line 5: litellm_settings.drop_parmas is silently ignored by LiteLLM "
        "1.80.11; did you mean drop_params?",
        "config.yaml line 7: general_settings.routing_strategy is silently ignored by LiteLLM "
        "1.80.11; it belongs in router_settings",
    ]


def test_a_yaml_file_that_is_not_a_litellm_config_is_not_checked(tmp_path: Path) -> None:
    other = litellm_config("general:\n  drop_parmas: true\nsettings: {}\n", key="app.yaml")
    assert run(load(tmp_path, other), "litellm/unknown-config-key") == []


def test_route_may_ask_for_any_of_several_served_names(tmp_path: Path) -> None:
    docs = server("vllm-qwen3", '["Qwen/Qwen3-14B", "--served-model-name", "qwen3", "qwen3-14b"]')
    ok = litellm_config("model_list:" + route("a", "hosted_vllm/qwen3-14b",
                                              "http://vllm-qwen3:8000/v1"))
    assert run(load(tmp_path, docs + ok), "litellm/route-model-mismatch") == []
    wrong = ok.replace("hosted_vllm/qwen3-14b", "hosted_vllm/Qwen/Qwen3-14B")
    found = run(load(tmp_path, docs + wrong), "litellm/route-model-mismatch")
    assert [f.message for f in found] == [
        "config.yaml line 4: route 'a' asks for model 'Qwen/Qwen3-14B', but the vLLM server "
        "behind http://vllm-qwen3:8000/v1 serves 'qwen3' / 'qwen3-14b'"]


def test_route_to_a_service_in_another_namespace_is_resolved_by_namespace(
        tmp_path: Path) -> None:
    docs = (server("vllm", '["Qwen/Qwen3-14B"]', namespace="team-a")
            + server("vllm", '["Qwen/Qwen3-8B"]', namespace="team-b"))
    config = litellm_config("model_list:" + route(
        "a", "hosted_vllm/Qwen/Qwen3-8B", "http://vllm.team-b.svc.cluster.local:8000/v1"))
    assert run(load(tmp_path, docs + config), "litellm/route-model-mismatch") == []


def test_unrouted_server_needs_a_gateway_in_scope(tmp_path: Path) -> None:
    docs = server("vllm-qwen3", '["Qwen/Qwen3-14B"]')
    assert run(load(tmp_path, docs), "litellm/unrouted-server") == []
    config = litellm_config("litellm_settings: {drop_params: true}\n")
    assert run(load(tmp_path, docs + config), "litellm/unrouted-server") == []  # no routes
    routes = litellm_config("model_list: []\n", key="models.yaml")
    assert [f.rule for f in run(load(tmp_path, docs + routes), "litellm/unrouted-server")] == [
        "litellm/unrouted-server"]


# ---------------------------------------------------------------- secrets


@pytest.mark.parametrize(("name", "value"), [
    ("HF_TOKEN", "hf_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3h"),
    ("OPENAI_KEY_X", "sk-proj-Ab12Cd34"),
    ("LITELLM_MASTER_KEY", "sk-1234"),
    ("AWS_ACCESS_KEY_ID", "AKIA2E0A8F3B244C9986"),
    ("AWS_SECRET_ACCESS_KEY", "q8Lm2Vx/Tz4RbN7wKc1Hs9Ud0Jf3Ge6Ya5Po+Ei2"),
    ("DATABASE_URL", "postgresql://litellm:hunter2@db:5432/litellm"),
    ("POSTGRES_PASSWORD", "changeme"),
    ("LITELLM_SALT_KEY", "abcd1234"),
    ("db.password", "s3cret!"),
])
def test_credentials(name: str, value: str) -> None:
    assert credential_kind(name, value) is not None


@pytest.mark.parametrize(("name", "value"), [
    ("HF_TOKEN", ""),
    ("HF_TOKEN", "HUGGING_FACE_TOKEN_HERE"),
    ("HF_TOKEN", "<your Hugging Face token>"),
    ("OPENAI_API_KEY", "sk-your-key-here"),
    ("OPENAI_API_KEY", "sk-xxxxxxxxxxxx"),
    ("master_key", "os.environ/LITELLM_MASTER_KEY"),
    ("DATABASE_URL", "postgresql://litellm:$(DB_PASSWORD)@db:5432/litellm"),
    ("DATABASE_URL", "postgresql://litellm@db:5432/litellm"),
    ("API_TOKEN", "${API_TOKEN}"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "/var/run/secrets/gcp/key.json"),
    ("LANGFUSE_PUBLIC_KEY", "pk-lf-1234"),
    ("HF_HUB_DISABLE_TOKEN", "1"),
    ("SECRET_ENABLED", "true"),
    ("MAX_TOKENS", "4096"),
    ("topology_key", "kubernetes.io/hostname"),
    ("DB_PASSWORD", "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"),
    ("INSTALL", "pip install sk-learn"),
    ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),  # AWS's documented example
    ("NOTE", "risk-1234 and task-5678 are ticket ids"),
])
def test_not_credentials(name: str, value: str) -> None:
    assert credential_kind(name, value) is None


def test_committed_secret_is_reported_per_value_except_placeholders(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"real-password").decode()
    placeholder = base64.b64encode(b"REPLACE_ME").decode()
    scope = load(tmp_path, f"""
apiVersion: v1
kind: Secret
metadata: {{name: db}}
data: {{password: {encoded}, token: {placeholder}, empty: ""}}
""")
    found = run(scope, "secrets/plaintext-credential")
    assert [(f.message, f.line) for f in found] == [
        ("Secret key password is committed to git: its value is readable by anyone with the "
         "repository (base64 is an encoding, not encryption)", 5)]


def test_credential_in_a_shell_command_is_found(tmp_path: Path) -> None:
    docs = server("vllm", '["vllm serve Qwen/Qwen3-14B --api-key sk-live-12345678"]')
    found = run(load(tmp_path, docs), "secrets/plaintext-credential")
    assert [f.message for f in found] == [
        "container 'vllm': args hold an OpenAI-style API key (sk-...) in plain text"]


SECRET_USER = server("vllm", '["Qwen/Qwen3-14B"]', extra="""\
          env:
            - name: HF_TOKEN
              valueFrom: {secretKeyRef: {name: hf-token, key: token}}
""")


def test_missing_secret_is_not_reported_where_secrets_could_come_from_elsewhere(
        tmp_path: Path) -> None:
    # A base or an apps-only overlay: its Secrets may come from another folder.
    assert run(load(tmp_path, SECRET_USER, kind="base"), "secrets/secret-not-produced") == []
    # Plain files given on the command line are everything that is applied.
    assert len(run(load(tmp_path, SECRET_USER), "secrets/secret-not-produced")) == 1
    # A cluster must produce every Secret.
    assert len(run(load(tmp_path, SECRET_USER, kind="cluster"),
                   "secrets/secret-not-produced")) == 1


def test_secret_from_another_namespace_does_not_count(tmp_path: Path) -> None:
    other = """
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: hf-token, namespace: other}
spec:
  secretStoreRef: {kind: ClusterSecretStore, name: aws}
  data: [{secretKey: token, remoteRef: {key: hf}}]
---
"""
    cluster_wide = """
apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata: {name: hf}
spec:
  namespaceSelectors: [{matchLabels: {team: ml}}]
  externalSecretSpec:
    secretStoreRef: {kind: ClusterSecretStore, name: aws}
    target: {name: hf-token}
    data: [{secretKey: token, remoteRef: {key: hf}}]
---
"""
    assert len(run(load(tmp_path, SECRET_USER + other, kind="overlay"),
                   "secrets/secret-not-produced")) == 1
    assert run(load(tmp_path, SECRET_USER + cluster_wide, kind="overlay"),
               "secrets/secret-not-produced") == []


# ---------------------------------------------------------------- objects and Flux


HPA = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: vllm, namespace: inference}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: vllm}
  maxReplicas: 2
---
"""


def test_target_check_needs_workloads_in_scope(tmp_path: Path) -> None:
    assert run(load(tmp_path, HPA), "objects/target-missing") == []
    in_other_namespace = server("vllm", '["Qwen/Qwen3-14B"]', namespace="staging")
    found = run(load(tmp_path, HPA + in_other_namespace), "objects/target-missing")
    assert [f.message for f in found] == [
        "scaleTargetRef names Deployment 'vllm', which is not deployed in this namespace: "
        "nothing is scaled"]
    same = server("vllm", '["Qwen/Qwen3-14B"]')
    assert run(load(tmp_path, HPA + same), "objects/target-missing") == []


def flux_kustomization(name: str, depends: list[str], source: str = "manifests") -> str:
    deps = "[" + ", ".join(f"{{name: {d}}}" for d in depends) + "]"
    return f"""
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: {name}, namespace: flux-system}}
spec:
  interval: 10m
  prune: true
  sourceRef: {{kind: OCIRepository, name: {source}}}
  dependsOn: {deps}
---
"""


def test_flux_source_is_checked_only_where_sources_live(tmp_path: Path) -> None:
    alone = flux_kustomization("apps", [], source="elsewhere")
    assert run(load(tmp_path, alone), "flux/reference-missing") == []
    source = """
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata: {name: manifests, namespace: flux-system}
spec: {interval: 5m, url: "oci://ghcr.io/example/manifests", ref: {tag: latest}}
---
"""
    assert [f.message for f in run(load(tmp_path, alone + source), "flux/reference-missing")] \
        == ["sourceRef names OCIRepository 'elsewhere', which is not deployed"]


def test_each_cycle_is_reported_once(tmp_path: Path) -> None:
    docs = (flux_kustomization("a", ["b"]) + flux_kustomization("b", ["a"])
            + flux_kustomization("c", ["c"]) + flux_kustomization("d", ["a"]))
    found = run(load(tmp_path, docs), "flux/dependency-cycle")
    assert sorted(f.message for f in found) == [
        "dependsOn forms a cycle: a -> b -> a", "dependsOn forms a cycle: c -> c"]


# ---------------------------------------------------------------- storage


def claim(name: str, storage_class: str | None, modes: str = "[ReadWriteOnce]") -> str:
    klass = f"\n  storageClassName: {storage_class}" if storage_class is not None else ""
    return f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: inference}}
spec:
  accessModes: {modes}{klass}
  resources: {{requests: {{storage: 100Gi}}}}
---
"""


def test_class_check_runs_where_classes_are_managed(tmp_path: Path) -> None:
    docs = claim("cache", "gp3")
    assert run(load(tmp_path, docs, kind="overlay"), "storage/class-missing") == []
    assert len(run(load(tmp_path, docs, kind="cluster"), "storage/class-missing")) == 1
    # EKS creates gp2 itself; a cluster may name it, and may rely on an external default.
    eks = claim("a", "gp2") + claim("b", None)
    assert run(load(tmp_path, eks, kind="cluster"), "storage/class-missing") == []


def test_daemonset_on_a_single_node_volume_is_shared(tmp_path: Path) -> None:
    daemonset = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cache-warmer, namespace: inference}
spec:
  selector: {matchLabels: {app: warmer}}
  template:
    metadata: {labels: {app: warmer}}
    spec:
      containers: [{name: w, image: "busybox:1.37"}]
      volumes: [{name: c, persistentVolumeClaim: {claimName: cache}}]
"""
    found = run(load(tmp_path, claim("cache", None) + daemonset), "storage/rwo-shared")
    assert [f.message for f in found] == [
        "ReadWriteOnce claim 'cache' is mounted by one pod per node (DaemonSet cache-warmer)"]


def test_autoscaler_maximum_counts_as_replicas(tmp_path: Path) -> None:
    mounted = server("vllm", '["Qwen/Qwen3-14B"]', extra="""\
      volumes: [{name: c, persistentVolumeClaim: {claimName: cache}}]
""")
    assert run(load(tmp_path, claim("cache", None) + mounted), "storage/rwo-shared") == []
    found = run(load(tmp_path, claim("cache", None) + mounted + HPA), "storage/rwo-shared")
    assert [f.message for f in found] == [
        "ReadWriteOnce claim 'cache' is mounted by up to 2 pods (Deployment vllm)"]


def test_no_surge_means_no_multi_attach(tmp_path: Path) -> None:
    mounted = server("vllm", '["Qwen/Qwen3-14B"]', extra="""\
      volumes: [{name: c, persistentVolumeClaim: {claimName: cache}}]
""")
    no_surge = mounted.replace(
        "spec:\n  selector:", "spec:\n  strategy:\n    rollingUpdate: {maxSurge: 0%}\n"
        "  selector:", 1)
    assert no_surge != mounted
    assert run(load(tmp_path, claim("cache", None) + no_surge),
               "storage/rwo-rolling-update") == []
    assert len(run(load(tmp_path, claim("cache", None) + mounted),
                   "storage/rwo-rolling-update")) == 1
    shared = claim("cache", None, modes="[ReadWriteMany]")
    assert run(load(tmp_path, shared + mounted), "storage/rwo-rolling-update") == []


def test_helm_values_in_flux_and_argo_are_checked(tmp_path: Path) -> None:
    docs = """
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: langfuse, namespace: langfuse}
spec:
  interval: 1h
  chart: {spec: {chart: langfuse, sourceRef: {kind: HelmRepository, name: langfuse}}}
  values:
    postgresql:
      auth: {username: langfuse, postgresPassword: changeme, existingSecret: ""}
    redis:
      auth: {existingSecret: langfuse-redis, password: ""}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: milvus, namespace: argocd}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: milvus}
  source:
    repoURL: https://zilliztech.github.io/milvus-helm
    chart: milvus
    targetRevision: 4.2.0
    helm:
      values: |
        minio:
          accessKey: minioadmin
          secretKey: minioadmin
        etcd: {replicaCount: 1}
"""
    found = run(load(tmp_path, docs), "secrets/plaintext-credential")
    assert [(f.message, f.line) for f in found] == [
        ("Helm value postgresql.auth.postgresPassword holds a secret (by its name) in plain "
         "text", 10),
        ("Helm values line 2 hold a secret (by its name) in plain text", 27),
        ("Helm values line 3 hold a secret (by its name) in plain text", 28),
    ]


def test_findings_inside_a_generated_config_point_at_the_file_line(tmp_path: Path) -> None:
    """kustomize's configMapGenerator turns config.yaml into a ConfigMap key: the finding
    names config.yaml and the line of the bad key in it (real kustomize render)."""
    folder = tmp_path / "gateway"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "configMapGenerator:\n  - name: litellm-config\n    files: [config.yaml]\n")
    (folder / "config.yaml").write_text(
        "model_list:\n  - model_name: a\n    litellm_params:\n      model: openai/gpt-4o\n"
        "      api_key: sk-live-12345678\nlitellm_settings:\n  drop_parmas: true\n")
    scope = ScopeLoader(load_settings(tmp_path)).load(Target(folder, "gateway", "base"))
    assert not scope.findings, scope.findings
    found = [(f.rule, f.file, f.line) for rule_id in ("secrets/plaintext-credential",
                                                      "litellm/unknown-config-key")
             for f in run(scope, rule_id)]
    assert found == [("secrets/plaintext-credential", "gateway/config.yaml", 5),
                     ("litellm/unknown-config-key", "gateway/config.yaml", 7)]
