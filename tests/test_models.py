"""The model zoo: two-layer networks, toy models and activations, against numpy loops and
exact identities (symmetric init, homogeneity, init scale)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

N, D, M, K = 5, 3, 6, 2


def _rng(key):
    """A numpy generator seeded by a JAX key (cheap for any shape, unlike jax.random)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


_NUMPY_ACTIVATIONS = {
    "relu": lambda z: max(z, 0.0),
    "tanh": np.tanh,
    "softplus": lambda z: np.logaddexp(0.0, z),
    "quadratic": lambda z: z * z,
}


def _two_layer_loop(a, b, x, activation, scale):
    """f(x_i)_c = scale * sum_j b_jc sigma(a_j . x_i), one scalar at a time."""
    sigma = _NUMPY_ACTIVATIONS[activation]
    n, (m, d), k = x.shape[0], a.shape, b.shape[1]
    out = np.zeros((n, k))
    for i in range(n):
        for c in range(k):
            total = 0.0
            for j in range(m):
                pre = sum(a[j, t] * x[i, t] for t in range(d))
                total += b[j, c] * sigma(pre)
            out[i, c] = scale * total
    return out


def _params(key, m=M, d=D, k=K):
    rng = _rng(key)
    return {"a": rng.standard_normal((m, d)), "b": rng.standard_normal((m, k))}


@pytest.mark.parametrize("activation", ["relu", "tanh", "quadratic", "softplus"])
@pytest.mark.parametrize("scaling", ["sqrt", "mean_field"])
def test_two_layer_matches_numpy_loop(getkey, activation, scaling):
    model = gf.models.TwoLayer(M, activation, scaling)
    params = _params(getkey())
    x = _rng(getkey()).standard_normal((N, D))
    scale = 1 / np.sqrt(M) if scaling == "sqrt" else 1 / M
    assert model.output_scale == pytest.approx(scale, rel=1e-15)
    expected = _two_layer_loop(params["a"], params["b"], x, activation, scale)
    got = np.asarray(model(jax.tree_util.tree_map(jnp.asarray, params), jnp.asarray(x)))
    assert got.shape == (N, K)
    # Same sums in another order: 1e-12 relative to the output size.
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_two_layer_callable_activation(getkey):
    model = gf.models.TwoLayer(M, lambda z: jnp.sin(z), "mean_field")
    params = _params(getkey())
    x = _rng(getkey()).standard_normal((N, D))
    expected = np.sin(x @ params["a"].T) @ params["b"] / M
    # Matrix products in numpy: 1e-12 relative.
    np.testing.assert_allclose(np.asarray(model(params, x)), expected, rtol=1e-12, atol=1e-14)


def test_activations_registry():
    z = np.linspace(-3.0, 3.0, 13)
    acts = gf.models.ACTIVATIONS
    assert sorted(acts) == ["quadratic", "relu", "softplus", "tanh"]
    for name, ref in _NUMPY_ACTIVATIONS.items():
        # Elementwise against numpy: 1e-14 relative (0 stays exactly 0 for relu).
        np.testing.assert_allclose(
            np.asarray(acts[name](jnp.asarray(z))), [ref(t) for t in z], rtol=1e-14, atol=0
        )


@pytest.mark.parametrize("input_init", ["normal", "sphere"])
def test_symmetric_init_cancels(getkey, input_init):
    model = gf.models.TwoLayer(M, "tanh")
    params = model.init(getkey(), D, K, doubled=True, input_init=input_init)
    half = M // 2
    a, b = np.asarray(params["a"]), np.asarray(params["b"])
    assert a.shape == (M, D) and b.shape == (M, K)
    # Pairs: equal input weights and exactly opposite output weights.
    np.testing.assert_array_equal(a[:half], a[half:])
    np.testing.assert_array_equal(b[:half], -b[half:])
    assert np.abs(b).min() > 0
    x = _rng(getkey()).standard_normal((N, D))
    out = np.asarray(model(params, x))
    # Exact cancellation up to summation rounding of O(1) terms: 1e-14 absolute.
    assert np.abs(out).max() < 1e-14
    # A non-symmetric init does not cancel: the check above can fail.
    plain = model.init(getkey(), D, K)
    assert np.abs(np.asarray(model(plain, x))).max() > 1e-3


def test_symmetric_init_function():
    params = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([[1.0], [-2.0]])}
    doubled = gf.symmetric_init(params)
    np.testing.assert_array_equal(doubled["a"], np.concatenate([params["a"], params["a"]]))
    np.testing.assert_array_equal(doubled["b"], np.array([[1.0], [-2.0], [-1.0], [2.0]]))
    with pytest.raises(ValueError, match="same number of neurons; got 2 and 3"):
        gf.symmetric_init({"a": np.ones((2, 3)), "b": np.ones((3, 1))})


def test_sphere_init_has_unit_rows(getkey):
    params = gf.models.TwoLayer(M).init(getkey(), D, K, input_init="sphere")
    # Rows normalized by their norm: 1e-15 relative.
    np.testing.assert_allclose(np.linalg.norm(params["a"], axis=1), 1.0, rtol=1e-15)


@pytest.mark.parametrize("doubled", [False, True])
@pytest.mark.parametrize("input_init", ["normal", "sphere"])
def test_init_scale_multiplies_every_parameter(getkey, doubled, input_init):
    model = gf.models.TwoLayer(M, "relu")
    key = getkey()
    base = model.init(key, D, K, doubled=doubled, input_init=input_init)
    for tau in (0.1, 2.5):
        scaled = model.init(key, D, K, doubled=doubled, input_init=input_init, tau=tau)
        for name in ("a", "b"):
            # One multiplication of the same numbers: 1e-15 relative.
            np.testing.assert_allclose(scaled[name], tau * np.asarray(base[name]), rtol=1e-15)


@pytest.mark.parametrize(
    "model, args, old",
    [
        (gf.models.TwoLayer(M), (D, K), {"symmetric": True}),
        (gf.models.TwoLayer(M), (D, K), {"scale": 0.3}),
        (gf.models.TensorDecomposition(), (M, D), {"scale": 0.3}),
        (gf.models.DiagonalNet(3), (D,), {"scale": 0.3}),
        (gf.models.LinearNet(), (D, 2, K), {"scale": 0.3}),
        (gf.models.MatrixCompletion(), (D, 2, K), {"scale": 3}),
    ],
)
def test_init_takes_tau_and_doubled_only(getkey, model, args, old):
    # The init scale is `tau` (the paper's name) and the paired init `doubled`: one spelling.
    (name,) = old
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
        model.init(getkey(), *args, **old)


def test_linear_net_init_scale(getkey):
    model = gf.models.LinearNet()
    key = getkey()
    base = model.init(key, D, 2, K)
    scaled = model.init(key, D, 2, K, tau=3.0)
    assert base["W1"].shape == (D, 2) and base["W2"].shape == (2, K)
    for name in ("W1", "W2"):
        # One multiplication: 1e-15 relative.
        np.testing.assert_allclose(scaled[name], 3.0 * np.asarray(base[name]), rtol=1e-15)


@pytest.mark.parametrize("scaling", ["sqrt", "mean_field"])
def test_relu_two_layer_is_2_homogeneous(getkey, scaling):
    model = gf.models.TwoLayer(M, "relu", scaling)
    params = _params(getkey())
    x = _rng(getkey()).standard_normal((N, D))
    out = np.asarray(model(params, x))
    for tau in (0.1, 3.7, 100.0):
        scaled = jax.tree_util.tree_map(lambda p: tau * p, params)
        # relu(tau z) = tau relu(z) for tau > 0, so f(tau w) = tau^2 f(w): 1e-12 relative.
        np.testing.assert_allclose(
            np.asarray(model(scaled, x)), tau**2 * out, rtol=1e-12, atol=1e-12 * tau**2
        )
    # tanh is not homogeneous: the same identity fails by far (so the check can fail).
    tanh = gf.models.TwoLayer(M, "tanh", scaling)
    scaled = jax.tree_util.tree_map(lambda p: 3.7 * p, params)
    gap = np.abs(np.asarray(tanh(scaled, x)) - 3.7**2 * np.asarray(tanh(params, x))).max()
    assert gap > 1e-2


def test_linear_net_is_matrix_factorization(getkey):
    rng = _rng(getkey())
    w1, w2 = rng.standard_normal((4, 2)), rng.standard_normal((2, 3))
    model = gf.models.LinearNet()
    out = np.asarray(model({"W1": w1, "W2": w2}, np.eye(4)))
    # Identity inputs: f = W1 W2, the same two products in numpy: 1e-14 relative.
    np.testing.assert_allclose(out, w1 @ w2, rtol=1e-14, atol=1e-15)
    x = rng.standard_normal((5, 4))
    np.testing.assert_allclose(
        np.asarray(model({"W1": w1, "W2": w2}, x)), x @ w1 @ w2, rtol=1e-12, atol=1e-14
    )
    # 2-homogeneous in its parameters: f(tau W) = tau^2 f(W), 1e-12 relative.
    scaled = np.asarray(model({"W1": 3.0 * w1, "W2": 3.0 * w2}, np.eye(4)))
    np.testing.assert_allclose(scaled, 9.0 * (w1 @ w2), rtol=1e-12)


def test_matrix_completion_reads_entries_of_the_product(getkey):
    rng = _rng(getkey())
    w1, w2 = rng.standard_normal((4, 2)), rng.standard_normal((2, 3))
    rows, cols = np.array([0, 3, 1, 2, 3]), np.array([2, 0, 1, 1, 2])
    x = gf.models.MatrixCompletion.entries(rows, cols, (4, 3))
    assert x.shape == (5, 7) and np.all(x.sum(axis=1) == 2.0)
    out = np.asarray(gf.models.MatrixCompletion()({"W1": w1, "W2": w2}, x))
    # The entries of the numpy product W1 W2 (a sum of 2 products each): 1e-14 relative.
    assert out.shape == (5, 1)
    np.testing.assert_allclose(out[:, 0], (w1 @ w2)[rows, cols], rtol=1e-14, atol=1e-15)
    with pytest.raises(ValueError, match="same length"):
        gf.models.MatrixCompletion.entries([0, 1], [0], (4, 3))


def test_scalar_square():
    model = gf.models.ScalarSquare()
    params = model.init(-1.5)
    out = np.asarray(model(params, np.zeros((4, 2))))
    # w^2 = 2.25 exactly in binary floating point, repeated for every sample.
    np.testing.assert_array_equal(out, np.full(4, 2.25))
    assert out.dtype == np.float64


def test_two_layer_errors(getkey):
    for width in (0, -3):
        with pytest.raises(ValueError, match=f"`width` must be a positive integer; got {width}"):
            gf.models.TwoLayer(width)
    with pytest.raises(ValueError, match="Unknown activation 'sigmoid'; choose one of"):
        gf.models.TwoLayer(4, "sigmoid")
    with pytest.raises(ValueError, match="`scaling` must be 'sqrt' or 'mean_field'; got 'ntk'"):
        gf.models.TwoLayer(4, "relu", "ntk")
    with pytest.raises(ValueError, match="A doubled init needs an even `width`; got width=5"):
        gf.models.TwoLayer(5).init(getkey(), D, doubled=True)
    with pytest.raises(ValueError, match="`input_init` must be 'normal' or 'sphere'; got 'unif'"):
        gf.models.TwoLayer(4).init(getkey(), D, input_init="unif")


def test_doubled_init_in_a_problem(getkey):
    """A doubled init gives h(w0) = 0 up to rounding, so the centered and uncentered problems
    have the same objective to 1e-14 (an end-to-end use of the model as `apply`)."""
    model = gf.models.TwoLayer(M, "relu")
    params = model.init(getkey(), D, K, doubled=True)
    rng = _rng(getkey())
    x, y = rng.standard_normal((N, D)), rng.standard_normal((N, K))
    plain = gf.Problem(model, params, x, gf.SquareLoss(y), alpha=10.0)
    centered = gf.Problem(model, params, x, gf.SquareLoss(y), alpha=10.0, center=True)
    # F_alpha(w0) = R(0) / alpha^2 = |y|^2 / (2 n alpha^2): 1e-12 relative.
    expected = np.sum(y**2) / (2 * N * 10.0**2)
    np.testing.assert_allclose(float(plain.objective(params)), expected, rtol=1e-12)
    np.testing.assert_allclose(float(centered.objective(params)), expected, rtol=1e-12)


@pytest.mark.parametrize("depth", [2, 3])
def test_diagonal_difference_net_matches_numpy(getkey, depth):
    rng = _rng(getkey())
    u, v, x = rng.uniform(0.2, 1.5, D), rng.uniform(0.2, 1.5, D), rng.standard_normal((N, D))
    model = gf.models.DiagonalDifferenceNet(depth)
    params = {"u": jnp.asarray(u), "v": jnp.asarray(v)}
    beta = u**depth - v**depth
    # One power and one product per entry in numpy: 1e-14 relative.
    np.testing.assert_allclose(np.asarray(model.beta(params)), beta, rtol=1e-14)
    out = np.asarray(model(params, x))
    assert out.shape == (N, 1)
    np.testing.assert_allclose(out[:, 0], x @ beta, rtol=1e-13, atol=1e-14)
    # Positively D-homogeneous: f(tau w) = tau^D f(w), 1e-13 relative.
    scaled = {k: 2.5 * p for k, p in params.items()}
    np.testing.assert_allclose(np.asarray(model(scaled, x)), 2.5**depth * out, rtol=1e-13)
    # Under jit: the same numbers (1e-14), and one trace for two sets of values.
    traces = []

    def traced(p, inputs):
        traces.append(1)
        return model(p, inputs)

    jitted = jax.jit(traced)
    np.testing.assert_allclose(np.asarray(jitted(params, x)), out, rtol=1e-14, atol=1e-15)
    jitted(scaled, x)
    assert len(traces) == 1


def test_diagonal_difference_net_init():
    model = gf.models.DiagonalDifferenceNet(3)
    params = model.init(D, tau=0.4)
    # Symmetric: u = v = tau exactly, so beta(0) = 0 and h(w0) = 0 without centering.
    np.testing.assert_array_equal(params["u"], np.full(D, 0.4))
    np.testing.assert_array_equal(params["v"], params["u"])
    assert np.all(np.asarray(model.beta(params)) == 0.0)
    shape = (np.array([1.0, 2.0, 0.5]), 0.5)
    asym = model.init(D, tau=2.0, shape=shape)
    np.testing.assert_array_equal(asym["u"], [2.0, 4.0, 1.0])
    np.testing.assert_array_equal(asym["v"], np.full(D, 1.0))
    # beta(0) = tau^D (s_u^D - s_v^D): exact in binary for these powers of 2.
    np.testing.assert_array_equal(np.asarray(model.beta(asym)), [7.0, 63.0, 0.0])
    with pytest.raises(ValueError, match="`depth` must be an integer >= 2; got 1"):
        gf.models.DiagonalDifferenceNet(1)
    with pytest.raises(ValueError, match="`tau` must be > 0; got 0.0"):
        model.init(D, tau=0.0)
    with pytest.raises(ValueError, match="`shape` entries must be finite and > 0"):
        model.init(D, shape=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"or have shape \(3,\); got shape \(2,\)"):
        model.init(D, shape=(np.ones(2), 1.0))
    with pytest.raises(ValueError, match="`shape` must be a pair"):
        model.init(D, shape=(1.0,))
    with pytest.raises(TypeError, match="unexpected keyword argument 'scale'"):
        model.init(D, scale=0.3)
