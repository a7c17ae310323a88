"""Reproduce a published board: run chosen cells of its results.jsonl again into a scratch store and compare every
number with the published one (`harness reproduce`, docs/reproducibility.md).

Every metric of the run (mean, standard error, both ends of the 95% interval, number of prompts), every point of
its best-of-n curve and its cost are compared, exactly by default or within a relative tolerance that the caller
states (with its reason: see docs/reproducibility.md for the one that a trained cell on another machine needs).
Off-target metrics (`harness offtarget`) are not run again."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import store
from harness.leaderboard.runs import load_published
from harness.run import execute, spec_of

COST = ("samples_per_output", "generated_tokens_per_output", "training_steps", "training_tokens")


@dataclass(frozen=True)
class Check:
    """One published quantity against its reproduction."""

    quantity: str  # `kl_exact`, `bon_curve reward (n = 1..64)`, `cost`
    published: float | None  # the mean (of the run's own n, for a curve), None where not published
    reproduced: float | None
    difference: float  # the largest absolute difference over the values compared (0: identical)
    ok: bool
    note: str = ""
    comparable: bool = True  # False: the two records differ in kind (a metric on one side only, or redefined)


@dataclass(frozen=True)
class Tolerance:
    """|a - b| <= atol + rtol * scale for every value compared, where the scale of a metric's summary (mean, standard
    error, interval, number of prompts) is the largest |value| of its mean and interval on either side, and of any
    other value max(|a|, |b|): a standard error is compared on its metric's scale, so that rounding (an exact
    quantity's se, 0 on one CPU and 1e-17 on another) is not a relative difference of 100%. 0 and 0: identical."""

    rtol: float = 0.0
    atol: float = 0.0

    def holds(self, a: float | int | None, b: float | int | None, scale: float = 0.0) -> bool:
        if a is None or b is None:
            return a is b
        return a == b or abs(a - b) <= self.atol + self.rtol * max(abs(a), abs(b), scale)

    def __str__(self) -> str:
        return f"rtol {self.rtol:g}, atol {self.atol:g}"


EXACT = Tolerance()


def _pairs(p: dict[str, Any], r: dict[str, Any]) -> list[tuple[Any, Any, float]]:
    """The values of two metric summaries side by side (mean, se, the interval's ends, the number of prompts), each
    with the summaries' scale (Tolerance)."""
    scale = max((abs(x) for x in (p["mean"], r["mean"], *p["ci95"], *r["ci95"]) if x is not None), default=0.0)
    pairs = [(p["mean"], r["mean"]), (p["se"], r["se"]), *zip(p["ci95"], r["ci95"], strict=True)]
    return [(a, b, scale) for a, b in pairs] + [(p["n_prompts"], r["n_prompts"], 0.0)]


def _difference(pairs: list[tuple[Any, Any, float]]) -> float:
    """The largest |a - b| over pairs (infinite where one of a pair is None and the other is not)."""
    return max((0.0 if a is b else float("inf")) if a is None or b is None else float(abs(a - b)) for a, b, _ in pairs)


def _check(
    quantity: str,
    published: float | None,
    reproduced: float | None,
    pairs: list[tuple[Any, Any, float]],
    tol: Tolerance,
    note: str = "",
) -> Check:
    ok = all(tol.holds(a, b, scale) for a, b, scale in pairs)
    return Check(quantity, published, reproduced, _difference(pairs), ok, note)


def _metric(name: str, p: dict[str, Any] | None, r: dict[str, Any] | None, tol: Tolerance) -> Check:
    if p is None or r is None:
        note = "not published" if p is None else "not reproduced"
        published, reproduced = (None if x is None else x["mean"] for x in (p, r))
        return Check(name, published, reproduced, float("inf"), False, note, comparable=False)
    if p["id"] != r["id"]:
        note = f"published as {p['id']}, computed today as {r['id']}: the metric's definition changed"
        return Check(name, p["mean"], r["mean"], float("inf"), False, note, comparable=False)
    return _check(name, p["mean"], r["mean"], _pairs(p, r), tol)


def _curve(published: list[dict[str, Any]], reproduced: list[dict[str, Any]], n: int, tol: Tolerance) -> list[Check]:
    """One check per metric of the best-of-n curve, over all its points."""
    if not published and not reproduced:
        return []
    if [p["n"] for p in published] != [r["n"] for r in reproduced]:
        return [Check("bon_curve", None, None, float("inf"), False, "the curves cover different n", comparable=False)]
    names = sorted({k for point in published + reproduced for k in point if k != "n"})
    checks = []
    for name in names:
        ps = [point.get(name) for point in published]
        rs = [point.get(name) for point in reproduced]
        label = f"bon_curve {name} (n = 1..{len(published)})"
        if any(x is None for x in ps + rs) or any(p["id"] != r["id"] for p, r in zip(ps, rs, strict=True)):  # type: ignore[index]
            note = "published and computed today differ in kind"
            checks.append(Check(label, None, None, float("inf"), False, note, comparable=False))
            continue
        pairs = [pair for p, r in zip(ps, rs, strict=True) for pair in _pairs(p, r)]  # type: ignore[arg-type]
        at = min(n, len(ps)) - 1  # the point of the run's own n, to show
        checks.append(_check(label, ps[at]["mean"], rs[at]["mean"], pairs, tol))  # type: ignore[index]
    return checks


def compare(published: dict[str, Any], reproduced: dict[str, Any], tol: Tolerance = EXACT) -> list[Check]:
    """Every metric, every point of the best-of-n curve and the cost of two results records, each identical or
    within the tolerance `tol`."""
    pm, rm = published["metrics"], reproduced["metrics"]
    checks = [_metric(name, pm.get(name), rm.get(name), tol) for name in sorted(pm.keys() | rm.keys())]
    n = int(published["cost"]["samples_per_output"])
    checks += _curve(published.get("bon_curve") or [], reproduced.get("bon_curve") or [], n, tol)
    pc, rc = published["cost"], reproduced["cost"]
    changed = [k for k in COST if not tol.holds(pc.get(k), rc.get(k))]
    note = f"differs in {', '.join(changed)}" if changed else ""
    checks.append(_check("cost", None, None, [(pc.get(k), rc.get(k), 0.0) for k in COST], tol, note))
    return checks


@dataclass
class Outcome:
    """A published cell run again: where, and how its numbers compare."""

    published: dict[str, Any]  # {"config", "results"} as in results.jsonl
    path: Path
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why the cell is not what was published, apart from its numbers

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and not self.notes


def select(dest: Path, task: str, methods: Sequence[str] = (), hashes: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The published runs of `dest/<task>/results.jsonl`, of the given methods and with a config hash starting
    with one of `hashes` (all where none is given)."""
    runs = load_published(dest, task)
    chosen = [
        r
        for r in runs
        if (not methods or r["results"]["method"] in methods)
        and (not hashes or any(r["results"]["config_hash"].startswith(h) for h in hashes))
    ]
    if not chosen:
        wanted = ", ".join([*methods, *hashes]) or "any"
        raise store.StoreError(f"no published run of task {task!r} in {dest / task} matches {wanted}")
    return chosen


def reproduce(
    runs: Iterable[dict[str, Any]],
    out: Path,
    tol: Tolerance = EXACT,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run each published run again into the store `out` (recomputed even where `out` holds it) and compare."""
    outcomes = []
    for published in runs:
        config, results = published["config"], published["results"]
        spec = spec_of(config)
        notes = []
        version = config["method"].get("version", 1)
        if version != spec.method.version:
            notes.append(
                f"published by version {version} of {spec.method_name}, version {spec.method.version} is installed: "
                "the board is stale (run its sweep and publish it again)"
            )
        result = execute(spec, out, force=True)
        outcome = Outcome(published, result.path, compare(results, result.results, tol), notes)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes
