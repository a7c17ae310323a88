"""A typed registry of named components with lazy targets, so that listing names never imports torch.

A name maps to either an object or a lazy target string:
  "package.module:attr"  import the module, take the attribute;
  "package.module"       import the module, which registers the name itself (the built-in methods do this
                         with the `register` decorator).
Third-party packages add names through the entry-point group given to the registry, e.g.

    [project.entry-points."harness.methods"]
    mymethod = "my_package.mymethod:MyMethod"
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

# Task and method names are directory names in the results store: letters, digits, '_', '-' and '.', not starting
# with '.' or '-', so that no name can be empty, hidden, a path or '..'.
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}"


class BadNameError(ValueError):
    """A task or method name that cannot name a directory of the results store."""


def check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise BadNameError(
            f"invalid {kind} name {name!r}: use 1-100 letters, digits, '_', '-' or '.', not starting with '.' or '-'"
        )
    return name


class UnknownNameError(LookupError):
    """A name that is not registered; the message names the nearest registered names. `kind`: what was looked
    up ("method", "task")."""

    def __init__(self, message: str, kind: str = ""):
        super().__init__(message)
        self.kind = kind

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """Two registrations (built-in or entry point) of one name."""


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, builtins: Callable[[], Iterable[tuple[str, str]]] | None = None):
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._entries: dict[str, str | T] = {}
        self._discovered = False

    def register(self, name: str, target: str | T | None = None) -> Callable[[T], T]:
        """Register `target` under `name`; without a target, return a decorator that registers its argument. A
        name that is already registered to something else (a built-in, an entry point, an earlier registration)
        is refused, as entry-point discovery refuses it: never silently replaced."""

        check_name(self.kind, name)
        self._discover()

        def decorate(obj: T) -> T:
            self._claim(name, obj)
            return obj

        if target is not None:
            self._claim(name, target)
        return decorate

    def _claim(self, name: str, new: str | T) -> None:
        """Register `new` under `name` unless another component holds the name. The lazy target of a name is
        replaced by what its module registers on import (`module`, or `module:attr` naming that very object), and
        registering the same target again (a module imported twice) changes nothing."""
        old = self._entries.get(name)
        module, qualname = getattr(new, "__module__", None), getattr(new, "__qualname__", None)
        same = (
            name not in self._entries
            or old is new
            or old == new
            or (isinstance(old, str) and old in (module, f"{module}:{qualname}"))
            or (module, qualname) == (getattr(old, "__module__", None), getattr(old, "__qualname__", ""))
        )
        if not same:
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: as {_describe(old)} and as {_describe(new)}; "
                "rename one of them"
            )
        self._entries[name] = new

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        found: dict[str, str | T] = {}
        where: dict[str, str] = {}
        if self._builtins is not None:
            for name, target in self._builtins():
                found[name], where[name] = target, f"the built-in {target}"
        for ep in entry_points(group=self.group):
            check_name(self.kind, ep.name)
            if ep.name in found:
                dist = f" of {ep.dist.name}" if ep.dist is not None else ""
                raise DuplicateNameError(
                    f"{self.kind} {ep.name!r} is registered twice: by {where[ep.name]} and by the entry point "
                    f"{ep.value}{dist} (group {self.group}); rename one of them"
                )
            found[ep.name] = ep.value
            where[ep.name] = f"the entry point {ep.value}" + (f" of {ep.dist.name}" if ep.dist is not None else "")
        for name, entry in found.items():
            self._entries.setdefault(name, entry)

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def target(self, name: str) -> str | T:
        """The registered target of `name`, without importing anything."""
        self._discover()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(sorted(self._entries)) or 'none'})",
                self.kind,
            )
        return self._entries[name]

    def problem(self, name: str) -> str | None:
        """Why `name` cannot be loaded, found without importing its module (a missing module); None if it looks
        loadable."""
        target = self.target(name)
        if not isinstance(target, str) or target.endswith((".yaml", ".yml")):
            return None
        module_name = target.partition(":")[0]
        try:
            found = importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError) as e:
            return f"cannot be loaded from {target!r}: {e}"
        return None if found else f"cannot be loaded from {target!r}: no module named {module_name!r}"

    def get(self, name: str) -> T:
        """The object registered as `name`, importing its module on first use."""
        target = self.target(name)
        if not isinstance(target, str):
            return target
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
            obj: T = getattr(module, attr) if attr else None  # type: ignore[assignment]
        except Exception as e:  # a plugin's module may fail in any way on import: one line naming it
            why = " ".join(f"{type(e).__name__}: {e}".split())
            raise UnknownNameError(f"{self.kind} {name!r} cannot be loaded from {target!r}: {why}", self.kind) from None
        if attr:
            self._entries[name] = obj
            return obj
        loaded = self._entries[name]
        if isinstance(loaded, str):
            raise UnknownNameError(f"module {module_name!r} does not register a {self.kind} named {name!r}", self.kind)
        return loaded


def _describe(entry: object) -> str:
    """A registered entry as an error message names it: its target, or the module and name of an object."""
    if isinstance(entry, str):
        return repr(entry)
    module, qualname = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else repr(entry)


def package_modules(package: str, suffix: str = ".py") -> list[tuple[str, str]]:
    """(stem, path) of the files with `suffix` in a package's directory, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    out = []
    for location in spec.submodule_search_locations:
        for path in sorted(Path(location).glob(f"*{suffix}")):
            if not path.stem.startswith("_"):
                out.append((path.stem, str(path)))
    return out
