"""What a solve returns: the result codes (`RESULTS`), the error `throw=True` raises, the
record of how a solve was made (`SolveInfo`) and the solution itself (`Solution`)."""

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import numpy as np

from ._options import SolveOptions, controller_tolerances, solver_name
from ._problem import _is_traced
from ._typing import Array, Float, Params
from .solvers._auto import SolverChoice, StiffnessSource


class RESULTS(eqx.Enumeration):
    """How a solve ended. `sol.result == gf.RESULTS.successful` tests for success."""

    successful = ""
    max_steps_reached = (
        "The solver took `max_steps` steps before reaching `t1`. Increase `max_steps`, loosen "
        "`rtol`/`atol`, or shorten `t1`."
    )
    max_steps_at_kinks = (
        "The solver took `max_steps` steps before reaching `t1`, on a model with kinks (relu, "
        "max, abs, ...: `gf.has_kinks`). At tight tolerances every kink the path crosses "
        "rejects steps; a piecewise-smooth flow is resolved to figure accuracy at rtol 1e-3 to "
        "1e-2 (on the paper's Fig. 1c flows rtol 1e-2 gives output errors of about 1e-3). "
        "Loosen `rtol`/`atol`, or increase `max_steps`."
    )
    diverged = (
        "The iteration diverged: the state, the vector field or the loss became NaN or inf, or "
        "the loss grew above 1e10 times its initial size (a gradient flow never increases it). "
        "For gradient descent, lower the `learning_rate` (the flow is stable only for steps "
        "below 2 / (largest Hessian eigenvalue)); for a flow, check that the model is finite "
        "at `params0` and along the path, and that `alpha` is finite and > 0."
    )
    solver_failed = (
        "The ODE solver failed (an implicit solve did not converge, or another failure "
        "diffrax reports). Try another `solver` or looser tolerances."
    )
    step_size_collapsed = (
        "The step size collapsed (below 1e-12 t1, or to NaN) while the error estimate stayed "
        "finite: the state is finite, the model did not diverge, but the error control cannot "
        "be satisfied. The usual causes: `rtol` near the dtype's resolution, or `atol=0` with a "
        "state entry at or near 0 (a parameter that does not move: the relative tolerance then "
        "asks for an error of 0). Give `atol > 0` (e.g. 1e-10), loosen `rtol`, or try another "
        "`solver`."
    )


class SolveError(RuntimeError):
    """Raised by `solve(..., throw=True)` when the solve does not succeed."""


# The names of the result codes, indexed by the code's value (the order of definition).
_RESULT_NAMES = (
    "successful",
    "max_steps_reached",
    "max_steps_at_kinks",
    "diverged",
    "solver_failed",
    "step_size_collapsed",
)


class _ResultItem(type(RESULTS.successful)):
    """A [`gradflow.RESULTS`][] item that prints as its name, `RESULTS.diverged` (equinox's
    items print as `module.RESULTS<message>`, which is `...RESULTS<>` for success). Still an
    `eqx.Enumeration` item: traced, compared and indexed (`RESULTS[item]`, the message) as
    equinox's own."""

    def __repr__(self) -> str:
        value = self._value
        if _is_traced(value):
            return "RESULTS<traced>"
        codes = np.asarray(value)
        if codes.ndim == 0:
            return f"RESULTS.{_RESULT_NAMES[int(codes)]}"
        # Batched (a stacked sweep, a vmapped solve): the names, in the array's shape.
        names = np.vectorize(lambda c: _RESULT_NAMES[int(c)])(codes) if codes.size else codes
        return f"RESULTS{np.array2string(names, separator=', ', formatter={'all': str})}"

    __str__ = __repr__


def _named(item: RESULTS) -> RESULTS:
    return item if type(item) is _ResultItem else _ResultItem(item._value, RESULTS)


# Every RESULTS item gradflow hands out prints its name: the items on the class and those
# `RESULTS.where` builds. (Both are equinox internals; `tests/test_solve.py` pins them.)
for _name in _RESULT_NAMES:
    RESULTS._name_to_item[_name] = _named(RESULTS._name_to_item[_name])
_equinox_where = RESULTS.where
RESULTS.where = classmethod(lambda cls, pred, a, b: _named(_equinox_where(pred, a, b)))


def _failure_message(result: RESULTS) -> str:
    """`gradflow.solve failed with RESULTS.<name>: <message>` for a concrete result."""
    name = _RESULT_NAMES[int(result._value)]
    return f"gradflow.solve failed with RESULTS.{name}: {RESULTS[result]}"


def _throw_messages() -> list[str]:
    """The messages of every result code, indexed by the code's value, for
    `eqx.branched_error_if` under a trace."""
    messages = [""] * len(RESULTS)
    for name in _RESULT_NAMES:
        item = getattr(RESULTS, name)
        messages[int(item._value)] = _failure_message(item)
    return messages


class SolveInfo(eqx.Module):
    r"""How a [`gradflow.solve`][] ran (`Solution.info`): the options it ran with, the auto
    choice, and the problem's dtype and size. Immutable and hashable: every field is static,
    so a [`gradflow.Solution`][] carries it through `jax.jit`, `jax.vmap` and
    `eqx.filter_jit` unchanged, and two solves with equal settings have equal `info`.

    - `options`: the [`gradflow.SolveOptions`][] of the solve, with the solver it ran with
      (the one `"auto"` chose, in place of `"auto"`).
    - `choice`: the [`gradflow.SolverChoice`][] of `solver="auto"` (the solver, why, and the
      stiffness it was chosen from); `None` for a given solver.
    - `dtype`: the parameters' dtype, e.g. `"float64"`.
    - `center`: the problem's `center`.
    - `num_params`: the number of scalar parameters.

    Read from these, as properties:

    - `solver`: the solver's name, `"Tsit5"`, `"RKC"`, or
      `"GradientDescent(learning_rate=0.1)"`.
    - `solver_choice`: `"auto"` (picked by [`gradflow.choose_solver`][]) or `"given"`.
    - `rtol`, `atol`: the tolerances of the adaptive step-size controller; `None` where there
      is no error control (gradient descent, constant steps of `dt0`) or a given controller's
      tolerances are traced.
    - `t1`: the horizon (for gradient descent, `num_steps * learning_rate`).
    - `linearized`: whether the linearized flow was integrated too.
    - `solver_reason`: for an auto choice, why that solver (with the stiffness estimate and
      the threshold it was compared with, and, for a batch's choice, "(the batch's stiffest
      point)"); `None` for a given solver.
    - `stiffness`: for an auto choice, the estimate $\lambda_{\max}(w_0)\, t_1$ the choice was
      made from ([`gradflow.stiffness`][]), `None` where it was not estimated; `None` for a
      given solver.

    A stored point keeps these as JSON (the properties by name, with `dtype`, `center` and
    `num_params`), written and read back at the store's edge ([`gradflow.sweep`][]).
    """

    options: SolveOptions = eqx.field(static=True)
    choice: SolverChoice | None = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    center: bool = eqx.field(static=True)
    num_params: int = eqx.field(static=True)

    @property
    def solver(self) -> str:
        return solver_name(self.options.solver)

    @property
    def solver_choice(self) -> Literal["auto", "given"]:
        return "given" if self.choice is None else "auto"

    @property
    def rtol(self) -> float | None:
        tolerances = controller_tolerances(self.options)
        return None if tolerances is None else tolerances[0]

    @property
    def atol(self) -> float | None:
        tolerances = controller_tolerances(self.options)
        return None if tolerances is None else tolerances[1]

    @property
    def t1(self) -> float | None:
        return self.options.t1

    @property
    def linearized(self) -> bool:
        return self.options.linearized

    @property
    def solver_reason(self) -> str | None:
        if self.choice is None:
            return None
        if self.choice.estimated_from is StiffnessSource.problem:
            return self.choice.reason
        return f"{self.choice.reason} ({self.choice.estimated_from.value})"

    @property
    def stiffness(self) -> float | None:
        return None if self.choice is None else self.choice.stiffness


class Solution(eqx.Module):
    r"""The result of [`gradflow.solve`][]; all arrays are aligned with `ts`.

    - `param_distance`: $\|w(t) - w_0\|$ (Euclidean over all leaves).
    - `param_gap`: $\|w(t) - \bar w(t)\|$.
    - `output_gap`: $\|\alpha h(w(t)) - \alpha \bar h(\bar w(t))\|_F$ (empirical norm).
    - `loss`, `linear_loss`: $R(\alpha h(w(t)))$ and $R(\alpha \bar h(\bar w(t)))$.
    - `params`, `linear_params`: $w(t)$, $\bar w(t)$ with a leading time axis, if asked for.
    - `stats`: solver statistics; `result`: a [`gradflow.RESULTS`][] item.
    - `info`: a [`gradflow.SolveInfo`][]: the solver, its tolerances, the horizon and the
      dtype. `None` only for the stacked solution of a [`gradflow.Sweep`][], whose points
      each have their own (`Sweep.infos`, `Sweep.solution_at(i).info`).

    Entries at times the solve did not reach (after a failure) are NaN. The linear-flow
    fields are `None` when `linearized=False`.
    """

    ts: Float[Array, " times"]
    param_distance: Float[Array, " times"]
    loss: Float[Array, " times"]
    param_gap: Float[Array, " times"] | None
    output_gap: Float[Array, " times"] | None
    linear_loss: Float[Array, " times"] | None
    params: Params | None
    linear_params: Params | None
    stats: dict[str, Array]
    result: RESULTS
    alpha: Array
    info: SolveInfo | None = eqx.field(static=True)

    @property
    def succeeded(self) -> bool:
        return bool(self.result == RESULTS.successful)

    def __repr__(self) -> str:
        # equinox's form (arrays as dtype and shape), with the scalars (`alpha`, the step
        # counts) by value and the result by name: what `print(sol)` is read for.
        def scalar(x):
            if isinstance(x, (jax.Array, np.ndarray, np.generic)) and np.ndim(x) == 0:
                return x if _is_traced(x) else x.item()
            return x

        shown = dataclasses.replace(
            self,
            stats={k: scalar(v) for k, v in self.stats.items()},
            alpha=scalar(self.alpha),
            result=_named(self.result),
        )
        return eqx.tree_pformat(shown)

    @property
    def message(self) -> str:
        return RESULTS[self.result]
