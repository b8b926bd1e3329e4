"""Check of the over-parameterized theorem: C0 condition, geometric envelope, displacement bound
and the uniform-in-time rates."""

import time
from typing import TYPE_CHECKING

import numpy as np

from .._losses import SquareLoss, empirical_norm
from .._problem import Problem
from ..analysis._estimators import lipschitz_dh, tangent_spectrum
from ..sweeps._sweep import DISTANCES
from ._base import CheckReport, Hypothesis, bound_check, h0_hypothesis
from ._common import (
    as_alphas,
    as_named,
    problem_report,
    residual_norm,
    solve_alphas,
    sweep_exponents,
)
from ._problems import NamedProblem, flow_problems
from ._theorem import Theorem

if TYPE_CHECKING:
    from theory import Statement


def statement() -> "Statement":
    """`theory.over_parameterized()`, imported at first use (importing gradflow imports no
    sympy)."""
    from theory import over_parameterized

    return over_parameterized()


def check_over_parameterized(
    spec: NamedProblem | Problem,
    *,
    alphas=(100.0, 200.0, 500.0, 1000.0, 2000.0),
    bound_alphas=None,
    horizon: float = 40.0,
    num_times: int = 61,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    tolerance: float = 0.05,
) -> CheckReport:
    r"""Check the over-parameterized theorem (uniform in time) on `spec`.

    Hypotheses: a strongly convex smooth loss (square loss, $\kappa = 1$, $m = 1$),
    $\sigma = \sigma_{\min}(Dh(w_0)^\top) > 0$ (Lanczos on $\Sigma_0$, exact up to rounding),
    $\|h(w_0)\| \le C_0 = \sigma^3/(32\kappa^{3/2} J\,\mathrm{Lip}(Dh))$ and $\alpha > \|y^*\|/C_0$,
    with $\mathrm{Lip}(Dh)$ estimated on the ball of radius $\sigma/(2\mathrm{Lip}(Dh))$ by
    [`gradflow.lipschitz_dh`][] (a lower-bound estimate). The flows run to
    $t_1 = $ `horizon`$/(m\sigma^2)$ on a geometric time grid.

    Checked: at each of `bound_alphas` (default: the smallest and largest admissible alpha) the
    envelope $\|\alpha h(w(t)) - y^*\| \le \sqrt\kappa \|\alpha h(w_0) - y^*\| e^{-m\sigma^2 t/4}$
    and the displacement bound at every saved time; over the admissible alphas the slopes of
    $\sup_t$ of the three distances (-1, -2, -1; the theorem's $O(\log\alpha/\alpha^2)$ for the gap
    has local slope $-2 + 1/\log\alpha$, and -2 is measured).

    **Returns:** a [`gradflow.check.CheckReport`][].
    """
    start = time.perf_counter()
    stmt = statement()
    spec = as_named(spec)
    problem = spec.problem
    alphas = as_alphas(alphas)
    loss = problem.loss
    m, M = loss.strong_convexity, loss.smoothness
    square = isinstance(loss, SquareLoss)
    hyps = [
        Hypothesis(
            stmt.hypotheses[0] + " (square loss, to read ||alpha h - y*|| off the loss)",
            bool(square and m is not None and M is not None),
            f"m = {m}, M = {M}",
        )
    ]
    spectrum = tangent_spectrum(problem)
    n_out, p = spectrum.eigenvalues.size, problem.num_params
    sigma = float(np.sqrt(max(spectrum.smallest, 0.0)))
    J = float(np.sqrt(spectrum.largest))
    hyps.append(
        Hypothesis(
            stmt.hypotheses[1],
            bool(sigma > 1e-6 * J and p >= n_out),
            f"sigma_min = {sigma:.4g}, ||Dh(w0)|| = {J:.4g}, p = {p}, dim F = {n_out}",
        )
    )
    kappa = (M / m) if (m and M) else np.inf
    h0 = float(empirical_norm(problem.h(problem.params0)))
    ystar = float(empirical_norm(loss.minimizer))
    estimates, bounds, exponents = [], [], []
    admissible = np.zeros(alphas.shape, bool)
    if hyps[0].holds and hyps[1].holds:
        lip0 = lipschitz_dh(problem, 0.0, num_points=0).value
        lip = lipschitz_dh(problem, sigma / (2 * lip0))
        vals = {
            "sigma": sigma,
            "kappa": kappa,
            "J": J,
            "L_Dh": lip.value,
            "m": float(m),
            "y_star": ystar,
        }
        c0 = float(stmt.numeric("C0")(**vals))
        a_min = float(stmt.numeric("alpha_min")(**vals))
        hyps.append(Hypothesis("||h(w0)|| <= C0", h0 <= c0, f"||h(w0)|| = {h0:.3e}, C0 = {c0:.4g}"))
        admissible = alphas > a_min
        hyps.append(
            Hypothesis(
                "alpha > ||y*||/C0 (at >= 3 of the alphas)",
                int(admissible.sum()) >= 3,
                f"||y*||/C0 = {a_min:.4g}; admissible alphas: {alphas[admissible].tolist()}",
            )
        )
        estimates = [
            ("sigma_min(Dh(w0)^T)", sigma, "Lanczos on Sigma_0 (exact up to rounding)"),
            ("J = ||Dh(w0)||", J, "Lanczos (exact up to rounding)"),
            (
                "Lip(Dh)",
                lip.value,
                f"max of ||D^2h|| at {lip.num_points} points of the ball of "
                f"radius {lip.radius:.3g}: a lower-bound estimate",
            ),
            ("C0", c0, "theory.over_parameterized().C0"),
            ("alpha_min = ||y*||/C0", a_min, "theory.over_parameterized().alpha_min"),
            ("kappa = M/m", float(kappa), "loss constants (exact)"),
        ]
    holds = all(h.holds for h in hyps)
    # Without sigma_min > 0 there is no linear rate to scale the horizon by; use ||Dh(w0)||.
    scale = sigma if hyps[1].holds else J
    t1 = horizon / (float(m or 1.0) * scale**2)
    ts = np.concatenate([[0.0], np.geomspace(1e-4 * t1, t1, num_times - 1)])
    use = admissible if holds else np.ones(alphas.shape, bool)
    family = solve_alphas(problem, alphas[use], ts, rtol=rtol, atol=atol)
    predicted = {k: stmt.exponent(k) for k in DISTANCES}
    hyp0, _ = h0_hypothesis(problem)
    if holds and not hyp0.holds:
        exponents = []  # the envelope holds, but the rates need h(w0) = 0
    else:
        exponents = sweep_exponents(
            family,
            predicted,
            applicable=holds,
            tolerance=tolerance,
            note=stmt.notes,
            negative_control=not hyp0.holds,
        )
    if holds:
        chosen = alphas[use][[0, -1]] if bound_alphas is None else np.asarray(bound_alphas)
        for a in chosen:
            i = int(np.argmin(np.abs(alphas[use] - a)))
            sol = (
                family.solutions[i]
                if np.isclose(alphas[use][i], a)
                else solve_alphas(problem, [a], ts, rtol=rtol, atol=atol).solutions[0]
            )
            ref = solve_alphas(problem, [a], ts, rtol=rtol, atol=atol, reference=True)
            ref = ref.solutions[0]
            r0 = residual_norm(problem, a)
            vals_a = {**vals, "r_0": r0, "alpha": float(a), "t": ts}
            env = stmt.numeric("envelope")(**vals_a)
            bounds.append(
                bound_check(
                    "||alpha h(w(t)) - y*||",
                    a,
                    ts,
                    np.sqrt(2 * np.asarray(sol.loss)),
                    env,
                    np.sqrt(2 * np.asarray(ref.loss)),
                    note="envelope sqrt(kappa) r0 exp(-m s^2 t/4)",
                )
            )
            disp = np.full(ts.shape, float(stmt.numeric("displacement_bound")(**vals_a)))
            bounds.append(
                bound_check(
                    "param_distance",
                    a,
                    ts,
                    sol.param_distance,
                    disp,
                    ref.param_distance,
                    note="8 kappa^1.5 J r0/(alpha s^2)",
                )
            )
    return problem_report(
        "over_parameterized",
        spec,
        start,
        hypotheses=hyps,
        exponents=exponents,
        bounds=bounds,
        estimates=estimates,
        settings=(("alphas", alphas.tolist()), ("t1", t1), ("rtol", rtol), ("atol", atol)),
    )


# No research size: the theorem needs alpha > ||y*|| / C0 with C0 ~ sigma_min^3
# (sigma_min^2 = 7e-3 on the research two-layer net: alpha of order 1e6 and beyond).
THEOREM = Theorem(
    name="over_parameterized",
    statement=statement,
    summary="the C0 condition, the geometric envelope, the displacement bound, uniform rates",
    check=check_over_parameterized,
    problems=lambda: flow_problems(control=True),
)
