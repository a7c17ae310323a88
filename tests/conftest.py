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
