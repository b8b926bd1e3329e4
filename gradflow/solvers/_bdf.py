r"""`BDF`: the flow integrated by a variable-order backward differentiation formula that reuses
its Jacobian (scipy's `BDF`), run on the host by [`gradflow.solve`][]."""

from typing import ClassVar

import diffrax as dfx

# Above this many state entries (the parameters, twice that with `linearized=True`) `"auto"`
# does not take BDF: its Jacobian is dense (one Hessian-vector product per entry) and factored
# (cubic in the entries).
BDF_MAX_STATE = 128


class BDF(dfx.AbstractAdaptiveSolver):
    r"""A variable-order (1 to 5) backward differentiation formula in its numerical
    differentiation form (NDF, Shampine & Reichelt 1997), scipy's `scipy.integrate.BDF`, on the
    flow's compiled vector field and its dense Jacobian (the Hessian, by `jax.jacfwd` of the
    gradient: one Hessian-vector product per state entry).

    A step solves its implicit equation by Newton's method with the Jacobian and its LU
    factorization kept across steps and recomputed only when Newton converges slowly, so a step
    costs about one gradient per Newton iteration (2-3 on the flows measured), and a long stiff
    stretch, where a stabilized method's stages grow like $\sqrt{h\lambda_{\max}}$, is crossed
    in steps that grow with the time. `"auto"` takes it for a smooth flow to its limit
    (`t1=math.inf`) of at most 128 state entries: on the diagonal nets of
    `gf.check.check_implicit_bias` (60 parameters) it reaches every limit in at most 16 311
    evaluations (Jacobians counted as 60), depth 3 at $a = 10^{-3}$ included, where
    `Tsit5ThenRKC` needs 2.4 million at $a = 10^{-2}$ (`benchmarks/bench_limit_bdf.py`).

    It runs on the host (scipy's loop calling compiled functions), so it cannot run under
    `jax.vmap` or `jax.jit` (a sweep batch, a traced problem): [`gradflow.solve`][] refuses
    those with a message. It takes the tolerances `rtol` and `atol` (no `stepsize_controller`),
    `dt0` as its first step, and `max_steps`. Statistics: `num_vector_field_evals` (gradients),
    `num_jacobians`, `num_jvp_evals` (the Jacobians' products), `num_lu`, `num_steps`.

    **References:**

    - L. F. Shampine, M. W. Reichelt, *The MATLAB ODE suite*, SIAM J. Sci. Comput. 18 (1997)
      1-22.
    - P. Virtanen et al., *SciPy 1.0*, Nature Methods 17 (2020) 261-272.
    """

    term_structure: ClassVar = dfx.AbstractTerm
    interpolation_cls: ClassVar = dfx.LocalLinearInterpolation

    def order(self, terms):
        del terms
        return 1

    def error_order(self, terms):
        del terms
        return 2

    def init(self, terms, t0, t1, y0, args):
        raise TypeError(_HOST)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        raise TypeError(_HOST)

    def func(self, terms, t0, y0, args):
        raise TypeError(_HOST)


_HOST = (
    "gradflow.BDF runs on the host through gradflow.solve (scipy's BDF on the compiled flow), "
    "not inside diffrax.diffeqsolve: call gf.solve(problem, ..., solver=gf.BDF())."
)
