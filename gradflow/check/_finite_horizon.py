"""Check of the finite-horizon theorem: rates and the explicit bounds of its proof."""

import time
from typing import TYPE_CHECKING

import numpy as np

from .._problem import Problem
from ..analysis._estimators import lipschitz_dh, tangent_spectrum
from ..sweeps._sweep import DISTANCES
from ._base import CheckReport, Hypothesis, bound_check, h0_hypothesis
from ._common import as_alphas, as_named, problem_report, solve_alphas, sweep_exponents
from ._problems import NamedProblem, flow_problems, research_nets
from ._theorem import Research, Theorem

if TYPE_CHECKING:
    from theory import Statement


def statement() -> "Statement":
    """`theory.finite_horizon()`, imported at first use (importing gradflow imports no sympy)."""
    from theory import finite_horizon

    return finite_horizon()


def check_finite_horizon(
    spec: NamedProblem | Problem,
    *,
    alphas=(10.0, 31.6, 100.0, 316.0, 1000.0),
    bound_alphas=(10.0, 1000.0),
    t1: float = 5.0,
    num_times: int = 51,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    tolerance: float = 0.05,
    lanczos_iters: int | None = None,
    lipschitz_points: int = 6,
    lipschitz_starts: int = 4,
) -> CheckReport:
    r"""Check the finite-horizon theorem on `spec`: the slopes of $\sup_{t \le T}$ of
    $\|w - w_0\|$, $\|w - \bar w\|$, $\|\alpha h(w) - \alpha\bar h(\bar w)\|$ against $\alpha$
    (-1, -2, -1 within `tolerance`), and at each of `bound_alphas` the explicit bounds of
    `theory.finite_horizon()` (energy bound, Gronwall bounds on the output and parameter gaps)
    at every saved time, with the solver's error level from a re-solve 1000 times tighter.

    The constants: $L$ from the loss, $J = \|Dh(w_0)\|$ by Lanczos (exact up to rounding),
    $R_0 = R(\alpha h(w_0))$, and $\mathrm{Lip}(Dh)$ on the ball of radius
    $\sqrt{T R_0}/\min\alpha$ by [`gradflow.lipschitz_dh`][] (a sampled lower bound, exact for
    quadratic models). When $h(w_0) \neq 0$ the report says so and checks instead that the
    distances do not shrink.

    The estimators' budgets, for large models: `lanczos_iters` Lanczos steps for $J$ (default
    `None`: as many as outputs, exact up to rounding; fewer give the top Ritz value, a lower
    bound that converges fastest of all eigenvalues), `lipschitz_points` random points of the
    ball and `lipschitz_starts` power-iteration starts per point for $\mathrm{Lip}(Dh)$.

    **Returns:** a [`gradflow.check.CheckReport`][].
    """
    start = time.perf_counter()
    stmt = statement()
    spec = as_named(spec)
    problem = spec.problem
    alphas = as_alphas(alphas)
    bound_alphas = as_alphas(bound_alphas, "bound_alphas", minimum=1)
    ts = np.linspace(0.0, t1, num_times)
    hyp0, h0 = h0_hypothesis(problem)
    L = problem.loss.smoothness
    hyps = [hyp0, Hypothesis(stmt.hypotheses[1], L is not None, f"L = {L}")]
    family = solve_alphas(problem, alphas, ts, rtol=rtol, atol=atol)
    predicted = {k: stmt.exponent(k) for k in DISTANCES}
    exponents = sweep_exponents(
        family,
        predicted,
        applicable=hyp0.holds and L is not None,
        tolerance=tolerance,
        negative_control=not hyp0.holds,
    )
    bounds, estimates = [], []
    if hyp0.holds and L is not None:
        spectrum = tangent_spectrum(problem, num_iters=lanczos_iters)
        J = float(np.sqrt(spectrum.largest))
        r0 = float(problem.loss(0.0 * problem.h(problem.params0)))
        radius = float(np.sqrt(t1 * r0) / min(bound_alphas))
        lip = lipschitz_dh(
            problem, radius, num_points=lipschitz_points, num_starts=lipschitz_starts
        )
        hyps.append(
            Hypothesis(
                stmt.hypotheses[2],
                bool(np.isfinite(lip.value)),
                f"Lip(Dh) >= {lip.value:.4g} on the ball of radius {radius:.3g}",
            )
        )
        estimates = [
            (
                "J = ||Dh(w0)||",
                J,
                "Lanczos on Dh Dh^* (exact up to rounding)"
                if spectrum.exact
                else f"top Ritz value of {lanczos_iters} Lanczos steps on Dh Dh^* (lower bound)",
            ),
            ("R0 = R(alpha h(w0))", r0, "exact"),
            ("L", float(L), "loss smoothness (exact)"),
            (
                "Lip(Dh)",
                lip.value,
                f"max of ||D^2h|| at {lip.num_points} points of the ball: a lower-bound estimate",
            ),
            ("ball radius sqrt(T R0)/alpha", radius, "exact"),
        ]
        vals = {"R_0": r0, "L": float(L), "J": J, "L_Dh": lip.value, "T": t1, "t": ts}
        for a in bound_alphas:
            sol = (
                family.solutions[int(np.argmin(np.abs(alphas - a)))]
                if np.any(np.isclose(alphas, a))
                else solve_alphas(problem, [a], ts, rtol=rtol, atol=atol).solutions[0]
            )
            ref = solve_alphas(problem, [a], ts, rtol=rtol, atol=atol, reference=True)
            ref = ref.solutions[0]
            for k, name in (
                ("param_distance", "distance_bound"),
                ("output_gap", "output_gap_bound"),
                ("param_gap", "param_gap_bound"),
            ):
                bnd = np.broadcast_to(stmt.numeric(name)(**{**vals, "alpha": a}), ts.shape)
                bounds.append(
                    bound_check(
                        k,
                        a,
                        ts,
                        getattr(sol, k),
                        bnd,
                        getattr(ref, k),
                        note=f"theory.finite_horizon().{name}",
                    )
                )
    return problem_report(
        "finite_horizon",
        spec,
        start,
        hypotheses=hyps,
        exponents=exponents,
        bounds=bounds,
        estimates=estimates,
        settings=(
            ("alphas", alphas.tolist()),
            ("bound_alphas", list(bound_alphas)),
            ("t1", t1),
            ("rtol", rtol),
            ("atol", atol),
            ("reference", "rtol and atol 1000x tighter"),
            ("||h(w0)||", h0),
        ),
    )


THEOREM = Theorem(
    name="finite_horizon",
    statement=statement,
    summary="slopes -1, -2, -1 and the Gronwall bounds of the proof",
    check=check_finite_horizon,
    problems=lambda: flow_problems(control=True),
    # The flows at rtol 1e-6, so that the references 1000x tighter (1e-9) stay affordable.
    # Estimator budgets are cut where a research-size model makes them the cost (each Lanczos
    # step or power iteration is a forward and backward pass over the whole training set): 64
    # Lanczos steps give ||Dh(w0)||^2 of the CNN to 1e-15 of the full 1280-step value, at
    # 1/20 of its time.
    research=Research(
        problems=lambda: list(research_nets()),
        settings=dict(
            alphas=(10.0, 31.6, 100.0, 316.0, 1000.0),
            bound_alphas=(10.0, 1000.0),
            t1=5.0,
            rtol=1e-6,
            atol=1e-8,
            lanczos_iters=64,
            lipschitz_points=2,
            lipschitz_starts=2,
        ),
    ),
)
