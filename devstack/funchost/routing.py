"""HTTP trigger route templates (ASP.NET Core syntax, as the Functions host uses) and the route table.

Supported: literal segments (case-insensitive), ``{name}``, ``{name?}`` (optional), ``{name=default}``,
``{*name}``/``{**name}`` (catch-all), several parameters in one segment (``{name}.{ext}``) and the common
inline constraints (int, long, bool, guid, alpha, double, decimal, float, datetime, min, max, range,
minlength, maxlength, length, regex). More specific routes win: literals before parameters before
catch-alls, segment by segment.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote

_RANK_LITERAL, _RANK_CONSTRAINED, _RANK_PARAMETER, _RANK_OPTIONAL, _RANK_CATCH_ALL = range(5)

Validator = Callable[[str], bool]


class RouteTemplateError(ValueError):
    pass


def _is_int(text: str) -> bool:
    return re.fullmatch(r"-?\d+", text) is not None


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", text) is not None


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text.strip("{}()"))
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _constraint(name: str, argument: str | None) -> Validator:
    simple: dict[str, Validator] = {
        "int": _is_int,
        "long": _is_int,
        "bool": lambda text: text.lower() in ("true", "false"),
        "guid": _is_guid,
        "alpha": lambda text: re.fullmatch(r"[A-Za-z]+", text) is not None,
        "double": _is_number,
        "decimal": _is_number,
        "float": _is_number,
        "datetime": _is_datetime,
    }
    if name in simple:
        return simple[name]
    if argument is None:
        raise RouteTemplateError(f"unknown route constraint {name!r}")
    if name == "regex":
        # Route templates escape braces inside a regex by doubling them.
        pattern = re.compile(argument.replace("{{", "{").replace("}}", "}"), re.IGNORECASE)
        return lambda text: pattern.search(text) is not None
    numbers = [int(part) for part in argument.split(",")]
    if name == "minlength":
        return lambda text: len(text) >= numbers[0]
    if name == "maxlength":
        return lambda text: len(text) <= numbers[0]
    if name == "length":
        low, high = (numbers[0], numbers[-1])
        return lambda text: low <= len(text) <= high
    if name == "min":
        return lambda text: _is_int(text) and int(text) >= numbers[0]
    if name == "max":
        return lambda text: _is_int(text) and int(text) <= numbers[0]
    if name == "range":
        return lambda text: _is_int(text) and numbers[0] <= int(text) <= numbers[1]
    raise RouteTemplateError(f"unknown route constraint {name!r}")


@dataclass
class _Parameter:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    validators: list[Validator] = field(default_factory=list)


def _split_constraints(text: str) -> list[str]:
    # ':' separates constraints except inside a constraint's parentheses (regex arguments contain colons).
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _parse_parameter(text: str) -> _Parameter:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    # ASP.NET puts the optional marker last, after any constraints: {id:int?}
    trailing_optional = text.endswith("?")
    text = text.removesuffix("?")
    head, *constraints = _split_constraints(text)
    default = None
    if "=" in head:
        head, default = head.split("=", 1)
    optional = trailing_optional or head.endswith("?")
    name = head.rstrip("?")
    if not re.fullmatch(r"\w+", name):
        raise RouteTemplateError(f"bad route parameter name {name!r}")
    validators = []
    for constraint in constraints:
        match = re.fullmatch(r"(\w+)(?:\((.*)\))?", constraint, re.DOTALL)
        if not match:
            raise RouteTemplateError(f"bad route constraint {constraint!r}")
        validators.append(_constraint(match.group(1).lower(), match.group(2)))
    return _Parameter(name, optional or default is not None, catch_all, default, validators)


def _segment_parts(segment: str) -> list[str | _Parameter]:
    parts: list[str | _Parameter] = []
    position = 0
    while position < len(segment):
        start = segment.find("{", position)
        if start < 0:
            parts.append(segment[position:])
            break
        if start > position:
            parts.append(segment[position:start])
        depth, end = 0, start
        for end in range(start, len(segment)):
            depth += {"{": 1, "}": -1}.get(segment[end], 0)
            if depth == 0:
                break
        if depth != 0:
            raise RouteTemplateError(f"unbalanced braces in route segment {segment!r}")
        parts.append(_parse_parameter(segment[start + 1 : end]))
        position = end + 1
    return parts


@dataclass
class Route:
    function_name: str
    template: str
    methods: frozenset[str] | None
    _regex: re.Pattern[str] = field(init=False, repr=False)
    _parameters: list[_Parameter] = field(init=False, repr=False)
    precedence: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        pattern, parameters, precedence = "", [], []
        for segment in [part for part in self.template.strip("/").split("/") if part]:
            parts = _segment_parts(segment)
            segment_pattern = ""
            for part in parts:
                if isinstance(part, str):
                    segment_pattern += re.escape(part)
                else:
                    parameters.append(part)
                    body = ".*" if part.catch_all else "[^/]+"
                    segment_pattern += f"(?P<{part.name}>{body})"
            lone = parts[0] if len(parts) == 1 else None
            if isinstance(lone, _Parameter) and (lone.optional or lone.catch_all):
                # An optional or catch-all segment may be missing together with its slash.
                pattern += f"(?:/{segment_pattern})?"
                precedence.append(_RANK_CATCH_ALL if lone.catch_all else _RANK_OPTIONAL)
            else:
                pattern += "/" + segment_pattern
                if all(isinstance(part, str) for part in parts):
                    precedence.append(_RANK_LITERAL)
                elif any(isinstance(part, _Parameter) and part.validators for part in parts):
                    precedence.append(_RANK_CONSTRAINED)
                else:
                    precedence.append(_RANK_PARAMETER)
        self._regex = re.compile(f"^{pattern}/?$", re.IGNORECASE)
        self._parameters = parameters
        self.precedence = tuple(precedence)

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters (URL-decoded) when ``path`` (below the route prefix, leading '/') matches."""
        found = self._regex.match(path)
        if not found:
            return None
        values: dict[str, str] = {}
        for parameter in self._parameters:
            raw = found.group(parameter.name)
            if raw is None or raw == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                continue
            value = unquote(raw)
            if not all(validator(value) for validator in parameter.validators):
                return None
            values[parameter.name] = value
        return values


class NoRouteError(LookupError):
    pass


class MethodNotAllowedError(LookupError):
    def __init__(self, allowed: Iterable[str]) -> None:
        super().__init__("method not allowed")
        self.allowed = sorted(allowed)


class RouteTable:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, function_name: str, template: str, methods: Iterable[str] | None) -> None:
        method_set = frozenset(method.upper() for method in methods) if methods else None
        self._routes.append(Route(function_name, template, method_set))
        self._routes.sort(key=lambda route: route.precedence)

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: set[str] = set()
        for route in self._routes:
            params = route.match(path)
            if params is None:
                continue
            if route.methods is None or method.upper() in route.methods:
                return route, params
            allowed |= route.methods
        if allowed:
            raise MethodNotAllowedError(allowed)
        raise NoRouteError(path)

    def allowed_methods(self, path: str) -> frozenset[str] | None:
        """The methods some route matching `path` accepts (None: a route accepts any), or an empty set."""
        allowed: set[str] = set()
        for route in self._routes:
            if route.match(path) is None:
                continue
            if route.methods is None:
                return None
            allowed |= route.methods
        return frozenset(allowed)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)
