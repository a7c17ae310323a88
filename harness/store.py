"""The append-only results store, and the one place that builds its paths (runs, pools, checkpoints, locks, the
staging journal, published boards) and writes its files (`replacing`, the one atomic writer). The layout is
described once, in docs/architecture.md ("Results store layout").

Everything is assembled in a hidden staging directory beside its final place and renamed into place only when
complete, so the store never holds a half-written run, whatever interrupts the process. The writer registers its
staging directory in the journal and holds the entry's lock while it lives; a staging directory whose entry nobody
holds (its writer was killed) is removed on the next use of the store. The store removes only what its journal
names and the directory's mark confirms, never by name pattern, never through a link, and writes only where the
real path lies inside the store. Files carry a sha256 in checksums.json, checked when they are read, so a file
changed or truncated after it was written is reported, never read as if it were right.

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
import secrets
import shutil
import stat
import tempfile
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
POOL_SAMPLES, POOL_META = "pool.jsonl", "meta.json"  # the files of a cached reference pool (harness.pool)
JOURNAL = ".staging"  # under a root: one entry per staging directory, held by its writer while it lives
_MARK = ".staged"  # inside a staging directory: the token of its journal entry
_HASH = re.compile(r"[0-9a-f]{12}")


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
    """The store directory given as --out: not empty (an empty path would write into the working directory), and
    not a file."""
    return _directory_option(out, "--out", "the results store directory (default: runs)")


def dest_root(dest: str | Path) -> Path:
    """The directory of published boards given as --dest: not empty (an empty path would publish into the working
    directory), and not a file."""
    return _directory_option(dest, "--dest", "the directory of published leaderboards (default: leaderboards)")


def _directory_option(value: str | Path, option: str, what: str) -> Path:
    if not str(value).strip():
        raise StoreError(f"{option} is empty: give {what}")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{option} {str(value)!r} is a file: give {what}")
    return path


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
    return _inside(out / CHECKPOINTS / task / method / hash_, out)


def checkpoint_file(directory: Path, data: bytes) -> Path:
    """Where a checkpoint of these bytes is saved: `checkpoint-<first 16 hex of their sha256>.pt`, a name that
    carries its checksum."""
    return directory / f"checkpoint-{hashlib.sha256(data).hexdigest()[:16]}.pt"


def checkpoints(directory: Path) -> list[Path]:
    """The checkpoint files in `directory`, oldest first (not the temporary file of one being written)."""
    return sorted(directory.glob("checkpoint-*.pt"), key=lambda p: p.stat().st_mtime_ns)


def write_checkpoint(directory: Path, data: bytes) -> Path:
    """Save a checkpoint atomically under the name of its checksum, then remove the older ones: a crash at any
    point keeps a good checkpoint."""
    makedirs(directory)
    path = checkpoint_file(directory, data)
    write_atomic(path, data)
    for old in checkpoints(directory):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def read_checkpoint(path: Path, remedy: str) -> bytes:
    """The bytes of a checkpoint, checked against the checksum in its name (a CorruptError naming `remedy`)."""
    data = path.read_bytes()
    if checkpoint_file(path.parent, data) != path:
        raise CorruptError(f"checkpoint {path} does not match its checksum (changed or truncated); {remedy}")
    return data


def evaluation_path(out: Path, run: Path, key: str) -> Path:
    """Where a re-evaluation of a stored run with other settings lives: beside the run's own files, in `out`."""
    return _inside(run / "evaluations" / key, out)


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


def in_store(run: Path, out: Path) -> Path:
    """`run`, after checking that it lies in the results store `out` (not reached through a link from another):
    what is written beside a run must land in the store the command was given."""
    home = store_of(run)
    if home != out.resolve():
        raise StoreError(
            f"run {run} lies in the results store {home}, not in --out {str(out)!r}: give --out {home} "
            "(what is computed is written beside the run)"
        )
    return run


def ensure_writable(out: Path) -> None:
    """Fail at once, before any work, where the store directory cannot be created or written, or where its pools,
    checkpoints or locks lead out of it (a link to another store's, which a run would refuse only when it first
    reads them, perhaps after training); then clear what killed writers left behind."""
    for sub in (POOLS, CHECKPOINTS, LOCKS, JOURNAL):
        _inside(out / sub, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / JOURNAL).mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=out / JOURNAL):  # unnamed (O_TMPFILE): nothing is left if killed
            pass
    except OSError as e:
        raise StoreError(f"cannot write to the results store --out {str(out)!r}: {e.strerror or e}") from None
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
def replacing(path: Path) -> Iterator[Path]:
    """The one way the harness writes a file: a temporary file beside `path` (unique, so concurrent writers never
    share it) that replaces `path` atomically when the block succeeds, with the permissions that the umask gives
    a new file, and vanishes when it fails. Nothing half-written is ever seen under `path`."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it 0o600 whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` whole or not at all (`replacing`)."""
    with replacing(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, canonical_json(obj))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptError(f"{path} is not valid JSON ({e})") from None
    except OSError as e:
        raise CorruptError(f"{path} cannot be read ({e.strerror or e})") from None


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    with replacing(path) as tmp, jsonlines.open(tmp, mode="w", sort_keys=True) as writer:
        writer.write_all(records)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with jsonlines.open(path) as reader:
            return list(reader)
    except (jsonlines.InvalidLineError, ValueError, UnicodeDecodeError) as e:
        raise CorruptError(f"{path} is not valid JSON lines ({e})") from None
    except OSError as e:
        raise CorruptError(f"{path} cannot be read ({e.strerror or e})") from None


# ---- checksums -------------------------------------------------------------------------------------------------


def seal(directory: Path, later: Iterable[str] = ()) -> None:
    """Write checksums.json: the sha256 of every file in `directory` and below (not of itself), and None for each
    file of `later`, which may only be added by the writer that seals it then (`write_offtarget`)."""
    sums: dict[str, str | None] = {
        str(p.relative_to(directory)): sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in (CHECKSUMS, _MARK)
    }
    write_json(directory / CHECKSUMS, {name: None for name in later} | sums)


def checksums(directory: Path) -> dict[str, str | None] | None:
    """The checksums.json of a sealed directory; None for a directory sealed before checksums existed."""
    path = directory / CHECKSUMS
    if not _lexists(path):
        return None
    sums = read_json(path)
    if not isinstance(sums, dict) or not all(isinstance(v, str | None) for v in sums.values()):
        raise CorruptError(f"{path} is not a mapping of file names to sha256 digests")
    return sums


def verify(directory: Path, *names: str, remedy: str = "") -> None:
    """Check the files `names` of a sealed directory against its checksums.json (a directory sealed before
    checksums existed passes unchecked); a mismatch is a CorruptError naming the file and `remedy`."""
    sums = checksums(directory)
    if sums is None:
        return
    for name in names:
        path = directory / name
        expected = sums.get(name)
        if expected is None:
            continue
        try:
            actual = sha256(path)
        except OSError:
            actual = None
        if actual != expected:
            what = (
                "is missing (or not a file)"
                if actual is None
                else "does not match its checksum (changed or truncated after it was written)"
            )
            raise CorruptError(f"{path} {what}{'; ' + remedy if remedy else ''}")


# ---- staging, the journal of writers, and stale leftovers ---------------------------------------------------------
#
# A writer registers each staging directory in the journal of its root (a results store, a cache, a directory of
# boards) before it creates it: an entry <root>/.staging/<token>.json naming the directory, locked by the writer for
# as long as it lives, and a mark file inside the directory holding the same token. Cleaning reads the journal only
# (never the whole tree, never by name pattern): it removes a directory whose entry nobody holds any more and whose
# mark holds the entry's token, reached from the root without passing through a link, and never follows a link.


def _journal(root: Path) -> Path:
    path = _inside(root / JOURNAL, root)
    makedirs(path)
    return path


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def _real_dir(path: Path) -> bool:
    """A directory itself, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _marked(path: Path, token: str) -> bool:
    """Whether `path` is a directory (not a link) whose mark file (not a link) holds `token`."""
    if not _real_dir(path):
        return False
    try:
        fd = os.open(path / _MARK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, 64).decode(errors="replace") == token
    finally:
        os.close(fd)


def _within(root: Path, relative: object) -> Path | None:
    """root/relative where `relative` is a plain relative path whose every directory below `root` is a directory
    itself (not a link); None otherwise."""
    if not isinstance(relative, str) or not relative:
        return None
    parts = Path(relative).parts
    if Path(relative).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return None
    path = root
    for part in parts[:-1]:
        path = path / part
        if not _real_dir(path):
            return None
    return path / parts[-1]


def _make_staging(final: Path, root: Path, kind: str) -> tuple[Path, int, Path, str]:
    """A new staging directory beside `final`, registered in the journal of `root` first: (directory, the fd that
    holds its journal entry's lock, the entry, the token)."""
    base = final.parent.resolve()
    try:
        relative = base.relative_to(root.resolve())
    except ValueError:
        raise StoreError(f"{final} is not inside {root}") from None
    token = secrets.token_hex(8)
    name = f".{final.name}.{kind}-{token}"
    entry = _journal(root) / f"{token}.json"
    fd = os.open(entry, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o666 & ~UMASK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = {"stage": str(relative / name), "final": str(relative / final.name), "kind": kind}
        os.write(fd, json.dumps(record).encode())
        stage = final.parent / name
        stage.mkdir()
        mark = os.open(stage / _MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o666 & ~UMASK)
        try:
            os.write(mark, token.encode())
        finally:
            os.close(mark)
    except BaseException:
        entry.unlink(missing_ok=True)
        os.close(fd)
        raise
    return stage, fd, entry, token


def _unregister(fd: int, entry: Path) -> None:
    entry.unlink(missing_ok=True)
    os.close(fd)


@contextmanager
def staged(final: Path, root: Path) -> Iterator[Path]:
    """Yield a staging directory that replaces `final` on success and vanishes on any exception. It is registered
    in the journal of `root` (which holds `final`) while its writer lives, so that `clean_stale` leaves it alone
    and removes it once its writer was killed; the journal's stale entries are cleaned first."""
    makedirs(final.parent)
    clean_stale(root)
    try:
        stage, fd, entry, token = _make_staging(final, root, "partial")
    except OSError as e:
        raise disk_error(e, root) or e from None
    try:
        yield stage
        if _lexists(final):  # --force: swap the old one out, then delete it
            old, old_fd, old_entry, old_token = _make_staging(final, root, "old")
            try:
                os.replace(final, old / "run")
                os.replace(stage, final)
                _remove(old, old_token)
            finally:
                _unregister(old_fd, old_entry)
        else:
            try:
                os.replace(stage, final)
            except OSError:
                if not _lexists(final):
                    raise
                _remove(stage, token)  # a concurrent writer of the same config finished first: keep its copy
        if _marked(final, token):
            (final / _MARK).unlink()
    except BaseException as e:
        _remove(stage, token)
        full = disk_error(e, root) if isinstance(e, OSError) else None
        if full is not None:
            raise full from None
        raise
    finally:
        _unregister(fd, entry)


def disk_error(e: OSError, where: Path | str) -> StoreError | None:
    """A full or read-only disk met while writing under `where`, as one line saying what to do; None for any
    other error."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"no space left on the device that holds {where} ({e.strerror}): free space there, then run the same "
            "command again (nothing half-written was kept)"
        )
    if e.errno == errno.EROFS:
        return StoreError(f"{where} is on a read-only file system: give a writable directory (nothing was written)")
    return None


def _remove(path: Path, token: str) -> bool:
    """Remove a staging directory that carries `token` in its mark, the mark last (a removal cut short leaves a
    directory still recognised), never through a link; an unmarked directory only where it is empty. Whether it
    is gone."""
    if not _marked(path, token):
        with contextlib.suppress(OSError):
            path.rmdir()  # made, but killed before its mark was written (or after it was removed): empty
        return not _lexists(path)
    for child in os.scandir(path):
        if child.name == _MARK:
            continue
        if child.is_dir(follow_symlinks=False):
            shutil.rmtree(child.path, ignore_errors=True)  # does not follow links inside
        else:
            with contextlib.suppress(OSError):
                os.unlink(child.path)
    if any(child.name != _MARK for child in os.scandir(path)):
        log.warning("could not remove everything in %s; it is removed on a later use of the store", path)
        return False
    (path / _MARK).unlink()
    with contextlib.suppress(OSError):
        path.rmdir()
    return not _lexists(path)


def clean_stale(root: Path) -> list[Path]:
    """Remove the staging directories of killed writers that the journal of `root` lists (with any saved policy
    weights inside them); a replaced run that a killed `--force` had already moved aside is put back. Returns
    what was removed."""
    journal = root / JOURNAL
    if not _real_dir(journal):
        return []
    removed = []
    for entry in sorted(journal.glob("*.json")):
        try:
            fd = os.open(entry, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # unregistered meanwhile (or not a file of ours)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            if os.fstat(fd).st_nlink == 0:
                continue  # its writer finished and unregistered it meanwhile
            try:
                record = json.loads(os.read(fd, 1 << 16))
            except ValueError:
                record = {}  # killed before the entry was written: nothing was made
            try:
                if isinstance(record, dict) and _clean_entry(root, entry.stem, record):
                    removed.append(root / record["stage"])
                entry.unlink(missing_ok=True)
            except OSError as e:  # a store this user cannot write: left for a later use that can
                log.warning("could not clean up after an interrupted writer (%s): %s", entry, e.strerror or e)
        finally:
            os.close(fd)
    return removed


def _clean_entry(root: Path, token: str, record: dict[str, Any]) -> bool:
    """Clean up after one killed writer; whether a staging directory was removed."""
    stage, final = _within(root, record.get("stage")), _within(root, record.get("final"))
    if stage is None or final is None:
        return False
    if not _lexists(stage):
        if _marked(final, token):  # renamed into place, killed before its mark was removed
            (final / _MARK).unlink()
        return False
    if record.get("kind") == "old" and not _lexists(final) and _marked(stage, token) and _real_dir(stage / "run"):
        os.replace(stage / "run", final)
    if _remove(stage, token):
        log.warning("removed %s, left behind by an interrupted writer", stage)
        return True
    return False


@contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path`, a directory or a file (created if needed, never through a link); wait,
    saying so, while another process holds it."""
    makedirs(path.parent)
    try:
        fd = (
            os.open(path, os.O_RDONLY)
            if path.is_dir()
            else os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o666 & ~UMASK)
        )
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise StoreError(f"{path} is a link, and the store never writes through links: remove it") from None
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
    return sorted(p.parent for p in out.glob(f"*/*/*/{RESULTS}") if _HASH.fullmatch(p.parent.name) and p.is_file())


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
    """(config, results) of a stored run, checked against its checksums; its off-target results (`offtarget.json`)
    as results["offtarget"], checked against the checksum that `write_offtarget` sealed and against their schema."""
    config, results = read_config(path), _read_results(path, RUN_REMEDY)
    if _lexists(path / OFFTARGET):
        results["offtarget"] = _read_offtarget(path)
    return config, results


def _read_offtarget(path: Path) -> dict[str, Any]:
    remedy = f"measure them again with `harness offtarget {path} --force`, or delete {path / OFFTARGET}"
    sums = checksums(path)
    if sums is not None and OFFTARGET in sums and sums[OFFTARGET] is None:
        raise CorruptError(f"{path / OFFTARGET} was not written by `harness offtarget` (it has no checksum); {remedy}")
    entry = _read_object(path, OFFTARGET, remedy)
    try:
        return record.checked_offtarget(entry, str(path / OFFTARGET))
    except record.RecordError as e:
        raise CorruptError(f"{e}; {remedy}") from None


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
    """Store a run's off-target metrics beside its sealed files (which stay as they were written) and seal them:
    their sha256 joins the run's checksums.json. Writers of one run's off-target metrics take turns."""
    record.checked_offtarget(entry, "off-target results of this run")
    with locked(path, f"the off-target results of {path}"):
        write_json(path / OFFTARGET, entry)
        sums = checksums(path)
        if sums is not None:
            write_json(path / CHECKSUMS, sums | {OFFTARGET: sha256(path / OFFTARGET)})


def verify_all(directory: Path, under: str = "", remedy: str = "") -> None:
    """Check every file that a sealed directory's checksums.json lists (those below `under`/ where given)."""
    sums = checksums(directory) or {}
    names = [name for name, digest in sums.items() if digest is not None and name.startswith(under)]
    verify(directory, *names, remedy=remedy)


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
            verify_all(path, remedy=RUN_REMEDY)  # samples, training log, saved policy: every file it sealed
        except CorruptError as e:
            broken.append((path, str(e)))
    return broken


def gc(out: Path) -> list[tuple[Path, str]]:
    """Remove stale staging directories, and pools and checkpoints that fail their checksums; (path, why) of
    each removal. Runs are never removed here."""
    removed = [(p, "left behind by an interrupted writer") for p in clean_stale(out)]
    for pool in _below(out / POOLS, 2):
        try:
            verify(pool, *(p.name for p in pool.iterdir() if p.name != CHECKSUMS))
            read_jsonl(pool / POOL_SAMPLES)
            read_json(pool / POOL_META)
        except CorruptError as e:
            shutil.rmtree(pool, ignore_errors=True)  # does not follow links inside
            removed.append((pool, f"corrupted reference pool: {e}"))
    for run in _below(out / CHECKPOINTS, 3):
        for ckpt in sorted(run.iterdir()):
            if ckpt.name.startswith(".") or not stat.S_ISREG(os.lstat(ckpt).st_mode):
                continue  # a checkpoint being written (its temporary file), or no file of the trainer's
            if ckpt.suffix == ".pt" and checkpoint_file(run, ckpt.read_bytes()) != ckpt:
                ckpt.unlink()
                removed.append((ckpt, "partial or corrupted checkpoint"))
    return removed


def _below(path: Path, depth: int) -> list[Path]:
    """The directories `depth` levels below `path` (hidden ones, such as staging directories, aside), reached
    without following a link; a link met on the way is left alone, with a warning (the store removes nothing
    through links)."""
    level = [path] if _real_dir(path) else []
    for _ in range(depth):
        found = []
        for directory in level:
            for child in sorted(directory.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_symlink():
                    log.warning(
                        "left alone: %s is a link (to %s), which the store never follows", child, child.resolve()
                    )
                elif _real_dir(child):
                    found.append(child)
        level = found
    return level


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
        with staged(final, dest) as stage:
            yield stage
            (stage / PUBLISHED_MARK).write_text(f"{task}\n")
        with contextlib.suppress(OSError):  # publications take turns on the lock: no other writer uses the journal
            (dest / JOURNAL).rmdir()  # (only where empty): a directory of boards keeps no trace of the harness
