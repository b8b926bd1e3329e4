r"""Kernel regression as a gradient flow in function space, with a Gaussian-process init.

The lazy limit of training a wide net with the square loss $R(f) = \frac{1}{2n}\sum_i
\|f_i - y_i\|^2$: the outputs on the training inputs follow $f' = -(K/n)(f - y)$, $K$ the
tangent kernel, and every other input follows along through $K(x, X)$.
"""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, ArrayLike
from ._kernels import _as_inputs, _check_options, _nngp_diagonal, _nodes, infinite_width_kernels

# A kernel matrix with an eigenvalue below -_PSD_TOL * (largest |eigenvalue|) is not a kernel:
# rounding in eigh of a PSD matrix stays near n * eps of the largest.
_PSD_TOL = 1e-8


class KernelFlow(eqx.Module):
    r"""The kernel gradient flow $f' = -(K/n)(f - y)$ over the times `ts`, on the training and
    the test inputs; returned by [`gradflow.kernel_flow`][] and
    [`gradflow.infinite_width_flow`][].

    The *mean predictor* starts from $f_0 = 0$ (the doubled init, or the mean over random
    inits); from a random init $f_0 \sim \mathcal{GP}(0, Q)$ the prediction is the mean
    predictor plus a centered Gaussian term, whose expected squared norm is the `*_variance`.

    - `ts`: the times, shape `(T,)` (`inf` is ridgeless kernel regression).
    - `train_predictions`, `test_predictions`: the mean predictor, shape `(T,) + y.shape`.
    - `train_loss`, `test_loss`: the square loss $\frac{1}{2n}\sum_i\|f_i - y_i\|^2$ of the
      mean predictor, shape `(T,)`.
    - `train_variance`, `test_variance`: what a random init adds to the expected loss, shape
      `(T,)` (zeros without an init covariance).
    - `num_zero_eigenvalues`: eigenvalues of $K$ below `rcond` times the largest, treated as 0
      (those directions of the residual do not move).
    - `rcond`: the cut used.
    """

    ts: Array
    train_predictions: Array
    test_predictions: Array
    train_loss: Array
    test_loss: Array
    train_variance: Array
    test_variance: Array
    num_zero_eigenvalues: int = eqx.field(static=True)
    rcond: float = eqx.field(static=True)

    @property
    def expected_train_loss(self) -> Array:
        """$\\mathbb{E}_{f_0} R_{\\text{train}}(f(t))$: `train_loss + train_variance`."""
        return self.train_loss + self.train_variance

    @property
    def expected_test_loss(self) -> Array:
        """$\\mathbb{E}_{f_0} R_{\\text{test}}(f(t))$: `test_loss + test_variance`."""
        return self.test_loss + self.test_variance

    def to_dict(self) -> dict[str, Any]:
        def floats(a):
            return [float(v) for v in np.asarray(a)]

        return {
            "ts": floats(self.ts),
            "train_loss": floats(self.train_loss),
            "test_loss": floats(self.test_loss),
            "train_variance": floats(self.train_variance),
            "test_variance": floats(self.test_variance),
            "expected_train_loss": floats(self.expected_train_loss),
            "expected_test_loss": floats(self.expected_test_loss),
            "num_zero_eigenvalues": self.num_zero_eigenvalues,
            "rcond": self.rcond,
        }


@eqx.filter_jit
def _flow(k_train, k_cross, y_train, y_test, ts, q_train, q_cross, q_test_diag, rcond):
    n, n_test = k_train.shape[0], k_cross.shape[0]
    k = y_train.shape[1]
    lam, vec = jnp.linalg.eigh(k_train)
    cut = rcond * jnp.max(jnp.abs(lam))
    positive = lam > cut
    lam_pos = jnp.where(positive, lam, 1.0)
    coef = vec.T @ y_train  # (n, k)
    # Test outputs move by K(X*, X) K^{-1} (I - e^{-tK/n}) (y - f0): B carries K(X*, X) V.
    b = k_cross @ vec  # (n_test, n)
    if q_train is not None:
        c_diag = jnp.sum(vec * (q_train @ vec), axis=0)  # diag(V^T Q V)
        c_full = vec.T @ q_train @ vec
        # E||A f0||^2 = phi^T (C o B^T B) phi and E<f0*, A f0> = phi . p with A = B diag(phi) V^T.
        h = c_full * (b.T @ b)
        p = jnp.sum((vec.T @ q_cross.T) * b.T, axis=1)
        q_test_trace = jnp.sum(q_test_diag)

    def at(t):
        is_inf = jnp.isinf(t)
        t_fin = jnp.where(is_inf, 0.0, t)
        decay = jnp.where(positive, jnp.where(is_inf, 0.0, jnp.exp(-lam_pos * t_fin / n)), 1.0)
        # phi = (1 - e^{-lambda t / n}) / lambda (1/lambda at t = inf); 0 on the null space,
        # where K(X*, X) vanishes too (a PSD kernel is a Gram matrix of features).
        phi = jnp.where(
            positive,
            jnp.where(is_inf, 1.0 / lam_pos, -jnp.expm1(-lam_pos * t_fin / n) / lam_pos),
            0.0,
        )
        train = y_train - vec @ (decay[:, None] * coef)
        test = b @ (phi[:, None] * coef)
        train_loss = 0.5 * jnp.sum((train - y_train) ** 2) / n
        test_loss = 0.5 * jnp.sum((test - y_test) ** 2) / n_test
        if q_train is None:
            zero = jnp.zeros((), train_loss.dtype)
            return train, test, train_loss, test_loss, zero, zero
        # Each of the k output columns is an independent draw of the process.
        train_var = 0.5 * k * jnp.sum(decay**2 * c_diag) / n
        test_var = 0.5 * k * (q_test_trace - 2.0 * phi @ p + phi @ h @ phi) / n_test
        return train, test, train_loss, test_loss, train_var, test_var

    out = jax.lax.map(at, ts)
    return out, lam, jnp.sum(jnp.logical_not(positive))


def _matrix(name: str, value: ArrayLike, shape: tuple[int, ...], what: str) -> Array:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"`{name}` must be a real array; got dtype {arr.dtype}.")
    if arr.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape} ({what}); got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or inf values.")
    return jnp.asarray(arr, dtype=jnp.float64)


def _symmetric(name: str, value: Array) -> Array:
    scale = float(jnp.max(jnp.abs(value)))
    if float(jnp.max(jnp.abs(value - value.T))) > 1e-10 * max(scale, 1e-300):
        raise ValueError(
            f"`{name}` must be symmetric (a kernel on the training inputs); its largest "
            "asymmetry exceeds 1e-10 of its largest entry."
        )
    return 0.5 * (value + value.T)


def kernel_flow(
    kernel_train: ArrayLike,
    kernel_test_train: ArrayLike,
    y_train: ArrayLike,
    y_test: ArrayLike,
    ts: ArrayLike,
    *,
    init_cov_train: ArrayLike | None = None,
    init_cov_test_train: ArrayLike | None = None,
    init_var_test: ArrayLike | None = None,
    rcond: float | None = None,
) -> KernelFlow:
    r"""Kernel regression as the gradient flow of the square loss
    $R(f) = \frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2$ in function space,

    $$f_t(X) = y + e^{-tK/n}(f_0(X) - y), \qquad
      f_t(X_*) = f_0(X_*) - K(X_*, X) K^{-1}\big(I - e^{-tK/n}\big)(f_0(X) - y),$$

    with $K = K(X, X)$: the linearized model's flow ([`gradflow.linear_flow_closed_form`][],
    Chizat et al., Section 1) written for any kernel, evaluated in the eigenbasis
    $K = V \operatorname{diag}(\lambda) V^\top$. At $t = \infty$ it is ridgeless kernel
    regression, $K(X_*, X) K^{-1} y$ for $f_0 = 0$.

    The *mean predictor* ($f_0 = 0$) gives the predictions. If the initial outputs are a
    centered Gaussian process with covariance $Q$ (a net that is not doubled, e.g. Fig. 2 of
    the paper; see [`gradflow.infinite_width_nngp`][]), the expected test loss over the init is
    the mean predictor's plus, per output column,

    $$\frac{1}{2 n_*}\Big(\operatorname{tr} Q_{**} - 2\operatorname{tr}(A Q_{X*})
        + \operatorname{tr}(A Q_{XX} A^\top)\Big), \qquad
        A = K(X_*, X) K^{-1}\big(I - e^{-tK/n}\big),$$

    and the expected training loss the mean predictor's plus
    $\frac{1}{2n}\operatorname{tr}(e^{-tK/n} Q_{XX} e^{-tK/n})$.

    **Arguments:**

    - `kernel_train`: $K(X, X)$, shape `(n, n)`, symmetric positive semi-definite.
    - `kernel_test_train`: $K(X_*, X)$, shape `(n_test, n)`.
    - `y_train`: targets, shape `(n,)` or `(n, k)` (the kernel acts on each column).
    - `y_test`: test targets, shape `(n_test,)` or `(n_test, k)`.
    - `ts`: times $\ge 0$, `inf` allowed.
    - `init_cov_train`, `init_cov_test_train`, `init_var_test`: the covariance of the initial
      outputs, $Q(X, X)$ `(n, n)`, $Q(X_*, X)$ `(n_test, n)` and the diagonal of
      $Q(X_*, X_*)$ `(n_test,)`; all three or none (none: the variances are zero).
    - `rcond`: eigenvalues of $K$ below `rcond` times the largest count as zero (default
      `n * eps`, as in [`gradflow.linear_flow_closed_form`][]).

    **Returns:** a [`gradflow.KernelFlow`][].
    """
    k_np = np.asarray(kernel_train)
    if k_np.ndim != 2 or k_np.shape[0] != k_np.shape[1] or k_np.shape[0] < 1:
        raise ValueError(
            f"`kernel_train` must be a square (n, n) matrix K(X, X); got shape {k_np.shape}."
        )
    n = k_np.shape[0]
    k_train = _symmetric("kernel_train", _matrix("kernel_train", k_np, (n, n), "K(X, X)"))
    kc_np = np.asarray(kernel_test_train)
    if kc_np.ndim != 2 or kc_np.shape[0] < 1:
        raise ValueError(
            f"`kernel_test_train` must be an (n_test, n) matrix K(X_test, X); got shape "
            f"{kc_np.shape}."
        )
    n_test = kc_np.shape[0]
    k_cross = _matrix("kernel_test_train", kc_np, (n_test, n), "K(X_test, X), n from kernel_train")
    y_np, yt_np = np.asarray(y_train), np.asarray(y_test)
    if y_np.ndim not in (1, 2) or y_np.shape[0] != n:
        raise ValueError(
            f"`y_train` must have shape ({n},) or ({n}, k), one row per training input; got "
            f"{y_np.shape}."
        )
    tail = y_np.shape[1:]
    y_tr = _matrix("y_train", y_np, y_np.shape, "targets").reshape(n, -1)
    y_te = _matrix("y_test", yt_np, (n_test,) + tail, "like y_train, one row per test input")
    y_te = y_te.reshape(n_test, -1)
    ts_np = np.atleast_1d(np.asarray(ts, dtype=float))
    if ts_np.ndim != 1 or np.any(np.isnan(ts_np)) or np.any(ts_np < 0):
        raise ValueError(f"`ts` must be a 1-d array of times >= 0 (inf allowed); got {ts!r}.")
    given = [v is not None for v in (init_cov_train, init_cov_test_train, init_var_test)]
    if any(given) and not all(given):
        raise ValueError(
            "Pass all of `init_cov_train`, `init_cov_test_train` and `init_var_test` (the "
            "covariance of the initial outputs), or none of them for a zero init."
        )
    if all(given):
        q_train = _symmetric(
            "init_cov_train", _matrix("init_cov_train", init_cov_train, (n, n), "Q(X, X)")
        )
        q_cross = _matrix("init_cov_test_train", init_cov_test_train, (n_test, n), "Q(X_test, X)")
        q_diag = _matrix("init_var_test", init_var_test, (n_test,), "diagonal of Q(X_test, X_test)")
    else:
        q_train = q_cross = q_diag = None
    if rcond is None:
        rcond = n * float(np.finfo(np.float64).eps)
    if not (isinstance(rcond, (int, float)) and 0 <= rcond < 1):
        raise ValueError(f"`rcond` must be a number in [0, 1); got {rcond!r}.")
    out, lam, num_zero = _flow(
        k_train, k_cross, y_tr, y_te, jnp.asarray(ts_np), q_train, q_cross, q_diag, float(rcond)
    )
    lam = np.asarray(lam)
    if lam.min() < -_PSD_TOL * np.abs(lam).max():
        raise ValueError(
            f"`kernel_train` is not positive semi-definite: its smallest eigenvalue is "
            f"{lam.min():.3e} against a largest {np.abs(lam).max():.3e}. Pass a kernel matrix."
        )
    train, test, train_loss, test_loss, train_var, test_var = out
    return KernelFlow(
        ts=jnp.asarray(ts_np),
        train_predictions=train.reshape((len(ts_np),) + y_np.shape),
        test_predictions=test.reshape((len(ts_np),) + yt_np.shape),
        train_loss=train_loss,
        test_loss=test_loss,
        train_variance=train_var,
        test_variance=test_var,
        num_zero_eigenvalues=int(num_zero),
        rcond=float(rcond),
    )


def infinite_width_flow(
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    ts: ArrayLike,
    *,
    activation: str = "relu",
    input_var: float = 1.0,
    output_var: float = 1.0,
    alpha: float = 1.0,
    doubled: bool = False,
    num_nodes: int | None = None,
    rcond: float | None = None,
) -> KernelFlow:
    r"""The lazy limit of `gf.models.TwoLayer(m, activation, "sqrt")` as $m \to \infty$:
    [`gradflow.kernel_flow`][] with the infinite-width tangent kernel
    ([`gradflow.infinite_width_ntk`][]) and, unless `doubled`, the initial outputs
    $\alpha h(w_0)$ distributed as the Gaussian process with covariance $\alpha^2 Q$
    ([`gradflow.infinite_width_nngp`][]).

    It is the $m \to \infty$ limit of [`gradflow.linear_flow_closed_form`][] for
    `gf.Problem(TwoLayer(m, activation, "sqrt"), w0, x_train, gf.SquareLoss(y_train),
    alpha=alpha)`, in expectation over $w_0$: the function-space flow of $F_\alpha$ is
    $f' = -(K/n)(f - y)$ with $f = \alpha h$ whatever $\alpha$. For the paper's nets
    $f(x) = s\sum_j b_j \max(a_j\cdot x, 0)$ with $a \sim N(0, I_d)$, $b \sim N(0, 1)$ times
    $\tau$ and $s = 1/\sqrt m$: `input_var = output_var = tau**2`, `alpha = 1`, and GD with the
    paper's step $\eta$ for $N$ iterations is the flow up to $t = N \eta m$.

    **Arguments:**

    - `x_train`, `x_test`: inputs, shapes `(n, d)` and `(n_test, d)`.
    - `y_train`, `y_test`: targets, shapes `(n,)` / `(n, k)` and `(n_test,)` / `(n_test, k)`.
    - `ts`: flow times $\ge 0$, `inf` allowed.
    - `activation`, `input_var`, `output_var`, `num_nodes`: the kernels' (see
      [`gradflow.infinite_width_ntk`][] for the mapping onto the initializations).
    - `alpha`: the [`gradflow.Problem`][]'s scale; the init covariance is $\alpha^2 Q$.
    - `doubled`: the doubled init (pairs $(a_j, \pm b_j)$, $h(w_0) = 0$): no init variance.
    - `rcond`: as in [`gradflow.kernel_flow`][].

    **Returns:** a [`gradflow.KernelFlow`][]; its `expected_test_loss` is the expected test
    loss of the infinite-width lazy model.
    """
    _check_options(activation, input_var, output_var, num_nodes)
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"`alpha` must be a finite number > 0; got alpha={alpha!r}.")
    if not isinstance(doubled, bool):
        raise ValueError(f"`doubled` must be True or False; got {doubled!r}.")
    xtr = _as_inputs("x_train", x_train)
    xte = _as_inputs("x_test", x_test)
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            f"`x_train` and `x_test` must have the same input dimension; got "
            f"x_train.shape={tuple(xtr.shape)} and x_test.shape={tuple(xte.shape)}."
        )
    nodes = _nodes(activation, num_nodes, float(input_var), xtr, xte)
    kw = dict(
        activation=activation,
        input_var=float(input_var),
        output_var=float(output_var),
        num_nodes=nodes or None,
    )
    k_train, q_train = infinite_width_kernels(xtr, **kw)
    k_cross, q_cross = infinite_width_kernels(xte, xtr, **kw)
    init: dict[str, Any] = {}
    if not doubled:
        variances = (jnp.asarray(float(input_var)), jnp.asarray(float(output_var)))
        q_diag = _nngp_diagonal(xte, activation, *variances, nodes)
        a2 = float(alpha) ** 2
        init = dict(
            init_cov_train=a2 * q_train,
            init_cov_test_train=a2 * q_cross,
            init_var_test=a2 * q_diag,
        )
    return kernel_flow(k_train, k_cross, y_train, y_test, ts, rcond=rcond, **init)
