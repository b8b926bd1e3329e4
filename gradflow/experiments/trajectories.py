"""Paper Fig. 1a/b: neuron trajectories of a two-layer ReLU net in the plane, lazy vs not."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

import jax
import numpy as np

from .. import data as gdata
from .._gd_flow import audit_gd
from .._losses import SquareLoss
from .._memory import ArraySize
from .._options import SolveOptions
from .._problem import Problem
from ..solvers._gradient_descent import GradientDescent
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import AbstractExperiment, finish_axes, log_spaced_steps, option, pyplot, savefig
from ._two_layer import (
    AUDITS,
    num_saves_at_least,
    paper_init,
    paper_learning_rate,
    paper_problem,
)


def _audit_row(point: dict[str, Any]) -> dict[str, Any]:
    """The summary columns of a GD point's audit (as `audit_row` of the two-layer experiments),
    from its measures; empty for a flow point or without an audit."""
    sharp = np.asarray(point.get("gd_eta_sharpness", np.nan), dtype=float)
    if not np.any(np.isfinite(sharp)):
        return {}
    iters = np.asarray(point["iterations"]) > 0
    norm = float(point["gd_target_norm"])

    def largest(name: str) -> float | None:
        d = np.asarray(point[name], dtype=float)[iters]
        return float(np.max(d)) / norm if np.all(np.isfinite(d)) else None

    gd, flow, _ = (float(v) for v in point["gd_test_loss_end"])
    return {
        "gd_max_eta_sharpness": float(np.nanmax(sharp)),
        "gd_final_eta_sharpness": float(sharp[-1]),
        "gd_edge_of_stability": bool(np.any(sharp >= 2.0)),
        "gd_flow_distance": largest("gd_flow_distance"),
        "gd_modified_distance": largest("gd_modified_distance"),
        "gd_flow_test_loss_gap": flow / gd - 1.0 if np.isfinite(flow) else None,
    }


@dataclasses.dataclass(frozen=True)
class Trajectories(AbstractExperiment):
    r"""Trajectories of the neurons of a two-layer ReLU net in $d = 2$ (Chizat et al., Fig. 1a/b).

    Teacher-student data (`n_train` = 15, `n_test` = 20 points on the circle, a teacher of 3
    neurons), a student of `width` = 16 neurons with unit input weights and $U(0, 1)$ output
    weights, doubled, times $\tau$: non-lazy at $\tau = 0.1$, lazy at $\tau = 2$. Each neuron is
    drawn as the path of $|b_j| a_j$, colored by the sign of $b_j$, with the teacher's
    directions as arrows. Trained by the paper's gradient descent (step 0.005, `num_steps`
    iterations) and by the gradient flow over the same time (adaptive Tsit5 through
    `gf.solve`). One point = one ($\tau$, method).
    """

    name: ClassVar[str] = "trajectories"
    title: ClassVar[str] = "Fig. 1a/b: neuron paths |b_j| a_j in the plane, tau = 0.1 vs tau = 2"
    claim: ClassVar[str] = (
        "at small tau the neurons move far and align with the teacher's directions; at large "
        "tau they barely move while the training loss still goes to zero"
    )

    taus: tuple[float, ...] = option(
        (0.1, 2.0),
        "init scales tau (comma-separated, each > 0): 0.1 is non-lazy, 2 lazy",
        positive=True,
    )
    methods: tuple[str, ...] = option(
        ("gd", "flow"),
        "how to train: gd (the paper's gradient descent) and/or flow (adaptive Tsit5)",
        choices=("gd", "flow"),
    )
    n_train: int = option(15, "training points on the circle", positive=True)
    n_test: int = option(20, "test points on the circle", positive=True)
    width: int = option(16, "student neurons m (even: doubled init)", even=True)
    step: float = option(
        0.005,
        "the paper's GD step eta (on the gradient without the output scale)",
        positive=True,
    )
    num_steps: int = option(
        100_000,
        "GD iterations (the flow runs over the same time, num_steps * eta * m)",
        positive=True,
    )
    num_saves: int = option(
        150,
        "saved iterates along the path (log-spaced), drawn as the trajectories",
        positive=True,
    )
    rtol: float = option(1e-6, "relative tolerance of the flow's adaptive solver", positive=True)
    atol: float = option(1e-8, "absolute tolerance of the flow's adaptive solver")
    seed: int = option(2, "PRNG seed of the teacher, the data and the initialization")
    audit: str = option(
        "sharpness",
        "what is recorded of each gradient-descent run against its flows: sharpness: eta * "
        "lambda_max at the saved iterates; full: also GD's output distance to the gradient "
        "flow and to its modified flow (Barrett & Dherin 2021) at the saved times, both solved "
        "at rtol (atol = rtol / 100; 60-90 s a point at the paper's size, against GD's 2-21 "
        "s); off: nothing",
        choices=AUDITS,
    )

    @classmethod
    def quick(cls) -> "Trajectories":
        return cls(num_steps=20_000, num_saves=60)

    def largest_arrays(self) -> list[ArraySize]:
        n, m = self.n_train + self.n_test, self.width
        saves = num_saves_at_least(self.num_steps, self.num_saves)
        return [
            ArraySize(
                f"the saved parameters and the neurons' paths, {saves} saves x width x 5",
                saves * m * 5,
                ("width", "num_saves"),
            ),
            ArraySize("the data, (n_train + n_test) x 2", n * 2, ("n_train", "n_test")),
            ArraySize(
                "the hidden pre-activations, n_train x width",
                self.n_train * m,
                ("n_train", "width"),
            ),
            ArraySize("the grid of saved iterations, num_saves", self.num_saves, ("num_saves",)),
        ]

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        pts = [{"tau": float(t), "method": m} for t in self.taus for m in self.methods]
        return [(point_key(**p), p) for p in pts]

    def _data(self) -> Any:
        return gdata.teacher_student(
            jax.random.split(jax.random.PRNGKey(self.seed))[0], self.n_train, self.n_test, 2
        )

    def build(self, *, tau: float, method: Literal["gd", "flow"]) -> Problem:
        kp = jax.random.split(jax.random.PRNGKey(self.seed))[1]
        data = self._data()
        w0 = paper_init(kp, self.width, 2, tau=tau, input_init="sphere", output_init="uniform")
        return paper_problem(w0, data.x_train, data.y_train, 1.0)

    def _iterations(self) -> np.ndarray:
        return log_spaced_steps(self.num_steps, self.num_saves)

    def solve_options(self) -> SolveOptions:
        eta = paper_learning_rate(self.width, self.step)
        return SolveOptions(
            self.num_steps * eta, self._iterations() * eta, linearized=False, save_params=True
        )

    def point_options(self, *, tau: float, method: Literal["gd", "flow"]) -> dict[str, Any]:
        if method == "gd":
            return {"solver": GradientDescent(paper_learning_rate(self.width, self.step))}
        return {"rtol": self.rtol, "atol": self.atol, "max_steps": 4_000_000}

    def measure(
        self, problem: Problem, solution: Any, *, tau: float, method: str
    ) -> dict[str, Any]:
        """The neurons' paths |b_j| a_j and the test loss at every save; for gradient descent,
        its audit against its flows (`gd_audit`, see `audit`)."""
        data = self._data()
        extra: dict[str, Any] = {}
        if method == "gd" and self.audit != "off":
            audit = audit_gd(
                problem,
                solution.params,
                self._iterations(),
                paper_learning_rate(self.width, self.step),
                rtol=self.rtol,
                max_steps=4_000_000,
                test=(data.x_test, data.y_test),
                flows=self.audit == "full",
            )
            # Measures are numbers and arrays of one shape at every point (NaN at the flow's).
            ok = {"successful": 1.0, "not solved": np.nan}
            extra = {
                "gd_eta_sharpness": np.asarray(audit.eta_sharpness),
                "gd_flow_distance": np.asarray(audit.flow_distance),
                "gd_modified_distance": np.asarray(audit.modified_distance),
                "gd_target_norm": audit.target_norm,
                "gd_test_loss_end": np.asarray(audit.test_loss_end),
                "gd_flows_succeeded": np.asarray(
                    [ok.get(audit.flow_result, 0.0), ok.get(audit.modified_result, 0.0)]
                ),
            }
        a = np.asarray(solution.params["a"])  # (saves, m, 2)
        b = np.asarray(solution.params["b"])[..., 0]  # (saves, m)
        test = SquareLoss(data.y_test)
        test_loss = [
            float(test(problem.alpha * problem.apply({"a": a[i], "b": b[i, :, None]}, data.x_test)))
            for i in range(len(a))
        ]
        return {
            "iterations": self._iterations(),
            "paths": np.abs(b)[..., None] * a,  # |b_j| a_j
            "sign": np.sign(b[-1]),
            "train_loss": np.asarray(solution.loss),
            "test_loss": test_loss,
            "teacher_a": np.asarray(data.teacher_a),
            "teacher_b": np.asarray(data.teacher_b)[:, 0],
            "relative_displacement": float(
                np.sqrt(np.sum((a[-1] - a[0]) ** 2) + np.sum((b[-1] - b[0]) ** 2))
                / np.sqrt(np.sum(a[0] ** 2) + np.sum(b[0] ** 2))
            ),
            "steps": int(solution.stats["num_steps"]),
            **extra,
        }

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        # One dictionary per solved point: its values and what `measure` computed.
        solved = [
            {**sweep.points[i], **{k: v[i] for k, v in sweep.measures.items()}}
            for i in np.flatnonzero(sweep.succeeded)
        ]
        rows = [
            {
                "tau": r["tau"],
                "method": r["method"],
                "train_loss_end": float(r["train_loss"][-1]),
                "test_loss_end": float(r["test_loss"][-1]),
                "relative_displacement": float(r["relative_displacement"]),
                "solver_steps": int(r["steps"]),
                **_audit_row(r),
            }
            for r in sorted(solved, key=lambda r: (r["tau"], r["method"]))
        ]
        return {"rows": rows, "points": solved}

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        recs = summary["points"]
        taus = sorted({r["tau"] for r in recs})
        fig, axes = plt.subplots(
            2,
            max(len(taus), 1),
            figsize=(5.2 * max(len(taus), 1), 9.5),
            constrained_layout=True,
            squeeze=False,
        )
        for j, tau in enumerate(taus):
            ax, axl = axes[0, j], axes[1, j]
            th = np.linspace(0, 2 * np.pi, 200)
            ax.plot(np.cos(th), np.sin(th), ":", color="0.5", lw=1, label="unit circle")
            for r in (r for r in recs if r["tau"] == tau):
                paths = np.asarray(r["paths"], dtype=float)
                sign = np.asarray(r["sign"], dtype=float)
                style = "-" if r["method"] == "gd" else "--"
                for k in range(paths.shape[1]):
                    color = "tab:red" if sign[k] > 0 else "tab:blue"
                    ax.plot(paths[:, k, 0], paths[:, k, 1], style, color=color, lw=1.2)
                    ax.plot(paths[-1, k, 0], paths[-1, k, 1], "o", color=color, ms=3)
                ax.plot([], [], style, color="0.3", label=f"paths ({r['method']})")
                it = np.maximum(np.asarray(r["iterations"], dtype=float), 1)
                for split, color in (("train", "k"), ("test", "tab:green")):
                    label = f"{split} ({r['method']})"
                    axl.loglog(it, r[f"{split}_loss"], style, color=color, label=label)
                ta, tb = np.asarray(r["teacher_a"]), np.asarray(r["teacher_b"])
            for k in range(ta.shape[0]):
                ax.annotate(
                    "",
                    xy=ta[k],
                    xytext=(0, 0),
                    arrowprops={
                        "arrowstyle": "->",
                        "color": "tab:red" if tb[k] > 0 else "tab:blue",
                        "lw": 2.5,
                    },
                )
            ax.plot([], [], "-", color="tab:red", label=r"$b_j > 0$ (arrows: teacher)")
            ax.plot([], [], "-", color="tab:blue", label=r"$b_j < 0$")
            ax.set_aspect("equal")
            ax.set_xlim(-1.6, 1.6)
            ax.set_ylim(-1.6, 1.6)
            regime = "lazy" if tau >= 1 else "non-lazy"
            ax.set_title(rf"$\tau = {tau:g}$ ({regime}): paths of $|b_j|\,a_j$")
            ax.set_xlabel("first coordinate")
            ax.set_ylabel("second coordinate")
            ax.legend(fontsize=7, loc="lower left")
            finish_axes(
                axl,
                "iteration (gradient-descent steps; flow at the same times)",
                "loss",
                rf"$\tau = {tau:g}$: train and test loss",
                fontsize=8,
            )
        return [savefig(fig, folder / f"{self.name}.png")]
