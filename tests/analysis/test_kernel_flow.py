"""Kernel regression with a given kernel (`gf.kernel_flow`) and with the infinite-width
kernels of two-layer nets (`gf.infinite_width_flow`).

Ground truths: dense numpy solves and scipy `expm`, and a Monte-Carlo average over random inits
of finite nets' linearized models built from `jax.jacrev` Jacobians.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special
import scipy.stats
from jax.flatten_util import ravel_pytree

import gradflow as gf


def _dense_flow(k, kc, q, qc, qt_diag, y, yt, t):
    """The flow with dense matrices: scipy expm at finite t, numpy solves at t = inf."""
    n, n_test = k.shape[0], kc.shape[0]
    if np.isinf(t):
        decay = np.zeros((n, n))
        a = kc @ np.linalg.inv(k)
    else:
        decay = scipy.linalg.expm(-t * k / n)
        a = kc @ np.linalg.solve(k, np.eye(n) - decay)
    train, test = y - decay @ y, a @ y
    cols = y.shape[1]
    train_var = cols * np.trace(decay @ q @ decay.T) / (2 * n)
    test_var = (
        cols * (qt_diag.sum() - 2 * np.trace(a @ qc.T) + np.trace(a @ q @ a.T)) / (2 * n_test)
    )
    return train, test, train_var, test_var


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_infinite_width_flow_against_dense_solves(activation):
    """Predictions, losses and variance terms against `_dense_flow` (scipy `expm`, numpy
    inverse), two output columns, t from 0 to inf: 1e-9 relative."""
    rng = np.random.default_rng(4)
    x, xt = rng.standard_normal((12, 3)), rng.standard_normal((7, 3))
    y, yt = rng.standard_normal((12, 2)), rng.standard_normal((7, 2))
    ts = [0.0, 0.5, 20.0, 3000.0, np.inf]
    kw = dict(activation=activation, input_var=0.6, output_var=1.4)
    res = gf.infinite_width_flow(x, y, xt, yt, ts, alpha=1.7, **kw)
    k, q = (np.asarray(a) for a in gf.infinite_width_kernels(x, **kw))
    kc, qc = (np.asarray(a) for a in gf.infinite_width_kernels(xt, x, **kw))
    qt = np.diag(np.asarray(gf.infinite_width_nngp(xt, **kw)))
    q, qc, qt = 1.7**2 * q, 1.7**2 * qc, 1.7**2 * qt
    assert res.num_zero_eigenvalues == 0
    for i, t in enumerate(ts):
        train, test, train_var, test_var = _dense_flow(k, kc, q, qc, qt, y, yt, t)
        close = dict(rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.train_predictions[i], train, **close)
        np.testing.assert_allclose(res.test_predictions[i], test, **close)
        np.testing.assert_allclose(res.train_loss[i], np.sum((train - y) ** 2) / 24, **close)
        np.testing.assert_allclose(res.test_loss[i], np.sum((test - yt) ** 2) / 14, **close)
        np.testing.assert_allclose(res.train_variance[i], train_var, **close)
        np.testing.assert_allclose(res.test_variance[i], test_var, **close)
    doubled = gf.infinite_width_flow(x, y, xt, yt, ts, doubled=True, **kw)
    np.testing.assert_array_equal(doubled.test_variance, 0.0)
    np.testing.assert_allclose(doubled.test_loss, res.test_loss, rtol=1e-12)


def test_kernel_flow_singular_kernel():
    """A repeated training input makes K singular: at t = inf the mean predictor is the
    minimum-norm solution, K(X*, X) K^+ y (numpy pinv), and one eigenvalue is cut."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 3))
    x[5] = x[2]
    xt = rng.standard_normal((4, 3))
    y, yt = rng.standard_normal(6), rng.standard_normal(4)
    k = np.asarray(gf.infinite_width_ntk(x))
    kc = np.asarray(gf.infinite_width_ntk(xt, x))
    res = gf.kernel_flow(k, kc, y, yt, [np.inf], rcond=1e-10)
    assert res.num_zero_eigenvalues == 1
    assert res.test_predictions.shape == (1, 4)
    expected = kc @ np.linalg.pinv(k, rcond=1e-10, hermitian=True) @ y
    np.testing.assert_allclose(res.test_predictions[0], expected, rtol=1e-9, atol=1e-12)


def _finite_net_losses(activation, width, seeds, x, y, xt, yt, ts):
    """Test losses of the linearized model of TwoLayer(width, activation, "sqrt") (weights
    a ~ N(0, I/d), b ~ N(0, 1) as TwoLayer.init, not doubled, alpha = 1) over `seeds` random
    inits: Jacobians by `jax.jacrev`, the flow of each net's own kernel K_m from its own f0,
    f(t) = f0 + K_m(X*, X) K_m^{-1} (I - e^{-t K_m / n}) (y - f0), by numpy (batched eigh)."""
    model = gf.models.TwoLayer(width, activation, "sqrt")
    (n, d), rng = x.shape, np.random.default_rng(7)
    params = {
        "a": jnp.asarray(rng.standard_normal((seeds, width, d)) / math.sqrt(d)),
        "b": jnp.asarray(rng.standard_normal((seeds, width, 1))),
    }

    def one(p):
        flat, unravel = ravel_pytree(p)

        def f(v, inputs):
            return model(unravel(v), inputs)[:, 0]

        j, jt = jax.jacrev(f)(flat, x), jax.jacrev(f)(flat, xt)
        return f(flat, x), f(flat, xt), j @ j.T, jt @ j.T

    outs = jax.jit(lambda ps: jax.lax.map(one, ps, batch_size=100))(params)
    f0, f0t, k, kc = (np.asarray(a) for a in outs)
    lam, vec = np.linalg.eigh(k)
    c0 = np.einsum("sji,sj->si", vec, y[None, :] - f0)
    losses = []
    for t in ts:
        phi = 1.0 / lam if np.isinf(t) else -np.expm1(-t * lam / n) / lam
        move = np.einsum("sij,sj->si", vec, phi * c0)
        pred = f0t + np.einsum("sij,sj->si", kc, move)
        losses.append(0.5 * np.mean((pred - yt[None, :]) ** 2, axis=1))
    return np.stack(losses, axis=1)  # (seeds, len(ts))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_expected_test_loss_against_finite_nets(activation):
    """The expected test loss (mean predictor plus the GP variance term) against the average
    over 1000 random inits of width-1024 nets' linearized models, within 4 Monte-Carlo standard
    errors. The finite-width bias is O(1/m); over five other weight seeds the deviation stayed
    within 1.8 standard errors, while the variance term is about 20 standard errors (leaving it
    out, or a factor 2 in it, fails)."""
    rng = np.random.default_rng(3)
    x, xt = rng.standard_normal((8, 4)), rng.standard_normal((6, 4))
    w = rng.standard_normal(4) / 2.0
    y, yt = np.tanh(x @ w), np.tanh(xt @ w)
    ts = [2.0, np.inf]
    losses = _finite_net_losses(activation, 1024, 1000, jnp.asarray(x), y, jnp.asarray(xt), yt, ts)
    mc, se = losses.mean(axis=0), losses.std(axis=0, ddof=1) / math.sqrt(losses.shape[0])
    res = gf.infinite_width_flow(x, y, xt, yt, ts, activation=activation, input_var=0.25)
    expected = np.asarray(res.expected_test_loss)
    assert np.all(np.abs(mc - expected) < 4 * se), (mc, expected, se)
    assert np.all(np.asarray(res.test_variance) > 10 * se), (res.test_variance, se)


def test_kernel_flow_errors():
    k = np.eye(3)
    kc = np.ones((2, 3))
    y, yt = np.zeros(3), np.zeros(2)
    with pytest.raises(ValueError, match="`kernel_train` must be a square"):
        gf.kernel_flow(np.ones((3, 2)), kc, y, yt, [1.0])
    with pytest.raises(ValueError, match="`kernel_train` must be symmetric"):
        gf.kernel_flow(np.triu(np.ones((3, 3))), kc, y, yt, [1.0])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        gf.kernel_flow(-k, kc, y, yt, [1.0])
    with pytest.raises(ValueError, match=r"`kernel_test_train` must have shape \(2, 3\)"):
        gf.kernel_flow(k, np.ones((2, 4)), y, yt, [1.0])
    with pytest.raises(ValueError, match=r"`y_train` must have shape \(3,\)"):
        gf.kernel_flow(k, kc, np.zeros(4), yt, [1.0])
    with pytest.raises(ValueError, match=r"`y_test` must have shape \(2, 2\)"):
        gf.kernel_flow(k, kc, np.zeros((3, 2)), yt, [1.0])
    with pytest.raises(ValueError, match="`ts` must be"):
        gf.kernel_flow(k, kc, y, yt, [-1.0])
    with pytest.raises(ValueError, match="Pass all of `init_cov_train`"):
        gf.kernel_flow(k, kc, y, yt, [1.0], init_cov_train=k)
    with pytest.raises(ValueError, match="`alpha` must be a finite number > 0"):
        gf.infinite_width_flow(np.ones((3, 2)), y, np.ones((2, 2)), yt, [1.0], alpha=0.0)
    with pytest.raises(ValueError, match="`x_train` and `x_test` must have the same"):
        gf.infinite_width_flow(np.ones((3, 2)), y, np.ones((2, 3)), yt, [1.0])
