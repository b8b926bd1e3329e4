"""Power-law fits and Student-t quantiles against exact power laws and scipy.stats."""

import math

import numpy as np
import pytest
import scipy.stats
from helpers import numpy_rng

import gradflow as gf


def test_fit_rate_exact_power_law():
    xs = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    for slope, prefactor in ((-1.5, 3.0), (0.5, 0.01), (2.0, 7.0)):
        fit = gf.fit_rate(xs, prefactor * xs**slope)
        # Exact data: only rounding of the logs, 1e-12 absolute.
        assert abs(fit.slope - slope) <= 1e-12
        assert abs(fit.intercept - math.log(prefactor)) <= 1e-12
        assert abs(fit.ci[1] - fit.ci[0]) <= 1e-12  # zero width (to rounding)
        assert fit.ci[0] <= fit.slope <= fit.ci[1]
        assert abs(fit.r2 - 1.0) <= 1e-12
        np.testing.assert_allclose(fit.prefactor, prefactor, rtol=1e-12)
        np.testing.assert_allclose(
            fit.predict([3.0, 5.0]), prefactor * np.array([3.0, 5.0]) ** slope, rtol=1e-12
        )
        assert fit.num_points == 6 and fit.to_dict()["slope"] == fit.slope


def test_fit_rate_two_points_infinite_ci():
    fit = gf.fit_rate([1.0, 10.0], [2.0, 0.2])
    assert abs(fit.slope + 1.0) <= 1e-12  # exact: 1e-12
    assert fit.ci == (-math.inf, math.inf) and fit.stderr == math.inf


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_fit_rate_noisy_matches_scipy(getkey, confidence):
    rng = numpy_rng(getkey())
    xs = np.logspace(0, 3, 9)
    ys = 2.0 * xs**-0.7 * np.exp(0.2 * rng.standard_normal(9))
    fit = gf.fit_rate(xs, ys, confidence=confidence)
    ref = scipy.stats.linregress(np.log(xs), np.log(ys))
    # Same least-squares problem solved by scipy: 1e-10 relative.
    np.testing.assert_allclose(fit.slope, ref.slope, rtol=1e-10)
    np.testing.assert_allclose(fit.intercept, ref.intercept, rtol=1e-10)
    np.testing.assert_allclose(fit.stderr, ref.stderr, rtol=1e-10)
    np.testing.assert_allclose(fit.r2, ref.rvalue**2, rtol=1e-10)
    half = scipy.stats.t.ppf(0.5 + confidence / 2, 7) * ref.stderr
    # Student quantile by bisection (1e-13) times the stderr: 1e-9 relative on the bounds.
    np.testing.assert_allclose(fit.ci, (ref.slope - half, ref.slope + half), rtol=1e-9)
    assert fit.ci[1] - fit.ci[0] > 1e-3  # noisy data: a genuinely non-zero width


@pytest.mark.parametrize("q", [0.01, 0.3, 0.5, 0.75, 0.9, 0.975, 0.999])
def test_student_t_quantile_matches_scipy(q):
    for dof in (1, 2, 3, 7.5, 30, 1000):
        got = gf.student_t_quantile(q, dof)
        # Bisection to 1e-13 on the regularized incomplete beta: 1e-9 absolute on max(1, |t|).
        ref = scipy.stats.t.ppf(q, dof)
        assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref)), (q, dof, got, ref)


def test_student_t_quantile_errors():
    for q in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"`q` must be in \(0, 1\)"):
            gf.student_t_quantile(q, 3)


def test_fit_rate_errors():
    with pytest.raises(ValueError, match="must be finite and > 0"):
        gf.fit_rate([1.0, 2.0, 3.0], [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="must be finite and > 0"):
        gf.fit_rate([1.0, -2.0, 3.0], [1.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="must be finite and > 0"):
        gf.fit_rate([1.0, 2.0, 3.0], [1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="must have the same length; got 3 and 4"):
        gf.fit_rate([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="needs at least two points"):
        gf.fit_rate([1.0], [1.0])
    with pytest.raises(ValueError, match="at least two distinct values"):
        gf.fit_rate([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"`confidence` must be in \(0, 1\)"):
        gf.fit_rate([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], confidence=1.0)
