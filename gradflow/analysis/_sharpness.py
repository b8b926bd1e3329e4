r"""The sharpness $\lambda_{\max}(\nabla^2 F_\alpha(w))$: the largest signed eigenvalue of the
Hessian, at one point or along a path, matrix-free.

Gradient descent with step $\eta$ is stable on a quadratic exactly when
$\eta\, \lambda_{\max} < 2$; full-batch GD on a network often raises $\lambda_{\max}$ to
$2/\eta$ and stays there, the edge of stability (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021).
That is a statement about the algebraically largest eigenvalue. Away from a minimum the Hessian
has negative eigenvalues, which can be larger in size: the spectral radius (what a power
iteration on the Hessian finds) is then the wrong number. Lanczos finds both ends of the
spectrum at once and the top Ritz value converges to the top eigenvalue whatever the other end
does, so the estimate here is `lanczos_top` on Hessian-vector products.
"""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Int

from .._problem import Problem, _flatten
from .._typing import Array, FlatParams, Float, Params
from ._diagnostics import _require_finite
from ._operators import LanczosResult, hessian, lanczos_top

# Defaults: a residual of 1e-4 of the value bounds the distance to an eigenvalue by 1e-4
# relative (Kahan-Weinstein), and in practice by far less (the error is quadratic in the
# residual, ~ residual^2 / gap: 3e-9 on the tests' net, 3e-8 on the benchmark's). On two-layer
# nets of 24 to 1 550 parameters (tanh and ReLU, alpha 0.05 to 10) the top Ritz pair meets it
# in 6-33 products per start. Every step solves the tridiagonal eigenproblem at the cap's size,
# which above a cap of about 64 costs more than the products: one estimate on 1 550 parameters
# took 20-44 ms at caps 48 to 64 and 0.6-1.9 s at 100 (benchmarks/bench_sharpness.py, two runs
# on 2 busy cores). Hence a cap of 50; `Sharpness.converged` flags an estimate that hit it.
_RTOL = 1e-4
_MAX_ITERS = 50
_NUM_STARTS = 2


class Sharpness(eqx.Module):
    r"""The largest eigenvalue of the Hessian of $F_\alpha$ (or of $\bar F_\alpha$), at one point
    (scalar fields) or at each point of a path (fields with a leading time axis).

    - `value`: the estimate of $\lambda_{\max}$, the largest *signed* eigenvalue (negative where
      the Hessian is negative definite). It is a Ritz value: never above $\lambda_{\max}$
      (Cauchy interlacing), and within `residual` of an eigenvalue.
    - `residual`: $\|H y - \theta y\|$ of its Ritz pair $(\theta, y)$.
    - `steps`: Hessian-vector products of the longest start.
    - `rtol`: the stopping tolerance the iteration ran with; `converged` is
      `residual <= rtol * |value|`.
    - `linear`: whether this is the Hessian of the linearized objective $\bar F_\alpha$.

    Entries at non-finite parameters (save times a failed solve did not reach) are NaN.
    """

    value: Float[Array, "*times"]
    residual: Float[Array, "*times"]
    steps: Int[Array, "*times"]
    rtol: float = eqx.field(static=True)
    linear: bool = eqx.field(static=True)

    @property
    def converged(self) -> np.ndarray:
        """Whether each estimate met `rtol` (a numpy bool, of the shape of `value`)."""
        value, residual = np.asarray(self.value), np.asarray(self.residual)
        return residual <= self.rtol * np.abs(value)

    def __float__(self) -> float:
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (NaN as `None`) or numbers, and the settings."""

        def conv(x):
            a = np.asarray(x, dtype=float)
            if a.ndim == 0:
                return float(a) if np.isfinite(a) else None
            return [float(v) if np.isfinite(v) else None for v in a]

        return {
            "value": conv(self.value),
            "residual": conv(self.residual),
            "steps": np.asarray(self.steps).tolist(),
            "rtol": self.rtol,
            "linear": self.linear,
        }

    def __repr__(self) -> str:
        def show(x):
            if isinstance(x, jax.core.Tracer):
                return repr(x)
            return np.array2string(np.asarray(x), precision=6, threshold=12)

        return (
            f"Sharpness(value={show(self.value)}, residual={show(self.residual)}, "
            f"steps={show(self.steps)}, rtol={self.rtol:g}, linear={self.linear})"
        )


def _top_hessian(
    problem: Problem,
    w: FlatParams | None,
    linear: bool,
    key: Array,
    num_starts: int,
    max_iters: int,
    rtol: Array,
) -> LanczosResult:
    # The Hessian of the problem's own objective at w (a centered h keeps its h(w0)). `w=None`
    # is w0, flattened inside the program as the stiffness estimate of `solver="auto"` does:
    # with its settings the two are then one program, equal to the last bit (XLA fuses a point
    # it can see is w0 otherwise than an argument, which differs at the rounding level).
    flat = _flatten(problem, linearize=False)
    w = flat.w0 if w is None else w
    objective = problem.linear_objective if linear else problem.objective
    op = hessian(lambda v: objective(flat.unravel(v)), w)
    return lanczos_top(op, w, key, num_starts=num_starts, max_iters=max_iters, rtol=rtol)


@eqx.filter_jit
def _sharpness_at(problem, w, linear, key, num_starts, max_iters, rtol) -> LanczosResult:
    return _top_hessian(problem, w, linear, key, num_starts, max_iters, rtol)


@eqx.filter_jit
def _sharpness_along(
    problem, ws, linear, key, num_starts, max_iters, rtol, batch_size
) -> LanczosResult:
    def one(w):
        return _top_hessian(problem, w, linear, key, num_starts, max_iters, rtol)

    if batch_size is None:
        return jax.vmap(one)(ws)
    if batch_size == 1:
        return jax.lax.map(one, ws)
    return jax.lax.map(one, ws, batch_size=batch_size)


def _check_settings(rtol: Any, max_iters: Any, num_starts: Any) -> tuple[float, int, int]:
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.floating, np.integer)):
        raise TypeError(f"`rtol` must be a number in (0, 1); got {rtol!r}.")
    if not 0 < float(rtol) < 1:
        raise ValueError(f"`rtol` must be in (0, 1); got rtol={rtol!r}.")
    for name, value in (("max_iters", max_iters), ("num_starts", num_starts)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1; got {name}={value!r}.")
    return float(rtol), int(max_iters), int(num_starts)


def _flat_like(problem: Problem, params: Params, name: str, batched: bool) -> FlatParams:
    """`params` flattened, after checking that it has the tree structure of `params0` and its
    leaves' shapes (with one leading axis when `batched`)."""
    want = jax.tree_util.tree_structure(problem.params0)
    got = jax.tree_util.tree_structure(params)
    if got != want:
        raise ValueError(
            f"`{name}` must have the tree structure of `problem.params0` ({want}); got {got}."
        )
    lead = None
    for p0, p in zip(jax.tree_util.tree_leaves(problem.params0), jax.tree_util.tree_leaves(params)):
        shape, want_shape = tuple(np.shape(p)), tuple(np.shape(p0))
        if batched:
            lead = shape[0] if lead is None and len(shape) > 0 else lead
            want_shape = (lead,) + want_shape
        if shape != want_shape:
            where = " with a common leading time axis" if batched else ""
            raise ValueError(
                f"`{name}` must hold the leaves of `problem.params0`{where}: expected a leaf of "
                f"shape {want_shape}, got {shape}."
            )
    dtype = problem.dtype
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), params)
    if batched:
        return jax.vmap(lambda p: ravel_pytree(p)[0])(params)
    return ravel_pytree(params)[0]


def sharpness(
    problem: Problem,
    params: Params | None = None,
    *,
    linear: bool = False,
    rtol: float = _RTOL,
    max_iters: int = _MAX_ITERS,
    num_starts: int = _NUM_STARTS,
    key: Array | None = None,
) -> Sharpness:
    r"""The sharpness $\lambda_{\max}(\nabla^2 F_\alpha(w))$, the largest signed eigenvalue of
    the Hessian of $F_\alpha(w) = R(\alpha h(w)) / \alpha^2$ at `params` (of the linearized
    objective $\bar F_\alpha$ with `linear=True`), matrix-free.

    Gradient descent with step $\eta$ is stable on a quadratic while
    $\eta\,\lambda_{\max} < 2$; the edge of stability is full-batch GD raising $\lambda_{\max}$
    to $2/\eta$ (Cohen et al., ICLR 2021). Away from a minimum the Hessian has negative
    eigenvalues that can be larger in size than $\lambda_{\max}$; this is the largest signed one,
    not the spectral radius.

    Lanczos on Hessian-vector products (forward over reverse), from `num_starts` random starts
    side by side, each stopped when the residual of its top Ritz pair $(\theta, y)$ is below
    `rtol` $|\theta|$ (or after `max_iters` products); the largest value is kept. The value is a
    lower bound on $\lambda_{\max}$ within its residual of an eigenvalue (Kahan-Weinstein;
    Parlett, *The Symmetric Eigenvalue Problem*, Thm. 4.5.1), from random starts the largest
    one. [`gradflow.stiffness`][] is this at $w_0$ with `rtol=5e-2`, `max_iters=10`,
    `num_starts=2` and the default key, bit for bit.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][].
    - `params`: the parameters $w$, a PyTree like `problem.params0` (default: $w_0$).
    - `linear`: the Hessian of $\bar F_\alpha(w) = R(\alpha \bar h(w)) / \alpha^2$ instead (for a
      square loss, $Dh(w_0)^* Dh(w_0)$ at every $w$).
    - `rtol`: the residual tolerance, relative to the value, in $(0, 1)$.
    - `max_iters`: the cap on Hessian-vector products per start.
    - `num_starts`: the number of random starts.
    - `key`: a PRNG key for the starts (default `jax.random.PRNGKey(0)`).

    **Returns:** a [`gradflow.Sharpness`][] with scalar fields (`float(result)` is the value).
    A non-finite Hessian at `params` raises a `ValueError`.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    rtol, max_iters, num_starts = _check_settings(rtol, max_iters, num_starts)
    w = None if params is None else _flat_like(problem, params, "params", False)
    key = jax.random.PRNGKey(0) if key is None else key
    run = _sharpness_at(
        problem, w, bool(linear), key, num_starts, max_iters, jnp.asarray(rtol, problem.dtype)
    )
    value = _require_finite(run.value, "The sharpness")
    return Sharpness(value, run.residual, run.steps, rtol, bool(linear))


def sharpness_along(
    problem: Problem,
    params: Params,
    *,
    linear: bool = False,
    rtol: float = _RTOL,
    max_iters: int = _MAX_ITERS,
    num_starts: int = _NUM_STARTS,
    key: Array | None = None,
    batch_size: int | None = 1,
) -> Sharpness:
    r"""[`gradflow.sharpness`][] at each point of a path: the saved parameters of a solve, a
    flow's or gradient descent's.

    ```python
    sol = gf.solve(problem, t1=10.0, save_params=True)                     # the flow
    gd = gf.solve(problem, t1=10.0, solver=gf.GradientDescent(0.1), save_params=True)
    lam = gf.sharpness_along(problem, gd.params)      # lam.value[i] at w_k, k = gd.ts[i] / 0.1
    lin = gf.sharpness_along(problem, sol.linear_params, linear=True)
    ```

    **Arguments:**

    - `problem`: the [`gradflow.Problem`][] that was solved.
    - `params`: parameters with a leading time axis, a PyTree like `problem.params0`:
      `sol.params` (or `sol.linear_params`) of `gf.solve(..., save_params=True)`.
    - `linear`, `rtol`, `max_iters`, `num_starts`, `key`: as in [`gradflow.sharpness`][] (the
      same starts at every point).
    - `batch_size`: how many points run at once. The default, 1, runs them one after the
      other (`jax.lax.map`); `k` runs `k` at a time (`jax.vmap` inside), and `None` all at
      once, each batch as long as its slowest point. On CPU one at a time is the fastest: 101
      GD iterates of a 1 550-parameter net took 3.0 s, 3.6 s in batches of 8 and 7.0 s all at
      once (`benchmarks/bench_sharpness.py`); an accelerator runs a batch in parallel.

    **Returns:** a [`gradflow.Sharpness`][] whose fields have the leading time axis of
    `params`. Points with non-finite parameters (times a failed solve did not reach, saved as
    NaN) give NaN.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    if params is None:
        raise ValueError(
            "`params` is None: pass the saved parameters of a solve, `sol.params` (or "
            "`sol.linear_params`) of `gf.solve(..., save_params=True)`."
        )
    rtol, max_iters, num_starts = _check_settings(rtol, max_iters, num_starts)
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"`batch_size` must be an integer >= 1 or None; got {batch_size!r}.")
    ws = _flat_like(problem, params, "params", True)
    key = jax.random.PRNGKey(0) if key is None else key
    run = _sharpness_along(
        problem,
        ws,
        bool(linear),
        key,
        num_starts,
        max_iters,
        jnp.asarray(rtol, ws.dtype),
        None if batch_size is None else int(batch_size),
    )
    return Sharpness(run.value, run.residual, run.steps, rtol, bool(linear))
