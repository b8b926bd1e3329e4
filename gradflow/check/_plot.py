"""Figures of theorem checks: rates, bounds and curves of a [`gradflow.check.CheckReport`][].
Matplotlib is imported lazily."""

from typing import Any

import numpy as np

from ._base import KINDS, CheckReport

_CYCLE = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def _axes(ax: Any) -> Any:
    """`ax`, or the axes of a new 7 x 5 inch figure when it is None."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 5.0), constrained_layout=True)
    return ax


def _finish(ax: Any, xlabel: str, ylabel: str, title: str, *, time_axis: bool = False) -> Any:
    """Label a panel (title in small type), draw its grid and legend; **Returns:** `ax`."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    if time_axis:
        # Minor-tick labels of a short log axis overlap; keep the decades only.
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_check_exponents(report: CheckReport, ax: Any = None) -> Any:
    """Log-log plot of the measured quantities of a [`gradflow.check.CheckReport`][] against
    alpha (or the width), each with its fitted power law and the theorem's slope drawn through
    the points' geometric mean.

    **Returns:** the matplotlib `Axes`.
    """
    ax = _axes(ax)
    shown = [e for e in report.exponents if not e.quantity.endswith("(h(w0) != 0)")]
    for i, e in enumerate(shown):
        c = _CYCLE[i % len(_CYCLE)]
        ok = np.isfinite(e.ys) & (e.ys > 0)
        x, y = e.xs[ok], e.ys[ok]
        if x.size == 0:
            continue
        ax.loglog(x, y, "o", color=c, label=e.quantity)
        xx = np.geomspace(x.min(), x.max(), 50)
        if np.isfinite(e.measured):
            ax.loglog(
                xx,
                np.exp(e.intercept) * xx**e.measured,
                "-",
                color=c,
                alpha=0.8,
                label=f"  fit slope {e.measured:+.3f} [{e.ci[0]:+.3f}, {e.ci[1]:+.3f}]",
            )
        gx, gy = np.exp(np.mean(np.log(x))), np.exp(np.mean(np.log(y)))
        if e.applicable or e.kind is not KINDS.equal:
            ref = e.predicted
            if e.kind is KINDS.equal:
                word = "theory"
            elif e.kind is KINDS.at_least:
                word = "theory: at least"
            else:
                word = "theory: at most"
            ax.loglog(
                xx, gy * (xx / gx) ** ref, ":", color=c, lw=2, label=f"  {word} slope {ref:+.2f}"
            )
        else:
            ax.plot([], [], " ", label="  (theorem's slope not applicable: hypotheses fail)")
    variable = shown[0].variable if shown else "alpha"
    return _finish(
        ax,
        "scale alpha" if variable == "alpha" else variable,
        "measured quantity (see legend)",
        f"{report.theorem}: {report.problem}\nverdict: {report.verdict}",
    )


def plot_check_bounds(report: CheckReport, ax: Any = None) -> Any:
    """Observed quantity (solid) against the theorem's bound (dashed) over time, for each bound
    of a [`gradflow.check.CheckReport`][], on logarithmic axes. Bounds checked at one time only
    (the off-training-set theorem, at the horizon $T$) are drawn against alpha instead, one
    curve per bound.

    **Returns:** the matplotlib `Axes`.
    """
    ax = _axes(ax)
    if report.bounds and all(b.ts.size == 1 for b in report.bounds):
        return _plot_bounds_against_alpha(report, ax)
    for i, b in enumerate(report.bounds):
        c = _CYCLE[i % len(_CYCLE)]
        use = (b.ts > 0) & (b.observed > 0)
        ax.loglog(
            b.ts[use],
            b.observed[use],
            "-",
            color=c,
            label=f"{b.quantity}, alpha={b.alpha:g} (observed)",
        )
        ax.loglog(
            b.ts[use], b.bound[use], "--", color=c, label=f"  bound (min bound/obs {b.ratio:.3g})"
        )
    return _finish(
        ax,
        "time t",
        "distance",
        f"{report.theorem}: {report.problem}: observed vs bound",
        time_axis=True,
    )


def _plot_bounds_against_alpha(report: CheckReport, ax: Any) -> Any:
    groups: dict[str, list] = {}
    for b in report.bounds:
        groups.setdefault(b.quantity, []).append(b)
    drawn = []
    for i, (quantity, items) in enumerate(groups.items()):
        c = _CYCLE[i % len(_CYCLE)]
        items = sorted(items, key=lambda b: b.alpha)
        a = np.array([b.alpha for b in items])
        obs = np.array([b.observed[0] for b in items])
        bnd = np.array([b.bound[0] for b in items])
        ratio = min(b.ratio for b in items)
        tag = "" if all(b.applicable for b in items) else " (n/a: hypotheses fail)"
        ax.loglog(a, bnd, "s--", color=c, label=f"{quantity}{tag}: min bound/obs {ratio:.3g}")
        if not any(x.shape == a.shape and np.allclose(x, obs) for x in drawn):
            name = quantity.split(" [")[0]
            ax.loglog(a, obs, "o-", color="k", lw=1.5, label=f"observed: sup over X of the {name}")
            drawn.append(obs)
    t = report.bounds[0].ts[0]
    return _finish(
        ax,
        r"scale $\alpha$",
        f"value at t = {t:g}",
        f"{report.theorem}: {report.problem}: observed vs bound",
    )


def plot_check_curves(report: CheckReport, ax: Any = None) -> Any:
    """Predicted (dashed) against measured (solid) curves over time of a
    [`gradflow.check.CheckReport`][] (e.g. the next-to-lazy limits), on logarithmic axes.

    **Returns:** the matplotlib `Axes`.
    """
    ax = _axes(ax)
    for i, c in enumerate(report.curves):
        col = _CYCLE[i % len(_CYCLE)]
        use = (c.ts > 0) & (c.measured > 0) & (c.predicted > 0)
        ax.loglog(
            c.ts[use],
            c.measured[use],
            "-",
            color=col,
            lw=2.5,
            alpha=0.5,
            label=f"{c.quantity}, measured at alpha={c.alpha:g}",
        )
        ax.loglog(c.ts[use], c.predicted[use], "--", color=col, label="  predicted limit")
    return _finish(
        ax,
        "time t",
        "scaled distance",
        f"{report.theorem}: {report.problem}: prediction vs measurement",
        time_axis=True,
    )


def plot_check(report: CheckReport) -> Any:
    """A figure for one check report: the rates panel, then the bounds panel and the curves
    panel when the report has bounds or curves. **Returns:** the matplotlib `Figure`."""
    import matplotlib.pyplot as plt

    panels = 1 + bool(report.bounds) + bool(report.curves)
    fig, axes = plt.subplots(1, panels, figsize=(7.0 * panels, 5.2), constrained_layout=True)
    axes = np.atleast_1d(axes)
    plot_check_exponents(report, axes[0])
    k = 1
    if report.bounds:
        plot_check_bounds(report, axes[k])
        k += 1
    if report.curves:
        plot_check_curves(report, axes[k])
    return fig
