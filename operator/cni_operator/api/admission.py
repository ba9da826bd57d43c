"""What the API server's admission does with a ClusterNetwork, offline: the same steps on the same generated CRD.

The steps, in the API server's order (k8s.io/apiextensions-apiserver, create with `fieldValidation=Strict`, as
kubectl, Argo CD and Flux send it):

1. pruning: fields the structural schema does not declare are unknown (Strict refuses them; `settings` keeps
   everything, it is `x-kubernetes-preserve-unknown-fields`);
2. defaulting: a missing field, or a null one, gets the schema's `default`, recursively (so `rollout: {}` gets
   `maxUnavailable: 1`); other nulls are pruned (a null required field is then missing);
3. the OpenAPI schema (types, enums, required, lengths, ranges, patterns), by `jsonschema` on the schema converted
   from the CRD's structural schema (int-or-string becomes `integer | string`; patterns are RE2, as in Go);
4. the CEL rules (`x-kubernetes-validations`) by `celpy` with Kubernetes' extension functions (`api.cel`), on every
   node of the object that has rules, unless step 3 found a "blocking" error (a wrong type, an unsupported enum
   value, a missing required field, a string or list over its maximum), as the API server skips them then.

Not emulated, because the ClusterNetwork schema has none of them: `x-kubernetes-list-type` set/map uniqueness,
`format`, transition rules (`oldSelf`) and the CEL cost budget. `tests/integration/test_admission_agreement.py` runs
one corpus through both this and the real API server and asserts they agree.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

import jsonschema
from celpy.evaluation import CELEvalError
from jsonschema.exceptions import ValidationError

from cni_operator.api.cel import CompiledRule, compile_rule, regex_search


class ErrorKind(StrEnum):
    """The API server's field.ErrorType of each refusal (the first five keep CEL rules from running)."""

    REQUIRED = "Required"
    NOT_SUPPORTED = "NotSupported"
    TOO_LONG = "TooLong"
    TOO_MANY = "TooMany"
    TYPE_INVALID = "TypeInvalid"
    INVALID = "Invalid"
    UNKNOWN_FIELD = "UnknownField"


BLOCKING = frozenset(
    {ErrorKind.REQUIRED, ErrorKind.NOT_SUPPORTED, ErrorKind.TOO_LONG, ErrorKind.TOO_MANY, ErrorKind.TYPE_INVALID}
)


@dataclass(frozen=True)
class FieldError:
    field: str  # as the API server names it: spec.podCIDRs[0], spec.rollout.maxUnavailable
    kind: ErrorKind
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Admitted:
    """The object as the API server would store it (pruned and defaulted), and why it would refuse it."""

    value: Any
    errors: tuple[FieldError, ...] = ()

    @property
    def admitted(self) -> bool:
        return not self.errors


# -- the structural schema as JSON Schema ------------------------------------------------------------------------

_COPIED = (
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "required",
)


def json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A structural (OpenAPI v3.0) schema node as a JSON Schema 2020-12 one, for `jsonschema`."""
    out: dict[str, Any] = {key: copy.deepcopy(node[key]) for key in _COPIED if key in node}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    elif "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    for bound, key in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(key) is True and bound in out:  # OpenAPI v3.0's boolean form
            out[key] = out.pop(bound)
    if "properties" in node:
        out["properties"] = {name: json_schema(prop) for name, prop in node["properties"].items()}
    if isinstance(node.get("items"), Mapping):
        out["items"] = json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), Mapping):
        out["additionalProperties"] = json_schema(node["additionalProperties"])
    return out


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not regex_search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, {"pattern": _re2_pattern}
)


# -- CEL rules ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    compiled: CompiledRule
    message: str
    message_expression: CompiledRule | None
    field_path: str

    def check(self, value: Any) -> str | None:
        """None when the rule holds on the value; otherwise the refusal's message. An evaluation error fails the
        rule, as in the API server."""
        if self.compiled.holds(value):
            return None
        if self.message_expression is not None:
            try:
                return str(self.message_expression.evaluate(value))
            except CELEvalError:
                pass
        return f"{self.message}; got {_json(value)}"


@dataclass
class _Node:
    """A schema node with its rules compiled, and its children."""

    schema: Mapping[str, Any]
    rules: list[_Rule] = field(default_factory=list)
    properties: dict[str, _Node] = field(default_factory=dict)
    items: _Node | None = None
    additional: _Node | None = None


def _compile(schema: Mapping[str, Any]) -> _Node:
    node = _Node(schema)
    for rule in schema.get("x-kubernetes-validations", []):
        expression = rule.get("messageExpression")
        node.rules.append(
            _Rule(
                compiled=compile_rule(rule["rule"]),
                message=rule.get("message") or f"failed rule: {rule['rule']}",
                message_expression=compile_rule(expression) if expression else None,
                field_path=rule.get("fieldPath", ""),
            )
        )
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return node
    node.properties = {name: _compile(prop) for name, prop in schema.get("properties", {}).items()}
    if isinstance(schema.get("items"), Mapping):
        node.items = _compile(schema["items"])
    if isinstance(schema.get("additionalProperties"), Mapping):
        node.additional = _compile(schema["additionalProperties"])
    return node


# -- the admission ------------------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _hint(schema: Mapping[str, Any]) -> str:
    description = str(schema.get("description", "")).strip()
    return f" ({description})" if description else ""


class Admission:
    """The API server's admission of one object kind's `spec`, from the CRD's structural schema."""

    def __init__(self, crd: Mapping[str, Any], version: str | None = None) -> None:
        versions = crd["spec"]["versions"]
        chosen = next((v for v in versions if v["name"] == version), None) if version else versions[0]
        if chosen is None:
            raise ValueError(f"the CRD has no version {version}")
        self.kind: str = crd["spec"]["names"]["kind"]
        self.root: Mapping[str, Any] = chosen["schema"]["openAPIV3Schema"]
        self.schema: Mapping[str, Any] = self.root["properties"]["spec"]
        self.spec_required = "spec" in self.root.get("required", [])
        self._validator = _Validator(json_schema(self.schema))
        self._rules = _compile(self.schema)

    def rules(self) -> list[str]:
        """Every CEL rule of the spec schema (for tests and docs)."""
        found: list[str] = []

        def walk(node: _Node) -> None:
            found.extend(rule.compiled.text for rule in node.rules)
            for child in (*node.properties.values(), node.items, node.additional):
                if child is not None:
                    walk(child)

        walk(self._rules)
        return found

    def admit_spec(self, spec: Any) -> Admitted:
        """Prune, default and validate a spec; the errors name each field as the API server does."""
        if spec is None:
            if self.spec_required:
                return Admitted(None, (FieldError("spec", ErrorKind.REQUIRED, "required: add the spec"),))
            return Admitted(None)
        errors: list[FieldError] = []
        value = self._prepare(self.schema, copy.deepcopy(spec), "spec", errors)
        schema_errors = list(self._schema_errors(value))
        errors += schema_errors
        if not any(e.kind in BLOCKING for e in schema_errors):
            errors += self._cel_errors(self._rules, value, "spec")
        return Admitted(value, tuple(errors))

    # step 1 and 2 --------------------------------------------------------------------------------------------

    def _prepare(self, schema: Mapping[str, Any], value: Any, path: str, errors: list[FieldError]) -> Any:
        if isinstance(value, list):
            items = schema.get("items")
            if isinstance(items, Mapping):
                return [self._prepare(items, item, f"{path}[{i}]", errors) for i, item in enumerate(value)]
            return value
        if not isinstance(value, dict):
            return value
        properties: Mapping[str, Any] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if key in properties or isinstance(additional, Mapping) or preserve:
                kept[key] = item
            else:
                errors.append(FieldError(f"{path}.{key}", ErrorKind.UNKNOWN_FIELD, self._unknown(key, properties)))
        for key, prop in properties.items():
            nullable = bool(prop.get("nullable"))
            if "default" in prop and (key not in kept or (kept[key] is None and not nullable)):
                kept[key] = copy.deepcopy(prop["default"])
            elif key in kept and kept[key] is None and not nullable:
                del kept[key]
        for key, item in kept.items():
            child = properties.get(key) or (additional if isinstance(additional, Mapping) else None)
            if child is not None:
                kept[key] = self._prepare(
                    child, item, f"{path}.{key}" if key in properties else f"{path}[{key}]", errors
                )
        return kept

    @staticmethod
    def _unknown(key: str, properties: Mapping[str, Any]) -> str:
        close = difflib.get_close_matches(key, list(properties), n=1)
        if close:
            return f"unknown field; did you mean {close[0]}? Otherwise remove it"
        known = ", ".join(properties) or "none"
        return f"unknown field; remove it (known fields here: {known})"

    # step 3 ------------------------------------------------------------------------------------------------------

    def _path(self, location: Sequence[Any]) -> tuple[str, Mapping[str, Any]]:
        """The API server's name for a location in the spec, and the schema node there."""
        path, schema = "spec", self.schema
        for part in location:
            if isinstance(part, int):
                path += f"[{part}]"
                schema = schema.get("items", {})
            elif part in schema.get("properties", {}):
                path += f".{part}"
                schema = schema["properties"][part]
            else:  # a map key: the OpenAPI validator names it like a property (nodeSelector.pool)
                path += f".{part}"
                additional = schema.get("additionalProperties")
                schema = additional if isinstance(additional, Mapping) else {}
        return path, schema

    def _schema_errors(self, value: Any) -> Iterator[FieldError]:
        for error in sorted(self._validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
            path, schema = self._path(list(error.absolute_path))
            keyword, expected, instance = error.validator, error.validator_value, error.instance
            if keyword == "required":
                for name in expected:
                    if isinstance(instance, dict) and name not in instance:
                        prop = schema.get("properties", {}).get(name, {})
                        where = f"{path}.{name}"
                        yield FieldError(where, ErrorKind.REQUIRED, f"required: add {name}{_hint(prop)}")
                continue
            yield self._field_error(path, schema, str(keyword), expected, instance, error.message)

    @staticmethod
    def _field_error(
        path: str, schema: Mapping[str, Any], keyword: str, expected: Any, instance: Any, fallback: str
    ) -> FieldError:
        hint = _hint(schema)
        if keyword == "type":
            types = expected if isinstance(expected, list) else [expected]
            wanted = " or ".join(t for t in types if t != "null")
            return FieldError(
                path, ErrorKind.TYPE_INVALID, f"must be {wanted}, not {_type_name(instance)} {_json(instance)}{hint}"
            )
        if keyword == "enum":
            options = ", ".join(str(o) for o in expected)
            return FieldError(
                path, ErrorKind.NOT_SUPPORTED, f"unsupported value {_json(instance)}; use one of: {options}{hint}"
            )
        if keyword == "maxLength":
            return FieldError(
                path, ErrorKind.TOO_LONG, f"may be at most {expected} characters, not {len(instance)}{hint}"
            )
        if keyword in ("maxItems", "maxProperties"):
            return FieldError(
                path, ErrorKind.TOO_MANY, f"may hold at most {expected} entries, not {len(instance)}{hint}"
            )
        if keyword in ("minItems", "minProperties"):
            return FieldError(
                path, ErrorKind.INVALID, f"needs at least {expected} {'entry' if expected == 1 else 'entries'}{hint}"
            )
        if keyword == "minLength":
            return FieldError(path, ErrorKind.INVALID, f"needs at least {expected} characters{hint}")
        if keyword == "pattern":
            return FieldError(path, ErrorKind.INVALID, f"{_json(instance)} does not have the form {expected}{hint}")
        if keyword in ("minimum", "exclusiveMinimum"):
            word = "at least" if keyword == "minimum" else "more than"
            return FieldError(path, ErrorKind.INVALID, f"must be {word} {expected}, not {_json(instance)}{hint}")
        if keyword in ("maximum", "exclusiveMaximum"):
            word = "at most" if keyword == "maximum" else "less than"
            return FieldError(path, ErrorKind.INVALID, f"must be {word} {expected}, not {_json(instance)}{hint}")
        return FieldError(path, ErrorKind.INVALID, f"{fallback}{hint}")

    # step 4 ------------------------------------------------------------------------------------------------------

    def _cel_errors(self, node: _Node, value: Any, path: str) -> Iterator[FieldError]:
        if value is None:
            return
        for rule in node.rules:
            message = rule.check(value)
            if message is not None:
                where = path + (rule.field_path if rule.field_path.startswith(("[", ".")) else "")
                yield FieldError(where, ErrorKind.INVALID, message)
        if isinstance(value, dict):
            for key, item in value.items():
                if key in node.properties:
                    yield from self._cel_errors(node.properties[key], item, f"{path}.{key}")
                elif node.additional is not None:
                    yield from self._cel_errors(node.additional, item, f"{path}[{key}]")
        elif isinstance(value, list) and node.items is not None:
            for index, item in enumerate(value):
                yield from self._cel_errors(node.items, item, f"{path}[{index}]")


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def name_errors(name: Any) -> list[FieldError]:
    """metadata.name of a cluster-scoped object: a DNS subdomain (lower case, at most 253 characters)."""
    if not name:
        return [FieldError("metadata.name", ErrorKind.REQUIRED, "required: give the ClusterNetwork a name")]
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        return [
            FieldError(
                "metadata.name",
                ErrorKind.INVALID,
                f"{_json(name)} is not a DNS subdomain: lower-case letters, digits, '-' and '.', starting and "
                "ending with a letter or digit, at most 253 characters (e.g. default)",
            )
        ]
    return []


@cache
def clusternetwork_admission() -> Admission:
    """The admission of the ClusterNetwork CRD this operator generates (crds/clusternetwork.yaml is the same
    document, as tests/unit/test_crd.py asserts)."""
    from cni_operator.api.crd import CLUSTER_NETWORK, custom_resource_definition

    return Admission(custom_resource_definition(CLUSTER_NETWORK))
