"""gf.implicit_bias_limit (Woodworth et al. 2020, Theorem 1 and its depth-D form) against
independent answers: scipy's constrained minimizer of the potential derived in `theory/`, the
KKT conditions with strict convexity, its kernel (pinv) and rich (linprog) limits, and the
gradient flow of the diagonal nets integrated by gf.solve."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog, minimize

import gradflow as gf
import theory
from gradflow.analysis._implicit_bias import _link


def _instance(n, d, seed, support=((1, 1.0), (5, -0.6))):
    """Gaussian X and y = X beta* for a sparse teacher beta*."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    teacher = np.zeros(d)
    for i, v in support:
        teacher[i] = v
    return x, x @ teacher


def _potential(depth, scale):
    """Q_a(beta) = a^D sum_i q_D(beta_i / a^D) and its gradient h_D^{-1}(beta / a^D), from
    theory/ (which never imports gradflow)."""
    pot = theory.diagonal_net_potential(depth)
    q, dq = pot.numeric(), pot.numeric_inverse_link()
    s = scale**depth
    return (lambda b: s * np.sum(q(b / s))), (lambda b: dq(b / s))


def _slsqp(x, y, fun, jac):
    constraint = {"type": "eq", "fun": lambda b: x @ b - y, "jac": lambda b: x}
    start = np.linalg.pinv(x) @ y
    opt = minimize(fun, start, jac=jac, method="SLSQP", constraints=[constraint],
                   options={"ftol": 1e-15, "maxiter": 1000})  # fmt: skip
    assert opt.success, opt.message
    return opt.x


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_matches_scipy_constrained_minimizer(depth, scale):
    x, y = _instance(4, 8, 3)
    ref = gf.implicit_bias_limit(x, y, scale, depth=depth)
    assert ref.converged and ref.residual <= 1e-12
    fun, jac = _potential(depth, scale)
    opt = _slsqp(x, y, fun, jac)
    # SLSQP stops at ~1e-8 relative in beta (measured 5e-9 to 5e-8); the potential is flat to
    # second order there, so Newton's point must be at least as low to rounding (1e-13).
    np.testing.assert_allclose(ref.beta, opt, rtol=0, atol=1e-6 * np.linalg.norm(opt))
    assert fun(ref.beta) <= fun(opt) + 1e-13 * abs(fun(opt))


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("scale", [1e-3, 1e-1, 10.0, 100.0])
def test_kkt_conditions_and_strict_convexity(depth, scale):
    # Optimality without another solver: grad Q_a(beta) = h_D^{-1}(beta/a^D) lies in range(X^T)
    # (= X^T nu up to the link's normalization), X beta = y, and Q_a grows along the null space
    # of X like the quadratic form of its Hessian diag(1/(a^D h_D'(z))).
    x, y = _instance(5, 12, 4)
    ref = gf.implicit_bias_limit(x, y, scale, depth=depth)
    assert ref.converged and ref.residual <= 1e-12
    fun, jac = _potential(depth, scale)
    grad = jac(ref.beta)
    # The link's variable z = a^(D-2) X^T nu (theory's normalization) at depth D.
    z = scale ** (depth - 2) * (x.T @ ref.nu)
    np.testing.assert_allclose(grad, z, rtol=1e-9, atol=1e-9 * np.abs(z).max())
    proj = grad - x.T @ np.linalg.lstsq(x.T, grad, rcond=None)[0]
    assert np.linalg.norm(proj) <= 1e-9 * np.linalg.norm(grad)
    # Second order: random directions in null(X), small enough for the quadratic model.
    null = np.linalg.svd(x)[2][x.shape[0] :].T
    link = theory.diagonal_net_potential(depth).numeric_link()
    dlink = (link(z + 1e-6) - link(z - 1e-6)) / 2e-6
    hess = 1.0 / (scale**depth * dlink)
    rng = np.random.default_rng(0)
    base = fun(ref.beta)
    # Each entry moves by at most 3% of its own curvature scale |beta_i| + a^D, so the
    # third-order terms stay within 10% of the rise, which is ~1e-3 a^D or more: far above the
    # rounding of Q (1e-15 |Q|) even at a^D = 1e-9.
    width = np.min(np.abs(ref.beta) + scale**depth)
    for _ in range(5):
        direction = null @ rng.standard_normal(null.shape[1])
        step = 0.03 * width * direction / np.abs(direction).max()
        rise = fun(ref.beta + step) - base
        assert rise > 0
        assert rise == pytest.approx(0.5 * np.sum(hess * step**2), rel=0.1)


@pytest.mark.parametrize("depth", [2, 3])
def test_kernel_limit_is_the_minimum_norm_solution(depth):
    # Q^D_a = c2 beta^2 / a^D + c4 beta^4 / a^(3D) + ...: the quartic term moves the minimizer
    # away from pinv(X) y by O(a^-2D). Measured slopes -4.0 and -6.0; the band is 0.05.
    x, y = _instance(4, 8, 3)
    l2 = np.linalg.pinv(x) @ y
    scales = np.array([3.0, 10.0, 30.0])
    errors = [
        np.linalg.norm(gf.implicit_bias_limit(x, y, a, depth=depth).beta - l2) / np.linalg.norm(l2)
        for a in scales
    ]
    assert errors[-1] <= 1e-7
    fit = gf.fit_rate(scales, errors)
    assert fit.slope == pytest.approx(-2 * depth, abs=0.05)


@pytest.mark.parametrize("depth", [2, 3])
def test_rich_limit_is_the_minimum_l1_solution(depth):
    # The l1 minimizer by linear programming (beta = p - m, p, m >= 0). Measured at a = 1e-3:
    # 1.5e-3 (depth 2) and 1.5e-8 (depth 3) relative; the gap shrinks at every step of a.
    x, y = _instance(4, 8, 3)
    d = x.shape[1]
    lp = linprog(np.ones(2 * d), A_eq=np.hstack([x, -x]), b_eq=y, bounds=(0, None))
    assert lp.status == 0
    l1 = lp.x[:d] - lp.x[d:]
    scales = [1e-1, 1e-2, 1e-3]
    errors = [
        np.linalg.norm(gf.implicit_bias_limit(x, y, a, depth=depth).beta - l1) / np.linalg.norm(l1)
        for a in scales
    ]
    assert errors[-1] <= (5e-3 if depth == 2 else 1e-6)
    assert errors[0] > errors[1] > errors[2]
    # Between the regimes (a = 0.3) the limit is neither: its l1 norm is 18% (depth 2) or 8%
    # (depth 3) above the l1 minimum, its l2 norm 0.9% or 4% above the l2 minimum (measured).
    mid = gf.implicit_bias_limit(x, y, 0.3, depth=depth).beta
    assert np.abs(mid).sum() > (1 + 1e-2) * np.abs(l1).sum()
    assert np.linalg.norm(mid) > (1 + 1e-3) * np.linalg.norm(np.linalg.pinv(x) @ y)


def test_asymmetric_init_minimizes_the_shifted_potential():
    # u0 != v0 at depth 2: beta = 2 m sinh(s + c), m = u0 v0, c = log(u0/v0), so the limit
    # minimizes sum_i m_i q(beta_i/m_i) - c_i beta_i (q from theory/), solved here by SLSQP.
    x, y = _instance(4, 8, 5)
    rng = np.random.default_rng(1)
    u0, v0 = rng.uniform(0.3, 1.5, 8), rng.uniform(0.3, 1.5, 8)
    ref = gf.implicit_bias_limit(x, y, u0, v0)
    pot = theory.diagonal_net_potential(2)
    q, dq = pot.numeric(), pot.numeric_inverse_link()
    m, c = u0 * v0, np.log(u0 / v0)
    opt = _slsqp(x, y, lambda b: np.sum(m * q(b / m) - c * b), lambda b: dq(b / m) - c)
    # SLSQP's ~1e-8 as above; the symmetric limit is 10% away, so the tolerance resolves it.
    np.testing.assert_allclose(ref.beta, opt, rtol=0, atol=1e-6 * np.linalg.norm(opt))
    sym = gf.implicit_bias_limit(x, y, np.sqrt(m))
    assert np.linalg.norm(sym.beta - opt) > 1e-2 * np.linalg.norm(opt)


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
@pytest.mark.parametrize("scale", [0.3, 2.0])
def test_link_matches_the_derived_link(depth, scale):
    # gradflow's numpy link at u0 = v0 = a against theory's sympy-derived h_D:
    # beta = a^D h_D(a^(D-2) s). Two derivations; 1e-12 relative.
    h = theory.diagonal_net_potential(depth).numeric_link()
    limit = 1.0 if depth == 2 else 0.95 * scale ** (2 - depth)
    s = np.linspace(-limit, limit, 9)
    ones = np.ones_like(s)
    beta, dbeta, phi, _ = _link(s, scale * ones, scale * ones, depth)
    expected = scale**depth * h(scale ** (depth - 2) * s)
    np.testing.assert_allclose(beta, expected, rtol=1e-12, atol=1e-15 * np.abs(expected).max())
    # The derivative and the dual potential by central differences (step 1e-6 of the range:
    # truncation 1e-12, rounding 1e-10 relative).
    e = 1e-6 * limit
    plus = _link(s + e, scale * ones, scale * ones, depth)
    minus = _link(s - e, scale * ones, scale * ones, depth)
    np.testing.assert_allclose((plus[0] - minus[0]) / (2 * e), dbeta, rtol=1e-7)
    np.testing.assert_allclose(
        (plus[2] - minus[2]) / (2 * e), beta, rtol=1e-7, atol=1e-9 * np.abs(beta).max()
    )
    assert np.all(phi >= -1e-15 * np.abs(phi).max())  # Phi(s) - Phi(0) >= 0 when beta(0) = 0


@pytest.mark.optimized
@pytest.mark.parametrize("depth", [2, 3])
def test_gradient_flow_converges_to_the_reference(depth):
    """Theorem 1 itself: the flow of DiagonalDifferenceNet(D) from u = v = 1 (a = 1,
    alpha = 1), integrated by gf.solve to t = 50 at rtol 1e-10, ends at the reference's
    minimizer. Measured 1.8e-11 (depth 2) and 1.3e-11 (depth 3) relative; the minimum-l2 and
    minimum-l2 solution is 0.35% (depth 2) and 0.75% (depth 3) away."""
    x, y = _instance(5, 10, 1, support=((0, 1.0), (1, -0.7)))
    model = gf.models.DiagonalDifferenceNet(depth)
    problem = gf.Problem(
        model,
        model.init(10, tau=1.0),
        jnp.asarray(x),
        gf.SquareLoss(jnp.asarray(y)[:, None]),
        alpha=1.0,
    )
    sol = gf.solve(problem, ts=np.array([0.0, 50.0]), rtol=1e-10, atol=1e-12, save_params=True,
                   linearized=False, throw=True)  # fmt: skip
    beta = np.asarray(model.beta({k: v[-1] for k, v in sol.params.items()}))
    ref = gf.implicit_bias_limit(x, y, 1.0, depth=depth)
    assert float(sol.loss[-1]) <= 1e-20
    np.testing.assert_allclose(beta, ref.beta, rtol=0, atol=1e-9 * np.linalg.norm(ref.beta))
    l2 = np.linalg.pinv(x) @ y
    assert np.linalg.norm(beta - l2) > 1e-3 * np.linalg.norm(l2)


@pytest.mark.optimized
def test_flows_from_asymmetric_and_product_inits_converge_to_the_reference():
    # u0 != v0: the limit is the asymmetric reference, not the symmetric one (95% away).
    # DiagonalNet(2) (w1 * w2): with u = (w1 + w2)/2, v = (w1 - w2)/2 it is the difference form
    # at half speed, so its limit is the reference at u0, |v0|. Measured 2.0e-12 and 8.5e-11.
    x, y = _instance(5, 10, 1, support=((0, 1.0), (1, -0.7)))
    rng = np.random.default_rng(7)
    su, sv = rng.uniform(0.5, 1.5, 10), rng.uniform(0.5, 1.5, 10)
    loss = gf.SquareLoss(jnp.asarray(y)[:, None])
    model = gf.models.DiagonalDifferenceNet(2)
    problem = gf.Problem(model, model.init(10, shape=(su, sv)), jnp.asarray(x), loss)
    sol = gf.solve(problem, ts=np.array([0.0, 50.0]), rtol=1e-10, atol=1e-12, save_params=True,
                   linearized=False, throw=True)  # fmt: skip
    beta = np.asarray(model.beta({k: v[-1] for k, v in sol.params.items()}))
    ref = gf.implicit_bias_limit(x, y, su, sv)
    np.testing.assert_allclose(beta, ref.beta, rtol=0, atol=1e-9 * np.linalg.norm(ref.beta))
    sym = gf.implicit_bias_limit(x, y, 1.0)
    assert np.linalg.norm(beta - sym.beta) > 0.1 * np.linalg.norm(ref.beta)

    product = gf.models.DiagonalNet(2)
    problem = gf.Problem(product, {"w": jnp.asarray(np.stack([su, sv]))}, jnp.asarray(x), loss)
    sol = gf.solve(problem, ts=np.array([0.0, 100.0]), rtol=1e-10, atol=1e-12, save_params=True,
                   linearized=False, throw=True)  # fmt: skip
    w = np.asarray(sol.params["w"][-1])
    ref = gf.implicit_bias_limit(x, y, (su + sv) / 2, np.abs(su - sv) / 2)
    np.testing.assert_allclose(w[0] * w[1], ref.beta, rtol=0, atol=1e-9 * np.linalg.norm(ref.beta))


def test_small_scale_end_and_its_limits():
    # The grid end: depth 2 and 3 reach 1e-12 at a = 1e-3 and 1e2. At depth 5 and
    # a = 1e-3 the dual's support entries sit 1e-9 from the link's pole and float64 resolves
    # the residual only to ~1e-7: the result says so instead of returning a wrong beta.
    x, y = _instance(12, 30, 0, support=((0, 1.0), (1, -2.0), (2, 1.5)))
    for depth in (2, 3):
        for a in (1e-3, 1e2):
            assert gf.implicit_bias_limit(x, y, a, depth=depth).residual <= 1e-12
    with pytest.raises(RuntimeError, match="float64 does not resolve"):
        gf.implicit_bias_limit(x, y, 1e-3, depth=5)
    out = gf.implicit_bias_limit(x, y, 1e-3, depth=5, throw=False)
    assert not out.converged and 1e-12 < out.residual < 1e-3
    loose = gf.implicit_bias_limit(x, y, 1e-3, depth=5, tol=1e-6)
    assert loose.converged and loose.residual <= 1e-6


def test_errors_and_failures():
    x, y = _instance(3, 6, 2)
    with pytest.raises(ValueError, match=r"`inputs` must have shape \(n, d\); got shape \(6,\)"):
        gf.implicit_bias_limit(x[0], y, 1.0)
    with pytest.raises(ValueError, match=r"`targets` must have shape \(3,\) or \(3, 1\)"):
        gf.implicit_bias_limit(x, y[:2], 1.0)
    with pytest.raises(ValueError, match="`depth` must be an integer >= 2; got 1"):
        gf.implicit_bias_limit(x, y, 1.0, depth=1)
    with pytest.raises(ValueError, match="`u0` must be finite and > 0"):
        gf.implicit_bias_limit(x, y, -1.0)
    with pytest.raises(ValueError, match=r"`v0` must be a scalar or have shape \(6,\)"):
        gf.implicit_bias_limit(x, y, 1.0, np.ones(4))
    with pytest.raises(ValueError, match="`tol` must be > 0"):
        gf.implicit_bias_limit(x, y, 1.0, tol=0.0)
    with pytest.raises(ValueError, match=r"rank 2 < n = 3"):
        gf.implicit_bias_limit(np.vstack([x[:2], x[0] + x[1]]), y, 1.0)
    with pytest.raises(RuntimeError, match="max_steps=1 at residual"):
        gf.implicit_bias_limit(x, y, 1e-2, max_steps=1)
    out = gf.implicit_bias_limit(x, y, 1e-2, max_steps=1, throw=False)
    assert not out.converged and out.steps == 1 and "max_steps=1" in out.message
    # (n, 1) targets are the model's; y = 0 from a symmetric init is solved at once.
    same = gf.implicit_bias_limit(x, y[:, None], 1.0)
    np.testing.assert_array_equal(same.beta, gf.implicit_bias_limit(x, y, 1.0).beta)
    zero = gf.implicit_bias_limit(x, np.zeros(3), 1.0)
    assert zero.steps == 0 and np.all(zero.beta == 0)
    text = repr(same)
    assert text.startswith("ImplicitBiasLimit(depth=2, converged=True") and "beta=array(" in text
