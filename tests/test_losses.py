r"""Losses: values against numpy formulas, gradients against closed forms and finite
differences, and the stated smoothness / strong convexity in the empirical norm of F.

In $F = \mathbb{R}^{n \times k}$ with $\|f\|_F^2 = \frac1n \sum_i \|f_i\|^2$ the
$F$-gradient is `n` times the Euclidean gradient and the $F$-Hessian (an operator on F,
self-adjoint in the F inner product) is `n` times the Euclidean Hessian; its largest eigenvalue
is the local smoothness and its smallest the local strong-convexity modulus.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

# Jitted once per (loss type, shape) for the whole module: eager JAX compiles every primitive
# for every new shape, which dominates the run time on 2 cores.
_value = eqx.filter_jit(lambda loss, f: loss(f))
_grad = eqx.filter_jit(lambda loss, f: loss.grad(f))
_autograd = eqx.filter_jit(lambda loss, f: jax.grad(loss)(f))
_hessian = eqx.filter_jit(lambda loss, f: jax.hessian(loss)(f))


def _rng(key):
    """A numpy generator seeded by a JAX key (cheap for any shape, unlike jax.random)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def _normal(key, shape):
    return _rng(key).standard_normal(shape)


def _softplus_np(z):
    return np.logaddexp(0.0, z)


def _log_softmax_np(f):
    shifted = f - f.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _labels(key, shape):
    return np.where(_rng(key).random(shape) < 0.5, 1.0, -1.0)


def _one_hot(key, n, k):
    return np.eye(k)[_rng(key).integers(0, k, n)]


def _f_hessian_eigs(loss, f):
    """Eigenvalues of the F-metric Hessian `n * d^2R/df^2`, materialized by jax.hessian."""
    n = f.shape[0]
    hess = np.asarray(_hessian(loss, jnp.asarray(f))).reshape(f.size, f.size)
    return np.linalg.eigvalsh(n * hess)


def _central_difference_grad(value, f, eps=1e-6):
    """Central finite differences of a numpy scalar function, entry by entry."""
    f = np.asarray(f, float)
    out = np.zeros_like(f)
    for idx in np.ndindex(f.shape):
        e = np.zeros_like(f)
        e[idx] = eps
        out[idx] = (value(f + e) - value(f - e)) / (2 * eps)
    return out


def _losses(key):
    """One instance of each loss with numpy hand formulas, outputs shape (n, k)."""
    k1, k2, k3 = jax.random.split(key, 3)
    n, k = 5, 3
    y_sq = _normal(k1, (n, k))
    y_lg = _labels(k2, (n, k))
    y_ce = _one_hot(k3, n, k)
    return [
        (gf.SquareLoss(y_sq), lambda f: 0.5 * np.sum((f - y_sq) ** 2) / n),
        (gf.LogisticLoss(y_lg), lambda f: np.sum(_softplus_np(-y_lg * f)) / n),
        (gf.CrossEntropyLoss(y_ce), lambda f: -np.sum(y_ce * _log_softmax_np(f)) / n),
    ]


def test_values_match_numpy(getkey):
    for loss, value in _losses(getkey()):
        for scale in (0.1, 1.0, 10.0):
            f = scale * _normal(getkey(), loss.targets.shape)
            # Same formula in numpy; only summation order differs: 1e-12 relative.
            np.testing.assert_allclose(float(_value(loss, jnp.asarray(f))), value(f), rtol=1e-12)


def test_values_1d_outputs(getkey):
    y = _normal(getkey(), (7,))
    f = _normal(getkey(), (7,))
    # 1/(2n) sum (f_i - y_i)^2 with n = 7: 1e-13 relative.
    np.testing.assert_allclose(
        float(gf.SquareLoss(y)(jnp.asarray(f))), np.sum((f - y) ** 2) / 14, rtol=1e-13
    )
    labels = _labels(getkey(), (7,))
    np.testing.assert_allclose(
        float(gf.LogisticLoss(labels)(jnp.asarray(f))),
        np.sum(np.log1p(np.exp(-labels * f))) / 7,
        rtol=1e-13,
    )


def test_logistic_value_at_zero_and_large_margin():
    y = np.array([1.0, -1.0, 1.0, -1.0])
    loss = gf.LogisticLoss(y)
    # At f = 0 every term is log 2 exactly (up to rounding): 1e-15 relative.
    np.testing.assert_allclose(float(loss(jnp.zeros(4))), np.log(2.0), rtol=1e-15)
    # Huge correct margins: no overflow, value ~ exp(-margin) (softplus(-50) = e^{-50}
    # to 1e-21 relative); a naive log(1 + exp(.)) would return exactly 0.
    np.testing.assert_allclose(float(loss(jnp.asarray(50.0 * y))), np.exp(-50.0), rtol=1e-12)
    # Huge wrong margins: linear growth, not inf: softplus(1000) = 1000 exactly in float64.
    assert float(loss(jnp.asarray(-1000.0 * y))) == 1000.0


def test_cross_entropy_stable_for_large_logits():
    y = np.eye(3)[[0, 2]]
    f = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    # Row 1: -log softmax = 0 (exactly in float64); row 2: log 3. Mean over n = 2: 1e-14.
    np.testing.assert_allclose(
        float(gf.CrossEntropyLoss(y)(jnp.asarray(f))), np.log(3.0) / 2, rtol=1e-14
    )


def test_grad_closed_forms(getkey):
    n, k = 6, 2
    f = _normal(getkey(), (n, k))
    y = _normal(getkey(), (n, k))
    labels = _labels(getkey(), (n, k))
    onehot = _one_hot(getkey(), n, k)
    sigmoid = 1.0 / (1.0 + np.exp(labels * f))  # sigma(-y f)
    softmax = np.exp(_log_softmax_np(f))
    expected = [
        (gf.SquareLoss(y), (f - y) / n),
        (gf.LogisticLoss(labels), -labels * sigmoid / n),
        (gf.CrossEntropyLoss(onehot), (softmax - onehot) / n),
    ]
    for loss, grad in expected:
        # Closed-form Euclidean gradients (with the 1/n): 1e-12 relative, 1e-15 absolute.
        np.testing.assert_allclose(
            np.asarray(_grad(loss, jnp.asarray(f))), grad, rtol=1e-12, atol=1e-15
        )
        # The overridden `grad` (SquareLoss) agrees with autodiff of the value: same tolerance.
        np.testing.assert_allclose(
            np.asarray(_grad(loss, jnp.asarray(f))),
            np.asarray(_autograd(loss, jnp.asarray(f))),
            rtol=1e-12,
            atol=1e-15,
        )


def test_grad_finite_differences(getkey):
    for loss, value in _losses(getkey()):
        f = _normal(getkey(), loss.targets.shape)
        fd = _central_difference_grad(value, f)
        # Central differences with eps = 1e-6 on O(1) smooth functions: truncation ~eps^2 and
        # rounding ~1e-16/eps = 1e-10, so 1e-8 absolute.
        np.testing.assert_allclose(np.asarray(_grad(loss, jnp.asarray(f))), fd, atol=1e-8)


def test_f_gradient_is_n_times_euclidean(getkey):
    """Directional derivative in F: dR(f)[g] = <grad_F R, g>_F = (1/n) sum_i grad_F_i . g_i."""
    for loss, value in _losses(getkey()):
        n = loss.targets.shape[0]
        f = _normal(getkey(), loss.targets.shape)
        g = _normal(getkey(), loss.targets.shape)
        eps = 1e-6
        directional = (value(f + eps * g) - value(f - eps * g)) / (2 * eps)
        grad_f = n * np.asarray(_grad(loss, jnp.asarray(f)))
        # Central difference error ~1e-10 on O(1) values: 1e-8 absolute.
        np.testing.assert_allclose(np.sum(grad_f * g) / n, directional, atol=1e-8)


def test_square_loss_constants(getkey):
    y = _normal(getkey(), (4, 2))
    loss = gf.SquareLoss(y)
    assert loss.smoothness == 1.0
    assert loss.strong_convexity == 1.0
    eigs = _f_hessian_eigs(loss, _normal(getkey(), (4, 2)))
    # The F-Hessian is the identity: every eigenvalue is 1, so M = m = 1 (1e-12 absolute).
    np.testing.assert_allclose(eigs, 1.0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(loss.minimizer), np.asarray(y))


@pytest.mark.parametrize("k", [1, 3])
def test_logistic_smoothness(getkey, k):
    n = 4
    loss = gf.LogisticLoss(_labels(getkey(), (n, k)))
    assert loss.smoothness == 0.25
    assert loss.strong_convexity is None
    for scale in (0.3, 1.0, 3.0):
        eigs = _f_hessian_eigs(loss, scale * _normal(getkey(), (n, k)))
        # sigma'(z) <= 1/4 with equality only at z = 0: strictly below M away from 0, >= 0.
        assert eigs.max() <= loss.smoothness + 1e-14
        assert eigs.min() >= -1e-14
    # Attained at f = 0: sigma'(0) = 1/4 on every coordinate (1e-14 absolute).
    eigs0 = _f_hessian_eigs(loss, jnp.zeros((n, k)))
    np.testing.assert_allclose(eigs0, 0.25, atol=1e-14)
    # Not strongly convex: at large margins the curvature vanishes (sigma'(40) ~ 4e-18).
    eigs_far = _f_hessian_eigs(loss, 40.0 * loss.targets)
    assert eigs_far.max() < 1e-15


@pytest.mark.parametrize("k", [2, 3, 5])
def test_cross_entropy_smoothness(getkey, k):
    n = 3
    loss = gf.CrossEntropyLoss(_one_hot(getkey(), n, k))
    assert loss.smoothness == 0.5
    assert loss.strong_convexity is None
    best = 0.0
    for scale in (0.1, 1.0, 3.0, 10.0):
        for _ in range(3):
            eigs = _f_hessian_eigs(loss, scale * _normal(getkey(), (n, k)))
            # lambda_max(diag(p) - p p^T) <= 1/2 for every p on the simplex; PSD.
            assert eigs.max() <= loss.smoothness + 1e-14
            assert eigs.min() >= -1e-14
            best = max(best, eigs.max())
    assert best > 0.1  # the random points are not all degenerate (rules out a zero Hessian)
    # Two equal largest logits and the rest far below: p -> (1/2, 1/2, 0, ...), the sup 1/2.
    f = np.full((n, k), -40.0)
    f[:, :2] = 0.0
    # The other classes carry mass ~e^{-40} ~ 4e-18: 1e-14 absolute.
    np.testing.assert_allclose(_f_hessian_eigs(loss, jnp.asarray(f)).max(), 0.5, atol=1e-14)


def test_cross_entropy_sup_attained_k2_equal_logits(getkey):
    loss = gf.CrossEntropyLoss(_one_hot(getkey(), 4, 2))
    f = np.repeat(_normal(getkey(), (4, 1)), 2, axis=1)
    eigs = _f_hessian_eigs(loss, f)
    # p = (1/2, 1/2): diag(p) - pp^T has eigenvalues {0, 1/2} in every block (1e-14 absolute).
    np.testing.assert_allclose(np.sort(eigs), [0.0] * 4 + [0.5] * 4, atol=1e-14)


def test_gradient_lipschitz_in_f_norm(getkey):
    """||grad_F R(f) - grad_F R(g)||_F <= M ||f - g||_F, and >= m ||f - g||_F for the square
    loss, at random pairs: the definition of the constants, independently of Hessians."""
    for loss, _ in _losses(getkey()):
        n = loss.targets.shape[0]
        ratios = []
        for scale in (0.1, 1.0, 5.0):
            f = scale * _normal(getkey(), loss.targets.shape)
            g = f + 0.5 * _normal(getkey(), loss.targets.shape)
            diff = n * (
                np.asarray(_grad(loss, jnp.asarray(f))) - np.asarray(_grad(loss, jnp.asarray(g)))
            )
            ratios.append(
                np.sqrt(np.sum(diff**2) / n) / np.sqrt(np.sum(np.asarray(f - g) ** 2) / n)
            )
        # Rounding only: 1e-12 relative slack.
        assert max(ratios) <= loss.smoothness * (1 + 1e-12)
        if loss.strong_convexity is not None:
            assert min(ratios) >= loss.strong_convexity * (1 - 1e-12)


def test_integer_targets_are_cast_to_float():
    assert jnp.issubdtype(gf.SquareLoss(np.array([1, 2, 3])).targets.dtype, jnp.floating)
    assert jnp.issubdtype(gf.LogisticLoss(np.array([1, -1])).targets.dtype, jnp.floating)
    assert jnp.issubdtype(gf.CrossEntropyLoss(np.eye(2, dtype=int)).targets.dtype, jnp.floating)


@pytest.mark.parametrize("cls", [gf.SquareLoss, gf.LogisticLoss, gf.CrossEntropyLoss])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_targets_raise(cls, bad):
    y = np.array([[1.0, -1.0], [-1.0, 1.0]])
    y[1, 0] = bad
    with pytest.raises(ValueError, match="`targets` contains NaN or inf values"):
        cls(y)


def test_logistic_targets_must_be_signs():
    with pytest.raises(ValueError, match=r"must be labels in \{-1, \+1\}.*`2 \* y - 1`"):
        gf.LogisticLoss(np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"must be labels in \{-1, \+1\}"):
        gf.LogisticLoss(np.array([1.0, -1.0, 0.5]))


def test_scalar_targets_raise():
    with pytest.raises(ValueError, match="must have a leading sample axis"):
        gf.SquareLoss(1.0)
    with pytest.raises(ValueError, match="must have a leading sample axis"):
        gf.LogisticLoss(1.0)


@pytest.mark.parametrize("shape", [(4,), (2, 2, 2), ()])
def test_cross_entropy_targets_must_be_2d(shape):
    with pytest.raises(ValueError, match=r"must be one-hot of shape \(n, k\).*jax.nn.one_hot"):
        gf.CrossEntropyLoss(np.zeros(shape))


def test_empirical_norm(getkey):
    f = _normal(getkey(), (5, 3))
    # sqrt((1/n) sum_i ||f_i||^2) with n = 5 in numpy: 1e-14 relative.
    np.testing.assert_allclose(
        float(gf.empirical_norm(jnp.asarray(f))),
        np.sqrt(np.mean(np.sum(f**2, axis=1))),
        rtol=1e-14,
    )


@pytest.mark.parametrize(
    "targets",
    [
        np.array([[0], [2], [1], [1]]),  # class indices in a column, the usual labels
        np.array([[1.0], [1.0], [1.0]]),  # one class: softmax is 1, the loss is 0 for any f
    ],
)
def test_cross_entropy_refuses_class_indices(targets):
    # Read as one-hot, an (n, 1) column makes the loss identically 0: the solve "succeeds" and
    # the parameters never move. It is refused, naming both ways to pass labels.
    with pytest.raises(
        ValueError,
        match=r"`targets` of CrossEntropyLoss have shape \(\d, 1\).*one class.*"
        r"`gf\.CrossEntropyLoss\.from_labels\(labels, num_classes\)`.*`jax\.nn\.one_hot",
    ):
        gf.CrossEntropyLoss(targets)


@pytest.mark.parametrize(
    "targets, message",
    [
        (np.array([[1.0, 0.0], [0.0, 2.0]]), r"row 1 sums to 2\.0"),
        (np.array([[1, 0, 0], [0, 0, 0]]), r"row 1 sums to 0\.0"),
        (np.array([[0.5, 0.5], [1.5, -0.5]]), r"row 1 has a negative entry, -0\.5"),
    ],
)
def test_cross_entropy_targets_must_be_probability_rows(targets, message):
    with pytest.raises(ValueError, match=r"must be probability vectors.*" + message):
        gf.CrossEntropyLoss(targets)


def test_cross_entropy_accepts_soft_labels_within_rounding():
    # Label smoothing in float32: each row sums to 1 up to float32 rounding (~1e-7), accepted.
    k = 10
    smooth = (
        np.full((3, k), 0.1 / k, np.float32) + np.float32(0.9) * np.eye(k, dtype=np.float32)[:3]
    )
    assert abs(float(smooth.sum(axis=1)[0]) - 1.0) > 0  # not exactly 1
    loss = gf.CrossEntropyLoss(smooth)
    # The value against numpy's formula at f = 0: log k per row (1e-6, float32 targets).
    np.testing.assert_allclose(float(loss(jnp.zeros((3, k)))), np.log(k), rtol=1e-6)


def test_cross_entropy_from_labels():
    labels = np.array([2, 0, 1, 2])
    expected = np.eye(3)[labels]  # numpy's one-hot, independent of jax.nn.one_hot
    for given in (labels, labels[:, None], labels.astype(float), jnp.asarray(labels)):
        loss = gf.CrossEntropyLoss.from_labels(given, 3)
        assert isinstance(loss, gf.CrossEntropyLoss)
        np.testing.assert_array_equal(np.asarray(loss.targets), expected)
        assert jnp.issubdtype(loss.targets.dtype, jnp.floating)
    with pytest.raises(ValueError, match=r"`labels` must be class indices in \[0, 3\); got 3"):
        gf.CrossEntropyLoss.from_labels(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match=r"`labels` must be class indices in \[0, 3\); got -1"):
        gf.CrossEntropyLoss.from_labels(np.array([0, -1]), 3)
    with pytest.raises(ValueError, match=r"`labels` must be whole numbers; got 0\.5"):
        gf.CrossEntropyLoss.from_labels(np.array([0.5, 1.0]), 3)
    with pytest.raises(ValueError, match=r"`labels` must have shape \(n,\) or \(n, 1\)"):
        gf.CrossEntropyLoss.from_labels(np.eye(3), 3)
    for bad in (1, 2.5, True, "3"):
        with pytest.raises(ValueError, match=r"`num_classes` must be an integer >= 2"):
            gf.CrossEntropyLoss.from_labels(labels, bad)


def test_cross_entropy_checks_values_only_when_concrete():
    # Under a trace the values are unknown: the shape is checked, the rows are not (as for
    # `_check_finite`). The traced loss equals the eager one (exactly: the same arrays).
    onehot = np.eye(3)[[0, 2]]
    traced = jax.jit(lambda y: gf.CrossEntropyLoss(y).targets)(jnp.asarray(onehot))
    np.testing.assert_array_equal(np.asarray(traced), onehot)
    labels = jax.jit(lambda y: gf.CrossEntropyLoss.from_labels(y, 3).targets)(jnp.array([0, 2]))
    np.testing.assert_array_equal(np.asarray(labels), onehot)
