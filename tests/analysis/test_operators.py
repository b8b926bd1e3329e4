"""The operator layer: J, J^T, J J^T / n, J^T J / n, the Hessian of F_alpha and D^2 h as
matrix-free operators, and the power iteration and Lanczos on top of them.

Ground truths: the dense Jacobian and Hessians from `jax.jacfwd` / `jax.hessian` (a code path
independent of the JVP/VJP products), `numpy.linalg.eigvalsh` of the dense matrices, and the
closed form ||D^2 h|| = 1/sqrt(d) of matrix factorization.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow._problem import _flatten
from gradflow.analysis import _operators as ops


def _rng(key):
    return np.random.default_rng(np.asarray(jax.random.key_data(key)))


def _problem(key, *, n=6, d=3, m=8, k=2):
    """A tanh two-layer net with k outputs (p = m (d + k) = 40, N = n k = 12)."""
    rng = _rng(key)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((n, k))
    params = {"a": rng.standard_normal((m, d)) / np.sqrt(d), "b": rng.standard_normal((m, k))}
    model = gf.models.TwoLayer(m, "tanh")
    return gf.Problem(model, params, x, gf.SquareLoss(y), alpha=2.0, center=True)


@eqx.filter_jit
def _dense(problem, w0, w):
    """Dh(w0) (N x p), the Hessians of the N outputs at w0 (N x p x p) and the Hessian of
    F_alpha at w (p x p), by forward-mode and forward-over-reverse autodiff on flat vectors."""
    unravel = ravel_pytree(problem.params0)[1]

    def h(u):
        return problem.h(unravel(u)).reshape(-1)

    hess = jax.hessian(lambda u: problem.objective(unravel(u)))(w)
    return jax.jacfwd(h)(w0), jax.hessian(h)(w0), hess


@eqx.filter_jit
def _products(problem, w, v, c):
    """Every operator's product with `v` (parameters) or `c` (outputs), matrix-free."""
    flat = _flatten(problem)
    n = flat.h0.shape[0]
    cs = c.reshape(flat.h0.shape)
    jac = ops.problem_jacobian(flat)
    second = ops.second_derivative(flat)
    return {
        "J v": jac.mv(v).reshape(-1),
        "J^T c": jac.T.mv(cs),
        "J J^T c / n": ops.kernel(jac, n).mv(cs).reshape(-1),
        "J^T J v / n": ops.gram(jac, n).mv(v),
        "J(fn) v": ops.jacobian(flat.h, flat.w0).mv(v).reshape(-1),
        "H v": ops.hessian(lambda u: problem.objective(flat.unravel(u)), w).mv(v),
        "D2h[v, v]": second.quadratic(v).reshape(-1),
        "H_c v": second.contract(cs).mv(v),
    }


def test_operator_products_match_the_dense_matrices(getkey):
    problem = _problem(getkey())
    w0 = ravel_pytree(problem.params0)[0]
    rng = _rng(getkey())
    w = w0 + 0.3 * rng.standard_normal(w0.shape)  # the Hessian away from w0
    v, c = rng.standard_normal(w0.shape), rng.standard_normal(12)
    jac, second, hess_w = (np.asarray(a) for a in _dense(problem, w0, w))
    n = 6
    expected = {
        "J v": jac @ v,
        "J^T c": jac.T @ c,
        "J J^T c / n": jac @ (jac.T @ c) / n,
        "J^T J v / n": jac.T @ (jac @ v) / n,
        "J(fn) v": jac @ v,
        "H v": hess_w @ v,
        "D2h[v, v]": np.einsum("ijk,j,k->i", second, v, v),
        "H_c v": np.einsum("i,ijk,k->j", c, second, v) / n,
    }
    got = _products(problem, jnp.asarray(w), jnp.asarray(v), jnp.asarray(c))
    assert hess_w.shape == (40, 40)
    for name, want in expected.items():
        # Same products in another order of operations: 1e-10 relative to the largest entry.
        scale = np.abs(want).max()
        assert scale > 1e-3, name
        np.testing.assert_allclose(got[name], want, rtol=0, atol=1e-10 * scale, err_msg=name)


def _symmetric(rng, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * np.asarray(eigenvalues)) @ q.T


@eqx.filter_jit
def _power(mat, v0, rtol, shift, estimate, num_iters):
    op = lx.MatrixLinearOperator(mat, lx.symmetric_tag)
    run = ops.power_iteration(
        op, v0, num_iters=num_iters, rtol=rtol, shift=shift, estimate=estimate
    )
    return run.value, run.steps, run.vector


def test_power_iteration_matches_eigvalsh(getkey):
    rng = _rng(getkey())
    mat = _symmetric(rng, [5.0, 3.0, 1.0, 0.5, -0.2, 0.1, 2.0, -1.0])
    top = np.linalg.eigvalsh(mat)[-1]
    v0 = jnp.asarray(ops.unit_normal(getkey(), jnp.zeros(8)))
    value, steps, vec = _power(mat, v0, 1e-14, None, "rayleigh", 1000)
    # Rayleigh quotients with ratio 3/5 stopped at 1e-14 relative change: 1e-12 relative.
    np.testing.assert_allclose(value, top, rtol=1e-12)
    assert 10 < int(steps) < 1000
    # The vector is the top eigenvector (up to sign): its residual is at the 1e-6 level
    # (the vector's error is the square root of the quotient's).
    np.testing.assert_allclose(np.linalg.norm(mat @ vec - top * vec), 0, atol=1e-6)
    # The norm estimate on a matrix whose largest |eigenvalue| is negative: |-7|.
    neg = _symmetric(rng, [-7.0, 3.0, 1.0, 0.5, -0.2, 0.1, 2.0, -1.0])
    value, _, _ = _power(neg, v0, 1e-14, None, "norm", 1000)
    np.testing.assert_allclose(value, np.abs(np.linalg.eigvalsh(neg)).max(), rtol=1e-10)
    # rtol=None runs exactly the cap; a cap of 0 returns the start untouched.
    _, steps, _ = _power(mat, v0, None, None, "rayleigh", 17)
    assert int(steps) == 17
    value, steps, vec = _power(mat, v0, 1e-14, None, "rayleigh", 0)
    assert int(steps) == 0 and float(value) == 0.0 and np.array_equal(vec, v0)


def test_shifted_power_iteration_on_a_paired_spectrum(getkey):
    """Eigenvalues in +/- pairs (the Hessians of factorized models): without a shift the
    iterate flips between the two top eigenvectors and the quotient stalls inside (-2, 2);
    shifted by 2 the spectrum is [0, 4] and the iteration converges to +2."""
    rng = _rng(getkey())
    mat = _symmetric(rng, [2.0, -2.0, 1.0, -1.0, 0.5, -0.5])
    v0 = jnp.asarray(ops.unit_normal(getkey(), jnp.zeros(6)))
    plain, _, _ = _power(mat, v0, 1e-13, None, "rayleigh", 2000)
    shifted, steps, _ = _power(mat, v0, 1e-13, 2.0, "rayleigh", 2000)
    assert abs(float(plain) - 2.0) > 1e-2  # the stall the shift exists for
    # The shifted spectrum's gap is 3.5/4: stopped at 1e-13 relative change, 1e-10 relative.
    np.testing.assert_allclose(shifted, 2.0, rtol=1e-10)
    assert int(steps) < 2000


def test_power_iteration_traced_cap_and_warm_start(getkey):
    """Under jit and vmap, with the cap a traced integer; a warm start from the converged
    vector stops after the two products `min_iters` asks for."""
    rng = _rng(getkey())
    mats = np.stack([_symmetric(rng, [4.0 + i, 1.0, 0.5, -0.5, 0.2]) for i in range(3)])
    v0 = jnp.asarray(ops.unit_normal(getkey(), jnp.zeros(5)))

    @jax.jit
    @jax.vmap
    def run(mat, cap):
        op = lx.MatrixLinearOperator(mat)
        first = ops.power_iteration(op, v0, num_iters=cap, rtol=1e-12, estimate="norm")
        again = ops.power_iteration(
            op, first.vector, num_iters=cap, rtol=1e-6, estimate="norm", min_iters=2,
            value0=first.value,
        )  # fmt: skip
        return first.value, first.steps, again.value, again.steps

    caps = jnp.array([500, 500, 3])
    value, steps, warm, warm_steps = run(jnp.asarray(mats), caps)
    np.testing.assert_allclose(value[:2], [4.0, 5.0], rtol=1e-10)
    assert int(steps[2]) == 3 and abs(float(value[2]) - 6.0) > 1e-6  # capped short
    np.testing.assert_allclose(warm[:2], [4.0, 5.0], rtol=1e-10)
    assert [int(s) for s in warm_steps[:2]] == [2, 2]


@eqx.filter_jit
def _spectra(problem, w, key_c, key_p):
    flat = _flatten(problem)
    n = flat.h0.shape[0]
    sigma = ops.kernel(ops.problem_jacobian(flat), n)
    hess = ops.hessian(lambda u: problem.objective(flat.unravel(u)), w)
    full = ops.lanczos(sigma, jax.random.normal(key_c, (flat.h0.size,), w.dtype), flat.h0.size)
    full_h = ops.lanczos(hess, jax.random.normal(key_p, w.shape, w.dtype), w.size)
    part_h = ops.lanczos(hess.mv, jax.random.normal(key_p, w.shape, w.dtype), 12)
    return full, full_h, part_h


def test_lanczos_matches_eigvalsh(getkey):
    problem = _problem(getkey())
    w0 = ravel_pytree(problem.params0)[0]
    w = w0 + 0.3 * _rng(getkey()).standard_normal(w0.shape)
    jac, _, hess = (np.asarray(a) for a in _dense(problem, w0, w))
    full, full_h, part_h = _spectra(problem, jnp.asarray(w), getkey(), getkey())
    ev_k = np.linalg.eigvalsh(jac @ jac.T / 6)
    ev_h = np.linalg.eigvalsh(hess)
    assert ev_h[0] < 0 < ev_h[-1]  # an indefinite Hessian away from w0
    # As many steps as the dimension: every eigenvalue, 1e-10 of the spectral radius.
    np.testing.assert_allclose(full, ev_k, rtol=0, atol=1e-10 * ev_k[-1])
    radius = np.abs(ev_h).max()
    np.testing.assert_allclose(full_h, ev_h, rtol=0, atol=1e-10 * radius)
    # Fewer steps: the extreme Ritz values are inner bounds (rounding: 1e-12 of the radius).
    assert part_h[-1] <= ev_h[-1] + 1e-12 * radius and part_h[0] >= ev_h[0] - 1e-12 * radius


def _factorize(params, inputs):
    return inputs @ params["u"] @ params["v"]


def test_second_derivative_norm_of_matrix_factorization(getkey):
    """h(U, V) = U V on identity inputs (d x k outputs, inner rank r): ||D^2 h|| = 1/sqrt(d)
    exactly (see `test_hessian_norm_of_matrix_factorization_closed_form`); its contractions
    H_c have eigenvalues in +/- pairs, where only the shifted iteration reaches the top."""
    d, k, r = 3, 2, 8
    rng = _rng(getkey())
    params = {"u": rng.standard_normal((d, r)), "v": rng.standard_normal((r, k)) / r}
    y = rng.standard_normal((d, k))
    problem = gf.Problem(_factorize, params, np.eye(d), gf.SquareLoss(y))
    # D^2 h is constant for this quadratic model, so every point of the ball gives the same
    # norm; lipschitz_dh runs only the shifted iteration on D^2 h there (4 starts, stopped at
    # 1e-10 relative change): 1e-8 relative.
    est = gf.lipschitz_dh(problem, 1.0, num_points=2)
    np.testing.assert_allclose(est.values, 1 / np.sqrt(d), rtol=1e-8)
    # operator_norms reads the same norm from the same iteration, and ||Dh(w0)|| from the
    # power iteration on J^T J / n: against eigvalsh of the dense J. Stopped at 1e-10 relative
    # change of the quotient, with a close second eigenvalue: 1e-6 relative.
    jac_norm, hess_norm = gf.operator_norms(problem, num_starts=4)
    assert hess_norm == est.values[0]
    w0 = ravel_pytree(problem.params0)[0]
    jac = np.asarray(_dense(problem, w0, w0)[0])
    n = problem.loss.targets.shape[0]
    np.testing.assert_allclose(jac_norm**2, np.linalg.eigvalsh(jac.T @ jac / n)[-1], rtol=1e-6)


def test_power_iteration_rejects_an_unknown_estimate():
    op = lx.MatrixLinearOperator(jnp.eye(2))
    with pytest.raises(ValueError, match="`estimate` must be 'rayleigh' or 'norm'"):
        ops.power_iteration(op, jnp.ones(2), num_iters=3, rtol=None, estimate="max")


@eqx.filter_jit
def _largest(mat, v0, rtol, max_iters):
    op = lx.MatrixLinearOperator(mat, lx.symmetric_tag)
    return ops.lanczos_largest(op, v0, max_iters=max_iters, rtol=rtol)


def _power_quotient(mat, v0, steps):
    # The Rayleigh quotient after `steps` power iterations (numpy): the value a Krylov space
    # of dimension steps + 1 can only improve on.
    v = v0 / np.linalg.norm(v0)
    for _ in range(steps):
        v = mat @ v
        v = v / np.linalg.norm(v)
    return float(v @ mat @ v)


@pytest.mark.parametrize("spectrum", ["clustered top", "indefinite"])
def test_lanczos_largest_against_eigvalsh(getkey, spectrum):
    rng = _rng(getkey())
    dim = 60
    if spectrum == "clustered top":  # as the Hessians of `solver="auto"`
        eigs = np.concatenate([[1.0, 0.97, 0.9, 0.85], rng.uniform(-0.05, 0.3, dim - 4)])
    else:
        eigs = rng.standard_normal(dim)
    mat = _symmetric(rng, eigs)
    exact = np.linalg.eigvalsh(mat)
    v0 = rng.standard_normal(dim)
    for rtol in (5e-2, 1e-3):
        run = _largest(mat, v0, rtol, dim)
        value, residual, steps = float(run.value), float(run.residual), int(run.steps)
        # Stopped on the residual, which bounds the distance to an eigenvalue (Kahan-Weinstein);
        # never above lambda_max; at least the power iteration's quotient with as many products.
        assert residual <= rtol * abs(value)
        assert np.min(np.abs(exact - value)) <= residual * (1 + 1e-8) + 1e-13
        assert value <= exact[-1] + 1e-13
        assert value >= _power_quotient(mat, v0, steps - 1) - 1e-13
        # And here the eigenvalue is the largest: within the residual of it.
        assert exact[-1] - value <= residual * (1 + 1e-8) + 1e-13
    assert steps < dim


def test_lanczos_largest_edge_cases(getkey):
    rng = _rng(getkey())
    # A dimension below the cap: the Krylov space runs out and the value is exact.
    small = _symmetric(rng, [3.0, -4.0, 1.0, 0.5, 2.0])
    run = _largest(small, rng.standard_normal(5), 1e-14, 20)
    np.testing.assert_allclose(run.value, 3.0, rtol=1e-12)
    assert int(run.steps) <= 5
    # An eigenvector as start: one product, the eigenvalue, residual 0 (rounding).
    vec = np.linalg.eigh(small)[1][:, 2]  # eigenvalue 1, not the largest
    run = _largest(small, vec, 1e-8, 20)
    assert int(run.steps) == 1 and abs(float(run.value) - 1.0) < 1e-12
    # The zero operator: 0, not NaN.
    run = _largest(np.zeros((4, 4)), rng.standard_normal(4), 5e-2, 20)
    assert float(run.value) == 0.0 and float(run.residual) == 0.0 and int(run.steps) == 1
    # float32: to its resolution.
    mat32 = _symmetric(rng, [2.0, 1.0, 0.5, -0.5, 0.1, 0.2]).astype(np.float32)
    run = _largest(mat32, rng.standard_normal(6).astype(np.float32), 1e-4, 20)
    assert run.value.dtype == np.float32
    np.testing.assert_allclose(run.value, 2.0, rtol=1e-4)


def test_lanczos_largest_under_vmap(getkey):
    # Each matrix stops at its own step; vmapped, every one gives what it gives alone.
    rng = _rng(getkey())
    mats = np.stack([_symmetric(rng, [4.0 + i, 3.9, 1.0, 0.5, -0.5, 0.2, 0.1]) for i in range(3)])
    v0 = rng.standard_normal(7)
    batched = jax.vmap(lambda m: _largest(m, v0, 1e-3, 7))(jnp.asarray(mats))
    for i, mat in enumerate(mats):
        alone = _largest(mat, v0, 1e-3, 7)
        np.testing.assert_allclose(batched.value[i], alone.value, rtol=1e-13)
        assert int(batched.steps[i]) == int(alone.steps)
    assert len({int(s) for s in batched.steps}) > 1
