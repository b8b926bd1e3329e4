r"""The next-to-lazy correction: the $1/\alpha^2$ term of the gradient flow, as a linear ODE.

With $h(w_0) = 0$, $J = Dh(w_0)$ and the square loss $R(f) = \frac{1}{2n}\sum_i \|f_i - y_i\|^2$
(Euclidean gradient $\nabla R(f) = (f - y)/n$, Hessian $I/n$), write
$w = w_0 + u/\alpha + v/\alpha^2 + O(\alpha^{-3})$. Expanding
$\alpha h(w) = J u + (J v + \tfrac12 D^2h(w_0)[u, u])/\alpha + \dots$ and
$Dh(w)^\top = J^\top + (D^2h(w_0)[u, \cdot])^\top/\alpha + \dots$ in
$w' = -\tfrac1\alpha Dh(w)^\top \nabla R(\alpha h(w))$ and matching powers of $1/\alpha$:

$$u' = -J^\top \nabla R(J u), \qquad
  v' = -J^\top \nabla^2 R\,\big(J v + \tfrac12 D^2h(w_0)[u, u]\big)
       - (D^2h(w_0)[u, \cdot])^\top \nabla R(J u), \qquad u(0) = v(0) = 0.$$

$u = \alpha(\bar w - w_0)$ exactly (the linearized flow), so $\alpha^2 (w - \bar w)(t) \to v(t)$,
$\alpha\,(\alpha h(w) - \alpha \bar h(\bar w)) \to J v + \tfrac12 D^2 h(w_0)[u, u]$ and
$\alpha (w - w_0) \to u$: the constants of the $O(1/\alpha^2)$ and $O(1/\alpha)$ laws.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from .toy import t, w0, y


@dataclass(frozen=True)
class NextToLazySystem:
    """The ODEs of $u$ and $v$ for a polynomial model (sympy matrices).

    - `u`, `v`: the state symbols (column matrices of length p).
    - `du`, `dv`: the right-hand sides, linear in `u` (for `du`) and in `v` (for `dv`).
    - `jacobian`: $J = Dh(w_0)$ (N x p); `hessians`: the N Hessians $D^2 h_i(w_0)$ (p x p).
    - `output_correction`: $J v + \\tfrac12 D^2h(w_0)[u, u]$, the limit of
      $\\alpha (\\alpha h(w) - \\alpha \\bar h(\\bar w))$ (N entries).
    """

    u: sp.Matrix
    v: sp.Matrix
    du: sp.Matrix
    dv: sp.Matrix
    jacobian: sp.Matrix
    hessians: tuple[sp.Matrix, ...]
    output_correction: sp.Matrix

    def numeric(self):
        """`f(u, v) -> (du, dv)` on numpy arrays (`sympy.lambdify`), for an independent
        integration (e.g. `scipy.integrate.solve_ivp`)."""
        args = (list(self.u), list(self.v))
        fu = sp.lambdify(args, list(self.du), "numpy")
        fv = sp.lambdify(args, list(self.dv), "numpy")
        fo = sp.lambdify(args, list(self.output_correction), "numpy")
        return fu, fv, fo


def next_to_lazy_system(
    h: Sequence[sp.Expr],
    params: Sequence[sp.Symbol],
    params0: Sequence,
    targets: Sequence,
    num_samples: int,
) -> NextToLazySystem:
    r"""Derive the next-to-lazy system of a polynomial (or any smooth) model.

    **Arguments:**

    - `h`: the N flat outputs $h_i(w)$ (with $h(w_0) = 0$: subtract $h(w_0)$ first).
    - `params`: the p parameter symbols; `params0`: their values at initialization.
    - `targets`: the N flat targets $y$; `num_samples`: $n$ of the empirical norm
      (the loss is $\frac{1}{2n}\sum (h_i - y_i)^2$).

    **Returns:** a [`theory.NextToLazySystem`][].
    """
    h = sp.Matrix(list(h))
    ws = sp.Matrix(list(params))
    at0 = dict(zip(list(params), [sp.nsimplify(v) for v in params0]))
    h0 = h.subs(at0)
    if any(sp.simplify(e) != 0 for e in h0):
        raise ValueError(
            f"`h` must vanish at `params0` (the lazy expansion assumes h(w0) = 0); got h(w0) = "
            f"{list(h0)}. Subtract h(w0) from `h` (centering)."
        )
    p, n = len(ws), sp.Integer(num_samples)
    jac = h.jacobian(ws).subs(at0)
    hess = tuple(sp.hessian(hi, list(ws)).subs(at0) for hi in h)
    u = sp.Matrix(sp.symbols(f"u0:{p}", real=True))
    v = sp.Matrix(sp.symbols(f"v0:{p}", real=True))
    y_ = sp.Matrix([sp.nsimplify(c) for c in targets])
    resid = (jac * u - y_) / n  # grad R(J u)
    quad = sp.Matrix([(u.T * H * u)[0, 0] for H in hess])  # D^2 h[u, u]
    mixed = sp.Matrix.vstack(*[(H * u).T for H in hess])  # D^2 h[u, .] as N x p
    du = -jac.T * resid
    dv = -jac.T * (jac * v + quad / 2) / n - mixed.T * resid
    return NextToLazySystem(
        u=u,
        v=v,
        du=du.applyfunc(sp.expand),
        dv=dv.applyfunc(sp.expand),
        jacobian=jac,
        hessians=hess,
        output_correction=(jac * v + quad / 2).applyfunc(sp.expand),
    )


@lru_cache(maxsize=1)
def scalar_next_to_lazy() -> tuple[sp.Expr, sp.Expr]:
    """Solve the next-to-lazy system of the scalar model $h(w) = w^2 - w_0^2$ (one target $y$)
    in closed form with `sympy.dsolve`: returns $(u(t), v(t))$ in `t, w_0, y`. $v$ must equal
    the leading constant of [`gap_series`][theory.toy.gap_series], derived independently from
    the exact flows."""
    W = sp.Symbol("W", real=True)
    system = next_to_lazy_system([W**2 - w0**2], [W], [w0], [y], 1)
    uf, vf = sp.Function("U"), sp.Function("V")
    su = {system.u[0]: uf(t), system.v[0]: vf(t)}
    u_sol = sp.dsolve(sp.Eq(uf(t).diff(t), system.du[0].subs(su)), uf(t), ics={uf(0): 0}).rhs
    dv = system.dv[0].subs(su).subs(uf(t), u_sol)
    v_sol = sp.dsolve(sp.Eq(vf(t).diff(t), dv), vf(t), ics={vf(0): 0}).rhs
    return sp.simplify(u_sol), sp.simplify(v_sol)
