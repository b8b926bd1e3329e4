"""The theorem checks gradflow knows: the records their modules declare, collected in one tuple,
and what runs them by name."""

from collections.abc import Callable
from typing import Any

from . import (
    _finite_horizon,
    _implicit_bias,
    _next_to_lazy,
    _off_training_set,
    _over_parameterized,
    _scale,
    _under_parameterized,
)
from ._base import CheckReport
from ._problems import NamedProblem
from ._theorem import Theorem

REGISTRY: tuple[Theorem, ...] = (
    _next_to_lazy.THEOREM,
    _finite_horizon.THEOREM,
    _over_parameterized.THEOREM,
    _under_parameterized.THEOREM,
    _scale.THEOREM,
    _off_training_set.THEOREM,
    _implicit_bias.THEOREM,
)
"""Every theorem check ([`gradflow.check.Theorem`][]), in the order `gradflow check all`
runs them."""

THEOREMS = tuple(t.name for t in REGISTRY)
"""The theorems [`gradflow.check.run`][] (and `gradflow check NAME`) accept."""

RESEARCH_THEOREMS = tuple(t.name for t in REGISTRY if t.research is not None)
"""The theorems with research-size problems ([`gradflow.check.research_problems`][])."""

SIZES = ("default", "research")
"""The problem sizes of [`gradflow.check.run`][] (and `gradflow check --size`)."""


def _record(theorem: str | Theorem, size: str = "default") -> Theorem:
    """The record of `theorem` (one of `THEOREMS`; a [`gradflow.check.Theorem`][] is returned
    as it is), checked to have problems of `size` (one of `SIZES`)."""
    if isinstance(theorem, Theorem):
        record = theorem
    else:
        found = [t for t in REGISTRY if t.name == theorem]
        if not found:
            raise ValueError(f"Unknown theorem {theorem!r}; choose one of {list(THEOREMS)}.")
        (record,) = found
    if size not in SIZES:
        raise ValueError(f"Unknown `size` {size!r}; choose one of {list(SIZES)}.")
    if size == "research" and record.research is None:
        raise ValueError(
            f"The {record.name} theorem has no research-size problems (size='research' covers "
            f"{list(RESEARCH_THEOREMS)}); run it with size='default'."
        )
    return record


def research_settings(theorem: str | Theorem, problem: str | None = None) -> dict[str, Any]:
    """The keyword options `run(theorem, size="research")` passes to the check of `theorem`
    on the problem named `problem` (alphas, horizon, tolerances, estimator budgets; see each
    check's arguments): the theorem's [`gradflow.check.Research`][] `settings`, and on top of
    them its `problem_settings` for `problem`."""
    research = _record(theorem, "research").research
    return {**research.settings, **research.problem_settings.get(problem, {})}


def research_problems(theorem: str | Theorem) -> list[NamedProblem]:
    """The real-size problems of `theorem` (one of `RESEARCH_THEOREMS`), from its
    [`gradflow.check.Research`][] record. The built-in theorems share them: a centered
    two-layer tanh net (n = 256 on the sphere of radius sqrt(31) in d = 31, m = 1024,
    p = 32 768), the VGG-style CNN [`gradflow.check.vgg_digits`][] (p = 4 802, 128 digits,
    1 280 outputs, tangent-kernel units), and, except for the next-to-lazy check, the two-layer
    net uncentered (h(w0) != 0) as a negative control."""
    return _record(theorem, "research").research.problems()


def default_problems(theorem: str | Theorem, *, size: str = "default") -> list[NamedProblem]:
    """The problems [`gradflow.check.run`][] checks `theorem` on, as its record declares them
    ([`gradflow.check.Theorem`][] `problems`). For the built-in theorems: two non-convex toys
    and a two-layer net where the hypotheses hold, and (except for the next-to-lazy and
    under-parameterized checks, which require h(w0) = 0 outright) a negative control with
    h(w0) != 0; for the off-training-set check the toys are matrix completion (the unobserved
    entries held out) and the diagonal net, each problem with a held-out set. With
    `size="research"`: [`gradflow.check.research_problems`][]."""
    record = _record(theorem, size)
    if size == "research":
        return research_problems(record)
    return record.problems()


def run(
    theorem: str | Theorem,
    problems: list[NamedProblem] | None = None,
    *,
    size: str = "default",
    extras: bool = True,
    callback: Callable[[CheckReport], None] | None = None,
    **kwargs: Any,
) -> list[CheckReport]:
    """Run the check of `theorem` (one of `THEOREMS`, or a [`gradflow.check.Theorem`][]
    record of your own) on `problems` (default: [`gradflow.check.default_problems`][] of
    `size`); `**kwargs` go to the check function. `size` is `"default"` (small problems,
    about 2 min for all theorems) or `"research"` (real-size nets, for the theorems in
    `RESEARCH_THEOREMS`, with the options of [`gradflow.check.research_settings`][], which
    `**kwargs` override). `extras=True` adds the theorem's checks on problems of their own
    (`Theorem.extras`: for `"scale_criterion"`, [`gradflow.check.check_width_law`][]).
    `callback(report)` is called after each.

    **Returns:** the list of [`gradflow.check.CheckReport`][]s.
    """
    record = _record(theorem, size)
    problems = default_problems(record, size=size) if problems is None else problems
    reports = []
    for spec in problems:
        options = kwargs
        if size == "research":
            name = spec.name if isinstance(spec, NamedProblem) else None
            options = {**research_settings(record, name), **kwargs}
        reports.append(record.check(spec, **options))
        if callback is not None:
            callback(reports[-1])
    for extra in record.extras if extras else ():
        reports.append(extra())
        if callback is not None:
            callback(reports[-1])
    return reports
