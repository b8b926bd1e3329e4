"""`solver="auto"`: pick the Runge-Kutta method from the model's smoothness and the tolerance.

The choice rests on the work-precision diagrams of `benchmarks/bench_work_precision.py`
(`docs/performance.md`). On the smooth flows measured (tanh nets, lazy and not), Tsit5 (order 5)
reaches a given output error along the path with 10-30% fewer gradient evaluations than scipy's
RK45 and within 1.35x of the fewest of any explicit method (Dopri8 and DOP853 win slightly near
1e-8, and by up to 2x on the error at the final time only). On the paper's Fig. 1c ReLU flow
the kinks of the activation cap the useful order: Heun (order 2) at `rtol = 1e-2` and Bosh3
(order 3) at `rtol = 1e-3` reach path errors of 4e-4 and 1.7e-4 with 422 and 895 evaluations;
Tsit5 needs 2 125 evaluations for 7.6e-4 and 13 531 for 1.9e-4."""

import dataclasses

import diffrax as dfx
import equinox as eqx
import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from ._operators import hessian, power_iteration, unit_normal
from ._problem import Problem, _flatten, _is_traced
from ._stabilized import RKC

# Primitives whose derivative jumps somewhere (kinks, steps). A model whose jaxpr holds one of
# them is treated as piecewise smooth; a smooth function written with them and not listed in
# SMOOTH_CUSTOM_JVP is flagged too: the price is a lower-order method, never a wrong answer.
KINK_PRIMITIVES = frozenset(
    {
        "max",
        "min",
        "abs",
        "sign",
        "select_n",
        "clamp",
        "floor",
        "ceil",
        "round",
        "sort",
        "argmax",
        "argmin",
        "reduce_max",
        "reduce_min",
        "rem",
        "cummax",
        "cummin",
    }
)

# Functions with a custom derivative that are smooth although their bodies use `max`/`abs` for
# numerical stability (`jax.nn.softplus` is `logaddexp(x, 0)`).
SMOOTH_CUSTOM_JVP = frozenset({"logaddexp", "logsumexp", "softmax", "log_softmax"})

# Below this relative tolerance a piecewise-smooth flow is integrated with Bosh3, above it
# (figure accuracy) with Heun.
LOOSE_RTOL = 5e-3

_CACHE: dict = {}


def _sub_jaxprs(eqn):
    for v in eqn.params.values():
        for item in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(item, jex.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jex.Jaxpr):
                yield item


def _name(eqn) -> str | None:
    call = eqn.params.get("call_jaxpr")
    info = getattr(getattr(call, "jaxpr", call), "debug_info", None)
    return getattr(info, "func_name", None)


def _jaxpr_has_kinks(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in KINK_PRIMITIVES:
            return True
        if eqn.primitive.name == "custom_jvp_call" and _name(eqn) in SMOOTH_CUSTOM_JVP:
            continue
        if any(_jaxpr_has_kinks(sub) for sub in _sub_jaxprs(eqn)):
            return True
    return False


def has_kinks(problem: Problem) -> bool:
    """Whether the model `problem.apply` may be non-differentiable somewhere: its computation
    (traced once, abstractly) holds a `max`, `min`, `abs`, `select` or another primitive with a
    jumping derivative, such as `jax.nn.relu`.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][].

    **Returns:** `True` if a kink primitive occurs. The answer is cached per model and shapes,
    so calling this again (or solving again) does not retrace the model.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    dynamic, static = eqx.partition((problem.params0, problem.inputs), eqx.is_array)
    spec = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), dynamic)
    try:
        key = (
            problem.apply,
            jax.tree_util.tree_structure(spec),
            tuple((s.shape, str(s.dtype)) for s in jax.tree_util.tree_leaves(spec)),
        )
        hash(key)
    except TypeError:  # an unhashable model: trace every time
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]

    def apply(dyn):
        params, inputs = eqx.combine(dyn, static)
        return problem.apply(params, inputs)

    result = _jaxpr_has_kinks(jax.make_jaxpr(apply)(spec).jaxpr)
    if key is not None:
        _CACHE[key] = result
    return result


# Where RKC starts to need fewer evaluations than Tsit5 (smooth) or Bosh3 (kinks), in
# lambda_max(w0) * t1, measured by `benchmarks/bench_stiff_switch.py` (docs/figures/stiff_switch):
# about 15-25 at rtol 1e-3, 250-700 at 1e-6 and 2 000-4 000 at 1e-8 (an order-2 method needs
# more steps for accuracy at tight tolerances). `stiff_threshold` interpolates these.
STIFF_THRESHOLD_AT_1E3 = 20.0
STIFF_THRESHOLD_EXPONENT = 0.45
# With kinks, below this tolerance the error control rejects steps at the kink crossings and
# RKC stops paying. On the Fig. 1c flows (`benchmarks/bench_stiff.py`), RKC against Bosh3 at
# rtol 1e-4: 18x fewer evaluations at tau = 10 (lazy), 1.1x fewer at tau = 1, 1.8x more at
# tau = 0.1; on the Fig. 1a/b flow at tau = 2 and rtol 1e-6 it took 6x Bosh3's steps.
KINKS_STIFF_MIN_RTOL = 1e-4


def stiff_threshold(rtol: float) -> float:
    r"""The stiffness $\lambda_{\max}(w_0)\, t_1$ above which `solver="auto"` takes
    [`gradflow.RKC`][]: $20\,(10^{-3}/\mathrm{rtol})^{0.45}$ (20 at `rtol=1e-3`, 450 at
    1e-6, 3 500 at 1e-8), the measured crossovers of `benchmarks/bench_stiff_switch.py`."""
    return STIFF_THRESHOLD_AT_1E3 * (1e-3 / float(rtol)) ** STIFF_THRESHOLD_EXPONENT


_POWER_ITERATIONS = 20


@eqx.filter_jit
def _lambda_max(problem: Problem) -> jax.Array:
    # The Jacobian of the scaled flow's field in z = alpha (w - w0) is minus this Hessian.
    flat = _flatten(problem, linearize=False)
    op = hessian(lambda w: problem.objective(flat.unravel(w)), flat.w0)
    v0 = unit_normal(jax.random.PRNGKey(0), flat.w0)
    return power_iteration(op, v0, num_iters=_POWER_ITERATIONS, rtol=None, estimate="norm").value


def stiffness(problem: Problem) -> float:
    r"""An estimate of $\lambda_{\max}$ of the Hessian of $F_\alpha$ at $w_0$: the largest
    rate of the gradient flow there. 20 power iterations on Hessian-vector products (one
    compilation per problem shape), a lower bound that is typically within a few percent.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][] with concrete (not traced) arrays.

    **Returns:** the estimate, a float.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    return float(_lambda_max(problem))


@dataclasses.dataclass(frozen=True)
class SolverChoice:
    """What `solver="auto"` chose, and why (recorded in `Solution.info`)."""

    solver: dfx.AbstractAdaptiveSolver
    reason: str
    stiffness: float | None  # lambda_max(w0) * t1, when estimated


def batch_stiffness(dynamic, static) -> float:
    """The largest [`gradflow.stiffness`][] over problems stacked along a leading axis
    (`dynamic`, `static` from `eqx.partition(problem, eqx.is_array)`): one vmapped program."""
    lam = jax.vmap(lambda d: _lambda_max(eqx.combine(d, static)))(dynamic)
    return float(jnp.max(lam))


def choose_solver(
    problem: Problem,
    rtol: float,
    t1: float | None = None,
    *,
    explain: bool = False,
    lambda_max: float | None = None,
) -> dfx.AbstractAdaptiveSolver | SolverChoice:
    r"""The solver `gf.solve(..., solver="auto")` uses (the default).

    - a stiff flow, $\lambda_{\max}(w_0)\, t_1 >$ [`gradflow.stiff_threshold`][]`(rtol)`
      (20 at `rtol=1e-3`, 450 at 1e-6, 3 500 at 1e-8), with $\lambda_{\max}$ the largest
      Hessian eigenvalue of $F_\alpha$ at $w_0$ ([`gradflow.stiffness`][]):
      [`gradflow.RKC`][]`()`, whose stages grow with the stiffness while an explicit method's
      step is capped at about $3/\lambda_{\max}$ (for a model with kinks only at
      `rtol >= 1e-4`: tighter, the kinks make RKC reject steps at the crossings);
    - otherwise a smooth model: `diffrax.Tsit5()` (order 5) at every tolerance;
    - otherwise a model with kinks ([`gradflow.has_kinks`][]): `diffrax.Heun()` (order 2) for
      `rtol >= 5e-3`, `diffrax.Bosh3()` (order 3) below.

    Without `t1`, or for a traced problem (inside `jax.vmap`; [`gradflow.sweep`][] chooses
    once from its first point instead), stiffness is not estimated.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][].
    - `rtol`: the relative tolerance of the solve.
    - `t1`: the horizon.
    - `explain`: return a `SolverChoice` (solver, reason, stiffness) instead of the solver.
    - `lambda_max`: the largest Hessian eigenvalue at $w_0$ if already known (a batch's
      largest, say); otherwise it is estimated.

    **Returns:** a diffrax solver, or a `SolverChoice`.
    """
    kinks = has_kinks(problem)
    stiff = None
    if t1 is not None and lambda_max is not None:
        stiff = float(lambda_max) * float(t1)
    elif t1 is not None and not _is_traced(problem.alpha):
        stiff = stiffness(problem) * float(t1)
    threshold = stiff_threshold(rtol)
    allowed = not kinks or rtol >= KINKS_STIFF_MIN_RTOL
    if stiff is not None and np.isfinite(stiff) and stiff > threshold and allowed:
        choice = SolverChoice(
            RKC(),
            f"stiff: lambda_max(w0) * t1 = {stiff:.3g} > {threshold:.3g} (the threshold at "
            f"rtol {rtol:g})",
            stiff,
        )
    else:
        if stiff is None:
            detail = "stiffness not estimated"
        elif not allowed and stiff > threshold:
            detail = (
                f"lambda_max(w0) * t1 = {stiff:.3g} but kinks at rtol < "
                f"{KINKS_STIFF_MIN_RTOL:g}, where RKC does not pay"
            )
        else:
            detail = f"lambda_max(w0) * t1 = {stiff:.3g} <= {threshold:.3g}"
        if not kinks:
            choice = SolverChoice(dfx.Tsit5(), f"smooth model, {detail}", stiff)
        elif rtol >= LOOSE_RTOL:
            choice = SolverChoice(dfx.Heun(), f"kinks, rtol >= {LOOSE_RTOL:g}, {detail}", stiff)
        else:
            choice = SolverChoice(dfx.Bosh3(), f"kinks, rtol < {LOOSE_RTOL:g}, {detail}", stiff)
    return choice if explain else choice.solver
