"""`modified_step`: gradient descent's first-order modified equation as a flow of `gf.solve`
(w' = -grad F - (eta / 2) H grad F), against closed forms, sympy and convergence orders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import gradflow as gf


def _scalar(alpha):
    # h(w) = w on one input, R(f) = (f - 1)^2 / 2: F(w) = (alpha w - 1)^2 / (2 alpha^2), H = 1,
    # and r = alpha w - 1 follows r' = -r (flow), r' = -(1 + eta/2) r (modified), r_k =
    # (1 - eta)^k r0 (gradient descent with step eta).
    def apply(params, x):
        return params["w"] * x

    y = jnp.ones((1, 1))
    return gf.Problem(apply, {"w": jnp.zeros((1, 1))}, jnp.ones((1, 1)), gf.SquareLoss(y),
                      alpha=alpha)  # fmt: skip


@pytest.mark.parametrize("alpha", [1.0, 30.0])
def test_the_modified_flow_of_a_quadratic_is_its_closed_form(alpha):
    eta, ts = 0.3, np.array([0.5, 1.0, 2.0, 4.0])
    sol = gf.solve(_scalar(alpha), ts=ts, modified_step=eta, rtol=1e-12, atol=1e-14)
    # The model is linear: the model and its linearization follow the same modified flow.
    exact = 0.5 * np.exp(-2 * (1 + eta / 2) * ts)  # R = r^2 / 2, r0 = -1
    np.testing.assert_allclose(sol.loss, exact, rtol=1e-9)
    np.testing.assert_allclose(sol.linear_loss, exact, rtol=1e-9)
    np.testing.assert_allclose(sol.output_gap, 0.0, atol=1e-12)


def test_gradient_descent_meets_the_modified_flow_at_second_order_on_the_scalar_model():
    # sympy: at t = 1 (1 / eta steps), (1 - eta)^(1/eta) - exp(-(1 + eta/2)) is O(eta^2) and
    # (1 - eta)^(1/eta) - exp(-1) only O(eta).
    eta = sp.Symbol("eta", positive=True)
    gd = (1 - eta) ** (1 / eta)
    modified = sp.series(gd - sp.exp(-(1 + eta / 2)), eta, 0, 3).removeO()
    plain = sp.series(gd - sp.exp(-1), eta, 0, 2).removeO()
    assert sp.simplify(modified.coeff(eta, 1)) == 0 and modified.coeff(eta, 2) != 0
    assert plain.coeff(eta, 1) != 0
    # The solves agree with the series' leading terms: GD and the modified flow at t = 1.
    c2, c1 = float(modified.coeff(eta, 2)), float(plain.coeff(eta, 1))
    problem = _scalar(1.0)
    for step in (1 / 40, 1 / 80):
        g = gf.solve(problem, ts=[1.0], solver=gf.GradientDescent(step), linearized=False)
        m = gf.solve(problem, ts=[1.0], modified_step=step, linearized=False, rtol=1e-12,
                     atol=1e-14)  # fmt: skip
        f = gf.solve(problem, ts=[1.0], linearized=False, rtol=1e-12, atol=1e-14)
        r_gd, r_m, r_f = (-np.sqrt(2 * s.loss[-1]) for s in (g, m, f))  # r = -sqrt(2 R)
        np.testing.assert_allclose(r_gd - r_m, -c2 * step**2, rtol=0.1)
        np.testing.assert_allclose(r_gd - r_f, -c1 * step, rtol=0.1)


def _net():
    kx, kt, kp = jax.random.split(jax.random.PRNGKey(0), 3)
    x = gf.data.uniform_sphere(kx, 20, 3)
    y = gf.data.teacher_targets(kt, x)
    model = gf.models.TwoLayer(30, "tanh")
    return gf.Problem(model, model.init(kp, 3), x, gf.SquareLoss(y), alpha=1.0), model, x


@pytest.mark.optimized
def test_gradient_descent_against_the_modified_flow_is_order_two_and_the_flow_order_one():
    # A smooth net, eta * lambda_max from 0.044 to 0.011 over a horizon of 8 (lambda_max t1 =
    # 3.5): the output distance of GD to each flow at four fixed times (flows at rtol 1e-12,
    # a thousand times below the smallest distance). Measured slopes 1.007 and 2.005.
    problem, model, x = _net()
    times = np.array([2.0, 4.0, 6.0, 8.0])
    etas = [8.0 / 80, 8.0 / 160, 8.0 / 320]
    plain, modified = [], []

    def outputs(sol):
        return jax.vmap(lambda p: model(p, x))(sol.params)

    for eta in etas:
        kw = dict(ts=times, save_params=True, linearized=False)
        gd = outputs(gf.solve(problem, solver=gf.GradientDescent(eta), **kw))
        flow = outputs(gf.solve(problem, rtol=1e-12, atol=1e-14, **kw))
        mod = outputs(gf.solve(problem, rtol=1e-12, atol=1e-14, modified_step=eta, **kw))
        plain.append(float(jnp.max(jnp.linalg.norm((flow - gd).reshape(4, -1), axis=1))))
        modified.append(float(jnp.max(jnp.linalg.norm((mod - gd).reshape(4, -1), axis=1))))
    assert gf.fit_rate(etas, plain).slope == pytest.approx(1.0, abs=0.1)
    assert gf.fit_rate(etas, modified).slope == pytest.approx(2.0, abs=0.1)
    assert all(p > 10 * m for p, m in zip(plain, modified))


def test_the_linearized_modified_flow_is_the_kernel_closed_form():
    # The linearized objective is quadratic: with Sigma = K / n and r0 = -y (centered), its
    # modified flow is r' = -(Sigma + (eta / 2) Sigma^2) r, so the linear loss is
    # sum_j c_j^2 exp(-2 (l_j + eta l_j^2 / 2) t) / (2n) over the eigenpairs of Sigma.
    problem, _, _ = _net()
    problem = gf.Problem(problem.apply, problem.params0, problem.inputs, problem.loss,
                         alpha=10.0, center=True)  # fmt: skip
    eta, ts = 0.5, np.array([1.0, 3.0, 9.0])
    sol = gf.solve(problem, ts=ts, modified_step=eta, rtol=1e-11, atol=1e-13)
    n = problem.loss.targets.shape[0]
    lam, vecs = np.linalg.eigh(np.asarray(gf.tangent_kernel(problem)) / n)
    c = vecs.T @ -np.ravel(problem.loss.targets)
    rates = lam + eta * lam**2 / 2
    exact = (c[:, None] ** 2 * np.exp(-2 * rates[:, None] * ts)).sum(0) / (2 * n)
    np.testing.assert_allclose(sol.linear_loss, exact, rtol=1e-7)
    # Not the plain flow's: the modified rates are faster.
    plain = (c[:, None] ** 2 * np.exp(-2 * lam[:, None] * ts)).sum(0) / (2 * n)
    assert np.all(np.abs(sol.linear_loss / plain - 1) > 1e-3)


def test_modified_step_is_checked_where_it_enters():
    with pytest.raises(ValueError, match=r"`modified_step` must be a gradient-descent step > 0"):
        gf.SolveOptions(1.0, modified_step=-0.1)
    with pytest.raises(TypeError, match=r"`modified_step` must be"):
        gf.SolveOptions(1.0, modified_step="0.1")
    with pytest.raises(ValueError, match=r"cannot be combined with `solver=gf.GradientDescent"):
        gf.solve(_scalar(1.0), t1=1.0, solver=gf.GradientDescent(0.1), modified_step=0.1)
    assert gf.SolveOptions(1.0, modified_step=0.1).replace(modified_step=None).modified_step is None


# The second-order modified equation (`modified_order=2`).


@pytest.mark.parametrize("alpha", [1.0, 30.0])
def test_the_second_order_modified_flow_of_a_quadratic_is_its_closed_form(alpha):
    # f = -r: f' f = r, f' f' f = -r, f'' = 0, so r' = -(1 + eta/2 + eta^2/3) r: the first three
    # terms of -log(1 - eta) / eta, GD's exact rate.
    eta, ts = 0.3, np.array([0.5, 1.0, 2.0, 4.0])
    sol = gf.solve(_scalar(alpha), ts=ts, modified_step=eta, modified_order=2, rtol=1e-12,
                   atol=1e-14)  # fmt: skip
    exact = 0.5 * np.exp(-2 * (1 + eta / 2 + eta**2 / 3) * ts)
    np.testing.assert_allclose(sol.loss, exact, rtol=1e-9)
    np.testing.assert_allclose(sol.linear_loss, exact, rtol=1e-9)


def _sine_field():
    # F(w) = (sin w - 1/2)^2 / 2: f = -F' is not linear, so f''(f, f) != 0 along the path.
    w, eta = sp.symbols("w eta")
    f = -sp.diff((sp.sin(w) - sp.Rational(1, 2)) ** 2 / 2, w)
    fp = sp.diff(f, w)
    modified = f - eta / 2 * fp * f + eta**2 * (sp.diff(f, w, 2) * f**2 / 12 + fp**2 * f / 3)
    return w, eta, f, modified


def test_the_second_order_field_is_euler_s_modified_equation_by_sympy():
    # On the double well F(w) = (w^2 - 1)^2 / 4 (f = w - w^3, f'' != 0): the time-eta flow of
    # the modified field, as its Lie series sum_k eta^k L^k w / k! (L = field * d/dw), equals
    # one GD step w + eta f(w) up to O(eta^4), exactly as polynomials; the first-order field
    # only up to O(eta^3).
    w, eta = sp.symbols("w eta")
    f = -sp.diff((w**2 - 1) ** 2 / 4, w)
    fp = sp.diff(f, w)
    second = f - eta / 2 * fp * f + eta**2 * (sp.diff(f, w, 2) * f**2 / 12 + fp**2 * f / 3)

    def flow_minus_step(field, order):
        term, series = w, w
        for k in range(1, order + 1):
            term = sp.expand(field * sp.diff(term, w))
            series += eta**k * term / sp.factorial(k)
        return sp.Poly(sp.expand(series - (w + eta * f)), eta)

    gap = flow_minus_step(second, 4)
    assert [gap.coeff_monomial(eta**k) for k in (1, 2, 3)] == [0, 0, 0]
    assert gap.coeff_monomial(eta**4) != 0
    first = flow_minus_step(f - eta / 2 * fp * f, 3)
    assert [first.coeff_monomial(eta**k) for k in (1, 2)] == [0, 0]
    assert first.coeff_monomial(eta**3) != 0


def test_the_second_order_modified_flow_matches_scipy_on_the_sympy_field():
    # gf's field (forward derivatives of jax's gradient) against sympy's, integrated by scipy's
    # DOP853 at rtol 1e-12: the nonlinear scalar model h(w) = sin(w), target 1/2, from w0 = 2.
    from scipy.integrate import solve_ivp

    w, eta_s, _, modified = _sine_field()
    eta, ts = 0.4, np.array([0.5, 1.0, 2.0, 3.0])
    field = sp.lambdify((w,), modified.subs(eta_s, eta))
    ref = solve_ivp(lambda t, y: [field(y[0])], (0, ts[-1]), [2.0], method="DOP853",
                    t_eval=ts, rtol=1e-12, atol=1e-14).y[0]  # fmt: skip
    problem = gf.Problem(lambda p, x: jnp.sin(p["w"]) * x, {"w": jnp.full((1, 1), 2.0)},
                         jnp.ones((1, 1)), gf.SquareLoss(jnp.full((1, 1), 0.5)))  # fmt: skip
    kw = dict(ts=ts, modified_step=eta, rtol=1e-12, atol=1e-14, linearized=False)
    sol = gf.solve(problem, modified_order=2, save_params=True, **kw)
    np.testing.assert_allclose(np.ravel(sol.params["w"]), ref, rtol=1e-9)
    # The first order is a different flow here: 6e-4 apart, 1e5 times the tolerance.
    first = gf.solve(problem, save_params=True, **kw)
    assert np.max(np.abs(np.ravel(first.params["w"]) - ref)) > 1e-4


def test_gradient_descent_meets_the_second_order_modified_flow_at_third_order():
    # sympy: at t = 1, (1 - eta)^(1/eta) - exp(-(1 + eta/2 + eta^2/3)) is O(eta^3); the solves
    # agree with its leading term to 10%.
    eta = sp.Symbol("eta", positive=True)
    gap = sp.series((1 - eta) ** (1 / eta) - sp.exp(-(1 + eta / 2 + eta**2 / 3)), eta, 0, 4)
    gap = gap.removeO()
    assert sp.simplify(gap.coeff(eta, 1)) == 0 and sp.simplify(gap.coeff(eta, 2)) == 0
    c3 = float(gap.coeff(eta, 3))
    assert c3 != 0
    problem = _scalar(1.0)
    for step in (1 / 20, 1 / 40):
        g = gf.solve(problem, ts=[1.0], solver=gf.GradientDescent(step), linearized=False)
        m = gf.solve(problem, ts=[1.0], modified_step=step, modified_order=2, linearized=False,
                     rtol=1e-13, atol=1e-15)  # fmt: skip
        r_gd, r_m = (-np.sqrt(2 * s.loss[-1]) for s in (g, m))
        np.testing.assert_allclose(r_gd - r_m, -c3 * step**3, rtol=0.1)


@pytest.mark.optimized
def test_gradient_descent_against_the_second_order_modified_flow_is_order_three():
    # The smooth net of the order-two test, eta * lambda_max(w0) = 0.087, 0.044, 0.022: GD's
    # output distance to the second-order flow at four fixed times falls at order 3 in eta
    # (flows at rtol 1e-13; distances 1.2e-4 to 1.9e-6; measured slope 3.015, and 2.014 for
    # the first-order flow at these steps).
    problem, model, x = _net()
    times = np.array([2.0, 4.0, 6.0, 8.0])
    etas = [8.0 / 40, 8.0 / 80, 8.0 / 160]
    gaps = []

    def outputs(sol):
        return jax.vmap(lambda p: model(p, x))(sol.params)

    for eta in etas:
        kw = dict(ts=times, save_params=True, linearized=False)
        gd = outputs(gf.solve(problem, solver=gf.GradientDescent(eta), **kw))
        mod = outputs(gf.solve(problem, rtol=1e-13, atol=1e-15, modified_step=eta,
                               modified_order=2, **kw))  # fmt: skip
        gaps.append(float(jnp.max(jnp.linalg.norm((mod - gd).reshape(4, -1), axis=1))))
    assert gf.fit_rate(etas, gaps).slope == pytest.approx(3.0, abs=0.1)


def test_modified_order_is_checked_where_it_enters():
    with pytest.raises(ValueError, match=r"`modified_order` must be 1 .* or 2"):
        gf.SolveOptions(1.0, modified_step=0.1, modified_order=3)
    with pytest.raises(ValueError, match=r"`modified_order` must be 1"):
        gf.SolveOptions(1.0, modified_step=0.1, modified_order=True)
    with pytest.raises(ValueError, match=r"needs its step: give `modified_step=eta`"):
        gf.solve(_scalar(1.0), t1=1.0, modified_order=2)
    assert gf.SolveOptions(1.0, modified_step=0.1, modified_order=2.0).modified_order == 2


def test_modified_order_at_its_default_leaves_the_stores_fingerprints_as_they_were():
    # Stores written before the option existed keep resuming: at 1 it is left out of a point's
    # fingerprint (the fields as they were), at 2 it changes it.
    import dataclasses

    from gradflow.sweeps._fingerprint import tree_fingerprint
    from gradflow.sweeps._sweep import _plan

    for options in (gf.SolveOptions(1.0), gf.SolveOptions(1.0, modified_step=0.1)):
        before = [(f.name, getattr(options, f.name)) for f in dataclasses.fields(options)]
        before = [(k, v) for k, v in before if k != "modified_order"]
        assert _plan(options, {}).id == tree_fingerprint(before)
    second = gf.SolveOptions(1.0, modified_step=0.1, modified_order=2)
    assert _plan(second, {}).id != _plan(second.replace(modified_order=1), {}).id
