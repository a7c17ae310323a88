"""Score an aligned policy the same way for every method: reward, win rate, KL (every estimator that applies)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import kl, winrate
from harness.method import AlignedPolicy
from harness.policy import EnumerablePolicy, sequence_logprobs
from harness.stats import summarize
from harness.task import Task

log = logging.getLogger(__name__)

# Bump a metric's version whenever its definition changes; the version is stored with every value.
METRIC_VERSIONS = {
    "reward": 1,
    "gold_reward": 1,
    "win_rate": 1,
    "kl_mc": 1,
    "kl_k3": 1,
    "kl_bon_bound": 1,
    "kl_bon_beirami": 1,
    "reward_exact": 1,
    "gold_reward_exact": 1,
    "win_rate_exact": 1,
    "kl_exact": 1,
}

# Independent random streams derived from the run's seed.
STREAM_OUTPUTS, STREAM_REFERENCE, STREAM_BOOTSTRAP = 1, 2, 3


def derive_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]
    cost: dict[str, Any] = field(default_factory=dict)


def evaluate(task: Task, policy: AlignedPolicy, seed: int) -> Evaluation:
    cfg = task.config.evaluation
    prompts = task.prompts
    k = cfg.samples_per_prompt
    log.info("sampling %d outputs for each of %d prompts", k, len(prompts))
    outputs = policy.generate(prompts, k, derive_seed(seed, STREAM_OUTPUTS))
    rewards = task.reward.score(prompts, outputs)
    gold = task.gold_reward.score(prompts, outputs) if task.gold_reward else None
    ref_tokens = outputs.ref_token_logprobs or task.reference.logprob(prompts, outputs.tokens)
    ref_seq = sequence_logprobs(ref_tokens)
    if outputs.token_logprobs is not None:
        seq: list[np.ndarray] | None = sequence_logprobs(outputs.token_logprobs)
    else:
        seq = policy.logprob(prompts, outputs.tokens)

    log.info("sampling %d held-out reference samples per prompt", cfg.reference_samples)
    held_out = task.reference.sample(prompts, cfg.reference_samples, derive_seed(seed, STREAM_REFERENCE))
    ref_rewards = task.reward.score(prompts, held_out)

    per_prompt: dict[str, list[float]] = {}

    def add(name: str, fn: Callable[[int], float]) -> None:
        per_prompt[name] = [fn(i) for i in range(len(prompts))]

    add("reward", lambda i: rewards[i].mean())
    if gold is not None:
        add("gold_reward", lambda i: gold[i].mean())
    add("win_rate", lambda i: winrate.win_rate_terms(rewards[i], ref_rewards[i]).mean())
    if seq is not None:
        add("kl_mc", lambda i: kl.kl_k1_terms(seq[i], ref_seq[i]).mean())
    if outputs.token_logprobs is not None:
        add("kl_k3", lambda i: kl.kl_k3_terms(outputs.token_logprobs[i], ref_tokens[i]).mean())  # type: ignore[index]
    if policy.bon_n is not None:
        n = policy.bon_n
        add("kl_bon_bound", lambda i: kl.kl_bon_bound(n))
        add("kl_bon_beirami", lambda i: kl.kl_bon_beirami_terms(np.exp(ref_seq[i]), n).mean())
    if isinstance(task.reference, EnumerablePolicy):
        per_prompt.update(_exact(task, policy))

    rng = np.random.default_rng(derive_seed(seed, STREAM_BOOTSTRAP))
    metrics = {}
    for name, values in per_prompt.items():
        est = summarize(np.asarray(values), rng, cfg.bootstrap)
        metrics[name] = {
            "id": f"{name}@{METRIC_VERSIONS[name]}",
            **est.to_dict(),
            "samples_per_prompt": k if not name.endswith("_exact") and name != "kl_bon_bound" else None,
        }

    records = [
        {
            "prompt_id": p.id,
            "prompt": p.text,
            "sample": j,
            "completion": outputs.text[i][j],
            "tokens": list(outputs.tokens[i][j]),
            "reward": float(rewards[i][j]),
            "gold_reward": None if gold is None else float(gold[i][j]),
            "logprob": None if seq is None else float(seq[i][j]),
            "ref_logprob": float(ref_seq[i][j]),
        }
        for i, p in enumerate(prompts)
        for j in range(k)
    ]
    cost = {
        "samples_per_output": policy.samples_per_output,
        "generated_tokens": int(sum(len(t) for row in outputs.tokens for t in row)) * policy.samples_per_output,
        "training_steps": policy.training.steps,
        "training_tokens": policy.training.tokens,
        "training_seconds": policy.training.seconds,
    }
    return Evaluation(metrics=metrics, records=records, cost=cost)


def _exact(task: Task, policy: AlignedPolicy) -> dict[str, list[float]]:
    """Exact per-prompt metrics by enumerating every completion of every prompt."""
    reference = task.reference
    assert isinstance(reference, EnumerablePolicy)
    out: dict[str, list[float]] = {}
    for prompt in task.prompts:
        support = reference.support(prompt)
        p_ref = np.exp(sequence_logprobs(support.token_logprobs)[0])  # type: ignore[arg-type]
        logp = policy.logprob([prompt], support.tokens)
        if logp is None:
            return {}
        p = np.exp(logp[0])
        r = task.reward.score([prompt], support)[0]
        out.setdefault("reward_exact", []).append(float(p @ r))
        if task.gold_reward is not None:
            out.setdefault("gold_reward_exact", []).append(float(p @ task.gold_reward.score([prompt], support)[0]))
        out.setdefault("win_rate_exact", []).append(winrate.win_rate_exact(p, p_ref, r))
        out.setdefault("kl_exact", []).append(kl.kl_exact(p, p_ref))
    return out
