"""The host solve of `gf.BDF`: scipy's BDF stepping the flow of `_flow._flow`, compiled by JAX,
with the same saves, stop (located on the step's dense output) and results as `_solve_jit`."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import BDF as ScipyBDF

from ._flow import _LOSS_GROWTH, _STOP_RTOL, _flow
from ._solution import RESULTS


def _unflat(y, linearized: bool):
    if linearized:
        n = y.shape[0] // 2
        return y[:n], y[n:]
    return y


def _flat(state, linearized: bool):
    return jnp.concatenate(state) if linearized else state


@eqx.filter_jit
def _evaluate(problem, y, what: str, linearized, save_params, modified, stop, resolution):
    fl = _flow(problem, linearized, save_params, modified, stop, resolution, True)

    def field(v):
        return _flat(fl.vector_field(0.0, _unflat(v, linearized), None), linearized)

    if what == "start":
        return _flat(fl.y0, linearized).astype(fl.dtype)
    if what == "field":
        return field(y)
    if what == "jacobian":
        return jax.jacfwd(field)(y)
    if what == "gap":
        return fl.converged(0.0, _unflat(y, linearized), None)
    if what == "metrics":
        return jax.vmap(lambda v: fl.metrics(0.0, _unflat(v, linearized), None))(y)
    if what == "limit":
        out = fl.limit_metrics(0.0, _unflat(y, linearized), None)
        floors = {k: out.pop(f"{k}_floor") / fl.initial[k] for k in fl.level}
        return out, jnp.max(jnp.stack(list(floors.values())))
    if what == "scale":
        loss, h0 = fl.loss, fl.flat.h0
        return jnp.maximum(loss(fl.alpha * h0), loss(jnp.zeros_like(h0)))
    raise ValueError(what)


def solve_bdf(problem, options, ts: np.ndarray, modified, stop, resolution, budget: int):
    """Integrate on the host with scipy's BDF, at most `budget` steps; returns
    `(ys, stats, result)` shaped like `_solve_jit`'s (`ys` the metrics at `ts`, then the
    limit's where `stop` is given; `stats["stop_time"]` the stop's time)."""
    lin, save = options.linearized, options.save_params

    def call(y, what):
        return _evaluate(problem, y, what, lin, save, modified, stop, resolution)

    y0 = np.asarray(call(jnp.zeros(()), "start"), dtype=np.float64)
    dtype = problem.dtype
    t1 = float(options.t1)

    def fun(t, y):
        return np.asarray(call(jnp.asarray(y, dtype), "field"), dtype=np.float64)

    def jac(t, y):
        return np.asarray(call(jnp.asarray(y, dtype), "jacobian"), dtype=np.float64)

    def gap(y):
        return float(call(jnp.asarray(y, dtype), "gap"))

    kwargs = {} if options.dt0 is None else {"first_step": float(options.dt0)}
    stepper = ScipyBDF(fun, 0.0, y0, t_bound=t1, rtol=options.rtol, atol=options.atol,
                       jac=jac, **kwargs)  # fmt: skip
    states = np.full((len(ts), y0.size), np.nan)
    saved = ts <= 0.0
    states[saved] = y0
    steps, result, t_stop, y_stop = 0, RESULTS.successful, math.nan, None
    if stop is not None and gap(y0) <= 0:
        t_stop, y_stop = 0.0, y0
    while y_stop is None:
        t_old = stepper.t
        message = stepper.step()
        steps += 1
        if stepper.status == "failed":
            small = message is not None and "step size" in message
            finite = np.all(np.isfinite(stepper.y))
            result = (
                RESULTS.diverged
                if not finite
                else (RESULTS.step_size_collapsed if small else RESULTS.solver_failed)
            )
            break
        dense = stepper.dense_output()
        t_new = stepper.t
        if not np.all(np.isfinite(stepper.y)):
            result = RESULTS.diverged
            break
        end = t_new
        if stop is not None and gap(stepper.y) <= 0:
            # Bisection on the dense output, ending on the bracket's upper end: the loss
            # there is at the level from below.
            lo, hi = t_old, t_new
            while hi - lo > _STOP_RTOL * abs(hi):
                mid = 0.5 * (lo + hi)
                if gap(dense(mid)) > 0:
                    lo = mid
                else:
                    hi = mid
            t_stop, y_stop, end = hi, dense(hi), hi
        new = (ts > t_old) & (ts <= end) & ~saved
        if new.any():
            states[new] = dense(ts[new]).T
            saved |= new
        if y_stop is not None or stepper.status == "finished":
            break
        if steps >= budget:
            result = RESULTS.max_steps_reached
            break

    ys = jax.tree_util.tree_map(np.asarray, call(jnp.asarray(np.nan_to_num(states), dtype),
                                                 "metrics"))  # fmt: skip
    ys = {k: np.where(saved.reshape((-1,) + (1,) * (v.ndim - 1)), v, np.nan) for k, v in ys.items()}
    stats = {
        "num_steps": steps,
        "num_accepted_steps": steps,
        "num_vector_field_evals": int(stepper.nfev),
        "num_jacobians": int(stepper.njev),
        "num_jvp_evals": int(stepper.njev) * int(y0.size),
        "num_lu": int(stepper.nlu),
        "max_steps": budget,
    }
    if stop is not None:
        reached = y_stop is not None
        if reached:
            limit, floor = call(jnp.asarray(y_stop, dtype), "limit")
            limit = {k: np.asarray(v)[None] for k, v in limit.items()}
        else:
            limit = {k: np.full((1,) + v.shape[1:], np.nan) for k, v in ys.items()}
            floor = math.nan
        ys = {k: np.concatenate([v, limit[k]]) for k, v in ys.items()}
        stats["stop_time"] = t_stop if reached else math.nan
        stats["stop_floor"] = float(floor) if reached else math.nan
    # Divergence that leaves the state finite: a loss far above its start (`_LOSS_GROWTH`).
    scale = float(call(jnp.zeros(()), "scale"))
    for name in ("loss", "linear_loss"):
        if name in ys and np.any(
            np.asarray(ys[name])[np.isfinite(ys[name])] > _LOSS_GROWTH * scale
        ):
            result = RESULTS.diverged
    return ys, stats, result
