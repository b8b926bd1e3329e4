"""Estimators of the constants the theorems need: singular values of Dh(w0) and Hessian
spectra by Lanczos (matrix-free), and the Lipschitz constant of Dh on a ball by sampling."""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._diagnostics import _require_finite, scale_criterion
from ._problem import Problem, _flatten
from ._typing import Array, Params


def _lanczos(matvec: Callable[[Array], Array], v0: Array, num_iters: int) -> Array:
    """Ritz values of a symmetric operator after `num_iters` Lanczos steps with full
    reorthogonalization (twice, "twice is enough"); with `num_iters` equal to the dimension they
    are its eigenvalues up to rounding."""
    dim = v0.shape[0]
    q_mat = jnp.zeros((num_iters + 1, dim), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    idx = jnp.arange(num_iters + 1)

    def body(i, carry):
        q_mat, diag, off = carry
        q = q_mat[i]
        w = matvec(q)
        a = jnp.vdot(q, w)
        mask = (idx <= i).astype(w.dtype)
        for _ in range(2):
            w = w - q_mat.T @ ((q_mat @ w) * mask)
        b = jnp.linalg.norm(w)
        # After a breakdown (an invariant subspace is exhausted) continue from a fresh direction
        # orthogonal to the basis: the tridiagonal matrix then splits into blocks.
        fresh = jnp.sin(jnp.arange(dim, dtype=w.dtype) * (i + 1.7) + 0.3)
        for _ in range(2):
            fresh = fresh - q_mat.T @ ((q_mat @ fresh) * mask)
        scale = jnp.maximum(jnp.abs(a), jnp.max(jnp.abs(diag)))
        broke = b <= 1e-12 * jnp.maximum(scale, 1e-300)
        nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / jnp.where(broke, 1.0, b))
        return q_mat.at[i + 1].set(nxt), diag.at[i].set(a), off.at[i].set(jnp.where(broke, 0.0, b))

    zeros = jnp.zeros((num_iters,), v0.dtype)
    _, diag, off = jax.lax.fori_loop(0, num_iters, body, (q_mat, zeros, zeros))
    tri = jnp.diag(diag) + jnp.diag(off[:-1], 1) + jnp.diag(off[:-1], -1)
    return jnp.linalg.eigvalsh(tri)


@eqx.filter_jit
def _output_side_spectrum(problem: Problem, num_iters: int, key: Array) -> Array:
    flat = _flatten(problem)
    shape, n = flat.h0.shape, flat.h0.shape[0]

    def sigma0(c):
        # Sigma_0 = Dh(w0) Dh(w0)^* on F: with the empirical inner product, Dh^* c = J^T c / 1
        # and the F-norm carries 1/n, so Sigma_0 = J J^T / n on flat output vectors.
        return flat.jvp0(flat.vjp0(c.reshape(shape))).reshape(-1) / n

    v0 = jax.random.normal(key, (int(np.prod(shape)),), flat.w0.dtype)
    return _lanczos(sigma0, v0, num_iters)


@eqx.filter_jit
def _param_side_spectrum(
    problem: Problem, num_iters: int, key: Array, hessian: bool, w_at: Array
) -> Array:
    flat = _flatten(problem)
    n = flat.h0.shape[0]
    if hessian:
        # The Hessian at w_at of the problem's own objective (its centering h(w0) unchanged).
        objective = lambda w: problem.objective(flat.unravel(w))  # noqa: E731

        def op(v):
            return jax.jvp(jax.grad(objective), (w_at,), (v,))[1]
    else:

        def op(v):
            return flat.vjp0(flat.jvp0(v)) / n

    v0 = jax.random.normal(key, flat.w0.shape, flat.w0.dtype)
    return _lanczos(op, v0, num_iters)


class Spectrum(eqx.Module):
    r"""Eigenvalues of a symmetric operator from Lanczos.

    - `eigenvalues`: ascending Ritz values (all eigenvalues when `exact`).
    - `exact`: `num_iters` equalled the dimension (then the values are the eigenvalues up to
      rounding; otherwise the extreme Ritz values are inner bounds of the extreme eigenvalues).
    - `rank`: the number of eigenvalues above `rank_tol` times the largest.
    """

    eigenvalues: np.ndarray
    exact: bool
    rank: int
    rank_tol: float

    @property
    def largest(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def smallest(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def smallest_nonzero(self) -> float:
        """The smallest eigenvalue above the rank threshold."""
        ev = self.eigenvalues
        return float(ev[ev > self.rank_tol * ev[-1]][0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "smallest": self.smallest,
            "smallest_nonzero": self.smallest_nonzero,
            "largest": self.largest,
            "rank": self.rank,
            "exact": self.exact,
        }


def _spectrum(ev, exact: bool, rank_tol: float) -> Spectrum:
    ev = np.sort(np.asarray(_require_finite(ev, "The spectrum"), dtype=float))
    return Spectrum(ev, exact, int(np.sum(ev > rank_tol * ev[-1])), rank_tol)


def _at(problem: Problem, params: Params | None) -> Problem:
    if params is None:
        return problem
    return eqx.tree_at(lambda p: p.params0, problem, params)


def _iters(dim: int, num_iters: int | None) -> int:
    if num_iters is not None and int(num_iters) < 1:
        raise ValueError(f"`num_iters` must be >= 1 or None (the dimension); got {num_iters}.")
    return dim if num_iters is None else min(int(num_iters), dim)


def tangent_spectrum(
    problem: Problem,
    params: Params | None = None,
    *,
    num_iters: int | None = None,
    rank_tol: float = 1e-10,
    key: Array | None = None,
) -> Spectrum:
    r"""Spectrum of $\Sigma = Dh(w) Dh(w)^*$ on the output space $F$ (empirical norm), i.e. the
    squared singular values of $Dh(w)$: $\sigma_{\min}(Dh(w_0)^\top)^2$ is `smallest`,
    $\|Dh(w_0)\|^2$ is `largest`. Matrix-free: Lanczos on JVP/VJP products, $N \times N$ with
    $N$ = number of outputs; `num_iters=None` runs $N$ steps (exact up to rounding).

    **Returns:** a [`gradflow.Spectrum`][].
    """
    problem = _at(problem, params)
    dim = int(np.prod(problem.loss.targets.shape))
    k = _iters(dim, num_iters)
    key = jax.random.PRNGKey(0) if key is None else key
    return _spectrum(_output_side_spectrum(problem, k, key), k == dim, rank_tol)


def parameter_spectrum(
    problem: Problem,
    params: Params | None = None,
    *,
    hessian: bool = False,
    num_iters: int | None = None,
    rank_tol: float = 1e-8,
    key: Array | None = None,
) -> Spectrum:
    r"""Spectrum on parameter space of $Dh(w)^* Dh(w)$ (`hessian=False`) or of the Hessian
    $\nabla^2 F_\alpha(w)$ (`hessian=True`, by Hessian-vector products), by Lanczos with
    `num_iters` steps (default: the number of parameters p, exact up to rounding).

    **Returns:** a [`gradflow.Spectrum`][].
    """
    w_at = ravel_pytree(problem.params0 if params is None else params)[0]
    if not hessian:
        problem = _at(problem, params)
    dim = problem.num_params
    k = _iters(dim, num_iters)
    key = jax.random.PRNGKey(1) if key is None else key
    ev = _param_side_spectrum(problem, k, key, bool(hessian), w_at)
    return _spectrum(ev, k == dim, rank_tol)


class LipschitzEstimate(eqx.Module):
    r"""An estimate of $\mathrm{Lip}(Dh)$ on the ball $\|w - w_0\| \le r$:
    $\sup_{w} \|D^2 h(w)\|$ over the sampled points (each norm itself a power-iteration lower
    bound). It is a **lower bound** on the true constant; for models quadratic in $w$ (matrix
    factorization, depth-2 diagonal nets) $D^2h$ is constant and the estimate is the constant.
    """

    value: float
    radius: float
    values: np.ndarray
    num_points: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "radius": self.radius,
            "num_points": self.num_points,
            "spread": float(np.max(self.values) / np.min(self.values)),
            "kind": "lower bound (max of sampled power-iteration estimates)",
        }


def lipschitz_dh(
    problem: Problem,
    radius: float,
    *,
    num_points: int = 6,
    extra_points: Sequence[Params] = (),
    key: Array | None = None,
    num_starts: int = 4,
) -> LipschitzEstimate:
    r"""Estimate $\mathrm{Lip}(Dh) = \sup_{\|w - w_0\| \le r} \|D^2h(w)\|$ by evaluating
    $\|D^2 h\|$ (matrix-free power iteration, [`gradflow.operator_norms`][]) at $w_0$, at
    `num_points` random points on the sphere of radius `radius`, and at `extra_points` (e.g.
    points of a trajectory), keeping the largest. Honest about what it is: a lower bound.

    **Returns:** a [`gradflow.LipschitzEstimate`][].
    """
    if not (np.isfinite(radius) and radius >= 0):
        raise ValueError(f"`radius` must be a finite number >= 0; got {radius}.")
    key = jax.random.PRNGKey(2) if key is None else key
    w0, unravel = ravel_pytree(problem.params0)
    points = [problem.params0, *extra_points]
    for k in jax.random.split(key, int(num_points)):
        d = jax.random.normal(k, w0.shape, w0.dtype)
        points.append(unravel(w0 + radius * d / jnp.linalg.norm(d)))
    values = np.array(
        [scale_criterion(_at(problem, p), num_starts=num_starts).hessian_norm for p in points]
    )
    return LipschitzEstimate(float(values.max()), float(radius), values, len(points))
