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

    **Which theorem covers it.** The lazy-training theorems of Chizat et al. (finite horizon,
    over- and under-parameterized, off the training set) at large $\alpha$: it is one of
    `gradflow.check`'s default problems. At depth 2, $w_1 \odot w_2 = u^2 - v^2$ with
    $u = (w_1 + w_2)/2$, $v = (w_1 - w_2)/2$, and the flow in $(u, v)$ is the flow of
    [`gradflow.models.DiagonalDifferenceNet`][]`(2)` at half speed, so Woodworth et al.'s
    Theorem 1 in its asymmetric form gives its limit:
    [`gradflow.implicit_bias_limit`][]`(X, y, u0, |v0|)` (tested). At depth $L \ge 3$ the
    product form is not a difference of powers, and that theorem does not apply; the depth-$D$
    result is about `DiagonalDifferenceNet(D)`.

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
