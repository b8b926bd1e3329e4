"""Pieces shared by the theorem checks: solving over alphas, the solver's error level, and the
report of a check on a named problem."""

import time

import numpy as np

from .._losses import empirical_norm
from .._problem import Problem
from .._solution import Solution
from .._solve import solve
from ..sweeps._sweep import sweep
from ._base import KINDS, CheckReport, ExponentCheck, exponent_check
from ._problems import NamedProblem

DISTANCES = ("param_distance", "param_gap", "output_gap")


def solve_many(problem: Problem, alphas, ts, *, rtol: float, atol: float, **kwargs):
    """One solve per alpha through [`gradflow.sweep`][] (alpha is an array leaf: one
    compilation; `batch_size=1`: each alpha with its own steps); the check needs every point,
    so a failed one raises, naming the alpha and why."""
    result = sweep(
        lambda alpha: problem.with_alpha(alpha),
        [{"alpha": float(a)} for a in alphas],
        ts=ts,
        batch_size=1,
        rtol=float(rtol),
        atol=float(atol),
        **kwargs,
    )
    for i, point in enumerate(result.points):
        if result.errors[i] is not None:
            raise RuntimeError(f"the solve at alpha={point['alpha']:g} failed: {result.errors[i]}")
    return [result.solution_at(i) for i in range(len(result))]


def reference(
    problem: Problem, alpha: float, ts, *, rtol: float, atol: float, **kwargs
) -> Solution:
    """The same solve with tolerances 1000 times tighter: its difference from the nominal solve
    is the solver's own error level."""
    return solve(
        problem.with_alpha(float(alpha)),
        ts=ts,
        rtol=float(rtol) * 1e-3,
        atol=float(atol) * 1e-3,
        **kwargs,
    )


def sup_exponents(
    alphas,
    sols: list[Solution],
    predicted: dict[str, float],
    *,
    applicable: bool,
    tolerance: float,
    note: str = "",
    negative_control: bool = False,
) -> list[ExponentCheck]:
    """Slopes of sup_t of each distance against alpha. With `negative_control` (the hypothesis
    h(w0) = 0 fails) each is also checked not to shrink (slope >= -0.1), as the theory predicts."""
    out = []
    for k in DISTANCES:
        sup = [float(np.nanmax(np.asarray(getattr(s, k)))) for s in sols]
        out.append(
            exponent_check(
                f"sup_t {k}",
                alphas,
                sup,
                predicted[k],
                tolerance=tolerance,
                applicable=applicable,
                note=note,
            )
        )
        if negative_control:
            out.append(
                exponent_check(
                    f"sup_t {k} (h(w0) != 0)",
                    alphas,
                    sup,
                    -0.1,
                    kind=KINDS.at_least,
                    note="hypothesis h(w0) = 0 fails: the distances are predicted not to shrink",
                )
            )
    return out


def residual_norm(problem: Problem, alpha: float) -> float:
    """$\\|\\alpha h(w_0) - y^*\\|_F$."""
    return float(empirical_norm(alpha * problem.h(problem.params0) - problem.loss.minimizer))


def as_alphas(alphas, name: str = "alphas", minimum: int = 2) -> np.ndarray:
    """Validate a list of scales: finite, > 0, at least `minimum` distinct values."""
    arr = np.asarray(alphas, dtype=float).ravel()
    if (
        arr.size < minimum
        or np.unique(arr).size < minimum
        or not np.all(np.isfinite(arr))
        or np.any(arr <= 0)
    ):
        raise ValueError(
            f"`{name}` must hold at least {minimum} distinct finite scales > 0 (a rate is fitted "
            f"on them); got {alphas!r}."
        )
    return np.sort(arr)


def as_named(spec) -> NamedProblem:
    """Accept a [`gradflow.check.NamedProblem`][] or a bare [`gradflow.Problem`][]."""
    if isinstance(spec, NamedProblem):
        return spec
    if isinstance(spec, Problem):
        how = "centered" if spec.center else "as initialized"
        return NamedProblem("problem", f"user problem, p={spec.num_params}, {how}", spec, None)
    raise TypeError(
        "`spec` must be a gradflow.Problem or a gradflow.check.NamedProblem (e.g. "
        f"`gf.check.matrix_factorization()`); got {type(spec).__name__}."
    )


def problem_report(
    theorem: str,
    spec: NamedProblem,
    start: float,
    *,
    hypotheses=(),
    exponents=(),
    constants=(),
    bounds=(),
    estimates=(),
    settings=(),
    curves=(),
) -> CheckReport:
    """The [`gradflow.check.CheckReport`][] of `theorem` on the problem `spec` (its name and
    description), timed from `start` (a `time.perf_counter()` reading taken when the check
    began); each list of comparisons is stored as a tuple."""
    return CheckReport(
        theorem=theorem,
        problem=spec.name,
        description=spec.description,
        hypotheses=tuple(hypotheses),
        exponents=tuple(exponents),
        constants=tuple(constants),
        bounds=tuple(bounds),
        estimates=tuple(estimates),
        seconds=time.perf_counter() - start,
        settings=tuple(settings),
        curves=tuple(curves),
    )
