"""Checks of the scale criterion: its 1/alpha law, the q-homogeneous time change, and the width
law of two-layer nets."""

import time
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from .._losses import SquareLoss, empirical_norm
from .._problem import Problem
from .._solve import solve
from ..analysis._diagnostics import scale_criterion
from ..analysis._estimators import tangent_spectrum
from ..models import TwoLayer
from ._base import (
    KINDS,
    CheckReport,
    Hypothesis,
    constant_check,
    exponent_check,
    h0_hypothesis,
)
from ._common import as_alphas, as_named, problem_report, residual_norm
from ._problems import (
    SMALL_NET,
    NamedProblem,
    _sphere,
    diagonal_net,
    matrix_factorization,
    research_nets,
    two_layer,
)
from ._theorem import Research, Theorem

if TYPE_CHECKING:
    from theory import Statement


def statement() -> "Statement":
    """`theory.scale_criterion()`, imported at first use (importing gradflow imports no
    sympy)."""
    from theory import scale_criterion as stmt_fn

    return stmt_fn()


def _homogeneity_error(problem: Problem, q: int, tau: float, ts: np.ndarray, rtol: float) -> float:
    r"""$\max_t \|x(t) - \tau v(s(t))\| / \max_t \|x(t)\|$: $x$ the flow of $R(h)$ from
    $\tau w_0$, $v$ the flow of $F_\alpha$ from $w_0$, with $\alpha$ and $s$ from
    `theory.homogeneity_time_change()` (the statement's `homogeneity_alpha`, `homogeneity_time`)."""
    stmt = statement()
    # `lambda` (the symbol of tau) is a Python keyword: the values go in as a dict.
    vals = {"lambda": tau, "q": q}
    alpha = float(stmt.numeric("homogeneity_alpha")(**vals))
    time_change = stmt.numeric("homogeneity_time")
    scaled = jax.tree_util.tree_map(lambda x: tau * x, problem.params0)
    x_problem = eqx.tree_at(lambda p: p.params0, problem, scaled).with_alpha(1.0)
    x = solve(x_problem, ts=ts, rtol=rtol, atol=rtol * 1e-3, linearized=False, save_params=True)
    v = solve(
        problem.with_alpha(alpha),
        ts=np.asarray(time_change(**vals, t=ts) + 0 * ts),
        rtol=rtol,
        atol=rtol * 1e-3,
        linearized=False,
        save_params=True,
    )
    xf = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(x.params))
    vf = np.asarray(jax.vmap(lambda p: ravel_pytree(p)[0])(v.params))
    return float(np.max(np.linalg.norm(xf - tau * vf, axis=1)) / np.max(np.linalg.norm(xf, axis=1)))


def check_scale_criterion(
    spec: NamedProblem | Problem,
    *,
    alphas=(1.0, 10.0, 100.0, 1000.0, 1e4),
    taus=(0.5, 2.0),
    t1: float = 2.0,
    rtol: float = 1e-10,
    tolerance: float = 0.05,
    num_starts: int = 8,
    num_iters: int = 500,
    lanczos_iters: int | None = None,
) -> CheckReport:
    r"""Check the scale criterion on `spec`.

    - $h(w_0) = 0$: $\kappa_{\alpha h}$ against alpha has slope -1 (`tolerance`), and
      $\alpha\kappa_{\alpha h} = \|y^*\| H / J^2$ (`theory.scale_criterion().kappa_centered`).
    - $h(w_0) \neq 0$: slope 0 over the three largest alphas, and $\kappa$ at the largest alpha
      equals the limit $\|h(w_0)\| H/J^2$ within $10/\alpha$ relative.
    - Both: $\|Dh(w_0)\|$ from the criterion's power iteration equals the Lanczos value.
    - If `spec.degree` is $q$ (a $q$-homogeneous, uncentered model): for each $\tau$ in `taus`,
      the flow of $R(h)$ from $\tau w_0$ equals $\tau v(\tau^{2q-2} t)$, $v$ the flow of
      $F_{\tau^q}$ from $w_0$ (`theory.homogeneity_time_change()`), to 1e-6 relative.

    $\|Dh(w_0)\|$ and $\|D^2h(w_0)\|$ do not depend on alpha: they are estimated once
    ([`gradflow.scale_criterion`][] with `num_starts` starts and at most `num_iters`
    iterations) and $\kappa_{\alpha h}$ is formed at each alpha from its residual
    $\|\alpha h(w_0) - y^*\|_F$. `lanczos_iters`: Lanczos steps of the reference value of
    $\|Dh(w_0)\|$ (default: as many as outputs, exact up to rounding).

    **Returns:** a [`gradflow.check.CheckReport`][].
    """
    start = time.perf_counter()
    stmt = statement()
    spec = as_named(spec)
    problem = spec.problem
    alphas = as_alphas(alphas, minimum=3)
    hyp0, h0 = h0_hypothesis(problem)
    crit = scale_criterion(
        problem.with_alpha(float(alphas[0])), num_starts=num_starts, num_iters=num_iters
    )
    J, H = crit.jacobian_norm, crit.hessian_norm
    kappas = np.array(
        [residual_norm(problem, a) * H / (a * J**2) if J > 0 else np.inf for a in alphas]
    )
    J_lanczos = float(np.sqrt(tangent_spectrum(problem, num_iters=lanczos_iters).largest))
    ystar = float(empirical_norm(problem.loss.minimizer))
    vals = {"H": H, "J": J, "y_star": ystar, "h_0": h0}
    exponents = []
    constants = [constant_check("||Dh(w0)||: power iteration vs Lanczos", J_lanczos, J, 1e-6)]
    if hyp0.holds:
        exponents.append(
            exponent_check(
                "kappa_{alpha h}",
                alphas,
                kappas,
                stmt.exponent("kappa_centered"),
                tolerance=tolerance,
            )
        )
        constants.append(
            constant_check(
                "alpha * kappa (h(w0) = 0)",
                float(stmt.numeric("kappa_centered")(**vals, alpha=1.0)),
                float(alphas[-1] * kappas[-1]),
                1e-8,
            )
        )
    else:
        exponents.append(
            exponent_check(
                "kappa_{alpha h} (h(w0) != 0, large alpha)",
                alphas[-3:],
                kappas[-3:],
                stmt.exponent("kappa_uncentered"),
                tolerance=tolerance,
                note="a nonzero limit: the model is not lazy however large alpha is",
            )
        )
        constants.append(
            constant_check(
                f"kappa at alpha={alphas[-1]:g} vs its limit ||h(w0)|| H / J^2",
                float(stmt.numeric("kappa_uncentered_limit")(**vals)),
                float(kappas[-1]),
                10.0 / alphas[-1],
            )
        )
    hyps = [Hypothesis("h(w0) = 0 for the O(1/alpha) law", hyp0.holds, hyp0.detail)]
    if spec.degree is not None:
        ts = np.linspace(0.0, t1, 11)
        for tau in taus:
            err = _homogeneity_error(problem, spec.degree, float(tau), ts, rtol)
            constants.append(
                constant_check(
                    f"flow from tau*w0 vs tau v(tau^{2 * spec.degree - 2} t), tau={tau:g}, "
                    f"q={spec.degree}",
                    0.0,
                    err,
                    1e-6,
                    note="max_t ||x - tau v|| / max_t ||x||; alpha = tau^q",
                )
            )
    return problem_report(
        "scale_criterion",
        spec,
        start,
        hypotheses=hyps,
        exponents=exponents,
        constants=constants,
        estimates=(
            ("J = ||Dh(w0)||", J, "power iteration (lower bound)"),
            (
                "H = ||D^2h(w0)||",
                H,
                f"best of {num_starts} power iterations (lower bound)"
                + ("" if crit.converged else f", stopped at {num_iters} iterations"),
            ),
            *(
                (f"kappa at alpha={a:g}", float(k), "gf.scale_criterion's norms, residual at alpha")
                for a, k in zip(alphas, kappas)
            ),
        ),
        settings=(
            ("alphas", alphas.tolist()),
            ("taus", list(taus)),
            ("t1", t1),
            ("num_starts", num_starts),
            ("num_iters", num_iters),
        ),
    )


def check_width_law(
    *,
    widths=(64, 256, 1024, 4096),
    seeds=(0, 1, 2, 3),
    samples: int = 10,
    dim: int = 5,
    activation: str = "tanh",
    tolerance: float = 0.05,
) -> CheckReport:
    r"""The scale criterion of uncentered two-layer nets against the width $m$:
    $E\kappa \lesssim m^{-1/2} + (m\alpha(m))^{-1}$, so slope $-1/2$ with $\alpha(m) = m^{-1/2}$
    (lazy as $m$ grows) and slope $0$ with $\alpha(m) = 1/m$ (mean field: not lazy). $\kappa$ is
    averaged over `seeds` (fixed data and targets); each width compiles once.

    **Returns:** a [`gradflow.check.CheckReport`][] (problem `"twolayer-widths"`).
    """
    start = time.perf_counter()
    stmt = statement()
    kx, ky = jax.random.split(jax.random.PRNGKey(1234))
    x = _sphere(kx, samples, dim)
    y = np.tanh(np.asarray(x) @ np.asarray(jax.random.normal(ky, (dim,))))[:, None]
    widths = np.asarray(widths, int)
    mean = {}
    for scaling in ("sqrt", "mean_field"):
        vals = []
        for m_ in widths:
            model = TwoLayer(int(m_), activation, scaling)
            ks = []
            for seed in seeds:
                params = model.init(jax.random.PRNGKey(seed), dim, input_init="sphere")
                prob = Problem(model, params, x, SquareLoss(y))
                ks.append(scale_criterion(prob, num_starts=4).kappa)
            vals.append(float(np.mean(ks)))
        mean[scaling] = np.array(vals)
    # The law is an upper bound (<~): the 1/sqrt(m) scaling must decay at least as fast as
    # m^-1/2 (slope <= -1/2 + tolerance); the mean-field scaling must not decay (slope >=
    # -tolerance): kappa stays of order one, the net is not lazy however wide.
    exponents = (
        exponent_check(
            "E kappa (alpha(m) = m^-1/2)",
            widths,
            mean["sqrt"],
            float(stmt.expr("width_exponent_sqrt")) + tolerance,
            kind=KINDS.at_most,
            variable="width m",
            note="upper-bound law: slope <= -1/2 + tolerance",
        ),
        exponent_check(
            "E kappa (alpha(m) = 1/m)",
            widths,
            mean["mean_field"],
            float(stmt.expr("width_exponent_mean_field")) - tolerance,
            kind=KINDS.at_least,
            variable="width m",
            note="no decay: slope >= -tolerance (Gaussian b: ||D^2h|| carries "
            "max_i |b_i| ~ sqrt(2 log m), a slowly growing factor)",
        ),
    )
    return CheckReport(
        theorem="scale_criterion",
        problem="twolayer-widths",
        description=f"uncentered two-layer {activation} nets, n={samples}, d={dim}, widths "
        f"{widths.tolist()}, kappa averaged over {len(seeds)} seeds",
        hypotheses=(
            Hypothesis(
                "E phi(theta_i) = 0 (output weights symmetric in law)",
                True,
                "b ~ N(0, 1), a uniform on the sphere",
            ),
        ),
        exponents=exponents,
        constants=(),
        bounds=(),
        estimates=tuple(
            (f"E kappa, {s}, m={m_}", float(v), "mean of gf.scale_criterion")
            for s in mean
            for m_, v in zip(widths, mean[s])
        ),
        seconds=time.perf_counter() - start,
        settings=(("widths", widths.tolist()), ("seeds", list(seeds))),
    )


def _problems() -> list[NamedProblem]:
    """Matrix factorization centered and not, a depth-3 diagonal net not centered, the
    two-layer net centered, and a ReLU two-layer net with a doubled init (h(w0) = 0 and
    2-homogeneous, for the time change)."""
    return [
        matrix_factorization(),
        matrix_factorization(center=False),
        diagonal_net(depth=3, center=False),
        two_layer(**SMALL_NET),
        two_layer(**SMALL_NET, activation="relu", center=False, doubled=True),
    ]


THEOREM = Theorem(
    name="scale_criterion",
    statement=statement,
    summary="the scale criterion's 1/alpha law, homogeneity and width laws",
    check=check_scale_criterion,
    problems=_problems,
    # 64 Lanczos steps for the reference ||Dh(w0)|| (the CNN's to 1e-15 of the full value) and
    # 4 power-iteration starts: each is a pass over the whole training set.
    research=Research(
        problems=lambda: list(research_nets()),
        settings=dict(num_starts=4, lanczos_iters=64),
    ),
    extras=(check_width_law,),
)
