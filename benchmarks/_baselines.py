"""Hand-written JAX baselines shared by the benchmark scripts."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import gradflow as gf


def joint_euler_fori(steps: int, eta: float) -> Callable[[gf.Problem], Any]:
    r"""A jitted loop of `steps` Euler steps on $(w, \bar w)$: the cost of one evaluation of the
    joint vector field without a solver (the linear model is linearized once, outside the loop)."""

    @jax.jit
    def loop(problem: gf.Problem):
        w0, alpha, loss = problem.params0, problem.alpha, problem.loss
        h0, jvp0 = jax.linearize(problem.h, w0)

        def linear_objective(wbar):
            delta = jax.tree_util.tree_map(jnp.subtract, wbar, w0)
            return loss(alpha * (h0 + jvp0(delta))) / alpha**2

        def step(w, g):
            return jax.tree_util.tree_map(lambda a, b: a - eta * b, w, g)

        def body(i, state):
            del i
            w, wbar = state
            g = jax.grad(problem.objective)(w)
            return step(w, g), step(wbar, jax.grad(linear_objective)(wbar))

        return jax.lax.fori_loop(0, steps, body, (w0, w0))

    return loop
