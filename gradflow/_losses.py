"""Losses `R: F -> R_+` on the output space, with the constants the theorems need."""

import abc
import numbers

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


def _check_probability_rows(targets: np.ndarray) -> None:
    """Every row of the `(n, k)` array `targets` is a probability vector: entries >= 0 that sum
    to 1, up to float32 rounding. Summing k entries each rounded to relative precision u
    errs by at most k u (Higham, *Accuracy and Stability of Numerical Algorithms*, Sec. 4.2),
    so `k * eps32` (float32 is the coarsest dtype targets come in) lets any rounded
    probability vector through and no vector of class indices or counts."""
    tol = targets.shape[1] * float(np.finfo(np.float32).eps)
    fix = (
        "For class indices use `gf.CrossEntropyLoss.from_labels(labels, num_classes)`, or pass "
        "one-hot targets `jax.nn.one_hot(labels, k)`."
    )
    requirement = (
        "`targets` of CrossEntropyLoss must be probability vectors (one-hot, or soft labels): "
        "entries >= 0, each row summing to 1"
    )
    negative = np.flatnonzero(np.any(targets < -tol, axis=1))
    if negative.size:
        i = int(negative[0])
        raise ValueError(
            f"{requirement}; row {i} has a negative entry, {float(targets[i].min())!r}. {fix}"
        )
    sums = targets.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if off.size:
        i = int(off[0])
        raise ValueError(f"{requirement}; row {i} sums to {float(sums[i])!r}. {fix}")


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
    r"""Softmax cross-entropy for targets of shape `(n, k)` whose rows are probability vectors
    (one-hot labels, or soft labels such as label smoothing):
    $R(f) = -\tfrac1n \sum_i \langle y_i, \log \mathrm{softmax}(f_i) \rangle$.

    $M = 1/2$ (the Hessian $\mathrm{diag}(p) - pp^\top$ has spectral norm at most 1/2); not
    strongly convex.

    **Arguments:**

    - `targets`: an `(n, k)` array, `k >= 2`, each row non-negative and summing to 1 (up to
      float32 rounding, $k \epsilon_{32}$). Class indices are refused (read as one row of
      one class, the loss would be 0 for every output and the parameters would never move):
      pass them through [`gradflow.CrossEntropyLoss.from_labels`][].

    Under a trace (`jax.jit`, `jax.vmap`) only the shape is checked: the values are unknown.
    """

    targets: Array

    def __init__(self, targets: ArrayLike):
        _check_finite("targets", targets)
        targets = jnp.asarray(targets)
        if targets.ndim != 2:
            raise ValueError(
                f"`targets` of CrossEntropyLoss must be one-hot of shape (n, k); got shape "
                f"{targets.shape}. Convert labels with `jax.nn.one_hot(labels, k)`, or use "
                "`gf.CrossEntropyLoss.from_labels(labels, num_classes)`."
            )
        k = targets.shape[1]
        if k < 2:
            raise ValueError(
                f"`targets` of CrossEntropyLoss have shape {targets.shape}: "
                f"{'one class' if k == 1 else 'no class'}, whose softmax is 1 for any output, so "
                "the loss is 0 and the parameters never move. Class indices (labels 0..k-1) go "
                "through `gf.CrossEntropyLoss.from_labels(labels, num_classes)`, or pass one-hot "
                "targets `jax.nn.one_hot(labels, k)` of shape (n, k) with k >= 2."
            )
        if not isinstance(targets, jax.core.Tracer):
            _check_probability_rows(np.asarray(targets, np.float64))
        self.targets = targets.astype(jnp.result_type(float))

    @classmethod
    def from_labels(cls, labels: ArrayLike, num_classes: int) -> "CrossEntropyLoss":
        """The loss for class indices: one-hot targets `(n, num_classes)` from `labels`.

        **Arguments:**

        - `labels`: class indices in `[0, num_classes)`, shape `(n,)` or `(n, 1)`; integers,
          or floats holding whole numbers.
        - `num_classes`: the number of classes `k >= 2` (the model's outputs per sample).

        **Returns:** a [`gradflow.CrossEntropyLoss`][] with targets
        `jax.nn.one_hot(labels, num_classes)`. Under a trace only the shapes are checked.
        """
        if (
            isinstance(num_classes, (bool, np.bool_))
            or not isinstance(num_classes, numbers.Integral)
            or num_classes < 2
        ):
            raise ValueError(
                f"`num_classes` must be an integer >= 2 (the model's outputs per sample); got "
                f"num_classes={num_classes!r}."
            )
        num_classes = int(num_classes)
        labels = jnp.asarray(labels)
        if not (labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)):
            raise ValueError(
                f"`labels` must have shape (n,) or (n, 1), one class index per sample; got "
                f"shape {labels.shape}. One-hot or soft targets of shape (n, k) go to "
                "`gf.CrossEntropyLoss(targets)` directly."
            )
        labels = labels.reshape(-1)
        if not isinstance(labels, jax.core.Tracer):
            values = np.asarray(labels)
            if values.dtype == np.bool_ or not np.issubdtype(values.dtype, np.number):
                raise ValueError(f"`labels` must be class indices; got dtype {values.dtype}.")
            _check_finite("labels", values)
            whole = values == np.round(values)
            if not np.all(whole):
                raise ValueError(
                    f"`labels` must be whole numbers; got {values[~whole][0].item()!r}. For soft "
                    "labels pass targets of shape (n, k) to `gf.CrossEntropyLoss(targets)`."
                )
            outside = (values < 0) | (values >= num_classes)
            if np.any(outside):
                raise ValueError(
                    f"`labels` must be class indices in [0, {num_classes}); got "
                    f"{values[outside][0].item()!r}. Give the right `num_classes`, or map the "
                    "labels to 0..num_classes-1."
                )
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            # Whole numbers (checked above where concrete): `one_hot` takes integer indices.
            labels = labels.astype(jnp.int32)
        return cls(jax.nn.one_hot(labels, num_classes, dtype=jnp.result_type(float)))

    def __call__(self, outputs: Outputs) -> Scalar:
        logp = jax.nn.log_softmax(outputs, axis=-1)
        return -jnp.sum(self.targets * logp) / outputs.shape[0]

    @property
    def smoothness(self) -> float:
        return 0.5

    @property
    def strong_convexity(self) -> None:
        return None
