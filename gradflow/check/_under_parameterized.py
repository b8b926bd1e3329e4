"""Check of the under-parameterized theorem: geometric convergence at a rate that tends to a
limit independent of alpha."""

import time
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._problem import Problem
from ..analysis._estimators import parameter_spectrum
from ._base import CheckReport, Hypothesis, constant_check, exponent_check, h0_hypothesis
from ._common import as_alphas, as_named, problem_report, solve_alphas_relaxed
from ._problems import NamedProblem, diagonal_net, matrix_factorization, two_layer
from ._theorem import Theorem

if TYPE_CHECKING:
    from theory import Statement


def statement() -> "Statement":
    """`theory.under_parameterized()`, imported at first use (importing gradflow imports no
    sympy)."""
    from theory import under_parameterized

    return under_parameterized()


@eqx.filter_jit
def _grad_norms(problem: Problem, params):
    def one(p):
        return jnp.linalg.norm(ravel_pytree(jax.grad(problem.objective)(p))[0])

    return jax.vmap(one)(params)


def _tail_rate(ts, g, lo: float, hi: float) -> tuple[float, int]:
    """Decay rate of `g` from a least-squares fit of log g against t where g/g[0] lies in
    [lo, hi] (the asymptotic, linear regime; above `lo` so rounding does not enter)."""
    rel = g / g[0]
    use = (rel <= hi) & (rel >= lo) & np.isfinite(rel)
    if use.sum() < 5:
        return np.nan, int(use.sum())
    slope = np.polyfit(ts[use], np.log(g[use]), 1)[0]
    return float(-slope), int(use.sum())


def check_under_parameterized(
    spec: NamedProblem | Problem,
    *,
    alphas=(10.0, 20.0, 50.0, 100.0),
    horizon: float = 30.0,
    num_times: int = 301,
    rtol: float = 1e-10,
    atol: float = 1e-13,
    window: tuple[float, float] = (1e-7, 1e-3),
    tolerance: float = 0.02,
    exponent_tolerance: float = 0.05,
) -> CheckReport:
    r"""Check the under-parameterized theorem on `spec`: for each alpha the flow of $F_\alpha$
    runs to $t_1 = $ `horizon`$/\lambda_\infty$, with
    $\lambda_\infty = \lambda^+_{\min}(Dh(w_0)^* Dh(w_0))$ (Lanczos, exact up to rounding).

    - Measured rate: the decay rate of $\|\nabla F_\alpha(w(t))\|$ fitted on the times where it
      is between `window` times its initial value (above the floor that the solver's tolerance
      and rounding set, ~1e-8 of the initial gradient at alpha = 300 for the nets here).
    - Predicted rate: $\lambda^+_{\min}(\nabla^2 F_\alpha(w_\infty))$ at the end point (Lanczos on
      Hessian-vector products); compared within `tolerance` (relative).
    - Independence of alpha: $|\lambda(\alpha) - \lambda_\infty|$ decays like $1/\alpha$
      (`theory.under_parameterized().example_rate_deviation`), slope -1 within
      `exponent_tolerance`, fitted on the predicted rates.
    - Hypotheses: $h(w_0) = 0$, a strongly convex loss, $\operatorname{rank} Dh(w_0) <
      \dim F$ (the flow cannot interpolate) and the same rank at every $w_\infty$.

    **Returns:** a [`gradflow.check.CheckReport`][].
    """
    start = time.perf_counter()
    stmt = statement()
    spec = as_named(spec)
    problem = spec.problem
    alphas = as_alphas(alphas)
    hyp0, _ = h0_hypothesis(problem)
    m = problem.loss.strong_convexity
    spec0 = parameter_spectrum(problem)
    n_out = int(np.prod(problem.loss.targets.shape))
    lam_inf = spec0.smallest_nonzero
    hyps = [
        hyp0,
        Hypothesis(stmt.hypotheses[1], m is not None, f"m = {m}"),
        Hypothesis(
            "rank Dh(w0) < dim F (under-parameterized)",
            spec0.rank < n_out,
            f"rank {spec0.rank}, p = {problem.num_params}, dim F = {n_out}",
        ),
    ]
    t1 = horizon / lam_inf
    ts = np.linspace(0.0, t1, num_times)
    family = solve_alphas_relaxed(
        problem, alphas, ts, rtol=rtol, atol=atol, linearized=False, save_params=True
    )
    measured, predicted, ranks, points = [], [], [], []
    for i, a in enumerate(alphas):
        pa = problem.with_alpha(float(a))
        sol = family.solution_at(i)
        g = np.asarray(_grad_norms(pa, sol.params))
        rate, npts = _tail_rate(ts, g, *window)
        w_end = jax.tree_util.tree_map(lambda x: x[-1], sol.params)
        hess = parameter_spectrum(pa, w_end, hessian=True)
        ranks.append(parameter_spectrum(problem, w_end).rank)
        measured.append(rate)
        predicted.append(hess.smallest_nonzero)
        points.append(npts)
    hyps.append(
        Hypothesis(
            "rank Dh constant (at w0 and at each w_inf)",
            all(r == spec0.rank for r in ranks),
            f"rank at w0 {spec0.rank}, at w_inf {ranks}",
        )
    )
    holds = all(h.holds for h in hyps)
    constants = [
        constant_check(
            f"geometric rate at alpha={a:g}",
            pr,
            me,
            tolerance,
            applicable=holds,
            note=f"fit on {n} saved times; prediction lambda_min^+(Hess F_alpha(w_inf))",
        )
        for a, pr, me, n in zip(alphas, predicted, measured, points)
    ]
    constants.append(
        constant_check(
            f"rate at alpha={alphas[-1]:g} vs the alpha -> infinity limit",
            lam_inf,
            predicted[-1],
            10.0 / alphas[-1],
            applicable=holds,
            note="limit lambda_min^+(Dh(w0)^* Dh(w0)); tolerance 10/alpha (the O(1/alpha) law)",
        )
    )
    dev = np.abs(np.asarray(predicted) - lam_inf)
    exponents = [
        exponent_check(
            "|rate(alpha) - rate(inf)|",
            alphas,
            dev,
            stmt.exponent("rate_deviation"),
            tolerance=exponent_tolerance,
            applicable=holds,
            note="predicted rates (Hessian at w_inf)",
        )
    ]
    return problem_report(
        "under_parameterized",
        spec,
        start,
        hypotheses=hyps,
        exponents=exponents,
        constants=constants,
        estimates=(
            (
                "lambda_inf = lambda_min^+(Dh(w0)^* Dh(w0))",
                lam_inf,
                "Lanczos (exact up to rounding)",
            ),
            *(
                (f"measured rate, alpha={a:g}", r, "log-linear tail fit")
                for a, r in zip(alphas, measured)
            ),
        ),
        settings=(
            ("alphas", alphas.tolist()),
            ("t1", t1),
            ("rtol", rtol),
            ("atol", atol),
            ("window", list(window)),
        ),
    )


def _problems() -> list[NamedProblem]:
    """Three constant-rank models with fewer parameters than outputs, centered (the theorem
    needs h(w0) = 0 outright): a rank-one factorization of a 4 x 3 matrix, a diagonal net
    with 12 samples in dimension 3, and a two-layer net of width 2 on 20 points."""
    return [
        matrix_factorization(size=(4, 3), rank=1),
        diagonal_net(samples=12, dim=3),
        two_layer(samples=20, dim=3, width=2, input_scale=3.0),
    ]


# No research size: the theorem needs a constant-rank model with fewer parameters than outputs,
# which a real-size net is not.
THEOREM = Theorem(
    name="under_parameterized",
    statement=statement,
    summary="the geometric rate and its independence of alpha",
    check=check_under_parameterized,
    problems=_problems,
)
