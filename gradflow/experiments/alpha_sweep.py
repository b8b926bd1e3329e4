"""The lazy-vs-linearized distances of a two-layer net as the scale alpha grows (the command
`gradflow alpha-sweep`)."""

import dataclasses
import functools
from pathlib import Path
from typing import Any, ClassVar, Literal

import jax

from .. import data as gdata, models
from .._losses import SquareLoss
from .._memory import ArraySize
from .._options import SolveOptions
from .._problem import Problem
from ..sweeps._keys import point_key
from ..sweeps._sweep import PREDICTED_SLOPES, Sweep, fit_alpha_sweep
from ._base import AbstractExperiment, option, pyplot, savefig


@dataclasses.dataclass(frozen=True)
class TwoLayerAlphaSweep(AbstractExperiment):
    r"""Integrate the gradient flow of a two-layer network $f(x) = s(m) \sum_j b_j
    \sigma(a_j \cdot x)$ and of its linearization at each scale $\alpha$, and fit $\sup_{t \le
    T}$ of $\|w - w_0\|$, $\|w - \bar w\|$ and $\|\alpha h(w) - \alpha \bar h(\bar w)\|_F$
    against $\alpha$ on log-log axes (finite-horizon theorem, $h(w_0) = 0$ and a smooth model:
    slopes $-1, -2, -1$). Data: `samples` inputs uniform on the unit sphere of
    $\mathbb{R}^{d}$, targets from a teacher of 3 ReLU neurons; square loss with the empirical
    norm. One point = one $\alpha$, solved by [`gradflow.sweep`][] and stored as it finishes.
    """

    name: ClassVar[str] = "alpha-sweep"
    title: ClassVar[str] = "Lazy training: the model's flow against its linearization's"
    claim: ClassVar[str] = (
        "sup_t ||w - w0|| = O(1/alpha), ||w - wbar|| = O(1/alpha^2), ||alpha h(w) - alpha "
        "hbar(wbar)|| = O(1/alpha) when h(w0) = 0"
    )
    file_stem: ClassVar[str] = "alpha_sweep"

    alphas: tuple[float, ...] = option(
        (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0),
        "scales alpha (comma-separated, each a finite number > 0); one point each",
        positive=True,
    )
    fit_min: float = option(
        10.0,
        "fit the slopes only over the alphas >= this (the theorem is asymptotic in alpha); "
        "needs at least 2 of them",
    )
    samples: int = option(50, "training points n", positive=True)
    dim: int = option(5, "input dimension d", positive=True)
    width: int = option(200, "hidden width m (neurons; even for the doubled init)", positive=True)
    activation: Literal["tanh", "softplus", "relu", "quadratic"] = option(
        "tanh",
        "the neurons' nonlinearity sigma; relu has a kink at 0, outside the theorem's "
        "hypotheses (smooth h)",
    )
    scaling: Literal["sqrt", "mean_field"] = option(
        "sqrt", "output scale s(m): sqrt is 1/sqrt(m) (lazy as m grows), mean_field is 1/m"
    )
    init: Literal["centered", "doubled", "plain"] = option(
        "centered",
        "how h(w0) = 0 is obtained: subtract h(w0) (centered), pairs of opposite neurons "
        "(doubled), or not at all (plain: the lazy bounds then fail)",
    )
    t1: float = option(10.0, "time horizon T of the flows (flow time)", positive=True)
    rtol: float = option(
        1e-8,
        "relative tolerance of the adaptive ODE solver (per step, on the scaled state)",
        positive=True,
    )
    atol: float = option(1e-10, "absolute tolerance of the adaptive ODE solver", positive=True)
    seed: int = option(0, "PRNG seed of the inputs, the teacher and the initialization")

    @classmethod
    def quick(cls) -> "TwoLayerAlphaSweep":
        return cls(alphas=(10.0, 100.0, 1000.0), samples=12, dim=3, width=20, t1=3.0)

    def check_options(self) -> None:
        if self.init == "doubled" and self.width % 2:
            raise ValueError(
                f"Option `width` must be even for init=doubled (pairs of opposite neurons); "
                f"got {self.width}."
            )

    def largest_arrays(self) -> list[ArraySize]:
        n, d, m = self.samples, self.dim, self.width
        return [
            ArraySize("the hidden pre-activations, samples x width", n * m, ("samples", "width")),
            ArraySize("the data, samples x dim", n * d, ("samples", "dim")),
            ArraySize(
                "the parameters of the model and of its linearization, 2 x width x (dim + 1)",
                2 * m * (d + 1),
                ("width", "dim"),
            ),
        ]

    @functools.cached_property
    def problem(self) -> Problem:
        """The problem at alpha = 1 (each point changes only alpha)."""
        kx, kt, kp = jax.random.split(jax.random.PRNGKey(self.seed), 3)
        x = gdata.uniform_sphere(kx, self.samples, self.dim)
        y = gdata.teacher_targets(kt, x, activation="relu")
        model = models.TwoLayer(self.width, self.activation, self.scaling)
        params = model.init(kp, self.dim, doubled=self.init == "doubled")
        return Problem(model, params, x, SquareLoss(y), alpha=1.0, center=self.init == "centered")

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        return [(point_key(alpha=float(a)), {"alpha": float(a)}) for a in self.alphas]

    def build(self, *, alpha: float) -> Problem:
        return self.problem.with_alpha(alpha)

    def solve_options(self) -> SolveOptions:
        return SolveOptions(self.t1, rtol=self.rtol, atol=self.atol, linearized=True)

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        from ..analysis._diagnostics import scale_criterion

        fitted = fit_alpha_sweep(sweep, self.fit_min)
        rows = [
            {
                "alpha": float(a),
                **{f"sup_{k}": fitted.sup[k][i] for k in PREDICTED_SLOPES},
                "status": "ok" if fitted.errors[i] is None else "failed",
            }
            for i, a in enumerate(fitted.alphas)
        ]
        return {
            "rows": rows,
            "sweep": fitted,
            "num_params": self.problem.num_params,
            "scale_criterion_at_alpha_1": scale_criterion(self.problem),
        }

    def report(self, summary: dict[str, Any]) -> str:
        """The sup distances per alpha, the fitted slopes against the theorem's, and why no
        slope was fitted when none was."""
        sweep = summary["sweep"]
        lines = []
        if self.activation == "relu":
            lines.append(
                "note: ReLU has a kink at 0, so h is not differentiable with a Lipschitz Dh: "
                "this model is outside the finite-horizon theorem's hypotheses, and its slopes "
                "need not match the theory's"
            )
        lines.append(
            f"{'alpha':>10} {'sup|w-w0|':>12} {'sup|w-wbar|':>12} {'sup out gap':>12}  status"
        )
        for i, a in enumerate(sweep.alphas):
            status = "ok" if sweep.errors[i] is None else f"FAILED: {sweep.errors[i]}"
            lines.append(
                f"{a:>10.6g} {sweep.sup['param_distance'][i]:>12.4e} "
                f"{sweep.sup['param_gap'][i]:>12.4e} {sweep.sup['output_gap'][i]:>12.4e}  {status}"
            )
        if all(fit is None for fit in sweep.fits.values()):
            usable = [
                a for a, e in zip(sweep.alphas, sweep.errors) if e is None and a >= self.fit_min
            ]
            lines.append(
                f"no slopes fitted: a fit needs 2 successful alphas >= fit_min {self.fit_min:g}, "
                f"and {len(usable)} of the {len(sweep.alphas)} alphas qualify"
                + ("" if usable else f" (the largest alpha is {max(sweep.alphas):g})")
                + "; lower fit_min (--fit-min) or add larger alphas"
            )
        for k, fit in sweep.fits.items():
            if fit is not None:
                lines.append(
                    f"slope of sup {k:<15} {fit.slope:+.4f}  (95% CI [{fit.ci[0]:+.4f}, "
                    f"{fit.ci[1]:+.4f}], theory {PREDICTED_SLOPES[k]:+.0f}, "
                    f"alpha >= {self.fit_min:g})"
                )
        return "\n".join(lines)

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        from ..plot import plot_alpha_sweep

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(7.5, 5.2), constrained_layout=True)
        plot_alpha_sweep(
            summary["sweep"],
            ax,
            title=f"Two-layer {self.activation} net (n={self.samples}, d={self.dim}, "
            f"m={self.width}, {self.init} init), horizon T={self.t1:g}",
        )
        return [savefig(fig, Path(folder) / "alpha_sweep.png")]
