"""Diagnostics: tangent kernel, operator norms by power iteration, scale criterion."""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._losses import empirical_norm
from .._problem import Problem, _Flat, _flatten
from .._typing import Array, Params
from ._operators import (
    gram,
    kernel,
    power_iteration,
    problem_jacobian,
    second_derivative,
    second_derivative_norm,
    unit_normal,
)


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
    op = kernel(problem_jacobian(flat))

    def column(c):
        return op.mv(c.reshape(shape)).reshape(-1)

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


def _check_iterations(num_iters: int, num_starts: int) -> None:
    if int(num_starts) < 1 or int(num_iters) < 1:
        raise ValueError(
            f"`num_starts` and `num_iters` must be >= 1; got {num_starts=}, {num_iters=}."
        )


def _jacobian_norm(flat: _Flat, key: Array, num_iters: int, tol: float) -> tuple[Array, Array]:
    """||Dh(w0)||: R^p (Euclidean) -> F (empirical norm), by power iteration on J^T J / n."""
    op = gram(problem_jacobian(flat), flat.h0.shape[0])
    run = power_iteration(op, unit_normal(key, flat.w0), num_iters=num_iters, rtol=tol)
    return jnp.sqrt(jnp.maximum(run.value, 0.0)), run.steps


# The starts of the two iterations: one key for ||Dh||, one for the starts on ||D^2 h||, so
# that each norm computed alone is the number `scale_criterion` reports.
def _jacobian_key(key: Array) -> Array:
    return jax.random.split(key)[0]


def _hessian_key(key: Array) -> Array:
    return jax.random.split(key)[1]


@eqx.filter_jit
def _first_norm(problem: Problem, key: Array, num_iters: int, tol: float):
    """||Dh(w0)||, its iteration count, and the residual ||alpha h(w0) - y*||_F."""
    flat = _flatten(problem)
    jac_norm, steps = _jacobian_norm(flat, _jacobian_key(key), num_iters, tol)
    residual = empirical_norm(flat.alpha * flat.h0 - problem.loss.minimizer)
    return jac_norm, steps, residual


@eqx.filter_jit
def _second_norm(problem: Problem, key: Array, num_iters: int, tol: float, num_starts: int):
    """||D^2 h(w0)|| and the best start's iteration count. D^2 h needs no J at w0, so the
    problem is flattened without its linearization."""
    return second_derivative_norm(
        second_derivative(_flatten(problem, linearize=False)),
        _hessian_key(key),
        num_iters=num_iters,
        rtol=tol,
        num_starts=num_starts,
    )


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
    if key is None:
        key = jax.random.PRNGKey(0)
    _check_iterations(num_iters, num_starts)
    args = (key, int(num_iters), float(tol))
    jac = _first_norm(problem, *args)[0]
    hess = _second_norm(problem, *args, int(num_starts))[0]
    jac, hess = _require_finite((jac, hess), "The operator norms (||Dh(w0)||, ||D^2h(w0)||)")
    return float(jac), float(hess)


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
    _check_iterations(num_iters, num_starts)
    # The two norms as `operator_norms` and `lipschitz_dh` compute them (the same programs).
    args = (key, int(num_iters), float(tol))
    jac, i1, res = _first_norm(problem, *args)
    hess, i2 = _second_norm(problem, *args, int(num_starts))
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


def kernel_drift(problem: Problem, params: Params) -> float:
    r"""$\|K(w) - K(w_0)\| / \|K(w_0)\|$ in the spectral norm: how far the tangent kernel has
    moved from initialization."""
    k0 = np.asarray(tangent_kernel(problem))
    k1 = np.asarray(tangent_kernel(problem, params))
    return float(np.linalg.norm(k1 - k0, 2) / np.linalg.norm(k0, 2))
