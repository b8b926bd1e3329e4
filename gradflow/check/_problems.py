"""The problems the theorem checks run on: non-convex toys and neural nets.

Each builder returns a [`gradflow.check.NamedProblem`][]. The default sizes are chosen so that a
check runs in seconds on a CPU and, for the over-parameterized theorem, so that its threshold
$\\alpha > \\|y^*\\|/C_0$ is met by moderate scales (targets are scaled down accordingly);
[`gradflow.check.research_problems`][] builds real-size nets (a two-layer net with
$p \\approx 3 \\cdot 10^4$ parameters, a VGG-style CNN on scikit-learn's digits).
"""

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import data as gdata
from .._losses import SquareLoss
from .._problem import Problem
from .._typing import Array, Inputs, Params
from ..analysis._estimators import tangent_spectrum
from ..models import VGG, DiagonalNet, LinearNet, MatrixCompletion, TwoLayer


class NamedProblem(NamedTuple):
    """A problem with a name, a one-line description, its homogeneity degree `q`
    ($h(\\tau w) = \\tau^q h(w)$ for the uncentered model) or `None`, and `held_out`: inputs
    off the training set (same structure as `problem.inputs`, leading axis the points) on which
    [`gradflow.check.check_off_training_set`][] compares the model with its linearization, or
    `None`."""

    name: str
    description: str
    problem: Problem
    degree: int | None = None
    held_out: Inputs | None = None


SMALL_NET = dict(samples=4, dim=8, width=32)
"""The two-layer net of the default problems: 4 points in dimension 8, width 32 (p = 288)."""


def _held_out_key(seed: int):
    # A key of its own, so that asking for held-out points leaves the training data unchanged.
    return jax.random.fold_in(jax.random.PRNGKey(seed), 7919)


def _count(held_out: int) -> int:
    if int(held_out) != held_out or held_out < 0:
        raise ValueError(
            f"`held_out` is a number of held-out points, an integer >= 0; got {held_out!r}."
        )
    return int(held_out)


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
    held_out: int = 0,
) -> NamedProblem:
    """A depth-`depth` [`gradflow.models.DiagonalNet`][] regressing a sparse linear teacher on
    Gaussian inputs; over-parameterized when `samples <= dim` (then $Dh(w_0)$ has rank
    `samples`). `held_out > 0` adds that many fresh Gaussian inputs as the held-out set."""
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
        + ("centered" if center else "NOT centered")
        + (f", {held_out} held-out inputs" if held_out else ""),
        problem,
        None if center else depth,
        jax.random.normal(_held_out_key(seed), (held_out, dim)) if _count(held_out) else None,
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
    doubled: bool = False,
    input_scale: float = 1.0,
    held_out: int = 0,
) -> NamedProblem:
    """A two-layer [`gradflow.models.TwoLayer`][] net ($1/\\sqrt m$ scaling) on inputs uniform on
    the sphere of radius `input_scale`, targets from a random tanh teacher of width 3, scaled by
    `target_scale`. `held_out > 0` adds that many fresh points of the same sphere as the
    held-out set."""
    kx, kt, kb, kp = jax.random.split(jax.random.PRNGKey(seed), 4)
    x = input_scale * _sphere(kx, samples, dim)
    a = jax.random.normal(kt, (3, dim)) / input_scale
    y = target_scale * jnp.tanh(x @ a.T) @ jax.random.normal(kb, (3, 1))
    model = TwoLayer(width, activation)
    params = model.init(kp, dim, 1, doubled=doubled, input_init="sphere")
    problem = Problem(model, params, x, SquareLoss(y), center=center)
    p = width * (dim + 1)
    kind = "over" if p >= samples else "under"
    how = "centered" if center else ("doubled init" if doubled else "NOT centered")
    extra = _count(held_out)
    return NamedProblem(
        f"twolayer-{activation}-n{samples}-m{width}"
        + ("" if center else ("-doubled" if doubled else "-uncentered")),
        f"two-layer {activation} net, n={samples}, d={dim}, m={width} "
        f"({kind}-parameterized), {how}" + (f", {extra} held-out inputs" if extra else ""),
        problem,
        2 if (activation == "relu" and not center) else None,
        input_scale * _sphere(_held_out_key(seed), extra, dim) if extra else None,
    )


def matrix_completion(
    *,
    seed: int = 0,
    size: tuple[int, int] = (4, 3),
    rank: int = 2,
    observed: int = 8,
    target_scale: float = 0.1,
    center: bool = True,
) -> NamedProblem:
    """Matrix completion with a [`gradflow.models.MatrixCompletion`][] of rank `rank`:
    `observed` random entries of a rank-one `size` matrix (times `target_scale`) are the
    training set, the other entries the held-out set. Over-parameterized when
    `rank * (d + k) >= observed`."""
    d, k = size
    if not 0 < observed < d * k:
        raise ValueError(
            f"`observed` must be between 1 and {d * k - 1} (the {d}x{k} matrix needs at least "
            f"one held-out entry); got {observed}."
        )
    kp, kt, ko = jax.random.split(jax.random.PRNGKey(seed), 3)
    uv = np.asarray(jax.random.normal(kt, (d + k,)))
    truth = target_scale * np.outer(uv[:d], uv[d:])
    order = np.argsort(np.asarray(jax.random.uniform(ko, (d * k,))))
    train, test = order[:observed], order[observed:]
    model = MatrixCompletion()
    inputs = MatrixCompletion.entries(train // k, train % k, size)
    targets = truth.reshape(-1)[train][:, None]
    problem = Problem(model, model.init(kp, d, rank, k), inputs, SquareLoss(targets), center=center)
    kind = "over" if rank * (d + k) >= observed else "under"
    return NamedProblem(
        f"matcomp-{d}x{k}-r{rank}-obs{observed}" + ("" if center else "-uncentered"),
        f"matrix completion {d}x{k}, rank {rank}, {observed} observed entries "
        f"({kind}-parameterized), {d * k - observed} held out, "
        + ("centered" if center else "NOT centered: h(w0) != 0"),
        problem,
        None if center else 2,
        MatrixCompletion.entries(test // k, test % k, size),
    )


class ScaledModel(eqx.Module):
    r"""`model` with its outputs multiplied by `scale` (an array leaf): $h = c\,f$. Used to
    express a model in tangent-kernel units, where $\lambda_{\max}(Dh(w_0) Dh(w_0)^*) = 1$,
    so that a horizon $T$ means the same amount of training for every architecture."""

    model: eqx.Module
    scale: Array

    def __call__(self, params: Params, inputs: Array) -> Array:
        return self.scale * self.model(params, inputs)


def vgg_digits(
    *,
    seed: int = 0,
    samples: int = 128,
    stages: tuple[tuple[int, ...], ...] = ((8, 8), (16, 16)),
    activation: str = "softplus",
    pooling: str = "avg",
    center: bool = True,
) -> NamedProblem:
    r"""A [`gradflow.models.VGG`][] CNN (He init) on the first `samples` training images of
    scikit-learn's digits ([`gradflow.data.digits`][], 8x8, standardized), square loss on
    one-hot targets (10 classes), centered ($h(w_0) = 0$), as in the paper's Section 4.2.

    The outputs are rescaled ([`gradflow.check.ScaledModel`][]) so that the tangent kernel
    $\Sigma_0 = Dh(w_0) Dh(w_0)^*$ has largest eigenvalue 1 (20 Lanczos steps): the unscaled
    CNN has $\lambda_{\max} \approx 190$, which would make the Gronwall factor
    $e^{L\|Dh\|^2 T}$ of the finite-horizon bounds overflow. Rescaling $h$ by $c$ is the same
    as rescaling $\alpha$ by $c$ and time by $c^2$.

    The default is smooth (`activation="softplus"`, `pooling="avg"`): with ReLU and max pooling
    $Dh$ jumps at the kinks and is not Lipschitz, as the finite-horizon and next-to-lazy
    theorems assume.
    """
    ds = gdata.digits(seed=seed)
    if not 1 <= int(samples) <= ds.x_train.shape[0]:
        raise ValueError(
            f"`samples` must be between 1 and {ds.x_train.shape[0]} (the digits training "
            f"images); got {samples}."
        )
    x = jnp.asarray(ds.x_train[: int(samples)])
    y = jax.nn.one_hot(jnp.asarray(ds.y_train[: int(samples)]), ds.num_classes, dtype=x.dtype)
    model = VGG(stages, ds.num_classes, activation=activation, pooling=pooling)
    params = model.init(jax.random.PRNGKey(seed), tuple(x.shape[1:]))
    raw = Problem(model, params, x, SquareLoss(y), center=center)
    lam = tangent_spectrum(raw, num_iters=20).largest
    scaled = ScaledModel(model, jnp.asarray(1.0 / math.sqrt(lam), x.dtype))
    problem = Problem(scaled, params, x, SquareLoss(y), center=center)
    channels = "-".join(str(c) for stage in stages for c in stage)
    smooth = f"{activation}, {pooling}-pool"
    return NamedProblem(
        f"vgg-{channels}-{activation}-digits-n{samples}" + ("" if center else "-uncentered"),
        f"VGG-style CNN {[list(st) for st in stages]} ({smooth}), p={problem.num_params}, on "
        f"{samples} digits, one-hot square loss, tangent-kernel units "
        f"(outputs / sqrt({lam:.4g})), " + ("centered" if center else "NOT centered"),
        problem,
        None,
    )


def flow_problems(*, control: bool) -> list[NamedProblem]:
    """The default problems of the theorems on flows: two non-convex toys (matrix
    factorization, a diagonal linear net) and a two-layer net (`SMALL_NET`), centered; with
    `control`, the net uncentered too ($h(w_0) \\neq 0$), as a negative control."""
    problems = [matrix_factorization(), diagonal_net(), two_layer(**SMALL_NET)]
    if control:
        problems.append(two_layer(**SMALL_NET, center=False))
    return problems


@functools.cache
def research_nets() -> tuple[NamedProblem, NamedProblem, NamedProblem]:
    """The real-size problems of the research-size checks:

    - a centered two-layer tanh net, n = 256 points on the sphere of radius sqrt(d) in d = 31
      (pre-activations of order one), m = 1024 neurons, p = m (d + 1) = 32 768;
    - the VGG-style CNN [`gradflow.check.vgg_digits`][]: channels (8, 8 | 16, 16), softplus
      and average pooling (smooth), p = 4 802, on 128 digits (1 280 outputs), centered, in
      tangent-kernel units;
    - the two-layer net without centering (h(w0) != 0), a negative control.

    Built once per process (the CNN's normalization compiles its tangent kernel): problems are
    immutable, so the theorems share them."""
    dim = 31
    net = dict(samples=256, dim=dim, width=1024, input_scale=math.sqrt(dim))
    return two_layer(**net), vgg_digits(), two_layer(**net, center=False)
