"""A run's identity: what makes its results what they are, whose hash names the run in the store, and the hash
schemes that stores were written under (README.md, "Hash schemes")."""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from typing import Any

# 1: the whole config.json was hashed. 2: the method's operational settings (logging, checkpointing) are stored
# apart from the identity and left out of the hash, which includes "hash_scheme". 3: the method's implementation
# (module, distribution, version) is part of the identity, and the task's builder (where its code lives, which
# moved when the built-in tasks became harness.tasks) is not: the task's name, version and settings are.
HASH_SCHEME = 3
LEGACY_OPERATIONAL = ("log_every", "checkpoint_every")  # the operational method settings of hash scheme 1
LEGACY_BUILDER = re.compile(r"^harness\.(?=tasks\.)")  # harness.tasks.toy:build was tasks.toy:build


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes a stored config.json's results what they are: everything but its operational settings (and,
    from scheme 3, the task's builder), with its method settings under today's names (`current`). Reads every
    hash scheme (a scheme-1 config kept its operational settings among the method's)."""
    config = current(config)
    scheme = config.get("hash_scheme", 1)
    if scheme == 1:
        method = {k: v for k, v in config["method"].items() if k not in LEGACY_OPERATIONAL}
        return {k: v for k, v in config.items() if k != "method"} | {"method": method}
    out = {k: v for k, v in config.items() if k != "operational"}
    if scheme >= 3:
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


def modern_builder(builder: str) -> str:
    """A stored builder in today's spelling: `tasks.toy:build` of hash schemes 1 and 2 is `harness.tasks.toy:build`."""
    module = builder.partition(":")[0]
    if module.startswith("tasks.") and importlib.util.find_spec("harness." + module) is not None:
        return "harness." + builder
    return builder
