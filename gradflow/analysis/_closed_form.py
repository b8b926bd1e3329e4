"""The exact linearized flow for the square loss, through the tangent kernel's eigenbasis."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._losses import SquareLoss
from .._problem import Problem, _flatten
from .._typing import Array, ArrayLike, Params
from ._diagnostics import _kernel_flat, _require_finite


@eqx.filter_jit
def _closed_form(problem: Problem, ts: Array, rcond: float, batch_size: int):
    flat = _flatten(problem)
    alpha = flat.alpha
    shape = flat.h0.shape
    n = shape[0]
    y_star = problem.loss.targets.reshape(-1)
    # The flow in function space is ybar' = -(K / n)(ybar - y*), K = Dh0 Dh0^T: the 1/n is the
    # adjoint of Dh0 for the empirical inner product of F.
    sigma = _kernel_flat(flat, batch_size) / n
    lam, vec = jnp.linalg.eigh(sigma)
    cut = rcond * jnp.max(jnp.abs(lam))
    positive = lam > cut
    lam_pos = jnp.where(positive, lam, 1.0)
    r0 = (alpha * flat.h0).reshape(-1) - y_star
    c0 = vec.T @ r0

    def at(t):
        is_inf = jnp.isinf(t)
        t_fin = jnp.where(is_inf, 0.0, t)
        decay = jnp.where(positive, jnp.where(is_inf, 0.0, jnp.exp(-lam * t_fin)), 1.0)
        # phi(lambda, t) = (1 - e^{-lambda t}) / lambda, and 1/lambda at t = infinity; the
        # kernel's null space does not move the parameters (Dh0^T v = 0 there).
        phi = jnp.where(
            positive, jnp.where(is_inf, 1.0 / lam_pos, -jnp.expm1(-lam_pos * t_fin) / lam_pos), 0.0
        )
        out = y_star + vec @ (decay * c0)
        u = -flat.vjp0((vec @ (phi * c0)).reshape(shape)) / n
        return out.reshape(shape), flat.w0 + u / alpha

    outs, ws = jax.lax.map(at, ts)
    return outs, jax.vmap(flat.unravel)(ws)


def linear_flow_closed_form(
    problem: Problem, ts: ArrayLike, *, rcond: float | None = None, batch_size: int = 256
) -> tuple[Array, Params]:
    r"""The exact gradient flow of the linearized model for the square loss.

    With $K = Dh(w_0) Dh(w_0)^\top$ (see [`gradflow.tangent_kernel`][]),
    $\Sigma_0 = K/n$ and $r_0 = \alpha h(w_0) - y^*$:

    $$\alpha \bar h(\bar w(t)) = y^* + e^{-t \Sigma_0} r_0, \qquad
    \bar w(t) = w_0 - \frac{1}{\alpha n} Dh(w_0)^\top \Sigma_0^{+}
        \big(I - e^{-t\Sigma_0}\big) r_0,$$

    evaluated in the eigenbasis of $\Sigma_0$. At `t = inf` the parameters are the
    minimum-norm interpolant (ridgeless regression with the tangent kernel).

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][] with a [`gradflow.SquareLoss`][].
    - `ts`: times, `jnp.inf` allowed.
    - `rcond`: eigenvalues below `rcond * max eigenvalue` count as zero (default `N * eps`,
      with `N` the output dimension), as in `numpy.linalg.pinv`.
    - `batch_size`: kernel columns computed per batch.

    **Returns:** `(outputs, params)`: the scaled linear predictions $\alpha \bar h(\bar w(t_i))$
    with shape `(len(ts),) + outputs.shape`, and $\bar w(t_i)$ as a PyTree with a leading time
    axis. A model that is NaN or inf at $w_0$ raises a `ValueError`.
    """
    if not isinstance(problem.loss, SquareLoss):
        raise ValueError(
            "`linear_flow_closed_form` needs `loss=gf.SquareLoss(...)`: the linearized flow has a "
            f"closed form only for the square loss; got {type(problem.loss).__name__}. Use "
            "`gf.solve` for other losses."
        )
    ts = jnp.atleast_1d(jnp.asarray(ts, dtype=problem.dtype))
    if np.any(np.isnan(np.asarray(ts))) or np.any(np.asarray(ts) < 0):
        raise ValueError("`ts` must be times >= 0 (inf allowed).")
    if rcond is None:
        rcond = float(np.prod(problem.loss.targets.shape)) * float(jnp.finfo(problem.dtype).eps)
    out = _closed_form(problem, ts, float(rcond), int(batch_size))
    return _require_finite(out, "The closed-form linear flow")
