"""Bad input gets a clear error naming the argument; failures become result codes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import two_layer_problem

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


def test_bad_times_and_solver(getkey):
    problem = small(getkey)
    with pytest.raises(ValueError, match="`t1` must be a finite time > 0"):
        gf.solve(problem, t1=-1.0)
    with pytest.raises(ValueError, match="Give the final time `t1`"):
        gf.solve(problem)
    with pytest.raises(ValueError, match="`ts` must be finite, non-decreasing and inside"):
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
    with pytest.raises(gf.SolveError, match="Increase `max_steps`"):
        gf.solve(problem, t1=100.0, max_steps=5, throw=True)


def test_closed_form_needs_square_loss(getkey):
    kd, kp = jax.random.split(getkey())
    model = gf.models.TwoLayer(4, "tanh")
    x = jax.random.normal(kd, (5, 2))
    problem = gf.Problem(model, model.init(kp, 2), x, gf.LogisticLoss(jnp.ones((5, 1))))
    with pytest.raises(ValueError, match="needs `loss=gf.SquareLoss"):
        gf.linear_flow_closed_form(problem, [1.0])
