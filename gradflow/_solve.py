"""`solve`: the gradient flow of a model and of its linearization, integrated together."""

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._problem import Problem, _flatten, _is_traced
from ._solution import (
    RESULTS,
    Solution,
    SolveError,
    SolveInfo,
    _failure_message,
    _throw_messages,
)
from ._typing import Array, ArrayLike
from .solvers._auto import choose_solver, has_kinks
from .solvers._gradient_descent import GradientDescent
from .solvers._stabilized import AbstractStabilizedSolver, CountingController

_STAGES = {
    # New vector-field evaluations per step; first-same-as-last methods (the others) reuse the
    # last stage of a step as the first of the next, and pay one evaluation at the start.
    "Euler": 1,
    "Heun": 2,
    "Midpoint": 2,
    "Ralston": 2,
    "Bosh3": 3,
    "Tsit5": 6,
    "Dopri5": 6,
    "Dopri8": 12,
}
_NOT_FSAL = frozenset({"Euler", "Heun", "Midpoint", "Ralston"})


def _finite(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


# A step whose error estimate or candidate state is NaN/inf is rejected by diffrax's adaptive
# controllers, and a rejected step never changes the state, so the divergence event never sees
# a NaN vector field: the solve would shrink the step forever and end at `max_steps`. Such a
# step is accepted instead (the state then turns non-finite and the event fires) once the step
# has collapsed below `_DTMIN_FRACTION * t1`, or after `_PATIENCE` consecutive non-finite
# attempts (a NaN step size never compares below anything). An honest flow never has a
# non-finite vector field that close to an accepted state: at that point it sits on a
# singularity of the model.
# A step rejected with a *finite* error estimate once the step has collapsed below
# `_DTMIN_FRACTION * t1` (or with a NaN next step: a 0/0 in the error norm, atol = 0 on a state
# entry at 0) is not divergence: a gradient flow of a loss bounded below cannot blow up in
# finite time (|w(t) - w0|^2 <= t (F(w0) - inf F) by Cauchy-Schwarz), so the error control is
# asking for more than the arithmetic gives. The solve stops there with
# `RESULTS.step_size_collapsed` (diffrax's `dt_min_reached`) instead of going on to a NaN step
# that the rule above would call divergence.
_DTMIN_FRACTION = 1e-12
_PATIENCE = 30
# The loss along a gradient flow never increases (dF/dt = -|grad F|^2), nor along gradient
# descent with steps below 2 / L (the descent lemma); the transient growth of unstable-but-
# bounded gradient descent (edge of stability, catapults) stays within a few orders of
# magnitude. A loss above this factor times max(R(alpha h(w0)), R(0)) is divergence.
_LOSS_GROWTH = 1e10


class _NonFiniteGuard(dfx.AbstractAdaptiveStepSizeController):
    """Wraps an adaptive step-size controller so that a non-finite step is eventually
    accepted (see `_DTMIN_FRACTION` and `_PATIENCE`) rather than retried until `max_steps`."""

    controller: dfx.AbstractAdaptiveStepSizeController
    dtmin: Array

    @property
    def rtol(self):
        return self.controller.rtol

    @property
    def atol(self):
        return self.controller.atol

    @property
    def norm(self):
        return self.controller.norm

    def wrap(self, direction):
        return _NonFiniteGuard(self.controller.wrap(direction), self.dtmin)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return tnext, (state, jnp.zeros((), jnp.int32))

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        inner, strikes = state
        keep, next_t0, next_t1, made_jump, inner, result = self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, inner
        )
        bad = jnp.logical_not(_finite(y_error) & _finite(y1_candidate))
        strikes = jnp.where(bad, strikes + 1, 0)
        collapsed = jnp.logical_not(t1 - t0 >= self.dtmin)
        give_up = bad & ((strikes >= _PATIENCE) | collapsed)
        next_dt = next_t1 - next_t0
        stuck = ~bad & ~keep & (collapsed | ~jnp.isfinite(next_dt))
        result = dfx.RESULTS.where(stuck, dfx.RESULTS.dt_min_reached, result)
        next_t0 = jnp.where(give_up, t1, next_t0)
        next_t1 = jnp.where(give_up, t1 + next_dt, next_t1)
        return keep | give_up, next_t0, next_t1, made_jump, (inner, strikes), result


@eqx.filter_jit
def _solve_jit(
    problem: Problem,
    ts: Array,
    t1: Array,
    solver: dfx.AbstractSolver,
    controller: dfx.AbstractStepSizeController,
    dt0: Array | None,
    max_steps: int,
    linearized: bool,
    save_params: bool,
):
    flat = _flatten(problem, linearize=linearized)
    alpha, loss = flat.alpha, flat.loss
    w0, h = flat.w0, flat.h
    dtype = w0.dtype

    def grad_term(w):
        # -Dh(w)^T grad R(alpha h(w)): the velocity of z = alpha (w - w0).
        out, vjp = jax.vjp(h, w)
        (g,) = vjp(loss.grad(alpha * out))
        return -g

    if linearized:
        # Scaled coordinates: u = alpha (wbar - w0) and e = alpha^2 (w - wbar) are O(1) in the
        # lazy regime, so error control acts on the gap itself and not on w = w0 + O(1/alpha),
        # where the gap would sit ~1/alpha^2 below the rounding of a separately integrated w.
        def linear_out(u):
            return alpha * flat.h0 + flat.jvp0(u)

        def vector_field(t, y, args):
            del t, args
            u, e = y
            w = w0 + (u + e / alpha) / alpha
            du = -flat.vjp0(loss.grad(linear_out(u)))
            dz = grad_term(w)
            return du, alpha * (dz - du)

        y0 = (jnp.zeros_like(w0), jnp.zeros_like(w0))

        def metrics(t, y, args):
            del t, args
            u, e = y
            d = u + e / alpha
            w = w0 + d / alpha
            out = alpha * h(w)
            lin = linear_out(u)
            m = {
                "param_distance": jnp.linalg.norm(d) / alpha,
                "param_gap": jnp.linalg.norm(e) / alpha**2,
                "output_gap": flat.fnorm(out - lin),
                "loss": loss(out),
                "linear_loss": loss(lin),
            }
            if save_params:
                m["params"], m["linear_params"] = w, w0 + u / alpha
            return m
    else:

        def vector_field(t, y, args):
            del t, args
            return grad_term(w0 + y / alpha)

        y0 = jnp.zeros_like(w0)

        def metrics(t, y, args):
            del t, args
            out = alpha * h(w0 + y / alpha)
            m = {"param_distance": jnp.linalg.norm(y) / alpha, "loss": loss(out)}
            if save_params:
                m["params"] = w0 + y / alpha
            return m

    def diverged(t, y, args, **kwargs):
        del t, args, kwargs
        return jnp.logical_not(_finite(y))

    if isinstance(controller, dfx.AbstractAdaptiveStepSizeController):
        controller = _NonFiniteGuard(controller, _DTMIN_FRACTION * t1)
    stabilized = isinstance(solver, AbstractStabilizedSolver)
    if stabilized:
        # Every attempted step hands its cost to the controller, rejected steps included;
        # the count is taken off the error estimate before the other controllers see it.
        solver = dataclasses.replace(solver, count=True)
        controller = CountingController(controller)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vector_field),
        solver,
        t0=jnp.zeros((), dtype),
        t1=t1,
        dt0=dt0,
        y0=jax.tree_util.tree_map(lambda x: x.astype(dtype), y0),
        saveat=dfx.SaveAt(ts=ts, fn=metrics, solver_state=stabilized, controller_state=stabilized),
        stepsize_controller=controller,
        max_steps=max_steps,
        event=dfx.Event(diverged),
        # Forward-mode adjoint: a plain while loop (no checkpointing), which compiles faster;
        # gradflow differentiates models, not solves.
        adjoint=dfx.ForwardMode(),
        throw=False,
    )
    r = sol.result
    result = RESULTS.where(
        r == dfx.RESULTS.successful,
        RESULTS.successful,
        RESULTS.where(
            r == dfx.RESULTS.event_occurred,
            RESULTS.diverged,
            RESULTS.where(
                r == dfx.RESULTS.max_steps_reached,
                RESULTS.max_steps_reached,
                RESULTS.where(
                    r == dfx.RESULTS.dt_min_reached,
                    RESULTS.step_size_collapsed,
                    RESULTS.solver_failed,
                ),
            ),
        ),
    )
    # Unreached save times are +inf in diffrax; report them as NaN ("not computed").
    reached = jnp.isfinite(sol.ts)
    # Divergence that leaves the state finite: a non-finite or exploding loss at a save time
    # (see `_LOSS_GROWTH`). The metrics from that save time on are dropped as unreached.
    scale = jnp.maximum(loss(alpha * flat.h0), loss(jnp.zeros_like(flat.h0)))
    blown = jnp.zeros_like(reached)
    for name in ("loss", "linear_loss"):
        if name in sol.ys:
            value = sol.ys[name]
            blown = blown | jnp.logical_not(value <= _LOSS_GROWTH * scale)
    blown = blown & reached
    result = RESULTS.where(jnp.any(blown), RESULTS.diverged, result)
    reached = reached & (jnp.cumsum(blown) == 0)

    def mask(x):
        return jnp.where(reached.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.nan)

    ys = jax.tree_util.tree_map(mask, sol.ys)
    if save_params:
        ys["params"] = jax.vmap(flat.unravel)(ys["params"])
        if linearized:
            ys["linear_params"] = jax.vmap(flat.unravel)(ys["linear_params"])
    stats = dict(sol.stats)
    if stabilized:
        stats.update(_stabilized_stats(solver, sol.solver_state, sol.controller_state, dt0 is None))
    return ys, stats, result


def _stabilized_stats(
    solver: AbstractStabilizedSolver, state, controller_state, selected_dt0: bool
) -> dict[str, Array]:
    _, evals, jvps = controller_state
    accepted = jnp.maximum(state.num_accepted, 1)
    return {
        # f(y0) in `init`, every attempted step, and the two evaluations of diffrax's choice of
        # the first step when `dt0` is not given.
        "num_vector_field_evals": state.init_evals + evals + (2 if selected_dt0 else 0),
        "num_jvp_evals": state.init_jvps + jvps,
        "num_spectral_refreshes": state.num_refreshes,
        "stages_max": state.stages_max,
        "stages_mean": state.stages_sum.astype(jnp.float64) / accepted,
        # The radius the stages were last chosen from (safety factor included).
        "spectral_radius": solver.spectral_radius.radius(state.spectral),
    }


def _controller_tolerances(
    controller: dfx.AbstractStepSizeController | None,
) -> tuple[float | None, float | None] | None:
    """`(rtol, atol)` of an adaptive step-size controller (an entry is `None` where traced);
    `None` for no controller or a constant one, which has no tolerances."""
    if not isinstance(controller, dfx.AbstractAdaptiveStepSizeController):
        return None

    def value(x):
        return None if x is None or _is_traced(x) else float(x)

    return value(controller.rtol), value(controller.atol)


# The smallest `rtol` an adaptive solve accepts, by dtype: about 8 and 45 machine epsilons
# (1.2e-7 and 2.2e-16). An embedded Runge-Kutta error estimate is the difference of two
# weighted sums of the stages, each of the state's size, so its rounding is a few to tens of
# epsilons relative to the state; a tolerance below that is met or missed by rounding noise,
# and the controller shrinks the step until it collapses. On the two-layer nets of the tests,
# float64 solves at rtol 1e-14 and 1e-15 succeed in ~100 steps, and rtol 1e-20 collapses.
_RTOL_MIN = {"float32": 1e-6, "float64": 1e-14}


def _check_resolution(name: str, rtol: float, dtype) -> None:
    bound = _RTOL_MIN.get(str(jnp.dtype(dtype)))
    if bound is None or rtol >= bound:
        return
    if jnp.dtype(dtype) == jnp.float32:
        raise ValueError(
            f"`{name}={rtol}` is below float32 resolution; the parameters are float32. Use "
            "rtol >= 1e-6, or float64 parameters (gradflow enables jax_enable_x64)."
        )
    raise ValueError(
        f"`{name}={rtol}` is below float64 resolution (machine epsilon 2.2e-16): the error "
        "estimate is rounding noise at that level, and the step size would collapse. Use "
        f"rtol >= {bound:g}."
    )


# The step budget of a flow when `max_steps` is not given.
_MAX_STEPS = 100_000


def _default_ts(t1: float, num: int = 101) -> np.ndarray:
    return np.linspace(0.0, t1, num)


def _check_times(ts: np.ndarray) -> np.ndarray:
    """Save times must be a non-empty, finite, non-negative, non-decreasing 1-d array; the
    error names the first offending entry."""
    if ts.ndim != 1 or len(ts) == 0:
        raise ValueError(f"`ts` must be a non-empty 1-d array of times; got shape {ts.shape}.")
    bad = np.flatnonzero(~np.isfinite(ts))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"`ts` must be finite; got ts[{i}]={float(ts[i])!r}.")
    if ts[0] < 0:
        raise ValueError(f"`ts` must be times >= 0; got ts[0]={float(ts[0])!r}.")
    down = np.flatnonzero(np.diff(ts) < 0)
    if down.size:
        i = int(down[0])
        raise ValueError(
            f"`ts` must be non-decreasing; got ts[{i}]={float(ts[i])!r} > "
            f"ts[{i + 1}]={float(ts[i + 1])!r}. Sort them, e.g. `np.sort(ts)`."
        )
    return ts


def _real_argument(name: str, value: Any, requirement: str, ok) -> float:
    """`value` as a float if it is a real number (Python, numpy, or a concrete 0-d array; not
    a bool) and `ok(value)`; otherwise a `TypeError` (not a number) or a `ValueError` (out of
    range) that names the argument."""
    real = not isinstance(value, (bool, np.bool_)) and (
        isinstance(value, numbers.Real)
        or (
            isinstance(value, (np.ndarray, jax.Array))
            and value.ndim == 0
            and (
                jnp.issubdtype(value.dtype, jnp.integer)
                or jnp.issubdtype(value.dtype, jnp.floating)
            )
        )
    )
    if not real:
        raise TypeError(
            f"`{name}` must be {requirement} (a real number); got {type(value).__name__} {value!r}."
        )
    if _is_traced(value):
        raise TypeError(
            f"`{name}` must be a concrete number, not a traced value (under `jax.jit` or "
            "`jax.vmap`): it fixes the program `solve` compiles. Pass a Python number."
        )
    x = float(value)
    if not ok(x):
        raise ValueError(f"`{name}` must be {requirement}; got {name}={x!r}.")
    return x


def _bool_argument(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {name}={value!r}.")
    return bool(value)


class _Arguments(NamedTuple):
    """The arguments of `solve` that need no problem, checked and normalized."""

    t1: float | None  # `ts[-1]` when only `ts` is given; for gradient descent num * eta
    ts: np.ndarray | None  # for gradient descent snapped to the iterates k * eta
    rtol: float
    atol: float
    dt0: float | None
    max_steps: int | None  # None: the default budget (see `solve`)
    num_steps: int | None  # gradient descent: t1 / eta, when t1 is known


def _checked_arguments(
    *,
    t1: Any = None,
    ts: Any = None,
    rtol: Any = 1e-8,
    atol: Any = 1e-10,
    dt0: Any = None,
    solver: Any = None,
    max_steps: Any = None,
    linearized: Any = True,
    save_params: Any = False,
    stepsize_controller: Any = None,
    throw: Any = False,
) -> _Arguments:
    if ts is not None:
        # Checked as numpy values: inside a trace (a batched sweep) jnp arrays are tracers.
        if _is_traced(ts):
            raise TypeError(
                "`ts` must be concrete times, not a traced value (under `jax.jit` or "
                "`jax.vmap`): the number of save times fixes the compiled program."
            )
        raw = np.asarray(ts)
        if raw.dtype.kind not in "iuf":
            raise TypeError(
                f"`ts` must be an array of times (real numbers), e.g. `np.linspace(0, t1, 11)`; "
                f"got {ts!r} (dtype {raw.dtype})."
            )
        ts = _check_times(raw.astype(float))
    if t1 is not None:
        t1 = _real_argument("t1", t1, "a finite time > 0", lambda x: math.isfinite(x) and x > 0)
    elif ts is not None:
        t1 = float(ts[-1])
        if not t1 > 0:
            raise ValueError(
                f"`t1` must be a finite time > 0; got t1={t1} (ts[-1], as `t1` is not given)."
            )
    rtol = _real_argument("rtol", rtol, "a finite number > 0", lambda x: math.isfinite(x) and x > 0)
    atol = _real_argument(
        "atol", atol, "a finite number >= 0", lambda x: math.isfinite(x) and x >= 0
    )
    if dt0 is not None:
        dt0 = _real_argument(
            "dt0",
            dt0,
            "a finite number > 0 or None (the first step; None lets diffrax choose it)",
            lambda x: math.isfinite(x) and x > 0,
        )
    if max_steps is not None:
        if (
            isinstance(max_steps, (bool, np.bool_))
            or not isinstance(max_steps, (int, float, np.integer, np.floating))
            or not float(max_steps).is_integer()
            or max_steps < 1
        ):
            raise ValueError(
                f"`max_steps` must be a positive integer or None; got max_steps={max_steps!r}."
            )
        max_steps = int(max_steps)
    for name, flag in (("linearized", linearized), ("save_params", save_params), ("throw", throw)):
        _bool_argument(name, flag)
    if isinstance(solver, str) and solver != "auto":
        raise TypeError(
            "`solver` must be a diffrax solver (e.g. `diffrax.Tsit5()`), "
            f"`gf.GradientDescent(learning_rate)` or 'auto'; got {solver!r}."
        )
    if not (solver is None or isinstance(solver, (str, GradientDescent, dfx.AbstractSolver))):
        raise TypeError(
            "`solver` must be a diffrax solver instance (e.g. `diffrax.Tsit5()`), "
            f"`gf.GradientDescent(learning_rate)` or 'auto'; got {solver!r}."
        )
    if stepsize_controller is not None and not isinstance(
        stepsize_controller, dfx.AbstractStepSizeController
    ):
        raise TypeError(
            "`stepsize_controller` must be a diffrax step-size controller (e.g. "
            f"`diffrax.PIDController(rtol=1e-8, atol=1e-10)`) or None; got {stepsize_controller!r}."
        )

    num_steps = None
    if isinstance(solver, GradientDescent):
        eta = solver.learning_rate
        if t1 is not None:
            num_steps = int(round(t1 / eta))
            if num_steps < 1 or abs(num_steps * eta - t1) > 1e-9 * t1:
                raise ValueError(
                    f"For gradient descent `t1` must be a whole number of steps of "
                    f"learning_rate={eta}; got t1={t1}. Use t1 = num_steps * learning_rate."
                )
            t1 = num_steps * eta
        if ts is not None:
            # Gradient descent has iterates only: a time between two of them would return an
            # interpolation that no iterate has.
            k = np.round(ts / eta)
            off = np.flatnonzero(np.abs(ts - k * eta) > 1e-9 * np.maximum(ts, eta))
            if off.size:
                i = int(off[0])
                raise ValueError(
                    f"For gradient descent `ts` must be iterates, multiples of learning_rate="
                    f"{eta}; got ts[{i}]={float(ts[i])!r}, between iterates {int(ts[i] // eta)} "
                    f"and {int(ts[i] // eta) + 1}. Save at iterations: ts = eta * "
                    "np.arange(0, num_steps + 1, every) (or eta * np.array(iterations))."
                )
            ts = k * eta
    else:
        adaptive = isinstance(solver, dfx.AbstractAdaptiveSolver) or solver in (None, "auto")
        if stepsize_controller is None and not adaptive and dt0 is None:
            raise ValueError(
                f"`solver={type(solver).__name__}()` has no error estimate, so it cannot "
                "choose its own steps: give `dt0` (it then takes constant steps of `dt0`), "
                "or use an adaptive solver such as `diffrax.Tsit5()` or `diffrax.Heun()`."
            )
        if isinstance(stepsize_controller, dfx.ConstantStepSize) and dt0 is None:
            raise ValueError(
                "A constant step size needs `dt0`: give `dt0`, or leave `stepsize_controller` "
                "unset for adaptive steps."
            )
        if isinstance(stepsize_controller, dfx.AbstractAdaptiveStepSizeController) and not adaptive:
            raise ValueError(
                f"`solver={type(solver).__name__}()` has no error estimate, so it cannot be used "
                f"with the adaptive `stepsize_controller={type(stepsize_controller).__name__}`: "
                "use `diffrax.ConstantStepSize()` with `dt0`, or an adaptive solver such as "
                "`diffrax.Tsit5()`."
            )
        # The float64 bound holds for every dtype (float32's, 1e-6, is checked by `solve`,
        # which knows the problem's dtype).
        if stepsize_controller is None and adaptive:
            _check_resolution("rtol", rtol, jnp.float64)
        given = _controller_tolerances(stepsize_controller)
        if given is not None and given[0] is not None:
            _check_resolution("stepsize_controller.rtol", given[0], jnp.float64)
    if ts is not None and t1 is not None and ts[-1] > t1 * (1 + 1e-12):
        raise ValueError(
            f"`ts` must lie inside [0, t1]; got ts[{len(ts) - 1}]={float(ts[-1])!r} > t1={t1!r}. "
            "Drop the later times or raise `t1`."
        )
    return _Arguments(t1, ts, rtol, atol, dt0, max_steps, num_steps)


def check_solve_arguments(
    *,
    t1: Any = None,
    ts: Any = None,
    rtol: Any = 1e-8,
    atol: Any = 1e-10,
    dt0: Any = None,
    solver: Any = None,
    max_steps: Any = None,
    linearized: Any = True,
    save_params: Any = False,
    stepsize_controller: Any = None,
    throw: Any = False,
) -> None:
    """Check the arguments of [`gradflow.solve`][] that do not need the problem, as `solve`
    does first, before anything is traced: for a caller that checks shared options once
    before building any problem ([`gradflow.sweep`][]).

    **Arguments:** as in [`gradflow.solve`][]; each may be left out (`t1` and `ts` too: the
    requirement to give one of them is `solve`'s).

    **Returns:** nothing. A wrong argument raises a `TypeError` (not a number, a bool, a
    solver, a controller) or a `ValueError` (out of range, or contradicting another argument:
    a gradient-descent `t1` or `ts` off the iterates, a solver without an error estimate and
    no `dt0`, `rtol` below float64 resolution where the default controller uses it) that
    names the argument and the fix. The checks that need the problem (`rtol` below float32
    resolution for float32 parameters) are `solve`'s.
    """
    _checked_arguments(
        t1=t1,
        ts=ts,
        rtol=rtol,
        atol=atol,
        dt0=dt0,
        solver=solver,
        max_steps=max_steps,
        linearized=linearized,
        save_params=save_params,
        stepsize_controller=stepsize_controller,
        throw=throw,
    )


def solve(
    problem: Problem,
    t1: float | None = None,
    ts: ArrayLike | None = None,
    *,
    solver: dfx.AbstractSolver | GradientDescent | str | None = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    dt0: float | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    linearized: bool = True,
    save_params: bool = False,
    max_steps: int | None = None,
    throw: bool = False,
) -> Solution:
    r"""Integrate the gradient flow $w' = -\nabla F_\alpha(w)$ and, with `linearized=True`, the
    flow of the linearized objective $\bar w' = -\nabla \bar F_\alpha(\bar w)$, jointly, from
    $w(0) = \bar w(0) = w_0$.

    The state is $u = \alpha(\bar w - w_0)$ and $e = \alpha^2 (w - \bar w)$, which stay of
    order one in the lazy regime (Chizat et al., finite-horizon theorem: $\|w - w_0\| =
    O(1/\alpha)$, $\|w - \bar w\| = O(1/\alpha^2)$), so the adaptive error control resolves the gap
    itself to `rtol`.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][].
    - `t1`: the final time (for gradient descent, `num_steps * learning_rate`).
    - `ts`: times at which to save the metrics; default 101 evenly spaced points in `[0, t1]`
      (for gradient descent, up to 101 iterates). If `t1` is omitted it is `ts[-1]`. For
      gradient descent every save time must be an iterate, a multiple of the learning rate
      $\eta$ (to a relative 1e-9, then placed on it exactly): `ts = eta * iterations`.
    - `solver`: `"auto"` (the default, also `None`), any diffrax solver, or
      [`gradflow.GradientDescent`][] for the discrete algorithm through the same code path.
      `"auto"` ([`gradflow.choose_solver`][]) first estimates the flow's stiffness,
      $\lambda_{\max}(w_0)\, t_1$ with $\lambda_{\max}$ the largest Hessian eigenvalue of
      $F_\alpha$ at $w_0$ (Lanczos, 8-13 Hessian-vector products on the flows measured, cached
      per problem: a repeated solve estimates once): above a threshold that grows as
      `rtol` tightens ([`gradflow.stiff_threshold`][]: 20 at 1e-3, 3 500 at 1e-8) it takes
      [`gradflow.RKC`][], a stabilized method whose step is not capped at $\sim
      3/\lambda_{\max}$ like an explicit method's (on the paper's Fig. 1c flows it needs 12.5x
      fewer gradients than the paper's gradient descent at $\tau = 10$, 4.8x at $\tau = 1$ and
      2.3x at $\tau = 0.1$; `docs/performance.md`). Otherwise it
      inspects the model once (its jaxpr, abstractly): a smooth model gets `diffrax.Tsit5()`; a
      model with kinks ([`gradflow.has_kinks`][]: `relu`, `max`, `abs`, ...) gets
      `diffrax.Heun()` (order 2) when `rtol >= 5e-3` and `diffrax.Bosh3()` (order 3) below,
      because the kinks cap the order that pays off. The solver used is recorded in `info`
      ([`gradflow.SolveInfo`][]: `solver`, `solver_choice="auto"`, and `solver_reason` and
      `stiffness`, the estimate it was chosen from).
    - `rtol`, `atol`: tolerances of the default step-size controller,
      `diffrax.PIDController(rtol, atol)` on the scaled state, and used for nothing else:
      gradient descent, constant steps (`dt0` without an error estimate) and a given
      `stepsize_controller` ignore them (so a float32 problem is refused `rtol < 1e-6`, and
      any problem `rtol < 1e-14`, below float64 resolution, only where that controller is
      built; a given adaptive controller's `rtol` is held to the same bounds). A step size
      that collapses all the same (e.g. `atol=0` on a parameter that does not move) ends the
      solve with `RESULTS.step_size_collapsed`, never `RESULTS.diverged`. The gap's
      velocity is computed to about $\alpha^2 \epsilon$ relative ($\epsilon$ the machine
      epsilon: 1e-8 at $\alpha = 10^4$ in float64), so keep `rtol` above ~$100 \alpha^2
      \epsilon$: tighter tolerances only multiply the rejected steps.
    - `dt0`: initial step; `None` lets diffrax choose it.
    - `stepsize_controller`: overrides the default `diffrax.PIDController(rtol, atol)`. An
      adaptive controller brings its own tolerances: `"auto"` chooses from its `rtol`, and
      `info` records its `rtol` and `atol` (`None` for constant steps).
    - `linearized`: also integrate the linearized flow and report the gaps.
    - `save_params`: also return $w(t)$ and $\bar w(t)$ at `ts` (memory: `len(ts)` copies).
    - `max_steps`: the step budget; exceeding it gives `RESULTS.max_steps_reached`
      (`RESULTS.max_steps_at_kinks` for a model with kinks, whose message says to loosen
      `rtol`). `None` (the default): 100 000 steps for a flow, and for gradient descent as
      many as `t1` needs. A given budget is honoured for gradient descent too: fewer steps
      than `t1 / learning_rate` stop at `max_steps` with `RESULTS.max_steps_reached`, the
      iterates before it saved.
    - `throw`: raise [`gradflow.SolveError`][] instead of returning an unsuccessful result,
      with a message naming the failure (`gradflow.solve failed with RESULTS.diverged: ...`).
      Under a trace (`jax.vmap`, `jax.jit`) the result is not known until run time, and the
      same message comes as equinox's runtime error (`eqx.EquinoxRuntimeError`).

    **Returns:** a [`gradflow.Solution`][].
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    if t1 is None and ts is None:
        raise ValueError("Give the final time `t1`, or the save times `ts`.")
    # Every argument that needs no problem, before anything is traced.
    args = _checked_arguments(
        t1=t1,
        ts=ts,
        rtol=rtol,
        atol=atol,
        dt0=dt0,
        solver=solver,
        max_steps=max_steps,
        linearized=linearized,
        save_params=save_params,
        stepsize_controller=stepsize_controller,
        throw=throw,
    )
    t1, ts, rtol, atol, dt0 = args.t1, args.ts, args.rtol, args.atol, args.dt0
    linearized, save_params, throw = bool(linearized), bool(save_params), bool(throw)
    dtype = problem.dtype
    # The tolerance bounds of the problem's dtype (float32's), before `"auto"` estimates the
    # stiffness: `rtol` where the default controller uses it, else a given controller's.
    given = _controller_tolerances(stepsize_controller)
    if given is not None and given[0] is not None:
        _check_resolution("stepsize_controller.rtol", given[0], dtype)
    elif stepsize_controller is None and (
        solver is None or isinstance(solver, (str, dfx.AbstractAdaptiveSolver))
    ):
        _check_resolution("rtol", rtol, dtype)
    choice, auto_meta = "given", {}
    if solver is None or isinstance(solver, str):
        if solver not in (None, "auto"):
            raise TypeError(
                "`solver` must be a diffrax solver (e.g. `diffrax.Tsit5()`), "
                f"`gf.GradientDescent(learning_rate)` or 'auto'; got {solver!r}."
            )
        # The tolerance the controller will use: a given adaptive controller's, else `rtol`.
        given = _controller_tolerances(stepsize_controller)
        rtol_auto = rtol if given is None or given[0] is None else given[0]
        picked = choose_solver(problem, rtol_auto, t1, explain=True)
        solver, choice = picked.solver, "auto"
        auto_meta = {"solver_reason": picked.reason, "stiffness": picked.stiffness}

    if isinstance(solver, GradientDescent):
        eta, num = solver.learning_rate, args.num_steps
        if ts is None:
            idx = np.unique(np.linspace(0, num, min(num, 100) + 1).round().astype(int))
            ts = idx * eta
        # diffrax's constant step places step k at t1 * k / num (no accumulated rounding), so
        # the iterates sit at the multiples of eta and one compilation serves every eta and num
        # (the default budget is a constant, 100 000, until a run needs more).
        controller = dfx.ConstantStepSize()
        dfx_solver, dt0_ = dfx.Euler(), jnp.asarray(eta, dtype)
        max_steps = max(_MAX_STEPS, num) if args.max_steps is None else args.max_steps
        solver_name = f"GradientDescent(learning_rate={eta})"
        tolerances = None  # no error control: `rtol` and `atol` are not used
    else:
        if not isinstance(solver, dfx.AbstractSolver):
            raise TypeError(
                "`solver` must be a diffrax solver (e.g. `diffrax.Tsit5()`) or "
                f"`gf.GradientDescent(learning_rate)`; got {solver!r}."
            )
        if ts is None:
            ts = _default_ts(t1)
        max_steps = _MAX_STEPS if args.max_steps is None else args.max_steps
        adaptive = isinstance(solver, dfx.AbstractAdaptiveSolver)
        if stepsize_controller is None and not adaptive:
            # A solver without an error estimate (Euler, ...) cannot adapt its step: constant
            # steps of `dt0` (`_checked_arguments` refused a missing `dt0`).
            controller, tolerances = dfx.ConstantStepSize(), None
        elif stepsize_controller is None:
            # The only place `rtol` and `atol` are used: the default controller. Array
            # tolerances are traced, so changing them does not recompile.
            controller = dfx.PIDController(
                rtol=jnp.asarray(rtol, dtype), atol=jnp.asarray(atol, dtype)
            )
            tolerances = (rtol, atol)
        else:
            controller = stepsize_controller
            tolerances = _controller_tolerances(controller)
        dfx_solver, dt0_ = solver, (None if dt0 is None else jnp.asarray(dt0, dtype))
        solver_name = type(solver).__name__
    # Times share the parameters' dtype: diffrax promotes the state to the time dtype.
    ts = jnp.asarray(np.asarray(ts, dtype=np.dtype(dtype)))
    # With a single save time XLA hoists the metrics (a forward pass) into the step loop, which
    # then pays for them at every step; a second, dropped save time at t = 0 keeps them out.
    single = ts.shape[0] == 1
    ys, stats, result = _solve_jit(
        problem,
        jnp.concatenate([jnp.zeros((1,), dtype), ts]) if single else ts,
        jnp.asarray(t1, dtype),
        dfx_solver,
        controller,
        dt0_,
        max_steps,
        bool(linearized),
        bool(save_params),
    )
    if single:
        ys = jax.tree_util.tree_map(lambda x: x[1:], ys)
    stats = dict(stats)
    stages = (
        None
        if isinstance(dfx_solver, AbstractStabilizedSolver)
        else _STAGES.get(type(dfx_solver).__name__)
    )
    if stages is not None:
        first = 0 if type(dfx_solver).__name__ in _NOT_FSAL else 1
        stats["num_vector_field_evals"] = stages * stats["num_steps"] + first
    info = SolveInfo(
        solver=solver_name,
        solver_choice=choice,
        # The tolerances the step-size controller used (None: constant steps, or traced).
        rtol=None if tolerances is None else tolerances[0],
        atol=None if tolerances is None else tolerances[1],
        t1=t1,
        dtype=str(dtype),
        linearized=bool(linearized),
        center=problem.center,
        num_params=problem.num_params,
        **auto_meta,
    )
    sol = Solution(
        ts=ts,
        param_distance=ys["param_distance"],
        loss=ys["loss"],
        param_gap=ys.get("param_gap"),
        output_gap=ys.get("output_gap"),
        linear_loss=ys.get("linear_loss"),
        params=ys.get("params"),
        linear_params=ys.get("linear_params"),
        stats=stats,
        result=result,
        alpha=problem.alpha,
        info=info,
    )
    if not isinstance(solver, GradientDescent) and has_kinks(problem):
        result = RESULTS.where(
            result == RESULTS.max_steps_reached, RESULTS.max_steps_at_kinks, result
        )
        sol = eqx.tree_at(lambda s: s.result, sol, result)
    if throw:
        if _is_traced(result._value):
            # Under a trace (vmap, jit) the failure is raised at run time by equinox, with the
            # message of the failure that occurred (the result code indexes the messages).
            sol = eqx.branched_error_if(
                sol, result != RESULTS.successful, result._value, _throw_messages()
            )
        elif not sol.succeeded:
            raise SolveError(_failure_message(result))
    return sol
