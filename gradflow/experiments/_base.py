"""The experiment runner: per-point results in a resumable store, a progress bar, JSON and
figures."""

import abc
import collections
import dataclasses
import os
import re
import textwrap
import time
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .. import _memory
from .._memory import ArraySize
from ..sweeps._io import environment, nan_array, write_json
from ..sweeps._keys import duplicate_keys
from ..sweeps._store import ResultStore

if typing.TYPE_CHECKING:
    from .._options import SolveOptions
    from .._problem import Problem
    from ..sweeps._computation import Computation
    from ..sweeps._sweep import Sweep


class OptionError(ValueError):
    """An experiment's option is wrong (its type, its range, a repeated value, a size that
    cannot fit, an unknown name): the user's error, which the command line prints on one line
    (exit 2). The message names the option and the fix."""


@dataclasses.dataclass(frozen=True)
class AbstractExperiment(abc.ABC):
    """One of the paper's experiments: a frozen configuration (the dataclass fields) and how to
    run it point by point.

    An experiment is split into independent *points* (one value of $\\tau$, one width, one
    $\\alpha$, ...), each stored as soon as it finishes, so an interrupted run resumes at the
    first unfinished point. Every point runs through [`gradflow.sweep`][] (one runner: one
    resume, one fingerprint, one record format). Subclasses define `points`, `build` (a
    problem, or a [`gradflow.Computation`][]), `solve_options` where points are flows,
    `summarize` (of the [`gradflow.Sweep`][]) and `plot`;
    `quick()` returns the small sizes used by the tests, and the class defaults are the
    paper's sizes. Each option is declared with [`gradflow.experiments.option`][] (its
    default, meaning and constraints, checked by `validate`), and each point's key built by
    [`gradflow.experiments.point_key`][].
    """

    name: ClassVar[str]
    title: ClassVar[str]
    claim: ClassVar[str]
    # The name of the summary JSON file, `<file_stem>.json` (default: the experiment's name).
    file_stem: ClassVar[str | None] = None

    @classmethod
    def quick(cls) -> "AbstractExperiment":
        """Small sizes that run in seconds (the tests and the notebook use them)."""
        return cls()

    def validate(self) -> None:
        """Check the configuration before anything is run or written: each option against its
        field (its type, and what [`gradflow.experiments.option`][] declares), then
        `check_options` for what involves several options or a data path.

        **Raises:** [`gradflow.experiments.OptionError`][] (a `ValueError`) naming the option,
        its value and the fix; for sizes whose arrays (`largest_arrays`) cannot fit in memory,
        the memory they need and the machine's.
        """
        hints = typing.get_type_hints(type(self))
        try:
            for f in dataclasses.fields(self):
                _check_option(f.name, getattr(self, f.name), hints[f.name], f.metadata)
            self.check_options()
            # XLA aborts the process on an allocation it cannot make: refuse such sizes here.
            values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
            _memory.refuse_if_too_large(self.largest_arrays(), values)
        except OptionError:
            raise
        except ValueError as exc:
            raise OptionError(str(exc)) from None

    def check_options(self) -> None:
        """The checks `validate` runs after the per-option ones: those that involve several
        options or a data path (none by default); raise `ValueError` naming the option and
        the fix."""

    def largest_arrays(self) -> list[ArraySize]:
        """The largest arrays one point holds at once, each with the options that set its
        size (none by default). `validate` refuses a configuration whose arrays add up to more
        than the machine's memory, naming the options of the largest: their sum is a lower
        bound of what the point needs, so a configuration that fits is never refused."""
        return []

    @abc.abstractmethod
    def points(self) -> list[tuple[str, dict[str, Any]]]:
        """The points, as `(key, point)`: `point` holds the keyword arguments of `build`
        (JSON-able values); keys are unique file-name-safe strings
        ([`gradflow.experiments.point_key`][])."""

    @abc.abstractmethod
    def build(self, **point: Any) -> "Problem | Computation":
        """What one point computes: a [`gradflow.Problem`][], solved with `solve_options` (and
        `point_options`), or a [`gradflow.Computation`][] for a point that is not one flow
        (SGD epochs, trials solved together, a closed form)."""

    def solve_options(self) -> "SolveOptions":
        """The [`gradflow.SolveOptions`][] every flow point shares (`t1`, `ts`, `rtol`, ...);
        the defaults where the experiment has no flow points."""
        from .._options import SolveOptions

        return SolveOptions()

    def point_options(self, **point: Any) -> dict[str, Any]:
        """The solve options of one point that differ from `solve_options` (e.g. a
        gradient-descent step and horizon that depend on the point), as keywords of
        `SolveOptions.replace`; none by default."""
        return {}

    # `measure(problem, solution, **point) -> dict`: numbers computed from a flow point's solve
    # (test losses, ...), stored with the point; see `gradflow.sweep`. None: only the solve's.
    measure: ClassVar[Callable[..., dict[str, Any]] | None] = None

    # Flow points per compiled call of `gradflow.sweep` (1: each point is one plain solve).
    batch_size: ClassVar[int | None] = 1

    @abc.abstractmethod
    def summarize(self, sweep: "Sweep") -> dict[str, Any]:
        """Aggregate the points, given as one [`gradflow.Sweep`][] (some may be missing after
        failures: see its `status`)."""

    def run_point(self, **point: Any) -> dict[str, Any]:
        """One point alone, as `run` computes it, without a store: a flow point's JSON record
        (`sup`, `final`, `solution`, ...) with what `measure` computed at the top level; a
        computation's result."""
        from ..sweeps._sweep import sweep

        result = sweep(
            self.build,
            [point],
            batch_size=1,
            options=self.solve_options(),
            point_options=self.point_options,
            measure=self.measure,
        )
        if result.errors[0] is not None:
            raise RuntimeError(result.errors[0])
        if result.outputs[0] is not None:
            return result.outputs[0]
        record = result.records()[0]
        record.pop("output")
        measured = {k: np.asarray(v).tolist() for k, v in record.pop("measures").items()}
        return {**measured, **record}

    @abc.abstractmethod
    def plot(self, summary: dict[str, Any], folder: Path) -> list[Path]:
        """Write the figure(s) into `folder`; returns their paths."""

    def report(self, summary: dict[str, Any]) -> str:
        """A plain-text table of the summary for the terminal."""
        lines = [*textwrap.wrap(self.title, _TABLE_WIDTH)]
        lines += textwrap.wrap(f"claim: {self.claim}", _TABLE_WIDTH)
        rows = summary.get("rows") or []
        if rows:
            # The first columns that fit in 118 characters (the JSON keeps them all).
            cols = [c for c in rows[0] if not isinstance(rows[0][c], (list, dict))]
            shown = cols[: max(1, _TABLE_WIDTH // 16)]
            lines.append("  ".join(f"{c[:14]:>14}" for c in shown))
            for r in rows:
                lines.append("  ".join(_fmt(r.get(c)) for c in shown))
            if len(shown) < len(cols):
                more = (
                    f"({len(cols) - len(shown)} more columns in "
                    f"{self.file_stem or self.name}.json: " + ", ".join(cols[len(shown) :]) + ")"
                )
                lines += textwrap.wrap(more, _TABLE_WIDTH)
        for k, v in summary.items():
            if k != "rows" and (v is None or isinstance(v, (bool, int, float, str, np.number))):
                lines.append(f"{k}: {_fmt(v).strip()}")
        return "\n".join(lines)

    def describe_options(self) -> str:
        """Every option with its current value, type and meaning (`--set help=1`)."""
        hints = typing.get_type_hints(type(self))
        lines = [f"options of {self.name!r} (change with --set OPTION=VALUE):"]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
            hint = hints[f.name]
            kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            lines.append(f"  {f.name} = {shown}  ({kind})")
            lines.append(f"      {f.metadata.get('help', '(no description)')}")
        return "\n".join(lines)

    def config(self) -> dict[str, Any]:
        return {"experiment": self.name, **dataclasses.asdict(self)}

    def replace(self, **changes: Any) -> "AbstractExperiment":
        """A copy with some options changed, each converted to its field's type and checked
        ([`gradflow.experiments.OptionError`][]; unknown names list the valid ones)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        hints = typing.get_type_hints(type(self))
        converted = {}
        for key, value in changes.items():
            if key not in fields:
                raise OptionError(
                    f"Unknown option {key!r} for experiment {self.name!r}; valid options: "
                    f"{', '.join(sorted(fields))}."
                )
            try:
                converted[key] = _convert(key, value, hints[key])
            except ValueError as exc:
                raise OptionError(str(exc)) from None
        new = dataclasses.replace(self, **converted)
        new.validate()
        return new


def option(
    default: Any,
    help: str,
    *,
    positive: bool = False,
    even: bool = False,
    within: str | None = None,
    choices: Sequence[str] | None = None,
    repeats: bool = False,
) -> Any:
    """An option of an experiment: a dataclass field with its default, its meaning and what
    [`gradflow.experiments.AbstractExperiment.validate`][] checks of it, e.g.
    `width: int = option(50, "student neurons m", even=True)`.

    Every option is checked against its annotation (`int`, `float`, `bool`, `str`, a
    `tuple[...]` of them, `... | None`; numbers must be finite); a tuple must hold at least one
    value, each value once unless `repeats` (a tuple of a sweep lists its points: a repeated
    value would be one point twice), and the constraints below apply to each of its values.

    **Arguments:**

    - `default`: the value at the paper's sizes.
    - `help`: what the option means, with its unit (`--set help=1` prints it).
    - `positive`: the value must be > 0.
    - `even`: the value must be an even integer >= 2 (a doubled init pairs the neurons).
    - `within`: an interval such as `"[0, 1)"` or `"(0, 1)"` the value must lie in.
    - `choices`: the strings the value may take.
    - `repeats`: a tuple may hold a value more than once (e.g. the channels of the layers).

    **Returns:** a `dataclasses.field`.
    """
    if not isinstance(help, str) or not help.strip():
        raise ValueError(f"`help` must say what the option means; got help={help!r}.")
    if within is not None:
        _interval(within)
    if choices is not None and (isinstance(choices, str) or not choices):
        raise ValueError(f"`choices` must be a non-empty list of strings; got {choices!r}.")
    meta = {"help": help, "positive": positive, "even": even, "within": within, "repeats": repeats}
    meta["choices"] = None if choices is None else tuple(choices)
    return dataclasses.field(default=default, metadata=types.MappingProxyType(meta))


def _interval(text: str) -> tuple[float, float, bool, bool]:
    """`"[a, b)"` as `(a, b, a included, b included)`."""
    match = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*", text)
    try:
        assert match is not None
        low, high = float(match[2]), float(match[3])
    except (AssertionError, ValueError):
        raise ValueError(
            f"`within` must be an interval such as '[0, 1)' or '(0, 1)'; got {text!r}."
        ) from None
    return low, high, match[1] == "[", match[4] == "]"


def _or(values: Sequence[str]) -> str:
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _admits(value: Any, hint: Any, meta: Any) -> bool:
    """Whether one value has the type `hint` and meets the constraints in `meta`."""
    if typing.get_origin(hint) is typing.Literal:
        return isinstance(value, str) and value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is str:
        if not isinstance(value, str):
            return False
        return meta.get("choices") is None or value in meta["choices"]
    if hint is int and not isinstance(value, (int, np.integer)):
        return False
    if hint in (int, float):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            return False
        if not np.isfinite(value):
            return False
        if meta.get("positive") and not value > 0:
            return False
        if meta.get("even") and (value < 2 or value % 2):
            return False
        if meta.get("within") is not None:
            low, high, closed_low, closed_high = _interval(meta["within"])
            if not (low <= value if closed_low else low < value):
                return False
            if not (value <= high if closed_high else value < high):
                return False
    return True


def _expected(hint: Any, meta: Any, plural: bool) -> str:
    """What `_admits` asks of a value, in words (plural for the values of a tuple)."""
    choices = meta.get("choices")
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
    if choices is not None:
        return ", ".join(map(repr, choices)) if plural else _or(choices)
    if hint is bool:
        return "True or False"
    if hint is str:
        return "strings" if plural else "a string"
    if meta.get("even"):
        what = "even integers" if plural else "an even integer"
        return f"{what} >= 2 (the doubled init pairs the neurons)"
    if hint is int:
        what = "integers" if plural else "an integer"
    else:
        what = "numbers" if plural else "a number"
    if hint is float and not meta.get("positive") and meta.get("within") is None:
        what = "finite numbers" if plural else "a finite number"
    if meta.get("positive"):
        what += " > 0"
    if meta.get("within") is not None:
        what += f" in {meta['within'].strip()}"
    return what


def _check_option(name: str, value: Any, hint: Any, meta: Any) -> None:
    """Check one option against its annotation and declared constraints."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(inner) < len(typing.get_args(hint)):
            return
        hint = inner[0]
    if typing.get_origin(hint) is tuple:
        element = typing.get_args(hint)[0]
        if not isinstance(value, tuple):
            raise ValueError(
                f"Option `{name}` must be a tuple (comma-separated with --set); "
                f"got {name}={value!r}."
            )
        if not value:
            raise ValueError(f"Option `{name}` must list at least one value; got {name}=().")
        if not all(_admits(v, element, meta) for v in value):
            among = meta.get("choices") is not None or typing.get_origin(element) is typing.Literal
            raise ValueError(
                f"Option `{name}` must {'be among' if among else 'list'} "
                f"{_expected(element, meta, plural=True)}; got {name}={value!r}."
            )
        if not meta.get("repeats"):
            # Exact comparison: 10 and 10.0 repeat, 1.0000001 and 1.0000002 do not.
            counts = collections.Counter(value)
            repeated = [v for v, k in counts.items() if k > 1]
            if repeated:
                times = {2: "twice"}.get(counts[repeated[0]], f"{counts[repeated[0]]} times")
                raise ValueError(
                    f"Option `{name}` lists {repeated[0]!r} {times}; each value is one point, so "
                    f"list each value once; got {name}={value!r}."
                )
    elif not _admits(value, hint, meta):
        raise ValueError(
            f"Option `{name}` must be {_expected(hint, meta, plural=False)}; got {name}={value!r}."
        )


_TABLE_WIDTH = 118


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return f"{str(v):>14}"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):>14d}"
    return f"{float(v):>14.5g}"


def _convert(key: str, value: Any, hint: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal and text not in args:
        raise ValueError(f"Option `{key}` must be {_or(args)}; got {key}={value!r}.")
    try:
        if origin in (typing.Union, types.UnionType):
            if text.lower() in ("none", "null", ""):
                return None
            inner = [a for a in args if a is not type(None)]
            return _convert(key, text, inner[0])
        if origin is tuple:
            inner = args[0]
            return tuple(_convert(key, v, inner) for v in text.split(",") if v.strip())
        if origin is typing.Literal:
            return text
        if hint is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if hint is float:
            return float(text)
        return text
    except ValueError:
        raise ValueError(
            f"Option {key}={value!r} is not a valid {getattr(hint, '__name__', hint)}."
        ) from None


@dataclasses.dataclass(frozen=True)
class ExperimentResult:
    """What [`gradflow.experiments.run`][] returns.

    - `summary`: the aggregated numbers (also in `<name>.json`).
    - `records`: every stored point, by key.
    - `errors`: `{key: message}` for the points that failed in this run.
    - `computed`, `reused`: keys run now, and keys found finished in the store.
    - `corrupted`: keys whose stored file failed its check (reported, set aside, recomputed).
    - `files`: the JSON and figure paths (none on processes other than 0 of a distributed
      run); `seconds`: wall time of this call.
    """

    name: str
    summary: dict[str, Any]
    records: dict[str, dict[str, Any]]
    errors: dict[str, str]
    computed: list[str]
    reused: list[str]
    files: list[Path]
    seconds: float
    corrupted: list[str] = dataclasses.field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return not self.errors


def run(
    experiment: AbstractExperiment,
    out: str | Path,
    *,
    overwrite: bool = False,
    repair: bool = False,
    progress: bool = True,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> ExperimentResult:
    """Run `experiment`, resuming from the points already stored in `out`.

    Each finished point is written atomically to `out/points/<key>.json` at once, with a
    checksum; a point that raises is reported in `errors` (and retried by the next run) while
    the others are kept, and a stored point that fails its check (truncated, edited) is
    reported in one line, moved to `out/corrupted/` and recomputed. The folder refuses a
    different configuration (naming the options that differ) unless `overwrite=True`, and a
    second run while one is writing there. At the end the summary is written to
    `out/<name>.json` and the figures beside it.

    **Arguments:**

    - `experiment`: a configured experiment (e.g. `TauSweep.quick()`).
    - `out`: the output folder.
    - `overwrite`: discard results stored there for another configuration.
    - `repair`: rebuild a corrupted `out/store.json`, keeping the points whose checksums match.
    - `progress`: show a tqdm progress bar.
    - `only`: run only these point keys (the summary still uses every stored point).
    - `log`: where one-line reports go (corrupted points, stale locks); default standard error.
    - `process_index`, `process_count`: split the points across processes (point `i` to process
      `i % process_count`), defaulting to `jax.process_index()` and `jax.process_count()`; see
      [`gradflow.sweep`][] and `docs/distributed.md`. Under `jax.distributed` every process
      waits for the others, then process 0 writes the summary and the figures.

    **Returns:** an [`gradflow.experiments.ExperimentResult`][].
    """
    from ..sweeps._distributed import barrier, owner, share

    experiment.validate()
    index, count = share(process_index, process_count)
    start = time.perf_counter()
    out = Path(out)
    points = experiment.points()
    keys = [k for k, _ in points]
    repeated = duplicate_keys(keys, [p for _, p in points])
    if repeated is not None:
        raise ValueError(
            f"experiment {experiment.name!r} has repeated points: {repeated}. Drop the repeated "
            "values from its options."
        )
    if only is not None:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise ValueError(f"`only` names unknown points {unknown}; valid keys: {keys}.")
    store = ResultStore(
        out,
        experiment.config(),
        overwrite=overwrite,
        repair=repair,
        process_index=index,
        process_count=count,
        log=log,
    )
    with store:
        flows, errors, computed, reused = _run_points(
            experiment, store, keys, only, progress, index, count, overwrite
        )
        barrier(f"gradflow.experiments.run:{experiment.name}")
        records = {
            k: r
            for i, k in enumerate(keys)
            if (r := store.get(k, set_aside=owner(i, count) == index)) is not None
        }
        summary = experiment.summarize(flows)
        payload = {
            "experiment": experiment.name,
            "title": experiment.title,
            "claim": experiment.claim,
            "config": experiment.config(),
            "summary": summary,
            "missing_points": [k for k in keys if k not in records],
            "errors": errors,
            "corrupted_points_recomputed": sorted(set(store.corrupted)),
            "processes": count,
            "wall_seconds_this_run": None,
            "compute_seconds_all_points": float(
                sum(r.get("seconds", 0.0) for r in records.values())
            ),
            "environment": environment(),
        }
        files: list[Path] = []
        # Under jax.distributed the summary and figures are process 0's; the others return it.
        if index == 0 or not _joint_run():
            files = experiment.plot(summary, out)
            payload["wall_seconds_this_run"] = time.perf_counter() - start
            stem = experiment.file_stem or experiment.name
            files = [write_json(payload, out / f"{stem}.json"), *files]
    return ExperimentResult(
        name=experiment.name,
        summary=summary,
        records=records,
        errors=errors,
        computed=computed,
        reused=reused,
        files=files,
        seconds=time.perf_counter() - start,
        corrupted=sorted(set(store.corrupted)),
    )


def _run_points(experiment, store, keys, only, progress, index, count, overwrite):
    """The points of an experiment, run by `gradflow.sweep` through `store`."""
    from tqdm.auto import tqdm

    from ..sweeps._distributed import owner
    from ..sweeps._sweep import SweepStatus, sweep

    bar = tqdm(total=len(keys), desc=experiment.name, unit="point", disable=not progress)

    def advance(records: list[dict[str, Any]]) -> None:
        for rec in records:
            if rec["error"] is not None:
                tail = rec.get("traceback")
                bar.write(
                    f"{experiment.name}: point {rec['key']} failed: {rec['error']}"
                    + (f"\n{tail}" if tail else "")
                )
        bar.set_postfix_str(records[-1]["key"])
        bar.update(len(records))

    try:
        result = sweep(
            experiment.build,
            [p for _, p in experiment.points()],
            keys=keys,
            options=experiment.solve_options(),
            point_options=experiment.point_options,
            measure=experiment.measure,
            store=store,
            batch_size=experiment.batch_size,
            callback=advance,
            process_index=index,
            process_count=count,
            only=only,
            overwrite=overwrite,
        )
    finally:
        bar.close()
    mine = [
        i
        for i in range(len(keys))
        if owner(i, count) == index and (only is None or keys[i] in only)
    ]
    failed = result.is_(SweepStatus.failed) | result.is_(SweepStatus.raised)
    errors = {keys[i]: result.errors[i] for i in mine if failed[i]}
    computed = [keys[i] for i in mine if result.is_(SweepStatus.computed)[i]]
    reused = [keys[i] for i in mine if result.resumed[i]]
    return result, errors, computed, reused


def outputs(sweep: "Sweep") -> dict[str, dict[str, Any]]:
    """The computed points of `sweep` (those whose `build` returned a
    [`gradflow.Computation`][]) as flat records by key: the point's values, its result and the
    `seconds` it took, for an experiment's `summarize`."""
    return {
        key: {**point, **out, "seconds": float(seconds)}
        for key, point, out, seconds in zip(sweep.keys, sweep.points, sweep.outputs, sweep.seconds)
        if out is not None
    }


def _joint_run() -> bool:
    import jax

    return jax.process_count() > 1


def check_positive(**values: Any) -> None:
    """Check that every option passed by keyword is a finite number > 0, for an experiment's
    `validate`.

    **Arguments:** the options, as `name=value` (e.g. `check_positive(width=self.width)`).

    **Raises:** `ValueError` naming the first option that is not an `int` or `float`, or is NaN,
    infinite or <= 0, with its value and the fix (a number > 0).
    """
    for name, v in values.items():
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise ValueError(f"Option `{name}` must be a number > 0; got {name}={v!r}.")


def capped_step(max_step: float, lazy_step: float, tau: float, power: int) -> float:
    r"""The paper's gradient-descent step rule $\min(\text{max\_step}, c / \tau^q)$ for an
    init scale $\tau$ of a $q$-homogeneous model: the step shrinks as the curvature grows like
    $\tau^q$ (Fig. 1c: $\min(10, 0.1/\tau^2)$), capped where the model is small."""
    return float(min(max_step, lazy_step / tau**power))


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean and sample standard deviation of the finite values, and how many there were."""
    v = nan_array(list(values))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return float(v.mean()), std, int(v.size)


def log_spaced_steps(num_steps: int, num: int = 80) -> np.ndarray:
    """Iteration counts `0, 1, ..., num_steps`, about `num` of them, log-spaced (the early
    phase of training changes fastest)."""
    idx = np.unique(np.geomspace(1, num_steps, num).round().astype(int))
    return np.concatenate([[0], idx])


def finish_axes(
    ax: Any,
    xlabel: str,
    ylabel: str,
    title: str,
    *,
    log: str = "",
    title_size: float | None = None,
    **legend: Any,
) -> None:
    """Label `ax` in the experiments' figure style: log scales on the axes named in `log`
    (`"x"`, `"y"`, `"xy"`), the axis labels, the title (at `title_size` points if given), a
    light grid at the major and minor ticks, and a legend (`legend`: arguments of
    `ax.legend`)."""
    if "x" in log:
        ax.set_xscale("log")
    if "y" in log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, **({} if title_size is None else {"fontsize": title_size}))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(**legend)


def savefig(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic, like the JSON files: a killed run never leaves half a figure.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def pyplot():
    """matplotlib.pyplot with the non-interactive backend when no display is set."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        import os

        if not os.environ.get("DISPLAY"):
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
