"""The `harness` command end to end on the toy task: outputs, store, errors, interruption, reproducibility."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import app
from harness.confighelp import FieldHelp, describe
from harness.method import METHODS
from harness.run import execute, resolve
from harness.task import TASKS
from tests.conftest import interruptible, one_error_line, toy_yaml

METRICS = ("reward", "win_rate", "kl_exact", "kl_bon_bound", "kl_bon_beirami", "kl_mc")
METRIC_ID = re.compile(r"\w@\d")  # a stored metric id such as reward@1, which a reader takes for n = 1


def only_run(out: Path) -> Path:
    runs = [p.parent for p in out.glob("*/*/*/results.json")]
    assert len(runs) == 1, runs
    return runs[0]


def test_run_writes_a_complete_run(invoke, tmp_path):
    result = invoke("run", "--method", "bon", "--task", "toy", "--n", "4", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    path = only_run(tmp_path)
    assert str(path) in result.output.replace("\n", "")
    assert path.parent == tmp_path / "toy" / "bon"
    results = json.loads((path / "results.json").read_text())
    for name in METRICS:
        m = results["metrics"][name]
        assert m["id"] == f"{name}@1"
        lo, hi = m["ci95"]
        assert lo <= m["mean"] <= hi
        assert re.search(rf"│ {name} +│", result.output), name
    # metric ids are printed by name, their versions in one footnote, never as name@version (read as n)
    assert not METRIC_ID.search(result.output), result.output
    versions = " ".join(result.output.split("metric versions:")[1].split())
    assert all(f"{name} v1" in versions for name in METRICS), versions
    assert results["cost"]["samples_per_output"] == 4
    config = json.loads((path / "config.json").read_text())
    assert config["method"] == {"name": "bon", "n": 4}
    # n <= pool size: the run is evaluated on the shared pool (64 per prompt) with best-of-n weights.
    records = [json.loads(line) for line in (path / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 8 * 64
    for prompt_id in {r["prompt_id"] for r in records}:
        assert sum(r["weight"] for r in records if r["prompt_id"] == prompt_id) == pytest.approx(1.0)
    assert [point["n"] for point in results["bon_curve"]] == list(range(1, 65))


@pytest.mark.parametrize(("n", "pool_size"), [(8, 2048), (70, 64)])  # from the pool; sampled afresh (n > M)
def test_run_metrics_agree_with_their_exact_values(tmp_path, n, pool_size):
    """Estimated metrics of a run land close to the exact ones, by either evaluation path."""
    spec = resolve("toy", "bon", {"n": n}, seed=0, evaluation={"samples_per_prompt": 400, "pool_size": pool_size})
    m = execute(spec, tmp_path).results["metrics"]
    assert m["win_rate_exact"]["mean"] < n / (n + 1)  # ties keep best-of-n below the continuous n/(n+1)
    for sampled, exact in (("reward", "reward_exact"), ("win_rate", "win_rate_exact"), ("kl_mc", "kl_exact")):
        assert abs(m[sampled]["mean"] - m[exact]["mean"]) < 0.03 * max(1.0, abs(m[exact]["mean"])), sampled
    # Beirami et al.'s estimate is tighter than the analytic bound but, with ties, still above the exact KL.
    assert m["kl_exact"]["mean"] < m["kl_bon_beirami"]["mean"] < m["kl_bon_bound"]["mean"]


def test_finished_config_is_not_recomputed_unless_forced(invoke, tmp_path):
    args = ("run", "--method", "bon", "--task", "toy", "--n", "2", "--out", str(tmp_path))
    assert invoke(*args).exit_code == 0
    path = only_run(tmp_path)
    stamp = (path / "results.json").stat().st_mtime_ns
    again = invoke(*args)
    assert again.exit_code == 0 and "already finished" in " ".join(again.output.split())
    assert (path / "results.json").stat().st_mtime_ns == stamp
    assert invoke(*args, "--force").exit_code == 0
    assert (path / "results.json").stat().st_mtime_ns != stamp
    assert only_run(tmp_path) == path
    assert not [p for p in (tmp_path / "toy" / "bon").iterdir() if p.name.startswith(".")]


def test_same_seed_gives_identical_results(invoke, tmp_path):
    for out in ("a", "b"):
        assert (
            invoke("run", "--method", "bon", "--task", "toy", "--seed", "7", "--out", str(tmp_path / out)).exit_code
            == 0
        )
    a, b = only_run(tmp_path / "a"), only_run(tmp_path / "b")
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    ra.pop("timing"), rb.pop("timing")
    assert ra == rb
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()
    other = invoke("run", "--method", "bon", "--task", "toy", "--seed", "8", "--out", str(tmp_path / "c"))
    assert other.exit_code == 0
    rc = json.loads((only_run(tmp_path / "c") / "results.json").read_text())
    assert rc["metrics"]["reward"] != ra["metrics"]["reward"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--method", "bno", "--task", "toy"), "unknown method 'bno'; did you mean 'bon'"),
        (("--method", "bon", "--task", "tyo"), "unknown task 'tyo'; did you mean 'toy'?"),
        (("--method", "bon", "--task", "toy", "--n", "0"), "n = 0: Input should be greater than or equal to 1"),
        (("--method", "bon", "--task", "toy", "--n", "-3"), "n = -3: Input should be greater than or equal to 1"),
        (("--method", "bon", "--task", "toy", "--n", "2.5"), "n = 2.5: Input should be a valid integer"),
        (("--method", "bon", "--task", "toy", "-p", "nn=3"), "unknown key 'nn' (did you mean 'n'?); accepted: n"),
        (
            ("--method", "ppo", "--task", "toy", "-p", "bta=3"),
            f"unknown key 'bta' (did you mean 'beta'?); accepted: {', '.join(METHODS.get('ppo').Config.model_fields)}",
        ),
        (("--method", "bon", "--task", "toy", "--n", "4", "-p", "n=8"), "--n 4 and --param n=8 disagree"),
        (("--method", "bon", "--task", "toy", "-p", "n=8", "--n", "4"), "--n 4 and --param n=8 disagree"),
        (("--method", "bon", "--task", "toy", "--n", "1", "-p", "n=true"), "--n 1 and --param n=true disagree"),
        (("--method", "bon", "--task", "toy", "-p", "n=2", "-p", "n=3"), "--param n=2 and --param n=3 disagree"),
        (("--method", "bon", "--task", "toy", "--samples", "0"), "samples_per_prompt = 0"),
        (("--method", "ppo", "--task", "toy", "-p", "beta=0"), "beta = 0: Input should be greater than 0"),
        (("--method", "dpo", "--task", "toy", "-p", "beta=-1"), "beta = -1: Input should be greater than 0"),
        (("--method", "bonbon", "--task", "toy", "--n", "1"), "n = 1: Input should be greater than or equal to 2"),
        (("--method", "vbon", "--task", "toy", "--n", "1"), "n = 1: Input should be greater than or equal to 2"),
        (("--method", "bond", "--task", "toy", "-p", "lr=0"), "lr = 0: Input should be greater than 0"),
        (
            ("--method", "vbon", "--task", "toy", "-p", "variant=l2"),
            "variant = 'l2': Input should be 'exact', 'l1' or 'released'",
        ),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(invoke, tmp_path, args, expected):
    result = invoke("run", *args, "--out", str(tmp_path))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert expected in lines[0]
    assert not list(tmp_path.glob("*/*/*"))


def test_unwritable_out_is_a_clear_error(invoke, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("run", "--method", "bon", "--task", "toy", "--out", str(blocker / "runs"))
    assert result.exit_code == 2
    assert "cannot write to the results store --out" in result.output
    assert str(blocker / "runs") in result.output.replace("\n", "")


def test_pools_linked_from_another_store_are_refused_before_any_work(invoke, tmp_path):
    other, out = tmp_path / "other", tmp_path / "runs"
    (other / ".pools").mkdir(parents=True)
    out.mkdir()
    (out / ".pools").symlink_to(other / ".pools")
    result = invoke("run", "--method", "jbond", "--task", "toy", "--out", str(out))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert f"{out / '.pools'} leads outside the results store {out}" in lines[0]
    assert not list(out.glob("*/*/*")) and not (out / ".checkpoints").exists()
    assert not list((other / ".pools").iterdir())


BLOCKING_BUILDER = """
import time
from pathlib import Path

from harness.task import build_task

def build(config):
    params = dict(config.params)
    block, ready = params.pop("block"), Path(params.pop("ready"))
    task = build_task(config.model_copy(update={"builder": "harness.tasks.toy:build", "params": params}))
    if block == "build":
        ready.touch()
        while True:
            time.sleep(0.05)
    score = task.reward.score

    def blocking_score(prompts, completions):
        ready.touch()  # the reference pool is sampled and being scored: block here until interrupted
        while True:
            time.sleep(0.05)

    task.reward.score = blocking_score
    return task
"""


@pytest.mark.parametrize(
    ("block", "sig"),
    [("build", signal.SIGINT), ("reward", signal.SIGINT), ("reward", signal.SIGTERM)],  # building; sampling
)
def test_an_interrupt_leaves_nothing_half_written(tmp_path, block, sig):
    """The run blocks at a known point (while its task builds, or while its pool is scored) until the signal
    lands, so the test never races the clock: it interrupts a run that cannot finish first."""
    (tmp_path / "blocking_task.py").write_text(BLOCKING_BUILDER)
    ready = tmp_path / "ready"
    path = toy_yaml(tmp_path / "toy-blocking.yaml", "toy-blocking", params={"block": block, "ready": str(ready)})
    config = yaml.safe_load(path.read_text())
    config["builder"] = "blocking_task:build"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--method", "bon", "--task", str(path), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
        env=env,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not ready.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    staging = out / "toy-blocking" / "bon"
    assert [p.name for p in staging.iterdir() if ".partial-" in p.name], "the run is not staged while it blocks"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    # 130 from our handler; CPython reports death by SIGINT instead when the interrupt landed inside code it
    # ran through PyRun_* (some imports do), even though the handler ran; SIGTERM becomes the same
    # KeyboardInterrupt, so it can end that way too. Each is a clean interrupt.
    assert proc.returncode in (130, -sig, -signal.SIGINT), stderr
    assert "interrupted" in stderr
    assert list(staging.iterdir()) == []


def test_ls_runs_and_show(invoke, tmp_path):
    ran = invoke("run", "--method", "bon", "--task", "toy", "--out", str(tmp_path))
    assert ran.exit_code == 0, ran.output
    tables = ran.output[: ran.output.index("run: ")]  # what run prints before the run's directory
    assert "best-of-n from the reference pool" in tables and "metric versions:" in tables
    path = only_run(tmp_path)
    listing = invoke("ls", "runs", "--out", str(tmp_path), env={"COLUMNS": "250"})
    assert listing.exit_code == 0 and path.name in listing.output
    assert "(kl_exact v1)" in listing.output and not METRIC_ID.search(listing.output)
    for ref in (path.name[:6], str(path)):
        shown = invoke("show", ref, "--out", str(tmp_path))
        assert shown.exit_code == 0, shown.output
        assert tables in shown.output  # the same tables as the run printed, curve and versions included
        assert '"n": 4' in shown.output and not METRIC_ID.search(shown.output)
    missing = invoke("show", "ffffff", "--out", str(tmp_path))
    assert missing.exit_code == 2 and "no run 'ffffff'" in missing.output


def test_ls_methods_and_tasks(invoke):
    assert invoke("ls", "methods").output.split() == METHODS.names()  # names only, without -v
    assert "toy" in invoke("ls", "tasks").output
    assert invoke("ls", "models").exit_code == 2


def test_ls_methods_verbose_shows_every_hyperparameter(invoke):
    wide = {"COLUMNS": "400"}
    after = invoke("ls", "methods", "-v", env=wide)
    before = invoke("-v", "ls", "methods", env=wide)
    assert after.exit_code == 0, after.output
    assert after.output == before.output
    rows = {
        tuple(cell.strip() for cell in line.strip("│").split("│"))
        for line in after.output.splitlines()
        if line.startswith("│")
    }
    for name in METHODS.names():
        assert name in after.output
        for f in describe(METHODS.get(name).Config):
            assert (f.name + " *" * f.operational, f.type, f.default, f.range, f.help) in rows, (name, f)
    assert ("n", "int", "4", "[1, 4096]", "Samples drawn from the reference policy per output.") in rows


def test_hyperparameters_read_types_defaults_and_ranges_from_the_config():
    by_name = {f.name: f for f in describe(METHODS.get("vbon").Config)}
    assert by_name["variant"] == FieldHelp(
        "variant", "str", "exact", "exact, l1, released", by_name["variant"].help, operational=False
    )
    assert (by_name["n"].type, by_name["n"].default, by_name["n"].range) == ("int", "8", "[2, 4096]")
    assert (by_name["lr"].type, by_name["lr"].range) == ("float", "> 0")
    assert (by_name["gae_lambda"].range, by_name["lr_decay"].default) == ("[0, 1]", "true")
    assert by_name["log_every"].operational and not by_name["lr"].operational
    assert {f.name: f.range for f in describe(METHODS.get("jbond").Config)}["eta"] == "(0, 1]"  # gt=0, le=1


def _commands(command, path=()):
    """(path, command) of every command and group of the CLI."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_takes_verbose_after_its_name(invoke):
    import typer

    for path, _ in _commands(typer.main.get_command(app)):
        for flag in ("-v", "--verbose"):
            result = invoke(*path, flag, "--help")
            assert result.exit_code == 0, (path, flag, result.output)


def test_verbose_after_the_command_logs_and_equal_n_and_param_n_agree(tmp_path):
    args = ("--method", "bon", "--task", "toy", "--n", "2", "-p", "n=2", "--out", str(tmp_path))

    def harness(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True)

    loud = harness("run", "-v", *args)
    assert loud.returncode == 0, loud.stderr
    assert "building task toy" in loud.stderr
    quiet = harness("run", *args, "--force")
    assert quiet.returncode == 0, quiet.stderr
    assert "building task toy" not in quiet.stderr
    assert json.loads((only_run(tmp_path) / "config.json").read_text())["method"] == {"name": "bon", "n": 2}


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "harness"
    if not exe.exists():
        pytest.skip("harness is not installed as a console script in this environment")
    proc = subprocess.run([str(exe), "ls", "methods"], capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0 and "bon" in proc.stdout


def test_a_task_yaml_file_runs_like_a_registered_task(invoke, tmp_path):
    path = toy_yaml(tmp_path / "toy-copy.yaml", "toy-copy", params={"n_prompts": 3})
    result = invoke("run", "--method", "bon", "--task", str(path), "--n", "2", "--out", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    assert run.parent.parent.name == "toy-copy"
    assert json.loads((run / "results.json").read_text())["metrics"]["reward"]["n_prompts"] == 3


def test_a_task_file_with_a_base_states_only_what_it_changes(tmp_path):
    """A variant names its base and the keys it changes: mappings merge key by key, so it is the run of the full
    copy that states every key, under the same identity."""
    copy = toy_yaml(tmp_path / "copy.yaml", "toy-fewer", params={"n_prompts": 3})
    config = yaml.safe_load(copy.read_text())
    config["methods"]["bon"] = {"n": 2}
    copy.write_text(yaml.safe_dump(config))
    variant = tmp_path / "variant.yaml"
    variant.write_text("base: toy\nname: toy-fewer\nparams: {n_prompts: 3}\nmethods: {bon: {n: 2}}\n")
    (tmp_path / "sub").mkdir()  # a base given by path is found relative to the file that names it
    stacked = tmp_path / "sub" / "stacked.yaml"
    stacked.write_text("base: ../variant.yaml\n")
    full = resolve(str(copy), "bon")
    for path in (variant, stacked):
        spec = resolve(str(path), "bon")
        assert spec.task.params == full.task.params and spec.task.params["vocab_size"] == 6
        assert spec.task.methods == full.task.methods and spec.task.methods["softbon"] == {"n": 4}
        assert spec.hash() == full.hash()


def test_an_unknown_task_file_key_names_the_accepted_keys(invoke, tmp_path):
    path = toy_yaml(tmp_path / "toy-typo.yaml", "toy-typo")
    config = yaml.safe_load(path.read_text())
    config["generation"]["temprature"] = 1.0
    path.write_text(yaml.safe_dump(config))
    result = invoke("run", "--method", "bon", "--task", str(path), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert (
        "unknown key 'generation.temprature' (did you mean 'temperature'?); accepted: max_new_tokens, temperature, "
        "top_k, top_p" in " ".join(lines[0].split())
    )


def test_a_bad_task_param_is_one_line_naming_it(invoke, tmp_path):
    path = toy_yaml(tmp_path / "toy-bad.yaml", "toy-bad", params={"vocab_size": 99})
    result = invoke("run", "--method", "bon", "--task", str(path), "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "invalid task 'toy-bad' params: vocab_size = 99" in lines[0], result.output
    assert not list((tmp_path / "runs").glob("*/*/*"))


# ---- every bad input is one line and exit 2, before any work ---------------------------------------------------

RUN = ("run", "--method", "bon", "--task", "toy")


def _bad_task_files(tmp_path: Path) -> dict[str, str]:
    files = {
        "malformed.yaml": "name: [toy\n",
        "empty.yaml": "",
        "scalar.yaml": "42\n",
        "non-utf8.yaml": "name: \xff\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode("latin-1"))
    toy = yaml.safe_load(Path(TASKS.target("toy")).read_text()) | {"name": "toy-variant"}  # toy's own name is toy's
    variants = {
        "unknown-key.yaml": toy | {"colour": "blue"},
        "missing-builder.yaml": toy | {"builder": "no_such_module:build"},
        "not-a-task.yaml": toy | {"builder": "builtins:repr"},
        "huge.yaml": toy | {"generation": toy["generation"] | {"max_new_tokens": 1000000000}},
        "unknown-base.yaml": {"base": "no-such-task", "name": "x"},
        "missing-base.yaml": {"base": "no-such-file.yaml", "name": "x"},
        "list-base.yaml": {"base": ["toy"], "name": "x"},
        "cyclic-base.yaml": {"base": "cyclic-base-2.yaml", "name": "x"},
        "cyclic-base-2.yaml": {"base": "cyclic-base.yaml"},
        "bad-key-over-a-base.yaml": {"base": "toy", "name": "x", "generation": {"temprature": 2.0}},
    }
    for name, config in variants.items():
        (tmp_path / name).write_text(yaml.safe_dump(config))
    return {name: str(tmp_path / name) for name in [*files, *variants]}


BAD_INPUTS = [
    (("--seed", "-1"), "seed"),
    (("--seed", str(2**32)), "seed"),
    (("-p", "n=100000000"), "n = 100000000"),
    (("-p", "n=true"), "n = True"),
    (("-p", "n=.inf"), "n = inf"),
    (("--n", "4", "-p", "n=5"), "disagree"),
    (("-p", 'n=!!python/object/apply:os.system ["id"]'), "--param n"),
    (("-p", "n=\udcff"), "--param n"),
    (("-p", "n=[[1]]"), "--param n"),
    (("-p", "=3"), "KEY=VALUE"),
    (("--out", ""), "--out is empty"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS)
def test_bad_run_input_is_one_line_and_exit_2(invoke, tmp_path, args, expected):
    out = tmp_path / "runs"
    cli = [*RUN, *args] if "--out" in args else [*RUN, *args, "--out", str(out)]
    line = one_error_line(invoke(*cli))
    assert expected in line
    assert not out.exists() or not list(out.glob("*/*/*"))


@pytest.mark.parametrize("method_args", [("--method", "ppo", "-p", "beta=.inf"), ("--method", "dpo", "-p", "lr=.inf")])
def test_non_finite_floats_are_refused(invoke, tmp_path, method_args):
    line = one_error_line(invoke("run", *method_args, "--task", "toy", "--out", str(tmp_path)))
    assert "finite" in line


@pytest.mark.parametrize(
    "name",
    ["malformed.yaml", "empty.yaml", "scalar.yaml", "non-utf8.yaml", "unknown-key.yaml", "missing-builder.yaml",
     "not-a-task.yaml", "huge.yaml", "unknown-base.yaml", "missing-base.yaml", "list-base.yaml", "cyclic-base.yaml",
     "bad-key-over-a-base.yaml"],
)  # fmt: skip
def test_a_bad_task_file_is_one_line_and_exit_2(invoke, tmp_path, name):
    path = _bad_task_files(tmp_path)[name]
    line = one_error_line(invoke("run", "--method", "bon", "--task", path, "--out", str(tmp_path / "runs")))
    assert "task" in line
    assert not list((tmp_path / "runs").glob("*/*/*"))


def test_a_missing_task_file_says_so(invoke, tmp_path):
    line = one_error_line(invoke(*RUN[:3], "--task", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)))
    assert "not found" in line


def test_other_commands_give_one_line_for_bad_input(invoke, toy_run, tmp_path):
    out = tmp_path / "runs"
    toy_run(out)
    assert "no run" in one_error_line(invoke("show", "x" * 300, "--out", str(out)))
    assert "no run" in one_error_line(invoke("evaluate", "x" * 300, "--out", str(out)))
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "toy").write_text("")
    assert "cannot" in one_error_line(invoke(*RUN, "--out", str(tmp_path / "S")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tasks: [toy]\nseeds: [-1]\nmethods:\n  bon: {n: 2}\n", ":2: seeds.0 = -1"),
        ("tasks: [toy]\nmethods:\n  bon: {n: []}\n", ":3: n is an empty list"),
        ("tasks: [toy]\nmethods:\n  bon: {n: \xff}\n", "not UTF-8"),
        ("tasks: [missing.yaml]\nmethods:\n  bon: {n: 2}\n", ":1: task file 'missing.yaml' not found"),
        ("tasks: [toy]\nmethods:\n  bon: {n: true}\n", ":3: invalid bon config: n = True"),
    ],
)
def test_a_bad_sweep_file_is_one_line_before_any_cell(invoke, tmp_path, text, expected):
    path = tmp_path / "sweep.yaml"
    path.write_bytes(text.encode("latin-1"))
    line = one_error_line(invoke("sweep", str(path), "--out", str(tmp_path / "runs")))
    assert expected in line
    assert not list((tmp_path / "runs").glob("*/*/*"))


def test_a_printed_interval_stays_within_its_metric_s_range():
    """softbon at lambda = 2 on imdb: kl_pool 0.0007 with a bootstrap interval [-0.0104, 0.0112]; KL cannot be
    negative, so the run's table prints [0.0000, 0.0112], as the boards clip it. A win rate's stays in [0, 1]."""
    from harness.cli.render import interval

    kl = {"id": "kl_pool@2", "mean": 0.0007, "se": 0.0057, "ci95": [-0.0104, 0.0112], "n_prompts": 32}
    assert interval(kl) == "[0.0000, 0.0112]"
    win = {"id": "win_rate@1", "mean": 0.99, "se": 0.01, "ci95": [0.97, 1.01], "n_prompts": 32}
    assert interval(win) == "[0.9700, 1.0000]"
    reward = {"id": "reward@1", "mean": -1.0, "se": 0.1, "ci95": [-1.2, -0.8], "n_prompts": 32}
    assert interval(reward) == "[-1.2000, -0.8000]"
