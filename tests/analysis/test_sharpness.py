"""The sharpness (largest signed Hessian eigenvalue) at a point and along flow and GD paths,
against numpy's eigenvalues of the dense Hessian (`jax.hessian`); the stiffness estimate as its
case at w0; and GD's distance to its flow against closed forms, scipy and the order of Euler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from helpers import empirical_fnorm, two_layer_problem
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow.analysis import _sharpness

# Every estimate below runs at the default residual tolerance 1e-4 relative, which bounds the
# distance to an eigenvalue by 1e-4 relative; the error is quadratic in the residual, and the
# tests hold it to 1e-6 relative (measured: 3e-9), far inside the 1% of the goal.
REL = 1e-6


def _dense_eigenvalues(problem, params, linear=False):
    w, unravel = ravel_pytree(params)
    objective = problem.linear_objective if linear else problem.objective
    hess = jax.jit(jax.hessian(lambda v: objective(unravel(v))))(w)
    return np.linalg.eigvalsh(np.asarray(hess))


def _at(params, i):
    return jax.tree_util.tree_map(lambda x: x[i], params)


@pytest.fixture(scope="module")
def saddle():
    """A tanh net at alpha = 0.05 (far from lazy): at w0 the Hessian's most negative eigenvalue
    (-4.12) is larger in size than its largest (3.49); along the flow and GD the top grows to 11
    while the bottom shrinks."""
    return two_layer_problem(jax.random.PRNGKey(0), n=8, d=3, m=6, alpha=0.05)


def _check_against_dense(problem, params, estimate, *, linear=False):
    for i in range(len(estimate.value)):
        eigs = _dense_eigenvalues(problem, _at(params, i), linear)
        value, residual = float(estimate.value[i]), float(estimate.residual[i])
        # A Ritz value: never above the top eigenvalue, within its residual of it (the top
        # one, from these starts), and the residual met the tolerance.
        assert value <= eigs[-1] + 1e-12 * abs(eigs[-1])
        assert eigs[-1] - value <= residual * (1 + 1e-9) + 1e-12
        assert residual <= estimate.rtol * abs(value)
        assert abs(value - eigs[-1]) <= REL * abs(eigs[-1]), (i, value, eigs[-1])
    assert np.all(estimate.converged)


def test_sharpness_along_flow_and_gd_against_the_dense_hessian(saddle):
    problem = saddle
    flow = gf.solve(problem, ts=[0.0, 0.5, 2.0, 5.0, 20.0], save_params=True)
    eta = 0.1  # eta * lambda_max stays below 1.2 along this path: GD is stable
    gd = gf.solve(
        problem,
        ts=eta * np.array([0, 1, 5, 20, 100]),
        solver=gf.GradientDescent(eta),
        save_params=True,
        linearized=False,
    )
    on_flow = gf.sharpness_along(problem, flow.params)
    on_gd = gf.sharpness_along(problem, gd.params)
    _check_against_dense(problem, flow.params, on_flow)
    _check_against_dense(problem, gd.params, on_gd)
    # At w0 the negative end dominates: the spectral radius is |lambda_min| = 4.12, and the
    # estimate is lambda_max = 3.49, not it.
    eigs = _dense_eigenvalues(problem, problem.params0)
    assert -eigs[0] > 1.15 * eigs[-1] > 0
    assert abs(float(on_flow.value[0]) - eigs[-1]) <= REL * eigs[-1]
    assert float(on_gd.value[0]) == float(on_flow.value[0])
    # The path moves the sharpness (3.49 to 10.6 along the flow), so the points are distinct.
    assert float(on_flow.value[-1]) > 3 * float(on_flow.value[0])


def test_sharpness_of_the_linearized_objective(saddle):
    # For the square loss the Hessian of Fbar_alpha is Dh(w0)^* Dh(w0) at every point: constant
    # along the linearized flow, positive semi-definite, and the top eigenvalue of the dense
    # Hessian of `linear_objective`.
    problem = saddle
    flow = gf.solve(problem, ts=[0.0, 0.5, 2.0, 5.0, 20.0], save_params=True)
    lin = gf.sharpness_along(problem, flow.linear_params, linear=True)
    assert lin.linear
    _check_against_dense(problem, flow.linear_params, lin, linear=True)
    jac = np.asarray(
        jax.jacfwd(lambda v: problem.h(ravel_pytree(problem.params0)[1](v)))(
            ravel_pytree(problem.params0)[0]
        )
    ).reshape(-1, problem.num_params)
    top = np.linalg.eigvalsh(jac.T @ jac / jac.shape[0])[-1]
    np.testing.assert_allclose(np.asarray(lin.value), top, rtol=REL)


@pytest.mark.parametrize(
    "activation, alpha, m", [("tanh", 3.0, 8), ("softplus", 30.0, 12), ("relu", 3.0, 16)]
)
def test_stiffness_is_the_sharpness_at_w0_with_its_settings(getkey, activation, alpha, m):
    # `gf.stiffness` (solver="auto") runs the same program: Lanczos from two starts of
    # PRNGKey(0), a 5% residual, 10 steps. Equal to the last bit.
    problem = two_layer_problem(getkey(), n=12, d=3, m=m, activation=activation, alpha=alpha)
    case = gf.sharpness(problem, rtol=5e-2, max_iters=10, num_starts=2)
    assert float(case) == gf.stiffness(problem)
    # The default settings are tighter: a value at least as large (Lanczos from below), within
    # REL of the dense top eigenvalue.
    top = _dense_eigenvalues(problem, problem.params0)[-1]
    tight = gf.sharpness(problem)
    assert float(case) <= float(tight) * (1 + 1e-12)
    assert abs(float(tight) - top) <= REL * top


def test_point_and_path_agree_and_do_not_recompile(saddle, monkeypatch):
    problem = saddle
    gd = gf.solve(
        problem,
        ts=0.1 * np.array([0, 1, 5, 20, 100]),
        solver=gf.GradientDescent(0.1),
        save_params=True,
        linearized=False,
    )
    path = gf.sharpness_along(problem, gd.params)
    traces = []
    inner = _sharpness._top_hessian

    def counting(*args):
        traces.append(1)
        return inner(*args)

    monkeypatch.setattr(_sharpness, "_top_hessian", counting)
    values = [gf.sharpness(problem, _at(gd.params, i)) for i in (1, 2, 3)]
    # One program for every point of these shapes (traced at most once, in this test or an
    # earlier one), and the vmapped path gives the eager point's numbers.
    assert len(traces) <= 1
    for i, point in zip((1, 2, 3), values):
        assert point.value.shape == ()
        np.testing.assert_allclose(float(point), float(path.value[i]), rtol=1e-12)
        assert int(point.steps) == int(path.steps[i])
    # Every point at once (jax.vmap) instead of one after the other: the same numbers.
    batched = gf.sharpness_along(problem, gd.params, batch_size=None)
    np.testing.assert_allclose(np.asarray(batched.value), np.asarray(path.value), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(batched.steps), np.asarray(path.steps))
    text = repr(path)
    assert text.startswith("Sharpness(value=[") and "linear=False" in text
    record = path.to_dict()
    assert record["value"] == pytest.approx(np.asarray(path.value).tolist(), rel=1e-15)


def test_sharpness_errors_and_unreached_points(saddle):
    problem = saddle
    with pytest.raises(ValueError, match="save_params=True"):
        gf.sharpness_along(problem, None)
    with pytest.raises(ValueError, match="tree structure"):
        gf.sharpness(problem, {"a": problem.params0["a"]})
    with pytest.raises(ValueError, match="common leading time axis"):
        gf.sharpness_along(problem, problem.params0)
    with pytest.raises(ValueError, match=r"`rtol` must be in \(0, 1\)"):
        gf.sharpness(problem, rtol=0.0)
    with pytest.raises(ValueError, match="`max_iters` must be an integer >= 1"):
        gf.sharpness(problem, max_iters=0)
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1"):
        gf.sharpness_along(
            problem, jax.tree_util.tree_map(lambda x: x[None], problem.params0), batch_size=0
        )
    with pytest.raises(TypeError, match="`problem` must be a gradflow.Problem"):
        gf.sharpness(problem.params0)
    nan = jax.tree_util.tree_map(lambda x: jnp.full_like(x, jnp.nan), problem.params0)
    with pytest.raises(ValueError, match="The sharpness is not finite"):
        gf.sharpness(problem, nan)
    # A path whose last point was not reached (NaN, as a failed solve saves it): NaN there.
    both = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), problem.params0, nan)
    run = gf.sharpness_along(problem, both)
    assert np.isfinite(float(run.value[0])) and np.isnan(float(run.value[1]))
    assert run.converged.tolist() == [True, False]


# ------------------------------------------------------------------- GD against its flow


def test_gd_flow_distance_on_a_linear_model_against_the_closed_form(getkey):
    # h(w) = X w: in output space f' = -K (f - y) with K = X X^T / n, so
    # f(t) - y = exp(-t K) (f0 - y), and GD gives f_k - y = (I - eta K)^k (f0 - y); the Hessian
    # is X^T X / n at every w, lambda_max = lambda_max(K). Independent of alpha.
    rng = np.random.default_rng(3)
    n, d = 6, 4
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, 1))
    w0 = {"w": 0.3 * rng.standard_normal((d, 1))}
    problem = gf.Problem(lambda p, inp: inp @ p["w"], w0, x, gf.SquareLoss(y), alpha=2.0)
    evals, evecs = np.linalg.eigh(x @ x.T / n)
    eta = 0.5 / evals[-1]
    r0 = 2.0 * x @ w0["w"] - y
    out = gf.gd_flow_distance(problem, eta, 40)
    np.testing.assert_array_equal(np.asarray(out.iterations), np.arange(41))
    coef = evecs.T @ r0
    for k in range(1, 41):
        gap = evecs @ (((1 - eta * evals) ** k - np.exp(-k * eta * evals))[:, None] * coef)
        expected = empirical_fnorm(gap)
        assert abs(float(out.distance[k]) - expected) <= 1e-7 * expected, k
    assert float(out.distance[0]) == 0.0
    np.testing.assert_allclose(np.asarray(out.eta_sharpness), 0.5, rtol=REL)
    assert out.reference_tight and out.tightness > 100
    np.testing.assert_allclose(np.asarray(out.ts), eta * np.arange(41), rtol=1e-15)


def _scipy_flow(problem, ts):
    """The flow's parameters at `ts` by scipy's DOP853 at rtol 1e-12, gradients by jax.grad."""
    w0, unravel = ravel_pytree(problem.params0)
    grad = jax.jit(jax.grad(lambda v: problem.objective(unravel(v))))
    run = scipy.integrate.solve_ivp(
        lambda t, v: -np.asarray(grad(v)),
        (0.0, float(ts[-1])),
        np.asarray(w0),
        method="DOP853",
        t_eval=np.asarray(ts),
        rtol=1e-12,
        atol=1e-14,
    )
    assert run.success
    return run.y.T, unravel


def _outputs(problem, unravel, ws):
    return [np.asarray(problem.alpha * problem.h(unravel(jnp.asarray(w)))) for w in ws]


def test_gd_flow_distance_on_a_net_against_scipy_and_a_plain_loop(saddle):
    problem = saddle
    eta, num = 0.1, 40
    its = np.array([0, 1, 2, 5, 10, 20, 40])
    out = gf.gd_flow_distance(problem, eta, num, iterations=its)
    # GD as a plain loop, the flow by scipy.
    w0, unravel = ravel_pytree(problem.params0)
    grad = jax.jit(jax.grad(lambda v: problem.objective(unravel(v))))
    w, iterates = w0, {0: w0}
    for k in range(1, num + 1):
        w = w - eta * grad(w)
        iterates[k] = w
    flow, _ = _scipy_flow(problem, eta * its)
    gd_out = _outputs(problem, unravel, [iterates[int(k)] for k in its])
    flow_out = _outputs(problem, unravel, flow)
    expected = np.array([empirical_fnorm(a - b) for a, b in zip(gd_out, flow_out)])
    # The scipy flow is good to ~1e-11 here and the tight reference to ~1e-10: 1e-8 absolute
    # is far below the gaps (1e-3 to 1e-2).
    np.testing.assert_allclose(np.asarray(out.distance), expected, rtol=0, atol=1e-8)
    assert np.min(expected[1:]) > 1e-4
    for i, k in enumerate(its):
        top = _dense_eigenvalues(problem, unravel(iterates[int(k)]))[-1]
        assert abs(float(out.eta_sharpness[i]) - eta * top) <= REL * eta * top
    assert out.reference_tight
    assert out.path_distance(10) == pytest.approx(float(np.max(expected[its >= 10])), abs=1e-8)
    text = repr(out)
    assert "reference_tight=True" in text and "RESULTS.successful" in text
    record = out.to_dict()
    assert record["reference_tight"] is True and record["succeeded"] is True


def test_a_loose_reference_is_reported_not_tight(saddle):
    # Flow solves at rtol 1e-3 and 1e-4 disagree by more than a tenth of the first gaps. The
    # reported disagreement is the loose solve's own error (against scipy at 1e-12) to within
    # the tight one's, 10x smaller.
    problem = saddle
    eta, its = 0.1, np.array([0, 1, 2, 5, 10, 20, 40])
    out = gf.gd_flow_distance(problem, eta, 40, iterations=its, rtol=1e-3, rtol_tight=1e-4)
    assert not out.reference_tight and out.tightness < 10
    loose = gf.solve(
        problem, ts=eta * its, rtol=1e-3, atol=1e-5, linearized=False, save_params=True
    )
    flow, unravel = _scipy_flow(problem, eta * its)
    truth = _outputs(problem, unravel, flow)
    mine = _outputs(problem, unravel, _rows(loose.params))
    loose_error = max(empirical_fnorm(a - b) for a, b in zip(mine, truth))
    ratio = float(np.max(np.asarray(out.reference_error))) / loose_error
    assert 0.5 <= ratio <= 2.0, ratio


def _rows(params):
    leaves = jax.tree_util.tree_leaves(params)
    return [ravel_pytree(_at(params, i))[0] for i in range(leaves[0].shape[0])]


def test_gd_is_first_order_in_eta(saddle):
    # GD is forward Euler on the flow: at a fixed time its output distance to the flow is
    # O(eta). The fitted slope over eta = T/N, N = 20..160, within 0.1 of 1.
    problem = saddle
    horizon = 2.0
    etas, gaps = [], []
    for num in (20, 40, 80, 160):
        # Seven saved iterates, as in the tests above: the same compiled programs.
        its = np.array([0, 1, 2, 5, 10, 20, num])
        out = gf.gd_flow_distance(problem, horizon / num, num, iterations=its)
        assert out.reference_tight
        etas.append(horizon / num)
        gaps.append(float(out.distance[-1]))
    fit = gf.fit_rate(etas, gaps)
    assert abs(fit.slope - 1.0) <= 0.1, fit


def test_gd_flow_distance_argument_errors(saddle):
    problem = saddle
    with pytest.raises(ValueError, match="`rtol_tight` must be below `rtol`"):
        gf.gd_flow_distance(problem, 0.1, 10, rtol=1e-8, rtol_tight=1e-8)
    with pytest.raises(ValueError, match=r"`iterations` must be non-decreasing integers in \[0"):
        gf.gd_flow_distance(problem, 0.1, 10, iterations=np.array([0, 11]))
    with pytest.raises(ValueError, match="`iterations` must include an iteration > 0"):
        gf.gd_flow_distance(problem, 0.1, 10, iterations=np.array([0]))
    with pytest.raises(ValueError, match="`iterations` must be a non-empty 1-d array"):
        gf.gd_flow_distance(problem, 0.1, 10, iterations=[0.5, 1.0])
    with pytest.raises(ValueError, match="`num_steps` must be an integer >= 1"):
        gf.gd_flow_distance(problem, 0.1, 0)
    with pytest.raises(ValueError, match="`learning_rate` must be a finite number > 0"):
        gf.gd_flow_distance(problem, -0.1, 10)
