"""`solver="auto"`: kink detection, the choice it makes, its accuracy on a ReLU flow, and the
stiffness estimate (against the dense Hessian) and its cache."""

import collections
import dataclasses

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_problem

import gradflow as gf
from gradflow._options import decide
from gradflow.solvers import _auto

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


def test_auto_choice_is_recorded_in_a_typed_info(getkey):
    # The shapes and solves of `test_choice_follows_smoothness_and_tolerance`: one program.
    tanh = two_layer_problem(getkey(), n=6, d=3, m=4, activation="tanh")
    info = gf.solve(tanh, t1=1.0, ts=[1.0]).info
    assert isinstance(info, gf.SolveInfo)
    # The stiffness recorded is lambda_max(w0) * t1 (t1 = 1): against the top eigenvalue of
    # the dense Hessian (numpy), which the estimate reaches to within its 5% from below.
    lam = _materialized_lambda_max(tanh)
    assert 0.95 * lam <= info.stiffness <= lam * (1 + 1e-9)
    assert info.stiffness < gf.stiff_threshold(1e-8)  # hence not RKC
    assert info.solver_reason.startswith("smooth model") and f"{info.stiffness:.3g}" in (
        info.solver_reason
    )
    num_params = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(tanh.params0))
    # The decision, typed: the solver, why, the stiffness and what it was estimated from.
    choice = info.choice
    assert isinstance(choice, gf.SolverChoice) and choice.solver == dfx.Tsit5()
    assert choice.estimated_from is gf.StiffnessSource.problem
    assert choice.reason == info.solver_reason and choice.stiffness == info.stiffness
    expected = gf.SolveInfo(
        options=gf.SolveOptions(1.0, [1.0], solver=dfx.Tsit5()),
        choice=choice,
        dtype="float64",
        center=True,
        num_params=num_params,
    )
    assert (info == expected) is True and hash(info) == hash(expected)
    assert (info.solver, info.solver_choice, info.rtol, info.atol) == ("Tsit5", "auto", 1e-8, 1e-10)
    assert info.t1 == 1.0 and info.linearized
    # A given solver: no choice, hence no reason and no stiffness.
    given = gf.solve(tanh, t1=1.0, ts=[1.0], solver=dfx.Tsit5()).info
    assert given == dataclasses.replace(expected, choice=None) and given != info
    assert given.solver_choice == "given" and given.solver_reason is given.stiffness is None


def test_decide_is_the_choice_solve_records(getkey):
    # `decide` (solve's and the sweep's one place to choose) from the options: the controller's
    # rtol when one is given, else `rtol`; the horizon `t1`. The shapes of the test above.
    tanh = two_layer_problem(getkey(), n=6, d=3, m=4, activation="tanh")
    options = gf.SolveOptions(1.0, [1.0])
    assert decide(tanh, options) == gf.solve(tanh, options=options).info.choice
    relu = two_layer_problem(getkey(), n=6, d=3, m=4, activation="relu")
    loose = options.replace(stepsize_controller=dfx.PIDController(rtol=1e-2, atol=1e-4))
    assert isinstance(decide(relu, loose).solver, dfx.Heun)
    assert isinstance(decide(relu, options).solver, dfx.Bosh3)
    # A batch's largest eigenvalue, given: the choice says so.
    batch = decide(tanh, options, lambda_max=2.0)
    assert batch.stiffness == 2.0 and batch.estimated_from is gf.StiffnessSource.batch


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

    problem = gf.Problem(apply, model.init(getkey(), 3, doubled=True), x, gf.SquareLoss(y))
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


def _materialized_eigenvalues(problem):
    # The eigenvalues of the Hessian of F_alpha at w0, from the dense Hessian (numpy).
    flat, unravel = jax.flatten_util.ravel_pytree(problem.params0)
    hess = jax.hessian(lambda w: problem.objective(unravel(w)))(flat)
    return np.linalg.eigvalsh(np.asarray(hess))


def _materialized_lambda_max(problem):
    return float(_materialized_eigenvalues(problem)[-1])


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
    # Lanczos from below, stopped at a 5% residual: within 5% of the top eigenvalue.
    assert 0.95 * exact <= est <= exact * (1 + 1e-9)


@pytest.mark.parametrize(
    "activation, alpha, m", [("tanh", 1.0, 10), ("softplus", 30.0, 12), ("relu", 3.0, 16)]
)
def test_stiffness_estimate_tolerance_on_several_hessians(getkey, activation, alpha, m):
    # The stated accuracy against numpy's eigenvalues of the dense Hessian (jax.hessian): the
    # estimate never exceeds lambda_max, lies within 5% of an eigenvalue (the residual bound the
    # iteration stops on), and here of the largest one, before its cap of 10 steps per start.
    problem = two_layer_problem(getkey(), n=15, d=4, m=m, activation=activation, alpha=alpha)
    eigs = _materialized_eigenvalues(problem)
    run = _auto._lambda_max(problem)
    est = float(run.value)
    assert est <= eigs[-1] * (1 + 1e-9)
    assert np.min(np.abs(eigs - est)) <= float(run.residual) * (1 + 1e-6) + 1e-12
    assert float(run.residual) <= 0.05 * est
    assert est >= 0.95 * eigs[-1]
    assert int(run.steps) < _auto._LANCZOS_MAX_ITERS == 10


class _CountEstimates:
    """Counts the stiffness estimates made (calls of the compiled estimate)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        self.inner = _auto._lambda_max
        monkeypatch.setattr(_auto, "_lambda_max", self)
        # Start from an empty cache (the old code has none).
        monkeypatch.setattr(_auto, "_STIFFNESS_CACHE", collections.OrderedDict(), raising=False)

    def __call__(self, problem):
        self.calls += 1
        return self.inner(problem)


def test_a_repeated_solve_pays_no_second_estimate(getkey, monkeypatch):
    count = _CountEstimates(monkeypatch)
    problem = two_layer_problem(getkey(), n=8, d=3, m=6, activation="tanh", alpha=10.0)
    first = gf.solve(problem, t1=1.0, ts=[1.0], linearized=False)
    assert count.calls == 1 and first.info.solver_choice == "auto"
    # The same problem again, over other horizons (a sweep over t1), and the public estimate.
    for t1 in (1.0, 2.0, 0.5):
        info = gf.solve(problem, t1=t1, ts=[t1], linearized=False).info
        assert info.stiffness == first.info.stiffness * t1
    assert gf.stiffness(problem) == first.info.stiffness
    gf.choose_solver(problem, 1e-3, 4.0)
    # An equal problem built again from copies of its arrays (a notebook cell run twice).
    copy = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), problem.params0)
    again = gf.Problem(
        problem.apply,
        copy,
        np.array(problem.inputs),
        gf.SquareLoss(np.array(problem.loss.targets)),
        alpha=10.0,
        center=True,
    )
    assert gf.solve(again, t1=1.0, ts=[1.0], linearized=False).info == first.info
    assert count.calls == 1
    # A module model (`Problem.from_module`) is cached as well.
    mlp = eqx.nn.MLP(3, 1, 4, 1, activation=jnp.tanh, key=getkey())
    module = gf.Problem.from_module(mlp, problem.inputs, problem.loss)
    gf.stiffness(module)
    gf.stiffness(gf.Problem.from_module(mlp, problem.inputs, problem.loss))
    assert count.calls == 2


def test_an_edited_problem_gets_a_new_estimate(getkey, monkeypatch):
    count = _CountEstimates(monkeypatch)
    key = getkey()
    x = np.array(jax.random.normal(getkey(), (8, 3)))  # writable numpy arrays
    y = np.array(jax.random.normal(getkey(), (8, 1)))
    model = gf.models.TwoLayer(6, "tanh")
    params = model.init(key, 3)
    problem = gf.Problem(model, params, x, gf.SquareLoss(y), alpha=10.0, center=True)
    base = gf.stiffness(problem)
    edited = {
        "alpha": problem.with_alpha(10.5),
        "params": eqx.tree_at(lambda p: p.params0["a"], problem, params["a"].at[0, 0].add(1e-9)),
        "inputs": eqx.tree_at(lambda p: p.inputs, problem, x + 1e-3),
        "targets": gf.Problem(model, params, x, gf.SquareLoss(y + 1.0), alpha=10.0, center=True),
        "center": gf.Problem(model, params, x, gf.SquareLoss(y), alpha=10.0),
        "model": gf.Problem(
            gf.models.TwoLayer(6, "softplus"), params, x, gf.SquareLoss(y), alpha=10.0
        ),
        "function": gf.Problem(
            lambda p, z: model(p, z), params, x, gf.SquareLoss(y), alpha=10.0, center=True
        ),
    }
    for n, (what, other) in enumerate(edited.items(), start=2):
        value = gf.stiffness(other)
        assert count.calls == n, what
        # The value is the estimate of the edited problem, not a stale one.
        assert value == float(count.inner(other).value), what
    assert gf.stiffness(edited["alpha"]) != base
    # Data edited in place: the problem keeps the numpy array it was given.
    assert problem.inputs is x
    x[0, 0] += 0.5
    calls = count.calls
    moved = gf.stiffness(problem)
    assert count.calls == calls + 1 and moved != base
    fresh = gf.Problem(model, params, np.array(x), gf.SquareLoss(y), alpha=10.0, center=True)
    assert moved == float(count.inner(fresh).value)


def test_fingerprint_of_accelerator_arrays(getkey, monkeypatch):
    # Arrays on an accelerator are digested there; forced here on CPU arrays. Equal content
    # gives the same key, and a change of one entry of any dtype another key.
    problem = two_layer_problem(getkey(), n=5, d=2, m=4, activation="tanh")
    host_key = _auto._fingerprint(problem)
    monkeypatch.setattr(_auto, "_on_host", lambda x: False)
    key = _auto._fingerprint(problem)
    assert key is not None and key != host_key
    copy = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), problem)
    assert _auto._fingerprint(copy) == key
    assert _auto._fingerprint(problem.with_alpha(1.0 + 1e-15)) != key
    for dtype in (jnp.float64, jnp.float32, jnp.bfloat16, jnp.int8, jnp.bool_, jnp.complex64):
        x = jnp.zeros((3, 2), dtype)
        y = x.at[1, 1].set(jnp.ones((), dtype))
        swapped = jnp.zeros((3, 2), dtype).at[0, 1].set(jnp.ones((), dtype))
        digests = [np.asarray(_auto._device_digest([a])).tobytes() for a in (x, y, swapped)]
        assert len(set(digests)) == 3, dtype


def test_traced_problems_are_not_estimated(getkey, monkeypatch):
    # Parameters traced with a concrete alpha (used to fail converting a tracer to a float).
    count = _CountEstimates(monkeypatch)
    problem = two_layer_problem(getkey(), n=5, d=2, m=4, activation="tanh")
    seen = []

    def pick(params):
        traced = eqx.tree_at(lambda p: p.params0, problem, params)
        picked = gf.choose_solver(traced, 1e-6, 1.0, explain=True)
        seen.append((_auto._fingerprint(traced), picked.stiffness, type(picked.solver)))
        return params

    jax.make_jaxpr(pick)(problem.params0)
    assert seen == [(None, None, dfx.Tsit5)] and count.calls == 0


def test_auto_switches_to_rkc_on_long_horizons(stiff):
    problem, lam = stiff
    short, long = 10.0 / lam, 1e4 / lam  # lambda_max * t1 = 10 and 1e4 (threshold 100)
    assert isinstance(gf.choose_solver(problem, 1e-6, short), dfx.Tsit5)
    picked = gf.choose_solver(problem, 1e-6, long, explain=True)
    assert isinstance(picked.solver, gf.RKC)
    assert picked.reason.startswith("stiff") and abs(picked.stiffness / 1e4 - 1) < 0.05
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
    assert info.choice.estimated_from is gf.StiffnessSource.batch
    assert info.solver_reason == info.choice.reason + " (the batch's stiffest point)"
    assert isinstance(info.options.solver, gf.RKC) and info.options.rtol == 1e-6
    # The batched answer equals a single solve with the same solver (vmap vs loop).
    one = gf.solve(base, t1=long, ts=[long], rtol=1e-6, solver=gf.RKC())
    np.testing.assert_allclose(sw.final("loss")[0], float(one.loss[-1]), rtol=1e-9)
