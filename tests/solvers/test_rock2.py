"""ROCK2: the coefficient tables, one step (order, stability, compilation), the solver."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from gradflow.solvers import _rock2_tables as tables
from gradflow.solvers._rock2 import ROCK2, rock2_degree, rock2_stability_bound, rock2_step
from gradflow.solvers._stabilized import PowerIteration, SpectralBound

DEGREES = [m + 2 for m in tables.MS]


def _coefficients(k):
    """The recurrence coefficients of the k-th tabulated degree, read straight off the table."""
    start = sum(2 * m - 1 for m in tables.MS[:k])
    r = tables.RECF[start : start + 2 * tables.MS[k] - 1]
    return r[0], r[1::2], r[2::2], tables.FP1[k], tables.FP2[k]


def _stability_polynomial(k, z):
    """$R(z)$ of the k-th degree by the recurrence in numpy, pointwise (no power basis, which
    cancels catastrophically at these degrees)."""
    mu1, mu, kappa, sigma, tau = _coefficients(k)
    r_prev, r = np.ones_like(z), 1.0 + mu1 * z
    for mu_i, kappa_i in zip(mu, kappa):
        r_prev, r = r, mu_i * z * r + (1.0 + kappa_i) * r - kappa_i * r_prev
    return r * (1.0 + 2.0 * sigma * z + sigma * (sigma + tau) * z**2)


def _taylor3(k):
    """The first three Taylor coefficients of $R$ at 0, by truncated polynomial arithmetic."""
    mu1, mu, kappa, sigma, tau = _coefficients(k)
    shift = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # times z, truncated
    p_prev, p = np.array([1.0, 0.0, 0.0]), np.array([1.0, mu1, 0.0])
    for mu_i, kappa_i in zip(mu, kappa):
        p_prev, p = p, mu_i * shift @ p + (1.0 + kappa_i) * p - kappa_i * p_prev
    return np.convolve(p, [1.0, 2.0 * sigma, sigma * (sigma + tau)])[:3]


def test_table_layout():
    assert len(tables.MS) == len(tables.FP1) == len(tables.FP2) == 46
    assert len(tables.STABILITY_BOUNDS) == 46
    assert len(tables.RECF) == sum(2 * m - 1 for m in tables.MS)
    assert list(tables.MS) == sorted(set(tables.MS))
    assert DEGREES[0] == 3 and DEGREES[-1] == 200


@pytest.mark.parametrize("k", range(46))
def test_second_order_conditions(k):
    # R(0) = 1, R'(0) = 1, R''(0) = 1: Taylor coefficients 1, 1, 1/2, to 1e-13 absolute.
    np.testing.assert_allclose(_taylor3(k), [1.0, 1.0, 0.5], rtol=0, atol=1e-13)


@pytest.mark.parametrize("k", range(46))
def test_stability_interval(k):
    s = DEGREES[k]
    bound = tables.STABILITY_BOUNDS[k]
    # |R| <= 1 on [-l_s, 0] on a grid of Chebyshev points, about 40 per oscillation of R
    # (its roots cluster at the ends of the interval, as those of a Chebyshev polynomial do).
    theta = np.linspace(0.0, np.pi, 40 * s + 1)
    z = -0.5 * bound * (1.0 - np.cos(theta))
    assert np.max(np.abs(_stability_polynomial(k, z))) <= 1.0 + 1e-12
    # l_s is sharp: just beyond it, |R| > 1.
    assert np.abs(_stability_polynomial(k, np.array([-bound * (1 + 1e-5)])))[0] > 1.0
    # l_s ~ 0.81 s^2 (Abdulle and Medovikov 2001): 0.685 s^2 at s = 3, then increasing to 0.81.
    assert 0.68 * s**2 <= bound <= 0.811 * s**2
    if s >= 50:
        assert bound >= 0.809 * s**2


def test_degree_choice_against_a_scan_of_the_table():
    zs = [0.0, 1.0, 6.0, 6.2, 100.0, 1234.5, 32398.0, 32399.0, 1e9]
    for z in zs:
        expected = next((d for d, b in zip(DEGREES, tables.STABILITY_BOUNDS) if b >= z), 200)
        assert int(rock2_degree(z)) == expected
    for s, expected in [(0, 3), (3, 3), (22, 22), (23, 24), (150, 150), (151, 165), (900, 200)]:
        assert float(rock2_stability_bound(s)) == tables.STABILITY_BOUNDS[DEGREES.index(expected)]


@pytest.mark.parametrize("s", [3, 4, 12, 38, 200])
def test_step_is_the_stability_polynomial(s):
    # On y' = lambda y one step is y0 R(h lambda): the jax step against the numpy recurrence.
    k = DEGREES.index(s)
    z = -np.linspace(0.0, tables.STABILITY_BOUNDS[k], 17)
    lam = jnp.asarray(z)  # h = 1

    def vf(t, y):
        return (lam * y[0],)

    y0 = (jnp.ones_like(lam),)
    y1, y_error, f1, num_evals = jax.jit(rock2_step, static_argnums=0)(
        vf, 0.0, 1.0, y0, vf(0.0, y0), s
    )
    np.testing.assert_allclose(y1[0], _stability_polynomial(k, z), rtol=0, atol=1e-12)
    np.testing.assert_allclose(f1[0], z * y1[0], rtol=0, atol=1e-10)
    assert int(num_evals) == s
    # The embedded solution y1 - y_error has stability polynomial P_m(z) (1 + sigma z)^2.
    sigma, tau = tables.FP1[k], tables.FP2[k]
    w2 = 1.0 + 2.0 * sigma * z + sigma * (sigma + tau) * z**2
    embedded = np.where(w2 == 0.0, 0.0, _stability_polynomial(k, z) / w2) * (1 + sigma * z) ** 2
    np.testing.assert_allclose(y1[0] - y_error[0], embedded, rtol=0, atol=1e-12)


def _nonlinear_vf(t, y):
    u, v, w = y
    return (u * (1.0 - u), -u[:1] * v, jnp.sin(t) * w)


def _nonlinear_exact(t, u0):
    # u' = u (1 - u), v' = -u_1 v, w' = sin(t) w with v(0) = w(0) = 1.
    u = u0 / (u0 + (1.0 - u0) * np.exp(-t))
    v = np.full(2, (u0[0] * np.exp(t) + 1.0 - u0[0]) ** -1.0)
    return u, v, np.full(1, np.exp(1.0 - np.cos(t)))


@jax.jit
def _integrate(h, num_steps, s, u0):
    y0 = (u0, jnp.ones(2), jnp.ones(1))

    def body(n, carry):
        y, f = carry
        y1, _, f1, _ = rock2_step(_nonlinear_vf, n * h, h, y, f, s)
        return y1, f1

    y, _ = jax.lax.fori_loop(0, num_steps, body, (y0, _nonlinear_vf(0.0, y0)))
    return y


@pytest.mark.parametrize("s", [3, 10, 49])
def test_convergence_order_two(s):
    # Constant steps to T = 2 on a nonautonomous nonlinear ODE with a closed form: the fitted
    # log-log slope of the final error against h lies in [1.8, 2.3].
    u0 = jnp.array([0.2, 0.7])
    exact = np.concatenate(_nonlinear_exact(2.0, np.asarray(u0)))
    steps = np.array([8, 16, 32, 64])
    errors = []
    for n in steps:
        y = _integrate(2.0 / n, int(n), s, u0)
        errors.append(np.max(np.abs(np.concatenate(y) - exact)))
    slope = np.polyfit(np.log(2.0 / steps), np.log(errors), 1)[0]
    assert 1.8 <= slope <= 2.3, (slope, errors)


@jax.jit
def _decay(h, s, lam, num_steps):
    def body(n, carry):
        y, f = carry
        y1, _, f1, _ = rock2_step(lambda t, y: (lam * y[0],), n * h, h, y, f, s)
        return y1, f1

    y0 = (jnp.ones_like(lam),)
    return jax.lax.fori_loop(0, num_steps, body, (y0, (lam * y0[0],)))[0][0]


@pytest.mark.parametrize("s", [3, 10, 49, 200])
def test_stability_on_stiff_diagonal_system(s):
    # y' = -lambda y, lambda log-spaced in [1, 1e6]: no growth in 20 steps with h lambda_max
    # inside the stability interval; growth by 10 in two steps at 1.2 times its bound.
    lam = -jnp.logspace(0.0, 6.0, 61)
    bound = float(rock2_stability_bound(s))
    inside = _decay(0.999 * bound / 1e6, s, lam, 20)
    assert np.max(np.abs(inside)) <= 1.0
    outside = _decay(1.2 * bound / 1e6, s, lam, 2)
    assert np.abs(outside[-1]) > 10.0
    # The degree rock2_degree picks for the stiffest mode is stable too.
    s_auto = rock2_degree(0.999 * bound)
    assert int(s_auto) == s
    assert np.max(np.abs(_decay(0.999 * bound / 1e6, s_auto, lam, 20))) <= 1.0


def test_one_program_for_every_stage_count():
    traces = []

    def step(t0, h, y0, s):
        traces.append(None)
        return rock2_step(_nonlinear_vf, t0, h, y0, _nonlinear_vf(t0, y0), s)

    step = jax.jit(step)
    y0 = (jnp.array([0.2, 0.7]), jnp.ones(2), jnp.ones(1))
    out5 = step(0.0, 0.1, y0, 5)
    out22 = step(0.0, 0.1, y0, 22)
    assert len(traces) == 1
    assert int(out5[3]) == 5 and int(out22[3]) == 22
    # Both agree with the same step run eagerly, where every evaluation is a Python call.
    calls = []

    def counted(t, y):
        calls.append(None)
        return _nonlinear_vf(t, y)

    for s, out in ((5, out5), (22, out22)):
        calls.clear()
        with jax.disable_jit():
            eager = rock2_step(counted, 0.0, 0.1, y0, _nonlinear_vf(0.0, y0), s)
        assert len(calls) == s
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(eager)):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def _stiff_linear_system():
    # The gradient flow of F(y) = y^T H y / 2, H symmetric with eigenvalues in [1, 1e4], the
    # state a tuple of two vectors.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    hessian = q @ np.diag(np.logspace(0.0, 4.0, 8)) @ q.T
    y0 = rng.standard_normal(8)
    return hessian, y0


@pytest.mark.parametrize(
    "spectral_radius", [PowerIteration(), SpectralBound(1e4)], ids=["power", "bound"]
)
def test_rock2_solver_against_radau(spectral_radius):
    hessian, y0 = _stiff_linear_system()
    ts = np.linspace(0.0, 1.0, 6)
    reference = scipy.integrate.solve_ivp(
        lambda t, y: -hessian @ y,
        (0.0, 1.0),
        y0,
        method="Radau",
        t_eval=ts,
        rtol=1e-12,
        atol=1e-14,
    ).y.T
    h = jnp.asarray(hessian)

    def vf(t, y, args):
        g = h @ jnp.concatenate(y)
        return (-g[:5], -g[5:])

    sol = dfx.diffeqsolve(
        dfx.ODETerm(vf),
        ROCK2(spectral_radius),
        0.0,
        1.0,
        None,
        (jnp.asarray(y0[:5]), jnp.asarray(y0[5:])),
        saveat=dfx.SaveAt(ts=ts, solver_state=True),
        stepsize_controller=dfx.PIDController(rtol=1e-5, atol=1e-8),
        max_steps=10_000,
    )
    ys = np.concatenate(sol.ys, axis=1)
    # Agreement to 1e-5 absolute on a solution of norm ~3 at rtol 1e-5 (measured: 1.6e-6).
    np.testing.assert_allclose(ys, reference, rtol=0, atol=1e-5)
    # Steps beyond the reach of classical explicit methods: h * 1e4 above the stability bound
    # 11.8 of four stages (measured: up to 9-10 stages, about 2000 steps, 3.6 stages a step).
    assert int(sol.solver_state.stages_max) >= 5
    assert int(sol.stats["num_steps"]) < 5000


def test_rock2_solver_checks_its_arguments():
    with pytest.raises(ValueError, match="`max_stages` must lie in \\[3, 200\\]"):
        ROCK2(max_stages=201)
    assert list(ROCK2(max_stages=40).stage_counts()) == DEGREES[: DEGREES.index(38) + 1]


def test_vmap_over_stage_counts_and_float32():
    # A batch of stage counts runs as one while loop (the longest count); each member agrees
    # with its own unbatched step to rounding (1e-12 after 200 stages), and a float32 state
    # stays float32.
    y0 = (jnp.array([0.2, 0.7]), jnp.ones(2), jnp.ones(1))
    f0 = _nonlinear_vf(0.0, y0)
    counts = jnp.array([3, 22, 200])
    step = jax.jit(lambda s: rock2_step(_nonlinear_vf, 0.0, 0.1, y0, f0, s))
    batched = jax.vmap(step)(counts)
    for i, s in enumerate([3, 22, 200]):
        single = step(s)
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[i], b, rtol=1e-12, atol=1e-14)
    y32 = jax.tree.map(lambda x: x.astype(jnp.float32), y0)
    out = rock2_step(_nonlinear_vf, 0.0, 0.1, y32, _nonlinear_vf(0.0, y32), 10)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(out[:3]))
    np.testing.assert_allclose(
        np.concatenate(out[0]),
        np.concatenate(step(10)[0]),
        rtol=1e-6,
    )
