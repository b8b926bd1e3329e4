"""Problem (the scaled objective and its linearization) and the diagnostics: tangent kernel,
operator norms, scale criterion, power-law fits and Student-t quantiles.

Ground truths: Jacobians and Hessians materialized with `jax.jacfwd` / `jax.hessian` (a code
path independent of the library's matrix-free JVP/VJP power iterations), numpy linear algebra,
a brute-force maximization refined with scipy.optimize, and scipy.stats.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from jax.flatten_util import ravel_pytree

import gradflow as gf


def _rng(key):
    """A numpy generator seeded by a JAX key (cheap for any shape, unlike jax.random)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def _jacobian(problem, params=None):
    """Dh(w) as an (N, p) numpy matrix, N = outputs.size (row-major), by forward mode."""
    w0, unravel = ravel_pytree(problem.params0)
    w = w0 if params is None else ravel_pytree(params)[0]
    jac = jax.jit(jax.jacfwd(lambda v: problem.h(unravel(v))))(w)
    return np.asarray(jac).reshape(-1, w0.size)


def _fnorm(f):
    """The empirical norm of F in numpy, independent of `gf.empirical_norm`."""
    f = np.asarray(f)
    return math.sqrt(np.sum(f**2) / f.shape[0])


def _small_problem(key, *, n=6, d=3, m=8, k=1, alpha=1.0, center=True):
    """A tanh two-layer net (1/sqrt(m)) on a tanh teacher, like `helpers.two_layer_problem`
    but drawn with numpy: jax.random compiles once per shape, which dominates small tests."""
    rng = _rng(key)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.tanh(x @ rng.standard_normal((3, d)).T) @ rng.standard_normal((3, k))
    params = {"a": rng.standard_normal((m, d)) / np.sqrt(d), "b": rng.standard_normal((m, k))}
    model = gf.models.TwoLayer(m, "tanh")
    return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=alpha, center=center)


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


# ----------------------------------------------------------------------------- Problem


def test_problem_alpha_errors(getkey):
    problem = _small_problem(getkey())
    args = (problem.apply, problem.params0, problem.inputs, problem.loss)
    for bad in (0.0, -1.0, -np.inf, np.inf):
        with pytest.raises(ValueError, match=r"`alpha` must be a finite number > 0; got alpha="):
            gf.Problem(*args, alpha=bad)
    with pytest.raises(ValueError, match=r"`alpha` must be a finite number > 0; got alpha=nan"):
        gf.Problem(*args, alpha=np.nan)
    with pytest.raises(ValueError, match=r"`alpha` must be a scalar; got shape \(2,\)"):
        gf.Problem(*args, alpha=[1.0, 2.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_problem_non_finite_inputs(getkey, bad):
    problem = _small_problem(getkey())
    x = np.array(problem.inputs)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="`inputs` contains NaN or inf values"):
        gf.Problem(problem.apply, problem.params0, x, problem.loss)


def test_problem_shape_mismatch(getkey):
    problem = _small_problem(getkey())  # outputs (6, 1)
    y = np.asarray(problem.loss.targets)
    with pytest.raises(
        ValueError, match=r"model output has shape \(6, 1\) but the loss targets have shape \(6,\)"
    ):
        gf.Problem(problem.apply, problem.params0, problem.inputs, gf.SquareLoss(y[:, 0]))
    with pytest.raises(
        ValueError, match=r"shape \(6, 1\) but the loss targets have shape \(5, 1\)"
    ):
        gf.Problem(problem.apply, problem.params0, problem.inputs, gf.SquareLoss(y[:5]))


def test_problem_integer_params():
    model = gf.models.LinearNet()
    params = {"W1": np.ones((2, 2), dtype=np.int32), "W2": np.ones((2, 1))}
    with pytest.raises(ValueError, match="`params0` must hold floating-point arrays.*int32"):
        gf.Problem(model, params, np.eye(2), gf.SquareLoss(np.zeros((2, 1))))


def test_problem_bad_apply_and_loss(getkey):
    problem = _small_problem(getkey())
    with pytest.raises(TypeError, match="`apply` must be a callable"):
        gf.Problem(None, problem.params0, problem.inputs, problem.loss)
    with pytest.raises(TypeError, match="`loss` must be a gradflow loss"):
        gf.Problem(problem.apply, problem.params0, problem.inputs, np.zeros((6, 1)))
    with pytest.raises(ValueError, match="`params0` has no array leaves"):
        gf.Problem(problem.apply, {}, problem.inputs, problem.loss)


def test_center_gives_exact_zero(getkey):
    problem = _small_problem(getkey(), center=True)
    h0 = np.asarray(problem.h(problem.params0))
    np.testing.assert_array_equal(h0, np.zeros((6, 1)))  # exactly, not to a tolerance
    uncentered = _small_problem(getkey(), center=False)
    assert np.abs(np.asarray(uncentered.h(uncentered.params0))).max() > 1e-3
    # Centering does not change Dh(w0): the same Jacobian up to rounding (1e-14 absolute).
    same = gf.Problem(problem.apply, problem.params0, problem.inputs, problem.loss, center=False)
    np.testing.assert_allclose(_jacobian(problem), _jacobian(same), rtol=0, atol=1e-14)


@pytest.mark.parametrize("center", [False, True])
def test_hbar_is_first_order_taylor(getkey, center):
    problem = _small_problem(getkey(), k=2, center=center)
    w0, unravel = ravel_pytree(problem.params0)
    jac = _jacobian(problem)
    h0 = np.asarray(problem.h(problem.params0)).reshape(-1)
    for scale in (1e-3, 1.0):
        w = w0 + scale * _rng(getkey()).standard_normal(w0.size)
        expected = h0 + jac @ np.asarray(w - w0)
        got = np.asarray(problem.hbar(unravel(w))).reshape(-1)
        # Same linear map through jvp vs a materialized jacfwd matrix: 1e-12 absolute.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("center", [False, True])
def test_objective_by_hand(getkey, center):
    problem = _small_problem(getkey(), k=2, center=center)
    w0, unravel = ravel_pytree(problem.params0)
    w = w0 + 0.3 * _rng(getkey()).standard_normal(w0.size)
    params = unravel(w)
    y = np.asarray(problem.loss.targets)
    out = np.asarray(problem.apply(params, problem.inputs))
    if center:
        out = out - np.asarray(problem.apply(problem.params0, problem.inputs))
    jac = _jacobian(problem)
    h0 = np.asarray(problem.h(problem.params0))
    lin = h0 + (jac @ np.asarray(w - w0)).reshape(h0.shape)
    for alpha in (0.5, 1.0, 30.0):
        p = problem.with_alpha(alpha)
        # R(alpha h)/alpha^2 = |alpha h - y|^2 / (2 n alpha^2), n = 6, in numpy: 1e-12 rel.
        expected = np.sum((alpha * out - y) ** 2) / (2 * 6 * alpha**2)
        np.testing.assert_allclose(float(p.objective(params)), expected, rtol=1e-12)
        expected_lin = np.sum((alpha * lin - y) ** 2) / (2 * 6 * alpha**2)
        np.testing.assert_allclose(float(p.linear_objective(params)), expected_lin, rtol=1e-12)


def test_with_alpha_changes_only_alpha(getkey):
    problem = _small_problem(getkey(), alpha=2.0)
    other = problem.with_alpha(7.0)
    assert float(other.alpha) == 7.0 and float(problem.alpha) == 2.0  # original untouched
    assert other.alpha.dtype == problem.alpha.dtype
    assert other.apply == problem.apply and other.center == problem.center
    for a, b in zip(
        jax.tree_util.tree_leaves((problem.params0, problem.inputs, problem.loss)),
        jax.tree_util.tree_leaves((other.params0, other.inputs, other.loss)),
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------------ tangent kernel


def _first_output(model):
    return lambda params, x: model(params, x)[:, 0]


@pytest.mark.parametrize("k", [None, 2])
def test_tangent_kernel_matches_jacobian(getkey, k):
    problem = _small_problem(getkey(), k=1 if k is None else k, center=False)
    if k is None:  # outputs of shape (n,)
        y = problem.loss.targets[:, 0]
        apply = _first_output(problem.apply)
        problem = gf.Problem(apply, problem.params0, problem.inputs, gf.SquareLoss(y))
    kernel = np.asarray(gf.tangent_kernel(problem, batch_size=4))  # N = 6 or 12: a remainder
    jac = _jacobian(problem)
    expected = jac @ jac.T
    assert kernel.shape == expected.shape == (jac.shape[0],) * 2
    # Gram matrix of the same derivatives by another route: 1e-10 relative to its norm.
    np.testing.assert_allclose(kernel, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    np.testing.assert_array_equal(kernel, kernel.T)
    eigs = np.linalg.eigvalsh(kernel)
    assert eigs.min() >= -1e-12 * eigs.max()


def test_tangent_kernel_at_other_params(getkey):
    problem = _small_problem(getkey(), k=2)
    w0, unravel = ravel_pytree(problem.params0)
    params = unravel(w0 + 0.5 * _rng(getkey()).standard_normal(w0.size))
    kernel = np.asarray(gf.tangent_kernel(problem, params))
    jac = _jacobian(problem, params)
    # K(w) = Dh(w) Dh(w)^T at w != w0: 1e-10 relative.
    np.testing.assert_allclose(kernel, jac @ jac.T, rtol=0, atol=1e-10 * np.abs(kernel).max())
    # kernel_drift is the relative spectral-norm change, here recomputed from jacfwd.
    k0 = _jacobian(problem)
    k0 = k0 @ k0.T
    expected = np.linalg.norm(jac @ jac.T - k0, 2) / np.linalg.norm(k0, 2)
    assert expected > 1e-2  # the kernel moved: the comparison is not 0 == 0
    np.testing.assert_allclose(gf.kernel_drift(problem, params), expected, rtol=1e-8)


# ------------------------------------------------------------------ operator norms, kappa


def test_jacobian_norm_matches_spectral_norm(getkey):
    problem = _small_problem(getkey(), k=2, center=False)
    jac = _jacobian(problem)
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
    rng = _rng(getkey())
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
    rng = _rng(key)
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
    rng = _rng(jax.random.fold_in(getkey(), instance))
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
    problem = _small_problem(getkey(), k=2, center=False, alpha=3.0)
    crit = gf.scale_criterion(problem, key=getkey())
    y = np.asarray(problem.loss.targets)
    h0 = np.asarray(problem.h(problem.params0))
    residual = _fnorm(3.0 * h0 - y)
    # ||alpha h(w0) - y*||_F in numpy: 1e-12 relative.
    np.testing.assert_allclose(crit.residual_norm, residual, rtol=1e-12)
    expected = residual * crit.hessian_norm / (3.0 * crit.jacobian_norm**2)
    np.testing.assert_allclose(crit.kappa, expected, rtol=1e-12)
    assert crit.iterations[0] < 500 and crit.iterations[1] < 500  # converged before the cap


def test_kappa_centered_decays_like_one_over_alpha(getkey):
    problem = _small_problem(getkey(), k=2, center=True)
    y_norm = _fnorm(problem.loss.targets)
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
    problem = _small_problem(getkey(), k=2, center=False)
    h0_norm = _fnorm(problem.h(problem.params0))
    y_norm = _fnorm(problem.loss.targets)
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


# ------------------------------------------------------------------------------ fit_rate


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
    rng = _rng(getkey())
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


def test_scale_criterion_reports_non_convergence(getkey):
    problem = _small_problem(getkey(), k=2, center=False, alpha=3.0)
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
    p64 = _small_problem(getkey(), k=2, center=False, alpha=3.0)
    params32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), p64.params0)
    p32 = gf.Problem(p64.apply, params32, p64.inputs, p64.loss, alpha=3.0)
    assert np.asarray(p64.inputs).dtype == np.float64 and p64.loss.targets.dtype == np.float64
    assert p32.dtype == np.float32 and p32.inputs.dtype == np.float32
    assert p32.loss.targets.dtype == np.float32 and p32.h(p32.params0).dtype == np.float32

    def close(a, b, what):
        a, b = np.asarray(a, float), np.asarray(b, float)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max(), err_msg=what)

    k32 = gf.tangent_kernel(p32)
    assert k32.dtype == np.float32
    close(k32, gf.tangent_kernel(p64), "tangent_kernel")
    c32, c64 = gf.scale_criterion(p32), gf.scale_criterion(p64)
    for name in ("kappa", "jacobian_norm", "hessian_norm", "residual_norm"):
        close(getattr(c32, name), getattr(c64, name), name)
    ts = [0.0, 1.0, 10.0, np.inf]
    (o32, w32), (o64, w64) = (
        gf.linear_flow_closed_form(p32, ts),
        gf.linear_flow_closed_form(p64, ts),
    )
    close(o32, o64, "closed-form outputs")
    close(
        jax.vmap(lambda w: ravel_pytree(w)[0])(w32),
        jax.vmap(lambda w: ravel_pytree(w)[0])(w64),
        "closed-form params",
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
    p64 = _small_problem(getkey(), center=False)
    shift = jnp.asarray(0.25, jnp.float64)
    params32 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), p64.params0)
    p32 = gf.Problem(lambda p, x: p64.apply(p, x) + shift, params32, p64.inputs, p64.loss)
    ref = gf.Problem(lambda p, x: p64.apply(p, x) + shift, p64.params0, p64.inputs, p64.loss)
    k32, k64 = gf.tangent_kernel(p32), gf.tangent_kernel(ref)
    assert k32.dtype == np.float32
    np.testing.assert_allclose(k32, k64, rtol=0, atol=1e-5 * np.abs(k64).max())


def _nan_problem(key, where):
    base = _small_problem(key, center=False)
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
    problem = _small_problem(getkey())
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
