"""Assets that only the Hugging Face hub has: a fail-fast check that they can be had, and reward models read
from it (sequence classifiers, with one label or a scalar head)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from harness.assets import MissingAssetError
from harness.policy import Completions, Prompt
from harness.progress import progress


def require_hub(
    task: str, models: Sequence[str], datasets: Sequence[str] = (), offline_task: str = "imdb", timeout: float = 3.0
) -> None:
    """Fail within seconds when hub assets are neither local directories, nor in the local cache, nor reachable.
    The error names the missing assets and `offline_task`, the offline task to use instead."""
    from huggingface_hub import snapshot_download

    missing = []
    for repo, kind in [(m, "model") for m in models] + [(d, "dataset") for d in datasets]:
        if Path(repo).is_dir():
            continue
        try:
            snapshot_download(repo, repo_type=kind, local_files_only=True)
        except Exception:  # any failure to find a complete local snapshot
            missing.append(repo)
    if not missing:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return
    reason = "HF_HUB_OFFLINE is set"
    if not os.environ.get("HF_HUB_OFFLINE"):
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            return
        except OSError as e:
            reason = f"the hub is unreachable ({e.strerror or e})"
    raise MissingAssetError(
        f"task {task!r} needs {', '.join(missing)} from the Hugging Face hub, which is not in the local cache "
        f"and {reason}; use --task {offline_task} (offline, on shipped assets)"
    )


class HFClassifierReward:
    """A transformers sequence classifier's logit of one label (or its single output, for a scalar reward model),
    read on prompt + completion, or on the pair (prompt, completion) for reward models trained on pairs.

    `eos_token_id` and `no_eos_reward`: a completion that does not end with EOS (cut off at the length limit)
    gets `no_eos_reward` instead of its score. `context`: the text of a prompt that the model reads (default: the
    prompt as the policy sees it).
    """

    def __init__(
        self,
        repo: str,
        label: str | None,
        device: str,
        batch_size: int = 32,
        pair: bool = False,
        eos_token_id: int | None = None,
        no_eos_reward: float | None = None,
        context: Callable[[Prompt], str] | None = None,
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(repo)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(repo).to(device).eval()  # type: ignore[arg-type]
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        labels = {v.upper(): int(k) for k, v in self.model.config.id2label.items()}
        if label is None:
            if self.model.config.num_labels != 1:
                raise ValueError(f"{repo} has {len(labels)} labels ({', '.join(labels)}); name the one to read")
            self.index, what = 0, "score"
        elif label.upper() in labels:
            self.index, what = labels[label.upper()], f"logit of {label!r}"
        else:
            raise ValueError(f"{repo} has no label {label!r}; its labels: {', '.join(labels)}")
        self.pair, self.batch_size = pair, batch_size
        self.context = context or (lambda p: p.text)
        if (eos_token_id is None) != (no_eos_reward is None):
            raise ValueError("eos_token_id and no_eos_reward go together")
        self.eos, self.no_eos_reward = eos_token_id, no_eos_reward
        read = "the pair (prompt, completion)" if pair else "prompt + completion"
        self.label = f"{what} from {repo}, on {read}" + (
            f"; {no_eos_reward} for a completion without EOS" if no_eos_reward is not None else ""
        )

    def score(self, prompts: Sequence[Prompt], completions: Completions) -> list[np.ndarray]:
        import torch

        out = []
        with progress("reward model", sum(len(row) for row in completions.text)) as bar:
            for p, row, tokens in zip(prompts, completions.text, completions.tokens, strict=True):
                scores = []
                context = self.context(p)
                for s in range(0, len(row), self.batch_size):
                    texts = row[s : s + self.batch_size]
                    args = ([context] * len(texts), texts) if self.pair else ([context + c for c in texts],)
                    enc = self.tokenizer(*args, return_tensors="pt", padding=True, truncation=True)
                    with torch.inference_mode():
                        logits = self.model(**enc.to(self.model.device)).logits
                    scores.append(logits[:, self.index].float().cpu().numpy())
                    bar.advance(bar.task_ids[0], len(texts))
                r = np.concatenate(scores).astype(np.float64)
                if self.eos is not None:
                    r[[not t or t[-1] != self.eos for t in tokens]] = self.no_eos_reward
                out.append(r)
        return out
