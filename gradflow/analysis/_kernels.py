r"""The infinite-width kernels of two-layer nets, and kernel regression (the lazy limit) with them.

For `gf.models.TwoLayer(m, activation, scaling="sqrt")`, $h(x) = m^{-1/2} \sum_j b_j
\sigma(a_j \cdot x)$ with $a_j \sim N(0, v_a I_d)$ and $b_j \sim N(0, v_b)$ independent, the law
of large numbers gives, as $m \to \infty$, the tangent kernel (both layers trained)

$$K(x, x') = \mathbb{E}[\sigma(u)\sigma(u')] + v_b\, \mathbb{E}[\sigma'(u)\sigma'(u')]\,
    (x \cdot x'),$$

and the central limit theorem makes the initial output a centered Gaussian process with
covariance $Q(x, x') = v_b\, \mathbb{E}[\sigma(u)\sigma(u')]$, where $(u, u') = (a \cdot x,
a \cdot x')$ is a centered normal pair with $\mathbb{E}u^2 = v_a|x|^2$, $\mathbb{E}u'^2 =
v_a|x'|^2$, $\mathbb{E}uu' = v_a\, x \cdot x'$.
"""

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._typing import Array, ArrayLike

# Closed forms (arc-cosine kernels, Gaussian moments) and, for the smooth activations without
# one, a quadrature: the names of `gf.models.ACTIVATIONS` that have an infinite-width kernel here.
_CLOSED_FORM = ("relu", "quadratic")
_QUADRATURE = ("tanh", "softplus")
KERNEL_ACTIVATIONS = _CLOSED_FORM + _QUADRATURE

# The quadrature is the trapezoidal rule on [-_HALF_WIDTH, _HALF_WIDTH] for each standard normal
# coordinate: the Gaussian mass outside is 2e-17. For an integrand analytic in the strip
# |Im z| < d its error is about exp(-2 pi d / step); tanh(sigma z) has its poles at
# d = pi / (2 sigma), so a step of _STEP_TIMES_SIGMA / sigma gives the same accuracy whatever
# sigma is: measured <= 6e-13 relative for E[tanh'(u)^2] (the worst moment, 4th-order poles) at
# sigma = 0.7 ... 5, with 69 nodes per axis at sigma = 1, where Gauss-Hermite needs ~100 for
# 1e-11 and more as sigma grows (docs/theory.md).
_HALF_WIDTH = 8.5
_STEP_TIMES_SIGMA = 0.25
_MAX_STEP = 0.5
# Pairs evaluated at once by the quadrature: bounds its memory to ~ this many nodes squared.
_QUADRATURE_ELEMENTS = 2**22


def _tanh_pair(z: Array) -> tuple[Array, Array]:
    s = jnp.tanh(z)
    return s, 1.0 - s * s


def _softplus_pair(z: Array) -> tuple[Array, Array]:
    return jax.nn.softplus(z), jax.nn.sigmoid(z)


_PAIRS: dict[str, Callable[[Array], tuple[Array, Array]]] = {
    "tanh": _tanh_pair,
    "softplus": _softplus_pair,
}


def _correlation(sq1: Array, sq2: Array, dot: Array) -> tuple[Array, Array]:
    """rho = cos(angle) clipped to [-1, 1] (0 where an input is zero: u is then identically 0),
    and sqrt(1 - rho^2) written as sqrt((1 - rho)(1 + rho)) for accuracy near |rho| = 1."""
    norms = jnp.sqrt(sq1 * sq2)
    positive = norms > 0
    rho = jnp.clip(jnp.where(positive, dot / jnp.where(positive, norms, 1.0), 0.0), -1.0, 1.0)
    return rho, jnp.sqrt((1.0 - rho) * (1.0 + rho))


def _relu_moments(sq1, sq2, dot, input_var):
    # Arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009):
    # E[relu(u) relu(u')] = sigma1 sigma2 (sin t + (pi - t) cos t) / (2 pi),
    # E[1{u > 0} 1{u' > 0}] = (pi - t) / (2 pi), t the angle between x and x'.
    rho, sin = _correlation(sq1, sq2, dot)
    theta = jnp.arccos(rho)
    scale = input_var * jnp.sqrt(sq1 * sq2)
    ess = scale * (sin + (math.pi - theta) * rho) / (2.0 * math.pi)
    eds = (math.pi - theta) / (2.0 * math.pi)
    return ess, eds


def _quadratic_moments(sq1, sq2, dot, input_var):
    # sigma(z) = z^2, sigma'(z) = 2 z; Isserlis: E[u^2 u'^2] = E u^2 E u'^2 + 2 (E u u')^2.
    ess = input_var**2 * (sq1 * sq2 + 2.0 * dot**2)
    eds = 4.0 * input_var * dot
    return ess, eds


def _trapezoid(num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the trapezoidal rule for E f(Z), Z ~ N(0, 1), on a truncated line."""
    z = np.linspace(-_HALF_WIDTH, _HALF_WIDTH, num_nodes)
    w = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi) * (z[1] - z[0])
    w[[0, -1]] *= 0.5
    return z, w


def default_num_nodes(sigma: float) -> int:
    """Nodes per axis for the quadrature kernels when the largest pre-activation standard
    deviation is `sigma` (relative accuracy ~1e-12 for tanh, better for softplus)."""
    step = min(_MAX_STEP, _STEP_TIMES_SIGMA / max(float(sigma), 1e-300))
    return 2 * math.ceil(_HALF_WIDTH / step) + 1


def _quadrature_moments(sq1, sq2, dot, input_var, activation: str, num_nodes: int):
    """E[s(u) s(u')] and E[s'(u) s'(u')] by the 2-d trapezoidal rule in (z1, z2) iid N(0, 1),
    u = sigma1 z1, u' = sigma2 (rho z1 + sqrt(1 - rho^2) z2)."""
    pair = _PAIRS[activation]
    z_np, w_np = _trapezoid(num_nodes)
    z = jnp.asarray(z_np, dtype=dot.dtype)
    w = jnp.asarray(w_np, dtype=dot.dtype)
    shape = jnp.broadcast_shapes(sq1.shape, sq2.shape, dot.shape)
    sq1, sq2, dot = (jnp.broadcast_to(a, shape).reshape(-1) for a in (sq1, sq2, dot))
    rho, comp = _correlation(sq1, sq2, dot)
    sig1 = jnp.sqrt(input_var * sq1)
    sig2 = jnp.sqrt(input_var * sq2)

    def one(args):
        s1, s2, r, c = args
        outer, outer_d = pair(s1 * z)
        inner, inner_d = pair(s2 * (r * z[:, None] + c * z[None, :]))
        return jnp.dot(w * outer, inner @ w), jnp.dot(w * outer_d, inner_d @ w)

    batch = max(1, min(sq1.size, _QUADRATURE_ELEMENTS // num_nodes**2))
    ess, eds = jax.lax.map(one, (sig1, sig2, rho, comp), batch_size=batch)
    return ess.reshape(shape), eds.reshape(shape)


def _moments(sq1, sq2, dot, *, activation: str, input_var: float, num_nodes: int):
    """(E[s(u) s(u')], E[s'(u) s'(u')]) for arrays of |x|^2, |x'|^2 and x . x' (broadcast)."""
    if activation == "relu":
        return _relu_moments(sq1, sq2, dot, input_var)
    if activation == "quadratic":
        return _quadratic_moments(sq1, sq2, dot, input_var)
    return _quadrature_moments(sq1, sq2, dot, input_var, activation, num_nodes)


@eqx.filter_jit
def _kernel_matrices(x1, x2, symmetric: bool, activation, input_var, output_var, num_nodes):
    dot = x1 @ x2.T
    if symmetric:
        # The diagonal's |x|^2 from the same products as the off-diagonal, so rho_ii = 1 exactly.
        sq1 = sq2 = jnp.diagonal(dot)
    else:
        sq1, sq2 = jnp.sum(x1**2, axis=1), jnp.sum(x2**2, axis=1)
    ess, eds = _moments(
        sq1[:, None],
        sq2[None, :],
        dot,
        activation=activation,
        input_var=input_var,
        num_nodes=num_nodes,
    )
    return ess + output_var * eds * dot, output_var * ess


@eqx.filter_jit
def _nngp_diagonal(x, activation, input_var, output_var, num_nodes):
    sq = jnp.sum(x**2, axis=1)
    ess, _ = _moments(sq, sq, sq, activation=activation, input_var=input_var, num_nodes=num_nodes)
    return output_var * ess


def _as_inputs(name: str, x: ArrayLike) -> Array:
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"`{name}` must be a real array of inputs; got dtype {arr.dtype}.")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"`{name}` must have shape (n, d) with n, d >= 1 (one input per row); got shape "
            f"{tuple(arr.shape)}. Reshape a single input with `x[None, :]`."
        )
    if not isinstance(arr, jax.core.Tracer) and not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` contains NaN or inf values.")
    return jnp.asarray(arr, dtype=jnp.float64)


def _check_options(activation: Any, input_var: Any, output_var: Any, num_nodes: Any) -> None:
    if not isinstance(activation, str) or activation not in KERNEL_ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {list(KERNEL_ACTIVATIONS)} (the activations of "
            f"`gf.models.TwoLayer` with an infinite-width kernel here); got {activation!r}."
        )
    for name, value, low in (("input_var", input_var, "> 0"), ("output_var", output_var, ">= 0")):
        ok = isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)
        if not ok or (value <= 0 if low == "> 0" else value < 0):
            raise ValueError(
                f"`{name}` must be a finite number {low} (a variance of the weights at "
                f"initialization); got {name}={value!r}."
            )
    if num_nodes is not None and (
        not isinstance(num_nodes, (int, np.integer)) or isinstance(num_nodes, bool) or num_nodes < 3
    ):
        raise ValueError(
            f"`num_nodes` must be an integer >= 3 (quadrature nodes per axis) or None for the "
            f"default; got {num_nodes!r}."
        )


def _nodes(activation: str, num_nodes: int | None, input_var: float, *xs: Array) -> int:
    """The quadrature's node count: given, or from the largest pre-activation std."""
    if activation not in _QUADRATURE:
        return 0
    if num_nodes is not None:
        return int(num_nodes)
    if any(isinstance(x, jax.core.Tracer) for x in xs):
        raise ValueError(
            f"The {activation} kernel picks its quadrature nodes from the input norms, which are "
            "unknown under a trace (`jax.jit`, `jax.vmap`): pass `num_nodes` (e.g. "
            "`gf.infinite_width_ntk(..., num_nodes=69)`; see `default_num_nodes`)."
        )
    sq_max = max(float(np.max(np.sum(np.asarray(x) ** 2, axis=1))) for x in xs)
    return default_num_nodes(math.sqrt(input_var * sq_max))


def _prepare(x1, x2, activation, input_var, output_var, num_nodes):
    _check_options(activation, input_var, output_var, num_nodes)
    x1 = _as_inputs("x1", x1)
    symmetric = x2 is None
    x2 = x1 if symmetric else _as_inputs("x2", x2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(
            f"`x1` and `x2` must have the same input dimension; got x1.shape={tuple(x1.shape)} "
            f"and x2.shape={tuple(x2.shape)}."
        )
    nodes = _nodes(activation, num_nodes, float(input_var), x1, x2)
    return x1, x2, symmetric, nodes


def infinite_width_kernels(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    *,
    activation: str = "relu",
    input_var: float = 1.0,
    output_var: float = 1.0,
    num_nodes: int | None = None,
) -> tuple[Array, Array]:
    r"""Both infinite-width kernels at once: `(ntk, nngp)`, as
    [`gradflow.infinite_width_ntk`][] and [`gradflow.infinite_width_nngp`][] (which see for the
    arguments), sharing the quadrature.
    """
    return _kernel_pair(x1, x2, activation, input_var, output_var, num_nodes)


def _kernel_pair(x1, x2, activation, input_var, output_var, num_nodes) -> tuple[Array, Array]:
    """`(ntk, nngp)`, the arguments of [`gradflow.infinite_width_kernels`][] in order."""
    x1, x2, symmetric, nodes = _prepare(x1, x2, activation, input_var, output_var, num_nodes)
    # The variances as arrays: a sweep over them does not recompile.
    variances = (jnp.asarray(float(input_var)), jnp.asarray(float(output_var)))
    return _kernel_matrices(x1, x2, symmetric, activation, *variances, nodes)


def infinite_width_ntk(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    *,
    activation: str = "relu",
    input_var: float = 1.0,
    output_var: float = 1.0,
    num_nodes: int | None = None,
) -> Array:
    r"""The tangent kernel of `gf.models.TwoLayer(m, activation, scaling="sqrt")` as
    $m \to \infty$ (both layers trained, no bias):

    $$K(x, x') = \mathbb{E}[\sigma(u)\sigma(u')] + v_b\,\mathbb{E}[\sigma'(u)\sigma'(u')]\,
        x \cdot x', \qquad (u, u') = (a \cdot x, a \cdot x'),\ a \sim N(0, v_a I_d),$$

    the limit of [`gradflow.tangent_kernel`][] of the net (whose $1/m$ sum over neurons is this
    expectation) when $a_j \sim N(0, v_a I_d)$ and $b_j \sim N(0, v_b)$. With
    $\sigma_1^2 = v_a |x|^2$, $\sigma_2^2 = v_a|x'|^2$ and $\theta$ the angle between $x$ and
    $x'$ ($\rho = \cos\theta$):

    - `"relu"` (arc-cosine kernels of degrees 1 and 0):
      $\mathbb{E}[\sigma\sigma'] = \sigma_1\sigma_2 (\sin\theta + (\pi - \theta)\cos\theta)/(2\pi)$,
      $\mathbb{E}[\sigma'(u)\sigma'(u')] = (\pi - \theta)/(2\pi)$;
    - `"quadratic"` ($\sigma(z) = z^2$): $v_a^2(|x|^2|x'|^2 + 2 (x\cdot x')^2)$ and
      $4 v_a\, x \cdot x'$;
    - `"tanh"`, `"softplus"`: a 2-d quadrature over $u = \sigma_1 z_1$,
      $u' = \sigma_2(\rho z_1 + \sqrt{1-\rho^2} z_2)$, $z_1, z_2$ iid $N(0, 1)$: the
      trapezoidal rule on $[-8.5, 8.5]^2$, which for these (analytic) integrands converges
      geometrically in the step, with a step $\propto 1/\max\sigma$ (relative error
      ~1e-12).

    The variances map onto the project's initializations as follows:

    - [`gradflow.models.TwoLayer.init`][] (`input_init="normal"`, `tau=tau`):
      `input_var = tau**2 / d`, `output_var = tau**2`;
    - the paper's experiments ([`gradflow.experiments.paper_init`][], $a \sim N(0, I_d)$,
      $b \sim N(0, 1)$, times $\tau$): `input_var = tau**2`, `output_var = tau**2`.

    The doubled init (neuron pairs $(a_j, \pm b_j)$) has the same kernel. The kernel is that of
    $h$; a [`gradflow.Problem`][] at scale $\alpha$ flows in function space with it unchanged.
    With $k$ outputs the limit is this kernel times $I_k$.

    **Arguments:**

    - `x1`: inputs, shape `(n1, d)`.
    - `x2`: inputs, shape `(n2, d)`; default `x1` (then the diagonal uses $\rho = 1$ exactly).
    - `activation`: `"relu"`, `"quadratic"`, `"tanh"` or `"softplus"` (as in
      `gf.models.ACTIVATIONS`).
    - `input_var`: $v_a > 0$, the variance of each input weight.
    - `output_var`: $v_b \ge 0$, the variance of each output weight.
    - `num_nodes`: quadrature nodes per axis (tanh, softplus only); default from the largest
      $\sigma$: a step of $0.25/\max\sigma$ (at most 0.5), 69 nodes at $\sigma = 1$. The cost
      is `n1 * n2 * num_nodes**2` activation evaluations. Needed under `jax.jit`.

    **Returns:** the `(n1, n2)` float64 matrix $K(x1_i, x2_j)$.
    """
    return _kernel_pair(x1, x2, activation, input_var, output_var, num_nodes)[0]


def infinite_width_nngp(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    *,
    activation: str = "relu",
    input_var: float = 1.0,
    output_var: float = 1.0,
    num_nodes: int | None = None,
) -> Array:
    r"""The covariance of the output of `gf.models.TwoLayer(m, activation, "sqrt")` at
    initialization, $Q(x, x') = v_b\,\mathbb{E}[\sigma(u)\sigma(u')]$, which for every $m$ is
    $\mathbb{E}[h_{w_0}(x) h_{w_0}(x')]$; as $m \to \infty$ the output is the centered Gaussian
    process with this covariance (the neural-network Gaussian process, NNGP). Same arguments,
    closed forms and quadrature as [`gradflow.infinite_width_ntk`][].

    **Returns:** the `(n1, n2)` float64 matrix $Q(x1_i, x2_j)$.
    """
    return _kernel_pair(x1, x2, activation, input_var, output_var, num_nodes)[1]
