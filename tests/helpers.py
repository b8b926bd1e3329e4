"""Small problems shared by the tests."""

import jax
import jax.numpy as jnp

import gradflow as gf


def teacher_data(key, n, d, k=1, noise=0.0):
    """Inputs on the unit sphere and targets from a random tanh teacher of width 3."""
    kx, kt, kb, kn = jax.random.split(key, 4)
    x = jax.random.normal(kx, (n, d))
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
    a = jax.random.normal(kt, (3, d))
    b = jax.random.normal(kb, (3, k))
    y = jnp.tanh(x @ a.T) @ b + noise * jax.random.normal(kn, (n, k))
    return x, y


def two_layer_problem(
    key,
    *,
    n=20,
    d=3,
    m=40,
    k=1,
    activation="tanh",
    alpha=1.0,
    center=True,
    symmetric=False,
    scaling="sqrt",
):
    kd, kp = jax.random.split(key)
    x, y = teacher_data(kd, n, d, k)
    model = gf.models.TwoLayer(m, activation, scaling)
    params = model.init(kp, d, k, symmetric=symmetric)
    return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=alpha, center=center)
