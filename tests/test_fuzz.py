"""The project's own fuzz test: careless and hostile input to every command, drawn from seeded generators over CLI
arguments, `-p` values, task files, sweep files and the files of a store. For every case: exit status 0 or 2, on 2
exactly one line on stderr, never a traceback, and nothing changed outside the store (--out) and the boards
(--dest): not a sentinel directory that links in the store lead to, not a user's directory inside the store, not the
working directory.

Bounded in count (`HARNESS_FUZZ_CASES` cases per generator, 24 by default) and in time (a generator stops drawing new
cases after FUZZ_SECONDS, saying so), so that the whole file fits the default suite; the same seed draws the same
cases in the same order."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from harness.cli import app
from harness.task import TASKS

CASES = int(os.environ.get("HARNESS_FUZZ_CASES", "24"))
FUZZ_SECONDS = float(os.environ.get("HARNESS_FUZZ_SECONDS", "8"))  # per generator, on top of its last case
SEED = 24
FAST = ("--samples", "8", "--pool-size", "8")  # a toy run that passes validation costs about a second

runner = CliRunner()

# Values that YAML, JSON, typer or a file system read in surprising ways, and a few plain ones.
WEIRD = [
    "8", "2", "010", "0o17", "0x10", "1:05", "1_000", "-1", "0", "1e400", "-1e400", ".inf", "-.inf", ".nan", "1e-3",
    "2.5", "9" * 60, "9" * 5000, "18446744073709551616", "yes", "no", "on", "~", "", "null", "true", "2024-01-01",
    "[1, 2]", "[[1]]", "{a: 1}", "&a 1", "*a", "!!python/object/apply:os.system ['true']", "!!binary AAAA",
    "'8'", '"8"', " 8", "8 # c", "\t8", "８", "x" * 2000, "a: b", "- 1", "|\n 8", "%YAML 1.1\n--- 8",
]  # fmt: skip
NUMBERS = ["8", "010", "0x8", "1:05", "-1", "0", "1e400", ".nan", "8.0", "x", "", "9" * 60, "4294967296", "3"]
NAMES = ["toy", "tyo", "", "../toy", "toy/../toy", ".toy", "-toy", "t" * 300, "to y", "toy\n", "missing.yaml"]


@dataclass
class Arena:
    """A fresh store (a toy run, its off-target results, a board published from it) and the places it may not
    touch: `outside` (linked from inside the store), a user's directory inside the store, the working directory."""

    root: Path
    store: Path
    boards: Path
    outside: Path
    user_dir: Path
    cwd: Path
    run: Path

    def protected(self) -> dict[str, Any]:
        return {"outside": snapshot(self.outside), "user": snapshot(self.user_dir), "cwd": snapshot(self.cwd)}


def snapshot(root: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            found[rel] = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return found


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """A store with one toy run (and its off-target results) and the board published from it."""
    root = tmp_path_factory.mktemp("fuzz-base")
    store, boards = root / "S", root / "D"
    for args in (
        ("run", "--method", "bon", "--task", "toy", "--n", "2", *FAST, "--out", store),
        ("leaderboard", "publish", "--task", "toy", "--out", store, "--dest", boards),
    ):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    (run,) = [p.parent for p in store.glob("*/*/*/results.json")]
    assert runner.invoke(app, ["offtarget", str(run), "--tasks", ""]).exit_code == 0
    return store, boards


@pytest.fixture
def arena(base, tmp_path, monkeypatch) -> Iterator[Callable[[], Arena]]:
    """Makes a fresh arena for each case (the store and boards copied from `base`)."""
    counter = iter(range(10**6))

    def make() -> Arena:
        root = tmp_path / f"case-{next(counter)}"
        store, boards, outside, cwd = root / "S", root / "D", root / "outside", root / "cwd"
        shutil.copytree(base[0], store, symlinks=True)
        shutil.copytree(base[1], boards, symlinks=True)
        (outside / "deep").mkdir(parents=True)
        (outside / "precious.txt").write_text("keep")
        (outside / "deep" / "more.txt").write_text("keep")
        cwd.mkdir()
        user_dir = store / "notes" / ".thesis.old-2023"
        user_dir.mkdir(parents=True)
        (user_dir / "ch1.tex").write_text("the only copy")
        for link in (".x.partial-y", ".x.old-y", "notes/.y.partial-z"):
            (store / link).symlink_to(outside)
        then = time.time() - 7200
        for path in (outside, outside / "precious.txt", user_dir, user_dir / "ch1.tex"):
            os.utime(path, (then, then))
        monkeypatch.chdir(cwd)
        (run,) = [p.parent for p in store.glob("*/*/*/results.json")]
        return Arena(root, store, boards, outside, user_dir, cwd, run)

    yield make


def check(case: str, args: list[str], arena: Arena, before: dict[str, Any]) -> None:
    result = runner.invoke(app, args)
    where = f"{case}: harness {' '.join(repr(a)[:80] for a in args)}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"{where} raised\n{trace}")
    assert result.exit_code in (0, 2), f"{where}: exit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output, f"{where}\n{result.output}"
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{where}: stderr\n{result.stderr}"
    assert arena.protected() == before, f"{where} changed what is not its to change"


def cases(name: str) -> Iterator[tuple[int, random.Random]]:
    """(case number, its generator), CASES of them, until the time budget is spent."""
    t0 = time.perf_counter()
    for i in range(CASES):
        if time.perf_counter() - t0 > FUZZ_SECONDS:
            print(f"{name}: stopped after {i} cases ({FUZZ_SECONDS:.0f} s budget)")
            return
        yield i, random.Random(f"{SEED}-{name}-{i}")


def with_out(args: list[str], arena: Arena, rng: random.Random) -> list[str]:
    """`--out` as most cases give it (the arena's store), now and then something else."""
    out = rng.choices(
        [str(arena.store), "", str(arena.run / "results.json"), str(arena.root / "S2"), str(arena.store / ".pools")],
        weights=[12, 1, 1, 1, 1],
    )[0]
    return [*args, "--out", out]


# ---- CLI arguments ---------------------------------------------------------------------------------------------------


def cli_case(rng: random.Random, arena: Arena) -> list[str]:
    ref = rng.choice([arena.run.name[:6], str(arena.run), "ffff", "", "../S", str(arena.outside), "x" * 300])
    task = rng.choice(NAMES)
    boards = str(arena.boards)
    templates: list[list[str]] = [
        ["run", "--method", rng.choice(["bon", "softbon", "rbon", "bno", "", "../bon"]), "--task", task, *FAST],
        ["run", "--method", "bon", "--task", "toy", "--seed", rng.choice(NUMBERS), *FAST],
        ["run", "--method", "bon", "--task", "toy", "--samples", rng.choice(NUMBERS), "--pool-size", "8"],
        ["run", "--method", "bon", "--task", "toy", "--n", rng.choice(WEIRD), *FAST],
        ["show", ref],
        ["evaluate", ref, "--samples", rng.choice(NUMBERS)],
        ["ls", rng.choice(["runs", "methods", "tasks", "models", ""])],
        ["gc"],
        ["leaderboard", "build", "--task", task],
        ["leaderboard", rng.choice(["build", "publish"]), "--task", "toy", "--with-published", "--dest", boards],
        ["leaderboard", "publish", "--task", task, "--dest", rng.choice([boards, "", str(arena.store)])],
        ["pool", "build", "--task", task, "--m", rng.choice(NUMBERS)],
        ["offtarget", ref, "--tasks", rng.choice(["", "no_such_task"])],
        ["sweep", rng.choice(["no-such-sweep", "", str(arena.run / "config.json")])],
    ]  # fmt: skip
    args = rng.choice(templates)
    if args[0] not in ("ls",) or args[-1] == "runs":
        args = with_out(args, arena, rng)
    for _ in range(rng.choice([0, 0, 1, 2])):  # a careless edit: a token dropped, repeated or foreign
        i = rng.randrange(len(args))
        edit = rng.choice(["drop", "repeat", "flag"])
        if edit == "drop" and i > 0:
            args = args[:i] + args[i + 1 :]
        elif edit == "repeat":
            args = args[: i + 1] + args[i:]
        else:
            args = args[:i] + [rng.choice(["--force", "-v", "--bogus", "--n", "-p", "--", "--out"])] + args[i:]
    return args


def test_fuzz_cli_arguments(arena):
    for i, rng in cases("cli"):
        a = arena()
        check(f"cli case {i}", cli_case(rng, a), a, a.protected())


# ---- -p values -------------------------------------------------------------------------------------------------------


def test_fuzz_param_values(arena):
    for i, rng in cases("param"):
        a = arena()
        method = rng.choice(["bon", "softbon", "rbon"])
        args = ["run", "--method", method, "--task", "toy", *FAST]
        for _ in range(rng.choice([1, 1, 2])):
            key = rng.choice(["n", "n", "lambda", "lam", "beta", "nn", "", "N", "n ", "n=n"])
            args += ["-p", f"{key}={rng.choice(WEIRD)}" if rng.random() < 0.9 else key]
        check(f"param case {i}", with_out(args, a, rng), a, a.protected())


# ---- task files ------------------------------------------------------------------------------------------------------

TOY = yaml.safe_load(Path(TASKS.target("toy")).read_text())
TASK_EDITS: list[tuple[tuple[str, ...], Any]] = [
    (("name",), "toy"), (("name",), "../escaped"), (("name",), ""), (("name",), 5), (("version",), 0),
    (("version",), "1"), (("builder",), "builtins:len"), (("builder",), "os:getcwd"), (("builder",), "json:dumps"),
    (("builder",), "no_such:build"), (("builder",), "harness.tasks.toy"), (("builder",), "builtins:repr"),
    (("params", "init_std"), float("inf")), (("params", "init_std"), 1e300), (("params", "token_rewards"), [0, 1]),
    (("params", "token_rewards"), [0, 1, float("nan"), 0, 1, 3]), (("params", "token_rewards"), [1e308] * 6),
    (("params", "seed"), 10**40), (("params", "seed"), -1), (("params", "vocab_size"), 1000),
    (("params", "prompt_length"), 40), (("params", "n_prompts"), 10**9), (("params", "completion_length"), 0),
    (("params",), [1, 2]), (("params", "colour"), "blue"), (("generation", "max_new_tokens"), 10**9),
    (("generation", "temperature"), 0), (("generation",), None), (("evaluation", "bootstrap"), 10**9),
    (("evaluation", "samples_per_prompt"), 10**8), (("evaluation", "pool_size"), 0), (("methods", "bon", "n"), 0),
    (("methods", "bon", "n"), 3), (("methods", "nope"), {"x": 1}), (("extra",), 1),
]  # fmt: skip
RAW_TASKS = [
    "", "42\n", "[toy\n", "name: toy\nname: toy\n", "\x00\x01", "a: " + "[" * 3000 + "]" * 3000,
    "params: {a: " + "9" * 5000 + "}\n", "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
    "name: !!python/object/apply:os.system ['true']\n",
]  # fmt: skip


def task_text(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(RAW_TASKS)
    config = json.loads(json.dumps(TOY)) | {"name": "toy-fuzz"}
    for path, value in rng.sample(TASK_EDITS, rng.choice([1, 1, 2])):
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = value
    text = yaml.safe_dump(config)
    if rng.random() < 0.15:  # truncated on its way
        text = text[: rng.randrange(len(text))]
    return text


def test_fuzz_task_files(arena):
    for i, rng in cases("task"):
        a = arena()
        path = a.root / "task.yaml"
        path.write_text(task_text(rng), errors="surrogateescape")
        args = ["run", "--method", rng.choice(["bon", "softbon"]), "--task", str(path), *FAST]
        check(f"task case {i}", with_out(args, a, rng), a, a.protected())


# ---- sweep files -----------------------------------------------------------------------------------------------------

# valid edits keep a sweep at a few cells: each costs a toy run
EVALUATION = {"samples_per_prompt": 8, "pool_size": 8, "reference_samples": 8}
SWEEP = {"tasks": ["toy"], "evaluation": EVALUATION, "methods": {"bon": {"n": 2}}}
SWEEP_EDITS: list[tuple[tuple[str, ...], Any]] = [
    (("seeds",), [-1]), (("seeds",), [0, 1]), (("seeds",), "0"), (("seeds",), []), (("seeds",), [2**40]),
    (("tasks",), []), (("tasks",), ["tyo"]), (("tasks",), ["../toy"]), (("tasks",), ["missing.yaml"]),
    (("tasks",), "toy"), (("methods",), {}), (("methods", "bon", "n"), []), (("methods", "bon", "n"), [0]),
    (("methods", "bon", "m"), [1, 2]), (("methods", "bon"), [{"n": 2}, {"n": 3}]), (("methods", "bno"), {}),
    (("methods", "bon", "n"), list(range(1, 10_002))), (("methods", "softbon", "lambda"), [1e-300]),
    (("evaluation", "bootstrap"), 10**9), (("evaluation", "colour"), 1), (("resources", "num_cpus"), -1),
    (("extra",), 1),
]  # fmt: skip
RAW_SWEEPS = [
    "", "[]\n", "tasks: [toy\n", "methods: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n",
    "tasks: [toy]\nmethods:\n  bon: {n: [" + ", ".join(str(i) for i in range(1, 41)) + "], x: ["
    + ", ".join(str(i) for i in range(40)) + "]}\n",
]  # fmt: skip


def sweep_text(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return rng.choice(RAW_SWEEPS)
    config = json.loads(json.dumps(SWEEP))
    for path, value in rng.sample(SWEEP_EDITS, rng.choice([1, 1, 2])):
        node = config
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = value
    return yaml.safe_dump(config)


def test_fuzz_sweep_files(arena):
    for i, rng in cases("sweep"):
        a = arena()
        path = a.root / "sweep.yaml"
        path.write_text(sweep_text(rng))
        check(f"sweep case {i}", with_out(["sweep", str(path)], a, rng), a, a.protected())


# ---- stored files ----------------------------------------------------------------------------------------------------


def damage(rng: random.Random, a: Arena) -> str:
    """Changes one file of the store or of the boards, as a careless user, a full disk or someone else would."""
    pool = next(a.store.glob(".pools/toy/*"))
    targets = [
        a.run / "results.json", a.run / "config.json", a.run / "checksums.json", a.run / "samples.jsonl",
        a.run / "offtarget.json", pool / "pool.jsonl", pool / "meta.json", pool / "checksums.json",
        a.boards / "index.html", a.boards / "toy" / "results.jsonl", a.boards / "toy" / ".published",
        a.store / ".staging" / f"{'0' * 16}.json", a.store / ".locks" / f"toy.bon.{a.run.name}.lock",
        a.store / ".checkpoints" / "toy", a.run / "evaluations",
    ]  # fmt: skip
    target = rng.choice(targets)
    how = rng.choice(["truncate", "flip", "empty object", "list", "directory", "link out", "delete", "journal"])
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    data = target.read_bytes() if target.is_file() else b"{}"
    target.unlink(missing_ok=True)
    if how == "truncate":
        target.write_bytes(data[: rng.randrange(max(1, len(data)))])
    elif how == "flip":
        i = rng.randrange(max(1, len(data)))
        target.write_bytes(data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :] if data else b"\x20")
    elif how == "empty object":
        target.write_text("{}")
    elif how == "list":
        target.write_text('[{"foo": 1}]\n{"foo": 1}\n')
    elif how == "directory":
        target.mkdir()
    elif how == "link out":
        target.symlink_to(a.outside if rng.random() < 0.5 else a.outside / "precious.txt")
    elif how == "journal":
        stage = rng.choice(["../outside", ".x.partial-y", "notes/.thesis.old-2023", str(a.outside), "toy"])
        target.write_text(json.dumps({"stage": stage, "final": "notes/thesis", "kind": rng.choice(["old", "partial"])}))
    return f"{how} {target.relative_to(a.root)}"


def test_fuzz_stored_files(arena):
    for i, rng in cases("stored"):
        a = arena()
        what = damage(rng, a)
        before = a.protected()
        command = rng.choice(
            [
                ["ls", "runs"], ["show", a.run.name], ["gc"], ["leaderboard", "build", "--task", "toy"],
                ["leaderboard", "build", "--task", "toy", "--with-published", "--dest", str(a.boards)],
                ["leaderboard", "publish", "--task", "toy", "--dest", str(a.boards)],
                ["evaluate", a.run.name, "--samples", "8"], ["offtarget", a.run.name, "--tasks", ""],
                ["run", "--method", "bon", "--task", "toy", "--n", "2", *FAST],
                ["run", "--method", "bon", "--task", "toy", "--n", "3", *FAST],
            ]
        )  # fmt: skip
        check(f"stored case {i} ({what})", [*command, "--out", str(a.store)], a, before)
