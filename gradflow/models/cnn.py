"""A VGG-style convolutional network without batch normalization."""

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, Params
from ._activations import resolve_activation
from ._base import AbstractModel


class VGG(AbstractModel):
    r"""A VGG-style CNN: stages of 3x3 convolutions (stride 1, "SAME" padding) with ReLU, each
    stage followed by 2x2 max pooling, then a linear layer to the classes. No batch
    normalization (its batch statistics would make $h$ depend on the batch), as in Chizat et
    al., Section 4.2.

    ReLU and max pooling have kinks: $Dh$ jumps where a pre-activation crosses 0 or two
    pooled values swap, so $Dh$ is not Lipschitz, as the finite-horizon and next-to-lazy
    theorems assume. `activation="softplus"` (or `"tanh"`) with `pooling="avg"` gives a smooth
    CNN of the same shape, on which those hypotheses hold.

    Inputs are images `(n, H, W, C)` (NHWC); outputs are `(n, num_classes)`. Parameters are
    `{"conv": [{"w": (3, 3, C_in, C_out), "b": (C_out,)}, ...], "dense": {"w", "b"}}`.

    **Arguments:**

    - `stages`: channels of each stage's convolutions, e.g. `((16, 16), (32, 32))`: two stages
      of two convolutions. `H` and `W` must be divisible by `2 ** len(stages)`.
    - `num_classes`: the output dimension.
    - `activation`: a callable or one of `"relu"`, `"tanh"`, `"softplus"`, `"quadratic"`.
    - `pooling`: `"max"` (2x2 max pooling, VGG's) or `"avg"` (2x2 average pooling, smooth).
    """

    stages: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)
    activation: Callable[[Array], Array] = eqx.field(static=True)
    pooling: Literal["max", "avg"] = eqx.field(static=True)

    def __init__(
        self,
        stages=((16, 16), (32, 32)),
        num_classes: int = 10,
        *,
        activation: Callable[[Array], Array] | str = "relu",
        pooling: Literal["max", "avg"] = "max",
    ):
        stages = tuple(tuple(int(c) for c in s) for s in stages)
        if not stages or any(not s or min(s) < 1 for s in stages):
            raise ValueError(
                f"`stages` must be a non-empty tuple of non-empty channel tuples; got {stages}."
            )
        if int(num_classes) < 1:
            raise ValueError(f"`num_classes` must be a positive integer; got {num_classes}.")
        activation = resolve_activation(activation)
        if pooling not in ("max", "avg"):
            raise ValueError(f"`pooling` must be 'max' or 'avg'; got {pooling!r}.")
        self.stages = stages
        self.num_classes = int(num_classes)
        self.activation = activation
        self.pooling = pooling

    def init(self, key: Array, image_shape: tuple[int, int, int]) -> Params:
        r"""He initialization: weights $N(0, 2/\text{fan-in})$, biases zero.

        **Arguments:** `key`; `image_shape` = `(H, W, C)` of one input image.
        """
        h, w, c = (int(v) for v in image_shape)
        pool = 2 ** len(self.stages)
        if h % pool or w % pool:
            raise ValueError(
                f"Images of size {h}x{w} cannot be pooled {len(self.stages)} times by 2; use "
                f"fewer stages or images whose sides are multiples of {pool}."
            )
        convs = []
        keys = iter(jax.random.split(key, sum(len(s) for s in self.stages) + 1))
        cin = c
        for stage in self.stages:
            for cout in stage:
                std = np.sqrt(2.0 / (9 * cin))
                convs.append(
                    {
                        "w": std * jax.random.normal(next(keys), (3, 3, cin, cout)),
                        "b": jnp.zeros((cout,)),
                    }
                )
                cin = cout
        features = (h // pool) * (w // pool) * cin
        dense = {
            "w": np.sqrt(1.0 / features)
            * jax.random.normal(next(keys), (features, self.num_classes)),
            "b": jnp.zeros((self.num_classes,)),
        }
        return {"conv": convs, "dense": dense}

    def _forward(self, params: Params, inputs: Array):
        x = inputs
        pre_activations = []
        layers = iter(params["conv"])
        for stage in self.stages:
            for _ in stage:
                layer = next(layers)
                x = jax.lax.conv_general_dilated(
                    x,
                    layer["w"],
                    window_strides=(1, 1),
                    padding="SAME",
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )
                x = x + layer["b"][None, None, None, :]
                pre_activations.append(x)
                x = self.activation(x)
            if self.pooling == "max":
                x = jax.lax.reduce_window(
                    x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
                )
            else:
                x = 0.25 * jax.lax.reduce_window(
                    x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
                )
        x = x.reshape(x.shape[0], -1)
        return x @ params["dense"]["w"] + params["dense"]["b"][None, :], pre_activations

    def __call__(self, params: Params, inputs: Array) -> Array:
        return self._forward(params, inputs)[0]

    def activation_patterns(self, params: Params, inputs: Array) -> list[Array]:
        """For each ReLU layer, the boolean array `pre-activation > 0` on `inputs` (the
        activation pattern; its stability from init measures laziness)."""
        return [p > 0 for p in self._forward(params, inputs)[1]]
