"""`gf.BDF`: scipy's BDF on the compiled flow, run on the host by `gf.solve`, against closed
forms, against diffrax solves at a tighter tolerance, on the implicit-bias limits it exists for,
and its refusals."""

import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_problem
from test_switch import _exact_loss, _linear_problem

import gradflow as gf
from gradflow.check._implicit_bias import diagonal_regression


def test_a_stiff_linear_flow_against_its_closed_form():
    # Hessian eigenvalues 1e3 ... 1, t1 = 20. Measured: largest loss error 6.4e-11 of the
    # initial loss (rtol 1e-9) with 1 036 gradients and products, against RKC's 9.6e-9 with
    # 12 274.
    problem, x, y, w0 = _linear_problem()
    ts = np.linspace(0.0, 20.0, 41)
    sol = gf.solve(problem, ts=ts, solver=gf.BDF(), rtol=1e-9, atol=1e-12)
    rkc = gf.solve(problem, ts=ts, solver=gf.RKC(), rtol=1e-9, atol=1e-12)
    assert sol.succeeded and sol.info.solver == "BDF"
    exact = _exact_loss(x, y, w0, ts)
    assert np.max(np.abs(np.asarray(sol.loss) - exact)) / exact[0] < 1e-9
    evals = int(sol.stats["num_vector_field_evals"]) + int(sol.stats["num_jvp_evals"])
    # A Jacobian of the joint state (4 parameters, twice: the model and its linearization)
    # counts as 8 products.
    assert int(sol.stats["num_jvp_evals"]) == 8 * int(sol.stats["num_jacobians"]) > 0
    assert evals < int(rkc.stats["num_vector_field_evals"]) + int(rkc.stats["num_jvp_evals"])


def test_the_joint_flow_and_saved_parameters_match_a_tight_diffrax_solve(getkey):
    # The model and its linearization together (the state doubled), parameters saved:
    # every metric within 1e-8 (relative to its scale) of Tsit5 at rtol 1e-12 (measured: at
    # most 8.7e-10, for the gap), the parameters within 1e-8 (measured 2.0e-10).
    problem = two_layer_problem(getkey(), n=6, d=3, m=4, activation="tanh")
    ts = np.linspace(0.0, 5.0, 11)
    sol = gf.solve(problem, ts=ts, solver=gf.BDF(), rtol=1e-10, atol=1e-12, save_params=True)
    ref = gf.solve(problem, ts=ts, solver=dfx.Tsit5(), rtol=1e-12, atol=1e-14, save_params=True)
    assert sol.succeeded
    for name in ("loss", "linear_loss", "param_distance", "param_gap", "output_gap"):
        a, b = np.asarray(getattr(sol, name)), np.asarray(getattr(ref, name))
        assert np.max(np.abs(a - b)) <= 1e-8 * np.max(np.abs(b)), name
    for a, b in zip(jax.tree_util.tree_leaves(sol.params), jax.tree_util.tree_leaves(ref.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)


@pytest.mark.parametrize("teacher, a", [("sparse", 1e-3), ("dense", 1e-2)])
def test_the_depth_3_limit_of_the_rich_end_in_under_2e4_evaluations(teacher, a):
    # What BDF is for: the diagonal net's depth-3 flow from a small scale converges to its limit
    # only algebraically (the sparse teacher's stop lies near t = 2e9), where RKC's stages grow
    # like sqrt(h lambda_max). Measured: 11 639 and 10 661 evaluations (Jacobians as 60
    # products), errors 2.2e-8 and 1.6e-7 against argmin Q_a, with "auto" choosing BDF.
    spec = diagonal_regression(teacher)
    x = np.asarray(spec.problem.inputs)
    y = np.asarray(spec.problem.loss.targets[:, 0])
    net = gf.models.DiagonalDifferenceNet(3)
    problem = gf.Problem(net, net.init(x.shape[1], tau=a), spec.problem.inputs, spec.problem.loss)
    sol = gf.solve(problem, t1=math.inf, linearized=False, save_params=True, rtol=1e-9,
                   atol=1e-11, stop_loss=1e-16)  # fmt: skip
    assert sol.succeeded and sol.info.solver == "BDF"
    evals = int(sol.stats["num_vector_field_evals"]) + int(sol.stats["num_jvp_evals"])
    assert evals < 2e4
    beta = np.asarray(net.beta(jax.tree_util.tree_map(lambda p: p[-1], sol.params)))
    ref = np.asarray(gf.implicit_bias_limit(x, y, a, depth=3).beta)
    assert np.linalg.norm(beta - ref) / np.linalg.norm(ref) < 1e-6
    assert float(sol.loss[-1] / sol.loss[0]) <= 1e-16 + float(sol.stats["stop_floor"])


def test_max_steps_and_refusals():
    problem, *_ = _linear_problem()
    short = gf.solve(problem, t1=20.0, solver=gf.BDF(), max_steps=5)
    assert short.result == gf.RESULTS.max_steps_reached and int(short.stats["num_steps"]) == 5
    # Saves before the budget ran out are kept, later ones are NaN.
    assert np.isfinite(short.loss[0]) and np.isnan(short.loss[-1])
    with pytest.raises(ValueError, match="stepsize_controller"):
        gf.solve(problem, t1=1.0, solver=gf.BDF(),
                 stepsize_controller=dfx.PIDController(rtol=1e-6, atol=1e-8))  # fmt: skip
    with pytest.raises(TypeError, match="cannot solve a traced problem"):
        jax.vmap(
            lambda xx: (
                gf.solve(eqx.tree_at(lambda p: p.inputs, problem, xx), t1=1.0, solver=gf.BDF()).loss
            )  # fmt: skip
        )(jnp.stack([problem.inputs, problem.inputs]))
    with pytest.raises(TypeError, match="runs on the host through gradflow.solve"):
        term = dfx.ODETerm(lambda t, y, args: -y)
        dfx.diffeqsolve(term, gf.BDF(), 0.0, 1.0, 0.1, jnp.ones(2))
