"""Diagnostics: tangent kernel, operator norms by power iteration, scale criterion, rate fits."""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._losses import empirical_norm
from ._problem import Problem, _Flat, _flatten
from ._typing import Array, ArrayLike, Params


def _require_finite(value, what: str):
    """A diagnostic of a model that is NaN or inf at the parameters asked for is an error, not
    a silent NaN result: a `ValueError` for concrete values, `eqx.error_if` under a trace."""
    message = (
        f"{what} is not finite (NaN or inf): the model's outputs or derivatives are not finite "
        "at these parameters. Check `apply` at `params0` (or at the `params` given) for NaN/inf."
    )
    leaves = jax.tree_util.tree_leaves(value)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        bad = jnp.logical_not(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))
        return eqx.error_if(value, bad, message)
    if not all(np.all(np.isfinite(np.asarray(x))) for x in leaves):
        raise ValueError(message)
    return value


def _kernel_flat(flat: _Flat, batch_size: int) -> Array:
    """K = J J^T with J = Dh(w0) (N x p, N = outputs.size), column by column (J J^T e_i)."""
    shape = flat.h0.shape
    num = int(np.prod(shape))
    eye = jnp.eye(num, dtype=flat.w0.dtype)

    def column(c):
        return flat.jvp0(flat.vjp0(c.reshape(shape))).reshape(-1)

    cols = jax.lax.map(column, eye, batch_size=min(batch_size, num))
    k = cols.T
    return 0.5 * (k + k.T)


@eqx.filter_jit
def _tangent_kernel(problem: Problem, batch_size: int) -> Array:
    return _kernel_flat(_flatten(problem), batch_size)


def tangent_kernel(
    problem: Problem, params: Params | None = None, *, batch_size: int = 256
) -> Array:
    r"""The tangent kernel $K(w) = Dh(w) Dh(w)^\top$ on the training inputs.

    Built matrix-free, one $J J^\top e_i$ per output coordinate (a VJP then a JVP), so the
    $N \times p$ Jacobian is never stored.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][].
    - `params`: where to evaluate it; default $w_0$.
    - `batch_size`: columns computed at once.

    **Returns:** an `(N, N)` array, `N = outputs.size`, indexed in row-major order of the
    outputs (entry `(i * k + a, j * k + b)` for outputs of shape `(n, k)`). It is the Gram
    matrix of the Euclidean gradients; the function-space flow uses $\Sigma = K/n$. A model
    that is NaN or inf there raises a `ValueError` (under a trace, a runtime error).
    """
    if params is not None:
        problem = eqx.tree_at(lambda p: p.params0, problem, params)
    return _require_finite(_tangent_kernel(problem, int(batch_size)), "The tangent kernel")


def _normalize(v):
    return v / jnp.linalg.norm(v)


@eqx.filter_jit
def _norms(problem: Problem, key: Array, num_iters: int, tol: float, num_starts: int):
    flat = _flatten(problem)
    n = flat.h0.shape[0]
    w0, h = flat.w0, flat.h
    k1, k2 = jax.random.split(key)

    # ||Dh(w0)||: R^p (Euclidean) -> F (empirical norm); power iteration on J^T J / n.
    def jtj(v):
        return flat.vjp0(flat.jvp0(v)) / n

    def power_body(carry):
        i, v, lam, lam_old = carry
        wv = jtj(v)
        return i + 1, _normalize(wv), jnp.vdot(v, wv), lam

    def power_cond(carry):
        i, _, lam, lam_old = carry
        return (i < num_iters) & (jnp.abs(lam - lam_old) > tol * jnp.abs(lam))

    v0 = _normalize(jax.random.normal(k1, w0.shape, w0.dtype))
    init = (0, v0, jnp.asarray(0.0, w0.dtype), jnp.asarray(-1.0, w0.dtype))
    i1, _, lam, _ = jax.lax.while_loop(power_cond, power_body, init)
    jac_norm = jnp.sqrt(jnp.maximum(lam, 0.0))

    # ||D^2 h(w0)|| = sup_{|v|=1} ||D^2 h(w0)[v, v]||_F (for symmetric bilinear maps between
    # Hilbert spaces the norm is attained on the diagonal). Alternating power iteration on the
    # third-order form (c, v, v) -> <c, D^2 h[v, v]>_F: c <- D^2h[v,v] / ||.||_F, v <- H_c v.
    def second(v):
        def dh(w):
            return jax.jvp(h, (w,), (v,))[1]

        return jax.jvp(dh, (w0,), (v,))[1]

    def hvp(c, v):
        def g(w):
            return jax.grad(lambda w_: jnp.sum(c * h(w_)) / n)(w)

        return jax.jvp(g, (w0,), (v,))[1]

    def hess_body(carry):
        i, v, val, val_old = carry
        b = second(v)
        bn = empirical_norm(b)
        c = b / jnp.where(bn > 0, bn, 1.0)
        # Shifted (SS-HOPM): v <- (H_c + ||B(v, v)|| I) v. Without the shift, a Hessian H_c with
        # eigenvalues in +/- pairs (factorized models: U V^T) makes v flip between the two and
        # stall below the top eigenvalue; the shift favours the algebraically largest one.
        hv = hvp(c, v) + bn * v
        hn = jnp.linalg.norm(hv)
        v_new = jnp.where(hn > 0, hv / jnp.where(hn > 0, hn, 1.0), v)
        return i + 1, v_new, bn, val

    def hess_cond(carry):
        i, _, val, val_old = carry
        return (i < num_iters) & (jnp.abs(val - val_old) > tol * jnp.abs(val))

    # The cubic form has local maxima: run several starts and keep the best, which is a lower
    # bound on the norm (and the norm itself when one start reaches the global maximum).
    def one_start(k):
        v0 = _normalize(jax.random.normal(k, w0.shape, w0.dtype))
        init = (0, v0, jnp.asarray(0.0, w0.dtype), jnp.asarray(-1.0, w0.dtype))
        i, v, _, _ = jax.lax.while_loop(hess_cond, hess_body, init)
        return i, empirical_norm(second(v))

    i2s, values = jax.vmap(one_start)(jax.random.split(k2, num_starts))
    best = jnp.argmax(values)
    residual = empirical_norm(flat.alpha * flat.h0 - problem.loss.minimizer)
    return jac_norm, values[best], residual, i1, i2s[best]


class ScaleCriterion(eqx.Module):
    r"""The scale criterion of Chizat et al. for the scaled model $\alpha h$:

    $$\kappa_{\alpha h}(w_0) = \frac{1}{\alpha}
        \frac{\|\alpha h(w_0) - y^*\|_F \, \|D^2 h(w_0)\|}{\|Dh(w_0)\|^2}.$$

    Lazy training is expected when $\kappa \ll 1$. The operator norms are matrix-free
    estimates, and both are lower bounds: power iteration for $\|Dh(w_0)\|$ (it converges to
    the norm from almost every start), and for $\|D^2 h(w_0)\|$ the best of `num_starts`
    alternating power iterations on the cubic form $\langle c, D^2h[v, v]\rangle_F$, each of
    which converges to a local maximum. `converged` is `False` when an iteration stopped at
    `num_iters` before reaching the relative tolerance.
    """

    kappa: float
    residual_norm: float
    jacobian_norm: float
    hessian_norm: float
    alpha: float
    iterations: tuple[int, int]
    converged: bool
    num_starts: int

    def __float__(self) -> float:
        return float(self.kappa)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kappa": self.kappa,
            "residual_norm": self.residual_norm,
            "jacobian_norm": self.jacobian_norm,
            "hessian_norm": self.hessian_norm,
            "alpha": self.alpha,
            "iterations": list(self.iterations),
            "converged": self.converged,
            "num_starts": self.num_starts,
        }


def operator_norms(
    problem: Problem,
    *,
    key: Array | None = None,
    num_iters: int = 500,
    tol: float = 1e-10,
    num_starts: int = 8,
) -> tuple[float, float]:
    r"""Estimates (lower bounds) of $\|Dh(w_0)\|$ (from $\mathbb{R}^p$ to $F$) and
    $\|D^2 h(w_0)\|$ by matrix-free power iteration (JVPs, VJPs and second-order JVPs); see
    [`gradflow.ScaleCriterion`][]."""
    crit = scale_criterion(problem, key=key, num_iters=num_iters, tol=tol, num_starts=num_starts)
    return crit.jacobian_norm, crit.hessian_norm


def scale_criterion(
    problem: Problem,
    *,
    key: Array | None = None,
    num_iters: int = 500,
    tol: float = 1e-10,
    num_starts: int = 8,
) -> ScaleCriterion:
    r"""The scale criterion $\kappa_{\alpha h}(w_0)$ (Chizat et al., Section 2), with its parts.

    For $h(w_0) = 0$ (centered or doubled init) it decays like $1/\alpha$; otherwise it tends
    to $\|h(w_0)\| \|D^2 h\| / \|Dh\|^2 > 0$.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][]; $y^*$ is `problem.loss.minimizer`.
    - `key`: PRNG key for the power-iteration starts (default `PRNGKey(0)`).
    - `num_iters`, `tol`: iteration cap and relative stopping tolerance.
    - `num_starts`: random starts for $\|D^2 h(w_0)\|$ (the best is kept).

    **Returns:** a [`gradflow.ScaleCriterion`][] (`float(result)` is $\kappa$; `inf` when
    $Dh(w_0) = 0$). A model that is NaN or inf at $w_0$ raises a `ValueError`.
    """
    if key is None:
        key = jax.random.PRNGKey(0)
    if int(num_starts) < 1 or int(num_iters) < 1:
        raise ValueError(
            f"`num_starts` and `num_iters` must be >= 1; got {num_starts=}, {num_iters=}."
        )
    jac, hess, res, i1, i2 = _norms(problem, key, int(num_iters), float(tol), int(num_starts))
    _require_finite((jac, hess, res), "The scale criterion (||Dh(w0)||, ||D^2h(w0)||, residual)")
    alpha = float(problem.alpha)
    jac, hess, res = float(jac), float(hess), float(res)
    kappa = res * hess / (alpha * jac**2) if jac > 0 else math.inf
    return ScaleCriterion(
        kappa=kappa,
        residual_norm=res,
        jacobian_norm=jac,
        hessian_norm=hess,
        alpha=alpha,
        iterations=(int(i1), int(i2)),
        converged=bool(int(i1) < num_iters and int(i2) < num_iters),
        num_starts=int(num_starts),
    )


def _student_t_cdf(t: float, dof: float) -> float:
    x = dof / (dof + t * t)
    tail = 0.5 * float(jax.scipy.special.betainc(dof / 2.0, 0.5, x))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(q: float, dof: float) -> float:
    """Quantile of Student's t distribution (bisection on the regularized incomplete beta)."""
    if not 0 < q < 1:
        raise ValueError(f"`q` must be in (0, 1); got {q}.")
    if q < 0.5:
        return -student_t_quantile(1.0 - q, dof)
    lo, hi = 0.0, 1.0
    while _student_t_cdf(hi, dof) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _student_t_cdf(mid, dof) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


class RateFit(eqx.Module):
    r"""A least-squares fit $\log y = \text{intercept} + \text{slope} \cdot \log x$."""

    slope: float
    intercept: float
    ci: tuple[float, float]
    stderr: float
    r2: float
    confidence: float
    num_points: int

    @property
    def prefactor(self) -> float:
        """$C$ in $y \\approx C x^{\\text{slope}}$."""
        return math.exp(self.intercept)

    def predict(self, x: ArrayLike) -> np.ndarray:
        return np.exp(self.intercept) * np.asarray(x, float) ** self.slope

    def to_dict(self) -> dict[str, Any]:
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "ci": list(self.ci),
            "stderr": self.stderr,
            "r2": self.r2,
            "confidence": self.confidence,
            "num_points": self.num_points,
        }


def fit_rate(xs: ArrayLike, ys: ArrayLike, *, confidence: float = 0.95) -> RateFit:
    r"""Fit a power law $y \approx C x^s$ by least squares on $(\log x, \log y)$.

    **Returns:** a [`gradflow.RateFit`][] with the slope $s$, the intercept $\log C$, and a
    two-sided `confidence` interval for the slope from Student's t with `len(xs) - 2` degrees of
    freedom (zero width when the points lie exactly on a line; undefined, so infinite, with two
    points).
    """
    x = np.asarray(xs, dtype=float).ravel()
    y = np.asarray(ys, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"`xs` and `ys` must have the same length; got {x.size} and {y.size}.")
    if x.size < 2:
        raise ValueError("`fit_rate` needs at least two points.")
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(y)) or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError(
            "`fit_rate` fits logarithms: `xs` and `ys` must be finite and > 0 (drop failed "
            "or zero points first)."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence}.")
    lx, ly = np.log(x), np.log(y)
    xm, ym = lx.mean(), ly.mean()
    sxx = np.sum((lx - xm) ** 2)
    if sxx == 0:
        raise ValueError("`xs` must contain at least two distinct values.")
    slope = float(np.sum((lx - xm) * (ly - ym)) / sxx)
    intercept = float(ym - slope * xm)
    resid = ly - (intercept + slope * lx)
    sst = np.sum((ly - ym) ** 2)
    r2 = float(1.0 - np.sum(resid**2) / sst) if sst > 0 else 1.0
    dof = x.size - 2
    if dof > 0:
        stderr = float(np.sqrt(np.sum(resid**2) / dof / sxx))
        half = student_t_quantile(0.5 + confidence / 2.0, dof) * stderr
    else:
        stderr, half = math.inf, math.inf
    return RateFit(
        slope=slope,
        intercept=intercept,
        ci=(slope - half, slope + half),
        stderr=stderr,
        r2=r2,
        confidence=confidence,
        num_points=int(x.size),
    )


def kernel_drift(problem: Problem, params: Params) -> float:
    r"""$\|K(w) - K(w_0)\| / \|K(w_0)\|$ in the spectral norm: how far the tangent kernel has
    moved from initialization."""
    k0 = np.asarray(tangent_kernel(problem))
    k1 = np.asarray(tangent_kernel(problem, params))
    return float(np.linalg.norm(k1 - k0, 2) / np.linalg.norm(k0, 2))
