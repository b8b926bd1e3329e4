"""Beyond the paper: the lazy/rich phase diagram over the scale alpha and the width m, and the
crossover alpha*(m) against the scale criterion's width exponent."""

import dataclasses
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import data as gdata, models
from .._losses import SquareLoss
from .._memory import ArraySize
from .._options import SolveOptions
from .._problem import Problem
from .._solution import Solution
from .._solve import STOP_REVISION, solve
from .._typing import Array, Params
from ..analysis._closed_form import linear_flow_closed_form
from ..analysis._diagnostics import kernel_drift, scale_criterion
from ..analysis._stats import RateFit, fit_rate
from ..models._activations import resolve_activation
from ..sweeps._computation import Computation
from ..sweeps._keys import point_key
from ..sweeps._sweep import Sweep
from ._base import AbstractExperiment, option, outputs, pyplot, savefig

# The architectures of the grid: two-layer nets (activation, output scaling) and the 3-layer
# MLP, whose scale criterion has no closed form.
ARCHITECTURES = (
    "tanh-sqrt",
    "relu-sqrt",
    "tanh-mean_field",
    "relu-mean_field",
    "mlp3-tanh",
)

# The width exponent of kappa the paper's Section 2 gives for two-layer nets with h(w0) = 0:
# ||D^2 h|| / ||Dh||^2 falls like m^(-1/2) under the 1/sqrt(m) scaling and stays O(1) under 1/m.
THEORY_EXPONENT = {"sqrt": -0.5, "mean_field": 0.0}

# The laziness measures stored per cell (each relative, see `PhaseDiagram.measure`).
MEASURES = ("kernel_drift", "param_displacement", "linear_gap", "test_loss")
EXTRA_MEASURES = ("linear_test_loss", "train_loss", "stop_time")


class ThreeLayer(models.AbstractModel):
    r"""A 3-layer perceptron in the tangent scaling, without biases,

    $$h(x) = \frac{1}{\sqrt m} v^\top \sigma\Big(\frac{1}{\sqrt m} W_2\, \sigma(W_1 x)\Big),$$

    with parameters `{"w1": (m, d), "w2": (m, m), "v": (m, k)}`. Its scale criterion has no
    closed form; [`gradflow.scale_criterion`][] measures it.
    """

    width: int = eqx.field(static=True)
    activation: Callable[[Array], Array] = eqx.field(static=True)

    def __init__(self, width: int, activation: Callable[[Array], Array] | str = "tanh"):
        if int(width) < 2 or int(width) % 2:
            raise ValueError(f"`width` must be an even integer >= 2; got width={width}.")
        self.width = int(width)
        self.activation = resolve_activation(activation)

    def __call__(self, params: Params, inputs: Array) -> Array:
        scale = self.width**-0.5
        z1 = self.activation(inputs @ params["w1"].T)
        z2 = self.activation(scale * (z1 @ params["w2"].T))
        return scale * (z2 @ params["v"])

    def init(self, key: Array, in_dim: int, out_dim: int = 1) -> Params:
        """Standard normal weights, doubled at the last layer: the second half of the second
        layer's rows copies the first half, with opposite output weights, so $h(w_0) = 0$
        while $Dh(w_0) \\ne 0$."""
        k1, k2, k3 = jax.random.split(key, 3)
        half = self.width // 2
        w2 = jax.random.normal(k2, (half, self.width))
        v = jax.random.normal(k3, (half, out_dim))
        return {
            "w1": jax.random.normal(k1, (self.width, in_dim)),
            "w2": jnp.concatenate([w2, w2]),
            "v": jnp.concatenate([v, -v]),
        }


def crossover(alphas: Sequence[float], drifts: Sequence[float], level: float) -> float:
    r"""The scale $\alpha^*$ where a laziness measure (the kernel drift) falls through `level`,
    interpolated linearly in $(\log \alpha, \log \text{drift})$ between the two grid scales
    that bracket it.

    The measure falls as $\alpha$ grows (lazier). The crossing taken is the lazy side's: the
    smallest grid scale above which every measure is below `level`, and the next smaller one.
    Non-finite values (failed cells) are dropped first.

    **Arguments:**

    - `alphas`: the grid scales (any order; each > 0).
    - `drifts`: the measure at each scale.
    - `level`: the crossing level, > 0.

    **Returns:** $\alpha^*$; NaN where the grid does not bracket it (every measure below
    `level`: the crossover lies below the grid; none: above it).
    """
    a = np.asarray(alphas, dtype=float).ravel()
    d = np.asarray(drifts, dtype=float).ravel()
    if a.shape != d.shape:
        raise ValueError(
            f"`alphas` and `drifts` must have the same length; got {a.size} and {d.size}."
        )
    if np.any(~np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"`alphas` must be finite and > 0; got {a.tolist()}.")
    if not (np.isfinite(level) and level > 0):
        raise ValueError(f"`level` must be a finite number > 0; got level={level!r}.")
    keep = np.isfinite(d) & (d > 0)
    a, d = a[keep], d[keep]
    order = np.argsort(a)
    a, d = a[order], d[order]
    above = np.flatnonzero(d >= level)
    if above.size == 0 or above[-1] == a.size - 1:
        return math.nan
    i = int(above[-1])
    la, ld = np.log(a[i : i + 2]), np.log(d[i : i + 2])
    if ld[0] == ld[1]:
        return float(a[i])
    frac = (np.log(level) - ld[0]) / (ld[1] - ld[0])
    return float(np.exp(la[0] + frac * (la[1] - la[0])))


def _fit(xs: Sequence[float], ys: Sequence[float]) -> RateFit | None:
    """A rate fit of the finite positive pairs, or `None` with fewer than 3 distinct `xs`
    (no interval)."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if np.unique(x[ok]).size < 3:
        return None
    return fit_rate(x[ok], y[ok])


def _number(value: Any) -> float:
    """A stored number (NaN is stored as `None`)."""
    return math.nan if value is None else float(value)


def _geomean(values: Sequence[float | None]) -> float:
    v = np.array([_number(x) for x in values], float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.exp(np.mean(np.log(v)))) if v.size else math.nan


@dataclasses.dataclass(frozen=True)
class PhaseDiagram(AbstractExperiment):
    r"""The lazy/rich phase diagram of gradient flow over the scale $\alpha$ and the width
    $m$, with the doubled initialization ($h(w_0) = 0$), for two-layer nets (`tanh` and `relu`;
    the $1/\sqrt m$ and $1/m$ output scalings) and a 3-layer tanh perceptron
    (`ThreeLayer` in this module).

    Every cell trains to the same train-loss level, `stop_loss` times the loss at $w_0$ (the
    same for every cell of a trial, since $h(w_0) = 0$), with `t1=inf`: under the $1/m$ scaling
    the function-space dynamics slow down as $m$ grows, so a fixed horizon would compare
    trained small nets with untrained large ones. At the stop time $T$ each cell records

    - the test loss, relative to its value at $w_0$;
    - the relative parameter displacement $\|w_T - w_0\| / \|w_0\|$;
    - the relative tangent-kernel drift $\|K(w_T) - K(w_0)\| / \|K(w_0)\|$ (spectral norms,
      [`gradflow.tangent_kernel`][] on the training inputs);
    - the relative output gap to the linearized model trained for the same time $T$ (its
      closed form, [`gradflow.linear_flow_closed_form`][]) on the test inputs,
      $\|\alpha h(w_T) - \alpha \bar h(\bar w_T)\| / \|\alpha \bar h(\bar w_T)\|$.

    The scale criterion $\kappa(\alpha, m) = \kappa(1, m) / \alpha$ (exact for $h(w_0) = 0$)
    is measured once per width and trial with [`gradflow.scale_criterion`][]. From the grid:
    the crossover $\alpha^*(m)$ where the drift falls through each of `levels`
    (`crossover` in this module), the fit of $\log \alpha^*$
    against $\log m$ over every (width, trial) with its 95% interval, compared with $\kappa$'s
    width exponent (theory: $-1/2$ under $1/\sqrt m$ and $0$ under $1/m$; fitted from the
    measured $\kappa(1, m)$ for every architecture), and $\kappa(\alpha^*(m), m)$ across widths
    (constant where $\kappa$ predicts the crossover). Data: `samples` inputs uniform on the
    unit sphere of $\mathbb{R}^d$ and a teacher of 3 neurons (`teacher`); square loss.
    """

    name: ClassVar[str] = "phase-diagram"
    title: ClassVar[str] = "Lazy vs rich training over (alpha, width): the crossover vs kappa"
    claim: ClassVar[str] = (
        "the crossover alpha*(m) where the tangent kernel moves by 0.3 scales like the scale "
        "criterion kappa: m^(-1/2) under the 1/sqrt(m) scaling, flat under 1/m"
    )
    file_stem: ClassVar[str] = "phase-diagram"

    archs: tuple[str, ...] = option(
        ARCHITECTURES,
        "architectures: ACTIVATION-SCALING two-layer nets (scaling sqrt = 1/sqrt(m), "
        "mean_field = 1/m) and mlp3-tanh (3-layer perceptron, 1/sqrt(m) per layer)",
        choices=ARCHITECTURES,
    )
    widths: tuple[int, ...] = option(
        (32, 76, 180, 430, 1024),
        "widths m (hidden neurons per layer; the default is 1.5 decades, log-spaced; the "
        "two-layer crossover follows kappa's width law from m = 76 on: "
        "76,180,430,1024,2432 in docs/experiments.md)",
        even=True,
    )
    alphas: tuple[float, ...] = option(
        (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0),
        "scales alpha of the 1/sqrt(m) nets and of the MLP",
        positive=True,
    )
    alphas_mean_field: tuple[float, ...] = option(
        (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0),
        "scales alpha of the 1/m nets (their crossover does not move with m)",
        positive=True,
    )
    trials: int = option(3, "independent trials (own data, teacher and inits)", positive=True)
    samples: int = option(40, "training points n", positive=True)
    n_test: int = option(500, "test points", positive=True)
    dim: int = option(5, "input dimension d", positive=True)
    stop_loss: float = option(
        1e-3, "train-loss level every cell trains to, relative to its loss at w0", within="(0, 1)"
    )
    levels: tuple[float, ...] = option(
        (0.3, 0.1, 0.03),
        "kernel-drift levels of the crossover; the first is the headline one",
        within="(0, 1)",
    )
    rtol: float = option(1e-5, "relative tolerance of the adaptive solver", positive=True)
    rtol_relu: float = option(
        1e-3,
        "relative tolerance for the ReLU nets: every kink the path crosses rejects steps at "
        "tight tolerances, and 1e-3 resolves a piecewise-smooth flow to figure accuracy",
        positive=True,
    )
    max_steps: int = option(300_000, "step budget of one cell's solve", positive=True)
    teacher: Literal["tanh", "relu"] = option(
        "tanh",
        "activation of the 3-neuron teacher; tanh nets without biases are odd functions of x, "
        "so they cannot fit the even part of a relu teacher (their test loss then exceeds the "
        "zero predictor's)",
    )
    seed: int = option(0, "PRNG seed of the trials")

    @classmethod
    def quick(cls) -> "PhaseDiagram":
        return cls(
            archs=("tanh-sqrt",),
            widths=(8, 16, 32),
            alphas=(0.3, 1.0, 3.0, 10.0),
            trials=1,
            samples=12,
            n_test=50,
            dim=3,
            stop_loss=1e-2,
            rtol=1e-4,
        )

    def largest_arrays(self) -> list[ArraySize]:
        n, nt, d, m = self.samples, self.n_test, self.dim, max(self.widths)
        mlp = "mlp3-tanh" in self.archs
        return [
            ArraySize(
                "the parameters of the widest net, width x (dim + 1), or width^2 for the MLP",
                m * m + m * (d + 1) if mlp else m * (d + 1),
                ("widths", "dim"),
            ),
            ArraySize(
                "the hidden activations of the test set, n_test x width",
                nt * m,
                ("n_test", "widths"),
            ),
            ArraySize("the tangent kernels, 2 x samples^2", 2 * n * n, ("samples",)),
        ]

    def grid(self, arch: str) -> tuple[float, ...]:
        """The scales of architecture `arch`."""
        return self.alphas_mean_field if arch.endswith("mean_field") else self.alphas

    def points(self) -> list[tuple[str, dict[str, Any]]]:
        pts = []
        for arch in self.archs:
            for m in self.widths:
                for trial in range(self.trials):
                    kappa = {"kind": "kappa", "arch": arch, "width": m, "alpha": 1.0}
                    pts.append(
                        (
                            point_key(prefix="kappa", arch=arch, m=m, trial=trial),
                            {**kappa, "trial": trial},
                        )
                    )
                    for a in self.grid(arch):
                        pts.append(
                            (
                                point_key(arch=arch, m=m, alpha=float(a), trial=trial),
                                {
                                    "kind": "flow",
                                    "arch": arch,
                                    "width": m,
                                    "alpha": float(a),
                                    "trial": trial,
                                },
                            )
                        )
        return pts

    def _model(self, arch: str, width: int) -> models.AbstractModel:
        if arch == "mlp3-tanh":
            return ThreeLayer(width, "tanh")
        activation, scaling = arch.split("-")
        return models.TwoLayer(width, activation, scaling)

    def _data(self, trial: int) -> dict[str, Array]:
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), trial)
        kx, kxt, kt, kp = jax.random.split(key, 4)
        x = gdata.uniform_sphere(kx, self.samples, self.dim)
        x_test = gdata.uniform_sphere(kxt, self.n_test, self.dim)
        y = gdata.teacher_targets(kt, x, activation=self.teacher)
        y_test = gdata.teacher_targets(kt, x_test, activation=self.teacher)
        return {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "key": kp}

    def problem(self, arch: str, width: int, alpha: float, trial: int) -> Problem:
        """The cell's problem: the trial's data, the doubled init of width `width`, scale
        `alpha`."""
        d = self._data(trial)
        model = self._model(arch, width)
        key = jax.random.fold_in(d["key"], width)
        if isinstance(model, ThreeLayer):
            w0 = model.init(key, self.dim)
        else:
            w0 = model.init(key, self.dim, doubled=True)
        return Problem(model, w0, d["x"], SquareLoss(d["y"]), alpha=alpha)

    def build(self, *, kind: str, arch: str, width: int, alpha: float, trial: int) -> Computation:
        # A cell is one flow to the train-loss level (`t1=inf`), with its measures taken at the
        # stop: a computation that returns the measures, not the solution's record.
        if kind == "kappa":
            return Computation(self.kappa, arch=arch, width=width, trial=trial)
        return Computation(self.cell, arch=arch, width=width, alpha=alpha, trial=trial)

    def kappa(self, *, arch: str, width: int, trial: int) -> dict[str, Any]:
        """The scale criterion at $\\alpha = 1$ of one width and trial (with $h(w_0) = 0$,
        $\\kappa(\\alpha) = \\kappa(1) / \\alpha$)."""
        return scale_criterion(self.problem(arch, width, 1.0, trial)).to_dict()

    def flow_options(self, arch: str) -> SolveOptions:
        """The solve of a cell of `arch`: to the level `stop_loss` (`t1=inf`), the parameters
        saved."""
        rtol = self.rtol_relu if arch.startswith("relu") else self.rtol
        return SolveOptions(
            math.inf,
            rtol=rtol,
            atol=rtol / 100,
            stop_loss=self.stop_loss,
            max_steps=self.max_steps,
            linearized=False,
            save_params=True,
        )

    def cell(self, *, arch: str, width: int, alpha: float, trial: int) -> dict[str, Any]:
        """One cell: the flow to the train-loss level and its laziness measures at the stop
        time $T$ (see the class); NaN measures, with the solver's message, where the level was
        not reached within `max_steps`."""
        problem = self.problem(arch, width, alpha, trial)
        solution = solve(problem, options=self.flow_options(arch))
        record: dict[str, Any] = {
            "result": solution.message or "successful",
            "solver": type(solution.info.choice.solver).__name__,
            "num_steps": int(solution.stats["num_steps"]),
            # The revision of the stop this cell was solved under (read here, so that it is
            # part of the cell's fingerprint: a store of another revision is not reused).
            "stop_revision": STOP_REVISION,
        }
        if not solution.succeeded:
            return {**record, **dict.fromkeys((*MEASURES, *EXTRA_MEASURES), math.nan)}
        return {**record, **self.measures(problem, solution, trial)}

    def measures(self, problem: Problem, solution: Solution, trial: int) -> dict[str, float]:
        """The laziness measures of a solved cell at its last save (the stop)."""
        d = self._data(trial)
        w0 = problem.params0
        w_t = jax.tree_util.tree_map(lambda v: v[-1], solution.params)
        t_stop = float(solution.ts[-1])
        flat0 = ravel_pytree(w0)[0]
        flat_t = ravel_pytree(w_t)[0]
        test = SquareLoss(d["y_test"])
        out = problem.predict(w_t, d["x_test"])
        zero = test(jnp.zeros_like(out))
        _, linear = linear_flow_closed_form(problem, np.array([t_stop]))
        out_linear = problem.predict_linear(
            jax.tree_util.tree_map(lambda v: v[0], linear), d["x_test"]
        )
        return {
            "kernel_drift": kernel_drift(problem, w_t),
            "param_displacement": float(jnp.linalg.norm(flat_t - flat0) / jnp.linalg.norm(flat0)),
            "linear_gap": float(jnp.linalg.norm(out - out_linear) / jnp.linalg.norm(out_linear)),
            "test_loss": float(test(out) / zero),
            "linear_test_loss": float(test(out_linear) / zero),
            "train_loss": float(solution.loss[-1] / solution.loss[0]),
            "stop_time": t_stop,
        }

    def summarize(self, sweep: Sweep) -> dict[str, Any]:
        cells: dict[tuple[str, int, int], dict[float, dict[str, float]]] = {}
        kappas: dict[tuple[str, int, int], float] = {}
        for r in outputs(sweep).values():
            cell = (r["arch"], r["width"], r["trial"])
            if r["kind"] == "kappa":
                kappas[cell] = _number(r["kappa"])
            else:
                values = {k: _number(r[k]) for k in (*MEASURES, *EXTRA_MEASURES)}
                cells.setdefault(cell, {})[r["alpha"]] = values
        rows = []
        archs = {}
        for arch in self.archs:
            grid = self.grid(arch)
            for m in self.widths:
                for a in grid:
                    found = [cells.get((arch, m, t), {}).get(a) for t in range(self.trials)]
                    found = [f for f in found if f is not None]
                    row: dict[str, Any] = {"arch": arch, "width": m, "alpha": a}
                    for k in (*MEASURES, *EXTRA_MEASURES):
                        row[k] = _geomean([f[k] for f in found])
                    row["kappa"] = _geomean(
                        [kappas.get((arch, m, t), math.nan) / a for t in range(self.trials)]
                    )
                    row["trials"] = sum(np.isfinite(f["kernel_drift"]) for f in found)
                    rows.append(row)
            archs[arch] = self._arch_summary(arch, cells, kappas)
        return {"rows": rows, "archs": archs, "levels": list(self.levels)}

    def _arch_summary(
        self,
        arch: str,
        cells: dict[tuple[str, int, int], dict[float, dict[str, float]]],
        kappas: dict[tuple[str, int, int], float],
    ) -> dict[str, Any]:
        """Crossovers per level, their width fits, kappa's exponent and kappa at the
        crossover, for one architecture."""
        trials = range(self.trials)
        kappa1 = {m: [kappas.get((arch, m, t), math.nan) for t in trials] for m in self.widths}
        kfit = _fit(*zip(*[(m, k) for m in self.widths for k in kappa1[m]]))
        scaling = None if arch.startswith("mlp") else arch.split("-")[1]
        theory = None if scaling is None else THEORY_EXPONENT[scaling]
        predicted = theory if theory is not None else (kfit.slope if kfit else math.nan)
        out: dict[str, Any] = {
            "kappa_at_alpha_1": {str(m): kappa1[m] for m in self.widths},
            "kappa_exponent": None if kfit is None else kfit.to_dict(),
            "theory_exponent": theory,
            "predicted_slope": predicted,
            "levels": {},
        }
        for level in self.levels:
            stars: dict[int, list[float]] = {}
            for m in self.widths:
                stars[m] = []
                for t in trials:
                    grid = cells.get((arch, m, t), {})
                    alphas = sorted(grid)
                    drifts = [grid[a]["kernel_drift"] for a in alphas]
                    stars[m].append(crossover(alphas, drifts, level) if alphas else math.nan)
            pairs = [(m, s) for m in self.widths for s in stars[m]]
            fit = _fit(*zip(*pairs))
            at_star = [(m, kappa1[m][t] / stars[m][t]) for m in self.widths for t in trials]
            kstar_fit = _fit(*zip(*at_star))
            entry: dict[str, Any] = {
                "alpha_star": {str(m): stars[m] for m in self.widths},
                "alpha_star_geomean": {str(m): _geomean(stars[m]) for m in self.widths},
                "fit": None if fit is None else fit.to_dict(),
                "kappa_at_crossover": {
                    str(m): [k for mm, k in at_star if mm == m] for m in self.widths
                },
                "kappa_at_crossover_geomean": {
                    str(m): _geomean([k for mm, k in at_star if mm == m]) for m in self.widths
                },
                "kappa_at_crossover_fit": None if kstar_fit is None else kstar_fit.to_dict(),
                "missing": sum(1 for _, s in pairs if not np.isfinite(s)),
            }
            if fit is not None and np.isfinite(predicted):
                entry["slope_minus_predicted"] = fit.slope - predicted
                entry["within_0.1"] = bool(abs(fit.slope - predicted) <= 0.1)
                entry["ci_contains_prediction"] = bool(fit.ci[0] <= predicted <= fit.ci[1])
            out["levels"][f"{level:g}"] = entry
        return out

    def report(self, summary: dict[str, Any]) -> str:
        """Per architecture and drift level: the crossover slope with its 95% interval against
        kappa's width exponent, and kappa at the crossover."""
        lines = [self.title, *textwrap.wrap(f"claim: {self.claim}", 118)]
        lines.append(
            f"{'arch':>16} {'level':>6} {'slope':>8} {'95% CI':>19} {'predicted':>9} "
            f"{'kappa exp (fit)':>22} {'kappa(a*,m) slope':>18} {'ok':>4}"
        )
        for arch, s in summary["archs"].items():
            ke = s["kappa_exponent"]
            kexp = "-"
            if ke is not None:
                kexp = f"{ke['slope']:+.3f} [{ke['ci'][0]:+.2f},{ke['ci'][1]:+.2f}]"
            for level, e in s["levels"].items():
                fit, kf = e["fit"], e["kappa_at_crossover_fit"]
                slope = "-" if fit is None else f"{fit['slope']:+.3f}"
                ci = "-" if fit is None else f"[{fit['ci'][0]:+.3f}, {fit['ci'][1]:+.3f}]"
                ks = "-" if kf is None else f"{kf['slope']:+.3f}"
                ok = e.get("within_0.1") and e.get("ci_contains_prediction")
                lines.append(
                    f"{arch:>16} {level:>6} {slope:>8} {ci:>19} {s['predicted_slope']:>+9.3f} "
                    f"{kexp:>22} {ks:>18} {('yes' if ok else 'no'):>4}"
                )
        return "\n".join(lines)

    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        files = [self._plot_arch(arch, summary, folder) for arch in summary["archs"]]
        files.append(self._plot_fits(summary, folder))
        return files

    def _plot_arch(self, arch: str, summary: dict[str, Any], folder: Path) -> Path:
        """Heatmaps of the test loss and of the kernel drift over (m, alpha), with the
        measured crossover and kappa's level line through it."""
        from matplotlib.colors import LogNorm

        plt = pyplot()
        s = summary["archs"][arch]
        widths = np.array(self.widths, float)
        alphas = np.array(sorted(self.grid(arch)), float)
        rows = {(r["arch"], r["width"], r["alpha"]): r for r in summary["rows"]}
        level = f"{self.levels[0]:g}"
        entry = s["levels"][level]
        # A summary read back from its JSON has `None` where NaN was written.
        star = np.array([_number(entry["alpha_star_geomean"][str(int(m))]) for m in widths])
        kstar = _geomean(list(entry["kappa_at_crossover_geomean"].values()))
        kappa1 = np.array([_geomean(s["kappa_at_alpha_1"][str(int(m))]) for m in widths])
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 5.0), layout="constrained")
        for ax, key, label in (
            (axes[0], "test_loss", "test loss / test loss at $w_0$"),
            (axes[1], "kernel_drift", r"kernel drift $\|K(w_T)-K(w_0)\|/\|K(w_0)\|$"),
        ):
            z = np.array(
                [[rows[(arch, int(m), float(a))][key] for m in widths] for a in alphas], float
            )
            finite = z[np.isfinite(z) & (z > 0)]
            norm = LogNorm(finite.min(), finite.max()) if finite.size else None
            mesh = ax.pcolormesh(
                _edges(widths), _edges(alphas), np.ma.masked_invalid(z), norm=norm, cmap="viridis"
            )
            fig.colorbar(mesh, ax=ax, label=label)
            if key == "kernel_drift" and finite.size and min(z.shape) >= 2:
                lv = [float(v) for v in self.levels if finite.min() < v < finite.max()]
                if lv:
                    ax.contour(
                        widths,
                        alphas,
                        np.ma.masked_invalid(z),
                        levels=sorted(lv),
                        colors="white",
                        linewidths=0.8,
                        linestyles=":",
                    )
            ok = np.isfinite(star)
            ax.plot(
                widths[ok],
                star[ok],
                "o-",
                color="red",
                lw=2,
                label=rf"measured crossover $\alpha^*(m)$ (drift {level})",
            )
            if np.isfinite(kstar):
                ax.plot(
                    widths,
                    kappa1 / kstar,
                    "--",
                    color="orange",
                    lw=2,
                    label=rf"$\kappa$ level line, $\kappa(\alpha, m) = {kstar:.3g}$",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(_edges(widths)[[0, -1]])
            ax.set_ylim(_edges(alphas)[[0, -1]])
            # The grid's own values as ticks: every cell is labelled.
            ax.set_xticks(widths, [f"{m:g}" for m in widths], minor=False)
            ax.set_xticks([], minor=True)
            ax.set_yticks(alphas, [f"{a:g}" for a in alphas], minor=False)
            ax.set_yticks([], minor=True)
            ax.set_xlabel("width m")
            ax.set_ylabel(r"scale $\alpha$")
        handles, labels = axes[1].get_legend_handles_labels()
        if self.levels and np.isfinite(star).any():
            handles.append(plt.Line2D([], [], color="white", ls=":", lw=0.8))
            labels.append("drift levels " + ", ".join(f"{v:g}" for v in self.levels))
        if handles:
            legend = fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
            legend.get_frame().set_facecolor("0.85")
        fig.suptitle(
            f"{arch}: lazy (top) vs rich (bottom), n={self.samples}, d={self.dim}, "
            f"trained to loss {self.stop_loss:g} x initial, {self.trials} trial(s), geometric means"
        )
        return savefig(fig, folder / f"{self.file_stem}-{arch}.png")

    def _plot_fits(self, summary: dict[str, Any], folder: Path) -> Path:
        """log alpha* against log m per architecture, with the fit and kappa's prediction."""
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        plt = pyplot()
        archs = list(summary["archs"])
        fig, axes = plt.subplots(
            1, len(archs), figsize=(3.6 * len(archs), 3.8), constrained_layout=True, squeeze=False
        )
        level = f"{self.levels[0]:g}"
        for ax, arch in zip(axes[0], archs):
            s = summary["archs"][arch]
            e = s["levels"][level]
            for m in self.widths:
                v = np.array([_number(x) for x in e["alpha_star"][str(m)]], float)
                ax.plot(np.full(v.size, m), v, "o", color="tab:blue", ms=4, alpha=0.7)
            fit = e["fit"]
            m = np.array(self.widths, float)
            if fit is not None:
                ax.plot(
                    m,
                    np.exp(fit["intercept"]) * m ** fit["slope"],
                    "-",
                    color="tab:blue",
                    label=f"fit {fit['slope']:+.2f} [{fit['ci'][0]:+.2f}, {fit['ci'][1]:+.2f}]",
                )
                pred = _number(s["predicted_slope"])
                if np.isfinite(pred):
                    center = np.exp(np.mean(fit["intercept"] + fit["slope"] * np.log(m)))
                    gm = np.exp(np.mean(np.log(m)))
                    ax.plot(
                        m,
                        center * (m / gm) ** pred,
                        "--",
                        color="tab:orange",
                        label=rf"$\kappa$: {pred:+.2f}",
                    )
            stars = np.array([_number(v) for m in self.widths for v in e["alpha_star"][str(m)]])
            if np.any(np.isfinite(stars)):
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xticks(m, [f"{v:g}" for v in m])
                ax.set_xticks([], minor=True)
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
            else:
                ax.text(
                    0.5,
                    0.5,
                    "no crossover\nwithin the alpha grid",
                    ha="center",
                    transform=ax.transAxes,
                )
            ax.set_xlabel("width m")
            ax.set_ylabel(rf"$\alpha^*(m)$ at drift {level}")
            ax.set_title(arch, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if fit is not None:
                ax.legend(fontsize=7)
        return savefig(fig, folder / f"{self.file_stem}-crossover.png")


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges of a log-spaced grid (geometric midpoints, mirrored at the ends)."""
    c = np.log(np.asarray(centers, float))
    if c.size == 1:
        return np.exp(np.array([c[0] - 0.5, c[0] + 0.5]))
    mid = (c[1:] + c[:-1]) / 2
    return np.exp(np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]]))
