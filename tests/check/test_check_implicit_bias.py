"""The implicit-bias check: the flow's limit at t1=inf against argmin Q_a (Woodworth et al.
2020), at quick size (two scales, depth 2, one compilation)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_notebook

import gradflow as gf
from gradflow.check._implicit_bias import _scales_by_depth


@pytest.fixture(scope="module")
def sparse():
    return gf.check.diagonal_regression("sparse")


@pytest.fixture(scope="module")
def report(sparse):
    return gf.check.check_implicit_bias(sparse, scales=(1.0, 100.0), depths=(2,))


def test_the_limit_is_argmin_q_and_moves_toward_the_kernel_solution(report, sparse):
    # Measured: 2.4e-8 at a = 1 and at a = 100 (relative), inside the goal of 1e-6.
    assert report.verdict == "pass" and report.hypotheses_hold
    assert [c.quantity for c in report.constants] == [
        "D=2, a=1: limit vs argmin Q_a (rel.)",
        "D=2, a=100: limit vs argmin Q_a (rel.)",
    ]
    assert all(c.measured < 1e-7 for c in report.constants)
    est = {name: value for name, value, _ in report.estimates}
    for a in ("1", "100"):
        assert (
            est[f"train loss reached / initial, D=2, a={a}"]
            <= 1e-16 + est[f"loss floor at the stop / initial, D=2, a={a}"]
        )
        assert 0 < est[f"gradient evaluations, D=2, a={a}"] < 2e4
    # The norms of the limit against the independent references: argmin Q_a from Newton,
    # the minimum-l2 solution from numpy's least squares (a -> inf: 1/a^4 away at depth 2,
    # measured 8.6e-9 relative at a = 100) and the minimum-l1 one from the simplex.
    x = np.asarray(sparse.problem.inputs)
    y = np.asarray(sparse.problem.loss.targets[:, 0])
    l2 = np.linalg.lstsq(x, y, rcond=None)[0]
    curves = {c.quantity: c for c in report.curves}
    flow_l2 = curves["l2 norm, D=2"]
    np.testing.assert_allclose(flow_l2.measured, flow_l2.predicted, rtol=1e-7)
    assert abs(flow_l2.measured[-1] / np.linalg.norm(l2) - 1) < 1e-6
    assert est["min ||beta||_2 s.t. X beta = y (a -> inf)"] == pytest.approx(np.linalg.norm(l2))
    # The sparse teacher is the minimum-l1 solution (its l1 norm 4.5 to 2e-15 by the simplex).
    assert est["min ||beta||_1 s.t. X beta = y (a -> 0)"] == pytest.approx(4.5, rel=1e-9)
    # The predicted line on its finer grid runs from the rich end toward the kernel end: its
    # l1 norm falls as a falls, never below the minimum l1 norm.
    line = curves["l1 norm, D=2, argmin Q_a"]
    assert line.ts.size == 41 and np.all(np.diff(line.predicted) > 0)
    assert line.predicted[0] > est["min ||beta||_1 s.t. X beta = y (a -> 0)"]


def test_the_figure_draws_the_transition(report):
    import matplotlib

    matplotlib.use("Agg")
    fig = gf.check.plot_implicit_bias(report)
    l1, l2, error = fig.axes
    assert "l1 norm" in l1.get_title() and "l2 norm" in l2.get_title()
    # Flow markers and the predicted line, both asymptotes, per norm; the errors and the
    # tolerance.
    assert len(l1.get_lines()) == 4 and len(error.get_lines()) == 2
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_loose_solve_fails_the_check(sparse):
    # The same flows stopped early (stop_loss 1e-6, rtol 1e-6): the limit is not reached to
    # 1e-6, and the check says so (measured 2.1e-3 relative at a = 1).
    loose = gf.check.check_implicit_bias(
        sparse, scales=(1.0, 100.0), depths=(2,), rtol=1e-6, atol=1e-8, stop_loss=1e-6
    )
    assert loose.verdict == "FAIL"
    assert loose.constants[0].measured > 1e-6


def test_the_default_grid_and_a_solve_out_of_steps(sparse):
    # The default grid: the a = 1e-3 ... 1e2 at both depths (tests/solvers/test_bdf.py
    # solves the hardest point, depth 3 at a = 1e-3). A sequence is every depth's grid; a
    # mapping, each depth's.
    full = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    grids = _scales_by_depth(None, (2, 3))
    np.testing.assert_array_equal(grids[2], full)
    np.testing.assert_array_equal(grids[3], full)
    assert _scales_by_depth(None, (3,)).keys() == {3}
    every = _scales_by_depth(full[::-1], (2, 3))
    np.testing.assert_array_equal(every[3], full)
    np.testing.assert_array_equal(_scales_by_depth({2: (10.0, 1.0)}, (2,))[2], (1.0, 10.0))
    # A scale that runs out of steps stays a failure when it is asked for: 20 steps at a = 1
    # (the limit takes BDF 392 steps, 1 104 evaluations)
    # end at max_steps, reported as not reached (inf).
    short = gf.check.check_implicit_bias(sparse, scales={2: (1.0,)}, depths=(2,), max_steps=20)
    assert short.verdict == "FAIL" and short.constants[0].measured == math.inf
    assert "max_steps" in short.constants[0].note
    assert dict(short.settings)["scales"] == {"2": [1.0]}


def test_the_hypotheses_and_arguments_are_checked(sparse):
    # An overdetermined system: no implicit bias to check, and nothing is solved.
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    net = gf.models.DiagonalDifferenceNet(2)
    problem = gf.Problem(net, net.init(3), x, gf.SquareLoss(x @ jnp.ones((3, 1))))
    report = gf.check.check_implicit_bias(problem)
    assert report.verdict == "hypotheses fail" and not report.constants
    assert "X is 5x3 of rank 3" in report.hypotheses[1].detail
    with pytest.raises(ValueError, match=r"`depths` must be .* in \[2, 3\].*got \(4,\)"):
        gf.check.check_implicit_bias(sparse, depths=(4,))
    with pytest.raises(ValueError, match=r"`scales` must be init scales a > 0"):
        gf.check.check_implicit_bias(sparse, scales=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"`scales` must be .* got array\(\[\], .* depth 3"):
        gf.check.check_implicit_bias(sparse, scales={2: (1.0,), 3: ()})
    with pytest.raises(ValueError, match=r"`lazy_atol` \(the absolute tolerance at a > 1\)"):
        gf.check.check_implicit_bias(sparse, lazy_atol=0.0)
    with pytest.raises(ValueError, match=r"no scales for depth\(s\) \[3\]"):
        gf.check.check_implicit_bias(sparse, scales={2: (1.0,)})
    with pytest.raises(ValueError, match=r"`teacher` must be one of \['sparse', 'dense'\]"):
        gf.check.diagonal_regression("medium")
    with pytest.raises(ValueError, match=r"`samples` and `dim` .* got samples=30, dim=12"):
        gf.check.diagonal_regression(samples=30, dim=12)
    assert math.isclose(
        float(sparse.problem.loss.targets[0, 0]),
        float(np.asarray(sparse.problem.inputs)[0, :3] @ np.array([1.0, -2.0, 1.5])),
    )


def test_regimes_notebook_runs_and_asserts_its_claims(report):
    # notebooks/regimes.ipynb asserts the derived constants of Q_a's limits, argmin Q_a's
    # optimality on the potential from `theory` (its rise along null(X), its value below both
    # ends' solutions), the rich and kernel ends against linprog and least squares, the flow's
    # limit at t1=inf within 1e-6 of argmin Q_a (the programs this file's `report` compiled),
    # and the quick phase diagram's crossover and width fit (notebooks/_make_regimes.py).
    run_notebook("regimes.ipynb")
