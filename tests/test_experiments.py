"""The paper's experiments: the parameterization, the claims at quick sizes, resume and errors."""

import dataclasses
import functools
import json
import re
import shutil
import typing
import warnings
from typing import ClassVar

import equinox as eqx
import jax
import numpy as np
import pytest
from helpers import run_notebook, sweep_of

import gradflow as gf
from gradflow import experiments as ex
from gradflow.cli import main
from gradflow.experiments import tau_sweep as tau_sweep_module
from gradflow.experiments._base import check_positive
from gradflow.experiments.tau_sweep import band as tau_band


def _paper_gd_by_hand(a, b, x, y, s, eta, num_steps):
    """The authors' update written out in numpy: f = s sum_j b_j relu(a_j x), loss
    1/(2n) sum (f - y)^2, w <- w - (eta / s) * (gradient computed without the factor s)."""
    n = x.shape[0]
    for _ in range(num_steps):
        pre = x @ a.T  # (n, m)
        act = np.maximum(pre, 0.0)
        r = (s * act @ b - y) / n  # dL/df, (n, 1)
        grad_b = act.T @ r  # without s
        grad_a = ((pre > 0) * (r @ b.T)).T @ x
        a, b = a - eta / s * grad_a, b - eta / s * grad_b
    return a, b, 0.5 * np.mean((s * np.maximum(x @ a.T, 0.0) @ b - y) ** 2)


@pytest.mark.parametrize("s", [1.0, 1.0 / 8])
def test_paper_gd_equals_gf_solve_on_two_layer_with_mapped_alpha_and_step(getkey, s):
    data = gf.data.teacher_student(getkey(), 12, 5, 3)
    params = ex.paper_init(getkey(), 8, 3, tau=0.7)
    problem = ex.paper_problem(params, data.x_train, data.y_train, s)
    assert float(problem.alpha) == pytest.approx(s * np.sqrt(8))
    np.testing.assert_allclose(
        problem.alpha * problem.apply(params, data.x_train),
        ex.paper_output(params, data.x_train, s),
        rtol=1e-13,
        atol=1e-13,
    )
    out = ex.paper_train(
        problem, step=0.05, num_steps=40, x_test=data.x_test, y_test=data.y_test, num_saves=5
    )
    a, b, loss = _paper_gd_by_hand(
        *(np.asarray(params[k]) for k in ("a", "b")),
        np.asarray(data.x_train),
        np.asarray(data.y_train),
        s,
        0.05,
        40,
    )
    # Same arithmetic in another order: agreement to rounding (1e-12 relative).
    assert float(out["train_loss"][-1]) == pytest.approx(loss, rel=1e-10)
    assert int(out["iterations"][-1]) == 40 and int(out["result"]) == 0


def test_homogeneity_tau_acts_as_tau_squared(getkey, tmp_path):
    # Discrete form, against the hand-written update: GD with step eta from tau w0 equals
    # tau times GD on F_{tau^2} from w0 with step tau^2 eta.
    tau, data = 3.0, gf.data.teacher_student(getkey(), 12, 5, 3)
    w0 = ex.paper_init(getkey(), 8, 3)
    a, b, loss = _paper_gd_by_hand(
        3.0 * np.asarray(w0["a"]),
        3.0 * np.asarray(w0["b"]),
        np.asarray(data.x_train),
        np.asarray(data.y_train),
        1.0,
        0.002,
        30,
    )
    problem = ex.paper_problem(w0, data.x_train, data.y_train, tau**2)
    eta = 8 * tau**2 * 0.002
    sol = gf.solve(
        problem,
        t1=30 * eta,
        ts=[30 * eta],
        solver=gf.GradientDescent(eta),
        save_params=True,
        linearized=False,
    )
    np.testing.assert_allclose(tau * np.asarray(sol.params["a"][-1]), a, rtol=1e-10)
    assert float(sol.loss[-1]) == pytest.approx(loss, rel=1e-10)
    # The flows: the flow from tau w0 and tau v(tau^2 t) agree to the solver tolerance (rtol
    # 1e-10; 1.5e-13 measured), and so do their losses. The quick sizes (taus 0.3 and 3), as the
    # notebook runs them, so that the two share their compiled programs.
    summary = ex.run(ex.Homogeneity.quick(), tmp_path, progress=False).summary
    assert [r["tau"] for r in summary["rows"]] == [0.3, 3.0]
    assert all(r["max_relative_difference"] < 1e-7 for r in summary["rows"]), summary["rows"]
    assert summary["rows"][1]["alpha"] == 9.0
    curve = summary["curves"]["3"]
    np.testing.assert_allclose(curve["rescaled"], curve["direct"], rtol=1e-7)
    assert curve["direct"][-1] < 0.5 * curve["direct"][0]


@pytest.fixture(scope="module")
def tau_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("tau")
    rc = main(
        ["reproduce", "tau-sweep", "--quick", "--out", str(out), "--no-progress", "--no-cache"]
    )
    assert rc == 0
    return out / "tau-sweep"


def test_tau_sweep_shape_and_outputs(tau_sweep):
    data = json.loads((tau_sweep / "tau-sweep.json").read_text())
    assert (tau_sweep / "tau-sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = data["summary"]
    # Fig. 1c: lazy (tau = 10) is several times worse than tau = 0.01, end and best.
    assert summary["ratio_end_tau10_over_tau0.01"] > 3
    assert summary["ratio_best_tau10_over_tau0.01"] > 3
    rows = summary["rows"]
    assert [r["tau"] for r in rows] == [0.01, 0.1, 1.0, 10.0]
    assert all(r["diverged_trials"] == 0 and r["trials"] == 2 for r in rows)
    assert data["missing_points"] == [] and data["errors"] == {}


def test_rerun_reuses_points_and_interrupt_keeps_finished_ones(tau_sweep, tmp_path, monkeypatch):
    exp = ex.TauSweep.quick()
    again = ex.run(exp, tau_sweep, progress=False)
    assert again.computed == [] and len(again.reused) == 4
    # An interrupt at the third point keeps the first two; the rerun does only the rest.
    calls = []
    # Interrupted inside the third point's computation (a wrapper that keeps the name of the
    # function it wraps, so the points' fingerprints are those of the real runs).
    real = tau_sweep_module.train_trials

    @functools.wraps(real)
    def interrupted(*args, **kwargs):
        calls.append(kwargs["step"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tau_sweep_module, "train_trials", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.run(exp, tmp_path, progress=False)
    assert sorted(p.stem for p in (tmp_path / "points").glob("*.json")) == ["tau=0.01", "tau=0.1"]
    monkeypatch.setattr(tau_sweep_module, "train_trials", real)
    resumed = ex.run(exp, tmp_path, progress=False)
    assert resumed.computed == ["tau=1", "tau=10"] and resumed.reused == ["tau=0.01", "tau=0.1"]


def test_failed_point_is_reported_and_the_others_kept(tmp_path, monkeypatch, capsys):
    # Homogeneity is a flow experiment: a point whose `build` raises is recorded as failed, the
    # others are solved and stored, and the tau whose pair lost a flow leaves the summary.
    real = ex.Homogeneity.build

    def flaky(self, *, tau, flow):
        if tau == 3.0 and flow == "rescaled":
            raise FloatingPointError("injected")
        return real(self, tau=tau, flow=flow)

    monkeypatch.setattr(ex.Homogeneity, "build", flaky)
    rc = main(
        [
            "reproduce",
            "homogeneity",
            "--quick",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--no-cache",
        ]
    )
    assert rc == 1
    assert "FAILED tau=3_flow=rescaled: FloatingPointError: injected" in capsys.readouterr().err
    data = json.loads((tmp_path / "homogeneity" / "homogeneity.json").read_text())
    assert data["missing_points"] == ["tau=3_flow=rescaled"]
    assert [r["tau"] for r in data["summary"]["rows"]] == [0.3]
    assert list(data["summary"]["curves"]) == ["0.3"]
    monkeypatch.setattr(ex.Homogeneity, "build", real)
    result = ex.run(ex.Homogeneity.quick(), tmp_path / "homogeneity", progress=False)
    assert result.computed == ["tau=3_flow=rescaled"]
    assert result.reused == ["tau=0.3_flow=direct", "tau=0.3_flow=rescaled", "tau=3_flow=direct"]
    # The pair read back from the store (its parameters stored by `measure`) gives the numbers
    # of its solve to the last bit, and the pair completed now joins it.
    assert result.summary["rows"][0] == data["summary"]["rows"][0]
    assert [r["tau"] for r in result.summary["rows"]] == [0.3, 3.0]


def test_bad_options_and_wrong_paths_are_clear_errors_and_lose_nothing(tmp_path, capsys):
    def run(*args):
        return main(["reproduce", *args, "--out", str(tmp_path), "--no-progress", "--no-cache"])

    assert run("tau-sweep", "--quick", "--set", "colour=red") == 2
    assert (
        "Unknown option 'colour' for experiment 'tau-sweep'; valid options:"
        in capsys.readouterr().err
    )
    assert run("tau-sweep", "--quick", "--set", "trials=many") == 2
    assert "Option trials='many' is not a valid int" in capsys.readouterr().err
    assert run("tau-sweep", "--quick", "--set", "trials") == 2
    assert "--set expects OPTION=VALUE" in capsys.readouterr().err
    assert run("width", "--quick", "--set", "scalings=sqrt,cubic") == 2
    assert "`scalings` must be among 'sqrt', 'mean_field'" in capsys.readouterr().err
    assert run("cnn", "--quick", "--set", "data=cifar10", "--set", f"data_path={tmp_path}/no") == 2
    assert "does not exist or lacks data_batch_1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "fig9"])
    assert exc.value.code == 2
    # A finished point, then a run with another configuration: refused, the point kept.
    store = gf.sweeps._store.ResultStore(tmp_path / "homogeneity", ex.Homogeneity.quick().config())
    store.put("tau=0.3_flow=direct", {"tau": 0.3, "kept": True})
    assert run("homogeneity", "--quick", "--set", "t1=2") == 2
    assert (
        "holds results of another configuration; 1 key(s) differ: t1: stored 5.0, now 2.0."
        in capsys.readouterr().err
    )
    assert store.get("tau=0.3_flow=direct")["kept"] is True


@pytest.mark.parametrize("bad", [0, -1.5, float("nan"), float("inf"), "3", None])
def test_check_positive_names_the_option(bad):
    check_positive(width=3, rtol=1e-6)  # finite and > 0: no error
    with pytest.raises(ValueError, match=r"Option `rtol` must be a number > 0; got rtol="):
        check_positive(width=3, rtol=bad)
    # An option declared `positive` gets the same message from `validate`.
    with pytest.raises(ValueError, match=r"Option `t1` must be a number > 0; got t1=-1.0"):
        ex.Homogeneity.quick().replace(t1=-1.0).validate()


def test_width_mean_field_beats_sqrt_at_large_width(tmp_path):
    result = ex.run(ex.WidthSweep.quick(), tmp_path, progress=False)
    assert result.summary["mean_field_below_sqrt_for_m_ge_128"] is True
    assert result.summary["ratio_sqrt_over_mean_field_at_largest_m"] > 1.5


@pytest.mark.optimized
def test_cnn_lazy_plateau_matches_linearized_model(tmp_path):
    result = ex.run(ex.CNNAlphaSweep.quick(), tmp_path, progress=False)
    s = result.summary
    # Stability of activations -> 100% as alpha grows; the linearized model's accuracy is the
    # large-alpha plateau (within one test image in 300 per 1e-2: tolerance 0.01).
    assert s["stable_activations_at_largest_alpha"] > 0.999
    assert abs(s["linearized_accuracy"] - s["accuracy_at_largest_alpha"]) <= 0.01
    assert s["accuracy_at_smallest_alpha"] >= s["accuracy_at_largest_alpha"]
    disp = [r["relative_displacement"] for r in s["rows"] if r["alpha"] is not None]
    # Displacement ~ 1/alpha in the lazy regime (alpha 100 -> 1e4: factor 100, within 2x).
    assert 50 < disp[1] / disp[2] < 200


@pytest.mark.optimized
def test_cnn_runs_on_cifar10_format(tmp_path):
    folder = gf.data.write_cifar10_like(tmp_path / "cifar", num_per_batch=8)
    exp = ex.CNNAlphaSweep.quick().replace(
        data="cifar10",
        data_path=str(folder),
        alphas=(1.0,),
        epochs=1,
        batch_size=16,
        linearized=False,
        stages=(4, 0, 4, 0, 4, 0, 4),
    )
    result = ex.run(exp, tmp_path / "out", progress=False)
    assert result.succeeded and 0 <= result.summary["accuracy_at_largest_alpha"] <= 1


def test_vgg_model_shapes_patterns_and_he_init(getkey):
    model = gf.models.VGG(((8, 8), (16,)), num_classes=10)
    params = model.init(getkey(), (8, 8, 1))
    x = jax.random.normal(getkey(), (5, 8, 8, 1))
    assert model(params, x).shape == (5, 10)
    pats = model.activation_patterns(params, x)
    assert [p.shape for p in pats] == [(5, 8, 8, 8), (5, 8, 8, 8), (5, 4, 4, 16)]
    # He init: weight variance 2 / fan_in (fan_in = 9 * 8 for the second conv), 576 samples.
    w = np.asarray(params["conv"][1]["w"])
    assert np.var(w) == pytest.approx(2 / 72, rel=0.15)
    # The convolution against a direct sum for one output pixel (independent of lax.conv).
    xs = np.asarray(x)
    w0, b0 = np.asarray(params["conv"][0]["w"]), np.asarray(params["conv"][0]["b"])
    pad = np.pad(xs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    direct = np.einsum("hwc,hwco->o", pad[2, 3:6, 4:7, :], w0) + b0
    pre = model._forward(params, x)[1][0]
    np.testing.assert_allclose(np.asarray(pre)[2, 3, 4], direct, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="cannot be pooled 3 times"):
        gf.models.VGG(((4,), (4,), (4,))).init(getkey(), (6, 6, 1))


def test_vgg_smooth_variant_against_numpy(getkey):
    # Softplus and 2x2 average pooling: the whole forward pass written out in numpy (a direct
    # 3x3 correlation per pixel), and the kink detector sees a smooth model.
    model = gf.models.VGG(((3,),), num_classes=2, activation="softplus", pooling="avg")
    params = model.init(getkey(), (4, 4, 1))
    x = jax.random.normal(getkey(), (2, 4, 4, 1))
    w, b = np.asarray(params["conv"][0]["w"]), np.asarray(params["conv"][0]["b"])
    pad = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))
    pre = np.zeros((2, 4, 4, 3))
    for i in range(4):
        for j in range(4):
            pre[:, i, j] = np.einsum("nhwc,hwco->no", pad[:, i : i + 3, j : j + 3], w) + b
    act = np.log1p(np.exp(pre))
    pooled = act.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4))
    ref = pooled.reshape(2, -1) @ np.asarray(params["dense"]["w"]) + np.asarray(
        params["dense"]["b"]
    )
    np.testing.assert_allclose(model(params, x), ref, rtol=1e-12, atol=1e-12)
    y = np.zeros((2, 2))
    assert not gf.has_kinks(gf.Problem(model, params, x, gf.SquareLoss(y)))
    relu = gf.models.VGG(((3,),), num_classes=2)
    assert gf.has_kinks(gf.Problem(relu, params, x, gf.SquareLoss(y)))
    with pytest.raises(ValueError, match="`pooling` must be 'max' or 'avg'"):
        gf.models.VGG(((3,),), pooling="mean")
    with pytest.raises(ValueError, match="Unknown activation 'gelu'"):
        gf.models.VGG(((3,),), activation="gelu")


@pytest.mark.optimized
def test_tensor_model_against_einsum_and_completion_regimes(getkey):
    model = gf.models.TensorDecomposition()
    u = jax.random.normal(getkey(), (6, 4))
    idx = gf.models.TensorDecomposition.entries(4)
    assert idx.shape == (20, 3)
    full = np.einsum("ai,aj,ak->ijk", u, u, u)
    np.testing.assert_allclose(model({"u": u}, idx), full[tuple(idx.T)], rtol=1e-12)
    w0 = model.init(getkey(), 6, 4)
    np.testing.assert_allclose(model(w0, idx), 0.0, atol=1e-15)
    exp = ex.TensorCompletion.quick()
    lazy, rich = exp.run_point(tau=10.0, trial=0), exp.run_point(tau=0.1, trial=0)
    # Both fit the observed entries; only the non-lazy run completes the held-out ones.
    assert lazy["train_loss"] < 1e-3 and rich["train_loss"] < 1e-3
    assert rich["test_loss"] < 0.5 * rich["zero_predictor_test_loss"] < lazy["test_loss"]
    assert lazy["relative_displacement"] < 1e-3 < rich["relative_displacement"]


@pytest.mark.optimized
def test_population_sgd_small_tau_beats_lazy():
    exp = ex.PopulationSGD.quick()
    small, large = exp.train(tau=0.01), exp.train(tau=10.0)
    assert np.all(np.isfinite(small["population_loss"]))
    # Some small-tau trials sit longer at a saddle within 1500 steps: compare the best trials.
    assert np.min(small["population_loss"]) < 0.2 * np.min(large["population_loss"])


def test_regimes_full_training_generalizes_best_with_few_samples():
    rec = ex.Regimes.quick().run_point(n_train=15, trial=0)
    # The tangent and random-feature models interpolate the training set (closed form at
    # t = inf); full training from a small init fits it too and generalizes better.
    assert rec["tangent_train_loss"] < 1e-20
    assert rec["full_test_loss"] < rec["tangent_test_loss"] < rec["random_features_test_loss"]


def test_trajectories_move_far_only_when_not_lazy(tmp_path):
    exp = ex.Trajectories.quick().replace(num_steps=5000, methods=("gd",))
    result = ex.run(exp, tmp_path, progress=False)
    rows = {r["tau"]: r for r in result.summary["rows"]}
    assert rows[0.1]["relative_displacement"] > 1 > 0.1 > rows[2.0]["relative_displacement"]
    assert (tmp_path / "trajectories.png").exists()


def test_corrupted_point_and_store_json_are_reported_and_repaired(tau_sweep, tmp_path, capsys):
    folder = tmp_path / "tau-sweep"
    shutil.copytree(tau_sweep, folder)
    point = folder / "points" / "tau=1.json"
    point.write_text(point.read_text()[:200])  # a partial file
    argv = ["reproduce", "tau-sweep", "--quick", "--out", str(tmp_path), "--no-progress"]
    argv.append("--no-cache")
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0
    assert err.strip().splitlines() == [
        f"{point}: corrupted point (not valid JSON (truncated or edited?)); moved to "
        f"{folder / 'corrupted' / 'tau=1.json'}, it will be recomputed"
    ]
    assert "1 points computed (1 of them corrupted and recomputed), 3 reused" in out
    data = json.loads((folder / "tau-sweep.json").read_text())
    assert [r["tau"] for r in data["summary"]["rows"]] == [0.01, 0.1, 1.0, 10.0]
    assert data["corrupted_points_recomputed"] == ["tau=1"]
    # The recomputed point against the untouched original (same code path, deterministic GD).
    before = json.loads((tau_sweep / "points" / "tau=1.json").read_text())["record"]["output"]
    after = json.loads(point.read_text())["record"]["output"]
    np.testing.assert_allclose(after["test_loss_end"], before["test_loss_end"], rtol=1e-12)
    # A damaged store.json: refused as corrupted (not as another configuration), then rebuilt.
    (folder / "store.json").write_text("{")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "store.json is corrupted: it is not valid JSON" in err and "--repair" in err
    assert main([*argv, "--repair"]) == 0
    out, err = capsys.readouterr()
    assert "kept 4 finished point(s), moved 0" in err and "0 points computed, 4 reused" in out


def test_tau_sweep_band_is_the_range_over_trials_and_never_below_zero(tmp_path):
    exp = ex.TauSweep.quick()
    # Trials that differ by 100x: mean - std < 0, the case that drew a band below zero.
    records = {
        f"tau={t:g}": {
            "tau": t,
            "step": 1.0,
            "test_loss_end": [1e-4 * t, 1e-2 * t],
            "test_loss_best": [5e-5 * t, None],
            "train_loss_end": [0.0, 0.0],
            "diverged_trials": 0,
            "evaluations": [100, 100],
            "linear_test_loss_end": [1e-4 * t, 1e-2 * t],
            "linear_test_loss_inf": [1e-4 * t, 1e-2 * t],
        }
        for t in (0.01, 1.0)
    }
    rows = exp.summarize(sweep_of(records))["rows"]
    assert rows[0]["test_end_mean"] - rows[0]["test_end_std"] < 0
    lo, hi = tau_band(rows, "end")
    np.testing.assert_allclose(lo, [1e-6, 1e-4], rtol=1e-15)
    np.testing.assert_allclose(hi, [1e-4, 1e-2], rtol=1e-15)
    lo, hi = tau_band(rows, "best")
    np.testing.assert_allclose([lo, hi], [[5e-7, 5e-5], [5e-7, 5e-5]], rtol=1e-15)
    assert exp.plot(exp.summarize(sweep_of(records)), tmp_path)[0].read_bytes()[:4] == b"\x89PNG"


def test_tau_sweep_as_a_flow_matches_gradient_descent_in_the_lazy_regime():
    # At tau = 10 the paper's GD runs at eta * lambda_max ~ 0.7: after the first steps it
    # tracks the flow closely, so the end-of-training test losses of the two agree (measured
    # 6e-5 relative at these quick sizes); the flow needs a fifth of GD's gradients.
    exp = ex.TauSweep.quick().replace(log10_tau_min=1.0, log10_tau_max=1.0)
    gd = exp.train(tau=10.0)
    flow = exp.replace(method="flow").train(tau=10.0)
    np.testing.assert_allclose(flow["test_loss_end"], gd["test_loss_end"], rtol=1e-3)
    np.testing.assert_allclose(flow["test_loss_best"], gd["test_loss_best"], rtol=1e-3)
    assert flow["method"] == "flow" and flow["flow"]["solver"] == "RKC"
    assert flow["flow"]["solver_reason"].startswith("stiff")
    assert np.all(flow["evaluations"] < 0.3 * exp.num_steps)
    assert gd["method"] == "gd" and np.all(gd["evaluations"] == exp.num_steps)
    with pytest.raises(ValueError, match="Option `method` must be 'gd', 'flow' or 'linear'"):
        exp.replace(method="rk4").validate()


def test_tau_sweep_diverged_trials_are_nan_counted_and_warn_nothing():
    # GD step 0.75 at tau = 1, seed 3 (quick sizes): trial 1 diverges within 15 steps, trial 0
    # trains. Against the paper's update written out in numpy (s = 1), the test loss at the
    # saved iterations: same arithmetic in another order, agreement to 1e-10 relative (5e-15
    # measured); numpy's trial 1 overflows to NaN.
    exp = ex.TauSweep.quick().replace(lazy_step=0.75, seed=3, log10_tau_min=0.0, log10_tau_max=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = exp.train(tau=1.0)
    saves = set(ex.log_spaced_steps(exp.num_steps, exp.num_saves).tolist())
    # The trials' inits and data as the point draws them (vmapped: the ops compiled already).
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.PRNGKey(exp.seed), k))(
        np.arange(exp.trials)
    )
    problems, data = eqx.filter_vmap(lambda key: exp._trial(key, 1.0))(keys)
    by_hand = []
    for trial in range(exp.trials):
        a, b = (np.asarray(problems.params0[k][trial]) for k in ("a", "b"))
        x, y = np.asarray(data.x_train[trial]), np.asarray(data.y_train[trial])
        x_test, y_test = np.asarray(data.x_test[trial]), np.asarray(data.y_test[trial])
        test = []
        with np.errstate(all="ignore"):  # the diverging trial overflows
            for k in range(exp.num_steps + 1):
                if k in saves:
                    test.append(0.5 * np.mean((np.maximum(x_test @ a.T, 0.0) @ b - y_test) ** 2))
                pre = x @ a.T
                r = (np.maximum(pre, 0.0) @ b - y) / len(x)
                grad_a, grad_b = ((pre > 0) * (r @ b.T)).T @ x, np.maximum(pre, 0.0).T @ r
                a, b = a - exp.step(1.0) * grad_a, b - exp.step(1.0) * grad_b
        by_hand.append(np.asarray(test))
    assert np.isfinite(by_hand[0][-1]) and np.isnan(by_hand[1][-1])
    assert rec["diverged_trials"] == 1
    assert rec["evaluations"][0] == exp.num_steps and rec["evaluations"][1] < 20
    np.testing.assert_allclose(rec["test_loss_end"][0], by_hand[0][-1], rtol=1e-10)
    np.testing.assert_allclose(rec["test_loss_best"][0], by_hand[0].min(), rtol=1e-10)
    for name in ("test_loss_end", "test_loss_best", "train_loss_end"):
        assert np.isnan(rec[name][1]), name
    # The paths average the trials not diverged yet: both at the start, trial 0 at the end.
    path = rec["test_loss_path_mean"]
    np.testing.assert_allclose(path[0], (by_hand[0][0] + by_hand[1][0]) / 2, rtol=1e-10)
    np.testing.assert_allclose(path[-1], by_hand[0][-1], rtol=1e-10)
    # Every trial diverged (step 0.8, seed 0): NaN in the records and at the late saves of the
    # paths, and no "mean of empty slice" warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        worst = exp.replace(lazy_step=0.8, seed=0).train(tau=1.0)
    assert worst["diverged_trials"] == 2 and np.all(np.isnan(worst["test_loss_end"]))
    path = worst["test_loss_path_mean"]
    assert np.isfinite(path[0]) and np.isnan(path[-1])


def test_linear_baseline_against_materialized_jacobians(getkey):
    # The linearized model's test loss at a finite horizon and at t = inf, against numpy on the
    # materialized train and test Jacobians: the flow ybar' = -(J J^T / n)(ybar - y) solved by
    # scipy's expm, and the minimum-norm least-squares fit (numpy lstsq) at t = inf. Not
    # doubled, so h(w0) != 0 enters both. Tolerance 1e-8 relative (float64 eigendecompositions).
    import scipy.linalg

    kd, kp = jax.random.split(getkey())
    data = gf.data.teacher_student(kd, 12, 9, 3, output_scale=2.0)
    params = ex.paper_init(kp, 5, 3, doubled=False, tau=0.7)
    problem = ex.paper_problem(params, data.x_train, data.y_train, 0.8)
    t1 = 3.0
    got = ex.linear_baseline(problem, [0.5, t1], data.x_test, data.y_test)

    flat0, unravel = jax.flatten_util.ravel_pytree(problem.params0)
    alpha = float(problem.alpha)
    model = problem.apply

    def jac(x):
        return np.asarray(jax.jacrev(lambda w: model(unravel(w), x).ravel())(flat0))

    j_tr, j_te = jac(data.x_train), jac(data.x_test)
    f0_tr = alpha * np.asarray(model(params, data.x_train)).ravel()
    f0_te = alpha * np.asarray(model(params, data.x_test)).ravel()
    y, y_te, n = np.asarray(data.y_train).ravel(), np.asarray(data.y_test).ravel(), 12
    # Gradient flow of F_alpha on the linear model, d = w - w0:
    # d' = -(1 / (alpha n)) J^T (f0 + alpha J d - y) = -(J^T J / n) d - J^T (f0 - y) / (alpha n).
    a = j_tr.T @ j_tr / n
    b = -j_tr.T @ (f0_tr - y) / (alpha * n)
    aug = np.zeros((a.shape[0] + 1,) * 2)
    aug[:-1, :-1], aug[:-1, -1] = -a, b
    d_t = (scipy.linalg.expm(aug * t1) @ np.r_[np.zeros(a.shape[0]), 1.0])[:-1]
    d_inf = np.linalg.lstsq(alpha * j_tr, y - f0_tr, rcond=None)[0]

    def test_loss(d):
        return 0.5 * np.mean((f0_te + alpha * j_te @ d - y_te) ** 2)

    assert float(got["test_loss_end"]) == pytest.approx(test_loss(d_t), rel=1e-8)
    assert float(got["test_loss_inf"]) == pytest.approx(test_loss(d_inf), rel=1e-8)
    train = 0.5 * np.mean((f0_tr + alpha * j_tr @ d_t - y) ** 2)
    assert float(got["train_loss_end"]) == pytest.approx(train, rel=1e-8)
    assert float(got["test_loss"][1]) == pytest.approx(test_loss(d_t), rel=1e-8)
    assert float(got["test_loss"][0]) != pytest.approx(test_loss(d_t), rel=1e-3)


def test_tau_sweep_records_linear_baseline_and_plateau_check(tau_sweep):
    summary = json.loads((tau_sweep / "tau-sweep.json").read_text())["summary"]
    rows = summary["rows"]
    # Same effective time tau^2 t1 for tau >= 1 at quick sizes (step 0.1 / tau^2): the
    # linearized model's test loss is the same there, to rounding.
    lin = {r["tau"]: r["linear_end_mean"] for r in rows}
    assert lin[10.0] == pytest.approx(lin[1.0], rel=1e-9)
    check = summary["lazy_plateau_vs_linear"]
    assert check["tau"] == 10.0 and check["tolerance"] == 0.05
    # At tau = 10 (alpha = 100) the net equals its linearization to O(1/alpha) in output.
    assert check["holds"] is True and abs(check["relative_difference"]) < 1e-3
    # At tau = 0.01 the net learns features and is far below its linearized model.
    small = min(rows, key=lambda r: r["tau"])
    assert small["test_end_mean"] < 0.5 * small["linear_end_mean"]


def test_tau_sweep_linear_method_is_the_baseline_alone(tau_sweep):
    gd = json.loads((tau_sweep / "tau-sweep.json").read_text())["summary"]["rows"]
    exp = ex.TauSweep.quick().replace(method="linear")
    rec = exp.train(tau=1.0)
    row = next(r for r in gd if r["tau"] == 1.0)
    # The linear method's end-of-horizon loss is the baseline the GD run recorded, and its
    # best along the path is at most its end.
    assert float(np.mean(rec["test_loss_end"])) == pytest.approx(row["linear_end_mean"], rel=1e-9)
    assert np.all(rec["test_loss_best"] <= rec["test_loss_end"] * (1 + 1e-12))
    assert rec["method"] == "linear" and np.all(rec["evaluations"] == 0)


def test_width_method_per_scaling_and_flow_min_width():
    exp = ex.WidthSweep.quick()
    assert exp.replace(method="sqrt=flow").methods() == {"sqrt": "flow", "mean_field": "gd"}
    assert exp.replace(method="flow").methods() == {"sqrt": "flow", "mean_field": "flow"}
    with pytest.raises(ValueError, match="Option `method` must be 'gd', 'flow', or per scaling"):
        exp.replace(method="sqrt=rk4").validate()
    with pytest.raises(ValueError, match="flow_min_width"):
        exp.replace(flow_min_width=0).validate()
    rec = exp.replace(method="sqrt=flow", flow_min_width=100).run_point(scaling="sqrt", width=8)
    assert rec["method"] == "gd" and rec["flow"] == {}


# The point keys before the keys had one helper (computed then, written out here): stored
# results are found by these names, so they must not change. Homogeneity's are the two flows
# of each tau since it became a flow experiment (its stores of one point per tau are solved
# again).
_STORED_KEYS = {
    "homogeneity": (
        "tau=0.3_flow=direct tau=0.3_flow=rescaled tau=3_flow=direct tau=3_flow=rescaled",
        "tau=0.1_flow=direct tau=0.1_flow=rescaled tau=0.3_flow=direct tau=0.3_flow=rescaled "
        "tau=1_flow=direct tau=1_flow=rescaled tau=3_flow=direct tau=3_flow=rescaled",
    ),
    "trajectories": ("tau=0.1_method=gd tau=0.1_method=flow tau=2_method=gd tau=2_method=flow",)
    * 2,
    "tau-sweep": (
        "tau=0.01 tau=0.1 tau=1 tau=10",
        # Exact keys: each number is the float of the point (`repr` where 6 digits are not).
        "tau=0.006309573444801929 tau=0.007943282347242814 tau=0.01 tau=0.012589254117941675 "
        "tau=0.015848931924611134 tau=0.0199526231496888 tau=0.025118864315095794 "
        "tau=0.03162277660168379 tau=0.039810717055349734 tau=0.05011872336272722 "
        "tau=0.06309573444801933 tau=0.07943282347242814 tau=0.1 tau=0.12589254117941673 "
        "tau=0.15848931924611134 tau=0.19952623149688797 tau=0.251188643150958 "
        "tau=0.31622776601683794 tau=0.3981071705534972 tau=0.5011872336272722 "
        "tau=0.6309573444801932 tau=0.7943282347242815 tau=1 tau=1.2589254117941673 "
        "tau=1.5848931924611136 tau=1.9952623149688795 tau=2.51188643150958 "
        "tau=3.1622776601683795 tau=3.9810717055349722 tau=5.011872336272722 "
        "tau=6.309573444801933 tau=7.943282347242816 tau=10",
    ),
    "width": (
        "sqrt_m=8 sqrt_m=128 mean_field_m=8 mean_field_m=128 sqrt_m=inf",
        "sqrt_m=2 sqrt_m=3 sqrt_m=4 sqrt_m=6 sqrt_m=8 sqrt_m=12 sqrt_m=16 sqrt_m=24 sqrt_m=32 "
        "sqrt_m=64 sqrt_m=128 sqrt_m=256 sqrt_m=512 mean_field_m=2 mean_field_m=3 "
        "mean_field_m=4 mean_field_m=6 mean_field_m=8 mean_field_m=12 mean_field_m=16 "
        "mean_field_m=24 mean_field_m=32 mean_field_m=64 mean_field_m=128 mean_field_m=256 "
        "mean_field_m=512 sqrt_m=inf",
    ),
    "population-sgd": (
        "tau=0.01 tau=10",
        "tau=0.01 tau=0.03162277660168379 tau=0.1 tau=0.31622776601683794 tau=1 "
        "tau=3.1622776601683795 tau=10",
    ),
    "cnn": (
        "alpha=1_trial=0 alpha=100_trial=0 alpha=10000_trial=0 linearized_trial=0",
        " ".join(
            [f"alpha={a}_trial={t}" for a in ("1", "10", "100", "1000", "10000") for t in range(3)]
            + [f"linearized_trial={t}" for t in range(3)]
        ),
    ),
    "regimes": (
        "n=15_trial=0 n=60_trial=0",
        " ".join(f"n={n}_trial={t}" for n in (20, 40, 80, 160, 320) for t in range(3)),
    ),
    "tensor": (
        "tau=0.1_trial=0 tau=10_trial=0",
        " ".join(
            f"tau={tau}_trial={t}"
            for tau in ("0.1", "0.31622776601683794", "1", "3.1622776601683795", "10")
            for t in range(3)
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(_STORED_KEYS))
def test_point_keys_are_the_stored_ones(name):
    quick, paper = _STORED_KEYS[name]
    cls = ex.EXPERIMENTS[name]
    assert [k for k, _ in cls.quick().points()] == quick.split()
    assert [k for k, _ in cls().points()] == paper.split()


def test_point_key_formats_numbers_as_the_stored_keys():
    assert ex.point_key(tau=0.01, trial=3) == "tau=0.01_trial=3"
    # Exact: 6 significant digits where they read back as the same float, else `repr`.
    assert ex.point_key(tau=np.float64(10.0) ** -0.5) == "tau=0.31622776601683794"
    assert ex.point_key(tau=0.3162, trial=np.int64(2), digits=4) == "tau=0.3162_trial=2"
    assert ex.point_key(tau=0.31625, digits=4) == "tau=0.31625"
    assert ex.point_key(prefix="sqrt", m=8) == "sqrt_m=8"
    assert ex.point_key(prefix="sqrt", m=float("inf")) == "sqrt_m=inf"
    assert ex.point_key(tau=2.0, suffix="gd") == "tau=2_gd"
    assert ex.point_key(prefix="linearized", trial=0) == "linearized_trial=0"
    with pytest.raises(ValueError, match="Point coordinate `tau` must be a number or a string"):
        ex.point_key(tau=float("nan"))
    with pytest.raises(ValueError, match="`suffix` must be a non-empty string without '/'"):
        ex.point_key(tau=1.0, suffix="a/b")
    with pytest.raises(ValueError, match="`digits` must be an integer >= 1; got digits=0"):
        ex.point_key(tau=1.0, digits=0)


@pytest.mark.parametrize(
    "cls, changes, message",
    [
        (ex.TauSweep, {"method": "rk4"}, "Option `method` must be 'gd', 'flow' or 'linear'; got"),
        (ex.TauSweep, {"width": 21}, "Option `width` must be an even integer >= 2 (the doubled"),
        (ex.TauSweep, {"width": 0}, "Option `width` must be an even integer >= 2"),
        (ex.TauSweep, {"flow_rtol": 1.0}, "Option `flow_rtol` must be a number in [1e-12, 1); got"),
        (ex.TauSweep, {"dim": 2.5}, "Option `dim` must be an integer > 0; got dim=2.5."),
        (ex.TauSweep, {"trials": True}, "Option `trials` must be an integer > 0; got trials=True"),
        (ex.TauSweep, {"log10_tau_min": np.nan}, "`log10_tau_min` must be a finite number; got"),
        (ex.TauSweep, {"log10_tau_max": -3.0}, "Option `log10_tau_max` must be >= `log10_tau_min`"),
        (ex.WidthSweep, {"widths": ()}, "Option `widths` must list at least one value; got"),
        (ex.WidthSweep, {"widths": (8, 0)}, "Option `widths` must list integers > 0; got widths="),
        (ex.WidthSweep, {"widths": [8]}, "Option `widths` must be a tuple (comma-separated with"),
        (ex.WidthSweep, {"scalings": "sqrt,x"}, "`scalings` must be among 'sqrt', 'mean_field'"),
        (ex.Trajectories, {"methods": ("rk4",)}, "Option `methods` must be among 'gd', 'flow'"),
        (ex.Homogeneity, {"taus": "0.1,-1"}, "Option `taus` must list numbers > 0; got taus="),
        (ex.PopulationSGD, {"log10_taus": ""}, "Option `log10_taus` must list at least one value"),
        (ex.Regimes, {"n_trains": (1.5,)}, "Option `n_trains` must list integers > 0"),
        (ex.TensorCompletion, {"observed_fraction": 1}, "`observed_fraction` must be a number in"),
        (ex.CNNAlphaSweep, {"data": "mnist"}, "Option `data` must be 'digits' or 'cifar10'; got"),
        (ex.CNNAlphaSweep, {"momentum": 1.0}, "Option `momentum` must be a number in [0, 1); got"),
        (ex.CNNAlphaSweep, {"n_train": 0}, "Option `n_train` must be an integer > 0; got n_train"),
        (ex.CNNAlphaSweep, {"linearized": 1}, "Option `linearized` must be True or False; got"),
        (ex.CNNAlphaSweep, {"stages": (8, -1)}, "Option `stages` holds channel counts > 0 or 0"),
        (ex.CNNAlphaSweep, {"data": "cifar10"}, "data=cifar10 needs `data_path`"),
    ],
)
def test_options_are_checked_as_their_fields_declare(cls, changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls.quick().replace(**changes)


def test_declared_options_check_a_new_experiment():
    @dataclasses.dataclass(frozen=True)
    class Toy(ex.AbstractExperiment):
        name: ClassVar[str] = "toy"
        title: ClassVar[str] = "toy"
        claim: ClassVar[str] = "none"
        low: float = ex.option(0.0, "lower end", within="[-1, 1]")
        high: float = ex.option(1.0, "upper end", within="(-1, 1]")
        sizes: tuple[int, ...] = ex.option((2, 4), "sizes", even=True)
        tag: str | None = ex.option(None, "a tag", choices=("a", "b"))

        def check_options(self):
            if self.high <= self.low:
                raise ValueError("Option `high` must be > `low`.")

        def points(self):
            return [(ex.point_key(size=s), {"size": s}) for s in self.sizes]

        def build(self, *, size):
            return gf.Computation(dict)

        def summarize(self, sweep):
            return {}

        def plot(self, summary, folder):
            return []

    toy = Toy()
    toy.validate()  # the defaults pass
    assert toy.replace(low=-1, high="1", tag="b").tag == "b"  # both ends included
    with pytest.raises(ValueError, match=re.escape("Option `high` must be a number in (-1, 1]")):
        toy.replace(low=-1.0, high=-1.0)
    with pytest.raises(ValueError, match="Option `high` must be > `low`"):
        toy.replace(low=0.5, high=0.25)
    with pytest.raises(ValueError, match=re.escape("`sizes` must list even integers >= 2 (the")):
        toy.replace(sizes="2,3")
    with pytest.raises(ValueError, match="Option `tag` must be 'a' or 'b'; got tag='c'"):
        toy.replace(tag="c")
    assert "  tag = None  (str | None)\n      a tag" in toy.describe_options()
    with pytest.raises(ValueError, match=r"`within` must be an interval such as '\[0, 1\)'"):
        ex.option(0.5, "a fraction", within="0 to 1")
    with pytest.raises(ValueError, match="`help` must say what the option means"):
        ex.option(0.5, "")


def test_width_sweep_scalings_are_the_papers():
    # Fig. 2: s = 1/sqrt(m) with step 1/m, and s = 1/m with step 0.05/m.
    assert ex.WidthSweep.output_scale_and_step("sqrt", 16) == (0.25, 1 / 16)
    assert ex.WidthSweep.output_scale_and_step("mean_field", 16) == (1 / 16, 0.05 / 16)
    with pytest.raises(ValueError, match="`scaling` must be 'sqrt' or 'mean_field'; got 'x'"):
        ex.WidthSweep.output_scale_and_step("x", 16)


@pytest.mark.optimized
def test_paper_figures_notebook_runs_and_asserts_its_claims():
    # Each experiment at quick size, as in the tests above (whose programs it reuses when it runs
    # in their pytest worker), and the notebook's own assertions on the paper's claims.
    run_notebook("paper_figures.ipynb")


def _tuple_options(cls):
    hints = typing.get_type_hints(cls)
    return [f for f in dataclasses.fields(cls) if typing.get_origin(hints[f.name]) is tuple]


@pytest.mark.parametrize("name", sorted(ex.EXPERIMENTS))
def test_a_repeated_value_of_a_sweep_option_is_refused_by_name(name):
    # A tuple option lists the points of a sweep: a repeated value would be one point twice.
    quick = ex.EXPERIMENTS[name].quick()
    for f in _tuple_options(type(quick)):
        value = getattr(quick, f.name)
        if f.metadata["repeats"]:
            quick.replace(**{f.name: value + value[:1]})  # e.g. VGG channels 16,16
            continue
        with pytest.raises(ValueError, match=rf"Option `{f.name}` lists {value[0]!r} twice"):
            quick.replace(**{f.name: value + value[:1]})
    # Values are compared exactly: 10 and 10.0 repeat, 1.0000001 and 1.0000002 do not.
    if name == "alpha-sweep":
        with pytest.raises(ValueError, match=re.escape("`alphas` lists 10 twice")):
            quick.replace(alphas=(10, 10.0))
        quick.replace(alphas=(1.0000001, 1.0000002))


def test_only_the_cnn_stages_may_repeat_a_value():
    options = [(n, f) for n, c in ex.EXPERIMENTS.items() for f in _tuple_options(c)]
    assert len(options) == 17
    assert [(n, f.name) for n, f in options if f.metadata["repeats"]] == [("cnn", "stages")]


def test_every_experiment_declares_its_largest_arrays(monkeypatch):
    from gradflow import _memory

    for name, cls in ex.EXPERIMENTS.items():
        arrays = cls().largest_arrays()
        fields = {f.name for f in dataclasses.fields(cls)}
        assert arrays and all(set(a.options) <= fields and a.options for a in arrays), name
    # The paper's sizes fit in 16 GiB: never refused there ...
    monkeypatch.setattr(_memory, "memory_limit", lambda: 16 * 2**30)
    for cls in ex.EXPERIMENTS.values():
        cls().validate()
    # ... and each is refused in 16 KiB, naming its options and both sizes.
    monkeypatch.setattr(_memory, "memory_limit", lambda: 2**14)
    for name, cls in ex.EXPERIMENTS.items():
        with pytest.raises(ValueError, match=r"need.? at least .* but this machine has 16 KiB"):
            cls().validate()


def test_the_memory_estimate_counts_the_tangent_kernel_of_every_trial():
    # tau-sweep, quick sizes with n = 10^12: each of the 2 trials holds its n x n tangent
    # kernel and its eigenvectors (2 n^2 float64), 2 * 2 * 8 * 10^24 bytes = 26.5 YiB; the
    # data and parameters (~10^14 bytes) do not show in 3 digits.
    assert 2 * 2 * 8 * 1e24 / 2**80 == pytest.approx(26.47, abs=0.005)
    message = r"`n_train`=1000000000000 and `trials`=2 need at least 26\.5 YiB of memory"
    with pytest.raises(ValueError, match=message):
        ex.TauSweep.quick().replace(n_train=10**12)


def test_width_summaries_of_runs_apart_merge_to_the_whole_runs():
    # Fig. 2 run in two parts (the 1/m widths apart): the merged summary equals the summary of
    # all the records at once, claims included (exactly: the same arithmetic on the same rows).
    exp = ex.WidthSweep.quick()
    rng = np.random.default_rng(0)

    def record(scaling, width):
        losses = list(rng.uniform(0.5, 2.0, 3))
        return {
            "scaling": scaling,
            "width": width,
            "test_loss_end": losses,
            "test_loss_best": losses,
            "train_loss_end": [0.0] * 3,
            "diverged_trials": 0,
            "linear_test_loss_end": losses,
            "linear_test_loss_inf": losses,
            "evaluations": [10] * 3,
            "init_variance_part_end": [0.1] * 3,
        }

    records = {f"{s}_m={m}": record(s, m) for s in ("sqrt", "mean_field") for m in (8, 128, 256)}
    records["sqrt_m=inf"] = record("sqrt", 0)
    whole = exp.summarize(sweep_of(records))
    first = exp.summarize(
        sweep_of(
            {
                k: r
                for k, r in records.items()
                if not k.endswith(("128", "256")) or k.startswith("sqrt")
            }
        )
    )
    second = exp.summarize(sweep_of({k: r for k, r in records.items()
                                     if k.startswith("mean_field")}))  # fmt: skip
    merged = ex.WidthSweep.merge([first, second])
    assert merged == whole
    assert set(whole) >= {"mean_field_below_sqrt_for_m_ge_128", "kernel_limit"}


def _dense_eta_sharpness(problem, params, eta):
    """eta times the largest eigenvalue of the dense jax.hessian of F_alpha at `params`."""
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    hess = jax.hessian(lambda v: problem.objective(unravel(v)))(flat)
    return eta * float(np.linalg.eigvalsh(np.asarray(hess))[-1])


def _tiny_tau_sweep(**changes):
    sizes = dict(dim=3, n_train=12, n_test=10, width=4, num_steps=60, num_saves=8, trials=2)
    return ex.TauSweep.quick().replace(**{**sizes, **changes})


@pytest.mark.optimized
def test_tau_sweep_gd_audit_against_dense_hessians_and_gd_flow_distance():
    # The audit of a tiny Fig. 1c point (20 parameters, every Hessian eigenvalue resolved): its
    # eta * lambda_max against numpy's dense eigenvalues at w0 and at the last iterate (1e-6),
    # its distance to the flow against gf.gd_flow_distance (rtol 1e-8 and 1e-10, shown tight;
    # 1e-4 of the distances), its distance to the modified flow against a Tsit5 solve at rtol
    # 1e-11 (1e-4).
    import diffrax as dfx

    exp = _tiny_tau_sweep(audit="full", audit_rtol=1e-9)
    tau = 1.0
    audit = exp.train(tau=tau)["gd_audit"]
    assert audit["trial"] == 0 and audit["flow_result"] == audit["modified_result"] == "successful"
    problem, _ = exp._trial(jax.random.fold_in(jax.random.PRNGKey(exp.seed), 0), tau)
    eta = ex.paper_learning_rate(exp.width, exp.step(tau))
    its = np.asarray(audit["iterations"])
    kw = dict(t1=float(its[-1] * eta), ts=its * eta, linearized=False, save_params=True)
    gd = gf.solve(problem, solver=gf.GradientDescent(eta), **kw)
    last = jax.tree_util.tree_map(lambda x: x[-1], gd.params)
    sharp = np.asarray(audit["eta_sharpness"], dtype=float)
    np.testing.assert_allclose(sharp[0], _dense_eta_sharpness(problem, problem.params0, eta),
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(sharp[-1], _dense_eta_sharpness(problem, last, eta), rtol=1e-6)
    assert audit["max_eta_sharpness"] == max(sharp) and audit["final_eta_sharpness"] == sharp[-1]
    assert audit["edge_of_stability"] is bool(max(sharp) >= 2.0)

    reference = gf.gd_flow_distance(problem, eta, int(its[-1]), iterations=its, rtol=1e-8)
    assert reference.reference_tight
    after = its > 0
    np.testing.assert_allclose(np.asarray(audit["flow_distance"])[after],
                               np.asarray(reference.distance)[after], rtol=1e-4)  # fmt: skip
    modified = gf.solve(problem, solver=dfx.Tsit5(), rtol=1e-11, atol=1e-13, modified_step=eta,
                        max_steps=200_000, **kw)  # fmt: skip

    def out(params):
        return jax.vmap(lambda p: problem.alpha * problem.apply(p, problem.inputs))(params)

    gap = np.sqrt(np.mean(np.sum((out(gd.params) - out(modified.params)) ** 2, -1), -1))
    np.testing.assert_allclose(np.asarray(audit["modified_distance"])[after], gap[after],
                               rtol=1e-4)  # fmt: skip
    assert audit["max_flow_distance"] == max(np.asarray(audit["flow_distance"])[after])


def test_gd_audit_decides_the_edge_of_stability_at_the_saved_iterates():
    # A step at 2.5 / lambda_max(w0) starts at the edge (the first save, k = 0), one at
    # 0.5 / lambda_max(w0) on this lazy point stays below 2 (its sharpness moves by under 1%).
    from gradflow._gd_flow import audit_gd

    exp = _tiny_tau_sweep()
    problem, _ = exp._trial(jax.random.PRNGKey(0), 3.0)
    lam = float(gf.sharpness(problem))
    its = np.array([0, 1, 5, 20])
    for factor, unstable in ((2.5, True), (0.5, False)):
        eta = factor / lam
        gd = gf.solve(problem, t1=20 * eta, ts=its * eta, solver=gf.GradientDescent(eta),
                      linearized=False, save_params=True)  # fmt: skip
        audit = audit_gd(problem, gd.params, its, eta, flows=False)
        np.testing.assert_allclose(float(audit.eta_sharpness[0]), factor, rtol=1e-6)
        assert audit.edge_of_stability is unstable
        assert audit.first_unstable_iteration == (0 if unstable else None)
        assert audit.flow_result == "not solved" and np.all(np.isnan(audit.flow_distance))
    with pytest.raises(ValueError, match="`iterations` must be the saved iterations"):
        audit_gd(problem, gd.params, its[1:], eta)
    with pytest.raises(ValueError, match="`rtol_check` must be below `rtol`"):
        audit_gd(problem, gd.params, its, eta, rtol=1e-6, rtol_check=1e-5)
