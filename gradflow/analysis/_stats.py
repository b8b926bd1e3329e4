"""Statistics of the sweeps: log-log rate fits and the Student's t quantile of their intervals."""

import math
from typing import Any

import equinox as eqx
import jax
import numpy as np

from .._typing import ArrayLike


def _student_t_cdf(t: float, dof: float) -> float:
    x = dof / (dof + t * t)
    tail = 0.5 * float(jax.scipy.special.betainc(dof / 2.0, 0.5, x))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(q: float, dof: float) -> float:
    """Quantile of Student's t distribution (bisection on the regularized incomplete beta)."""
    if not 0 < q < 1:
        raise ValueError(f"`q` must be in (0, 1); got {q}.")
    if q < 0.5:
        return -student_t_quantile(1.0 - q, dof)
    lo, hi = 0.0, 1.0
    while _student_t_cdf(hi, dof) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _student_t_cdf(mid, dof) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


class RateFit(eqx.Module):
    r"""A least-squares fit $\log y = \text{intercept} + \text{slope} \cdot \log x$."""

    slope: float
    intercept: float
    ci: tuple[float, float]
    stderr: float
    r2: float
    confidence: float
    num_points: int

    @property
    def prefactor(self) -> float:
        """$C$ in $y \\approx C x^{\\text{slope}}$."""
        return math.exp(self.intercept)

    def predict(self, x: ArrayLike) -> np.ndarray:
        return np.exp(self.intercept) * np.asarray(x, float) ** self.slope

    def to_dict(self) -> dict[str, Any]:
        return {
            "slope": self.slope,
            "intercept": self.intercept,
            "ci": list(self.ci),
            "stderr": self.stderr,
            "r2": self.r2,
            "confidence": self.confidence,
            "num_points": self.num_points,
        }


def fit_rate(xs: ArrayLike, ys: ArrayLike, *, confidence: float = 0.95) -> RateFit:
    r"""Fit a power law $y \approx C x^s$ by least squares on $(\log x, \log y)$.

    **Returns:** a [`gradflow.RateFit`][] with the slope $s$, the intercept $\log C$, and a
    two-sided `confidence` interval for the slope from Student's t with `len(xs) - 2` degrees of
    freedom (zero width when the points lie exactly on a line; undefined, so infinite, with two
    points).
    """
    x = np.asarray(xs, dtype=float).ravel()
    y = np.asarray(ys, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"`xs` and `ys` must have the same length; got {x.size} and {y.size}.")
    if x.size < 2:
        raise ValueError("`fit_rate` needs at least two points.")
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(y)) or np.any(x <= 0) or np.any(y <= 0):
        raise ValueError(
            "`fit_rate` fits logarithms: `xs` and `ys` must be finite and > 0 (drop failed "
            "or zero points first)."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence}.")
    lx, ly = np.log(x), np.log(y)
    xm, ym = lx.mean(), ly.mean()
    sxx = np.sum((lx - xm) ** 2)
    if sxx == 0:
        raise ValueError("`xs` must contain at least two distinct values.")
    slope = float(np.sum((lx - xm) * (ly - ym)) / sxx)
    intercept = float(ym - slope * xm)
    resid = ly - (intercept + slope * lx)
    sst = np.sum((ly - ym) ** 2)
    r2 = float(1.0 - np.sum(resid**2) / sst) if sst > 0 else 1.0
    dof = x.size - 2
    if dof > 0:
        stderr = float(np.sqrt(np.sum(resid**2) / dof / sxx))
        half = student_t_quantile(0.5 + confidence / 2.0, dof) * stderr
    else:
        stderr, half = math.inf, math.inf
    return RateFit(
        slope=slope,
        intercept=intercept,
        ci=(slope - half, slope + half),
        stderr=stderr,
        r2=r2,
        confidence=confidence,
        num_points=int(x.size),
    )
