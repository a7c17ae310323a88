from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from harness.method import METHODS, Method
from harness.registry import Registry, UnknownNameError
from harness.task import TASKS


def test_builtin_names_are_listed():
    assert "bon" in METHODS.names()
    assert "toy" in TASKS.names()


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(UnknownNameError, match=r"unknown method 'bno'; did you mean 'bon'"):
        METHODS.get("bno")


def test_lazy_target_is_imported_on_first_use():
    reg: Registry[object] = Registry("thing", "harness.test-things")
    reg.register("dumps", "json:dumps")
    import json

    assert reg.get("dumps") is json.dumps


def test_module_target_must_register_its_name():
    reg: Registry[object] = Registry("thing", "harness.test-things")
    reg.register("nothing", "json")
    with pytest.raises(UnknownNameError, match="does not register"):
        reg.get("nothing")


def _run(code: str, env_path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_path:
        env["PYTHONPATH"] = env_path + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env)


def test_listing_never_imports_torch():
    proc = _run(
        """
        import sys
        from typer.testing import CliRunner
        from harness.cli import app
        for what in ("methods", "tasks"):
            result = CliRunner().invoke(app, ["ls", what])
            assert result.exit_code == 0, result.output
        assert "bon" in CliRunner().invoke(app, ["ls", "methods"]).output
        assert "torch" not in sys.modules, "listing imported torch"
        assert "transformers" not in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_third_party_plugin_through_entry_points(tmp_path):
    """A package that declares `harness.methods` and `harness.tasks` entry points shows up and loads."""
    (tmp_path / "my_plugin.py").write_text(
        textwrap.dedent(
            """
            from harness.method import Method, MethodConfig
            from harness.task import load_task

            class EchoConfig(MethodConfig):
                pass

            class Echo(Method[EchoConfig]):
                Config = EchoConfig
                def align(self, ctx):
                    return None

            TOY_COPY = load_task("toy").model_copy(update={"name": "toy-copy"})
            """
        )
    )
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[harness.methods]\necho = my_plugin:Echo\n\n[harness.tasks]\ntoy-copy = my_plugin:TOY_COPY\n"
    )
    proc = _run(
        """
        from harness.method import METHODS, Method
        from harness.task import TASKS, load_task
        assert "echo" in METHODS.names(), METHODS.names()
        assert issubclass(METHODS.get("echo"), Method)
        assert load_task("toy-copy").name == "toy-copy"
        print("ok")
        """,
        env_path=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_bon_is_a_method():
    assert issubclass(METHODS.get("bon"), Method)


def test_register_refuses_a_name_held_by_another_component_as_discovery_does():
    """A second registration of a name is refused, naming both, whether the name is a built-in's or an earlier
    registration's; registering the same target again changes nothing."""
    from harness.registry import DuplicateNameError

    class Other(Method):
        Config = METHODS.get("bon").Config

        def align(self, ctx):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    with pytest.raises(DuplicateNameError, match=r"method 'bon' is registered twice: as harness\.methods\.bon:BoN and"):
        METHODS.register("bon")(Other)
    assert METHODS.get("bon").__module__ == "harness.methods.bon"
    reg: Registry[object] = Registry("thing", "harness.test-things")
    reg.register("dumps", "json:dumps")
    reg.register("dumps", "json:dumps")  # the same target: nothing changes
    with pytest.raises(
        DuplicateNameError, match=r"thing 'dumps' is registered twice: as 'json:dumps' and as 'json:loads'"
    ):
        reg.register("dumps", "json:loads")
    assert reg.get("dumps") is __import__("json").dumps
