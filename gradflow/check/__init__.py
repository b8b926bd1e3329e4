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
negative control where $h(w_0) \\neq 0$); `run(theorem, size="research")` runs the
finite-horizon, next-to-lazy and scale-criterion checks on real-size nets instead
([`gradflow.check.research_problems`][], with the options of
[`gradflow.check.research_settings`][]). A report's verdict is a [`gradflow.check.VERDICTS`][]
item (`report.result`, its text `report.verdict`); [`gradflow.check.plot_check`][] draws it.
"""

import functools
import importlib
import math
from collections.abc import Callable
from typing import Any

from ._base import (
    KINDS as KINDS,
    VERDICTS as VERDICTS,
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
from ._plot import (
    plot_check as plot_check,
    plot_check_bounds as plot_check_bounds,
    plot_check_curves as plot_check_curves,
    plot_check_exponents as plot_check_exponents,
)
from ._problems import (
    NamedProblem as NamedProblem,
    ScaledModel as ScaledModel,
    diagonal_net as diagonal_net,
    matrix_completion as matrix_completion,
    matrix_factorization as matrix_factorization,
    two_layer as two_layer,
    vgg_digits as vgg_digits,
)
from ._registry import (
    REGISTRY as _REGISTRY,
    RESEARCH_THEOREMS as RESEARCH_THEOREMS,
    THEOREMS as THEOREMS,
)
from ._scale import (
    check_scale_criterion as check_scale_criterion,
    check_width_law as check_width_law,
)
from ._under_parameterized import check_under_parameterized as check_under_parameterized

# One check function per theorem, resolved from the table of `_registry`.
_CHECKS: dict[str, Callable[..., CheckReport]] = {
    t.name: getattr(importlib.import_module(f".{t.module}", __name__), t.function)
    for t in _REGISTRY
}

SIZES = ("default", "research")
"""The problem sizes of [`gradflow.check.run`][] (and `gradflow check --size`)."""

# Check options at research size. Tolerances: the finite-horizon flows at rtol 1e-6, so that
# the references 1000x tighter (1e-9) stay affordable; the next-to-lazy flows and limit at 1e-9
# (their 1/alpha errors reach 1e-7 of the limits). Estimator budgets are cut where a
# research-size model makes them the cost (each Lanczos step or power iteration is a forward
# and backward pass over the whole training set): 64 Lanczos steps give ||Dh(w0)||^2 of the CNN
# to 1e-15 of the full 1280-step value, at 1/20 of its time.
_RESEARCH_SETTINGS: dict[str, dict[str, Any]] = {
    "finite_horizon": dict(
        alphas=(10.0, 31.6, 100.0, 316.0, 1000.0),
        bound_alphas=(10.0, 1000.0),
        t1=5.0,
        rtol=1e-6,
        atol=1e-8,
        lanczos_iters=64,
        lipschitz_points=2,
        lipschitz_starts=2,
    ),
    "next_to_lazy": dict(
        alphas=(10.0, 30.0, 100.0),
        alpha_large=1000.0,
        t1=5.0,
        rtol=1e-9,
        atol=1e-11,
        limit_rtol=1e-9,
        limit_atol=1e-11,
    ),
    "scale_criterion": dict(num_starts=4, lanczos_iters=64),
}

# Per-problem options. The CNN's second-order term is large in tangent-kernel units (its scale
# criterion at alpha = 1 is ||y*|| ||D^2h|| / ||Dh||^2 = 2.65, against 0.012 for the two-layer
# net), so its next-to-lazy expansion is asymptotic only from alpha ~ 100: the local slopes of
# the error of the ||u|| limit are -1.24, -1.09, -1.03, -1.01 over 10-30-100-300-1000.
_RESEARCH_PROBLEM_SETTINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("next_to_lazy", "vgg-8-8-16-16-softplus-digits-n128"): dict(
        alphas=(100.0, 300.0, 1000.0), alpha_large=3000.0
    ),
}


def research_settings(theorem: str, problem: str | None = None) -> dict[str, Any]:
    """The keyword options `run(theorem, size="research")` passes to the check of `theorem`
    on the problem named `problem` (alphas, horizon, tolerances, estimator budgets; see each
    check's arguments). Without `problem`, or for a problem not in
    [`gradflow.check.research_problems`][], the theorem's research options."""
    _validate(theorem, "research")
    return {
        **_RESEARCH_SETTINGS[theorem],
        **_RESEARCH_PROBLEM_SETTINGS.get((theorem, problem), {}),
    }


def research_problems(theorem: str) -> list[NamedProblem]:
    """The real-size problems of `theorem` (one of `RESEARCH_THEOREMS`):

    - a centered two-layer tanh net, n = 256 points on the sphere of radius sqrt(d) in d = 31
      (pre-activations of order one), m = 1024 neurons, p = m (d + 1) = 32 768;
    - the VGG-style CNN [`gradflow.check.vgg_digits`][]: channels (8, 8 | 16, 16), softplus
      and average pooling (smooth), p = 4 802, on 128 digits (1 280 outputs), centered, in
      tangent-kernel units;
    - for the finite-horizon and scale-criterion checks, the two-layer net without centering
      (h(w0) != 0) as a negative control.
    """
    _validate(theorem, "research")
    net, cnn, control = _research_nets()
    return [net, cnn] if theorem == "next_to_lazy" else [net, cnn, control]


@functools.cache
def _research_nets() -> tuple[NamedProblem, NamedProblem, NamedProblem]:
    # Built once per process (the CNN's normalization compiles its tangent kernel): problems
    # are immutable, so the three research theorems can share them.
    dim = 31
    net = dict(samples=256, dim=dim, width=1024, input_scale=math.sqrt(dim))
    return two_layer(**net), vgg_digits(), two_layer(**net, center=False)


def default_problems(theorem: str, *, size: str = "default") -> list[NamedProblem]:
    """The problems `run` checks `theorem` on: two non-convex toys and a two-layer net where the
    hypotheses hold, and (except for the next-to-lazy and under-parameterized checks, which
    require h(w0) = 0 outright) a negative control with h(w0) != 0. For the off-training-set
    check the toys are matrix completion (the unobserved entries held out) and the diagonal net,
    each problem with a held-out set. With `size="research"`:
    [`gradflow.check.research_problems`][]."""
    _validate(theorem, size)
    if size == "research":
        return research_problems(theorem)
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
            two_layer(**net, activation="relu", center=False, doubled=True),
        ]
    problems = [matrix_factorization(), diagonal_net(), two_layer(**net)]
    if theorem != "next_to_lazy":
        problems.append(two_layer(**net, center=False))
    return problems


def _validate(theorem: str, size: str = "default") -> None:
    if theorem not in _CHECKS:
        raise ValueError(f"Unknown theorem {theorem!r}; choose one of {list(THEOREMS)}.")
    if size not in SIZES:
        raise ValueError(f"Unknown `size` {size!r}; choose one of {list(SIZES)}.")
    if size == "research" and theorem not in RESEARCH_THEOREMS:
        raise ValueError(
            f"The {theorem} theorem has no research-size problems (size='research' covers "
            f"{list(RESEARCH_THEOREMS)}); run it with size='default'."
        )


def run(
    theorem: str,
    problems: list[NamedProblem] | None = None,
    *,
    size: str = "default",
    width_law: bool = True,
    callback: Callable[[CheckReport], None] | None = None,
    **kwargs,
) -> list[CheckReport]:
    """Run the check of `theorem` (one of `THEOREMS`) on `problems` (default:
    [`gradflow.check.default_problems`][] of `size`); `**kwargs` go to the check function.
    `size` is `"default"` (small problems, about 2 min for all theorems) or `"research"`
    (real-size nets, for the theorems in `RESEARCH_THEOREMS`, with the options of
    [`gradflow.check.research_settings`][], which `**kwargs` override). For
    `"scale_criterion"`, `width_law=True` adds [`gradflow.check.check_width_law`][].
    `callback(report)` is called after each.

    **Returns:** the list of [`gradflow.check.CheckReport`][]s.
    """
    _validate(theorem, size)
    problems = default_problems(theorem, size=size) if problems is None else problems
    reports = []
    for spec in problems:
        options = kwargs
        if size == "research":
            name = spec.name if isinstance(spec, NamedProblem) else None
            options = {**research_settings(theorem, name), **kwargs}
        report = _CHECKS[theorem](spec, **options)
        reports.append(report)
        if callback is not None:
            callback(report)
    if theorem == "scale_criterion" and width_law:
        report = check_width_law()
        reports.append(report)
        if callback is not None:
            callback(report)
    return reports
