"""Pieces shared by the theorem checks: their alpha families through the sweeps layer (every
point required), the solver's error level, and the report of a check on a named problem."""

import time

import numpy as np

from .._losses import empirical_norm
from .._problem import Problem
from ..sweeps._sweep import DISTANCES, AlphaSweep, Sweep, sweep, sweep_alpha
from ._base import KINDS, CheckReport, ExponentCheck, exponent_check
from ._problems import NamedProblem

# The tolerances of a reference solve, relative to the nominal ones: its difference from the
# nominal solve is the solver's own error level.
REFERENCE_FACTOR = 1e-3


def _every_point(result: Sweep, what: str = "solve") -> None:
    """A check needs every point of its family: raise on the first that failed, naming its
    alpha and why."""
    for point, error in zip(result.points, result.errors):
        if error is not None:
            raise RuntimeError(f"the {what} at alpha={point['alpha']:g} failed: {error}")


def solve_alphas(
    problem: Problem, alphas, ts, *, rtol: float, atol: float, reference: bool = False, **kwargs
) -> AlphaSweep:
    """`problem` and its linearization at each of `alphas`, saved at `ts`, by
    [`gradflow.sweep_alpha`][] (one compilation; each alpha with its own steps), with the fits
    of the sup distances against alpha. With `reference`, the same solves at tolerances
    `REFERENCE_FACTOR` times tighter: their difference from the nominal ones is the solver's own
    error level. `**kwargs` go to the solves (e.g. `save_params=True`)."""
    factor = REFERENCE_FACTOR if reference else 1.0
    result = sweep_alpha(
        problem, alphas, ts=ts, rtol=float(rtol) * factor, atol=float(atol) * factor, **kwargs
    )
    _every_point(result.sweep, "reference solve" if reference else "solve")
    return result


def solve_alphas_relaxed(
    problem: Problem, alphas, ts, *, rtol: float, atol: float, **kwargs
) -> Sweep:
    """One solve per alpha through [`gradflow.sweep`][] at `rtol` relaxed to
    `max(rtol, 100 alpha^2 eps)` (and `atol` in proportion): the states of the flow of
    $F_\\alpha$ are scaled by powers of alpha, and below that level rounding, not the
    tolerance, sets the error. `**kwargs` go to every solve (e.g. `linearized=False`)."""
    eps = float(np.finfo(np.dtype(problem.dtype)).eps)

    def tolerances(alpha: float) -> dict[str, float]:
        tol = float(max(rtol, 100 * alpha**2 * eps))
        return {"rtol": tol, "atol": float(atol * tol / rtol)}

    result = sweep(
        lambda alpha: problem.with_alpha(alpha),
        [{"alpha": float(a)} for a in alphas],
        ts=ts,
        batch_size=1,
        point_options=tolerances,
        **kwargs,
    )
    _every_point(result)
    return result


def sweep_exponents(
    result: AlphaSweep,
    predicted: dict[str, float],
    *,
    applicable: bool,
    tolerance: float,
    note: str = "",
    negative_control: bool = False,
) -> list[ExponentCheck]:
    """The slopes of $\\sup_t$ of each distance against alpha, as the alpha sweep `result`
    fitted them ([`gradflow.AlphaSweep`][] `fits`), against `predicted`. With
    `negative_control` (the hypothesis h(w0) = 0 fails) each is also checked not to shrink
    (slope >= -0.1), as the theory predicts."""
    out = []
    for k in DISTANCES:
        out.append(
            exponent_check(
                f"sup_t {k}",
                result.alphas,
                result.sup[k],
                predicted[k],
                tolerance=tolerance,
                applicable=applicable,
                note=note,
                fit=result.fits[k],
            )
        )
        if negative_control:
            out.append(
                exponent_check(
                    f"sup_t {k} (h(w0) != 0)",
                    result.alphas,
                    result.sup[k],
                    -0.1,
                    kind=KINDS.at_least,
                    note="hypothesis h(w0) = 0 fails: the distances are predicted not to shrink",
                    fit=result.fits[k],
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
