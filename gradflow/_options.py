"""`SolveOptions`: how a solve is configured, checked once where it is built."""

import dataclasses
import math
import numbers
from typing import Any, Literal

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

from ._problem import Problem, _hash_key, _is_traced
from .solvers._auto import SolverChoice, choose_solver, has_kinks
from .solvers._bdf import BDF, BDF_MAX_STATE
from .solvers._gradient_descent import GradientDescent
from .solvers._switch import Tsit5ThenRKC


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


@dataclasses.dataclass(frozen=True, init=False)
class SolveOptions:
    r"""How [`gradflow.solve`][] integrates a flow: the horizon and save times, the solver and
    its step control, the step budget, and what is integrated and saved. One immutable,
    hashable object: what [`gradflow.sweep`][] shares across its points, what a stored
    point's fingerprint hashes, and what `Solution.info` reports
    ([`gradflow.SolveInfo`][]`.options`, with the solver `"auto"` chose in place of
    `"auto"`). `gf.solve(problem, t1, ...)` builds one from its keywords; pass it instead as
    `gf.solve(problem, options=...)`.

    **Arguments:**

    - `t1`: the final time (for gradient descent, `num_steps * learning_rate`); `math.inf`:
      until the flow reaches its limit (`stop_loss`), saved after the `ts` (default: only
      $t = 0$ and the limit).
    - `ts`: times at which to save the metrics; default 101 evenly spaced points in `[0, t1]`
      (for gradient descent, up to 101 iterates). If `t1` is omitted it is `ts[-1]`. For
      gradient descent every save time must be an iterate, a multiple of the learning rate
      $\eta$ (to a relative 1e-9, then placed on it exactly): `ts = eta * iterations`. Both
      may be left out here (options shared by the points of a sweep, each with its own
      horizon); `solve` needs one of them.
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
      because the kinks cap the order that pays off. Until the limit (`t1=math.inf`) a
      smooth model solved on its own with at most 128 state entries (parameters, twice that
      with `linearized=True`) gets [`gradflow.BDF`][] (Jacobian reused: the diagonal nets of
      `gf.check.check_implicit_bias` reach every limit in at most 16 311 evaluations), a larger
      one or a sweep batch [`gradflow.Tsit5ThenRKC`][]: Tsit5 until its stages say the flow
      has turned stiff, RKC from there; a model with kinks gets the choice above with
      the horizon taken as the time the linearized flow needs to reach `stop_loss` along the
      tangent kernel's slowest mode. The choice is recorded in `info`
      ([`gradflow.SolveInfo`][]: the [`gradflow.SolverChoice`][] with its reason and the
      stiffness it was made from).
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
    - `max_steps`: the step budget (with [`gradflow.Tsit5ThenRKC`][], of each of its two
      parts); exceeding it gives `RESULTS.max_steps_reached`
      (`RESULTS.max_steps_at_kinks` for a model with kinks, whose message says to loosen
      `rtol`). `None` (the default): 100 000 steps for a flow, and for gradient descent as
      many as `t1` needs. A given budget is honoured for gradient descent too: fewer steps
      than `t1 / learning_rate` stop at `max_steps` with `RESULTS.max_steps_reached`, the
      iterates before it saved.
    - `linearized`: also integrate the linearized flow and report the gaps.
    - `save_params`: also return $w(t)$ and $\bar w(t)$ at `ts` (memory: `len(ts)` copies).
    - `stop_loss`: stop the solve where every loss it integrates (the model's, and the
      linearization's with `linearized=True`) is at most `stop_loss` times its value at
      $w_0$, or at most its *loss floor* where that is higher; the state there is saved last
      (its time in `stats["stop_time"]`, and the floor there, as a fraction of the initial
      loss, in `stats["stop_floor"]`: above `stop_loss`, the floor stopped the solve). An
      adaptive solve locates the stop inside the step that crosses the level, by bisection
      on the step's dense output to a relative $10^{-10}$ in time, so the loss returned there
      is the level to rounding and the stop does not depend on where the steps end
      (gradient descent stops at the first iterate at or below it). The
      floor is the loss that the state's resolution leaves at an exact zero of the
      residual: each parameter perturbed by what the error control resolves,
      `atol + rtol |state|` (zero without error control), and by its rounding, $\epsilon|w|$,
      with fixed random signs, through the model (one forward-mode derivative per step),
      times 10. An explicit or stabilized solver at a fixed point sits at its stability
      limit, where the stiff modes keep about that amplitude, so a level under the floor
      would never be met (the depth-2 diagonal net at $u = v = 100$ stalls at 6e-16 to
      1.3e-14 of its initial loss at rtol 1e-8, 1e-19 to 1e-18 at 1e-10): the floor follows
      the tolerances, and tighter tolerances reach lower losses. With `t1=math.inf` the
      solve runs until then (default `max(rtol**2, 1e-14)`: the residual down by a factor
      `rtol`, at most 1e-7): the flow's limit, for a model that can interpolate its
      targets. The rule is on the loss, not on the gradient: at a saddle (the plateaus of a
      small initialization) the gradient is tiny for a long time, but the loss is far above
      both the level and the floor, so the flow is not stopped there. A flow whose limit
      does not interpolate (its loss stays above the level) runs to `max_steps`
      (`RESULTS.max_steps_reached`): give it a finite `t1`. With a finite `t1`, the solve
      stops at `t1` or at the level, whichever comes first (save times after the stop are
      NaN).
    - `modified_step`: a gradient-descent step $\eta$: integrate gradient descent's first-order
      modified equation instead of the gradient flow, $w' = -\nabla F_\alpha(w) -
      \frac{\eta}{2} \nabla^2 F_\alpha(w) \nabla F_\alpha(w)$, the gradient flow of
      $F_\alpha + \frac{\eta}{4}\|\nabla F_\alpha\|^2$ (backward error analysis; Barrett &
      Dherin, *Implicit Gradient Regularization*, ICLR 2021), and with `linearized=True` the
      same for the linearized objective (its own Hessian). Gradient descent with step $\eta$
      follows this flow to $O(\eta^2)$ on a finite horizon, the plain flow only to
      $O(\eta)$. Each evaluation costs one Hessian-vector product more (a forward-mode
      derivative of the gradient). `None` (the default): the gradient flow.
    - `modified_order`: the order in $\eta$ of the modified equation (with `modified_step`).
      1 (the default): the equation above. 2: the next term of the expansion as well,
      $w' = f - \frac{\eta}{2} f'f + \eta^2 \left(\frac{1}{12} f''(f, f) +
      \frac{1}{3} f'f'f\right)$ with $f = -\nabla F_\alpha$ (explicit Euler's modified
      equation; Hairer, Lubich & Wanner, *Geometric Numerical Integration*, IX.1), which
      gradient descent follows to $O(\eta^3)$: per evaluation, a second-order and two
      first-order forward-mode derivatives of the gradient instead of one first-order. At
      larger steps the first-order equation's own $O(\eta^2)$ error dominates GD's distance
      to it; the second order removes it.

    The constructor checks every argument, before any problem is built or traced: a wrong
    one raises a `TypeError` (not a number, a bool, a solver, a controller) or a
    `ValueError` (out of range, or contradicting another: a gradient-descent `t1` or `ts`
    off the iterates, a solver without an error estimate and no `dt0`, `rtol` below float64
    resolution where the default controller uses it) that names the argument and the fix.
    The checks that need the problem (`rtol` below float32 resolution for float32
    parameters) are `solve`'s. The fields hold the checked values: Python numbers, `ts` as a
    tuple of floats, `solver=None` as `"auto"`, `t1` as `ts[-1]` when only `ts` is given,
    and for gradient descent `t1` and `ts` placed on the iterates.

    Immutable (a frozen dataclass: change one with `replace`), and hashable when its solver
    and controller are made of numbers and arrays (diffrax's and gradflow's are); equal
    options compare and hash equal.
    """

    # A frozen dataclass, not a PyTree: a solver or a controller may hold arrays (RKC's power
    # iteration does), which an `eqx.Module` would not take as static fields, and the options
    # are static wherever they go (the key of a compiled program, `Solution.info`).
    t1: float | None
    ts: tuple[float, ...] | None
    solver: dfx.AbstractSolver | GradientDescent | Literal["auto"]
    rtol: float
    atol: float
    dt0: float | None
    stepsize_controller: dfx.AbstractStepSizeController | None
    max_steps: int | None
    linearized: bool
    save_params: bool
    modified_step: float | None
    stop_loss: float | None
    modified_order: int

    def __init__(
        self,
        t1: float | None = None,
        ts: Any = None,
        *,
        solver: dfx.AbstractSolver | GradientDescent | str | None = "auto",
        rtol: float = 1e-8,
        atol: float = 1e-10,
        dt0: float | None = None,
        stepsize_controller: dfx.AbstractStepSizeController | None = None,
        max_steps: int | None = None,
        linearized: bool = True,
        save_params: bool = False,
        modified_step: float | None = None,
        stop_loss: float | None = None,
        modified_order: int = 1,
    ):
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
                    "`ts` must be an array of times (real numbers), e.g. "
                    f"`np.linspace(0, t1, 11)`; got {ts!r} (dtype {raw.dtype})."
                )
            ts = _check_times(raw.astype(float))
        if t1 is not None:
            t1 = _real_argument(
                "t1",
                t1,
                "a time > 0 (math.inf: until the flow reaches its limit, see `stop_loss`)",
                lambda x: x > 0,
            )
        elif ts is not None:
            t1 = float(ts[-1])
            if not t1 > 0:
                raise ValueError(
                    f"`t1` must be a finite time > 0; got t1={t1} (ts[-1], as `t1` is not given)."
                )
        rtol = _real_argument(
            "rtol", rtol, "a finite number > 0", lambda x: math.isfinite(x) and x > 0
        )
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
        linearized = _bool_argument("linearized", linearized)
        save_params = _bool_argument("save_params", save_params)
        if stop_loss is not None:
            stop_loss = _real_argument(
                "stop_loss",
                stop_loss,
                "a fraction in (0, 1) of the initial loss (the level where the flow stops)",
                lambda x: 0 < x < 1,
            )
        elif t1 is not None and math.isinf(t1):
            # The residual down by a factor rtol, but not below 1e-7. A level under what the
            # solve resolves is met at its loss floor instead (see `_solve_jit`).
            stop_loss = max(rtol**2, 1e-14)
        if t1 is not None and math.isinf(t1) and isinstance(solver, GradientDescent):
            raise ValueError(
                "`t1=inf` (until the limit) is for flows; gradient descent runs a number of "
                "steps: give t1 = num_steps * learning_rate (with `stop_loss` to stop earlier)."
            )
        if modified_step is not None:
            modified_step = _real_argument(
                "modified_step",
                modified_step,
                "a gradient-descent step > 0 (the learning rate whose modified equation is "
                "integrated) or None (the gradient flow itself)",
                lambda x: math.isfinite(x) and x > 0,
            )
            if isinstance(solver, GradientDescent):
                raise ValueError(
                    "`modified_step` integrates gradient descent's modified equation as a "
                    "flow; it cannot be combined with `solver=gf.GradientDescent(...)`, which "
                    "runs gradient descent itself. Use an ODE solver (or 'auto')."
                )
        if isinstance(modified_order, (bool, np.bool_)) or modified_order not in (1, 2):
            raise ValueError(
                "`modified_order` must be 1 (gradient descent's first-order modified equation, "
                "which GD follows to O(eta^2)) or 2 (the second-order one, to O(eta^3)); got "
                f"modified_order={modified_order!r}."
            )
        modified_order = int(modified_order)
        if modified_order != 1 and modified_step is None:
            raise ValueError(
                f"`modified_order={modified_order}` is the order of gradient descent's "
                "modified equation, which needs its step: give `modified_step=eta` as well "
                "(without it the solve integrates the gradient flow itself)."
            )
        if solver is None:
            solver = "auto"
        if isinstance(solver, str) and solver != "auto":
            raise TypeError(
                "`solver` must be a diffrax solver (e.g. `diffrax.Tsit5()`), "
                f"`gf.GradientDescent(learning_rate)` or 'auto'; got {solver!r}."
            )
        if not isinstance(solver, (str, GradientDescent, dfx.AbstractSolver)):
            raise TypeError(
                "`solver` must be a diffrax solver instance (e.g. `diffrax.Tsit5()`), "
                f"`gf.GradientDescent(learning_rate)` or 'auto'; got {solver!r}."
            )
        if stepsize_controller is not None and not isinstance(
            stepsize_controller, dfx.AbstractStepSizeController
        ):
            raise TypeError(
                "`stepsize_controller` must be a diffrax step-size controller (e.g. "
                "`diffrax.PIDController(rtol=1e-8, atol=1e-10)`) or None; got "
                f"{stepsize_controller!r}."
            )

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
                # Gradient descent has iterates only: a time between two of them would return
                # an interpolation that no iterate has.
                k = np.round(ts / eta)
                off = np.flatnonzero(np.abs(ts - k * eta) > 1e-9 * np.maximum(ts, eta))
                if off.size:
                    i = int(off[0])
                    raise ValueError(
                        f"For gradient descent `ts` must be iterates, multiples of "
                        f"learning_rate={eta}; got ts[{i}]={float(ts[i])!r}, between iterates "
                        f"{int(ts[i] // eta)} and {int(ts[i] // eta) + 1}. Save at iterations: "
                        "ts = eta * np.arange(0, num_steps + 1, every) (or eta * "
                        "np.array(iterations))."
                    )
                ts = k * eta
        else:
            adaptive = isinstance(solver, (str, dfx.AbstractAdaptiveSolver))
            if stepsize_controller is None and not adaptive and dt0 is None:
                raise ValueError(
                    f"`solver={type(solver).__name__}()` has no error estimate, so it cannot "
                    "choose its own steps: give `dt0` (it then takes constant steps of `dt0`), "
                    "or use an adaptive solver such as `diffrax.Tsit5()` or `diffrax.Heun()`."
                )
            if isinstance(stepsize_controller, dfx.ConstantStepSize) and dt0 is None:
                raise ValueError(
                    "A constant step size needs `dt0`: give `dt0`, or leave "
                    "`stepsize_controller` unset for adaptive steps."
                )
            if (
                isinstance(stepsize_controller, dfx.AbstractAdaptiveStepSizeController)
                and not adaptive
            ):
                raise ValueError(
                    f"`solver={type(solver).__name__}()` has no error estimate, so it cannot be "
                    "used with the adaptive "
                    f"`stepsize_controller={type(stepsize_controller).__name__}`: use "
                    "`diffrax.ConstantStepSize()` with `dt0`, or an adaptive solver such as "
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
                f"`ts` must lie inside [0, t1]; got ts[{len(ts) - 1}]={float(ts[-1])!r} > "
                f"t1={t1!r}. Drop the later times or raise `t1`."
            )
        checked = {
            "t1": t1,
            "ts": None if ts is None else tuple(float(v) for v in ts),
            "solver": solver,
            "rtol": rtol,
            "atol": atol,
            "dt0": dt0,
            "stepsize_controller": stepsize_controller,
            "max_steps": max_steps,
            "linearized": linearized,
            "save_params": save_params,
            "modified_step": modified_step,
            "stop_loss": stop_loss,
            "modified_order": modified_order,
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def __hash__(self) -> int:
        return hash(tuple(_hash_key(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def replace(self, **changes: Any) -> "SolveOptions":
        """These options with `changes` (keywords of `SolveOptions`), checked again as by the
        constructor: `options.replace(solver=gf.GradientDescent(0.1))` places `t1` and `ts` on
        that step's iterates, or says why they are not.

        A `ts` given without `t1` brings the horizon with it where it ended at the last save
        time (`t1 == ts[-1]`, as when only `ts` was given), as if only `ts` had been given; a
        longer horizon is kept.

        **Returns:** a new `SolveOptions`. An unknown keyword raises a `TypeError` naming it.
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(
                f"`SolveOptions.replace` got unknown option(s) {unknown}; the options are "
                f"{', '.join(names)}."
            )
        current = {name: getattr(self, name) for name in names}
        if "ts" in changes and "t1" not in changes and self.ts is not None:
            if self.t1 == self.ts[-1]:
                current["t1"] = None
        return SolveOptions(**{**current, **changes})


def controller_tolerances(options: SolveOptions) -> tuple[float | None, float | None] | None:
    """`(rtol, atol)` that the step-size controller of a solve with `options` uses: the
    default controller's (`options.rtol`, `options.atol`), a given adaptive controller's own
    (an entry `None` where traced), or `None` where there is no error control (gradient
    descent, constant steps of `dt0`)."""
    if isinstance(options.solver, GradientDescent):
        return None
    if options.stepsize_controller is not None:
        return _controller_tolerances(options.stepsize_controller)
    if isinstance(options.solver, (str, dfx.AbstractAdaptiveSolver)):
        return options.rtol, options.atol
    return None


def solver_name(solver: dfx.AbstractSolver | GradientDescent | str) -> str:
    """How a solver is named in `Solution.info` and stored records: its class name, and for
    gradient descent its step, `"GradientDescent(learning_rate=0.1)"`."""
    if isinstance(solver, GradientDescent):
        return f"GradientDescent(learning_rate={solver.learning_rate})"
    if isinstance(solver, str):
        return solver
    return type(solver).__name__


def options_from(options: Any, keywords: dict[str, Any]) -> SolveOptions:
    """`options` if given, else the [`gradflow.SolveOptions`][] built from `keywords` (the
    options given as keywords to `solve` or `sweep`). Both at once raise a `ValueError` that
    names them."""
    if options is None:
        return SolveOptions(**keywords)
    if not isinstance(options, SolveOptions):
        raise TypeError(
            f"`options` must be a gf.SolveOptions; got {type(options).__name__} {options!r}."
        )
    if keywords:
        names = ", ".join(f"`{k}`" for k in keywords)
        first = next(iter(keywords))
        raise ValueError(
            f"Pass the solve options either as `options=` or as keywords, not both: got "
            f"`options` and {names}. Put them in the options instead, e.g. "
            f"`options=options.replace({first}=...)`."
        )
    return options


def decide(
    problem: Problem, options: SolveOptions, lambda_max: float | None = None
) -> SolverChoice:
    """The one place `solver="auto"` is decided, for [`gradflow.solve`][] and for each batch
    of [`gradflow.sweep`][]: [`gradflow.choose_solver`][] at the tolerance the step-size
    controller will use (a given adaptive controller's `rtol`, else `options.rtol`) and the
    horizon `options.t1`.

    **Arguments:**

    - `problem`: the problem solved (for a batch, any of its points: they share the model).
    - `options`: the [`gradflow.SolveOptions`][] of the solve, with `solver="auto"`.
    - `lambda_max`: for a batch, its largest Hessian eigenvalue at $w_0$ (`batch_stiffness`);
      `None` estimates it on `problem`.

    **Returns:** a [`gradflow.SolverChoice`][].
    """
    given = _controller_tolerances(options.stepsize_controller)
    rtol = options.rtol if given is None or given[0] is None else given[0]
    if options.t1 is None or math.isfinite(options.t1):
        return choose_solver(problem, rtol, options.t1, explain=True, lambda_max=lambda_max)
    # Until the limit (t1 = inf): the horizon is the time the linearized flow needs to bring
    # the loss down to `stop_loss` along the slowest mode of Sigma_0 = K(w0) / n,
    # log(1 / stop_loss) / (2 lambda_min), so the stiffness lambda_max(w0) t1 is about the
    # tangent kernel's condition number times log(1 / stop_loss) / 2: exact for a lazy flow,
    # an estimate otherwise.
    horizon = lazy_horizon(problem, options.stop_loss)
    choice = choose_solver(problem, rtol, horizon, explain=True, lambda_max=lambda_max)
    size = problem.num_params * (2 if options.linearized else 1)
    traced = any(map(_is_traced, jax.tree_util.tree_leaves(problem)))
    if not has_kinks(problem) and lambda_max is None and not traced and size <= BDF_MAX_STATE:
        # A small smooth flow to its limit, solved on its own (not a sweep batch): BDF with its
        # Jacobian reused crosses the plateaus and the stiff (even algebraic) approach to the
        # limit in steps that grow with the time.
        return dataclasses.replace(
            choice,
            solver=BDF(),
            reason=f"smooth model, t1 = inf, {size} state entries <= {BDF_MAX_STATE}: BDF "
            "(dense Jacobian, reused); "
            f"lambda_max(w0) * t1 = {choice.stiffness:.3g} with t1 = inf, taken as "
            f"{horizon:.3g}, the time the linearized flow needs to reach stop_loss along the "
            "tangent kernel's slowest mode",
        )
    if not has_kinks(problem):
        # A smooth flow to its limit changes character on the way (plateaus, then a stiff
        # fixed point): Tsit5 until its stages say the flow is stiff, RKC from there. The
        # estimate above is kept in the record, for what it says about the flow.
        return dataclasses.replace(
            choice,
            solver=Tsit5ThenRKC(),
            reason="smooth model, t1 = inf: Tsit5 until the flow turns stiff, then RKC; "
            f"lambda_max(w0) * t1 = {choice.stiffness:.3g} with t1 = inf, taken as "
            f"{horizon:.3g}, the time the linearized flow needs to reach stop_loss along the "
            "tangent kernel's slowest mode"
            if choice.stiffness is not None
            else "smooth model, t1 = inf: Tsit5 until the flow turns stiff, then RKC",
        )
    return dataclasses.replace(
        choice,
        reason=f"{choice.reason}; t1 = inf, taken as {horizon:.3g}, the time the linearized "
        "flow needs to reach stop_loss along the tangent kernel's slowest mode",
    )


def lazy_horizon(problem: Problem, stop_loss: float) -> float:
    """The time the linearized flow of `problem` needs to bring its loss down by the factor
    `stop_loss` along the slowest mode of $\\Sigma_0 = K(w_0)/n$ (the square loss's rate
    matrix; an estimate for another loss): $\\log(1/\\text{stop\\_loss}) / (2\\lambda_{\\min})$,
    with $\\lambda_{\\min}$ the smallest eigenvalue of $\\Sigma_0$ above $10^{-10}$ of its
    largest; `inf` for a zero kernel."""
    from .analysis._diagnostics import tangent_kernel

    n = problem.inputs.shape[0] if hasattr(problem.inputs, "shape") else 1
    lam = np.linalg.eigvalsh(np.asarray(tangent_kernel(problem), dtype=float)) / n
    top = float(lam[-1]) if lam.size else 0.0
    positive = lam[lam > 1e-10 * top] if top > 0 else lam[:0]
    if positive.size == 0:
        return math.inf
    return float(math.log(1.0 / stop_loss) / (2.0 * positive[0]))
