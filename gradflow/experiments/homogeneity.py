"""The init scale tau of a 2-homogeneous ReLU net acts as alpha = tau^2."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np

from .. import data as gdata
from .._keys import point_key
from .._solve import solve
from ._base import AbstractExperiment, option, pyplot, savefig
from ._two_layer import paper_init, paper_problem


@dataclasses.dataclass(frozen=True)
class Homogeneity(AbstractExperiment):
    r"""For a $q$-positively-homogeneous model, scaling the init by $\tau$ is the same as scaling
    the model by $\alpha = \tau^q$ (Chizat et al., Section 2): if $v$ is the gradient flow of
    $F_{\tau^2}$ from $w_0$, the flow of $F_1$ (the unscaled objective) from $\tau w_0$ is
    $w(t) = \tau\, v(\tau^2 t)$. Checked here on the two-layer ReLU net ($q = 2$) with
    teacher-student data and the doubled init, by integrating both flows with the adaptive
    solver at tight tolerance and comparing $w(t)$ with $\tau v(\tau^2 t)$ at every save time.
    One point = one $\tau$.
    """

    name: ClassVar[str] = "homogeneity"
    title: ClassVar[str] = "Init scale tau acts as alpha = tau^2 (2-homogeneous ReLU net)"
    claim: ClassVar[str] = "the flow from tau w0 equals tau v(tau^2 t), v the flow of F_{tau^2}"

    taus: tuple[float, ...] = option(
        (0.1, 0.3, 1.0, 3.0),
        "init scales tau compared (comma-separated, each > 0); one point each",
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

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        return [(point_key(tau=float(t)), {"tau": float(t)}) for t in self.taus]

    def run_point(self, *, tau: float) -> dict[str, Any]:
        kd, kp = jax.random.split(jax.random.PRNGKey(self.seed))
        data = gdata.teacher_student(kd, self.n_train, 1, self.dim)
        w0 = paper_init(kp, self.width, self.dim)
        ts = np.linspace(0.0, self.t1, 41)
        kw = {"rtol": self.rtol, "atol": self.atol, "linearized": False, "save_params": True}
        # The unscaled objective R(f)/1 from tau w0 ...
        direct = paper_problem(
            jax.tree_util.tree_map(lambda v: tau * v, w0), data.x_train, data.y_train, 1.0
        )
        sol_w = solve(direct, ts=ts, throw=True, **kw)
        # ... against F_{tau^2} from w0 at times tau^2 t, rescaled by tau.
        scaled = paper_problem(w0, data.x_train, data.y_train, tau**2)
        sol_v = solve(scaled, ts=tau**2 * ts, throw=True, **kw)
        w = jax.tree_util.tree_map(np.asarray, sol_w.params)
        v = jax.tree_util.tree_map(lambda x: tau * np.asarray(x), sol_v.params)
        diff = np.sqrt(sum(np.sum((w[k] - v[k]) ** 2, axis=(1, 2)) for k in w))
        size = np.sqrt(sum(np.sum(w[k] ** 2, axis=(1, 2)) for k in w))
        return {
            "ts": ts,
            "loss_direct": np.asarray(sol_w.loss),
            "loss_rescaled": np.asarray(sol_v.loss),
            "max_relative_difference": float(np.max(diff / size)),
            "max_loss_difference": float(
                np.max(np.abs(np.asarray(sol_w.loss) - np.asarray(sol_v.loss)))
            ),
            "alpha": tau**2,
            "steps": [int(sol_w.stats["num_steps"]), int(sol_v.stats["num_steps"])],
        }

    def summarize(self, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
        rows = [
            {
                "tau": r["tau"],
                "alpha": r["alpha"],
                "max_relative_difference": r["max_relative_difference"],
                "max_loss_difference": r["max_loss_difference"],
            }
            for r in sorted(records.values(), key=lambda r: r["tau"])
        ]
        summary: dict[str, Any] = {"rows": rows, "rtol": self.rtol}
        if rows:
            summary["worst_relative_difference"] = max(r["max_relative_difference"] for r in rows)
        summary["curves"] = {
            f"{r['tau']:g}": {
                "ts": r["ts"],
                "direct": r["loss_direct"],
                "rescaled": r["loss_rescaled"],
            }
            for r in records.values()
        }
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
        ax.set_xlabel("time $t$ (of the flow from $\\tau w_0$)")
        ax.set_ylabel("training loss $R(f)$")
        worst = summary.get("worst_relative_difference")
        ax.set_title(
            r"Init scale $\tau$ acts as $\alpha = \tau^2$: the two flows coincide"
            + ("" if worst is None else f" (max relative gap {worst:.1e})"),
            fontsize=10,
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        return [savefig(fig, folder / f"{self.name}.png")]
