"""A CustomResourceDefinition's openAPIV3Schema as a strict JSON schema, like the CRDs catalog.

The same two transformations as kubeconform's openapi2jsonschema.py, which the catalog uses
(https://github.com/yannh/kubeconform/blob/master/scripts/openapi2jsonschema.py):
every object with `properties` and no `additionalProperties` gets `additionalProperties:
false` (except the document root), and `format: int-or-string` becomes a oneOf of string and
integer. `x-kubernetes-validations` (CEL rules) are kept: the CEL stage evaluates them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.yamlsafe import YamlProblem, parse_documents

_INT_OR_STRING = {"oneOf": [{"type": "string"}, {"type": "integer"}]}


@dataclass(frozen=True)
class ConvertedSchema:
    group: str
    version: str
    kind: str
    text: str  # the JSON file's exact content


def schemas_from_crd_text(text: str, display: str) -> list[ConvertedSchema]:
    """Every served version of every CRD in a YAML stream (a `List` of CRDs included)."""
    try:
        documents = list(parse_documents(text))
    except YamlProblem as exc:
        raise ToolError(str(exc), file=display, line=exc.line) from None
    found: list[ConvertedSchema] = []
    for document in documents:
        data = document.data
        items = data.get("items") if isinstance(data, dict) and data.get("kind") == "List" \
            else [data]
        for crd in items if isinstance(items, list) else []:
            if isinstance(crd, dict) and crd.get("kind") == "CustomResourceDefinition":
                found += _versions(crd, display, document.line)
    if not found:
        raise ToolError("no CustomResourceDefinition with an openAPIV3Schema in it",
                        file=display)
    return found


def to_json_schema(open_api: dict[str, Any]) -> str:
    strict = _deny_additional(open_api, root=True)
    return json.dumps(_int_or_string(strict), indent=2) + "\n"


def _versions(crd: dict[str, Any], display: str, line: int) -> list[ConvertedSchema]:
    spec = crd.get("spec")
    names = spec.get("names") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(names, dict) or not spec.get("group") \
            or not names.get("kind"):
        raise ToolError("CustomResourceDefinition without spec.group or spec.names.kind",
                        file=display, line=line)
    out = []
    for version in spec.get("versions") or []:
        schema = (version.get("schema") or {}).get("openAPIV3Schema") \
            if isinstance(version, dict) else None
        if isinstance(schema, dict):
            out.append(ConvertedSchema(str(spec["group"]), str(version.get("name")),
                                       str(names["kind"]), to_json_schema(schema)))
    return out


def _deny_additional(node: Any, root: bool = False) -> Any:
    if isinstance(node, dict):
        out = {key: _deny_additional(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node and not root:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_deny_additional(item) for item in node]
    return node


def _int_or_string(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: dict(_INT_OR_STRING) if isinstance(value, dict)
                and value.get("format") == "int-or-string" else _int_or_string(value)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_int_or_string(item) for item in node]
    return node
