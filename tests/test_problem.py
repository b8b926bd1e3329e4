"""`gf.Problem`: the checks on its arguments, the centered model, the first-order Taylor
model `hbar`, the scaled objectives, and `with_alpha`.

Ground truths: Jacobians materialized with `jax.jacfwd` and the objectives written in numpy.
"""

import jax
import numpy as np
import pytest
from helpers import materialized_jacobian, numpy_rng, small_problem
from jax.flatten_util import ravel_pytree

import gradflow as gf


def test_problem_alpha_errors(getkey):
    problem = small_problem(getkey())
    args = (problem.apply, problem.params0, problem.inputs, problem.loss)
    for bad in (0.0, -1.0, -np.inf, np.inf):
        with pytest.raises(ValueError, match=r"`alpha` must be a finite number > 0; got alpha="):
            gf.Problem(*args, alpha=bad)
    with pytest.raises(ValueError, match=r"`alpha` must be a finite number > 0; got alpha=nan"):
        gf.Problem(*args, alpha=np.nan)
    with pytest.raises(ValueError, match=r"`alpha` must be a scalar; got shape \(2,\)"):
        gf.Problem(*args, alpha=[1.0, 2.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_problem_non_finite_inputs(getkey, bad):
    problem = small_problem(getkey())
    x = np.array(problem.inputs)
    x[2, 1] = bad
    with pytest.raises(ValueError, match="`inputs` contains NaN or inf values"):
        gf.Problem(problem.apply, problem.params0, x, problem.loss)


def test_problem_shape_mismatch(getkey):
    problem = small_problem(getkey())  # outputs (6, 1)
    y = np.asarray(problem.loss.targets)
    with pytest.raises(
        ValueError, match=r"model output has shape \(6, 1\) but the loss targets have shape \(6,\)"
    ):
        gf.Problem(problem.apply, problem.params0, problem.inputs, gf.SquareLoss(y[:, 0]))
    with pytest.raises(
        ValueError, match=r"shape \(6, 1\) but the loss targets have shape \(5, 1\)"
    ):
        gf.Problem(problem.apply, problem.params0, problem.inputs, gf.SquareLoss(y[:5]))


def test_problem_integer_params():
    model = gf.models.LinearNet()
    params = {"W1": np.ones((2, 2), dtype=np.int32), "W2": np.ones((2, 1))}
    with pytest.raises(ValueError, match="`params0` must hold floating-point arrays.*int32"):
        gf.Problem(model, params, np.eye(2), gf.SquareLoss(np.zeros((2, 1))))


def test_problem_bad_apply_and_loss(getkey):
    problem = small_problem(getkey())
    with pytest.raises(TypeError, match="`apply` must be a callable"):
        gf.Problem(None, problem.params0, problem.inputs, problem.loss)
    with pytest.raises(TypeError, match="`loss` must be a gradflow loss"):
        gf.Problem(problem.apply, problem.params0, problem.inputs, np.zeros((6, 1)))
    with pytest.raises(ValueError, match="`params0` has no array leaves"):
        gf.Problem(problem.apply, {}, problem.inputs, problem.loss)


def test_center_gives_exact_zero(getkey):
    problem = small_problem(getkey(), center=True)
    h0 = np.asarray(problem.h(problem.params0))
    np.testing.assert_array_equal(h0, np.zeros((6, 1)))  # exactly, not to a tolerance
    uncentered = small_problem(getkey(), center=False)
    assert np.abs(np.asarray(uncentered.h(uncentered.params0))).max() > 1e-3
    # Centering does not change Dh(w0): the same Jacobian up to rounding (1e-14 absolute).
    same = gf.Problem(problem.apply, problem.params0, problem.inputs, problem.loss, center=False)
    np.testing.assert_allclose(
        materialized_jacobian(problem), materialized_jacobian(same), rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("center", [False, True])
def test_hbar_is_first_order_taylor(getkey, center):
    problem = small_problem(getkey(), k=2, center=center)
    w0, unravel = ravel_pytree(problem.params0)
    jac = materialized_jacobian(problem)
    h0 = np.asarray(problem.h(problem.params0)).reshape(-1)
    for scale in (1e-3, 1.0):
        w = w0 + scale * numpy_rng(getkey()).standard_normal(w0.size)
        expected = h0 + jac @ np.asarray(w - w0)
        got = np.asarray(problem.hbar(unravel(w))).reshape(-1)
        # Same linear map through jvp vs a materialized jacfwd matrix: 1e-12 absolute.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("center", [False, True])
def test_objective_by_hand(getkey, center):
    problem = small_problem(getkey(), k=2, center=center)
    w0, unravel = ravel_pytree(problem.params0)
    w = w0 + 0.3 * numpy_rng(getkey()).standard_normal(w0.size)
    params = unravel(w)
    y = np.asarray(problem.loss.targets)
    out = np.asarray(problem.apply(params, problem.inputs))
    if center:
        out = out - np.asarray(problem.apply(problem.params0, problem.inputs))
    jac = materialized_jacobian(problem)
    h0 = np.asarray(problem.h(problem.params0))
    lin = h0 + (jac @ np.asarray(w - w0)).reshape(h0.shape)
    for alpha in (0.5, 1.0, 30.0):
        p = problem.with_alpha(alpha)
        # R(alpha h)/alpha^2 = |alpha h - y|^2 / (2 n alpha^2), n = 6, in numpy: 1e-12 rel.
        expected = np.sum((alpha * out - y) ** 2) / (2 * 6 * alpha**2)
        np.testing.assert_allclose(float(p.objective(params)), expected, rtol=1e-12)
        expected_lin = np.sum((alpha * lin - y) ** 2) / (2 * 6 * alpha**2)
        np.testing.assert_allclose(float(p.linear_objective(params)), expected_lin, rtol=1e-12)


def test_with_alpha_changes_only_alpha(getkey):
    problem = small_problem(getkey(), alpha=2.0)
    other = problem.with_alpha(7.0)
    assert float(other.alpha) == 7.0 and float(problem.alpha) == 2.0  # original untouched
    assert other.alpha.dtype == problem.alpha.dtype
    assert other.apply == problem.apply and other.center == problem.center
    for a, b in zip(
        jax.tree_util.tree_leaves((problem.params0, problem.inputs, problem.loss)),
        jax.tree_util.tree_leaves((other.params0, other.inputs, other.loss)),
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("bad", [None, "abc", 1 + 2j, np.complex128(1.0), True, {"a": 1.0}])
def test_problem_alpha_type_names_alpha(getkey, bad):
    # A TypeError naming `alpha`, not numpy's or JAX's message about a conversion.
    problem = small_problem(getkey())
    args = (problem.apply, problem.params0, problem.inputs, problem.loss)
    with pytest.raises(TypeError, match=r"`alpha` must be a real number > 0 .*; got "):
        gf.Problem(*args, alpha=bad)
    with pytest.raises(TypeError, match=r"`alpha` must be a real number > 0 .*; got "):
        problem.with_alpha(bad)


def test_problem_alpha_accepts_real_numbers_and_arrays(getkey):
    problem = small_problem(getkey())
    args = (problem.apply, problem.params0, problem.inputs, problem.loss)
    for good in (2, 2.0, np.float32(2.0), np.int64(2), np.asarray(2.0), jax.numpy.asarray(2)):
        assert float(gf.Problem(*args, alpha=good).alpha) == 2.0


@pytest.mark.parametrize("bad", ["no", "False", 0, 1, None])
def test_problem_center_must_be_a_bool(getkey, bad):
    # `center="no"` used to be taken as True.
    problem = small_problem(getkey())
    args = (problem.apply, problem.params0, problem.inputs, problem.loss)
    with pytest.raises(TypeError, match=r"`center` must be True or False.*; got center="):
        gf.Problem(*args, center=bad)
    assert gf.Problem(*args, center=np.bool_(False)).center is False


def test_from_module_per_example_must_be_a_bool():
    import equinox as eqx

    mlp = eqx.nn.MLP(2, 1, 3, 1, key=jax.random.PRNGKey(0))
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    with pytest.raises(TypeError, match=r"`per_example` must be True or False.*; got per_example="):
        gf.Problem.from_module(mlp, x, gf.SquareLoss(y), per_example="no")
    with pytest.raises(TypeError, match=r"`center` must be True or False"):
        gf.Problem.from_module(mlp, x, gf.SquareLoss(y), center="yes")
