"""gf.sweep's shared and per-point options, explicit keys and measures, and a flow experiment
through them."""

import jax
import numpy as np
import pytest

import gradflow as gf
from gradflow import experiments as ex

_MODEL = gf.models.TwoLayer(6, "tanh")
_X = np.asarray(gf.data.uniform_sphere(jax.random.PRNGKey(0), 8, 3))
_Y = np.asarray(gf.data.teacher_targets(jax.random.PRNGKey(1), _X))
_X_TEST = np.asarray(gf.data.uniform_sphere(jax.random.PRNGKey(2), 5, 3))


def build(seed, step):
    params = _MODEL.init(jax.random.PRNGKey(seed), 3, doubled=True)
    return gf.Problem(_MODEL, params, _X, gf.SquareLoss(_Y), alpha=2.0)


def options(seed, step):
    # Gradient descent with a step that depends on the point, 20 steps of it.
    return {"solver": gf.GradientDescent(step), "t1": 20 * step, "ts": [10 * step, 20 * step]}


def measure(problem, solution, seed, step):
    last = jax.tree_util.tree_map(lambda x: x[-1], solution.params)
    return {"test_out": problem.predict(last, _X_TEST), "steps": 20.0}


POINTS = [{"seed": s, "step": e} for s in (0, 1) for e in (0.1, 0.2)]
OPTS = {"linearized": False, "save_params": True}


def _by_hand(seed, step):
    # Ground truth: the gradient-descent loop written out, w <- w - eta grad F_alpha(w).
    problem = build(seed, step)
    w = problem.params0
    grad = jax.grad(problem.objective)
    for _ in range(20):
        w = jax.tree_util.tree_map(lambda a, g: a - step * g, w, grad(w))
    return problem.predict(w, _X_TEST), problem.loss(problem.alpha * problem.h(w))


def test_options_keys_and_measures_are_per_point_and_stored(tmp_path):
    keys = [f"s{p['seed']}_eta{p['step']}" for p in POINTS]
    sw = gf.sweep(build, POINTS, keys=keys, point_options=options, measure=measure,
                  store=tmp_path, batch_size=1, **OPTS)  # fmt: skip
    assert sw.keys == tuple(keys) and all(sw.succeeded)
    assert sw.measures["test_out"].shape == (4, 5, 1)
    assert sw.measures["steps"].tolist() == [20.0] * 4
    for i, p in enumerate(POINTS):
        out, loss = _by_hand(**p)
        np.testing.assert_allclose(sw.measures["test_out"][i], out, rtol=1e-12)
        np.testing.assert_allclose(sw.final("loss")[i], loss, rtol=1e-12)
        np.testing.assert_allclose(sw.solution.ts[i], [10 * p["step"], 20 * p["step"]], rtol=0)
    # Read back: the measures come from the store, and the per-point options are part of each
    # point's identity (another step for the same key is refused).
    again = gf.sweep(build, POINTS, keys=keys, point_options=options, measure=measure,
                     store=tmp_path, **OPTS)  # fmt: skip
    assert all(again.resumed)
    np.testing.assert_array_equal(again.measures["test_out"], sw.measures["test_out"])

    def other(seed, step):
        return {**options(seed, step), "solver": gf.GradientDescent(step / 2)}

    with pytest.raises(gf.StoreError, match=r"4 point\(s\) .*differs in: solve options"):
        gf.sweep(
            build, POINTS, keys=keys, point_options=other, measure=measure, store=tmp_path, **OPTS
        )
    with pytest.raises(ValueError, match="`keys` must hold one key per point; got 1 for 4"):
        gf.sweep(build, POINTS, keys=["a"], point_options=options, **OPTS)


def test_shared_options_as_an_object_equal_the_keywords(tmp_path):
    # The same sweep with its shared options as keywords and as one `SolveOptions`: the same
    # numbers, the same options per point, and the same fingerprint (the second resumes the
    # first's store).
    shared = gf.SolveOptions(**OPTS)
    by_keywords = gf.sweep(build, POINTS, point_options=options, store=tmp_path,
                           batch_size=1, **OPTS)  # fmt: skip
    by_options = gf.sweep(build, POINTS, point_options=options, options=shared, batch_size=1)
    np.testing.assert_array_equal(by_options.solution.loss, by_keywords.solution.loss)
    assert by_options.infos == by_keywords.infos
    for info, p in zip(by_options.infos, POINTS):
        assert info.options == shared.replace(**options(**p)) and info.choice is None
    again = gf.sweep(build, POINTS, point_options=options, options=shared, store=tmp_path)
    assert all(again.resumed) and again.infos == by_keywords.infos

    # A point's options are checked as they are applied, naming the option.
    def off_the_iterates(seed, step):
        return {**options(seed, step), "ts": [1.5 * step]}

    with pytest.raises(ValueError, match=r"`ts` must be iterates, multiples of learning_rate"):
        gf.sweep(build, POINTS[:1], options=shared, point_options=off_the_iterates)
    with pytest.raises(
        TypeError, match=r"`SolveOptions.replace` got unknown option\(s\) \['eta'\]"
    ):
        gf.sweep(build, POINTS[:1], options=shared, point_options=lambda seed, step: {"eta": step})
    with pytest.raises(ValueError, match="`throw` is not supported by `sweep`"):
        gf.sweep(build, POINTS[:1], options=shared.replace(t1=1.0),
                 point_options=lambda seed, step: {"throw": True})  # fmt: skip


def test_a_failing_measure_is_reported_and_not_stored(tmp_path):
    def broken(problem, solution, seed, step):
        if seed == 1:
            raise ArithmeticError("no test set")
        return measure(problem, solution, seed, step)

    sw = gf.sweep(build, POINTS[:3], point_options=options, measure=broken, store=tmp_path,
                  batch_size=1, **OPTS)  # fmt: skip
    assert sw.is_(gf.SweepStatus.raised).tolist() == [False, False, True]
    assert sw.errors[2] == "measure: ArithmeticError: no test set"
    assert np.all(np.isnan(sw.measures["test_out"][2])) and np.isnan(sw.final("loss")[2])
    assert len(list((tmp_path / "points").glob("*.json"))) == 2


@pytest.mark.optimized
def test_tensor_completion_is_a_flow_experiment_that_resumes(tmp_path):
    exp = ex.TensorCompletion.quick()
    first = ex.run(exp, tmp_path, progress=False)
    assert first.computed == ["tau=0.1_trial=0", "tau=10_trial=0"] and not first.errors
    again = ex.run(exp, tmp_path, progress=False)
    assert again.computed == [] and again.reused == first.computed
    assert again.summary["rows"] == first.summary["rows"]
    # The stored measures are those of the point solved on its own.
    direct = exp.run_point(tau=10.0, trial=0)
    row = first.summary["rows"][1]
    np.testing.assert_allclose(
        row["relative_test_loss_mean"],
        direct["test_loss"] / direct["zero_predictor_test_loss"],
        rtol=1e-12,
    )
