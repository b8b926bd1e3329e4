"""The report every theorem check returns, and the comparisons it is made of."""

import dataclasses
import enum
import math
from typing import Any

import equinox as eqx
import numpy as np

from .._losses import empirical_norm
from .._problem import Problem
from ..analysis._stats import RateFit, fit_rate


class VERDICTS(enum.Enum):
    """The verdict of a [`gradflow.check.CheckReport`][] (`report.result`); each member's
    value, `item.value`, is what the table and the JSON show (`report.verdict`).

    - `passed` (`"pass"`): the hypotheses hold and every applicable comparison passes.
    - `failed` (`"FAIL"`): the hypotheses hold but a comparison fails.
    - `no_decay` (`"hypotheses fail: no decay, as predicted"`): a negative control that behaves
      as the theory says (the distances do not shrink).
    - `hypotheses_fail` (`"hypotheses fail"`): the hypotheses fail and the comparisons that
      still apply do not all pass (e.g. the distances shrink after all).

    `passed` and `no_decay` are the outcomes the theory predicts
    (`report.as_predicted`).
    """

    passed = "pass"
    failed = "FAIL"
    no_decay = "hypotheses fail: no decay, as predicted"
    hypotheses_fail = "hypotheses fail"


class KINDS(enum.Enum):
    r"""How a fitted exponent $s$ is compared with the predicted one
    ([`gradflow.check.ExponentCheck`][] `kind`); each member's value is its name, as the JSON
    shows it.

    - `equal`: $|s - \text{predicted}| \le$ `tolerance`.
    - `at_least` (negative controls: "does not shrink"): $s \ge$ `predicted`.
    - `at_most` (upper-bound laws): $s \le$ `predicted`.
    """

    equal = "equal"
    at_least = "at_least"
    at_most = "at_most"


class _Record(eqx.Module):
    """A small result whose JSON form is its fields."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class Hypothesis(_Record):
    """One assumption of a theorem, as verified on a problem (`detail` gives the numbers)."""

    statement: str
    holds: bool
    detail: str


class ExponentCheck(_Record):
    r"""A power law $y \approx C x^s$ fitted to measurements and compared with the theorem.

    `kind` is a [`gradflow.check.KINDS`][] item: `KINDS.equal` passes when
    $|s - \text{predicted}| \le$ `tolerance`, `KINDS.at_least` (negative controls: "does not
    shrink") when $s \ge$ `predicted`, `KINDS.at_most` (upper-bound laws) when
    $s \le$ `predicted`. `xs`, `ys` are the points (e.g. alphas and sup-distances), `ci` the 95%
    interval of the slope.
    """

    quantity: str
    variable: str
    predicted: float
    measured: float
    ci: tuple[float, float]
    intercept: float
    tolerance: float
    xs: np.ndarray
    ys: np.ndarray
    kind: KINDS = eqx.field(static=True)
    applicable: bool
    passed: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": self.kind.value}


class ConstantCheck(_Record):
    """A predicted constant against its measurement: `rel_error = |measured - predicted| /
    |predicted|` (absolute when `predicted` is 0), passing when it is at most `tolerance`."""

    quantity: str
    predicted: float
    measured: float
    rel_error: float
    tolerance: float
    applicable: bool
    passed: bool
    note: str


class BoundCheck(_Record):
    r"""An upper bound against the observed quantity at every saved time.

    - `margin`: $\min_{t > 0} (\text{bound} - \text{observed}) / \text{bound}$: the relative room
      left at the tightest time (negative when the bound is violated).
    - `ratio`: $\min_{t > 0}$ bound / observed.
    - `solver_error`: the relative change of the observed curve when re-solved with tolerances
      1000 times tighter: the solver's own error level. A pass needs every
      observed <= bound and `margin > solver_error`.
    """

    quantity: str
    alpha: float
    ts: np.ndarray
    observed: np.ndarray
    bound: np.ndarray
    margin: float
    ratio: float
    tightest_time: float
    solver_error: float
    applicable: bool
    passed: bool
    note: str


class Curve(_Record):
    r"""A predicted curve against the measured one over time (e.g. the next-to-lazy limit
    against $\alpha^2\|w - \bar w\|(t)$), for plots and JSON."""

    quantity: str
    alpha: float
    ts: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray


class CheckReport(eqx.Module):
    """The result of one theorem check on one problem.

    - `hypotheses`: each assumption with `holds` and the numbers behind it.
    - `exponents`, `constants`, `bounds`: the comparisons ([`gradflow.check.ExponentCheck`][],
      [`gradflow.check.ConstantCheck`][], [`gradflow.check.BoundCheck`][]).
    - `estimates`: `(name, value, how)` triples: the constants the bounds used and how they were
      estimated (several are lower-bound estimates, see [`gradflow.lipschitz_dh`][]).
    - `curves`: predicted against measured curves over time ([`gradflow.check.Curve`][]),
      where the theorem predicts a whole curve.
    - `result`: the verdict, a [`gradflow.check.VERDICTS`][] item; `verdict` is its text
      (`"pass"`, `"FAIL"`, `"hypotheses fail: no decay, as predicted"` for a negative control
      that behaves as the theory says, or `"hypotheses fail"`), as the table and the JSON show
      it; `as_predicted` says whether the theory predicted this outcome (`VERDICTS.passed` or
      `VERDICTS.no_decay`).
    - `seconds`: the check's wall time (NaN when not timed); `settings`: `(name, value)` pairs,
      the options it ran with.

    Build the comparisons with [`gradflow.check.exponent_check`][],
    [`gradflow.check.constant_check`][] and [`gradflow.check.bound_check`][]; those a
    theorem does not make are left empty.
    """

    theorem: str
    problem: str
    description: str
    hypotheses: tuple[Hypothesis, ...]
    exponents: tuple[ExponentCheck, ...] = ()
    constants: tuple[ConstantCheck, ...] = ()
    bounds: tuple[BoundCheck, ...] = ()
    estimates: tuple[tuple[str, float, str], ...] = ()
    seconds: float = math.nan
    settings: tuple[tuple[str, Any], ...] = ()
    curves: tuple[Curve, ...] = ()

    @property
    def hypotheses_hold(self) -> bool:
        return all(h.holds for h in self.hypotheses)

    @property
    def passed(self) -> bool:
        """All applicable comparisons pass (for a negative control: the predicted failure is
        observed)."""
        items = [*self.exponents, *self.constants, *self.bounds]
        relevant = [c for c in items if c.applicable]
        return bool(relevant) and all(c.passed for c in relevant)

    @property
    def result(self) -> VERDICTS:
        """The verdict, a [`gradflow.check.VERDICTS`][] item."""
        if self.hypotheses_hold:
            return VERDICTS.passed if self.passed else VERDICTS.failed
        return VERDICTS.no_decay if self.passed else VERDICTS.hypotheses_fail

    @property
    def verdict(self) -> str:
        """The verdict's text, `report.result.value`."""
        return self.result.value

    @property
    def as_predicted(self) -> bool:
        """The outcome is the one the theory predicts: a pass, or a negative control whose
        distances do not decay."""
        return self.result in (VERDICTS.passed, VERDICTS.no_decay)

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """Table rows `(quantity, prediction, measurement, margin, ok)`."""
        out = []
        for e in self.exponents:
            if e.kind is KINDS.equal:
                pred = f"slope {e.predicted:+.3f} +- {e.tolerance:g}"
                margin = f"|diff| {abs(e.measured - e.predicted):.4f}"
            elif e.kind is KINDS.at_least:
                pred = f"slope >= {e.predicted:+.2f}"
                margin = f"{e.measured - e.predicted:+.3f}"
            else:
                pred = f"slope <= {e.predicted:+.2f}"
                margin = f"{e.predicted - e.measured:+.3f}"
            meas = f"{e.measured:+.4f} [{e.ci[0]:+.3f}, {e.ci[1]:+.3f}]"
            out.append((f"{e.quantity} vs {e.variable}", pred, meas, margin, _ok(e)))
        for c in self.constants:
            out.append(
                (
                    c.quantity,
                    f"{c.predicted:.6g}",
                    f"{c.measured:.6g}",
                    f"rel err {c.rel_error:.2e} (tol {c.tolerance:g})",
                    _ok(c),
                )
            )
        for b in self.bounds:
            out.append(
                (
                    f"{b.quantity} <= bound, alpha={b.alpha:g}",
                    "observed <= bound",
                    f"min bound/obs {b.ratio:.3g} at t={b.tightest_time:.3g}",
                    f"{b.margin:.3g} vs solver {b.solver_error:.1e}",
                    _ok(b),
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "theorem": self.theorem,
            "problem": self.problem,
            "description": self.description,
            "verdict": self.verdict,
            "hypotheses_hold": self.hypotheses_hold,
            "passed": self.passed,
            "hypotheses": [h.to_dict() for h in self.hypotheses],
            "exponents": [e.to_dict() for e in self.exponents],
            "constants": [c.to_dict() for c in self.constants],
            "bounds": [b.to_dict() for b in self.bounds],
            "estimates": [{"name": n, "value": v, "how": how} for n, v, how in self.estimates],
            "seconds": self.seconds,
            "settings": dict(self.settings),
            "curves": [c.to_dict() for c in self.curves],
        }


def _ok(c) -> str:
    if not c.applicable:
        return "n/a"
    return "ok" if c.passed else "FAIL"


def exponent_check(
    quantity: str,
    xs,
    ys,
    predicted: float,
    *,
    tolerance: float = 0.05,
    variable: str = "alpha",
    kind: KINDS = KINDS.equal,
    applicable: bool = True,
    note: str = "",
    fit: RateFit | None = None,
) -> ExponentCheck:
    """An [`gradflow.check.ExponentCheck`][]: the power law $y \\approx C x^s$ fitted to `xs`,
    `ys` (log-log least squares, [`gradflow.fit_rate`][]) compared with `predicted` as `kind`
    says, within `tolerance` for `KINDS.equal`; `variable` names `xs` in the table,
    `applicable=False` where the theorem's hypotheses do not cover it. `fit` is that fit where
    the caller made it already (an alpha sweep's [`gradflow.AlphaSweep`][] `fits`, over the
    same points); by default it is made here on the finite positive `ys` (a NaN slope with
    fewer than two)."""
    if not isinstance(kind, KINDS):
        raise ValueError(
            "`kind` must be a gradflow.check.KINDS member (KINDS.equal, KINDS.at_least or "
            f"KINDS.at_most); got {kind!r}."
        )
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(ys) & (ys > 0)
    if fit is None and ok.sum() >= 2:
        fit = fit_rate(xs[ok], ys[ok])
    if fit is not None:
        slope, ci, intercept = fit.slope, fit.ci, fit.intercept
    else:
        slope, ci, intercept = math.nan, (math.nan, math.nan), math.nan
    if kind is KINDS.equal:
        passed = bool(abs(slope - predicted) <= tolerance)
    elif kind is KINDS.at_least:
        passed = bool(slope >= predicted)
    else:
        passed = bool(slope <= predicted)
    return ExponentCheck(
        quantity,
        variable,
        float(predicted),
        float(slope),
        (float(ci[0]), float(ci[1])),
        float(intercept),
        float(tolerance),
        xs,
        ys,
        kind,
        applicable,
        passed,
        note,
    )


def constant_check(
    quantity: str,
    predicted: float,
    measured: float,
    tolerance: float,
    *,
    applicable: bool = True,
    note: str = "",
) -> ConstantCheck:
    """A [`gradflow.check.ConstantCheck`][]: `measured` against `predicted`, passing when
    their relative difference (absolute when `predicted` is 0) is at most `tolerance`;
    `applicable=False` where the theorem's hypotheses do not cover it."""
    predicted, measured = float(predicted), float(measured)
    err = abs(measured - predicted) / (abs(predicted) if predicted != 0 else 1.0)
    return ConstantCheck(
        quantity,
        predicted,
        measured,
        float(err),
        float(tolerance),
        applicable,
        bool(err <= tolerance),
        note,
    )


def bound_check(
    quantity: str,
    alpha: float,
    ts,
    observed,
    bound,
    observed_ref,
    *,
    applicable: bool = True,
    note: str = "",
) -> BoundCheck:
    """A [`gradflow.check.BoundCheck`][]: the curve `observed` against the bound `bound` at
    the times `ts` of the flow at scale `alpha`, with `observed_ref` the same curve re-solved
    at tighter tolerances (their difference is the solver's error level, which the margin must
    exceed)."""
    ts, obs, bnd = (np.asarray(v, float) for v in (ts, observed, bound))
    ref = np.asarray(observed_ref, float)
    scale = np.nanmax(np.abs(ref))
    solver_error = float(np.nanmax(np.abs(obs - ref)) / scale) if scale > 0 else 0.0
    use = (ts > 0) & (bnd > 0)
    rel = (bnd[use] - obs[use]) / bnd[use]
    i = int(np.argmin(rel))
    ratio = bnd[use] / np.where(obs[use] > 0, obs[use], np.finfo(float).tiny)
    margin = float(rel[i])
    passed = bool(np.all(obs[use] <= bnd[use]) and margin > solver_error)
    return BoundCheck(
        quantity,
        float(alpha),
        ts,
        obs,
        bnd,
        margin,
        float(np.min(ratio)),
        float(ts[use][i]),
        solver_error,
        applicable,
        passed,
        note,
    )


def h0_hypothesis(problem: Problem, *, tol: float = 1e-10) -> tuple[Hypothesis, float]:
    """`h(w0) = 0` up to rounding: $\\|h(w_0)\\|_F \\le$ `tol` $(1 + \\|y^*\\|_F)$."""
    h0 = float(empirical_norm(problem.h(problem.params0)))
    ys = float(empirical_norm(problem.loss.minimizer))
    holds = h0 <= tol * (1.0 + ys)
    how = "centered" if problem.center else "as initialized"
    return Hypothesis("h(w0) = 0", holds, f"||h(w0)||_F = {h0:.3e} ({how})"), h0
