"""The phase-diagram experiment: the crossover interpolation, the width fit, the kernel drift
and one small run through the store."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf
import gradflow.experiments as ex
from gradflow.experiments.phase_diagram import PhaseDiagram, ThreeLayer, crossover


def test_crossover_is_exact_on_a_power_law_and_takes_the_lazy_side():
    # drift = c alpha^(-p) is a line in (log alpha, log drift): the interpolation is exact,
    # alpha* = (c / level)^(1/p), wherever it falls between grid points (to rounding, 1e-12).
    alphas = np.geomspace(0.01, 100.0, 9)
    for c, p, level in ((2.0, 1.0, 0.3), (0.7, 0.6, 0.1), (5.0, 2.0, 0.03)):
        star = crossover(alphas, c * alphas**-p, level)
        assert star == pytest.approx((c / level) ** (1 / p), rel=1e-12)
    # Order does not matter; failed (NaN) cells are dropped.
    drifts = 2.0 / alphas
    shuffled = np.random.default_rng(0).permutation(alphas.size)
    assert crossover(alphas[shuffled], drifts[shuffled], 0.3) == pytest.approx(2.0 / 0.3)
    holed = drifts.copy()
    holed[4] = np.nan  # alpha = 1: the bracket becomes (0.316, 3.16), still exact
    assert crossover(alphas, holed, 0.3) == pytest.approx(2.0 / 0.3, rel=1e-12)
    # A non-monotone measure: the crossing taken is the last one before the lazy end.
    bumpy = np.array([1.0, 0.2, 0.5, 0.4, 0.1])
    grid = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    expected = math.exp(math.log(8.0) + math.log(0.3 / 0.4) / math.log(0.1 / 0.4) * math.log(2))
    assert crossover(grid, bumpy, 0.3) == pytest.approx(expected, rel=1e-12)
    # Not bracketed: NaN on either side.
    assert math.isnan(crossover(alphas, drifts * 1e-6, 0.3))
    assert math.isnan(crossover(alphas, drifts * 1e6, 0.3))
    with pytest.raises(ValueError, match="`alphas` and `drifts` must have the same length"):
        crossover(alphas, drifts[:-1], 0.3)
    with pytest.raises(ValueError, match="`level` must be a finite number > 0"):
        crossover(alphas, drifts, 0.0)


def _synthetic_cells(experiment, exponent, noise, seed=0):
    """Kernel drifts drift(alpha, m) = (alpha / alpha*(m))^(-1.3) with alpha*(m) = 3 m^exponent
    times a log-normal factor per trial, and kappa(1, m) proportional to alpha*(m)."""
    rng = np.random.default_rng(seed)
    cells, kappas, truth = {}, {}, {}
    arch = experiment.archs[0]
    for m in experiment.widths:
        for t in range(experiment.trials):
            star = 3.0 * m**exponent * math.exp(noise * rng.standard_normal())
            truth[(m, t)] = star
            grid = experiment.grid(arch)
            cells[(arch, m, t)] = {a: {"kernel_drift": 0.3 * (a / star) ** -1.3} for a in grid}
            kappas[(arch, m, t)] = 0.05 * star
    return cells, kappas, truth


def test_the_width_fit_recovers_the_crossover_exponent_of_synthetic_grids():
    experiment = PhaseDiagram().replace(
        archs=("tanh-sqrt",), widths=(16, 38, 90, 216, 512), trials=3
    )
    # Exact power law: alpha* to rounding, slope -1/2 to 1e-12, kappa(alpha*, m) flat.
    cells, kappas, truth = _synthetic_cells(experiment, -0.5, noise=0.0)
    s = experiment._arch_summary("tanh-sqrt", cells, kappas)
    e = s["levels"]["0.3"]
    for (m, t), star in truth.items():
        assert e["alpha_star"][str(m)][t] == pytest.approx(star, rel=1e-12)
    assert e["fit"]["slope"] == pytest.approx(-0.5, abs=1e-12)
    assert s["kappa_exponent"]["slope"] == pytest.approx(-0.5, abs=1e-12)
    assert e["kappa_at_crossover_fit"]["slope"] == pytest.approx(0.0, abs=1e-12)
    assert e["within_0.1"] and e["ci_contains_prediction"]
    # The other levels sit at alpha* (0.3 / level)^(1 / 1.3): the same slope.
    assert s["levels"]["0.03"]["fit"]["slope"] == pytest.approx(-0.5, abs=1e-12)
    # With 20% scatter per trial the 95% interval holds the truth, and a wrong prediction
    # (slope 0, the 1/m scaling's) is rejected: the check can fail.
    cells, kappas, _ = _synthetic_cells(experiment, -0.5, noise=0.2, seed=1)
    e = experiment._arch_summary("tanh-sqrt", cells, kappas)["levels"]["0.3"]
    assert e["fit"]["ci"][0] < -0.5 < e["fit"]["ci"][1]
    assert abs(e["fit"]["slope"] + 0.5) < 0.1
    mean_field = experiment.replace(archs=("tanh-mean_field",))
    cells = {("tanh-mean_field", *k[1:]): v for k, v in cells.items()}
    kappas = {("tanh-mean_field", *k[1:]): v for k, v in kappas.items()}
    e = mean_field._arch_summary("tanh-mean_field", cells, kappas)["levels"]["0.3"]
    assert not e["ci_contains_prediction"] and not e["within_0.1"]


def test_three_layer_doubled_init_and_kernel_drift_against_the_dense_jacobian(getkey):
    x = gf.data.uniform_sphere(getkey(), 7, 3)
    y = gf.data.teacher_targets(getkey(), x)
    model = ThreeLayer(6, "tanh")
    w0 = model.init(getkey(), 3)
    # Doubled at the last layer: h(w0) = 0 to rounding while Dh(w0) != 0.
    assert float(jnp.max(jnp.abs(model(w0, x)))) < 1e-14
    problem = gf.Problem(model, w0, x, gf.SquareLoss(y), alpha=1.0)
    flat0, unravel = ravel_pytree(w0)
    w = unravel(flat0 + 0.3 * jax.random.normal(getkey(), flat0.shape))

    def dense(flat):
        jac = jax.jacfwd(lambda v: model(unravel(v), x).ravel())(flat)
        return np.asarray(jac @ jac.T)

    k0, k1 = dense(flat0), dense(ravel_pytree(w)[0])
    expected = np.linalg.norm(k1 - k0, 2) / np.linalg.norm(k0, 2)
    assert expected > 0.05
    assert gf.kernel_drift(problem, w) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="`width` must be an even integer >= 2"):
        ThreeLayer(5)


def test_a_small_phase_diagram_trains_every_cell_to_the_level_and_resumes(tmp_path):
    experiment = PhaseDiagram.quick().replace(widths=(8,), alphas=(0.3, 30.0))
    result = ex.run(experiment, tmp_path, progress=False)
    assert result.succeeded and len(result.computed) == 3
    rows = result.summary["rows"]
    # Every cell stops at the same train-loss level (stop_loss times its initial loss).
    for r in rows:
        assert 0.5 * experiment.stop_loss < r["train_loss"] <= experiment.stop_loss
    # Lazier at the larger alpha: every laziness measure falls.
    small, large = rows
    for k in ("kernel_drift", "param_displacement", "linear_gap"):
        assert large[k] < small[k], k
    # The stored drift is the dense kernel's, recomputed from the cell's own solve.
    problem = experiment.problem("tanh-sqrt", 8, 30.0, 0)
    sol = gf.solve(problem, options=experiment.flow_options("tanh-sqrt"))
    w_t = jax.tree_util.tree_map(lambda v: v[-1], sol.params)
    model, x = problem.apply, problem.inputs
    flat0, unravel = ravel_pytree(problem.params0)

    def dense(flat):
        jac = jax.jacfwd(lambda v: model(unravel(v), x).ravel())(flat)
        return np.asarray(jac @ jac.T)

    k0, k1 = dense(flat0), dense(ravel_pytree(w_t)[0])
    drift = np.linalg.norm(k1 - k0, 2) / np.linalg.norm(k0, 2)
    assert large["kernel_drift"] == pytest.approx(drift, rel=1e-8)
    # kappa(alpha) = kappa(1) / alpha for h(w0) = 0: the rows' kappa is the criterion at alpha.
    kappa = gf.scale_criterion(problem).kappa
    assert large["kappa"] == pytest.approx(kappa, rel=1e-6)
    again = ex.run(experiment, tmp_path, progress=False)
    assert again.computed == [] and again.summary["rows"] == rows


def test_the_figures_drawn_from_the_json_equal_those_drawn_from_the_run(tmp_path):
    # A summary read back from its JSON has `None` wherever NaN was written (a width with no
    # crossover inside the alpha grid, an undefined fit): the plot takes both, pixel for pixel.
    import json

    from matplotlib.image import imread

    from gradflow.sweeps._io import write_json

    experiment = PhaseDiagram().replace(archs=("tanh-sqrt",), widths=(16, 38, 90), trials=2)
    cells, kappas, _ = _synthetic_cells(experiment, -0.5, noise=0.1)
    grid = experiment.grid("tanh-sqrt")
    for t in range(experiment.trials):  # the narrowest width never turns lazy: no crossover
        cells[("tanh-sqrt", 16, t)] = {a: {"kernel_drift": 5.0} for a in grid}
    arch = experiment._arch_summary("tanh-sqrt", cells, kappas)
    assert math.isnan(arch["levels"]["0.3"]["alpha_star_geomean"]["16"])
    rows = [
        {"arch": "tanh-sqrt", "width": m, "alpha": a, "test_loss": 1.0 / (1 + a), **c}
        for (_, m, t), cell in cells.items()
        if t == 0
        for a, c in cell.items()
    ]
    summary = {"archs": {"tanh-sqrt": arch}, "rows": rows}
    read = json.loads(write_json(summary, tmp_path / "summary.json").read_text())
    assert read["archs"]["tanh-sqrt"]["levels"]["0.3"]["alpha_star_geomean"]["16"] is None
    drawn = experiment.plot(summary, tmp_path / "run")
    again = experiment.plot(read, tmp_path / "json")
    assert [p.name for p in drawn] == [p.name for p in again] and len(drawn) == 2
    for a, b in zip(drawn, again):
        np.testing.assert_array_equal(imread(a), imread(b))
