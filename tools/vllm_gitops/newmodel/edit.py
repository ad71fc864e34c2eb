"""Round-trip edits of YAML files (ruamel.yaml: comments, order and quoting survive; only
what is edited changes): a kustomization's `resources` list, the comment above a key, and
mappings loaded to be edited by the caller (`load_mapping`, `dump`)."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.tokens import CommentToken

from vllm_gitops.errors import ToolError


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=2, sequence=4, offset=2)  # the repository's style: "  - item"
    return yaml


def load_mapping(text: str, path: str) -> CommentedMap:
    """One YAML document that must be a mapping, for a round-trip edit."""
    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise ToolError(f"cannot parse: {exc}", file=path) from None
    if not isinstance(data, CommentedMap):
        raise ToolError("expected a YAML mapping", file=path)
    return data


def dump(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def _resources(data: CommentedMap, path: str) -> CommentedSeq:
    resources = data.get("resources")
    if resources is None:
        data["resources"] = resources = CommentedSeq()
    if not isinstance(resources, CommentedSeq):
        raise ToolError("`resources` must be a list", file=path)
    return resources


def add_resource(text: str, entry: str, path: str, group_prefix: str) -> str:
    """`text` with `entry` in `resources`: after the last entry starting with `group_prefix`
    (alphabetically among them when possible), else at the end. Unchanged when present."""
    data = load_mapping(text, path)
    resources = _resources(data, path)
    if entry in [str(item) for item in resources]:
        return text
    group = [i for i, item in enumerate(resources) if str(item).startswith(group_prefix)]
    position = len(resources)
    if group:
        later = [i for i in group if str(resources[i]) > entry]
        position = later[0] if later else group[-1] + 1
    _insert(resources, position, entry)
    return dump(data)


def _insert(seq: CommentedSeq, position: int, entry: str) -> None:
    """Insert keeping comments attached to the right neighbours: a comment written after the
    last item (ruamel keeps it on that item) must stay after the new last item."""
    last = len(seq) - 1
    trailing = seq.ca.items.pop(last, None) if position == len(seq) and last >= 0 else None
    seq.insert(position, entry)
    if trailing is not None:
        seq.ca.items[len(seq) - 1] = trailing


def remove_resource(text: str, entry: str, path: str) -> str:
    """`text` without `entry` in `resources` (unchanged when absent)."""
    data = load_mapping(text, path)
    resources = _resources(data, path)
    items = [str(item) for item in resources]
    if entry not in items:
        return text
    index = items.index(entry)
    comment = resources.ca.items.pop(index, None)
    del resources[index]  # ruamel renumbers the comments of the items after it
    # A comment written after the last item belongs after the new last item.
    if comment is not None and index == len(resources) and index > 0:
        resources.ca.items[index - 1] = comment
    return dump(data)


def set_comment_before(mapping: CommentedMap, key: str, lines: list[str], column: int) -> None:
    """Make `lines` the comment block right above `key`, at `column`. ruamel keeps that block
    at the end of the comment after the previous entry's last scalar; an end-of-line comment
    there and comments above a blank line stay. Above a first key (kept by the parent) the
    lines are added below the comment there."""
    keys = list(mapping)
    at = keys.index(key)
    if at == 0:
        mapping.yaml_set_comment_before_after_key(key, before="\n".join(lines), indent=column)
        return
    slots, index = _comment_after(mapping, keys[at - 1])
    token = slots[index]
    if token is None:
        token = slots[index] = CommentToken("\n", CommentMark(column), None)
    head, *rest = str(token.value).splitlines(keepends=True) or ["\n"]
    while rest and rest[-1].lstrip().startswith("#"):
        rest.pop()
    token.value = "".join([head, *rest, *(f"{' ' * column}# {line}\n" for line in lines)])


def _comment_after(node: CommentedMap | CommentedSeq, key: Any) -> tuple[list[Any], int]:
    """Where ruamel keeps the comment after entry `key` of `node`: (its slots, the index)."""
    value = node[key]
    if isinstance(value, CommentedMap | CommentedSeq) and len(value) > 0:
        return _comment_after(value, list(value)[-1] if isinstance(value, dict)
                              else len(value) - 1)
    slots = node.ca.items.setdefault(key, [None, None, None, None])
    return slots, 0 if isinstance(node, CommentedSeq) else 2
