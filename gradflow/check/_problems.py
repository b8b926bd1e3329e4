"""The problems the theorem checks run on: non-convex toys and a neural net, all small.

Each builder returns a [`gradflow.check.NamedProblem`][]; sizes are chosen so that a check runs in
seconds on a CPU and, for the over-parameterized theorem, so that its threshold
$\\alpha > \\|y^*\\|/C_0$ is met by moderate scales (targets are scaled down accordingly).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .._losses import SquareLoss
from .._problem import Problem
from ..models import DiagonalNet, LinearNet, TwoLayer


class NamedProblem(NamedTuple):
    """A problem with a name, a one-line description, and its homogeneity degree `q`
    ($h(\\tau w) = \\tau^q h(w)$ for the uncentered model), or `None`."""

    name: str
    description: str
    problem: Problem
    degree: int | None = None


def _sphere(key, n, d):
    x = jax.random.normal(key, (n, d))
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def matrix_factorization(
    *,
    seed: int = 0,
    size: tuple[int, int] = (3, 2),
    rank: int = 8,
    target_scale: float = 0.05,
    center: bool = True,
) -> NamedProblem:
    """Matrix factorization $h(W_1, W_2) = W_1 W_2$ (a [`gradflow.models.LinearNet`][] on the
    identity inputs) fitting a random `size` matrix; over-parameterized when
    `rank * (d + k) >= d * k`."""
    d, k = size
    kp, ky = jax.random.split(jax.random.PRNGKey(seed))
    model = LinearNet()
    y = target_scale * jax.random.normal(ky, (d, k))
    problem = Problem(model, model.init(kp, d, rank, k), jnp.eye(d), SquareLoss(y), center=center)
    kind = "over" if rank * (d + k) >= d * k else "under"
    return NamedProblem(
        f"matfac-{d}x{k}-r{rank}" + ("" if center else "-uncentered"),
        f"matrix factorization {d}x{k}, rank {rank} ({kind}-parameterized), "
        + ("centered" if center else "NOT centered: h(w0) != 0"),
        problem,
        None if center else 2,
    )


def diagonal_net(
    *,
    seed: int = 0,
    samples: int = 4,
    dim: int = 10,
    depth: int = 2,
    target_scale: float = 0.1,
    center: bool = True,
) -> NamedProblem:
    """A depth-`depth` [`gradflow.models.DiagonalNet`][] regressing a sparse linear teacher on
    Gaussian inputs; over-parameterized when `samples <= dim` (then $Dh(w_0)$ has rank
    `samples`)."""
    kx, kp = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (samples, dim))
    beta = jnp.zeros(dim).at[0].set(1.0).at[1].set(-0.5)
    model = DiagonalNet(depth)
    problem = Problem(
        model,
        model.init(kp, dim),
        x,
        SquareLoss(target_scale * (x @ beta)[:, None]),
        center=center,
    )
    kind = "over" if samples <= dim else "under"
    return NamedProblem(
        f"diagonal-L{depth}-n{samples}-d{dim}" + ("" if center else "-uncentered"),
        f"depth-{depth} diagonal linear net, n={samples}, d={dim} ({kind}-parameterized), "
        + ("centered" if center else "NOT centered"),
        problem,
        None if center else depth,
    )


def two_layer(
    *,
    seed: int = 0,
    samples: int = 6,
    dim: int = 5,
    width: int = 32,
    activation: str = "tanh",
    target_scale: float = 0.05,
    center: bool = True,
    symmetric: bool = False,
    input_scale: float = 1.0,
) -> NamedProblem:
    """A two-layer [`gradflow.models.TwoLayer`][] net ($1/\\sqrt m$ scaling) on inputs uniform on
    the sphere of radius `input_scale`, targets from a random tanh teacher of width 3, scaled by
    `target_scale`."""
    kx, kt, kb, kp = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = input_scale * _sphere(kx, samples, dim)
    a = jax.random.normal(kt, (3, dim)) / input_scale
    y = target_scale * jnp.tanh(x @ a.T) @ jax.random.normal(kb, (3, 1))
    model = TwoLayer(width, activation)
    params = model.init(kp, dim, 1, symmetric=symmetric, input_init="sphere")
    problem = Problem(model, params, x, SquareLoss(y), center=center)
    p = width * (dim + 1)
    kind = "over" if p >= samples else "under"
    how = "centered" if center else ("doubled init" if symmetric else "NOT centered")
    return NamedProblem(
        f"twolayer-{activation}-n{samples}-m{width}"
        + ("" if center else ("-doubled" if symmetric else "-uncentered")),
        f"two-layer {activation} net, n={samples}, d={dim}, m={width} "
        f"({kind}-parameterized), {how}",
        problem,
        2 if (activation == "relu" and not center) else None,
    )
