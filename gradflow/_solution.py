"""What a solve returns: the result codes (`RESULTS`), the error `throw=True` raises, the
record of how a solve was made (`SolveInfo`) and the solution itself (`Solution`)."""

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, Literal

import equinox as eqx
import jax
import numpy as np

from ._problem import _is_traced
from ._typing import Array, Float, Params


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


def _real(name: str, value: Any, *, optional: bool, check, requirement: str) -> float | None:
    """`value` as a Python float, or a `ValueError` naming `SolveInfo(name=...)`."""
    if value is None and optional:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok or not check(float(value)):
        raise ValueError(
            f"`SolveInfo({name}=...)` must be {requirement}{' or None' if optional else ''}; "
            f"got {name}={value!r}."
        )
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`SolveInfo({name}=...)` must be True or False; got {name}={value!r}.")
    return bool(value)


class SolveInfo(eqx.Module):
    r"""How a [`gradflow.solve`][] ran: its solver, tolerances, horizon and the problem's size
    (`Solution.info`). Immutable and hashable: every field is static, so a
    [`gradflow.Solution`][] carries it through `jax.jit`, `jax.vmap` and `eqx.filter_jit`
    unchanged, and two solves with equal settings have equal `info`.

    - `solver`: the solver's name, `"Tsit5"`, `"RKC"`, or
      `"GradientDescent(learning_rate=0.1)"`.
    - `solver_choice`: `"auto"` (picked by [`gradflow.choose_solver`][]) or `"given"`.
    - `rtol`, `atol`: the tolerances of the adaptive step-size controller; `None` where there
      is no error control (gradient descent, constant steps of `dt0`) or a given controller's
      tolerances are traced.
    - `t1`: the horizon (for gradient descent, `num_steps * learning_rate`).
    - `dtype`: the parameters' dtype, e.g. `"float64"`.
    - `linearized`: whether the linearized flow was integrated too.
    - `center`: the problem's `center`.
    - `num_params`: the number of scalar parameters.
    - `solver_reason`: for `solver_choice="auto"`, why that solver (with the stiffness
      estimate and the threshold it was compared with); `None` for a given solver.
    - `stiffness`: for `solver_choice="auto"`, the estimate $\lambda_{\max}(w_0)\, t_1$ the
      choice was made from ([`gradflow.stiffness`][]), `None` where it was not estimated; `None`
      for a given solver.

    `to_dict()` is the JSON form (the keys [`gradflow.Solution.to_dict`][] writes) and
    [`gradflow.SolveInfo.from_dict`][] reads it back. Fields are replaced with
    `dataclasses.replace(info, ...)`, which checks the new values like the constructor.
    """

    solver: str = eqx.field(static=True)
    solver_choice: Literal["auto", "given"] = eqx.field(static=True)
    rtol: float | None = eqx.field(static=True)
    atol: float | None = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    linearized: bool = eqx.field(static=True)
    center: bool = eqx.field(static=True)
    num_params: int = eqx.field(static=True)
    solver_reason: str | None = eqx.field(static=True)
    stiffness: float | None = eqx.field(static=True)

    def __init__(
        self,
        *,
        solver: str,
        solver_choice: Literal["auto", "given"],
        rtol: float | None,
        atol: float | None,
        t1: float,
        dtype: str,
        linearized: bool,
        center: bool,
        num_params: int,
        solver_reason: str | None = None,
        stiffness: float | None = None,
    ):
        if not (isinstance(solver, str) and solver):
            raise ValueError(
                f"`SolveInfo(solver=...)` must be the solver's name, a non-empty string; got "
                f"solver={solver!r}."
            )
        if solver_choice not in ("auto", "given"):
            raise ValueError(
                "`SolveInfo(solver_choice=...)` must be 'auto' or 'given'; got "
                f"solver_choice={solver_choice!r}."
            )
        if not (isinstance(dtype, str) and dtype):
            raise ValueError(
                f"`SolveInfo(dtype=...)` must be a dtype's name such as 'float64'; got "
                f"dtype={dtype!r}."
            )
        if (
            isinstance(num_params, (bool, np.bool_))
            or not isinstance(num_params, numbers.Integral)
            or num_params < 1
        ):
            raise ValueError(
                "`SolveInfo(num_params=...)` must be an integer >= 1; got "
                f"num_params={num_params!r}."
            )
        if solver_choice == "auto" and not isinstance(solver_reason, str):
            raise ValueError(
                "`SolveInfo(solver_reason=...)` must say why 'auto' chose the solver (a string) "
                f"when solver_choice='auto'; got solver_reason={solver_reason!r}."
            )
        if solver_choice == "given" and (solver_reason is not None or stiffness is not None):
            raise ValueError(
                "`SolveInfo(solver_reason=..., stiffness=...)` describe an 'auto' choice and "
                f"must be None when solver_choice='given'; got {solver_reason=!r}, "
                f"{stiffness=!r}. Set solver_choice='auto' with them."
            )

        def tolerance(x):
            return math.isfinite(x) and x >= 0

        self.solver = solver
        self.solver_choice = solver_choice
        self.rtol = _real("rtol", rtol, optional=True, check=tolerance, requirement="a number >= 0")
        self.atol = _real("atol", atol, optional=True, check=tolerance, requirement="a number >= 0")
        self.t1 = _real(
            "t1",
            t1,
            optional=False,
            check=lambda x: math.isfinite(x) and x > 0,
            requirement="a finite time > 0",
        )
        self.dtype = dtype
        self.linearized = _flag("linearized", linearized)
        self.center = _flag("center", center)
        self.num_params = int(num_params)
        self.solver_reason = solver_reason
        # A non-finite estimate is kept (it explains the choice); `to_dict` writes it as None.
        self.stiffness = _real(
            "stiffness", stiffness, optional=True, check=lambda x: True, requirement="a number"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field by name, `solver_reason` and `stiffness` only for
        `solver_choice="auto"`, a non-finite `stiffness` as `None`."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.solver_choice == "given":
            del out["solver_reason"], out["stiffness"]
        elif self.stiffness is not None and not math.isfinite(self.stiffness):
            out["stiffness"] = None
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "SolveInfo":
        """The `SolveInfo` whose `to_dict()` is `record` (e.g. read back from JSON).

        **Arguments:**

        - `record`: a mapping with the keys of `to_dict()`; `solver_reason` and `stiffness`
          may be missing (they default to `None`).

        **Returns:** a [`gradflow.SolveInfo`][]. An unknown or a missing key raises a
        `ValueError` naming it.
        """
        if not isinstance(record, Mapping):
            raise ValueError(
                f"`record` must be a mapping (the output of `SolveInfo.to_dict`); got "
                f"{type(record).__name__}."
            )
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(record) - set(names))
        if unknown:
            raise ValueError(
                f"`record` holds unknown key(s) {unknown} for a gradflow.SolveInfo, whose "
                f"keys are {names}: pass only those (the output of `SolveInfo.to_dict`)."
            )
        missing = [n for n in names if n not in record and n not in _INFO_OPTIONAL]
        if missing:
            raise ValueError(
                f"`record` lacks the key(s) {missing} of a gradflow.SolveInfo (written by "
                "`SolveInfo.to_dict`); every key but solver_reason and stiffness is needed."
            )
        return cls(**record)


_INFO_OPTIONAL = frozenset({"solver_reason", "stiffness"})


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (NaN written as `None`): the arrays, `stats`, `result`,
        `succeeded`, and the keys of `info.to_dict()` ([`gradflow.SolveInfo`][]) at the top
        level."""

        def conv(x):
            if x is None:
                return None
            a = np.asarray(x, dtype=float)
            return [None if not np.isfinite(v) else float(v) for v in a.ravel()]

        return {
            "alpha": float(self.alpha),
            "ts": conv(self.ts),
            "param_distance": conv(self.param_distance),
            "param_gap": conv(self.param_gap),
            "output_gap": conv(self.output_gap),
            "loss": conv(self.loss),
            "linear_loss": conv(self.linear_loss),
            "stats": {
                k: (int(v) if np.issubdtype(np.asarray(v).dtype, np.integer) else float(v))
                for k, v in self.stats.items()
            },
            "result": self.message or "successful",
            "succeeded": self.succeeded,
            **({} if self.info is None else self.info.to_dict()),
        }
