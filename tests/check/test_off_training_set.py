"""The off-training-set check and its constants, against independent references: the solver's
own output gap, materialized Jacobians (`jax.jacrev`), closed-form Hessian norms of quadratic
models, and Taylor's theorem attained along the worst direction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow.check._off_training_set import (
    GAP,
    _gap_per_point,
    _hessian_norms,
    _jacobian_norms,
)


def test_check_passes_on_matrix_completion():
    spec = gf.check.matrix_completion()
    alphas = (10.0, 100.0, 1000.0)
    report = gf.check.check_off_training_set(spec, alphas=alphas)
    assert report.hypotheses_hold and report.verdict == "pass"
    (gap,) = [e for e in report.exponents if e.quantity == GAP]
    # Measured -1.0001 (finite horizon: no log factor); the check's own tolerance is 0.1.
    assert abs(gap.measured + 1.0) <= 0.1 and gap.ci[0] <= gap.measured <= gap.ci[1]
    sharp = [b for b in report.bounds if b.quantity.endswith("[sharp]")]
    paper = [b for b in report.bounds if b.quantity.endswith("[paper]")]
    assert [b.alpha for b in sharp] == [b.alpha for b in paper] == list(alphas)
    for b in report.bounds:
        assert b.applicable and b.observed[0] <= b.bound[0] and b.margin > b.solver_error
    # The paper's form is the sharp bound with d, g replaced by their upper bounds C log a/a,
    # C log a/a^2, so it is never below the sharp one.
    for s, p in zip(sharp, paper):
        assert p.bound[0] >= s.bound[0]
    est = {name: value for name, value, _ in report.estimates}
    # Matrix completion is quadratic: ||D^2_w f(w, x)|| = 1 for every entry (closed form).
    assert est["M2 = sup_X Lip(D_w f(., x))"] == pytest.approx(1.0, rel=1e-12)
    assert est["min distance from X to the training inputs"] > 0  # X is off the training set


def test_held_out_gap_on_the_training_inputs_is_the_solvers_output_gap():
    # Evaluated on the training inputs from the saved w(T), wbar(T), the per-point gaps give the
    # solver's output_gap (the empirical norm), which the solver computes from its scaled state
    # (u, e) and the linearized model: agreement to 1e-9 relative at alpha = 100.
    # Matrix completion at the check's settings, so the compiled solve is shared with it.
    problem = gf.check.matrix_completion().problem.with_alpha(100.0)
    sol = gf.solve(problem, ts=np.array([0.0, 5.0]), rtol=1e-8, atol=1e-10, save_params=True)
    w = jax.tree_util.tree_map(lambda x: x[-1], sol.params)
    wbar = jax.tree_util.tree_map(lambda x: x[-1], sol.linear_params)
    per_point = np.asarray(_gap_per_point(problem, problem.inputs, w, wbar))
    assert np.sqrt(np.mean(per_point**2)) == pytest.approx(float(sol.output_gap[-1]), rel=1e-9)


def test_m1_matches_a_materialized_per_point_jacobian(getkey):
    # Two outputs per point, so M1 is a spectral norm of a (2, p) Jacobian, not a vector norm.
    model = gf.models.TwoLayer(5, "tanh")
    x = jax.random.normal(getkey(), (4, 3))
    problem = gf.Problem(model, model.init(getkey(), 3, 2), x, gf.SquareLoss(jnp.zeros((4, 2))))
    held_out = jax.random.normal(getkey(), (6, 3))
    w0, unravel = ravel_pytree(problem.params0)

    def outputs(w, xi):
        return model(unravel(w), xi[None]).reshape(-1)

    jacs = np.asarray(jax.jit(jax.vmap(jax.jacrev(outputs), in_axes=(None, 0)))(w0, held_out))
    assert jacs.shape == (6, 2, problem.num_params)
    ref = [np.linalg.norm(j, 2) for j in jacs]
    np.testing.assert_allclose(np.asarray(_jacobian_norms(problem, held_out)), ref, rtol=1e-12)


def test_m2_is_exact_on_quadratic_models():
    # Depth-2 diagonal net: D^2 f(x)[v, v] = 2 sum_j x_j v1_j v2_j, whose norm is max_j |x_j|
    # (the 2x2 blocks [[0, x_j], [x_j, 0]]) at every w; Lanczos with p steps recovers it to
    # rounding, at w0 and at random points of a ball.
    spec = gf.check.diagonal_net(held_out=16)
    x = np.asarray(spec.held_out)
    p = spec.problem.num_params
    values, num_w = _hessian_norms(spec.problem, spec.held_out, 0.3, [], 2, p)
    assert num_w == 3
    np.testing.assert_allclose(values, np.max(np.abs(x), axis=1), rtol=1e-12)
    # Two outputs per point (rows of W1 W2 on one-hot inputs): the largest per-coordinate
    # radius, which here equals the norm, 1 for each row (closed form).
    mf = gf.check.matrix_factorization(size=(3, 2), rank=2).problem
    values, _ = _hessian_norms(mf, jnp.eye(3), 0.1, [], 1, mf.num_params)
    np.testing.assert_allclose(values, 1.0, rtol=1e-12)


def test_sharp_bound_is_taylors_theorem_and_is_attained(getkey):
    # The statement's sharp bound alpha (M2 d^2/2 + M1 g), with M1 from jacrev and M2 in closed
    # form, against the gap at arbitrary (w, wbar) near w0: it holds, and for wbar = w along the
    # Hessian's top eigenvector of the worst point it is attained (to 1e-9), so it is sharp.
    import theory

    spec = gf.check.diagonal_net(held_out=16)
    problem, x = spec.problem.with_alpha(50.0), np.asarray(spec.held_out)
    w0, unravel = ravel_pytree(problem.params0)
    m1 = float(np.max(np.asarray(_jacobian_norms(problem, spec.held_out))))
    m2 = float(np.max(np.abs(x)))
    sharp = theory.off_training_set().numeric("sharp_bound")
    for _ in range(5):
        d1, d2 = (jax.random.normal(getkey(), w0.shape) for _ in range(2))
        w, wbar = w0 + 0.02 * d1, w0 + 0.02 * d1 + 1e-4 * d2
        gap = np.max(np.asarray(_gap_per_point(problem, spec.held_out, unravel(w), unravel(wbar))))
        dist, diff = float(jnp.linalg.norm(w - w0)), float(jnp.linalg.norm(w - wbar))
        assert 0 < gap <= sharp(alpha=50.0, M_1=m1, M_2=m2, dist_T=dist, gap_T=diff)
    i, j = np.unravel_index(np.argmax(np.abs(x)), x.shape)
    direction = np.zeros((2, x.shape[1]))
    direction[0, j], direction[1, j] = 1.0, np.sign(x[i, j])
    w = w0 + 0.01 * jnp.asarray(direction.ravel() / np.sqrt(2.0))
    gap = np.max(np.asarray(_gap_per_point(problem, spec.held_out, unravel(w), unravel(w))))
    bound = sharp(alpha=50.0, M_1=m1, M_2=m2, dist_T=0.01, gap_T=0.0)
    assert gap == pytest.approx(bound, rel=1e-9)


def test_registered_and_bad_arguments():
    assert "off_training_set" in gf.check.THEOREMS
    specs = gf.check.default_problems("off_training_set")
    assert len(specs) == 4 and all(s.held_out is not None for s in specs)
    assert not specs[-1].problem.center  # the negative control
    check = gf.check.check_off_training_set
    with pytest.raises(ValueError, match="`held_out` is missing"):
        check(gf.check.two_layer(samples=4, dim=8, width=32))
    spec = gf.check.diagonal_net(held_out=3)
    with pytest.raises(ValueError, match=r"`alphas` must all be > 1"):
        check(spec, alphas=(0.5, 10.0, 100.0))
    with pytest.raises(ValueError, match="`alphas` must hold at least 3"):
        check(spec, alphas=(10.0, 100.0))
    with pytest.raises(ValueError, match="`horizon` must be a finite time"):
        check(spec, horizon=-1.0)
    with pytest.raises(ValueError, match=r"`apply\(params0, held_out\)` fails"):
        check(spec, held_out=jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="held_out"):
        check(spec, held_out=jnp.full((3, 10), jnp.nan))
    with pytest.raises(ValueError, match="`held_out` is a number"):
        gf.check.two_layer(held_out=-2)
    with pytest.raises(ValueError, match="`observed` must be between 1 and 11"):
        gf.check.matrix_completion(observed=12)
    with pytest.raises(ValueError, match="Entry indices"):
        gf.models.MatrixCompletion.entries([0, 4], [0, 1], (4, 3))
