"""Theorem checks: each statement of `theory` (sympy) measured on problems, with a report.

One entry point per theorem, each returning a [`gradflow.check.CheckReport`][]:

- `check_next_to_lazy`: the $1/\\alpha^2$ constant from the next-to-lazy ODE;
- `check_finite_horizon`: slopes -1, -2, -1 and the explicit Gronwall bounds of the proof;
- `check_over_parameterized`: the $C_0$ condition, the geometric envelope, the displacement bound
  and the uniform rates;
- `check_under_parameterized`: the geometric rate and its independence of alpha;
- `check_scale_criterion`, `check_width_law`: the scale criterion's laws;
- `check_off_training_set`: the model against its linearization on held-out inputs, slope -1,
  the sharp Taylor bound and the paper's form with the constants $M_1$, $M_2$ measured there.

`run(theorem)` runs a theorem on its default problems (two non-convex toys, a neural net and a
negative control where $h(w_0) \\neq 0$).
"""

from collections.abc import Callable

from ._base import (
    BoundCheck as BoundCheck,
    CheckReport as CheckReport,
    ConstantCheck as ConstantCheck,
    Curve as Curve,
    ExponentCheck as ExponentCheck,
    Hypothesis as Hypothesis,
)
from ._finite_horizon import check_finite_horizon as check_finite_horizon
from ._next_to_lazy import (
    NextToLazy as NextToLazy,
    check_next_to_lazy as check_next_to_lazy,
    next_to_lazy as next_to_lazy,
)
from ._off_training_set import check_off_training_set as check_off_training_set
from ._over_parameterized import check_over_parameterized as check_over_parameterized
from ._problems import (
    NamedProblem as NamedProblem,
    diagonal_net as diagonal_net,
    matrix_completion as matrix_completion,
    matrix_factorization as matrix_factorization,
    two_layer as two_layer,
)
from ._scale import (
    check_scale_criterion as check_scale_criterion,
    check_width_law as check_width_law,
)
from ._under_parameterized import check_under_parameterized as check_under_parameterized

THEOREMS = (
    "next_to_lazy",
    "finite_horizon",
    "over_parameterized",
    "under_parameterized",
    "scale_criterion",
    "off_training_set",
)
"""The theorems [`gradflow.check.run`][] (and `gradflow check NAME`) accept."""

_CHECKS = {
    "next_to_lazy": check_next_to_lazy,
    "finite_horizon": check_finite_horizon,
    "over_parameterized": check_over_parameterized,
    "under_parameterized": check_under_parameterized,
    "scale_criterion": check_scale_criterion,
    "off_training_set": check_off_training_set,
}


def default_problems(theorem: str) -> list[NamedProblem]:
    """The problems `run` checks `theorem` on: two non-convex toys and a two-layer net where the
    hypotheses hold, and (except for the next-to-lazy and under-parameterized checks, which
    require h(w0) = 0 outright) a negative control with h(w0) != 0. For the off-training-set
    check the toys are matrix completion (the unobserved entries held out) and the diagonal net,
    each problem with a held-out set."""
    _validate(theorem)
    net = dict(samples=4, dim=8, width=32)
    if theorem == "off_training_set":
        return [
            matrix_completion(),
            diagonal_net(held_out=16),
            two_layer(**net, held_out=16),
            two_layer(**net, center=False, held_out=16),
        ]
    if theorem == "under_parameterized":
        return [
            matrix_factorization(size=(4, 3), rank=1),
            diagonal_net(samples=12, dim=3),
            two_layer(samples=20, dim=3, width=2, input_scale=3.0),
        ]
    if theorem == "scale_criterion":
        return [
            matrix_factorization(),
            matrix_factorization(center=False),
            diagonal_net(depth=3, center=False),
            two_layer(**net),
            two_layer(**net, activation="relu", center=False, symmetric=True),
        ]
    problems = [matrix_factorization(), diagonal_net(), two_layer(**net)]
    if theorem != "next_to_lazy":
        problems.append(two_layer(**net, center=False))
    return problems


def _validate(theorem: str) -> None:
    if theorem not in _CHECKS:
        raise ValueError(f"Unknown theorem {theorem!r}; choose one of {list(THEOREMS)}.")


def run(
    theorem: str,
    problems: list[NamedProblem] | None = None,
    *,
    width_law: bool = True,
    callback: Callable[[CheckReport], None] | None = None,
    **kwargs,
) -> list[CheckReport]:
    """Run the check of `theorem` (one of `THEOREMS`) on `problems` (default:
    [`gradflow.check.default_problems`][]); `**kwargs` go to the check function. For
    `"scale_criterion"`, `width_law=True` adds [`gradflow.check.check_width_law`][].
    `callback(report)` is called after each.

    **Returns:** the list of [`gradflow.check.CheckReport`][]s.
    """
    _validate(theorem)
    problems = default_problems(theorem) if problems is None else problems
    reports = []
    for spec in problems:
        report = _CHECKS[theorem](spec, **kwargs)
        reports.append(report)
        if callback is not None:
            callback(report)
    if theorem == "scale_criterion" and width_law:
        report = check_width_law()
        reports.append(report)
        if callback is not None:
            callback(report)
    return reports
