"""The symbolic statements of `theory/` against independent numbers: the exact flows evaluated
with 50 digits, gf.solve, scipy integrations of the derived ODEs, scipy quadrature of the
implicit-bias potentials' defining integrals."""

import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad, solve_ivp
from scipy.optimize import brentq

import gradflow as gf
import theory
from theory.toy import alpha as A_SYM, t as T_SYM, w0 as W0_SYM, y as Y_SYM

W0, Y = 0.8, 1.3


def scalar_problem(alpha):
    model = gf.models.ScalarSquare()
    return gf.Problem(
        model,
        model.init(W0),
        jnp.zeros((1, 1)),
        gf.SquareLoss(jnp.array([Y])),
        alpha=alpha,
        center=True,
    )


def test_gap_series_matches_the_flow_at_alpha_1e3():
    # The bar: c0 + c1/alpha matches alpha^2 |w - wbar| to 1e-4 relative at alpha = 1e3,
    # while c0 alone is off by O(1/alpha).
    alpha, ts = 1e3, np.linspace(0.0, 3.0, 13)[1:]
    sol = gf.solve(scalar_problem(alpha), ts=ts, rtol=1e-10, atol=1e-13)
    measured = alpha**2 * np.asarray(sol.param_gap)
    series = theory.gap_series()
    first = np.abs(series.numeric(1)(ts, W0, Y, alpha))
    leading = np.abs(series.numeric(0)(ts, W0, Y, alpha))
    np.testing.assert_allclose(measured, first, rtol=1e-4)
    assert np.max(np.abs(measured - leading) / measured) > 3e-4
    # The series itself against the exact closed form with 50 digits: the remainder is
    # O(1/alpha^2) = 1e-6 relative.
    flows = theory.scalar_model_flows()
    exact = np.array(
        [
            float(flows.evaluate(flows.gap(), {A_SYM: alpha, W0_SYM: W0, Y_SYM: Y, T_SYM: t}))
            for t in ts[::3]
        ]
    )
    np.testing.assert_allclose(alpha**2 * np.abs(exact), first[::3], rtol=1e-5)


def test_next_to_lazy_ode_gives_the_leading_constant():
    # dsolve of the next-to-lazy system equals the limit of the exact series (two derivations).
    u, v = theory.scalar_next_to_lazy()
    assert sp.simplify(v - theory.gap_series().leading) == 0
    assert sp.simplify(u - Y_SYM / (2 * W0_SYM) * (1 - sp.exp(-4 * W0_SYM**2 * T_SYM))) == 0


def test_next_to_lazy_system_scipy_vs_jax():
    # A depth-2 diagonal net with 2 inputs and 3 samples: the sympy system integrated by scipy
    # (LSODA-free RK45 at 1e-12) against gf.check.next_to_lazy (JVPs of JVPs, diffrax).
    x = np.array([[1.0, 0.5], [-0.3, 1.2], [0.7, -0.8]])
    y = np.array([0.3, -0.2, 0.5])
    w0 = np.array([[0.9, 1.1], [1.3, 0.7]])
    ws = sp.symbols("a0 a1 b0 b1", real=True)
    beta = [ws[0] * ws[2], ws[1] * ws[3]]
    beta0 = [w0[0, 0] * w0[1, 0], w0[0, 1] * w0[1, 1]]
    h = [
        sum(sp.nsimplify(x[i, j]) * (beta[j] - sp.nsimplify(beta0[j])) for j in range(2))
        for i in range(3)
    ]
    system = theory.next_to_lazy_system(h, ws, w0.ravel(), y, 3)
    fu, fv, fo = system.numeric()

    def rhs(t, z):
        u, v = z[:4], z[4:]
        return np.concatenate([fu(u, v), fv(u, v)])

    ts = np.linspace(0.0, 3.0, 7)
    ref = solve_ivp(rhs, (0, 3.0), np.zeros(8), t_eval=ts, rtol=1e-12, atol=1e-14)
    model = gf.models.DiagonalNet(2)
    problem = gf.Problem(
        model,
        {"w": jnp.asarray(w0)},
        jnp.asarray(x),
        gf.SquareLoss(jnp.asarray(y)[:, None]),
        center=True,
    )
    ntl = gf.check.next_to_lazy(problem, ts)
    np.testing.assert_allclose(ntl.u, ref.y[:4].T, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(ntl.v, ref.y[4:].T, rtol=1e-8, atol=1e-11)
    out = np.array([fo(ref.y[:4, i], ref.y[4:, i]) for i in range(len(ts))])
    np.testing.assert_allclose(
        ntl.output_gap, np.sqrt(np.sum(out**2, 1) / 3), rtol=1e-8, atol=1e-11
    )


def test_next_to_lazy_system_rejects_uncentered_model():
    w = sp.Symbol("w")
    with pytest.raises(ValueError, match=r"h\(w0\) = 0"):
        theory.next_to_lazy_system([w**2], [w], [1.0], [1.0], 1)


def test_finite_horizon_bounds_solve_their_comparison_odes():
    st = theory.finite_horizon()
    s = theory.statements
    d, p = st.expr("output_gap_bound"), st.expr("param_gap_bound")
    c1, c2 = st.expr("C1"), st.expr("C2")
    assert sp.simplify(d.diff(s.t) - (c1 / s.alpha + c2 * d)) == 0
    assert sp.simplify(d.subs(s.t, 0)) == 0 and sp.simplify(p.subs(s.t, 0)) == 0
    rhs = (s.LDh * st.expr("radius") * st.expr("G") + s.J * s.L * d) / s.alpha
    assert sp.simplify(p.diff(s.t) - rhs) == 0
    # The integrated parameter bound sits below the paper's T C / alpha^2 at t = T.
    rng = np.random.default_rng(0)
    for _ in range(20):
        vals = dict(zip(["R_0", "L", "J", "L_Dh", "T", "alpha"], rng.uniform(0.1, 3.0, 6)))
        ours = st.numeric("param_gap_bound")(**vals, t=vals["T"])
        paper = st.numeric("paper_param_gap_bound")(**vals)
        assert 0 < ours <= paper


def test_over_parameterized_constants():
    st = theory.over_parameterized()
    s = theory.statements
    # At alpha = ||y*||/C0 with h(w0) = 0 the displacement bound is half the ball radius, so the
    # flow stays where Sigma(w) >= sigma^2/4 (the proof's invariant).
    disp = st.expr("displacement_bound").subs({s.res0: s.ystar, s.alpha: st.expr("alpha_min")})
    assert sp.simplify(disp - st.expr("ball_radius") / 2 * s.kappa**0) == 0
    c0 = st.numeric("C0")(sigma=0.5, kappa=1.0, J=2.0, L_Dh=3.0)
    assert c0 == pytest.approx(0.125 / (32 * 6.0), rel=1e-15)
    with pytest.raises(ValueError, match="needs values"):
        st.numeric("C0")(sigma=0.5)


def test_statement_laws():
    a, s_t = theory.homogeneity_time_change()
    s = theory.statements
    assert sp.simplify(a - s.lam**s.q) == 0
    assert sp.simplify(s_t - s.lam ** (2 * s.q - 2) * s.t) == 0
    sc = theory.scale_criterion()
    # The numeric forms the homogeneity check uses: alpha = tau^q, s(t) = tau^(2q - 2) t.
    vals = {"lambda": 2.0, "q": 3}
    assert sc.numeric("homogeneity_alpha")(**vals) == pytest.approx(8.0, rel=1e-15)
    ts = np.linspace(0.0, 2.0, 5)
    np.testing.assert_allclose(sc.numeric("homogeneity_time")(**vals, t=ts), 16.0 * ts, rtol=1e-15)
    sc = theory.scale_criterion()
    assert sc.expr("width_exponent_sqrt") == sp.Rational(-1, 2)
    assert sc.expr("width_exponent_mean_field") == 0
    up = theory.under_parameterized()
    assert sp.simplify(up.expr("example_rate_deviation") * s.alpha).free_symbols.isdisjoint(
        {s.alpha}
    )


# Each predicted exponent, the expression it is derived from (sympy.limit in theory/), and the
# paper's value (PAPER.md: O(1/alpha), O(1/alpha^2), O(log(alpha)/alpha^2), ...).
EXPONENTS = {
    "next_to_lazy": {
        "param_distance": ("param_distance", -1.0),
        "param_gap": ("param_gap", -2.0),
        "output_gap": ("output_gap", -1.0),
        "param_distance_limit_error": ("param_distance_limit_error", -1.0),
        "param_gap_limit_error": ("param_gap_limit_error", -1.0),
        "output_gap_limit_error": ("output_gap_limit_error", -1.0),
    },
    "finite_horizon": {
        "param_distance": ("distance_bound", -1.0),
        "param_gap": ("param_gap_bound", -2.0),
        "output_gap": ("output_gap_bound", -1.0),
    },
    "over_parameterized": {
        "param_distance": ("displacement_bound", -1.0),
        "param_gap": ("uniform_gap_rate", -2.0),
        "output_gap": ("uniform_output_gap_rate", -1.0),
    },
    "under_parameterized": {"rate_deviation": ("example_rate_deviation", -1.0)},
    "scale_criterion": {
        "kappa_centered": ("kappa_centered", -1.0),
        "kappa_uncentered": ("kappa_uncentered", 0.0),
        "width_sqrt": ("width_law_sqrt", -0.5),
        "width_mean_field": ("width_law_mean_field", 0.0),
    },
    "off_training_set": {
        "off_training_gap": ("paper_bound", -1.0),
        "param_distance": ("distance_hypothesis", -1.0),
        "param_gap": ("gap_hypothesis", -2.0),
    },
}


@pytest.mark.parametrize("theorem", sorted(EXPONENTS))
def test_exponents_are_derived_from_the_bounds(theorem):
    st = theory.STATEMENTS[theorem]()
    assert dict(st.exponents) == {k: v for k, (_, v) in EXPONENTS[theorem].items()}
    rng = np.random.default_rng(1)
    for quantity, (name, paper) in EXPONENTS[theorem].items():
        e = st.expr(name)
        var = theory.statements.width if quantity.startswith("width") else theory.statements.alpha
        assert st.exponent(quantity) == float(theory.growth_exponent(e, var)) == paper
        # Independently of sympy.limit: the local slope of the bound between 1e30 and 1e31, with
        # every other symbol drawn in [0.5, 2], is the exponent up to the lower-order terms:
        # 1/alpha, and k/log(alpha) for a factor log(alpha)^k (k <= 2: 0.03; tolerance 0.05).
        f = st.numeric(name)
        others = [sym.name for sym in e.free_symbols if sym != var]
        vals = dict(zip(others, rng.uniform(0.5, 2.0, len(others))))
        lo, hi = (float(f(**vals, **{var.name: x})) for x in (1e30, 1e31))
        assert np.log(hi / lo) / np.log(10.0) == pytest.approx(paper, abs=0.05), quantity


def test_predicted_slopes_are_the_finite_horizon_exponents():
    assert dict(gf.PREDICTED_SLOPES) == dict(theory.finite_horizon().exponents)
    assert gf.PREDICTED_SLOPES == {"param_distance": -1.0, "param_gap": -2.0, "output_gap": -1.0}
    assert gf.sweeps._sweep.PREDICTED_SLOPES.to_dict() == dict(gf.PREDICTED_SLOPES)
    with pytest.raises(KeyError):
        gf.PREDICTED_SLOPES["kappa_centered"]
    with pytest.raises(ValueError, match="Unknown theorem 'lazyness'"):
        gf._theory.statement_exponents("lazyness")


def test_under_parameterized_example_rate_against_the_flow():
    # h(w) = (w^2 - w0^2) a on n = 3 samples (p = 1, rank 1 < 3): the measured geometric rate of
    # the flow against theory.under_parameterized().example_rate at each alpha.
    a_vec = jnp.array([1.0, -0.5, 2.0])
    y = jnp.array([0.2, 0.4, -0.1])
    w0 = 0.9

    def apply(params, inputs):
        return params["w"] ** 2 * inputs

    problem = gf.Problem(apply, {"w": jnp.asarray(w0)}, a_vec, gf.SquareLoss(y), center=True)
    spec = gf.check.NamedProblem("scalar-curve", "h(w) = (w^2 - w0^2) a", problem)
    report = gf.check.check_under_parameterized(spec, alphas=(10.0, 30.0, 100.0))
    rate = theory.under_parameterized().numeric("example_rate")
    a2, ay = float(a_vec @ a_vec), float(a_vec @ y)
    for c, alpha in zip(report.constants, (10.0, 30.0, 100.0)):
        exact = rate(w_0=w0, a2=a2, ay=ay, n=3, alpha=alpha)
        assert c.predicted == pytest.approx(exact, rel=1e-8)
        assert c.measured == pytest.approx(exact, rel=1e-4)
    assert report.verdict == "pass"


def test_off_training_set_substitution_gives_the_papers_bound():
    st = theory.off_training_set()
    s = theory.statements
    a = s.alpha
    # The decomposition is an identity, and the Taylor remainder integrates to M2 d^2 / 2.
    assert sp.expand(st.expr("difference") - st.expr("decomposition")) == 0
    assert sp.expand(st.expr("taylor_remainder_bound") - s.M2 * s.dist_T**2 / 2) == 0
    assert sp.expand(st.expr("sharp_bound") - a * (s.M2 * s.dist_T**2 / 2 + s.M1 * s.gap_T)) == 0
    # Substituting the hypotheses into the sharp bound gives the paper's expression exactly.
    paper = s.C * sp.log(a) / a * (s.M1 + s.C * s.M2 * sp.log(a) / 2)
    hyps = {s.dist_T: s.C * sp.log(a) / a, s.gap_T: s.C * sp.log(a) / a**2}
    assert sp.expand(st.expr("sharp_bound").subs(hyps) - paper) == 0
    assert sp.expand(st.expr("paper_bound") - paper) == 0
    # The exponent is read from the statement (sympy.limit), not typed: -1; numerically, the
    # local slope of the bound tends to it (|slope + 1| ~ 2/log(alpha) at large alpha).
    assert st.expr("exponent") == -1 and st.exponent("off_training_gap") == -1.0
    assert st.exponent("param_distance") == -1.0 and st.exponent("param_gap") == -2.0
    f = st.numeric("paper_bound")
    vals = dict(C=0.7, M_1=1.3, M_2=2.1)
    for big in (1e8, 1e50):
        slope = np.log(f(alpha=2 * big, **vals) / f(alpha=big, **vals)) / np.log(2.0)
        assert -1.0 < slope < -1.0 + 3.0 / np.log(big)
    # C_from_* solve the hypotheses at equality.
    c = st.numeric("C_from_distance")(alpha=50.0, dist_T=0.02)
    assert c * np.log(50.0) / 50.0 == pytest.approx(0.02, rel=1e-15)


# ------------------------------------------------------- the implicit bias of diagonal nets


def test_implicit_bias_potential_is_the_papers_q():
    # Woodworth et al. (2020), Theorem 1: q derived from the flow (link 2 sinh, inverse by
    # sympy.solve, integral by parts) is the printed q; q' = asinh(z/2); q(0) = 0, q even; the
    # KKT form beta = 2 a^2 sinh(z) makes dQ_a/dbeta = z.
    st = theory.implicit_bias()
    b = theory.diagonal_net.beta
    q, paper = st.expr("q"), st.expr("q_paper")
    assert sp.simplify((q - paper).rewrite(sp.log)) == 0
    assert sp.simplify((st.expr("q_prime") - sp.asinh(b / 2)).rewrite(sp.log)) == 0
    assert q.subs(b, 0) == 0 and st.expr("q_even") == 0 and st.expr("kkt_residual") == 0
    assert sp.simplify(st.expr("link") - 2 * sp.sinh(theory.diagonal_net.z)) == 0
    # Numerically: the paper's q at 50 digits (mpmath, through sympy.N) against the numeric
    # q of theory (the Legendre form), over 300 orders of magnitude: 1e-13 relative.
    f = theory.diagonal_net_potential(2).numeric()
    for v in ("1e-150", "-1e-8", "0.3", "-7", "1e8", "-1e150"):
        exact = float(sp.N(paper.subs(b, sp.Float(v, 60)), 50))
        assert float(f(np.array([float(v)]))[0]) == pytest.approx(exact, rel=1e-13), v
    # The closed form's lambdify agrees at moderate arguments (it cancels at the extremes).
    zs = np.linspace(-5.0, 5.0, 11)
    closed = theory.diagonal_net_potential(2).numeric(closed_form=True)
    np.testing.assert_allclose(closed(zs), f(zs), rtol=1e-13, atol=1e-15)
    # q' = asinh(z/2) against central differences of the numeric q (step 1e-5: 1e-9).
    h = 1e-5
    np.testing.assert_allclose((f(zs + h) - f(zs - h)) / (2 * h), np.arcsinh(zs / 2), atol=1e-9)


def test_implicit_bias_limits_are_derived_and_hold_numerically():
    st = theory.implicit_bias()
    a, t = theory.diagonal_net.a, theory.statements.t
    bsym = sp.Symbol("b", positive=True)
    # sympy.limit: a^2 Q_a(b) -> b^2/4 and Q_a(b)/log(1/a) -> 2b; Taylor q = z^2/4 - z^4/192.
    assert st.expr("kernel_constant") == sp.Rational(1, 4)
    assert st.expr("rich_constant") == 2
    assert sp.expand(st.expr("kernel_limit") - bsym**2 / 4) == 0
    b = theory.diagonal_net.beta
    assert sp.expand(st.expr("q_series") - (b**2 / 4 - b**4 / 192)) == 0
    assert st.exponent("potential_kernel") == -2.0
    assert dict(st.exponents) == gf._theory.statement_exponents("implicit_bias")
    # Independently, the paper's q at 60 digits: at a = 1e3, a^2 Q_a(b) = b^2/4 (1 - b^2/(48
    # a^4) + ...), so the relative gap is b^2/(48 a^4) to 1e-6 of itself.
    paper = st.expr("q_paper")
    for bv in (sp.Rational(13, 10), sp.Rational(-7, 2)):
        Q = lambda av: av**2 * paper.subs(b, bv / av**2)  # noqa: E731
        av = sp.Integer(1000)
        kern = sp.N(av**2 * Q(av) / (bv**2 / 4) - 1, 60)
        assert float(kern) == pytest.approx(-float(bv**2) / (48 * 1e12), rel=1e-6)
        # At a = 1e-50: Q_a(b) = 2|b| log(1/a) + |b|(log|b| - 1) + O(a^2): the rich limit
        # and its next term, to 1e-12 of the next term.
        av = sp.Rational(1, 10**50)
        rest = sp.N(Q(av) - 2 * abs(bv) * sp.log(1 / av), 60)
        assert float(rest) == pytest.approx(float(abs(bv) * (sp.log(abs(bv)) - 1)), rel=1e-12)
    # The scale mapping: alpha = a^D and time a^(2D - 2) t, from the homogeneity time change.
    D = sp.Symbol("D", positive=True, integer=True)
    assert st.expr("alpha_of_scale") == a**D
    assert sp.simplify(st.expr("time_of_scale") - a ** (2 * D - 2) * t) == 0


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_diagonal_flow_solves_its_ode_and_gives_the_link(depth):
    dn = theory.diagonal_net
    u, v = theory.diagonal_flow(depth)
    S, a = dn.S, dn.a
    # du/dS = -D u^(D-1), dv/dS = D v^(D-1), u(0) = v(0) = a, symbolically.
    assert sp.simplify(u.diff(S) + depth * u ** (depth - 1)) == 0
    assert sp.simplify(v.diff(S) - depth * v ** (depth - 1)) == 0
    assert sp.simplify(u.subs(S, 0) - a) == 0 and sp.simplify(v.subs(S, 0) - a) == 0
    pot = theory.diagonal_net_potential(depth)
    z = dn.z
    if depth == 2:
        assert sp.simplify(pot.link - 2 * sp.sinh(z)) == 0
    else:
        # The link's domain is |z| < 1: it has a pole at z = 1.
        assert pot.domain == (-1, 1)
        assert sp.limit(pot.link, z, 1, "-") == sp.oo
        # The paper's printed link, h_D(z) = (1 - z)^(-D/(D-2)) - (1 + z)^(-D/(D-2)).
        p = sp.Rational(depth, depth - 2)
        zs = np.linspace(-0.95, 0.95, 9)
        np.testing.assert_allclose(
            pot.numeric_link()(zs), (1 - zs) ** -float(p) + -((1 + zs) ** -float(p)), rtol=1e-13
        )
    # Against scipy: the scalar ODEs integrated in S at a = 0.7, then beta/a^D at S(z).
    av = 0.7
    c = float(-pot.z_of_S.subs({a: av, S: 1}))
    s_end = 0.9 / c

    def rhs(_, w):
        return [-depth * w[0] ** (depth - 1), depth * w[1] ** (depth - 1)]

    for sign in (1.0, -1.0):
        sol = solve_ivp(rhs, (0.0, sign * s_end), [av, av], rtol=1e-12, atol=1e-14)
        uu, vv = sol.y[:, -1]
        expected = (uu**depth - vv**depth) / av**depth
        got = float(pot.link.subs(z, -c * sign * s_end))
        assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_depth_d_potential_is_its_defining_integral(depth):
    # q_D(b) = int_0^b h_D^{-1}(s) ds by scipy quad, with h_D^{-1} by brentq on theory's
    # lambdified link, against the Legendre evaluation: 1e-11 relative (quad asked for 1e-12).
    pot = theory.diagonal_net_potential(depth)
    f, h = pot.numeric(), pot.numeric_link()
    hi = 50.0 if depth == 2 else 1 - 1e-3  # h_D(1 - 1e-3) > 1e4 at D <= 5

    def inverse(s):
        if s == 0:
            return 0.0
        return brentq(lambda z: h(np.float64(z)) - s, 0.0, hi, xtol=1e-300, rtol=1e-15)

    for b in (0.05, 0.5, 2.0, 30.0, 1e3):
        ref, err = quad(inverse, 0.0, b, epsabs=0.0, epsrel=1e-12, limit=200)
        assert float(f(np.array([b]))[0]) == pytest.approx(ref, rel=1e-11)
        assert float(f(np.array([-b]))[0]) == pytest.approx(ref, rel=1e-11)  # even
    # Near 0, q_D = b^2 / (2 h_D'(0)) + O(b^4), h_D'(0) = 2D/(D-2) (2 at D = 2) by sympy.
    slope = float(sp.diff(pot.link, theory.diagonal_net.z).subs(theory.diagonal_net.z, 0))
    assert slope == (2.0 if depth == 2 else 2.0 * depth / (depth - 2))
    for b in (1e-6, 1e-150):
        assert float(f(np.array([b]))[0]) == pytest.approx(b**2 / (2 * slope), rel=1e-11)
    # q_D' = h_D^{-1} (central differences), and the tau forms the evaluation uses equal the
    # derived link and its integral (1e-13).
    bs = np.array([-3.0, -0.2, 0.05, 1.0, 7.0])
    inv = pot.numeric_inverse_link()
    np.testing.assert_allclose((f(bs + 1e-5) - f(bs - 1e-5)) / 2e-5, inv(bs), rtol=1e-8)
    np.testing.assert_allclose(h(inv(bs)), bs, rtol=1e-13)
    if depth > 2:
        p = depth / (depth - 2)
        tau = np.linspace(-2.0, 2.0, 9)
        zs = np.tanh(tau)
        link_tau = 2 * np.cosh(tau) ** p * np.sinh(p * tau)
        conj_tau = (2 * np.cosh(tau) ** (p - 1) * np.cosh((p - 1) * tau) - 2) / (p - 1)
        H = sp.lambdify(theory.diagonal_net.z, pot.link_integral, "numpy")
        np.testing.assert_allclose(h(zs), link_tau, rtol=1e-13)
        np.testing.assert_allclose(H(zs), conj_tau, rtol=1e-12, atol=1e-14)
        with pytest.raises(ValueError, match="no closed form at depth"):
            pot.numeric(closed_form=True)
    with pytest.raises(ValueError, match="`depth` must be an integer >= 2; got 1"):
        theory.diagonal_net_potential(1)


def test_init_scale_acts_as_alpha():
    # theory: alpha = a^D, s = a^(2D-2) t. The flow of R(h) from a 1 (alpha = 1) at t against
    # the flow of F_alpha from 1 at alpha = a^D at s, depth 3: the same loss, and w = a v
    # (gf.solve at rtol 1e-10 on both: 1e-7 relative).
    depth = 3
    st = theory.implicit_bias()
    D = sp.Symbol("D", positive=True, integer=True)
    a, t = theory.diagonal_net.a, theory.statements.t
    av = 0.6
    alpha = float(st.expr("alpha_of_scale").subs({D: depth, a: av}))
    speed = float(st.expr("time_of_scale").subs({D: depth, a: av, t: 1}))
    x = np.array([[1.0, 0.5, -0.3], [0.2, -1.0, 0.8]])
    y = jnp.array([[0.7], [-0.4]])
    model = gf.models.DiagonalDifferenceNet(depth)
    ts = np.linspace(0.0, 4.0, 5)
    small = gf.Problem(model, model.init(3, tau=av), x, gf.SquareLoss(y), alpha=1.0)
    unit = gf.Problem(model, model.init(3), x, gf.SquareLoss(y), alpha=alpha)
    kw = dict(rtol=1e-10, atol=1e-12, linearized=False, save_params=True, throw=True)
    s1 = gf.solve(small, ts=ts, **kw)
    s2 = gf.solve(unit, ts=speed * ts, **kw)
    np.testing.assert_allclose(s1.loss, s2.loss, rtol=1e-7)
    np.testing.assert_allclose(s1.params["u"], av * s2.params["u"], rtol=1e-7)
    # The loss moved: the check compares a real trajectory (not two constants).
    assert float(s1.loss[-1]) < 0.5 * float(s1.loss[0])
