"""Paper Fig. 1c: test loss against the initialization scale tau (lazy training hurts)."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np

from .. import data as gdata
from .._memory import ArraySize
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
from ._two_layer import (
    METHOD_HELP,
    audit_max_steps_option,
    audit_option,
    audit_row,
    audit_rtol_option,
    paper_init,
    paper_problem,
    train_trials,
    trial_batching_option,
    trials_arrays,
)


def _range(values: Any) -> tuple[float, float]:
    v = nan_array(list(values))
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else (float("nan"), float("nan"))


def band(rows: list[dict[str, Any]], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The figure's band for `kind` (`"end"` or `"best"`): the smallest and largest test loss
    over the trials at each tau, so it never goes below zero as mean - std can."""
    lo = np.asarray([r[f"test_{kind}_min"] for r in rows], dtype=float)
    hi = np.asarray([r[f"test_{kind}_max"] for r in rows], dtype=float)
    return lo, hi


def _trial_mean(paths: np.ndarray) -> np.ndarray:
    """The mean over the trials (axis 0) of the values that are not NaN, as `np.nanmean`; NaN,
    without `nanmean`'s warning, at the saves every trial diverged before."""
    kept = ~np.isnan(paths)
    count = kept.sum(axis=0)
    total = np.where(kept, paths, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _ratio_mean(num: Any, den: Any) -> float:
    """Mean over the trials of num / den - 1 (each trial against its own linearized model)."""
    a, b = nan_array(list(num)), nan_array(list(den))
    r = a / b - 1.0
    r = r[np.isfinite(r)]
    return float(r.mean()) if r.size else float("nan")


def plateau_check(rows: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Whether the lazy plateau equals the linearized model: at the largest `tau`, the mean over
    the trials of (net's end-of-training test loss) / (its linearized model's test loss at the
    same horizon) - 1, within `tolerance` in absolute value. Also lists that relative
    difference at every tau >= 1."""
    top = max(rows, key=lambda r: r["tau"])
    diff = top["end_over_linear_mean"]
    diff = float("nan") if diff is None else diff
    return {
        "tau": top["tau"],
        "relative_difference": diff,
        "tolerance": tolerance,
        "holds": bool(np.isfinite(diff) and abs(diff) <= tolerance),
        "relative_difference_by_tau": {
            f"{r['tau']:.6g}": r["end_over_linear_mean"] for r in rows if r["tau"] >= 1.0
        },
    }


@dataclasses.dataclass(frozen=True)
class TauSweep(AbstractExperiment):
    r"""Test loss against the init scale $\tau$ (Chizat et al., Fig. 1c).

    Teacher-student data (`dim`, `n_train` = `n_test`, a ReLU teacher of 3 neurons), a student
    $f(x) = \sum_{j \le m} b_j \max(a_j \cdot x, 0)$ with the doubled init $a_j \sim N(0, I_d)$,
    $b_j \sim N(0, 1)$ times $\tau$, trained by gradient descent with step
    $\min(10, 0.1/\tau^2)$ for `num_steps` iterations. Since the net is 2-homogeneous, $\tau$
    acts as $\alpha = \tau^2$. Reported: the test loss at the end of training and the best along
    training (over `num_saves` log-spaced iterates), mean and std over `trials` (each trial has
    its own teacher, data and init, shared by every $\tau$).

    One point = one $\tau$, one [`gradflow.Computation`][] of [`gradflow.sweep`][]. Its trials
    are built with `jax.vmap` and trained by `train_trials`: the
    paper's [`gradflow.GradientDescent`][] as one batch (one compiled program vmapped over the
    trials, reused by every $\tau$), or with `method="flow"` the gradient flow over the same
    horizon with `solver="auto"` at `flow_rtol / max(1, tau)` (`rtol`), each trial
    solved on its own on CPU (`trial_batching`). The test losses come from the saved
    parameters, and each trial's linearized model is trained exactly beside it. A trial whose
    gradient descent diverges is NaN in the record and counted in `diverged_trials`.
    """

    name: ClassVar[str] = "tau-sweep"
    title: ClassVar[str] = "Fig. 1c: test loss vs init scale tau (two-layer ReLU, teacher-student)"
    claim: ClassVar[str] = (
        "test loss worsens as tau grows and plateaus in the lazy regime (large tau), both at "
        "the end of training and at the best iterate"
    )

    dim: int = option(100, "input dimension d", positive=True)
    n_train: int = option(1000, "training points n", positive=True)
    n_test: int = option(1000, "test points", positive=True)
    width: int = option(50, "student neurons m (even: doubled init)", even=True)
    log10_tau_min: float = option(-2.2, "smallest init scale, as log10(tau)")
    log10_tau_max: float = option(1.0, "largest init scale, as log10(tau)")
    log10_tau_step: float = option(
        0.1, "spacing of the tau grid in log10(tau); one point per tau", positive=True
    )
    trials: int = option(
        10,
        "independent trials per tau (own teacher, data and init), batched with vmap",
        positive=True,
    )
    num_steps: int = option(10_000, "gradient-descent iterations per trial", positive=True)
    max_step: float = option(
        10.0, "largest GD step (the step is min(max_step, lazy_step / tau^2))", positive=True
    )
    lazy_step: float = option(
        0.1,
        "c in the GD step min(max_step, c / tau^2): the step shrinks as the curvature grows "
        "like tau^2",
        positive=True,
    )
    num_saves: int = option(
        80, "log-spaced iterates at which train and test losses are recorded", positive=True
    )
    seed: int = option(0, "PRNG seed of the trials")
    method: str = option(
        "gd",
        METHOD_HELP + "; linear: only the linearized model, trained exactly (closed form) over "
        "the same horizon",
        choices=("gd", "flow", "linear"),
    )
    flow_rtol: float = option(
        1e-2,
        "relative tolerance of the flow (method=flow) for tau <= 1, flow_rtol / tau above "
        "(atol = rtol / 100). At 1e-2 the flow's output path error against a tight reference "
        "is 5.2e-4 at tau = 0.01 and 1.0e-3 to 2.7e-3 from tau = 0.1 to 1, against the "
        "paper's GD's own 2.7e-3 and 1.5e-2 (benchmarks/bench_fig1c.py); at a given tolerance "
        "the error grows with tau, hence the division above 1",
        within="[1e-12, 1)",
    )
    audit: str = audit_option()
    audit_rtol: float = audit_rtol_option()
    audit_max_steps: int = audit_max_steps_option()
    trial_batching: str = trial_batching_option()
    plateau_tolerance: float = option(
        0.05,
        "the lazy plateau equals the linearized model if, at the largest tau, the mean "
        "relative difference of the end-of-training test loss from the linearized model's "
        "(trained exactly over the same horizon) is at most this",
        positive=True,
    )

    @classmethod
    def quick(cls) -> "TauSweep":
        return cls(
            dim=10,
            n_train=100,
            n_test=200,
            width=20,
            log10_tau_min=-2.0,
            log10_tau_max=1.0,
            log10_tau_step=1.0,
            trials=2,
            num_steps=2000,
            num_saves=30,
        )

    def check_options(self) -> None:
        if self.log10_tau_max < self.log10_tau_min:
            raise ValueError(
                "Option `log10_tau_max` must be >= `log10_tau_min`; got "
                f"{self.log10_tau_max} < {self.log10_tau_min}."
            )

    def largest_arrays(self) -> list[ArraySize]:
        span = max(0.0, self.log10_tau_max - self.log10_tau_min)
        return [
            *trials_arrays(
                n_train=self.n_train,
                n_test=self.n_test,
                dim=self.dim,
                width=self.width,
                trials=self.trials,
                num_steps=self.num_steps,
                num_saves=self.num_saves,
                names={k: k for k in ("n_train", "n_test", "dim", "width", "trials", "num_saves")},
            ),
            ArraySize(
                "the grid of taus, (log10_tau_max - log10_tau_min) / log10_tau_step + 1 points",
                int(span / self.log10_tau_step) + 1,
                ("log10_tau_step", "log10_tau_min", "log10_tau_max"),
            ),
        ]

    def taus(self) -> np.ndarray:
        num = int(round((self.log10_tau_max - self.log10_tau_min) / self.log10_tau_step)) + 1
        return 10.0 ** np.round(np.linspace(self.log10_tau_min, self.log10_tau_max, num), 6)

    def step(self, tau: float) -> float:
        """The paper's step $\\min(10, 0.1/\\tau^2)$."""
        return capped_step(self.max_step, self.lazy_step, tau, 2)

    def rtol(self, tau: float) -> float:
        """The flow's relative tolerance at `tau` (method=flow): `flow_rtol / max(1, tau)`."""
        return float(self.flow_rtol / max(1.0, tau))

    def _method_label(self) -> str:
        if self.method == "gd":
            return "GD steps"
        if self.method == "linear":
            return "GD steps' time, linearized model only (exact)"
        return f"GD steps' time as a gradient flow (auto, rtol {self.flow_rtol:g} / max(1, tau))"

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        return [(point_key(tau=float(t)), {"tau": float(t)}) for t in self.taus()]

    def _trial(self, key: Any, tau: float):
        kd, kp = jax.random.split(key)
        data = gdata.teacher_student(kd, self.n_train, self.n_test, self.dim)
        params = paper_init(kp, self.width, self.dim, tau=tau)
        return paper_problem(params, data.x_train, data.y_train, 1.0), data

    def build(self, *, tau: float) -> Computation:
        # One point: the trials of one tau, solved together (`train_trials`).
        return Computation(self.train, tau=tau)

    def train(self, *, tau: float) -> dict[str, Any]:
        """Train the trials of one tau (the point's result)."""
        keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.PRNGKey(self.seed), k))(
            np.arange(self.trials)
        )
        record, paths = train_trials(
            lambda key: self._trial(key, tau),
            keys,
            step=self.step(tau),
            num_steps=self.num_steps,
            num_saves=self.num_saves,
            method=self.method,
            rtol=self.rtol(tau),
            batching=self.trial_batching,  # type: ignore[arg-type]
            baseline_at_saves=True,
            audit=self.audit,
            audit_rtol=self.audit_rtol,
            audit_max_steps=self.audit_max_steps,
        )
        return {
            "step": self.step(tau),
            "iterations": paths["iterations"],
            **record,
            "test_loss_path_mean": _trial_mean(paths["test_loss"]),
            "train_loss_path_mean": _trial_mean(paths["train_loss"]),
        }

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        records = outputs(sweep)
        rows = []
        for rec in sorted(records.values(), key=lambda r: r["tau"]):
            end = mean_std(rec["test_loss_end"])
            best = mean_std(rec["test_loss_best"])
            end_lo, end_hi = _range(rec["test_loss_end"])
            best_lo, best_hi = _range(rec["test_loss_best"])
            train = mean_std(rec["train_loss_end"])
            rows.append(
                {
                    "tau": rec["tau"],
                    "step": rec["step"],
                    "test_end_mean": end[0],
                    "test_end_std": end[1],
                    "test_best_mean": best[0],
                    "test_best_std": best[1],
                    "test_end_min": end_lo,
                    "test_end_max": end_hi,
                    "test_best_min": best_lo,
                    "test_best_max": best_hi,
                    "train_end_mean": train[0],
                    "trials": end[2],
                    "diverged_trials": rec["diverged_trials"],
                    "seconds": rec.get("seconds"),
                    "method": rec.get("method", "gd"),
                    "solver": (rec.get("flow") or {}).get("solver", "GradientDescent"),
                    "evaluations_mean": mean_std(rec["evaluations"])[0],
                    "linear_end_mean": mean_std(rec["linear_test_loss_end"])[0],
                    "linear_inf_mean": mean_std(rec["linear_test_loss_inf"])[0],
                    "end_over_linear_mean": _ratio_mean(
                        rec["test_loss_end"], rec["linear_test_loss_end"]
                    ),
                    **audit_row(rec),
                }
            )
        summary: dict[str, Any] = {"rows": rows}
        by_tau = {round(np.log10(r["tau"]), 3): r for r in rows}
        lo, hi = by_tau.get(-2.0), by_tau.get(1.0)
        if lo and hi:
            summary["ratio_end_tau10_over_tau0.01"] = hi["test_end_mean"] / lo["test_end_mean"]
            summary["ratio_best_tau10_over_tau0.01"] = hi["test_best_mean"] / lo["test_best_mean"]
        if rows:
            summary["lazy_plateau_vs_linear"] = plateau_check(rows, self.plateau_tolerance)
        return summary

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        rows = summary["rows"]
        fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
        if rows:
            tau = np.array([r["tau"] for r in rows])
            for kind, style, label in (
                ("end", "-", "end of training"),
                ("best", ":", "best throughout training"),
            ):
                m = np.array([r[f"test_{kind}_mean"] for r in rows], dtype=float)
                lo, hi = band(rows, kind)
                ax.fill_between(tau, lo, hi, color="0.85", lw=0)
                ax.plot(tau, m, style, color="k", lw=2.5, label=f"{label} (mean)")
            ax.fill_between([], [], [], color="0.85", label="range over the trials")
            if self.method != "linear" and rows[0].get("linear_end_mean") is not None:
                lin = np.array([r["linear_end_mean"] for r in rows], dtype=float)
                inf = np.array([r["linear_inf_mean"] for r in rows], dtype=float)
                ax.plot(
                    tau,
                    lin,
                    "--",
                    color="tab:red",
                    lw=1.8,
                    label="linearized model, same horizon (exact)",
                )
                ax.plot(
                    tau,
                    inf,
                    "-.",
                    color="tab:blue",
                    lw=1.2,
                    label=r"linearized model, $t = \infty$ (kernel regression)",
                )
        # Losses are positive and span decades: log axes, and a band (min to max over the
        # trials) that cannot cross zero the way mean - std does.
        finish_axes(
            ax,
            r"init scale $\tau$ (acts as $\alpha = \tau^2$)",
            "test loss",
            f"Test loss vs $\\tau$: d={self.dim}, n={self.n_train}, m={self.width}, "
            f"{self.trials} trials,\n{self.num_steps} {self._method_label()}",
            log="xy",
            title_size=10,
            fontsize=8,
        )
        return [savefig(fig, folder / f"{self.name}.png")]
