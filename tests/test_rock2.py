"""ROCK2: the coefficient tables."""

import numpy as np
import pytest

from gradflow import _rock2_tables as tables

DEGREES = [m + 2 for m in tables.MS]


def _coefficients(k):
    """The recurrence coefficients of the k-th tabulated degree, read straight off the table."""
    start = sum(2 * m - 1 for m in tables.MS[:k])
    r = tables.RECF[start : start + 2 * tables.MS[k] - 1]
    return r[0], r[1::2], r[2::2], tables.FP1[k], tables.FP2[k]


def _stability_polynomial(k, z):
    """$R(z)$ of the k-th degree by the recurrence in numpy, pointwise (no power basis, which
    cancels catastrophically at these degrees)."""
    mu1, mu, kappa, sigma, tau = _coefficients(k)
    r_prev, r = np.ones_like(z), 1.0 + mu1 * z
    for mu_i, kappa_i in zip(mu, kappa):
        r_prev, r = r, mu_i * z * r + (1.0 + kappa_i) * r - kappa_i * r_prev
    return r * (1.0 + 2.0 * sigma * z + sigma * (sigma + tau) * z**2)


def _taylor3(k):
    """The first three Taylor coefficients of $R$ at 0, by truncated polynomial arithmetic."""
    mu1, mu, kappa, sigma, tau = _coefficients(k)
    shift = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # times z, truncated
    p_prev, p = np.array([1.0, 0.0, 0.0]), np.array([1.0, mu1, 0.0])
    for mu_i, kappa_i in zip(mu, kappa):
        p_prev, p = p, mu_i * shift @ p + (1.0 + kappa_i) * p - kappa_i * p_prev
    return np.convolve(p, [1.0, 2.0 * sigma, sigma * (sigma + tau)])[:3]


def test_table_layout():
    assert len(tables.MS) == len(tables.FP1) == len(tables.FP2) == 46
    assert len(tables.STABILITY_BOUNDS) == 46
    assert len(tables.RECF) == sum(2 * m - 1 for m in tables.MS)
    assert list(tables.MS) == sorted(set(tables.MS))
    assert DEGREES[0] == 3 and DEGREES[-1] == 200


@pytest.mark.parametrize("k", range(46))
def test_second_order_conditions(k):
    # R(0) = 1, R'(0) = 1, R''(0) = 1: Taylor coefficients 1, 1, 1/2, to 1e-13 absolute.
    np.testing.assert_allclose(_taylor3(k), [1.0, 1.0, 0.5], rtol=0, atol=1e-13)


@pytest.mark.parametrize("k", range(46))
def test_stability_interval(k):
    s = DEGREES[k]
    bound = tables.STABILITY_BOUNDS[k]
    # |R| <= 1 on [-l_s, 0] on a grid of Chebyshev points, about 40 per oscillation of R
    # (its roots cluster at the ends of the interval, as those of a Chebyshev polynomial do).
    theta = np.linspace(0.0, np.pi, 40 * s + 1)
    z = -0.5 * bound * (1.0 - np.cos(theta))
    assert np.max(np.abs(_stability_polynomial(k, z))) <= 1.0 + 1e-12
    # l_s is sharp: just beyond it, |R| > 1.
    assert np.abs(_stability_polynomial(k, np.array([-bound * (1 + 1e-5)])))[0] > 1.0
    # l_s ~ 0.81 s^2 (Abdulle and Medovikov 2001): 0.685 s^2 at s = 3, then increasing to 0.81.
    assert 0.68 * s**2 <= bound <= 0.811 * s**2
    if s >= 50:
        assert bound >= 0.809 * s**2
