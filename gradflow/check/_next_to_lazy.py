r"""The next-to-lazy correction for any JAX model, and its check against the real flow.

With $h(w_0) = 0$ and $J = Dh(w_0)$, $w_\alpha = w_0 + u/\alpha + v/\alpha^2 + O(\alpha^{-3})$
where (see `theory.next_to_lazy` for the derivation)

$$u' = -J^\top \nabla R(J u), \qquad
  v' = -J^\top \nabla^2 R(J u)\big[J v + \tfrac12 D^2h(w_0)[u, u]\big]
       - (D^2h(w_0)[u, \cdot])^\top \nabla R(J u).$$

$D^2h[u, u]$ is a JVP of a JVP; $(D^2h[u, \cdot])^\top g$ is a VJP of $w \mapsto Dh(w) u$.
"""

import time
from typing import TYPE_CHECKING

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._losses import empirical_norm
from .._problem import Problem, _flatten
from .._typing import Array, ArrayLike
from ..sweeps._sweep import DISTANCES
from ._base import CheckReport, Curve, Hypothesis, constant_check, exponent_check, h0_hypothesis
from ._common import as_alphas, as_named, problem_report, solve_alphas_relaxed
from ._problems import NamedProblem, flow_problems, research_nets
from ._theorem import Research, Theorem

if TYPE_CHECKING:
    from theory import Statement


def statement() -> "Statement":
    """`theory.next_to_lazy_expansion()`, imported at first use (importing gradflow imports no
    sympy)."""
    from theory import next_to_lazy_expansion

    return next_to_lazy_expansion()


class NextToLazy(eqx.Module):
    r"""The limits of the three distances, from the next-to-lazy system, at `ts`:

    - `param_distance`: $\|u(t)\| = \lim \alpha \|w - w_0\|$,
    - `param_gap`: $\|v(t)\| = \lim \alpha^2 \|w - \bar w\|$,
    - `output_gap`: $\|J v + \tfrac12 D^2h(w_0)[u, u]\|_F = \lim \alpha \|\alpha h(w) -
      \alpha\bar h(\bar w)\|_F$;
    `u`, `v`: the flat states, shape `(len(ts), p)`.
    """

    ts: Array
    param_distance: Array
    param_gap: Array
    output_gap: Array
    u: Array
    v: Array


@eqx.filter_jit
def _next_to_lazy(problem: Problem, ts: Array, rtol: Array, atol: Array):
    flat = _flatten(problem)
    w0, h, loss = flat.w0, flat.h, flat.loss

    def second(u):
        return jax.jvp(lambda w: jax.jvp(h, (w,), (u,))[1], (w0,), (u,))[1]

    def mixed_t(u, g):
        _, vjp = jax.vjp(lambda w: jax.jvp(h, (w,), (u,))[1], w0)
        return vjp(g)[0]

    def field(t, y, args):
        del t, args
        u, v = y
        ju = flat.jvp0(u)
        g = loss.grad(ju)
        du = -flat.vjp0(g)
        direction = flat.jvp0(v) + 0.5 * second(u)
        hg = jax.jvp(loss.grad, (ju,), (direction,))[1]
        dv = -flat.vjp0(hg) - mixed_t(u, g)
        return du, dv

    def fn(t, y, args):
        del t, args
        u, v = y
        out = flat.jvp0(v) + 0.5 * second(u)
        return {
            "u": u,
            "v": v,
            "param_distance": jnp.linalg.norm(u),
            "param_gap": jnp.linalg.norm(v),
            "output_gap": empirical_norm(out),
        }

    sol = dfx.diffeqsolve(
        dfx.ODETerm(field),
        dfx.Tsit5(),
        t0=jnp.zeros((), w0.dtype),
        t1=ts[-1],
        dt0=None,
        y0=(jnp.zeros_like(w0), jnp.zeros_like(w0)),
        saveat=dfx.SaveAt(ts=ts, fn=fn),
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol),
        max_steps=100_000,
        adjoint=dfx.ForwardMode(),
    )
    return sol.ys


def next_to_lazy(
    problem: Problem, ts: ArrayLike, *, rtol: float = 1e-10, atol: float = 1e-12
) -> NextToLazy:
    r"""Integrate the next-to-lazy system $(u, v)$ of `problem` (which needs $h(w_0) = 0$:
    `center=True` or a doubled init) jointly with diffrax (Tsit5) at tolerance `rtol`.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][]; its `alpha` is irrelevant.
    - `ts`: increasing save times starting at or after 0.
    - `rtol`, `atol`: the step-size controller's tolerances.

    **Returns:** a [`gradflow.check.NextToLazy`][] with the limits of $\alpha\|w - w_0\|$,
    $\alpha^2\|w - \bar w\|$ and $\alpha\|\alpha h(w) - \alpha \bar h(\bar w)\|_F$.
    """
    hyp, h0 = h0_hypothesis(problem)
    if not hyp.holds:
        raise ValueError(
            f"The next-to-lazy expansion needs h(w0) = 0; got ||h(w0)|| = {h0:.3e}. Build the "
            "problem with `center=True` or a doubled (symmetric) init."
        )
    dtype = problem.dtype
    ts = jnp.asarray(ts, dtype)
    if ts.ndim != 1 or ts.shape[0] == 0 or float(ts[-1]) <= 0:
        raise ValueError("`ts` must be a non-empty 1-d array of times ending after 0.")
    ys = _next_to_lazy(problem, ts, jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype))
    return NextToLazy(ts, ys["param_distance"], ys["param_gap"], ys["output_gap"], ys["u"], ys["v"])


def check_next_to_lazy(
    spec: NamedProblem | Problem,
    *,
    alphas=(10.0, 30.0, 100.0),
    alpha_large: float = 1000.0,
    t1: float = 5.0,
    num_times: int = 26,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    tolerance: float = 0.01,
    exponent_tolerance: float = 0.05,
    limit_rtol: float = 1e-10,
    limit_atol: float = 1e-12,
) -> CheckReport:
    r"""Check the next-to-lazy prediction: at `alpha_large`, $\alpha^2\|w - \bar w\|(t)$,
    $\alpha\|w - w_0\|(t)$ and $\alpha\|\alpha h(w) - \alpha\bar h(\bar w)\|(t)$ against the
    limits from [`gradflow.check.next_to_lazy`][] (relative error `tolerance`, measured as
    $\max_t |\text{measured} - \text{limit}| / \max_t \text{limit}$), and the $O(1/\alpha)$ decay
    of that error over `alphas` (slope $-1$ within `exponent_tolerance`; the powers of alpha and
    the slopes are the exponents of [`theory.next_to_lazy_expansion`][]). The solves use `rtol`
    (1e-10: the $1/\alpha$ error at $\alpha = 100$ is ~1e-6 of the limit for smooth nets, so the
    solver must resolve well below it), relaxed to `max(rtol, 100 alpha^2 eps)` where the scaled
    state limits accuracy. `limit_rtol`, `limit_atol`: the tolerances of the next-to-lazy
    system itself ([`gradflow.check.next_to_lazy`][]).

    **Returns:** a [`gradflow.check.CheckReport`][].
    """
    start = time.perf_counter()
    stmt = statement()
    spec = as_named(spec)
    problem = spec.problem
    hyp, _ = h0_hypothesis(problem)
    alphas = as_alphas(alphas)
    alpha_large = float(as_alphas([alpha_large], "alpha_large", minimum=1)[0])
    ts = np.linspace(0.0, t1, num_times)
    hyps = (hyp, Hypothesis("R twice differentiable", True, type(problem.loss).__name__))
    constants, exponents, curves = [], [], []
    if hyp.holds:
        ntl = next_to_lazy(problem, ts, rtol=limit_rtol, atol=limit_atol)
        # alpha^s distance has a limit where the distance decays as alpha^-s.
        scale = {k: int(-stmt.exponent(k)) for k in DISTANCES}
        errs = {k: [] for k in scale}
        family = solve_alphas_relaxed(problem, [*alphas, alpha_large], ts, rtol=rtol, atol=atol)
        for i, a in enumerate([*alphas, alpha_large]):
            sol = family.solution_at(i)
            for k, s in scale.items():
                meas = a**s * np.asarray(getattr(sol, k))
                pred = np.asarray(getattr(ntl, k))
                errs[k].append(float(np.max(np.abs(meas - pred)) / np.max(pred)))
                if i == len(alphas):
                    curves.append(Curve(f"alpha^{s} {k}", float(a), ts, meas, pred))
                    constants.append(
                        constant_check(
                            f"sup_t alpha^{s} {k} (alpha={a:g})",
                            np.max(pred),
                            np.max(meas),
                            tolerance,
                            note=f"max_t |measured - limit| / max limit = {errs[k][-1]:.2e}",
                        )
                    )
        for k in scale:
            exponents.append(
                exponent_check(
                    f"relative error of the {k} limit",
                    alphas,
                    errs[k][: len(alphas)],
                    stmt.exponent(f"{k}_limit_error"),
                    tolerance=exponent_tolerance,
                    note="the next term of the expansion is O(1/alpha)",
                )
            )
    return problem_report(
        "next_to_lazy",
        spec,
        start,
        hypotheses=hyps,
        exponents=exponents,
        constants=constants,
        settings=(
            ("alphas", alphas.tolist()),
            ("alpha_large", alpha_large),
            ("t1", t1),
            ("rtol", rtol),
            ("atol", atol),
            ("limit_rtol", limit_rtol),
        ),
        curves=curves,
    )


THEOREM = Theorem(
    name="next_to_lazy",
    statement=statement,
    summary="the 1/alpha^2 constant from the next-to-lazy ODE",
    check=check_next_to_lazy,
    problems=lambda: flow_problems(control=False),
    research=Research(
        problems=lambda: list(research_nets()[:2]),
        # The flows and the limit at 1e-9: their 1/alpha errors reach 1e-7 of the limits.
        settings=dict(
            alphas=(10.0, 30.0, 100.0),
            alpha_large=1000.0,
            t1=5.0,
            rtol=1e-9,
            atol=1e-11,
            limit_rtol=1e-9,
            limit_atol=1e-11,
        ),
        # The CNN's second-order term is large in tangent-kernel units (its scale criterion at
        # alpha = 1 is ||y*|| ||D^2h|| / ||Dh||^2 = 2.65, against 0.012 for the two-layer net),
        # so its expansion is asymptotic only from alpha ~ 100: the local slopes of the error
        # of the ||u|| limit are -1.24, -1.09, -1.03, -1.01 over 10-30-100-300-1000.
        problem_settings={
            "vgg-8-8-16-16-softplus-digits-n128": dict(
                alphas=(100.0, 300.0, 1000.0), alpha_large=3000.0
            ),
        },
    ),
)
