"""`Tsit5ThenRKC`: the stiffness test on Tsit5's stages, the switch to RKC inside one solve
(against closed forms of linear flows), its statistics, under `vmap`, and `auto`'s use of it."""

import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_problem

import gradflow as gf
from gradflow.solvers._switch import TSIT5_REAL_STABILITY, stiffness_estimate
from gradflow.sweeps._records import info_from_record, info_record


def test_tsit5_real_stability_interval_from_its_tableau():
    # R(z) = 1 + z b^T (I - z A)^{-1} 1 from diffrax's own tableau: |R| <= 1 on [-3.507, 0].
    import diffrax._solver.tsit5 as tsit5

    tab = tsit5._tsit5_tableau
    a = np.zeros((7, 7))
    for i, row in enumerate(tab.a_lower):
        a[i + 1, : len(row)] = np.asarray(row)
    b = np.zeros(7)
    b[: len(tab.b_sol)] = np.asarray(tab.b_sol)

    def r(z):
        return 1 + z * b @ np.linalg.solve(np.eye(7) - z * a, np.ones(7))

    zs = -np.linspace(0, 5, 50_001)
    stable = np.array([abs(r(z)) <= 1 for z in zs])
    boundary = -zs[np.argmin(stable)] if not stable.all() else np.inf
    assert abs(boundary - TSIT5_REAL_STABILITY) < 2e-4


def _one_step(lams, h):
    term = dfx.ODETerm(lambda t, y, args: -lams * y)
    y0 = jnp.ones_like(lams)
    solver = dfx.Tsit5()
    state = solver.init(term, 0.0, h, y0, None)
    y1, _, dense, _, _ = solver.step(term, 0.0, h, y0, None, state, False)
    return float(stiffness_estimate(y0, y1, dense["k"]))


@pytest.mark.parametrize("h", [1e-3, 0.03, 0.05])
def test_stiffness_estimate_is_h_lambda_on_linear_flows(h):
    # On y' = -lambda y the stages are linear in y, so k7 - k6 = -h lambda (y1 - Y6) exactly.
    assert _one_step(jnp.array([100.0]), h) == pytest.approx(100 * h, rel=1e-9)
    # Several rates: a Rayleigh quotient of diag(lambda) along y1 - Y6, inside [h min, h max].
    lams = jnp.array([100.0, 30.0, 1.0])
    est = _one_step(lams, h)
    assert h * 1.0 <= est <= h * 100.0 * (1 + 1e-12)


def _linear_problem(scale=1.0, lams=(1e3, 30.0, 3.0, 1.0), n=12):
    # h(w) = X w with X^T X / n = diag(lams) (times scale^2), square loss: the flow is linear,
    # w(t) - w0 = -sum_i (1 - exp(-lambda_i t)) / lambda_i <v_i, g0> v_i.
    rng = np.random.default_rng(0)
    d = len(lams)
    q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    x = scale * np.sqrt(n) * q * np.sqrt(np.asarray(lams))
    y = rng.standard_normal((n, 1))
    w0 = 0.1 * rng.standard_normal((d, 1))
    problem = gf.Problem(lambda w, xx: xx @ w, jnp.asarray(w0), jnp.asarray(x), gf.SquareLoss(y))
    return problem, x, y, w0


def _exact_loss(x, y, w0, ts):
    n = x.shape[0]
    hess = x.T @ x / n
    g0 = x.T @ (x @ w0 - y) / n
    lam, v = np.linalg.eigh(hess)
    out = []
    for t in ts:
        coef = (1 - np.exp(-lam * t)) / lam
        w = w0 - v @ (coef[:, None] * (v.T @ g0))
        out.append(0.5 * np.sum((x @ w - y) ** 2) / n)
    return np.array(out)


def test_switch_on_a_stiff_linear_flow_against_the_closed_form():
    # lambda_max / lambda_min = 1e3, t1 = 20: stiff. Tsit5 runs until its stages say so, RKC
    # from there; the saves on both sides of the switch match the closed form.
    problem, x, y, w0 = _linear_problem()
    ts = np.linspace(0.0, 20.0, 41)
    sol = gf.solve(problem, ts=ts, solver=gf.Tsit5ThenRKC(), rtol=1e-9, atol=1e-12)
    tsit5 = gf.solve(problem, ts=ts, solver=dfx.Tsit5(), rtol=1e-9, atol=1e-12)
    rkc = gf.solve(problem, ts=ts, solver=gf.RKC(), rtol=1e-9, atol=1e-12)
    assert sol.succeeded
    switch = float(sol.stats["switch_time"])
    assert 0 < switch < 20.0
    assert (ts < switch).sum() >= 2 and (ts > switch).sum() >= 2
    exact = _exact_loss(x, y, w0, ts)
    # Measured: largest error 1.2e-10 of the initial loss (9.6e-9 for RKC alone, 1e-16 for
    # Tsit5 alone, whose steps are capped far below what its tolerance asks).
    err = np.max(np.abs(np.asarray(sol.loss) - exact)) / exact[0]
    assert err < 1e-9
    # The evaluations of both parts are counted. Measured: 9 370, against 43 885 for Tsit5
    # (its step capped at 3.5 / lambda_max after the transient, 1 561 steps rejected there)
    # and 12 274 for RKC alone (order 2 on the transient).
    evals = int(sol.stats["num_vector_field_evals"]) + int(sol.stats["num_jvp_evals"])
    assert evals < 0.3 * int(tsit5.stats["num_vector_field_evals"])
    assert evals < int(rkc.stats["num_vector_field_evals"]) + int(rkc.stats["num_jvp_evals"])
    assert int(sol.stats["num_steps"]) > int(sol.stats["stages_max"])
    assert np.isfinite(float(sol.stats["stages_mean"]))


def test_no_switch_on_a_flow_that_is_not_stiff_is_tsit5():
    # lambda_max t1 = 3: never stiff. The solve is Tsit5's, step for step.
    problem, *_ = _linear_problem(lams=(1.0, 0.5, 0.2, 0.1))
    ts = np.linspace(0.0, 3.0, 7)
    sol = gf.solve(problem, ts=ts, solver=gf.Tsit5ThenRKC())
    ref = gf.solve(problem, ts=ts, solver=dfx.Tsit5())
    assert sol.succeeded and np.isnan(float(sol.stats["switch_time"]))
    assert int(sol.stats["num_steps"]) == int(ref.stats["num_steps"])
    assert int(sol.stats["num_vector_field_evals"]) == int(ref.stats["num_vector_field_evals"])
    assert int(sol.stats["num_jvp_evals"]) == 0
    np.testing.assert_array_equal(np.asarray(sol.loss), np.asarray(ref.loss))


def test_the_switch_under_vmap_matches_the_single_solves():
    # One problem switches (scale 1: lambda_max = 1e3), the other does not (scale 0.03:
    # lambda_max = 0.9): batched together, each gets its own solve.
    probs = [_linear_problem(scale)[0] for scale in (1.0, 0.03)]
    options = gf.SolveOptions(t1=10.0, ts=np.linspace(0, 10.0, 11), solver=gf.Tsit5ThenRKC())
    singles = [gf.solve(p, options=options) for p in probs]

    def one(inputs):
        return gf.solve(eqx.tree_at(lambda p: p.inputs, probs[0], inputs), options=options)

    batched = jax.vmap(one)(jnp.stack([p.inputs for p in probs]))
    assert np.isfinite(float(singles[0].stats["switch_time"]))
    assert np.isnan(float(singles[1].stats["switch_time"]))
    for i, single in enumerate(singles):
        np.testing.assert_allclose(batched.loss[i], single.loss, rtol=1e-12, atol=0)
        for k in ("num_steps", "num_vector_field_evals", "num_jvp_evals"):
            assert int(batched.stats[k][i]) == int(single.stats[k]), k


def test_auto_to_the_limit_bdf_for_small_smooth_flows_the_switch_for_large_or_batched(getkey):
    small = two_layer_problem(getkey(), n=6, d=3, m=4, activation="tanh")  # 16 parameters
    large = two_layer_problem(getkey(), n=6, d=3, m=100, activation="tanh")  # 400
    kinks = two_layer_problem(getkey(), n=6, d=3, m=4, activation="relu")
    options = gf.SolveOptions(t1=math.inf, linearized=False)
    choice = gf._options.decide(small, options)
    assert isinstance(choice.solver, gf.BDF)
    assert "16 state entries <= 128: BDF" in choice.reason and "t1 = inf" in choice.reason
    choice = gf._options.decide(large, options)
    assert isinstance(choice.solver, gf.Tsit5ThenRKC)
    assert "Tsit5 until the flow turns stiff" in choice.reason and "t1 = inf" in choice.reason
    # A sweep batch (its stiffest point's lambda_max given) runs under vmap: the switch.
    batch = gf._options.decide(small, options, lambda_max=1.0)
    assert isinstance(batch.solver, gf.Tsit5ThenRKC)
    assert not isinstance(gf._options.decide(kinks, options).solver, (gf.BDF, gf.Tsit5ThenRKC))
    # A finite horizon keeps the one-solver choice.
    finite = gf._options.decide(large, options.replace(t1=10.0)).solver
    assert not isinstance(finite, (gf.BDF, gf.Tsit5ThenRKC))
    # Stored auto choices of both read back.
    for problem, name in ((small, "BDF"), (large, "Tsit5ThenRKC")):
        sol = gf.solve(problem, t1=math.inf, linearized=False)
        assert sol.succeeded and sol.info.solver == name
        back = info_from_record(info_record(sol.info), options)
        assert back.solver == name and back.solver_reason == sol.info.solver_reason


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threshold": 4.0}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"patience": 0}, "patience"),
        ({"relapse": 1.5}, "relapse"),
        ({"stiff": dfx.Tsit5()}, "stiff"),
    ],
)
def test_arguments_are_checked(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gf.Tsit5ThenRKC(**kwargs)
