"""benchmarks/gap.py: each trained row's target, best-of-n at its KL and the plateau verdict, on rows built by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("gap", Path(__file__).parents[1] / "benchmarks" / "gap.py")
assert spec is not None and spec.loader is not None
gap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gap)


def row(method, config, win, kl, steps=0):
    return {
        "method": method,
        "setting": " ".join(f"{k}={v}" for k, v in config.items()),
        "config": config,
        "seed_list": [0],
        "steps": steps,
        "win_rate": win,
        "kl": kl,
    }


BON = [row("bon", {"n": n}, (w, w, w), (k, k, k)) for n, w, k in ((1, 0.5, 0.0), (2, 2 / 3, 0.1931), (4, 0.8, 0.6363))]
SOFT = [row("softbon", {"n": 128, "lambda": 0.1}, (0.95, 0.94, 0.96), (2.0, 1.9, 2.1))]


@pytest.mark.parametrize(
    ("method", "config", "expected"),
    [
        ("vbon", {"n": 4, "variant": "exact"}, "bon n=4"),
        ("bonbon", {"n": 2}, "bon n=2"),
        ("bond", {"n": 2, "iterations": 2}, "bon n=4"),  # iterated BOND aims at best-of-n ** iterations
        ("ppo", {"beta": 0.1}, "softbon n=128 lambda=0.1"),
    ],
)
def test_a_trained_row_finds_its_target_row(method, config, expected):
    name, target = gap.target(row(method, config, None, None), BON + SOFT, pool_size=128)
    assert name == expected
    assert target is not None and target["setting"] == expected.split(" ", 1)[1]


@pytest.mark.parametrize(("method", "config"), [("vbon", {"n": 4, "variant": "released"}), ("jbond", {"eta": 0.2})])
def test_a_row_without_a_fixed_target_gets_none(method, config):
    assert gap.target(row(method, config, None, None), BON, pool_size=128) == ("", None)


def test_best_of_n_at_a_kl_is_interpolated_between_its_rows_and_blank_outside():
    assert gap.bon_at(0.1931, BON) == pytest.approx(2 / 3)
    mid = (0.1931 + 0.6363) / 2
    assert gap.bon_at(mid, BON) == pytest.approx((2 / 3 + 0.8) / 2)
    assert gap.bon_at(0.7, BON) is None


def test_the_plateau_verdict_compares_the_move_with_the_narrower_half_width(capsys):
    t = row("vbon", {"n": 8, "steps": 80}, (0.68, 0.66, 0.70), (0.74, 0.67, 0.80))
    close = row("vbon", {"n": 8, "steps": 160}, (0.69, 0.675, 0.705), (0.78, 0.72, 0.84))  # moves 0.01 and 0.04
    far = row("ppo", {"beta": 0.1, "steps": 80}, (0.75, 0.74, 0.77), (1.5, 1.4, 1.6))
    farther = row("ppo", {"beta": 0.1, "steps": 160}, (0.88, 0.87, 0.89), (4.4, 4.2, 4.6))
    # moves 0.012 in win rate: inside the first run's half-width 0.02, outside the second's 0.01
    wide = row("bond", {"n": 8, "steps": 80}, (0.70, 0.68, 0.72), (0.5, 0.4, 0.6))
    narrow = row("bond", {"n": 8, "steps": 160}, (0.712, 0.702, 0.722), (0.5, 0.4, 0.6))
    gap.plateau([t, close, far, farther, wide, narrow])
    lines = capsys.readouterr().out.splitlines()[2:]
    assert len(lines) == 3
    assert lines[0].endswith("| yes |"), lines[0]
    assert lines[1].endswith("| no: win_rate, kl |"), lines[1]
    assert lines[2].endswith("| no: win_rate |"), lines[2]


def test_the_plateau_check_pairs_only_rows_of_the_same_seeds(capsys):
    three = row("vbon", {"n": 8, "steps": 80}, (0.67, 0.64, 0.70), (0.75, 0.65, 0.87)) | {"seed_list": [0, 1, 2]}
    one = row("vbon", {"n": 8, "steps": 160}, (0.69, 0.68, 0.71), (0.73, 0.68, 0.79))
    gap.plateau([three, one])
    assert capsys.readouterr().out.splitlines()[2:] == []
