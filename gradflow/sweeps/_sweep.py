"""One runner for many solves: a grid of points (alpha, tau, width, seed, ...) solved as batched
programs, checkpointed per point, returned as one immutable result stacked along a point axis;
and the alpha sweep with its rate fits, on top of it."""

import dataclasses
import enum
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._options import SolveOptions, decide, options_from
from .._problem import Problem
from .._solution import Solution, SolveInfo
from .._solve import STOP_REVISION, solve
from .._theory import PredictedExponents
from ..analysis._stats import RateFit, fit_rate
from ..solvers._auto import batch_stiffness
from ._computation import Computation
from ._distributed import barrier, owner, share
from ._fingerprint import (
    FORMAT,
    problem_fingerprint,
    stable_repr,
    tree_fingerprint,
)
from ._io import json_form, nan_array
from ._keys import duplicate_keys, point_key
from ._records import METRICS, point_record, solution_from_record, solution_record
from ._store import ResultStore, resume

DISTANCES = ("param_distance", "param_gap", "output_gap")
# The finite-horizon theorem of Chizat et al.: exponents of sup_t distance vs alpha (h(w0) = 0),
# derived in theory/ (sympy, loaded at first access).
PREDICTED_SLOPES = PredictedExponents("finite_horizon", DISTANCES)
"""The exponents of the sup distances in alpha that the finite-horizon theorem predicts when
h(w0) = 0: O(1/alpha), O(1/alpha^2), O(1/alpha). A read-only mapping; its values are
`theory.finite_horizon().exponents`, derived with sympy on first access."""


class SweepStatus(enum.Enum):
    """How one point of a [`gradflow.Sweep`][] ended (`sweep.status[i]`); each member's value
    is its description. `sweep.is_(gf.SweepStatus.computed)` is a boolean array over the
    points."""

    computed = "solved in this call"
    resumed = "read back from the store, solved by an earlier call"
    failed = "the solve ended unsuccessfully (see `errors`)"
    raised = "building or solving the point raised an exception (see `errors`)"
    elsewhere = "a point of another process, not in the store (failed there, or still running)"


class Sweep(eqx.Module):
    r"""The result of [`gradflow.sweep`][]: every point's solution, stacked along a leading
    point axis in the order of `points`. Immutable.

    - `keys`, `points`: each point's key in the store (`"tau=0.1_seed=3"`) and its values.
    - `solution`: one [`gradflow.Solution`][] whose arrays have a leading point axis
      (`sweep.solution.loss[i]` is point `i`'s loss at every save time); NaN where a point has
      no solution (it raised, or belongs to another process). `params` and `linear_params`
      (with `save_params=True`) are kept when every point with a solution has them, all of
      one shape (e.g. an alpha sweep solved in this call; a point read back from a store has
      none), else `None`. `stats` are float arrays (NaN where a point's solver does not report
      a statistic). `None` if no point has a solution.
    - `measures`: what the sweep's `measure` computed at each point (read back with the point
      from the store), stacked along the point axis; NaN where a point has none.
    - `outputs[i]`: the result of point `i` where `build` returned a
      [`gradflow.Computation`][] (a dict, as stored), else `None`.
    - `status`: a [`gradflow.SweepStatus`][] per point; `errors[i]`: `None` or why point `i`
      failed.
    - `infos[i]`: the [`gradflow.SolveInfo`][] of point `i` (its solver, tolerances and
      horizon: the `info` of `solution_at(i)`), with the batch's `solver="auto"` choice
      merged in; `None` where the point has no solution.
    - `seconds[i]`: the wall time spent on point `i` (its share of its batch);
      `compiled_groups`: how many programs were compiled; `wall_seconds`: the whole call.

    `sup(name)` and `final(name)` give one number per point; `to_dict()` is the JSON form.
    """

    keys: tuple[str, ...] = eqx.field(static=True)
    points: tuple[dict[str, Any], ...] = eqx.field(static=True)
    solution: Solution | None
    measures: dict[str, np.ndarray]
    outputs: tuple[dict[str, Any] | None, ...]
    status: tuple[SweepStatus, ...] = eqx.field(static=True)
    errors: tuple[str | None, ...] = eqx.field(static=True)
    infos: tuple[SolveInfo | None, ...] = eqx.field(static=True)
    seconds: np.ndarray
    compiled_groups: int = eqx.field(static=True)
    wall_seconds: float = eqx.field(static=True)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def succeeded(self) -> np.ndarray:
        """Boolean per point: solved successfully, now or by an earlier call."""
        return self.is_(SweepStatus.computed) | self.is_(SweepStatus.resumed)

    @property
    def resumed(self) -> np.ndarray:
        """Boolean per point: read back from the store."""
        return self.is_(SweepStatus.resumed)

    def is_(self, status: SweepStatus) -> np.ndarray:
        """Boolean per point: `status[i] is status`."""
        if not isinstance(status, SweepStatus):
            raise TypeError(f"`status` must be a gf.SweepStatus member; got {status!r}.")
        return np.array([s is status for s in self.status], dtype=bool)

    def _series(self, name: str) -> np.ndarray:
        if name not in METRICS:
            raise ValueError(f"`name` must be one of {METRICS}; got {name!r}.")
        values = None if self.solution is None else getattr(self.solution, name)
        if values is None:
            return np.full((len(self), 1), np.nan)
        return np.asarray(values, dtype=float)

    def sup(self, name: str) -> np.ndarray:
        r"""$\sup_t$ of the metric `name` (one of `METRICS`) at every point; NaN where the point
        did not succeed (a failed solve's sup would cover only the part that ran)."""
        values = self._series(name)
        with np.errstate(invalid="ignore"):
            out = np.array([np.nanmax(v) if np.isfinite(v).any() else np.nan for v in values])
        return np.where(self.succeeded, out, np.nan)

    def final(self, name: str) -> np.ndarray:
        """The metric `name` at the last save time, at every point; NaN where the point did not
        succeed."""
        return np.where(self.succeeded, self._series(name)[:, -1], np.nan)

    def solution_at(self, i: int) -> Solution | None:
        """Point `i`'s [`gradflow.Solution`][] (with its `info`), or `None` if it has none."""
        if self.solution is None or self.is_(SweepStatus.raised)[i]:
            return None
        if self.is_(SweepStatus.elsewhere)[i]:
            return None
        one = jax.tree_util.tree_map(lambda x: jnp.asarray(x[i]), self.solution)
        return dataclasses.replace(one, info=self.infos[i])

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dictionary per point: `key`, `point`, `status`, `error`, `seconds`,
        `sup` and `final` of every metric, `solution` (the solution's JSON form, with the keys
        of its [`gradflow.SolveInfo`][] at the top level), `measures`, and `output` (a
        [`gradflow.Computation`][]'s result)."""
        out = []
        sups = {m: self.sup(m) for m in METRICS}
        finals = {m: self.final(m) for m in METRICS}
        for i, key in enumerate(self.keys):
            sol = self.solution_at(i)
            out.append(
                {
                    "key": key,
                    "point": dict(self.points[i]),
                    "status": self.status[i].name,
                    "error": self.errors[i],
                    "seconds": float(self.seconds[i]),
                    "sup": {m: _num(sups[m][i]) for m in METRICS},
                    "final": {m: _num(finals[m][i]) for m in METRICS},
                    "solution": None if sol is None else solution_record(sol),
                    "measures": {k: v[i] for k, v in self.measures.items()},
                    "output": self.outputs[i],
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the points' `records()`, `compiled_groups` and `wall_seconds`."""
        return {
            "keys": list(self.keys),
            "records": self.records(),
            "compiled_groups": self.compiled_groups,
            "seconds": self.wall_seconds,
        }


def _num(v: Any) -> float | None:
    return None if not np.isfinite(v) else float(v)


def _point_key(point: dict[str, Any]) -> str:
    return point_key(**point)


# ---------------------------------------------------------------------------------------------
# Solutions stacked along the point axis.

_SOLUTION_SERIES = ("ts", *METRICS)


def _strip(sol: Solution, stats_keys: list[str], params: bool) -> Solution:
    """`sol` with numpy float arrays, `info=None`, exactly `stats_keys`, and its parameters only
    if `params`, so that the solutions of a sweep have one tree structure and stack."""

    def f(x):
        return None if x is None else jax.tree_util.tree_map(np.asarray, x)

    return Solution(
        **{k: None if getattr(sol, k) is None else np.asarray(getattr(sol, k), float)
           for k in _SOLUTION_SERIES},
        params=f(sol.params) if params else None,
        linear_params=f(sol.linear_params) if params else None,
        stats={k: np.asarray(sol.stats.get(k, np.nan), float) for k in stats_keys},
        result=jax.tree_util.tree_map(np.asarray, sol.result),
        alpha=np.asarray(sol.alpha, float),
        info=None,
    )  # fmt: skip


def _shape_tree(tree: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(np.shape(x), np.asarray(x).dtype.str) for x in leaves]


def _stack(solutions: list[Solution | None]) -> Solution | None:
    present = [s for s in solutions if s is not None]
    if not present:
        return None
    keys = sorted({k for s in present for k in s.stats})
    # Parameters are kept when every solved point has them, all of one shape (an alpha sweep
    # with save_params=True); points read back from a store have none.
    shapes = {repr(_shape_tree((s.params, s.linear_params))) for s in present}
    params = all(s.params is not None for s in present) and len(shapes) == 1
    template = _strip(present[0], keys, params)

    def nan(x):
        x = np.asarray(x)
        return np.full_like(x, np.nan) if np.issubdtype(x.dtype, np.inexact) else x

    # A point without a solution: NaN everywhere (its status says why).
    blank = dataclasses.replace(
        template,
        **{k: jax.tree_util.tree_map(nan, getattr(template, k))
           for k in (*_SOLUTION_SERIES, "params", "linear_params")},
        stats={k: np.asarray(np.nan) for k in keys},
        alpha=np.asarray(np.nan),
    )  # fmt: skip
    stripped = [blank if s is None else _strip(s, keys, params) for s in solutions]
    try:
        return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *stripped)
    except ValueError as exc:
        raise ValueError(
            "The points' solutions cannot be stacked (their save times differ in number); a "
            f"sweep saves every point at the same `ts`: {exc}"
        ) from None


def _stack_measures(measures: list[dict[str, Any] | None]) -> dict[str, np.ndarray]:
    names = sorted({k for m in measures if m is not None for k in m})
    out = {}
    for name in names:
        shapes = {np.shape(m[name]) for m in measures if m is not None and name in m}
        if len(shapes) != 1:
            raise ValueError(
                f"`measure` returned {name!r} with different shapes across the points "
                f"({sorted(shapes)}); return one shape at every point."
            )
        blank = np.full(shapes.pop(), np.nan)
        out[name] = np.stack(
            [np.asarray(m[name], float) if m is not None and name in m else blank for m in measures]
        )
    return out


def _statuses(names: list[str]) -> tuple[SweepStatus, ...]:
    return tuple(SweepStatus[n] for n in names)


# ---------------------------------------------------------------------------------------------
# The runner.


def _solve_batch(dynamic, static, options: SolveOptions):
    # Not jitted as a whole: `solve` calls its compiled integrator under `vmap`, and that
    # program takes `t1`, `ts` and a gradient-descent step as arrays. Points of one shape thus
    # share one compiled program across horizons, save times and steps (a tau sweep's points,
    # each with its own step), where a jit around the whole solve would bake them in as
    # constants and compile again for each batch.
    def one(dyn):
        return solve(eqx.combine(dyn, static), options=options)

    return jax.vmap(one)(dynamic)


def sweep(
    build: Callable[..., Problem],
    points: Sequence[dict[str, Any]],
    *,
    options: SolveOptions | None = None,
    point_options: Callable[..., dict[str, Any]] | None = None,
    store: str | Path | ResultStore | None = None,
    overwrite: bool = False,
    batch_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[list[dict[str, Any]]], None] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    only: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    measure: Callable[..., dict[str, Any]] | None = None,
    **solve_kwargs: Any,
) -> Sweep:
    r"""Solve many problems (a grid over $\alpha$, $\tau$, width, seed, ...): the single way to
    solve many points in gradflow. The points whose problems have the same shapes share **one**
    compiled program, vmapped over the points and sharded across `devices` (also across
    batches with other horizons, save times or gradient-descent steps: those enter the program
    as arrays); each finished point is written to `store`, so an interrupted sweep resumes
    where it stopped.

    **Arguments:**

    - `build`: `build(**point) -> gf.Problem`, called once per point (eagerly, to make the initial
      parameters, data and scale). Return the same `apply` object (e.g. one `gf.models.TwoLayer`
      per width) for points that should share a program. A point that is not one flow (SGD
      epochs, trials solved together, a closed form) returns a [`gradflow.Computation`][]
      instead: it is run once, alone, through the same store, resume and `callback`, and its
      result is `Sweep.outputs[i]`. The solve options (`t1`, `ts`, ...) are needed only where
      a point builds a problem.
    - `points`: the points, as dictionaries of JSON-able values (e.g. `{"tau": 0.1, "seed": 3}`);
      their keys in the store are `"tau=0.1_seed=3"`.
    - `options`: the [`gradflow.SolveOptions`][] every point shares; or, as in
      [`gradflow.solve`][], their keywords (`t1`, `ts`, `rtol`, `solver`, ...: `**solve_kwargs`)
      that build them (not both). `throw` is not allowed: failed points are recorded, not
      raised. Every point is saved at the same times, so the solutions stack.
    - `point_options`: `point_options(**point) -> dict`, the options of one point that differ
      from the shared ones (e.g. a gradient-descent step that depends on the point, or its own
      `t1` and `ts`), applied as `options.replace(**point_options(**point))` and checked
      there. Points with other options form other batches.
    - `store`: a folder or a [`gradflow.ResultStore`][]: points already stored are read back
      instead of solved. A folder is opened with the shared solve options as its
      configuration (another configuration raises [`gradflow.StoreError`][] naming the keys
      that differ) and locked while the sweep runs. Each stored point also records the
      fingerprint of what it computes (the jaxpr of the model and of the loss at the
      problem's shapes, the bytes of every array, see [`gradflow.problem_fingerprint`][]; the
      point's `SolveOptions`; the code of `measure`): a point stored for another computation
      (a changed `build`, a model edited in place, other options, another `measure`) is
      **never** reused;
      the sweep raises `StoreError` naming the points and the parts that differ, before
      solving anything. A corrupted point file is reported, set aside and recomputed.
    - `overwrite`: recompute the points stored for another problem (and, for a folder holding
      another configuration, discard its points) instead of raising.
    - `batch_size`: points per compiled call (default: all pending points of a shape group),
      rounded up to a multiple of the number of devices. A smaller batch checkpoints more often;
      the last batch is padded by repeating a point, so every batch reuses the compiled program.
      With `batch_size=1` (and one device) each point is one plain [`gradflow.solve`][] call,
      with its own step sizes and its own `solver="auto"` choice.
    - `devices`: shard the batch axis across these devices of this process
      (`jax.sharding.Mesh` over one axis); default one device.
    - `callback`: called after each batch with the JSON records of its points (progress,
      logging): `key`, `point`, `error`, `seconds`, `sup`, `final`, `solution`.
    - `process_index`, `process_count`: split the points across processes, point `i` to process
      `i % process_count`; default `jax.process_index()` and `jax.process_count()`. After
      `jax.distributed.initialize(...)` every process runs the same call: each solves its own
      points on its own devices and writes them to `store` (required, on a shared file
      system), then all wait at a barrier and every process returns the full result, read
      back from the store. Given explicitly without `jax.distributed` (e.g. the tasks of a
      SLURM array), each process solves its share and returns the others' points found in the
      store; the rest have status [`gradflow.SweepStatus`][]`.elsewhere`, and a rerun in one
      process assembles everything. See `docs/distributed.md`.
    - `only`: solve only the points with these keys; the others are read back from `store`
      where they are finished, else have status `elsewhere`.
    - `keys`: the points' keys in the store, one per point (default
      [`gradflow.experiments.point_key`][] of each point's values).
    - `measure`: `measure(problem, solution, **point) -> dict`, numbers or arrays computed from
      a successful point's solve (e.g. a test loss from `solution.params` with
      `save_params=True`); they are stored with the point, so a point read back from the store
      has them too, and stacked in `Sweep.measures` (NaN where a point has none). A point
      whose `measure` raises is recorded as raised and not stored.

    **Returns:** a [`gradflow.Sweep`][]: the solutions stacked along a point axis, with a status
    and an error message per point. A point that raises (in `build` or in its batch's solve) or
    whose solve ends unsuccessfully is recorded and the others are kept.

    Adaptive solves under `vmap` step together (every point takes the union of the steps), so a
    batched point agrees with its own solve to the tolerance, not bitwise, and a batch costs as
    much as its slowest point: batch points of similar difficulty.
    """
    start = time.perf_counter()
    if "throw" in solve_kwargs:
        raise ValueError("`throw` is not supported by `sweep`: failed points are recorded.")
    # The shared options, checked once at the call: a bad one is the caller's error, raised
    # before the first point is built (a point's failure is for what differs between points).
    options = _shared_options(options, solve_kwargs)
    points = [dict(p) for p in points]
    if not points or not all(isinstance(p, dict) for p in points):
        raise ValueError("`points` must be a non-empty list of dictionaries.")
    if keys is None:
        keys = [_point_key(p) for p in points]
    else:
        keys = [str(k) for k in keys]
        if len(keys) != len(points):
            raise ValueError(
                f"`keys` must hold one key per point; got {len(keys)} for {len(points)}."
            )
    repeated = duplicate_keys(keys, points)
    if repeated is not None:
        raise ValueError(
            f"`points` holds duplicates: {repeated}. Every point must be distinct (drop the "
            "repeats, or pass distinct `keys`)."
        )
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size}.")
    if only is not None and set(only) - set(keys):
        raise ValueError(
            f"`only` names unknown points {sorted(set(only) - set(keys))}; valid keys: {keys}."
        )
    _check_shared(devices, overwrite, callback, point_options, measure, build)
    index, count = share(process_index, process_count)
    if count > 1 and store is None:
        raise ValueError(
            f"A sweep across {count} processes needs `store=` (a folder all processes can "
            "read): the processes exchange their finished points through it."
        )
    devices = list(devices) if devices is not None else jax.local_devices()[:1]
    foreign = [d for d in devices if d.process_index != jax.process_index()]
    if foreign:
        raise ValueError(
            f"`devices` holds devices of other processes ({foreign[:3]}); each process solves "
            "its own points on its own devices: pass `devices=jax.local_devices()`."
        )

    def plan(point: dict[str, Any]) -> _Plan:
        # Planned when a point builds a problem (a `Computation` has no solve options).
        return _plan(options, point_options(**point) if point_options else {})

    opened_here = isinstance(store, (str, Path))
    if opened_here:
        config = {
            "t1": options.t1,
            "ts": options.ts,
            "solve": {
                name: stable_repr(value)
                for name, value in _fields(options)
                if name not in ("t1", "ts")
            },
        }
        store = ResultStore(
            store, config, overwrite=overwrite, process_index=index, process_count=count
        )
    run = _Run(build, points, keys, plan, measure, store, devices, index, count)
    run.wanted = set(keys) if only is None else set(only)
    try:
        run.solve(overwrite=overwrite, batch_size=batch_size, callback=callback)
    finally:
        if opened_here:
            store.close()
    return run.result(time.perf_counter() - start)


def _shared_options(options: Any, solve_kwargs: dict[str, Any]) -> SolveOptions:
    """The options every point shares: `options`, or the keywords that build them."""
    if options is not None and not isinstance(options, SolveOptions) and callable(options):
        raise TypeError(
            f"`options` must be a gf.SolveOptions (the options every point shares); got "
            f"{options!r}. A function of the point goes in `point_options`."
        )
    names = [f.name for f in dataclasses.fields(SolveOptions)]
    unknown = sorted(set(solve_kwargs) - set(names))
    if unknown:
        raise TypeError(
            f"`sweep` got unknown solve option(s) {unknown}: pass the options of "
            f"`gradflow.solve` ({', '.join(sorted(names))})."
        )
    return options_from(options, solve_kwargs)


def _check_shared(devices, overwrite, callback, point_options, measure, build):
    """The arguments every point shares but the solve options, checked once at the call."""
    if not callable(build):
        raise TypeError(
            f"`build` must be a function `build(**point) -> gf.Problem`; got {build!r}."
        )
    for name, fn in (
        ("callback", callback),
        ("point_options", point_options),
        ("measure", measure),
    ):
        if fn is not None and not callable(fn):
            raise TypeError(f"`{name}` must be a function or None; got {name}={fn!r}.")
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"`overwrite` must be True or False; got overwrite={overwrite!r}.")
    if devices is not None:
        if isinstance(devices, (jax.Device, str)) or not isinstance(devices, Sequence):
            raise TypeError(
                f"`devices` must be a list of jax devices such as `jax.local_devices()`; got "
                f"{devices!r}."
            )
        if len(devices) == 0:
            raise ValueError(
                "`devices` is empty: pass at least one device, e.g. `jax.local_devices()`, or "
                "leave it unset (one device)."
            )
        bad = [d for d in devices if not isinstance(d, jax.Device)]
        if bad:
            raise TypeError(f"`devices` must hold jax devices; got {bad[0]!r}.")


# Options added after stores were written, with the value every earlier solve had: left out
# of the fingerprint at that value, so that the points of an earlier store still resume.
_ADDED_OPTIONS = {"modified_order": 1}


def _fields(options: SolveOptions) -> list[tuple[str, Any]]:
    # The fields by name: a solver's or controller's arrays are leaves here (the fingerprint
    # hashes their bytes), where as static fields of the options they would be printed.
    fields = [
        (f.name, getattr(options, f.name))
        for f in dataclasses.fields(options)
        if f.name not in _ADDED_OPTIONS or getattr(options, f.name) != _ADDED_OPTIONS[f.name]
    ]
    if options.stop_loss is not None:
        # A solve with a stop returns other numbers under another revision of the stop.
        fields.append(("stop_revision", STOP_REVISION))
    return fields


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How one point is solved: its options, and their fingerprint (part of the point's
    identity in a store; points of one fingerprint and one shape share a batch)."""

    options: SolveOptions
    id: str


def _plan(shared: SolveOptions, changes: dict[str, Any]) -> _Plan:
    if not isinstance(changes, dict):
        raise TypeError(f"`point_options` must return a dict of solve options; got {changes!r}.")
    if "throw" in changes:
        raise ValueError("`throw` is not supported by `sweep`: failed points are recorded.")
    options = shared.replace(**changes) if changes else shared
    if options.t1 is None:
        raise ValueError("Give `t1` (the horizon) or `ts` (the save times; t1 = ts[-1]).")
    return _Plan(options, tree_fingerprint(_fields(options)))


class _Run:
    """The state of one call of `sweep`: what is solved, what is read back, what failed."""

    def __init__(self, build, points, keys, plan, measure, store, devices, index, count):
        self.build, self.points, self.keys = build, points, keys
        self.plan, self.measure = plan, measure
        self.plans: list[_Plan | None] = [None] * len(points)
        # Whatever shapes a stored record is part of its identity: the measure's code too.
        self.measure_id = tree_fingerprint(measure)
        self.store, self.devices = store, devices
        self.index, self.count = index, count
        n = len(points)
        self.status = ["elsewhere"] * n
        self.errors: list[str | None] = [None] * n
        self.solutions: list[Solution | None] = [None] * n
        self.infos: list[SolveInfo | None] = [None] * n
        self.measures: list[dict[str, Any] | None] = [None] * n
        self.outputs: list[dict[str, Any] | None] = [None] * n
        self.seconds = np.zeros(n)
        self.groups = 0
        self.wanted = set(keys)

    def owned(self, i: int) -> bool:
        return owner(i, self.count) == self.index

    def solves(self, i: int) -> bool:
        return self.owned(i) and self.keys[i] in self.wanted

    def _read_back(self, found: dict[int, dict[str, Any]]) -> None:
        for i, rec in found.items():
            if "output" in rec:  # a `Computation`'s point
                self.outputs[i] = rec["output"]
            else:
                # The stored options are this point's: they are part of its fingerprint.
                sol = solution_from_record(rec["solution"], self.plans[i].options)
                self.solutions[i], self.infos[i] = sol, sol.info
            self.status[i] = "resumed"
            self.seconds[i] = float(rec.get("seconds", 0.0))
            if "measures" in rec:
                self.measures[i] = {k: nan_array(v) for k, v in rec["measures"].items()}

    def solve(self, *, overwrite, batch_size, callback) -> None:
        # Every point is built (cheap next to a solve), so that each stored result, ours or
        # another process's, is checked against the problem it claims to solve.
        n = len(self.points)
        identities: list[dict[str, Any]] = [{} for _ in range(n)]
        problems: dict[int, Problem] = {}
        for i, point in enumerate(self.points):
            t0 = time.perf_counter()
            try:
                problem = self.build(**point)
            except TypeError:
                raise  # `build` called with the wrong arguments: every point would fail
            except Exception as exc:  # noqa: BLE001 - a point that cannot be built is reported
                self.status[i], self.errors[i] = "raised", f"{type(exc).__name__}: {exc}"
                self.seconds[i] = time.perf_counter() - t0
                continue
            if isinstance(problem, Computation):
                if self.store is not None:
                    identities[i] = {
                        "format": FORMAT,
                        "computation": tree_fingerprint((problem.fn, problem.kwargs)),
                    }
            elif isinstance(problem, Problem):
                self.plans[i] = self.plan(point)
                if self.store is not None:  # the identity is what a stored point is checked by
                    identities[i] = {
                        "format": FORMAT,
                        "problem": problem_fingerprint(problem),
                        "solve": self.plans[i].id,
                        "measure": self.measure_id,
                    }
            else:
                raise TypeError(
                    "`build` must return a gradflow.Problem (a flow) or a gradflow.Computation "
                    f"(any other computation); got {type(problem).__name__} at point {point}."
                )
            if self.solves(i):
                problems[i] = problem
        built = [i for i in range(n) if self.status[i] != "raised"]
        found = resume(
            self.store,
            self.keys,
            identities,
            owned=self.solves,
            recompute_stale=overwrite,
            positions=built,
            now="`build` now returns",
        )
        self._read_back(found.records)
        pending = {i: problems[i] for i in found.pending}
        self._compute(
            {i: c for i, c in pending.items() if isinstance(c, Computation)}, identities, callback
        )
        self._solve_groups(
            {i: p for i, p in pending.items() if isinstance(p, Problem)},
            identities,
            batch_size,
            callback,
        )
        if self.wanted != set(self.keys):
            for i in built:
                if self.status[i] == "elsewhere":
                    self.errors[i] = "not asked for (`only`), and not in the store"
        if self.count > 1:
            # The other processes' points: after the barrier they are all in the store (unless
            # a process failed them); without jax.distributed, whatever is there already.
            barrier("gradflow.sweep")
            missing = [i for i in built if self.status[i] == "elsewhere"]
            late = resume(self.store, self.keys, identities, owned=self.owned, positions=missing)
            self._read_back(late.records)
            for i in missing:
                if self.status[i] == "elsewhere":
                    self.errors[i] = (
                        f"not computed here: point of process {owner(i, self.count)} of "
                        f"{self.count}, not in the store {self.store.folder} (failed there, or "
                        "still running)"
                    )

    def _compute(self, computations, identities, callback) -> None:
        # One at a time, in the order of the points: a computation is its own program.
        for i, computation in computations.items():
            t0 = time.perf_counter()
            try:
                output = json_form(computation())
            except Exception as exc:  # noqa: BLE001 - one failed point never loses the others
                self.status[i], self.errors[i] = "raised", f"{type(exc).__name__}: {exc}"
                self.seconds[i] = time.perf_counter() - t0
                if callback is not None:  # with the traceback: a bug shows where it is
                    callback([{**self._json(i), "traceback": traceback.format_exc()}])
                continue
            self.seconds[i] = time.perf_counter() - t0
            self.outputs[i], self.status[i] = output, "computed"
            rec = {
                "key": self.keys[i],
                "point": self.points[i],
                "error": None,
                "seconds": float(self.seconds[i]),
                "output": output,
            }
            if self.store is not None:
                rec["fingerprint"] = identities[i]
                rec["process"] = {"index": self.index, "count": self.count}
                self.store.put(self.keys[i], rec)
            if callback is not None:
                callback([{**rec, "status": "computed"}])

    def _solve_groups(self, problems, identities, batch_size, callback) -> None:
        # Group the pending points by the static part and the shapes of their problems.
        groups: list[tuple[Any, Any, list[int], list[Any]]] = []
        for i, problem in problems.items():
            dynamic, static = eqx.partition(problem, eqx.is_array)
            shapes = jax.tree_util.tree_map(lambda x: (x.shape, str(x.dtype)), dynamic)
            sig = (
                jax.tree_util.tree_structure(dynamic),
                jax.tree_util.tree_leaves(shapes),
                self.plans[i].id,
            )
            for g in groups:
                if g[0] == sig and eqx.tree_equal(g[1], static):
                    g[2].append(i)
                    g[3].append(dynamic)
                    break
            else:
                groups.append((sig, static, [i], [dynamic]))
        problems.clear()
        self.groups = len(groups)
        ndev = len(self.devices)
        mesh = jax.sharding.Mesh(np.asarray(self.devices), ("points",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("points"))
        for _, static, idx, dyns in groups:
            size = len(idx) if batch_size is None else min(int(batch_size), len(idx))
            size = -(-size // ndev) * ndev
            for b in range(0, len(idx), size):
                chunk = list(range(b, min(b + size, len(idx))))
                plan = self.plans[idx[chunk[0]]]
                t_batch = time.perf_counter()
                try:
                    if size == 1:
                        # One point, one plain solve: its own steps and its own auto choice.
                        sols = [solve(eqx.combine(dyns[chunk[0]], static), options=plan.options)]
                        choice = None
                    else:
                        padded = chunk + [chunk[-1]] * (size - len(chunk))
                        stacked = jax.tree_util.tree_map(
                            lambda *xs: jnp.stack(xs), *[dyns[j] for j in padded]
                        )
                        stacked = jax.device_put(stacked, sharding)
                        options, choice = plan.options, None
                        if options.solver == "auto":
                            # Chosen once per batch, outside the vmapped solve (where the
                            # problems are traced and their stiffness cannot be estimated):
                            # from the stiffest point of the batch.
                            first = jax.tree_util.tree_map(lambda x: x[0], stacked)
                            choice = decide(
                                eqx.combine(first, static),
                                options,
                                batch_stiffness(stacked, static),
                            )
                            options = options.replace(solver=choice.solver)
                        batch = _solve_batch(stacked, static, options)
                        batch = jax.tree_util.tree_map(np.asarray, batch)
                        sols = [
                            jax.tree_util.tree_map(lambda x, p=p: jnp.asarray(x[p]), batch)
                            for p in range(len(chunk))
                        ]
                    failure = None
                except Exception as exc:  # noqa: BLE001 - the batch fails, the sweep goes on
                    sols, failure = [], f"{type(exc).__name__}: {exc}"
                per_point = (time.perf_counter() - t_batch) / len(chunk)
                done = []
                for pos, j in enumerate(chunk):
                    i = idx[j]
                    self.seconds[i] = per_point
                    if failure is not None:
                        self.status[i], self.errors[i] = "raised", failure
                        done.append(self._json(i))
                        continue
                    sol = sols[pos]
                    if choice is not None:  # the batch's auto choice
                        info = dataclasses.replace(sol.info, choice=choice)
                        sol = dataclasses.replace(sol, info=info)
                    self.solutions[i], self.infos[i] = sol, sol.info
                    rec = point_record(sol, self.keys[i], self.points[i], per_point)
                    self.status[i], self.errors[i] = (
                        ("computed", None) if rec["error"] is None else ("failed", rec["error"])
                    )
                    if self.measure is not None and rec["error"] is None:
                        try:
                            problem = eqx.combine(dyns[j], static)
                            got = self.measure(problem, sol, **self.points[i])
                            rec["measures"] = {k: np.asarray(v) for k, v in dict(got).items()}
                            self.measures[i] = rec["measures"]
                        except Exception as exc:  # noqa: BLE001 - reported, the rest kept
                            rec["error"] = f"measure: {type(exc).__name__}: {exc}"
                            self.status[i], self.errors[i] = "raised", rec["error"]
                    if self.store is not None and rec["error"] is None:
                        rec["fingerprint"] = identities[i]
                        rec["process"] = {"index": self.index, "count": self.count}
                        self.store.put(self.keys[i], rec)
                    done.append({**rec, "status": self.status[i]})
                if callback is not None:
                    callback(done)

    def _json(self, i: int) -> dict[str, Any]:
        return {
            "key": self.keys[i],
            "point": self.points[i],
            "status": self.status[i],
            "error": self.errors[i],
            "seconds": float(self.seconds[i]),
            "sup": {},
            "final": {},
            "solution": None,
            "output": None,
        }

    def result(self, wall: float) -> Sweep:
        return Sweep(
            keys=tuple(self.keys),
            points=tuple(self.points),
            solution=_stack(self.solutions),
            measures=_stack_measures(self.measures),
            outputs=tuple(self.outputs),
            status=_statuses(self.status),
            errors=tuple(self.errors),
            infos=tuple(self.infos),
            seconds=self.seconds.copy(),
            compiled_groups=self.groups,
            wall_seconds=wall,
        )


# ---------------------------------------------------------------------------------------------
# The alpha sweep: sweep() over alpha, with the rate fits of the finite-horizon theorem.


class AlphaSweep(eqx.Module):
    """The result of [`gradflow.sweep_alpha`][]: the [`gradflow.Sweep`][] over alpha and the
    rate fits.

    `sup[name][i]` is $\\sup_t$ of the distance `name` at `alphas[i]` (NaN where the point
    failed); `errors[i]` is `None` or why the point failed; `fits[name]` is the log-log fit over
    the successful points with `alpha >= fit_min`.
    """

    sweep: Sweep
    fits: dict[str, RateFit | None]
    fit_min: float = eqx.field(static=True)

    @property
    def alphas(self) -> np.ndarray:
        return np.array([p["alpha"] for p in self.sweep.points], dtype=float)

    @property
    def sup(self) -> dict[str, np.ndarray]:
        return {k: self.sweep.sup(k) for k in DISTANCES}

    @property
    def errors(self) -> list[str | None]:
        return list(self.sweep.errors)

    @property
    def seconds(self) -> list[float]:
        return [float(s) for s in self.sweep.seconds]

    @property
    def solutions(self) -> list[Solution | None]:
        return [self.sweep.solution_at(i) for i in range(len(self.sweep))]

    @property
    def succeeded(self) -> np.ndarray:
        return self.sweep.succeeded

    def to_dict(self) -> dict[str, Any]:
        return {
            "alphas": self.alphas,
            "sup": self.sup,
            "predicted_slopes": PREDICTED_SLOPES,
            "fits": {k: (None if v is None else v.to_dict()) for k, v in self.fits.items()},
            "fit_min": self.fit_min,
            "errors": self.errors,
            "seconds": self.seconds,
            "solutions": [None if s is None else solution_record(s) for s in self.solutions],
        }


def sweep_alpha(
    problem: Problem,
    alphas: Sequence[float],
    *,
    t1: float | None = None,
    ts: Sequence[float] | None = None,
    options: SolveOptions | None = None,
    fit_min: float = 0.0,
    callback: Callable[[int, float, Solution | None, str | None], None] | None = None,
    store: "str | Path | ResultStore | None" = None,
    batch_size: int | None = None,
    devices: "Sequence[jax.Device] | None" = None,
    **solve_kwargs: Any,
) -> AlphaSweep:
    r"""Solve `problem` at each scale in `alphas` with [`gradflow.sweep`][] (alpha is an array
    leaf: one compilation) and fit $\sup_{t \le t_1}$ of each distance against alpha on log-log
    axes.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][]; its own `alpha` is ignored.
    - `alphas`: the scales, each > 0.
    - `t1`, `ts`, `**solve_kwargs`: the solve options as keywords, as in [`gradflow.solve`][];
      or `options`, a [`gradflow.SolveOptions`][] (not both). `linearized` is forced on.
    - `fit_min`: only alphas >= `fit_min` enter the fits (the theorem is asymptotic).
    - `callback`: called as `callback(i, alpha, solution_or_None, error_or_None)` after each
      solved point (progress bars).
    - `store`, `batch_size`, `devices`: as in [`gradflow.sweep`][]. By default each alpha is
      one plain solve (`batch_size=1`: its own steps); with `store` or `devices` given and no
      `batch_size`, all alphas are one batch (one compiled program vmapped over alpha, sharded
      across `devices`).

    **Returns:** an [`gradflow.AlphaSweep`][]. A point that raises or ends unsuccessfully is
    recorded in `errors` and skipped by the fits.
    """
    alphas_arr = np.asarray(alphas, dtype=float).ravel()
    if alphas_arr.size == 0 or np.any(~np.isfinite(alphas_arr)) or np.any(alphas_arr <= 0):
        raise ValueError(f"`alphas` must be a non-empty list of numbers > 0; got {alphas!r}.")
    if "throw" in solve_kwargs:
        raise ValueError("`throw` is not supported by `sweep`: failed points are recorded.")
    given = {k: v for k, v in (("t1", t1), ("ts", ts)) if v is not None}
    options = _shared_options(options, {**given, **solve_kwargs})
    if options.t1 is None:
        raise ValueError("Give `t1` (the horizon) or `ts` (the save times; t1 = ts[-1]).")
    options = options.replace(linearized=True)
    if batch_size is None and store is None and devices is None:
        batch_size = 1
    by_key = {_point_key({"alpha": float(a)}): i for i, a in enumerate(alphas_arr)}
    reported: set[int] = set()

    def progress(records: list[dict[str, Any]]) -> None:
        for rec in records:
            i = by_key[rec["key"]]
            reported.add(i)
            sol = (
                None if rec["solution"] is None else solution_from_record(rec["solution"], options)
            )
            callback(i, float(alphas_arr[i]), sol, rec["error"])

    result = sweep(
        lambda alpha: problem.with_alpha(alpha),
        [{"alpha": float(a)} for a in alphas_arr],
        store=store,
        batch_size=batch_size,
        devices=devices,
        callback=None if callback is None else progress,
        options=options,
    )
    if callback is not None:
        # The points no batch reported: read back from the store, or failed to build.
        for i in sorted(set(range(len(alphas_arr))) - reported):
            callback(i, float(alphas_arr[i]), result.solution_at(i), result.errors[i])
    return fit_alpha_sweep(result, fit_min)


def fit_alpha_sweep(result: Sweep, fit_min: float = 0.0) -> AlphaSweep:
    r"""The rate fits of a [`gradflow.Sweep`][] whose points are `{"alpha": a}`: $\sup_t$ of
    each distance against alpha on log-log axes, over the successful points with
    `alpha >= fit_min` (at least two, else that fit is `None`)."""
    alphas = np.array([p["alpha"] for p in result.points], dtype=float)
    fits: dict[str, RateFit | None] = {}
    ok = result.succeeded & (alphas >= fit_min)
    for k in DISTANCES:
        sup = result.sup(k)
        use = ok & np.isfinite(sup) & (sup > 0)
        fits[k] = fit_rate(alphas[use], sup[use]) if use.sum() >= 2 else None
    return AlphaSweep(result, fits, float(fit_min))
