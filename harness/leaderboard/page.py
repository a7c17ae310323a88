"""The leaderboard as web pages: one self-contained page per board (sortable columns, Pareto rows highlighted,
the board's explanation, intervals under their values, off-target columns in a collapsible table, plots
inlined) and an index of every board with its headline plot. Every string from the data is escaped."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from harness.leaderboard.runs import PUBLISHED
from harness.leaderboard.table import beside_columns
from harness.leaderboard.text import (
    FINDINGS_LEAD,
    TRAINING_LEAD,
    explanation,
    footnotes,
    header,
    matched_table,
    number,
    shown_columns,
    uniform_source,
)
from harness.metrics import QUANTITIES

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;padding:0 1em;max-width:1240px;
color:#1d1d1f;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.3em} h2{font-size:1.2em;margin-top:1.6em}
p.about{font-size:13px;color:#333;margin:.4em 0}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:4px 6px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
th{position:sticky;top:0;background:#f4f4f6;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:9px}
td.text,th.text{text-align:left} td.setting{min-width:9em;overflow-wrap:break-word}
#beside td.setting{white-space:nowrap} #beside th{white-space:normal;overflow-wrap:anywhere;min-width:7em}
td.num{white-space:nowrap}
.ci{display:block;color:#666;font-size:11px} .src{color:#666;font-size:10.5px;margin-left:.3em}
tr.pareto td{background:#fff4d6} tr.pareto td:first-child{box-shadow:inset 4px 0 #E69F00}
tr.published td{color:#444}
code{font-size:12px;background:#f4f4f6;padding:0 .2em}
.scroll{overflow-x:auto;max-width:100%}
details{margin:1em 0} summary{cursor:pointer;font-weight:600}
ul.notes{font-size:12.5px;color:#333}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1em}
.plots img{width:100%;height:auto}
.boards{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:1.5em}
.boards a{color:#0072B2;font-weight:600} .boards img{width:100%;height:auto;border:1px solid #eee}
"""

# Click a header to sort by it (numbers by their value, text by its words; empty cells last), again to reverse.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var c = row.cells[col];
        return c.hasAttribute("data-value") ? c.getAttribute("data-value") : c.textContent.trim();
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y), d;
        d = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return up ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _text(s: str) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(s))


def _td(df: pd.DataFrame, r: pd.Series, col: str) -> str:
    """One cell: the value with its interval on a line of its own (and its source where the column mixes them);
    the raw number in data-value, for sorting."""
    value = r[col]
    if f"{col}_lo" in df.columns:
        if pd.isna(value):
            return '<td class="num" data-value="">-</td>'
        inner = html.escape(number(value))
        if col in QUANTITIES and uniform_source(df, col) is None:
            inner += f'<span class="src">{html.escape(str(r[f"{col}_source"]))}</span>'
        if not pd.isna(r[f"{col}_lo"]):
            inner += f'<span class="ci">[{number(r[f"{col}_lo"])}, {number(r[f"{col}_hi"])}]</span>'
        return f'<td class="num" data-value="{value!r}">{inner}</td>'
    if col == "pareto":
        return f'<td class="text" data-value="{int(value)}">{"yes" if value else ""}</td>'
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{html.escape(str(value))}</td>'
    kind = "text setting" if col == "setting" else "text"
    return f'<td class="{kind}">{html.escape(str(value))}</td>'


def _table(df: pd.DataFrame, columns: list[str], id_: str) -> str:
    def th(col: str) -> str:
        kind = ' class="text"' if col in ("method", "setting", "origin", "config_hash") else ""
        return f"<th{kind}>{html.escape(header(df, col))}</th>"

    rows = []
    for _, r in df.iterrows():
        classes = [c for c, on in (("pareto", r["pareto"]), ("published", r["origin"] == PUBLISHED)) if on]
        attr = f' class="{" ".join(classes)}"' if classes else ""
        rows.append(f"<tr{attr}>" + "".join(_td(df, r, c) for c in columns) + "</tr>")
    return (
        f'<table class="sortable leaderboard" id="{id_}"><thead><tr>{"".join(th(c) for c in columns)}</tr></thead>'
        f"<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _simple(table: pd.DataFrame) -> str:
    head = "".join(f'<th class="text">{html.escape(str(c))}</th>' for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="text">{html.escape(str(v))}</td>' for v in row) + "</tr>"
        for row in table.itertuples(index=False)
    )
    return f'<table class="matched"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def page(
    df: pd.DataFrame,
    matched: pd.DataFrame,
    task: str,
    plots: list[Path],
    findings: bool = False,
    training: Path | None = None,
) -> str:
    """One self-contained HTML page (plots inlined); `findings`: link the board's hand-written FINDINGS.md;
    `training`: link the training curves and show them after the plots."""
    title = html.escape(f"Leaderboard: {task}")
    beside = beside_columns(df)
    main = [c for c in shown_columns(df) if c not in beside]
    about = "".join(f'<p class="about">{_text(p)}</p>' for p in explanation(df))
    if training is not None:
        about = (
            f'<p class="about">{html.escape(TRAINING_LEAD)} <a href="{training.name}">{training.name}</a>.</p>' + about
        )
        plots = [*plots, training]
    if findings:
        about = f'<p class="about">{html.escape(FINDINGS_LEAD)} <a href="FINDINGS.md">FINDINGS.md</a>.</p>' + about
    notes = "".join(f"<li>{_text(n)}</li>" for n in footnotes(df))
    more = ""
    if beside:
        more = (
            f"<details><summary>Off-target and task metrics ({len(beside)} columns)</summary>"
            f'<div class="scroll">{_table(df, ["method", "setting", *beside], "beside")}</div></details>'
        )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n{about}\n"
        f'<div class="scroll">{_table(df, main, "board")}</div>\n<ul class="notes">{notes}</ul>\n{more}\n'
        f"<h2>Best win rate at matched KL</h2>\n"
        '<p class="about">The row with the highest win rate among those with KL within each budget; the reference '
        "policy (win rate 1/2 at KL 0, by definition) is a candidate, so no budget's winner is below it.</p>\n"
        f"{_simple(matched_table(matched))}\n"
        f'<h2>Plots</h2>\n<div class="plots">{"".join(_img(p) for p in plots)}</div>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )


# In every index page the harness writes, and looked for before it replaces one: publishing never overwrites an
# index.html that it did not write.
INDEX_MARK = "Generated by <code>harness leaderboard publish</code>"


def index(dest: Path) -> str:
    """The page of every board under `dest`, each linked with its headline plot (win rate against KL)."""
    boards = sorted(p.parent for p in dest.glob("*/leaderboard.csv"))
    cards = []
    for board in boards:
        df = pd.read_csv(board / "leaderboard.csv")
        name = html.escape(board.name)
        methods = html.escape(", ".join(sorted(df["method"].astype(str).unique())))
        plot = (
            f'<a href="{name}/index.html"><img alt="{name}: win rate against KL" src="{name}/winrate_kl.png"></a>'
            if (board / "winrate_kl.png").is_file()
            else ""
        )
        cards.append(
            f'<section><h2><a href="{name}/index.html">{name}</a></h2>'
            f'<p class="about">{len(df)} rows; methods: {methods}. '
            f'<a href="{name}/leaderboard.md">leaderboard.md</a> · <a href="{name}/leaderboard.csv">csv</a> · '
            f'<a href="{name}/results.jsonl">raw results</a></p>{plot}</section>'
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Leaderboards</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>Leaderboards</h1>\n"
        f'<p class="about">{INDEX_MARK}; do not edit. Each board ranks '
        "the methods of one task by win rate against the reference policy and KL from it.</p>\n"
        f'<div class="boards">{"".join(cards)}</div>\n</body></html>\n'
    )
