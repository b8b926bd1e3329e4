r"""The paper's theorems as symbolic statements: hypotheses, bounds and rates (sympy).

Notation (all norms in the output space $F$ use the empirical norm; parameter norms are
Euclidean): $R_0 = R(\alpha h(w_0))$, $L$ = Lipschitz constant of $\nabla R$, $J = \|Dh(w_0)\|$,
$L_{Dh}$ = Lipschitz constant of $Dh$ on the ball the theorem uses, $\sigma$ = smallest singular
value of $Dh(w_0)^\top$, $\kappa = M/m$ the condition number of $R$. For the off-training-set
statement, $M_1$, $M_2$ are the sup over a set $X$ of $\|D_w f(w_0, x)\|$ and of
$\mathrm{Lip}(D_w f(\cdot, x))$, and `dist_T`, `gap_T` the measured $\|w(T) - w_0\|$,
$\|w(T) - \bar w(T)\|$.

Each statement is a [`theory.Statement`][]: its expressions are derived here (the comparison
differential inequalities are solved with `sympy.dsolve`), and `numeric(name)` turns one into a
numpy function once (`sympy.lambdify`). The exponents a statement predicts are not typed in: each
is the [`theory.growth_exponent`][] of one of its expressions (a bound or a rate), found by
`sympy.limit`.
"""

from dataclasses import dataclass, field
from functools import lru_cache

import sympy as sp

from . import diagonal_net as _bias

t, T, alpha = sp.symbols("t T alpha", positive=True)
R0, L, J, LDh = sp.symbols("R_0 L J L_Dh", positive=True)
sigma, kappa, m, res0, ystar, h0 = sp.symbols("sigma kappa m r_0 y_star h_0", positive=True)
H, lam, q, width = sp.symbols("H lambda q width", positive=True)
w0 = sp.Symbol("w_0", positive=True)
C, M1, M2 = sp.symbols("C M_1 M_2", positive=True)
dist_T, gap_T = sp.symbols("dist_T gap_T", positive=True)


def growth_exponent(expr: sp.Expr, var: sp.Symbol = alpha) -> sp.Expr:
    r"""The power of `var` that `expr` behaves like as `var` grows,
    $\lim_{x \to \infty} \log e(x) / \log x$ (`sympy.limit`): $-1$ for $C/\alpha$, $-2$ for
    the $\log\alpha/\alpha^2$ of a uniform bound (a log factor does not change it), $0$ for a
    nonzero limit. `expr` must be positive for large `var` (a bound, a rate)."""
    return sp.limit(sp.log(expr) / sp.log(var), var, sp.oo)


def _exponents(
    exprs: tuple[tuple[str, sp.Expr], ...], sources: dict[str, str], var: sp.Symbol = alpha
) -> tuple[tuple[str, float], ...]:
    """`(quantity, exponent)` pairs: the growth exponent in `var` of the expression named
    `sources[quantity]` of `exprs`."""
    named = dict(exprs)
    return tuple((k, float(growth_exponent(named[e], var))) for k, e in sources.items())


@dataclass(frozen=True)
class Statement:
    """One theorem: its hypotheses (in words), its symbolic expressions, and the exponents in
    $\\alpha$ (or in the width) that it predicts for measured quantities.

    - `name`, `title`: identifier and one-line statement.
    - `hypotheses`: the assumptions, in words, in the order a check verifies them.
    - `exprs`: `(name, sympy expression)` pairs.
    - `exponents`: `(quantity, exponent)` pairs: the predicted power law of each quantity, each
      the [`theory.growth_exponent`][] of the expression that bounds it (or states its rate).
    """

    name: str
    title: str
    hypotheses: tuple[str, ...]
    exprs: tuple[tuple[str, sp.Expr], ...]
    exponents: tuple[tuple[str, float], ...] = ()
    notes: str = ""
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def expr(self, name: str) -> sp.Expr:
        for k, e in self.exprs:
            if k == name:
                return e
        raise KeyError(
            f"{self.name} has no expression {name!r}; it has {[k for k, _ in self.exprs]}."
        )

    def exponent(self, quantity: str) -> float:
        return dict(self.exponents)[quantity]

    def numeric(self, name: str):
        """`f(**values)`: the expression `name` as a numpy function of its free symbols, passed by
        their names (e.g. `alpha=10.0, t=ts`)."""
        if name not in self._cache:
            e = self.expr(name)
            syms = sorted(e.free_symbols, key=lambda s: s.name)
            fn = sp.lambdify(syms, e, "numpy")
            names = [s.name for s in syms]

            def call(**values):
                missing = [k for k in names if k not in values]
                if missing:
                    raise ValueError(f"{self.name}.{name} needs values for {missing}.")
                return fn(*[values[k] for k in names])

            call.__doc__ = f"{name} = {e}"
            self._cache[name] = call
        return self._cache[name]


@lru_cache(maxsize=1)
def finite_horizon() -> Statement:
    r"""Finite-horizon theorem ($h(w_0) = 0$, $t \le T$), with the constants of the proof.

    1. Energy: $\|w(t) - w_0\| \le \int_0^t \|w'\| \le \sqrt{t (F_\alpha(w_0) - F_\alpha(w(t)))}
       \le \sqrt{t R_0}/\alpha$.
    2. $G = \sup_t \|\nabla R(y(t))\| \le \sqrt{2 L R_0}$.
    3. Output gap $D = \|y - \bar y\|$: $D' \le C_1/\alpha + C_2 D$ with
       $C_1 = 2 L_h L_{Dh} \sqrt{T R_0}\, G$, $C_2 = L J^2$, $L_h \le J + L_{Dh}\sqrt{T R_0}/\alpha$
       (sup of $\|Dh\|$ on the ball); solved with `dsolve`.
    4. Parameter gap $P = \|w - \bar w\|$:
       $P' \le \frac1\alpha (L_{Dh} \frac{\sqrt{T R_0}}{\alpha} G + J L D(t))$, $P(0) = 0$;
       solved with `dsolve` (the paper's bound $T C/\alpha^2$ bounds this integral from above).
    """
    G = sp.sqrt(2 * L * R0)
    radius = sp.sqrt(T * R0) / alpha
    Lh = J + LDh * radius
    C1 = 2 * Lh * LDh * sp.sqrt(T * R0) * G
    C2 = L * J**2
    D, P = sp.Function("D"), sp.Function("P")
    d_sol = sp.dsolve(sp.Eq(D(t).diff(t), C1 / alpha + C2 * D(t)), D(t), ics={D(0): 0}).rhs
    p_rhs = (LDh * radius * G + J * L * d_sol) / alpha
    p_sol = sp.dsolve(sp.Eq(P(t).diff(t), p_rhs), P(t), ics={P(0): 0}).rhs
    exprs = (
        ("distance_bound", sp.sqrt(t * R0) / alpha),
        ("radius", radius),
        ("G", G),
        ("C1", sp.simplify(C1)),
        ("C2", C2),
        ("output_gap_bound", sp.simplify(d_sol)),
        ("param_gap_bound", sp.simplify(p_sol)),
        (
            "paper_param_gap_bound",
            sp.simplify(
                T * (LDh * sp.sqrt(T * R0) * G + J * L * C1 / C2 * (sp.exp(C2 * T) - 1)) / alpha**2
            ),
        ),
    )
    return Statement(
        name="finite_horizon",
        title="h(w0) = 0, t <= T: ||w - w0|| = O(1/alpha), ||w - wbar|| = O(1/alpha^2), "
        "||alpha h(w) - alpha hbar(wbar)|| = O(1/alpha)",
        hypotheses=(
            "h(w0) = 0 (centered model or doubled init)",
            "grad R is L-Lipschitz (L = loss smoothness)",
            "Dh is Lipschitz on the ball of radius sqrt(T R0)/alpha around w0",
        ),
        exprs=exprs,
        # R0 = R(alpha h(w0)) = R(0) does not depend on alpha when h(w0) = 0.
        exponents=_exponents(
            exprs,
            {
                "param_distance": "distance_bound",
                "param_gap": "param_gap_bound",
                "output_gap": "output_gap_bound",
            },
        ),
    )


@lru_cache(maxsize=1)
def next_to_lazy_expansion() -> Statement:
    r"""The next-to-lazy expansion ($h(w_0) = 0$, $t \le T$):
    $w - w_0 = u/\alpha + v/\alpha^2 + r/\alpha^3 + \dots$ with $u = \alpha(\bar w - w_0)$
    exactly, so $w - \bar w = v/\alpha^2 + r/\alpha^3$ and
    $\alpha h(w) - \alpha\bar h(\bar w) = c/\alpha + d/\alpha^2$
    ([`theory.next_to_lazy_system`][] derives $u$, $v$ and $c = Jv + \tfrac12 D^2h(w_0)[u, u]$).
    Along one direction (the coefficients are the positive symbols `u, v, r, c, d`): the
    exponents of the distances are those of the finite-horizon theorem, the scaled distances
    $\alpha^{-e}\,\text{distance}$ tend to $u$, $v$, $c$, and the relative error of each limit
    has exponent $-1$: the next term of the expansion."""
    u, v, r, c, d = sp.symbols("u v r c d", positive=True)
    DISTANCES = ("param_distance", "param_gap", "output_gap")
    distance = u / alpha + v / alpha**2 + r / alpha**3
    gap = v / alpha**2 + r / alpha**3
    output = c / alpha + d / alpha**2
    exprs = (
        ("param_distance", distance),
        ("param_gap", gap),
        ("output_gap", output),
        ("param_distance_limit_error", sp.simplify((alpha * distance - u) / u)),
        ("param_gap_limit_error", sp.simplify((alpha**2 * gap - v) / v)),
        ("output_gap_limit_error", sp.simplify((alpha * output - c) / c)),
    )
    return Statement(
        name="next_to_lazy",
        title="h(w0) = 0: alpha ||w - w0|| -> ||u||, alpha^2 ||w - wbar|| -> ||v||, "
        "alpha ||alpha h(w) - alpha hbar(wbar)|| -> ||J v + D^2h(w0)[u, u]/2||, errors O(1/alpha)",
        hypotheses=("h(w0) = 0", "R twice differentiable"),
        exprs=exprs,
        exponents=_exponents(
            exprs,
            {
                "param_distance": "param_distance",
                "param_gap": "param_gap",
                "output_gap": "output_gap",
                **{f"{k}_limit_error": f"{k}_limit_error" for k in DISTANCES},
            },
        ),
    )


@lru_cache(maxsize=1)
def over_parameterized() -> Statement:
    r"""Over-parameterized theorem (uniform in time): $R$ $M$-smooth and $m$-strongly convex,
    $\sigma = \sigma_{\min}(Dh(w_0)^\top) > 0$. If $\|h(w_0)\| \le C_0 =
    \sigma^3/(32\kappa^{3/2} J L_{Dh})$ and $\alpha > \|y^*\|/C_0$, then for all $t$,
    $\|\alpha h(w(t)) - y^*\| \le \sqrt\kappa\, \|\alpha h(w_0) - y^*\| e^{-m\sigma^2 t/4}$ and
    $\sup_t \|w - w_0\| \le 8\kappa^{3/2} J \|\alpha h(w_0) - y^*\| / (\alpha\sigma^2)$, which must
    stay in the ball of radius $\sigma/(2 L_{Dh})$ where $\Sigma(w) \succeq \sigma^2/4$.
    With $h(w_0) = 0$: $\sup_t \|w - \bar w\| = O(\log\alpha/\alpha^2)$."""
    C0 = sigma**3 / (32 * kappa ** sp.Rational(3, 2) * J * LDh)
    exprs = (
        ("C0", C0),
        ("alpha_min", ystar / C0),
        ("envelope", sp.sqrt(kappa) * res0 * sp.exp(-m * sigma**2 * t / 4)),
        ("displacement_bound", 8 * kappa ** sp.Rational(3, 2) * J * res0 / (alpha * sigma**2)),
        ("ball_radius", sigma / (2 * LDh)),
        # The paper's uniform rates with h(w0) = 0 (stated there without explicit constants).
        ("uniform_gap_rate", sp.log(alpha) / alpha**2),
        ("uniform_output_gap_rate", 1 / alpha),
    )
    return Statement(
        name="over_parameterized",
        title="sigma_min(Dh(w0)) > 0, ||h(w0)|| <= C0, alpha > ||y*||/C0: geometric envelope, "
        "sup_t ||w - wbar|| = O(log alpha / alpha^2)",
        hypotheses=(
            "R strongly convex and smooth (kappa = M/m)",
            "sigma_min(Dh(w0)^T) > 0 (Dh(w0) surjective, p >= dim F)",
            "||h(w0)|| <= C0",
            "alpha > ||y*|| / C0",
        ),
        exprs=exprs,
        # With h(w0) = 0 the residual r_0 = ||alpha h(w0) - y*|| = ||y*|| does not depend on
        # alpha: the displacement bound decays as 1/alpha.
        exponents=_exponents(
            exprs,
            {
                "param_distance": "displacement_bound",
                "param_gap": "uniform_gap_rate",
                "output_gap": "uniform_output_gap_rate",
            },
        ),
        notes="The uniform gap bound O(log alpha/alpha^2) has local slope -2 + 1/log(alpha); "
        "a measured slope of -2 is within it.",
    )


@lru_cache(maxsize=1)
def under_parameterized() -> Statement:
    r"""Under-parameterized theorem: $\operatorname{rank} Dh$ constant near $w_0$, $h(w_0) = 0$,
    $R$ strongly convex: for large $\alpha$ the flow converges geometrically to a local minimizer
    $w_\infty$ of $F_\alpha$ at the rate $\lambda_{\min}^+(\nabla^2 F_\alpha(w_\infty))$, which
    tends to $\lambda_{\min}^+(Dh(w_0)^\top Dh(w_0))$: independent of $\alpha$ asymptotically.

    Derived on the constant-rank example $h(w) = (w^2 - w_0^2)\,a$, $a \in \mathbb{R}^N$ (p = 1,
    rank 1), $R(f) = \frac{1}{2n}\|f - y\|^2$: $w_\infty^2 = w_0^2 + \langle a, y\rangle /
    (\alpha \|a\|^2)$ and $F_\alpha''(w_\infty) = 4 w_\infty^2 \|a\|^2/n$, so the rate is
    $4\|a\|^2 w_0^2/n + O(1/\alpha)$: its distance to the limit has exponent $-1$ in $\alpha$."""
    W = sp.Symbol("W", positive=True)
    a2, ay, n = sp.symbols("a2 ay n", positive=True)
    s = W**2 - w0**2
    # F_alpha(W) = (1/(2 n)) ||s a - y/alpha||^2 expanded with a2 = ||a||^2, ay = <a, y>.
    F = (s**2 * a2 - 2 * s * ay / alpha) / (2 * n)
    w_inf_sq = sp.solve(sp.diff(F, W) / W, W**2)
    w_inf_sq = w_inf_sq[0] if w_inf_sq else sp.solve(sp.Eq(sp.diff(F, W), 0), W)[0] ** 2
    rate = sp.simplify(sp.diff(F, W, 2).subs(W, sp.sqrt(w_inf_sq)))
    rate_inf = sp.limit(rate, alpha, sp.oo)
    exprs = (
        ("example_w_inf_sq", sp.simplify(w_inf_sq)),
        ("example_rate", rate),
        ("example_rate_limit", rate_inf),
        ("example_rate_deviation", sp.simplify(rate - rate_inf)),
    )
    return Statement(
        name="under_parameterized",
        title="rank Dh constant, h(w0) = 0: geometric convergence at a rate -> "
        "lambda_min^+(Dh(w0)^T Dh(w0)) as alpha -> infinity",
        hypotheses=(
            "h(w0) = 0",
            "R strongly convex",
            "rank Dh(w) constant near w0 (checked at w0 and at the limit w_inf)",
        ),
        exprs=exprs,
        exponents=_exponents(exprs, {"rate_deviation": "example_rate_deviation"}),
        notes="In the example a2 = ||a||^2, ay = <a, y>, n = number of samples.",
    )


@lru_cache(maxsize=1)
def homogeneity_time_change() -> tuple[sp.Expr, sp.Expr]:
    r"""For $q$-positively-homogeneous $h$, $h(\tau w) = \tau^q h(w)$: the flow $x$ of $R(h)$
    from $\tau w_0$ is $x(t) = \tau v(s(t))$ with $v$ the flow of $F_\alpha$ from $w_0$. Matching
    $\tau v'(s)\dot s = -\tau^{q-1} Dh(v)^\top \nabla R(\tau^q h(v))$ with
    $v' = -\alpha^{-1} Dh(v)^\top \nabla R(\alpha h(v))$ gives $\alpha = \tau^q$ and
    $\dot s = \tau^{2q-2}$. Returns $(\alpha, s(t))$ as expressions in `lambda` ($\tau$), `q`, `t`.
    """
    sdot = sp.Symbol("sdot", positive=True)
    a = lam**q
    # tau * sdot * (-(1/a) Dh^T g) = -(tau^(q-1)) Dh^T g  =>  tau * sdot / a = tau^(q-1)
    sol = sp.solve(sp.Eq(lam * sdot / a, lam ** (q - 1)), sdot)[0]
    return a, sp.simplify(sol * t)


@lru_cache(maxsize=1)
def scale_criterion() -> Statement:
    r"""The scale criterion $\kappa_{\alpha h}(w_0) = \frac1\alpha \|\alpha h(w_0) - y^*\|
    \frac{H}{J^2}$ ($H = \|D^2h(w_0)\|$): $\|y^*\| H/(J^2\alpha)$ when $h(w_0) = 0$ (exponent
    $-1$) and the limit $\|h(w_0)\| H/J^2 > 0$ otherwise. Two-layer nets
    $h_m = \alpha(m)\sum_i \phi(\theta_i)$: $E\kappa \lesssim m^{-1/2} + (m\alpha(m))^{-1}$,
    exponent $-1/2$ for $\alpha(m) = m^{-1/2}$ and $0$ for $\alpha(m) = 1/m$. The time change of
    $q$-homogeneous models ([`theory.homogeneity_time_change`][]) is carried as the expressions
    `homogeneity_alpha` ($\alpha = \lambda^q$) and `homogeneity_time` ($s(t)$), in the symbols
    `lambda` ($\tau$), `q`, `t`."""
    hvec = sp.Symbol("h_0", positive=True)
    kap = res0 * H / (alpha * J**2)
    centered = kap.subs(res0, ystar)
    # ||alpha h0 - y*|| ~ alpha ||h0|| for large alpha (h0 != 0)
    uncentered_limit = sp.limit((alpha * hvec + ystar) * H / (alpha * J**2), alpha, sp.oo)
    mm = width
    width_law_sqrt = mm ** sp.Rational(-1, 2) + 1 / (mm * mm ** sp.Rational(-1, 2))
    width_law_mf = mm ** sp.Rational(-1, 2) + 1 / (mm / mm)
    time_alpha, time_change = homogeneity_time_change()
    exprs = (
        ("kappa", kap),
        ("kappa_centered", centered),
        # ||alpha h0 - y*|| <= alpha ||h0|| + ||y*||, with equality up to O(1) for large alpha.
        ("kappa_uncentered", (alpha * hvec + ystar) * H / (alpha * J**2)),
        ("kappa_uncentered_limit", uncentered_limit),
        ("width_law_sqrt", width_law_sqrt),
        ("width_law_mean_field", width_law_mf),
        ("width_exponent_sqrt", growth_exponent(width_law_sqrt, mm)),
        ("width_exponent_mean_field", growth_exponent(width_law_mf, mm)),
        ("homogeneity_alpha", time_alpha),
        ("homogeneity_time", time_change),
    )
    return Statement(
        name="scale_criterion",
        title="kappa_{alpha h} = O(1/alpha) iff h(w0) = 0; q-homogeneous: tau ~ alpha = tau^q; "
        "two-layer E kappa <~ m^-1/2 + (m alpha(m))^-1",
        hypotheses=("h(w0) = 0 for the O(1/alpha) law",),
        exprs=exprs,
        exponents=(
            *_exponents(
                exprs, {"kappa_centered": "kappa_centered", "kappa_uncentered": "kappa_uncentered"}
            ),
            *_exponents(
                exprs,
                {"width_sqrt": "width_law_sqrt", "width_mean_field": "width_law_mean_field"},
                mm,
            ),
        ),
    )


@lru_cache(maxsize=1)
def off_training_set() -> Statement:
    r"""Off-training-set theorem (appendix): the linearization's predictions away from the
    training inputs. On a set $X$ with $M_1 = \sup_x \|D_w f(w_0, x)\|$ and
    $M_2 = \sup_x \mathrm{Lip}(D_w f(\cdot, x))$, write $d = \|w(T) - w_0\|$ and
    $g = \|w(T) - \bar w(T)\|$.

    1. Decomposition, with $\bar f(v, x) = f(w_0, x) + D_w f(w_0, x)(v - w_0)$:
       $\alpha f(w, x) - \alpha \bar f(\bar w, x) = \alpha[f(w, x) - \bar f(w, x)]
       + \alpha D_w f(w_0, x)(w - \bar w)$ (`difference` equals `decomposition`, checked with
       sympy on a scalar parameter; the vector case is the same algebra).
    2. Taylor: $f(w, x) - \bar f(w, x) = \int_0^1 [D_w f(w_0 + s(w - w_0), x) - D_w f(w_0, x)]
       (w - w_0)\,ds$, whose integrand is at most $M_2 s d \cdot d$; integrated,
       $M_2 d^2/2$. So the sharp bound, in the distances measured at $T$, is
       $\alpha(M_2 d^2/2 + M_1 g)$ (`sharp_bound`).
    3. The hypotheses $d \le C\log\alpha/\alpha$, $g \le C\log\alpha/\alpha^2$ substituted
       give the paper's form $C\frac{\log\alpha}{\alpha}(M_1 + C M_2\log(\alpha)/2)$
       (`paper_bound`); its exponent in $\alpha$ is $\lim \log(\text{bound})/\log\alpha = -1$
       (the log factor does not change it), read off by `sympy.limit`.

    `C_from_distance`, `C_from_gap` solve each hypothesis for $C$ at equality: the smallest
    constant making it hold at a measured $\alpha$."""
    w, wbar, v0, z = sp.symbols("w wbar v_0 z", real=True)
    f = sp.Function("f")
    df0 = sp.Subs(sp.Derivative(f(z), z), z, v0)

    def fbar(v):
        return f(v0) + df0 * (v - v0)

    difference = alpha * f(w) - alpha * fbar(wbar)
    decomposition = alpha * (f(w) - fbar(w)) + alpha * df0 * (w - wbar)
    s = sp.Symbol("s", positive=True)
    # ||D_w f(w0 + s (w - w0)) - D_w f(w0)|| <= M2 s d, applied to (w - w0) of norm d.
    remainder = sp.integrate(M2 * (s * dist_T) * dist_T, (s, 0, 1))
    sharp = alpha * (remainder + M1 * gap_T)
    distance_hyp = C * sp.log(alpha) / alpha
    gap_hyp = C * sp.log(alpha) / alpha**2
    paper = sp.factor(sharp.subs({dist_T: distance_hyp, gap_T: gap_hyp}))

    rate = growth_exponent(paper)
    exprs = (
        ("difference", difference),
        ("decomposition", decomposition),
        ("taylor_remainder_bound", remainder),
        ("sharp_bound", sharp),
        ("distance_hypothesis", distance_hyp),
        ("gap_hypothesis", gap_hyp),
        ("C_from_distance", sp.solve(sp.Eq(dist_T, distance_hyp), C)[0]),
        ("C_from_gap", sp.solve(sp.Eq(gap_T, gap_hyp), C)[0]),
        ("paper_bound", paper),
        ("exponent", rate),
    )
    return Statement(
        name="off_training_set",
        title="||w(T) - w0|| <= C log(a)/a, ||w(T) - wbar(T)|| <= C log(a)/a^2, M1, M2 finite "
        "on X: sup_X ||alpha f(w(T), x) - alpha fbar(wbar(T), x)|| "
        "<= C (log a/a)(M1 + C M2 log(a)/2)",
        hypotheses=(
            "h(w0) = 0 (centered model or doubled init), so the two distance hypotheses hold",
            "||w(T) - w0|| <= C log(alpha)/alpha, C independent of alpha",
            "||w(T) - wbar(T)|| <= C log(alpha)/alpha^2, C independent of alpha",
            "M1 = sup_x ||D_w f(w0, x)|| and M2 = sup_x Lip(D_w f(., x)) finite on X",
        ),
        exprs=exprs,
        exponents=_exponents(
            exprs,
            {
                "off_training_gap": "paper_bound",
                "param_distance": "distance_hypothesis",
                "param_gap": "gap_hypothesis",
            },
        ),
        notes="The exponent of C log(alpha)/alpha is -1 (local slope -1 + 1/log(alpha)); on a "
        "finite horizon the distances decay as 1/alpha and 1/alpha^2 without the log, and the "
        "measured slope is -1.",
    )


@lru_cache(maxsize=1)
def implicit_bias() -> Statement:
    r"""Woodworth et al. (COLT 2020), Theorem 1: the depth-2 diagonal net
    $\beta = u \odot u - v \odot v$ from $u(0) = v(0) = a\mathbf 1$, trained by gradient flow
    on the square loss, converges (if it interpolates) to
    $\arg\min Q_a(\beta)$ s.t. $X\beta = y$, with $Q_a(\beta) = a^2 \sum_i q(\beta_i/a^2)$.

    Derived from the flow ([`theory.diagonal_net_potential`][]`(2)`): the link
    $\beta_i = 2a^2\sinh(z_i)$, $z = X^\top\nu$ (`kkt_beta`); $q = \int_0^\beta h_2^{-1}$
    (`q`, equal to the paper's `q_paper`), $q'(\beta) = \mathrm{asinh}(\beta/2)$ (`q_prime`),
    so $\partial Q_a/\partial\beta_i = z_i$ at `kkt_beta`: the KKT condition, with
    `kkt_residual` $= 0$. For one entry $b = |\beta_i| > 0$:

    - kernel limit: `kernel_limit` $= \lim_{a\to\infty} a^2\,a^2 q(b/a^2) = b^2/4$
      (`sympy.limit`), so $Q_a(\beta) \sim \|\beta\|_2^2/(4a^2)$ and the minimizer tends to
      the minimum-$\ell_2$-norm solution; `kernel_constant` $= 1/4$, `q_series` the Taylor
      series $q(\beta) = \beta^2/4 - \beta^4/192 + O(\beta^6)$;
    - rich limit: `rich_limit` $= \lim_{a\to 0} a^2 q(b/a^2)/\log(1/a) = 2b$, so
      $Q_a(\beta)/\log(1/a) \to 2\|\beta\|_1$ ($q$ is even: `q_even` $= 0$) and the minimizer
      tends to the minimum-$\ell_1$-norm solution; `rich_constant` $= 2$.
    - scales: $h$ is $D$-homogeneous, so the init scale acts as `alpha_of_scale` $= a^D$ with
      the time change `time_of_scale` $= a^{2D-2}t$ ([`theory.homogeneity_time_change`][] at
      $\lambda = a$, $q = D$): $\alpha = a^2$ at depth 2.

    Exponent: the potential at a fixed $\beta$ decays as $a^{-2}$ for large $a$
    (`potential_kernel`, in the variable `a`)."""
    pot = _bias.diagonal_net_potential(2)
    a, bvar, z = _bias.a, _bias.beta, _bias.z
    b = sp.Symbol("b", positive=True)
    q_expr = pot.potential
    paper = _bias.paper_potential()
    potential = pot.potential_scaled()
    kkt_beta = a**2 * pot.link
    kkt_residual = sp.simplify(sp.diff(potential, bvar).subs(bvar, kkt_beta) - z)
    kernel_limit = sp.limit(a**2 * potential.subs(bvar, b), a, sp.oo)
    rich_limit = sp.limit(potential.subs(bvar, b) / sp.log(1 / a), a, 0, "+")
    lam_q = homogeneity_time_change()
    depth = sp.Symbol("D", positive=True, integer=True)
    exprs = (
        ("q", q_expr),
        ("q_paper", paper),
        ("q_prime", sp.simplify(sp.diff(q_expr, bvar))),
        ("q_even", sp.simplify(paper.subs(bvar, -bvar) - paper)),
        ("q_series", sp.series(q_expr, bvar, 0, 6).removeO()),
        ("link", pot.link),
        ("kkt_beta", kkt_beta),
        ("kkt_residual", kkt_residual),
        ("potential", potential),
        ("kernel_limit", kernel_limit),
        ("kernel_constant", sp.simplify(kernel_limit / b**2)),
        ("rich_limit", rich_limit),
        ("rich_constant", sp.simplify(rich_limit / b)),
        ("alpha_of_scale", lam_q[0].subs({lam: a, q: depth})),
        ("time_of_scale", lam_q[1].subs({lam: a, q: depth})),
    )
    return Statement(
        name="implicit_bias",
        title="depth-2 diagonal net from u = v = a: beta(inf) = argmin a^2 sum q(beta_i/a^2) "
        "s.t. X beta = y; Q_a ~ ||beta||_2^2/(4a^2) as a -> inf, ~ 2 log(1/a) ||beta||_1 as "
        "a -> 0; init scale a acts as alpha = a^D",
        hypotheses=(
            "square loss on X beta = y with linearly independent rows of X (underdetermined)",
            "u(0) = v(0) = a 1 (so beta(0) = 0)",
            "the flow interpolates: X beta(t) -> y",
        ),
        exprs=exprs,
        exponents=_exponents(exprs, {"potential_kernel": "potential"}, a),
        notes="b = |beta_i| > 0 in the limits; depth D: theory.diagonal_net_potential(D).",
    )


STATEMENTS = {
    "next_to_lazy": next_to_lazy_expansion,
    "finite_horizon": finite_horizon,
    "over_parameterized": over_parameterized,
    "under_parameterized": under_parameterized,
    "scale_criterion": scale_criterion,
    "off_training_set": off_training_set,
    "implicit_bias": implicit_bias,
}
"""Each statement's function, by the theorem's name."""
