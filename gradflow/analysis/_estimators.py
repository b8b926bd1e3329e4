"""Estimators of the constants the theorems need: singular values of Dh(w0) and Hessian
spectra by Lanczos (matrix-free), and the Lipschitz constant of Dh on a ball by sampling."""

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

from .._problem import Problem, _flatten
from .._typing import Array, Params
from ._diagnostics import _check_iterations, _require_finite, _second_norm
from ._operators import gram, hessian, jacobian, kernel, lanczos, problem_jacobian


@eqx.filter_jit
def _output_side_spectrum(problem: Problem, num_iters: int, key: Array) -> Array:
    flat = _flatten(problem)
    # Sigma_0 = Dh(w0) Dh(w0)^* on F: with the empirical inner product, Dh^* c = J^T c / 1
    # and the F-norm carries 1/n, so Sigma_0 = J J^T / n on flat output vectors.
    sigma0 = kernel(problem_jacobian(flat), flat.h0.shape[0])
    v0 = jax.random.normal(key, (flat.h0.size,), flat.w0.dtype)
    return lanczos(sigma0, v0, num_iters)


def _gram_at(problem: Problem, w_at: Array) -> lx.AbstractLinearOperator:
    """Dh(w)^* Dh(w) = J^T J / n at w = w_at (the centering of h does not change Dh)."""
    flat = _flatten(problem, linearize=False)
    return gram(jacobian(flat.h, w_at), flat.h0.shape[0])


def _hessian_at(problem: Problem, w_at: Array) -> lx.AbstractLinearOperator:
    """The Hessian at w_at of the problem's own objective (its centering h(w0) unchanged)."""
    unravel = ravel_pytree(problem.params0)[1]
    return hessian(lambda w: problem.objective(unravel(w)), w_at)


@eqx.filter_jit
def _param_side_spectrum(
    operator_at: Callable[[Problem, Array], lx.AbstractLinearOperator],
    problem: Problem,
    num_iters: int,
    key: Array,
    w_at: Array,
) -> Array:
    v0 = jax.random.normal(key, w_at.shape, w_at.dtype)
    return lanczos(operator_at(problem, w_at), v0, num_iters)


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
    dim = problem.num_params
    k = _iters(dim, num_iters)
    key = jax.random.PRNGKey(1) if key is None else key
    operator_at = _hessian_at if hessian else _gram_at
    ev = _param_side_spectrum(operator_at, problem, k, key, w_at)
    return _spectrum(ev, k == dim, rank_tol)


# The defaults of `scale_criterion`, whose ||D^2 h|| `lipschitz_dh` samples.
_LIP_ITERS, _LIP_TOL = 500, 1e-10


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
    $\|D^2 h\|$ (matrix-free power iteration, as [`gradflow.operator_norms`][]) at $w_0$, at
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
    # The ||D^2 h|| that `scale_criterion` reports at each point (same start and stopping
    # rule), without its ||Dh|| and residual.
    _check_iterations(_LIP_ITERS, num_starts)
    args = (jax.random.PRNGKey(0), _LIP_ITERS, _LIP_TOL, int(num_starts))
    norms = [_second_norm(_at(problem, p), *args)[0] for p in points]
    values = np.asarray(_require_finite(jnp.stack(norms), "||D^2 h|| on the ball"), float)
    return LipschitzEstimate(float(values.max()), float(radius), values, len(points))
