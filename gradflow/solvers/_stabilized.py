r"""Stabilized explicit Runge-Kutta methods for stiff gradient flows: RKC (and a base for ROCK2).

The Jacobian of a gradient flow $w' = -\nabla F(w)$ is $-\nabla^2 F(w)$: symmetric, with a real
spectrum in $[-\rho, \mu]$, where $\rho$ (the largest Hessian eigenvalue) can be thousands of times
$1/T$ in the lazy regime. A classical explicit method is stable only for steps $h \lesssim 2/\rho$.
A stabilized (Chebyshev) method with $s$ stages has a stability polynomial $R_s$ with
$|R_s(z)| \le 1$ on a real interval $[-\beta(s), 0]$ whose length grows like $s^2$, so it advances
$O(s)$ times further per vector-field evaluation, with no linear solves and no Jacobian. The stage
count is chosen at every step from $h \rho$; $\rho$ comes from a
[`gradflow.AbstractSpectralRadius`][] strategy (power iteration on Jacobian-vector products of
the vector field, or a bound given by the user).

The solvers are diffrax `AbstractAdaptiveSolver`s: use them with `diffrax.PIDController` in
`diffrax.diffeqsolve`, or through [`gradflow.solve`][]. The stage count is a traced value, so one
compiled program serves every stage count.
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from ..analysis._operators import _tree_norm, power_iteration

Y = PyTree[Float[Array, "..."]]
VectorField = Callable[[Any, Y], Y]


def _axpy(a, x, y):
    """`a * x + y` over PyTrees."""
    return jax.tree_util.tree_map(lambda xi, yi: a * xi + yi, x, y)


def _combine(coefs, trees):
    return jax.tree_util.tree_map(lambda *xs: sum(c * x for c, x in zip(coefs, xs)), *trees)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _tree_scale(a, tree):
    return jax.tree_util.tree_map(lambda x: a * x, tree)


# --------------------------------------------------------------------------------------------
# Spectral radius strategies


class AbstractSpectralRadius(eqx.Module):
    r"""How a stabilized solver learns the spectral radius $\rho$ of the vector field's
    Jacobian $\partial f / \partial y$, from which it chooses the number of stages.

    A strategy has a state (carried in the solver's state), is initialised at $y_0$, refreshed
    when [`gradflow.AbstractSpectralRadius.due`][] says so, and reports the radius to use.
    """

    @abc.abstractmethod
    def init(self, jvp: Callable[[Y], Y], y0: Y) -> tuple[PyTree, Int[Array, ""]]:
        """The initial state, and the number of Jacobian-vector products spent.

        `jvp(v)` is the Jacobian of the vector field at `y0` applied to `v`."""

    @abc.abstractmethod
    def refresh(
        self, jvp: Callable[[Y], Y], state: PyTree, do: Bool[Array, ""]
    ) -> tuple[PyTree, Int[Array, ""]]:
        """The refreshed state (unchanged where `do` is false), and the products spent."""

    @abc.abstractmethod
    def due(self, steps_since: Int[Array, ""], shrunk: Bool[Array, ""]) -> Bool[Array, ""]:
        """Whether to refresh before this step, given the accepted steps since the last
        refresh and whether the step offered is shorter than the last accepted one."""

    @abc.abstractmethod
    def radius(self, state: PyTree) -> Float[Array, ""]:
        """The spectral radius to choose stages from (safety factor included)."""


class PowerIteration(AbstractSpectralRadius):
    r"""Estimate $\rho$ by power iteration on Jacobian-vector products of the actual vector
    field (`jax.jvp`: for a gradient flow, Hessian-vector products, forward over reverse).

    Each iteration applies the Jacobian to the current unit vector $v$ and takes
    $\|J v\|$ as the estimate, stopping when two successive estimates agree to `rtol` or after
    the iteration cap. The vector is kept between refreshes (warm start), so a refresh usually
    needs a few products. Power iteration approaches $\rho$ from below; the radius used is
    `safety` times the estimate (1.2, as in Sommeijer, Shampine & Verwer's RKC code).

    A refresh happens every `refresh_every` accepted steps, and before a step shorter than the
    last accepted one when that step used the stabilization ($h\rho$ above half the
    smallest stage count's interval). diffrax's PID controller never shortens the step after
    accepting one, so a shorter step follows a rejection (or the clip to `t1`), and a
    rejection of a stabilized step is where an underestimated $\rho$ shows. (diffrax hands a
    rejected step's solver state back unchanged, so the rejection is seen through the step
    that follows it.)

    **Arguments:**

    - `safety`: factor applied to the estimate (>= 1).
    - `refresh_every`: accepted steps between refreshes.
    - `max_iterations`: cap on the products of the first estimate at $y_0$.
    - `refresh_iterations`: cap on the products of a refresh.
    - `rtol`: relative change of the estimate at which the iteration stops.
    - `seed`: seed of the random start vector.
    """

    safety: float = eqx.field(default=1.2, converter=jnp.asarray)
    refresh_every: int = eqx.field(static=True, default=25)
    max_iterations: int = eqx.field(static=True, default=30)
    refresh_iterations: int = eqx.field(static=True, default=8)
    rtol: float = eqx.field(default=0.01, converter=jnp.asarray)
    seed: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if _concrete(self.safety) and not (np.isfinite(self.safety) and self.safety >= 1):
            raise ValueError(f"`safety` must be a number >= 1; got {self.safety}.")
        for name in ("refresh_every", "max_iterations", "refresh_iterations"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
        if _concrete(self.rtol) and not (0 < self.rtol < 1):
            raise ValueError(f"`rtol` must lie in (0, 1); got {self.rtol}.")

    def _iterate(self, jvp, v, rho, num):
        # The estimate is ||J v|| (J need not be symmetric); a warm start makes two products
        # before the tolerance may stop it, and a zero product keeps the vector (rho = 0).
        op = lx.FunctionLinearOperator(jvp, jax.eval_shape(lambda: v))
        run = power_iteration(
            op, v, num_iters=num, rtol=self.rtol, estimate="norm", min_iters=2, value0=rho
        )
        return (run.vector, run.value), run.steps

    def init(self, jvp, y0):
        leaves, treedef = jax.tree_util.tree_flatten(y0)
        keys = jax.random.split(jax.random.PRNGKey(self.seed), len(leaves))
        v = jax.tree_util.tree_unflatten(
            treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
        )
        v = _tree_scale(1 / _tree_norm(v), v)
        dtype = leaves[0].dtype
        return self._iterate(jvp, v, jnp.zeros((), dtype), self.max_iterations)

    def refresh(self, jvp, state, do):
        v, rho = state
        return self._iterate(jvp, v, rho, jnp.where(do, self.refresh_iterations, 0))

    def due(self, steps_since, shrunk):
        return (steps_since >= self.refresh_every) | shrunk

    def radius(self, state):
        return self.safety * state[1]


class SpectralBound(AbstractSpectralRadius):
    r"""A bound $\rho \ge$ the spectral radius of the Jacobian, given by the user (for a
    gradient flow, an upper bound on the largest Hessian eigenvalue along the path). No
    products are spent. An underestimate makes the method unstable: the error control then
    rejects steps until $h\rho$ is inside the stability interval again, at explicit-method cost.

    **Arguments:**

    - `bound`: the bound, a number > 0 (may be a traced array).
    """

    # An array leaf, so that another bound does not recompile.
    bound: Float[Array, ""] = eqx.field(converter=jnp.asarray)

    def __check_init__(self):
        if not isinstance(self.bound, jax.core.Tracer):
            b = float(np.asarray(self.bound))
            if not (np.isfinite(b) and b > 0):
                raise ValueError(f"`bound` must be a finite number > 0; got {b}.")

    def init(self, jvp, y0):
        del jvp
        dtype = jax.tree_util.tree_leaves(y0)[0].dtype
        return jnp.asarray(self.bound, dtype), jnp.zeros((), jnp.int32)

    def refresh(self, jvp, state, do):
        del jvp, do
        return state, jnp.zeros((), jnp.int32)

    def due(self, steps_since, shrunk):
        del steps_since, shrunk
        return jnp.array(False)

    def radius(self, state):
        return state


# --------------------------------------------------------------------------------------------
# The solver base


class _Counted(eqx.Module):
    """An error estimate that also carries what its step cost, for `_CountingController`."""

    error: Y
    evals: Array
    jvps: Array


class _SolverState(eqx.Module):
    f0: Y  # the vector field at the step's start (first same as last)
    spectral: PyTree  # the strategy's state
    steps_since: Array  # accepted steps since the last refresh
    h_prev: Array  # the last accepted step (inf before the first)
    num_accepted: Array
    stages_sum: Array  # stages over accepted steps
    stages_max: Array
    num_refreshes: Array
    init_evals: Array  # evaluations and products spent in `init`
    init_jvps: Array


class AbstractStabilizedSolver(dfx.AbstractAdaptiveSolver):
    r"""Base of the stabilized explicit Runge-Kutta methods. A concrete method gives its
    stability intervals (`stability_bounds`, $\beta(s)$ for $s = 2, \ldots,$ `max_stages`) and
    one step with a traced stage count (`_stages`); the base chooses $s$ as the smallest with
    $\beta(s) \ge h \rho$, runs the spectral-radius strategy, keeps the vector field at the end
    of each step for the next (first same as last), and interpolates with cubic Hermite
    polynomials from the end values and slopes.

    A step with $h\rho > \beta(\text{max\_stages})$ is not taken: it returns a huge error
    ($10^{10}$ times the state), so the controller shortens it.
    """

    term_structure: ClassVar = dfx.AbstractTerm
    interpolation_cls: ClassVar = dfx.ThirdOrderHermitePolynomialInterpolation

    spectral_radius: AbstractSpectralRadius
    max_stages: int
    count: bool

    @abc.abstractmethod
    def stability_bounds(self) -> np.ndarray:
        r"""$\beta(s)$ for $s$ in `stage_counts()`, increasing (numpy, float64)."""

    @abc.abstractmethod
    def stage_counts(self) -> np.ndarray:
        """The stage counts the method can use, increasing (numpy integers)."""

    @abc.abstractmethod
    def _stages(
        self, vf: VectorField, t0, h, y0: Y, f0: Y, s: Int[Array, ""]
    ) -> tuple[Y, Y, Y, Int[Array, ""]]:
        """One step of `s` stages: `(y1, f1, y_error, evals)` with `f1 = vf(t0 + h, y1)` and
        `evals` the vector-field evaluations made (f1 included, f0 not)."""

    def _check_common(self):
        if not isinstance(self.spectral_radius, AbstractSpectralRadius):
            raise TypeError(
                "`spectral_radius` must be a gradflow.AbstractSpectralRadius such as "
                "`gf.PowerIteration()` or `gf.SpectralBound(rho)`; got "
                f"{self.spectral_radius!r}."
            )
        if not (isinstance(self.max_stages, int) and 2 <= self.max_stages <= 10_000):
            raise ValueError(
                f"`max_stages` must be an integer in [2, 10000]; got {self.max_stages!r}."
            )

    def order(self, terms):
        del terms
        return 2

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def num_stages(self, z: Float[ArrayLike, ""]) -> tuple[Int[Array, ""], Bool[Array, ""]]:
        r"""The smallest stage count whose stability interval holds $z = h\rho$, and whether
        one exists (`z <= beta(max_stages)`)."""
        bounds = jnp.asarray(self.stability_bounds())
        counts = jnp.asarray(self.stage_counts(), jnp.int32)
        idx = jnp.searchsorted(bounds, z, side="left")
        feasible = idx < bounds.shape[0]
        return counts[jnp.minimum(idx, bounds.shape[0] - 1)], feasible

    def _jvp(self, terms, t0, y0, args):
        def jvp(v):
            return jax.jvp(lambda y: terms.vf(t0, y, args), (y0,), (v,))[1]

        return jvp

    def init(self, terms, t0, t1, y0, args) -> _SolverState:
        del t1
        f0 = terms.vf(t0, y0, args)
        spectral, jvps = self.spectral_radius.init(self._jvp(terms, t0, y0, args), y0)
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(y0))
        zero = jnp.zeros((), jnp.int32)
        return _SolverState(
            f0=f0,
            spectral=spectral,
            steps_since=zero,
            h_prev=jnp.zeros((), dtype),
            num_accepted=zero,
            stages_sum=zero,
            stages_max=zero,
            num_refreshes=zero,
            init_evals=jnp.ones((), jnp.int32),
            init_jvps=jvps.astype(jnp.int32),
        )

    def step(self, terms, t0, t1, y0, args, solver_state: _SolverState, made_jump):
        st = solver_state
        h = t1 - t0

        def vf(t, y):
            return terms.vf(t, y, args)

        evals = jnp.zeros((), jnp.int32)
        f0 = st.f0
        if made_jump is not False:
            f0 = jax.lax.cond(made_jump, lambda: vf(t0, y0), lambda: f0)
            evals = evals + jnp.asarray(made_jump, jnp.int32)
        # A rejection (seen as a step shorter than the last accepted one) can point to an
        # underestimated radius only where that step leaned on stabilization; below half the
        # smallest stage count's interval it was limited by accuracy, and a refresh is waste.
        leaned = st.h_prev * self.spectral_radius.radius(st.spectral) > 0.5 * float(
            self.stability_bounds()[0]
        )
        do = self.spectral_radius.due(st.steps_since, (h < st.h_prev * (1 - 1e-12)) & leaned)
        spectral, jvps = self.spectral_radius.refresh(
            self._jvp(terms, t0, y0, args), st.spectral, do
        )
        did = jvps > 0
        rho = self.spectral_radius.radius(spectral)
        s, feasible = self.num_stages(h * rho)
        # An infeasible step is not taken (one stage of work), and reported with an infinite
        # error so that the controller shortens it.
        s_run = jnp.where(feasible, s, int(self.stage_counts()[0])).astype(jnp.int32)
        y1, f1, y_error, n = self._stages(vf, t0, h, y0, f0, s_run)
        # A huge but finite error: the controller cuts the step by its largest factor, and a
        # guard against non-finite steps (`gf.solve`) does not mistake it for a NaN.
        y_error = jax.tree_util.tree_map(
            lambda x, y: jnp.where(feasible, x, 1e10 * (1 + jnp.abs(y))).astype(x.dtype),
            y_error,
            y0,
        )
        evals = evals + n
        new = _SolverState(
            f0=f1,
            spectral=spectral,
            steps_since=jnp.where(did, 1, st.steps_since + 1),
            h_prev=jnp.asarray(h, st.h_prev.dtype),
            num_accepted=st.num_accepted + 1,
            stages_sum=st.stages_sum + s_run,
            stages_max=jnp.maximum(st.stages_max, s_run),
            num_refreshes=st.num_refreshes + did.astype(jnp.int32),
            init_evals=st.init_evals,
            init_jvps=st.init_jvps,
        )
        dense_info = dict(y0=y0, y1=y1, k0=_tree_scale(h, f0), k1=_tree_scale(h, f1))
        if self.count:
            y_error = _Counted(y_error, evals, jvps.astype(jnp.int32))
        return y1, y_error, dense_info, new, dfx.RESULTS.successful


# --------------------------------------------------------------------------------------------
# RKC


def _chebyshev(x: np.ndarray | Array, s: int, xp=np):
    """$T_s(x)$, $T_s'(x)$, $T_s''(x)$ by the three-term recurrences."""
    t0, t1 = xp.ones_like(x), x
    d0, d1 = xp.zeros_like(x), xp.ones_like(x)
    dd0, dd1 = xp.zeros_like(x), xp.zeros_like(x)
    for _ in range(2, s + 1):
        t0, t1 = t1, 2 * x * t1 - t0
        d0, d1 = d1, 2 * t0 + 2 * x * d1 - d0
        dd0, dd1 = dd1, 4 * d0 + 2 * x * dd1 - dd0
    return t1, d1, dd1


def rkc_parameters(s: int, damping: float) -> tuple[float, float, float]:
    r"""$w_0 = 1 + \epsilon / s^2$, $w_1 = T_s'(w_0) / T_s''(w_0)$ and the stability bound
    $\beta(s) = (1 + w_0) / w_1$ of the $s$-stage RKC method with damping $\epsilon$."""
    w0 = 1.0 + damping / s**2
    _, d, dd = _chebyshev(np.float64(w0), s)
    w1 = d / dd
    return w0, w1, (1 + w0) / w1


def rkc_stability_polynomial(z: ArrayLike, s: int, damping: float = 2 / 13) -> np.ndarray:
    r"""$R_s(z) = a_s + b_s T_s(w_0 + w_1 z)$, with $b_s = T_s''(w_0)/T_s'(w_0)^2$ and
    $a_s = 1 - b_s T_s(w_0)$ (numpy)."""
    w0, w1, _ = rkc_parameters(s, damping)
    t, d, dd = _chebyshev(np.float64(w0), s)
    b = dd / d**2
    a = 1 - b * t
    x = w0 + w1 * np.asarray(z, np.float64)
    return a + b * _chebyshev(x, s)[0]


class RKC(AbstractStabilizedSolver):
    r"""The second-order Runge-Kutta-Chebyshev method (van der Houwen & Sommeijer 1980;
    Sommeijer, Shampine & Verwer 1997), with an embedded error estimate, for stiff ODEs whose
    Jacobian has a spectrum on (or near) the negative real axis, such as gradient flows.

    With $w_0 = 1 + \epsilon/s^2$, $w_1 = T_s'(w_0)/T_s''(w_0)$ and
    $b_j = T_j''(w_0)/T_j'(w_0)^2$ ($b_0 = b_1 = b_2$), $a_j = 1 - b_j T_j(w_0)$, the $s$ stages
    are

    $$Y_0 = y_n, \quad Y_1 = Y_0 + \tilde\mu_1 h f(Y_0),$$
    $$Y_j = (1 - \mu_j - \nu_j) Y_0 + \mu_j Y_{j-1} + \nu_j Y_{j-2} + \tilde\mu_j h f(Y_{j-1})
      + \tilde\gamma_j h f(Y_0),$$

    $\tilde\mu_1 = b_1 w_1$, $\mu_j = 2 b_j w_0 / b_{j-1}$, $\nu_j = -b_j / b_{j-2}$,
    $\tilde\mu_j = 2 b_j w_1 / b_{j-1}$, $\tilde\gamma_j = -a_{j-1} \tilde\mu_j$, and
    $y_{n+1} = Y_s$. The stability polynomial is $R_s(z) = a_s + b_s T_s(w_0 + w_1 z)$, second
    order ($R_s(z) = 1 + z + z^2/2 + O(z^3)$), with $|R_s(z)| \le a_s + b_s < 1$ on
    $[-\beta(s), 0]$, $\beta(s) = (1 + w_0)/w_1 \approx \frac{2}{3}(s^2 - 1)(1 - \frac{2}{15}
    \epsilon)$: about $0.65 s^2$ at the damping $\epsilon = 2/13$, which keeps the polynomial
    away from $\pm 1$ inside the interval. The three-term recurrence keeps only $Y_{j-1}$,
    $Y_{j-2}$ and $f(Y_0)$, so memory does not grow with $s$.

    The local error estimate is $\frac{4}{5}(y_n - y_{n+1}) + \frac{2}{5} h (f(y_n) +
    f(y_{n+1}))$, of order $h^3$ (Sommeijer, Shampine & Verwer 1997); $f(y_{n+1})$ is the next
    step's $f(Y_0)$, so a step costs $s$ evaluations.

    **Arguments:**

    - `spectral_radius`: a [`gradflow.AbstractSpectralRadius`][]; default
      [`gradflow.PowerIteration`][]`()`.
    - `damping`: $\epsilon$ (default $2/13$).
    - `max_stages`: the largest stage count (default 500: $\beta \approx 1.6 \times 10^5$).

    **References:**

    - P. J. van der Houwen, B. P. Sommeijer, *On the internal stability of explicit m-stage
      Runge-Kutta methods for large m-values*, ZAMM 60 (1980) 479-485.
    - B. P. Sommeijer, L. F. Shampine, J. G. Verwer, *RKC: an explicit solver for parabolic
      PDEs*, J. Comput. Appl. Math. 88 (1997) 315-326.
    - J. G. Verwer, W. H. Hundsdorfer, B. P. Sommeijer, *Convergence properties of the
      Runge-Kutta-Chebyshev method*, Numer. Math. 57 (1990) 157-178.
    """

    spectral_radius: AbstractSpectralRadius = dataclasses.field(default_factory=PowerIteration)
    damping: float = eqx.field(static=True, default=2 / 13)
    max_stages: int = eqx.field(static=True, default=500)
    count: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        self._check_common()
        if not (0 <= self.damping <= 1):
            raise ValueError(f"`damping` must lie in [0, 1]; got {self.damping}.")

    def error_order(self, terms):
        # The estimate compares with the trapezoidal rule: its local error is O(h^3).
        del terms
        return 3

    def stage_counts(self):
        return np.arange(2, self.max_stages + 1)

    def stability_bounds(self):
        return _rkc_bounds(self.damping, self.max_stages)

    def _stages(self, vf, t0, h, y0, f0, s):
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(y0))
        sf = s.astype(dtype)
        w0 = 1 + self.damping / sf**2

        # T_s'(w0), T_s''(w0) by the recurrence, for w1.
        def cheb(_, c):
            t0_, t1_, d0, d1, dd0, dd1 = c
            t2 = 2 * w0 * t1_ - t0_
            d2 = 2 * t1_ + 2 * w0 * d1 - d0
            dd2 = 4 * d1 + 2 * w0 * dd1 - dd0
            return t1_, t2, d1, d2, dd1, dd2

        one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
        c0 = (one, w0, zero, one, zero, zero)
        _, _, _, ds, _, dds = jax.lax.fori_loop(2, s + 1, cheb, c0)
        w1 = ds / dds
        # Stage 2 quantities: T_2 = 2 w0^2 - 1, T_2' = 4 w0, T_2'' = 4.
        b2 = 4 / (4 * w0) ** 2
        mu1 = b2 * w1
        y1 = _axpy(mu1 * h, f0, y0)

        def body(j, c):
            # Stage j from Y_{j-1}, Y_{j-2}; T, T', T'' at w0 of orders j-1 and j-2; b and c.
            yjm1, yjm2, tm1, tm2, dm1, dm2, ddm1, ddm2, bm1, bm2, cm1, cm2 = c
            tj = 2 * w0 * tm1 - tm2
            dj = 2 * tm1 + 2 * w0 * dm1 - dm2
            ddj = 4 * dm1 + 2 * w0 * ddm1 - ddm2
            bj = ddj / dj**2
            mu = 2 * bj * w0 / bm1
            nu = -bj / bm2
            mut = 2 * bj * w1 / bm1
            gamt = -(1 - bm1 * tm1) * mut
            fj = vf(t0 + cm1 * h, yjm1)
            yj = _combine((1 - mu - nu, mu, nu, mut * h, gamt * h), (y0, yjm1, yjm2, fj, f0))
            cj = mu * cm1 + nu * cm2 + mut + gamt
            return yj, yjm1, tj, tm1, dj, dm1, ddj, ddm1, bj, bm1, cj, cm1

        # Orders 1 and 0: T_1 = w0, T_1' = 1, T_1'' = 0 (b_1 = b_0 = b_2); c_1 = mu1, c_0 = 0.
        carry = (y1, y0, w0, one, one, zero, zero, zero, b2, b2, mu1, zero)
        ys = jax.lax.fori_loop(2, s + 1, body, carry)[0]
        f1 = vf(t0 + h, ys)
        err = _combine((0.8, -0.8, 0.4 * h, 0.4 * h), (y0, ys, f0, f1))
        return ys, f1, err, s.astype(jnp.int32)


_BOUNDS_CACHE: dict = {}


def _rkc_bounds(damping: float, max_stages: int) -> np.ndarray:
    key = (damping, max_stages)
    if key not in _BOUNDS_CACHE:
        _BOUNDS_CACHE[key] = np.array(
            [rkc_parameters(s, damping)[2] for s in range(2, max_stages + 1)]
        )
    return _BOUNDS_CACHE[key]


# --------------------------------------------------------------------------------------------
# Counting every evaluation, rejected steps included


class CountingController(dfx.AbstractStepSizeController):
    """Wraps a step-size controller to sum the vector-field evaluations and Jacobian-vector
    products of every attempted step (rejected ones included), which a stabilized solver built
    with `count=True` hands over with its error estimate. [`gradflow.solve`][] uses it; the
    totals are in the final controller state (`SaveAt(controller_state=True)`)."""

    controller: dfx.AbstractStepSizeController

    def wrap(self, direction):
        return CountingController(self.controller.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        zero = jnp.zeros((), jnp.int32)
        return tnext, (state, zero, zero)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner, evals, jvps = state
        if not isinstance(y_error, _Counted):
            raise TypeError("CountingController needs a stabilized solver built with count=True.")
        out = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error.error, error_order, inner
        )
        keep, tprev, tnext, jump, inner, result = out
        # diffrax maps NaN entries of the error to inf before this point; the counts stay finite.
        evals = evals + y_error.evals.astype(jnp.int32)
        jvps = jvps + y_error.jvps.astype(jnp.int32)
        return keep, tprev, tnext, jump, (inner, evals, jvps), result
