"""The store's edge: a solution as the JSON record a point keeps, and back.

The keys are those gradflow has always written (the solution's series, `stats`, `result`,
`succeeded`, then its [`gradflow.SolveInfo`][] by name: `solver`, `solver_choice`, `rtol`,
`atol`, `t1`, `dtype`, `linearized`, `center`, `num_params`, and for an auto choice
`solver_reason` and `stiffness`), so a point stored by an earlier version reads back to the
same record. A record holds no full [`gradflow.SolveOptions`][] (no solver object, no
controller), so it is read back with the options it was solved with, which a sweep knows
(they are part of the point's fingerprint), and checked against them."""

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._options import SolveOptions, solver_name
from .._solution import _RESULT_NAMES, RESULTS, Solution, SolveInfo
from ..solvers._auto import AUTO_SOLVERS, SolverChoice, StiffnessSource
from ._io import nan_array

METRICS = ("param_distance", "param_gap", "output_gap", "loss", "linear_loss")
"""The time series of a [`gradflow.Solution`][] that a [`gradflow.Sweep`][] keeps per point."""

_SERIES = ("ts", *METRICS)
_INFO_KEYS = ("solver", "solver_choice", "rtol", "atol", "t1", "dtype", "linearized")
_INFO_KEYS += ("center", "num_params")
_AUTO_KEYS = ("solver_reason", "stiffness")
_ABSENT = object()
# How a batch's choice is marked in `solver_reason` (`SolveInfo.solver_reason` writes it).
_BATCH_NOTE = f" ({StiffnessSource.batch.value})"


def info_record(info: SolveInfo) -> dict[str, Any]:
    """The JSON form of a [`gradflow.SolveInfo`][]: its properties by name, `solver_reason`
    and `stiffness` only for an auto choice, a non-finite `stiffness` as `None`, and the
    horizon of a solve to the limit (`t1=math.inf`) as the string `"inf"` (JSON has no
    infinity; the store would write `None`, which another horizon could not be told from)."""
    out = {key: getattr(info, key) for key in _INFO_KEYS}
    if isinstance(out["t1"], float) and math.isinf(out["t1"]):
        out["t1"] = "inf"
    if info.choice is not None:
        stiffness = info.stiffness
        out["solver_reason"] = info.solver_reason
        out["stiffness"] = None if stiffness is None or not math.isfinite(stiffness) else stiffness
    return out


def info_from_record(record: Mapping[str, Any], options: SolveOptions) -> SolveInfo:
    """The [`gradflow.SolveInfo`][] whose `info_record` is `record`, for a solve with
    `options` (as given to it: `solver="auto"` for an auto choice).

    **Returns:** a `SolveInfo` with `options` (the recorded solver in place of `"auto"`). A
    record with an unknown or a missing key, or one that `options` do not reproduce (another
    solver, other tolerances or horizon), raises a `ValueError` that says which.
    """
    if not isinstance(record, Mapping):
        raise ValueError(
            f"`record` must be a mapping (a stored solution's info); got {type(record).__name__}."
        )
    names = [*_INFO_KEYS, *_AUTO_KEYS]
    unknown = sorted(set(record) - set(names))
    if unknown:
        raise ValueError(
            f"`record` holds unknown key(s) {unknown} for a gradflow.SolveInfo, whose keys are "
            f"{names}: pass only those (as the store writes them)."
        )
    missing = [n for n in _INFO_KEYS if n not in record]
    if missing:
        raise ValueError(
            f"`record` lacks the key(s) {missing} of a gradflow.SolveInfo; every key but "
            "solver_reason and stiffness is needed."
        )
    name, choice = record["solver"], None
    if record["solver_choice"] == "auto":
        if options.solver != "auto":
            raise ValueError(
                f"`record` holds an 'auto' choice of {name}, but the options give "
                f"solver={solver_name(options.solver)}."
            )
        if name not in AUTO_SOLVERS:
            raise ValueError(
                f"`record` holds an 'auto' choice of {name!r}, which 'auto' never chooses (it "
                f"chooses among {sorted(AUTO_SOLVERS)})."
            )
        reason = record.get("solver_reason")
        if not isinstance(reason, str):
            raise ValueError(
                f"`record` holds an 'auto' choice without its reason; got solver_reason={reason!r}."
            )
        stiffness = record.get("stiffness")
        if stiffness is not None and (
            isinstance(stiffness, bool) or not isinstance(stiffness, (int, float))
        ):
            raise ValueError(
                f"`record` holds stiffness={stiffness!r}; a stiffness is a number or None."
            )
        batch = reason.endswith(_BATCH_NOTE)
        solver = AUTO_SOLVERS[name]()
        choice = SolverChoice(
            solver,
            reason.removesuffix(_BATCH_NOTE),
            None if stiffness is None else float(stiffness),
            StiffnessSource.batch if batch else StiffnessSource.problem,
        )
        options = options.replace(solver=solver)
    elif options.solver == "auto":
        raise ValueError(
            f"`record` holds a solve with the solver {name} given ({record['solver_choice']!r}), "
            "but the options have solver='auto', whose choice it would record as 'auto'."
        )
    info = SolveInfo(
        options=options,
        choice=choice,
        dtype=record["dtype"],
        center=record["center"],
        num_params=record["num_params"],
    )
    written = info_record(info)
    differ = [k for k in names if record.get(k, _ABSENT) != written.get(k, _ABSENT)]
    if differ:
        stored = ", ".join(f"{k}={record.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={getattr(info, k)!r}" for k in differ)
        raise ValueError(
            f"`record` was not solved with these options: it records {stored}; the options "
            f"give {now}."
        )
    return info


def solution_record(sol: Solution) -> dict[str, Any]:
    """A JSON-ready dictionary (NaN written as `None`): the arrays, `stats`, `result`,
    `succeeded`, and the keys of `info_record(sol.info)` at the top level."""

    def conv(x):
        if x is None:
            return None
        a = np.asarray(x, dtype=float)
        return [None if not np.isfinite(v) else float(v) for v in a.ravel()]

    return {
        "alpha": float(sol.alpha),
        **{k: conv(getattr(sol, k)) for k in _SERIES},
        "stats": {
            k: (int(v) if np.issubdtype(np.asarray(v).dtype, np.integer) else float(v))
            for k, v in sol.stats.items()
        },
        "result": sol.message or "successful",
        "succeeded": sol.succeeded,
        **({} if sol.info is None else info_record(sol.info)),
    }


def _result_from_message(message: str) -> RESULTS:
    for name in _RESULT_NAMES:
        item = getattr(RESULTS, name)
        if (RESULTS[item] or "successful") == message:
            return item
    return RESULTS.solver_failed


def solution_from_record(d: Mapping[str, Any], options: SolveOptions) -> Solution:
    """A stored solution dictionary (`solution_record`) back as a `Solution` solved with
    `options` (`None` entries, NaN when written, become NaN again); the keys that are not the
    solution's own are its [`gradflow.SolveInfo`][] (`info_from_record`), and a key neither
    knows raises."""

    def arr(v):
        return None if v is None else nan_array(v)

    series = {k: arr(d.get(k)) for k in _SERIES}
    skip = {*_SERIES, "alpha", "stats", "result", "succeeded"}
    try:
        info = info_from_record({k: v for k, v in d.items() if k not in skip}, options)
    except ValueError as exc:
        raise ValueError(
            f"A stored solution cannot be read back: {exc} (Its other keys, {sorted(skip)}, "
            "are the solution's own; `solution_record` writes exactly these.)"
        ) from None
    return Solution(
        **series,
        params=None,
        linear_params=None,
        stats={k: np.asarray(v) for k, v in d.get("stats", {}).items()},
        result=_result_from_message(d.get("result", "")),
        alpha=np.asarray(d["alpha"], float),
        info=info,
    )


def point_record(sol: Solution, key: str, point: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The stored (JSON) form of a solved point."""
    d = solution_record(sol)
    sup, final = {}, {}
    for name in METRICS:
        values = d.get(name)
        if values is None:
            continue
        finite = [v for v in values if v is not None]
        sup[name] = max(finite) if finite else None
        final[name] = values[-1]
    return {
        "key": key,
        "point": point,
        "sup": sup,
        "final": final,
        "solution": d,
        "error": None if d["succeeded"] else d["result"],
        "seconds": seconds,
    }
