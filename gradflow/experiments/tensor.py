"""Beyond the paper: over-parameterized tensor completion in and out of the lazy regime."""

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
from ..solvers._gradient_descent import GradientDescent
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import (
    AbstractExperiment,
    capped_step,
    finish_axes,
    mean_std,
    option,
    pyplot,
    savefig,
)


@dataclasses.dataclass(frozen=True)
class TensorCompletion(AbstractExperiment):
    r"""Over-parameterized symmetric tensor decomposition, trained on a random half of the
    distinct entries of a rank-`rank` target $T^* = \sum_{r} v_r^{\otimes 3}$ ($v_r$ unit)
    and tested on the other half, against the init scale $\tau$
    ([`gradflow.models.TensorDecomposition`][] with `width` components, doubled init times
    $\tau$, so $h(w_0) = 0$; 3-homogeneous: $\tau$ acts as $\alpha = \tau^3$).

    Gradient descent on the unscaled objective with step $\min(\eta_{\max}, c/\tau^4)$ (the
    curvature grows like $\tau^4$) for `num_steps` steps. Both regimes fit the observed
    entries; the lazy one (large $\tau$) barely moves its components and fills the missing
    entries like a kernel method, the non-lazy one (small $\tau$) grows a few components along
    the $v_r$ and completes the tensor. One point = one ($\tau$, trial): one
    gradient-descent solve through [`gradflow.sweep`][], its held-out metrics measured from
    the final parameters and stored with it.
    """

    name: ClassVar[str] = "tensor"
    title: ClassVar[str] = "Over-parameterized tensor completion vs init scale tau"
    claim: ClassVar[str] = (
        "small tau (non-lazy) completes the low-rank tensor on held-out entries; large tau "
        "(lazy) fits the observed entries but not the held-out ones"
    )

    dim: int = option(8, "tensor dimension d (the target is d x d x d)", positive=True)
    rank: int = option(2, "rank of the target tensor (unit components)", positive=True)
    width: int = option(40, "components of the model (over-parameterized: width > rank)", even=True)
    observed_fraction: float = option(
        0.5,
        "share of the distinct entries used for training, in (0, 1); the rest are held out",
        within="(0, 1)",
    )
    log10_taus: tuple[float, ...] = option(
        (-1.0, -0.5, 0.0, 0.5, 1.0),
        "init scales, as log10(tau) (comma-separated); one point per tau and trial",
    )
    max_step: float = option(
        0.05, "largest GD step (the step is min(max_step, lazy_step / tau^4))", positive=True
    )
    lazy_step: float = option(0.05, "c in the GD step min(max_step, c / tau^4)", positive=True)
    num_steps: int = option(50_000, "gradient-descent iterations", positive=True)
    trials: int = option(
        3, "independent trials (own target, split and init) per tau", positive=True
    )
    seed: int = option(0, "PRNG seed of the trials")

    @classmethod
    def quick(cls) -> "TensorCompletion":
        return cls(log10_taus=(-1.0, 1.0), trials=1)

    def largest_arrays(self) -> list[ArraySize]:
        entries = self.dim * (self.dim + 1) * (self.dim + 2) // 6
        observed = max(1, round(self.observed_fraction * entries))
        return [
            ArraySize(
                "the indices of the distinct entries, dim (dim + 1) (dim + 2) / 6 x 3",
                3 * entries,
                ("dim",),
            ),
            ArraySize(
                "the components gathered at the observed entries, width x observed_fraction x "
                "dim (dim + 1) (dim + 2) / 6",
                self.width * observed,
                ("dim", "width", "observed_fraction"),
            ),
        ]

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        pts = [
            {"tau": float(10.0**t), "trial": k} for t in self.log10_taus for k in range(self.trials)
        ]
        # Four digits: the keys of the stored results (tau=0.3162_trial=0, ...).
        return [(point_key(**p, digits=4), p) for p in pts]

    def step(self, tau: float) -> float:
        return capped_step(self.max_step, self.lazy_step, tau, 4)

    def _trial(self, tau: float, trial: int) -> dict[str, Any]:
        """The target, the split of the entries and the init of one trial."""
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), trial)
        kv, ks, ku = jax.random.split(key, 3)
        model = models.TensorDecomposition()
        entries = models.TensorDecomposition.entries(self.dim)
        perm = np.asarray(jax.random.permutation(ks, len(entries)))
        n_obs = max(1, int(round(self.observed_fraction * len(entries))))
        train_idx, test_idx = entries[perm[:n_obs]], entries[perm[n_obs:]]
        target = {"u": gdata.uniform_sphere(kv, self.rank, self.dim)}
        w0 = model.init(ku, self.width, self.dim, tau=tau)
        return {"model": model, "train": train_idx, "test": test_idx, "target": target, "w0": w0}

    def build(self, *, tau: float, trial: int) -> Problem:
        t = self._trial(tau, trial)
        y = t["model"](t["target"], t["train"])
        return Problem(t["model"], t["w0"], t["train"], SquareLoss(y))

    def solve_options(self) -> SolveOptions:
        return SolveOptions(linearized=False, save_params=True)

    def point_options(self, *, tau: float, trial: int) -> dict[str, Any]:
        eta = self.step(tau)
        t1 = self.num_steps * eta
        return {"t1": t1, "ts": [t1], "solver": GradientDescent(eta)}

    def measure(self, problem: Problem, solution: Any, *, tau: float, trial: int) -> dict[str, Any]:
        t = self._trial(tau, trial)
        model, target, test_idx = t["model"], t["target"], t["test"]
        y_test = model(target, test_idx)
        u = np.asarray(solution.params["u"][-1])
        test = SquareLoss(y_test)
        norms = np.linalg.norm(u, axis=1)
        cos = np.abs(u @ np.asarray(target["u"]).T) / np.maximum(norms[:, None], 1e-300)
        weights = norms**3 / np.sum(norms**3)
        w0 = np.asarray(t["w0"]["u"])
        return {
            "step": self.step(tau),
            "train_loss": float(solution.loss[-1]),
            "test_loss": float(test(model({"u": jnp.asarray(u)}, test_idx))),
            "zero_predictor_test_loss": float(test(jnp.zeros_like(y_test))),
            # Share of the fitted tensor's mass on components aligned with the target's.
            "alignment": float(np.sum(weights * cos.max(axis=1))),
            "relative_displacement": float(np.linalg.norm(u - w0) / np.linalg.norm(w0)),
        }

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        ok = np.flatnonzero(sweep.succeeded)
        records = [
            {"tau": sweep.points[i]["tau"], **{k: float(v[i]) for k, v in sweep.measures.items()}}
            for i in ok
        ]
        rows = []
        for t in self.log10_taus:
            tau = float(10.0**t)
            group = [r for r in records if np.isclose(r["tau"], tau)]
            if not group:
                continue
            test = mean_std([r["test_loss"] / r["zero_predictor_test_loss"] for r in group])
            rows.append(
                {
                    "tau": tau,
                    "alpha": tau**3,
                    "relative_test_loss_mean": test[0],
                    "relative_test_loss_std": test[1],
                    "train_loss_mean": mean_std([r["train_loss"] for r in group])[0],
                    "alignment_mean": mean_std([r["alignment"] for r in group])[0],
                    "relative_displacement_mean": mean_std(
                        [r["relative_displacement"] for r in group]
                    )[0],
                    "trials": test[2],
                }
            )
        return {"rows": rows}

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), constrained_layout=True)
        rows = summary["rows"]
        if rows:
            tau = np.array([r["tau"] for r in rows])
            m = np.array([r["relative_test_loss_mean"] for r in rows], dtype=float)
            s = np.array([r["relative_test_loss_std"] for r in rows], dtype=float)
            ax1.errorbar(tau, m, yerr=s, fmt="o-", color="k", capsize=3, label="held-out entries")
            tr = np.array([r["train_loss_mean"] for r in rows], dtype=float)
            ax1.plot(tau, tr, "s--", color="0.5", label="observed entries (absolute train loss)")
            ax2.plot(
                tau,
                [r["alignment_mean"] for r in rows],
                "o-",
                color="tab:blue",
                label="alignment with target components",
            )
            ax2.plot(
                tau,
                [r["relative_displacement_mean"] for r in rows],
                "s-",
                color="tab:red",
                label=r"$\|U - U_0\| / \|U_0\|$",
            )
        finish_axes(
            ax1,
            r"init scale $\tau$ (acts as $\alpha = \tau^3$)",
            "loss (held-out: relative to predicting 0)",
            f"Tensor completion: d={self.dim}, rank {self.rank}, m={self.width}",
            log="xy",
            fontsize=8,
        )
        finish_axes(
            ax2,
            r"init scale $\tau$",
            "alignment (1 = on the target's directions) / displacement",
            "Where the components went",
            log="xy",
            fontsize=8,
        )
        return [savefig(fig, folder / f"{self.name}.png")]
