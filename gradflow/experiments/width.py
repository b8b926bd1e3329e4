"""Paper Fig. 2: test loss against the width m for the output scalings 1/sqrt(m) and 1/m."""

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np

from .. import data as gdata
from .._memory import ArraySize
from ..analysis._kernel_flow import infinite_width_flow
from ..sweeps._computation import Computation
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import AbstractExperiment, finish_axes, mean_std, option, outputs, pyplot, savefig
from ._two_layer import (
    METHOD_HELP,
    audit_max_steps_option,
    audit_option,
    audit_row,
    audit_rtol_option,
    paper_init,
    paper_learning_rate,
    paper_problem,
    train_trials,
    trial_batching_option,
    trials_arrays,
)

# The authors' steps: 1/m with the 1/sqrt(m) scaling, 0.05/m with the 1/m scaling.
_SCALINGS = {"sqrt": (0.5, 1.0), "mean_field": (1.0, 0.05)}


@dataclasses.dataclass(frozen=True)
class WidthSweep(AbstractExperiment):
    r"""Test loss against the width $m$ (Chizat et al., Fig. 2).

    A student $f(x) = s(m) \sum_{j \le m} b_j \max(a_j \cdot x, 0)$ with $a_j \sim N(0, I_d)$,
    $b_j \sim N(0, 1)$, **not** doubled (so $h(w_0) \neq 0$), trained by gradient descent on
    teacher-student data whose teacher output is multiplied by `teacher_scale` (100). Scaling
    $s = 1/\sqrt m$ with step $1/m$ becomes lazy as $m$ grows; $s = 1/m$ (mean field) with step
    $0.05/m$ does not. Each trial draws its own teacher and data, shared by every width and
    scaling.

    One point = one (scaling, width). Its trials are built with `jax.vmap` and solved by
    [`gradflow.sweep`][] as one batch (one compiled program vmapped over the trials): the
    paper's [`gradflow.GradientDescent`][], or where `method` says flow the gradient flow over
    the same horizon with `solver="auto"` chosen once for the stiffest trial; each trial's
    linearized model is trained exactly beside it. The point `sqrt_m=inf` is the
    infinite-width kernel limit (`kernel_limit`), solved in closed form.
    """

    name: ClassVar[str] = "width"
    title: ClassVar[str] = "Fig. 2: test loss vs width m, scalings 1/sqrt(m) (lazy) and 1/m"
    claim: ClassVar[str] = (
        "for large m the 1/m (mean-field) scaling reaches a lower test loss than 1/sqrt(m), "
        "which trains lazily"
    )

    widths: tuple[int, ...] = option(
        (2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256, 512),
        "student widths m (comma-separated integers); one point per width and scaling",
        positive=True,
    )
    scalings: tuple[str, ...] = option(
        ("sqrt", "mean_field"),
        "output scalings: sqrt (s = 1/sqrt(m), GD step 1/m) and/or mean_field (s = 1/m, GD "
        "step 0.05/m)",
        choices=tuple(_SCALINGS),
    )
    dim: int = option(100, "input dimension d", positive=True)
    n_train: int = option(1000, "training points n", positive=True)
    n_test: int = option(1000, "test points", positive=True)
    teacher_scale: float = option(
        100.0, "factor on the teacher's output (the paper's 100)", positive=True
    )
    trials: int = option(
        10, "independent trials (own teacher and data), batched with vmap", positive=True
    )
    num_steps: int = option(25_000, "gradient-descent iterations", positive=True)
    num_saves: int = option(
        60, "log-spaced iterates at which the losses are recorded", positive=True
    )
    seed: int = option(0, "PRNG seed of the trials")
    method: str = option(
        "gd",
        METHOD_HELP + "; or per scaling, e.g. sqrt=flow,mean_field=gd",
    )
    flow_rtol: float = option(
        1e-4,
        "relative tolerance of the flow (method=flow); atol = flow_rtol / 100",
        within="[1e-12, 1)",
    )
    audit: str = audit_option()
    audit_rtol: float = audit_rtol_option()
    audit_max_steps: int = audit_max_steps_option()
    trial_batching: str = trial_batching_option()
    flow_min_width: int = option(
        1,
        "widths below this run the paper's GD even where `method` says flow (at small m the "
        "flows cross ReLU kinks all along and gain nothing)",
        positive=True,
    )

    @classmethod
    def quick(cls) -> "WidthSweep":
        return cls(
            widths=(8, 128),
            dim=10,
            n_train=100,
            n_test=200,
            trials=2,
            num_steps=1500,
            num_saves=20,
        )

    def check_options(self) -> None:
        self.methods()

    def largest_arrays(self) -> list[ArraySize]:
        return trials_arrays(
            n_train=self.n_train,
            n_test=self.n_test,
            dim=self.dim,
            width=max(self.widths),
            trials=self.trials,
            num_steps=self.num_steps,
            num_saves=self.num_saves,
            names={
                **{k: k for k in ("n_train", "n_test", "dim", "trials", "num_saves")},
                "width": "widths",
            },
        )

    def methods(self) -> dict[str, str]:
        """The method of each scaling: `method` is `"gd"`, `"flow"`, or per scaling, e.g.
        `"sqrt=flow,mean_field=gd"` (a scaling not named runs GD)."""
        text = str(self.method)
        if text in ("gd", "flow"):
            return {s: text for s in _SCALINGS}
        out = {s: "gd" for s in _SCALINGS}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep or name.strip() not in _SCALINGS or value.strip() not in ("gd", "flow"):
                raise ValueError(
                    "Option `method` must be 'gd', 'flow', or per scaling such as "
                    f"'sqrt=flow,mean_field=gd' (scalings {sorted(_SCALINGS)}); got {text!r}."
                )
            out[name.strip()] = value.strip()
        return out

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        pts = [
            (point_key(prefix=s, m=int(m)), {"scaling": s, "width": int(m)})
            for s in self.scalings
            for m in self.widths
        ]
        if "sqrt" in self.scalings:
            # The m -> infinity limit of the lazy 1/sqrt(m) net: kernel regression with the
            # infinite-width tangent kernel (width 0 stands for infinity in the point).
            pts.append((point_key(prefix="sqrt", m=math.inf), {"scaling": "sqrt", "width": 0}))
        return pts

    @staticmethod
    def output_scale_and_step(scaling: str, width: int) -> tuple[float, float]:
        """The output scale $s(m)$ and the paper's GD step of `scaling` at `width` $m$:
        $(m^{-1/2}, 1/m)$ for `"sqrt"`, $(1/m, 0.05/m)$ for `"mean_field"`."""
        if scaling not in _SCALINGS:
            raise ValueError(
                f"`scaling` must be {' or '.join(map(repr, _SCALINGS))}; got {scaling!r}."
            )
        power, step_factor = _SCALINGS[scaling]
        return float(width) ** -power, step_factor / width

    def kernel_limit(self) -> dict[str, Any]:
        """Each trial's infinite-width lazy model ([`gradflow.infinite_width_flow`][]: the
        arc-cosine tangent kernel of $a \\sim N(0, I_d)$, $b \\sim N(0, 1)$, the init output a
        Gaussian process) trained over the horizon of the $1/\\sqrt m$ runs, $t_1$ =
        `num_steps` (the learning rate on $F_\\alpha$ is $(1/m) \\cdot m = 1$), and to
        $t = \\infty$: the expected test loss over the random init, per trial."""
        t1 = self.num_steps * paper_learning_rate(1, _SCALINGS["sqrt"][1])
        end, inf, var = [], [], []
        for trial in range(self.trials):
            key = jax.random.fold_in(jax.random.PRNGKey(self.seed), trial)
            kd, _ = jax.random.split(key)
            data = gdata.teacher_student(
                kd, self.n_train, self.n_test, self.dim, output_scale=self.teacher_scale
            )
            res = infinite_width_flow(
                data.x_train,
                data.y_train,
                data.x_test,
                data.y_test,
                [t1, np.inf],
                activation="relu",
                input_var=1.0,
                output_var=1.0,
            )
            loss = np.asarray(res.expected_test_loss)
            end.append(float(loss[0]))
            inf.append(float(loss[1]))
            var.append(float(np.asarray(res.test_variance)[0]))
        return {
            "output_scale": 0.0,
            "step": 0.0,
            "test_loss_end": np.asarray(end),
            "test_loss_best": np.asarray(end),
            "train_loss_end": np.full(self.trials, np.nan),
            "diverged_trials": 0,
            "method": "kernel",
            "flow": {},
            "evaluations": np.zeros(self.trials, dtype=int),
            "linear_test_loss_end": np.asarray(end),
            "linear_test_loss_inf": np.asarray(inf),
            "init_variance_part_end": np.asarray(var),
        }

    def _method_label(self) -> str:
        flows = [s for s, m in self.methods().items() if m == "flow" and s in self.scalings]
        if not flows:
            return ""
        names = {"sqrt": "1/sqrt(m)", "mean_field": "1/m"}
        which = " and ".join(names[s] for s in flows)
        if self.flow_min_width > min(self.widths):
            which += f", m >= {self.flow_min_width}"
        return f" ({which}: as a flow, rtol {self.flow_rtol:g})"

    def build(self, *, scaling: str, width: int) -> Computation:
        # One point: the trials of one width, solved together (`train_trials`), or the
        # infinite-width limit (width 0).
        return Computation(self.train, scaling=scaling, width=width)

    def train(self, *, scaling: str, width: int) -> dict[str, Any]:
        """Train the trials of one scaling and width (the point's result)."""
        if width == 0:
            return self.kernel_limit()
        s, step = self.output_scale_and_step(scaling, width)
        keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.PRNGKey(self.seed), k))(
            np.arange(self.trials)
        )

        def build(key):
            kd, kp = jax.random.split(key)
            data = gdata.teacher_student(
                kd, self.n_train, self.n_test, self.dim, output_scale=self.teacher_scale
            )
            kp = jax.random.fold_in(kp, width)
            params = paper_init(kp, width, self.dim, doubled=False)
            return paper_problem(params, data.x_train, data.y_train, s), data

        method = self.methods()[scaling] if width >= self.flow_min_width else "gd"
        record, _ = train_trials(
            build,
            keys,
            step=step,
            num_steps=self.num_steps,
            num_saves=self.num_saves,
            method=method,
            rtol=self.flow_rtol,
            audit=self.audit,
            audit_rtol=self.audit_rtol,
            audit_max_steps=self.audit_max_steps,
            batching=self.trial_batching,  # type: ignore[arg-type]
        )
        return {"output_scale": s, "step": step, **record}

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        records = outputs(sweep)
        rows = []
        limit = next((r for r in records.values() if r["width"] == 0), None)
        finite = [r for r in records.values() if r["width"] != 0]
        for rec in sorted(finite, key=lambda r: (r["scaling"], r["width"])):
            end = mean_std(rec["test_loss_end"])
            best = mean_std(rec["test_loss_best"])
            rows.append(
                {
                    "scaling": rec["scaling"],
                    "width": rec["width"],
                    "test_end_mean": end[0],
                    "test_end_std": end[1],
                    "test_best_mean": best[0],
                    "train_end_mean": mean_std(rec["train_loss_end"])[0],
                    "trials": end[2],
                    "diverged_trials": rec["diverged_trials"],
                    "seconds": rec.get("seconds"),
                    "linear_end_mean": mean_std(rec["linear_test_loss_end"])[0],
                    "linear_inf_mean": mean_std(rec["linear_test_loss_inf"])[0],
                    "method": rec.get("method", "gd"),
                    "solver": (rec.get("flow") or {}).get("solver", "GradientDescent"),
                    "evaluations_mean": mean_std(rec["evaluations"])[0],
                    **audit_row(rec),
                }
            )
        limit_summary = None
        if limit is not None:
            end, inf = mean_std(limit["test_loss_end"]), mean_std(limit["linear_test_loss_inf"])
            limit_summary = {
                "what": "infinite-width lazy model of the 1/sqrt(m) net: kernel regression with "
                "the arc-cosine tangent kernel, expected test loss over the random init",
                "test_end_mean": end[0],
                "test_end_std": end[1],
                "test_inf_mean": inf[0],
                "init_variance_part_end_mean": mean_std(limit["init_variance_part_end"])[0],
                "trials": end[2],
            }
        return _claims(rows, limit_summary)

    @staticmethod
    def merge(summaries: "list[dict[str, Any]]") -> dict[str, Any]:
        """One summary from the summaries of several runs of the same configuration, each
        holding some of the points (e.g. the widths of one scaling run apart): the rows by
        scaling and width, a later summary's row replacing an earlier one's, and the claims
        recomputed from the merged rows."""
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        limit = None
        for summary in summaries:
            for r in summary["rows"]:
                rows[(r["scaling"], int(r["width"]))] = r
            if summary.get("kernel_limit") is not None:
                limit = {
                    k: v
                    for k, v in summary["kernel_limit"].items()
                    if k != "sqrt_at_largest_m_over_limit"
                }
        ordered = [rows[k] for k in sorted(rows)]
        return _claims(ordered, limit)

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 4.6), constrained_layout=True)
        labels = {
            "sqrt": r"scaling $1/\sqrt{m}$, step $1/m$ (lazy as $m$ grows)",
            "mean_field": r"scaling $1/m$, step $0.05/m$ (mean field)",
        }
        means = [r["test_end_mean"] for r in summary["rows"]]
        finite = [v for v in means if v is not None and np.isfinite(v) and v > 0]
        # An exact recovery (test loss ~1e-27 at tiny widths) would squash the plot: values
        # below 1e-6 of the largest are drawn at that floor, marked with a triangle.
        floor = max(finite) * 1e-6 if finite else 0.0
        # A width where every trial diverged has no mean: an x above the curves says so.
        ceiling = max(finite) * 2.0 if finite else 1.0
        clipped = diverged = False
        for scaling, color in (("sqrt", "tab:red"), ("mean_field", "tab:blue")):
            rows = [r for r in summary["rows"] if r["scaling"] == scaling]
            if not rows:
                continue
            m = np.array([r["width"] for r in rows], dtype=float)
            mean = np.array([r["test_end_mean"] for r in rows], dtype=float)
            std = np.array([r["test_end_std"] for r in rows], dtype=float)
            low = mean < floor
            clipped |= bool(low.any())
            shown = np.maximum(mean, floor)
            ax.fill_between(
                m,
                np.maximum(mean - std, floor),
                np.maximum(mean + std, floor),
                color=color,
                alpha=0.15,
            )
            ax.loglog(m, shown, "o-", color=color, label=labels[scaling])
            ax.loglog(m[low], shown[low], "v", color=color, ms=10)
            gone = np.array([r["trials"] == 0 and r["diverged_trials"] > 0 for r in rows])
            if gone.any():
                ax.loglog(m[gone], np.full(int(gone.sum()), ceiling), "x", color=color, ms=9, mew=2)
                diverged = True
            lin = np.array([r["linear_end_mean"] for r in rows], dtype=float)
            ax.loglog(m, np.maximum(lin, floor), "--", color=color, lw=1.2, alpha=0.8)
        ax.plot(
            [], [], "--", color="0.3", lw=1.2, label="its linearized model, same horizon (exact)"
        )
        limit = summary.get("kernel_limit")
        if limit is not None and np.isfinite(limit["test_end_mean"]):
            ax.axhline(
                limit["test_end_mean"],
                color="tab:red",
                ls=":",
                lw=1.5,
                label=r"$m \to \infty$, $1/\sqrt{m}$: infinite-width kernel regression",
            )
        if clipped:
            ax.plot([], [], "v", color="0.3", label=f"below {floor:.0e} (exact recovery)")
        if diverged:
            ax.plot([], [], "x", color="0.3", mew=2, label="every trial diverged (no loss)")
        finish_axes(
            ax,
            "width $m$",
            "test loss at the end of training (mean ± std)",
            f"Test loss vs width: d={self.dim}, n={self.n_train}, teacher x{self.teacher_scale:g}, "
            f"{self.trials} trial(s),\n{self.num_steps} GD steps{self._method_label()}",
            title_size=10,
            fontsize=9,
        )
        return [savefig(fig, folder / f"{self.name}.png")]


def _claims(rows: list[dict[str, Any]], limit: dict[str, Any] | None) -> dict[str, Any]:
    """The summary of Fig. 2 from its rows (one per scaling and width): whether 1/m beats
    1/sqrt(m) at every width >= 128 where both ran, their ratio at the largest such width, and
    the 1/sqrt(m) net's test loss at its largest width against the infinite-width limit."""
    summary: dict[str, Any] = {"rows": rows}
    sq = {r["width"]: r["test_end_mean"] for r in rows if r["scaling"] == "sqrt"}
    mf = {r["width"]: r["test_end_mean"] for r in rows if r["scaling"] == "mean_field"}
    both = sorted(m for m in sq if m in mf and m >= 128)
    if both:
        summary["mean_field_below_sqrt_for_m_ge_128"] = all(mf[m] < sq[m] for m in both)
        summary["ratio_sqrt_over_mean_field_at_largest_m"] = sq[both[-1]] / mf[both[-1]]
    if limit is not None:
        summary["kernel_limit"] = dict(limit)
        if sq:
            summary["kernel_limit"]["sqrt_at_largest_m_over_limit"] = (
                sq[max(sq)] / limit["test_end_mean"]
            )
    return summary
