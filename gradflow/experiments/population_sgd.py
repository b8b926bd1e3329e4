"""SGD on the population loss against the init scale tau (fresh samples at every step)."""

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
from ..sweeps._computation import Computation
from ..sweeps._io import nan_array
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import (
    AbstractExperiment,
    capped_step,
    finish_axes,
    mean_std,
    option,
    outputs,
    pyplot,
    savefig,
)
from ._two_layer import paper_init, paper_model


@dataclasses.dataclass(frozen=True)
class PopulationSGD(AbstractExperiment):
    r"""Stochastic gradient descent on the population loss (Chizat et al., Section 4.1):
    every step draws a fresh batch of `batch_size` inputs uniform on $S^{d-1}$ labelled by the
    teacher, so there is no training set and no overfitting; the loss "at convergence" is the
    population loss after `num_steps` steps (estimated on `num_eval` fresh samples).

    Student: $f(x) = \frac1m \sum_j b_j \max(a_j \cdot x, 0)$ (mean-field output), doubled init
    $a_j \sim N(0, I_d)$, $b_j \sim N(0, 1)$ times $\tau$, and `optax.sgd` with step
    $\eta = \min(0.25/\tau^2, 25)$ on the mean-field time scale: $w \leftarrow w - (\eta/s)
    \nabla_w L$ with $s = 1/m$, i.e. step $\eta$ on $m L$. One point = one $\tau$, trials
    batched with `jax.vmap`.
    """

    name: ClassVar[str] = "population-sgd"
    title: ClassVar[str] = "SGD on the population loss vs init scale tau (mean-field output 1/m)"
    claim: ClassVar[str] = (
        "with fresh samples at each step, small tau (non-lazy) reaches a lower population loss "
        "than large tau (lazy)"
    )

    dim: int = option(100, "input dimension d", positive=True)
    width: int = option(50, "student neurons m (even: doubled init)", even=True)
    batch_size: int = option(200, "fresh samples drawn at every SGD step", positive=True)
    num_steps: int = option(20_000, "SGD steps", positive=True)
    log10_taus: tuple[float, ...] = option(
        (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0),
        "init scales, as log10(tau) (comma-separated); one point each",
    )
    max_step: float = option(
        25.0,
        "largest step (the step is min(max_step, lazy_step / tau^2), mean-field time)",
        positive=True,
    )
    lazy_step: float = option(0.25, "c in the step min(max_step, c / tau^2)", positive=True)
    trials: int = option(5, "independent trials per tau, batched with vmap", positive=True)
    num_eval: int = option(
        10_000, "fresh samples estimating the population loss at the end", positive=True
    )
    seed: int = option(0, "PRNG seed of the trials")

    @classmethod
    def quick(cls) -> "PopulationSGD":
        return cls(num_steps=1500, log10_taus=(-2.0, 1.0), trials=2, num_eval=2000)

    def largest_arrays(self) -> list[ArraySize]:
        d, m, t = self.dim, self.width, self.trials
        return [
            ArraySize(
                "each step's fresh samples and their pre-activations, batch_size x (dim + "
                "width) per trial",
                self.batch_size * (d + m) * t,
                ("batch_size", "dim", "width", "trials"),
            ),
            ArraySize(
                "the evaluation samples and their pre-activations, num_eval x (dim + width) "
                "per trial",
                self.num_eval * (d + m) * t,
                ("num_eval", "dim", "width", "trials"),
            ),
            ArraySize(
                "each step's PRNG key and batch loss, 2 x num_steps per trial",
                2 * self.num_steps * t,
                ("num_steps", "trials"),
            ),
            ArraySize(
                "the parameters and their gradient, 2 x width x (dim + 1) per trial",
                2 * m * (d + 1) * t,
                ("width", "dim", "trials"),
            ),
        ]

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        return [(point_key(tau=10.0**t), {"tau": float(10.0**t)}) for t in self.log10_taus]

    def build(self, *, tau: float) -> Computation:
        # One point: the trials of one tau, trained by SGD together (one vmapped program).
        return Computation(self.train, tau=tau)

    def train(self, *, tau: float) -> dict[str, Any]:
        """Train the trials of one tau by SGD (the point's result)."""
        import optax

        m, d = self.width, self.dim
        s = 1.0 / m
        model = paper_model(m)
        alpha = s * np.sqrt(m)
        step = capped_step(self.max_step, self.lazy_step, tau, 2)
        # Mean-field time scale: w <- w - (step / s) grad_w L(f) = w - step * grad F_alpha, with
        # F_alpha = R(alpha h) / alpha^2 = m L(f). (The step / s^2 convention of the
        # deterministic experiments is m times larger here and diverges at step 25.)
        opt = optax.sgd(step)

        def objective(w, x, y):
            return Problem(model, w, x, SquareLoss(y), alpha=alpha).objective(w)

        def one_trial(key):
            kt, kp, ks, ke = jax.random.split(key, 4)
            teacher = gdata.teacher_student(kt, 1, 1, d)
            w0 = paper_init(kp, m, d, tau=tau)

            def sgd_step(carry, k):
                w, state = carry
                x = gdata.uniform_sphere(k, self.batch_size, d)
                loss, g = jax.value_and_grad(objective)(w, x, teacher.teacher(x))
                updates, state = opt.update(g, state, w)
                return (jax.tree_util.tree_map(jnp.add, w, updates), state), loss * alpha**2

            (w, _), losses = jax.lax.scan(
                sgd_step, (w0, opt.init(w0)), jax.random.split(ks, self.num_steps)
            )
            x = gdata.uniform_sphere(ke, self.num_eval, d)
            pop = SquareLoss(teacher.teacher(x))(alpha * model(w, x))
            return pop, losses

        keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.PRNGKey(self.seed), k))(
            np.arange(self.trials)
        )
        pop, losses = jax.jit(jax.vmap(one_trial))(keys)
        pop = np.asarray(pop)
        curve = np.asarray(losses).mean(axis=0)
        idx = np.unique(np.geomspace(1, self.num_steps, 60).astype(int)) - 1
        return {
            "step": step,
            "population_loss": np.where(np.isfinite(pop), pop, np.nan),
            "batch_loss_steps": idx + 1,
            "batch_loss_mean": curve[idx],
        }

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        records = outputs(sweep)
        rows = []
        for r in sorted(records.values(), key=lambda r: r["tau"]):
            mean, std, k = mean_std(r["population_loss"])
            pop = nan_array(r["population_loss"])
            rows.append(
                {
                    "tau": r["tau"],
                    "step": r["step"],
                    "population_loss_mean": mean,
                    "population_loss_std": std,
                    # Some small-tau trials are still at a saddle after num_steps: the median
                    # shows the typical trial.
                    "population_loss_median": float(np.nanmedian(pop)) if k else float("nan"),
                    "trials": k,
                }
            )
        summary: dict[str, Any] = {"rows": rows}
        if len(rows) >= 2:
            summary["ratio_largest_over_smallest_tau"] = (
                rows[-1]["population_loss_mean"] / rows[0]["population_loss_mean"]
            )
            summary["ratio_of_medians_largest_over_smallest_tau"] = (
                rows[-1]["population_loss_median"] / rows[0]["population_loss_median"]
            )
        summary["curves"] = {
            f"{r['tau']:.3g}": [r["batch_loss_steps"], r["batch_loss_mean"]]
            for r in records.values()
        }
        return summary

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
        rows = summary["rows"]
        if rows:
            tau = np.array([r["tau"] for r in rows])
            m = np.array([r["population_loss_mean"] for r in rows], dtype=float)
            s = np.array([r["population_loss_std"] for r in rows], dtype=float)
            ax1.errorbar(
                tau, m, yerr=s, fmt="o-", color="k", capsize=3, label="mean ± std over trials"
            )
            med = np.array([r["population_loss_median"] for r in rows], dtype=float)
            ax1.plot(tau, med, "s--", color="tab:green", label="median over trials")
        finish_axes(
            ax1,
            r"init scale $\tau$",
            f"population loss after {self.num_steps} SGD steps",
            f"SGD on fresh batches of {self.batch_size}: d={self.dim}, m={self.width}",
            log="xy",
        )
        for i, (tau, (st, lo)) in enumerate(
            sorted(summary["curves"].items(), key=lambda kv: float(kv[0]))
        ):
            lo = np.asarray(lo, float)
            lo = np.where(np.isfinite(lo) & (lo < 1e6), lo, np.nan)  # a diverged run is cut off
            ax2.loglog(
                np.asarray(st, float),
                lo,
                color=plt.cm.viridis(i / max(1, len(summary["curves"]) - 1)),
                label=rf"$\tau$={tau}",
            )
        finish_axes(
            ax2,
            "SGD step",
            "batch loss (mean over trials)",
            "Loss along training",
            fontsize=7,
            ncol=2,
        )
        return [savefig(fig, folder / f"{self.name}.png")]
