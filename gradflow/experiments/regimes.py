"""Beyond the paper: random features vs neural tangent vs full training (quadratic net)."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from .. import data as gdata, models
from .._losses import SquareLoss
from .._memory import ArraySize
from .._options import SolveOptions
from .._problem import Problem
from ..analysis._closed_form import linear_flow_closed_form
from ..solvers._gradient_descent import GradientDescent
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import AbstractExperiment, finish_axes, mean_std, option, pyplot, savefig

MODES = ("random_features", "tangent", "full")


class _OutputLayerOnly(models.AbstractModel):
    """The two-layer net as a function of its output weights only (input weights frozen)."""

    model: models.TwoLayer
    a: jax.Array

    def __call__(self, params, inputs):
        return self.model({"a": self.a, "b": params["b"]}, inputs)


@dataclasses.dataclass(frozen=True)
class Regimes(AbstractExperiment):
    r"""Three ways to train a two-layer net with quadratic activation,
    $f(x) = m^{-1/2} \sum_j b_j (a_j \cdot x)^2$, on a quadratic teacher of rank 3
    ($y = \sum_{k \le 3} \pm (v_k \cdot x)^2$, $x$ uniform on $S^{d-1}$), against the number of
    training samples:

    - **random features**: only the output weights $b$ are trained (input weights frozen at
      init); the model is linear in $b$, so gradient flow converges to the minimum-norm
      interpolant, computed in closed form ([`gradflow.linear_flow_closed_form`][] at
      $t = \infty$);
    - **neural tangent**: the linearization $\bar h$ around the doubled init (every weight
      trained, features frozen): the lazy limit, also in closed form at $t = \infty$;
    - **full training**: gradient descent on all weights from the doubled init times a small
      $\tau$ (non-lazy; `num_steps` steps of `step`).

    Random features span only $m$ quadratic forms, the tangent model spans all $d(d+1)/2$ of
    them, and full training finds the rank-3 teacher from far fewer samples. One point = one
    (`n_train`, trial), all three modes.
    """

    name: ClassVar[str] = "regimes"
    title: ClassVar[str] = "Random features vs neural tangent vs full training, quadratic net"
    claim: ClassVar[str] = (
        "with few samples full (non-lazy) training generalizes far better than the tangent "
        "(lazy) model, which beats random features"
    )

    dim: int = option(20, "input dimension d", positive=True)
    width: int = option(100, "student neurons m (quadratic activation)", even=True)
    n_trains: tuple[int, ...] = option(
        (20, 40, 80, 160, 320),
        "training set sizes n (comma-separated integers); one point per size and trial",
        positive=True,
    )
    n_test: int = option(1000, "test points", positive=True)
    tau: float = option(0.3, "init scale of full training (small: non-lazy)", positive=True)
    step: float = option(0.3, "gradient-descent step of full training", positive=True)
    num_steps: int = option(50_000, "gradient-descent iterations of full training", positive=True)
    trials: int = option(
        3,
        "independent trials (own teacher, data and init) per training-set size",
        positive=True,
    )
    seed: int = option(0, "PRNG seed of the trials")

    @classmethod
    def quick(cls) -> "Regimes":
        return cls(
            dim=8, width=20, n_trains=(15, 60), n_test=200, tau=0.2, num_steps=5000, trials=1
        )

    def largest_arrays(self) -> list[ArraySize]:
        n, nt, d, m = max(self.n_trains), self.n_test, self.dim, self.width
        return [
            ArraySize(
                "the tangent kernel and its eigenvectors of the lazy models, 2 x n^2 for the "
                "largest n of n_trains",
                2 * n * n,
                ("n_trains",),
            ),
            ArraySize("the data, (n + n_test) x dim", (n + nt) * d, ("n_trains", "n_test", "dim")),
            ArraySize(
                "the hidden pre-activations, (n + n_test) x width",
                (n + nt) * m,
                ("width", "n_trains", "n_test"),
            ),
        ]

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        pts = [{"n_train": int(n), "trial": t} for n in self.n_trains for t in range(self.trials)]
        return [(point_key(n=p["n_train"], trial=p["trial"]), p) for p in pts]

    def _trial(self, n_train: int, trial: int) -> dict[str, Any]:
        """The teacher's data, the student and its init of one trial."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), trial)
        kt, kx, kxt, kp = jax.random.split(key, 4)
        x = gdata.uniform_sphere(jax.random.fold_in(kx, n_train), n_train, self.dim)
        x_test = gdata.uniform_sphere(kxt, self.n_test, self.dim)
        y = gdata.teacher_targets(kt, x, activation="quadratic")
        y_test = gdata.teacher_targets(kt, x_test, activation="quadratic")
        model = models.TwoLayer(self.width, "quadratic", scaling="sqrt")
        w0 = model.init(kp, self.dim, doubled=True)
        return {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "model": model, "w0": w0}

    def build(self, *, n_train: int, trial: int) -> Problem:
        """Full training from a small init (non-lazy), by gradient descent through the sweep."""
        t = self._trial(n_train, trial)
        small = jax.tree_util.tree_map(lambda v: self.tau * v, t["w0"])
        return Problem(t["model"], small, t["x"], SquareLoss(t["y"]))

    def solve_options(self) -> SolveOptions:
        t1 = self.num_steps * self.step
        return SolveOptions(
            t1, [t1], solver=GradientDescent(self.step), linearized=False, save_params=True
        )

    def measure(
        self, problem: Problem, solution: Any, *, n_train: int, trial: int
    ) -> dict[str, Any]:
        """The test loss of full training, and both lazy models of the same trial in closed
        form (their flows' limits as t -> infinity)."""
        t = self._trial(n_train, trial)
        model, w0, x, y, x_test = t["model"], t["w0"], t["x"], t["y"], t["x_test"]
        test = SquareLoss(t["y_test"])
        out: dict[str, Any] = {}

        # Random features: linear in b, so the flow's limit is the min-norm interpolant.
        rf_model = _OutputLayerOnly(model, w0["a"])
        rf = Problem(rf_model, {"b": w0["b"]}, x, SquareLoss(y))
        _, params_inf = linear_flow_closed_form(rf, np.array([np.inf]))
        b_inf = jax.tree_util.tree_map(lambda v: v[0], params_inf)
        out["random_features"] = (
            float(rf.loss(rf_model(b_inf, x))),
            float(test(rf_model(b_inf, x_test))),
        )

        # Neural tangent: the linearized model around w0 (h(w0) = 0), all weights trained.
        ntk = Problem(model, w0, x, SquareLoss(y))
        _, params_inf = linear_flow_closed_form(ntk, np.array([np.inf]))
        w_inf = jax.tree_util.tree_map(lambda v: v[0], params_inf)
        delta = jax.tree_util.tree_map(jnp.subtract, w_inf, w0)
        lin_test = jax.jvp(lambda w: model(w, x_test), (w0,), (delta,))[1]
        out["tangent"] = (float(ntk.loss(ntk.hbar(w_inf))), float(test(lin_test)))

        w_end = jax.tree_util.tree_map(lambda v: v[-1], solution.params)
        out["full"] = (float(solution.loss[-1]), float(test(model(w_end, x_test))))
        return {
            **{f"{k}_train_loss": v[0] for k, v in out.items()},
            **{f"{k}_test_loss": v[1] for k, v in out.items()},
            "test_target_variance": float(np.var(np.asarray(t["y_test"]))),
        }

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        records = [
            {**sweep.points[i], **{k: float(v[i]) for k, v in sweep.measures.items()}}
            for i in np.flatnonzero(sweep.succeeded)
        ]
        rows = []
        for n in self.n_trains:
            group = [r for r in records if r["n_train"] == n]
            if not group:
                continue
            row: dict[str, Any] = {"n_train": n}
            for mode in MODES:
                mean, std, k = mean_std([r[f"{mode}_test_loss"] for r in group])
                row[f"{mode}_test_mean"] = mean
                row[f"{mode}_test_std"] = std
                row[f"{mode}_train_mean"] = mean_std([r[f"{mode}_train_loss"] for r in group])[0]
            row["trials"] = len(group)
            rows.append(row)
        return {"rows": rows, "quadratic_dims": self.dim * (self.dim + 1) // 2}

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.6, 4.6), constrained_layout=True)
        labels = {
            "random_features": "random features (output layer only)",
            "tangent": "neural tangent (linearized, lazy)",
            "full": rf"full training from small init ($\tau$={self.tau:g})",
        }
        rows = summary["rows"]
        values = [r[f"{m}_test_mean"] for r in rows for m in MODES]
        finite = [v for v in values if v is not None and np.isfinite(v) and v > 0]
        # Exact recovery (test loss ~1e-30 once n > d(d+1)/2) is drawn at a floor, marked "v".
        floor = max(finite) * 1e-6 if finite else 0.0
        for mode, color in zip(MODES, ("tab:orange", "tab:red", "tab:blue")):
            if not rows:
                continue
            n = np.array([r["n_train"] for r in rows], dtype=float)
            m = np.array([r[f"{mode}_test_mean"] for r in rows], dtype=float)
            s = np.array([r[f"{mode}_test_std"] for r in rows], dtype=float)
            shown = np.maximum(m, floor)
            lower = np.minimum(s, shown - floor * 0.999)
            ax.errorbar(
                n, shown, yerr=[lower, s], fmt="o-", color=color, capsize=3, label=labels[mode]
            )
            low = m < floor
            ax.plot(n[low], shown[low], "v", color=color, ms=10)
        if rows and any(v < floor for v in finite):
            ax.plot([], [], "v", color="0.3", label=f"below {floor:.0e} (exact recovery)")
        ax.axvline(summary["quadratic_dims"], color="0.5", ls=":", label="d(d+1)/2 quadratic forms")
        finish_axes(
            ax,
            "training samples n",
            "test loss (mean ± std)",
            f"Quadratic net, d={self.dim}, m={self.width}, rank-3 quadratic teacher",
            log="xy",
            title_size=10,
            fontsize=8,
        )
        return [savefig(fig, folder / f"{self.name}.png")]
