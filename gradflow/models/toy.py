"""Toy models whose flows are known in closed form."""

import jax.numpy as jnp
import numpy as np

from .._typing import Array, Params
from ._base import AbstractModel


class ScalarSquare(AbstractModel):
    r"""The scalar model $h(w) = w^2$ (use `center=True` for $h(w) = w^2 - w_0^2$).

    Outputs have shape `(n,)`: the same value for every input. With the square loss and one
    target $y$, $u = w^2$ solves the logistic equation $u' = 4u(w_0^2 + y/\alpha - u)$ and the
    linearized flow is linear, both in closed form (see `theory.toy`).
    """

    def __call__(self, params: Params, inputs: Array) -> Array:
        return params["w"] ** 2 * jnp.ones(inputs.shape[:1], params["w"].dtype)

    def init(self, w0: float) -> Params:
        return {"w": jnp.asarray(w0, dtype=float)}


class LinearNet(AbstractModel):
    r"""A two-layer linear network $f(x) = x W_1 W_2$, $W_1 \in \mathbb{R}^{d \times r}$,
    $W_2 \in \mathbb{R}^{r \times k}$. With `inputs = eye(d)` it is matrix factorization
    $h(W_1, W_2) = W_1 W_2$; it is 2-homogeneous in its parameters.
    """

    def __call__(self, params: Params, inputs: Array) -> Array:
        return inputs @ params["W1"] @ params["W2"]

    def init(
        self,
        key: Array,
        in_dim: int,
        rank: int,
        out_dim: int,
        *,
        tau: float = 1.0,
    ):
        """Gaussian factors scaled by `1/sqrt(d)` and `1/sqrt(r)`, times the init scale `tau`."""
        import jax

        k1, k2 = jax.random.split(key)
        return {
            "W1": tau * jax.random.normal(k1, (in_dim, rank)) / jnp.sqrt(in_dim),
            "W2": tau * jax.random.normal(k2, (rank, out_dim)) / jnp.sqrt(rank),
        }


class MatrixCompletion(AbstractModel):
    r"""Entries of a factorized matrix, $f(W_1, W_2; (i, j)) = (W_1 W_2)_{ij}$, with
    $W_1 \in \mathbb{R}^{d \times r}$, $W_2 \in \mathbb{R}^{r \times k}$: matrix completion, where
    the observed entries are the training inputs and the others are held out.

    An input is the pair of one-hot vectors $(e_i, e_j)$ concatenated, shape `(d + k,)` (build
    them with [`gradflow.models.MatrixCompletion.entries`][]); outputs have shape `(n, 1)`. The
    model is quadratic in $w$, so $D^2 f$ is the same everywhere, and for every entry
    $\|D_w^2 f\| = \sup_{\|V_1\|^2 + \|V_2\|^2 = 1} 2|V_1[i, :] \cdot V_2[:, j]| = 1$.
    """

    def __call__(self, params: Params, inputs: Array) -> Array:
        d = params["W1"].shape[0]
        left = inputs[:, :d] @ params["W1"]
        right = inputs[:, d:] @ params["W2"].T
        return jnp.sum(left * right, axis=1, keepdims=True)

    # The same factors as a linear net's: one init serves both models.
    init = LinearNet.init

    @staticmethod
    def entries(rows, cols, shape: tuple[int, int]) -> np.ndarray:
        """The inputs of the entries `(rows[a], cols[a])` of a `shape` matrix: one-hot rows
        concatenated with one-hot columns, shape `(len(rows), d + k)` (numpy, so that building
        a problem compiles nothing)."""
        d, k = (int(s) for s in shape)
        rows, cols = np.asarray(rows), np.asarray(cols)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise ValueError(
                f"`rows` and `cols` must be 1-d index arrays of the same length; got shapes "
                f"{rows.shape} and {cols.shape}."
            )
        if rows.size and (rows.min() < 0 or rows.max() >= d or cols.min() < 0 or cols.max() >= k):
            raise ValueError(
                f"Entry indices must lie in the {d}x{k} matrix; got rows in "
                f"[{int(rows.min())}, {int(rows.max())}] and cols in "
                f"[{int(cols.min())}, {int(cols.max())}]."
            )
        return np.concatenate([np.eye(d)[rows], np.eye(k)[cols]], axis=1)
