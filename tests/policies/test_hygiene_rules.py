"""Subtle cases of the hygiene and exposure rules that one fire/pass pair cannot show."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.policies.hygiene import image_tag_problem, reasoning_parser_for
from vllm_gitops.policies.registry import RULES, _load_builtin_rules, run_policies
from vllm_gitops.settings import load_settings

_load_builtin_rules()


def findings(root: Path, target: Path, rule_id: str, kind: str = "paths") -> list[str]:
    """(file, message) of one rule's findings on a target, loaded as the validator does."""
    scope = ScopeLoader(load_settings(root)).load(Target(target, target.name, kind))
    assert not scope.findings, scope.findings
    return [f"{f.location.file if f.location else '?'}: {f.message}"
            for f in run_policies(scope, [RULES[rule_id]])]


@pytest.mark.parametrize(("image", "mutable"), [
    ("vllm/vllm-openai", True),
    ("vllm/vllm-openai:latest", True),
    ("ghcr.io/berriai/litellm:main-latest", True),
    ("ghcr.io/berriai/litellm:main-v1.80.11", False),  # a branch build pinned to a release
    ("ghcr.io/berriai/litellm:main", True),
    ("nvcr.io/nvidia/k8s-device-plugin:stable", True),
    ("postgres:15", True),  # major only: moves with every minor release
    ("postgres:15.12-bookworm", False),
    ("localhost:5000/vllm", True),  # a registry port is not a tag
    ("localhost:5000/vllm:v0.11.0", False),
    ("vllm/vllm-openai@sha256:" + "a" * 64, False),
    ("vllm/vllm-openai:latest@sha256:" + "a" * 64, False),  # the digest wins
    ("ghcr.io/example/app:3f9c2ab", False),  # a commit
])
def test_mutable_tags(image: str, mutable: bool) -> None:
    assert (image_tag_problem(image) is not None) is mutable


@pytest.mark.parametrize(("model", "parser"), [
    ("Qwen/Qwen3-14B", "qwen3"),
    ("Qwen/Qwen3-30B-A3B-Thinking-2507", "qwen3"),
    ("Qwen/Qwen3-30B-A3B-Instruct-2507", None),
    ("Qwen/Qwen3-Embedding-8B", None),
    ("Qwen/QwQ-32B", "deepseek_r1"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "deepseek_r1"),
    ("Qwen/Qwen2.5-7B-Instruct", None),
])
def test_reasoning_models(model: str, parser: str | None) -> None:
    assert reasoning_parser_for(model) == parser


FLUX = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: repo, namespace: flux-system}}
spec: {{url: https://example.com/repo.git, interval: 5m, ref: {{branch: main}}}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: apps, namespace: flux-system}}
spec:
  path: ./apps
  interval: 10m
  prune: true
  sourceRef: {{kind: GitRepository, name: repo}}
{post_build}---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: infra, namespace: flux-system}}
spec:
  path: ./infra
  interval: 10m
  prune: true
  sourceRef: {{kind: GitRepository, name: repo}}
"""
SUBSTITUTE = "  postBuild:\n    substitute: {REGION: eu-west-1}\n"


def flux_repo(root: Path, post_build: str) -> Path:
    for folder, variable in (("apps", "REGION"), ("infra", "CLUSTER_NAME")):
        (root / folder).mkdir()
        (root / folder / "config.yaml").write_text(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {folder}}}\n"
            f"data: {{value: '${{{variable}}}'}}\n")
    (root / "clusters").mkdir()
    (root / "clusters" / "flux.yaml").write_text(FLUX.format(post_build=post_build))
    return root / "clusters"


def test_placeholders_where_flux_substitutes_are_fine(tmp_path: Path) -> None:
    """Only the Kustomization that syncs ./apps substitutes: ./infra keeps its finding."""
    cluster = flux_repo(tmp_path, SUBSTITUTE)
    assert findings(tmp_path, cluster, "manifests/unsubstituted-variable", "cluster") == [
        "infra/config.yaml: unsubstituted ${CLUSTER_NAME}"]


def test_placeholders_without_post_build_are_found(tmp_path: Path) -> None:
    cluster = flux_repo(tmp_path, "")
    assert sorted(findings(tmp_path, cluster, "manifests/unsubstituted-variable", "cluster")) == [
        "apps/config.yaml: unsubstituted ${REGION}",
        "infra/config.yaml: unsubstituted ${CLUSTER_NAME}"]


ARGO_APP = """\
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: infra, namespace: argocd}
spec:
  project: default
  source: {repoURL: https://example.com/repo.git, path: infra, targetRevision: main}
  destination: {server: https://kubernetes.default.svc, namespace: default}
"""


def test_argo_cd_never_substitutes(tmp_path: Path) -> None:
    """Argo CD applies ./infra as it is, although a Flux Kustomization elsewhere in the
    scope has postBuild."""
    cluster = flux_repo(tmp_path, SUBSTITUTE)
    flux = (cluster / "flux.yaml").read_text()
    infra = "---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n" \
            "metadata: {name: infra"
    # Flux no longer syncs ./infra: an Argo CD Application does.
    (cluster / "flux.yaml").write_text(flux.split(infra)[0] + ARGO_APP)
    assert findings(tmp_path, cluster, "manifests/unsubstituted-variable", "cluster") == [
        "infra/config.yaml: unsubstituted ${CLUSTER_NAME}"]


VLLM_AND_GATEWAY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm, namespace: ai}
spec:
  selector: {matchLabels: {app: vllm}}
  template:
    metadata: {labels: {app: vllm}}
    spec:
      containers: [{name: vllm, image: "vllm/vllm-openai:v0.11.0", args: [Qwen/Qwen3-8B]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: litellm, namespace: ai}
spec:
  selector: {matchLabels: {app: litellm}}
  template:
    metadata: {labels: {app: litellm}}
    spec:
      containers: [{name: litellm, image: "ghcr.io/berriai/litellm:v1.80.11-stable.1"}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: vllm, namespace: ai}
spec:
  podSelector: {matchLabels: {app: vllm}}
"""


@pytest.mark.parametrize(("ingress", "blocked"), [
    ("  ingress: []\n", True),  # deny all
    ("", True),  # policyTypes defaults to Ingress: no rule admits anything
    ("  ingress: [{}]\n", False),  # one empty rule admits everything
    ("  ingress: [{ports: [{port: 8000}]}]\n", False),  # any source, the right port
    ("  ingress: [{ports: [{port: 7000, endPort: 9000}]}]\n", False),  # a range
    ("  ingress: [{ports: [{port: 8000, protocol: UDP}]}]\n", True),
    ("  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}]\n", True),  # pod IPs: unreliable
    ("  ingress: [{from: [{podSelector: {}}]}]\n", False),  # every pod of the namespace
    ("  ingress: [{from: [{namespaceSelector: {}}]}]\n", False),  # every pod of the cluster
    ("  ingress: [{from: [{podSelector: {matchExpressions: "
     "[{key: app, operator: NotIn, values: [litellm]}]}}]}]\n", True),
    ("  policyTypes: [Egress]\n  egress: [{}]\n", False),  # does not isolate ingress
])
def test_networkpolicy_peers(tmp_path: Path, ingress: str, blocked: bool) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(VLLM_AND_GATEWAY + ingress)
    found = findings(tmp_path, manifest, "networkpolicy/blocks-gateway")
    assert bool(found) is blocked, found


def test_networkpolicy_without_gateway_in_scope_is_not_judged(tmp_path: Path) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(VLLM_AND_GATEWAY.replace("litellm:v1", "other:v1") + "  ingress: []\n")
    assert findings(tmp_path, manifest, "networkpolicy/blocks-gateway") == []


def test_gateway_ingress_without_its_service_in_scope(tmp_path: Path) -> None:
    """A bare Ingress file (like the guide's) still names the gateway through its backend."""
    manifest = tmp_path / "ingress.yaml"
    manifest.write_text("""\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: litellm-ingress-alb
  annotations: {alb.ingress.kubernetes.io/scheme: internal}
spec:
  ingressClassName: alb
  tls: [{hosts: [llm.example.com]}]
  defaultBackend: {service: {name: litellm, port: {number: 4000}}}
""")
    # spec.tls alone opens no HTTPS listener on an ALB: listen-ports must say so.
    assert findings(tmp_path, manifest, "exposure/public-load-balancer") == [
        "ingress.yaml: the LiteLLM gateway is exposed plain HTTP (no TLS listener)"]


GATEWAY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: gw}
spec:
  selector: {matchLabels: {app: gw}}
  template:
    metadata: {labels: {app: gw}}
    spec:
      containers: [{name: proxy, image: "ghcr.io/berriai/litellm:v1.80.11-stable.1"}]
---
apiVersion: v1
kind: Service
metadata:
  name: gateway-lb
  annotations: {annotations}
spec:
  type: LoadBalancer
  selector: {app: gw}
  ports: [{port: 443, targetPort: 4000}]
"""
SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
CERT = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"


@pytest.mark.parametrize(("annotations", "problem"), [
    (f"{{{SCHEME}: internal, {CERT}: arn}}", None),
    (f"{{{SCHEME}: internal}}", "plain HTTP (no TLS certificate on the load balancer)"),
    (f"{{{SCHEME}: internet-facing, {CERT}: arn}}", "internet-facing"),
    (f"{{{SCHEME}: internet-facing}}",
     "internet-facing and plain HTTP (no TLS certificate on the load balancer)"),
])
def test_gateway_load_balancer_service(tmp_path: Path, annotations: str,
                                       problem: str | None) -> None:
    """The gateway is found by its image, whatever the Service is called."""
    manifest = tmp_path / "gateway.yaml"
    manifest.write_text(GATEWAY.replace("{annotations}", annotations))
    expected = [f"gateway.yaml: the LiteLLM gateway is exposed {problem}"] if problem else []
    assert findings(tmp_path, manifest, "exposure/public-load-balancer") == expected
