"""Progress bars: drawn on stderr where it is a terminal, silent elsewhere (CI, pipes); building a reference pool
shows its sampling and scoring."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import harness.progress
from harness.pool import PoolCache
from harness.progress import progress, track


def _stderr(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> io.StringIO:
    """Where the bars go, as a terminal or not (a real rich console writing into a buffer)."""
    buffer = io.StringIO()
    monkeypatch.setattr(harness.progress, "_console", Console(file=buffer, force_terminal=terminal, width=120))
    return buffer


@pytest.mark.parametrize("terminal", [True, False])
def test_bars_are_drawn_on_a_terminal_and_nowhere_else(monkeypatch, terminal):
    buffer = _stderr(monkeypatch, terminal)
    assert list(track(range(3), "counting")) == [0, 1, 2]
    with progress("stepping", 2) as bar:
        bar.advance(bar.task_ids[0], 2)
    if terminal:
        assert "counting" in buffer.getvalue() and "stepping" in buffer.getvalue()
    else:
        assert buffer.getvalue() == ""


def test_building_a_pool_shows_sampling_then_scoring_and_reusing_it_shows_nothing(toy, tmp_path, monkeypatch):
    buffer = _stderr(monkeypatch, terminal=True)
    PoolCache(tmp_path).get(toy, 4, seed=0)
    drawn = buffer.getvalue()
    assert "reference pool (4 per prompt, 8 prompts): sampling" in drawn
    assert "reference pool (4 per prompt, 8 prompts): proxy reward" in drawn
    buffer = _stderr(monkeypatch, terminal=True)
    PoolCache(tmp_path).get(toy, 4, seed=0)  # from disk: nothing to wait for
    assert buffer.getvalue() == ""
