"""The small builders every part of the OpenAPI document uses: a reference to a named
schema, and a closed object schema (no unknown properties, so drift fails the tests).

It must not carry behaviour: it only shapes JSON Schema.
"""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    """A reference to `#/components/schemas/<name>`."""
    return {"$ref": f"#/components/schemas/{name}"}


def closed(properties: dict[str, Any], required: list[str] | None = None, description: str = "") -> dict[str, Any]:
    """An object schema with exactly these properties (`required`: all of them unless given)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema
