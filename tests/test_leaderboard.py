"""Leaderboards: rows over seeds with exact values first and in-range intervals, a method without log-probabilities,
Pareto flags, matched KL against the reference policy, row identity without operational settings, published rows
merged in, reproducible published files, plots, and the page rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import Field
from typer.testing import CliRunner

from harness import cli, leaderboard, store
from harness.identity import identity
from harness.leaderboard import intervals, plots, table
from harness.leaderboard import runs as board_runs
from harness.method import METHODS, AlignedPolicy, Method, MethodConfig, RunContext
from harness.metrics import metric_range
from harness.policy import Completions, Policy, Prompt, Reward
from harness.run import execute, resolve, stored_spec
from harness.sweep import load, run_local

SWEEP = "tasks: [toy]\nseeds: [0, 1, 2]\nmethods:\n  bon: {n: [1, 4]}\n  ppo: {beta: [1.0, 4.0], steps: 5}\n"
REPO = Path(__file__).resolve().parents[1]
PUBLISHED_TOY = REPO / "leaderboards" / "toy" / "results.jsonl"


class NoLogprobConfig(MethodConfig):
    n: int = Field(2, ge=1, description="Reference samples per output; the one with the highest reward is returned.")


class NoLogprobPolicy(AlignedPolicy):
    """Best of n reference samples that declares neither log-probabilities nor best-of-n: no KL applies."""

    def __init__(self, reference: Policy, reward: Reward, n: int):
        self.reference, self.reward, self.n, self.samples_per_output = reference, reward, n, n

    def generate(self, prompts: Sequence[Prompt], count: int, seed: int) -> Completions:
        c = self.reference.sample(prompts, count * self.n, seed)
        c.ref_token_logprobs = c.token_logprobs
        rewards = self.reward.score(prompts, c)
        best = c.take([np.arange(count) * self.n + r.reshape(count, self.n).argmax(axis=1) for r in rewards])
        best.token_logprobs = None
        return best


class NoLogprob(Method[NoLogprobConfig]):
    """A third-party method whose policy has no log-probabilities."""

    Config = NoLogprobConfig

    def align(self, ctx: RunContext) -> AlignedPolicy:
        return NoLogprobPolicy(ctx.task.reference, ctx.task.reward, self.config.n)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("swept")
    (root / "sweep.yaml").write_text(SWEEP)
    outcomes = run_local(load(root / "sweep.yaml"), root / "runs")
    assert not any(o.error for o in outcomes)
    return root


@pytest.fixture(scope="module")
def plugin() -> Iterator[str]:
    """The method above, registered as a plugin registers (harness.registry), for this module only."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(METHODS._entries, "nologprob", NoLogprob)
        yield "nologprob"


@pytest.fixture(scope="module")
def with_plugin(swept, plugin, tmp_path_factory) -> Path:
    """The swept store plus two seeds of the method without log-probabilities."""
    out = tmp_path_factory.mktemp("plugin") / "runs"
    shutil.copytree(swept / "runs", out)
    for seed in (0, 1):
        execute(resolve("toy", plugin, seed=seed), out)
    return out


def test_pareto_treats_values_equal_up_to_rounding_as_equal():
    """rbon's and bon's best-of-8 KL bound, averaged over prompts in different orders, differ in the 15th digit:
    the row with the lower win rate is still dominated."""
    kl = np.array([1.2044415416798357, 1.2044415416798333, 0.5])
    win = np.array([0.884, 0.840, 0.5])
    assert leaderboard.pareto(kl, win).tolist() == [True, False, True]
    assert leaderboard.pareto(np.array([1.0, 1.0 + 1e-15]), np.array([0.7, 0.7])).tolist() == [True, True]


def test_pareto_flags_exactly_the_undominated_rows():
    kl = np.array([0.0, 0.5, 0.5, 1.0, 2.0, 1.5, np.nan])
    win = np.array([0.5, 0.7, 0.6, 0.7, 0.9, 0.95, 0.99])
    assert leaderboard.pareto(kl, win).tolist() == [True, True, False, False, False, True, False]


def test_intervals_over_seeds_stay_in_range_and_widen_with_a_diverged_seed():
    # three seeds of a win rate, one of which diverged: a t-interval over the means would leave [0, 1]
    means, cis = [0.75, 0.76, 0.06], [[0.70, 0.80], [0.72, 0.81], [0.01, 0.12]]
    mean, lo, hi = intervals.over_seeds(means, cis, metric_range("win_rate"))
    assert mean == pytest.approx(np.mean(means))
    # with three seeds, one seed drawn three times has probability 1/27 > 2.5%: the range of the seeds' bounds
    assert (lo, hi) == (0.01, 0.81)
    assert intervals.over_seeds([0.4], [[0.3, 0.5]]) == (0.4, 0.3, 0.5)  # one seed: its interval over prompts
    many = intervals.over_seeds([0.5] * 20, [[0.45, 0.55]] * 19 + [[0.0, 0.1]], (0.0, 1.0))
    assert 0.0 < many[1] < 0.45 and many[2] == pytest.approx(0.55)  # one bad seed of 20 widens, not dominates
    assert intervals.over_seeds([0.01, 0.02], [[-0.03, 0.04], [-0.01, 0.05]], metric_range("kl"))[1] == 0.0


def test_rows_aggregate_the_seeds_of_each_setting_with_exact_values_first(swept):
    df = leaderboard.build(swept / "runs", "toy")
    assert len(df) == 4 and (df["seeds"] == 3).all()
    assert sorted(df["setting"]) == ["beta=1.0", "beta=4.0", "n=1", "n=4"]
    assert (df["kl_source"] == "exact").all() and (df["win_rate_source"] == "exact").all()
    runs = leaderboard.load_runs(swept / "runs", "toy")
    row = df[(df["method"] == "ppo") & (df["setting"] == "beta=1.0")].iloc[0]
    ms = [r["results"]["metrics"] for r in runs if r["config"]["method"].get("beta") == 1.0]
    assert len(ms) == 3
    assert row["win_rate"] == pytest.approx(np.mean([m["win_rate_exact"]["mean"] for m in ms]))
    assert row["win_rate_mc"] == pytest.approx(np.mean([m["win_rate"]["mean"] for m in ms]))  # kept beside
    assert row["win_rate_lo"] == pytest.approx(min(m["win_rate_exact"]["ci95"][0] for m in ms))
    bon1 = df[df["setting"] == "n=1"].iloc[0]
    assert bon1["win_rate"] == pytest.approx(0.5, abs=1e-12)  # best-of-1 is pi_ref: exactly 1/2
    assert bon1["win_rate_mc"] != bon1["win_rate"]  # the Monte Carlo estimate is not what the row shows
    assert bon1["kl"] == pytest.approx(0.0, abs=1e-9) and bon1["samples_per_output"] == 1
    assert df[df["setting"] == "n=4"].iloc[0]["samples_per_output"] == 4
    assert bon1["pareto"]  # nothing reaches a higher win rate at zero KL
    for col, (low, high) in (("win_rate", (0, 1)), ("kl", (0, np.inf))):
        assert ((df[f"{col}_lo"] >= low) & (df[f"{col}_hi"] <= high)).all()
    shown = leaderboard.display(df)
    assert {"win rate (exact)", "KL (exact)"} <= set(shown.columns)
    assert shown.loc[df.index[df["setting"] == "n=1"][0], "win rate (exact)"].startswith("0.5000 [")


def test_a_method_without_log_probabilities_shows_no_kl_and_breaks_nothing(with_plugin, tmp_path):
    df = leaderboard.build(with_plugin, "toy")
    row = df[df["method"] == "nologprob"].iloc[0]
    assert row["seeds"] == 2 and np.isnan(row["kl"]) and row["kl_source"] == ""
    assert row["win_rate_source"] == "MC" and 0 <= row["win_rate_lo"] <= row["win_rate"] <= row["win_rate_hi"] <= 1
    assert not row["pareto"] and "nologprob" not in set(leaderboard.matched_kl(df)["method"])
    assert row["setting"] == "n=2"  # its one row still names its knob
    shown = leaderboard.display(df)
    assert shown.loc[df.index[df["method"] == "nologprob"][0], "KL (exact)"] == "-"
    assert any("no KL estimator applies" in n and "nologprob n=2" in n for n in leaderboard.footnotes(df))
    board = leaderboard.publish(with_plugin, "toy", tmp_path)
    md = (board / "leaderboard.md").read_text()
    assert "no KL estimator applies" in md and "| nologprob" in md
    assert "Monte Carlo" in md  # the win-rate column mixes sources and says so


def test_matched_kl_picks_the_best_win_rate_within_each_budget_the_reference_policy_included():
    df = pd.DataFrame(
        {
            "method": ["a", "b", "c", "d"],
            "setting": ["-"] * 4,
            "origin": ["local"] * 4,
            "kl": [0.05, 0.9, 3.0, np.nan],
            "win_rate": [0.48, 0.8, 0.7, 0.99],
            **{c: [np.nan] * 4 for c in ("kl_lo", "kl_hi", "win_rate_lo", "win_rate_hi")},
            "kl_source": ["MC"] * 3 + [""],
            "win_rate_source": ["MC"] * 4,
        }
    )
    ranked = leaderboard.matched_kl(df, (0.1, 0.5, 1.0, 5.0))
    assert ranked["kl_budget"].tolist() == [0.1, 0.5, 1.0, 5.0]
    # "a" is inside 0.1 but below the reference policy's 1/2; "d" has no KL
    assert ranked["method"].tolist() == [leaderboard.REFERENCE, leaderboard.REFERENCE, "b", "b"]
    assert (ranked["win_rate"] >= 0.5).all()


def test_operational_settings_are_not_part_of_a_runs_identity(tmp_path):
    a = resolve("toy", "ppo", {"log_every": 1, "checkpoint_every": 5})
    b = resolve("toy", "ppo", {"log_every": 50})
    c = resolve("toy", "ppo", {"beta": 2.0})
    assert a.hash() == b.hash() != c.hash()
    config = a.resolved()
    assert config["operational"] == {"checkpoint_every": 5, "log_every": 1} and "log_every" not in config["method"]
    assert board_runs.row_key(config) == board_runs.row_key(b.resolved())  # one row
    assert "builder" not in identity(config)["task"]  # where the task's code lives is no part of the identity
    store.write_json(tmp_path / store.CONFIG, config)
    store.write_json(tmp_path / store.RESULTS, {})
    spec = stored_spec(tmp_path)
    assert spec.config.log_every == 1 and spec.config.checkpoint_every == 5 and spec.hash() == a.hash()


def test_logging_and_checkpointing_do_not_change_a_runs_results(tmp_path):
    first = execute(resolve("toy", "ppo", {"steps": 4, "log_every": 1, "checkpoint_every": 1}), tmp_path / "a")
    second = execute(resolve("toy", "ppo", {"steps": 4}), tmp_path / "b")
    assert first.path.name == second.path.name
    assert first.results["metrics"] == second.results["metrics"]


def test_the_setting_names_a_methods_knob_even_when_it_has_one_row():
    runs = [{**r, "origin": "local"} for r in store.read_jsonl(PUBLISHED_TOY)]
    one_ppo = [r for r in runs if r["results"]["method"] == "bon" or r["config"]["method"].get("beta") == 2.0]
    df = leaderboard.frame(one_ppo)
    assert set(df.loc[df["method"] == "ppo", "setting"]) == {"beta=2.0"}
    assert set(df.loc[df["method"] == "bon", "setting"]) == {"n=1", "n=2", "n=4", "n=8", "n=16", "n=32"}


def test_plot_styles_and_curves_follow_the_swept_knob():
    names = [f"m{i}" for i in range(12)]
    assert len(set(plots.styles(names).values())) == 12
    knobs = [
        {"cdf": "exact", "n": 8, "variant": "exact"},
        {"cdf": "exact", "n": 2, "variant": "exact"},
        {"cdf": "pool", "n": 4, "variant": "l1"},
        {"cdf": "exact", "n": 4, "variant": "exact"},
    ]
    rows = pd.DataFrame({"knobs": [json.dumps(k) for k in knobs], "kl": [1.2, 0.2, 0.7, 0.6]})
    swept, curves = plots._swept(rows)
    assert swept == "n"
    assert sorted(c["kl"].tolist() for c in curves) == [[0.2, 0.6, 1.2], [0.7]]  # joined in n order, l1 alone
    labelled = pd.DataFrame({"knobs": [json.dumps({"label": x}) for x in "abc"], "kl": [0.3, 0.1, 0.2]})
    swept, curves = plots._swept(labelled)  # policies apart in a name only (external rows): no curve joins them
    assert swept is None and sorted(c["kl"].tolist() for c in curves) == [[0.1], [0.2], [0.3]]


def test_publishing_twice_from_two_runs_of_the_sweep_gives_the_same_leaderboard(swept, tmp_path):
    first = leaderboard.publish(swept / "runs", "toy", tmp_path / "a")
    files = (*leaderboard.FILES, leaderboard.TRAINING)  # ppo trained: its training curves too
    assert sorted(p.name for p in first.iterdir() if p.name != store.PUBLISHED_MARK) == sorted(files)
    again = tmp_path / "again"
    run_local(load(swept / "sweep.yaml"), again)  # the same sweep from scratch in a fresh store
    second = leaderboard.publish(again, "toy", tmp_path / "b")
    for name in set(files) - {"results.jsonl"}:  # the raw results hold each run's timing
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (tmp_path / "a" / "index.html").read_bytes() == (tmp_path / "b" / "index.html").read_bytes()
    csv = pd.read_csv(first / "leaderboard.csv")
    assert set(csv["config_hash"]) == set(leaderboard.build(swept / "runs", "toy")["config_hash"])
    assert (csv["harness_version"].astype(str) != "").all()
    raw = [json.loads(x) for x in (first / "results.jsonl").read_text().splitlines()]
    assert len(raw) == 12 and {"config", "results"} == set(raw[0])


def test_a_board_of_trained_runs_draws_their_training_curves_and_carries_their_logs(swept, tmp_path):
    """training.png shows each trained row's logged reward and KL against the step, over its seeds; every
    trained run's train log travels in results.jsonl, so a board republished from it alone draws them again."""
    board = leaderboard.publish(swept / "runs", "toy", tmp_path / "a")
    assert (board / leaderboard.TRAINING).is_file()
    assert "[training.png](training.png)" in (board / "leaderboard.md").read_text()
    assert 'href="training.png"' in (board / "index.html").read_text()
    raw = [json.loads(x) for x in (board / "results.jsonl").read_text().splitlines()]
    for r in raw:
        run = store.run_path(swept / "runs", "toy", r["results"]["method"], r["results"]["config_hash"])
        assert r.get("train_log", []) == store.read_train_log(run)
    assert {r["results"]["method"] for r in raw if "train_log" in r} == {"ppo"}

    runs = leaderboard.load_runs(swept / "runs", "toy")
    df = leaderboard.frame(runs)
    rows = plots.trained_rows(df, runs)
    assert [row.setting for row, _ in rows] == list(df.loc[df["method"] == "ppo", "setting"])
    for row, logs in rows:
        seeds = sorted(
            (r for r in runs if board_runs.row_hash(r) == row.config_hash), key=lambda r: r["config"]["seed"]
        )
        assert logs == [r["train_log"] for r in seeds] and len(logs) == 3
        steps, kls = plots._seed_curves(logs, "kl")
        assert list(steps) == [0, 4]  # steps 5, logged every 25 steps and at the last
        assert kls.tolist() == [[e["kl"] for e in log] for log in logs]

    alone = tmp_path / "published"
    (alone / "toy").mkdir(parents=True)
    shutil.copy(board / "results.jsonl", alone / "toy" / "results.jsonl")
    again = leaderboard.publish(tmp_path / "empty-store", "toy", alone, with_published=True)
    assert (again / leaderboard.TRAINING).is_file()


def test_publishing_twice_from_the_same_store_is_byte_identical(with_plugin, tmp_path):
    first = leaderboard.publish(with_plugin, "toy", tmp_path / "a")
    second = leaderboard.publish(with_plugin, "toy", tmp_path / "b")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_boards_findings_survive_republishing_and_are_linked(with_plugin, tmp_path):
    """FINDINGS.md is written by people: publishing again keeps it byte for byte and links it from the board,
    and a board without one links nothing."""
    dest = tmp_path / "leaderboards"
    board = leaderboard.publish(with_plugin, "toy", dest)
    assert "FINDINGS.md" not in (board / "leaderboard.md").read_text() + (board / "index.html").read_text()
    text = "# Findings: toy\n\nbon n=8 sits on the Pareto front.\n"
    (board / leaderboard.FINDINGS).write_text(text)
    board = leaderboard.publish(with_plugin, "toy", dest)
    assert (board / leaderboard.FINDINGS).read_text() == text
    assert "[FINDINGS.md](FINDINGS.md)" in (board / "leaderboard.md").read_text()
    assert 'href="FINDINGS.md"' in (board / "index.html").read_text()
    published = {p.name: p.read_bytes() for p in board.iterdir()}
    again = leaderboard.publish(with_plugin, "toy", dest)
    assert {p.name: p.read_bytes() for p in again.iterdir()} == published


def test_with_published_ranks_local_runs_among_the_published_rows(with_plugin, tmp_path, monkeypatch):
    dest = tmp_path / "leaderboards"
    (dest / "toy").mkdir(parents=True)
    shutil.copy(PUBLISHED_TOY, dest / "toy" / "results.jsonl")
    published = leaderboard.frame(leaderboard.load_published(dest, "toy"))
    df = leaderboard.build(with_plugin, "toy", dest)
    local = df[df["origin"] == "local"]
    assert set(local["method"]) == {"bon", "ppo", "nologprob"} and len(local) == 5
    # a local row replaces the published row with the same settings (bon n=1 and n=4); the rest stay
    replaced = set(published["config_hash"]) & set(local["config_hash"])
    assert replaced == set(local.loc[local["method"] == "bon", "config_hash"])
    assert len(df) == len(published) - len(replaced) + len(local)
    assert (df.loc[df["origin"] == "published", "method"] != "nologprob").all()
    together = leaderboard.pareto(df["kl"].to_numpy(), df["win_rate"].to_numpy())
    assert (df["pareto"].to_numpy() == together).all()  # one front over local and published rows
    monkeypatch.setattr(cli.console, "width", 250)  # the whole table on one line per row
    result = CliRunner().invoke(
        cli.app,
        ["leaderboard", "build", "--task", "toy", "--out", str(with_plugin), "--dest", str(dest), "--with-published"],
    )
    assert result.exit_code == 0, result.output
    assert "published" in result.output and "nologprob" in result.output
    board = leaderboard.publish(with_plugin, "toy", dest, with_published=True)
    md = (board / "leaderboard.md").read_text()
    assert "| published" not in md and "| local" not in md  # a publication's rows are all its own
    assert md.count("| nologprob ") == 1 and "rows:" not in md
    merged = [json.loads(x) for x in (board / "results.jsonl").read_text().splitlines()]
    assert len(merged) == df["seeds"].sum()


def test_the_index_links_every_board(with_plugin, tmp_path):
    for task in ("imdb", "aclsum"):
        (tmp_path / task).mkdir()
        for name in ("leaderboard.csv", "winrate_kl.png"):
            shutil.copy(REPO / "leaderboards" / task / name, tmp_path / task / name)
    leaderboard.publish(with_plugin, "toy", tmp_path)
    page = (tmp_path / "index.html").read_text()
    for task in ("toy", "imdb", "aclsum"):
        assert f'href="{task}/index.html"' in page and f'src="{task}/winrate_kl.png"' in page


def test_the_page_escapes_every_string(swept):
    df = leaderboard.build(swept / "runs", "toy")
    df.loc[0, "setting"] = '<script>alert("x")</script>'
    page = leaderboard.page(df, leaderboard.matched_kl(df), "toy <b>", [])
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "toy &lt;b&gt;" in page


def test_an_unknown_task_has_no_leaderboard(swept):
    with pytest.raises(store.StoreError, match="no finished runs of task 'imdb'"):
        leaderboard.build(swept / "runs", "imdb")


CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
# Run in the page after its own script: sort by win rate twice, find the Pareto highlight, measure the widest box.
PROBE = """<script>
(function () {
  var table = document.getElementById("board"), heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var col = heads.findIndex(function (th) { return th.textContent.indexOf("win rate") === 0; });
  function values() {
    return Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[col].dataset.value; });
  }
  var out = {before: values()};
  heads[col].click(); out.ascending = values();
  heads[col].click(); out.descending = values();
  out.pareto = table.querySelectorAll("tbody tr.pareto").length;
  out.paretoYes = Array.prototype.filter.call(table.querySelectorAll("tbody tr.pareto"),
    function (r) { return r.textContent.indexOf("yes") >= 0; }).length;
  out.paretoColour = getComputedStyle(table.querySelector("tr.pareto td")).backgroundColor;
  out.plainColour = getComputedStyle(table.querySelector("tbody tr:not(.pareto) td")).backgroundColor;
  out.width = window.innerWidth;
  out.scrollWidth = document.documentElement.scrollWidth;
  out.widest = Math.max.apply(null, Array.prototype.map.call(document.querySelectorAll("body *"),
    function (e) { return e.getBoundingClientRect().right; }));
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium (Debian package chromium) is not installed")
def test_the_published_page_sorts_highlights_and_fits_1280_px_in_headless_chromium(with_plugin, tmp_path):
    page = leaderboard.publish(with_plugin, "toy", tmp_path) / "index.html"
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert 'id="probe"' in dom, proc.stderr[-2000:]
    out = json.loads(dom.split('<pre id="probe">')[1].split("</pre>")[0].replace("&quot;", '"'))
    df = leaderboard.build(with_plugin, "toy")
    published = sorted(q.name for q in page.parent.glob("*.png"))
    assert "training.png" in published  # the fixture's ppo run trained: its curves are on the page too
    assert len(out["before"]) == len(df) == 5 and dom.count("data:image/png;base64,") == len(published) == 3
    numbers = [float(v) for v in out["ascending"] if v]
    assert numbers == sorted(numbers) and numbers != [float(v) for v in out["before"] if v]
    assert [float(v) for v in out["descending"] if v] == sorted(numbers, reverse=True)
    assert out["pareto"] == out["paretoYes"] == int(df["pareto"].sum()) > 0
    assert out["paretoColour"] != out["plainColour"]
    assert out["width"] == 1280 and out["scrollWidth"] <= 1280 and out["widest"] <= 1280, out


def test_a_softbon_row_whose_kl_comes_from_the_pool_is_ranked_plotted_and_named(tmp_path):
    """On a task that cannot be enumerated, soft best-of-n's KL is `kl_pool`: the board reads it as the row's KL,
    names its source and plots the row (here toy's runs without the exact values and the Monte Carlo KL that its
    enumeration gives, as on imdb)."""
    out = tmp_path / "runs"
    for cell in (("bon", {"n": 4}), ("softbon", {"n": 4, "lambda": 0.5})):
        execute(resolve("toy", *cell), out)
    runs = board_runs.load_runs(out, "toy")
    for run in runs:
        metrics = run["results"]["metrics"]
        run["results"]["metrics"] = {k: v for k, v in metrics.items() if not k.endswith("_exact") and k != "kl_mc"}
    df = table.frame(runs)
    row = df[df["method"] == "softbon"].iloc[0]
    assert row["kl_source"] == "pool" and row["kl"] == pytest.approx(row["kl_pool"]) and row["kl"] > 0
    assert any("pool" in note for note in leaderboard.footnotes(df)) or "pool" in leaderboard.markdown(
        df, leaderboard.matched_kl(df), "toy"
    )
    path = tmp_path / "winrate_kl.png"
    plots.plot(df, "toy", "win_rate", path, runs)
    assert path.stat().st_size > 0


def test_reevaluated_ranks_each_runs_latest_reevaluation(tmp_path):
    from harness.run import reevaluate

    out = tmp_path / "runs"
    first = execute(resolve("toy", "bon", {"n": 2}), out)
    again = reevaluate(first.path, {"pool_size": 16})  # best-of-2 read from a smaller pool: other MC values
    own, latest = first.results["metrics"]["win_rate"]["mean"], again.results["metrics"]["win_rate"]["mean"]
    assert own != latest
    plain = table.frame(board_runs.load_runs(out, "toy"))
    assert plain["win_rate_mc"].tolist() == [pytest.approx(own)]
    reread = table.frame(board_runs.load_runs(out, "toy", reevaluated=True))
    assert reread["win_rate_mc"].tolist() == [pytest.approx(latest)]
    assert (
        board_runs.row_key(board_runs.load_runs(out, "toy", reevaluated=True)[0]["config"])["task"]["evaluation"][
            "pool_size"
        ]
        == 16
    )  # the row names the settings it was evaluated with
