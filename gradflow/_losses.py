"""Losses `R: F -> R_+` on the output space, with the constants the theorems need."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._typing import Array, ArrayLike, Outputs, Scalar


def _check_finite(name: str, value: ArrayLike) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if not np.all(np.isfinite(np.asarray(value))):
        raise ValueError(
            f"`{name}` contains NaN or inf values; clean or drop those samples before building "
            "the loss."
        )


def empirical_norm(f: Outputs) -> Scalar:
    r"""The norm of the output space $F = \mathbb{R}^{n \times k}$ with the empirical measure,
    $\|f\|_F = \big(\tfrac1n \sum_i \|f_i\|^2\big)^{1/2}$, where `n = f.shape[0]`.
    """
    return jnp.sqrt(jnp.sum(f**2) / f.shape[0])


class AbstractLoss(eqx.Module):
    r"""A loss $R: F \to \mathbb{R}_+$ on model outputs of shape `targets.shape`.

    Constants are stated for the empirical norm of $F$ (see [`gradflow.empirical_norm`][]):
    `smoothness` is $M$ with $\|\nabla_F R(f) - \nabla_F R(g)\|_F \le M \|f - g\|_F$, and
    `strong_convexity` is the modulus $m$ (`None` when the loss is not strongly convex).
    """

    targets: eqx.AbstractVar[Array]

    @abc.abstractmethod
    def __call__(self, outputs: Outputs) -> Scalar:
        """The loss value $R(f)$."""

    def grad(self, outputs: Outputs) -> Outputs:
        r"""The Euclidean gradient of $R$ with respect to the output array (it carries the
        $1/n$ of the empirical measure; the $F$-gradient is `n` times it)."""
        return jax.grad(self.__call__)(outputs)

    @property
    @abc.abstractmethod
    def smoothness(self) -> float | None:
        """Lipschitz constant $M$ of the $F$-gradient, or `None` when there is none."""

    @property
    @abc.abstractmethod
    def strong_convexity(self) -> float | None:
        """Strong-convexity modulus $m$ in the $F$ norm, or `None` when not strongly convex."""

    @property
    def minimizer(self) -> Array:
        """The target $y^*$ used by the scale criterion and the theorems."""
        return self.targets


class SquareLoss(AbstractLoss):
    r"""Square loss $R(f) = \tfrac12 \|f - y^*\|_F^2 = \tfrac{1}{2n}\sum_i \|f_i - y_i\|^2$.

    $M = m = 1$ in the empirical norm, so the condition number is 1.
    """

    targets: Array

    def __init__(self, targets: ArrayLike):
        _check_finite("targets", targets)
        self.targets = jnp.asarray(targets)
        if not jnp.issubdtype(self.targets.dtype, jnp.floating):
            self.targets = self.targets.astype(jnp.result_type(float))
        if self.targets.ndim == 0:
            raise ValueError("`targets` must have a leading sample axis; got a scalar.")

    def __call__(self, outputs: Outputs) -> Scalar:
        return 0.5 * jnp.sum((outputs - self.targets) ** 2) / outputs.shape[0]

    def grad(self, outputs: Outputs) -> Outputs:
        return (outputs - self.targets) / outputs.shape[0]

    @property
    def smoothness(self) -> float:
        return 1.0

    @property
    def strong_convexity(self) -> float:
        return 1.0


class LogisticLoss(AbstractLoss):
    r"""Logistic loss for labels $y \in \{-1, +1\}$:
    $R(f) = \tfrac1n \sum_i \sum_c \log(1 + e^{-y_{ic} f_{ic}})$.

    $M = 1/4$ (the logistic function's slope is at most 1/4); not strongly convex.
    """

    targets: Array

    def __init__(self, targets: ArrayLike):
        _check_finite("targets", targets)
        targets = jnp.asarray(targets)
        if not isinstance(targets, jax.core.Tracer) and not np.all(
            np.isin(np.asarray(targets), [-1.0, 1.0])
        ):
            raise ValueError(
                "`targets` of LogisticLoss must be labels in {-1, +1}; map {0, 1} labels with "
                "`2 * y - 1`."
            )
        if targets.ndim == 0:
            raise ValueError("`targets` must have a leading sample axis; got a scalar.")
        self.targets = targets.astype(jnp.result_type(float))

    def __call__(self, outputs: Outputs) -> Scalar:
        return jnp.sum(jax.nn.softplus(-self.targets * outputs)) / outputs.shape[0]

    @property
    def smoothness(self) -> float:
        return 0.25

    @property
    def strong_convexity(self) -> None:
        return None


class CrossEntropyLoss(AbstractLoss):
    r"""Softmax cross-entropy for one-hot targets of shape `(n, k)`:
    $R(f) = -\tfrac1n \sum_i \langle y_i, \log \mathrm{softmax}(f_i) \rangle$.

    $M = 1/2$ (the Hessian $\mathrm{diag}(p) - pp^\top$ has spectral norm at most 1/2); not
    strongly convex.
    """

    targets: Array

    def __init__(self, targets: ArrayLike):
        _check_finite("targets", targets)
        targets = jnp.asarray(targets)
        if targets.ndim != 2:
            raise ValueError(
                f"`targets` of CrossEntropyLoss must be one-hot of shape (n, k); got shape "
                f"{targets.shape}. Convert labels with `jax.nn.one_hot(labels, k)`."
            )
        self.targets = targets.astype(jnp.result_type(float))

    def __call__(self, outputs: Outputs) -> Scalar:
        logp = jax.nn.log_softmax(outputs, axis=-1)
        return -jnp.sum(self.targets * logp) / outputs.shape[0]

    @property
    def smoothness(self) -> float:
        return 0.5

    @property
    def strong_convexity(self) -> None:
        return None
