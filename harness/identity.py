"""A run's identity: what makes its results what they are, whose hash names the run in the store (README.md,
"Hash schemes")."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from typing import Any

# The identity leaves out the method's operational settings (logging, checkpointing) and the task's builder (where
# its code lives: the task's name, version and settings say what it does), and holds the method's implementation
# (module, distribution, version). Schemes 1 and 2, which hashed these differently, are no longer read.
HASH_SCHEME = 3


class SchemeError(ValueError):
    """A stored config.json of a hash scheme this harness no longer reads."""


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a stored config.json's results what they are: everything but its operational settings and the
    task's builder, with its method settings under today's names (`current`)."""
    scheme = config.get("hash_scheme", 1)
    if scheme != HASH_SCHEME:
        raise SchemeError(
            f"a config.json of hash scheme {scheme}: this harness reads scheme {HASH_SCHEME} only (docs/results.md, "
            f"Hash scheme); recompute the run with the harness of today"
        )
    config = current(config)
    out = {k: v for k, v in config.items() if k != "operational"}
    out["task"] = {k: v for k, v in config["task"].items() if k != "builder"}
    return out


def current(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config.json with its method settings under today's names: a setting renamed since it was stored
    (harness.method.RENAMED) is read under its new name where the installed method knows only that one, so that
    a run stored before the rename is read, rebuilt and ranked like a run of today. A method that is not installed
    here is left as it was stored."""
    from harness.method import METHODS, RENAMED

    method = config["method"]
    try:
        fields = METHODS.get(method["name"]).Config.model_fields
    except (LookupError, ImportError, AttributeError):
        return config
    names = {old: new for old, (new, _) in RENAMED.items() if old in method and new in fields and old not in fields}
    if not names:
        return config
    return config | {"method": {names.get(k, k): v for k, v in method.items()}}


def implementation(method: type) -> dict[str, str | None]:
    """The module of a method's class, and the installed distribution that ships it (with its version), if any."""
    module = method.__module__
    dists = _distributions().get(module.partition(".")[0], [])
    dist = dists[0] if dists else None
    try:
        return {"module": module, "distribution": dist, "version": version(dist) if dist else None}
    except PackageNotFoundError:
        return {"module": module, "distribution": dist, "version": None}


@cache
def _distributions() -> dict[str, list[str]]:
    """Top-level module -> installed distributions shipping it (a scan of every installed package: done once)."""
    return dict(packages_distributions())
