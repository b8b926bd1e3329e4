"""Many solves over the scale alpha, with rate fits; one failed point never loses the others."""

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._diagnostics import RateFit, fit_rate
from ._problem import Problem
from ._solve import Solution, solve

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
    for i, a in enumerate(alphas_arr):
        start = time.perf_counter()
        sol, err = None, None
        try:
            sol = solve(problem.with_alpha(a), t1=t1, ts=ts, **solve_kwargs)
            if not sol.succeeded:
                err = sol.message
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
