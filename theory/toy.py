"""Exact flows of the scalar model $h(w) = w^2 - w_0^2$ with the square loss.

With $R(f) = \\tfrac12 (f - y)^2$ and $F_\\alpha(w) = R(\\alpha h(w))/\\alpha^2$, the flow is
$w' = -\\tfrac{2w}{\\alpha}(\\alpha(w^2 - w_0^2) - y)$. Then $u = w^2$ solves the logistic equation
$u' = 4u(c - u)$, $c = w_0^2 + y/\\alpha$, so $u(t) = c u_0 / (u_0 + (c - u_0) e^{-4ct})$. The
linearization $\\bar h(w) = 2 w_0 (w - w_0)$ gives
$\\bar w' = -\\tfrac{2 w_0}{\\alpha}(2\\alpha w_0(\\bar w - w_0) - y)$,
so $\\bar w(t) = w_0 + \\tfrac{y}{2 w_0 \\alpha}(1 - e^{-4 w_0^2 t})$.
"""

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

t, alpha, w0 = sp.symbols("t alpha w_0", positive=True)
y = sp.Symbol("y", real=True)


@dataclass(frozen=True)
class ScalarModelFlows:
    """Closed forms (sympy expressions in `t, alpha, w_0, y`) of the scalar model's flows."""

    w: sp.Expr
    wbar: sp.Expr
    rhs: sp.Expr
    linear_rhs: sp.Expr

    def residuals(self) -> tuple[sp.Expr, sp.Expr]:
        """`w' - rhs(w)` and `wbar' - linear_rhs(wbar)`, simplified: both are zero."""
        r1 = sp.simplify(sp.diff(self.w, t) - self.rhs.subs("W", self.w))
        r2 = sp.simplify(sp.diff(self.wbar, t) - self.linear_rhs.subs("W", self.wbar))
        return r1, r2

    def evaluate(self, expr: sp.Expr, values: dict, digits: int = 50) -> sp.Float:
        """Evaluate `expr` at `values` with `digits` significant digits (mpmath), which resolves
        gaps like `w - wbar` far below double precision."""
        subs = {
            sym: sp.Rational(str(v)) if not isinstance(v, sp.Basic) else v
            for sym, v in values.items()
        }
        return sp.N(expr.subs(subs), digits)

    def gap(self) -> sp.Expr:
        return self.w - self.wbar


@lru_cache(maxsize=1)
def scalar_model_flows() -> ScalarModelFlows:
    """Derive the closed forms of the scalar model's nonlinear and linearized flows."""
    W = sp.Symbol("W")
    rhs = -2 * W / alpha * (alpha * (W**2 - w0**2) - y)
    linear_rhs = -2 * w0 / alpha * (alpha * 2 * w0 * (W - w0) - y)
    c = w0**2 + y / alpha
    u0 = w0**2
    u = c * u0 / (u0 + (c - u0) * sp.exp(-4 * c * t))
    w = sp.sqrt(u)
    wbar = w0 + y / (2 * w0 * alpha) * (1 - sp.exp(-4 * w0**2 * t))
    return ScalarModelFlows(w=w, wbar=wbar, rhs=rhs, linear_rhs=linear_rhs)


eps = sp.Symbol("epsilon", positive=True)


@dataclass(frozen=True)
class GapSeries:
    r"""The series in $\varepsilon = 1/\alpha$ of the scaled gap of the scalar model,

    $$\alpha^2 (w - \bar w)(t) = c_0(t) + \frac{c_1(t)}{\alpha} + O(\alpha^{-2}),$$

    derived from the closed forms of [`theory.scalar_model_flows`][]. `leading` is $c_0$ (the limit,
    which the next-to-lazy equation also gives), `correction` is $c_1$; both are expressions in
    `t, w_0, y`.
    """

    leading: sp.Expr
    correction: sp.Expr

    def numeric(self, order: int = 1):
        """`f(t, w0, y, alpha)`: $c_0 + c_1/\\alpha$ (`order=1`) or $c_0$ (`order=0`), as a
        numpy function (`sympy.lambdify`); `t` may be an array."""
        expr = self.leading + (self.correction / alpha if order >= 1 else 0)
        return sp.lambdify((t, w0, y, alpha), expr, "numpy")


@lru_cache(maxsize=1)
def gap_series() -> GapSeries:
    """Expand $\\alpha^2 (w - \\bar w)$ of the scalar model to first order in $1/\\alpha$."""
    flows = scalar_model_flows()
    scaled = (flows.w - flows.wbar).subs(alpha, 1 / eps) / eps**2
    series = sp.series(scaled, eps, 0, 2).removeO()
    return GapSeries(
        leading=sp.simplify(series.coeff(eps, 0)), correction=sp.simplify(series.coeff(eps, 1))
    )
