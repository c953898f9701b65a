"""Reading the Bicep under infra/ with a real grammar (tree-sitter-bicep).

Just enough of a model for the infra tests: every declaration by kind and name,
resource bodies as Python values (literals become str/bool/int, anything else stays
an `Expr` holding its source text), and the syntax errors the grammar reports.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


@functools.cache
def parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


@dataclass(frozen=True)
class Expr:
    """A Bicep expression that is not a plain literal, kept as its source text."""

    text: str


@dataclass
class Declaration:
    kind: str  # param, var, resource, module, output
    name: str
    node: tree_sitter.Node
    file: Path
    type_text: str = ""  # resource: 'Type@version'; output/param: declared type
    decorators: list[str] = field(default_factory=list)

    @property
    def body(self) -> tree_sitter.Node | None:
        """The value: a resource's or module's object, a var's or output's expression."""
        for child in reversed(self.node.named_children):
            if child.type in {"object", "for_statement", "if_statement"}:
                return _unwrap(child)
        if self.kind in {"var", "output", "param"}:
            values = [c for c in self.node.named_children if c.type not in {"identifier", "type", "decorators"}]
            if self.kind == "output":
                values = values[1:] if len(values) > 1 else values
            return values[-1] if values else None
        return None

    def value(self) -> Any:
        node = self.body
        return to_python(node) if node is not None else None

    @property
    def is_existing(self) -> bool:
        """`resource x 'Type@version' existing = {...}`: a reference, not a deployment."""
        header = text(self.node).split("{", 1)[0]
        return re.search(r"'\s+existing\s*=", header) is not None

    @property
    def line(self) -> int:
        return self.node.start_point[0] + 1


def _unwrap(node: tree_sitter.Node) -> tree_sitter.Node:
    """The object inside `[for ...: {...}]` or `if (...) {...}`."""
    if node.type == "object":
        return node
    objects = [c for c in node.named_children if c.type == "object"]
    return objects[-1] if objects else node


def text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def to_python(node: tree_sitter.Node) -> Any:
    if node.type == "object":
        result: dict[str, object] = {}
        for prop in node.named_children:
            if prop.type != "object_property":
                continue
            key_node, value_node = prop.named_children[0], prop.named_children[-1]
            key = text(key_node)
            if key_node.type == "string":
                key = key[1:-1]
            result[key] = to_python(value_node)
        return result
    if node.type == "array":
        return [to_python(c) for c in node.named_children if c.type != "comment"]
    if node.type == "string" and not any(c.type == "interpolation" for c in node.named_children):
        return text(node)[1:-1].replace("\\'", "'")
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "parenthesized_expression" and node.named_child_count == 1:
        return to_python(node.named_children[0])
    return Expr(text(node))


@dataclass
class BicepFile:
    path: Path
    tree: tree_sitter.Tree

    @property
    def relative(self) -> str:
        return str(self.path.relative_to(ROOT)) if self.path.is_relative_to(ROOT) else str(self.path)

    def syntax_errors(self) -> list[str]:
        """Every ERROR or MISSING node, as 'file:line:column: what'."""
        problems: list[str] = []

        def walk(node: tree_sitter.Node) -> None:
            if node.type == "ERROR" or node.is_missing:
                kind = f"missing {node.type}" if node.is_missing else "syntax error"
                snippet = text(node)[:40].replace("\n", " ")
                row, column = node.start_point
                problems.append(f"{self.relative}:{row + 1}:{column + 1}: {kind} near {snippet!r}")
            for child in node.children:
                walk(child)

        walk(self.tree.root_node)
        if self.tree.root_node.has_error and not problems:
            problems.append(f"{self.relative}: the grammar flagged an error it did not locate")
        return problems

    def declarations(self, kind: str | None = None) -> list[Declaration]:
        found: list[Declaration] = []
        kinds = {
            "parameter_declaration": "param",
            "variable_declaration": "var",
            "resource_declaration": "resource",
            "module_declaration": "module",
            "output_declaration": "output",
        }
        pending_decorators: list[str] = []
        for node in self.tree.root_node.named_children:
            if node.type == "decorators":
                pending_decorators = [text(d) for d in node.named_children]
                continue
            if node.type not in kinds:
                if node.type != "comment":
                    pending_decorators = []
                continue
            decorators = pending_decorators + [
                text(d) for c in node.named_children if c.type == "decorators" for d in c.named_children
            ]
            pending_decorators = []
            identifiers = [c for c in node.named_children if c.type == "identifier"]
            name = text(identifiers[0]) if identifiers else ""
            type_text = ""
            if kinds[node.type] in {"resource", "module"}:
                strings = [c for c in node.named_children if c.type == "string"]
                type_text = text(strings[0])[1:-1] if strings else ""
            elif kinds[node.type] in {"param", "output"}:
                types = [c for c in node.named_children if c.type == "type"]
                type_text = text(types[0]) if types else ""
            found.append(Declaration(kinds[node.type], name, node, self.path, type_text, decorators))
        return [d for d in found if kind is None or d.kind == kind]

    def resources(self, resource_type: str | None = None) -> list[Declaration]:
        return [
            d
            for d in self.declarations("resource")
            if resource_type is None or d.type_text.split("@")[0] == resource_type
        ]

    def comments(self) -> list[tree_sitter.Node]:
        found: list[tree_sitter.Node] = []

        def walk(node: tree_sitter.Node) -> None:
            if node.type == "comment":
                found.append(node)
            for child in node.children:
                walk(child)

        walk(self.tree.root_node)
        return found


def load(path: Path) -> BicepFile:
    return BicepFile(path, parser().parse(path.read_bytes()))


def bicep_paths() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@functools.cache
def all_files() -> tuple[BicepFile, ...]:
    return tuple(load(p) for p in bicep_paths())


def file(relative: str) -> BicepFile:
    return load(INFRA / relative)


def all_resources(resource_type: str) -> list[Declaration]:
    return [r for f in all_files() for r in f.resources(resource_type)]


def dig(value: Any, *keys: str) -> Any:
    for key in keys:
        assert isinstance(value, dict), f"expected an object holding {key!r}, got {value!r}"
        assert key in value, f"{key!r} missing; has {sorted(value)}"
        value = value[key]
    return value
