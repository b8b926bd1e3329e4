r"""The diagonal linear network of the kernel-to-rich transition,
$f(x) = x \cdot (u^D - v^D)$."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._typing import Array, ArrayLike, Params
from ._base import AbstractModel


class DiagonalDifferenceNet(AbstractModel):
    r"""A depth-$D$ diagonal linear network in difference form, $f(x) = x \cdot \beta$ with
    $\beta = u^D - v^D$ (entrywise powers), parameters `{"u": (d,), "v": (d,)}` and outputs
    `(n, 1)`; on the training inputs $h(w) = X\beta$. It is positively $D$-homogeneous,
    $h(\tau w) = \tau^D h(w)$.

    **Which theorem covers it.** Woodworth et al., *Kernel and Rich Regimes in
    Overparametrized Models* (COLT 2020), Theorem 1 ($D = 2$) and its depth-$D$ form: from
    $u(0) = v(0) = a\mathbf 1$, the gradient flow of the square loss, if it reaches
    $X\beta = y$, converges to $\arg\min Q^D_a(\beta)$ s.t. $X\beta = y$, which tends to the
    minimum-$\ell_2$ solution as $a \to \infty$ (kernel regime) and the minimum-$\ell_1$
    solution as $a \to 0$ (rich regime). [`gradflow.implicit_bias_limit`][] computes that
    minimizer (also for $u_0 \ne v_0$), `theory.diagonal_net_potential` derives $Q^D_a$. In the
    toolkit's scaling the init scale acts as $\alpha = a^D$: the flow of $R(h)$ from $a\mathbf 1$
    is $a$ times the flow of $F_\alpha$ from $\mathbf 1$ at $\alpha = a^D$, time $a^{2D-2}t$.
    The product form [`gradflow.models.DiagonalNet`][] is a different parametrization; the
    lazy-training theorems of Chizat et al. cover both at large $\alpha$.

    **Arguments:**

    - `depth`: the power $D \ge 2$.
    """

    depth: int = eqx.field(static=True)

    def __init__(self, depth: int = 2):
        if int(depth) != depth or int(depth) < 2:
            raise ValueError(f"`depth` must be an integer >= 2; got {depth!r}.")
        self.depth = int(depth)

    def beta(self, params: Params) -> Array:
        r"""The linear predictor $\beta = u^D - v^D$, shape `(d,)`."""
        return params["u"] ** self.depth - params["v"] ** self.depth

    def __call__(self, params: Params, inputs: Array) -> Array:
        return (inputs @ self.beta(params))[:, None]

    def init(
        self,
        in_dim: int,
        *,
        tau: float = 1.0,
        shape: tuple[ArrayLike, ArrayLike] = (1.0, 1.0),
    ) -> Params:
        r"""The deterministic init $u(0) = \tau s_u$, $v(0) = \tau s_v$ with the shape
        $(s_u, s_v)$ = `shape` (each a scalar or `(in_dim,)`, entries $> 0$). The default
        $s_u = s_v = \mathbf 1$ is the theorem's symmetric init $u = v = \tau\mathbf 1$,
        $\beta(0) = 0$ (so $h(w_0) = 0$ without centering); any other shape is asymmetric,
        $\beta(0) = \tau^D(s_u^D - s_v^D)$."""
        if int(in_dim) < 1:
            raise ValueError(f"`in_dim` must be a positive integer; got {in_dim}.")
        if not tau > 0:
            raise ValueError(f"`tau` must be > 0; got {tau}.")
        if len(shape) != 2:
            raise ValueError(f"`shape` must be a pair (s_u, s_v); got {len(shape)} entries.")
        leaves = []
        for name, s in zip(("u", "v"), shape):
            s = np.asarray(s, dtype=float)
            if s.ndim > 1 or (s.ndim == 1 and s.shape != (int(in_dim),)):
                raise ValueError(
                    f"`shape` entry for {name} must be a scalar or have shape ({int(in_dim)},); "
                    f"got shape {s.shape}."
                )
            if not np.all(np.isfinite(s) & (s > 0)):
                raise ValueError(
                    f"`shape` entries must be finite and > 0 (the theorem's init keeps u and v "
                    f"positive); got {s} for {name}."
                )
            leaves.append(jnp.asarray(tau * np.broadcast_to(s, (int(in_dim),))))
        return {"u": leaves[0], "v": leaves[1]}
