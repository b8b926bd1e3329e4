"""Data sets generated on the fly (nothing is downloaded)."""

import jax
import jax.numpy as jnp

from ._typing import Array
from .models import ACTIVATIONS


def uniform_sphere(key: Array, num: int, dim: int) -> Array:
    """`num` points uniform on the unit sphere $S^{d-1}$ of $\\mathbb{R}^{d}$ (normalized
    Gaussians)."""
    if num < 1 or dim < 1:
        raise ValueError(f"`num` and `dim` must be positive; got num={num}, dim={dim}.")
    x = jax.random.normal(key, (num, dim))
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def teacher_targets(
    key: Array, inputs: Array, *, width: int = 3, activation: str = "relu", out_dim: int = 1
) -> Array:
    r"""Targets $y(x) = \sum_{j \le m_0} b_j \sigma(a_j \cdot x)$ of a teacher network with unit
    input weights $a_j$ (uniform on the sphere) and output weights $b_j = \pm 1$, as in the
    teacher-student experiments of Chizat et al. (Section 4.1)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}.")
    ka, kb = jax.random.split(key)
    a = uniform_sphere(ka, width, inputs.shape[1])
    b = jnp.where(jax.random.bernoulli(kb, 0.5, (width, out_dim)), 1.0, -1.0)
    return ACTIVATIONS[activation](inputs @ a.T) @ b
