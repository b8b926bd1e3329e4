"""`solve`: the gradient flow of a model and of its linearization, integrated together."""

import dataclasses
import math
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._flow import _LOSS_GROWTH, _STOP_RTOL, _finite, _flow
from ._options import (
    SolveOptions,
    _bool_argument,
    _check_resolution,
    _controller_tolerances,
    controller_tolerances,
    decide,
    options_from,
)
from ._problem import Problem, _flatten, _is_traced
from ._solution import (
    RESULTS,
    Solution,
    SolveError,
    SolveInfo,
    _failure_message,
    _throw_messages,
)
from ._solve_host import solve_bdf
from ._typing import Array, ArrayLike
from .solvers._auto import has_kinks
from .solvers._bdf import BDF
from .solvers._gradient_descent import GradientDescent
from .solvers._stabilized import AbstractStabilizedSolver, CountingController
from .solvers._switch import SWITCH_RESULT, Tsit5ThenRKC

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
_RETRY_FACTOR = 0.2


STOP_REVISION = 3
"""The revision of what a solve with a stop (`stop_loss`, and every `t1=math.inf` solve)
returns, part of the fingerprint of every stored point that has one (sweep points with a
`stop_loss`, `phase-diagram` cells), so that a store written under an earlier revision is not
read back as if these numbers had been computed now. 2: the stop located inside the step that
crosses the level (before: at that step's end, up to a few percent below the level), and
`"auto"` to the limit taking [`gradflow.Tsit5ThenRKC`][]; 3: `"auto"` to the limit taking
[`gradflow.BDF`][] for small smooth models solved on their own."""


class _StopBisection(optx.Bisection):
    """Bisection for the stop's time that ends on the interval's width alone (optimistix's
    also asks |f| < atol at the midpoint, which a loss stalled at its floor, noisy at the
    floor's size, may never give) and returns the bracket's upper end. The event is positive
    before the stop and at most zero at the step's end, so the sign is fixed (`flip=True`, no
    detection run)."""

    def __init__(self, dtype):
        # Above the time's own resolution (float32's eps is 1.2e-7).
        rtol = max(_STOP_RTOL, 16 * float(jnp.finfo(dtype).eps))
        super().__init__(rtol=rtol, atol=0.0, flip=True)

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        width = jnp.abs(state.upper - state.lower)
        return width <= self.rtol * jnp.abs(y), optx.RESULTS.successful

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        # The bracket's upper end: the earliest time found at which the event is at most
        # zero, so that the state returned has every loss at or below its level (the
        # midpoint could sit a rounding above it).
        del fn, y, args, options, tags, result
        return state.upper, aux, {}


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
        # A NaN error estimate (an overflow inside a step far too long, as a first step can be
        # on a very stiff flow: the depth-3 diagonal net at u = v = 10, lambda_max = 1.4e6)
        # makes diffrax's next step NaN, which the rule above would take for a collapse at
        # the second strike: retry at diffrax's smallest factor, 0.2, instead, so that
        # `_PATIENCE` decides.
        retry = bad & ~give_up & ~jnp.isfinite(next_dt)
        next_t1 = jnp.where(retry, next_t0 + _RETRY_FACTOR * (t1 - t0), next_t1)
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
    modified: tuple[Array, int] | None,
    stop: Array | None,
    resolution: tuple[Array, Array],
    horizon: Array,
):
    # An adaptive solve locates its stop inside the step that crosses the level (on the step's
    # dense output), so that the stop time and the state there do not depend on where the
    # steps happen to end; gradient descent stops at the first iterate at or below it.
    locate = stop is not None and isinstance(controller, dfx.AbstractAdaptiveStepSizeController)
    fl = _flow(problem, linearized, save_params, modified, stop, resolution, locate)
    flat, alpha, loss, dtype, y0 = fl.flat, fl.alpha, fl.loss, fl.dtype, fl.y0
    vector_field, metrics, events = fl.vector_field, fl.metrics, fl.events
    limit_metrics, converged, level, initial = (
        fl.limit_metrics, fl.converged, fl.level, fl.initial
    )  # fmt: skip
    if isinstance(controller, dfx.AbstractAdaptiveStepSizeController):
        controller = _NonFiniteGuard(controller, _DTMIN_FRACTION * horizon)

    def integrate(solver, t_start, y_start, ts_, t_end, dt0_, final_state):
        # One diffrax solve from (t_start, y_start); with `final_state`, the state where it
        # ended is saved last as well.
        ctrl = controller
        stabilized = isinstance(solver, AbstractStabilizedSolver)
        if stabilized:
            # Every attempted step hands its cost to the controller, rejected steps included;
            # the count is taken off the error estimate before the other controllers see it.
            solver = dataclasses.replace(solver, count=True)
            ctrl = CountingController(controller)
        subs = [dfx.SubSaveAt(ts=ts_, fn=metrics)]
        if stop is not None:
            # With a stop, the state where it fires (the limit, for t1 = inf) is saved last.
            subs.append(dfx.SubSaveAt(t1=True, fn=limit_metrics))
        kept = len(subs)
        if locate:
            # Whether the solve ended on a finite state: the stop, or divergence.
            subs.append(dfx.SubSaveAt(t1=True, fn=lambda t, y, args: _finite(y).astype(dtype)))
        if final_state:
            subs.append(dfx.SubSaveAt(t1=True))
        if locate:
            # One event that the root finder can take (a scalar): the stop's gap, and -1 on a
            # non-finite state. At the start it counts as above the level, so that a flow
            # already at its level stops at its first step, as the test without location does.
            def stop_or_diverged(t, y, args, **kwargs):
                gap = jnp.where(_finite(y), converged(t, y, args), -1.0)
                gap = jnp.where(t > t_start, gap, jnp.maximum(gap, 1.0))
                # In JAX's default float dtype, which diffrax's root find pairs it with.
                return gap.astype(jnp.result_type(float))

            event = dfx.Event(stop_or_diverged, root_finder=_StopBisection(dtype))
        else:
            event = dfx.Event(events)
        sol = dfx.diffeqsolve(
            dfx.ODETerm(vector_field),
            solver,
            t0=t_start,
            t1=t_end,
            dt0=dt0_,
            y0=y_start,
            saveat=dfx.SaveAt(subs=subs, solver_state=stabilized, controller_state=stabilized),
            stepsize_controller=ctrl,
            max_steps=max_steps,
            event=event,
            # Forward-mode adjoint: a plain while loop (no checkpointing), which compiles
            # faster; gradflow differentiates models, not solves.
            adjoint=dfx.ForwardMode(),
            throw=False,
        )
        stats = dict(sol.stats)
        if stabilized:
            stats.update(
                _stabilized_stats(solver, sol.solver_state, sol.controller_state, dt0_ is None)
            )
        rest = list(sol.ys[kept:])
        if locate:
            finite_end = rest.pop(0)[0] > 0.5
            fired = sol.event_mask
            mask = {"converged": fired & finite_end, "diverged": fired & ~finite_end}
        else:
            mask = dict(sol.event_mask)
        end = None
        if final_state:
            end = (sol.ts[-1][0], jax.tree_util.tree_map(lambda x: x[0], rest[0]))
        return sol.result, stats, list(sol.ts[:kept]), list(sol.ys[:kept]), mask, end

    y_init = jax.tree_util.tree_map(lambda x: x.astype(dtype), y0)
    t_zero = jnp.zeros((), dtype)
    switching = isinstance(solver, Tsit5ThenRKC)
    r, stats, saved_ts_parts, ys_parts, event_mask, end = integrate(
        solver, t_zero, y_init, ts, t1, dt0, switching
    )
    if switching:
        # Tsit5 ended where the flow turned stiff (`SWITCH_RESULT`); RKC goes on from that
        # state and time, with the same saves, events and error control. Where it did not
        # switch (the stop, t1 or a failure came first), the second part is empty (t1 = its
        # start) and the first part's results stand.
        stats["num_vector_field_evals"] = 6 * stats["num_steps"] + 1
        switched = r == SWITCH_RESULT
        t_switch, y_switch = end
        t_end = jnp.where(switched, t1, t_switch)
        r2, stats2, ts2, ys2, mask2, _ = integrate(
            solver.stiff, t_switch, y_switch, jnp.clip(ts, t_switch, t_end), t_end, None, False
        )

        def pick(a, b):
            return jnp.where(switched, b, a)

        # A save time up to the switch was saved by the first part (finite there), a later
        # one by the second.
        first = jnp.isfinite(saved_ts_parts[0])

        def pick_saved(a, b):
            cond = first.reshape((-1,) + (1,) * (a.ndim - 1))
            return jnp.where(cond, a, pick(a, b))

        ys_parts[0] = jax.tree_util.tree_map(pick_saved, ys_parts[0], ys2[0])
        saved_ts_parts[0] = pick_saved(saved_ts_parts[0], ts2[0])
        for i in range(1, len(ys_parts)):
            ys_parts[i] = jax.tree_util.tree_map(pick, ys_parts[i], ys2[i])
            saved_ts_parts[i] = pick(saved_ts_parts[i], ts2[i])
        r = dfx.RESULTS.where(switched, r2, r)
        event_mask = jax.tree_util.tree_map(pick, event_mask, mask2)
        for k in ("num_steps", "num_accepted_steps", "num_rejected_steps"):
            stats[k] = stats[k] + jnp.where(switched, stats2[k], 0)
        stats["num_vector_field_evals"] += jnp.where(switched, stats2["num_vector_field_evals"], 0)
        for k, v in stats2.items():
            if k not in stats:
                # RKC's own statistics: zero (counts) or NaN where it did not run.
                none = jnp.nan if jnp.issubdtype(v.dtype, jnp.floating) else 0
                stats[k] = jnp.where(switched, v, jnp.full_like(v, none))
        # When the flow turned stiff (NaN where it did not).
        stats["switch_time"] = jnp.where(switched, t_switch, jnp.nan)
    saved_ts = jnp.concatenate(saved_ts_parts)
    floors = {}
    if stop is not None:
        last = dict(ys_parts[-1])
        floors = {k: last.pop(f"{k}_floor")[-1] for k in level}
        ys_parts[-1] = last
    saved = jax.tree_util.tree_map(lambda *parts: jnp.concatenate(parts), *ys_parts)
    # The event that ended the solve: divergence, or the stop at the limit (a success).
    converged = jnp.asarray(False)
    if stop is not None:
        converged = event_mask["converged"] & ~event_mask["diverged"]
    event = r == dfx.RESULTS.event_occurred
    result = RESULTS.where(
        (r == dfx.RESULTS.successful) | (event & converged),
        RESULTS.successful,
        RESULTS.where(
            event,
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
    reached = jnp.isfinite(saved_ts)
    # Divergence that leaves the state finite: a non-finite or exploding loss at a save time
    # (see `_LOSS_GROWTH`). The metrics from that save time on are dropped as unreached.
    scale = jnp.maximum(loss(alpha * flat.h0), loss(jnp.zeros_like(flat.h0)))
    blown = jnp.zeros_like(reached)
    for name in ("loss", "linear_loss"):
        if name in saved:
            value = saved[name]
            blown = blown | jnp.logical_not(value <= _LOSS_GROWTH * scale)
    blown = blown & reached
    if stop is not None:
        # The last entry is the limit only where the stop fired (not at max_steps).
        reached = reached.at[-1].set(reached[-1] & event & converged)
    result = RESULTS.where(jnp.any(blown), RESULTS.diverged, result)
    reached = reached & (jnp.cumsum(blown) == 0)

    def mask(x):
        return jnp.where(reached.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.nan)

    ys = jax.tree_util.tree_map(mask, saved)
    if save_params:
        ys["params"] = jax.vmap(flat.unravel)(ys["params"])
        if linearized:
            ys["linear_params"] = jax.vmap(flat.unravel)(ys["linear_params"])
    if stop is not None:
        # When the stop fired (NaN if it did not): the time of the limit saved last.
        stats["stop_time"] = jnp.where(event & converged, saved_ts[-1], jnp.nan)
        # The floor there, as a fraction of the initial loss (the largest over the losses
        # integrated): above `stop`, the stop came from the floor.
        floor = jnp.max(jnp.stack([floors[k] / initial[k] for k in level]))
        stats["stop_floor"] = jnp.where(event & converged, floor, jnp.nan)
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


# The step budget of a flow when `max_steps` is not given.
_MAX_STEPS = 100_000


def _default_ts(t1: float, num: int = 101) -> np.ndarray:
    return np.linspace(0.0, t1, num)


class _Default:
    """The default of a keyword of `solve`: the [`gradflow.SolveOptions`][] default, stated
    there once (and telling a keyword given from one left out)."""

    def __repr__(self) -> str:
        return "<the SolveOptions default>"


_DEFAULT: Any = _Default()


def solve(
    problem: Problem,
    t1: float | None = None,
    ts: ArrayLike | None = None,
    *,
    options: SolveOptions | None = None,
    solver: dfx.AbstractSolver | GradientDescent | str | None = _DEFAULT,
    rtol: float = _DEFAULT,
    atol: float = _DEFAULT,
    dt0: float | None = _DEFAULT,
    stepsize_controller: dfx.AbstractStepSizeController | None = _DEFAULT,
    linearized: bool = _DEFAULT,
    save_params: bool = _DEFAULT,
    max_steps: int | None = _DEFAULT,
    modified_step: float | None = _DEFAULT,
    stop_loss: float | None = _DEFAULT,
    modified_order: int = _DEFAULT,
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
    - `t1`, `ts`, `solver`, `rtol`, `atol`, `dt0`, `stepsize_controller`, `linearized`,
      `save_params`, `max_steps`, `modified_step` (gradient descent's modified equation
      instead of the flow) and `modified_order` (its order in the step), `stop_loss`
      (where the flow stops; with `t1=math.inf`, its limit): the options of the solve, each
      as documented in [`gradflow.SolveOptions`][] (with its defaults: `solver="auto"`,
      `rtol=1e-8`, `atol=1e-10`, 101 save times in `[0, t1]`, ...), which they build. One of
      `t1` and `ts` is needed.
    - `options`: the same as one [`gradflow.SolveOptions`][] instead of the keywords (not
      both: giving `options` and any of them raises a `ValueError` naming both).
    - `throw`: raise [`gradflow.SolveError`][] instead of returning an unsuccessful result,
      with a message naming the failure (`gradflow.solve failed with RESULTS.diverged: ...`).
      Under a trace (`jax.vmap`, `jax.jit`) the result is not known until run time, and the
      same message comes as equinox's runtime error (`eqx.EquinoxRuntimeError`).

    Every option is checked before anything is traced (by `SolveOptions`, and here the bound
    that needs the problem: `rtol >= 1e-6` for float32 parameters). `solver="auto"` is then
    decided once for this problem (`gradflow._options.decide`).

    **Returns:** a [`gradflow.Solution`][].
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    keywords = {
        name: value
        for name, value in (
            ("t1", t1),
            ("ts", ts),
            ("solver", solver),
            ("rtol", rtol),
            ("atol", atol),
            ("dt0", dt0),
            ("stepsize_controller", stepsize_controller),
            ("linearized", linearized),
            ("save_params", save_params),
            ("max_steps", max_steps),
            ("modified_step", modified_step),
            ("stop_loss", stop_loss),
            ("modified_order", modified_order),
        )
        if value is not _DEFAULT and not (name in ("t1", "ts") and value is None)
    }
    if options is None and t1 is None and ts is None:
        raise ValueError("Give the final time `t1`, or the save times `ts`.")
    throw = _bool_argument("throw", throw)
    # Every option that needs no problem, before anything is traced.
    options = options_from(options, keywords)
    if options.t1 is None:
        raise ValueError(
            "Give the final time `t1`, or the save times `ts`: `options` has neither "
            "(`options.replace(t1=...)`)."
        )
    dtype = problem.dtype
    # The tolerance bounds of the problem's dtype (float32's), before `"auto"` estimates the
    # stiffness: `rtol` where the default controller uses it, else a given controller's.
    given = _controller_tolerances(options.stepsize_controller)
    if given is not None and given[0] is not None:
        _check_resolution("stepsize_controller.rtol", given[0], dtype)
    elif options.stepsize_controller is None and isinstance(
        options.solver, (str, dfx.AbstractAdaptiveSolver)
    ):
        _check_resolution("rtol", options.rtol, dtype)
    choice = None
    if options.solver == "auto":
        choice = decide(problem, options)
        options = options.replace(solver=choice.solver)
    solver, t1, ts = options.solver, options.t1, options.ts
    if isinstance(solver, BDF):
        return _solve_with_bdf(problem, options, choice, throw)

    if isinstance(solver, GradientDescent):
        # `t1` is a whole number of steps (SolveOptions placed it on the iterates).
        eta = solver.learning_rate
        num = int(round(t1 / eta))
        if ts is None:
            idx = np.unique(np.linspace(0, num, min(num, 100) + 1).round().astype(int))
            ts = idx * eta
        # diffrax's constant step places step k at t1 * k / num (no accumulated rounding), so
        # the iterates sit at the multiples of eta and one compilation serves every eta and num
        # (the default budget is a constant, 100 000, until a run needs more).
        controller = dfx.ConstantStepSize()
        dfx_solver, dt0_ = dfx.Euler(), jnp.asarray(eta, dtype)
        budget = max(_MAX_STEPS, num) if options.max_steps is None else options.max_steps
    else:
        if ts is None:
            # Until the limit: the start, and the limit saved after it.
            ts = _default_ts(t1) if math.isfinite(t1) else np.zeros(1)
        budget = _MAX_STEPS if options.max_steps is None else options.max_steps
        adaptive = isinstance(solver, dfx.AbstractAdaptiveSolver)
        if options.stepsize_controller is None and not adaptive:
            # A solver without an error estimate (Euler, ...) cannot adapt its step: constant
            # steps of `dt0` (`SolveOptions` refused a missing `dt0`).
            controller = dfx.ConstantStepSize()
        elif options.stepsize_controller is None:
            # The only place `rtol` and `atol` are used: the default controller. Array
            # tolerances are traced, so changing them does not recompile.
            controller = dfx.PIDController(
                rtol=jnp.asarray(options.rtol, dtype), atol=jnp.asarray(options.atol, dtype)
            )
        else:
            controller = options.stepsize_controller
        dt0 = options.dt0
        dfx_solver, dt0_ = solver, (None if dt0 is None else jnp.asarray(dt0, dtype))
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
        budget,
        options.linearized,
        options.save_params,
        None
        if options.modified_step is None
        else (jnp.asarray(options.modified_step, dtype), options.modified_order),
        None if options.stop_loss is None else jnp.asarray(options.stop_loss, dtype),
        # The resolution of the state, for the loss floor of the stop: the error control's
        # tolerances (zero for constant steps, which resolve to rounding only).
        tuple(jnp.asarray(v or 0.0, dtype) for v in (controller_tolerances(options) or (0, 0))),
        # The time scale of the collapsed-step rule: t1, or the save times for t1 = inf.
        jnp.asarray(t1 if math.isfinite(t1) else max(float(ts[-1]), 1.0), dtype),
    )
    if single:
        ys = jax.tree_util.tree_map(lambda x: x[1:], ys)
    if options.stop_loss is not None:
        # The state where the stop fired is saved after the save times, at its own time.
        ts = jnp.concatenate([ts, jnp.reshape(stats["stop_time"], (1,)).astype(dtype)])
    stats = dict(stats)
    stages = (
        None
        if isinstance(dfx_solver, AbstractStabilizedSolver)
        else _STAGES.get(type(dfx_solver).__name__)
    )
    if stages is not None:
        first = 0 if type(dfx_solver).__name__ in _NOT_FSAL else 1
        stats["num_vector_field_evals"] = stages * stats["num_steps"] + first
    return _finish(problem, options, choice, ys, stats, result, ts, throw)


def _finish(problem, options, choice, ys, stats, result, ts, throw) -> Solution:
    # The Solution of a solve (diffrax's or the host BDF's), its result adjusted for models
    # with kinks, and raised with `throw`.
    solver, dtype = options.solver, problem.dtype
    info = SolveInfo(
        options=options,
        choice=choice,
        dtype=str(dtype),
        center=problem.center,
        num_params=problem.num_params,
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


def _solve_with_bdf(problem: Problem, options: SolveOptions, choice, throw: bool) -> Solution:
    """`solve` with [`gradflow.BDF`][]: on the host, through `_solve_host`."""
    if any(map(_is_traced, jax.tree_util.tree_leaves(problem))):
        raise TypeError(
            "gradflow.BDF runs on the host (scipy's BDF), so it cannot solve a traced problem "
            "(inside jax.vmap or jax.jit, e.g. a sweep batch): solve the points one by one, or "
            "use a diffrax solver such as gf.Tsit5ThenRKC()."
        )
    if options.stepsize_controller is not None:
        raise ValueError(
            "gradflow.BDF chooses its own steps from `rtol` and `atol`: leave "
            "`stepsize_controller` unset (got "
            f"{type(options.stepsize_controller).__name__})."
        )
    dtype = problem.dtype
    t1, ts = options.t1, options.ts
    if ts is None:
        ts = _default_ts(t1) if math.isfinite(t1) else np.zeros(1)
    ts = np.asarray(ts, dtype=np.float64)
    modified = (
        None
        if options.modified_step is None
        else (jnp.asarray(options.modified_step, dtype), options.modified_order)
    )
    stop = None if options.stop_loss is None else jnp.asarray(options.stop_loss, dtype)
    resolution = tuple(jnp.asarray(v or 0.0, dtype) for v in (options.rtol, options.atol))
    budget = _MAX_STEPS if options.max_steps is None else options.max_steps
    ys, stats, result = solve_bdf(problem, options, ts, modified, stop, resolution, budget)
    if options.stop_loss is not None:
        ts = np.concatenate([ts, [stats["stop_time"]]])
    ys = {k: jnp.asarray(v) for k, v in ys.items()}
    if options.save_params:
        unravel = _flatten(problem, linearize=False).unravel
        ys["params"] = jax.vmap(unravel)(ys["params"])
        if options.linearized:
            ys["linear_params"] = jax.vmap(unravel)(ys["linear_params"])
    stats = {k: jnp.asarray(v) for k, v in stats.items()}
    return _finish(problem, options, choice, ys, stats, result, jnp.asarray(ts, dtype), throw)
