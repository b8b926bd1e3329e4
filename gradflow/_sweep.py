"""Many solves over the scale alpha, with rate fits; one failed point never loses the others."""

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._diagnostics import RateFit, fit_rate
from ._problem import Problem
from ._solve import Solution, solve
from ._store import ResultStore

DISTANCES = ("param_distance", "param_gap", "output_gap")
# The finite-horizon theorem of Chizat et al.: exponents of sup_t distance vs alpha (h(w0) = 0).
PREDICTED_SLOPES = {"param_distance": -1.0, "param_gap": -2.0, "output_gap": -1.0}


@dataclasses.dataclass(frozen=True)
class AlphaSweep:
    """The result of [`gradflow.sweep_alpha`][].

    `sup[name][i]` is $\\sup_t$ of the distance `name` at `alphas[i]` (NaN where the point
    failed); `errors[i]` is `None` or why the point failed; `fits[name]` is the log-log fit over
    the successful points with `alpha >= fit_min`.
    """

    alphas: np.ndarray
    sup: dict[str, np.ndarray]
    solutions: list[Solution | None]
    errors: list[str | None]
    fits: dict[str, RateFit | None]
    fit_min: float
    seconds: list[float]

    @property
    def succeeded(self) -> np.ndarray:
        return np.array([e is None for e in self.errors])

    def to_dict(self) -> dict[str, Any]:
        return {
            "alphas": self.alphas,
            "sup": self.sup,
            "predicted_slopes": PREDICTED_SLOPES,
            "fits": {k: (None if v is None else v.to_dict()) for k, v in self.fits.items()},
            "fit_min": self.fit_min,
            "errors": self.errors,
            "seconds": self.seconds,
            "solutions": [None if s is None else s.to_dict() for s in self.solutions],
        }


def sweep_alpha(
    problem: Problem,
    alphas: Sequence[float],
    *,
    t1: float,
    ts: Sequence[float] | None = None,
    fit_min: float = 0.0,
    callback: Callable[[int, float, Solution | None, str | None], None] | None = None,
    store: "str | Path | ResultStore | None" = None,
    batch_size: int | None = None,
    devices: "Sequence[jax.Device] | None" = None,
    **solve_kwargs: Any,
) -> AlphaSweep:
    r"""Solve `problem` at each scale in `alphas` (one compilation: alpha is an array leaf) and
    fit $\sup_{t \le t_1}$ of each distance against alpha on log-log axes.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][]; its own `alpha` is ignored.
    - `alphas`: the scales, each > 0.
    - `t1`, `ts`: the horizon and save times, as in [`gradflow.solve`][].
    - `fit_min`: only alphas >= `fit_min` enter the fits (the theorem is asymptotic).
    - `callback`: called as `callback(i, alpha, solution_or_None, error_or_None)` after each
      point (progress bars, checkpoints).
    - `store`, `batch_size`, `devices`: when any is given, the alphas are solved as batches by
      [`gradflow.sweep`][] (one compiled program vmapped over alpha, sharded across `devices`,
      each point checkpointed in `store`, resumed if present); `solutions[i]` is then `None` for
      a point read back from the store, and `callback` runs for every point once all batches
      are done. Otherwise one solve per alpha, in order.
    - `**solve_kwargs`: passed to [`gradflow.solve`][] (`linearized` is forced on).

    **Returns:** an [`gradflow.AlphaSweep`][]. A point that raises or ends unsuccessfully is
    recorded in `errors` and skipped by the fits.
    """
    alphas_arr = np.asarray(alphas, dtype=float).ravel()
    if alphas_arr.size == 0 or np.any(~np.isfinite(alphas_arr)) or np.any(alphas_arr <= 0):
        raise ValueError(f"`alphas` must be a non-empty list of numbers > 0; got {alphas!r}.")
    solve_kwargs["linearized"] = True
    sup = {k: np.full(alphas_arr.size, np.nan) for k in DISTANCES}
    solutions: list[Solution | None] = []
    errors: list[str | None] = []
    seconds: list[float] = []
    if store is not None or batch_size is not None or devices is not None:
        points = [{"alpha": float(a)} for a in alphas_arr]
        batched = sweep(
            lambda alpha: problem.with_alpha(alpha),
            points,
            t1=t1,
            ts=ts,
            store=store,
            batch_size=batch_size,
            devices=devices,
            **solve_kwargs,
        )
        for i, rec in enumerate(batched.records):
            errors.append(rec["error"])
            solutions.append(batched.solutions[i])
            seconds.append(float(rec["seconds"]))
            for k in DISTANCES:
                v = rec["sup"].get(k)
                # A failed point's sup covers only the part that ran: NaN, as documented.
                sup[k][i] = np.nan if v is None or rec["error"] is not None else float(v)
        if callback is not None:
            for i, rec in enumerate(batched.records):
                callback(i, float(alphas_arr[i]), batched.solutions[i], rec["error"])
    else:
        for i, a in enumerate(alphas_arr):
            start = time.perf_counter()
            sol, err = None, None
            try:
                sol = solve(problem.with_alpha(a), t1=t1, ts=ts, **solve_kwargs)
                if not sol.succeeded:
                    err = sol.message
                else:
                    for k in DISTANCES:
                        sup[k][i] = float(np.nanmax(np.asarray(getattr(sol, k))))
            except Exception as exc:  # noqa: BLE001 - a failed point is reported, the rest kept
                err = f"{type(exc).__name__}: {exc}"
            seconds.append(time.perf_counter() - start)
            solutions.append(sol)
            errors.append(err)
            if callback is not None:
                callback(i, float(a), sol, err)
    fits: dict[str, RateFit | None] = {}
    ok = np.array([e is None for e in errors]) & (alphas_arr >= fit_min)
    for k in DISTANCES:
        use = ok & np.isfinite(sup[k]) & (sup[k] > 0)
        fits[k] = fit_rate(alphas_arr[use], sup[k][use]) if use.sum() >= 2 else None
    return AlphaSweep(alphas_arr, sup, solutions, errors, fits, float(fit_min), seconds)


# ---------------------------------------------------------------------------------------------
# Batched sweeps: one compiled program per problem shape, vmapped over the points, sharded
# across devices, checkpointed per point.


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The result of [`gradflow.sweep`][]: one record per point, in the order of `points`.

    Each record is a JSON-ready dictionary with the point's `key`, its `point` values, `sup`
    ($\\sup_t$ of each distance the solve reported), `final` (the metrics at the last save time),
    `solution` ([`gradflow.Solution.to_dict`][]), `error` (`None`, or why the point failed) and
    `resumed` (`True` if it was read back from the store instead of solved).
    """

    keys: list[str]
    points: list[dict[str, Any]]
    records: list[dict[str, Any]]
    compiled_groups: int
    seconds: float
    solutions: list[Solution | None] = dataclasses.field(default_factory=list, repr=False)

    @property
    def succeeded(self) -> np.ndarray:
        return np.array([r["error"] is None for r in self.records])

    def column(self, name: str, kind: str = "sup") -> np.ndarray:
        """`kind` (`"sup"` or `"final"`) of metric `name` at every point (NaN where missing)."""
        if kind not in ("sup", "final"):
            raise ValueError(f"`kind` must be 'sup' or 'final'; got {kind!r}.")
        return np.array(
            [np.nan if r[kind].get(name) is None else float(r[kind][name]) for r in self.records]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "points": self.points,
            "records": self.records,
            "compiled_groups": self.compiled_groups,
            "seconds": self.seconds,
        }


_METRICS = ("param_distance", "param_gap", "output_gap", "loss", "linear_loss")


def _point_key(point: dict[str, Any]) -> str:
    parts = []
    for k, v in point.items():
        parts.append(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}")
    return "_".join(parts)


@eqx.filter_jit
def _solve_batch(dynamic, static, t1: float, ts: tuple[float, ...], options: tuple):
    def one(dyn):
        times = None if ts is None else np.asarray(ts)
        return solve(eqx.combine(dyn, static), t1=t1, ts=times, **dict(options))

    return jax.vmap(one)(dynamic)


def _record(sol: Solution, key: str, point: dict[str, Any], seconds: float) -> dict[str, Any]:
    d = sol.to_dict()
    sup, final = {}, {}
    for name in _METRICS:
        values = d.get(name)
        if values is None:
            continue
        finite = [v for v in values if v is not None]
        sup[name] = max(finite) if finite else None
        final[name] = values[-1]
    err = None if d["succeeded"] else d["result"]
    return {
        "key": key,
        "point": point,
        "sup": sup,
        "final": final,
        "solution": d,
        "error": err,
        "seconds": seconds,
        "resumed": False,
    }


def sweep(
    build: Callable[..., Problem],
    points: Sequence[dict[str, Any]],
    *,
    t1: float,
    ts: Sequence[float] | None = None,
    store: str | Path | ResultStore | None = None,
    batch_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[list[dict[str, Any]]], None] | None = None,
    **solve_kwargs: Any,
) -> Sweep:
    r"""Solve many problems (a grid over $\alpha$, $\tau$, width, seed, ...) as batched programs:
    the points whose problems have the same shapes share **one** compiled program, vmapped over
    the points and sharded across `devices`; each finished point is written to `store`, so an
    interrupted sweep resumes where it stopped.

    **Arguments:**

    - `build`: `build(**point) -> gf.Problem`, called once per point (eagerly, to make the initial
      parameters, data and scale). Return the same `apply` object (e.g. one `gf.models.TwoLayer`
      per width) for points that should share a program.
    - `points`: the points, as dictionaries of JSON-able values (e.g. `{"tau": 0.1, "seed": 3}`);
      their keys in the store are `"tau=0.1_seed=3"`.
    - `t1`, `ts`, `**solve_kwargs`: as in [`gradflow.solve`][] (`throw` is not allowed: failed
      points are recorded, not raised).
    - `store`: a folder or a [`gradflow._store.ResultStore`][]: points already stored are read back
      instead of solved. A folder is opened with the sweep's settings as its configuration, so
      reusing it for other settings raises.
    - `batch_size`: points per compiled call (default: all pending points of a shape group),
      rounded up to a multiple of the number of devices. A smaller batch checkpoints more often;
      the last batch is padded by repeating a point, so every batch reuses the compiled program.
    - `devices`: shard the batch axis across these devices (`jax.sharding.Mesh` over one axis);
      default one device. Across hosts, call `jax.distributed.initialize()` first and pass
      `jax.devices()` (every process runs the same script; process 0 writes the store).
    - `callback`: called with the list of records after each batch (progress, logging).

    **Returns:** a [`gradflow.Sweep`][].

    Adaptive solves under `vmap` step together (every point takes the union of the steps), so a
    batched point agrees with its own solve to the tolerance, not bitwise, and a batch costs as
    much as its slowest point: batch points of similar difficulty.
    """
    start = time.perf_counter()
    if "throw" in solve_kwargs:
        raise ValueError("`throw` is not supported by `sweep`: failed points are recorded.")
    points = [dict(p) for p in points]
    if not points:
        raise ValueError("`points` must be a non-empty list of dictionaries.")
    keys = [_point_key(p) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError("`points` holds duplicates; every point must be distinct.")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size}.")
    devices = list(devices) if devices is not None else [jax.devices()[0]]
    ts_tuple = None if ts is None else tuple(float(v) for v in np.asarray(ts).ravel())
    if isinstance(store, (str, Path)):
        config = {
            "t1": float(t1),
            "ts": ts_tuple,
            "solve": {k: repr(v) for k, v in sorted(solve_kwargs.items())},
        }
        store = ResultStore(store, config)
    writer = store is not None and jax.process_index() == 0
    records: dict[str, dict[str, Any]] = {}
    solutions: dict[str, Solution] = {}
    if store is not None:
        for key in keys:
            rec = store.get(key)
            if rec is not None:
                records[key] = {**rec, "resumed": True}
    pending = [i for i, k in enumerate(keys) if k not in records]

    # Group the pending points by the static part and the shapes of their problems.
    groups: list[tuple[Any, Any, list[int], list[Any]]] = []
    for i in pending:
        problem = build(**points[i])
        if not isinstance(problem, Problem):
            raise TypeError(
                f"`build` must return a gradflow.Problem; got {type(problem).__name__} at "
                f"point {points[i]}."
            )
        dynamic, static = eqx.partition(problem, eqx.is_array)
        shapes = jax.tree_util.tree_map(lambda x: (x.shape, str(x.dtype)), dynamic)
        sig = (jax.tree_util.tree_structure(dynamic), jax.tree_util.tree_leaves(shapes))
        for g in groups:
            if g[0] == sig and eqx.tree_equal(g[1], static):
                g[2].append(i)
                g[3].append(dynamic)
                break
        else:
            groups.append((sig, static, [i], [dynamic]))

    options = tuple(sorted(solve_kwargs.items()))
    ndev = len(devices)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("points",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("points"))
    t1 = float(t1)
    for _, static, idx, dyns in groups:
        size = len(idx) if batch_size is None else min(int(batch_size), len(idx))
        size = -(-size // ndev) * ndev
        for b in range(0, len(idx), size):
            chunk = list(range(b, min(b + size, len(idx))))
            chunk_padded = chunk + [chunk[-1]] * (size - len(chunk))
            stacked = jax.tree_util.tree_map(
                lambda *xs: jnp.stack(xs), *[dyns[j] for j in chunk_padded]
            )
            stacked = jax.device_put(stacked, sharding)
            t_batch = time.perf_counter()
            try:
                sol = _solve_batch(stacked, static, t1, ts_tuple, options)
                if jax.process_count() > 1:
                    from jax.experimental import multihost_utils

                    sol = multihost_utils.process_allgather(sol, tiled=True)
                sol = jax.tree_util.tree_map(np.asarray, sol)
                failure = None
            except Exception as exc:  # noqa: BLE001 - the batch fails, the sweep goes on
                sol, failure = None, f"{type(exc).__name__}: {exc}"
            per_point = (time.perf_counter() - t_batch) / len(chunk)
            done = []
            for pos, j in enumerate(chunk):
                i = idx[j]
                if sol is None:
                    rec = {
                        "key": keys[i],
                        "point": points[i],
                        "sup": {},
                        "final": {},
                        "solution": None,
                        "error": failure,
                        "seconds": per_point,
                        "resumed": False,
                    }
                else:
                    one = jax.tree_util.tree_map(lambda x, pos=pos: jnp.asarray(x[pos]), sol)
                    rec = _record(one, keys[i], points[i], per_point)
                    solutions[keys[i]] = one
                records[keys[i]] = rec
                done.append(rec)
                if writer and rec["error"] is None:
                    store.put(keys[i], rec)
            if callback is not None:
                callback(done)
    return Sweep(
        keys=keys,
        points=points,
        records=[records[k] for k in keys],
        compiled_groups=len(groups),
        seconds=time.perf_counter() - start,
        solutions=[solutions.get(k) for k in keys],
    )
