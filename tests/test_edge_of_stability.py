"""The edge-of-stability experiment: its claims at quick size, its sharpness against a dense
eigendecomposition, the phase statistics in closed form, a flow added through its hook, and
resume."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_notebook
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow import experiments as ex
from gradflow.experiments.edge_of_stability import edge_phase

KEY = "eta=0.2"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edge-of-stability")
    return folder, ex.run(ex.EdgeOfStability.quick(), folder, progress=False)


def _dense_objective(problem):
    """F_1 written out on the flat parameters (tanh layers, linear last layer, square loss),
    independently of the experiment's model and of `gf.Problem`."""
    x, y = np.asarray(problem.inputs), np.asarray(problem.loss.targets)
    w0, unravel = ravel_pytree(problem.params0)

    def objective(w):
        layers = unravel(w)
        z = x
        for layer in layers[:-1]:
            z = jnp.tanh(z @ layer["w"] + layer["b"][None, :])
        f = z @ layers[-1]["w"] + layers[-1]["b"][None, :]
        return 0.5 * jnp.sum((f - y) ** 2) / x.shape[0]

    return objective, w0


def test_quick_run_sharpens_to_the_edge_hovers_and_leaves_the_flow(quick_run):
    _, result = quick_run
    assert result.succeeded and result.computed == [KEY]
    summary = result.summary
    (row,) = summary["rows"]
    assert summary["every_eta_reaches_the_edge"] and row["gd_result"] == "successful"
    # Progressive sharpening: from 8.0 at w0 (measured) to 0.95 * 2/eta = 9.5 at iteration 120.
    assert row["sharpness_0"] < 0.85 * row["two_over_eta"]
    assert 0 < row["onset"] <= 200
    # At the edge, measured at quick size (n = 64, width 16): mean deviation 0.065, max 0.245
    # (the overshoot at the entry), 0.101 over the later half. GD at the edge amplifies
    # rounding (a hand-written loop is 2% off in loss after 880 steps there), so each bound
    # is the measured value with a margin of about 25%.
    assert row["mean_deviation"] < 0.08
    assert row["max_deviation"] < 0.30
    assert row["late_deviation"] < 0.13
    # The flow does not stop at the edge: its sharpness ends at 19.2 (measured) = 1.9 * 2/eta.
    assert row["flow_sharpness_end"] > 1.5 * row["two_over_eta"]
    # GD tracks the flow while it sharpens (loss within 1.3e-3 relative, measured: O(eta)) and
    # leaves it at the edge (0.74 relative, measured), by more than 100 times as much.
    assert row["flow_gap_before"] < 5e-3
    assert row["flow_gap_in_phase"] > 0.3
    assert row["flow_gap_in_phase"] > 100 * row["flow_gap_before"]
    # The flow reference is resolved: its two tolerances agree (1.0e-5 relative, measured) to
    # a tenth of the gap GD has while it tracks the flow.
    assert row["flow_loss_error"] < 0.1 * row["flow_gap_before"]


def test_recorded_sharpness_is_the_dense_hessian_top_eigenvalue(quick_run):
    _, result = quick_run
    out = result.records[KEY]["output"]
    exp = ex.EdgeOfStability.quick()
    eta, problem = 0.2, exp.problem()
    its = np.asarray(out["iterations"])
    objective, w = _dense_objective(problem)
    hessian = jax.jit(jax.hessian(objective))
    step = jax.jit(lambda w: w - eta * jax.grad(objective)(w))
    # Before the edge (iteration 101), gradient descent written out by hand reaches the same
    # iterate: its loss equals the record's to 1e-12 relative.
    early = int(np.flatnonzero(its == 101)[0])
    for _ in range(101):
        w = step(w)
    assert float(objective(w)) == pytest.approx(out["gd_loss"][early], rel=1e-12)
    # At the edge (the last iteration) rounding differences grow, so the iterate is the one
    # gf.solve's gradient descent reaches (its loss is the record's to 1e-12).
    k = int(its[-1])
    assert k >= result.summary["rows"][0]["onset"]
    sol = gf.solve(
        problem,
        t1=k * eta,
        ts=[k * eta],
        solver=gf.GradientDescent(eta),
        linearized=False,
        save_params=True,
    )
    assert float(sol.loss[-1]) == pytest.approx(out["gd_loss"][-1], rel=1e-12)
    last = ravel_pytree(jax.tree_util.tree_map(lambda p: p[-1], sol.params))[0]
    for i, point in ((early, w), (-1, last)):
        dense = np.linalg.eigvalsh(np.asarray(hessian(point)))
        # Lanczos' Ritz value is within its residual, 1e-4 of the value, of an eigenvalue
        # (Kahan-Weinstein); measured 2.7e-10 and 1.3e-8 from the top one.
        assert out["gd_sharpness"][i] == pytest.approx(dense[-1], rel=1e-6)
        assert out["gd_sharpness"][i] <= dense[-1] * (1 + 1e-12)  # a Ritz value interlaces


def test_edge_phase_statistics_in_closed_form():
    its = [0, 10, 20, 30, 40]
    lam = [5.0, 9.6, 10.4, 9.8, 10.1]  # 2/eta = 10
    phase = edge_phase(its, lam, 0.2, 0.95)
    # The first value >= 9.5 is at iteration 10; deviations -0.04, 0.04, -0.02, 0.01.
    assert phase["onset"] == 10
    assert phase["in_phase"].tolist() == [False, True, True, True, True]
    assert phase["mean_deviation"] == pytest.approx(0.0275, rel=1e-12)
    assert phase["max_deviation"] == pytest.approx(0.04, rel=1e-12)
    assert phase["mean_signed_deviation"] == pytest.approx(-0.0025, rel=1e-9)
    assert phase["within_5pct"] == 1.0
    assert phase["late_deviation"] == pytest.approx(0.02, rel=1e-12)  # iterations >= 25
    never = edge_phase(its, [1.0] * 5, 0.2, 0.95)
    assert never["onset"] is None and never["mean_deviation"] is None
    assert not never["in_phase"].any()


def test_a_flow_joins_through_the_hook_and_agrees_with_another_solver(tmp_path):
    class WithDopri(ex.EdgeOfStability):
        def flows(self, eta):
            return {**super().flows(eta), "dopri5": {"solver": diffrax.Dopri5()}}

    exp = WithDopri.quick().replace(num_steps=200, num_sharpness=10)
    result = ex.run(exp, tmp_path, progress=False)
    out = result.records[KEY]["output"]
    flow, dopri = out["flows"]["flow"], out["flows"]["dopri5"]
    # Two solvers of one flow, each at rtol 1e-8: their losses and sharpness agree to 1e-6.
    np.testing.assert_allclose(dopri["loss"], flow["loss"], rtol=1e-6)
    np.testing.assert_allclose(dopri["sharpness"], flow["sharpness"], rtol=1e-6)
    assert dopri["solver"] == "Dopri5"
    row = result.summary["rows"][0]
    assert {"dopri5_gap_before", "dopri5_gap_in_phase", "dopri5_loss_error"} <= set(row)
    assert (tmp_path / "edge-of-stability.png").exists()


def test_rerun_computes_nothing(quick_run):
    folder, first = quick_run
    again = ex.run(ex.EdgeOfStability.quick(), folder, progress=False)
    assert again.computed == [] and again.reused == [KEY]
    assert again.summary == first.summary


@pytest.mark.optimized
def test_gd_vs_flow_notebook_runs_and_asserts_its_claims():
    # The notebook asserts the sharpness along GD against dense eigenvalues, the orders 1 and 2
    # of GD against the flow and the modified flow, and the edge of stability on a shorter run
    # of this file's net (see notebooks/_make_gd_vs_flow.py).
    run_notebook("gd_vs_flow.ipynb")
