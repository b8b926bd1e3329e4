"""Figures. Matplotlib is imported lazily, with the non-interactive backend when headless.

The figures of theorem checks live next to the checks: [`gradflow.check.plot_check`][],
[`gradflow.check.plot_check_exponents`][], [`gradflow.check.plot_check_bounds`][] and
[`gradflow.check.plot_check_curves`][] (formerly in this module).
"""

from typing import Any

import numpy as np

from .sweeps._sweep import DISTANCES, PREDICTED_SLOPES, AlphaSweep

LABELS = {
    "param_distance": r"$\sup_t \|w(t) - w_0\|$",
    "param_gap": r"$\sup_t \|w(t) - \bar w(t)\|$",
    "output_gap": r"$\sup_t \|\alpha h(w(t)) - \alpha \bar h(\bar w(t))\|_F$",
}
"""The axis label (matplotlib LaTeX) of each distance, by metric name."""
COLORS = {"param_distance": "tab:blue", "param_gap": "tab:red", "output_gap": "tab:green"}
"""The color of each distance in every figure, by metric name."""


def plot_alpha_sweep(sweep: AlphaSweep, ax: Any = None, *, title: str | None = None) -> Any:
    """Log-log plot of the three distances against alpha, with the fitted power laws (slope and
    confidence interval in the legend) beside the finite-horizon theorem's slopes -1, -2, -1.

    **Returns:** the matplotlib `Axes`.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 5.0), constrained_layout=True)
    a = sweep.alphas
    for k in DISTANCES:
        y = sweep.sup[k]
        ok = np.isfinite(y) & (y > 0)
        ax.loglog(a[ok], y[ok], "o", color=COLORS[k], label=LABELS[k])
        fit = sweep.fits.get(k)
        if fit is not None:
            xs = a[ok & (a >= sweep.fit_min)]
            xx = np.geomspace(xs.min(), xs.max(), 50)
            lo, hi = fit.ci
            ax.loglog(
                xx,
                fit.predict(xx),
                "-",
                color=COLORS[k],
                alpha=0.7,
                label=f"fit: slope {fit.slope:.3f} [{lo:.3f}, {hi:.3f}] "
                f"(theory {PREDICTED_SLOPES[k]:.0f})",
            )
    failed = ~sweep.succeeded
    for x in a[failed]:
        ax.axvline(x, color="0.6", ls=":", lw=1)
    if failed.any():
        ax.plot([], [], ":", color="0.6", label="failed point")
    ax.set_xlabel(r"scale $\alpha$")
    ax.set_ylabel("distance (sup over the horizon)")
    ax.set_title(title or "Lazy training: model flow vs linearized flow")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return ax
