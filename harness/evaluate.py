"""Score an aligned policy the same way for every method: reward, win rate, KL (every estimator that applies)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness import bon, kl, seeding, winrate
from harness.method import AlignedPolicy
from harness.policy import Completions, EnumerablePolicy, enumerate_prompt, sequence_logprobs
from harness.pool import PoolCache
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
    "rouge_l": 1,
}
CURVE_METRICS = ("reward", "gold_reward", "win_rate", "kl_bon_bound", "kl_bon_beirami")


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]
    cost: dict[str, Any] = field(default_factory=dict)
    bon_curve: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Outputs:
    """The outputs that a policy's metrics average over, per prompt, with their weights in that average."""

    completions: Completions
    rewards: list[np.ndarray]
    gold: list[np.ndarray] | None
    weights: list[np.ndarray]


def outputs_of(task: Task, policy: AlignedPolicy, seed: int) -> Outputs:
    """Fresh samples with equal weights; for best-of-n from the pool, the pool with the best-of-n weights."""
    if policy.pool is not None and policy.bon_n is not None:
        pool, rng = policy.pool, np.random.default_rng(seeding.derive_seed(seed, seeding.TIES))
        orders = [bon.pool_order(r, rng) for r in pool.rewards]
        w = bon.pool_weights(pool.m, policy.bon_n)
        completions = pool.completions.take(orders)
        completions.token_logprobs = None  # pi_ref's, not the best-of-n policy's
        return Outputs(
            completions=completions,
            rewards=[r[o] for r, o in zip(pool.rewards, orders, strict=True)],
            gold=None if pool.gold is None else [g[o] for g, o in zip(pool.gold, orders, strict=True)],
            weights=[w] * len(orders),
        )
    k = task.config.evaluation.samples_per_prompt
    log.info("sampling %d outputs for each of %d prompts", k, len(task.prompts))
    c = policy.generate(task.prompts, k, seeding.derive_seed(seed, seeding.OUTPUTS))
    return Outputs(
        completions=c,
        rewards=task.reward.score(task.prompts, c),
        gold=task.gold_reward.score(task.prompts, c) if task.gold_reward else None,
        weights=[np.full(k, 1.0 / k)] * len(task.prompts),
    )


def evaluate(task: Task, policy: AlignedPolicy, seed: int, pools: PoolCache) -> Evaluation:
    cfg = task.config.evaluation
    prompts = task.prompts
    out = outputs_of(task, policy, seed)
    c, w = out.completions, out.weights
    ref_tokens = c.ref_token_logprobs or task.reference.logprob(prompts, c.tokens)
    ref_seq = sequence_logprobs(ref_tokens)
    seq = sequence_logprobs(c.token_logprobs) if c.token_logprobs is not None else policy.logprob(prompts, c.tokens)
    held_out = pools.get(task, cfg.reference_samples, seed, stream="held-out")
    wins = [winrate.win_rate_terms(r, z) for r, z in zip(out.rewards, held_out.rewards, strict=True)]

    # Per-sample values of every metric that applies; each becomes a weighted mean per prompt.
    terms: dict[str, list[np.ndarray]] = {"reward": out.rewards, "win_rate": wins}
    if out.gold is not None:
        terms["gold_reward"] = out.gold
    extra = {name: metric.score(prompts, c) for name, metric in task.extra_metrics.items()}
    terms.update(extra)
    if seq is not None:
        terms["kl_mc"] = [kl.kl_k1_terms(a, b) for a, b in zip(seq, ref_seq, strict=True)]
    if c.token_logprobs is not None:
        terms["kl_k3"] = [kl.kl_k3_terms(a, b) for a, b in zip(c.token_logprobs, ref_tokens, strict=True)]
    if policy.bon_n is not None:
        n = policy.bon_n
        terms["kl_bon_bound"] = [np.full(len(r), kl.kl_bon_bound(n)) for r in out.rewards]
        terms["kl_bon_beirami"] = [kl.kl_bon_beirami_terms(s, n) for s in ref_seq]
    per_prompt = {
        name: [float(np.average(v, weights=wi)) for v, wi in zip(vals, w, strict=True)] for name, vals in terms.items()
    }
    if isinstance(task.reference, EnumerablePolicy):
        per_prompt.update(_exact(task, policy))

    rng = np.random.default_rng(seeding.derive_seed(seed, seeding.BOOTSTRAP))

    def summary(name: str, values: list[float]) -> dict[str, Any]:
        version = METRIC_VERSIONS.get(name, task.config.version)  # a task's own metric follows the task's version
        return {"id": f"{name}@{version}", **summarize(np.asarray(values), rng, cfg.bootstrap).to_dict()}

    metrics = {name: summary(name, values) for name, values in per_prompt.items()}
    curve = []
    if policy.pool is not None:
        m = policy.pool.m
        for n in range(1, m + 1):
            wn = bon.pool_weights(m, n)
            point: dict[str, Any] = {"n": n}
            for name in (*CURVE_METRICS, *extra):
                if name == "kl_bon_beirami":
                    vals = [float(wn @ kl.kl_bon_beirami_terms(s, n)) for s in ref_seq]
                elif name == "kl_bon_bound":
                    vals = [kl.kl_bon_bound(n)] * len(prompts)
                elif name in terms:
                    vals = [float(wn @ v) for v in terms[name]]
                else:
                    continue
                point[name] = summary(name, vals)
            curve.append(point)

    records = [
        {
            "prompt_id": p.id,
            "prompt": p.text,
            "sample": j,
            "weight": float(w[i][j]),
            "completion": c.text[i][j],
            "tokens": list(c.tokens[i][j]),
            "reward": float(out.rewards[i][j]),
            "gold_reward": None if out.gold is None else float(out.gold[i][j]),
            "logprob": None if seq is None else float(seq[i][j]),
            "ref_logprob": float(ref_seq[i][j]),
            **{name: float(values[i][j]) for name, values in extra.items()},
        }
        for i, p in enumerate(prompts)
        for j in range(len(c.tokens[i]))
    ]
    mean_len = float(np.mean([len(t) for row in c.tokens for t in row]))
    cost = {
        "samples_per_output": policy.samples_per_output,
        "generated_tokens_per_output": round(mean_len * policy.samples_per_output, 3),
        "training_steps": policy.training.steps,
        "training_tokens": policy.training.tokens,
    }
    return Evaluation(metrics=metrics, records=records, cost=cost, bon_curve=curve)


def _exact(task: Task, policy: AlignedPolicy) -> dict[str, list[float]]:
    """Exact per-prompt metrics by enumerating every completion of every prompt."""
    reference = task.reference
    assert isinstance(reference, EnumerablePolicy)
    out: dict[str, list[float]] = {}
    for prompt in task.prompts:
        e = enumerate_prompt(reference, task.reward, prompt)
        logp = policy.logprob([prompt], e.support.tokens)
        if logp is None:
            return {}
        p = np.exp(logp[0])
        out.setdefault("reward_exact", []).append(float(p @ e.rewards))
        if task.gold_reward is not None:
            gold = task.gold_reward.score([prompt], e.support)[0]
            out.setdefault("gold_reward_exact", []).append(float(p @ gold))
        out.setdefault("win_rate_exact", []).append(winrate.win_rate_exact(p, e.p_ref, e.rewards))
        out.setdefault("kl_exact", []).append(kl.kl_exact(p, e.p_ref))
    return out
