r"""Gradient descent against its gradient flow: the output-space distance at GD's iterates, with
$\eta\,\lambda_{\max}(w_k)$ along GD and a reference flow shown to be tight.

Gradient descent with step $\eta$ is forward Euler on the flow $w' = -\nabla F_\alpha(w)$, so on a
finite horizon it stays within $O(\eta)$ of it while $\eta\,\lambda_{\max} < 2$ along the path;
at the edge of stability (Cohen et al., ICLR 2021) it leaves every flow. This measures how far
it is, so that a GD experiment can be read as evidence about a flow theorem, or not.
"""

import numbers
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Int

from ._losses import SquareLoss, empirical_norm
from ._problem import Problem
from ._solution import RESULTS
from ._solve import solve
from ._typing import Array, Float, Params
from .analysis._sharpness import sharpness_along
from .solvers._gradient_descent import GradientDescent

# The reference is tight when the two flow solves agree to this fraction of the smallest gap.
TIGHTNESS = 0.1


class GDFlowDistance(eqx.Module):
    r"""Gradient descent with step $\eta$ against the gradient flow from the same $w_0$, at
    GD's saved iterates $w_k$, $t_k = k\eta$ ([`gradflow.gd_flow_distance`][]).

    - `ts`, `iterations`: the times $t_k = k\eta$ and the iterations $k$.
    - `distance`: $\|\alpha h(w_k) - \alpha h(w(t_k))\|_F$ (empirical norm), against the
      flow solved at `rtol_tight`.
    - `eta_sharpness`: $\eta\,\lambda_{\max}(\nabla^2 F_\alpha(w_k))$ ([`gradflow.sharpness`][]):
      GD is stable on the local quadratic below 2.
    - `reference_error`: $\|\alpha h(w_{\mathrm{rtol}}(t_k)) - \alpha h(w_{\mathrm{tight}}(t_k))
      \|_F$, the two flow solves' disagreement at each iterate.
    - `learning_rate`, `rtol`, `rtol_tight`: $\eta$ and the flow solves' tolerances.
    - `result`: how GD ended ([`gradflow.RESULTS`][]; after a divergence the later entries are
      NaN).

    `reference_tight` says whether the flow reference is resolved well below the gaps it
    measures: the two solves agree, at every iterate, to a tenth of the smallest gap after
    $t = 0$ (`max(reference_error) <= 0.1 * min(distance[iterations > 0])`).
    """

    ts: Float[Array, " iterates"]
    iterations: Int[Array, " iterates"]
    distance: Float[Array, " iterates"]
    eta_sharpness: Float[Array, " iterates"]
    reference_error: Float[Array, " iterates"]
    result: RESULTS
    learning_rate: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    rtol_tight: float = eqx.field(static=True)

    @property
    def tightness(self) -> float:
        """The smallest gap after $t = 0$ over the largest reference error (finite entries):
        the reference is tight when this is at least 10."""
        positive = np.asarray(self.iterations) > 0
        gaps = np.asarray(self.distance)[positive]
        gaps = gaps[np.isfinite(gaps)]
        error = np.asarray(self.reference_error)
        error = error[np.isfinite(error)]
        if gaps.size == 0 or error.size == 0:
            return float("nan")
        worst = float(np.max(error))
        return float(np.min(gaps)) / worst if worst > 0 else float("inf")

    @property
    def reference_tight(self) -> bool:
        """Whether the two flow solves agree to a tenth of the smallest gap (see `tightness`)."""
        return bool(self.tightness >= 1 / TIGHTNESS)

    def path_distance(self, first: int = 0) -> float:
        """The largest `distance` over the saved iterates $k \\ge$ `first` (NaN entries, after a
        divergence, make it NaN)."""
        keep = np.asarray(self.iterations) >= first
        if not np.any(keep):
            raise ValueError(
                f"`first` must be at most the last saved iteration "
                f"{int(np.asarray(self.iterations)[-1])}; got first={first}."
            )
        return float(np.max(np.asarray(self.distance)[keep]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lists (NaN as `None`), the settings and the tightness."""

        def conv(x):
            return [float(v) if np.isfinite(v) else None for v in np.asarray(x, dtype=float)]

        tightness = self.tightness
        return {
            "ts": conv(self.ts),
            "iterations": np.asarray(self.iterations).tolist(),
            "distance": conv(self.distance),
            "eta_sharpness": conv(self.eta_sharpness),
            "reference_error": conv(self.reference_error),
            "learning_rate": self.learning_rate,
            "rtol": self.rtol,
            "rtol_tight": self.rtol_tight,
            "tightness": tightness if np.isfinite(tightness) else None,
            "reference_tight": self.reference_tight,
            "succeeded": bool(self.result == RESULTS.successful),
            "result": RESULTS[self.result] or "successful",
        }

    def __repr__(self) -> str:
        def show(x):
            return np.array2string(np.asarray(x), precision=4, threshold=8)

        return (
            f"GDFlowDistance(learning_rate={self.learning_rate:g}, "
            f"iterations={show(self.iterations)}, distance={show(self.distance)}, "
            f"eta_sharpness={show(self.eta_sharpness)}, "
            f"max reference_error={float(np.nanmax(np.asarray(self.reference_error))):.3g}, "
            f"tightness={self.tightness:.3g}, reference_tight={self.reference_tight}, "
            f"result={self.result!r})"
        )


@eqx.filter_jit
def _output_distances(problem: Problem, a: Params, b: Params) -> Array:
    def one(p, q):
        return empirical_norm(problem.alpha * (problem.h(p) - problem.h(q)))

    return jax.vmap(one)(a, b)


def _iterations(iterations: Any, num_steps: int) -> np.ndarray:
    if iterations is None:
        # `solve`'s default for gradient descent: up to 101 evenly spaced iterates.
        return np.unique(np.linspace(0, num_steps, min(num_steps, 100) + 1).round().astype(int))
    raw = np.asarray(iterations)
    if raw.ndim != 1 or raw.size == 0 or raw.dtype.kind not in "iu":
        raise ValueError(
            "`iterations` must be a non-empty 1-d array of integers (iteration numbers k, "
            f"saved at t = k * learning_rate); got {iterations!r}."
        )
    if raw[0] < 0 or raw[-1] > num_steps or np.any(np.diff(raw) < 0):
        raise ValueError(
            f"`iterations` must be non-decreasing integers in [0, num_steps={num_steps}]; got "
            f"first {int(raw[0])}, last {int(raw[-1])}"
            f"{', not sorted' if np.any(np.diff(raw) < 0) else ''}."
        )
    if raw[-1] == 0:
        raise ValueError(
            "`iterations` must include an iteration > 0: at k = 0 GD and the flow are both at "
            "w0, and the reference's tightness is measured against the gaps after it."
        )
    return raw.astype(int)


def gd_flow_distance(
    problem: Problem,
    learning_rate: float,
    num_steps: int,
    *,
    iterations: Any = None,
    solver: Any = "auto",
    rtol: float = 1e-8,
    rtol_tight: float | None = None,
    max_steps: int | None = None,
    sharpness_rtol: float = 1e-4,
) -> GDFlowDistance:
    r"""How far gradient descent with step $\eta$ is from the gradient flow, in output space, at
    its iterates: $\|\alpha h(w_k) - \alpha h(w(k\eta))\|_F$, with $\eta\,\lambda_{\max}(w_k)$
    along GD, from one call.

    Gradient descent $w_{k+1} = w_k - \eta \nabla F_\alpha(w_k)$ is forward Euler on the flow,
    $O(\eta)$ from it on a finite horizon while it is stable; backward error analysis puts it
    $O(\eta^2)$ from the flow of $F_\alpha + (\eta/4)\|\nabla F_\alpha\|^2$ instead (Barrett &
    Dherin, ICLR 2021), and at the edge of stability, $\eta\,\lambda_{\max} \approx 2$ (Cohen et
    al., ICLR 2021), from every flow.

    Three solves ([`gradflow.solve`][], without the linearized flow, saving the parameters):
    GD for `num_steps` steps, and the flow to $t_1 = $ `num_steps` $\eta$ twice, at `rtol` and
    at `rtol_tight` (each with `atol = rtol / 100`), saved at GD's iterates. Distances are taken
    to the tight solve; the loose one shows it tight: `reference_error` is the two solves'
    disagreement at each iterate, and the result's `reference_tight` holds when its largest
    entry is at most a tenth of the smallest gap after $t = 0$. A reference solve that fails
    raises [`gradflow.SolveError`][]; a GD run that diverges is reported (`result`, NaN after
    it). The sharpness is [`gradflow.sharpness_along`][] on GD's iterates.

    **Arguments:**

    - `problem`: a [`gradflow.Problem`][].
    - `learning_rate`: the step $\eta > 0$.
    - `num_steps`: the number of GD steps (the horizon is `num_steps * learning_rate`).
    - `iterations`: the iterations $k$ to compare at, non-decreasing integers in
      `[0, num_steps]` with one above 0 (default: up to 101 evenly spaced, as `solve` saves
      GD). Each costs a sharpness estimate and a saved copy of the parameters per solve.
    - `solver`: the flow's solver for [`gradflow.solve`][] (`"auto"`, or a diffrax solver).
    - `rtol`, `rtol_tight`: the flow's two relative tolerances (default `rtol_tight =
      rtol / 100`); `rtol_tight` must be below `rtol`. A piecewise-smooth model (ReLU) is
      resolved with kinks costing steps: loosen both (e.g. 1e-4 and 1e-6) rather than hit
      `max_steps`. For float32 parameters both must be at least 1e-6 (`solve` refuses less).
    - `max_steps`: the flow solves' step budget (`solve`'s default if `None`).
    - `sharpness_rtol`: the residual tolerance of the sharpness estimates.

    **Returns:** a [`gradflow.GDFlowDistance`][].
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"`problem` must be a gradflow.Problem; got {type(problem).__name__}.")
    if isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool):
        learning_rate = float(learning_rate)  # a numpy scalar too: the solver's field is static
    gd = GradientDescent(learning_rate)
    if (
        isinstance(num_steps, (bool, np.bool_))
        or not isinstance(num_steps, (int, np.integer))
        or num_steps < 1
    ):
        raise ValueError(f"`num_steps` must be an integer >= 1; got num_steps={num_steps!r}.")
    num_steps = int(num_steps)
    its = _iterations(iterations, num_steps)
    rtol = float(rtol)
    rtol_tight = rtol / 100 if rtol_tight is None else float(rtol_tight)
    if not rtol_tight < rtol:
        raise ValueError(
            f"`rtol_tight` must be below `rtol` (the second solve checks the first); got "
            f"rtol={rtol}, rtol_tight={rtol_tight}."
        )
    eta = gd.learning_rate
    t1 = num_steps * eta
    descent = solve(problem, t1=t1, ts=its * eta, solver=gd, linearized=False, save_params=True)

    def flow(r):
        return solve(
            problem,
            t1=t1,
            ts=descent.ts,
            solver=solver,
            rtol=r,
            atol=r / 100,
            max_steps=max_steps,
            linearized=False,
            save_params=True,
            throw=True,
        )

    loose, tight = flow(rtol), flow(rtol_tight)
    distance = _output_distances(problem, descent.params, tight.params)
    reference = _output_distances(problem, loose.params, tight.params)
    sharp = sharpness_along(problem, descent.params, rtol=sharpness_rtol)
    return GDFlowDistance(
        ts=descent.ts,
        iterations=jnp.asarray(its),
        distance=distance,
        eta_sharpness=eta * sharp.value,
        reference_error=reference,
        result=descent.result,
        learning_rate=eta,
        rtol=rtol,
        rtol_tight=rtol_tight,
    )


class GDAudit(eqx.Module):
    r"""A gradient-descent run audited against its flows (`audit_gd`): at
    GD's saved iterates $w_k$ ($t_k = k\eta$), the sharpness and GD's output distance to the
    gradient flow and to its modified flow (the flow of $F_\alpha + (\eta/4)\|\nabla
    F_\alpha\|^2$, which GD follows to $O(\eta^2)$ where it is stable; Barrett & Dherin, ICLR
    2021), both from the same $w_0$ at the same times.

    - `iterations`: the saved iterations $k$.
    - `eta_sharpness`: $\eta\,\lambda_{\max}(\nabla^2 F_\alpha(w_k))$ ([`gradflow.sharpness`][]);
      `sharpness_converged` whether each estimate met its tolerance.
    - `flow_distance`, `modified_distance`: $\|\alpha h(w_k) - \alpha h(w(t_k))\|_F$ to the flow
      and to the modified flow (empirical norm).
    - `target_norm`: $\|y\|_F$ of the square loss's targets, the scale `relative_*` divide by.
    - `flow_result`, `modified_result`: how the two flow solves ended; `flow_evaluations`,
      `modified_evaluations` their evaluations (gradients, and Hessian-vector products).
    - `reference_error`: the largest disagreement, over the saves and the two flows, between
      the solves at `rtol` and a second pair at `rtol_check` (NaN when not checked).
    - `test_loss_end`: the test loss at the last save of GD, the flow and the modified flow
      (NaN when no test set was given).
    - `learning_rate`, `rtol`, `rtol_check`.

    GD *entered the edge of stability* when $\eta\,\lambda_{\max} \ge 2$ at a saved iterate: the
    estimate is a Ritz value, never above $\lambda_{\max}$, so a converged one at or above 2
    shows it; an excursion between two saves is not seen.
    """

    iterations: Int[Array, " saves"]
    eta_sharpness: Float[Array, " saves"]
    sharpness_converged: Array
    flow_distance: Float[Array, " saves"]
    modified_distance: Float[Array, " saves"]
    target_norm: float
    flow_result: str
    modified_result: str
    flow_evaluations: int
    modified_evaluations: int
    reference_error: float
    test_loss_end: tuple[float, float, float]
    learning_rate: float
    rtol: float
    rtol_check: float | None

    @property
    def max_eta_sharpness(self) -> float:
        """The largest $\\eta\\,\\lambda_{\\max}$ over the saved iterates (finite ones)."""
        v = np.asarray(self.eta_sharpness, dtype=float)
        v = v[np.isfinite(v)]
        return float(v.max()) if v.size else float("nan")

    @property
    def final_eta_sharpness(self) -> float:
        """$\\eta\\,\\lambda_{\\max}$ at the last saved iterate."""
        return float(np.asarray(self.eta_sharpness)[-1])

    @property
    def edge_of_stability(self) -> bool:
        """Whether $\\eta\\,\\lambda_{\\max} \\ge 2$ at some saved iterate."""
        return bool(np.any(np.asarray(self.eta_sharpness) >= 2.0))

    @property
    def first_unstable_iteration(self) -> int | None:
        """The first saved iteration with $\\eta\\,\\lambda_{\\max} \\ge 2$, or `None`."""
        hit = np.flatnonzero(np.asarray(self.eta_sharpness) >= 2.0)
        return int(np.asarray(self.iterations)[hit[0]]) if hit.size else None

    def _largest(self, distance: Any) -> float:
        # From the first iteration on (at k = 0 every path is at w0), over the saves both paths
        # reached: a flow stopped at its step budget is NaN after it, and says so in its result.
        d = np.asarray(distance, dtype=float)[np.asarray(self.iterations) > 0]
        d = d[np.isfinite(d)]
        return float(np.max(d)) if d.size else float("nan")

    @property
    def max_flow_distance(self) -> float:
        """The largest distance of GD to the flow over the saved iterates after $k = 0$ that
        both reached (`flow_result` says whether the flow reached them all)."""
        return self._largest(self.flow_distance)

    @property
    def max_modified_distance(self) -> float:
        """The largest distance of GD to the modified flow, as `max_flow_distance`."""
        return self._largest(self.modified_distance)

    def to_dict(self) -> dict[str, Any]:
        """The record of an experiment's point: the numbers above, the arrays as lists (NaN as
        `None`), and the relative distances (over `target_norm`)."""

        def num(x):
            x = float(x)
            return x if np.isfinite(x) else None

        def conv(x):
            return [num(v) for v in np.asarray(x, dtype=float)]

        gd, flow, modified = self.test_loss_end
        return {
            "learning_rate": self.learning_rate,
            "iterations": np.asarray(self.iterations).tolist(),
            "eta_sharpness": conv(self.eta_sharpness),
            "sharpness_converged": np.asarray(self.sharpness_converged).tolist(),
            "max_eta_sharpness": num(self.max_eta_sharpness),
            "final_eta_sharpness": num(self.final_eta_sharpness),
            "edge_of_stability": self.edge_of_stability,
            "first_unstable_iteration": self.first_unstable_iteration,
            "flow_distance": conv(self.flow_distance),
            "modified_distance": conv(self.modified_distance),
            "max_flow_distance": num(self.max_flow_distance),
            "max_modified_distance": num(self.max_modified_distance),
            "final_flow_distance": num(np.asarray(self.flow_distance)[-1]),
            "final_modified_distance": num(np.asarray(self.modified_distance)[-1]),
            "target_norm": self.target_norm,
            "max_relative_flow_distance": num(self.max_flow_distance / self.target_norm),
            "max_relative_modified_distance": num(self.max_modified_distance / self.target_norm),
            "test_loss_end": {"gd": num(gd), "flow": num(flow), "modified_flow": num(modified)},
            "flow_result": self.flow_result,
            "modified_result": self.modified_result,
            "flow_evaluations": self.flow_evaluations,
            "modified_evaluations": self.modified_evaluations,
            "rtol": self.rtol,
            "rtol_check": self.rtol_check,
            "reference_error": num(self.reference_error),
        }

    def __repr__(self) -> str:
        return (
            f"GDAudit(learning_rate={self.learning_rate:g}, "
            f"max eta*lambda_max={self.max_eta_sharpness:.3g}, "
            f"final={self.final_eta_sharpness:.3g}, edge_of_stability={self.edge_of_stability}, "
            f"max distance to the flow={self.max_flow_distance:.3g}, "
            f"to the modified flow={self.max_modified_distance:.3g}, "
            f"target_norm={self.target_norm:.3g}, rtol={self.rtol:g})"
        )


def audit_gd(
    problem: Problem,
    params: Params,
    iterations: Any,
    learning_rate: float,
    *,
    rtol: float = 1e-6,
    rtol_check: float | None = None,
    solver: Any = "auto",
    max_steps: int = 1_000_000,
    sharpness_rtol: float = 1e-3,
    test: tuple[Array, Array] | None = None,
    flows: bool = True,
) -> GDAudit:
    r"""Audit a gradient-descent run that has been made: its parameters `params` saved at the
    iterations `iterations` ($t_k = k\eta$), against the gradient flow and the modified flow
    from the same $w_0$, solved to the last save and saved at the same times.

    Unlike [`gradflow.gd_flow_distance`][] this does not run GD (an experiment has), and it
    solves each flow once, at `rtol` (`atol = rtol / 100`); `rtol_check` solves both again, and
    `reference_error` is the largest disagreement, to compare with the distances. The costs:
    a sharpness estimate per save (at `sharpness_rtol`: the edge-of-stability decision needs
    $\eta\lambda_{\max}$ to a few digits, not more) and the two flow solves, the modified one
    with a Hessian-vector product per evaluation.

    **Arguments:**

    - `problem`: the [`gradflow.Problem`][] GD ran on (with a square loss for `target_norm`).
    - `params`: GD's saved parameters, a PyTree like `problem.params0` with a leading axis.
    - `iterations`: the saved iterations $k$ (integers, increasing, the first 0).
    - `learning_rate`: GD's step $\eta$ on $F_\alpha$.
    - `rtol`, `rtol_check`, `solver`, `max_steps`: the flow solves' settings.
    - `sharpness_rtol`: the residual tolerance of the sharpness estimates.
    - `test`: `(x_test, y_test)` for the end test losses (square loss), or `None`.
    - `flows`: `False` measures the sharpness alone (the distances and the flows' test losses
      are then NaN, their results `"not solved"`).

    **Returns:** a `gradflow._gd_flow.GDAudit`.
    """
    its = np.asarray(iterations)
    if its.ndim != 1 or its.size < 2 or its.dtype.kind not in "iu" or its[0] != 0:
        raise ValueError(
            "`iterations` must be the saved iterations, a 1-d array of at least two integers "
            f"starting at 0; got {iterations!r}."
        )
    if np.any(np.diff(its) <= 0):
        raise ValueError(f"`iterations` must be increasing; got {iterations!r}.")
    if rtol_check is not None and not rtol_check < rtol:
        raise ValueError(
            f"`rtol_check` must be below `rtol` (it checks the solves at rtol); got "
            f"rtol={rtol}, rtol_check={rtol_check}."
        )
    if not isinstance(problem.loss, SquareLoss):
        raise ValueError(
            "`problem` must have a square loss (`gf.SquareLoss`): the distances are reported "
            f"relative to its targets' norm; got {type(problem.loss).__name__}."
        )
    eta = float(learning_rate)
    ts = its * eta

    def flow(r: float, modified: bool) -> Any:
        return solve(
            problem,
            t1=float(ts[-1]),
            ts=ts,
            solver=solver,
            rtol=r,
            atol=r / 100,
            max_steps=max_steps,
            linearized=False,
            save_params=True,
            modified_step=eta if modified else None,
        )

    plain, modified = (flow(rtol, False), flow(rtol, True)) if flows else (None, None)
    reference = float("nan")
    if flows and rtol_check is not None:
        errors = [
            _output_distances(problem, s.params, flow(rtol_check, m).params)
            for s, m in ((plain, False), (modified, True))
        ]
        reference = float(max(np.nanmax(np.asarray(e)) for e in errors))
    sharp = sharpness_along(problem, params, rtol=sharpness_rtol)
    target_norm = float(empirical_norm(problem.loss.targets))
    ends = (float("nan"),) * 3
    if test is not None:
        x_test, y_test = test

        def test_loss(p: Params) -> float:
            last = jax.tree_util.tree_map(lambda x: x[-1], p)
            return float(SquareLoss(y_test)(problem.alpha * problem.apply(last, x_test)))

        ends = (test_loss(params), float("nan"), float("nan"))
        if flows:
            ends = (ends[0], test_loss(plain.params), test_loss(modified.params))

    # Unsolved flows (`flows=False`) read as NaN distances, no evaluations, "not solved".
    def evals(s: Any) -> int:
        if s is None:
            return 0
        stats = s.stats
        return int(stats.get("num_vector_field_evals", stats["num_steps"])) + int(
            stats.get("num_jvp_evals", 0)
        )

    def distance(s: Any) -> np.ndarray:
        if s is None:
            return np.full(its.shape, np.nan)
        return np.asarray(_output_distances(problem, params, s.params))

    def result(s: Any) -> str:
        return "not solved" if s is None else (RESULTS[s.result] or "successful")

    return GDAudit(
        iterations=jnp.asarray(its),
        eta_sharpness=eta * np.asarray(sharp.value),
        sharpness_converged=np.asarray(sharp.converged),
        flow_distance=distance(plain),
        modified_distance=distance(modified),
        target_norm=target_norm,
        flow_result=result(plain),
        modified_result=result(modified),
        flow_evaluations=evals(plain),
        modified_evaluations=evals(modified),
        reference_error=reference,
        test_loss_end=ends,
        learning_rate=eta,
        rtol=float(rtol),
        rtol_check=None if rtol_check is None else float(rtol_check),
    )
