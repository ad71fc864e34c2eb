"""CRD validation rules (`x-kubernetes-validations`, CEL), evaluated as the API server does.

For each schema node with rules, `self` is the value there, after the API server's defaulting
(a schema `default` fills a missing field first, so a rule may rely on it). Object fields are
named as Kubernetes escapes them (`namespace` is `__namespace__`, `a-b` is `a__dash__b`).
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules

Not evaluated: transition rules (they read `oldSelf`, the object before an update; a
repository holds no "before"), listed by `tools/schemas list --rules`. A rule that uses a
function not implemented here is a `schema/cel-unevaluable` warning, reported once per run.
Each rule is compiled once per process; verdicts are cached by the caller per object.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import celpy
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, CELUnsupportedError, Evaluator, base_functions
from lark import Token, Tree

from vllm_gitops.schema.cel_library import KUBERNETES_FUNCTIONS
from vllm_gitops.yamlsafe import FieldPath

_MACROS = {"has", "all", "exists", "exists_one", "map", "filter"}
_KNOWN_FUNCTIONS = _MACROS | set(base_functions) | set(KUBERNETES_FUNCTIONS)
_CALLS = {"member_dot_arg", "ident_arg", "dot_ident_arg"}
_OLD_SELF = re.compile(r"\boldSelf\b")
# https://github.com/kubernetes/kubernetes/blob/master/staging/src/k8s.io/apiserver/pkg/cel/escaping.go
_RESERVED = {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
             "function", "if", "import", "let", "loop", "package", "namespace", "return",
             "var", "void", "while"}
_ESCAPE = re.compile(r"__|[-./]")
_ESCAPES = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}
_FIELD_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[\s*'([^']*)'\s*\]|\[\s*(\d+)\s*\]")


@dataclass(frozen=True)
class CelRule:
    rule: str
    message: str | None
    message_expression: str | None
    field_path: str | None
    schema_path: FieldPath  # where the rule sits (in a schema listing: list items as 0)

    @property
    def is_transition(self) -> bool:
        return bool(_OLD_SELF.search(self.rule))

    @property
    def short(self) -> str:
        text = " ".join(self.rule.split())
        return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class CelFailure:
    """One rule the object breaks (or one that could not be evaluated: `unevaluable`)."""

    path: FieldPath
    message: str
    unevaluable: bool = False


def rules_of_schema(schema: dict[str, Any]) -> list[CelRule]:
    """Every CEL rule of a schema, in document order (for listing and counting)."""
    found: list[CelRule] = []

    def walk(node: Any, path: FieldPath) -> None:
        if not isinstance(node, dict):
            return
        found.extend(_rules_at(node, path))
        for name, child in (node.get("properties") or {}).items():
            walk(child, (*path, name))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], (*path, "*"))
        if isinstance(node.get("items"), dict):
            walk(node["items"], (*path, 0))

    walk(schema, ())
    return found


def _rules_at(node: dict[str, Any], path: FieldPath) -> list[CelRule]:
    out = []
    for item in node.get("x-kubernetes-validations") or []:
        if isinstance(item, dict) and isinstance(item.get("rule"), str):
            out.append(CelRule(item["rule"], _text(item.get("message")),
                               _text(item.get("messageExpression")),
                               _text(item.get("fieldPath")), path))
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class _KubernetesEvaluator(Evaluator):
    """cel-python's interpreter, with macros as in cel-go: an error for one element (of
    exists_one, map, filter) is an error value, so `true || <that>` is true, not an exception
    that escapes `||`."""

    def sub_evaluator(self, ast: Tree[Any]) -> Evaluator:
        return _KubernetesEvaluator(ast, activation=self.activation)

    def member_dot_arg(self, tree: Tree[Any]) -> Any:
        method = tree.children[1]
        if not (isinstance(method, Token) and method.value == "exists_one"):
            try:
                return super().member_dot_arg(tree)
            except CELEvalError as raised:  # from map/filter: a value, as in cel-go
                return raised
        items = self.visit(cast(Tree[Any], tree.children[0]))
        if isinstance(items, CELEvalError):
            return items
        test = self.build_ss_macro_eval(tree)
        results = [test(item) for item in items]
        failed = next((r for r in results if isinstance(r, CELEvalError)), None)
        if failed is not None:
            return failed
        return celtypes.BoolType(sum(1 for r in results if bool(r)) == 1)


class _Runner(celpy.InterpretedRunner):
    def evaluate(self, context: Any) -> Any:
        return _KubernetesEvaluator(self.ast, activation=self.new_activation()).evaluate(context)


@dataclass
class _Compiled:
    program: celpy.Runner | None
    problem: str | None  # why the rule cannot be evaluated here


@dataclass
class CelEvaluator:
    """Evaluates the rules of CRD schemas; one per run (rules compile once)."""

    _environment: celpy.Environment = field(
        default_factory=lambda: celpy.Environment(runner_class=_Runner))
    _compiled: dict[str, _Compiled] = field(default_factory=dict)
    _has_rules: dict[int, tuple[dict[str, Any], bool]] = field(default_factory=dict)
    _outcomes: dict[tuple[int, str, str], tuple[str, bool] | None] = field(
        default_factory=dict)

    def failures(self, schema: dict[str, Any], document: dict[str, Any]) -> list[CelFailure]:
        """Every broken rule of `document` (which already passed the structural schema)."""
        if not self._subtree_has_rules(schema):
            return []
        defaulted = apply_defaults(schema, copy.deepcopy(document))
        out: list[CelFailure] = []
        for node, value, path in self._nodes_with_rules(schema, defaulted, ()):
            for rule in _rules_at(node, path):
                if not rule.is_transition:
                    failure = self._evaluate(rule, node, value, path)
                    if failure is not None:
                        out.append(failure)
        return out

    def _nodes_with_rules(self, node: dict[str, Any], value: Any,
                          path: FieldPath) -> Iterator[tuple[dict[str, Any], Any, FieldPath]]:
        if value is None or not self._subtree_has_rules(node):
            return
        if node.get("x-kubernetes-validations"):
            yield node, value, path
        if isinstance(value, dict):
            properties = node.get("properties") or {}
            extra = node.get("additionalProperties")
            for key, child in value.items():
                child_schema = properties.get(key, extra if isinstance(extra, dict) else None)
                if isinstance(child_schema, dict):
                    yield from self._nodes_with_rules(child_schema, child, (*path, key))
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            for index, item in enumerate(value):
                yield from self._nodes_with_rules(node["items"], item, (*path, index))

    def _subtree_has_rules(self, node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        cached = self._has_rules.get(id(node))
        if cached is not None:
            return cached[1]
        children = [*(node.get("properties") or {}).values(),
                    node.get("additionalProperties"), node.get("items")]
        known = bool(node.get("x-kubernetes-validations")) or any(
            self._subtree_has_rules(child) for child in children)
        self._has_rules[id(node)] = (node, known)  # the node is kept: its id stays its own
        return known

    def _evaluate(self, rule: CelRule, node: dict[str, Any], value: Any,
                  path: FieldPath) -> CelFailure | None:
        """The rule on one value; the same (rule, value) anywhere in the run is computed once
        (overlays repeat the same sub-objects: tags, selector terms, requirements)."""
        # The node (kept alive by _has_rules) fixes the rule's message and the field names.
        key = (id(node), rule.rule, json.dumps(value, sort_keys=True, default=str))
        if key not in self._outcomes:
            self._outcomes[key] = self._outcome(rule, node, value)
        outcome = self._outcomes[key]
        if outcome is None:
            return None
        message, unevaluable = outcome
        where = path if unevaluable else (*path, *_field_path(rule.field_path))
        return CelFailure(where, message, unevaluable)

    def _outcome(self, rule: CelRule, node: dict[str, Any],
                 plain: Any) -> tuple[str, bool] | None:
        """None when the rule holds; else (message, unevaluable)."""
        compiled = self._compile(rule.rule)
        if compiled.program is None:
            return f"{compiled.problem}: {rule.short}", True
        value = to_cel(node, plain)
        result: Any
        try:
            result = compiled.program.evaluate({"self": value})
        except CELEvalError as exc:
            result = exc
        except (CELUnsupportedError, RecursionError, TypeError, ValueError) as exc:
            return f"cannot be evaluated here ({exc}): {rule.short}", True
        if isinstance(result, CELEvalError):
            return _runtime_error(rule, result)
        if not isinstance(result, celtypes.BoolType | bool):
            return f"rule gives {type(result).__name__}, not a boolean: {rule.short}", True
        return None if result else (self._message(rule, value), False)

    def _message(self, rule: CelRule, value: Any) -> str:
        if rule.message_expression:
            compiled = self._compile(rule.message_expression)
            if compiled.program is not None:
                try:
                    text = compiled.program.evaluate({"self": value})
                except CELEvalError:
                    text = None
                if isinstance(text, str) and text.strip():  # StringType is a str
                    return str(text)
        return rule.message or f"failed rule: {rule.short}"

    def _compile(self, text: str) -> _Compiled:
        compiled = self._compiled.get(text)
        if compiled is None:
            compiled = self._compile_new(text)
            self._compiled[text] = compiled
        return compiled

    def _compile_new(self, text: str) -> _Compiled:
        try:
            tree = self._environment.compile(text)
        except CELParseError as exc:
            return _Compiled(None, f"CEL syntax not supported by cel-python ({exc})")
        unknown = sorted(_called_functions(tree) - _KNOWN_FUNCTIONS)
        if unknown:
            return _Compiled(None, "uses CEL function(s) not implemented here: "
                             + ", ".join(unknown))
        program = self._environment.program(tree, functions=KUBERNETES_FUNCTIONS)
        return _Compiled(program, None)


def _runtime_error(rule: CelRule, error: CELEvalError) -> tuple[str, bool]:
    cause = error.args[1] if len(error.args) > 1 else None
    reason = str(error.args[0]) if error.args else "error"
    if cause in (KeyError, ValueError, ZeroDivisionError):
        # The object's fault (a field the rule needs is absent, a bad number): the API
        # server rejects it too, with the same kind of "no such key" message.
        return f"the rule fails on this object ({reason}): {rule.short}", False
    return f"cannot be evaluated here ({reason}): {rule.short}", True


def _called_functions(tree: Tree[Any]) -> set[str]:
    names = set()
    for sub in tree.iter_subtrees():
        if sub.data in _CALLS:
            names |= {str(c) for c in sub.children if isinstance(c, Token) and c.type == "IDENT"}
    return names


def _field_path(text: str | None) -> FieldPath:
    """A rule's fieldPath (`.spec.x['a.b'][0]`) as path steps below the rule's node."""
    if not text:
        return ()
    steps: list[str | int] = []
    for match in _FIELD_STEP.finditer(text):
        name, quoted, index = match.groups()
        steps.append(int(index) if index is not None else (name or quoted or ""))
    return tuple(steps)


def escape(name: str) -> str:
    """A property name as CEL sees it on an object with declared properties."""
    if name in _RESERVED:
        return f"__{name}__"
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], name)


def to_cel(schema: Any, value: Any) -> Any:
    """Plain data as celpy values; declared properties get their escaped names."""
    node = schema if isinstance(schema, dict) else {}
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, list):
        return celtypes.ListType([to_cel(node.get("items"), item) for item in value])
    if isinstance(value, dict):
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if isinstance(properties, dict):
            return celtypes.MapType({
                celtypes.StringType(escape(str(k))): to_cel(properties.get(k, extra), v)
                for k, v in value.items()})
        return celtypes.MapType({celtypes.StringType(str(k)): to_cel(extra, v)
                                 for k, v in value.items()})
    return value


def apply_defaults(schema: Any, value: Any) -> Any:
    """Fill missing fields with their schema `default`, in place, like the API server."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name, child in properties.items():
            if name not in value and isinstance(child, dict) and "default" in child:
                value[name] = copy.deepcopy(child["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            apply_defaults(properties.get(key, extra), item)
    elif isinstance(value, list):
        for item in value:
            apply_defaults(schema.get("items"), item)
    return value
