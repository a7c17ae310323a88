"""The append-only results store, and the one place that knows its layout:

    <out>/<task>/<method>/<config_hash>/     a run: config.json, samples.jsonl, results.json, checksums.json
                                             (and train_log.jsonl, policy/ for a trained run, and
                                             train_samples.jsonl where it was evaluated on training
                                             prompts too;
                                             offtarget.json once `harness offtarget` ran)
    <out>/.pools/<task>/<key>/               cached reference pools
    <out>/.checkpoints/<task>/<method>/<config_hash>/   training checkpoints of unfinished runs
    <out>/.locks/                            one lock file per run, held while the run is written

Everything is assembled in a hidden staging directory beside its final place and renamed into place only when
complete, so the store never holds a half-written run, whatever interrupts the process. The writer holds a lock
on its staging directory; a staging directory whose lock nobody holds (its writer was killed) is removed on the
next use of the store. Files carry a sha256 in checksums.json, checked when they are read, so a file changed or
truncated after it was written is reported, never read as if it were right.

(Over 300 lines on purpose: this is the one module that knows the store's layout and its safety rules, staging,
locks, checksums and publishing; split, the layout would be spelled in several places again.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonlines

from harness import record
from harness.registry import check_name

log = logging.getLogger(__name__)

CONFIG, SAMPLES, RESULTS, CHECKSUMS = "config.json", "samples.jsonl", "results.json", "checksums.json"
POLICY, TRAIN_LOG, TRAIN_SAMPLES = "policy", "train_log.jsonl", "train_samples.jsonl"
OFFTARGET = "offtarget.json"  # off-target metrics of a run: a record of its own, beside the run's sealed files
POOLS, CHECKPOINTS, LOCKS = ".pools", ".checkpoints", ".locks"
_LOCK = ".lock"  # inside a staging directory: held by its writer for as long as it lives
_HASH = re.compile(r"[0-9a-f]{12}")
STALE_AFTER = 60.0  # seconds: a staging directory without a lock file (not yet, or no longer, owned) is kept this long


class StoreError(Exception):
    """The store cannot be written, or a run cannot be found or read."""


class CorruptError(StoreError):
    """A stored file that does not match its checksum or cannot be parsed."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False) + "\n"


def config_hash(resolved: dict[str, Any]) -> str:
    """sha256 of the sorted, fully resolved config; the first 12 hex digits."""
    blob = json.dumps(resolved, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def root(out: str | Path) -> Path:
    """The store directory given as --out: not empty (an empty path would write into the working directory)."""
    if not str(out).strip():
        raise StoreError("--out is empty: give the results store directory (default: runs)")
    return Path(out)


def _inside(path: Path, out: Path) -> Path:
    if not path.resolve().is_relative_to(out.resolve()):
        raise StoreError(
            f"{path} leads outside the results store {out} (to {path.resolve()}): "
            "copy it into the store instead of linking it"
        )
    return path


def run_path(out: Path, task: str, method: str, hash_: str) -> Path:
    check_name("task", task)
    check_name("method", method)
    if not _HASH.fullmatch(hash_):
        raise StoreError(f"invalid config hash {hash_!r}: 12 lowercase hex digits")
    return _inside(out / task / method / hash_, out)


def checkpoint_dir(out: Path, task: str, method: str, hash_: str) -> Path:
    run_path(out, task, method, hash_)  # validates the names
    return out / CHECKPOINTS / task / method / hash_


def evaluation_path(run: Path, key: str) -> Path:
    """Where a re-evaluation of a stored run with other settings lives: beside the run's own files."""
    return run / "evaluations" / key


def pool_dir(out: Path, task: str, key: str) -> Path:
    check_name("task", task)
    return _inside(out / POOLS / task / key, out)


def store_of(run: Path) -> Path:
    """The store a run directory lives in (<store>/<task>/<method>/<hash>, as its own config names them)."""
    run = run.resolve()
    where = f"{run} is not a run in a results store (<store>/<task>/<method>/<config hash>/)"
    if len(run.parents) < 4 or not _HASH.fullmatch(run.name) or not is_complete(run):
        raise StoreError(where)
    config, _ = read_run(run)
    named = (config.get("task", {}).get("name"), config.get("method", {}).get("name"))
    if named != (run.parent.parent.name, run.parent.name):
        raise StoreError(where)
    return run.parents[2]


def ensure_writable(out: Path) -> None:
    """Fail at once, before any work, where the store directory cannot be created or written, or where its pools,
    checkpoints or locks lead out of it (a link to another store's, which a run would refuse only when it first
    reads them, perhaps after training); then clear what killed writers left behind."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as e:
        raise StoreError(f"cannot write to the results store --out {str(out)!r}: {e.strerror or e}") from None
    for sub in (POOLS, CHECKPOINTS, LOCKS):
        _inside(out / sub, out)
    clean_stale(out)


def makedirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create directory {path}: {e.strerror or e}") from None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` (unique, so concurrent writers never share it) that replaces `path`
    atomically when the block succeeds, and vanishes when it fails."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    with _replacing(path) as tmp:
        tmp.write_text(canonical_json(obj))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptError(f"{path} is not valid JSON ({e})") from None


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with _replacing(path) as tmp, jsonlines.open(tmp, mode="w", sort_keys=True) as writer:
        writer.write_all(records)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with jsonlines.open(path) as reader:
            return list(reader)
    except (jsonlines.InvalidLineError, ValueError, UnicodeDecodeError) as e:
        raise CorruptError(f"{path} is not valid JSON lines ({e})") from None


# ---- checksums -------------------------------------------------------------------------------------------------


def seal(directory: Path) -> None:
    """Write checksums.json: the sha256 of every file in `directory` and below (not of itself)."""
    sums = {
        str(p.relative_to(directory)): sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in (CHECKSUMS, _LOCK)
    }
    write_json(directory / CHECKSUMS, sums)


def verify(directory: Path, *names: str, remedy: str = "") -> None:
    """Check the files `names` of a sealed directory against its checksums.json (a directory sealed before
    checksums existed passes unchecked); a mismatch is a CorruptError naming the file and `remedy`."""
    sums_path = directory / CHECKSUMS
    if not sums_path.is_file():
        return
    sums = read_json(sums_path)
    for name in names:
        path = directory / name
        expected = sums.get(name) if isinstance(sums, dict) else None
        if expected is None:
            continue
        try:
            actual = sha256(path)
        except FileNotFoundError:
            actual = None
        if actual != expected:
            what = (
                "is missing"
                if actual is None
                else "does not match its checksum (changed or truncated after it was written)"
            )
            raise CorruptError(f"{path} {what}{'; ' + remedy if remedy else ''}")


# ---- staging, locks and stale leftovers ------------------------------------------------------------------------


def _owned_dir(parent: Path, prefix: str) -> tuple[Path, int]:
    """A new hidden directory under `parent` with a lock file inside that this process holds."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    os.chmod(path, 0o777 & ~UMASK)
    fd = os.open(path / _LOCK, os.O_CREAT | os.O_RDWR, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """Yield a staging directory that replaces `final` on success and vanishes on any exception. While it lives,
    its writer holds the lock inside it, so that `clean_stale` leaves it alone."""
    makedirs(final.parent)
    stage, fd = _owned_dir(final.parent, f".{final.name}.partial-")
    try:
        yield stage
        if final.exists():  # --force: swap the old run out, then delete it
            old, old_fd = _owned_dir(final.parent, f".{final.name}.old-")
            try:
                os.replace(final, old / "run")
                os.replace(stage, final)
                _remove(old)
            finally:
                os.close(old_fd)
        else:
            try:
                os.replace(stage, final)
            except OSError:
                if not final.exists():
                    raise
                _remove(stage)  # a concurrent writer of the same config finished first: keep its copy
        with contextlib.suppress(FileNotFoundError):
            (final / _LOCK).unlink()
    except BaseException:
        _remove(stage)
        raise
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a staging directory, its lock file last, so that a removal cut short by a kill leaves a directory
    that is still recognised as unowned (a directory without a lock file is taken for one being created)."""
    for child in path.iterdir() if path.is_dir() else []:
        if child.name != _LOCK:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    (path / _LOCK).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.rmdir()


def _unowned(path: Path) -> bool:
    """Whether no live process holds the lock of a staging directory."""
    try:
        fd = os.open(path / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - path.stat().st_mtime > STALE_AFTER
        except FileNotFoundError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    finally:
        os.close(fd)
    return True


def clean_stale(out: Path) -> list[Path]:
    """Remove the staging directories of killed writers anywhere in the store (with any saved policy weights
    inside them); a replaced run that a killed `--force` had already moved aside is put back. Returns what was
    removed."""
    removed = []
    for check in out.glob(".write-check-*"):
        with contextlib.suppress(FileNotFoundError):
            if time.time() - check.stat().st_mtime > STALE_AFTER:
                check.unlink()
    for path in sorted(out.glob("**/.*.partial-*")) + sorted(out.glob("**/.*.old-*")):
        if not path.is_dir() or not _unowned(path):
            continue
        if ".old-" in path.name:
            final = path.parent / path.name[1:].rsplit(".old-", 1)[0]
            if not final.exists() and is_complete(path / "run"):
                os.replace(path / "run", final)
        _remove(path)
        log.warning("removed %s, left behind by an interrupted writer", path)
        removed.append(path)
    return removed


@contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path`, a directory or a file (created if needed); wait, saying so, while
    another process holds it."""
    makedirs(path.parent)
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_CREAT | os.O_RDWR, 0o666 & ~UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another process that is writing %s", what)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run_lock(out: Path, run: Path) -> contextlib.AbstractContextManager[None]:
    """The lock that one writer of a run holds while it computes and writes it."""
    task, method, hash_ = run.parts[-3:]
    return locked(out / LOCKS / f"{task}.{method}.{hash_}.lock", str(run))


# ---- runs ------------------------------------------------------------------------------------------------------


def is_complete(path: Path) -> bool:
    return (path / RESULTS).is_file()


def list_runs(out: Path) -> list[Path]:
    """Every complete run under the store, sorted by task, method and hash."""
    return sorted(p.parent for p in out.glob(f"*/*/*/{RESULTS}") if _HASH.fullmatch(p.parent.name))


RUN_REMEDY = "recompute the run with --force (same command), or delete its directory"
EVALUATION_REMEDY = "delete its directory and evaluate again"


def _read_object(directory: Path, name: str, remedy: str) -> dict[str, Any]:
    """The JSON object in `directory/name`, checked against the directory's checksums."""
    verify(directory, name, remedy=remedy)
    obj = read_json(directory / name)
    if not isinstance(obj, dict):
        raise CorruptError(f"{directory / name} must hold a JSON object; {remedy}")
    return obj


def _read_results(directory: Path, remedy: str) -> dict[str, Any]:
    """A results.json, checked against its checksums and the record's schema (harness.record)."""
    results = _read_object(directory, RESULTS, remedy)
    try:
        return record.checked(results, str(directory / RESULTS))
    except record.RecordError as e:
        raise CorruptError(f"{e}; {remedy}") from None


def read_config(path: Path) -> dict[str, Any]:
    """The config.json of a stored run, checked against its checksums."""
    return _read_object(path, CONFIG, RUN_REMEDY)


def read_run(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, results) of a stored run, checked against its checksums."""
    config, results = read_config(path), _read_results(path, RUN_REMEDY)
    if (path / OFFTARGET).is_file():
        results["offtarget"] = read_json(path / OFFTARGET)
    return config, results


def read_evaluation(path: Path) -> dict[str, Any]:
    """The results of a re-evaluation stored beside a run (`evaluation_path`), checked against its checksums."""
    return _read_results(path, EVALUATION_REMEDY)


def latest_evaluation(run: Path) -> tuple[Path, dict[str, Any]] | None:
    """The most recent complete re-evaluation stored beside a run (by its start time) and its results, or None."""
    found = [(p.parent, read_evaluation(p.parent)) for p in (run / "evaluations").glob(f"*/{RESULTS}")]
    return max(found, key=lambda e: e[1]["timing"]["started_at"], default=None)


def write_results(stage: Path, results: dict[str, Any]) -> None:
    """Write a run's (or a re-evaluation's) results.json into its staging directory, after checking it against
    the record's schema (harness.record)."""
    record.checked(results, "results of this run")
    write_json(stage / RESULTS, results)


def write_offtarget(path: Path, entry: dict[str, Any]) -> None:
    """Store a run's off-target metrics beside its sealed files (which stay as they were written)."""
    write_json(path / OFFTARGET, entry)


def read_samples(path: Path) -> list[dict[str, Any]]:
    verify(path, SAMPLES, remedy=RUN_REMEDY)
    return read_jsonl(path / SAMPLES)


def read_train_log(path: Path) -> list[dict[str, Any]]:
    """The logged training steps of a run (train_log.jsonl); none for a run that trained nothing."""
    if not (path / TRAIN_LOG).is_file():
        return []
    verify(path, TRAIN_LOG, remedy=RUN_REMEDY)
    return read_jsonl(path / TRAIN_LOG)


def load_runs(out: Path) -> list[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(path, config, results) of every readable run in the store; a broken run is skipped with a warning naming
    it, so that one bad file never hides the others."""
    runs = []
    for path in list_runs(out):
        try:
            config, results = read_run(path)
        except CorruptError as e:
            log.warning("skipping a broken run: %s", e)
            continue
        runs.append((path, config, results))
    return runs


def find_run(out: Path, ref: str) -> Path:
    """A run given by its directory or by a (prefix of its) config hash."""
    with contextlib.suppress(OSError, ValueError):  # a name too long for the file system is no directory
        if is_complete(Path(ref)):
            return Path(ref)
    hex_ref = re.fullmatch(r"[0-9a-f]{1,12}", ref)
    matches = [p for p in list_runs(out) if p.name.startswith(ref)] if hex_ref else []
    if len(matches) == 1:
        return matches[0]
    shown = ref if len(ref) <= 60 else ref[:57] + "..."
    if not matches:
        raise StoreError(
            f"no run {shown!r}: give a run directory or a config hash (hex) from `harness ls runs --out {out}`"
        )
    raise StoreError(f"{ref!r} matches {len(matches)} runs: {', '.join(str(m) for m in matches)}; give more digits")


def broken_runs(out: Path) -> list[tuple[Path, str]]:
    """(path, reason) of every run in the store that does not read correctly."""
    broken = []
    for path in list_runs(out):
        try:
            read_run(path)
            verify(path, SAMPLES)
        except CorruptError as e:
            broken.append((path, str(e)))
    return broken


def gc(out: Path) -> list[tuple[Path, str]]:
    """Remove stale staging directories, and pools and checkpoints that fail their checksums; (path, why) of
    each removal. Runs are never removed here."""
    removed = [(p, "left behind by an interrupted writer") for p in clean_stale(out)]
    for pool in sorted(out.glob(f"{POOLS}/*/*")):
        try:
            verify(pool, *(p.name for p in pool.iterdir() if p.name != CHECKSUMS))
            read_jsonl(pool / "pool.jsonl")
            read_json(pool / "meta.json")
        except (CorruptError, FileNotFoundError) as e:
            shutil.rmtree(pool)
            removed.append((pool, f"corrupted reference pool: {e}"))
    for ckpt in sorted(out.glob(f"{CHECKPOINTS}/*/*/*/*")):
        name_hash = ckpt.stem.removeprefix("checkpoint-")
        if ckpt.name.startswith(".checkpoint.tmp-") or (
            ckpt.suffix == ".pt" and hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16] != name_hash
        ):
            ckpt.unlink()
            removed.append((ckpt, "partial or corrupted checkpoint"))
    return removed


PUBLISHED_MARK = ".published"  # in a published leaderboard directory: it may be replaced by the next publication


@contextmanager
def published(dest: Path, task: str, out: Path, files: Iterable[str]) -> Iterator[Path]:
    """A staging directory that atomically replaces `dest/<task>/`, which may only hold a previous publication
    (the marker file, or nothing but the files a publication writes). Publications of one task serialise on a
    lock; `dest` may not lie inside the results store, nor hold it."""
    check_name("task", task)
    final = dest / task
    if dest.exists() and not dest.is_dir():
        raise StoreError(f"--dest {str(dest)!r} is a file, not a directory")
    if dest.resolve().is_relative_to(out.resolve()) or out.resolve().is_relative_to(final.resolve()):
        raise StoreError(f"--dest {str(dest)!r} overlaps the results store --out {str(out)!r}: publish elsewhere")
    makedirs(dest)
    with locked(dest, str(final)):
        if final.exists():
            known = {*files, PUBLISHED_MARK, CHECKSUMS}
            foreign = (
                [] if (final / PUBLISHED_MARK).is_file() else [p.name for p in final.iterdir() if p.name not in known]
            )
            if not final.is_dir() or foreign:
                raise StoreError(
                    f"{final} holds files that no publication wrote ({', '.join(sorted(foreign)[:3]) or 'a file'}); "
                    "publishing replaces only a previous publication: choose another --dest"
                )
        with staged(final) as stage:
            yield stage
            (stage / PUBLISHED_MARK).write_text(f"{task}\n")
