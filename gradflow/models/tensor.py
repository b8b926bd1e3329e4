"""Symmetric tensor decomposition as a model: $h(U) = \\sum_a u_a^{\\otimes 3}$."""

import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Params
from ._base import AbstractModel


class TensorDecomposition(AbstractModel):
    r"""A symmetric order-3 tensor as a sum of $m$ rank-one terms,

    $$T(U)_{ijk} = \sum_{a=1}^m u_{a,i}\, u_{a,j}\, u_{a,k},$$

    evaluated at the entries listed in `inputs`, an integer array `(n, 3)` of indices
    $(i, j, k)$; outputs have shape `(n,)`. Parameters: `{"u": (m, d)}`. The map is
    3-positively-homogeneous, so an init scale $\tau$ acts as $\alpha = \tau^3$, and pairing
    each $u_a$ with $-u_a$ gives $T(U_0) = 0$ (odd order). With $m$ larger than the rank of
    the target this is an over-parameterized tensor decomposition (or completion, when only
    some entries are observed).
    """

    def __call__(self, params: Params, inputs: Array) -> Array:
        u = params["u"]
        idx = jnp.asarray(inputs)
        return jnp.sum(u[:, idx[:, 0]] * u[:, idx[:, 1]] * u[:, idx[:, 2]], axis=0)

    def init(
        self,
        key: Array,
        width: int,
        dim: int,
        *,
        tau: float = 1.0,
        doubled: bool = True,
    ) -> Params:
        r"""Components $u_a \sim N(0, I_d / d)$ times the init scale `tau`; with
        `doubled=True` (even `width`) the second half is the negated first half, so
        $T(U_0) = 0$."""
        if doubled and width % 2:
            raise ValueError(f"A doubled init needs an even `width`; got width={width}.")
        half = width // 2 if doubled else width
        u = jax.random.normal(key, (half, dim)) / np.sqrt(dim)
        if doubled:
            u = jnp.concatenate([u, -u])
        return {"u": tau * u}

    @staticmethod
    def entries(dim: int) -> np.ndarray:
        """The indices $(i \\le j \\le k)$ of the distinct entries of a symmetric
        $d \\times d \\times d$ tensor, shape `(d (d+1) (d+2) / 6, 3)`."""
        return np.array(
            [(i, j, k) for i in range(dim) for j in range(i, dim) for k in range(j, dim)],
            dtype=np.int64,
        )
