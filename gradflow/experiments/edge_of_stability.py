r"""The edge of stability, shown: full-batch gradient descent raises the sharpness to $2/\eta$ and
hovers there, where it leaves the gradient flow (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR
2021)."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .. import data as gdata
from .._losses import SquareLoss
from .._memory import ArraySize
from .._problem import Problem
from .._solution import RESULTS
from .._solve import solve
from ..analysis._sharpness import sharpness_along
from ..solvers._gradient_descent import GradientDescent
from ..sweeps._computation import Computation
from ..sweeps._io import nan_array
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import AbstractExperiment, finish_axes, option, outputs, pyplot, savefig

# The 8x8 digits: 64 inputs, 10 classes (one-hot targets of the square loss).
_INPUTS, _CLASSES = 64, 10
# The target band: the sharpness within 5% of 2/eta over the edge-of-stability phase.
_BAND = 0.05


def tanh_mlp(params: list[dict[str, Any]], inputs: Any) -> Any:
    r"""A fully connected tanh network with biases, $z_{l+1} = \tanh(W_l z_l + b_l)$ and a
    linear last layer; `params` is a list of `{"w": (fan_in, fan_out), "b": (fan_out,)}`.
    Smooth (unlike ReLU), so its Hessian, and the sharpness, are continuous along a path."""
    z = inputs
    for layer in params[:-1]:
        z = jnp.tanh(z @ layer["w"] + layer["b"][None, :])
    return z @ params[-1]["w"] + params[-1]["b"][None, :]


def loss_path(
    problem: Problem,
    eta: float,
    iterations: np.ndarray,
    *,
    sharpness: bool = True,
    **solve_options: Any,
) -> dict[str, Any]:
    r"""The loss, and the sharpness $\lambda_{\max}(\nabla^2 F_\alpha)$, of one path from $w_0$
    at the times $t_k = k\eta$ of the iterations $k$ in `iterations`: the path that
    [`gradflow.solve`][] integrates with `solve_options` (`solver=GradientDescent(eta)` for
    gradient descent, tolerances for the gradient flow; a new kind of flow is one more solve
    option here, e.g. the modified flow of $F_\alpha + (\eta/4)\|\nabla F_\alpha\|^2$).

    **Returns:** `loss` at each $t_k$, `sharpness` there ([`gradflow.sharpness_along`][]; only
    with `sharpness=True`, which saves the parameters), `result` (the solve's
    [`gradflow.RESULTS`][] message, `"successful"` if it reached the end) and the solve's
    `solver`.
    """
    ts = eta * np.asarray(iterations, dtype=float)
    sol = solve(
        problem,
        t1=float(ts[-1]),
        ts=ts,
        linearized=False,
        save_params=sharpness,
        **solve_options,
    )
    out: dict[str, Any] = {
        "loss": np.asarray(sol.loss),
        "result": RESULTS[sol.result] or "successful",
        "solver": sol.info.solver if sol.info is not None else None,
    }
    if sharpness:
        out["sharpness"] = np.asarray(sharpness_along(problem, sol.params).value)
    return out


def edge_phase(iterations: Any, sharpness: Any, eta: float, fraction: float) -> dict[str, Any]:
    r"""The edge-of-stability phase of a gradient-descent path: the iterations from the first
    at which the sharpness reaches `fraction` $\cdot 2/\eta$ on, and how far the sharpness
    stays from $2/\eta$ there.

    **Arguments:** the iterations $k$, the sharpness $\lambda_{\max}(w_k)$ at each, the step
    $\eta$ and `fraction`.

    **Returns:** `onset` (that first iteration, `None` if never reached), `in_phase` (a bool
    mask of `iterations`), and, over the phase, statistics of the relative deviation
    $\lambda_{\max}\eta/2 - 1$: `mean_deviation` and `max_deviation` of its absolute value,
    `mean_signed_deviation` (positive: above $2/\eta$), `within_5pct` (the fraction of the
    phase's iterations within 5%) and `late_deviation` (the largest absolute value over the
    later half of the phase, after the overshoot at its entry); all `None` without a phase.
    """
    its = np.asarray(iterations)
    lam = nan_array(list(sharpness))
    reached = np.flatnonzero(lam >= fraction * 2 / eta)
    if reached.size == 0:
        names = ("mean_deviation", "max_deviation", "mean_signed_deviation", "within_5pct")
        none = dict.fromkeys((*names, "late_deviation"))
        return {"onset": None, "in_phase": np.zeros(its.shape, bool), **none}
    onset = int(its[reached[0]])
    in_phase = its >= onset
    signed = lam[in_phase] * eta / 2 - 1
    late = its[in_phase] >= (onset + its[-1]) / 2
    return {
        "onset": onset,
        "in_phase": in_phase,
        "mean_deviation": float(np.mean(np.abs(signed))),
        "max_deviation": float(np.max(np.abs(signed))),
        "mean_signed_deviation": float(np.mean(signed)),
        "within_5pct": float(np.mean(np.abs(signed) <= _BAND)),
        "late_deviation": float(np.max(np.abs(signed[late]))),
    }


@dataclasses.dataclass(frozen=True)
class EdgeOfStability(AbstractExperiment):
    r"""Full-batch gradient descent at the edge of stability (Cohen, Kaur, Li, Kolter &
    Talwalkar, *Gradient Descent on Neural Networks Typically Occurs at the Edge of
    Stability*, ICLR 2021).

    A tanh network (`tanh_mlp` of its module: `depth` hidden layers of `width`,
    weights $N(0, 1/\text{fan-in})$, zero biases) on the first `n_train` training images of
    the bundled digits (inputs scaled to unit norm, one-hot targets, square loss, $\alpha = 1$).
    For each step $\eta$ (one point), gradient descent $w_{k+1} = w_k - \eta\nabla F_1(w_k)$
    runs `num_steps` steps, and the gradient flow $w' = -\nabla F_1(w)$ runs to the same
    time $t = k\eta$. The sharpness $\lambda_{\max}(\nabla^2 F_1)$ ([`gradflow.sharpness`][]) is
    measured along both at `num_sharpness` evenly spaced iterations; the loss of gradient
    descent at every iteration, the flow's at those.

    Gradient descent is stable on a quadratic while $\eta\lambda_{\max} < 2$. The sharpness
    first rises along both paths (progressive sharpening); once it reaches $2/\eta$ gradient
    descent oscillates along the top eigenvector and the sharpness stops rising and hovers
    at $2/\eta$, while the flow's keeps rising. From there no flow describes gradient
    descent. The summary gives, per $\eta$, the iteration where the sharpness first reaches
    `edge_fraction` $\cdot 2/\eta$ (the onset), the relative deviation of the sharpness from
    $2/\eta$ over the iterations after it (the edge-of-stability phase), and the loss of
    gradient descent against the flow's before and in that phase (the largest of
    $|L_{\mathrm{GD}}/L_{\mathrm{flow}} - 1|$ at the sampled iterations). The flow is solved at
    `flow_rtol` and at `flow_rtol / 100` (`solver="auto"`), and its loss is the tight solve's;
    their largest relative disagreement in loss is reported beside the gaps it is to resolve.

    The flows drawn are `flows(eta)`, each a set of options of [`gradflow.solve`][] given to
    [`gradflow.experiments.loss_path`][]; another flow (the modified flow of
    $F + (\eta/4)\|\nabla F\|^2$, for one) is one more entry there, and the summary, the
    table and the figure take it up by its name.
    """

    name: ClassVar[str] = "edge-of-stability"
    title: ClassVar[str] = "Full-batch GD at the edge of stability (sharpness 2/eta) vs the flow"
    claim: ClassVar[str] = (
        "the sharpness of GD rises to 2/eta and hovers there (on average within 5%), while the "
        "flow's keeps rising; there GD's loss leaves the flow's"
    )

    etas: tuple[float, ...] = option(
        (0.1, 0.15, 0.2), "GD steps eta; one point each", positive=True
    )
    n_train: int = option(
        256, "training images of the digits (first of the train split)", positive=True
    )
    width: int = option(64, "hidden units per layer", positive=True)
    depth: int = option(2, "hidden tanh layers", positive=True)
    num_steps: int = option(
        6000, "gradient-descent steps (the flow runs to num_steps * eta)", positive=True
    )
    num_sharpness: int = option(
        300, "iterations (evenly spaced) at which the sharpness is measured", positive=True
    )
    edge_fraction: float = option(
        0.95,
        "the phase starts where the sharpness first reaches edge_fraction * 2/eta",
        within="(0, 1]",
    )
    flow_rtol: float = option(
        1e-6,
        "the flow's rtol (atol = rtol / 100); checked against rtol / 100",
        within="[1e-12, 1e-2]",
    )
    seed: int = option(0, "PRNG seed of the initialization")

    @classmethod
    def quick(cls) -> "EdgeOfStability":
        return cls(etas=(0.2,), n_train=64, width=16, num_steps=1000, num_sharpness=50)

    def check_options(self) -> None:
        # the training split of the digits (1797 images, 20% held out) has 1437 images
        if self.n_train > 1437:
            raise ValueError(
                f"Option `n_train` must be at most 1437 (the digits' training split); got "
                f"n_train={self.n_train}."
            )
        if self.num_sharpness > self.num_steps:
            raise ValueError(
                f"Option `num_sharpness` must be at most `num_steps`={self.num_steps} (one "
                f"estimate per iteration at most); got num_sharpness={self.num_sharpness}."
            )

    def num_params(self) -> int:
        sizes = [_INPUTS, *[self.width] * self.depth, _CLASSES]
        return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))

    def largest_arrays(self) -> list[ArraySize]:
        return [
            ArraySize(
                "the parameters saved for the sharpness, (num_sharpness + 1) x the net's "
                "(64 + 1) x width + (depth - 1) x (width + 1) x width + (width + 1) x 10",
                (self.num_sharpness + 1) * self.num_params(),
                ("num_sharpness", "width", "depth"),
            ),
            ArraySize(
                "the hidden activations, n_train x depth x width",
                self.n_train * self.depth * self.width,
                ("n_train", "width", "depth"),
            ),
            ArraySize(
                "gradient descent's loss at every iteration, num_steps + 1",
                self.num_steps + 1,
                ("num_steps",),
            ),
        ]

    def problem(self) -> Problem:
        """The training problem: the tanh network on the digits, square loss, $\\alpha = 1$."""
        digits = gdata.digits()
        x = digits.x_train[: self.n_train].reshape(self.n_train, -1)
        # Unit-norm inputs keep the initial sharpness well below the steps' 2/eta, so the
        # path sharpens before it reaches the edge (standardized pixels start above it).
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = np.eye(_CLASSES)[digits.y_train[: self.n_train]]
        sizes = [_INPUTS, *[self.width] * self.depth, _CLASSES]
        keys = jax.random.split(jax.random.PRNGKey(self.seed), len(sizes) - 1)
        params = [
            {
                "w": jax.random.normal(k, (a, b), jnp.float64) / np.sqrt(a),
                "b": jnp.zeros(b, jnp.float64),
            }
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])
        ]
        return Problem(tanh_mlp, params, x, SquareLoss(y), alpha=1.0)

    def sharpness_iterations(self) -> np.ndarray:
        """The iterations at which the sharpness is measured: `num_sharpness + 1` about evenly
        spaced in `[0, num_steps]`, odd and even in turn."""
        its = np.linspace(0, self.num_steps, self.num_sharpness + 1).round().astype(int)
        # At the edge gradient descent alternates between the two sides of a valley from one
        # step to the next: iterations of one parity would see one side only.
        its = its + (its % 2 != np.arange(its.size) % 2)
        return np.unique(np.minimum(its, self.num_steps))

    def flows(self, eta: float) -> dict[str, dict[str, Any]]:
        """The flows compared with gradient descent of step `eta`, by name: the options of
        [`gradflow.solve`][] each is solved with, besides the tolerances (`{}`: the gradient
        flow, with `solver="auto"`): the gradient flow, and gradient descent's modified
        equation for `eta` (`modified_step`, which GD follows to $O(\\eta^2)$ where it is
        stable). Another flow joins as one more entry (in a subclass)."""
        return {"flow": {}, "modified_flow": {"modified_step": float(eta)}}

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        return [(point_key(eta=eta), {"eta": float(eta)}) for eta in self.etas]

    def build(self, *, eta: float) -> Computation:
        # One point = one step: gradient descent, the flows at two tolerances, and the
        # sharpness along each, in one computation (a flow point is one solve).
        return Computation(self.compare, eta=eta)

    def compare(self, *, eta: float) -> dict[str, Any]:
        """Gradient descent with step `eta` against the flows (the point's result)."""
        problem = self.problem()
        its = self.sharpness_iterations()
        gd = GradientDescent(eta)
        every = loss_path(problem, eta, np.arange(self.num_steps + 1), sharpness=False, solver=gd)
        sampled = loss_path(problem, eta, its, solver=gd)
        out: dict[str, Any] = {
            "eta": eta,
            "num_params": self.num_params(),
            "iterations": its,
            "gd_loss_every": every["loss"],
            "gd_loss": sampled["loss"],
            "gd_sharpness": sampled["sharpness"],
            "gd_result": sampled["result"],
            "flows": {},
        }
        for name, options in self.flows(eta).items():
            rtol = self.flow_rtol / 100
            tight = loss_path(problem, eta, its, rtol=rtol, atol=rtol / 100, **options)
            loose = loss_path(
                problem,
                eta,
                its,
                sharpness=False,
                rtol=self.flow_rtol,
                atol=self.flow_rtol / 100,
                **options,
            )
            out["flows"][name] = {
                "loss": tight["loss"],
                "sharpness": tight["sharpness"],
                "solver": tight["solver"],
                "result": tight["result"],
                # The reference's own error: the two tolerances' largest relative disagreement
                # in loss, to set beside the relative gaps of GD it measures.
                "loss_error": float(np.max(np.abs(loose["loss"] / tight["loss"] - 1))),
            }
        return out

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        rows, curves = [], {}
        for rec in sorted(outputs(sweep).values(), key=lambda r: r["eta"]):
            eta = rec["eta"]
            its = np.asarray(rec["iterations"])
            lam = nan_array(rec["gd_sharpness"])
            phase = edge_phase(its, lam, eta, self.edge_fraction)
            gd_loss = nan_array(rec["gd_loss"])
            before, during = ~phase["in_phase"], phase["in_phase"]
            row: dict[str, Any] = {"eta": eta, "onset": phase["onset"]}
            for k in ("mean_deviation", "max_deviation", "late_deviation", "within_5pct"):
                row[k] = phase[k]
            gaps: dict[str, Any] = {}
            for name, flow in rec["flows"].items():
                flow_loss = nan_array(flow["loss"])
                # |GD loss / flow loss - 1| at the sampled iterations: O(eta) while GD tracks
                # the flow, of order one once it has left it.
                gap = np.abs(gd_loss / flow_loss - 1)
                row[f"{name}_gap_before"] = float(np.max(gap[before])) if before.any() else None
                row[f"{name}_gap_in_phase"] = float(np.max(gap[during])) if during.any() else None
                gaps[f"{name}_gap_mean_in_phase"] = (
                    float(np.mean(gap[during])) if during.any() else None
                )
                gaps[f"gd_over_{name}_loss_end"] = float(gd_loss[-1] / flow_loss[-1])
                gaps[f"{name}_sharpness_end"] = float(nan_array(flow["sharpness"])[-1])
                gaps[f"{name}_loss_end"] = float(flow_loss[-1])
                gaps[f"{name}_loss_error"] = flow["loss_error"]
                gaps[f"{name}_solver"] = flow["solver"]
                gaps[f"{name}_result"] = flow["result"]
            rows.append(
                {
                    **row,
                    "two_over_eta": 2 / eta,
                    "sharpness_0": float(lam[0]),
                    "phase_iterations": (
                        None if phase["onset"] is None else self.num_steps - phase["onset"]
                    ),
                    "mean_signed_deviation": phase["mean_signed_deviation"],
                    "gd_sharpness_end": float(lam[-1]),
                    "gd_loss_end": float(gd_loss[-1]),
                    "gd_result": rec["gd_result"],
                    **gaps,
                }
            )
            curves[point_key(eta=eta)] = {
                "eta": eta,
                "onset": phase["onset"],
                "iterations": its.tolist(),
                "gd_loss_every": rec["gd_loss_every"],
                "gd_sharpness": rec["gd_sharpness"],
                "flows": {
                    n: {"loss": f["loss"], "sharpness": f["sharpness"]}
                    for n, f in rec["flows"].items()
                },
            }
        summary: dict[str, Any] = {"rows": rows}
        reached = [r for r in rows if r["onset"] is not None]
        summary["every_eta_reaches_the_edge"] = bool(rows) and len(reached) == len(rows)
        if reached:
            for k in ("mean_deviation", "max_deviation", "late_deviation"):
                summary[f"worst_{k}"] = max(r[k] for r in reached)
            summary["least_within_5pct"] = min(r["within_5pct"] for r in reached)
            before = [r["flow_gap_before"] for r in reached if r["flow_gap_before"] is not None]
            summary["largest_flow_gap_before"] = max(before) if before else None
            summary["smallest_flow_gap_in_phase"] = min(r["flow_gap_in_phase"] for r in reached)
        summary["curves"] = curves
        return summary

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        curves = list(summary["curves"].values())
        cols = max(1, len(curves))
        fig, axes = plt.subplots(
            2, cols, figsize=(5.2 * cols, 8), constrained_layout=True, squeeze=False
        )
        rows = {r["eta"]: r for r in summary["rows"]}
        colors = {"flow": "tab:blue"}
        spare = iter(["tab:orange", "tab:green", "tab:purple"])
        for j, c in enumerate(curves):
            ax, axl = axes[0, j], axes[1, j]
            eta, its = c["eta"], np.asarray(c["iterations"])
            ax.plot(its, nan_array(c["gd_sharpness"]), "-", color="k", lw=1, label="GD")
            title = rf"$\eta = {eta:g}$: sharpness"
            if c["onset"] is not None:
                row = rows[eta]
                title += (
                    f"\ndeviation from $2/\\eta$ after the onset: mean "
                    f"{row['mean_deviation']:.1%}, max {row['max_deviation']:.1%},\nmax over "
                    f"the later half "
                    f"{row['late_deviation']:.1%}"
                )
            for name, f in c["flows"].items():
                color = colors.setdefault(name, next(spare))
                ax.plot(its, nan_array(f["sharpness"]), "--", color=color, label=name)
            ax.axhline(2 / eta, color="tab:red", lw=1, label=r"$2/\eta$")
            band = (1 - _BAND) * 2 / eta, (1 + _BAND) * 2 / eta
            ax.axhspan(*band, color="tab:red", alpha=0.1, label=r"$2/\eta \pm 5\%$")
            onset = rf"onset ({self.edge_fraction:g} $\cdot 2/\eta$)"
            if c["onset"] is not None:
                ax.axvline(c["onset"], color="0.5", ls=":", lw=1, label=onset)
            finish_axes(
                ax,
                "iteration",
                r"sharpness $\lambda_{\max}(\nabla^2 F)$",
                title,
                title_size=10,
                fontsize=7,
            )
            every = nan_array(c["gd_loss_every"])
            axl.plot(np.arange(every.size), every, "-", color="k", lw=0.6, label="GD")
            for name, f in c["flows"].items():
                axl.plot(its, nan_array(f["loss"]), "--", color=colors[name], label=name)
            if c["onset"] is not None:
                axl.axvline(c["onset"], color="0.5", ls=":", lw=1, label=onset)
            finish_axes(
                axl,
                r"iteration $k$ (flows at $t = k\eta$)",
                "training loss",
                rf"$\eta = {eta:g}$: loss",
                log="y",
                fontsize=7,
            )
        return [savefig(fig, folder / f"{self.name}.png")]
