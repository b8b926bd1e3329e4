r"""`Tsit5ThenRKC`: Tsit5 while the flow is not stiff, RKC from the point where it turns stiff.

A flow to its limit often changes character on the way: at a small initialization scale the
diagonal net's flow crawls along plateaus (smooth, slow, not stiff: an order-5 method covers
them in few steps), then converges to a fixed point whose Hessian has eigenvalues far above the
rate of the remaining motion (stiff: an explicit method's step is capped by stability at about
$3.5/\lambda_{\max}$, whatever the tolerance). Neither method alone is cheap on both stretches;
the sequence is. This is the idea of LSODA (Petzold 1983), which switches between Adams and
BDF methods, with the stiffness test of Hairer & Wanner's DOPRI5 code on Tsit5's stages.
"""

from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..analysis._operators import _tree_norm
from ._stabilized import RKC, AbstractStabilizedSolver


def _tsit5_stage6_weights() -> np.ndarray:
    # Tsit5's sixth stage sits at c = 1, like its seventh (f at the step's end, first same as
    # last): the pair gives the stiffness estimate.
    import diffrax._solver.tsit5 as tsit5

    row = np.asarray(tsit5._tsit5_tableau.a_lower[4], dtype=np.float64)
    assert row.shape == (5,) and float(tsit5._tsit5_tableau.c[4]) == 1.0
    return row


# diffrax has no result for "hand the solve over to another solver", and a result it counts as
# okay (`event_occurred`) is overwritten by the step-size controller's. The code of a breakdown
# of an iterative linear solve never arises from Tsit5 (it makes no linear solves), so the switch
# ends the first part of a solve with it, and `gf.solve` reads it as the switch.
SWITCH_RESULT = dfx.RESULTS.breakdown

# Tsit5's stability interval on the negative real axis is [-3.507, 0] (from its tableau: the
# largest |z| with |R(z)| <= 1, `tests/test_stiffness_switch.py`).
TSIT5_REAL_STABILITY = 3.507


class Tsit5ThenRKC(dfx.AbstractAdaptiveSolver):
    r"""Tsit5 (order 5) while the flow is not stiff, [`gradflow.RKC`][] from the first point
    where it is: the solver `solver="auto"` takes for a smooth flow to its limit
    (`t1=math.inf`) where it does not take [`gradflow.BDF`][] (more than 128 state entries, or
    a sweep batch under `jax.vmap`), and one a user may pass to [`gradflow.solve`][] at any
    horizon.

    **The stiffness test** (Hairer & Wanner's, from their DOPRI5 code). Tsit5's sixth and
    seventh stages are both evaluated at the step's end, at $Y_6$ and at $y_1$, so
    $h\rho = \|k_7 - k_6\| / \|y_1 - Y_6\|$ (with $k_i = h f(Y_i)$) is $h$ times a Rayleigh-like
    quotient of the Jacobian along $y_1 - Y_6$: for a gradient flow, of the Hessian, and close to
    $h\lambda_{\max}$ where the step is capped by stability (the error of the stages then grows
    along the top eigenvector). A step with $h\rho >$ `threshold` (3.0, against Tsit5's
    real stability interval $[-3.51, 0]$) counts as stiff; `patience` (15) accepted stiff steps
    with no run of `relapse` (6) non-stiff ones between them declare the flow stiff.

    **The switch.** There, this solver ends its part of the solve with `SWITCH_RESULT`, and
    [`gradflow.solve`][] continues with
    `stiff` from that state and time to `t1` or to the stop, with its saves, its events and
    the same error control: one compiled program, and one solve's statistics (the evaluations
    of both parts summed; `Solution.stats["switch_time"]`, NaN where no switch happened). The
    switch is one way: a flow stiff once is taken to stay stiff (a gradient flow's Hessian at
    its limit keeps its top eigenvalues). Used in `diffrax.diffeqsolve` directly, the solve
    stops at the switch, with that result.

    **Arguments:**

    - `stiff`: the stabilized solver after the switch: [`gradflow.RKC`][]`()` (the default)
      or [`gradflow.ROCK2`][]`()`.
    - `threshold`: $h\rho$ above which a step counts as stiff, in $(0, 3.507]$.
    - `patience`: stiff steps that declare the flow stiff (an integer >= 1).
    - `relapse`: consecutive non-stiff steps that reset the count (an integer >= 1).

    **References:**

    - L. Petzold, *Automatic selection of methods for solving stiff and nonstiff systems of
      ordinary differential equations*, SIAM J. Sci. Stat. Comput. 4 (1983) 136-148.
    - E. Hairer, G. Wanner, *Solving Ordinary Differential Equations II*, 2nd ed., Springer
      1996, Section IV.2 (stiffness detection in DOPRI5).
    - Ch. Tsitouras, *Runge-Kutta pairs of order 5(4) satisfying only the first column
      simplifying assumption*, Comput. Math. Appl. 62 (2011) 770-775.
    """

    term_structure: ClassVar = dfx.AbstractTerm
    interpolation_cls: ClassVar = dfx.Tsit5.interpolation_cls

    stiff: AbstractStabilizedSolver = eqx.field(default_factory=RKC)
    threshold: float = eqx.field(static=True, default=3.0)
    patience: int = eqx.field(static=True, default=15)
    relapse: int = eqx.field(static=True, default=6)

    def __check_init__(self):
        if not isinstance(self.stiff, AbstractStabilizedSolver):
            raise TypeError(
                "`stiff` must be a stabilized solver, gradflow.RKC or gradflow.ROCK2; got "
                f"{type(self.stiff).__name__}."
            )
        if not (
            isinstance(self.threshold, (int, float)) and 0 < self.threshold <= TSIT5_REAL_STABILITY
        ):
            raise ValueError(
                f"`threshold` must be a number in (0, {TSIT5_REAL_STABILITY}] (Tsit5's real "
                f"stability interval); got {self.threshold!r}."
            )
        for name in ("patience", "relapse"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")

    def order(self, terms):
        return dfx.Tsit5().order(terms)

    def error_order(self, terms):
        return dfx.Tsit5().error_order(terms)

    def func(self, terms, t0, y0, args):
        return dfx.Tsit5().func(terms, t0, y0, args)

    def init(self, terms, t0, t1, y0, args):
        zero = jnp.zeros((), jnp.int32)
        return dfx.Tsit5().init(terms, t0, t1, y0, args), zero, zero

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, count, calm = solver_state
        y1, y_error, dense_info, inner, result = dfx.Tsit5().step(
            terms, t0, t1, y0, args, inner, made_jump
        )
        hrho = stiffness_estimate(y0, y1, dense_info["k"])
        stiff_now = hrho > self.threshold
        calm = jnp.where(stiff_now, 0, calm + 1)
        count = jnp.where(stiff_now, count + 1, jnp.where(calm >= self.relapse, 0, count))
        switch = count >= self.patience
        result = dfx.RESULTS.where(
            switch & (result == dfx.RESULTS.successful), SWITCH_RESULT, result
        )
        return y1, y_error, dense_info, (inner, count, calm), result


def stiffness_estimate(y0, y1, ks) -> jax.Array:
    r"""$h\rho = \|k_7 - k_6\| / \|y_1 - Y_6\|$ from one Tsit5 step (`ks`: its stage
    increments $h f(Y_i)$, stacked on a leading axis per leaf, as in diffrax's dense output);
    0 where $y_1 = Y_6$."""
    a6 = _tsit5_stage6_weights()
    y6 = jax.tree_util.tree_map(
        lambda x, k: x + jnp.tensordot(jnp.asarray(a6, k.dtype), k[:5], axes=1), y0, ks
    )
    num = _tree_norm(jax.tree_util.tree_map(lambda k: k[6] - k[5], ks))
    den = _tree_norm(jax.tree_util.tree_map(lambda a, b: a - b, y1, y6))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)
