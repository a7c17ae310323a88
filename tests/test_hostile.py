"""The store touches only what it wrote: input from a hostile or careless user, each on the toy task.

Each data-loss test here failed before the store kept a journal of its own staging directories, checked where every
write lands, marked its index pages and refused look-alike tasks; each now passes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import leaderboard, store
from harness.task import TASKS
from tests.conftest import harness as invoke
from tests.conftest import one_error_line, toy_yaml


def runs_in(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/*/*/results.json"))


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file (its bytes) and link (its target) under `root`, without following links."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                found[str(path.relative_to(root))] = os.readlink(path)
            elif path.is_file():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def toy_run(out: Path, n: int = 2, *extra: str) -> Path:
    result = invoke("run", "--method", "bon", "--task", "toy", "--n", str(n), "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return next(p for p in runs_in(out) if json.loads((p / "config.json").read_text())["method"]["n"] == n)


def aged(*paths: Path, seconds: float = 7200) -> None:
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then), follow_symlinks=False)


# ---- data loss: removing what the store did not write -----------------------------------------------------------


def test_gc_and_run_leave_a_users_hidden_directories_under_out_alone(tmp_path):
    """`.x.old-y` and `.x.partial-y` are a staging directory's names; a user's directories may carry them too."""
    out = tmp_path / "u"
    thesis = out / "paper" / ".thesis.old-2023"
    backup = out / "backups" / ".db.partial-jan"
    for directory, name in ((thesis, "ch1.tex"), (backup, "dump.sql")):
        directory.mkdir(parents=True)
        (directory / name).write_text("the only copy")
        aged(directory / name, directory)
    before = snapshot(out)
    assert invoke("gc", "--out", out).exit_code == 0
    toy_run(out)
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before


def test_a_link_in_the_store_never_leads_a_removal_out_of_it(tmp_path):
    """A store received from someone else: links named like staging directories lead nothing to be removed."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    out = tmp_path / "S"
    out.mkdir()
    (out / ".x.partial-y").symlink_to(victim)
    (out / ".x.old-y").symlink_to(victim)
    aged(victim / "precious.txt", victim, out / ".x.partial-y", out / ".x.old-y")
    before = snapshot(victim)
    assert invoke("gc", "--out", out).exit_code == 0
    toy_run(out)
    assert snapshot(victim) == before
    assert (out / ".x.partial-y").is_symlink() and (out / ".x.old-y").is_symlink()


def test_a_forged_journal_entry_removes_nothing_the_store_did_not_make(tmp_path):
    """Entries in the journal name directories outside the store, links, and a user's directory; none carries the
    mark with the entry's token, so nothing is removed (the entries themselves are)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    out = tmp_path / "S"
    mine = out / "notes" / ".draft.old-1"
    mine.mkdir(parents=True)
    (mine / "draft.txt").write_text("keep")
    (mine / ".staged").write_text("1" * 16)  # a mark, but not of the entry that names this directory
    (out / ".x.partial-y").symlink_to(victim)
    (out / store.JOURNAL).mkdir()
    for token, stage in (("0" * 16, "../victim"), ("1" * 16, ".x.partial-y"), ("2" * 16, "notes/.draft.old-1")):
        entry = {"stage": stage, "final": "notes/draft", "kind": "old"}
        (out / store.JOURNAL / f"{token}.json").write_text(json.dumps(entry))
    before, mine_before = snapshot(victim), snapshot(mine)
    assert invoke("gc", "--out", out).exit_code == 0
    toy_run(out)
    assert snapshot(victim) == before and snapshot(mine) == mine_before
    assert not list((out / store.JOURNAL).iterdir())  # the forged entries are gone, nothing they named


def test_gc_leaves_a_linked_pool_directory_alone(tmp_path, caplog):
    out = tmp_path / "S"
    toy_run(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pool.jsonl").write_text("not a pool\n")
    (out / ".pools" / "toy" / "linked").symlink_to(elsewhere)
    result = invoke("gc", "--out", out)
    assert result.exit_code == 0, result.output
    assert (elsewhere / "pool.jsonl").read_text() == "not a pool\n"
    assert "left alone" in caplog.text


def test_training_never_writes_through_a_link_out_of_the_store(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "S"
    (out / ".checkpoints").mkdir(parents=True)
    (out / ".checkpoints" / "toy").symlink_to(elsewhere)
    args = ("run", "--method", "dpo", "--task", "toy", "-p", "steps=2", "-p", "checkpoint_every=1", "--samples", "8")
    line = one_error_line(invoke(*args, "--out", out))
    assert "leads outside the results store" in line
    assert not list(elsewhere.iterdir()) and not runs_in(out)


def test_evaluate_writes_only_into_the_store_it_is_given(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    run = toy_run(a)
    before = snapshot(a)
    line = one_error_line(invoke("evaluate", run, "--samples", "8", "--out", b))
    assert f"lies in the results store {a}" in line
    assert snapshot(a) == before and not b.exists()
    again = invoke("evaluate", run, "--samples", "8", "--out", a)  # its own store: beside the run
    assert again.exit_code == 0, again.output
    assert len(list((run / "evaluations").iterdir())) == 1


def test_publishing_never_overwrites_an_index_page_it_did_not_write(tmp_path, monkeypatch):
    out, dest = tmp_path / "runs", tmp_path / "site"
    toy_run(out)
    dest.mkdir()
    (dest / "index.html").write_text("<h1>my home page</h1>")
    publish = ("leaderboard", "publish", "--task", "toy", "--out", out)
    line = one_error_line(invoke(*publish, "--dest", dest))
    assert "index.html was not written by `harness leaderboard publish`" in line
    assert (dest / "index.html").read_text() == "<h1>my home page</h1>" and not (dest / "toy").exists()
    (dest / "index.html").unlink()
    for _ in range(2):  # its own index page it replaces
        assert invoke(*publish, "--dest", dest).exit_code == 0
    assert sorted(p.name for p in dest.iterdir()) == ["index.html", "toy"]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert "--dest is empty" in one_error_line(invoke(*publish, "--dest", ""))
    assert not list(cwd.iterdir())


NEGATED_TOY = """
from harness.tasks.toy import build as build_toy


class Negated:
    label = "minus the toy reward"

    def __init__(self, reward):
        self.reward = reward

    def score(self, prompts, completions):
        return [-r for r in self.reward.score(prompts, completions)]


def build(config):
    task = build_toy(config)
    task.reward = Negated(task.reward)
    return task
"""


def test_a_task_file_that_takes_a_registered_name_with_another_builder_is_refused(tmp_path, monkeypatch):
    """The builder is no part of a run's identity: a look-alike `toy` would store its runs as toy's."""
    (tmp_path / "negated_toy.py").write_text(NEGATED_TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "S"
    for builder in ("negated_toy:build", "builtins:len"):
        path = toy_yaml(tmp_path / "toy.yaml", "toy", builder=builder)
        line = one_error_line(invoke("run", "--method", "bon", "--task", path, "--n", "8", "--out", out))
        assert "a registered task" in line and builder in line
        assert not runs_in(out)
    clean = json.loads((toy_run(out, 8) / "results.json").read_text())
    assert clean["metrics"]["reward"]["mean"] > 0
    own = toy_yaml(tmp_path / "toy.yaml", "toy-negated", builder="negated_toy:build")  # a name of its own: fine
    assert invoke("run", "--method", "bon", "--task", own, "--n", "8", "--out", out).exit_code == 0
    negated_run = next(p for p in runs_in(out) if p.parent.parent.name == "toy-negated")
    negated = json.loads((negated_run / "results.json").read_text())
    assert negated["metrics"]["reward"]["mean"] < 0


# ---- silently wrong: counted twice, edits unseen -----------------------------------------------------------------


def test_a_seed_counts_once_however_many_copies_of_its_run_the_store_holds(tmp_path):

    out = tmp_path / "S"
    run = toy_run(out)
    copy = run.parent / "0123456789ab"
    shutil.copytree(run, copy)
    board = leaderboard.build(out, "toy")
    assert list(board["seeds"]) == [1]
    shutil.rmtree(copy)
    older = run.parent / "0000000000ab"
    os.replace(run, older)  # as a store holds a run stored before a setting's rename under its old name
    toy_run(out, 2, "--force")  # recomputed under today's name, beside it
    assert len(runs_in(out)) == 2
    board = leaderboard.build(out, "toy")
    assert list(board["seeds"]) == [1]
    newest = json.loads((run / "results.json").read_text())
    assert board["reward"][0] == pytest.approx(newest["metrics"]["reward_exact"]["mean"])


def _entry(run: Path) -> dict:
    return json.loads((run / store.OFFTARGET).read_text())


def test_off_target_results_are_sealed_when_written_and_an_edit_is_reported(tmp_path):
    out = tmp_path / "S"
    run = toy_run(out)
    other = toy_run(out, 3)
    assert invoke("offtarget", run, "--tasks", "").exit_code == 0
    sums = json.loads((run / store.CHECKSUMS).read_text())
    assert sums[store.OFFTARGET] == store.sha256(run / store.OFFTARGET)
    assert "length" in leaderboard.build(out, "toy").columns
    forged = _entry(run)
    forged["metrics"]["length"]["mean"] = 0.5
    (run / store.OFFTARGET).write_text(json.dumps(forged))
    (other / store.OFFTARGET).write_text(json.dumps(forged))  # a run that never had any
    for path in (run, other):
        line = one_error_line(invoke("show", path))
        assert str(path / store.OFFTARGET) in line and "offtarget" in line
    cleaned = invoke("gc", "--out", out)
    assert cleaned.exit_code == 0 and cleaned.stdout.strip().endswith("2 broken runs")
    (other / store.OFFTARGET).write_text("{}")
    line = one_error_line(invoke("show", other))
    assert "offtarget.json" in line


def test_gc_reports_an_edited_training_log_or_policy_and_evaluate_refuses_it(tmp_path):
    out = tmp_path / "S"
    args = ("run", "--method", "dpo", "--task", "toy", "-p", "steps=2", "--samples", "8", "--out", out)
    assert invoke(*args).exit_code == 0
    (run,) = runs_in(out)
    log_file, weights = run / store.TRAIN_LOG, run / store.POLICY / "model.safetensors"
    original = log_file.read_bytes(), weights.read_bytes()
    log_file.write_text(log_file.read_text().replace('"step": 0', '"step": 1'))
    assert "train_log.jsonl does not match its checksum" in invoke("gc", "--out", out).stderr
    log_file.write_bytes(original[0])
    weights.write_bytes(original[1][:1000])
    assert "model.safetensors does not match its checksum" in invoke("gc", "--out", out).stderr
    line = one_error_line(invoke("evaluate", run, "--samples", "8"))
    assert "model.safetensors" in line and "--force" in line


def test_with_published_checks_every_line_and_says_how_many_it_read(tmp_path):
    out, dest = tmp_path / "runs", tmp_path / "boards"
    toy_run(out)
    toy_run(out, 3)
    assert invoke("leaderboard", "publish", "--task", "toy", "--out", out, "--dest", dest).exit_code == 0
    build = ("leaderboard", "build", "--task", "toy", "--out", out, "--dest", dest, "--with-published")
    result = invoke(*build)
    assert result.exit_code == 0 and "read 2 published runs from" in result.stdout
    published = dest / "toy" / "results.jsonl"
    lines = published.read_text().splitlines()
    for bad in ('{"foo": 1}', json.dumps(json.loads(lines[0]) | {"results": {"metrics": {}}}), "[]"):
        published.write_text("\n".join([*lines, bad]) + "\n")
        line = one_error_line(invoke(*build))
        assert f"{published}:3" in line


# ---- numbers as YAML 1.2 reads them; bounded input -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("010", 10), ("0o17", 15), ("0x1f", 31), ("1e-3", 0.001), ("yes", "yes")])
def test_values_read_as_yaml_1_2(text, value):
    from harness import yaml12

    assert yaml12.load(text) == value and type(yaml12.load(text)) is type(value)


def test_cli_numbers_are_never_octal_or_sexagesimal(tmp_path):
    result = invoke("run", "--method", "bon", "--task", "toy", "--n", "010", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (path,) = runs_in(tmp_path)
    assert json.loads((path / "config.json").read_text())["method"]["n"] == 10
    assert "n = '1:05'" in one_error_line(invoke("run", "--method", "bon", "--task", "toy", "--n", "1:05"))


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(8)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BOMB, "expands to more than"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
        ("a: " + "9" * 5000 + "\n", "an integer of 5000 digits"),
        ("a: 1e400\n", "beyond the range of a float"),
        ("a: &r [*r]\n", "an alias refers to a node that contains it"),
    ],
)
def test_hostile_yaml_is_refused_before_it_is_built(tmp_path, text, expected):
    nested = "extra:\n" + "".join(f"  {line}\n" for line in text.splitlines())
    task = toy_yaml(tmp_path / "bad.yaml", "toy-bad")
    task.write_text(task.read_text() + nested)
    assert expected in one_error_line(invoke("run", "--method", "bon", "--task", task, "--out", tmp_path / "S"))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("tasks: [toy]\nmethods:\n  bon: {n: 2}\n" + nested)
    assert expected in one_error_line(invoke("sweep", sweep, "--out", tmp_path / "S"))


def test_a_huge_sweep_grid_names_its_unknown_key_or_its_size_before_expanding(tmp_path):
    axis = "[" + ", ".join(str(i) for i in range(1, 41)) + "]"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"tasks: [toy]\nmethods:\n  bon: {{n: {axis}, m: {axis}, o: {axis}, p: {axis}, q: {axis}}}\n")
    assert "unknown key 'm'" in one_error_line(invoke("sweep", sweep, "--out", tmp_path / "S"))
    sweep.write_text(f"tasks: [toy]\nseeds: {axis}\nmethods:\n  softbon: {{n: {axis}, lambda: {axis}}}\n")
    assert "the grid has 64000 cells (at most" in one_error_line(invoke("sweep", sweep, "--out", tmp_path / "S"))


# ---- every listed traceback is one line --------------------------------------------------------------------------

RUN = ("run", "--method", "bon", "--task", "toy")


@pytest.mark.parametrize(
    ("method", "args", "expected"),
    [
        ("bon", ("-p", "n=1000000000"), "n = 1000000000"),
        ("bon", ("--samples", "1000000000"), "samples_per_prompt = 1000000000"),
        ("bon", ("--pool-size", "100000000"), "pool_size = 100000000"),
        ("bon", ("--seed", "x"), "run: Invalid value for '--seed'"),
        ("softbon", ("-p", "lambda=1e-300"), "lambda = 1e-300"),
        ("softbon", ("-p", "lambda=1e-4"), "greater than or equal to 0.01"),
        ("softbon", ("-p", "lam=0.5", "-p", "lambda=2"), "'lam' and 'lambda' are one setting given twice"),
        ("dpo", ("-p", "beta=1e308"), "beta = 1e+308"),
        ("ppo", ("-p", "steps=10000000"), "steps = 10000000"),
    ],
)
def test_bad_values_are_one_line_before_any_work(tmp_path, method, args, expected):
    assert expected in one_error_line(invoke("run", "--method", method, "--task", "toy", *args, "--out", tmp_path))
    assert not runs_in(tmp_path)


def test_a_missing_method_or_a_bad_option_type_is_one_line():
    assert "Missing option '--method'" in one_error_line(invoke("run", "--task", "toy"))
    assert "No such command 'rnu'" in one_error_line(invoke("rnu"))
    assert "Invalid value for '--m'" in one_error_line(invoke("pool", "build", "--task", "toy", "--m", "many"))


def test_pool_sizes_and_bootstrap_have_upper_bounds(tmp_path):
    assert "pool_size = 100000000" in one_error_line(invoke("pool", "build", "--task", "toy", "--m", "100000000"))
    task = toy_yaml(tmp_path / "t.yaml", "toy-boot", evaluation={"bootstrap": 1000000000})
    assert "bootstrap = 1000000000" in one_error_line(invoke(*RUN[:3], "--task", task, "--out", tmp_path / "S"))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"init_std": float("inf")}, "params.init_std = inf"),
        ({"token_rewards": [0, 1, float("nan"), 0, 1, 3]}, "params.token_rewards.2 = nan"),
        ({"token_rewards": [0, 1, 1e308, 0, 1, 3]}, "less than or equal to 1000000"),
        ({"seed": 10**30}, "seed"),
        ({"prompt_length": 12}, "prompts to list"),
    ],
)
def test_task_params_that_cannot_be_computed_are_one_line(tmp_path, params, expected):
    config = yaml.safe_load(Path(TASKS.target("toy")).read_text())
    config |= {"name": "toy-params", "params": config["params"] | params}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(config))
    assert expected in one_error_line(invoke(*RUN[:3], "--task", path, "--out", tmp_path / "S"))


@pytest.mark.parametrize("builder", ["builtins:len", "os:getcwd", "json:dumps"])
def test_a_builder_that_returns_no_task_fails_its_own_cells_only(tmp_path, builder):
    path = toy_yaml(tmp_path / "t.yaml", "toy-not-a-task", builder=builder)
    line = one_error_line(invoke(*RUN[:3], "--task", path, "--out", tmp_path / "S"))
    assert builder in line
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"tasks: [toy, {path}]\nevaluation: {{samples_per_prompt: 8}}\nmethods:\n  bon: {{n: 2}}\n")
    result = invoke("sweep", sweep, "--out", tmp_path / "S")
    assert result.exit_code == 1 and "1 cells run, 0 already finished, 1 failed" in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_broken_run_files_break_only_their_own_run(tmp_path):
    out = tmp_path / "S"
    good, no_config, dir_results = toy_run(out), toy_run(out, 3), toy_run(out, 4)
    (no_config / store.CONFIG).unlink()
    (no_config / store.CHECKSUMS).unlink()
    (dir_results / store.RESULTS).unlink()
    (dir_results / store.RESULTS).mkdir()
    for args in (("ls", "runs"), ("show", good.name), ("leaderboard", "build", "--task", "toy"), ("gc",)):
        result = invoke(*args, "--out", out)
        assert result.exit_code == 0 and result.exception is None, (args, result.output)
    assert "config.json cannot be read" in one_error_line(invoke("show", no_config, "--out", out))
    assert "is a file" in one_error_line(invoke("gc", "--out", good / store.RESULTS))


def test_vbon_exact_reward_stays_finite_at_the_largest_n(toy):
    import numpy as np

    from harness import bon
    from harness.policy import enumerate_prompt

    e = enumerate_prompt(toy.reference, toy.reward, toy.prompts[0])
    for n in (1, 4, 64):
        expected = np.log(bon.bon_distribution(e.p_ref, e.rewards, n) / e.p_ref)
        np.testing.assert_allclose(bon.bon_log_ratio(e.p_ref, e.rewards, n), expected, atol=1e-12)
    assert np.isfinite(bon.bon_log_ratio(e.p_ref, e.rewards, 4096)).all()  # pi_BoN underflows to 0 there


# ---- a full or read-only disk --------------------------------------------------------------------------------------

DISK_SCRIPT = """
set -e
mount -t tmpfs -o size=96k tmpfs "$1"
"$2" -m harness run --method bon --task toy --n 2 --out "$1/S" 2> "$3/full.err" && echo full-ok || echo "full-exit $?"
mount -o remount,ro "$1"
"$2" -m harness run --method bon --task toy --n 3 --out "$1/S" 2> "$3/ro.err" && echo ro-ok || echo "ro-exit $?"
ls -A "$1/S" > "$3/listing" || true
find "$1/S" -name '.*partial-*' > "$3/partial" || true
"""


def test_a_full_or_read_only_disk_is_one_line_naming_the_store(tmp_path):
    """In a mount namespace of its own (needs `unshare`, and user namespaces where not root): a 96 KB tmpfs."""
    mnt, logs = tmp_path / "mnt", tmp_path / "logs"
    mnt.mkdir()
    logs.mkdir()
    try:
        proc = subprocess.run(
            ["unshare", "-rm", "sh", "-c", DISK_SCRIPT, "sh", str(mnt), sys.executable, str(logs)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if "full-" not in proc.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    assert "full-exit 2" in proc.stdout and "ro-exit 2" in proc.stdout, proc.stdout
    full = (logs / "full.err").read_text().strip().splitlines()
    assert len(full) == 1 and "no space left on the device that holds" in full[0] and "free space" in full[0], full
    ro = (logs / "ro.err").read_text().strip().splitlines()
    assert len(ro) == 1 and "Read-only file system" in ro[0], ro
    assert not (logs / "partial").read_text().strip()
