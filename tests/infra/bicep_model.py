"""Reads infra/bicep with pycep (an offline Bicep parser) and resolves the literal values the drift tests compare.

pycep turns a Bicep file into JSON: parameters, variables, resources, modules, outputs. A string value is either a
literal or a bare identifier (a parameter or variable name); runtime references (module outputs, resource
properties) are nested operator/function objects. `resolve` follows identifiers to parameter defaults and variable
values, so `CHUNK_SIZE: string(chunkSize)` resolves to "500", and returns RUNTIME for anything only Azure knows.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pycep

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MAIN = BICEP_DIR / "main.bicep"
MODULES = BICEP_DIR / "modules"


class _Runtime:
    """A value known only at deployment time (a module output, a resource property)."""

    def __repr__(self) -> str:
        return "RUNTIME"


RUNTIME: Any = _Runtime()

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    """The pycep JSON of one file (raises on a syntax error)."""
    result = pycep.BicepParser().parse(file_path=path)
    return dict(result)


def unquote(key: str) -> str:
    """Object keys that needed quotes in Bicep keep them in pycep's output."""
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def resolve(value: Any, doc: dict[str, Any], _depth: int = 0) -> Any:
    """The literal a Bicep value stands for, following parameter defaults and variables; RUNTIME if unknowable."""
    if _depth > 20:
        raise RecursionError("Bicep value references itself")
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        params = doc.get("parameters", {})
        variables = doc.get("variables", {})
        if value in params:
            return resolve(params[value].get("default", RUNTIME), doc, _depth + 1)
        if value in variables:
            return resolve(variables[value]["value"], doc, _depth + 1)
        if "${" in value:
            return RUNTIME  # an interpolated string
        return value
    if isinstance(value, list):
        return [resolve(item, doc, _depth + 1) for item in value]
    if isinstance(value, dict):
        if set(value) == {"function"}:
            function = value["function"]
            if function.get("type") == "string":
                inner = resolve(function["parameters"]["value_to_convert"], doc, _depth + 1)
                if inner is RUNTIME:
                    return RUNTIME
                return str(inner).lower() if isinstance(inner, bool) else str(inner)
            return RUNTIME
        if set(value) == {"operator"}:
            return RUNTIME
        return {unquote(k): resolve(v, doc, _depth + 1) for k, v in value.items()}
    return RUNTIME


def references(value: Any) -> str:
    """A runtime reference rendered as dotted text, e.g. `identity.outputs.clientId` ('' if not a reference)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "operator" in value:
        operator = value["operator"]
        if operator.get("type") == "property_accessor":
            operands = operator["operands"]
            return f"{references(operands['operand_1'])}.{references(operands['operand_2'])}"
    return ""


def main_doc() -> dict[str, Any]:
    return parse(MAIN)


def module_doc(name: str) -> dict[str, Any]:
    return parse(MODULES / f"{name}.bicep")


def variable(name: str, doc: dict[str, Any] | None = None) -> Any:
    doc = main_doc() if doc is None else doc
    return doc["variables"][name]["value"]


def resource(doc: dict[str, Any], symbolic_name: str) -> dict[str, Any]:
    result: dict[str, Any] = doc["resources"][symbolic_name]
    return result


def resource_body(doc: dict[str, Any], symbolic_name: str) -> dict[str, Any]:
    """The object of a resource, looking through a `[for ...: {...}]` loop."""
    config = resource(doc, symbolic_name)["config"]
    if "loop_type" in config:
        body: dict[str, Any] = config["config"]
        return body
    return dict(config)


def seconds(duration: str) -> float:
    """Seconds in an ISO 8601 duration (`PT1M`, `P14D`) or a .NET TimeSpan (`00:10:00`, `1.00:00:00`)."""
    text = duration.strip()
    match = _DURATION.match(text)
    if match and text not in ("P", "PT"):
        days, hours, minutes, secs = match.groups()
        return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs or 0)
    match = _TIMESPAN.match(text)
    if match:
        days, hours, minutes, secs = match.groups()
        return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)
    raise ValueError(f"not a duration: {duration!r}")
