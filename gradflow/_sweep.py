"""Many solves over the scale alpha, with rate fits; one failed point never loses the others."""

import dataclasses
import functools
import hashlib
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._auto import batch_stiffness, choose_solver
from ._distributed import barrier, owner, share
from ._problem import Problem
from ._solve import Solution, solve
from ._stats import RateFit, fit_rate
from ._store import ResultStore, StoreError, stable_repr
from ._theory import PredictedExponents

DISTANCES = ("param_distance", "param_gap", "output_gap")
# The finite-horizon theorem of Chizat et al.: exponents of sup_t distance vs alpha (h(w0) = 0),
# derived in theory/ (sympy, loaded at first access).
PREDICTED_SLOPES = PredictedExponents("finite_horizon", DISTANCES)
"""The exponents of the sup distances in alpha that the finite-horizon theorem predicts when
h(w0) = 0: O(1/alpha), O(1/alpha^2), O(1/alpha). A read-only mapping; its values are
`theory.finite_horizon().exponents`, derived with sympy on first access."""


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


def _feed(h: "hashlib._Hash", obj: Any, depth: int = 0) -> None:
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    # The tree structure carries the types and static fields (widths, activations, `center`).
    h.update(stable_repr(treedef).encode())
    for leaf in leaves:
        if isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"|array {a.dtype.str} {a.shape}|".encode())
            h.update(a.tobytes())
        elif isinstance(leaf, functools.partial) and depth < 4:
            h.update(b"|partial|")
            _feed(h, (leaf.func, leaf.args, leaf.keywords), depth + 1)
        elif isinstance(leaf, types.FunctionType) and depth < 4:
            # A plain function is named by where it lives, what it closes over and its default
            # arguments (a lambda over another constant is another model); its bytecode is
            # left out so that a Python upgrade does not invalidate every store.
            h.update(f"|function {leaf.__module__}.{leaf.__qualname__}|".encode())
            cells = []
            for cell in leaf.__closure__ or ():
                try:
                    cells.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    cells.append(None)
            _feed(h, (cells, leaf.__defaults__, leaf.__kwdefaults__), depth + 1)
        else:
            h.update(f"|{type(leaf).__qualname__} {stable_repr(leaf)}|".encode())


def tree_fingerprint(tree: Any) -> str:
    """A short hash of a PyTree: the bytes, dtype and shape of every array leaf, and the tree
    structure (types, static fields); functions by module, name and closure. Equal for equal
    trees in every process and every run."""
    h = hashlib.sha256()
    _feed(h, tree)
    return h.hexdigest()[:16]


def problem_fingerprint(problem: Problem) -> dict[str, str]:
    """The identity of a problem, one hash per field (`apply`, `params0`, `inputs`, `loss`,
    `alpha`, `center`), so that a refusal can say which part changed."""
    return {f.name: tree_fingerprint(getattr(problem, f.name)) for f in dataclasses.fields(problem)}


def _resolve_auto(dynamic, static, t1: float, solve_kwargs: dict[str, Any]):
    """`solver="auto"` chosen once per batch, outside the vmapped solve (where the problems are
    traced and their stiffness cannot be estimated): from the stiffest point of the batch."""
    if solve_kwargs.get("solver", "auto") not in (None, "auto"):
        return tuple(sorted(solve_kwargs.items())), {}
    controller = solve_kwargs.get("stepsize_controller")
    rtol = float(getattr(controller, "rtol", solve_kwargs.get("rtol", 1e-8)))
    first = eqx.combine(jax.tree_util.tree_map(lambda x: x[0], dynamic), static)
    picked = choose_solver(
        first, rtol, t1, explain=True, lambda_max=batch_stiffness(dynamic, static)
    )
    options = {**solve_kwargs, "solver": picked.solver}
    auto = {
        "solver_choice": "auto",
        "solver_reason": picked.reason + " (the batch's stiffest point)",
        "stiffness": picked.stiffness,
    }
    return tuple(sorted(options.items())), auto


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


def _empty_record(key: str, point: dict[str, Any], error: str, seconds: float) -> dict[str, Any]:
    return {
        "key": key,
        "point": point,
        "sup": {},
        "final": {},
        "solution": None,
        "error": error,
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
    overwrite: bool = False,
    batch_size: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[list[dict[str, Any]]], None] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
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
    - `store`: a folder or a [`gradflow.ResultStore`][]: points already stored are read back
      instead of solved. A folder is opened with `t1`, `ts` and the solve options as its
      configuration (another configuration raises [`gradflow.StoreError`][] naming the keys
      that differ) and locked while the sweep runs. Each stored point also records the
      fingerprint of its problem (bytes, dtype and shape of every array; types and static
      fields; see [`gradflow.problem_fingerprint`][]) and of the solve options: a point stored
      for another problem (a changed `build`: other data, model or init) is **never** reused;
      the sweep raises `StoreError` naming the points and the parts that differ, before
      solving anything. A corrupted point file is reported, set aside and recomputed.
    - `overwrite`: recompute the points stored for another problem (and, for a folder holding
      another configuration, discard its points) instead of raising.
    - `batch_size`: points per compiled call (default: all pending points of a shape group),
      rounded up to a multiple of the number of devices. A smaller batch checkpoints more often;
      the last batch is padded by repeating a point, so every batch reuses the compiled program.
    - `devices`: shard the batch axis across these devices of this process
      (`jax.sharding.Mesh` over one axis); default one device.
    - `callback`: called with the list of records after each batch (progress, logging).
    - `process_index`, `process_count`: split the points across processes, point `i` to process
      `i % process_count`; default `jax.process_index()` and `jax.process_count()`. After
      `jax.distributed.initialize(...)` every process runs the same call: each solves its own
      points on its own devices and writes them to `store` (required, on a shared file
      system), then all wait at a barrier and every process returns the full result, read
      back from the store. Given explicitly without `jax.distributed` (e.g. the tasks of a
      SLURM array), each process solves its share and returns the others' points found in the
      store; the rest are recorded with an error saying they are not computed yet, and a rerun
      in one process assembles everything. See `docs/distributed.md`.

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
    ts_tuple = None if ts is None else tuple(float(v) for v in np.asarray(ts).ravel())
    t1 = float(t1)
    solve_id = tree_fingerprint((t1, ts_tuple, sorted(solve_kwargs.items())))
    opened_here = isinstance(store, (str, Path))
    if opened_here:
        config = {
            "t1": t1,
            "ts": ts_tuple,
            "solve": {k: stable_repr(v) for k, v in sorted(solve_kwargs.items())},
        }
        store = ResultStore(
            store, config, overwrite=overwrite, process_index=index, process_count=count
        )
    try:
        return _sweep(
            build,
            points,
            keys,
            t1=t1,
            ts_tuple=ts_tuple,
            solve_kwargs=solve_kwargs,
            solve_id=solve_id,
            store=store,
            overwrite=overwrite,
            batch_size=batch_size,
            devices=devices,
            callback=callback,
            index=index,
            count=count,
            start=start,
        )
    finally:
        if opened_here:
            store.close()


def _sweep(
    build: Callable[..., Problem],
    points: list[dict[str, Any]],
    keys: list[str],
    *,
    t1: float,
    ts_tuple: tuple[float, ...] | None,
    solve_kwargs: dict[str, Any],
    solve_id: str,
    store: ResultStore | None,
    overwrite: bool,
    batch_size: int | None,
    devices: list[jax.Device],
    callback: Callable[[list[dict[str, Any]]], None] | None,
    index: int,
    count: int,
    start: float,
) -> Sweep:
    # Every point is built (cheap next to a solve), so that each stored result, ours or another
    # process's, is checked against the problem it claims to solve.
    fingerprints: list[dict[str, Any]] = []
    problems: dict[int, Problem] = {}
    for i, point in enumerate(points):
        problem = build(**point)
        if not isinstance(problem, Problem):
            raise TypeError(
                f"`build` must return a gradflow.Problem; got {type(problem).__name__} at "
                f"point {point}."
            )
        fingerprints.append({"problem": problem_fingerprint(problem), "solve": solve_id})
        if owner(i, count) == index:
            problems[i] = problem

    records: dict[str, dict[str, Any]] = {}
    solutions: dict[str, Solution] = {}
    stale: dict[int, list[str]] = {}

    def read_back(i: int) -> None:
        # Only the owner of a point sets a damaged file aside (and recomputes it).
        rec = store.get(keys[i], set_aside=owner(i, count) == index)
        if rec is None:
            return
        differ = _differences(rec.get("fingerprint"), fingerprints[i])
        if differ:
            stale[i] = differ
        else:
            records[keys[i]] = {**rec, "resumed": True}

    if store is not None:
        for i in range(len(points)):
            read_back(i)
    _refuse_stale(stale, keys, store, overwrite and not stale.keys() - problems.keys())
    pending = [i for i in problems if keys[i] not in records]

    # Group the pending points by the static part and the shapes of their problems.
    groups: list[tuple[Any, Any, list[int], list[Any]]] = []
    for i in pending:
        dynamic, static = eqx.partition(problems[i], eqx.is_array)
        shapes = jax.tree_util.tree_map(lambda x: (x.shape, str(x.dtype)), dynamic)
        sig = (jax.tree_util.tree_structure(dynamic), jax.tree_util.tree_leaves(shapes))
        for g in groups:
            if g[0] == sig and eqx.tree_equal(g[1], static):
                g[2].append(i)
                g[3].append(dynamic)
                break
        else:
            groups.append((sig, static, [i], [dynamic]))
    problems.clear()

    ndev = len(devices)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("points",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("points"))
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
                batch_options, auto = _resolve_auto(stacked, static, t1, solve_kwargs)
                sol = _solve_batch(stacked, static, t1, ts_tuple, batch_options)
                sol = jax.tree_util.tree_map(np.asarray, sol)
                failure = None
            except Exception as exc:  # noqa: BLE001 - the batch fails, the sweep goes on
                sol, failure = None, f"{type(exc).__name__}: {exc}"
            per_point = (time.perf_counter() - t_batch) / len(chunk)
            done = []
            for pos, j in enumerate(chunk):
                i = idx[j]
                if sol is None:
                    rec = _empty_record(keys[i], points[i], failure, per_point)
                else:
                    one = jax.tree_util.tree_map(lambda x, pos=pos: jnp.asarray(x[pos]), sol)
                    rec = _record(one, keys[i], points[i], per_point)
                    rec["solution"].update(auto)
                    solutions[keys[i]] = one
                rec["fingerprint"] = fingerprints[i]
                rec["process"] = {"index": index, "count": count}
                records[keys[i]] = rec
                done.append(rec)
                if store is not None and rec["error"] is None:
                    store.put(keys[i], rec)
            if callback is not None:
                callback(done)

    if count > 1:
        # The other processes' points: after the barrier they are all in the store (unless a
        # process failed them); without jax.distributed, whatever is there already.
        barrier("gradflow.sweep")
        for i in range(len(points)):
            if keys[i] not in records:
                read_back(i)
        _refuse_stale(stale, keys, store, False)
        for i in range(len(points)):
            if keys[i] not in records:
                records[keys[i]] = _empty_record(
                    keys[i],
                    points[i],
                    f"not computed here: point of process {owner(i, count)} of {count}, not in "
                    f"the store {store.folder} (failed there, or still running)",
                    0.0,
                )
    return Sweep(
        keys=keys,
        points=points,
        records=[records[k] for k in keys],
        compiled_groups=len(groups),
        seconds=time.perf_counter() - start,
        solutions=[solutions.get(k) for k in keys],
    )


def _differences(stored: Any, now: dict[str, Any]) -> list[str]:
    if not isinstance(stored, dict) or not isinstance(stored.get("problem"), dict):
        return ["fingerprint (none stored)"]
    parts = sorted(set(stored["problem"]) | set(now["problem"]))
    differ = [p for p in parts if stored["problem"].get(p) != now["problem"].get(p)]
    if stored.get("solve") != now["solve"]:
        differ.append("solve options")
    return differ


def _refuse_stale(
    stale: dict[int, list[str]], keys: list[str], store: ResultStore | None, recompute: bool
) -> None:
    if not stale or recompute:
        return
    shown = [f"{keys[i]} (differs in: {', '.join(d)})" for i, d in list(stale.items())[:5]]
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    raise StoreError(
        f"{len(stale)} point(s) in {store.folder} were computed for another problem than "
        f"`build` now returns: {'; '.join(shown)}{more}. A changed problem never reuses stored "
        "points: pass another store folder, or overwrite=True to recompute them."
    )
