"""Check of the off-training-set theorem: the model against its linearization on held-out
inputs, with the constants $M_1$, $M_2$ measured on the held-out set."""

import math
import time
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._losses import _check_finite
from .._problem import Problem
from .._typing import Array, Inputs, Params
from ..analysis._operators import lanczos as _lanczos
from ._base import KINDS, CheckReport, Hypothesis, bound_check, exponent_check, h0_hypothesis
from ._common import as_alphas, as_named, problem_report, solve_alphas
from ._problems import SMALL_NET, NamedProblem, diagonal_net, matrix_completion, two_layer
from ._theorem import Theorem

if TYPE_CHECKING:
    from theory import Statement

GAP = "sup_X off-training gap at T"


def statement() -> "Statement":
    """`theory.off_training_set()`, imported at first use (importing gradflow imports no
    sympy)."""
    from theory import off_training_set

    return off_training_set()


def _num_points(problem: Problem, held_out: Inputs) -> int:
    """Validate the held-out inputs against the model; return their number."""
    leaves = jax.tree_util.tree_leaves(held_out)
    if not leaves:
        raise ValueError(
            "`held_out` has no arrays: pass inputs off the training set with the structure of "
            "`problem.inputs` and a leading axis over the points."
        )
    for leaf in leaves:
        _check_finite("held_out", leaf)
    sizes = {int(np.shape(leaf)[0]) if np.ndim(leaf) else -1 for leaf in leaves}
    if len(sizes) != 1 or min(sizes) < 1:
        raise ValueError(
            "`held_out` must have a leading axis over the points, the same length >= 1 in every "
            f"leaf; got leading sizes {sorted(sizes)}."
        )
    (n,) = sizes
    try:
        out = jax.eval_shape(problem.apply, problem.params0, held_out)
    except Exception as err:  # the model's own shape error, named for the user
        raise ValueError(
            "`apply(params0, held_out)` fails: `held_out` must be inputs the model accepts, "
            f"like `problem.inputs` with another number of points ({err})."
        ) from err
    if not hasattr(out, "shape") or out.ndim == 0 or out.shape[0] != n:
        raise ValueError(
            f"The model's outputs on `held_out` have shape {getattr(out, 'shape', type(out))}; "
            f"they need a leading axis of the {n} held-out points."
        )
    return n


def _point(inputs: Inputs, i: int) -> Inputs:
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[i : i + 1], inputs)


@eqx.filter_jit
def _gap_per_point(problem: Problem, inputs: Inputs, w: Params, wbar: Params) -> Array:
    r"""$\|\alpha f(w, x) - \alpha \bar f(\bar w, x)\|$ (Euclidean over the outputs of each
    point) with $\bar f(\bar w, x) = f(w_0, x) + D_w f(w_0, x)(\bar w - w_0)$ by one JVP; $f(w_0)$
    cancels, so the differences are formed before the multiplication by $\alpha$."""
    alpha = problem.alpha

    def f(params):
        return problem.apply(params, inputs).astype(problem.dtype)

    delta = jax.tree_util.tree_map(jnp.subtract, wbar, problem.params0)
    f0, lin = jax.jvp(f, (problem.params0,), (delta,))
    diff = alpha * (f(w) - f0) - alpha * lin
    return jnp.sqrt(jnp.sum(diff.reshape(diff.shape[0], -1) ** 2, axis=1))


@eqx.filter_jit
def _jacobian_norms(problem: Problem, inputs: Inputs) -> Array:
    r"""$\|D_w f(w_0, x)\|$ for each held-out point (the operator norm from $\mathbb{R}^p$ to the
    point's outputs): one VJP per point, pulled back along each output coordinate, then the
    spectral norm of that small `(k, p)` matrix (exact)."""
    w0, unravel = ravel_pytree(problem.params0)

    def one(x):
        x1 = jax.tree_util.tree_map(lambda a: a[None], x)

        def f(w):
            return problem.apply(unravel(w), x1).astype(w0.dtype).reshape(-1)

        out, vjp = jax.vjp(f, w0)
        rows = jax.vmap(lambda c: vjp(c)[0])(jnp.eye(out.size, dtype=w0.dtype))
        return jnp.linalg.norm(rows, 2)

    return jax.vmap(one)(inputs)


@eqx.filter_jit
def _hessian_radii(
    problem: Problem, inputs: Inputs, points: Array, key: Array, num_iters: int
) -> Array:
    r"""For each flat parameter vector $w$ of `points` (`(num_w, p)`), each held-out point $x$
    and each output coordinate $a$: the spectral radius of the Hessian $\nabla^2_w f_a(w, x)$,
    by Lanczos with full reorthogonalization on Hessian-vector products (forward over
    reverse). With `num_iters = p` it is exact up to rounding; with fewer steps the extreme Ritz
    values are inner bounds, so it is a lower bound. Returns `(num_w, n, k)`."""
    w0, unravel = ravel_pytree(problem.params0)
    k = int(np.prod(jax.eval_shape(problem.apply, problem.params0, _point(inputs, 0)).shape))
    v0 = jax.random.normal(key, w0.shape, w0.dtype)

    def radius(w, x, a):
        x1 = jax.tree_util.tree_map(lambda t: t[None], x)

        def coordinate(u):
            return problem.apply(unravel(u), x1).astype(w0.dtype).reshape(-1)[a]

        def hvp(v):
            return jax.jvp(jax.grad(coordinate), (w,), (v,))[1]

        ev = _lanczos(hvp, v0, num_iters)
        return jnp.maximum(jnp.abs(ev[0]), jnp.abs(ev[-1]))

    def at(w):
        per_output = jax.vmap(lambda x, a: radius(w, x, a), in_axes=(None, 0))
        return jax.vmap(lambda x: per_output(x, jnp.arange(k)))(inputs)

    return jax.lax.map(at, points)


def _hessian_norms(
    problem: Problem,
    held_out: Inputs,
    radius: float,
    extra_points: list[Params],
    num_points: int,
    num_iters: int,
) -> tuple[np.ndarray, int]:
    r"""$\max_w \|D_w^2 f(w, x)\|$ for each held-out point $x$, over $w_0$, `num_points`
    random points of the sphere of radius `radius` (sampled as [`gradflow.lipschitz_dh`][]
    does) and `extra_points`; returns the per-point values and the number of points $w$.

    For one output per point, $\|D^2_w f(w, x)\|$ is the spectral radius of the Hessian,
    computed by Lanczos (exact up to rounding with `num_iters` $= p$). For $k > 1$ outputs the
    largest per-coordinate radius $\max_a \rho(\nabla^2 f_a)$ is kept: a lower bound, within
    a factor $\sqrt k$ of the norm ($\|D^2 f\| \le (\sum_a \rho(\nabla^2 f_a)^2)^{1/2}$)."""
    w0, _ = ravel_pytree(problem.params0)
    sample = []
    for k in jax.random.split(jax.random.PRNGKey(2), int(num_points)):
        d = jax.random.normal(k, w0.shape, w0.dtype)
        sample.append(w0 + radius * d / jnp.linalg.norm(d))
    flat = [w0, *sample, *(ravel_pytree(e)[0] for e in extra_points)]
    radii = _hessian_radii(problem, held_out, jnp.stack(flat), jax.random.PRNGKey(3), num_iters)
    values = np.asarray(radii).max(axis=(0, 2))
    return values, len(flat)


def _distance_to_training(problem: Problem, held_out: Inputs, n: int) -> float:
    """The smallest Euclidean distance between a held-out input and a training input (NaN when
    the inputs are not arrays of matching trailing shape)."""
    xs, xt = problem.inputs, held_out
    if not (isinstance(xs, jax.Array | np.ndarray) and isinstance(xt, jax.Array | np.ndarray)):
        return math.nan
    if np.shape(xs)[1:] != np.shape(xt)[1:]:
        return math.nan
    a = np.asarray(xs, float).reshape(np.shape(xs)[0], -1)
    b = np.asarray(xt, float).reshape(n, -1)
    return float(np.sqrt(np.min(np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1))))


def _last(tree: Params) -> Params:
    return jax.tree_util.tree_map(lambda x: x[-1], tree)


def check_off_training_set(
    spec: NamedProblem | Problem,
    *,
    alphas=(10.0, 31.6, 100.0, 316.0, 1000.0),
    horizon: float = 5.0,
    held_out: Inputs | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    tolerance: float = 0.1,
    num_points: int = 4,
    num_iters: int | None = 64,
) -> CheckReport:
    r"""Check the off-training-set theorem (the paper's appendix) on `spec`: the scaled model
    against its scaled linearization at the end $T$ = `horizon` of the flows, on inputs that
    are not the training inputs.

    Measured at each of `alphas` (flows by [`gradflow.solve`][] with `save_params=True`):
    $\sup_{x \in X}\|\alpha f(w(T), x) - \alpha \bar f(\bar w(T), x)\|$, the norm being the
    Euclidean norm of one point's outputs and $\bar f$ the linearization at $w_0$ (one
    `jax.jvp` on $X$); its slope in $\alpha$ against the exponent of
    `theory.off_training_set()` (-1, within `tolerance`) when $h(w_0) = 0$, and otherwise that it
    does not shrink (slope $\ge -0.1$). The hypotheses $\|w(T) - w_0\| \le C\log\alpha/\alpha$,
    $\|w(T) - \bar w(T)\| \le C\log\alpha/\alpha^2$ assert a $C$ independent of $\alpha$:
    the smallest $C$ at each alpha (`C_from_distance`, `C_from_gap` of the statement) must
    not grow (slope at most `tolerance`).

    The constants: $M_1 = \max_{x \in X}\|D_w f(w_0, x)\|$ exactly (a VJP per point);
    $M_2$ the largest $\|D_w^2 f(w, x)\|$ found over $x \in X$ and over $w_0$, `num_points`
    random points of the sphere of radius $\max_\alpha\|w(T) - w_0\|$ and the end points
    $w(T)$, sampled as [`gradflow.lipschitz_dh`][] does. At each, for one output per point,
    the spectral radius of the Hessian of $f(\cdot, x)$ by Lanczos on Hessian-vector products
    (`num_iters` steps; exact up to rounding with $p$), and for $k$ outputs the largest
    per-coordinate radius (within $\sqrt k$ of the norm). Lanczos converges on the bilinear
    structure of factorized models, where the spectrum is symmetric ($\pm\lambda$) and power
    iteration on $v \mapsto \nabla^2 f\,v$ stalls. It is a lower-bound estimate of
    $\sup_x \mathrm{Lip}(D_w f(\cdot, x))$ on that ball, exact for quadratic models. $C$ is
    the smallest constant for which both hypotheses hold at every alpha.

    Bounds at every alpha, each with its margin and the solver's error (the observation
    re-solved at 1000x tighter tolerances): the sharp bound
    $\alpha(M_2 d^2/2 + M_1 g)$ in the measured $d = \|w(T) - w_0\|$, $g = \|w(T) - \bar w(T)\|$
    (Taylor's theorem: it holds whether or not $h(w_0) = 0$), and the paper's form
    $C\frac{\log\alpha}{\alpha}(M_1 + C M_2\log(\alpha)/2)$ (where the hypotheses hold).

    **Arguments:**

    - `spec`: a [`gradflow.check.NamedProblem`][] with a `held_out` set, or a
      [`gradflow.Problem`][] with `held_out` given.
    - `alphas`: at least 3 distinct scales, all $> 1$ ($\log\alpha > 0$ in the hypotheses).
    - `horizon`: the final time $T > 0$.
    - `held_out`: the set $X$ (the structure of `problem.inputs`, leading axis over the
      points); overrides `spec.held_out`.
    - `rtol`, `atol`: the solver's tolerances.
    - `tolerance`: the allowed distance of the fitted slope from the predicted one.
    - `num_points`: random points of the ball at which $M_2$ is sampled (besides $w_0$ and
      the $w(T)$).
    - `num_iters`: Lanczos steps per Hessian for $M_2$, at most $p$ (`None`: $p$, exact up to
      rounding; fewer give inner bounds of the extreme eigenvalues, i.e. lower bounds).

    **Returns:** a [`gradflow.check.CheckReport`][].
    """
    start = time.perf_counter()
    stmt = statement()
    spec = as_named(spec)
    problem = spec.problem
    X = spec.held_out if held_out is None else held_out
    if X is None:
        raise ValueError(
            "`held_out` is missing: the check compares the model with its linearization on "
            "inputs off the training set. Pass `held_out=` (inputs like `problem.inputs`), or a "
            "problem built with one, e.g. `gf.check.two_layer(held_out=16)`."
        )
    n = _num_points(problem, X)
    alphas = as_alphas(alphas, minimum=3)
    if np.any(alphas <= 1.0):
        raise ValueError(
            f"`alphas` must all be > 1: the hypotheses C log(alpha)/alpha need log(alpha) > 0; "
            f"got {alphas.tolist()}."
        )
    if not (math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"`horizon` must be a finite time T > 0; got {horizon!r}.")
    if int(num_points) < 0 or (num_iters is not None and int(num_iters) < 1):
        raise ValueError(
            f"`num_points` must be >= 0 and `num_iters` >= 1 or None; got {num_points=}, "
            f"{num_iters=}."
        )
    ts = np.array([0.0, float(horizon)])
    hyp0, h0 = h0_hypothesis(problem)
    sols = solve_alphas(problem, alphas, ts, rtol=rtol, atol=atol, save_params=True).solutions
    refs = solve_alphas(
        problem, alphas, ts, rtol=rtol, atol=atol, save_params=True, reference=True
    ).solutions

    def observe(sol):
        return np.asarray(
            _gap_per_point(
                problem.with_alpha(float(sol.alpha)),
                X,
                _last(sol.params),
                _last(sol.linear_params),
            )
        )

    per_point = [observe(s) for s in sols]
    observed = np.array([p.max() for p in per_point])
    observed_ref = np.array([observe(r).max() for r in refs])
    dist = np.array([float(s.param_distance[-1]) for s in sols])
    gap = np.array([float(s.param_gap[-1]) for s in sols])

    p = problem.num_params
    iters = p if num_iters is None else min(int(num_iters), p)
    m1_all = np.asarray(_jacobian_norms(problem, X))
    m1 = float(m1_all.max())
    radius = float(dist.max())
    # The end point farthest from w0 (the smallest alpha); the others lie closer to w0.
    far = _last(sols[int(np.argmax(dist))].params)
    m2_all, num_w = _hessian_norms(problem, X, radius, [far], num_points, iters)
    m2 = float(m2_all.max())

    applies = hyp0.holds
    # The hypotheses hold at the saved alphas for some C by construction; what they assert is a
    # C that does not grow with alpha. So the smallest C at each alpha (the statement's
    # C_from_distance, C_from_gap: alpha d/log(alpha), alpha^2 g/log(alpha)) must not grow:
    # slope <= tolerance. This allows the log factor, unlike a slope test on d and g.
    c_dist = np.asarray(stmt.numeric("C_from_distance")(alpha=alphas, dist_T=dist), float)
    c_gap = np.asarray(stmt.numeric("C_from_gap")(alpha=alphas, gap_T=gap), float)
    exp_cd = exponent_check(
        "C for ||w(T) - w0|| <= C log(a)/a",
        alphas,
        c_dist,
        tolerance,
        kind=KINDS.at_most,
        applicable=applies,
        note="hypothesis with a bounded C: the smallest C, alpha d/log(alpha), does not grow",
    )
    exp_cg = exponent_check(
        "C for ||w(T) - wbar(T)|| <= C log(a)/a^2",
        alphas,
        c_gap,
        tolerance,
        kind=KINDS.at_most,
        applicable=applies,
        note="hypothesis with a bounded C: the smallest C, alpha^2 g/log(alpha), does not grow",
    )
    exponents = [
        exponent_check(
            GAP,
            alphas,
            observed,
            stmt.exponent("off_training_gap"),
            tolerance=tolerance,
            applicable=applies,
            note="theory.off_training_set().exponent; sup over X of the per-point Euclidean "
            "norm of the outputs",
        ),
        exp_cd,
        exp_cg,
    ]
    if not hyp0.holds:
        exponents.append(
            exponent_check(
                f"{GAP} (h(w0) != 0)",
                alphas,
                observed,
                -0.1,
                kind=KINDS.at_least,
                note="hypothesis h(w0) = 0 fails: the gap is predicted not to shrink",
            )
        )
    slope_d = exponent_check("d", alphas, dist, stmt.exponent("param_distance")).measured
    slope_g = exponent_check("g", alphas, gap, stmt.exponent("param_gap")).measured
    finite = bool(np.isfinite(m1) and np.isfinite(m2))
    hyps = [
        hyp0,
        Hypothesis(
            stmt.hypotheses[1],
            exp_cd.passed,
            f"smallest C {c_dist.max():.3g} (slope {exp_cd.measured:+.3f}, at most "
            f"{tolerance:+.2f}); slope of ||w(T) - w0|| itself {slope_d:+.3f}",
        ),
        Hypothesis(
            stmt.hypotheses[2],
            exp_cg.passed,
            f"smallest C {c_gap.max():.3g} (slope {exp_cg.measured:+.3f}, at most "
            f"{tolerance:+.2f}); slope of ||w(T) - wbar(T)|| itself {slope_g:+.3f}",
        ),
        Hypothesis(stmt.hypotheses[3], finite, f"M1 = {m1:.4g}, M2 >= {m2:.4g} on |X| = {n}"),
    ]
    holds = all(h.holds for h in hyps)
    c_fit = float(max(c_dist.max(), c_gap.max()))
    sharp = stmt.numeric("sharp_bound")
    paper = stmt.numeric("paper_bound")
    # The sharp bound is Taylor's theorem at the measured distances: it needs no hypothesis on
    # the rates, so it is checked on the negative control too.
    sharp_bounds = [
        sharp(alpha=a, M_1=m1, M_2=m2, dist_T=dist[i], gap_T=gap[i]) for i, a in enumerate(alphas)
    ]
    paper_bounds = [paper(alpha=a, C=c_fit, M_1=m1, M_2=m2) for a in alphas]
    bounds = [
        bound_check(
            f"off-training gap [{label}]",
            a,
            ts[1:],
            observed[i : i + 1],
            np.array([b]),
            observed_ref[i : i + 1],
            applicable=applicable,
            note=note,
        )
        for label, values, applicable, note in (
            (
                "sharp",
                sharp_bounds,
                finite,
                "theory.off_training_set().sharp_bound: alpha (M2 d^2/2 + M1 g) at T",
            ),
            (
                "paper",
                paper_bounds,
                holds,
                "theory.off_training_set().paper_bound: C (log a/a)(M1 + C M2 log(a)/2), C fitted",
            ),
        )
        for i, (a, b) in enumerate(zip(alphas, values))
    ]
    estimates = (
        ("M1 = sup_X ||D_w f(w0, x)||", m1, f"exact: a VJP per point, max over {n} points"),
        (
            "M2 = sup_X Lip(D_w f(., x))",
            m2,
            f"max of ||D^2_w f(w, x)|| (Lanczos on Hessian-vector products) over {n} points x "
            f"and {num_w} points w (w0, {num_points} random on the sphere of radius "
            f"{radius:.3g}, the farthest end point w(T)), {iters} Lanczos steps of {p}: a "
            "lower-bound estimate of the sup over the ball, exact for quadratic models",
        ),
        ("ball radius max_alpha ||w(T) - w0||", radius, "measured"),
        (
            "C (smallest making both hypotheses hold at every alpha)",
            c_fit,
            "max over alphas of alpha d/log(alpha) and alpha^2 g/log(alpha)",
        ),
        (
            "min distance from X to the training inputs",
            _distance_to_training(problem, X, n),
            "Euclidean, over all pairs (0: X meets the training set; NaN: not comparable)",
        ),
    )
    return problem_report(
        "off_training_set",
        spec,
        start,
        hypotheses=hyps,
        exponents=exponents,
        bounds=bounds,
        estimates=estimates,
        settings=(
            ("alphas", alphas.tolist()),
            ("horizon", float(horizon)),
            ("rtol", rtol),
            ("atol", atol),
            ("held-out points", n),
            ("norm on X", "sup over x of the Euclidean norm of the outputs at x"),
            ("||h(w0)||", h0),
        ),
    )


def _problems() -> list[NamedProblem]:
    """Matrix completion (the unobserved entries held out), the diagonal net and the two-layer
    net with 16 held-out inputs each, and the net uncentered (h(w0) != 0) as a negative
    control."""
    return [
        matrix_completion(),
        diagonal_net(held_out=16),
        two_layer(**SMALL_NET, held_out=16),
        two_layer(**SMALL_NET, center=False, held_out=16),
    ]


THEOREM = Theorem(
    name="off_training_set",
    statement=statement,
    summary="the linearization on held-out inputs: slope -1 and the Taylor bounds",
    check=check_off_training_set,
    problems=_problems,
)
