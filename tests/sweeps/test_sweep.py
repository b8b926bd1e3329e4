"""Batched sweeps: one compiled program per shape, vmapped and sharded, checkpointed per point."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow.experiments import point_key

TS = [0.0, 1.0, 2.0]
N, D, M = 8, 3, 10
_MODEL = gf.models.TwoLayer(M, "tanh")
_X = np.asarray(gf.data.uniform_sphere(jax.random.PRNGKey(0), N, D))
_Y = np.asarray(gf.data.teacher_targets(jax.random.PRNGKey(1), _X))
TRACES: list[int] = []


def _apply(params, x):
    TRACES.append(1)
    return _MODEL(params, x)


def build(tau, seed, alpha=1.0):
    params = _MODEL.init(jax.random.PRNGKey(seed), D, doubled=True, tau=tau)
    return gf.Problem(_apply, params, _X, gf.SquareLoss(_Y), alpha=alpha)


POINTS = [{"tau": t, "seed": s} for t in (0.5, 1.0, 2.0) for s in (0, 1)]
# One configuration for most sweeps of this module, so they share one compiled program (and the
# references another): compilation dominates these tests.
OPTS = {"t1": 2.0, "ts": TS, "batch_size": 4, "linearized": False}


def reference(point):
    return gf.solve(build(**point), t1=2.0, ts=TS, rtol=1e-12, atol=1e-14, linearized=False)


def test_batched_sweep_matches_separate_solves_and_compiles_once(tmp_path):
    before = len(TRACES)
    # 6 points, batches of 4: the second batch is padded and must reuse the program.
    sw = gf.sweep(build, POINTS, store=tmp_path / "s", **OPTS)
    traced = len(TRACES) - before
    assert sw.compiled_groups == 1 and all(e is None for e in sw.errors)
    # Ground truth: each point solved on its own at a much tighter tolerance. Batched adaptive
    # solves take the union of steps, so they agree to the tolerance (rtol 1e-8), not bitwise.
    for rec, point in zip(sw.records(), POINTS):
        ref = reference(point)
        np.testing.assert_allclose(rec["final"]["loss"], float(ref.loss[-1]), rtol=1e-7)
        np.testing.assert_allclose(
            rec["sup"]["param_distance"], float(np.max(ref.param_distance)), rtol=1e-6
        )
        assert rec["point"] == point and rec["status"] == "computed"
    # One trace of the model per compiled program (jvp/vjp/linearize inside it), none later:
    # a second identical sweep without a store traces nothing.
    before = len(TRACES)
    gf.sweep(build, POINTS, **OPTS)
    assert len(TRACES) == before, "the batched program was retraced"
    assert traced > 0
    np.testing.assert_allclose(sw.final("loss"), [r["final"]["loss"] for r in sw.records()], rtol=0)
    np.testing.assert_allclose(sw.final("loss"), sw.solution.loss[:, -1], rtol=0)
    assert sw.solution.loss.shape == (len(POINTS), len(TS)) and bool(
        np.all(sw.is_(gf.SweepStatus.computed))
    )


def test_interrupted_sweep_resumes_from_store(tmp_path):
    store = tmp_path / "store"
    seen = []

    def interrupt(records):
        seen.extend(r["key"] for r in records)
        raise KeyboardInterrupt  # killed after the first batch was written

    with pytest.raises(KeyboardInterrupt):
        gf.sweep(build, POINTS, store=store, callback=interrupt, **OPTS)
    assert sorted(p.stem for p in (store / "points").glob("*.json")) == sorted(seen)
    assert len(seen) == 4
    stored = json.loads((store / "points" / f"{seen[0]}.json").read_text())["record"]
    solved = []
    sw = gf.sweep(
        build,
        POINTS,
        store=store,
        callback=lambda recs: solved.extend(r["key"] for r in recs),
        **OPTS,
    )
    assert sorted(solved) == sorted(set(sw.keys) - set(seen))  # only the missing points ran
    assert list(sw.resumed) == [k in seen for k in sw.keys]
    assert sw.final("loss")[sw.keys.index(seen[0])] == stored["final"]["loss"]
    with pytest.raises(ValueError, match="another configuration"):
        gf.sweep(build, POINTS, store=store, **{**OPTS, "t1": 3.0})


def test_solve_info_round_trips_through_the_store(tmp_path):
    # Four points, one batch of four: the program of the sweeps above.
    points, folder = POINTS[:4], tmp_path / "s"
    first = gf.sweep(build, points, store=folder, **OPTS)
    again = gf.sweep(build, points, store=folder, **OPTS)
    assert all(again.resumed) and first.solution.info is None  # the stack has no single info
    # Ground truth for the batch's auto choice: lambda_max(w0) * t1 of its stiffest point, the
    # Hessian's norm (largest |eigenvalue|: the estimate is a power iteration) from dense
    # Hessians and numpy's eigenvalues; the 20 iterations come within 2% below.
    flat, unravel = ravel_pytree(build(**points[0]).params0)
    hessian = eqx.filter_jit(lambda p, w: jax.hessian(lambda v: p.objective(unravel(v)))(w))
    lam = 0.0
    for point in points:
        problem = build(**point)
        dense = np.asarray(hessian(problem, ravel_pytree(problem.params0)[0]))
        lam = max(lam, float(np.max(np.abs(np.linalg.eigvalsh(dense)))))
    for i in range(len(points)):
        info = first.infos[i]
        assert 0.98 * lam * 2.0 <= info.stiffness <= lam * 2.0 * (1 + 1e-9)
        assert info.solver_reason.endswith("(the batch's stiffest point)")
        assert info.choice.estimated_from is gf.StiffnessSource.batch
        expected = gf.SolveInfo(
            options=gf.SolveOptions(2.0, TS, solver=dfx.Tsit5(), linearized=False),
            choice=info.choice,
            dtype="float64",
            center=False,
            num_params=flat.size,
        )
        assert (info.solver, info.rtol, info.atol, info.t1) == ("Tsit5", 1e-8, 1e-10, 2.0)
        assert info == expected and first.solution_at(i).info == info
        # Read back from the store: an equal (and equally hashed) record.
        assert again.infos[i] == info and again.solution_at(i).info == info
    assert hash(again.infos) == hash(first.infos)
    # On disk, the keys the untyped record wrote.
    stored = json.loads((folder / "points" / f"{first.keys[0]}.json").read_text())["record"]
    info_keys = ["solver", "solver_choice", "rtol", "atol", "t1", "dtype", "linearized"]
    info_keys += ["center", "num_params", "solver_reason", "stiffness"]
    assert list(stored["solution"])[-len(info_keys) :] == info_keys
    # A stored solution with a key neither `Solution` nor `SolveInfo` knows (another version's,
    # with a valid checksum) is refused by name, before anything is solved.
    config = json.loads((folder / "store.json").read_text())["config"]
    with gf.ResultStore(folder, config) as store:
        rec = store.get(first.keys[1])
        rec["solution"]["solver_seed"] = 7
        store.put(first.keys[1], rec)
    with pytest.raises(
        ValueError,
        match=r"A stored solution cannot be read back: `record` holds unknown key\(s\) "
        r"\['solver_seed'\] for a gradflow.SolveInfo",
    ):
        gf.sweep(build, points, store=folder, **OPTS)


def _other_targets(tau, seed, alpha=1.0):
    # Same shapes and model as `build`, other data: a changed `build` a store must notice.
    params = _MODEL.init(jax.random.PRNGKey(seed), D, doubled=True, tau=tau)
    return gf.Problem(_apply, params, _X, gf.SquareLoss(2.0 * _Y), alpha=alpha)


def test_changed_build_never_reuses_stored_points(tmp_path):
    store = tmp_path / "s"
    first = gf.sweep(build, POINTS[:2], store=store, **OPTS)
    assert not any(first.resumed)
    with pytest.raises(
        gf.StoreError,
        match=r"2 point\(s\) in .* computed for another computation than `build` now returns: "
        r"tau=0.5_seed=0 \(differs in: loss\); tau=0.5_seed=1 \(differs in: loss\)\. .*"
        "overwrite=True",
    ):
        gf.sweep(_other_targets, POINTS[:2], store=store, **OPTS)

    def other_init(tau, seed):
        return build(tau, seed + 10)

    with pytest.raises(gf.StoreError, match=r"differs in: params0\)"):
        gf.sweep(other_init, POINTS[:2], store=store, **OPTS)
    sw = gf.sweep(_other_targets, POINTS[:2], store=store, overwrite=True, **OPTS)
    assert not any(sw.resumed)
    # Ground truth for the new problem: its own solve at a much tighter tolerance.
    for rec, point in zip(sw.records(), POINTS[:2]):
        ref = gf.solve(_other_targets(**point), t1=2.0, ts=TS, rtol=1e-12, atol=1e-14,
                       linearized=False)  # fmt: skip
        np.testing.assert_allclose(rec["final"]["loss"], float(ref.loss[-1]), rtol=1e-7)
        assert abs(rec["final"]["loss"] - first.final("loss")[0]) > 1e-3
    again = gf.sweep(_other_targets, POINTS[:2], store=store, **OPTS)
    assert all(again.resumed)


def test_problem_fingerprint_sees_data_init_model_and_static_fields():
    fp = gf.problem_fingerprint
    base = fp(build(1.0, 0))
    assert fp(build(1.0, 0)) == base  # rebuilt: same arrays, same structure
    assert fp(build(1.0, 0, alpha=2.0)) == {**base, "alpha": fp(build(1.0, 0, 2.0))["alpha"]}
    assert fp(build(1.0, 0, alpha=2.0))["alpha"] != base["alpha"]
    params = _MODEL.init(jax.random.PRNGKey(0), D, doubled=True, tau=1.0)
    # A static field only (the output scaling) and `center`: the arrays are the same.
    mf = gf.Problem(gf.models.TwoLayer(M, "tanh", "mean_field"), params, _X, gf.SquareLoss(_Y))
    sq = gf.Problem(gf.models.TwoLayer(M, "tanh", "sqrt"), params, _X, gf.SquareLoss(_Y))
    assert fp(mf)["apply"] != fp(sq)["apply"] and fp(mf)["params0"] == fp(sq)["params0"]
    centered = gf.Problem(_apply, params, _X, gf.SquareLoss(_Y), center=True)
    assert fp(centered)["center"] != base["center"]
    # Functions are told apart by what they close over and their default arguments.
    lam = [gf.Problem(lambda p, x, c=c: c * _MODEL(p, x), params, _X, gf.SquareLoss(_Y))
           for c in (1.0, 2.0)]  # fmt: skip
    assert fp(lam[0])["apply"] != fp(lam[1])["apply"]
    scaled = [gf.Problem(_scaled(c), params, _X, gf.SquareLoss(_Y)) for c in (1.0, 2.0)]
    assert fp(scaled[0])["apply"] != fp(scaled[1])["apply"]
    assert (
        fp(scaled[0])["apply"]
        == fp(gf.Problem(_scaled(1.0), params, _X, gf.SquareLoss(_Y)))["apply"]
    )


def _scaled(c):
    def apply(p, x):
        return c * _MODEL(p, x)

    return apply


def test_corrupted_point_file_is_reported_and_recomputed(tmp_path, capsys):
    store = tmp_path / "s"
    first = gf.sweep(build, POINTS[:3], store=store, **OPTS)
    path = store / "points" / f"{first.keys[1]}.json"
    path.write_text(path.read_text()[:100])  # a partial file
    solved = []
    again = gf.sweep(
        build, POINTS[:3], store=store, callback=lambda rs: solved.extend(r["key"] for r in rs),
        **OPTS,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert f"{path}: corrupted point (not valid JSON" in err and len(err.splitlines()) == 1
    assert solved == [first.keys[1]]
    assert list(again.resumed) == [True, False, True]
    # Recomputed in a batch of its own: equal to the first run to the tolerance (rtol 1e-8).
    np.testing.assert_allclose(again.final("loss"), first.final("loss"), rtol=1e-7)
    assert json.loads(path.read_text())["record"]["key"] == first.keys[1]


def test_shapes_form_separate_programs_and_bad_input():
    def by_width(width, seed):
        if width == M:  # `build`'s problem: its group (4 points, OPTS) reuses that program
            return build(1.0, seed, alpha=10.0)
        model = gf.models.TwoLayer(width, "tanh")
        params = model.init(jax.random.PRNGKey(seed), D, doubled=True)
        return gf.Problem(model, params, _X, gf.SquareLoss(_Y), alpha=10.0)

    pts = [{"width": M, "seed": s} for s in range(4)] + [{"width": 6, "seed": s} for s in (0, 1)]
    sw = gf.sweep(by_width, pts, **OPTS)
    assert sw.compiled_groups == 2 and bool(np.all(sw.succeeded))
    # Each group against its own point solved alone (the width-M one with `reference`'s program).
    ref = gf.solve(by_width(M, 1), t1=2.0, ts=TS, rtol=1e-12, atol=1e-14, linearized=False)
    np.testing.assert_allclose(sw.final("loss")[1], ref.loss[-1], rtol=1e-7)
    ref = gf.solve(by_width(6, 1), t1=2.0, ts=TS, rtol=1e-12, atol=1e-14, linearized=False)
    np.testing.assert_allclose(sw.final("loss")[5], ref.loss[-1], rtol=1e-7)
    with pytest.raises(
        ValueError,
        match=r"`points` holds duplicates: 1 key\(s\) repeat: 'tau=0.5_seed=0' for points\[0\]="
        r"\{'tau': 0.5, 'seed': 0\} and points\[2\]=",
    ):
        gf.sweep(build, [POINTS[0], POINTS[1], POINTS[0]], t1=1.0)
    with pytest.raises(ValueError, match="`throw` is not supported"):
        gf.sweep(build, POINTS, t1=1.0, throw=True)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        gf.sweep(build, POINTS, t1=1.0, batch_size=0)


def test_other_horizons_save_times_and_steps_share_one_program():
    # Gradient descent with a step per point (as a tau sweep's): the step, horizon and save
    # times are arrays of the compiled integrator, not constants baked into it, so a batch with
    # other ones compiles nothing (XLA's backend compilations, counted). Each point against its
    # own unbatched solve (same arithmetic, another program: agreement to 1e-12 relative).
    def options(tau, seed):
        eta = 0.05 / tau**2
        return {"solver": gf.GradientDescent(eta), "t1": 40 * eta, "ts": [0.0, 10 * eta, 40 * eta]}

    def compiled(event, seconds, **kwargs):
        del seconds, kwargs
        compiles.append(event)

    compiles: list[str] = []
    first, second = POINTS[:2], POINTS[2:4]  # tau 0.5, then tau 1: other steps
    gf.sweep(build, first, batch_size=2, point_options=options, linearized=False)
    jax.monitoring.register_event_duration_secs_listener(compiled)
    try:
        sw = gf.sweep(build, second, batch_size=2, point_options=options, linearized=False)
    finally:
        jax.monitoring.unregister_event_duration_listener(compiled)
    backend = [e for e in compiles if e == "/jax/core/compile/backend_compile_duration"]
    assert backend == [], "another step or horizon recompiled the batched program"
    for i, point in enumerate(second):
        ref = gf.solve(build(**point), linearized=False, **options(**point))
        np.testing.assert_allclose(sw.solution.loss[i], ref.loss, rtol=1e-12)
        assert sw.infos[i].t1 == options(**point)["t1"] and sw.solution.ts[i, -1] == ref.ts[-1]


def test_failed_points_are_recorded_not_stored(tmp_path):
    sw = gf.sweep(build, POINTS[:4], max_steps=3, store=tmp_path / "f", **OPTS)
    assert all("max_steps" in e for e in sw.errors)
    assert bool(np.all(sw.is_(gf.SweepStatus.failed))) and bool(np.all(np.isnan(sw.final("loss"))))
    assert not list((tmp_path / "f" / "points").glob("*.json"))  # a rerun retries them


def test_sweep_alpha_batched_path_matches_loop(tmp_path):
    problem = build(1.0, 0)
    alphas = [1.0, 10.0, 100.0]
    loop = gf.sweep_alpha(problem, alphas, t1=2.0, ts=TS)
    calls = []
    batched = gf.sweep_alpha(
        problem,
        alphas,
        t1=2.0,
        ts=TS,
        store=tmp_path / "a",
        callback=lambda i, a, s, e: calls.append((i, a, e)),
    )
    assert calls == [(0, 1.0, None), (1, 10.0, None), (2, 100.0, None)]
    for k in gf.PREDICTED_SLOPES:
        np.testing.assert_allclose(batched.sup[k], loop.sup[k], rtol=1e-6)
    resumed = gf.sweep_alpha(problem, alphas, t1=2.0, ts=TS, store=tmp_path / "a")
    assert all(resumed.sweep.resumed)
    # Read back from JSON: the stored series are the solved ones, to the last bit.
    np.testing.assert_array_equal(resumed.solutions[2].param_gap, batched.solutions[2].param_gap)
    np.testing.assert_allclose(resumed.sup["param_gap"], batched.sup["param_gap"], rtol=0)


_SHARDED = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    import test_sweep as t
    import gradflow as gf

    assert len(jax.devices()) == 2, jax.devices()
    captured = {}
    real = gf.sweeps._sweep._solve_batch

    def spy(dynamic, *args):
        captured["devices"] = len(jax.tree_util.tree_leaves(dynamic)[0].sharding.device_set)
        out = real(dynamic, *args)
        captured["out_devices"] = len(out.loss.sharding.device_set)
        return out

    gf.sweeps._sweep._solve_batch = spy
    sw = gf.sweep(t.build, t.POINTS, devices=jax.devices(), **t.OPTS)
    print(json.dumps({"loss": sw.final("loss").tolist(), **captured}))
    """
)


def test_sweep_sharded_across_forced_host_devices():
    # XLA_FLAGS must be set before jax is imported: run in a fresh interpreter.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED, str(Path(__file__).parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["devices"] == 2 and data["out_devices"] == 2  # the batch axis is split
    ref = [float(reference(p).loss[-1]) for p in POINTS]
    np.testing.assert_allclose(data["loss"], ref, rtol=1e-7)


def _walled(params, x):
    # NaN once the parameters moved by more than 0.05 from their start (`_WALL_W0`).
    dist = jnp.linalg.norm(ravel_pytree(params)[0] - _WALL_W0)
    return jnp.where(dist > 0.05, jnp.nan, _MODEL(params, x))


_WALL_PARAMS = _MODEL.init(jax.random.PRNGKey(0), D, doubled=True)
_WALL_W0 = ravel_pytree(_WALL_PARAMS)[0]


@pytest.mark.parametrize("batched", [False, True])
def test_sweep_alpha_failed_point_sup_is_nan(tmp_path, batched):
    # alpha = 1 moves the parameters by O(1) and runs into the NaN wall; alpha = 1e3 moves them
    # by O(1e-3) and never sees it. The failed point's sup is NaN (not the partial run's max).
    problem = gf.Problem(_walled, _WALL_PARAMS, _X, gf.SquareLoss(_Y), center=True)
    extra = {"batch_size": 2} if batched else {}
    sw = gf.sweep_alpha(problem, [1.0, 1e3], t1=2.0, ts=TS, **extra)
    assert sw.errors[0] is not None and "diverged" in sw.errors[0] and sw.errors[1] is None
    for k in gf.PREDICTED_SLOPES:
        assert np.isnan(sw.sup[k][0]), k
    # The same flow without the wall. `_WALL_PARAMS` is a doubled init, h(w0) = 0 (to
    # rounding), so the uncentered `_apply` problem is the same flow, and its solve runs the
    # program of the loop in `test_sweep_alpha_batched_path_matches_loop`.
    honest = gf.Problem(_apply, _WALL_PARAMS, _X, gf.SquareLoss(_Y), alpha=1e3)
    assert float(np.max(np.abs(honest.h(_WALL_PARAMS)))) < 1e-15
    ref = gf.solve(honest, t1=2.0, ts=TS)
    np.testing.assert_allclose(sw.sup["param_gap"][1], np.max(ref.param_gap), rtol=1e-6)


def test_sweep_result_is_stacked_immutable_and_keeps_every_outcome(tmp_path):
    def sometimes_broken(tau, seed):
        if tau == 2.0:
            raise FloatingPointError("no problem at tau=2")
        return build(tau, seed)

    sw = gf.sweep(sometimes_broken, POINTS[:6], store=tmp_path / "s", **OPTS)
    computed, raised = sw.is_(gf.SweepStatus.computed), sw.is_(gf.SweepStatus.raised)
    assert (
        computed.tolist() == [True] * 4 + [False] * 2
        and raised.tolist() == [False] * 4 + [True] * 2
    )
    assert sw.errors[4] == "FloatingPointError: no problem at tau=2"
    # The stack: one row per point, NaN for the points without a solution.
    assert sw.solution.loss.shape == (6, len(TS)) and np.all(np.isnan(sw.solution.loss[4:]))
    for i in range(4):
        ref = reference(POINTS[i])
        np.testing.assert_allclose(sw.solution.loss[i], ref.loss, rtol=1e-7)
        np.testing.assert_allclose(sw.solution_at(i).param_distance, ref.param_distance, rtol=1e-6)
    assert sw.solution_at(4) is None and sw.solution_at(0).info.solver == "Tsit5"
    with pytest.raises(dataclasses.FrozenInstanceError):
        sw.errors = ()
    # `only`: the others are read back where stored, else not computed.
    part = gf.sweep(build, POINTS[:6], store=tmp_path / "s", only=[sw.keys[4]], **OPTS)
    assert part.resumed.tolist() == [True] * 4 + [False, False]
    assert part.is_(gf.SweepStatus.computed).tolist() == [False] * 4 + [True, False]
    assert part.errors[5] == "not asked for (`only`), and not in the store"
    np.testing.assert_allclose(part.final("loss")[4], reference(POINTS[4]).loss[-1], rtol=1e-7)
    with pytest.raises(ValueError, match="`only` names unknown points"):
        gf.sweep(build, POINTS[:2], only=["tau=9"], **OPTS)
    # The JSON edge.
    rec = part.records()[5]
    assert rec["status"] == "elsewhere" and rec["solution"] is None and rec["sup"]["loss"] is None


def test_sweep_keeps_parameters_when_they_stack():
    alphas = [{"alpha": a} for a in (10.0, 100.0)]
    sw = gf.sweep(lambda alpha: build(1.0, 0, alpha), alphas, t1=2.0, ts=TS, batch_size=1,
                  save_params=True)  # fmt: skip
    for i, a in enumerate((10.0, 100.0)):
        one = gf.solve(build(1.0, 0, a), t1=2.0, ts=TS, save_params=True)
        for got, want in zip(jax.tree_util.tree_leaves(sw.solution_at(i).params),
                             jax.tree_util.tree_leaves(one.params)):  # fmt: skip
            # batch_size=1 is one plain solve: the same program, the same numbers.
            np.testing.assert_allclose(got, want, rtol=1e-12)


def test_points_that_differ_in_the_seventh_digit_have_their_own_keys(tmp_path):
    # Keys are exact: two alphas 1e-7 apart are two points, each stored and read back as
    # itself (its own alpha, against its own solve).
    alphas = [1.0000001, 1.0000002]
    pts = [{"tau": 1.0, "seed": 0, "alpha": a} for a in alphas]
    sw = gf.sweep(build, pts, store=tmp_path, **OPTS)
    assert sw.keys == ("tau=1_seed=0_alpha=1.0000001", "tau=1_seed=0_alpha=1.0000002")
    again = gf.sweep(build, pts, store=tmp_path, **OPTS)
    assert all(again.resumed)
    np.testing.assert_array_equal(np.asarray(again.solution.alpha), alphas)
    for k, a in enumerate(alphas):
        assert float(point_key(alpha=a).split("=")[1]) == a


def test_point_keys_read_back_as_the_same_float():
    # The key's number parses back to the exact float (Python's float parsing as the reference),
    # and the short form is kept where it is exact.
    rng = np.random.default_rng(0)
    values = np.concatenate([10.0 ** rng.uniform(-8, 8, 500), rng.normal(size=500)])
    for v in values:
        assert float(point_key(x=v).removeprefix("x=")) == v
    assert point_key(tau=0.01, alpha=1e-5, m=2.5) == "tau=0.01_alpha=1e-05_m=2.5"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"t1": -1.0},
            ValueError,
            r"`t1` must be a time > 0 \(math.inf: until the flow reaches its limit, see "
            r"`stop_loss`\); got t1=-1",
        ),
        ({"t1": 1.0, "rtol": -1.0}, ValueError, r"rtol"),
        ({"t1": 1.0, "rtol": "1e-6"}, TypeError, r"rtol"),
        ({"t1": 1.0, "dt0": 0.0}, ValueError, r"dt0"),
        ({"t1": 1.0, "devices": []}, ValueError, r"`devices` is empty"),
        ({"t1": 1.0, "devices": "cpu"}, TypeError, r"`devices` must be a list of jax devices"),
        ({"t1": 1.0, "rtoll": 1e-6}, TypeError, r"unknown solve option\(s\) \['rtoll'\]"),
        ({"t1": 1.0, "measure": 3}, TypeError, r"`measure` must be a function or None"),
        (
            {"options": gf.SolveOptions(1.0), "rtol": 1e-6},
            ValueError,
            r"either as `options=` or as keywords, not both: got `options` and `rtol`",
        ),
        (
            {"options": lambda tau, seed: {"t1": tau}},
            TypeError,
            r"`options` must be a gf.SolveOptions .* A function of the point goes in "
            "`point_options`",
        ),
        ({"options": {"t1": 1.0}}, TypeError, r"`options` must be a gf.SolveOptions; got dict"),
    ],
)
def test_bad_shared_arguments_raise_once_before_any_point_is_built(kwargs, error, message):
    # A bad argument that every point shares is the caller's error, not each point's failure.
    built = []

    def counting(tau, seed):
        built.append((tau, seed))
        return build(tau, seed)

    with pytest.raises(error, match=message):
        gf.sweep(counting, POINTS[:2], **kwargs)
    assert built == []


def test_a_flow_point_without_a_horizon_raises_before_anything_is_solved(tmp_path):
    # Without `t1` or `ts` a problem cannot be solved (a `gf.Computation` needs neither, so
    # the sweep learns it from the first point that builds a problem): the caller's error,
    # raised before any point is solved or stored.
    with pytest.raises(ValueError, match=r"Give `t1` \(the horizon\) or `ts`"):
        gf.sweep(build, POINTS[:2], rtol=1e-6, store=tmp_path)
    assert list((tmp_path / "points").glob("*.json")) == []
    squares = gf.sweep(lambda k: gf.Computation(lambda k: {"k2": k * k}, k=k), [{"k": 3}])
    assert squares.outputs == ({"k2": 9},)
