"""Secret rules: no credential is written in plain text, and every Secret a pod needs exists.

What counts as a credential (`credential_kind`):
- a value shaped like a known token: Hugging Face `hf_...`, OpenAI-style `sk-...` (LiteLLM's
  master and virtual keys, Langfuse `sk-lf-...`), AWS access key ids `AKIA...`/`ASIA...`;
- a password inside a URL (`postgresql://user:pass@host`);
- any literal value under a name that says it is secret: `*_PASSWORD`, `*_SECRET`, `*_TOKEN`,
  `*_KEY` (`*_PUBLIC_KEY` excluded), `password`, `api_key`...

What is not (to keep false alarms low): empty values; references resolved elsewhere
(`os.environ/VAR` in a LiteLLM config, `$(VAR)`, `${VAR}` and `$VAR`, `{{ template }}`, SOPS
`ENC[...]`, ARNs, `ref+...`); file paths; booleans and numbers under a secret-sounding name;
obvious placeholders that cannot authenticate (`<token>`, `xxxx`, `token-here`,
`YOUR_TOKEN`, `..._HERE`, `REPLACE_ME`, `...EXAMPLE...` as in AWS's documented keys, `dummy`,
`redacted`). A well-known *working* default such as `changeme` or `sk-1234` is reported: it
opens the door.

Chart values written into a Flux HelmRelease (`spec.values`) or an Argo CD Application
(`spec.source.helm.values` / `valuesObject`) are checked the same way.

A `Secret` object committed to git is itself a leak (base64 is an encoding, not
encryption); SOPS-encrypted Secrets (a top-level `sops:` block) are not reported.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterator
from typing import Any

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource, as_list, as_map, iter_containers, pod_spec_path
from vllm_gitops.scope import Scope
from vllm_gitops.yamlsafe import FieldPath

_TOKEN_PATTERNS = (
    (re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}"), "a Hugging Face token (hf_...)"),
    # At least one digit: keys are random (LiteLLM's default is sk-1234); "sk-learn" is not.
    (re.compile(r"(?<![A-Za-z0-9-])sk-(?=[A-Za-z_-]*[0-9])[A-Za-z0-9][A-Za-z0-9_-]{3,}"),
     "an OpenAI-style API key (sk-...)"),
    (re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"), "an AWS access key id"),
)
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:([^@\s/]+)@")
_SECRET_NAME = re.compile(
    r"^(?:.*[_.-])?(?:password|passwd|pwd|secret|token|credentials?|api[_-]?key|apikey)$"
    r"|^.+[_.-](?:key|salt)$", re.IGNORECASE)
_NOT_SECRET_NAME = re.compile(
    r"(?:public|partition|sort|cache|primary|foreign|label|topology|hash|routing)[_.-]?key$"
    r"|existing[_.-]?secret$", re.IGNORECASE)
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_REFERENCE = re.compile(
    r"^(?:os\.environ/|\$|\{\{|ENC\[|arn:|ref\+|vault:|secretsmanager:|"
    r"/|\./|~/|file:)", re.IGNORECASE)
_PLACEHOLDER = re.compile(
    r"^<.*>$|x{4,}|\*{3,}|\.{3}|(?:^|[_-])here$|^your[_-]|[_-]your[_-]|replace[_-]?me|"
    r"example|placeholder|^dummy|redacted|^todo$|^tbd$|^none$|^null$|^-+$",
    re.IGNORECASE)
_NOT_A_CREDENTIAL = re.compile(r"^(?:true|false|yes|no|on|off|\d{1,5})$", re.IGNORECASE)


def _is_placeholder(value: str) -> bool:
    stripped = value.strip().strip("'\"")
    core = stripped.removeprefix("sk-").removeprefix("hf_")
    return not stripped or bool(_REFERENCE.match(stripped)) or bool(
        _PLACEHOLDER.search(stripped) or _PLACEHOLDER.search(core))


def secret_name(name: str) -> bool:
    """Whether a variable or key name says its value is a credential (camelCase too:
    adminPassword, apiKey, as in Helm values)."""
    words = _CAMEL_HUMP.sub("_", name)
    return bool(_SECRET_NAME.match(words)) and not _NOT_SECRET_NAME.search(words)


def credential_kind(name: str | None, value: Any) -> str | None:
    """What kind of credential a literal value is, or None when it is none (see module doc)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    for pattern, kind in _TOKEN_PATTERNS:
        match = pattern.search(text)
        if match and not _is_placeholder(match.group(0)):
            return kind
    url = _URL_PASSWORD.search(text)
    if url and not _is_placeholder(url.group(1)):
        return "a password inside a URL"
    if name and secret_name(name) and not _is_placeholder(text) \
            and not _NOT_A_CREDENTIAL.match(text):
        return "a secret (by its name)"
    return None


_TEXT_ASSIGNMENT = re.compile(r"^\s*(?:-\s+)?[\"']?([A-Za-z_][A-Za-z0-9_.-]*)[\"']?\s*[:=]\s*(.*)$")


def credentials_in_text(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line, kind) of each credential in a file held as text (config, .env, YAML)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        assignment = _TEXT_ASSIGNMENT.match(line)
        name, value = (assignment.group(1), assignment.group(2)) if assignment else (None, line)
        value = value.split(" #", 1)[0].strip().strip("'\"")
        kind = credential_kind(name, value) if value else None
        if kind is None and name is not None:
            kind = credential_kind(None, line)  # a token elsewhere on the line
        if kind:
            yield number, kind


def text_line_offset(resource: Resource, path: FieldPath, line: int) -> int:
    """Lines from where the text value at `path` is written down to its `line`-th line: in a
    YAML block scalar (`config.yaml: |`) the text starts on the next line; in a file that
    kustomize turned into a ConfigMap key, on line 1 of that file. 0 when unknown."""
    location = resource.location_of(path)
    if location is None or location.line is None:
        return 0
    for layer in resource.layers:
        if (layer.file == location.file and layer.document is not None
                and layer.document.field_lines.get(tuple(path)) == location.line):
            return line - 1 if layer.document.data is None else line
    return 0


def _container_credentials(resource: Resource) -> Iterator[Violation]:
    for path, container in iter_containers(resource):
        where = f"container {container.get('name')!r}"
        for index, item in enumerate(as_list(container.get("env"))):
            if not isinstance(item, dict) or "value" not in item:
                continue
            kind = credential_kind(str(item.get("name", "")), item["value"])
            if kind:
                yield Violation(resource, f"{where}: env {item.get('name')} holds {kind} in "
                                "plain text", (*path, "env", index, "value"))
        for field in ("command", "args"):
            for index, token in enumerate(as_list(container.get(field))):
                found = next(credentials_in_text(str(token)), None)
                if found:
                    yield Violation(resource, f"{where}: {field} hold {found[1]} in plain text",
                                    (*path, field, index))


def _config_map_credentials(config_map: Resource) -> Iterator[Violation]:
    data = config_map.get("data", default={})
    for key, value in (data if isinstance(data, dict) else {}).items():
        text = str(value) if value is not None else ""
        path: FieldPath = ("data", str(key))
        if "\n" in text.strip():
            for line, kind in credentials_in_text(text):
                yield Violation(config_map, f"{key} line {line} holds {kind} in plain text "
                                "(a ConfigMap is readable by anyone who can read the namespace)",
                                path, text_line_offset(config_map, path, line))
            continue
        single = credential_kind(str(key), text)
        if single:
            yield Violation(config_map, f"data {key} holds {single} in plain text (a ConfigMap "
                            "is readable by anyone who can read the namespace)", path)


def _scalars(node: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str | None, Any]]:
    """(path, key, value) of every scalar in nested values; key None for list items."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _scalars(value, (*path, str(key)))
            else:
                yield (*path, str(key)), str(key), value
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                yield from _scalars(item, (*path, index))
            else:
                yield (*path, index), None, item


def _carries_helm_values(resource: Resource) -> bool:
    group = resource.api_version.split("/", 1)[0]
    return (resource.kind, group) in {("HelmRelease", "helm.toolkit.fluxcd.io"),
                                      ("Application", "argoproj.io")}


def _helm_values_credentials(release: Resource) -> Iterator[Violation]:
    """Chart values written into a Flux HelmRelease or an Argo CD Application."""
    if release.kind == "HelmRelease":
        roots: list[FieldPath] = [("spec", "values")]
    else:
        roots = [("spec", "source", "helm", "valuesObject")]
        text = release.get("spec", "source", "helm", "values")
        if isinstance(text, str):
            values: FieldPath = ("spec", "source", "helm", "values")
            for line, found in credentials_in_text(text):
                yield Violation(release, f"Helm values line {line} hold {found} in plain text",
                                values, text_line_offset(release, values, line))
    for root in roots:
        for path, key, value in _scalars(release.get(*root), root):
            kind = credential_kind(key, value)
            if kind:
                shown = ".".join(str(step) for step in path[len(root):])
                yield Violation(release, f"Helm value {shown} holds {kind} in plain text", path)


def _committed_secret(secret: Resource) -> Iterator[Violation]:
    if "sops" in secret.doc:  # encrypted with SOPS: https://fluxcd.io/flux/guides/mozilla-sops/
        return
    for field in ("stringData", "data"):
        values = secret.get(field, default={})
        for key, value in (values if isinstance(values, dict) else {}).items():
            text = str(value) if value is not None else ""
            if field == "data":
                with contextlib.suppress(binascii.Error, ValueError):
                    text = base64.b64decode(text, validate=True).decode("utf-8", "replace")
            if not text.strip() or _is_placeholder(text):
                continue
            yield Violation(secret, f"Secret key {key} is committed to git: its value is "
                            "readable by anyone with the repository (base64 is an encoding, "
                            "not encryption)", (field, str(key)))


@rule(
    "secrets/plaintext-credential", Severity.ERROR,
    "a credential (token, API key, password) is written in plain text in a manifest",
    why="""Anything in git is readable by everyone who can read the repository, its forks and
    its history, forever: a token pasted into a manifest (an env value, a ConfigMap, the LiteLLM
    config, a Secret, which is only base64) must be treated as leaked. Leaked Hugging Face or
    API keys are found by scanners within minutes and abused.""",
    fix="""Revoke the credential now, then keep it out of git: store it in AWS Secrets Manager
    and sync it with an ExternalSecret (see base/secrets), or commit it encrypted (SOPS,
    SealedSecret); refer to it with valueFrom.secretKeyRef, or `os.environ/VAR` in the LiteLLM
    config.""",
)
def plaintext_credential(scope: Scope) -> Iterator[Violation]:
    for resource in scope.resources:
        if pod_spec_path(resource) is not None:
            yield from _container_credentials(resource)
        elif resource.kind == "ConfigMap":
            yield from _config_map_credentials(resource)
        elif resource.kind == "Secret" and resource.api_version == "v1":
            yield from _committed_secret(resource)
        elif _carries_helm_values(resource):
            yield from _helm_values_credentials(resource)


# ---------------------------------------------------------------- secret-not-produced


def _needed_secrets(pod: dict[str, Any], spec_path: FieldPath,
                    ) -> Iterator[tuple[str, FieldPath, str]]:
    """(Secret name, field path, what needs it) of every non-optional Secret a pod uses."""
    for key in ("initContainers", "containers"):
        for c_index, container in enumerate(as_list(pod.get(key))):
            if not isinstance(container, dict):
                continue
            base: FieldPath = (*spec_path, key, c_index)
            for e_index, env in enumerate(as_list(container.get("env"))):
                ref = as_map(as_map(as_map(env).get("valueFrom")).get("secretKeyRef"))
                if ref.get("name") and not ref.get("optional"):
                    yield (str(ref["name"]), (*base, "env", e_index, "valueFrom", "secretKeyRef",
                                              "name"), f"env {as_map(env).get('name')}")
            for f_index, source in enumerate(as_list(container.get("envFrom"))):
                ref = as_map(as_map(source).get("secretRef"))
                if ref.get("name") and not ref.get("optional"):
                    yield (str(ref["name"]), (*base, "envFrom", f_index, "secretRef", "name"),
                           "envFrom")
    for v_index, raw_volume in enumerate(as_list(pod.get("volumes"))):
        volume = as_map(raw_volume)
        secret = as_map(volume.get("secret"))
        if secret.get("secretName") and not secret.get("optional"):
            yield (str(secret["secretName"]), (*spec_path, "volumes", v_index, "secret",
                                               "secretName"), f"volume {volume.get('name')}")
        sources = as_list(as_map(volume.get("projected")).get("sources"))
        for s_index, source in enumerate(sources):
            ref = as_map(as_map(source).get("secret"))
            if ref.get("name") and not ref.get("optional"):
                yield (str(ref["name"]), (*spec_path, "volumes", v_index, "projected", "sources",
                                          s_index, "secret", "name"),
                       f"volume {volume.get('name')}")
    for p_index, pull in enumerate(as_list(pod.get("imagePullSecrets"))):
        if isinstance(pull, dict) and pull.get("name"):
            yield (str(pull["name"]), (*spec_path, "imagePullSecrets", p_index, "name"),
                   "imagePullSecrets")


SECRET_PRODUCERS = ("Secret", "ExternalSecret", "ClusterExternalSecret", "SealedSecret",
                    "Certificate")


def produced_secrets(scope: Scope) -> set[tuple[str | None, str]]:
    """(namespace, name) of every Secret the scope creates; namespace None = any."""
    out: set[tuple[str | None, str]] = set()
    for res in scope.of_kind(*SECRET_PRODUCERS):
        if res.kind == "ExternalSecret":
            out.add((res.namespace, str(res.get("spec", "target", "name") or res.name)))
        elif res.kind == "ClusterExternalSecret":
            target = res.get("spec", "externalSecretSpec", "target", "name")
            out.add((None, str(target or res.name)))
        elif res.kind == "Certificate":  # cert-manager writes spec.secretName
            if res.get("spec", "secretName"):
                out.add((res.namespace, str(res.get("spec", "secretName"))))
        elif res.kind == "SealedSecret":
            name = res.get("spec", "template", "metadata", "name") or res.name
            out.add((res.namespace, str(name)))
        else:
            out.add((res.namespace, res.name))
    return out


def _produced(name: str, namespace: str | None,
              produced: set[tuple[str | None, str]]) -> bool:
    return any(n == name and (ns is None or namespace is None or ns == namespace)
               for ns, n in produced)


@rule(
    "secrets/secret-not-produced", Severity.ERROR,
    "a pod needs a Secret that nothing in what is deployed creates",
    why="""A pod that reads a Secret (an env secretKeyRef, envFrom, a secret volume) does not
    start until that Secret exists: it waits in CreateContainerConfigError (or
    ContainerCreating) forever. A Secret created by hand or by a setup script is missing in
    every new cluster and after every rebuild.""",
    fix="""Create the Secret from git: an ExternalSecret (AWS Secrets Manager, see
    base/secrets) or a SealedSecret with the same name in the same namespace. If the pod can run
    without it (e.g. an HF token for a model that is not gated), mark the reference
    `optional: true`.""",
)
def secret_not_produced(scope: Scope) -> Iterator[Violation]:
    # A partial target (one base, the apps without their secrets) could get its Secrets from
    # elsewhere: check only where Secrets are made, in whole clusters, and in plain files given
    # on the command line (taken as everything that is applied, like the guide's folder).
    if not (scope.kind in ("cluster", "paths") or scope.holds_any(*SECRET_PRODUCERS)):
        return
    produced = produced_secrets(scope)
    for resource in scope.resources:
        spec_path = pod_spec_path(resource)
        pod = resource.get(*spec_path) if spec_path else None
        if not isinstance(pod, dict) or spec_path is None:
            continue
        reported: set[str] = set()
        for name, path, user in _needed_secrets(pod, spec_path):
            if name in reported or _produced(name, resource.namespace, produced):
                continue
            reported.add(name)
            yield Violation(resource, f"{user} needs Secret {name!r}, which nothing here "
                            "creates (no Secret, ExternalSecret or SealedSecret of that name)",
                            path)
