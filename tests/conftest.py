from __future__ import annotations

import signal

import numpy as np
import pytest

from harness.policy import enumerate_prompt
from harness.task import Task, build_task, load_task


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
