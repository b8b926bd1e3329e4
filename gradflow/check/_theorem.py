"""The record a theorem check declares about itself: its name, the statement of `theory` it
measures, its check function, its problems, its research-size options and its figure."""

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._base import CheckReport
from ._plot import plot_check
from ._problems import NamedProblem

if TYPE_CHECKING:
    from theory import Statement


@dataclasses.dataclass(frozen=True)
class Research:
    """The research-size run of a theorem ([`gradflow.check.run`][] with
    `size="research"`): real-size problems and the check options that make them affordable.

    - `problems`: `problems() -> list[NamedProblem]`, the real-size problems.
    - `settings`: keyword options of the theorem's check at research size (alphas, horizon,
      tolerances, estimator budgets).
    - `problem_settings`: per problem name, options on top of `settings` (a problem that
      needs another alpha grid).
    """

    problems: Callable[[], list[NamedProblem]]
    settings: Mapping[str, Any]
    problem_settings: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Theorem:
    r"""One theorem check, as its module declares it; [`gradflow.check.run`][] and
    `gradflow check NAME` read everything they need from it.

    - `name`: how `gradflow check NAME` and `gradflow.check.run` spell the theorem.
    - `statement`: `statement() -> theory.Statement`, the sympy statement the check measures
      (its hypotheses, bounds and exponents); a function, so that importing gradflow does not
      import sympy.
    - `summary`: one line for `gradflow check --help`.
    - `check`: `check(spec, **options) -> CheckReport`, the check on one problem (a
      [`gradflow.check.NamedProblem`][] or a [`gradflow.Problem`][]).
    - `problems`: `problems() -> list[NamedProblem]`, the problems the theorem is checked on
      by default.
    - `research`: its [`gradflow.check.Research`][] size, or `None` where it runs on its
      default problems only (the over-parameterized theorem's threshold on alpha, for one,
      is out of reach on a real-size net).
    - `plot`: `plot(report) -> matplotlib.figure.Figure`, the figure of one report
      ([`gradflow.check.plot_check`][] by default).
    - `extras`: checks on problems of their own, `extra() -> CheckReport`, run after the
      problems (the scale criterion's width law, [`gradflow.check.check_width_law`][]).
    """

    name: str
    statement: Callable[[], "Statement"]
    summary: str
    check: Callable[..., CheckReport]
    problems: Callable[[], list[NamedProblem]]
    research: Research | None = None
    plot: Callable[[CheckReport], Any] = plot_check
    extras: tuple[Callable[[], CheckReport], ...] = ()

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(
                f"`name` must be an identifier such as 'finite_horizon' (it is a command-line "
                f"word and a JSON key); got {self.name!r}."
            )
        for field in ("statement", "check", "problems", "plot"):
            if not callable(getattr(self, field)):
                raise TypeError(
                    f"`{field}` must be a function; got {field}={getattr(self, field)!r}."
                )
        if not all(callable(e) for e in self.extras):
            raise TypeError(f"`extras` must be a tuple of functions; got {self.extras!r}.")
