"""The flow `solve` integrates, as functions of its state (`_flow`), shared by the diffrax
solve (`_solve._solve_jit`) and the host BDF solve (`_solve_host`)."""

import types

import jax
import jax.numpy as jnp

from ._problem import Problem, _flatten
from ._typing import Array


def _finite(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


# The loss along a gradient flow never increases (dF/dt = -|grad F|^2), nor along gradient
# descent with steps below 2 / L (the descent lemma); the transient growth of unstable-but-
# bounded gradient descent (edge of stability, catapults) stays within a few orders of
# magnitude. A loss above this factor times max(R(alpha h(w0)), R(0)) is divergence.
_LOSS_GROWTH = 1e10
# The loss floor of the stop at the limit (see `_solve_jit`) is this many times the loss of a
# state perturbation of the size the error control resolves: the stiff modes sit at a few
# times that size, not exactly at it (on the depth-2 diagonal net at u = v = 100, rtol 1e-8,
# the loss stalls at 6e-16 to 1.3e-14 of its initial value; the estimate without the factor
# is 8e-15). Where the floor stops a solve, the relative error of the parameters is about
# 2.5 sqrt(floor / initial loss) (measured on the same net: 7e-7 at 8e-14).
_FLOOR_FACTOR = 10.0

# The stop's time is located to this relative precision (bisection on the crossing step's
# dense output: about 35 halvings of a step of the order of the time itself), or to 16 times
# the time dtype's epsilon where that is coarser (float32).
_STOP_RTOL = 1e-10


def _flow(
    problem: Problem,
    linearized: bool,
    save_params: bool,
    modified: tuple[Array, int] | None,
    stop: Array | None,
    resolution: tuple[Array, Array],
    locate: bool,
) -> types.SimpleNamespace:
    """The flow `solve` integrates, as functions of its state: the vector field, the start,
    the metrics saved, the events (divergence, and with `stop` the stop at the level: a test,
    or with `locate` a gap whose first zero is the stop), for diffrax (`_solve._solve_jit`)
    and for the host BDF solve (`_solve_host.solve_bdf`) alike."""
    flat = _flatten(problem, linearize=linearized)
    alpha, loss = flat.alpha, flat.loss
    w0, h = flat.w0, flat.h
    dtype = w0.dtype

    def grad_term(w):
        # -Dh(w)^T grad R(alpha h(w)): the velocity of z = alpha (w - w0).
        out, vjp = jax.vjp(h, w)
        (g,) = vjp(loss.grad(alpha * out))
        return -g

    def velocity(g, y):
        # The velocity of a scaled state y (z = alpha (w - w0), or u for the linearized flow)
        # whose gradient-flow velocity is g(y) = -alpha grad F. Gradient descent's modified
        # equation w' = -grad F - (eta / 2) H grad F is, in y, g - (eta / 2) Dg(y)[g(y)]: one
        # Hessian-vector product (a forward derivative of the gradient).
        # The second-order equation adds eta^2 (g''(g, g) / 12 + g'g'g / 3) (explicit Euler's
        # modified equation at order 2): g'g and g''(g, g) from one nested forward derivative,
        # g'(g'g) from one more.
        if modified is None:
            return g(y)
        eta, order = modified
        v = g(y)
        if order == 1:
            _, dv = jax.jvp(g, (y,), (v,))
            return v - 0.5 * eta * dv
        dv, d2v = jax.jvp(lambda x: jax.jvp(g, (x,), (v,))[1], (y,), (v,))
        _, ddv = jax.jvp(g, (y,), (dv,))
        return v - 0.5 * eta * dv + eta**2 * (d2v / 12 + ddv / 3)

    if linearized:
        # Scaled coordinates: u = alpha (wbar - w0) and e = alpha^2 (w - wbar) are O(1) in the
        # lazy regime, so error control acts on the gap itself and not on w = w0 + O(1/alpha),
        # where the gap would sit ~1/alpha^2 below the rounding of a separately integrated w.
        def linear_out(u):
            return alpha * flat.h0 + flat.jvp0(u)

        def vector_field(t, y, args):
            del t, args
            u, e = y
            z = u + e / alpha
            du = velocity(lambda u: -flat.vjp0(loss.grad(linear_out(u))), u)
            dz = velocity(lambda z: grad_term(w0 + z / alpha), z)
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
            return velocity(lambda z: grad_term(w0 + z / alpha), y)

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

    events = {"diverged": diverged}
    if stop is not None:
        # The loss floor: the loss that the state's resolution leaves at an exact zero of the
        # residual, so that no solve gets the loss below it. The error control holds each
        # state entry only to tol = atol + rtol |y| (`resolution`; zero without error
        # control), and float arithmetic each parameter to eps |w|: at a fixed point an
        # explicit or stabilized method sits at its stability limit, where the stiff modes
        # keep an amplitude of the order of tol (measured on the depth-2 diagonal net at
        # u = v = 100: the loss stalls at 6e-16 to 1e-14 of its initial value at rtol 1e-8,
        # 1e-19 to 1e-18 at 1e-10, 4e-23 to 3e-22 at 1e-12). That perturbation, with fixed
        # random signs, through the model (one forward-mode derivative, which also gives the
        # outputs), plus the rounding eps |out| of the residual, gives the floor as the
        # loss's second-order term 0.5 <d, D(grad R)[d]> (0.5 |d|^2 / n for the square loss).
        rtol_, atol_ = resolution
        eps = jnp.finfo(dtype).eps
        signs = jax.random.rademacher(jax.random.PRNGKey(0), w0.shape, dtype)

        def tol(x):
            return atol_ + rtol_ * jnp.abs(x)

        def floor_of(out, dout):
            d = jnp.abs(dout) + eps * jnp.abs(out)
            return _FLOOR_FACTOR * 0.5 * jnp.vdot(d, jax.jvp(loss.grad, (out,), (d,))[1])

        def losses_and_floors(y):
            # {name: (loss, floor)} for every loss the solve integrates.
            if linearized:
                u, e = y
                z = u + e / alpha
                dz = tol(u) + tol(e) / alpha
                lin = linear_out(u)
                dlin = flat.jvp0(signs * tol(u))
            else:
                z, dz = y, tol(y)
            w = w0 + z / alpha
            out, dout = jax.jvp(h, (w,), (signs * (dz / alpha + eps * jnp.abs(w)),))
            out, dout = alpha * out, alpha * dout
            found = {"loss": (loss(out), floor_of(out, dout))}
            if linearized:
                found["linear_loss"] = (loss(lin), floor_of(lin, dlin))
            return found

        # The stop at the limit: every loss integrated (the model's and the linearization's)
        # at or below `stop` times its value at w0, or at its floor where the floor is higher
        # (a level under it would never be met). A plateau of the flow (a saddle, where the
        # gradient is tiny for a long time) sits at a loss well above both, so the rule is
        # not fooled by it, as a rule on the gradient alone would be.
        initial = {k: v for k, v in metrics(0.0, y0, None).items() if k.endswith("loss")}
        level = {k: stop * v for k, v in initial.items()}

        def converged(t, y, args, **kwargs):
            del t, args, kwargs
            now = losses_and_floors(y)
            if not locate:
                return jnp.all(
                    jnp.stack([v <= jnp.maximum(level[k], f) for k, (v, f) in now.items()])
                )
            # Where the stop is located inside the step that crosses it: how far the losses
            # are above their levels (relative to their initial values), > 0 until every one
            # is at or below its level, so that its first zero is the stop.
            gaps = [
                (v - jnp.maximum(level[k], f)) / jnp.where(initial[k] > 0, initial[k], 1.0)
                for k, (v, f) in now.items()
            ]
            return jnp.max(jnp.stack(gaps))

        def limit_metrics(t, y, args):
            # The metrics of the state saved last, with each loss's floor beside it.
            m = metrics(t, y, args)
            m.update({f"{k}_floor": f for k, (_, f) in losses_and_floors(y).items()})
            return m

        events["converged"] = converged

    parts = types.SimpleNamespace(
        flat=flat, alpha=alpha, loss=loss, dtype=dtype, y0=y0, vector_field=vector_field,
        metrics=metrics, events=events, limit_metrics=None, converged=None, level=None,
        initial=None, losses_and_floors=None,
    )  # fmt: skip
    if stop is not None:
        parts.limit_metrics, parts.converged = limit_metrics, converged
        parts.level, parts.initial = level, initial
        parts.losses_and_floors = losses_and_floors
    return parts
