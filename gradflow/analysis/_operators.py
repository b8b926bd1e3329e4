r"""The linear operators of a problem, matrix-free, and the two eigenvalue iterations on them.

Every diagnostic that needs a norm or a spectrum speaks of one of these operators:

- $J = Dh(w)$, from parameters to outputs, and its transpose $J^\top$ (`jax.linearize` and its
  linear transpose: one JVP or VJP per product, the forward pass at $w$ kept);
- the tangent kernel $\Sigma = J J^\top / n$ on the outputs, and its parameter-side twin
  $J^\top J / n$ (the same nonzero spectrum);
- the Hessian $\nabla^2 F_\alpha(w)$ (forward over reverse: a JVP of the gradient);
- the second derivative $D^2 h(w)$, a symmetric bilinear map into the outputs, with its
  contractions $H_c = D^2 \langle c, h \rangle_F(w)$, symmetric operators on parameters.

The linear ones are `lineax` operators (`mv`, `transpose`, `@`, `/`), built inside a trace.
On top of them: `power_iteration` (optionally shifted, warm-startable, with a traced iteration
cap), `lanczos` (full reorthogonalization, a fixed number of steps), `lanczos_largest` (the top
eigenvalue, stopped by the residual of its Ritz pair) and `lanczos_top` (the best of several
random starts of it). The scale criterion, the spectra, the Lipschitz estimate, the stiffness
estimate of `solver="auto"`, the sharpness along a path, the stabilized solvers' spectral radius
and the CNN experiment's kernel eigenvalue all run on these.
"""

from collections.abc import Callable
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from .._losses import empirical_norm
from .._problem import _Flat
from .._typing import FlatParams, Outputs, Scalar

# ---------------------------------------------------------------------------------- operators


def _structure(x: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), x)


def jacobian(fn: Callable[[FlatParams], Outputs], w: FlatParams) -> lx.FunctionLinearOperator:
    r"""$J = D\,\mathrm{fn}(w)$ as a linear operator, by `jax.linearize` (the forward pass at
    `w` is done once; each product is one JVP, each transposed product one VJP)."""
    _, jvp = jax.linearize(fn, w)
    return lx.FunctionLinearOperator(jvp, _structure(w))


def problem_jacobian(flat: _Flat) -> lx.FunctionLinearOperator:
    """$J = Dh(w_0)$ of a flattened problem, from its linearization at $w_0$."""
    return lx.FunctionLinearOperator(flat.jvp0, _structure(flat.w0))


def kernel(jac: lx.AbstractLinearOperator, n: int | Scalar = 1) -> lx.AbstractLinearOperator:
    r"""$J J^\top / n$ on the outputs: the tangent kernel $K$ for `n = 1`, and
    $\Sigma = Dh\,Dh^*$ (the adjoint for the empirical inner product of $F$) for `n` samples."""
    return (jac @ jac.T) / n


def gram(jac: lx.AbstractLinearOperator, n: int | Scalar = 1) -> lx.AbstractLinearOperator:
    r"""$J^\top J / n$ on the parameters: $Dh^* Dh$, whose top eigenvalue is $\|Dh\|^2$ (from
    $\mathbb{R}^p$ to $F$ with its empirical norm, for `n` samples)."""
    return (jac.T @ jac) / n


def hessian(objective: Callable[[FlatParams], Scalar], w: FlatParams) -> lx.AbstractLinearOperator:
    r"""$\nabla^2 \mathrm{objective}(w)$, symmetric, by Hessian-vector products (a JVP of
    `jax.grad`, forward over reverse)."""
    grad = jax.grad(objective)
    return lx.JacobianLinearOperator(lambda u, _: grad(u), w, tags=lx.symmetric_tag)


class SecondDerivative(eqx.Module):
    r"""$D^2 h(w)$ of a map $h$ from flat parameters to outputs with $n$ samples: the symmetric
    bilinear map $B(v, v) = D^2 h(w)[v, v]$ (two nested JVPs), and for an output direction $c$
    its contraction $H_c = \nabla^2_w \langle c, h(w) \rangle_F$, with
    $\langle c, f \rangle_F = \frac1n \sum_i c_i \cdot f_i$, so that
    $\langle c, B(v, v) \rangle_F = v^\top H_c v$."""

    h: Callable[[FlatParams], Outputs]
    w: FlatParams
    n: int = eqx.field(static=True)

    def quadratic(self, v: FlatParams) -> Outputs:
        """$D^2 h(w)[v, v]$."""

        def dh(u):
            return jax.jvp(self.h, (u,), (v,))[1]

        return jax.jvp(dh, (self.w,), (v,))[1]

    def contract(self, c: Outputs) -> lx.AbstractLinearOperator:
        r"""$H_c = \nabla^2_w \langle c, h(w) \rangle_F$, a symmetric operator on parameters."""
        n = self.n
        return hessian(lambda u: jnp.sum(c * self.h(u)) / n, self.w)


def second_derivative(flat: _Flat) -> SecondDerivative:
    """$D^2 h(w_0)$ of a flattened problem."""
    return SecondDerivative(flat.h, flat.w0, int(flat.h0.shape[0]))


# --------------------------------------------------------------------------- power iteration


def _tree_norm(tree: PyTree) -> Array:
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(tree)))


def _tree_vdot(a: PyTree, b: PyTree) -> Array:
    leaves = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    return sum(jnp.vdot(x, y) for x, y in leaves)


class PowerResult(NamedTuple):
    """What `power_iteration` returns: the last unit
    vector (a warm start for the next call), the last estimate, and the products spent."""

    vector: PyTree
    value: Array
    steps: Array


# An operator that moves with the iterate: v -> (A_v, the estimate at v).
_IterateOperator = Callable[[PyTree], tuple[lx.AbstractLinearOperator, Scalar]]


def power_iteration(
    operator: lx.AbstractLinearOperator | _IterateOperator,
    v0: PyTree,
    *,
    num_iters: int | Array,
    rtol: float | Array | None,
    shift: float | Array | None = None,
    estimate: Literal["rayleigh", "norm"] = "rayleigh",
    min_iters: int = 1,
    value0: float | Array = 0.0,
) -> PowerResult:
    r"""Power iteration $v \leftarrow (A + \sigma I) v / \|(A + \sigma I) v\|$ from the unit
    vector `v0` (any PyTree), in a `jax.lax.while_loop` (jit-, vmap- and trace-friendly: the
    cap may be a traced integer).

    **Arguments:**

    - `operator`: a linear operator $A$, or a function of the iterate $v \mapsto (A_v, \nu_v)$
      for iterations whose operator moves with the vector (the shifted higher-order power
      iteration on $D^2 h$); $\nu_v$ is then the estimate.
    - `num_iters`: cap on the products (0 returns `v0` and `value0`).
    - `rtol`: stop when two successive estimates agree to this relative tolerance; `None`
      runs exactly `num_iters` steps.
    - `shift`: $\sigma$ (default none). With a spectrum in $\pm$ pairs, a positive shift
      makes the iteration converge to the algebraically largest eigenvalue instead of
      alternating between the two.
    - `estimate`: for a fixed operator, `"rayleigh"` ($\langle v, A v \rangle$, the
      eigenvalue of a symmetric $A$, error quadratic in the vector's) or `"norm"`
      ($\|A v\|$, the spectral radius for any $A$); both of $A$, not $A + \sigma I$.
    - `min_iters`: products to make before the tolerance may stop the loop (2 for a warm start
      whose `value0` is a previous estimate).
    - `value0`: the estimate before the first product.

    **Returns:** a `PowerResult`. A zero product keeps the
    vector (a zero operator gives the estimate 0 instead of NaN).
    """
    if estimate not in ("rayleigh", "norm"):
        raise ValueError(f"`estimate` must be 'rayleigh' or 'norm'; got {estimate!r}.")
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(v0))
    value0 = jnp.asarray(value0, dtype)

    def body(carry):
        i, v, value, _ = carry
        if isinstance(operator, lx.AbstractLinearOperator):
            av = operator.mv(v)
            new = _tree_vdot(v, av) if estimate == "rayleigh" else _tree_norm(av)
        else:
            op, new = operator(v)
            av = op.mv(v)
        if shift is not None:
            av = jax.tree_util.tree_map(lambda a, x: a + shift * x, av, v)
        norm = _tree_norm(av)
        safe = jnp.where(norm > 0, norm, 1.0)
        v = jax.tree_util.tree_map(lambda a, x: jnp.where(norm > 0, a / safe, x), av, v)
        return i + 1, v, jnp.asarray(new, dtype), value

    def cond(carry):
        i, _, value, prev = carry
        go = i < num_iters
        if rtol is None:
            return go
        return go & ((i < min_iters) | (jnp.abs(value - prev) > rtol * jnp.abs(value)))

    init = (jnp.zeros((), jnp.int32), v0, value0, value0)
    steps, v, value, _ = jax.lax.while_loop(cond, body, init)
    return PowerResult(v, value, steps)


def unit_normal(key: Array, like: Array) -> Array:
    """A random unit vector of the shape and dtype of `like`: the start of an iteration."""
    v = jax.random.normal(key, like.shape, like.dtype)
    return v / jnp.linalg.norm(v)


def second_derivative_norm(
    second: SecondDerivative, key: Array, *, num_iters: int, rtol: float, num_starts: int
) -> tuple[Array, Array]:
    r"""$\|D^2 h(w)\| = \sup_{\|v\| = 1} \|D^2 h(w)[v, v]\|_F$ (for a symmetric bilinear map
    between Hilbert spaces the norm is attained on the diagonal), as the best of `num_starts`
    shifted power iterations on the cubic form $(c, v, v) \mapsto \langle c, B(v, v)\rangle_F$
    (SS-HOPM, Kolda & Mayo 2011): $c = B(v, v) / \|B(v, v)\|_F$, then
    $v \leftarrow (H_c + \|B(v, v)\|_F I) v$, normalized. Without the shift, an $H_c$ with
    eigenvalues in $\pm$ pairs (factorized models $U V^\top$) makes $v$ flip between the two
    and stall below the top eigenvalue; the shift favours the algebraically largest one.

    Each start converges to a local maximum of the cubic form, so the best is a lower bound
    on the norm (and the norm where one start reaches the global maximum).

    **Returns:** the estimate $\|B(v, v)\|_F$ at the best start's final vector, and that
    start's iteration count.
    """

    def shifted(v):
        b = second.quadratic(v)
        bn = empirical_norm(b)
        c = b / jnp.where(bn > 0, bn, 1.0)
        identity = lx.IdentityLinearOperator(_structure(v))
        return second.contract(c) + bn * identity, bn

    def one_start(k):
        run = power_iteration(shifted, unit_normal(k, second.w), num_iters=num_iters, rtol=rtol)
        return run.steps, empirical_norm(second.quadratic(run.vector))

    steps, values = jax.vmap(one_start)(jax.random.split(key, num_starts))
    best = jnp.argmax(values)
    return values[best], steps[best]


# ----------------------------------------------------------------------------------- Lanczos


def _flat_matvec(
    operator: lx.AbstractLinearOperator | Callable[[Array], Array],
) -> Callable[[Array], Array]:
    if not isinstance(operator, lx.AbstractLinearOperator):
        return operator
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), operator.in_structure())
    unravel = ravel_pytree(zeros)[1]

    def matvec(q):
        return ravel_pytree(operator.mv(unravel(q)))[0]

    return matvec


def lanczos(
    operator: lx.AbstractLinearOperator | Callable[[Array], Array], v0: Array, num_iters: int
) -> Array:
    """Ritz values of a symmetric operator after `num_iters` Lanczos steps with full
    reorthogonalization (twice, "twice is enough"); with `num_iters` equal to the dimension they
    are its eigenvalues up to rounding.

    **Arguments:**

    - `operator`: a `lineax` operator (on any PyTree: it is flattened), or a matvec on flat
      vectors.
    - `v0`: the flat start vector (normalized here).
    - `num_iters`: the number of steps (static).

    **Returns:** the ascending Ritz values, shape `(num_iters,)`.
    """
    matvec = _flat_matvec(operator)
    dim = v0.shape[0]
    q_mat = jnp.zeros((num_iters + 1, dim), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    idx = jnp.arange(num_iters + 1)

    def body(i, carry):
        q_mat, diag, off = carry
        q = q_mat[i]
        w = matvec(q)
        a = jnp.vdot(q, w)
        mask = (idx <= i).astype(w.dtype)
        for _ in range(2):
            w = w - q_mat.T @ ((q_mat @ w) * mask)
        b = jnp.linalg.norm(w)
        # After a breakdown (an invariant subspace is exhausted) continue from a fresh direction
        # orthogonal to the basis: the tridiagonal matrix then splits into blocks.
        fresh = jnp.sin(jnp.arange(dim, dtype=w.dtype) * (i + 1.7) + 0.3)
        for _ in range(2):
            fresh = fresh - q_mat.T @ ((q_mat @ fresh) * mask)
        scale = jnp.maximum(jnp.abs(a), jnp.max(jnp.abs(diag)))
        broke = b <= 1e-12 * jnp.maximum(scale, 1e-300)
        nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / jnp.where(broke, 1.0, b))
        return q_mat.at[i + 1].set(nxt), diag.at[i].set(a), off.at[i].set(jnp.where(broke, 0.0, b))

    zeros = jnp.zeros((num_iters,), v0.dtype)
    _, diag, off = jax.lax.fori_loop(0, num_iters, body, (q_mat, zeros, zeros))
    tri = jnp.diag(diag) + jnp.diag(off[:-1], 1) + jnp.diag(off[:-1], -1)
    return jnp.linalg.eigvalsh(tri)


class LanczosResult(NamedTuple):
    """What `lanczos_largest` returns: the largest Ritz value, the residual norm of its Ritz
    pair (an eigenvalue of the operator lies within it of the value), and the products spent."""

    value: Array
    residual: Array
    steps: Array


def lanczos_largest(
    operator: lx.AbstractLinearOperator | Callable[[Array], Array],
    v0: Array,
    *,
    max_iters: int,
    rtol: float | Array,
) -> LanczosResult:
    r"""The largest eigenvalue of a symmetric operator $A$ by the Lanczos iteration from `v0`,
    stopped at the first step $k$ whose top Ritz pair $(\theta, y)$ has the residual
    $\|A y - \theta y\| = \beta_k |s_k| \le$ `rtol` $|\theta|$ (ARPACK's test; $s$ the
    eigenvector of the tridiagonal $T_k$, $\beta_k$ the next off-diagonal entry).

    By the Kahan-Weinstein bound an eigenvalue of $A$ lies within the residual of $\theta$
    (Parlett, *The Symmetric Eigenvalue Problem*, Thm. 4.5.1 and Sec. 13.2), and $\theta$ never
    exceeds $\lambda_{\max}$ (Cauchy interlacing): so the value is a lower bound on
    $\lambda_{\max}$, within `rtol` of an eigenvalue; from a random start, of the top one
    except with negligible probability. The Krylov space holds the power iterate, so after $k$
    products the value is at least the Rayleigh quotient of $k - 1$ power steps, and on a
    clustered top of the spectrum far above it.

    Three vectors of memory (no reorthogonalization beyond the current vector: orthogonality
    is lost only once a Ritz value converges, which stops the loop here), one product per step,
    in a `jax.lax.while_loop` (jit- and vmap-friendly). An exhausted Krylov space (a zero
    $\beta_k$: a dimension below `max_iters`, or an eigenvector as start) stops with the exact
    value of that space.

    **Arguments:**

    - `operator`: a symmetric `lineax` operator (on any PyTree: it is flattened), or a matvec on
      flat vectors.
    - `v0`: the flat start vector (normalized here).
    - `max_iters`: cap on the products (static, at least 1).
    - `rtol`: the stopping tolerance on the residual, relative to the value.

    **Returns:** a `LanczosResult`.
    """
    if max_iters < 1:
        raise ValueError(f"`max_iters` must be at least 1; got max_iters={max_iters}.")
    matvec = _flat_matvec(operator)
    dtype = v0.dtype
    idx = jnp.arange(max_iters)

    def top_ritz(diag, off, k):
        # The largest eigenpair of T_k (the leading k x k block) from a fixed-size eigh: the
        # rest of the diagonal is set below T_k's Gershgorin interval (by its width, its ends'
        # sizes and the coupling to the next vector, so it stays apart when T_k is zero), so
        # the largest eigenvalue and its vector are T_k's.
        used = idx < k
        inner = jnp.where(idx < k - 1, off, 0.0)
        radius = jnp.abs(inner) + jnp.abs(jnp.concatenate([jnp.zeros((1,), dtype), inner[:-1]]))
        lo = jnp.min(jnp.where(used, diag - radius, jnp.inf))
        hi = jnp.max(jnp.where(used, diag + radius, -jnp.inf))
        pad = lo - (hi - lo) - jnp.abs(lo) - jnp.abs(hi) - jnp.abs(off[k - 1])
        tri = (
            jnp.diag(jnp.where(used, diag, pad))
            + jnp.diag(inner[:-1], 1)
            + jnp.diag(inner[:-1], -1)
        )
        values, vectors = jnp.linalg.eigh(tri)
        return values[-1], vectors[k - 1, -1]

    def body(carry):
        k, q_prev, q, beta_prev, diag, off, _, _ = carry
        w = matvec(q) - beta_prev * q_prev
        a = jnp.vdot(q, w)
        w = w - a * q
        # A second pass against the current vector keeps the recurrence's local orthogonality
        # in rounding; it also corrects the diagonal entry.
        c = jnp.vdot(q, w)
        w, a = w - c * q, a + c
        b = jnp.linalg.norm(w)
        diag, off = diag.at[k].set(a), off.at[k].set(b)
        theta, s = top_ritz(diag, off, k + 1)
        q_next = w / jnp.where(b > 0, b, 1.0)
        return k + 1, q, q_next, b, diag, off, theta, jnp.abs(b * s)

    def cond(carry):
        k, *_, theta, residual = carry
        return (k < max_iters) & (residual > rtol * jnp.abs(theta))

    zeros = jnp.zeros((max_iters,), dtype)
    q0 = v0 / jnp.linalg.norm(v0)
    init = (
        jnp.zeros((), jnp.int32),
        jnp.zeros_like(q0),
        q0,
        jnp.zeros((), dtype),
        zeros,
        zeros,
        jnp.zeros((), dtype),
        jnp.asarray(jnp.inf, dtype),
    )
    steps, *_, value, residual = jax.lax.while_loop(cond, body, init)
    return LanczosResult(value, residual, steps)


def lanczos_top(
    operator: lx.AbstractLinearOperator | Callable[[Array], Array],
    like: Array,
    key: Array,
    *,
    num_starts: int,
    max_iters: int,
    rtol: float | Array,
) -> LanczosResult:
    r"""The largest (algebraic) eigenvalue of a symmetric operator: `lanczos_largest` from
    `num_starts` random unit starts (`unit_normal` of the split `key`), run side by side under
    `jax.vmap`, and the largest of their values kept.

    Each run stops with a Ritz value that is a lower bound on $\lambda_{\max}$ and lies within
    its residual of an eigenvalue; a start with a small component on the top eigenvector
    converges to a lower eigenvalue first, which a second start guards against (the best of
    lower bounds is still one).

    **Arguments:**

    - `operator`: a symmetric `lineax` operator, or a matvec on flat vectors.
    - `like`: a flat vector of the operator's size and dtype (the starts take its shape).
    - `key`: a PRNG key for the starts.
    - `num_starts`: how many starts (static, at least 1).
    - `max_iters`, `rtol`: as in `lanczos_largest`, per start.

    **Returns:** a `LanczosResult`: the best start's value and residual, and the products of the
    longest start (the starts run in one loop, which runs that many steps).
    """
    if num_starts < 1:
        raise ValueError(f"`num_starts` must be at least 1; got num_starts={num_starts}.")

    def run(k):
        return lanczos_largest(operator, unit_normal(k, like), max_iters=max_iters, rtol=rtol)

    runs = jax.vmap(run)(jax.random.split(key, num_starts))
    best = jnp.argmax(runs.value)
    return LanczosResult(runs.value[best], runs.residual[best], jnp.max(runs.steps))
