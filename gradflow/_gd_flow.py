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

from ._losses import empirical_norm
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
