r"""The implicit bias of diagonal linear networks: Woodworth, Gunasekar, Lee, Moroshko, Savarese,
Golan, Soudry & Srebro, *Kernel and Rich Regimes in Overparametrized Models* (COLT 2020,
arXiv:2002.09277), Theorem 1 and its depth-$D$ form.

The model is $\beta = u^D - v^D$ (entrywise), $f(x) = x \cdot \beta$, with the square loss on
underdetermined data $X\beta = y$ and the symmetric initialization $u(0) = v(0) = a\mathbf 1$.
With the residual $r(t)$ of the loss, one coordinate of the gradient flow is
$u_i' = -D u_i^{D-1}(X^\top r)_i$, $v_i' = D v_i^{D-1}(X^\top r)_i$. In the variable
$S_i(t) = \int_0^t (X^\top r)_i$ both are autonomous, $du/dS = -D u^{D-1}$,
$dv/dS = D v^{D-1}$, and [`theory.diagonal_flow`][] solves them. So
$\beta_i(t) = a^D h_D(z_i)$ with $z = -c_D S$ in the range of $X^\top$: the *link function*
$h_D$ and the normalization $c_D$ are

- $D = 2$: $c_2 = 4$, $h_2(z) = 2\sinh z$ (the paper's form $\beta = 2a^2\sinh(X^\top\nu)$);
- $D \ge 3$: $c_D = D(D-2)a^{D-2}$, $h_D(z) = (1-z)^{-p} - (1+z)^{-p}$, $p = D/(D-2)$,
  on $|z| < 1$.

If the flow interpolates, $\beta(\infty) = a^D h_D(X^\top\nu)$ for some $\nu$, which is the
optimality condition (KKT) of

$$\min_\beta Q^D_a(\beta) = a^D\sum_i q_D(\beta_i/a^D) \quad\text{s.t.}\ X\beta = y,
\qquad q_D(\beta) = \int_0^\beta h_D^{-1}(s)\,ds,$$

strictly convex, so the flow's limit is its unique minimizer. At $D = 2$ the integral is the
paper's $q(z) = 2 - \sqrt{4 + z^2} + z\,\mathrm{asinh}(z/2)$ (derived here, not typed in).

Scales: $h(w) = X(u^D - v^D)$ is $D$-homogeneous, so ([`theory.homogeneity_time_change`][]) the
flow of $R(h)$ from $w_0 = a\mathbf 1$ is $a$ times the flow of
$F_\alpha(w) = R(\alpha h(w))/\alpha^2$ from $\mathbf 1$ at $\alpha = a^D$, with time
$s = a^{2D-2}t$: the init scale $a$ acts as $\alpha = a^D$ ($a^2$ at depth 2), and
$\alpha h(w)$ tends to the same limit.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy as sp

a = sp.Symbol("a", positive=True)
"""The init scale: $u(0) = v(0) = a\\mathbf 1$."""
z = sp.Symbol("z", real=True)
"""The link's variable, one entry of $X^\\top\\nu$."""
beta = sp.Symbol("beta", real=True)
"""One entry of $\\beta$ (of $\\beta/a^D$ in the potential $q_D$)."""
S = sp.Symbol("S", real=True)
"""$S_i(t) = \\int_0^t (X^\\top r)_i$, the time of the autonomous scalar flows."""
_x, _w = sp.symbols("x w", positive=True)


def diagonal_flow(depth: int) -> tuple[sp.Expr, sp.Expr]:
    r"""$(u(S), v(S))$: the solutions of $du/dS = -D u^{D-1}$, $dv/dS = D v^{D-1}$ with
    $u(0) = v(0) = a$, one coordinate of the depth-$D$ flow in the variable
    $S = \int_0^t (X^\top r)_i$.

    $D = 2$ by `sympy.dsolve` ($u = a e^{-2S}$); $D \ge 3$ by separating the variables with the
    depth kept symbolic, $\int_a^u x^{1-D}dx = -DS$, solved for $u$ and then evaluated at
    `depth` ($u = a(1 + D(D-2)a^{D-2}S)^{-1/(D-2)}$). $v(S) = u(-S)$."""
    depth = _checked_depth(depth)
    if depth == 2:
        w = sp.Function("w")
        u = sp.dsolve(sp.Eq(w(S).diff(S), -2 * w(S)), w(S), ics={w(0): a}).rhs
    else:
        # k = D - 2 > 0 symbolic, so the antiderivative of x^(1-D) is a power, not a log.
        k = sp.Symbol("k", positive=True)
        lhs = sp.integrate(_x ** (-1 - k), (_x, a, _w))
        (u,) = sp.solve(sp.Eq(lhs, -(k + 2) * S), _w)
        u = sp.powsimp(u.subs(k, depth - 2), force=True)
    return u, u.subs(S, -S)


def _checked_depth(depth) -> int:
    if int(depth) != depth or int(depth) < 2:
        raise ValueError(f"`depth` must be an integer >= 2; got {depth!r}.")
    return int(depth)


@dataclass(frozen=True)
class DiagonalNetPotential:
    r"""The implicit-bias potential of the depth-$D$ diagonal net $\beta = u^D - v^D$
    (symmetric init $a\mathbf 1$), derived by [`theory.diagonal_net_potential`][].

    - `depth`: $D$.
    - `u`, `v`: the scalar flows in $S$ ([`theory.diagonal_flow`][]).
    - `z_of_S`: the normalization $z = -c_D S$.
    - `link`: $h_D(z)$, with $\beta_i = a^D h_D(z_i)$ (`(u**D - v**D)/a**D` at $S(z)$,
      simplified: no $a$ is left).
    - `link_integral`: $H_D(z) = \int_0^z h_D$, the convex conjugate of $q_D$.
    - `inverse_link`: $h_D^{-1}(\beta)$ in closed form ($D = 2$), else `None`.
    - `potential`: $q_D(\beta) = \int_0^\beta h_D^{-1}$ in closed form ($D = 2$), else `None`;
      [`theory.DiagonalNetPotential.numeric`][] evaluates it at every depth.
    - `domain`: the open interval of $z$ where $h_D$ is defined.
    """

    depth: int
    u: sp.Expr
    v: sp.Expr
    z_of_S: sp.Expr
    link: sp.Expr
    link_integral: sp.Expr
    inverse_link: sp.Expr | None
    potential: sp.Expr | None
    domain: tuple[sp.Expr, sp.Expr]

    def potential_scaled(self) -> sp.Expr | None:
        r"""$a^D q_D(\beta/a^D)$, one term of $Q^D_a$ (closed form only, else `None`)."""
        if self.potential is None:
            return None
        return a**self.depth * self.potential.subs(beta, beta / a**self.depth)

    def numeric_link(self) -> Callable[[np.ndarray], np.ndarray]:
        """$h_D$ as a numpy function (`sympy.lambdify` of `link`)."""
        return sp.lambdify(z, self.link, "numpy")

    def numeric_inverse_link(self) -> Callable[[np.ndarray], np.ndarray]:
        r"""$h_D^{-1}$ as a numpy function, $q_D' = h_D^{-1}$: the same bracketed Newton
        iteration as [`theory.DiagonalNetPotential.numeric`][]."""
        return _LegendrePotential(self.depth).inverse

    def numeric(self, closed_form: bool = False) -> Callable[[np.ndarray], np.ndarray]:
        r"""$q_D(\beta)$ as a numpy function of an array $\beta$.

        By default, for every depth, the defining integral through its Legendre form,
        $q_D(\beta) = \beta z - H_D(z)$ at $z = h_D^{-1}(\beta)$ (integration by parts of
        $\int_0^\beta h_D^{-1}$), with $z = \tanh\tau$ ($z = \tau$ at $D = 2$) and $\tau$ solved
        by a bracketed Newton iteration on $\log h_D$ to machine precision. In $\tau$ no term
        cancels: for $D \ge 3$, $h_D(\tanh\tau) = 2\cosh^p\tau\,\sinh(p\tau)$ and
        $H_D(\tanh\tau) = [2\cosh^{p-1}\tau\,\cosh((p-1)\tau) - 2]/(p-1)$ (both checked
        against `link` and `link_integral` in the tests), so the result keeps its relative
        precision at small and large $|\beta|$ (tested from $10^{-150}$ to $10^{150}$).

        With `closed_form=True` (depth 2 only), the `sympy.lambdify` of `potential`: exact
        algebra, but in float64 it cancels for $|\beta| \ll 1$ ($2 - \sqrt{4 + \beta^2}$) and
        for $\beta \ll -1$ (the logarithm's argument)."""
        if not closed_form:
            return _LegendrePotential(self.depth)
        if self.potential is None:
            raise ValueError(
                f"q_D has no closed form at depth {self.depth}; use `closed_form=False`."
            )
        return sp.lambdify(beta, self.potential, "numpy")


@cache
def diagonal_net_potential(depth: int = 2) -> DiagonalNetPotential:
    r"""Derive $h_D$, $H_D$ and $q_D$ for the depth-$D$ diagonal net from its flow.

    The link: $\beta/a^D = (u^D - v^D)/a^D$ at $S = -z/c_D$, simplified. $H_D$ by
    `sympy.integrate`. At $D = 2$, $h_2^{-1}$ by `sympy.solve` (the root through 0) and
    $q_2 = \int_0^\beta h_2^{-1}$ by parts, $\beta h_2^{-1}(\beta) - H_2(h_2^{-1}(\beta))$,
    simplified; it equals the paper's $q$ (both checked in the tests, with
    $q_2' = h_2^{-1}$ and $q_2(0) = 0$). At $D \ge 3$, $h_D(z) = \beta$ is a polynomial
    equation of degree 6 ($D = 3$) or 4 ($D = 4$, roots by Ferrari's radicals, useless
    numerically), or not polynomial ($D \ge 5$): $q_D$ is left to
    [`theory.DiagonalNetPotential.numeric`][]."""
    depth = _checked_depth(depth)
    u, v = diagonal_flow(depth)
    c = 4 if depth == 2 else depth * (depth - 2) * a ** (depth - 2)
    z_of_S = -c * S
    link = sp.simplify(sp.powsimp(((u**depth - v**depth) / a**depth).subs(S, -z / c), force=True))
    if depth == 2:
        # e^z - e^-z as 2 sinh z, so that the closed forms read like the paper's.
        link = sp.simplify(link.rewrite(sp.sinh))
    t = sp.Symbol("t", real=True)
    link_integral = sp.simplify(sp.integrate(link.subs(z, t), (t, 0, z)))
    inverse, potential = None, None
    domain = (-sp.oo, sp.oo) if depth == 2 else (sp.Integer(-1), sp.Integer(1))
    if depth == 2:
        roots = sp.solve(sp.Eq(link, beta), z)
        (inverse,) = [r for r in roots if sp.simplify(r.subs(beta, 0)) == 0]
        # By parts, int_0^b h^-1 = b h^-1(b) - H(h^-1(b)): sympy.integrate of the inverse
        # itself gives the same but takes 10-20 s.
        legendre = beta * inverse - link_integral.subs(z, inverse).rewrite(sp.exp)
        potential = sp.radsimp(sp.expand(legendre))
    return DiagonalNetPotential(
        depth=depth,
        u=u,
        v=v,
        z_of_S=z_of_S,
        link=link,
        link_integral=link_integral,
        inverse_link=inverse,
        potential=potential,
        domain=domain,
    )


def paper_potential() -> sp.Expr:
    r"""The paper's $q(z) = 2 - \sqrt{4 + z^2} + z\,\mathrm{asinh}(z/2)$ as printed (Theorem 1),
    in the variable `beta`: what [`theory.diagonal_net_potential`][]`(2).potential` must
    equal."""
    return 2 - sp.sqrt(4 + beta**2) + beta * sp.asinh(beta / 2)


class _LegendrePotential:
    """$q_D(\\beta) = \\beta z - H_D(z)$, $z = h_D^{-1}(\\beta)$, in numpy (see
    `DiagonalNetPotential.numeric`). Odd link, even potential: solved for $|\\beta|$."""

    def __init__(self, depth: int):
        self.depth = depth
        self.p = None if depth == 2 else depth / (depth - 2)

    def log_link(self, tau: np.ndarray) -> np.ndarray:
        """$\\log h_D(\\tanh\\tau)$ for $\\tau > 0$, without overflow."""
        # log sinh(x) = x + log(-expm1(-2x)) - log 2: no overflow, no cancellation at small x.
        if self.p is None:
            return tau + np.log(-np.expm1(-2 * tau))
        p = self.p
        log_cosh = _log_cosh(tau)
        log_sinh = p * tau + np.log(-np.expm1(-2 * p * tau)) - np.log(2.0)
        return np.log(2.0) + p * log_cosh + log_sinh

    def dlog_link(self, tau: np.ndarray) -> np.ndarray:
        if self.p is None:
            return 1.0 / np.tanh(tau)
        return self.p * np.tanh(tau) + self.p / np.tanh(self.p * tau)

    def inverse_tau(self, b: np.ndarray) -> np.ndarray:
        """$\\tau = \\mathrm{atanh}\\, h_D^{-1}(b)$ for $b > 0$: Newton on
        $\\log h_D(\\tanh\\tau) = \\log b$, kept inside a bracket (bisection when it leaves)."""
        target = np.log(b)
        lo, hi = np.zeros_like(b), np.ones_like(b)
        for _ in range(64):
            below = self.log_link(hi) < target
            if not below.any():
                break
            lo, hi = np.where(below, hi, lo), np.where(below, 2 * hi, hi)
        tau = 0.5 * (lo + hi)
        for _ in range(200):
            f = self.log_link(tau) - target
            lo, hi = np.where(f < 0, tau, lo), np.where(f > 0, tau, hi)
            newton = tau - f / self.dlog_link(tau)
            inside = (newton > lo) & (newton < hi)
            new = np.where(inside, newton, 0.5 * (lo + hi))
            done = np.abs(new - tau) <= 4 * np.finfo(float).eps * new
            tau = new
            if done.all():
                break
        return tau

    def inverse(self, b) -> np.ndarray:
        """$h_D^{-1}(b)$, odd in $b$."""
        b = np.asarray(b, dtype=float)
        out = np.zeros_like(b)
        pos = b != 0
        tau = self.inverse_tau(np.abs(b[pos]))
        out[pos] = np.sign(b[pos]) * (tau if self.p is None else np.tanh(tau))
        return out

    def __call__(self, b) -> np.ndarray:
        b = np.abs(np.asarray(b, dtype=float))
        out = np.zeros_like(b)
        pos = b > 0
        tau = self.inverse_tau(b[pos])
        if self.p is None:
            # H_2(z) = 2 cosh z - 2 = 4 sinh(z/2)^2
            conj = 4 * np.sinh(tau / 2) ** 2
            out[pos] = b[pos] * tau - conj
            return out
        p = self.p
        # 2 cosh^(p-1) cosh((p-1) tau) - 2 = 2 (cosh^(p-1) - 1) cosh + 2 (cosh - 1), each term
        # of one sign: expm1 of (p - 1) log cosh, and 2 sinh(x/2)^2 for cosh(x) - 1.
        log_cosh = _log_cosh(tau)
        x = (p - 1) * tau
        conj = (2 * np.expm1((p - 1) * log_cosh) * np.cosh(x) + 4 * np.sinh(x / 2) ** 2) / (p - 1)
        out[pos] = b[pos] * np.tanh(tau) - conj
        return out


def _log_cosh(tau: np.ndarray) -> np.ndarray:
    """$\\log\\cosh\\tau$ to full relative precision: $\\mathrm{log1p}(2\\sinh^2(\\tau/2))$ below 1
    (where $\\tau + \\log(1 + e^{-2\\tau}) - \\log 2$ cancels down to $\\tau^2/2$), that form
    above (where $\\sinh^2$ would overflow)."""
    small = np.minimum(tau, 1.0)
    return np.where(
        tau < 1.0,
        np.log1p(2 * np.sinh(small / 2) ** 2),
        tau + np.log1p(np.exp(-2 * tau)) - np.log(2.0),
    )
