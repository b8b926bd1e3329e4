"""The spectral and Lipschitz estimators behind the checks (`gf.tangent_spectrum`,
`gf.parameter_spectrum`, `gf.lipschitz_dh`), against materialized Jacobians and Hessians
(`jax.jacobian`, `jax.hessian`, numpy `eigvalsh`) and a quadratic model's constant D^2 h."""

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf


def _jacobian(problem):
    w0, unravel = ravel_pytree(problem.params0)
    return np.asarray(jax.jacobian(lambda w: problem.h(unravel(w)).reshape(-1))(w0))


def test_tangent_and_parameter_spectra_match_materialized_matrices():
    problem = gf.check.two_layer(samples=6, dim=3, width=4).problem
    jac = _jacobian(problem)  # (N, p), reference only
    n = problem.loss.targets.shape[0]
    ref = np.linalg.eigvalsh(jac @ jac.T / n)
    spec = gf.tangent_spectrum(problem)
    assert spec.exact
    np.testing.assert_allclose(spec.eigenvalues, ref, rtol=1e-9, atol=1e-14 * ref[-1])
    pspec = gf.parameter_spectrum(problem)
    assert pspec.rank == 6 and pspec.exact
    assert pspec.smallest_nonzero == pytest.approx(ref[0], rel=1e-7)
    # Hessian of F_alpha away from w0 (centering unchanged): jax.hessian as reference.
    pa = problem.with_alpha(3.0)
    w0, unravel = ravel_pytree(pa.params0)
    w1 = w0 + 0.1 * jax.random.normal(jax.random.PRNGKey(3), w0.shape)
    hess = np.asarray(jax.hessian(lambda w: pa.objective(unravel(w)))(w1))
    hspec = gf.parameter_spectrum(pa, unravel(w1), hessian=True)
    np.testing.assert_allclose(
        hspec.eigenvalues, np.linalg.eigvalsh(hess), rtol=1e-8, atol=1e-10 * np.abs(hess).max()
    )


def test_lipschitz_estimate_is_constant_for_a_quadratic_model():
    # Matrix factorization is quadratic: D^2 h is the same everywhere, so every sampled point
    # gives the same norm, and it equals the norm at w0 from scale_criterion.
    problem = gf.check.matrix_factorization().problem
    est = gf.lipschitz_dh(problem, 0.5, num_points=2)
    np.testing.assert_allclose(est.values, est.values[0], rtol=1e-6)
    assert est.value == pytest.approx(gf.scale_criterion(problem).hessian_norm, rel=1e-6)
    with pytest.raises(ValueError, match="radius"):
        gf.lipschitz_dh(problem, -1.0)
