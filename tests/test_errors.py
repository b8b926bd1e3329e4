"""Bad input gets a clear error naming the argument; failures become result codes."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_problem
from jax.flatten_util import ravel_pytree

import gradflow as gf


def small(getkey, **kw):
    return two_layer_problem(getkey(), n=8, d=3, m=6, **kw)


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf")])
def test_alpha_must_be_positive(getkey, alpha):
    with pytest.raises(ValueError, match="`alpha` must be a finite number > 0"):
        small(getkey, alpha=alpha)


def test_nonfinite_inputs_and_targets():
    model = gf.models.TwoLayer(4, "tanh")
    params = model.init(jax.random.PRNGKey(0), 2)
    x = jnp.ones((3, 2))
    with pytest.raises(ValueError, match="`inputs` contains NaN or inf"):
        gf.Problem(model, params, x.at[0, 0].set(jnp.nan), gf.SquareLoss(jnp.zeros((3, 1))))
    with pytest.raises(ValueError, match="`targets` contains NaN or inf"):
        gf.SquareLoss(jnp.array([[0.0], [jnp.inf], [1.0]]))


def test_output_shape_must_match_targets():
    model = gf.models.TwoLayer(4, "tanh")
    params = model.init(jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match=r"output has shape \(3, 1\).*targets have shape \(3,\)"):
        gf.Problem(model, params, jnp.ones((3, 2)), gf.SquareLoss(jnp.zeros(3)))


def test_float32_with_tight_rtol():
    model = gf.models.TwoLayer(4, "tanh")
    params = jax.tree_util.tree_map(
        lambda p: p.astype(jnp.float32), model.init(jax.random.PRNGKey(0), 2)
    )
    x = jnp.ones((3, 2), jnp.float32)
    problem = gf.Problem(model, params, x, gf.SquareLoss(jnp.zeros((3, 1), jnp.float32)))
    with pytest.raises(ValueError, match="`rtol=1e-08` is below float32 resolution"):
        gf.solve(problem, t1=1.0)
    sol = gf.solve(problem, t1=1.0, rtol=1e-5, atol=1e-7)
    assert sol.succeeded and sol.loss.dtype == jnp.float32


def _float32_problem():
    model = gf.models.TwoLayer(4, "tanh")
    params = jax.tree_util.tree_map(
        lambda p: p.astype(jnp.float32), model.init(jax.random.PRNGKey(0), 2)
    )
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(3, 2)
    return gf.Problem(model, params, x, gf.SquareLoss(jnp.ones((3, 1), jnp.float32)))


def test_float32_tolerances_only_bind_the_default_controller():
    # `rtol` builds the default PID controller and nothing else: gradient descent and constant
    # Euler steps have no tolerance, and a given controller brings its own.
    problem = _float32_problem()
    eta, steps = 0.1, 10
    gd = gf.solve(
        problem, t1=eta * steps, ts=[eta * steps], solver=gf.GradientDescent(eta), save_params=True
    )
    euler = gf.solve(
        problem, t1=eta * steps, ts=[eta * steps], solver=dfx.Euler(), dt0=eta, save_params=True
    )
    grad = jax.jit(jax.grad(problem.objective))
    w = problem.params0
    for _ in range(steps):
        w = jax.tree_util.tree_map(lambda p, g: p - eta * g, w, grad(w))
    expected = ravel_pytree(w)[0]
    assert expected.dtype == jnp.float32
    for sol in (gd, euler):
        assert sol.succeeded and sol.loss.dtype == jnp.float32
        assert sol.info.rtol is None and sol.info.atol is None, sol.info
        got = ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], sol.params))[0]
        # The same float32 iteration in other coordinates: float32 rounding (1e-5 relative).
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # A given controller's tolerance is the one checked and recorded, not the `rtol` argument.
    loose = dfx.PIDController(rtol=1e-4, atol=1e-6)
    sol = gf.solve(problem, t1=1.0, ts=[1.0], solver=dfx.Tsit5(), stepsize_controller=loose)
    assert sol.succeeded and sol.info.rtol == 1e-4 and sol.info.atol == 1e-6
    tight = dfx.PIDController(rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="`stepsize_controller.rtol=1e-08` is below float32"):
        gf.solve(problem, t1=1.0, solver=dfx.Tsit5(), stepsize_controller=tight, rtol=1e-4)


def test_bad_times_and_solver(getkey):
    problem = small(getkey)
    with pytest.raises(
        ValueError, match=r"`t1` must be a time > 0 \(math.inf: until the flow reaches its limit"
    ):
        gf.solve(problem, t1=-1.0)
    with pytest.raises(ValueError, match="Give the final time `t1`"):
        gf.solve(problem)
    with pytest.raises(
        ValueError, match=r"`ts` must lie inside \[0, t1\]; got ts\[1\]=2.0 > t1=1.0"
    ):
        gf.solve(problem, t1=1.0, ts=[0.0, 2.0])
    with pytest.raises(TypeError, match="`solver` must be a diffrax solver"):
        gf.solve(problem, t1=1.0, solver="tsit5")
    with pytest.raises(ValueError, match="whole number of steps"):
        gf.solve(problem, t1=1.05, solver=gf.GradientDescent(0.1))
    with pytest.raises(ValueError, match="`learning_rate` must be a finite number > 0"):
        gf.GradientDescent(-0.1)


def test_diverging_gradient_descent_returns_result_code(getkey):
    problem = small(getkey, alpha=1.0)
    sol = gf.solve(problem, t1=1e4 * 50, solver=gf.GradientDescent(1e4))
    assert sol.result == gf.RESULTS.diverged
    assert not sol.succeeded and "diverged" in sol.message
    # Times never reached are NaN, not garbage; the start is kept.
    assert np.isnan(sol.loss[-1]) and np.isfinite(sol.loss[0])
    with pytest.raises(gf.SolveError, match="lower the `learning_rate`"):
        gf.solve(problem, t1=1e4 * 50, solver=gf.GradientDescent(1e4), throw=True)


def test_max_steps_returns_result_code(getkey):
    problem = small(getkey, alpha=1.0)
    sol = gf.solve(problem, t1=100.0, max_steps=5)
    assert sol.result == gf.RESULTS.max_steps_reached
    assert np.isfinite(sol.loss[0]) and np.isnan(sol.loss[-1])
    with pytest.raises(gf.SolveError, match=r"RESULTS\.max_steps_reached: .*Increase `max_steps`"):
        gf.solve(problem, t1=100.0, max_steps=5, throw=True)


def test_every_failure_code_has_a_message_naming_it():
    # The traced `throw=True` indexes these by the result code: one per code, none empty.
    from gradflow._solution import _throw_messages

    messages = _throw_messages()
    assert len(messages) == len(gf.RESULTS)
    names = (
        "max_steps_reached",
        "max_steps_at_kinks",
        "diverged",
        "solver_failed",
        "step_size_collapsed",
    )
    for name in names:
        item = getattr(gf.RESULTS, name)
        message = messages[int(item._value)]
        assert message == f"gradflow.solve failed with RESULTS.{name}: {gf.RESULTS[item]}"
        assert gf.RESULTS[item]


def test_closed_form_needs_square_loss(getkey):
    kd, kp = jax.random.split(getkey())
    model = gf.models.TwoLayer(4, "tanh")
    x = jax.random.normal(kd, (5, 2))
    problem = gf.Problem(model, model.init(kp, 2), x, gf.LogisticLoss(jnp.ones((5, 1))))
    with pytest.raises(ValueError, match="needs `loss=gf.SquareLoss"):
        gf.linear_flow_closed_form(problem, [1.0])


# ------------------------------------------------------------------ numerics and inputs


def _walled(problem, radius, alpha=1.0):
    """The problem's model, NaN once the parameters are farther than `radius` from w0. The
    radius travels in the inputs, so every radius shares one compiled solve."""
    w0 = ravel_pytree(problem.params0)[0]

    def apply(params, inputs):
        dist = jnp.linalg.norm(ravel_pytree(params)[0] - w0)
        out = problem.apply(params, inputs["x"])
        return jnp.where(dist > inputs["radius"], jnp.nan, out)

    inputs = {"x": problem.inputs, "radius": jnp.asarray(radius)}
    return gf.Problem(apply, problem.params0, inputs, problem.loss, alpha=alpha, center=True)


def test_nan_vector_field_is_divergence_within_a_few_steps(getkey):
    base = small(getkey, alpha=1.0)
    honest = _walled(base, 1e9)  # the wall is never reached
    ts = np.linspace(0, 5.0, 11)
    ref = gf.solve(honest, t1=5.0, ts=ts)
    assert ref.succeeded and float(np.max(ref.param_distance)) > 0.1
    cases = {
        "NaN at w0": eqx.tree_at(lambda p: p.inputs["radius"], honest, jnp.asarray(-1.0)),
        "NaN beyond |w - w0| = 0.1": eqx.tree_at(
            lambda p: p.inputs["radius"], honest, jnp.asarray(0.1)
        ),
        # Problem and with_alpha refuse these; eqx.tree_at goes around both.
        "alpha = 0": eqx.tree_at(lambda p: p.alpha, honest, jnp.asarray(0.0)),
        "alpha = nan": eqx.tree_at(lambda p: p.alpha, honest, jnp.asarray(jnp.nan)),
    }
    for name, bad in cases.items():
        sol = gf.solve(bad, t1=5.0, ts=ts)
        assert sol.result == gf.RESULTS.diverged, name
        # Rejected steps used to retry until max_steps (100 000 steps, half a minute).
        assert int(sol.stats["num_steps"]) < 1000, (name, sol.stats)
        assert np.isnan(sol.loss[-1]), name
        with pytest.raises(gf.SolveError, match="check that the model is finite"):
            gf.solve(bad, t1=5.0, ts=ts, throw=True)
    # Before the wall the flow is the honest one: same values at the save times reached.
    wall = gf.solve(cases["NaN beyond |w - w0| = 0.1"], t1=5.0, ts=ts)
    before = np.isfinite(np.asarray(wall.param_distance))
    assert 1 <= before.sum() < 11
    np.testing.assert_allclose(wall.loss[before], ref.loss[before], rtol=1e-7)
    assert np.all(np.asarray(wall.param_distance)[before] <= 0.1)


def test_nan_divergence_under_vmap(getkey):
    bad = _walled(small(getkey), 0.05)

    def result(a):
        return gf.solve(bad.with_alpha(a), t1=5.0, ts=[5.0]).result._value

    codes = jax.vmap(result)(jnp.array([1.0, 1e3]))
    # alpha = 1 runs into the wall; alpha = 1e3 moves by O(1e-3) and never reaches it.
    assert int(codes[0]) == int(gf.RESULTS.diverged._value)
    assert int(codes[1]) == int(gf.RESULTS.successful._value)

    # Traced, `throw=True` raises at run time through equinox, with the message of the
    # failure that occurred (the same words as the eager `gf.SolveError`).
    def final_loss(a):
        return gf.solve(bad.with_alpha(a), t1=5.0, ts=[5.0], throw=True).loss

    with pytest.raises(
        eqx.EquinoxRuntimeError, match=r"solve failed with RESULTS\.diverged: .*NaN or inf"
    ):
        jax.block_until_ready(jax.vmap(final_loss)(jnp.array([1.0, 1e3])))
    assert np.all(np.isfinite(jax.vmap(final_loss)(jnp.array([1e3, 2e3]))))


@pytest.mark.parametrize("alpha", [0.0, -2.0, float("nan"), float("inf")])
def test_with_alpha_checks_like_the_constructor(getkey, alpha):
    problem = small(getkey)
    with pytest.raises(ValueError, match="`alpha` must be a finite number > 0; got alpha="):
        problem.with_alpha(alpha)
    # Traced (vmap, jit): a runtime error with the same words.
    with pytest.raises(Exception, match="`alpha` must be a finite number > 0"):
        jax.jit(lambda a: problem.with_alpha(a).alpha)(jnp.asarray(alpha))


def test_exploding_gradient_descent_is_divergence(getkey):
    # GD(1e6) keeps a finite state for 10 steps while its loss reaches ~1e94: not a success.
    problem = small(getkey, alpha=1.0)
    eta = 1e6
    sol = gf.solve(problem, t1=eta * 10, solver=gf.GradientDescent(eta))
    assert sol.result == gf.RESULTS.diverged
    # The criterion, loss > 1e10 max(R(alpha h(w0)), R(0)) for either flow, against
    # hand-written loops: the save times before the first such iterate are kept, exactly.
    objectives = (problem.objective, problem.linear_objective)
    models = (problem.h, problem.hbar)
    losses = np.zeros((2, 11))
    for row, (objective, h) in enumerate(zip(objectives, models)):
        grad = jax.jit(jax.grad(objective))
        w = problem.params0
        for k in range(11):
            losses[row, k] = float(problem.loss(problem.alpha * h(w)))
            w = jax.tree_util.tree_map(lambda p, g: p - eta * g, w, grad(w))
    assert np.all(np.isfinite(losses)) and losses.max() > 1e90
    scale = max(losses[0, 0], float(problem.loss(jnp.zeros_like(problem.loss.targets))))
    first = int(np.argmax(np.any(losses > 1e10 * scale, axis=0)))
    assert 1 <= first < 10
    np.testing.assert_allclose(sol.loss[:first], losses[0, :first], rtol=1e-10)
    np.testing.assert_allclose(sol.linear_loss[:first], losses[1, :first], rtol=1e-10)
    assert np.all(np.isnan(sol.loss[first:])) and np.all(np.isnan(sol.param_gap[first:]))
    # Stable steps are untouched by the criterion.
    assert gf.solve(problem, t1=0.5 * 10, solver=gf.GradientDescent(0.5)).succeeded


def test_degenerate_problems_are_refused():
    model = gf.models.TwoLayer(4, "tanh")
    params = model.init(jax.random.PRNGKey(0), 2)
    with pytest.raises(ValueError, match=r"targets have no samples \(shape \(0, 1\)\)"):
        gf.Problem(model, params, jnp.ones((0, 2)), gf.SquareLoss(jnp.zeros((0, 1))))
    with pytest.raises(ValueError, match=r"outputs have size 0 \(shape \(3, 0\)\)"):
        gf.Problem(
            lambda p, x: (x @ p["w"])[:, :0],
            {"w": jnp.ones((2, 1))},
            jnp.ones((3, 2)),
            gf.SquareLoss(jnp.zeros((3, 0))),
        )
    with pytest.raises(ValueError, match="`params0` has no entries"):
        gf.Problem(
            lambda p, x: x[:, :1] + jnp.sum(p["w"]),
            {"w": jnp.ones((0,))},
            jnp.ones((3, 2)),
            gf.SquareLoss(jnp.zeros((3, 1))),
        )


def test_times_steps_and_solver_messages(getkey):
    problem = small(getkey)
    with pytest.raises(ValueError, match=r"non-decreasing; got ts\[2\]=0.5 > ts\[3\]=0.4"):
        gf.solve(problem, t1=1.0, ts=[0.0, 0.25, 0.5, 0.4, 1.0])
    # Without t1, the order of ts is what is wrong, not t1 = ts[-1] = 0.
    with pytest.raises(ValueError, match=r"non-decreasing; got ts\[0\]=10.0 > ts\[1\]=0.0"):
        gf.solve(problem, ts=[10.0, 0.0])
    with pytest.raises(ValueError, match=r"`ts` must be finite; got ts\[1\]=nan"):
        gf.solve(problem, t1=1.0, ts=[0.0, np.nan])
    with pytest.raises(ValueError, match=r"`ts` must be times >= 0; got ts\[0\]=-0.5"):
        gf.solve(problem, t1=1.0, ts=[-0.5, 1.0])
    for bad in (2.7, 0, -3, "10", True):
        with pytest.raises(ValueError, match="`max_steps` must be a positive integer"):
            gf.solve(problem, t1=1.0, max_steps=bad)
    assert gf.solve(problem, t1=1.0, max_steps=1e5).succeeded  # an integral float is fine
    with pytest.raises(ValueError, match=r"`solver=Euler\(\)` has no error estimate.*give `dt0`"):
        gf.solve(problem, t1=1.0, solver=dfx.Euler())
    with pytest.raises(ValueError, match="use `diffrax.ConstantStepSize\\(\\)` with `dt0`"):
        gf.solve(
            problem, t1=1.0, solver=dfx.Euler(), stepsize_controller=dfx.PIDController(1e-6, 1e-8)
        )


def test_euler_with_dt0_takes_constant_steps(getkey):
    # Euler with dt0 is gradient descent with step dt0: against a hand-written loop.
    problem = small(getkey, alpha=2.0)
    sol = gf.solve(problem, t1=0.4, ts=[0.4], solver=dfx.Euler(), dt0=0.1, save_params=True)
    assert sol.succeeded and int(sol.stats["num_steps"]) == 4
    grad = jax.jit(jax.grad(problem.objective))
    w = problem.params0
    for _ in range(4):
        w = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, w, grad(w))
    got = ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], sol.params))[0]
    np.testing.assert_allclose(got, ravel_pytree(w)[0], rtol=0, atol=1e-12)


def test_max_steps_on_a_model_with_kinks_says_to_loosen_rtol(getkey):
    # A two-hidden-layer ReLU MLP with zero biases at the default rtol: the kinks reject steps.
    x = jax.random.normal(getkey(), (30, 3))
    y = jnp.sin(x[:, :1])
    params = {
        "w1": jax.random.normal(getkey(), (3, 16)),
        "w2": jax.random.normal(getkey(), (16, 16)) / 4,
        "w3": jax.random.normal(getkey(), (16, 1)) / 4,
    }

    def mlp(p, inputs):
        return jax.nn.relu(jax.nn.relu(inputs @ p["w1"]) @ p["w2"]) @ p["w3"]

    problem = gf.Problem(mlp, params, x, gf.SquareLoss(y))
    sol = gf.solve(problem, t1=50.0, max_steps=200)
    assert sol.result == gf.RESULTS.max_steps_at_kinks
    assert "model with kinks" in sol.message and "rtol 1e-3 to 1e-2" in sol.message
    with pytest.raises(gf.SolveError, match="Loosen `rtol`"):
        gf.solve(problem, t1=50.0, max_steps=200, throw=True)
    # A loose tolerance reaches t1 (the remedy the message gives).
    assert gf.solve(problem, t1=50.0, rtol=1e-2, atol=1e-4).succeeded


# ------------------------------------------------------------ tolerances and step sizes


def _counted(problem):
    """`problem` with an `apply` that counts its calls (each trace of the model is one), so a
    test can tell that a refused argument was refused before anything was traced."""
    calls = []

    def apply(params, inputs):
        calls.append(1)
        return problem.apply(params, inputs)

    counted = gf.Problem(
        apply, problem.params0, problem.inputs, problem.loss, alpha=1.0, center=problem.center
    )
    calls.clear()
    return counted, calls


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rtol": 1e-20, "atol": 0.0}, r"`rtol=1e-20` is below float64 resolution.*rtol >= 1e-14"),
        (
            {"stepsize_controller": dfx.PIDController(rtol=1e-16, atol=1e-18)},
            r"`stepsize_controller.rtol=1e-16` is below float64 resolution",
        ),
    ],
)
def test_tolerance_below_float64_resolution_is_refused(getkey, kwargs, message):
    # It used to run, collapse its step size, and end as `RESULTS.diverged`, blaming a healthy
    # model. Refused up front, before "auto" estimates the stiffness (nothing is traced).
    problem, calls = _counted(small(getkey))
    with pytest.raises(ValueError, match=message):
        gf.solve(problem, t1=1.0, **kwargs)
    assert not calls, "the model was traced before the tolerance was refused"
    with pytest.raises(ValueError, match=message):
        gf.SolveOptions(t1=1.0, **kwargs)


def test_float32_tolerance_refused_before_the_auto_estimate():
    # "auto" estimates the stiffness (Lanczos on Hessian-vector products) only for a solve it
    # will run.
    problem, calls = _counted(_float32_problem())
    with pytest.raises(ValueError, match="`rtol=1e-08` is below float32 resolution"):
        gf.solve(problem, t1=1.0)
    assert not calls


def test_tight_float64_tolerance_at_the_bound_succeeds(getkey):
    # rtol = 1e-14 (the bound) is met on a healthy float64 model: against rtol = 1e-10
    # (an independent, looser solve), the final loss agrees to that looser tolerance.
    problem = small(getkey)
    tight = gf.solve(problem, t1=1.0, ts=[1.0], solver=dfx.Tsit5(), rtol=1e-14, atol=1e-16)
    loose = gf.solve(problem, t1=1.0, ts=[1.0], solver=dfx.Tsit5(), rtol=1e-10, atol=1e-12)
    assert tight.succeeded and loose.succeeded
    np.testing.assert_allclose(tight.loss, loose.loss, rtol=1e-8)


def _with_a_dead_parameter(problem):
    """`problem` with one more parameter leaf that the model ignores: its gradient is 0, so
    its entries of the state stay exactly 0 for all time."""

    def apply(params, inputs):
        return problem.apply(params["net"], inputs)

    params = {"net": problem.params0, "dead": jnp.zeros(2)}
    return gf.Problem(apply, params, problem.inputs, problem.loss, center=True)


def test_step_size_collapse_is_not_divergence(getkey):
    # Two healthy float64 models whose error control cannot be met: `atol=0` with a parameter
    # that never moves (its relative tolerance asks for an error of exactly 0: a 0/0 in the
    # error norm), and `atol=0` at rtol 1e-13 (the gap starts at 0, and its relative error is
    # rounding). Both used to end as `RESULTS.diverged`, blaming the model.
    base = small(getkey)
    cases = {
        "dead parameter, atol=0": (_with_a_dead_parameter(base), 1e-8),
        "rtol=1e-13, atol=0": (base, 1e-13),
    }
    ts = np.linspace(0.0, 1.0, 5)
    # Ground truth: the same models with atol > 0 succeed, with finite losses.
    for name, (problem, rtol) in cases.items():
        ok = gf.solve(problem, t1=1.0, ts=ts, solver=dfx.Tsit5(), rtol=rtol, atol=1e-14)
        assert ok.succeeded and np.all(np.isfinite(ok.loss)), name
        sol = gf.solve(problem, t1=1.0, ts=ts, solver=dfx.Tsit5(), rtol=rtol, atol=0.0)
        assert sol.result == gf.RESULTS.step_size_collapsed, (name, sol.result)
        assert "step size collapsed" in sol.message and "`atol > 0`" in sol.message
        # It stops where the step collapsed (here in the first step, so no save time is
        # reached: NaN), not at max_steps.
        assert int(sol.stats["num_steps"]) < 100, (name, sol.stats)
        with pytest.raises(
            gf.SolveError, match=r"RESULTS\.step_size_collapsed: The step size collapsed"
        ):
            gf.solve(problem, t1=1.0, ts=ts, solver=dfx.Tsit5(), rtol=rtol, atol=0.0, throw=True)


# ------------------------------------------------------------ arguments checked where they enter


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"rtol": np.inf}, ValueError, r"`rtol` must be a finite number > 0; got rtol=inf"),
        ({"rtol": 0.0}, ValueError, r"`rtol` must be a finite number > 0; got rtol=0.0"),
        ({"rtol": "1e-6"}, TypeError, r"`rtol` must be a finite number > 0 \(a real number\)"),
        ({"rtol": True}, TypeError, r"`rtol` must be .*; got bool True"),
        ({"atol": np.inf}, ValueError, r"`atol` must be a finite number >= 0; got atol=inf"),
        ({"atol": -1e-10}, ValueError, r"`atol` must be a finite number >= 0; got atol=-1e-10"),
        ({"atol": None}, TypeError, r"`atol` must be a finite number >= 0 \(a real number\)"),
        ({"dt0": -0.1}, ValueError, r"`dt0` must be a finite number > 0 or None .*dt0=-0.1"),
        ({"dt0": 0}, ValueError, r"`dt0` must be a finite number > 0 or None .*dt0=0.0"),
        ({"dt0": np.nan}, ValueError, r"`dt0` must be a finite number > 0 or None .*dt0=nan"),
        ({"dt0": "0.1"}, TypeError, r"`dt0` must be a finite number > 0 or None"),
        ({"t1": "1.0"}, TypeError, r"`t1` must be a time > 0 \(math.inf: .*\) \(a real number\)"),
        ({"t1": True}, TypeError, r"`t1` must be a time > 0 \(math.inf: .*\) \(a real number\)"),
        ({"ts": "abc"}, TypeError, r"`ts` must be an array of times \(real numbers\)"),
        ({"ts": ["0", "1"]}, TypeError, r"`ts` must be an array of times \(real numbers\)"),
        ({"linearized": "no"}, TypeError, r"`linearized` must be True or False"),
        ({"save_params": 1}, TypeError, r"`save_params` must be True or False"),
        ({"throw": "yes"}, TypeError, r"`throw` must be True or False"),
        ({"solver": dfx.Tsit5}, TypeError, r"`solver` must be a diffrax solver instance"),
        ({"stepsize_controller": "pid"}, TypeError, r"`stepsize_controller` must be a diffrax"),
    ],
)
def test_solve_arguments_are_checked_before_anything_is_traced(getkey, kwargs, error, message):
    problem, calls = _counted(small(getkey))
    kwargs = {"t1": 1.0, **kwargs}
    with pytest.raises(error, match=message):
        gf.solve(problem, **kwargs)
    assert not calls, "the model was traced before the argument was refused"
    # The same error without a problem, from the options `solve` builds (and `gf.sweep` checks
    # once for its shared arguments); `throw` is `solve`'s own, not an option.
    if "throw" not in kwargs:
        with pytest.raises(error, match=message):
            gf.SolveOptions(**kwargs)


def test_solve_options_without_a_problem():
    # Every kind of solver.
    for solver in (None, "auto", dfx.Tsit5(), gf.RKC(), gf.GradientDescent(0.1)):
        assert isinstance(gf.SolveOptions(t1=1.0, solver=solver), gf.SolveOptions)
    assert gf.SolveOptions().t1 is None  # t1 and ts may be per point (a sweep)
    assert gf.SolveOptions(ts=[0.0, 0.5], rtol=np.float32(1e-6), max_steps=None).t1 == 0.5
    # Contradictions between arguments, refused without a problem.
    with pytest.raises(ValueError, match="whole number of steps"):
        gf.SolveOptions(t1=1.05, solver=gf.GradientDescent(0.1))
    with pytest.raises(ValueError, match=r"`solver=Euler\(\)` has no error estimate.*give `dt0`"):
        gf.SolveOptions(t1=1.0, solver=dfx.Euler())
    with pytest.raises(ValueError, match=r"`ts` must lie inside \[0, t1\]"):
        gf.SolveOptions(t1=1.0, ts=[0.0, 2.0])
    with pytest.raises(TypeError, match="`solver` must be a diffrax solver"):
        gf.SolveOptions(solver="tsit5")
    # rtol is bound by float64's resolution only where the default controller uses it.
    assert gf.SolveOptions(t1=1.0, rtol=1e-20, solver=gf.GradientDescent(0.5)).rtol == 1e-20
    assert gf.SolveOptions(t1=1.0, rtol=1e-20, solver=dfx.Euler(), dt0=0.1).rtol == 1e-20
    # The boundary: 1e-14 is accepted.
    assert gf.SolveOptions(t1=1.0, rtol=1e-14).rtol == 1e-14


@pytest.mark.parametrize("bad", ["0.1", None, True, 1 + 0j])
def test_gradient_descent_learning_rate_type(bad):
    with pytest.raises(TypeError, match=r"`learning_rate` must be a real number > 0.*; got "):
        gf.GradientDescent(bad)
