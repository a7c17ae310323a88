"""Sweeps: a grid of task x method x hyperparameters x seeds from one YAML file, every cell an ordinary run in the
store. Finished cells are skipped and interrupted ones resume from their checkpoints, so re-running a sweep
finishes only what is missing. Cells run one after another here (`local`) or as Ray tasks (`ray`).

    tasks: [toy]
    seeds: [0, 1, 2]
    evaluation: {samples_per_prompt: 64}    # optional overrides of the tasks' evaluation settings
    resources: {num_cpus: 1, num_gpus: 0}   # each cell's Ray resource request
    methods:
      bon: {n: [1, 2, 4, 8]}                # a list is a grid axis
      vbon:                                 # a list of blocks: several grids for one method
        - {variant: exact, n: [2, 4]}
        - {variant: l1, n: 4}

The whole file is validated (keys, names, every cell's hyperparameters) before any cell starts; an error names
the file and line.
"""

from __future__ import annotations

import itertools
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import yaml12
from harness.registry import BadNameError, UnknownNameError, package_modules
from harness.run import ConfigError, RunSpec, execute, resolve
from harness.seeding import MAX_SEED
from harness.store import StoreError

log = logging.getLogger(__name__)

MAX_CELLS = 10_000  # cells of one sweep file (each is validated before any runs)


class SweepError(ConfigError):
    """A bad sweep file; the message names the file, the line and the bad value."""


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each cell asks Ray for.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs each cell asks Ray for.")


Params = dict[str, Any]


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[str] = Field(min_length=1, description="Registered tasks.")
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]] = Field(
        [0], min_length=1, description="Seeds; every cell runs once per seed."
    )
    evaluation: dict[str, Any] = Field(default_factory=dict, description="Overrides of the evaluation settings.")
    resources: Resources = Field(default_factory=Resources)
    methods: dict[str, Params | list[Params]] = Field(min_length=1, description="Method -> grid block(s).")


@dataclass(frozen=True)
class Cell:
    task: str
    method: str
    params: Params
    seed: int
    evaluation: Params = field(default_factory=dict)

    def spec(self) -> RunSpec:
        return resolve(self.task, self.method, self.params, seed=self.seed, evaluation=self.evaluation)


@dataclass
class Sweep:
    path: Path
    file: SweepFile
    cells: list[Cell]


def grid(block: Params) -> list[Params]:
    """Every combination of the block's list-valued entries (the other entries are fixed)."""
    axes = {k: v if isinstance(v, list) else [v] for k, v in block.items()}
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def shipped() -> dict[str, str]:
    """The sweep files that ship with the harness (the repository's sweeps/ folder), by name."""
    return dict(package_modules("harness.sweeps", suffix=".yaml"))


def locate(name: str) -> Path:
    """A sweep file by path, or a shipped one by name (`toy` is the repository's sweeps/toy.yaml)."""
    if Path(name).is_file():
        return Path(name)
    if name in shipped():
        return Path(shipped()[name])
    raise SweepError(f"sweep file {name!r} not found (shipped sweeps: {', '.join(sorted(shipped())) or 'none'})")


def load(path: Path) -> Sweep:
    """Parse and validate a sweep file and every one of its cells; nothing runs."""
    try:
        text = yaml12.read(path)
        root = yaml12.compose(text)
        raw = yaml12.load(text)
    except OSError as e:
        raise SweepError(f"cannot read sweep file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SweepError(f"sweep file {path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: a sweep file is a mapping with keys {', '.join(SweepFile.model_fields)}")

    def where(*loc: str | int) -> str:
        return f"{path}:{_line(root, loc)}"

    try:
        sweep = SweepFile.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(err["loc"])
        what = ".".join(str(x) for x in loc)
        if err["type"] == "extra_forbidden":
            accepted = _accepted(loc)
            raise SweepError(f"{where(*loc)}: unknown key {what!r}; accepted: {accepted}") from None
        raise SweepError(f"{where(*loc)}: {what} = {err.get('input')!r}: {err['msg']}") from None

    def check(cell: Cell, block_loc: tuple[str | int, ...], block: Params) -> Cell:
        loc: tuple[str | int, ...]
        try:
            cell.spec()
        except (UnknownNameError, BadNameError) as e:
            kind = getattr(e, "kind", "task" if "task" in str(e) else "method")
            loc = ("tasks", sweep.tasks.index(cell.task)) if kind == "task" else ("methods", cell.method)
            raise SweepError(f"{where(*loc)}: {e}") from None
        except ConfigError as e:
            bad = e.fields[0].split(".")[0] if e.fields else None
            if str(e).startswith("invalid evaluation"):
                loc = ("evaluation", bad) if bad in sweep.evaluation else ("evaluation",)
            elif str(e).startswith(("task ", "invalid task")):
                loc = ("tasks", sweep.tasks.index(cell.task))
            else:
                loc = (*block_loc, bad) if bad in block else block_loc
            raise SweepError(f"{where(*loc)}: {e}") from None
        return cell

    blocks: list[tuple[str, tuple[str | int, ...], Params]] = []
    for method, given in sweep.methods.items():
        for b, block in enumerate(given if isinstance(given, list) else [given]):
            block_loc: tuple[str | int, ...] = (
                ("methods", method, b) if isinstance(given, list) else ("methods", method)
            )
            empty = [k for k, v in block.items() if v == []]
            if empty:
                raise SweepError(f"{where(*block_loc, empty[0])}: {empty[0]} is an empty list: the grid has no cells")
            # one cell of the block first, so that an unknown key is named before the grid is counted or expanded
            first = {k: v[0] if isinstance(v, list) else v for k, v in block.items()}
            check(Cell(sweep.tasks[0], method, first, sweep.seeds[0], sweep.evaluation), block_loc, block)
            blocks.append((method, block_loc, block))
    per_block = [math.prod(len(v) for v in block.values() if isinstance(v, list)) for _, _, block in blocks]
    total = sum(per_block) * len(sweep.tasks) * len(sweep.seeds)
    if total > MAX_CELLS:
        raise SweepError(f"{path}: the grid has {total} cells (at most {MAX_CELLS}): split it into several sweep files")
    cells = [
        check(Cell(task, method, params, seed, sweep.evaluation), block_loc, block)
        for method, block_loc, block in blocks
        for params in grid(block)
        for task in sweep.tasks
        for seed in sweep.seeds
    ]
    return Sweep(path, sweep, cells)


def _accepted(loc: tuple[Any, ...]) -> str:
    model: type[BaseModel] = SweepFile if len(loc) == 1 else Resources
    return ", ".join(model.model_fields)


def _line(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int:
    """1-based line of the deepest node along `loc` (mapping keys and sequence indexes) in a composed YAML tree."""
    line = 1 if node is None else node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


@dataclass
class Outcome:
    cell: Cell
    path: str | None = None
    reused: bool = False
    error: str | None = None
    seconds: float = 0.0  # wall clock of the cell in this sweep
    metrics: dict[str, float] = field(default_factory=dict)  # metric name -> mean over prompts


def run_cell(cell: Cell, out: Path, force: bool = False) -> Outcome:
    """One cell: an ordinary run (skipped when it already finished, resumed when it was interrupted)."""
    t0 = time.perf_counter()
    try:
        result = execute(cell.spec(), out, force=force)
    except (FloatingPointError, ValueError, RuntimeError, OSError, StoreError) as e:
        log.error("cell %s/%s %s seed %d failed: %s", cell.task, cell.method, cell.params, cell.seed, e)
        return Outcome(cell, error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)
    metrics = {name: m["mean"] for name, m in result.results.get("metrics", {}).items()}
    return Outcome(cell, str(result.path), result.reused, seconds=time.perf_counter() - t0, metrics=metrics)


OnDone = Callable[[Outcome], None]  # called as each cell finishes


def run_local(sweep: Sweep, out: Path, force: bool = False, on_done: OnDone | None = None) -> list[Outcome]:
    from harness.progress import progress

    outcomes = []
    with progress(f"sweep {sweep.path.name}", len(sweep.cells)) as bar:
        for cell in sweep.cells:
            outcomes.append(run_cell(cell, out, force))
            bar.advance(bar.task_ids[0])
            if on_done is not None:
                on_done(outcomes[-1])
    return outcomes


def run_ray(
    sweep: Sweep, out: Path, address: str | None = None, force: bool = False, on_done: OnDone | None = None
) -> list[Outcome]:
    """Each cell one Ray task with the sweep's resource request, on a local Ray instance (address None) or the
    cluster at `address`."""
    import ray

    from harness.progress import progress

    handler = signal.getsignal(signal.SIGTERM)
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, logging_level=logging.WARNING)
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)  # Ray's own handler dumps a crash report: SIGTERM stops as Ctrl-C does
    res = sweep.file.resources
    task = ray.remote(run_cell).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
    submit = task.remote
    pending = {submit(cell, out.resolve(), force): i for i, cell in enumerate(sweep.cells)}  # type: ignore[call-arg]
    outcomes: list[Outcome | None] = [None] * len(sweep.cells)
    with progress(f"sweep {sweep.path.name} on ray", len(sweep.cells)) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            outcome = ray.get(done[0])
            outcomes[pending.pop(done[0])] = outcome
            bar.advance(bar.task_ids[0])
            if on_done is not None:
                on_done(outcome)
    return [o for o in outcomes if o is not None]
