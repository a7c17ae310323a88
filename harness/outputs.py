"""Outputs files: a policy's outputs on a task's evaluation prompts, one JSON object per line, so that a policy
that was trained and sampled elsewhere is ranked like any other (docs/external.md).

Each object is one output:

    prompt_id   the task's id of the prompt, or
    prompt      its text (either names the prompt; where both are given they must agree)
    completion  the completion's text: what the rewards read
    tokens      optional: its token ids under the task's tokenizer, with the EOS that ended it if one did; without
                them the text is tokenized, which may not give back the tokens that were sampled
    logprob     optional: log pi(completion | prompt) under the policy that wrote it, in nats (the sum over
                `tokens`, conditioned on the prompt's token ids); on every line or on none. It gives the Monte Carlo
                KL against pi_ref's own log-probability of the same tokens.

Other keys are ignored (`harness export` adds `prompt_tokens`, the token ids the harness conditions on), so that a
run's samples.jsonl of sampled outputs (equal weights) reads as well.
`harness export` writes these files; `harness run --method external -p outputs=FILE` reads them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.policy import Completions, EnumerablePolicy, Prompt, sequence_logprobs
from harness.seeding import OUTPUTS, derive_seed
from harness.task import ConfigError, Task

SHOWN = 3  # bad prompts named in an error, before "and N more"


@dataclass
class OutputsFile:
    """The outputs of a file, grouped by the task's evaluation prompts (in the task's order)."""

    completions: Completions
    logprobs: list[np.ndarray] | None  # sequence log-probabilities under the policy, where the file gives them


def records(prompts: Sequence[Prompt], completions: Completions) -> list[dict[str, Any]]:
    """The lines of an outputs file: every completion of every prompt, with its sequence log-probability where
    the completions carry per-token ones."""
    seq = None if completions.token_logprobs is None else sequence_logprobs(completions.token_logprobs)
    return [
        {
            "prompt_id": p.id,
            "prompt": p.text,
            "prompt_tokens": list(p.tokens),
            "completion": completions.text[i][j],
            "tokens": list(completions.tokens[i][j]),
            **({} if seq is None else {"logprob": float(seq[i][j])}),
        }
        for i, p in enumerate(prompts)
        for j in range(len(completions.tokens[i]))
    ]


def export(task: Task, model: Path | None, count: int, seed: int) -> list[dict[str, Any]]:
    """The lines of an outputs file: `count` samples per evaluation prompt of the checkpoint at `model` (a
    transformers model or peft adapter directory), or of the task's reference policy, drawn as the evaluator draws
    a trained policy's outputs (the OUTPUTS stream of the run seed `seed`)."""
    policy = task.reference
    if model is not None:
        from harness.training.trained import load_checkpoint

        assert task.make_policy is not None  # load_checkpoint checks it
        policy = task.make_policy(load_checkpoint(task, model))
    return records(task.prompts, policy.sample(task.prompts, count, derive_seed(seed, OUTPUTS)))


def read(path: Path, task: Task) -> OutputsFile:
    """The outputs of the file at `path` for the evaluation prompts of `task`. A file that cannot be read as
    outputs of this task is a ConfigError in one line: a malformed line (the first), prompts that are not the
    task's, or task prompts without any output (the first few of either)."""
    lines = _lines(path)
    by_id = {p.id: i for i, p in enumerate(task.prompts)}
    by_text: dict[str, list[int]] = {}
    for i, p in enumerate(task.prompts):
        by_text.setdefault(p.text, []).append(i)
    rows: list[list[tuple[int, tuple[int, ...], str, float | None, Any]]] = [[] for _ in task.prompts]
    foreign: list[str] = []
    supports: dict[int, set[tuple[int, ...]]] = {}  # every completion of each prompt, on an enumerable task
    for number, obj in lines:
        where = f"outputs file {path}, line {number}"
        targets = _targets(obj, task, by_id, by_text, where)
        if not targets:
            foreign.append(f"line {number} ({_name(obj)})")
            continue
        completion = obj["completion"]
        for i in targets:
            if isinstance(task.reference, EnumerablePolicy) and i not in supports:
                supports[i] = set(task.reference.support(task.prompts[i]).tokens[0])
            tokens = _tokens(obj, task, supports.get(i), where)
            rows[i].append((number, tokens, completion, _logprob(obj, where), obj.get("weight")))
    name = task.config.name
    if foreign:
        raise ConfigError(
            f"outputs file {path} holds outputs of prompts that task {name!r} does not have: {_few(foreign)}"
        )
    lacking = [p.id for p, row in zip(task.prompts, rows, strict=True) if not row]
    if lacking:
        raise ConfigError(
            f"outputs file {path} has no output for {len(lacking)} of the {len(task.prompts)} evaluation prompts of "
            f"task {name!r}: {_few(lacking)}; every prompt needs at least one (`harness export --task {name}` writes "
            "a file with every prompt)"
        )
    flat = [r for row in rows for r in row]
    given = [r[3] is not None for r in flat]
    if any(given) and not all(given):
        first = next(r[0] for r, g in zip(flat, given, strict=True) if not g)
        raise ConfigError(
            f"outputs file {path}, line {first} has no logprob while others do: give it on every line or none"
        )
    for p, row in zip(task.prompts, rows, strict=True):
        weights = {json.dumps(r[4]) for r in row}
        if len(weights) > 1:
            raise ConfigError(
                f"outputs file {path}: the outputs of prompt {p.id!r} carry unequal weights (line {row[0][0]} and "
                "others), as a best-of-n run's pooled samples do; an outputs file holds samples of one policy"
            )
    return OutputsFile(
        completions=Completions(
            tokens=[[r[1] for r in row] for row in rows], text=[[r[2] for r in row] for row in rows]
        ),
        logprobs=[np.array([r[3] for r in row], dtype=np.float64) for row in rows] if all(given) else None,
    )


def _lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"outputs = {str(path)!r}: cannot be read: {e.strerror or e}", ["outputs"]) from None
    except UnicodeDecodeError:
        raise ConfigError(f"outputs file {path} is not UTF-8 text", ["outputs"]) from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ConfigError(f"outputs file {path}, line {number} is not JSON: {e}", ["outputs"]) from None
        if not isinstance(obj, dict):
            raise ConfigError(
                f"outputs file {path}, line {number} holds {type(obj).__name__}, not an object with the keys "
                "prompt_id or prompt, completion, and optionally tokens and logprob",
                ["outputs"],
            )
        out.append((number, obj))
    if not out:
        raise ConfigError(f"outputs file {path} holds no outputs", ["outputs"])
    return out


def _targets(
    obj: dict[str, Any], task: Task, by_id: dict[str, int], by_text: dict[str, list[int]], where: str
) -> list[int]:
    """The task prompts that a line's output belongs to (several where prompts share its text); none where its
    prompt is not the task's."""
    prompt_id, text = obj.get("prompt_id"), obj.get("prompt")
    for key, value in (("prompt_id", prompt_id), ("prompt", text), ("completion", obj.get("completion"))):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} = {value!r} is not a string", ["outputs"])
    if not isinstance(obj.get("completion"), str):
        raise ConfigError(f"{where} has no completion (the completion's text)", ["outputs"])
    if prompt_id is None and text is None:
        raise ConfigError(f"{where} names no prompt: give prompt_id (the task's id) or prompt (its text)", ["outputs"])
    if prompt_id is not None:
        i = by_id.get(prompt_id)
        return [] if i is None or (text is not None and text != task.prompts[i].text) else [i]
    return by_text.get(text, [])  # type: ignore[arg-type]


def _name(obj: dict[str, Any]) -> str:
    """How a line names its prompt, for errors."""
    if obj.get("prompt_id") is not None:
        shown = f"prompt_id {obj['prompt_id']!r}"
        return shown if obj.get("prompt") is None else f"{shown} with the text {_short(obj['prompt'])!r}"
    return f"prompt {_short(obj['prompt'])!r}"


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _few(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _tokens(obj: dict[str, Any], task: Task, support: set[tuple[int, ...]] | None, where: str) -> tuple[int, ...]:
    """A line's completion as token ids: its `tokens`, checked against its text and the task (and against
    `support`, every completion of its prompt, where the task enumerates them), or its text tokenized by the
    task's tokenizer."""
    tokenizer = getattr(task.reference, "tokenizer", None)
    raw = obj.get("tokens")
    if raw is None:
        if tokenizer is None:
            raise ConfigError(
                f"{where} has no tokens, and task {task.config.name!r} has no tokenizer to read its completion with",
                ["outputs"],
            )
        tokens = tuple(tokenizer(obj["completion"], add_special_tokens=False).input_ids)
    else:
        if not isinstance(raw, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
            raise ConfigError(f"{where}: tokens = {_short(str(raw))} is not a list of token ids", ["outputs"])
        tokens = tuple(raw)
        vocab = task.model.config.get_text_config().vocab_size if task.model is not None else None
        if vocab is not None and any(not 0 <= t < vocab for t in tokens):
            raise ConfigError(f"{where}: tokens outside the task's vocabulary of {vocab} ids", ["outputs"])
        if tokenizer is not None and tokenizer.decode(list(tokens), skip_special_tokens=True) != obj["completion"]:
            raise ConfigError(f"{where}: its tokens do not read as its completion text", ["outputs"])
    limit = task.config.generation.max_new_tokens
    if len(tokens) > limit:
        what = "a completion of" if raw is not None else "a completion whose text reads as"
        hint = "" if raw is not None else "; give the tokens it was sampled as"
        raise ConfigError(
            f"{where}: {what} {len(tokens)} tokens, longer than task {task.config.name!r} generates "
            f"(max_new_tokens = {limit}){hint}",
            ["outputs"],
        )
    if support is not None and tokens not in support:
        raise ConfigError(
            f"{where}: tokens {list(tokens)} are not a completion of task {task.config.name!r}", ["outputs"]
        )
    return tokens


def _logprob(obj: dict[str, Any], where: str) -> float | None:
    value = obj.get("logprob")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value > 0:
        raise ConfigError(f"{where}: logprob = {value!r} is not a log-probability (a finite number <= 0)", ["outputs"])
    return float(value)
