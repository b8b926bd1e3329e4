"""RKC and ROCK2 against independent references: order, stability, stiff and smooth flows."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from helpers import two_layer_problem

import gradflow as gf
from gradflow.solvers._rock2 import rock2_stability_bound
from gradflow.solvers._stabilized import rkc_parameters, rkc_stability_polynomial
from theory import scalar_model_flows
from theory.toy import alpha as A_SYM, t as T_SYM, w0 as W0_SYM, y as Y_SYM

W0, Y = 0.8, 1.3


def rkc_bound(s):
    """beta(s) of RKC at its default damping 2/13."""
    return float(rkc_parameters(s, 2 / 13)[2])


def rock2_bound(s):
    return float(rock2_stability_bound(s))


SOLVERS = {"rkc": (gf.RKC, rkc_bound), "rock2": (gf.ROCK2, rock2_bound)}
# Fixed stage counts: RKC runs every s >= 2, ROCK2 its tabulated counts (3, 4, ..., 22, 24, ...).
STAGES = {"rkc": (2, 5, 20), "rock2": (3, 5, 20)}


_TRACES = []


def _counted_square(params, x):
    # Runs only when traced: the number of calls counts the traces. Every scalar problem here
    # uses it, so tests with the same solver configuration share one compilation.
    _TRACES.append(None)
    return gf.models.ScalarSquare()(params, x)


def scalar_problem(alpha):
    return gf.Problem(
        _counted_square,
        gf.models.ScalarSquare().init(W0),
        jnp.zeros((1, 1)),
        gf.SquareLoss(jnp.array([Y])),
        alpha=alpha,
        center=True,
    )


def exact(expr, alpha, ts):
    """A sympy closed form of `theory.toy` evaluated with 50 digits."""
    flows = scalar_model_flows()
    vals = {A_SYM: alpha, W0_SYM: W0, Y_SYM: Y}
    return np.array([float(flows.evaluate(expr, {**vals, T_SYM: t})) for t in ts])


def slope(hs, errors):
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


# --------------------------------------------------------------------------------------------
# 1. Order two at a fixed stage count and constant steps

_A = np.array([[1.0, -0.5, 0.3], [0.2, 0.8, -0.6], [-0.7, 0.1, 0.9], [0.4, 0.4, 0.4]])
_B = np.array([0.3, -0.2, 0.5, -0.1])
_Z0 = np.array([1.0, -0.8, 0.6])


def _objective_grad_numpy(z):
    # F(z) = sum_i log cosh(a_i . z - b_i) + 0.1 |z|_4^4, differentiated by hand.
    return _A.T @ np.tanh(_A @ z - _B) + 0.4 * z**3


def _smooth_vf(t, z, args):
    del t, args
    objective = lambda v: jnp.sum(jnp.log(jnp.cosh(_A @ v - _B))) + 0.1 * jnp.sum(v**4)  # noqa: E731
    return -jax.grad(objective)(z)


_STEP_TRACES = []


@eqx.filter_jit
def _constant_steps(solver, dt0, t1):
    _STEP_TRACES.append(None)
    return dfx.diffeqsolve(
        dfx.ODETerm(_smooth_vf),
        solver,
        0.0,
        t1,
        dt0,
        jnp.asarray(_Z0),
        saveat=dfx.SaveAt(t1=True, solver_state=True),
        stepsize_controller=dfx.ConstantStepSize(),
        max_steps=256,
    )


@pytest.mark.parametrize("name", ["rkc", "rock2"])
def test_order_two_on_a_smooth_nonlinear_flow(name):
    # Gradient flow of a non-quadratic objective to T = 1 against DOP853 at rtol 1e-13 (its
    # error, ~1e-14, is far below the smallest error fitted here, ~1e-5).
    cls, bound = SOLVERS[name]
    t1 = 1.0
    reference = scipy.integrate.solve_ivp(
        lambda t, z: -_objective_grad_numpy(z),
        (0.0, t1),
        _Z0,
        method="DOP853",
        rtol=1e-13,
        atol=1e-15,
    ).y[:, -1]
    steps = np.array([8, 16, 32, 64])
    hs = t1 / steps
    for s in STAGES[name]:
        errors = []
        for n, h in zip(steps, hs):
            # rho just under beta(s) / h: s is the smallest count whose interval holds h rho.
            rho = jnp.asarray(0.999 * bound(s) / h)
            sol = _constant_steps(cls(spectral_radius=gf.SpectralBound(rho)), jnp.asarray(h), t1)
            state = sol.solver_state
            assert int(state.num_accepted) == n
            assert int(state.stages_max) == s and int(state.stages_sum) == s * n
            errors.append(float(np.max(np.abs(np.asarray(sol.ys[-1]) - reference))))
        fit = slope(hs, errors)
        assert 1.85 <= fit <= 2.2, (s, fit, errors)


@pytest.mark.parametrize("name", ["rkc", "rock2"])
def test_order_two_on_the_scalar_model_through_solve(name):
    # gf.solve with constant steps to T = 1 at alpha = 1, against the 50-digit closed forms of
    # w(T) and wbar(T) (theory.toy).
    cls, bound = SOLVERS[name]
    flows = scalar_model_flows()
    t1 = 1.0
    w_exact, wbar_exact = exact(flows.w, 1.0, [t1])[0], exact(flows.wbar, 1.0, [t1])[0]
    problem = scalar_problem(1.0)
    steps = np.array([10, 20, 40, 80])
    hs = t1 / steps
    for s in STAGES[name]:
        errors = []
        for n, h in zip(steps, hs):
            rho = jnp.asarray(0.999 * bound(s) / h)
            sol = gf.solve(
                problem,
                ts=[t1],
                solver=cls(spectral_radius=gf.SpectralBound(rho)),
                stepsize_controller=dfx.ConstantStepSize(),
                dt0=h,
                save_params=True,
            )
            assert sol.succeeded
            stats = sol.stats
            assert int(stats["num_accepted_steps"]) == n
            assert int(stats["stages_max"]) == s and float(stats["stages_mean"]) == s
            w, wbar = float(sol.params["w"][0]), float(sol.linear_params["w"][0])
            errors.append(max(abs(w - w_exact), abs(wbar - wbar_exact)))
        fit = slope(hs, errors)
        assert 1.85 <= fit <= 2.2, (s, fit, errors)


# --------------------------------------------------------------------------------------------
# 2. Linear stability on a spectrum up to 1e6

_LAMBDA = np.logspace(0.0, 6.0, 13)
_Q = np.linalg.qr(np.random.default_rng(1).standard_normal((13, 13)))[0]
_HESSIAN = _Q @ np.diag(_LAMBDA) @ _Q.T


def _quadratic_vf(t, y, args):
    del t, args
    return -jnp.asarray(_HESSIAN) @ y


@eqx.filter_jit
def _quadratic_steps(solver, dt0, num_steps, y0):
    return dfx.diffeqsolve(
        dfx.ODETerm(_quadratic_vf),
        solver,
        0.0,
        num_steps * dt0,
        dt0,
        y0,
        saveat=dfx.SaveAt(steps=True),
        stepsize_controller=dfx.ConstantStepSize(),
        max_steps=64,
    )


@pytest.mark.parametrize("name", ["rkc", "rock2"])
@pytest.mark.parametrize("s", [5, 20])
def test_stability_on_a_stiff_quadratic(name, s):
    cls, bound = SOLVERS[name]
    y0 = jnp.asarray(np.random.default_rng(2).standard_normal(13))
    norm0 = float(jnp.linalg.norm(y0))
    # 50 steps inside the interval, 10 just beyond it (50 would overflow at s = 20).
    for factor, num in ((0.99, 50), (1.1, 10)):
        h = factor * bound(s) / _LAMBDA[-1]
        # The bound makes the solver run s stages whatever the true spectrum.
        solver = cls(spectral_radius=gf.SpectralBound(jnp.asarray(0.999 * bound(s) / h)))
        sol = _quadratic_steps(solver, jnp.asarray(h), jnp.asarray(num), y0)
        ys = np.asarray(sol.ys)[: int(sol.stats["num_accepted_steps"])]
        assert ys.shape[0] == num
        norms = np.linalg.norm(ys, axis=1)
        if factor < 1:
            # |R_s| <= 1 on [-beta(s), 0] and the map is symmetric: the norm never grows
            # (measured: it falls to 0.78-0.90 of its start in 50 steps).
            assert norms.max() <= norm0 * (1 + 1e-12)
        else:
            # Measured growth in 10 steps: 7e3 (RKC, s = 5) to 2e50 (ROCK2, s = 20).
            assert norms[-1] >= 1e3 * norm0
            if name == "rkc":
                # The stiffest mode grows by R_s(-h lambda_max) per step (the numpy polynomial):
                # to 1e-10 relative (measured: 4e-13 after 10 steps).
                q = _Q[:, -1]
                observed = (ys[-1] @ q) / (np.asarray(y0) @ q)
                predicted = rkc_stability_polynomial(-h * _LAMBDA[-1], s) ** num
                np.testing.assert_allclose(observed, predicted, rtol=1e-10)


# --------------------------------------------------------------------------------------------
# 3. Adaptive steps with power iteration on a stiff linear model

_N = 10


def _linear_apply(params, x):
    return x @ params["w"]


def _stiff_inputs():
    # X = U diag(sqrt(n lambda)) V^T: the Hessian X^T X / n of F_alpha has eigenvalues lambda,
    # log-spaced in [1, 1e4].
    rng = np.random.default_rng(3)
    u = np.linalg.qr(rng.standard_normal((_N, _N)))[0]
    v = np.linalg.qr(rng.standard_normal((_N, _N)))[0]
    x = u @ np.diag(np.sqrt(_N * np.logspace(0.0, 4.0, _N))) @ v.T
    return x, rng.standard_normal((_N, 1)) / np.sqrt(_N), rng.standard_normal((_N, 1))


def stiff_linear_problem():
    x, w0, y = _stiff_inputs()
    return gf.Problem(
        _linear_apply,
        {"w": jnp.asarray(w0)},
        jnp.asarray(x),
        gf.SquareLoss(jnp.asarray(y)),
        alpha=1.0,
        center=True,
    )


def _closed_form(problem, ts):
    """Loss and parameters of the exact linear flow (the model is linear: w = wbar)."""
    out, params = gf.linear_flow_closed_form(problem, ts)
    return np.array([float(problem.loss(o)) for o in out]), np.asarray(params["w"])


@pytest.mark.parametrize("name", ["rkc", "rock2"])
def test_adaptive_power_iteration_on_a_stiff_linear_model(name):
    cls, _ = SOLVERS[name]
    problem = stiff_linear_problem()
    ts = np.linspace(0.0, 1.0, 6)
    sol = gf.solve(problem, ts=ts, solver=cls(), rtol=1e-6, atol=1e-9, save_params=True)
    assert sol.succeeded
    loss_cf, w_cf = _closed_form(problem, ts)
    # At rtol 1e-6, against the closed form: parameters (norm ~1) to 3e-6 absolute and the
    # loss to 2e-4 relative (measured: RKC 3.1e-7 and 2.4e-5, ROCK2 8.7e-9 and 6.9e-7).
    np.testing.assert_allclose(np.asarray(sol.params["w"]), w_cf, rtol=0, atol=3e-6)
    np.testing.assert_allclose(sol.loss, loss_cf, rtol=2e-4)
    # A linear model is its own linearization: the gap is rounding (measured 5e-14).
    assert float(np.max(sol.param_gap)) < 1e-12

    stats = {k: np.asarray(v) for k, v in sol.stats.items()}
    accepted = int(stats["num_accepted_steps"])
    assert int(stats["num_vector_field_evals"]) >= float(stats["stages_mean"]) * accepted
    assert int(stats["num_jvp_evals"]) > 0 and int(stats["num_spectral_refreshes"]) > 0
    # Steps far beyond explicit reach: h * 1e4 above beta(2) ~ 2 (measured: RKC up to 20
    # stages, ROCK2 up to 7).
    assert int(stats["stages_max"]) >= 5
    # The true lambda_max: numpy's eigvalsh of the Hessian of F_alpha(w) = |X w - y|^2 / 2n,
    # materialized as X^T X / n. The joint flow's Jacobian is block-diagonal, with minus that
    # Hessian twice.
    x = _stiff_inputs()[0]
    lam = float(np.linalg.eigvalsh(x.T @ x / _N)[-1])
    # Power iteration times the safety factor 1.2, within 5% (measured: 1.2 lambda_max to 1e-6).
    assert 0.95 * 1.2 * lam <= float(stats["spectral_radius"]) <= 1.05 * 1.2 * lam


# --------------------------------------------------------------------------------------------
# 4. A smooth net at tight tolerance against Dopri8


def test_rkc_agrees_with_dopri8_on_a_smooth_net(getkey):
    problem = two_layer_problem(getkey(), n=20, d=3, m=50, alpha=10.0, center=True)
    ts = np.linspace(0.0, 2.0, 5)
    a = gf.solve(problem, ts=ts, solver=gf.RKC(), rtol=1e-9, atol=1e-12)
    b = gf.solve(problem, ts=ts, solver=dfx.Dopri8(), rtol=1e-12, atol=1e-14)
    assert a.succeeded and b.succeeded
    # Measured: loss to 1.3e-7 relative, param_gap (~1e-4) to 8.2e-7; the bars are ~10x that.
    np.testing.assert_allclose(a.loss, b.loss, rtol=1.5e-6)
    np.testing.assert_allclose(a.param_gap[1:], b.param_gap[1:], rtol=1e-5)
    assert a.param_gap[0] == 0.0


# --------------------------------------------------------------------------------------------
# 5. The joint-flow gap at alpha = 1e3

TS = np.linspace(0.0, 3.0, 7)


@pytest.mark.parametrize("name", ["rkc", "rock2"])
def test_gap_at_alpha_1e3_against_the_closed_form(name):
    cls, _ = SOLVERS[name]
    alpha = 1e3
    sol = gf.solve(scalar_problem(alpha), ts=TS, solver=cls(), rtol=1e-8)
    assert sol.succeeded
    gap = np.abs(exact(scalar_model_flows().gap(), alpha, TS))
    # The gap is ~1e-6 of w; to 1e-4 relative (measured: RKC 2.0e-6, ROCK2 7.6e-9).
    assert sol.param_gap[0] == 0.0
    np.testing.assert_allclose(sol.param_gap[1:], gap[1:], rtol=1e-4)


# --------------------------------------------------------------------------------------------
# 6. vmap over alpha equals a loop


def test_vmap_over_alpha_equals_a_loop():
    # alpha <= 10: the gap's velocity carries alpha^2 eps of rounding (gf.solve), which the
    # batched program (other fusions) does not reproduce bit for bit; at alpha = 1e3 batched and
    # looped gaps differ by 3e-10 relative (measured), at alpha = 10 by 1e-14.
    problem = scalar_problem(1.0)
    alphas = jnp.array([0.01, 1.0, 10.0])

    def run(alpha):
        sol = gf.solve(problem.with_alpha(alpha), ts=TS, solver=gf.RKC(), rtol=1e-8)
        stats = sol.stats
        return (
            sol.param_distance,
            sol.param_gap,
            sol.loss,
            stats["num_accepted_steps"],
            stats["stages_max"],
        )

    batched = eqx.filter_vmap(run)(alphas)
    for i, alpha in enumerate(alphas):
        looped = run(alpha)
        # Each member keeps its own steps and stage counts: the distance and the gap are equal
        # to 1e-12 relative. The loss decays to 1e-20 (1e-29 at alpha = 0.01): its relative
        # change is a cancellation in output - target, so the residual |alpha h - y| of an
        # output of size ~1 is compared instead, to 1e-13 absolute.
        np.testing.assert_allclose(batched[0][i], looped[0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(batched[1][i], looped[1], rtol=1e-12, atol=0)
        residual = lambda loss: np.sqrt(2 * np.asarray(loss))  # noqa: E731
        np.testing.assert_allclose(residual(batched[2][i]), residual(looped[2]), rtol=0, atol=1e-13)
        assert int(batched[3][i]) == int(looped[3]) and int(batched[4][i]) == int(looped[4])
    # The members do run different stage counts (measured: 5 at alpha = 0.01, 2 at 10).
    assert int(batched[4][0]) > int(batched[4][2])


# --------------------------------------------------------------------------------------------
# 7. One compilation for every alpha, stage count and bound


def test_no_recompilation_across_alpha():
    problem = scalar_problem(1e3)
    first = gf.solve(problem, ts=TS, solver=gf.RKC(), rtol=1e-8)
    count = len(_TRACES)
    second = gf.solve(problem.with_alpha(0.01), ts=TS, solver=gf.RKC(), rtol=1e-8)
    assert len(_TRACES) == count
    assert int(first.stats["stages_max"]) == 2 and int(second.stats["stages_max"]) >= 4


def _bounded(problem, bound):
    return gf.solve(
        problem,
        ts=[1.0],
        solver=gf.RKC(spectral_radius=gf.SpectralBound(bound)),
        stepsize_controller=dfx.ConstantStepSize(),
        dt0=0.01,
        save_params=True,  # the configuration of the order test above: one compilation
    )


def test_no_recompilation_across_array_bounds():
    problem = scalar_problem(1.0)
    first = _bounded(problem, jnp.asarray(50.0))
    count = len(_TRACES)
    second = _bounded(problem, jnp.asarray(5000.0))
    assert len(_TRACES) == count
    # h rho = 0.5 and 50: 2 stages, then the smallest s with beta(s) >= 50 (9).
    assert int(first.stats["stages_max"]) == 2
    assert (
        int(second.stats["stages_max"]) == 9 == next(s for s in range(2, 50) if rkc_bound(s) >= 50)
    )


def test_no_recompilation_across_float_bounds():
    # The same check as above on a small diffeqsolve, with the bound a Python float.
    first = _constant_steps(gf.RKC(spectral_radius=gf.SpectralBound(50.0)), jnp.asarray(0.01), 1.0)
    count = len(_STEP_TRACES)
    second = _constant_steps(
        gf.RKC(spectral_radius=gf.SpectralBound(5000.0)), jnp.asarray(0.01), 1.0
    )
    assert int(first.solver_state.stages_max) == 2 and int(second.solver_state.stages_max) == 9
    assert len(_STEP_TRACES) == count


# --------------------------------------------------------------------------------------------
# 8. Argument errors


def test_argument_errors():
    with pytest.raises(ValueError, match=r"`max_stages` must be an integer in \[2, 10000\]"):
        gf.RKC(max_stages=1)
    with pytest.raises(ValueError, match=r"`max_stages` must lie in \[3, 200\]"):
        gf.ROCK2(max_stages=2)
    with pytest.raises(ValueError, match="`safety` must be a number >= 1; got 0.5"):
        gf.PowerIteration(safety=0.5)
    with pytest.raises(ValueError, match=r"`bound` must be a finite number > 0; got -1.0"):
        gf.SpectralBound(-1.0)
    for cls in (gf.RKC, gf.ROCK2):
        with pytest.raises(TypeError, match="`spectral_radius` must be a gradflow.Abstract"):
            cls(spectral_radius=3.0)


# --------------------------------------------------------------------------------------------
# 9. Steps beyond the largest stability interval


def test_infeasible_steps_are_shortened():
    # rho = 1e6 bounds the true 1e4; with at most 4 stages a step needs h <= beta(4) / 1e6.
    problem = stiff_linear_problem()
    t1 = 0.01
    ts = np.linspace(0.0, t1, 6)
    solver = gf.RKC(max_stages=4, spectral_radius=gf.SpectralBound(jnp.asarray(1e6)))
    sol = gf.solve(problem, ts=ts, solver=solver, rtol=1e-6, atol=1e-9, save_params=True)
    assert sol.succeeded
    stats = {k: np.asarray(v) for k, v in sol.stats.items()}
    assert int(stats["stages_max"]) <= 4
    assert int(stats["num_jvp_evals"]) == 0 and float(stats["spectral_radius"]) == 1e6
    # Every accepted step is feasible, so there are at least t1 * 1e6 / beta(4) of them
    # (measured: 2041 against 1020); the controller's longer tries are rejected (2644).
    assert int(stats["num_accepted_steps"]) >= t1 * 1e6 / rkc_bound(4)
    assert int(stats["num_rejected_steps"]) > 0
    loss_cf, w_cf = _closed_form(problem, ts)
    # Against the closed form at rtol 1e-6 (measured: 4.5e-9 on w, of norm ~1, and 3.1e-7
    # relative on the loss, both in the stiff transient at t = 0.002).
    np.testing.assert_allclose(np.asarray(sol.params["w"]), w_cf, rtol=0, atol=5e-8)
    np.testing.assert_allclose(sol.loss, loss_cf, rtol=3e-6)


def test_stages_mean_is_exact():
    problem = stiff_linear_problem()
    ts = np.linspace(0.0, 1.0, 6)
    sol = gf.solve(problem, ts=ts, solver=gf.RKC(), rtol=1e-6, atol=1e-9, save_params=True)
    mean = sol.stats["stages_mean"]
    # stages_mean * num_accepted_steps is the whole number of stages of the accepted steps.
    total = float(mean) * int(sol.stats["num_accepted_steps"])
    assert abs(total - round(total)) < 1e-9, (mean.dtype, total)
    assert mean.dtype == problem.dtype
