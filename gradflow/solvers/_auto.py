"""`solver="auto"`: pick the Runge-Kutta method from the model's smoothness and the tolerance.

The choice rests on the work-precision diagrams of `benchmarks/bench_work_precision.py`
(`docs/performance.md`). On the smooth flows measured (tanh nets, lazy and not), Tsit5 (order 5)
reaches a given output error along the path with 10-30% fewer gradient evaluations than scipy's
RK45 and within 1.35x of the fewest of any explicit method (Dopri8 and DOP853 win slightly near
1e-8, and by up to 2x on the error at the final time only). On the paper's Fig. 1c ReLU flow
the kinks of the activation cap the useful order: Heun (order 2) at `rtol = 1e-2` and Bosh3
(order 3) at `rtol = 1e-3` reach path errors of 4e-4 and 1.7e-4 with 422 and 895 evaluations;
Tsit5 needs 2 125 evaluations for 7.6e-4 and 13 531 for 1.9e-4."""

import collections
import dataclasses
import enum
import hashlib
import threading

import diffrax as dfx
import equinox as eqx
import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from .._problem import Problem, _hash_key, _is_traced
from ..analysis._operators import LanczosResult
from ._bdf import BDF
from ._stabilized import RKC
from ._switch import Tsit5ThenRKC

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


# The estimate feeds a threshold that is itself a crossover known to a factor of about 2, so
# 5% is ample: each Lanczos run stops once its top Ritz pair has a residual below 5% of the
# value, after 10 steps at most (two runs: 20 products, the old budget; the cap also sizes the
# tridiagonal eigenproblem solved at every step, which on small models costs as much as a
# product at a cap of 20). The residual certifies an eigenvalue, not the top
# one: a start with a small component on the top eigenvector converges to the next first (a
# component of 7e-5 on a 40-parameter problem of tests/sweeps/test_sweep.py gave 0.55
# lambda_max), so two random starts run side by side and the larger value is kept. Over
# 400-2 000 random
# starts on the flows of `benchmarks/bench_auto_overhead.py` (dense Hessians, numpy) this fell
# below 0.9 lambda_max in at most 0.3% of runs (lowest 0.855), with 8-13 products on average;
# the 20 power iterations it replaces did so in up to 2.9% (lowest 0.825).
_LANCZOS_RTOL = 5e-2
_LANCZOS_MAX_ITERS = 10
_LANCZOS_STARTS = 2


@eqx.filter_jit
def _lambda_max(problem: Problem) -> LanczosResult:
    # The Jacobian of the scaled flow's field in z = alpha (w - w0) is minus the Hessian of
    # F_alpha: its largest eigenvalue at w0 is the sharpness there (`gf.sharpness`, the same
    # Lanczos starts), with the budget and tolerance of this estimate.
    from ..analysis._sharpness import _sharpness_at

    return _sharpness_at(
        problem,
        None,
        False,
        jax.random.PRNGKey(0),
        _LANCZOS_STARTS,
        _LANCZOS_MAX_ITERS,
        jnp.asarray(_LANCZOS_RTOL, problem.dtype),
    )


# lambda_max per problem fingerprint, so that solving one problem again (a notebook cell run
# twice, a sweep over t1) does not estimate it again. Bounded: least recently used out first.
_STIFFNESS_CACHE: collections.OrderedDict = collections.OrderedDict()
_STIFFNESS_CACHE_SIZE = 64
_STIFFNESS_LOCK = threading.Lock()


def _on_host(x) -> bool:
    if isinstance(x, jax.Array):
        return all(d.platform == "cpu" for d in x.devices())
    return True


@jax.jit
def _device_digest(leaves: list[jax.Array]) -> jax.Array:
    # A 128-bit digest of arrays kept on an accelerator, computed there (one pass over the data,
    # no transfer): per leaf, four sums of murmur3-mixed words, each word mixed with its
    # position, in uint32 arithmetic. A change of one word always changes each sum (the mixer is
    # a bijection); any other change does so except with probability about 2^-32 per sum.
    def fmix(h):
        h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
        h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
        return h ^ (h >> 16)

    def words(x):
        if x.dtype == jnp.bool_:
            return x.astype(jnp.uint32).reshape(-1)
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            return jnp.concatenate([words(jnp.real(x)), words(jnp.imag(x))])
        bits = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
        return jax.lax.bitcast_convert_type(x, bits).astype(jnp.uint32).reshape(-1)

    out = []
    for x in leaves:
        w = words(x)
        pos = jnp.arange(w.size, dtype=jnp.uint32)
        for seed in (0x9E3779B9, 0x7F4A7C15, 0x94D049BB, 0xBF58476D):
            out.append(jnp.sum(fmix(w ^ fmix(pos + jnp.uint32(seed))), dtype=jnp.uint32))
    return jnp.stack(out) if out else jnp.zeros((0,), jnp.uint32)


def _fingerprint(problem: Problem) -> tuple | None:
    """What the estimate depends on: the problem's tree structure (its classes and static
    fields: `center`, a model module's width and activation, the loss), the bytes, dtypes and
    shapes of every array (`params0`, `inputs`, the loss targets, `alpha`; numpy arrays too,
    which can be edited in place), and every other leaf by its own equality (a plain `apply`
    function: by identity, held here so that its id is not reused). `None` for a traced problem
    or one with an unhashable part: it is not cached."""
    leaves, treedef = jax.tree_util.tree_flatten(problem)
    # SHA-1 against accidental equality, not adversaries: with the SHA extensions of current
    # CPUs it hashes 1.3 GB/s here, twice BLAKE2b (100 MB of inputs: 77 ms, a third of one
    # gradient on that problem).
    digest = hashlib.sha1(usedforsecurity=False)
    objects, device = [], []
    for leaf in leaves:
        if _is_traced(leaf):
            return None
        if isinstance(leaf, jax.Array) and not _on_host(leaf):
            device.append(leaf)
            digest.update(repr(("device", leaf.dtype.str, leaf.shape)).encode())
        elif isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            # Zero-copy for numpy and CPU arrays; `view` makes any fixed-size dtype bytes.
            arr = np.ascontiguousarray(leaf)
            if arr.dtype.hasobject:
                return None
            weak = bool(getattr(leaf, "weak_type", False))
            digest.update(repr((arr.dtype.str, arr.shape, weak)).encode())
            digest.update(arr.reshape(-1).view(np.uint8))
        elif isinstance(leaf, (bool, int, float, complex, str, type(None))):
            digest.update(repr((type(leaf).__name__, leaf)).encode())
        else:
            objects.append(leaf)
    if device:
        digest.update(np.asarray(_device_digest(device)).tobytes())
    key = (treedef, tuple(objects), digest.digest())
    try:
        hash(key)
    except TypeError:
        return None
    return key


def stiffness(problem: Problem) -> float:
    r"""An estimate of $\lambda_{\max}$ of the Hessian of $F_\alpha$ at $w_0$: the largest
    rate of the gradient flow there. Lanczos iteration on Hessian-vector products from two
    random starts side by side (one compiled program per problem shape), each stopped when the
    residual of its top Ritz pair is below 5% of its value, 10 steps at most: a lower bound on
    $\lambda_{\max}$ within 5% of an eigenvalue of the Hessian, in practice the largest (over
    random starts on the flows of `benchmarks/bench_auto_overhead.py`: below $0.9
    \lambda_{\max}$ in at most 0.3% of runs, never below 0.85; 8-13 products on average).

    The estimate is cached per problem content, so solving or estimating the same problem again
    costs a hash of its arrays (one pass over them), not another estimate. The key is the
    problem's structure and static fields, the bytes of every array (`params0`, `inputs`, the
    loss targets, `alpha`), and the model `apply`: a module by its fields, a plain function by
    identity. A problem edited in any of these (another `alpha`, other parameters, data changed
    in place) is estimated anew; a plain `apply` function is assumed pure (as `jax.jit` does:
    redefine it rather than change what it reads). The cache holds the last 64 problems.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][] with concrete (not traced) arrays.

    **Returns:** the estimate, a float.
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    key = _fingerprint(problem)
    if key is not None:
        with _STIFFNESS_LOCK:
            if key in _STIFFNESS_CACHE:
                _STIFFNESS_CACHE.move_to_end(key)
                return _STIFFNESS_CACHE[key]
    value = float(_lambda_max(problem).value)
    if key is not None:
        with _STIFFNESS_LOCK:
            _STIFFNESS_CACHE[key] = value
            while len(_STIFFNESS_CACHE) > _STIFFNESS_CACHE_SIZE:
                _STIFFNESS_CACHE.popitem(last=False)
    return value


class StiffnessSource(enum.Enum):
    """What the stiffness estimate of an auto choice ([`gradflow.SolverChoice`][]) was taken
    from; each member's value says it in words."""

    problem = "the problem solved"
    batch = "the batch's stiffest point"


@dataclasses.dataclass(frozen=True)
class SolverChoice:
    r"""What `solver="auto"` chose, and why: the decision [`gradflow.choose_solver`][] makes
    (with `explain=True`), recorded in `Solution.info` ([`gradflow.SolveInfo`][]`.choice`).

    - `solver`: the diffrax solver chosen.
    - `reason`: why, with the stiffness and the threshold it was compared with.
    - `stiffness`: the estimate $\lambda_{\max}(w_0)\, t_1$ the choice was made from
      ([`gradflow.stiffness`][]); `None` where it was not estimated (no horizon, or a traced
      problem).
    - `estimated_from`: a [`gradflow.StiffnessSource`][]: the problem solved, or the stiffest
      point of a batch of problems solved together (a [`gradflow.sweep`][] batch, one choice
      for all its points).
    """

    solver: dfx.AbstractAdaptiveSolver
    reason: str
    stiffness: float | None
    estimated_from: StiffnessSource

    def __hash__(self) -> int:
        # The solver may hold arrays (RKC's power iteration), which do not hash.
        return hash(_hash_key([self.solver, self.reason, self.stiffness, self.estimated_from]))


def batch_stiffness(dynamic, static) -> float:
    """The largest [`gradflow.stiffness`][] over problems stacked along a leading axis
    (`dynamic`, `static` from `eqx.partition(problem, eqx.is_array)`): one vmapped program."""
    lam = jax.vmap(lambda d: _lambda_max(eqx.combine(d, static)).value)(dynamic)
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
    once per batch instead, from its stiffest point), stiffness is not estimated.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][].
    - `rtol`: the relative tolerance of the solve.
    - `t1`: the horizon.
    - `explain`: return a [`gradflow.SolverChoice`][] (solver, reason, stiffness and what it
      was estimated from) instead of the solver.
    - `lambda_max`: the largest Hessian eigenvalue at $w_0$ over a batch of problems solved
      together (a [`gradflow.sweep`][] batch), if already known: the choice is then made
      from it and marked [`gradflow.StiffnessSource`][]`.batch`. Otherwise it is estimated on
      `problem`.

    **Returns:** a diffrax solver, or a [`gradflow.SolverChoice`][].
    """
    kinks = has_kinks(problem)
    source = StiffnessSource.problem if lambda_max is None else StiffnessSource.batch
    stiff = None
    if t1 is not None and lambda_max is not None:
        stiff = float(lambda_max) * float(t1)
    elif t1 is not None and not any(map(_is_traced, jax.tree_util.tree_leaves(problem))):
        stiff = stiffness(problem) * float(t1)
    threshold = stiff_threshold(rtol)
    allowed = not kinks or rtol >= KINKS_STIFF_MIN_RTOL
    if stiff is not None and np.isfinite(stiff) and stiff > threshold and allowed:
        solver = RKC()
        reason = (
            f"stiff: lambda_max(w0) * t1 = {stiff:.3g} > {threshold:.3g} (the threshold at "
            f"rtol {rtol:g})"
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
            solver, reason = dfx.Tsit5(), f"smooth model, {detail}"
        elif rtol >= LOOSE_RTOL:
            solver, reason = dfx.Heun(), f"kinks, rtol >= {LOOSE_RTOL:g}, {detail}"
        else:
            solver, reason = dfx.Bosh3(), f"kinks, rtol < {LOOSE_RTOL:g}, {detail}"
    choice = SolverChoice(solver, reason, stiff, source)
    return choice if explain else choice.solver


# The solvers `choose_solver` picks from, by the name a stored choice records.
AUTO_SOLVERS = {
    cls.__name__: cls for cls in (RKC, dfx.Tsit5, dfx.Heun, dfx.Bosh3, Tsit5ThenRKC, BDF)
}
