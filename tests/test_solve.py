"""`gf.solve` against exact solutions, a hand-written GD loop, and the paper's rates."""

import dataclasses

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_problem
from jax.flatten_util import ravel_pytree

import gradflow as gf
from theory import scalar_model_flows
from theory.toy import alpha as A_SYM, t as T_SYM, w0 as W0_SYM, y as Y_SYM

W0, Y = 0.8, 1.3
# The save times of every scalar-model solve but the order fits: with `save_params=True` they
# all run one compiled program (alpha and the tolerances are traced, the shapes are not).
SCALAR_TS = np.linspace(0.0, 3.0, 16)


def scalar_problem(alpha, w0=W0, y=Y):
    model = gf.models.ScalarSquare()
    return gf.Problem(
        model,
        model.init(w0),
        jnp.zeros((1, 1)),
        gf.SquareLoss(jnp.array([y])),
        alpha=alpha,
        center=True,
    )


def exact(expr, alpha, ts, w0=W0, y=Y):
    """The sympy closed form evaluated with 50 digits, independent of gradflow."""
    flows = scalar_model_flows()
    vals = {A_SYM: alpha, W0_SYM: w0, Y_SYM: y}
    return np.array([float(flows.evaluate(expr, {**vals, T_SYM: t})) for t in ts])


@pytest.mark.parametrize("alpha", [1.0, 10.0, 100.0, 1e3])
def test_scalar_model_matches_closed_forms(alpha):
    flows = scalar_model_flows()
    ts = SCALAR_TS
    sol = gf.solve(scalar_problem(alpha), ts=ts, rtol=1e-11, atol=1e-13, save_params=True)
    assert sol.succeeded
    w, wbar = np.asarray(sol.params["w"]), np.asarray(sol.linear_params["w"])
    w_exact, wbar_exact = exact(flows.w, alpha, ts), exact(flows.wbar, alpha, ts)
    # Tolerance 1e-8 relative (the bar); the solve runs at rtol 1e-11.
    np.testing.assert_allclose(w, w_exact, rtol=1e-8, atol=0)
    np.testing.assert_allclose(wbar, wbar_exact, rtol=1e-8, atol=0)
    np.testing.assert_allclose(sol.param_distance, np.abs(w_exact - W0), rtol=1e-8, atol=1e-15)
    gap = np.abs(exact(flows.gap(), alpha, ts))
    np.testing.assert_allclose(sol.param_gap[1:], gap[1:], rtol=1e-6)


def test_scalar_model_gap_at_alpha_1e4():
    # At alpha = 1e4 the gap is ~1e-8 of |w|: a separately integrated w and wbar would lose it.
    alpha, ts = 1e4, SCALAR_TS
    sol = gf.solve(scalar_problem(alpha), ts=ts, rtol=1e-10, atol=1e-12, save_params=True)
    gap = np.abs(exact(scalar_model_flows().gap(), alpha, ts[1:]))
    assert np.all(gap < 1e-7 * W0)
    np.testing.assert_allclose(sol.param_gap[1:], gap, rtol=1e-4)


def test_scalar_model_gap_at_default_tolerances():
    alpha, ts = 1e4, SCALAR_TS
    sol = gf.solve(scalar_problem(alpha), ts=ts, save_params=True)
    gap = np.abs(exact(scalar_model_flows().gap(), alpha, ts[1:]))
    np.testing.assert_allclose(sol.param_gap[1:], gap, rtol=1e-4)


def test_output_gap_and_losses_scalar():
    alpha, ts = 10.0, SCALAR_TS
    flows = scalar_model_flows()
    sol = gf.solve(scalar_problem(alpha), ts=ts, rtol=1e-11, atol=1e-13, save_params=True)
    w, wbar = exact(flows.w, alpha, ts), exact(flows.wbar, alpha, ts)
    out = alpha * (w**2 - W0**2)
    lin = alpha * 2 * W0 * (wbar - W0)
    np.testing.assert_allclose(sol.output_gap, np.abs(out - lin), rtol=1e-7, atol=1e-13)
    np.testing.assert_allclose(sol.loss, 0.5 * (out - Y) ** 2, rtol=1e-8, atol=1e-16)
    np.testing.assert_allclose(sol.linear_loss, 0.5 * (lin - Y) ** 2, rtol=1e-8, atol=1e-16)


# Constant steps dt = T / N of the joint (u, e) solve: the error at T of each metric against
# the 50-digit closed form falls as dt^order. alpha = 2 and T = 0.5 keep every error at least
# 100 times above float64 rounding (relative errors 4e-14 to 0.14) while the step counts stay
# in the asymptotic regime: the fitted slopes are within 0.08 of the order (Tsit5's leading
# error constant is small, so its slopes approach 5 from below: 4.92 to 4.97 here).
ORDER_ALPHA, ORDER_T = 2.0, 0.5
ORDER_CASES = [
    (dfx.Euler(), 1, [64, 128, 256, 512]),
    (dfx.Heun(), 2, [32, 64, 128, 256]),
    (dfx.Bosh3(), 3, [16, 32, 64, 128]),
    (dfx.Tsit5(), 5, [32, 48, 64, 96]),
]


@pytest.mark.parametrize(
    "solver, order, steps", ORDER_CASES, ids=[type(c[0]).__name__ for c in ORDER_CASES]
)
def test_joint_solve_convergence_order(solver, order, steps):
    flows = scalar_model_flows()
    exprs = {
        "param_distance": flows.w - W0_SYM,
        "param_gap": flows.gap(),
        "output_gap": A_SYM * (flows.w**2 - W0_SYM**2) - A_SYM * 2 * W0_SYM * (flows.wbar - W0_SYM),
    }
    truth = {k: abs(exact(e, ORDER_ALPHA, [ORDER_T])[0]) for k, e in exprs.items()}
    problem = scalar_problem(ORDER_ALPHA)
    errors = {k: [] for k in exprs}
    for n in steps:
        sol = gf.solve(
            problem,
            t1=ORDER_T,
            ts=[ORDER_T],
            solver=solver,
            dt0=ORDER_T / n,
            stepsize_controller=dfx.ConstantStepSize(),
        )
        assert sol.succeeded and int(sol.stats["num_steps"]) == n
        for k in exprs:
            errors[k].append(abs(float(getattr(sol, k)[-1]) - truth[k]))
    eps = np.finfo(np.float64).eps
    for k, errs in errors.items():
        assert min(errs) > 100 * eps * truth[k], (k, errs)  # far above rounding
        fit = gf.fit_rate([ORDER_T / n for n in steps], errs)
        # Tolerance 0.15 on the fitted order (log-log slope of error against dt).
        assert abs(fit.slope - order) < 0.15, (k, fit)


def test_linear_flow_matches_closed_form_and_eigendecomposition(getkey):
    # n = 50 samples, p = 600 parameters; tolerance 1e-8 absolute on O(1) quantities.
    problem = two_layer_problem(getkey(), n=50, d=5, m=100, alpha=3.0, center=True)
    assert problem.num_params >= 500
    ts = np.array([0.0, 0.3, 1.0, 4.0, 20.0])
    sol = gf.solve(problem, ts=ts, rtol=1e-11, atol=1e-13, save_params=True)
    out_cf, params_cf = gf.linear_flow_closed_form(problem, ts)
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])
    np.testing.assert_allclose(flat(sol.linear_params), flat(params_cf), atol=1e-8, rtol=0)
    lin_out = jax.vmap(lambda p: problem.alpha * problem.hbar(p))(sol.linear_params)
    np.testing.assert_allclose(lin_out, out_cf, atol=1e-8, rtol=0)

    # Independent: materialized Jacobian, eigh of its Gram matrix, and the linear loss.
    w0, unravel = ravel_pytree(problem.params0)
    jac = np.asarray(jax.jacfwd(lambda w: problem.h(unravel(w)))(w0)).reshape(-1, w0.size)
    n = problem.loss.targets.shape[0]
    lam, vec = np.linalg.eigh(jac @ jac.T / n)
    r0 = -np.asarray(problem.loss.targets).reshape(-1)
    for i, t in enumerate(ts):
        expected = -r0 + vec @ (np.exp(-lam * t) * (vec.T @ r0))
        np.testing.assert_allclose(out_cf[i].reshape(-1), expected, atol=1e-9)
    np.testing.assert_allclose(
        sol.linear_loss,
        [0.5 * np.sum((o - problem.loss.targets) ** 2) / n for o in out_cf],
        rtol=1e-8,
    )


def test_gradient_descent_equals_hand_written_loop(getkey):
    problem = two_layer_problem(getkey(), n=15, d=3, m=20, alpha=5.0, center=True)
    eta, steps = 0.05, 200
    ts = eta * np.arange(0, steps + 1, 20)
    sol = gf.solve(problem, t1=eta * steps, ts=ts, solver=gf.GradientDescent(eta), save_params=True)
    assert sol.succeeded and int(sol.stats["num_steps"]) == steps

    grad = jax.jit(jax.grad(problem.objective))
    lgrad = jax.jit(jax.grad(problem.linear_objective))
    w, wbar = problem.params0, problem.params0
    ws, wbars = [w], [wbar]
    for k in range(1, steps + 1):
        w = jax.tree_util.tree_map(lambda p, g: p - eta * g, w, grad(w))
        wbar = jax.tree_util.tree_map(lambda p, g: p - eta * g, wbar, lgrad(wbar))
        if k % 20 == 0:
            ws.append(w)
            wbars.append(wbar)
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])
    stack = lambda xs: np.stack([ravel_pytree(x)[0] for x in xs])  # noqa: E731
    # Machine precision: the same iteration in other coordinates; rounding only (1e-13).
    np.testing.assert_allclose(flat(sol.params), stack(ws), rtol=0, atol=1e-13)
    np.testing.assert_allclose(flat(sol.linear_params), stack(wbars), rtol=0, atol=1e-13)
    w0 = np.asarray(ravel_pytree(problem.params0)[0])
    np.testing.assert_allclose(
        sol.param_distance, np.linalg.norm(stack(ws) - w0, axis=1), rtol=1e-10, atol=1e-15
    )


def test_gradient_descent_info_has_no_tolerances(getkey):
    # The problem and solve of `test_gradient_descent_equals_hand_written_loop` (one program).
    problem = two_layer_problem(getkey(), n=15, d=3, m=20, alpha=5.0, center=True)
    eta, steps = 0.05, 200
    ts = eta * np.arange(0, steps + 1, 20)
    sol = gf.solve(problem, t1=eta * steps, ts=ts, solver=gf.GradientDescent(eta), save_params=True)
    info = sol.info
    # Constant steps: no error control, so no tolerances (the defaults are not recorded).
    assert info.rtol is None and info.atol is None
    assert info.solver == "GradientDescent(learning_rate=0.05)" and info.solver_choice == "given"
    assert info.solver_reason is None and info.stiffness is None
    assert info.t1 == 10.0 and info.dtype == "float64" and info.linearized and info.center
    assert info.num_params == 20 * 3 + 20 * 1  # TwoLayer(20) on d=3, k=1: (20, 3) and (20, 1)
    # The options it ran with, the save times placed on the iterates; no auto choice.
    assert info.options == gf.SolveOptions(eta * steps, ts, solver=gf.GradientDescent(eta),
                                           save_params=True)  # fmt: skip
    assert info.options.ts == tuple(float(v) for v in sol.ts) and info.choice is None
    assert hash(info) == hash(dataclasses.replace(info))  # its JSON form: tests/sweeps/


def test_solve_with_options_equals_solve_with_keywords():
    # The program of the scalar closed-form tests (save_params, SCALAR_TS): bitwise the same
    # solve, whether the options come as keywords or as one object.
    keywords = dict(ts=SCALAR_TS, rtol=1e-9, atol=1e-12, save_params=True)
    by_keywords = gf.solve(scalar_problem(10.0), **keywords)
    options = gf.SolveOptions(**keywords)
    by_options = gf.solve(scalar_problem(10.0), options=options)
    for a, b in zip(jax.tree_util.tree_leaves(by_keywords), jax.tree_util.tree_leaves(by_options)):
        np.testing.assert_array_equal(a, b)
    assert by_options.info == by_keywords.info
    # The options it ran with: the given ones, with the solver "auto" chose.
    assert by_options.info.options == options.replace(solver=dfx.Tsit5())
    assert by_options.info.choice.solver == dfx.Tsit5() and by_options.info.solver == "Tsit5"
    # A given solver is reported as given, with no choice.
    given = gf.solve(scalar_problem(10.0), options=options.replace(solver=dfx.Tsit5()))
    assert given.info.choice is None and given.info.options == options.replace(solver=dfx.Tsit5())
    np.testing.assert_array_equal(given.loss, by_options.loss)


def test_options_and_keywords_are_not_mixed():
    problem, options = scalar_problem(10.0), gf.SolveOptions(1.0)
    with pytest.raises(ValueError, match=r"not both: got `options` and `solver`, `rtol`"):
        gf.solve(problem, options=options, rtol=1e-6, solver=dfx.Tsit5())
    with pytest.raises(ValueError, match=r"got `options` and `t1`.*options.replace\(t1=...\)"):
        gf.solve(problem, 2.0, options=options)
    with pytest.raises(TypeError, match=r"`options` must be a gf.SolveOptions; got dict"):
        gf.solve(problem, options={"t1": 1.0})
    with pytest.raises(ValueError, match=r"Give the final time `t1`.*`options` has neither"):
        gf.solve(problem, options=gf.SolveOptions(rtol=1e-6))
    with pytest.raises(TypeError, match="`throw` must be True or False"):
        gf.solve(problem, options=options, throw="yes")


def test_solution_with_its_info_passes_through_filter_jit():
    traces = []

    @eqx.filter_jit
    def run(problem):
        traces.append(1)
        return gf.solve(problem, ts=SCALAR_TS, solver=dfx.Tsit5(), save_params=True)

    jitted = run(scalar_problem(10.0))
    # Ground truth: the eager solve (the program of the scalar closed-form tests).
    eager = gf.solve(scalar_problem(10.0), ts=SCALAR_TS, solver=dfx.Tsit5(), save_params=True)
    assert isinstance(jitted.info, gf.SolveInfo) and jitted.info == eager.info
    np.testing.assert_allclose(jitted.param_gap, eager.param_gap, rtol=1e-12, atol=1e-16)
    run(scalar_problem(30.0))  # alpha is an array leaf: no retrace
    assert len(traces) == 1

    # A Solution as an input: `info` is part of the static key, hashed and compared.
    seen = []

    @eqx.filter_jit
    def final_loss(sol):
        seen.append(sol.info)
        return sol.loss[-1]

    np.testing.assert_allclose(final_loss(jitted), eager.loss[-1], rtol=1e-12)
    final_loss(eager)  # equal info, same shapes: the cached program
    assert seen == [jitted.info]
    options = eager.info.options.replace(rtol=1e-6)
    other = dataclasses.replace(eager, info=dataclasses.replace(eager.info, options=options))
    final_loss(other)  # another info is another static key
    assert len(seen) == 2 and seen[1].rtol == 1e-6


def test_gradient_descent_converges_to_flow_at_first_order(getkey):
    # Forward Euler is first order: the error at fixed t halves with the step (slope 1).
    problem = two_layer_problem(getkey(), n=10, d=3, m=10, alpha=2.0, center=True)
    t1 = 1.0
    ref = gf.solve(problem, t1=t1, ts=[t1], rtol=1e-12, atol=1e-14, save_params=True)
    w_ref = ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], ref.params))[0]
    etas, errs = [0.02, 0.01, 0.005, 0.0025], []
    for eta in etas:
        gd = gf.solve(problem, t1=t1, ts=[t1], solver=gf.GradientDescent(eta), save_params=True)
        w = ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], gd.params))[0]
        errs.append(float(jnp.linalg.norm(w - w_ref)))
    fit = gf.fit_rate(etas, errs)
    assert abs(fit.slope - 1.0) < 0.05, fit


def test_rates_on_centered_smooth_net(getkey):
    # Finite-horizon theorem: slopes -1, -2, -1 (tolerance 0.1, the bar).
    problem = two_layer_problem(getkey(), n=20, d=3, m=40, activation="tanh", center=True)
    alphas = np.array([10.0, 30.0, 100.0, 300.0, 1000.0])
    sups = {"param_distance": [], "param_gap": [], "output_gap": []}
    for a in alphas:
        sol = gf.solve(problem.with_alpha(a), t1=5.0)
        assert sol.succeeded
        for k in sups:
            sups[k].append(float(np.max(getattr(sol, k))))
    for name, expected in [("param_distance", -1), ("param_gap", -2), ("output_gap", -1)]:
        fit = gf.fit_rate(alphas, sups[name])
        assert abs(fit.slope - expected) < 0.1, (name, fit)


def test_tsit5_agrees_with_other_solver_at_tighter_tolerance(getkey):
    problem = two_layer_problem(getkey(), n=15, d=3, m=20, alpha=30.0, center=True)
    ts = np.linspace(0, 3, 4)
    a = gf.solve(problem, ts=ts, rtol=1e-8, atol=1e-10)
    b = gf.solve(problem, ts=ts, solver=dfx.Dopri8(), rtol=1e-12, atol=1e-14)
    # Relative agreement at the default tolerance (rtol 1e-8 per step, 1e-6 on the path).
    np.testing.assert_allclose(a.param_gap[1:], b.param_gap[1:], rtol=1e-6)
    np.testing.assert_allclose(a.output_gap[1:], b.output_gap[1:], rtol=1e-6)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-7)


def test_nonlinear_only_solve_matches_joint(getkey):
    problem = two_layer_problem(getkey(), n=10, d=3, m=10, alpha=1.0, center=False)
    ts = np.linspace(0, 2, 5)
    joint = gf.solve(problem, ts=ts, rtol=1e-11, atol=1e-13)
    alone = gf.solve(problem, ts=ts, rtol=1e-11, atol=1e-13, linearized=False)
    assert alone.param_gap is None and alone.output_gap is None
    np.testing.assert_allclose(alone.loss, joint.loss, rtol=1e-8)
    np.testing.assert_allclose(alone.param_distance, joint.param_distance, rtol=1e-8, atol=1e-14)


def test_no_recompilation_across_alpha(getkey):
    traces = []
    model = gf.models.TwoLayer(10, "tanh")

    def apply(params, x):
        traces.append(1)
        return model(params, x)

    kp, kd = jax.random.split(getkey())
    x = jax.random.normal(kd, (8, 3))
    problem = gf.Problem(
        apply, model.init(kp, 3), x, gf.SquareLoss(jnp.zeros((8, 1))), alpha=1.0, center=True
    )
    gf.solve(problem, t1=1.0)
    count = len(traces)
    for a in [3.0, 30.0]:
        gf.solve(problem.with_alpha(a), t1=1.0)
        gf.solve(problem.with_alpha(a), t1=2.0)
    assert len(traces) == count


def test_vmap_over_alpha_equals_loop(getkey):
    problem = two_layer_problem(getkey(), n=10, d=3, m=10, center=True)
    alphas = jnp.array([1.0, 10.0, 100.0])

    def gap(a):
        # save_params: the looped solves then run the program of the reference solve in
        # `test_gradient_descent_converges_to_flow_at_first_order` (same shapes, two save times).
        return gf.solve(problem.with_alpha(a), t1=1.0, ts=[0.5, 1.0], save_params=True).param_gap

    batched = jax.vmap(gap)(alphas)
    looped = jnp.stack([gap(a) for a in alphas])
    # Batched adaptive solves take the union of steps, so agree to the tolerance, not bitwise.
    np.testing.assert_allclose(batched, looped, rtol=1e-6)


def test_logistic_loss_flow_decreases_loss(getkey):
    kd, kp = jax.random.split(getkey())
    x = jax.random.normal(kd, (20, 3))
    y = jnp.sign(x[:, :1])
    model = gf.models.TwoLayer(20, "tanh")
    problem = gf.Problem(model, model.init(kp, 3, doubled=True), x, gf.LogisticLoss(y), alpha=10.0)
    sol = gf.solve(problem, t1=20.0)
    assert sol.succeeded
    assert np.all(np.diff(np.asarray(sol.loss)) <= 1e-12)  # a gradient flow never goes uphill
    np.testing.assert_allclose(sol.loss[0], np.log(2.0), rtol=1e-12)  # h(w0) = 0


def test_kernel_drift_against_materialized_jacobians(getkey):
    problem = two_layer_problem(getkey(), n=6, d=3, m=8, alpha=1.0)
    sol = gf.solve(problem, ts=[2.0], save_params=True)
    w_t = jax.tree_util.tree_map(lambda x: x[0], sol.params)
    w0, unravel = ravel_pytree(problem.params0)

    def jac(w):
        return np.asarray(jax.jacfwd(lambda v: problem.h(unravel(v)))(w)).reshape(-1, w.size)

    k0 = jac(w0) @ jac(w0).T
    k1 = jac(ravel_pytree(w_t)[0]) @ jac(ravel_pytree(w_t)[0]).T
    expected = np.linalg.norm(k1 - k0, 2) / np.linalg.norm(k0, 2)
    assert expected > 1e-3  # alpha = 1 is not lazy: the kernel moves
    np.testing.assert_allclose(gf.kernel_drift(problem, w_t), expected, rtol=1e-10)
    assert gf.kernel_drift(problem, problem.params0) == 0.0


# ------------------------------------------------------------ gradient descent: a discrete method


def _gd_loop(problem, eta, steps):
    """Hand-written gradient descent: the losses R(alpha h(w_k)) for k = 0..steps."""
    grad = jax.jit(jax.grad(problem.objective))
    w, losses = problem.params0, []
    for _ in range(steps + 1):
        losses.append(float(problem.loss(problem.alpha * problem.h(w))))
        w = jax.tree_util.tree_map(lambda p, g: p - eta * g, w, grad(w))
    return np.array(losses)


def test_gradient_descent_honours_max_steps(getkey):
    # A given budget below t1 / eta used to be raised silently to t1 / eta.
    problem = two_layer_problem(getkey(), n=6, d=3, m=5, alpha=2.0)
    eta, steps, budget = 0.1, 10, 4
    ts = eta * np.arange(steps + 1)
    solver = gf.GradientDescent(eta)
    sol = gf.solve(problem, t1=eta * steps, ts=ts, solver=solver, max_steps=budget)
    assert sol.result == gf.RESULTS.max_steps_reached
    assert int(sol.stats["num_steps"]) == budget
    # The iterates within the budget are the hand-written loop's (rounding: 1e-12 relative);
    # the later ones were not computed (NaN).
    expected = _gd_loop(problem, eta, budget)
    np.testing.assert_allclose(sol.loss[: budget + 1], expected, rtol=1e-12)
    assert np.all(np.isnan(sol.loss[budget + 1 :]))
    # A budget that suffices, and the default (as many steps as t1 needs), succeed.
    assert gf.solve(problem, t1=eta * steps, ts=ts, solver=solver, max_steps=steps).succeeded
    assert gf.solve(problem, t1=eta * steps, ts=ts, solver=solver).succeeded


def test_gradient_descent_default_budget_covers_long_runs():
    # More iterations than the flow's default budget (100 000): the default is "as many as t1
    # needs". A linear model on one sample, F(w) = (w - 1)^2 / 2 from w0 = 0: gradient descent
    # has w_k - 1 = -(1 - eta)^k, so the loss is (1 - eta)^(2k) / 2. Against that closed form
    # (rounding accumulates to ~1e-11 over the steps: 1e-9 relative).
    problem = gf.Problem(
        lambda p, x: x @ p["w"],
        {"w": jnp.zeros((1, 1))},
        jnp.ones((1, 1)),
        gf.SquareLoss(jnp.ones((1, 1))),
    )
    eta, steps = 1e-5, 120_000
    sol = gf.solve(problem, t1=eta * steps, ts=[eta * steps], solver=gf.GradientDescent(eta))
    assert sol.succeeded and int(sol.stats["num_steps"]) == steps
    np.testing.assert_allclose(float(sol.loss[-1]), 0.5 * (1 - eta) ** (2 * steps), rtol=1e-9)


def test_gradient_descent_refuses_save_times_between_iterates(getkey):
    problem = two_layer_problem(getkey(), n=6, d=3, m=5, alpha=2.0)
    solver = gf.GradientDescent(0.1)
    with pytest.raises(
        ValueError,
        match=r"`ts` must be iterates, multiples of learning_rate=0.1; got ts\[1\]=0.15, "
        r"between iterates 1 and 2.*ts = eta \* np.arange",
    ):
        gf.solve(problem, t1=1.0, ts=[0.0, 0.15, 1.0], solver=solver)
    # Times within 1e-9 (relative) of an iterate are that iterate, placed on it exactly.
    eta, steps = 0.1, 10
    ts = eta * np.arange(0, steps + 1, 5) * (1 + 1e-12)
    sol = gf.solve(problem, t1=eta * steps, ts=ts, solver=solver)
    np.testing.assert_array_equal(np.asarray(sol.ts), eta * np.array([0.0, 5.0, 10.0]))
    np.testing.assert_allclose(sol.loss, _gd_loop(problem, eta, steps)[::5], rtol=1e-12)


# ------------------------------------------------------------ what a person reads


def test_results_print_their_names(getkey):
    assert repr(gf.RESULTS.successful) == "RESULTS.successful"
    assert str(gf.RESULTS.diverged) == "RESULTS.diverged"
    # Built by `where`, passed through jit: still named, still equinox items (message lookup).
    picked = gf.RESULTS.where(jnp.asarray(True), gf.RESULTS.diverged, gf.RESULTS.successful)
    assert repr(picked) == "RESULTS.diverged" and "NaN or inf" in gf.RESULTS[picked]
    assert repr(jax.jit(lambda r: r)(gf.RESULTS.step_size_collapsed)) == (
        "RESULTS.step_size_collapsed"
    )
    # Stacked (a sweep's points): every name.
    stacked = jax.tree_util.tree_map(
        lambda *x: np.stack(x), gf.RESULTS.successful, gf.RESULTS.max_steps_reached
    )
    assert repr(stacked) == "RESULTS[successful, max_steps_reached]"
    seen = []
    jax.jit(lambda r: seen.append(repr(r)) or r)(gf.RESULTS.successful)
    assert seen == ["RESULTS<traced>"]
    # The names are the enumeration's own, in order (the repr indexes them by value).
    from gradflow._solution import _RESULT_NAMES

    assert len(_RESULT_NAMES) == len(gf.RESULTS)
    for i, name in enumerate(_RESULT_NAMES):
        assert int(getattr(gf.RESULTS, name)._value) == i

    sol = gf.solve(scalar_problem(10.0), ts=SCALAR_TS, solver=dfx.Tsit5(), save_params=True)
    assert repr(sol.result) == "RESULTS.successful" and str(sol.result) == "RESULTS.successful"
    text = repr(sol)
    assert "result=RESULTS.successful" in text and "gradflow._solve" not in text
    # Scalars by value: alpha and the step counts, read against the solution itself.
    assert "alpha=10.0" in text
    assert f"'num_steps': {int(sol.stats['num_steps'])}" in text
