"""One namespace: the built-in methods, tasks and sweeps install inside the harness package, so nothing in the
working directory shadows them; plugins are named by their distribution and version, and clash loudly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml

from harness.task import TASKS

ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str, cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


def test_folders_named_tasks_and_methods_in_the_working_directory_shadow_nothing(tmp_path):
    for folder in ("tasks", "methods"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "methods" / "helpers.py").write_text("HELP = 1\n")
    (tmp_path / "tasks" / "mine.yaml").write_text("name: mine\n")
    listed = harness("ls", "tasks", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "toy" in listed.stdout.split() and "mine" not in listed.stdout
    methods = harness("ls", "methods", cwd=tmp_path)
    assert "bon" in methods.stdout.split() and "helpers" not in methods.stdout
    run = harness("run", "--method", "bon", "--task", "toy", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "runs" / "toy" / "bon").iterdir())) == 1


def test_the_wheel_installs_everything_inside_the_harness_package_and_runs_from_anywhere(tmp_path):
    pytest.importorskip("setuptools", minversion="77")  # the build backend that reads this pyproject.toml
    source = tmp_path / "source"  # a copy: building writes into the source tree
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "LICENSE", "harness", "methods", "tasks", "sweeps"):
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif (ROOT / part).is_file():
            shutil.copy(ROOT / part, source / part)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("bon_harness-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"harness"}, top  # nothing generic lands in site-packages
    for shipped in (
        "harness/methods/bon.py",
        "harness/tasks/toy.yaml",
        "harness/tasks/imdb.py",
        "harness/sweeps/toy.yaml",
        "harness/leaderboard/table.py",
        "harness/cli/app.py",
        "harness/lm_eval_tasks/harness_imdb_heldout.yaml",
        "harness/models/imdb-small/model.safetensors",
        "harness/models/imdb-small/tokenizer.json",
        "harness/models/imdb-small/checksums.json",
    ):
        assert shipped in names, shipped
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = harness("ls", "tasks", cwd=elsewhere, pythonpath=str(site))
    assert where.returncode == 0 and "toy" in where.stdout.split(), where.stderr
    code = (
        "import harness, harness.sweep as s, harness.smallpolicy as p; print(harness.__file__); print(s.locate('toy'))"
    )
    code += "; print(p.model_dir())"  # the small policy's files installed, their checksums verified
    located = subprocess.run(
        [sys.executable, "-c", code],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(site)),
    )
    assert located.returncode == 0, located.stderr
    assert all(line.startswith(str(site)) for line in located.stdout.split()), located.stdout
    run = harness(
        "run", "--method", "bon", "--task", "toy", "--out", str(tmp_path / "runs"), cwd=elsewhere, pythonpath=str(site)
    )
    assert run.returncode == 0, run.stderr


def test_a_task_files_builder_may_sit_beside_it(tmp_path):
    from harness.run import execute, resolve

    (tmp_path / "my_toy_builder.py").write_text("from harness.tasks.toy import build\n")
    config = yaml.safe_load(Path(TASKS.target("toy")).read_text()) | {
        "name": "my-toy",
        "builder": "my_toy_builder:build",
    }
    path = tmp_path / "my-toy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = execute(resolve(str(path), "bon", {"n": 2}), tmp_path / "runs")
    assert result.results["task"]["name"] == "my-toy"


def _plugin(root: Path, version: str, entry_points: str) -> None:
    (root / "my_plugin.py").write_text(
        textwrap.dedent(
            """
            from harness.methods.bon import BoN

            class Mine(BoN):
                \"\"\"Best-of-n under another name.\"\"\"
            """
        )
    )
    dist = root / "my_plugin-0.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: my-plugin\nVersion: {version}\n")
    (dist / "top_level.txt").write_text("my_plugin\n")
    (dist / "entry_points.txt").write_text(entry_points)


def test_a_plugin_run_records_its_distribution_and_version_which_are_part_of_its_identity(tmp_path):
    hashes = []
    for version in ("0.1", "0.2"):
        _plugin(tmp_path, version, "[harness.methods]\nmine = my_plugin:Mine\n")
        out = tmp_path / "runs"
        proc = harness("run", "--method", "mine", "--task", "toy", "-p", "n=2", "--out", str(out), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        hashes = sorted(p.name for p in (out / "toy" / "mine").iterdir())
        results = json.loads((out / "toy" / "mine" / hashes[-1] / "results.json").read_text())
    assert len(hashes) == 2  # a new version of the plugin is a new run, not the stored one reused
    implementations = [
        json.loads((out / "toy" / "mine" / h / "config.json").read_text())["implementation"] for h in hashes
    ]
    assert sorted(i["version"] for i in implementations) == ["0.1", "0.2"]
    assert {(i["module"], i["distribution"]) for i in implementations} == {("my_plugin", "my-plugin")}
    assert results["implementation"]["distribution"] == "my-plugin"


def test_a_plugin_registering_a_builtin_name_is_an_error_naming_both(tmp_path):
    _plugin(tmp_path, "0.1", "[harness.methods]\nbon = my_plugin:Mine\n")
    proc = harness("ls", "methods", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "'bon' is registered twice" in line and "harness.methods.bon" in line and "my_plugin:Mine" in line


def test_a_broken_entry_point_is_one_line_when_listed_and_when_used(tmp_path):
    _plugin(tmp_path, "0.1", "[harness.methods]\nbroken = no_such_module:Thing\nmine = my_plugin:Mine\n")
    listed = harness("ls", "methods", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "broken" in lines["broken"].split("  ", 1)[1] and "no_such_module" in lines["broken"]
    assert lines["mine"].strip() == "mine"
    used = harness("run", "--method", "broken", "--task", "toy", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert used.returncode == 2
    (line,) = used.stderr.strip().splitlines()
    assert "method 'broken' cannot be loaded from 'no_such_module:Thing'" in line
    assert not (tmp_path / "runs" / "toy").exists()
