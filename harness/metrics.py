"""The metric catalogue: every metric the harness reports, with its version, range, direction, label and source
(how it is computed), and the headline quantities (proxy reward, gold reward, win rate, KL) with their headers and
the order in which their estimators stand in for each other. Evaluation, off-target evaluation, the leaderboard and
the command line all read these facts here. Definitions and sources: docs/formulas.md.

A stored value carries its metric's id, `<name>@<version>`: bump a version whenever the definition changes. A
task's own metric (e.g. `rouge_l` of aclsum) is versioned here too when the harness knows it, and otherwise with
the task's version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

INF = float("inf")


@dataclass(frozen=True)
class Metric:
    name: str
    version: int
    label: str  # for people: plots, tables
    lo: float = -INF  # the range its values lie in (an estimate may be clipped to it only in an interval)
    hi: float = INF
    better: str | None = "higher"  # "higher", "lower", or None where neither is better (KL, length)
    source: str = "MC"  # how it is computed (a key of SOURCES), for a column that reads several estimators

    @property
    def range(self) -> tuple[float, float]:
        return (self.lo, self.hi)


CATALOGUE: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("reward", 1, "proxy reward"),
        Metric("reward_exact", 1, "proxy reward", source="exact"),
        Metric("gold_reward", 1, "gold reward"),
        Metric("gold_reward_exact", 1, "gold reward", source="exact"),
        Metric("win_rate", 1, "win rate vs pi_ref", 0.0, 1.0),
        Metric("win_rate_exact", 1, "win rate vs pi_ref", 0.0, 1.0, source="exact"),
        Metric("kl_exact", 1, "KL(pi || pi_ref)", 0.0, INF, None, source="exact"),
        Metric("kl_mc", 1, "KL(pi || pi_ref)", 0.0, INF, None, source="MC"),
        Metric("kl_k3", 1, "KL(pi || pi_ref)", 0.0, INF, None, source="k3"),
        Metric("kl_pool", 2, "KL(pi || pi_ref)", 0.0, INF, None, source="pool"),
        Metric("kl_bon_beirami", 1, "KL(pi || pi_ref)", 0.0, INF, None, source="Beirami"),
        Metric("kl_bon_bound", 1, "KL(pi || pi_ref)", 0.0, INF, None, source="bound"),
        Metric("rouge_l", 1, "ROUGE-L F1 vs the reference", 0.0, 1.0),
        # off-target (harness.offtarget)
        Metric("length", 1, "output length, tokens", 0.0, INF, None),
        Metric("distinct_1", 1, "distinct-1", 0.0, 1.0),
        Metric("distinct_2", 1, "distinct-2", 0.0, 1.0),
        Metric("distinct_3", 1, "distinct-3", 0.0, 1.0),
        Metric("ppl_ref", 1, "perplexity under pi_ref", 1.0, INF, "lower"),
    )
}

# A trained policy's metrics on a sample of its training prompts (the task's `evaluation.train_prompts`), named
# `<metric>_train` beside the same metric on the evaluation prompts: the gap between the two is generalisation.
TRAIN = "_train"
MEASURED = (
    *("reward", "gold_reward", "win_rate", "kl_mc", "kl_k3", "rouge_l"),
    *("reward_exact", "gold_reward_exact", "win_rate_exact", "kl_exact"),
)
CATALOGUE |= {
    f"{name}{TRAIN}": replace(
        CATALOGUE[name], name=f"{name}{TRAIN}", label=f"{CATALOGUE[name].label}, training prompts"
    )
    for name in MEASURED
}


@dataclass(frozen=True)
class Source:
    """How a stored value is computed (`Metric.source`): its word on a plot's axis, its description in a board's
    notes (where the key itself names it in cells and headers)."""

    word: str
    description: str


SOURCES: dict[str, Source] = {
    "exact": Source("exact", "computed by enumerating every completion"),
    "MC": Source("Monte Carlo", "Monte Carlo estimate from the policy's samples (k1 for KL)"),
    "k3": Source("k3", "the k3 estimate from per-token log-probabilities"),
    "pool": Source(
        "pool",
        "the mean over the outputs of log pi/pi_ref, the ratio computed from the reward law of the reference samples "
        "independent of each output",
    ),
    "Beirami": Source("Beirami", "the Beirami et al. (2024) estimate of the KL of best-of-n"),
    "bound": Source("bound", "log n - (n-1)/n, an upper bound on the KL of best-of-n"),
}


@dataclass(frozen=True)
class Quantity:
    """A headline quantity: one leaderboard column, plot axis and line of a sweep's log, whose value is the first
    of its estimators that a run stores."""

    name: str
    header: str  # its name in column headers and plot titles
    estimators: tuple[str, ...]  # catalogue names, in order of preference
    missing: str  # why a board's column can be empty (its footnote)
    also_stored: tuple[str, ...] = ()  # estimators kept beside it in leaderboard.csv, never its headline value

    @property
    def label(self) -> str:
        return CATALOGUE[self.estimators[0]].label


# The headline quantities, in the order tables show them. Each prefers the exact value where the output space is
# enumerable, then Monte Carlo, then soft best-of-n's density ratio from a reward law of reference samples, then,
# for the KL of best-of-n policies, Beirami et al.'s estimate and the log n - (n-1)/n bound.
QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("reward", "proxy reward", ("reward_exact", "reward"), "the run stored no proxy reward"),
        Quantity(
            "gold_reward", "gold reward", ("gold_reward_exact", "gold_reward"), "the task has no gold reward model"
        ),
        Quantity("win_rate", "win rate", ("win_rate_exact", "win_rate"), "the run stored no win rate"),
        Quantity(
            "kl",
            "KL",
            ("kl_exact", "kl_mc", "kl_pool", "kl_bon_beirami", "kl_bon_bound"),
            "no KL estimator applies: the policy has no log-probabilities and none of the pool's estimators fits it",
            also_stored=("kl_k3",),
        ),
    )
}
CURVE = ("reward", "gold_reward", "win_rate", "kl_bon_bound", "kl_bon_beirami")  # the best-of-n curve's metrics

# lm-eval scores (leaderboard columns `<lm-eval task>:<metric>`) lie in [0, 1] when their metric is one of these.
UNIT_SCORES = ("acc", "acc_norm", "exact_match", "f1")


def metric_id(name: str, task_version: int) -> str:
    """The stored id of a metric's value: its catalogue version, or the task's version for a task's own metric."""
    return f"{name}@{CATALOGUE[name].version if name in CATALOGUE else task_version}"


def split_id(metric: str) -> tuple[str, str]:
    """(name, version) of a stored id `name@version`."""
    name, _, version = metric.partition("@")
    return name, version


def metric_range(name: str) -> tuple[float, float]:
    """The range of a metric's values, or of a leaderboard column's (a quantity of QUANTITIES, an lm-eval
    score); (-inf, inf) where it has none."""
    if name in QUANTITIES:
        name = QUANTITIES[name].estimators[0]
    if name in CATALOGUE:
        return CATALOGUE[name].range
    if ":" in name and name.split(":", 1)[1].split(",")[0] in UNIT_SCORES:  # an lm-eval score
        return (0.0, 1.0)
    return (-INF, INF)


def label(name: str) -> str:
    """The human label of a metric or of a quantity of QUANTITIES."""
    if name in QUANTITIES:
        return QUANTITIES[name].label
    return CATALOGUE[name].label if name in CATALOGUE else name


def preferred(metrics: dict[str, Any], quantity: str) -> tuple[str, Any] | None:
    """(name, stored value) of the first estimator of `quantity` that `metrics` holds, or None."""
    return next(((n, metrics[n]) for n in QUANTITIES[quantity].estimators if n in metrics), None)
