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
