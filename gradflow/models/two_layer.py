"""Two-layer networks $f(x) = s(m) \\sum_j b_j \\sigma(a_j \\cdot x)$."""

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from .._typing import Array, Params
from ._activations import resolve_activation
from ._base import AbstractModel


class TwoLayer(AbstractModel):
    r"""A two-layer network without biases,

    $$f(x) = s(m) \sum_{j=1}^m b_j\, \sigma(a_j \cdot x), \qquad
      s(m) = m^{-1/2} \ (\text{`scaling="sqrt"`}) \ \text{or}\ m^{-1}\ (\text{`"mean_field"`}),$$

    with parameters `{"a": (m, d), "b": (m, k)}` and outputs `(n, k)`. The paper's
    Section 2 criterion predicts lazy training as $m \to \infty$ with $1/\sqrt m$ and not with
    $1/m$.

    **Arguments:**

    - `width`: the number of neurons $m$.
    - `activation`: a callable or one of `"relu"`, `"tanh"`, `"softplus"`, `"quadratic"`.
    - `scaling`: `"sqrt"` ($1/\sqrt m$) or `"mean_field"` ($1/m$).
    """

    width: int = eqx.field(static=True)
    activation: Callable[[Array], Array] = eqx.field(static=True)
    scaling: Literal["sqrt", "mean_field"] = eqx.field(static=True)

    def __init__(
        self,
        width: int,
        activation: Callable[[Array], Array] | str = "relu",
        scaling: Literal["sqrt", "mean_field"] = "sqrt",
    ):
        if int(width) < 1:
            raise ValueError(f"`width` must be a positive integer; got {width}.")
        activation = resolve_activation(activation)
        if scaling not in ("sqrt", "mean_field"):
            raise ValueError(f"`scaling` must be 'sqrt' or 'mean_field'; got {scaling!r}.")
        self.width = int(width)
        self.activation = activation
        self.scaling = scaling

    @property
    def output_scale(self) -> float:
        return self.width**-0.5 if self.scaling == "sqrt" else 1.0 / self.width

    def __call__(self, params: Params, inputs: Array) -> Array:
        pre = inputs @ params["a"].T
        return self.output_scale * (self.activation(pre) @ params["b"])

    def init(
        self,
        key: Array,
        in_dim: int,
        out_dim: int = 1,
        *,
        doubled: bool = False,
        tau: float = 1.0,
        input_init: Literal["normal", "sphere"] = "normal",
    ) -> Params:
        r"""Random parameters: input weights $a_j \sim N(0, I/d)$ (or uniform on the unit
        sphere with `input_init="sphere"`), output weights $b_j \sim N(0, 1)$, all times the
        init scale `tau` (the paper's $\tau$). With `doubled=True` (even width) the second half
        of the neurons copies the first with opposite output weights, so $f(w_0) = 0$
        ([`gradflow.models.symmetric_init`][]).
        """
        return init_neurons(
            key,
            self.width,
            in_dim,
            out_dim,
            doubled=doubled,
            tau=tau,
            input_init=input_init,
            normal_over_sqrt_dim=True,
        )


def init_neurons(
    key: Array,
    width: int,
    in_dim: int,
    out_dim: int = 1,
    *,
    doubled: bool,
    tau: Any,
    input_init: str = "normal",
    normal_over_sqrt_dim: bool = False,
    output_init: str = "normal",
) -> Params:
    """Two-layer parameters `{"a": (width, in_dim), "b": (width, out_dim)}`: input weights
    $N(0, I)$, or $N(0, I/d)$ with `normal_over_sqrt_dim` (or uniform on the unit sphere with
    `input_init="sphere"`), output weights
    $N(0, 1)$ (or $U(0, 1)$ with `output_init="uniform"`), doubled if asked, all times `tau`.
    The one initialization behind [`gradflow.models.TwoLayer.init`][] and the paper's."""
    if doubled and width % 2:
        raise ValueError(f"A doubled init needs an even `width`; got width={width}.")
    half = width // 2 if doubled else width
    k1, k2 = jax.random.split(key)
    a = jax.random.normal(k1, (half, in_dim))
    if input_init == "sphere":
        a = a / jnp.linalg.norm(a, axis=1, keepdims=True)
    elif input_init == "normal":
        a = a / jnp.sqrt(in_dim) if normal_over_sqrt_dim else a
    else:
        raise ValueError(f"`input_init` must be 'normal' or 'sphere'; got {input_init!r}.")
    if output_init == "normal":
        b = jax.random.normal(k2, (half, out_dim))
    elif output_init == "uniform":
        b = jax.random.uniform(k2, (half, out_dim))
    else:
        raise ValueError(f"`output_init` must be 'normal' or 'uniform'; got {output_init!r}.")
    params = {"a": a, "b": b}
    if doubled:
        params = symmetric_init(params)
    return jax.tree_util.tree_map(lambda x: tau * x, params)


def symmetric_init(params: Params) -> Params:
    r"""The doubled initialization: from `{"a": (m, d), "b": (m, k)}` build `2m` neurons,
    $(a_j, b_j)$ and $(a_j, -b_j)$, so the network output is exactly zero at $w_0$ (up to
    rounding) while $Dh(w_0) \ne 0$ (Chizat et al., Section 2, "doubling trick").
    """
    a, b = params["a"], params["b"]
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"`params['a']` and `params['b']` must have the same number of neurons; got "
            f"{a.shape[0]} and {b.shape[0]}."
        )
    return {"a": jnp.concatenate([a, a]), "b": jnp.concatenate([b, -b])}
