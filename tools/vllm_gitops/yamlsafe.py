"""Safe, fast YAML reading with source lines.

pyyaml's C parser composes nodes; we convert them ourselves so that one pass gives the data,
the line of every field, duplicate-key detection and a bound on alias expansion (a "billion
laughs" document is refused instead of eating the machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

try:  # the C loader is ~10x faster; fall back so a build without libyaml still works
    from yaml import CSafeLoader as FastLoader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as FastLoader  # type: ignore[assignment]

MAX_FILE_BYTES = 8 * 1024 * 1024  # a manifest larger than 8 MiB is not something a human wrote
MAX_NODES_PER_DOCUMENT = 200_000  # after alias expansion

FieldPath = tuple[str | int, ...]


class YamlProblem(Exception):
    """A YAML file that cannot be read safely; carries the 1-based line when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(message)


@dataclass
class YamlDocument:
    data: Any
    line: int  # 1-based line where the document starts
    field_lines: dict[FieldPath, int] = field(default_factory=dict)


class _Converter:
    """Turns composed nodes into Python data, recording the line of each field path."""

    def __init__(self) -> None:
        self._scalars = SafeConstructor()
        self._budget = MAX_NODES_PER_DOCUMENT
        self.lines: dict[FieldPath, int] = {}

    def convert(self, node: Node, path: FieldPath) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise YamlProblem(
                f"document expands to more than {MAX_NODES_PER_DOCUMENT} nodes "
                "(YAML aliases used as an expansion bomb?)",
                node.start_mark.line + 1,
            )
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if isinstance(node, SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        raise YamlProblem(f"unsupported YAML node {type(node).__name__}", node.start_mark.line + 1)

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            return self._scalars.construct_object(node)
        except yaml.YAMLError as exc:
            raise YamlProblem(f"bad scalar: {exc}", node.start_mark.line + 1) from None

    def _mapping(self, node: MappingNode, path: FieldPath) -> dict[Any, Any]:
        try:
            self._scalars.flatten_mapping(node)  # resolves YAML merge keys (<<)
        except yaml.YAMLError as exc:
            raise YamlProblem(f"bad merge key: {exc}", node.start_mark.line + 1) from None
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem("mapping keys must be plain values", key_node.start_mark.line + 1)
            key = self._scalar(key_node)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise YamlProblem(f"unsupported key {key!r}", key_node.start_mark.line + 1)
            if key in out:
                raise YamlProblem(f"duplicate key {key!r}", key_node.start_mark.line + 1)
            child = (*path, str(key))
            self.lines[child] = key_node.start_mark.line + 1  # the key's line reads best
            out[key] = self.convert(value_node, child)
        return out


def read_text(path: Path, display: str) -> str:
    """Bytes from disk to text, refusing huge, binary and non-UTF-8 files."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise YamlProblem(f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlProblem(f"cannot read {display}: {exc.strerror or exc}") from None
    return decode(raw)


def decode(raw: bytes) -> str:
    if b"\x00" in raw:
        raise YamlProblem("binary file (contains NUL bytes), not YAML")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlProblem("not valid UTF-8 (Kubernetes YAML must be UTF-8)", line) from None


def parse_documents(text: str) -> Iterator[YamlDocument]:
    """Every non-empty document of a YAML stream, with field lines. Raises YamlProblem."""
    try:
        for node in yaml.compose_all(text, Loader=FastLoader):
            if node is None:
                continue
            converter = _Converter()
            data = converter.convert(node, ())
            if data is None:
                continue
            yield YamlDocument(data, node.start_mark.line + 1, converter.lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlProblem(f"invalid YAML: {exc.problem or exc.context}", line) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlProblem("YAML nested too deeply") from None


def load_file(path: Path, display: str) -> list[YamlDocument]:
    return list(parse_documents(read_text(path, display)))


@lru_cache(maxsize=4096)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> tuple[YamlDocument, ...]:
    return tuple(parse_documents(read_text(Path(path), path)))


def load_file_cached(path: Path, display: str) -> tuple[YamlDocument, ...]:
    """load_file, parsed once while the file is unchanged (pre-flight and source mapping
    read the same files). Raises YamlProblem; problems are not cached."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise YamlProblem(f"cannot read {display}: {exc.strerror or exc}") from None
    return _load_cached(str(path), stat.st_mtime_ns, stat.st_size)


def load_stream_fast(text: str) -> list[Any]:
    """Plain data from trusted tool output (kustomize): no line tracking needed."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=FastLoader) if doc is not None]
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML from renderer: {exc}") from None
