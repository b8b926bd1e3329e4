"""Toy models whose flows are known in closed form."""

import jax.numpy as jnp

from .._typing import Array, Params
from ._base import AbstractModel


class ScalarSquare(AbstractModel):
    r"""The scalar model $h(w) = w^2$ (use `center=True` for $h(w) = w^2 - w_0^2$).

    Outputs have shape `(n,)`: the same value for every input. With the square loss and one
    target $y$, $u = w^2$ solves the logistic equation $u' = 4u(w_0^2 + y/\alpha - u)$ and the
    linearized flow is linear, both in closed form (see `theory.toy`).
    """

    def __call__(self, params: Params, inputs: Array) -> Array:
        return params["w"] ** 2 * jnp.ones(inputs.shape[:1], params["w"].dtype)

    def init(self, w0: float) -> Params:
        return {"w": jnp.asarray(w0, dtype=float)}


class LinearNet(AbstractModel):
    r"""A two-layer linear network $f(x) = x W_1 W_2$, $W_1 \in \mathbb{R}^{d \times r}$,
    $W_2 \in \mathbb{R}^{r \times k}$. With `inputs = eye(d)` it is matrix factorization
    $h(W_1, W_2) = W_1 W_2$; it is 2-homogeneous in its parameters.
    """

    def __call__(self, params: Params, inputs: Array) -> Array:
        return inputs @ params["W1"] @ params["W2"]

    def init(self, key: Array, in_dim: int, rank: int, out_dim: int, *, scale: float = 1.0):
        import jax

        k1, k2 = jax.random.split(key)
        return {
            "W1": scale * jax.random.normal(k1, (in_dim, rank)) / jnp.sqrt(in_dim),
            "W2": scale * jax.random.normal(k2, (rank, out_dim)) / jnp.sqrt(rank),
        }
