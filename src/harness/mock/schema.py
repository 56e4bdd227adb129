"""The schema rule (contract section 1, "Schema rule"): one deterministic instance of a JSON
Schema, for tool-call arguments and structured output; and the check that a function's
`parameters` is an object schema, as the real API requires."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Strings of a known `format` are that format's one sample.
FORMAT_SAMPLES = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
# A string not under a property (top level, array items) is this.
ANONYMOUS_STRING = "text"
# Deeper than this (a recursive `$ref`), the instance is null rather than endless.
MAX_DEPTH = 32


def instance(schema: Any) -> Any:
    """The instance the mock generates for `schema` (its own root for `$ref`)."""
    return _instance(schema, schema, None, 0)


def _resolve(ref: Any, root: Any) -> Any:
    """`#/$defs/X` or `#/definitions/X` in the root; anything else resolves to no schema."""
    if not isinstance(ref, str) or not isinstance(root, Mapping):
        return {}
    for prefix, key in (("#/$defs/", "$defs"), ("#/definitions/", "definitions")):
        defs = root.get(key)
        if ref.startswith(prefix) and isinstance(defs, Mapping):
            return defs.get(ref[len(prefix) :], {})
    return {}


def _is_null_branch(branch: Any) -> bool:
    return isinstance(branch, Mapping) and branch.get("type") == "null"


def _instance(schema: Any, root: Any, name: str | None, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return None
    if not isinstance(schema, Mapping):
        # `true` or anything that is no schema object: no type.
        return name or ANONYMOUS_STRING
    if "$ref" in schema:
        return _instance(_resolve(schema["$ref"], root), root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = [branch for branch in branches if not _is_null_branch(branch)]
            return _instance(chosen[0], root, name, depth + 1) if chosen else None
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [each for each in kind if each != "null"]
        kind = kinds[0] if kinds else "null"
    return _typed(kind, schema, root, name, depth)


def _typed(kind: Any, schema: Mapping[str, Any], root: Any, name: str | None, depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {
            key: _instance(value, root, str(key), depth + 1) for key, value in properties.items()
        }
    if kind == "array":
        min_items = schema.get("minItems")
        count = max(min_items, 1) if isinstance(min_items, int) else 1
        return [_instance(schema.get("items"), root, None, depth + 1) for _ in range(count)]
    if kind == "string":
        text = FORMAT_SAMPLES.get(str(schema.get("format")), name or ANONYMOUS_STRING)
        min_length = schema.get("minLength")
        if isinstance(min_length, int) and min_length > len(text):
            text += "x" * (min_length - len(text))
        return text
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        if isinstance(minimum, (int, float)) and not isinstance(minimum, bool):
            return minimum
        return 1 if kind == "integer" else 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return name or ANONYMOUS_STRING


def object_schema_problem(parameters: Any) -> str | None:
    """Why `parameters` is no function-parameters schema (None when it is one).

    Absent (null) parameters and `{}` mean "no parameters"; anything else must be a JSON
    object with `"type": "object"`."""
    if parameters is None or parameters == {}:
        return None
    if not isinstance(parameters, Mapping):
        return "schema must be a JSON object"
    if parameters.get("type") != "object":
        return (
            "schema must be a JSON Schema of 'type: \"object\"', "
            f"got 'type: \"{parameters.get('type')}\"'"
        )
    return None
