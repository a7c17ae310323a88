"""Fixtures and helpers shared by the test modules: the toy task, the CLI run in-process, task files derived from
toy and aclsum, a tiny language model."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner, Result

from harness.policy import enumerate_prompt
from harness.task import TASKS, Task, TaskConfig, build_task, load_task


@pytest.fixture(scope="session")
def toy() -> Task:
    return build_task(load_task("toy"))


def support_arrays(task: Task, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(pi_ref over every completion, reward of every completion) of prompt i of an enumerable task."""
    e = enumerate_prompt(task.reference, task.reward, task.prompts[i])  # type: ignore[arg-type]
    return e.p_ref, e.rewards


def interruptible() -> None:
    """For a child process that a test interrupts: take SIGINT's default action back, since a shell that starts
    a job in the background makes its children ignore SIGINT (and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """A directory with a tiny random GPT-2 and a byte-level BPE tokenizer (trained on the aclsum abstracts), loadable
    with from_pretrained like any hub model: a stand-in policy for the real-LM tasks."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from harness.tasks.aclsum import SPLITS, load_papers

    path = tmp_path_factory.mktemp("tiny-lm")
    bpe = ByteLevelBPETokenizer()
    texts = [p["abstract"] for split in SPLITS for p in load_papers(split)]
    bpe.train_from_iterator(texts, vocab_size=600, min_frequency=2, special_tokens=["<eos>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<eos>", pad_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def invoke() -> Callable[..., Result]:
    """`harness ARGS` run in-process (typer's CliRunner): `invoke("run", "--method", "bon", ...)`, with `env` to
    set variables such as COLUMNS; the result holds the exit code and the output."""
    return harness


def harness(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """`harness ARGS` run in-process (typer's CliRunner); the `invoke` fixture, and a plain function for helpers."""
    from harness.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture
def toy_run(invoke) -> Callable[..., Path]:
    """`toy_run(out, *extra)`: `harness run --method bon --task toy --n 2` into the store `out`; its run directory."""

    def run(out: Path, *extra: str) -> Path:
        result = invoke("run", "--method", "bon", "--task", "toy", "--n", "2", "--out", str(out), *extra)
        assert result.exit_code == 0, result.output
        runs = (p.parent for p in sorted(out.glob("*/*/*/results.json")))
        return next(p for p in runs if json.loads((p / "config.json").read_text())["method"]["n"] == 2)

    return run


def toy_yaml(path: Path, name: str, params: dict[str, Any] | None = None, **changes: Any) -> Path:
    """A task file at `path`: toy's YAML under another `name`, its params updated by `params` and its top-level
    keys replaced by `changes`."""
    config = yaml.safe_load(Path(TASKS.target("toy")).read_text()) | {"name": name} | changes
    config["params"] = config["params"] | (params or {})
    path.write_text(yaml.safe_dump(config))
    return path


def one_error_line(result: Result) -> str:
    """The one line that a command refusing bad input prints on stderr (exit status 2, `error: ...`, no
    traceback)."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="session")
def tiny_aclsum(tiny_lm) -> Callable[..., TaskConfig]:
    """`tiny_aclsum(folder, name)`: the aclsum task with the tiny policy and small sizes, written to `folder` and
    registered under `name`."""

    def task(folder: Path, name: str = "aclsum-tiny") -> TaskConfig:
        config = yaml.safe_load(Path(TASKS.target("aclsum")).read_text())
        config["name"] = name
        config["params"] |= {
            "policy": str(tiny_lm),
            "n_eval_prompts": 3,
            "n_train_prompts": 4,
            "max_source_tokens": 400,
        }
        config["generation"]["max_new_tokens"] = 8
        config["evaluation"] = {"samples_per_prompt": 4, "reference_samples": 4, "pool_size": 4, "bootstrap": 200}
        config["methods"]["dpo"] |= {"steps": 2, "prompts_per_step": 2, "train_pool_size": 4, "checkpoint_every": 2}
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        TASKS.register(name, str(path))
        return load_task(name)

    return task
