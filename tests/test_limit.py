"""`t1=math.inf`: the flow integrated to its limit, stopped by the loss level `stop_loss`,
against the exact implicit bias of the diagonal net (Woodworth et al. 2020, Theorem 1)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf

N, D = 12, 30


def _instance(a):
    # Underdetermined regression by a sparse teacher; the depth-2 diagonal net from u = v = a.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D))
    beta = np.zeros(D)
    beta[:3] = [1.0, -2.0, 1.5]
    y = x @ beta
    net = gf.models.DiagonalDifferenceNet(2)
    problem = gf.Problem(net, net.init(D, tau=a), jnp.asarray(x), gf.SquareLoss(y[:, None]),
                         alpha=1.0)  # fmt: skip
    return problem, net, x, y


def _limit_error(sol, net, x, y, a):
    last = jax.tree_util.tree_map(lambda p: p[-1], sol.params)
    beta = np.asarray(net.beta(last))
    ref = np.asarray(gf.implicit_bias_limit(x, y, a).beta)
    return np.linalg.norm(beta - ref) / np.linalg.norm(ref)


def _evaluations(sol):
    return int(sol.stats["num_vector_field_evals"]) + int(sol.stats.get("num_jvp_evals", 0))


@pytest.mark.parametrize("a", [1.0, 100.0])
def test_the_limit_with_the_defaults_is_the_implicit_bias(a):
    # Measured: relative error 2.3e-7 (a = 1, Tsit5, 769 gradients) and 3.7e-7 (a = 100,
    # lambda_max = 4e5, Tsit5, 595, stopped at the floor): the horizon is not paid for past
    # the limit.
    problem, net, x, y = _instance(a)
    sol = gf.solve(problem, t1=math.inf, linearized=False, save_params=True)
    assert sol.succeeded and np.isfinite(sol.stats["stop_time"])
    assert sol.ts[-1] == sol.stats["stop_time"] and sol.ts[0] == 0.0
    # The default level, max(rtol^2, 1e-14), or the loss floor where that is higher (at
    # a = 100: 4.5e-14 of the initial loss).
    level = max(1e-14, float(sol.stats["stop_floor"]))
    assert sol.loss[-1] <= level * sol.loss[0] and sol.stats["stop_floor"] < 1e-13
    assert _limit_error(sol, net, x, y, a) < 1e-6
    assert _evaluations(sol) < 2e4
    assert "t1 = inf, taken as" in sol.info.solver_reason


@pytest.mark.optimized
def test_a_plateau_does_not_stop_the_flow_and_the_small_scale_limit_is_reached():
    # a = 1e-3: the flow starts at a saddle (u = v = a near the origin), where the gradient is
    # a thousandth of its later size and the loss stays at its initial value for a time of
    # order log(1/a): a stop on the gradient would end there. The loss is far above the
    # level, so the flow goes on to the limit. Measured: RKC, 16 947 gradients and products,
    # error 2.5e-7 against the exact limit.
    a = 1e-3
    problem, net, x, y = _instance(a)
    ts = np.concatenate([[0.0], np.geomspace(1.0, 1e4, 30)])
    sol = gf.solve(problem, t1=math.inf, ts=ts, stop_loss=1e-16, linearized=False,
                   save_params=True)  # fmt: skip
    assert sol.succeeded and _evaluations(sol) < 2e4
    assert _limit_error(sol, net, x, y, a) < 1e-6

    def grad_norm(i):
        at = jax.tree_util.tree_map(lambda v: v[i], sol.params)
        return float(jnp.linalg.norm(ravel_pytree(jax.grad(problem.objective)(at))[0]))

    gnorm = np.array([grad_norm(i) for i in range(len(sol.ts))])
    loss = np.asarray(sol.loss)
    plateau = (gnorm < 1e-2 * np.nanmax(gnorm)) & (loss > 0.5 * loss[0])
    assert plateau[0], "no plateau at the start: the test would prove nothing"
    assert sol.ts[np.flatnonzero(plateau)[-1]] < sol.stats["stop_time"]


def test_a_level_under_the_loss_floor_stops_at_the_floor_which_follows_the_tolerances():
    # At u = v = 100 the loss of u^2 - v^2 stalls where the error control leaves the stiff
    # modes (measured: 6e-16 to 1.3e-14 of its initial value at rtol 1e-8): a level of 1e-20
    # is never met, and the solve stops at its floor instead, saying so in stats.
    problem, net, x, y = _instance(100.0)
    floors = []
    for rtol in (1e-8, 1e-10):
        sol = gf.solve(problem, t1=math.inf, stop_loss=1e-20, rtol=rtol, atol=rtol / 100,
                       max_steps=5000, linearized=False, save_params=True)  # fmt: skip
        assert sol.succeeded and np.isfinite(sol.stats["stop_time"])
        floor = float(sol.stats["stop_floor"])
        assert 1e-20 < floor and sol.loss[-1] <= floor * sol.loss[0]
        # Where the floor stops the solve, the limit is as accurate as the floor allows:
        # about 2.5 sqrt(floor) relative (measured 3.7e-7 at rtol 1e-8, 4.6e-9 at 1e-10).
        assert _limit_error(sol, net, x, y, 100.0) < 10 * math.sqrt(floor)
        floors.append(floor)
    # The floor is the loss of a perturbation of the size rtol resolves: quadratic in rtol,
    # down by 1e4 from rtol 1e-8 to 1e-10 (measured 9.6e3; within a factor 3 either way).
    assert 1e4 / 3 < floors[0] / floors[1] < 3e4


def test_a_flow_that_cannot_interpolate_is_reported_not_returned():
    # A target the model cannot reach (y != 0 on inputs that are all zero) keeps the loss at
    # its initial value, far above the level and the floor: the solve ends at max_steps and
    # says so.
    net = gf.models.DiagonalDifferenceNet(2)
    problem = gf.Problem(net, net.init(3, tau=1.0), jnp.zeros((2, 3)),
                         gf.SquareLoss(jnp.ones((2, 1))), alpha=1.0)  # fmt: skip
    sol = gf.solve(problem, t1=math.inf, max_steps=200, linearized=False)
    assert sol.result == gf.RESULTS.max_steps_reached
    assert np.isnan(sol.stats["stop_time"]) and np.isnan(sol.loss[-1])
    assert np.isnan(sol.stats["stop_floor"])


def test_a_finite_horizon_stops_at_the_level_when_it_comes_first():
    problem, *_ = _instance(1.0)
    sol = gf.solve(problem, ts=[0.0, 0.1, 50.0], stop_loss=1e-6, linearized=True)
    assert sol.succeeded and 0.1 < sol.stats["stop_time"] < 50.0
    assert np.isfinite(sol.loss[:2]).all() and np.isnan(sol.loss[2])  # after the stop
    assert sol.ts[-1] == sol.stats["stop_time"]  # the stop, saved after the save times
    # Both losses at the level: the model's and the linearization's.
    assert sol.loss[-1] <= 1e-6 * sol.loss[0] and sol.linear_loss[-1] <= 1e-6 * sol.loss[0]


def test_the_stop_options_are_checked_where_they_enter():
    assert gf.SolveOptions(math.inf).stop_loss == 1e-14
    assert gf.SolveOptions(math.inf, rtol=1e-3).stop_loss == 1e-6
    assert gf.SolveOptions(1.0).stop_loss is None
    with pytest.raises(ValueError, match=r"`stop_loss` must be a fraction in \(0, 1\)"):
        gf.SolveOptions(math.inf, stop_loss=2.0)
    with pytest.raises(ValueError, match=r"`t1=inf` \(until the limit\) is for flows"):
        gf.SolveOptions(math.inf, solver=gf.GradientDescent(0.1))
    with pytest.raises(ValueError, match=r"`t1` must be a time > 0"):
        gf.SolveOptions(-math.inf)


def test_the_linearized_flow_stops_at_its_own_floor_at_the_minimum_norm_solution():
    # With linearized=True both losses must reach the level or their floors. The linearized
    # diagonal net at u = v = a has the features 2a x and -2a x: its flow from w0 goes to the
    # minimum-norm interpolant, beta = 2a (du - dv) = X^+ y (numpy's least squares).
    a = 100.0
    problem, net, x, y = _instance(a)
    sol = gf.solve(problem, t1=math.inf, stop_loss=1e-20, max_steps=5000, save_params=True)
    assert sol.succeeded and np.isfinite(sol.stats["stop_time"])
    floor = float(sol.stats["stop_floor"])
    assert 1e-20 < floor < 1e-12
    assert sol.loss[-1] <= floor * sol.loss[0] and sol.linear_loss[-1] <= floor * sol.loss[0]
    ref = np.linalg.lstsq(x, y, rcond=None)[0]
    # The linear model's beta is 2a (du - dv): measured 4.5e-7 from X^+ y, floor 1.7e-13.
    last = jax.tree_util.tree_map(lambda p: p[-1], sol.linear_params)
    du, dv = (np.asarray(last[k]) - a for k in ("u", "v"))
    assert np.linalg.norm(2 * a * (du - dv) - ref) / np.linalg.norm(ref) < 10 * math.sqrt(floor)
    # The model's own limit, argmin Q_a, is 1e-8 from X^+ y at this scale (1/a^4 at depth 2).
    assert _limit_error(sol, net, x, y, a) < 10 * math.sqrt(floor)


def test_an_overflowing_first_step_is_retried_not_taken_for_divergence():
    # The depth-3 net at u = v = 10 on a dense teacher (lambda_max(w0) = 1.4e6): diffrax's
    # first step overflows u^3, the error estimate is NaN and so is its next step, which the
    # guard once took for a collapse (RESULTS.diverged after 4 steps). Retried at a fifth of
    # the step, the flow reaches its limit (measured: error 7.5e-7, 535 evaluations).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D))
    y = x @ (2 * rng.standard_normal(D) / np.sqrt(D))
    net = gf.models.DiagonalDifferenceNet(3)
    problem = gf.Problem(net, net.init(D, tau=10.0), jnp.asarray(x), gf.SquareLoss(y[:, None]),
                         alpha=1.0)  # fmt: skip
    sol = gf.solve(problem, t1=math.inf, linearized=False, save_params=True)
    assert sol.succeeded and _evaluations(sol) < 2e3
    last = jax.tree_util.tree_map(lambda p: p[-1], sol.params)
    ref = gf.implicit_bias_limit(x, y, 10.0, depth=3).beta
    assert np.linalg.norm(np.asarray(net.beta(last)) - ref) / np.linalg.norm(ref) < 1e-5


def test_the_stop_is_located_at_the_level_crossing():
    # A linear model with square loss: the loss along the flow in closed form, and the time it
    # crosses stop_loss times its initial value by scipy's brentq. The stop is located inside
    # the step that crosses the level (bisection on the dense output), so every solver puts
    # it at the same time, whatever its steps, with the loss at the level from below.
    from scipy.optimize import brentq

    rng = np.random.default_rng(1)
    n, d = 10, 4
    q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    x = np.sqrt(n) * q * np.sqrt([50.0, 5.0, 1.0, 0.2])
    y = rng.standard_normal((n, 1))
    w0 = np.zeros((d, 1))
    problem = gf.Problem(lambda w, xx: xx @ w, jnp.asarray(w0), jnp.asarray(x), gf.SquareLoss(y))
    hess, g0 = x.T @ x / n, x.T @ (x @ w0 - y) / n
    lam, v = np.linalg.eigh(hess)

    def loss(t):
        w = w0 - v @ (((1 - np.exp(-lam * t)) / lam)[:, None] * (v.T @ g0))
        return 0.5 * np.sum((x @ w - y) ** 2) / n

    floor = 0.5 * np.sum((x @ np.linalg.lstsq(x, y, rcond=None)[0] - y) ** 2) / n
    level = floor + 1e-3 * (loss(0.0) - floor)
    stop = level / loss(0.0)
    crossing = brentq(lambda t: loss(t) - level, 1e-6, 1e3, xtol=1e-14, rtol=1e-14)
    for solver in (gf.RKC(), dfx_tsit5(), gf.Tsit5ThenRKC(), gf.BDF()):
        sol = gf.solve(problem, t1=math.inf, stop_loss=stop, rtol=1e-10, atol=1e-12,
                       solver=solver)  # fmt: skip
        assert sol.succeeded
        t_stop = float(sol.stats["stop_time"])
        # The loss returned at the stop is the level, from below, to rounding (measured:
        # 6e-14 to 1.2e-13 below it).
        ratio = float(sol.loss[-1]) / level
        assert 1 - 1e-12 < ratio <= 1 + 1e-15, (solver, ratio)
        # So the stop's time is off the crossing only by the solve's own loss error there,
        # over the loss's slope: measured 6.3e-11 (relative) for Tsit5 and the switch (which
        # does not switch here), whose loss at the stop is exact to rounding, and 5.2e-7 for
        # RKC, whose loss there is 1.0e-9 off, near the floor that the loss decays to.
        slope = (loss(crossing * (1 + 1e-6)) - loss(crossing * (1 - 1e-6))) / (2e-6 * crossing)
        solve_error = abs(float(sol.loss[-1]) - loss(t_stop))
        assert abs(t_stop - crossing) <= 2 * solve_error / abs(slope) + 1e-9 * crossing, solver
        assert abs(t_stop / crossing - 1) < (1e-9 if solve_error < 1e-14 else 1e-6), solver


def dfx_tsit5():
    import diffrax

    return diffrax.Tsit5()


def test_a_store_of_another_stop_revision_is_not_reused():
    # A sweep point with a stop carries the stop's revision in its fingerprint (the fields as
    # they were, plus it), so a store written when the stop sat at a step's end is refused,
    # not read back; a point without a stop keeps the fingerprint it always had.
    import dataclasses

    from gradflow._solve import STOP_REVISION
    from gradflow.sweeps._fingerprint import tree_fingerprint
    from gradflow.sweeps._sweep import _plan

    def fields(options):
        out = [(f.name, getattr(options, f.name)) for f in dataclasses.fields(options)]
        return [(k, v) for k, v in out if k != "modified_order"]

    plain = gf.SolveOptions(1.0)
    assert _plan(plain, {}).id == tree_fingerprint(fields(plain))
    stopped = gf.SolveOptions(math.inf)
    assert stopped.stop_loss is not None
    assert _plan(stopped, {}).id == tree_fingerprint(
        fields(stopped) + [("stop_revision", STOP_REVISION)]
    )
    assert _plan(stopped, {}).id != tree_fingerprint(fields(stopped))
    # The phase diagram's cells read the revision, so it is part of their fingerprint too.
    from gradflow.experiments.phase_diagram import PhaseDiagram

    assert "STOP_REVISION" in PhaseDiagram.cell.__code__.co_names


def test_the_stop_is_located_in_float32():
    # The bisection stops at float32's resolution of the time (16 eps), not at 1e-10, which
    # float32 cannot resolve; the loss at the stop is the level to float32 rounding (measured
    # 0.009999973 for the level 0.01 of the initial loss), and gradient descent stops at the
    # first iterate at or below it.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = np.tanh(x @ rng.standard_normal((4, 1)).astype(np.float32))
    problem = gf.Problem(lambda w, xx: jnp.tanh(xx @ w), jnp.full((4, 1), 0.1, jnp.float32),
                         jnp.asarray(x), gf.SquareLoss(jnp.asarray(y)))  # fmt: skip
    assert problem.dtype == jnp.float32
    sol = gf.solve(problem, t1=math.inf, stop_loss=1e-2, rtol=1e-5, atol=1e-7, linearized=False)
    assert sol.succeeded and sol.loss.dtype == jnp.float32
    ratio = float(sol.loss[-1] / sol.loss[0]) / 1e-2
    assert 1 - 1e-5 < ratio <= 1 + 1e-6, ratio
    gd = gf.solve(problem, t1=100.0, stop_loss=1e-2, linearized=False,
                  solver=gf.GradientDescent(0.1))  # fmt: skip
    k = float(gd.stats["stop_time"]) / 0.1
    assert gd.succeeded and abs(k - round(k)) < 1e-3 and float(gd.loss[-1] / gd.loss[0]) <= 1e-2
