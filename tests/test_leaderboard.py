"""Leaderboards: aggregation over seeds, Pareto flags, matched-KL ranking, reproducible published files, and a
self-contained escaped HTML page rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness import leaderboard, store
from harness.sweep import load, run_local

SWEEP = "tasks: [toy]\nseeds: [0, 1, 2]\nmethods:\n  bon: {n: [1, 4]}\n  ppo: {beta: [1.0, 4.0], steps: 10}\n"


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("swept")
    (root / "sweep.yaml").write_text(SWEEP)
    outcomes = run_local(load(root / "sweep.yaml"), root / "runs")
    assert not any(o.error for o in outcomes)
    return root


def test_pareto_flags_exactly_the_undominated_rows():
    kl = np.array([0.0, 0.5, 0.5, 1.0, 2.0, 1.5])
    win = np.array([0.5, 0.7, 0.6, 0.7, 0.9, 0.95])
    assert leaderboard.pareto(kl, win).tolist() == [True, True, False, False, False, True]


def test_rows_aggregate_the_seeds_of_each_setting(swept):
    df = leaderboard.build(swept / "runs", "toy")
    assert len(df) == 4 and (df["seeds"] == 3).all()
    assert sorted(df["setting"]) == ["beta=1.0", "beta=4.0", "n=1", "n=4"]
    assert (df["kl_estimator"] == "kl_exact").all()
    runs = leaderboard.load_runs(swept / "runs", "toy")
    row = df[(df["method"] == "ppo") & (df["setting"] == "beta=1.0")].iloc[0]
    wins = [r["results"]["metrics"]["win_rate"]["mean"] for r in runs if r["config"]["method"].get("beta") == 1.0]
    assert len(wins) == 3 and row["win_rate"] == pytest.approx(np.mean(wins))
    half = stats.t.ppf(0.975, 2) * np.std(wins, ddof=1) / np.sqrt(3)
    assert row["win_rate_hi"] - row["win_rate"] == pytest.approx(half)
    bon1 = df[df["setting"] == "n=1"].iloc[0]
    assert bon1["kl"] == pytest.approx(0.0, abs=1e-9) and bon1["samples_per_output"] == 1
    assert df[df["setting"] == "n=4"].iloc[0]["samples_per_output"] == 4
    assert bon1["pareto"]  # nothing reaches a higher win rate at zero KL


def test_matched_kl_picks_the_best_win_rate_within_each_budget():
    df = pd.DataFrame(
        {
            "method": ["a", "b", "c"],
            "setting": ["-", "-", "-"],
            "kl": [0.2, 0.9, 3.0],
            "win_rate": [0.6, 0.8, 0.7],
            "kl_estimator": ["kl_exact"] * 3,
        }
    )
    ranked = leaderboard.matched_kl(df, (0.1, 0.5, 1.0, 5.0))
    assert ranked["kl_budget"].tolist() == [0.5, 1.0, 5.0]
    assert ranked["method"].tolist() == ["a", "b", "b"]


def test_publishing_twice_from_two_runs_of_the_sweep_gives_the_same_leaderboard(swept, tmp_path):
    first = leaderboard.publish(swept / "runs", "toy", tmp_path / "a")
    assert sorted(p.name for p in first.iterdir()) == sorted(leaderboard.FILES)
    again = tmp_path / "again"
    run_local(load(swept / "sweep.yaml"), again)  # the same sweep from scratch in a fresh store
    second = leaderboard.publish(again, "toy", tmp_path / "b")
    for name in ("leaderboard.csv", "leaderboard.md", "reward_kl.png", "winrate_kl.png", "index.html"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    csv = pd.read_csv(first / "leaderboard.csv")
    assert set(csv["config_hash"]) == set(leaderboard.build(swept / "runs", "toy")["config_hash"])
    assert (csv["harness_version"].astype(str) != "").all()
    raw = [json.loads(x) for x in (first / "results.jsonl").read_text().splitlines()]
    assert len(raw) == 12 and {"config", "results"} == set(raw[0])


def test_the_page_escapes_every_string(swept):
    df = leaderboard.build(swept / "runs", "toy")
    df.loc[0, "setting"] = '<script>alert("x")</script>'
    page = leaderboard.page(df, "toy <b>", [])
    assert "<script>" not in page and "&lt;script&gt;" in page and "toy &lt;b&gt;" in page


def test_an_unknown_task_has_no_leaderboard(swept):
    with pytest.raises(store.StoreError, match="no finished runs of task 'imdb'"):
        leaderboard.build(swept / "runs", "imdb")


CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package chromium) is not installed")
def test_the_published_page_renders_in_headless_chromium(swept, tmp_path):
    page = leaderboard.publish(swept / "runs", "toy", tmp_path) / "index.html"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert "<table" in dom and "leaderboard" in dom, proc.stderr[-2000:]
    assert dom.count("<tr>") >= 5  # header + 4 rows
    assert "beta=4.0" in dom and dom.count("data:image/png;base64,") == 2
