"""The init scale tau of a 2-homogeneous ReLU net acts as alpha = tau^2."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

import jax
import numpy as np

from .. import data as gdata
from .._memory import ArraySize
from .._options import SolveOptions
from .._problem import Problem
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import AbstractExperiment, finish_axes, option, pyplot, savefig
from ._two_layer import paper_init, paper_problem

Flow = Literal["direct", "rescaled"]


@dataclasses.dataclass(frozen=True)
class Homogeneity(AbstractExperiment):
    r"""For a $q$-positively-homogeneous model, scaling the init by $\tau$ is the same as scaling
    the model by $\alpha = \tau^q$ (Chizat et al., Section 2): if $v$ is the gradient flow of
    $F_{\tau^2}$ from $w_0$, the flow of $F_1$ (the unscaled objective) from $\tau w_0$ is
    $w(t) = \tau\, v(\tau^2 t)$. Checked here on the two-layer ReLU net ($q = 2$) with
    teacher-student data and the doubled init, by integrating both flows with the adaptive
    solver at tight tolerance and comparing $w(t)$ with $\tau v(\tau^2 t)$ at every save time.

    One point = one flow of one $\tau$: `"direct"`, the flow of $F_1$ from $\tau w_0$ saved at
    41 times in $[0, t_1]$, and `"rescaled"`, the flow of $F_{\tau^2}$ from $w_0$ saved at
    $\tau^2$ times those (its own `ts` and horizon from `point_options`). Each point is one
    [`gradflow.solve`][] through [`gradflow.sweep`][]; `measure` keeps its saved parameters,
    and `summarize` pairs the two flows of each $\tau$ (a $\tau$ with a failed flow is left
    out).
    """

    name: ClassVar[str] = "homogeneity"
    title: ClassVar[str] = "Init scale tau acts as alpha = tau^2 (2-homogeneous ReLU net)"
    claim: ClassVar[str] = "the flow from tau w0 equals tau v(tau^2 t), v the flow of F_{tau^2}"

    taus: tuple[float, ...] = option(
        (0.1, 0.3, 1.0, 3.0),
        "init scales tau compared (comma-separated, each > 0); two points each (the two flows)",
        positive=True,
    )
    dim: int = option(5, "input dimension d", positive=True)
    n_train: int = option(20, "training points n (teacher-student data)", positive=True)
    width: int = option(
        20, "hidden width m of the student (neurons; even: doubled init)", even=True
    )
    t1: float = option(
        20.0,
        "horizon of the flow from tau w0, in flow time (the rescaled flow runs to tau^2 t1)",
        positive=True,
    )
    rtol: float = option(1e-10, "relative tolerance of the adaptive solver (Tsit5)", positive=True)
    atol: float = option(1e-12, "absolute tolerance of the adaptive solver")
    seed: int = option(0, "PRNG seed of the data and the initialization")

    @classmethod
    def quick(cls) -> "Homogeneity":
        return cls(taus=(0.3, 3.0), t1=5.0)

    def largest_arrays(self) -> list[ArraySize]:
        n, d, m = self.n_train, self.dim, self.width
        return [
            ArraySize(
                f"the saved parameters, {len(self._ts())} saves x width x (dim + 1)",
                len(self._ts()) * m * (d + 1),
                ("width", "dim"),
            ),
            ArraySize("the hidden pre-activations, n_train x width", n * m, ("n_train", "width")),
            ArraySize("the data, n_train x dim", n * d, ("n_train", "dim")),
        ]

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        pts = [{"tau": float(t), "flow": f} for t in self.taus for f in ("direct", "rescaled")]
        return [(point_key(**p), p) for p in pts]

    def build(self, *, tau: float, flow: Flow) -> Problem:
        kd, kp = jax.random.split(jax.random.PRNGKey(self.seed))
        data = gdata.teacher_student(kd, self.n_train, 1, self.dim)
        w0 = paper_init(kp, self.width, self.dim)
        if flow == "direct":
            # The unscaled objective R(f)/1 from tau w0 ...
            w0 = jax.tree_util.tree_map(lambda v: tau * v, w0)
            return paper_problem(w0, data.x_train, data.y_train, 1.0)
        # ... against F_{tau^2} from w0, at times tau^2 t.
        return paper_problem(w0, data.x_train, data.y_train, tau**2)

    def _ts(self) -> np.ndarray:
        return np.linspace(0.0, self.t1, 41)

    def solve_options(self) -> SolveOptions:
        return SolveOptions(rtol=self.rtol, atol=self.atol, linearized=False, save_params=True)

    def point_options(self, *, tau: float, flow: Flow) -> dict[str, Any]:
        ts = self._ts() if flow == "direct" else tau**2 * self._ts()
        return {"ts": ts, "t1": float(ts[-1])}

    def measure(self, problem: Problem, solution: Any, *, tau: float, flow: Flow) -> dict[str, Any]:
        r"""The saved parameters, one array per leaf (`params_a`, `params_b`: saves x neurons
        x ...), which `summarize` compares across the two flows of a $\tau$."""
        del problem, tau, flow
        return {f"params_{k}": np.asarray(v) for k, v in solution.params.items()}

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        solved = {
            (p["tau"], p["flow"]): i for i, p in enumerate(sweep.points) if sweep.succeeded[i]
        }
        leaves = sorted(k.removeprefix("params_") for k in sweep.measures)
        rows, curves = [], {}
        for tau in dict.fromkeys(float(t) for t in self.taus):
            if (tau, "direct") not in solved or (tau, "rescaled") not in solved:
                continue
            i, j = solved[tau, "direct"], solved[tau, "rescaled"]
            w = {k: sweep.measures[f"params_{k}"][i] for k in leaves}
            v = {k: tau * sweep.measures[f"params_{k}"][j] for k in leaves}
            diff = np.sqrt(sum(np.sum((w[k] - v[k]) ** 2, axis=(1, 2)) for k in w))
            size = np.sqrt(sum(np.sum(w[k] ** 2, axis=(1, 2)) for k in w))
            loss_w, loss_v = sweep.solution.loss[i], sweep.solution.loss[j]
            rows.append(
                {
                    "tau": tau,
                    "alpha": tau**2,
                    "max_relative_difference": float(np.max(diff / size)),
                    "max_loss_difference": float(np.max(np.abs(loss_w - loss_v))),
                }
            )
            curves[f"{tau:g}"] = {"ts": sweep.solution.ts[i], "direct": loss_w, "rescaled": loss_v}
        rows.sort(key=lambda r: r["tau"])
        summary: dict[str, Any] = {"rows": rows, "rtol": self.rtol}
        if rows:
            summary["worst_relative_difference"] = max(r["max_relative_difference"] for r in rows)
        summary["curves"] = curves
        return summary

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
        for i, (tau, c) in enumerate(
            sorted(summary["curves"].items(), key=lambda kv: float(kv[0]))
        ):
            color = f"C{i}"
            ts = np.asarray(c["ts"], dtype=float)
            ax.semilogy(
                ts,
                np.asarray(c["direct"], dtype=float),
                "-",
                color=color,
                lw=2.5,
                label=rf"$\tau={tau}$: flow of $F_1$ from $\tau w_0$",
            )
            ax.semilogy(
                ts,
                np.asarray(c["rescaled"], dtype=float),
                "--",
                color="k",
                lw=1,
                label=r"every $\tau$: $\tau\, v(\tau^2 t)$, $v$ the flow of $F_{\tau^2}$ from $w_0$"
                if i == 0
                else None,
            )
        worst = summary.get("worst_relative_difference")
        finish_axes(
            ax,
            "time $t$ (of the flow from $\\tau w_0$)",
            "training loss $R(f)$",
            r"Init scale $\tau$ acts as $\alpha = \tau^2$: the two flows coincide"
            + ("" if worst is None else f" (max relative gap {worst:.1e})"),
            title_size=10,
            fontsize=7,
        )
        return [savefig(fig, folder / f"{self.name}.png")]
