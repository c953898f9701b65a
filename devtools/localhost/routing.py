"""Route templates as the Functions host (ASP.NET Core routing) reads them.

`optouts/{phoneNumber}`, `items/{id:int}`, `files/{*path}`, `a/{b?}`: literal
segments match case-insensitively; when several routes match, the more specific one
wins, segment by segment (literal, then constrained parameter, then parameter, then
optional, then catch-all), which is how `optouts/remove` beats `optouts/{phoneNumber}`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

_PARAMETER = re.compile(r"^\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<constraints>(?::[^:{}?]+(?:\([^)]*\))?)*)(?P<optional>\?)?\}$")
_CONSTRAINT = re.compile(r"(?P<name>[a-z]+)(?:\((?P<argument>[^)]*)\))?")

LITERAL, CONSTRAINED, PARAMETER, OPTIONAL, CATCH_ALL = range(5)


def _number_check(kind: type) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            kind(value)
        except ValueError:
            return False
        return True

    return check


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": lambda v: re.fullmatch(r"-?\d+", v) is not None and -(2**31) <= int(v) < 2**31,
    "long": lambda v: re.fullmatch(r"-?\d+", v) is not None and -(2**63) <= int(v) < 2**63,
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "guid": _is_guid,
    "double": _number_check(float),
    "float": _number_check(float),
    "decimal": _number_check(float),
    "datetime": _is_datetime,
}


def _argument_constraint(name: str, argument: str) -> Callable[[str], bool]:
    if name == "regex":
        pattern = re.compile(argument)
        return lambda v: pattern.fullmatch(v) is not None
    numbers = [int(part) for part in argument.split(",")]
    checks: dict[str, Callable[[str], bool]] = {
        "minlength": lambda v: len(v) >= numbers[0],
        "maxlength": lambda v: len(v) <= numbers[0],
        "length": lambda v: (len(v) == numbers[0]) if len(numbers) == 1 else numbers[0] <= len(v) <= numbers[1],
        "min": lambda v: v.lstrip("-").isdigit() and int(v) >= numbers[0],
        "max": lambda v: v.lstrip("-").isdigit() and int(v) <= numbers[0],
        "range": lambda v: v.lstrip("-").isdigit() and numbers[0] <= int(v) <= numbers[1],
    }
    if name not in checks:
        raise ValueError(f"unsupported route constraint: {name}")
    return checks[name]


@dataclass(frozen=True)
class _Segment:
    kind: int
    text: str  # the literal, or the parameter name
    checks: tuple[Callable[[str], bool], ...] = ()


class RouteTemplate:
    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.segments = tuple(self._parse(part) for part in self.template.split("/")) if self.template else ()
        if any(s.kind == CATCH_ALL for s in self.segments[:-1]):
            raise ValueError(f"route {template!r}: a catch-all parameter must come last")

    @staticmethod
    def _parse(part: str) -> _Segment:
        if "{" not in part:
            return _Segment(LITERAL, part.lower())
        match = _PARAMETER.match(part)
        if not match:
            raise ValueError(f"unsupported route segment: {part!r}")
        checks = []
        for constraint in filter(None, match.group("constraints").split(":")):
            parsed = _CONSTRAINT.fullmatch(constraint)
            if not parsed:
                raise ValueError(f"unsupported route constraint: {constraint!r}")
            name, argument = parsed.group("name"), parsed.group("argument")
            if argument is None:
                if name not in _SIMPLE_CONSTRAINTS:
                    raise ValueError(f"unsupported route constraint: {name}")
                checks.append(_SIMPLE_CONSTRAINTS[name])
            else:
                checks.append(_argument_constraint(name, argument))
        if match.group("star"):
            kind = CATCH_ALL
        elif match.group("optional"):
            kind = OPTIONAL
        else:
            kind = CONSTRAINED if checks else PARAMETER
        return _Segment(kind, match.group("name"), tuple(checks))

    @property
    def precedence(self) -> tuple[int, ...]:
        """Smaller sorts first: more specific segments win."""
        return tuple(segment.kind for segment in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        parts = [unquote(part) for part in path.strip("/").split("/")] if path.strip("/") else []
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.kind == CATCH_ALL:
                rest = "/".join(parts[index:])
                if rest and not all(check(rest) for check in segment.checks):
                    return None
                if rest:
                    values[segment.text] = rest
                return values
            if index >= len(parts):
                return values if all(s.kind in (OPTIONAL, CATCH_ALL) for s in self.segments[index:]) else None
            part = parts[index]
            if segment.kind == LITERAL:
                if part.lower() != segment.text:
                    return None
                continue
            if not part or not all(check(part) for check in segment.checks):
                return None
            values[segment.text] = part
        return values if len(parts) == len(self.segments) else None
