"""Score an aligned policy the same way for every method: reward, win rate, KL (every estimator that applies)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness import kl, seeding, winrate
from harness.method import AlignedPolicy, Outputs
from harness.metrics import CURVE, TRAIN, metric_id
from harness.policy import EnumerablePolicy, enumerate_prompt, sequence_logprobs
from harness.pool import PoolCache
from harness.stats import summarize
from harness.task import Task

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]
    cost: dict[str, Any] = field(default_factory=dict)
    bon_curve: list[dict[str, Any]] = field(default_factory=list)
    train_records: list[dict[str, Any]] = field(default_factory=list)  # outputs on the training-prompt sample


def outputs_of(task: Task, policy: AlignedPolicy, seed: int) -> Outputs:
    """The policy's pooled outputs where it has them (best-of-n, soft and regularized best-of-n), else fresh
    samples with equal weights."""
    k = task.config.evaluation.samples_per_prompt
    pooled = policy.pooled(seed, k)
    if pooled is not None:
        return pooled
    log.info("sampling %d outputs for each of %d prompts", k, len(task.prompts))
    c = policy.generate(task.prompts, k, seeding.derive_seed(seed, seeding.OUTPUTS))
    return Outputs(
        completions=c,
        rewards=task.reward.score(task.prompts, c),
        gold=task.gold_reward.score(task.prompts, c) if task.gold_reward else None,
        weights=[np.full(k, 1.0 / k)] * len(task.prompts),
    )


def evaluate(task: Task, policy: AlignedPolicy, seed: int, pools: PoolCache) -> Evaluation:
    """The policy's metrics on the evaluation prompts and, for a trained policy where the task asks for it
    (`evaluation.train_prompts`), the same metrics on its first training prompts, named `<metric>_train`."""
    result = _evaluate(task, policy, seed, pools)
    n = task.config.evaluation.train_prompts
    if n and policy.training.steps:
        sample = _evaluate(replace(task, prompts=task.train_prompts[:n]), policy, seed, pools)
        for name, metric in sample.metrics.items():
            result.metrics[name + TRAIN] = metric | {"id": metric_id(name + TRAIN, task.config.version)}
        result.train_records = sample.records
    return result


def _evaluate(task: Task, policy: AlignedPolicy, seed: int, pools: PoolCache) -> Evaluation:
    cfg = task.config.evaluation
    prompts = task.prompts
    out = outputs_of(task, policy, seed)
    c, w = out.completions, out.weights
    ref_tokens = c.ref_token_logprobs or task.reference.token_logprobs(prompts, c.tokens)
    ref_seq = sequence_logprobs(ref_tokens)
    seq = (
        sequence_logprobs(c.token_logprobs)
        if c.token_logprobs is not None
        else policy.sequence_logprobs(prompts, c.tokens)
    )
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
    terms.update(policy.kl_terms(out, ref_seq))
    per_prompt = {
        name: [float(np.average(v, weights=wi)) for v, wi in zip(vals, w, strict=True)] for name, vals in terms.items()
    }
    if isinstance(task.reference, EnumerablePolicy):
        per_prompt.update(_exact(task, policy))

    rng = np.random.default_rng(seeding.derive_seed(seed, seeding.BOOTSTRAP))

    def summary(name: str, values: list[float]) -> dict[str, Any]:
        return {
            "id": metric_id(name, task.config.version),
            **summarize(np.asarray(values), rng, cfg.bootstrap).to_dict(),
        }

    metrics = {name: summary(name, values) for name, values in per_prompt.items()}
    curve = []
    for n, member in policy.curve():  # the same outputs, weighted as each member of the policy's family
        pooled = member.pooled(seed, cfg.samples_per_prompt)
        assert pooled is not None, "a policy's curve is evaluated from its pooled outputs"
        member_terms = terms | member.kl_terms(pooled, ref_seq)
        point: dict[str, Any] = {"n": n}
        for name in (*CURVE, *extra):
            if name in member_terms:
                vals = [float(wn @ v) for wn, v in zip(pooled.weights, member_terms[name], strict=True)]
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
            **({} if out.candidates is None else {"candidates": out.candidates[i][j].tolist()}),
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
        **({"outputs_only": True} if policy.outputs_only else {}),
    }
    return Evaluation(metrics=metrics, records=records, cost=cost, bon_curve=curve)


def _exact(task: Task, policy: AlignedPolicy) -> dict[str, list[float]]:
    """Exact per-prompt metrics by enumerating every completion of every prompt."""
    reference = task.reference
    assert isinstance(reference, EnumerablePolicy)
    out: dict[str, list[float]] = {}
    for prompt in task.prompts:
        e = enumerate_prompt(reference, task.reward, prompt)
        logp = policy.sequence_logprobs([prompt], e.support.tokens)
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
