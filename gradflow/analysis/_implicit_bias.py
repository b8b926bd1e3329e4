r"""The limit of the diagonal net's gradient flow, computed without the flow: the minimizer of the
implicit-bias potential under $X\beta = y$ (Woodworth et al., COLT 2020, Theorem 1 and its
depth-$D$ form), by Newton's method on the strictly convex dual. numpy, float64; no JAX."""

import math

import equinox as eqx
import numpy as np

from .._typing import ArrayLike


class ImplicitBiasLimit(eqx.Module):
    r"""The minimizer of the implicit-bias potential under $X\beta = y$, from
    [`gradflow.implicit_bias_limit`][].

    - `beta`: the minimizer $\beta^\star$, shape `(d,)`.
    - `nu`: the dual variable $\nu$, shape `(n,)`: $\beta^\star = \mathrm{link}(X^\top\nu)$.
    - `residual`: $\|X\beta^\star - y\| / \|y\|$ (absolute where $y = 0$).
    - `steps`: the Newton steps taken.
    - `converged`: whether `residual <= tol` was reached; `message` says why not.
    - `depth`: $D$.
    """

    beta: np.ndarray
    nu: np.ndarray
    residual: float
    steps: int
    converged: bool
    depth: int
    message: str = ""

    def __repr__(self) -> str:
        with np.printoptions(precision=6, threshold=20):
            return (
                f"ImplicitBiasLimit(depth={self.depth}, converged={self.converged}, "
                f"steps={self.steps}, residual={self.residual:.3e},\n"
                f"  beta={self.beta!r},\n  nu={self.nu!r}"
                + (f",\n  message={self.message!r})" if self.message else ")")
            )


def _link(s: np.ndarray, u0: np.ndarray, v0: np.ndarray, depth: int):
    r"""Per coordinate: $\beta(s)$, $\beta'(s)$, the dual potential $\Phi(s) - \Phi(0)$ with
    $\Phi' = \beta$ ($+\infty$ outside the domain, $D \ge 3$), and the size of the terms that
    $\Phi$ is computed from, which sets its rounding error."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if depth == 2:
            # u0^2 e^s - v0^2 e^-s = 2 u0 v0 sinh(s + c), c = log(u0/v0): no cancellation
            # near the zero of beta; 2m (cosh(s + c) - cosh(c)) = 4m sinh(s/2 + c) sinh(s/2).
            m, c = u0 * v0, np.log(u0) - np.log(v0)
            beta = 2 * m * np.sinh(s + c)
            dbeta = 2 * m * np.cosh(s + c)
            phi = 4 * m * np.sinh(s / 2 + c) * np.sinh(s / 2)
            size = np.abs(phi)
        else:
            p = depth / (depth - 2)
            big_a, big_b = u0 ** (2.0 - depth), v0 ** (2.0 - depth)
            inside = (s < big_a) & (s > -big_b)
            ap = np.where(inside, big_a - s, np.nan)
            bp = np.where(inside, big_b + s, np.nan)
            # With M = (A + B)/2 and z = (s - (A - B)/2)/M: A - s = M(1 - z), B + s = M(1 + z),
            # and beta = M^-p [(1 - z)^-p - (1 + z)^-p] = 2 M^-p (1 - z^2)^(-p/2) sinh(p atanh z),
            # which keeps its relative precision where the two powers nearly cancel (large
            # init, small z): the plain difference loses a factor M^-p / |beta|.
            mid = (big_a + big_b) / 2
            z = (s - (big_a - big_b) / 2) / mid
            atanh = np.where(np.abs(z) < 0.5, np.arctanh(z), 0.5 * (np.log(bp) - np.log(ap)))
            beta = 2 * mid**-p * ((ap / mid) * (bp / mid)) ** (-p / 2) * np.sinh(p * atanh)
            dbeta = p * (ap ** (-p - 1) + bp ** (-p - 1))
            terms = (ap ** (1 - p), big_a ** (1 - p), bp ** (1 - p), big_b ** (1 - p))
            phi = np.where(inside, (terms[0] - terms[1] + terms[2] - terms[3]) / (p - 1), np.inf)
            size = sum(terms) / (p - 1)
    phi = np.where(np.isfinite(phi), phi, np.inf)
    return beta, dbeta, phi, size


def _newton_step(x: np.ndarray, dbeta: np.ndarray, g: np.ndarray) -> np.ndarray:
    r"""$-H^{-1}g$ for $H = X\,\mathrm{diag}(\beta')X^\top = R^\top R$, with $R$ from the QR
    factorization of $\mathrm{diag}(\beta')^{1/2}X^\top$: at small init $\beta'$ spans
    $a^{2D-2}$ (off the support) to $O(1)$, and forming $H$ would square that condition number
    ($10^{18}$ at depth 4, $a = 10^{-3}$: beyond float64); the factor has its square root."""
    r = np.linalg.qr(np.sqrt(dbeta)[:, None] * x.T, mode="r")
    if not np.all(np.isfinite(r)) or np.any(np.diag(r) == 0):
        raise np.linalg.LinAlgError("singular dual Hessian")
    w = _triangular_solve(r.T, -g, lower=True)
    return _triangular_solve(r, w, lower=False)


def _triangular_solve(r: np.ndarray, b: np.ndarray, *, lower: bool) -> np.ndarray:
    """Forward or back substitution (numpy has no triangular solver; n is small)."""
    n = b.shape[0]
    out = np.zeros(n)
    order = range(n) if lower else range(n - 1, -1, -1)
    for i in order:
        out[i] = (b[i] - r[i] @ out) / r[i, i]
    return out


def _positive(name: str, value: ArrayLike, d: int) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    try:
        arr = np.broadcast_to(arr, (d,)).copy()
    except ValueError:
        raise ValueError(
            f"`{name}` must be a scalar or have shape ({d},), one entry per coordinate; got "
            f"shape {arr.shape}."
        ) from None
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(
            f"`{name}` must be finite and > 0 (the theorem's initialization keeps the signs of "
            f"u and v); got min {arr.min()}."
        )
    return arr


def implicit_bias_limit(
    inputs: ArrayLike,
    targets: ArrayLike,
    u0: ArrayLike,
    v0: ArrayLike | None = None,
    *,
    depth: int = 2,
    tol: float = 1e-12,
    max_steps: int = 200,
    throw: bool = True,
) -> ImplicitBiasLimit:
    r"""The limit of the gradient flow of the diagonal net $\beta = u^D - v^D$
    ([`gradflow.models.DiagonalDifferenceNet`][]) on the square loss, from $u(0) = u_0$,
    $v(0) = v_0$, when it interpolates $X\beta = y$: the minimizer of its implicit-bias
    potential, computed from the data alone as an independent reference for the flow.

    Woodworth et al. (COLT 2020), Theorem 1: with $u_0 = v_0 = a\mathbf 1$ at depth 2 the limit is
    $\arg\min Q_a(\beta) = a^2\sum_i q(\beta_i/a^2)$ s.t. $X\beta = y$,
    $q(z) = 2 - \sqrt{4 + z^2} + z\,\mathrm{asinh}(z/2)$; at depth $D$, $Q^D_a = a^D \sum_i
    q_D(\beta_i/a^D)$ ([`theory.diagonal_net_potential`][]). The proof's explicit flow gives the
    limit as $\beta = \mathrm{link}(X^\top\nu)$, one coordinate at a time ($s = (X^\top\nu)_i$):

    - $D = 2$: $\beta_i = u_{0i}^2 e^{s} - v_{0i}^2 e^{-s} = 2u_{0i}v_{0i}\sinh(s + \log(u_{0i}/
      v_{0i}))$; $2a^2\sinh(s)$ at $u_0 = v_0 = a$, the paper's KKT form;
    - $D \ge 3$: $\beta_i = (u_{0i}^{2-D} - s)^{-p} - (v_{0i}^{2-D} + s)^{-p}$, $p = D/(D-2)$, on
      $-v_{0i}^{2-D} < s < u_{0i}^{2-D}$; $a^D h_D(s/a^{2-D})$ at $u_0 = v_0 = a$, with
      $h_D(z) = (1 - z)^{-p} - (1 + z)^{-p}$.

    The link is increasing, so $\nu$ minimizes the strictly convex dual
    $G(\nu) = \sum_i \Phi_i((X^\top\nu)_i) - y^\top\nu$, $\Phi_i' = \mathrm{link}_i$, whose
    gradient is $X\beta(\nu) - y$ and Hessian $X\,\mathrm{diag}(\mathrm{link}'(X^\top\nu))X^\top$
    ($n \times n$, positive definite when the rows of $X$ are independent). Newton's method from
    $\nu = 0$ ($\beta = \beta(0)$, the initialization's), with a backtracking line search on
    $G$ (Armijo, and $G = +\infty$ outside the link's domain), until
    $\|X\beta - y\| \le$ `tol` $\|y\|$. Where $G$'s decrease falls below its rounding error
    (the last steps), a step is accepted if it lowers $\|X\beta - y\|$ instead: the Newton
    direction is a descent direction for both. The Newton system is solved through the QR
    factor of $\mathrm{diag}(\mathrm{link}')^{1/2}X^\top$, not through the Hessian: at small
    init $\mathrm{link}'$ spans $a^{2D-2}$ (off the support) to $O(1)$, and the Hessian's
    condition number is the square of the factor's.

    Precision: $\mathrm{link}(s)$ is resolved only to about $\epsilon|s|\,\mathrm{link}'(s)$,
    which grows where the support's $s$ nears the link's pole (depth $\ge 4$ with init
    $\lesssim 10^{-2}$). When rounding rather than curvature stops the iteration, the result
    says so and gives the residual float64 reached. Depth 2 and 3 reach $10^{-12}$ for inits
    $a \in [10^{-3}, 10^2]$ (`docs/theory.md`).

    With asymmetric $u_0 \neq v_0$ the flow starts from $\beta(0) = u_0^D - v_0^D \ne 0$ and the
    same argument gives the minimizer of the potential whose gradient is the inverse of this
    link (at depth 2, $\sum_i m_i q(\beta_i/m_i) - c_i\beta_i$ with $m_i = u_{0i}v_{0i}$,
    $c_i = \log(u_{0i}/v_{0i})$).

    **Arguments:**

    - `inputs`: $X$, shape `(n, d)`, rows linearly independent ($n \le d$).
    - `targets`: $y$, shape `(n,)` or `(n, 1)`.
    - `u0`, `v0`: the initialization of $u$ and $v$, scalars or shape `(d,)`, all entries
      $> 0$; `v0=None` means `v0 = u0` (the symmetric init, $\beta(0) = 0$).
    - `depth`: $D \ge 2$.
    - `tol`: the relative residual to reach.
    - `max_steps`: the Newton steps allowed.
    - `throw`: raise `RuntimeError` when `tol` is not reached (else return with
      `converged=False` and a `message`).

    **Returns:** a [`gradflow.ImplicitBiasLimit`][].
    """
    x = np.asarray(inputs, dtype=float)
    y = np.asarray(targets, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"`inputs` must have shape (n, d); got shape {x.shape}.")
    n, d = x.shape
    if y.shape == (n, 1):
        y = y[:, 0]
    if y.shape != (n,):
        raise ValueError(
            f"`targets` must have shape ({n},) or ({n}, 1), one per row of `inputs`; got "
            f"shape {y.shape}."
        )
    if int(depth) != depth or int(depth) < 2:
        raise ValueError(f"`depth` must be an integer >= 2; got {depth!r}.")
    depth = int(depth)
    if not tol > 0:
        raise ValueError(f"`tol` must be > 0; got {tol}.")
    u0 = _positive("u0", u0, d)
    v0 = u0 if v0 is None else _positive("v0", v0, d)
    rank = np.linalg.matrix_rank(x)
    if rank < n:
        raise ValueError(
            f"The rows of `inputs` must be linearly independent: rank {rank} < n = {n}, so "
            "X beta = y has redundant or inconsistent equations; drop the dependent rows."
        )
    scale = float(np.linalg.norm(y)) or 1.0
    eps = np.finfo(float).eps

    def evaluate(nu):
        s = x.T @ nu
        beta, dbeta, phi, size = _link(s, u0, v0, depth)
        dual = float(np.sum(phi) - y @ nu)
        if not math.isfinite(dual):
            return beta, dbeta, None, math.inf, math.inf
        with np.errstate(over="ignore", invalid="ignore"):
            g = x @ beta - y
        # G's rounding error: its terms' own, and Phi'(s) = beta times the rounding of s.
        noise = 64 * eps * (float(np.sum(size + np.abs(beta * s))) + abs(float(y @ nu)))
        return beta, dbeta, g, dual, noise

    nu = np.zeros(n)
    beta, dbeta, g, dual, noise = evaluate(nu)
    residual = float(np.linalg.norm(g)) / scale
    steps, message, stalled = 0, "", False
    while residual > tol:
        if steps >= max_steps:
            message = (
                f"Newton's method reached max_steps={max_steps} at residual {residual:.3e} > "
                f"tol={tol:g}; raise `max_steps` or loosen `tol`."
            )
            break
        try:
            step = _newton_step(x, dbeta, g)
        except np.linalg.LinAlgError:
            message = f"The dual Hessian is singular at step {steps} (residual {residual:.3e})."
            break
        slope = float(g @ step)
        t, accepted, armijo = 1.0, False, False
        while t > 1e-30:
            trial = nu + t * step
            b_t, db_t, g_t, dual_t, noise_t = evaluate(trial)
            if math.isfinite(dual_t):
                with np.errstate(over="ignore", invalid="ignore"):
                    res_t = float(np.linalg.norm(g_t)) / scale
                armijo = dual_t <= dual + 1e-4 * t * slope
                # At the end G's decrease is below its rounding: judge by the residual.
                flat = dual_t <= dual + noise + noise_t and res_t <= (1 - 1e-4 * t) * residual
                if armijo or flat:
                    accepted = True
                    break
            t /= 2
        if not accepted or (not armijo and res_t > 0.5 * residual):
            # Rounding, not curvature, limits the step: beta = link(X^T nu) is resolved only to
            # about eps |s| link'(s) per entry, large where s nears the link's pole (depth >= 3,
            # small init) or its exponential range (depth 2, small init).
            stalled = True
            if accepted:
                nu, beta, dbeta, g, dual, noise = trial, b_t, db_t, g_t, dual_t, noise_t
                residual = res_t
                steps += 1
            break
        nu, beta, dbeta, g, dual, noise = trial, b_t, db_t, g_t, dual_t, noise_t
        residual = res_t
        steps += 1
    if stalled and residual > tol:
        message = (
            f"The dual stalled at residual {residual:.3e} after {steps} steps: float64 does not "
            f"resolve beta = link(X^T nu) to `tol={tol:g}` here (depth {depth}, smallest init "
            f"{min(u0.min(), v0.min()):.3g}); loosen `tol` above that residual."
        )
    converged = residual <= tol
    if not converged and throw:
        raise RuntimeError(f"gradflow.implicit_bias_limit did not converge: {message}")
    return ImplicitBiasLimit(
        beta=beta,
        nu=nu,
        residual=residual,
        steps=steps,
        converged=converged,
        depth=depth,
        message=message,
    )
