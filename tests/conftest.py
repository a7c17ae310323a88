from __future__ import annotations

import numpy as np
import pytest

from harness.policy import sequence_logprobs
from harness.task import Task, build_task, load_task


@pytest.fixture(scope="session")
def toy() -> Task:
    return build_task(load_task("toy"))


def support_arrays(task: Task, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(pi_ref over every completion, reward of every completion) of prompt i of an enumerable task."""
    support = task.reference.support(task.prompts[i])  # type: ignore[attr-defined]
    p_ref = np.exp(sequence_logprobs(support.token_logprobs)[0])
    return p_ref, task.reward.score([task.prompts[i]], support)[0]
