"""The diagnostics: tangent kernel, kernel drift, operator norms and the scale criterion, also
in float32 and on non-finite models.

Ground truths: Jacobians and Hessians materialized with `jax.jacfwd` / `jax.hessian` (a code
path independent of the library's matrix-free JVP/VJP power iterations), numpy linear algebra,
and a brute-force maximization refined with scipy.optimize.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from helpers import empirical_fnorm, materialized_jacobian, numpy_rng, small_problem
from jax.flatten_util import ravel_pytree

import gradflow as gf


def _quadratic_plus_sine(params, inputs):
    """h_i(w) = 1/2 w^T A_i w + s_i sin(b_i . w), outputs of shape (len(A),), with Hessian
    A_i - s_i sin(b_i . w) b_i b_i^T. The coefficients travel in `inputs`, so one compilation
    serves every instance of the same shape."""
    w = params["w"]
    quad = 0.5 * jnp.einsum("j,ijk,k->i", w, inputs["mats"], w)
    return quad + inputs["amps"] * jnp.sin(inputs["vecs"] @ w)


_hessians = jax.jit(jax.hessian(lambda w, inputs: _quadratic_plus_sine({"w": w}, inputs)))


def _quadratic_problem(rng, mats, amps):
    n, p, _ = mats.shape
    inputs = {"mats": mats, "vecs": rng.standard_normal((n, p)), "amps": amps}
    params = {"w": rng.standard_normal(p)}
    problem = gf.Problem(_quadratic_plus_sine, params, inputs, gf.SquareLoss(np.zeros(n)))
    # The (n, p, p) Hessians of the n outputs, materialized by forward-over-reverse autodiff.
    return problem, np.asarray(_hessians(problem.params0["w"], problem.inputs))


# ------------------------------------------------------------------------ tangent kernel


def _first_output(model):
    return lambda params, x: model(params, x)[:, 0]


@pytest.mark.parametrize("k", [None, 2])
def test_tangent_kernel_matches_jacobian(getkey, k):
    problem = small_problem(getkey(), k=1 if k is None else k, center=False)
    if k is None:  # outputs of shape (n,)
        y = problem.loss.targets[:, 0]
        apply = _first_output(problem.apply)
        problem = gf.Problem(apply, problem.params0, problem.inputs, gf.SquareLoss(y))
    kernel = np.asarray(gf.tangent_kernel(problem, batch_size=4))  # N = 6 or 12: a remainder
    jac = materialized_jacobian(problem)
    expected = jac @ jac.T
    assert kernel.shape == expected.shape == (jac.shape[0],) * 2
    # Gram matrix of the same derivatives by another route: 1e-10 relative to its norm.
    np.testing.assert_allclose(kernel, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    np.testing.assert_array_equal(kernel, kernel.T)
    eigs = np.linalg.eigvalsh(kernel)
    assert eigs.min() >= -1e-12 * eigs.max()


def test_tangent_kernel_at_other_params(getkey):
    problem = small_problem(getkey(), k=2)
    w0, unravel = ravel_pytree(problem.params0)
    params = unravel(w0 + 0.5 * numpy_rng(getkey()).standard_normal(w0.size))
    kernel = np.asarray(gf.tangent_kernel(problem, params))
    jac = materialized_jacobian(problem, params)
    # K(w) = Dh(w) Dh(w)^T at w != w0: 1e-10 relative.
    np.testing.assert_allclose(kernel, jac @ jac.T, rtol=0, atol=1e-10 * np.abs(kernel).max())
    # kernel_drift is the relative spectral-norm change, here recomputed from jacfwd.
    k0 = materialized_jacobian(problem)
    k0 = k0 @ k0.T
    expected = np.linalg.norm(jac @ jac.T - k0, 2) / np.linalg.norm(k0, 2)
    assert expected > 1e-2  # the kernel moved: the comparison is not 0 == 0
    np.testing.assert_allclose(gf.kernel_drift(problem, params), expected, rtol=1e-8)


# ------------------------------------------------------------------ operator norms, kappa


def test_jacobian_norm_matches_spectral_norm(getkey):
    problem = small_problem(getkey(), k=2, center=False)
    jac = materialized_jacobian(problem)
    n = 6
    expected = np.linalg.norm(jac / np.sqrt(n), 2)
    jac_norm, _ = gf.operator_norms(problem, key=getkey())
    # Power iteration stopped at 1e-10 relative change of the Rayleigh quotient: 1e-6 rel.
    np.testing.assert_allclose(jac_norm, expected, rtol=1e-6)


def test_scalar_square_norms():
    """h(w) = w^2 (one value per sample): Dh = 2 w0, D^2 h = 2, both exactly."""
    model = gf.models.ScalarSquare()
    x = np.zeros((4, 1))
    y = np.array([1.0, 2.0, 0.5, -1.0])
    w0, alpha = 0.7, 3.0
    problem = gf.Problem(model, model.init(w0), x, gf.SquareLoss(y), alpha=alpha)
    crit = gf.scale_criterion(problem)
    # Closed forms; the iteration is exact in one dimension: 1e-12 relative.
    np.testing.assert_allclose(crit.hessian_norm, 2.0, rtol=1e-12)
    np.testing.assert_allclose(crit.jacobian_norm, 2 * w0, rtol=1e-12)
    residual = math.sqrt(np.mean((alpha * w0**2 - y) ** 2))
    np.testing.assert_allclose(crit.residual_norm, residual, rtol=1e-12)
    np.testing.assert_allclose(crit.kappa, residual * 2 / (alpha * 4 * w0**2), rtol=1e-12)
    assert float(crit) == crit.kappa and crit.alpha == alpha
    assert crit.to_dict()["kappa"] == crit.kappa


def test_hessian_norm_single_output(getkey):
    """One output: ||D^2 h|| is the largest |eigenvalue| of the Hessian, here a negative one."""
    rng = numpy_rng(getkey())
    p = 5
    q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    mat = q @ np.diag([-3.0, 2.0, 1.0, 0.5, -0.2]) @ q.T
    problem, hessians = _quadratic_problem(rng, mat[None], np.array([0.1]))
    hess = hessians[0]
    eigs = np.linalg.eigvalsh(hess)
    assert abs(eigs[0]) > abs(eigs[-1])  # the top |eigenvalue| is negative, by construction
    _, hess_norm = gf.operator_norms(problem, key=getkey())
    # Power iteration with gap 2.1/2.9 stopped at 1e-10 relative change: 1e-6 relative.
    np.testing.assert_allclose(hess_norm, np.abs(eigs).max(), rtol=1e-6)


def _brute_force_second_norm(hessians, key, num_samples=20000, num_refine=20):
    """max over unit v of sqrt((1/n) sum_i (v^T H_i v)^2): random search, then BFGS from the
    best samples on the scale-invariant objective g(v) = sum_i (v^T H_i v)^2 / (n |v|^4)."""
    n, p, _ = hessians.shape
    rng = numpy_rng(key)
    v = rng.standard_normal((num_samples, p))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    vals = np.einsum("sj,ijk,sk->si", v, hessians, v)
    score = np.sum(vals**2, axis=1) / n

    def neg(u):
        norm2 = u @ u
        q = np.einsum("j,ijk,k->i", u, hessians, u)
        val = np.sum(q**2) / (n * norm2**2)
        grad_q = 2 * np.einsum("ijk,k->ij", hessians, u)
        grad = (2 * q @ grad_q) / (n * norm2**2) - 4 * val * u / norm2
        return -val, -grad

    best = score.max()
    for i in np.argsort(score)[-num_refine:]:
        res = scipy.optimize.minimize(neg, v[i], jac=True, method="BFGS", options={"gtol": 1e-12})
        best = max(best, -res.fun)
    return math.sqrt(best)


@pytest.mark.parametrize("instance", range(6))
def test_hessian_norm_multi_output_brute_force(getkey, instance):
    """Three outputs, p = 5: ||D^2 h|| = sup_{|v|=1} ||D^2h[v, v]||_F has no closed form; the
    ground truth is a dense random search refined by BFGS on the materialized Hessians."""
    rng = numpy_rng(jax.random.fold_in(getkey(), instance))
    n, p = 3, 5
    mats = rng.standard_normal((n, p, p))
    mats = mats + mats.transpose(0, 2, 1)
    problem, hessians = _quadratic_problem(rng, mats, np.array([0.3, -0.2, 0.5]))
    best = _brute_force_second_norm(hessians, getkey())
    _, hess_norm = gf.operator_norms(problem)  # the default start, as a user calls it
    # The estimate is ||D^2h[v, v]||_F at a unit v: never above the sup (rounding: 1e-8 rel),
    # and the power iteration should reach the global maximum (1e-4 relative).
    assert hess_norm <= best * (1 + 1e-8)
    np.testing.assert_allclose(hess_norm, best, rtol=1e-4)


def test_kappa_is_its_formula(getkey):
    problem = small_problem(getkey(), k=2, center=False, alpha=3.0)
    crit = gf.scale_criterion(problem, key=getkey())
    y = np.asarray(problem.loss.targets)
    h0 = np.asarray(problem.h(problem.params0))
    residual = empirical_fnorm(3.0 * h0 - y)
    # ||alpha h(w0) - y*||_F in numpy: 1e-12 relative.
    np.testing.assert_allclose(crit.residual_norm, residual, rtol=1e-12)
    expected = residual * crit.hessian_norm / (3.0 * crit.jacobian_norm**2)
    np.testing.assert_allclose(crit.kappa, expected, rtol=1e-12)
    assert crit.iterations[0] < 500 and crit.iterations[1] < 500  # converged before the cap


def test_kappa_centered_decays_like_one_over_alpha(getkey):
    problem = small_problem(getkey(), k=2, center=True)
    y_norm = empirical_fnorm(problem.loss.targets)
    key = getkey()
    scaled = []
    for alpha in (1.0, 10.0, 100.0):
        crit = gf.scale_criterion(problem.with_alpha(alpha), key=key)
        # h(w0) = 0 exactly, so the residual is ||y*||_F: 1e-12 relative.
        np.testing.assert_allclose(crit.residual_norm, y_norm, rtol=1e-12)
        scaled.append(crit.kappa * alpha)
    # kappa * alpha = ||y*|| ||D^2h|| / ||Dh||^2 does not depend on alpha: 1e-8 relative.
    np.testing.assert_allclose(scaled, scaled[0], rtol=1e-8)
    assert scaled[0] > 0


def test_kappa_uncentered_has_nonzero_limit(getkey):
    problem = small_problem(getkey(), k=2, center=False)
    h0_norm = empirical_fnorm(problem.h(problem.params0))
    y_norm = empirical_fnorm(problem.loss.targets)
    key = getkey()
    for alpha in (1.0, 100.0, 1e4, 1e6):
        crit = gf.scale_criterion(problem.with_alpha(alpha), key=key)
        ratio = crit.hessian_norm / crit.jacobian_norm**2
        limit = h0_norm * ratio
        # | ||alpha h0 - y||/alpha - ||h0|| | <= ||y|| / alpha (triangle inequality), so
        # |kappa - limit| <= ||y|| ratio / alpha; 1e-12 relative slack for rounding.
        assert abs(crit.kappa - limit) <= y_norm * ratio / alpha + 1e-12 * limit
    assert limit > 1e-3  # the limit is not zero
    np.testing.assert_allclose(crit.kappa, limit, rtol=1e-5)


def test_scale_criterion_reports_non_convergence(getkey):
    problem = small_problem(getkey(), k=2, center=False, alpha=3.0)
    capped = gf.scale_criterion(problem, num_iters=2)
    assert capped.converged is False and capped.iterations == (2, 2)
    assert gf.scale_criterion(problem).converged is True
    with pytest.raises(ValueError, match="`num_starts` and `num_iters` must be >= 1"):
        gf.scale_criterion(problem, num_starts=0)


# ----------------------------------------------------- mixed dtypes, non-finite models


def test_float32_params_with_float64_data_match_float64(getkey):
    # What a flax user gets: float32 parameters, float64 data from gf.data. Every diagnostic
    # computes in float32 and agrees with the all-float64 problem to 1e-5 relative (float32
    # rounding, eps = 1.2e-7, accumulated over sums of ~100 terms and power iterations).
    p64 = small_problem(getkey(), k=2, center=False, alpha=3.0)
    params32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), p64.params0)
    p32 = gf.Problem(p64.apply, params32, p64.inputs, p64.loss, alpha=3.0)
    assert np.asarray(p64.inputs).dtype == np.float64 and p64.loss.targets.dtype == np.float64
    assert p32.dtype == np.float32 and p32.inputs.dtype == np.float32
    assert p32.loss.targets.dtype == np.float32 and p32.h(p32.params0).dtype == np.float32

    def close(a, b, what, rel=1e-5):
        a, b = np.asarray(a, float), np.asarray(b, float)
        np.testing.assert_allclose(a, b, rtol=0, atol=rel * np.abs(b).max(), err_msg=what)

    k32, k64 = gf.tangent_kernel(p32), gf.tangent_kernel(p64)
    assert k32.dtype == np.float32
    close(k32, k64, "tangent_kernel")
    # The closed form at t = inf solves with the kernel: its float32 rounding is amplified by up
    # to cond(K) (1.3e3 here), so that limit is eps32 * cond(K) = 1.5e-4 relative (measured:
    # under 1e-5 with XLA's fusion emitters, 2.7e-5 with its classic ones, which sum in another
    # order).
    limit = float(np.finfo(np.float32).eps * np.linalg.cond(np.asarray(k64)))
    assert 1e-5 < limit < 1e-3, limit
    c32, c64 = gf.scale_criterion(p32), gf.scale_criterion(p64)
    for name in ("kappa", "jacobian_norm", "hessian_norm", "residual_norm"):
        close(getattr(c32, name), getattr(c64, name), name)
    ts = [0.0, 1.0, 10.0, np.inf]
    (o32, w32), (o64, w64) = (
        gf.linear_flow_closed_form(p32, ts),
        gf.linear_flow_closed_form(p64, ts),
    )
    close(o32, o64, "closed-form outputs", rel=limit)
    close(
        jax.vmap(lambda w: ravel_pytree(w)[0])(w32),
        jax.vmap(lambda w: ravel_pytree(w)[0])(w64),
        "closed-form params",
        rel=limit,
    )
    close(
        gf.tangent_spectrum(p32).eigenvalues,
        gf.tangent_spectrum(p64).eigenvalues,
        "tangent_spectrum",
    )
    close(
        gf.parameter_spectrum(p32, hessian=True).eigenvalues,
        gf.parameter_spectrum(p64, hessian=True).eigenvalues,
        "parameter_spectrum",
    )
    moved = jax.tree_util.tree_map(lambda x: 1.1 * x, p64.params0)
    close(gf.kernel_drift(p32, moved), gf.kernel_drift(p64, moved), "kernel_drift")
    # The solve in float32 (rtol 1e-6) against a float64 solve of the same flow.
    ts = [0.0, 1.0, 2.0]
    s32 = gf.solve(p32, ts=ts, rtol=1e-6, atol=1e-8)
    s64 = gf.solve(p64, ts=ts, rtol=1e-10, atol=1e-12)
    assert s32.succeeded and s32.loss.dtype == np.float32
    np.testing.assert_allclose(s32.loss, s64.loss, rtol=1e-5)
    np.testing.assert_allclose(s32.param_gap[1:], s64.param_gap[1:], rtol=1e-5)


def test_model_promoting_to_float64_is_cast_to_params_dtype(getkey):
    # A model closing over a float64 constant: its outputs are cast back to float32.
    p64 = small_problem(getkey(), center=False)
    shift = jnp.asarray(0.25, jnp.float64)
    params32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), p64.params0)
    p32 = gf.Problem(lambda p, x: p64.apply(p, x) + shift, params32, p64.inputs, p64.loss)
    ref = gf.Problem(lambda p, x: p64.apply(p, x) + shift, p64.params0, p64.inputs, p64.loss)
    k32, k64 = gf.tangent_kernel(p32), gf.tangent_kernel(ref)
    assert k32.dtype == np.float32
    np.testing.assert_allclose(k32, k64, rtol=0, atol=1e-5 * np.abs(k64).max())


def _nan_problem(key, where):
    base = small_problem(key, center=False)
    if where == "everywhere":
        apply = lambda p, x: base.apply(p, x) * jnp.nan  # noqa: E731
    else:  # only the first output is NaN: the kernel is partly NaN
        apply = lambda p, x: base.apply(p, x).at[0].multiply(jnp.nan)  # noqa: E731
    return gf.Problem(apply, base.params0, base.inputs, base.loss)


@pytest.mark.parametrize("where", ["everywhere", "first output"])
def test_diagnostics_of_a_nan_model_raise(getkey, where):
    problem = _nan_problem(getkey(), where)
    match = "not finite \\(NaN or inf\\): the model's outputs or derivatives are not finite"
    with pytest.raises(ValueError, match="The tangent kernel is " + match):
        gf.tangent_kernel(problem)
    with pytest.raises(ValueError, match="The scale criterion .* is " + match):
        gf.scale_criterion(problem)
    with pytest.raises(ValueError, match="The closed-form linear flow is " + match):
        gf.linear_flow_closed_form(problem, [1.0])
    with pytest.raises(ValueError, match="The spectrum is " + match):
        gf.tangent_spectrum(problem)


def test_tangent_kernel_nan_under_jit_raises(getkey):
    problem = _nan_problem(getkey(), "everywhere")
    with pytest.raises(Exception, match="The tangent kernel is not finite"):
        eqx.filter_jit(gf.tangent_kernel)(problem).block_until_ready()


def test_tangent_kernel_nan_at_other_params(getkey):
    # kernel_drift at the parameters of a diverged solve (NaN) raises instead of returning NaN.
    problem = small_problem(getkey())
    nan_params = jax.tree_util.tree_map(lambda x: x * jnp.nan, problem.params0)
    with pytest.raises(ValueError, match="The tangent kernel is not finite"):
        gf.kernel_drift(problem, nan_params)


@pytest.mark.parametrize("size,rank", [((3, 2), 8), ((4, 3), 2)])
def test_hessian_norm_of_matrix_factorization_closed_form(size, rank):
    # h(W1, W2) = W1 W2 on the identity inputs: D^2h[v, v] = 2 dW1 dW2, whose empirical norm
    # ||2 dW1 dW2||_Frob / sqrt(d) is at most 2 |dW1| |dW2| / sqrt(d) <= 1 / sqrt(d) on the unit
    # sphere, attained by rank-one directions: ||D^2 h|| = 1 / sqrt(d). Its Hessians have
    # eigenvalues in +/- pairs, on which an unshifted power iteration stalls (0.4768 instead of
    # 0.5774 for 3x2, measured before the shift).
    d, k = size
    spec = gf.check.matrix_factorization(size=size, rank=rank)
    crit = gf.scale_criterion(spec.problem)
    np.testing.assert_allclose(crit.hessian_norm, 1 / np.sqrt(d), rtol=1e-8)
