"""YAML as the harness reads it (task files, sweep files, `-p` values): scalars by the YAML 1.2 core schema, which
reads numbers as JSON does, and limits on size, nesting and alias expansion checked before anything is built.

PyYAML implements YAML 1.1, in which `010` is the octal 8, `1:05` the sexagesimal 65, `yes` a boolean and
`2024-01-01` a date; in YAML 1.2 (https://yaml.org/spec/1.2.2/#1032-tag-resolution) the first is 10 and the others
are strings. `1e-3` is a float here (a string in YAML 1.1). Anchors, aliases and merge keys (`<<: *defaults`)
work as in PyYAML, within the expansion limit.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a task or sweep file; the shipped ones are a few KB
MAX_DEPTH = 64  # nested mappings and lists
MAX_NODES = 100_000  # nodes once every alias is expanded (a "billion laughs" document expands to 10^9)
MAX_DIGITS = 100  # digits of an integer (a seed is at most 10)

_REPLACED = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "null", "timestamp")}


class LimitError(yaml.YAMLError):
    """A document refused before it is built: too large, too deeply nested, or expanding to too many nodes."""


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars: bool true/false, null ~/null/empty, decimal integers
    (0o octal, 0x hex), floats with an optional exponent, .inf and .nan; no timestamps."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def _int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    digits = text.lstrip("+-")
    if len(digits) > MAX_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {len(digits)} digits (at most {MAX_DIGITS})", node.start_mark
        )
    try:
        if digits.startswith(("0o", "0x")):
            return int(digits[2:], 8 if digits[1] == "o" else 16)
        return int(text, 10)
    except ValueError:
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not an integer", node.start_mark) from None


def _float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    special = text.lower().lstrip("+")
    if special in (".inf", "-.inf", ".nan"):
        return {".inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}[special]
    try:
        value = float(text)
    except ValueError:
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a number", node.start_mark) from None
    if math.isinf(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"{text} is beyond the range of a float (write .inf for infinity)", node.start_mark
        )
    return value


Loader.add_constructor("tag:yaml.org,2002:int", _int)
Loader.add_constructor("tag:yaml.org,2002:float", _float)

_OPEN = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _check_text(text: str) -> None:
    """Size and nesting, from the tokens alone (building a deeply nested document recurses)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise LimitError(f"the document is larger than {MAX_BYTES} bytes")
    depth = 0
    for token in yaml.scan(text, Loader=Loader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise LimitError(f"line {token.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(token, _CLOSE):
            depth -= 1


def expanded_size(node: yaml.Node | None) -> int:
    """Nodes of a composed document with every alias expanded (a shared node counts at each use); LimitError
    beyond MAX_NODES or on a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in active:
            raise LimitError(f"line {n.start_mark.line + 1}: an alias refers to a node that contains it")
        active.add(id(n))
        children: list[yaml.Node] = []
        if isinstance(n, yaml.MappingNode):
            children = [x for pair in n.value for x in pair]
        elif isinstance(n, yaml.SequenceNode):
            children = list(n.value)
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise LimitError(f"the document expands to more than {MAX_NODES} nodes (through its aliases)")
        active.discard(id(n))
        sizes[id(n)] = total
        return total

    return 0 if node is None else size(node)


def read(path: str | Path) -> str:
    """The text of a YAML file, read no further than MAX_BYTES (OSError, UnicodeDecodeError, LimitError)."""
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise LimitError(f"the file is larger than {MAX_BYTES} bytes")
    return data.decode("utf-8")


def compose(text: str) -> yaml.Node | None:
    """The node tree of a YAML document, after the limits above (yaml.YAMLError where it breaks one)."""
    _check_text(text)
    node = yaml.compose(text, Loader=Loader)
    expanded_size(node)
    return node


def load(text: str) -> Any:
    """The data of a YAML document read by the YAML 1.2 core schema, after the limits above (yaml.YAMLError where
    it is malformed or breaks one)."""
    compose(text)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
