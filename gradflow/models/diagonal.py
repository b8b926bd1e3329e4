"""Diagonal linear networks $f(x) = x \\cdot (w_1 \\odot \\cdots \\odot w_L)$."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Params
from ._base import AbstractModel


class DiagonalNet(AbstractModel):
    r"""A depth-$L$ diagonal linear network, $f(x) = x \cdot \beta$ with
    $\beta = w_1 \odot \cdots \odot w_L$ (entrywise product), parameters `{"w": (L, d)}` and
    outputs `(n, 1)`. It is non-convex in $w$ and positively $L$-homogeneous:
    $h(\tau w) = \tau^L h(w)$, so an init scale $\tau$ acts as $\alpha = \tau^L$.

    **Arguments:**

    - `depth`: the number of layers $L \ge 1$.
    """

    depth: int = eqx.field(static=True)

    def __init__(self, depth: int = 2):
        if int(depth) < 1:
            raise ValueError(f"`depth` must be a positive integer; got {depth}.")
        self.depth = int(depth)

    def __call__(self, params: Params, inputs: Array) -> Array:
        beta = jnp.prod(params["w"], axis=0)
        return (inputs @ beta)[:, None]

    def init(self, key: Array, in_dim: int, *, tau: float = 1.0) -> Params:
        """Entries uniform in `[0.5, 1.5]` (away from 0, where the rank of $Dh$ would drop)
        times the init scale `tau`."""
        w = jax.random.uniform(key, (self.depth, in_dim), minval=0.5, maxval=1.5)
        return {"w": tau * w}
