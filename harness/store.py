"""The append-only results store: runs/<task>/<method>/<config_hash>/{config.json,samples.jsonl,results.json}.

A run is assembled in a hidden staging directory beside its final place and renamed into place only when
complete, so the store never holds a half-written run, whatever interrupts the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonlines

CONFIG, SAMPLES, RESULTS = "config.json", "samples.jsonl", "results.json"


class StoreError(Exception):
    """The store cannot be written or a run cannot be found."""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the sorted, fully resolved config; the first 12 hex digits."""
    blob = json.dumps(resolved, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_path(out: Path, task: str, method: str, hash_: str) -> Path:
    return out / task / method / hash_


def ensure_writable(out: Path) -> None:
    """Fail at once, before any work, where the store directory cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as e:
        raise StoreError(f"cannot write to the results store --out {str(out)!r}: {e.strerror or e}") from None


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(canonical_json(obj))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with jsonlines.open(tmp, mode="w", sort_keys=True) as writer:
        writer.write_all(records)
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with jsonlines.open(path) as reader:
        return list(reader)


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """Yield a staging directory that replaces `final` on success and vanishes on any exception."""
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    try:
        yield stage
        if final.exists():  # --force: swap the old run out, then delete it
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
            os.replace(final, old / "run")
            os.replace(stage, final)
            shutil.rmtree(old)
        else:
            try:
                os.replace(stage, final)
            except OSError:
                if not final.exists():
                    raise
                shutil.rmtree(stage)  # a concurrent writer of the same config finished first: keep its copy
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def is_complete(path: Path) -> bool:
    return (path / RESULTS).is_file()


def list_runs(out: Path) -> list[Path]:
    """Every complete run under the store, sorted by task, method and hash."""
    return sorted(p.parent for p in out.glob(f"*/*/*/{RESULTS}") if not p.parent.name.startswith("."))


def find_run(out: Path, ref: str) -> Path:
    """A run given by its directory or by a (prefix of its) config hash."""
    path = Path(ref)
    if is_complete(path):
        return path
    matches = [p for p in list_runs(out) if p.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise StoreError(f"no run {ref!r}: give a run directory or a config hash from `harness ls runs --out {out}`")
    raise StoreError(f"{ref!r} matches {len(matches)} runs: {', '.join(str(m) for m in matches)}; give more digits")
