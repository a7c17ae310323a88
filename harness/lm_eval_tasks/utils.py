"""Datasets of the lm-eval tasks that the harness ships (loaded by lm-eval through `!function`)."""

from __future__ import annotations

from typing import Any


def imdb_heldout(**kwargs: Any) -> dict[str, Any]:
    from datasets import Dataset

    from harness.tasks.imdb import held_out_documents

    return {"test": Dataset.from_dict({"text": held_out_documents()})}
