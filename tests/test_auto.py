"""`solver="auto"`: kink detection, the choice it makes, and its accuracy on a ReLU flow."""

import dataclasses

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_problem

import gradflow as gf

KINKS = [("relu", True), ("tanh", False), ("softplus", False), ("quadratic", False)]


@pytest.mark.parametrize("activation, kinks", KINKS)
def test_has_kinks_by_activation(getkey, activation, kinks):
    problem = two_layer_problem(getkey(), n=6, d=3, m=4, activation=activation)
    assert gf.has_kinks(problem) is kinks


def test_has_kinks_sees_primitives_inside_functions(getkey):
    x = jax.random.normal(getkey(), (5, 2))

    def clipped(params, inputs):  # jnp.clip lowers to clamp/max/min inside a nested jit
        return jax.jit(lambda z: jnp.clip(z, -1.0, 1.0))(inputs @ params["w"])

    def smooth(params, inputs):
        return jnp.sin(inputs @ params["w"]) ** 2

    params = {"w": jnp.ones((2, 1))}
    y = jnp.zeros((5, 1))
    assert gf.has_kinks(gf.Problem(clipped, params, x, gf.SquareLoss(y)))
    assert not gf.has_kinks(gf.Problem(smooth, params, x, gf.SquareLoss(y)))
    model = gf.models.ScalarSquare()
    scalar = gf.Problem(model, model.init(0.8), jnp.zeros((1, 1)), gf.SquareLoss(jnp.ones(1)))
    assert not gf.has_kinks(scalar)
    with pytest.raises(TypeError, match="`problem` must be a gradflow.Problem"):
        gf.has_kinks(model)


def test_choice_follows_smoothness_and_tolerance(getkey):
    relu = two_layer_problem(getkey(), n=6, d=3, m=4, activation="relu")
    tanh = two_layer_problem(getkey(), n=6, d=3, m=4, activation="tanh")
    assert isinstance(gf.choose_solver(relu, 1e-2), dfx.Heun)
    assert isinstance(gf.choose_solver(relu, 5e-3), dfx.Heun)
    assert isinstance(gf.choose_solver(relu, 3e-3), dfx.Bosh3)
    assert isinstance(gf.choose_solver(relu, 1e-3), dfx.Bosh3)
    assert isinstance(gf.choose_solver(tanh, 1e-2), dfx.Tsit5)
    assert isinstance(gf.choose_solver(tanh, 1e-12), dfx.Tsit5)
    sol = gf.solve(tanh, t1=1.0, ts=[1.0])
    assert sol.info.solver == "Tsit5" and sol.info.solver_choice == "auto"
    given = gf.solve(tanh, t1=1.0, ts=[1.0], solver=dfx.Tsit5()).info
    assert given.solver_choice == "given"
    with pytest.raises(TypeError, match="`solver` must be a diffrax solver"):
        gf.solve(tanh, t1=1.0, solver="heun")


INFO_KEYS = [
    "solver",
    "solver_choice",
    "rtol",
    "atol",
    "t1",
    "dtype",
    "linearized",
    "center",
    "num_params",
]


def test_auto_choice_is_recorded_in_a_typed_info(getkey):
    # The shapes and solves of `test_choice_follows_smoothness_and_tolerance`: one program.
    tanh = two_layer_problem(getkey(), n=6, d=3, m=4, activation="tanh")
    info = gf.solve(tanh, t1=1.0, ts=[1.0]).info
    assert isinstance(info, gf.SolveInfo)
    # The stiffness recorded is lambda_max(w0) * t1 (t1 = 1): against the top eigenvalue of
    # the dense Hessian (numpy), which the 20-step power iteration reaches to within 2% below.
    lam = _materialized_lambda_max(tanh)
    assert 0.98 * lam <= info.stiffness <= lam * (1 + 1e-9)
    assert info.stiffness < gf.stiff_threshold(1e-8)  # hence not RKC
    assert info.solver_reason.startswith("smooth model") and f"{info.stiffness:.3g}" in (
        info.solver_reason
    )
    num_params = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(tanh.params0))
    expected = gf.SolveInfo(
        solver="Tsit5",
        solver_choice="auto",
        rtol=1e-8,
        atol=1e-10,
        t1=1.0,
        dtype="float64",
        linearized=True,
        center=True,
        num_params=num_params,
        solver_reason=info.solver_reason,
        stiffness=info.stiffness,
    )
    assert (info == expected) is True and hash(info) == hash(expected)
    # The JSON edge keeps the keys (and order) of the untyped record it replaces.
    assert list(info.to_dict()) == [*INFO_KEYS, "solver_reason", "stiffness"]
    # A given solver: no reason, no stiffness, and neither key in the JSON.
    given = gf.solve(tanh, t1=1.0, ts=[1.0], solver=dfx.Tsit5()).info
    assert given == dataclasses.replace(
        expected, solver_choice="given", solver_reason=None, stiffness=None
    )
    assert list(given.to_dict()) == INFO_KEYS and given != info


def test_auto_reads_a_given_controllers_rtol(getkey):
    # With `stepsize_controller` given, the choice (and `info`) follow its rtol, not `rtol`.
    relu = two_layer_problem(getkey(), n=6, d=3, m=4, activation="relu")
    loose = dfx.PIDController(rtol=1e-2, atol=1e-4)
    sol = gf.solve(relu, t1=0.5, ts=[0.5], stepsize_controller=loose, linearized=False)
    info = sol.info
    assert info.solver == "Heun" and info.solver_choice == "auto", info
    assert info.rtol == 1e-2 and info.atol == 1e-4, info
    assert "rtol >= 0.005" in info.solver_reason
    # The same solve with Heun given explicitly: identical numbers.
    heun = gf.solve(
        relu, t1=0.5, ts=[0.5], solver=dfx.Heun(), stepsize_controller=loose, linearized=False
    )
    assert sol.succeeded and float(sol.loss[0]) == float(heun.loss[0])
    # Without the controller the default rtol 1e-8 picks Bosh3.
    assert isinstance(gf.choose_solver(relu, 1e-8, 0.5), dfx.Bosh3)


@pytest.mark.optimized
def test_auto_on_relu_flow_against_tight_reference(getkey):
    # Ground truth: Tsit5 at rtol 1e-9 (another method, 1e3-1e7 times tighter; Dopri8 stalls
    # on the kinks).
    traces = []
    model = gf.models.TwoLayer(20, "relu")
    x = gf.data.uniform_sphere(getkey(), 30, 3)
    y = gf.data.teacher_targets(getkey(), x, activation="relu")

    def apply(params, inputs):
        traces.append(1)
        return model(params, inputs)

    problem = gf.Problem(apply, model.init(getkey(), 3, symmetric=True), x, gf.SquareLoss(y))
    ts = np.linspace(0.0, 2.0, 5)
    ref = gf.solve(
        problem, ts=ts, solver=dfx.Tsit5(), rtol=1e-9, atol=1e-11, linearized=False, max_steps=10**6
    )
    assert ref.succeeded
    # Bounds: 4-10x the errors measured (Heun at 1e-2: 1.1e-3 relative on the loss, 2.9e-3 on
    # the distance; Bosh3 at 1e-6: 1.0e-6 and 4.1e-6).
    for rtol, solver, bound in ((1e-2, "Heun", 5e-3), (1e-6, "Bosh3", 1e-5)):
        sol = gf.solve(problem, ts=ts, rtol=rtol, atol=rtol / 100, linearized=False)
        assert sol.succeeded and sol.info.solver == solver
        np.testing.assert_allclose(sol.loss, ref.loss, rtol=0, atol=bound * float(ref.loss[0]))
        np.testing.assert_allclose(
            sol.param_distance[1:], ref.param_distance[1:], rtol=bound * 3, atol=0
        )
        # Heun is not first-same-as-last: 2 evaluations per step, none extra at the start.
        if solver == "Heun":
            assert int(sol.stats["num_vector_field_evals"]) == 2 * int(sol.stats["num_steps"])
    count = len(traces)
    gf.solve(problem.with_alpha(2.0), ts=ts, rtol=1e-2, atol=1e-4, linearized=False)
    assert len(traces) == count  # the choice is cached: no retrace, no recompilation


def _materialized_lambda_max(problem):
    # The largest eigenvalue of the Hessian of F_alpha at w0, from the dense Hessian (numpy).
    flat, unravel = jax.flatten_util.ravel_pytree(problem.params0)
    hess = jax.hessian(lambda w: problem.objective(unravel(w)))(flat)
    return float(np.linalg.eigvalsh(np.asarray(hess))[-1])


@pytest.fixture(scope="module")
def stiff():
    """The tanh net of the three stiffness tests (the problem each built from its first
    `getkey()` before) and the top eigenvalue of its dense Hessian, computed once."""
    key = jax.random.split(jax.random.PRNGKey(5678), 1000)[0]  # `getkey`'s first key
    problem = two_layer_problem(key, n=12, d=3, m=8, activation="tanh", alpha=3.0)
    return problem, _materialized_lambda_max(problem)


def test_stiffness_estimate_against_the_dense_hessian(stiff):
    problem, exact = stiff
    est = gf.stiffness(problem)
    # Power iteration from below, 20 products: within 2% of the top eigenvalue here.
    assert 0.98 * exact <= est <= exact * (1 + 1e-9)


def test_auto_switches_to_rkc_on_long_horizons(stiff):
    problem, lam = stiff
    short, long = 10.0 / lam, 1e4 / lam  # lambda_max * t1 = 10 and 1e4 (threshold 100)
    assert isinstance(gf.choose_solver(problem, 1e-6, short), dfx.Tsit5)
    picked = gf.choose_solver(problem, 1e-6, long, explain=True)
    assert isinstance(picked.solver, gf.RKC)
    assert picked.reason.startswith("stiff") and abs(picked.stiffness / 1e4 - 1) < 0.02
    assert isinstance(gf.choose_solver(problem, 1e-6), dfx.Tsit5)  # no horizon: not estimated
    info = gf.solve(problem, t1=long, ts=[long], rtol=1e-6).info
    assert info.solver == "RKC" and info.solver_choice == "auto"
    assert info.solver_reason.startswith("stiff")


def test_sweep_chooses_auto_per_batch_outside_vmap(stiff):
    base, lam = stiff
    long = 1e4 / lam
    sw = gf.sweep(lambda a: base.with_alpha(a), [{"a": 3.0}, {"a": 4.0}], t1=long, rtol=1e-6)
    assert all(sw.succeeded)
    info = sw.infos[0]
    assert info.solver == "RKC" and info.solver_choice == "auto"
    assert "stiffest point" in info.solver_reason
    # The batched answer equals a single solve with the same solver (vmap vs loop).
    one = gf.solve(base, t1=long, ts=[long], rtol=1e-6, solver=gf.RKC())
    np.testing.assert_allclose(sw.final("loss")[0], float(one.loss[-1]), rtol=1e-9)
