r"""ROCK2: the second-order stabilized explicit Runge--Kutta method of Abdulle and Medovikov.

One step of ROCK2 with $s$ stages has the stability polynomial

$$
R_s(z) = w_2(z) P_{s-2}(z), \qquad w_2(z) = 1 + 2\sigma z + \sigma (\sigma + \tau) z^2,
$$

where $P_{s-2}$ is a polynomial of degree $m = s - 2$ from a family of polynomials orthogonal
(after an affine change of variable) with respect to the weight $w_2^2 / \sqrt{1 - x^2}$,
built by its three-term recurrence, and $w_2$ is realised by a two-stage finishing procedure.
$R_s$ satisfies $R_s(z) = 1 + z + z^2/2 + O(z^3)$ (second order) and $|R_s| \le 1$ on
$[-\ell_s, 0]$, $\ell_s \approx 0.81\,s^2$: a step is stable for stiff problems whose Jacobian
has a real non-positive spectrum inside $[-\ell_s / h, 0]$, at a cost of $s$ evaluations of
the vector field.

**References:**

A. Abdulle and A. A. Medovikov, "Second order Chebyshev methods based on orthogonal
polynomials", Numer. Math. 90 (2001) 1-18.
"""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .._typing import Array, ArrayLike, PyTree
from ._rock2_tables import FP1, FP2, MS, RECF, STABILITY_BOUNDS
from ._stabilized import AbstractSpectralRadius, AbstractStabilizedSolver, PowerIteration

_MS = np.asarray(MS, dtype=np.int32)
# A degree of the orthogonal polynomial $P_m$ plus the two finishing stages: the stage count
# $s$, which is also the degree of the stability polynomial and the number of evaluations.
_DEGREES = _MS + 2
_BOUNDS = np.asarray(STABILITY_BOUNDS, dtype=np.float64)
_FP1 = np.asarray(FP1, dtype=np.float64)
_FP2 = np.asarray(FP2, dtype=np.float64)


def _recurrence_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The flat table, padded to one row per degree so that a traced degree index can pick its
    # coefficients: row k holds $\mu_i$, $\kappa_i$ at column i for i = 2, ..., MS[k].
    recf = np.asarray(RECF, dtype=np.float64)
    starts = np.concatenate([[0], np.cumsum(2 * _MS - 1)[:-1]])
    mu1 = recf[starts]
    mu = np.zeros((len(_MS), int(_MS.max()) + 1))
    kappa = np.zeros_like(mu)
    for k, (start, m) in enumerate(zip(starts, _MS)):
        pairs = recf[start + 1 : start + 2 * m - 1].reshape(m - 1, 2)
        mu[k, 2 : m + 1] = pairs[:, 0]
        kappa[k, 2 : m + 1] = pairs[:, 1]
    return mu1, mu, kappa


_MU1, _MU, _KAPPA = _recurrence_arrays()


def _degree_index(s: ArrayLike) -> Array:
    """Index into the tables of the smallest tabulated stage count $\\ge s$, clipped."""
    k = jnp.searchsorted(jnp.asarray(_DEGREES), jnp.asarray(s), side="left")
    return jnp.clip(k, 0, len(_DEGREES) - 1)


def _combine(coeffs: tuple, trees: tuple, like: PyTree) -> PyTree:
    # $\sum_j c_j x_j$ leaf by leaf, in the dtype of `like` (the state): float64 coefficients,
    # or a vector field that promotes, do not turn a float32 state into float64.
    def leaf(ref, *xs):
        return sum(jnp.asarray(c, dtype=ref.dtype) * x for c, x in zip(coeffs, xs)).astype(
            ref.dtype
        )

    return jtu.tree_map(leaf, like, *trees)


def rock2_degree(z: ArrayLike) -> Array:
    """The number of ROCK2 stages for a step of size $h$ on a problem of spectral radius $\\rho$.

    **Arguments:**

    - `z`: $h \\rho$, a (traced) non-negative scalar.

    **Returns:**

    The smallest tabulated stage count $s$ ($3 \\le s \\le 200$) whose stability bound
    $\\ell_s$ is at least `z`; $200$ if no tabulated degree is large enough (then the step is
    not stable and the caller should reduce $h$). An integer scalar array.
    """
    k = jnp.searchsorted(jnp.asarray(_BOUNDS), jnp.asarray(z), side="left")
    return jnp.asarray(_DEGREES)[jnp.clip(k, 0, len(_DEGREES) - 1)]


def rock2_stability_bound(s: ArrayLike) -> Array:
    """The length $\\ell_s$ of the real stability interval $[-\\ell_s, 0]$ of ROCK2.

    **Arguments:**

    - `s`: the requested (traced) number of stages. As in `rock2_step`, the smallest
        tabulated stage count $\\ge s$ is used, clipped to $[3, 200]$.

    **Returns:**

    $\\ell_s$, the largest $\\ell$ with $|R_s(z)| \\le 1$ on $[-\\ell, 0]$ for the stability
    polynomial $R_s$ of that stage count (about $0.81\\,s^2$), as a float64 scalar array.
    """
    return jnp.asarray(_BOUNDS)[_degree_index(s)]


def rock2_step(
    vf: Callable[[ArrayLike, PyTree], PyTree],
    t0: ArrayLike,
    h: ArrayLike,
    y0: PyTree,
    f0: PyTree,
    s: ArrayLike,
) -> tuple[PyTree, PyTree, PyTree, Array]:
    """One step of ROCK2 from $(t_0, y_0)$ to $t_0 + h$.

    With $m = s - 2$ and the tabulated coefficients $\\mu_i$, $\\kappa_i$, $\\nu_i = -1 -
    \\kappa_i$, $\\sigma$, $\\tau$ of that degree, the internal stages follow the three-term
    recurrence of the orthogonal polynomials $P_i$,

    $$
    g_0 = y_0, \\quad g_1 = y_0 + h \\mu_1 f(t_0, g_0), \\quad
    g_i = h \\mu_i f(t_0 + c_{i-1} h, g_{i-1}) - \\nu_i g_{i-1} - \\kappa_i g_{i-2},
    $$

    for $i = 2, \\dots, m$ (the abscissae $c_i$ obey the same recurrence with $f \\equiv 1$),
    and the two-stage finishing procedure gives the solution and its embedded partner

    $$
    \\begin{aligned}
    g_{m+1} &= g_m + \\sigma h f(t_0 + c_m h, g_m), \\\\
    \\bar y_1 &= g_{m+1} + \\sigma h f(t_0 + (c_m + \\sigma) h, g_{m+1}), \\\\
    y_1 &= \\bar y_1 + \\tau h \\bigl(f(t_0 + (c_m + \\sigma) h, g_{m+1})
        - f(t_0 + c_m h, g_m)\\bigr),
    \\end{aligned}
    $$

    of orders two and one (Abdulle and Medovikov 2001). The stage count is traced:
    one compiled program serves every $s$.

    **Arguments:**

    - `vf`: the vector field, `vf(t, y)` a PyTree like `y`.
    - `t0`: the initial time.
    - `h`: the step size.
    - `y0`: the state at `t0`, a PyTree of floating-point arrays.
    - `f0`: `vf(t0, y0)`, e.g. the `f1` of the previous step (first same as last).
    - `s`: the requested number of stages, a (traced) integer. The smallest tabulated stage
        count $\\ge s$ is used, clipped to $[3, 200]$ (see `rock2_degree` for choosing it).

    **Returns:**

    A 4-tuple `(y1, y_error, f1, num_evals)`: the ROCK2 solution at `t0 + h`; the error
    estimate $y_1 - \\bar y_1$, a PyTree like `y0`; `f1 = vf(t0 + h, y1)`; and the number of
    evaluations of `vf` made (`f1` included, `f0` not), which is the stage count used.
    """
    k = _degree_index(s)
    m = jnp.asarray(_MS)[k]
    mu1 = jnp.asarray(_MU1)[k]
    mu_row = jnp.asarray(_MU)[k]
    kappa_row = jnp.asarray(_KAPPA)[k]
    sigma = jnp.asarray(_FP1)[k]
    tau = jnp.asarray(_FP2)[k]

    g1 = _combine((1.0, h * mu1), (y0, f0), y0)

    def stage(i, carry):
        c_prev, c_cur, g_prev, g_cur = carry
        mu = mu_row[i]
        kappa = kappa_row[i]
        f = vf(t0 + c_cur * h, g_cur)
        g_next = _combine((h * mu, 1.0 + kappa, -kappa), (f, g_cur, g_prev), y0)
        c_next = mu + (1.0 + kappa) * c_cur - kappa * c_prev
        return c_cur, c_next, g_cur, g_next

    init = (jnp.zeros_like(mu1), mu1, y0, g1)
    # A traced upper bound makes this a while loop: one program for every degree.
    _, c_m, _, g_m = jax.lax.fori_loop(2, m + 1, stage, init)

    f_m = vf(t0 + c_m * h, g_m)
    g_m1 = _combine((1.0, sigma * h), (g_m, f_m), y0)
    f_m1 = vf(t0 + (c_m + sigma) * h, g_m1)
    y_error = _combine((tau * h, -tau * h), (f_m1, f_m), y0)
    y1 = _combine((1.0, sigma * h, 1.0), (g_m1, f_m1, y_error), y0)
    f1 = vf(t0 + h, y1)
    return y1, y_error, f1, m + 2


class ROCK2(AbstractStabilizedSolver):
    r"""The second-order orthogonal-Runge-Kutta-Chebyshev method ROCK2 (Abdulle & Medovikov
    2001), with an embedded error estimate, for stiff ODEs whose Jacobian has a spectrum on (or
    near) the negative real axis, such as gradient flows.

    The stability polynomial of $s$ stages is $R_s(z) = w_2(z) P_{s-2}(z)$, $w_2(z) = 1 +
    2\sigma z + \sigma(\sigma + \tau) z^2$. $P_{s-2}$, of degree $m = s - 2$, belongs to a family
    of polynomials orthogonal (after an affine change of variable) with respect to the weight
    $w_2(x)^2 / \sqrt{1 - x^2}$; its three-term recurrence
    $P_i(z) = (\mu_i z - \nu_i) P_{i-1}(z) - \kappa_i P_{i-2}(z)$ gives the internal stages

    $$g_0 = y_n, \quad g_1 = y_n + \mu_1 h f(g_0), \quad
      g_i = \mu_i h f(g_{i-1}) - \nu_i g_{i-1} - \kappa_i g_{i-2}, \quad i = 2, \ldots, m,$$

    so only two stages are kept, whatever $s$. The coefficients are chosen so that $R_s(z) = 1
    + z + z^2/2 + O(z^3)$ (second order) and $|R_s(z)| \le 1$ on $[-\ell_s, 0]$ with $\ell_s
    \approx 0.81\,s^2$ (from $0.69\,s^2$ at $s = 3$; `STABILITY_BOUNDS` in
    `gradflow.solvers._rock2_tables`), close to the largest possible for second order, against
    $0.65\,s^2$ for [`gradflow.RKC`][] at its default damping.

    The quadratic factor $w_2$ has complex conjugate roots; it is realised by the two-stage
    finishing procedure

    $$g_{m+1} = g_m + \sigma h f(g_m), \quad
      \bar y_{n+1} = g_{m+1} + \sigma h f(g_{m+1}), \quad
      y_{n+1} = \bar y_{n+1} + \tau h \bigl(f(g_{m+1}) - f(g_m)\bigr),$$

    which reproduces $w_2$ on linear problems and keeps the method second order on nonlinear
    ones. $\bar y_{n+1}$ is first order (stability polynomial $P_{s-2}(z)(1 + \sigma z)^2$); the
    error estimate is the difference $y_{n+1} - \bar y_{n+1} = \tau h (f(g_{m+1}) - f(g_m)) =
    O(h^2)$. A step costs $s$ evaluations, $f(y_{n+1})$ included (it is the next step's
    $f(g_0)$). The coefficients $\mu_i$, $\kappa_i$ ($\nu_i = -1 - \kappa_i$), $\sigma$, $\tau$
    are the published tables for 46 stage counts $3 \le s \le 200$
    (`gradflow.solvers._rock2_tables`); a step uses the smallest tabulated $s$ with
    $\ell_s \ge h\rho$.

    **Arguments:**

    - `spectral_radius`: a [`gradflow.AbstractSpectralRadius`][]; default
      [`gradflow.PowerIteration`][]`()`.
    - `max_stages`: the largest stage count, in $[3, 200]$ (default 200: $\ell_{200} \approx
      3.2 \times 10^4$); the tabulated counts up to it are used.

    **References:**

    - A. Abdulle, A. A. Medovikov, *Second order Chebyshev methods based on orthogonal
      polynomials*, Numer. Math. 90 (2001) 1-18.
    """

    spectral_radius: AbstractSpectralRadius = dataclasses.field(default_factory=PowerIteration)
    max_stages: int = eqx.field(static=True, default=200)
    count: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        self._check_common()
        if not 3 <= self.max_stages <= int(_DEGREES[-1]):
            raise ValueError(
                f"`max_stages` must lie in [3, {int(_DEGREES[-1])}] for ROCK2 (its tabulated "
                f"stage counts); got {self.max_stages}."
            )

    def stage_counts(self):
        return _DEGREES[_DEGREES <= self.max_stages].astype(np.int64)

    def stability_bounds(self):
        return _BOUNDS[_DEGREES <= self.max_stages]

    def _stages(self, vf, t0, h, y0, f0, s):
        y1, y_error, f1, num_evals = rock2_step(vf, t0, h, y0, f0, s)
        return y1, f1, y_error, num_evals.astype(jnp.int32)
